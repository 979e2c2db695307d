"""A spec's own content: ``files:`` copied from the machine, ``paths:`` created.

Local files are copied into the staging directory under their sha256 (as extraction does for
packages), so what the layer holds is exactly what was hashed for the layer cache, even if
the file changes while the build runs. Image paths under ``/bin``, ``/lib``... land in
``/usr`` as in the merged-/usr tree the packages were unpacked into.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from distill import tempfiles
from distill.errors import DistillError
from distill.rootfs.tree import EntryKind, FsEntry
from distill.rootfs.usrmerge import relocate
from distill.spec_values import Accounts, FileSpec, PathSpec, PathType, resolve_owner

_CHUNK = 1 << 20


def stage_file(src: Path, staging: Path) -> tuple[Path, int]:
    """Copy ``src`` to ``staging/<sha[:2]>/<sha>``; returns that path and the size."""
    tmp_dir = staging / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfiles.mkstemp(tmp_dir, "local")
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        sha = digest.hexdigest()
        dest = staging / sha[:2] / sha
        dest.parent.mkdir(exist_ok=True)
        os.replace(tmp_name, dest)
        return dest, size
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _image_path(path: str) -> str:
    return relocate(path.strip("/"))


def missing_file(spec: FileSpec) -> DistillError:
    return DistillError(
        f"{spec.origin}: files: {spec.src} does not exist",
        hint="`src` is relative to the directory of the spec file that names it",
    )


def _copy(
    src: Path, dest: str, spec: FileSpec, owner: tuple[int, int], staging: Path
) -> list[FsEntry]:
    uid, gid = owner
    try:
        info = src.lstat()
    except FileNotFoundError:
        raise missing_file(spec) from None
    if stat.S_ISLNK(info.st_mode):
        return [FsEntry(dest, EntryKind.SYMLINK, 0o777, uid, gid, linkname=os.readlink(src))]
    if stat.S_ISREG(info.st_mode):
        content, size = stage_file(src, staging)
        mode = spec.mode if spec.mode is not None else (0o755 if info.st_mode & 0o111 else 0o644)
        return [FsEntry(dest, EntryKind.FILE, mode, uid, gid, size=size, content=content)]
    if stat.S_ISDIR(info.st_mode):
        result = [FsEntry(dest, EntryKind.DIR, 0o755, uid, gid)] if dest else []
        for child in sorted(os.listdir(src)):  # sorted: the walk must not depend on the fs
            target = f"{dest}/{child}" if dest else child
            result += _copy(src / child, target, spec, owner, staging)
        return result
    raise DistillError(
        f"{spec.origin}: files: {src} is neither a file, a directory nor a symlink",
        hint="copy devices, fifos and sockets in some other way",
    )


def file_entries(files: Sequence[FileSpec], accounts: Accounts, staging: Path) -> list[FsEntry]:
    """The entries of every ``files:`` item, in spec order (a later one wins a path)."""
    result: list[FsEntry] = []
    for spec in files:
        if not os.path.lexists(spec.src):
            raise missing_file(spec)
        dest = _image_path(spec.dest)
        if spec.into:
            dest = f"{dest}/{spec.src.name}" if dest else spec.src.name
        if not dest and not spec.src.is_dir():
            raise DistillError(
                f"{spec.origin}: files: a file cannot replace /", hint="write dest: /"
            )
        owner = resolve_owner(spec.owner, accounts, spec.origin)
        result += _copy(spec.src, dest, spec, owner, staging)
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
