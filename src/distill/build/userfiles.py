"""A spec's own content: ``files:`` copied from the machine, ``paths:`` created.

Local files are copied into the staging directory under their sha256 (as extraction does for
packages), so what the layer holds is exactly what was hashed for the layer cache, even if
the file changes while the build runs. Image paths under ``/bin``, ``/lib``... land in
``/usr`` as in the merged-/usr tree the packages were unpacked into.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from distill.build.spec_values import (
    Accounts,
    FileSpec,
    PathSpec,
    PathType,
    confine,
    resolve_owner,
    show,
)
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.rootfs.extract import stage_stream
from distill.rootfs.usrmerge import relocate

# A copied tree deeper than this is refused: each level holds one open directory.
MAX_TREE_DEPTH = 256
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def stage_file(src: BinaryIO, staging: Path) -> tuple[Path, int]:
    """Copy the open file ``src`` to ``staging/<sha[:2]>/<sha>``; returns that path and the
    size."""
    return stage_stream(src, staging, "local")


def _image_path(path: str) -> str:
    return relocate(path.strip("/"))


def missing_file(spec: FileSpec) -> DistillError:
    return DistillError(
        f"{spec.origin}: files: {spec.src} does not exist",
        hint="`src` is relative to the directory of the spec file that names it",
    )


def checked_source(spec: FileSpec) -> Path:
    """The file or directory ``spec`` names, symlinks resolved, checked again (the tree may
    have changed since the spec was read) to lie inside the build context."""
    try:
        real = confine(spec.src, spec.context, str(spec.src))
    except DistillError as exc:
        raise DistillError(f"{spec.origin}: files: src {exc.message}", exc.hint) from None
    if not os.path.lexists(real):
        raise missing_file(spec)
    return real


class _Copy:
    """One ``files:`` item copied from open descriptors, so that nothing below the checked
    source is reached through a symlink: a link inside a copied directory becomes a link in
    the image (its target is never read, as with COPY), whatever it points to."""

    def __init__(self, spec: FileSpec, owner: tuple[int, int], staging: Path) -> None:
        self.spec, self.owner, self.staging = spec, owner, staging

    def _odd(self, name: str) -> DistillError:
        return DistillError(
            f"{self.spec.origin}: files: {show(name)} is neither a file, a directory nor a symlink",
            hint="copy devices, fifos and sockets in some other way",
        )

    def entry(self, name: str, dir_fd: int | None, dest: str, depth: int) -> list[FsEntry]:
        uid, gid = self.owner
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            linkname = os.readlink(name, dir_fd=dir_fd)
            return [FsEntry(dest, EntryKind.SYMLINK, 0o777, uid, gid, linkname=linkname)]
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            raise self._odd(name)  # before opening: opening a device can do things
        fd = os.open(name, _OPEN, dir_fd=dir_fd)
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                raise DistillError(
                    f"{self.spec.origin}: files: {show(name)} changed while it was copied"
                )
            if stat.S_ISREG(opened.st_mode):
                with os.fdopen(os.dup(fd), "rb") as fh:
                    content, size = stage_file(fh, self.staging)
                mode = self.spec.mode
                if mode is None:
                    mode = 0o755 if opened.st_mode & 0o111 else 0o644
                return [FsEntry(dest, EntryKind.FILE, mode, uid, gid, size=size, content=content)]
            return self.tree(fd, dest, depth)
        finally:
            os.close(fd)

    def tree(self, fd: int, dest: str, depth: int) -> list[FsEntry]:
        if depth > MAX_TREE_DEPTH:
            raise DistillError(
                f"{self.spec.origin}: files: {self.spec.src} is more than {MAX_TREE_DEPTH} "
                "directories deep",
                hint="copy a shallower tree",
            )
        uid, gid = self.owner
        result = [FsEntry(dest, EntryKind.DIR, 0o755, uid, gid)] if dest else []
        for child in sorted(os.listdir(fd)):  # sorted: the walk must not depend on the fs
            target = f"{dest}/{child}" if dest else child
            result += self.entry(child, fd, target, depth + 1)
        return result


def file_entries(files: Sequence[FileSpec], accounts: Accounts, staging: Path) -> list[FsEntry]:
    """The entries of every ``files:`` item, in spec order (a later one wins a path)."""
    result: list[FsEntry] = []
    for spec in files:
        real = checked_source(spec)
        dest = _image_path(spec.dest)
        # normpath: `src: conf/..` must not put a ".." into an image path.
        name = os.path.basename(os.path.normpath(spec.src))
        if spec.into and name:
            dest = f"{dest}/{name}" if dest else name
        if not dest and not real.is_dir():
            raise DistillError(
                f"{spec.origin}: files: a file cannot replace /", hint="write dest: /"
            )
        owner = resolve_owner(spec.owner, accounts, spec.origin)
        try:
            result += _Copy(spec, owner, staging).entry(str(real), None, dest, 0)
        except FileNotFoundError:
            raise missing_file(spec) from None
        except OSError as exc:
            raise DistillError(
                f"{spec.origin}: files: cannot copy {spec.src}: {exc.strerror}"
            ) from None
    return result


def path_entries(paths: Sequence[PathSpec], accounts: Accounts) -> list[FsEntry]:
    """The directories and symlinks of ``paths:``."""
    result = []
    for spec in paths:
        path = _image_path(spec.path)
        if not path:
            raise DistillError(f"{spec.origin}: paths: / cannot be created or replaced")
        uid, gid = resolve_owner(spec.owner, accounts, spec.origin)
        if spec.type is PathType.DIRECTORY:
            mode = spec.mode if spec.mode is not None else 0o755
            result.append(FsEntry(path, EntryKind.DIR, mode, uid, gid))
        else:
            result.append(FsEntry(path, EntryKind.SYMLINK, 0o777, uid, gid, linkname=spec.target))
    return result
