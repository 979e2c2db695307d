"""A directory of the machine's as layer entries: each regular file staged under its sha256
(what the layer holds is what was hashed, even if the file changes afterwards), symlinks kept
as symlinks (never followed), owned by root and readable by everyone, in a walk order that
does not depend on the filesystem."""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from pathlib import Path

from distill.bounded import one_line
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.rootfs.extract import stage_stream

MAX_TREE_DEPTH = 256  # each level holds one open directory
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def tree_entries(
    source: Path, dest: str, staging: Path, *, skip: Collection[str] = ()
) -> list[FsEntry]:
    """The entries of the tree at ``source`` placed at image path ``dest`` (relative, e.g.
    ``app``), ``dest`` itself included; ``skip`` names top-level entries left out."""
    try:
        fd = os.open(source, _OPEN | os.O_DIRECTORY)
    except OSError as exc:
        raise DistillError(f"cannot read {source}: {exc.strerror}") from None
    try:
        return [FsEntry(dest, EntryKind.DIR, 0o755), *_walk(fd, source, dest, staging, skip, 0)]
    finally:
        os.close(fd)


def _walk(
    fd: int, where: Path, dest: str, staging: Path, skip: Collection[str], depth: int
) -> list[FsEntry]:
    if depth > MAX_TREE_DEPTH:
        raise DistillError(
            f"{where} is more than {MAX_TREE_DEPTH} directories deep", hint="copy a shallower tree"
        )
    result: list[FsEntry] = []
    for name in sorted(os.listdir(fd)):
        if name in skip:
            continue
        path = f"{dest}/{name}"
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            link = os.readlink(name, dir_fd=fd)
            result.append(FsEntry(path, EntryKind.SYMLINK, 0o777, linkname=link))
            continue
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            raise DistillError(
                f"{one_line(str(where / name))} is neither a file, a directory nor a symlink",
                hint="remove it from the project, or move it out",
            )
        child = os.open(name, _OPEN, dir_fd=fd)
        try:
            opened = os.fstat(child)
            if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                raise DistillError(f"{one_line(str(where / name))} changed while it was copied")
            if stat.S_ISDIR(opened.st_mode):
                result.append(FsEntry(path, EntryKind.DIR, 0o755))
                result += _walk(child, where / name, path, staging, (), depth + 1)
                continue
            with os.fdopen(os.dup(child), "rb") as fh:
                content, size = stage_stream(fh, staging, "app")
            mode = 0o755 if opened.st_mode & 0o111 else 0o644
            result.append(FsEntry(path, EntryKind.FILE, mode, size=size, content=content))
        finally:
            os.close(child)
    return result
