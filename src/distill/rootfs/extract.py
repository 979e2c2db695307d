"""Turn a .deb's data archive into rootfs entries, staging file contents on disk.

This is ``dpkg --unpack`` without dpkg and without root: paths, modes (setuid included),
numeric owners, symlinks, hardlinks and directories come from the archive as they are, and
each regular file's bytes go to a content-addressed staging directory (``<sha256[:2]>/
<sha256>``), so identical files shipped by several packages are stored once and the staged
files can be owned by whoever runs distill. Documentation is dropped unless asked for, except
the ``copyright`` files that licence scanners read. Maintainer scripts are not run: the
``rootfs`` modules next to this one do their work declaratively.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from distill import tempfiles
from distill.cache import is_sha256
from distill.debian.deb import iter_data
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class KeepOptions:
    """Which documentation to keep from packages; all of it is dropped by default.

    - ``doc``: everything under ``usr/share/doc`` and ``usr/share/info``. Without it only the
      ``usr/share/doc/<pkg>/copyright`` files (and the directories or symlinks leading to them)
      remain: trivy, syft and the SBOM read licences from them.
    - ``man``: ``usr/share/man``.
    - ``locale``: the message catalogues under ``usr/share/locale``. ``locale.alias`` is kept
      either way (glibc reads it); compiled locales in ``usr/lib/locale`` are never dropped.

    ``usr/share/lintian`` (packaging metadata, no use at run time) is always dropped.
    """

    doc: bool = False
    man: bool = False
    locale: bool = False


def normalise_path(name: str, deb: Path | None = None) -> str:
    """``./usr/bin/x`` → ``usr/bin/x``; ``./`` → ``""``. Refuses paths that climb out."""
    path = posixpath.normpath("/" + name.strip()).lstrip("/")
    if path == ".":
        path = ""
    if ".." in name.split("/"):
        where = f" in {deb.name}" if deb else ""
        raise DistillError(
            f"archive member {name!r}{where} points outside the root",
            hint="the package is malformed or hostile; remove it from the spec",
        )
    return path


def _dropped(path: str, kind: EntryKind, keep: KeepOptions) -> bool:
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "usr" or parts[1] != "share":
        return False
    area = parts[2]
    if area == "lintian":
        return True
    if area == "man":
        return not keep.man
    if area == "info":
        return not keep.doc
    if area == "locale":
        return not keep.locale and path != "usr/share/locale/locale.alias"
    if area == "doc" and not keep.doc:
        depth = len(parts) - 3  # 0: usr/share/doc, 1: usr/share/doc/<pkg>, 2: its contents
        if depth <= 1:
            # The per-package directory, or a symlink to another package's, leads to copyright.
            return kind not in (EntryKind.DIR, EntryKind.SYMLINK)
        return not (depth == 2 and parts[-1] == "copyright")
    return False


def stage_stream(
    stream: IO[bytes],
    staging: Path,
    prefix: str = "stage",
    check: Callable[[int], None] | None = None,
) -> tuple[Path, int]:
    """Copy ``stream`` into the staging dir as ``<sha[:2]>/<sha>``; returns that path and
    the byte count. ``check`` sees the count before the file is put in place and may refuse
    it (by raising): nothing is left behind then."""
    tmp_dir = staging / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    fd, tmp_name = tempfiles.mkstemp(tmp_dir, prefix)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                written += len(chunk)
        if check is not None:
            check(written)
        sha = digest.hexdigest()
        dest = staging / sha[:2] / sha
        dest.parent.mkdir(exist_ok=True)
        # Same name, same bytes: a concurrent or earlier copy is as good as this one.
        os.replace(tmp_name, dest)
        return dest, written
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def staged_row(entry: FsEntry) -> list[object]:
    """``entry`` as a row of a remembered record (the unpacked-package, installed-wheel and
    jlink caches): its staged file by name, which is its content's sha256."""
    name = entry.content.name if isinstance(entry.content, Path) else None
    e = entry
    return [e.path, str(e.kind), e.mode, e.uid, e.gid, e.size, e.linkname, name]


def entries_from_rows(
    rows: object, staging: Path, package: str | None = None
) -> list[FsEntry] | None:
    """Rows of ``staged_row`` back as entries whose content is the staged file; None when a
    row is damaged or a staged file is gone (the caller then does the work again)."""
    if not isinstance(rows, list):
        return None
    entries = []
    try:
        for path, kind, mode, uid, gid, size, linkname, sha in rows:
            content = None
            if sha is not None:
                if not (isinstance(sha, str) and is_sha256(sha)):
                    return None
                content = staging / sha[:2] / sha
                if not content.is_file():
                    return None
            kind = EntryKind(kind)
            entries.append(FsEntry(path, kind, mode, uid, gid, size, linkname, content, package))
    except (ValueError, TypeError):
        return None
    return entries


def stage_member(stream: IO[bytes], size: int, staging: Path, name: str, deb: Path) -> Path:
    """Stage a member's bytes (see ``stage_stream``), refusing a member shorter or longer
    than its header says."""

    def check(written: int) -> None:
        if written != size:
            raise DistillError(
                f"{deb.name}: {name} holds {written} bytes, its header says {size}",
                hint=f"the file may be damaged; delete {deb} so it is downloaded again",
            )

    return stage_stream(stream, staging, "stage", check)[0]


def extract_package(
    deb: Path,
    package: str,
    staging: Path,
    keep: KeepOptions,
    *,
    skipped: list[str] | None = None,
) -> list[FsEntry]:
    """The rootfs entries of one .deb, in archive order, with file contents staged.

    Device nodes and fifos have no place in an image built without root; they are left out
    and a line saying so is appended to ``skipped`` (as is a hardlink whose target was
    filtered out).
    """
    staging.mkdir(parents=True, exist_ok=True)
    entries: list[FsEntry] = []
    kept: set[str] = set()
    for info, stream in iter_data(deb):
        path = normalise_path(info.name, deb)
        if not path:
            continue  # the archive's "./": the image root is the layer's business
        kind = _kind(info)
        if kind is None:
            if skipped is not None:
                skipped.append(f"{package}: /{path}: {_type_name(info)} not supported, skipped")
            continue
        if _dropped(path, kind, keep):
            continue
        mode = 0o777 if kind is EntryKind.SYMLINK else info.mode & 0o7777
        size = 0
        linkname = ""
        content: Path | None = None
        if kind is EntryKind.FILE:
            assert stream is not None
            content = stage_member(stream, info.size, staging, path, deb)
            size = info.size
        elif kind is EntryKind.HARDLINK:
            linkname = normalise_path(info.linkname, deb)
            if linkname not in kept:
                if skipped is not None:
                    skipped.append(f"{package}: /{path}: hardlink to dropped /{linkname}, skipped")
                continue
        elif kind is EntryKind.SYMLINK:
            linkname = info.linkname
        entry = FsEntry(
            path,
            kind,
            mode,
            uid=info.uid,
            gid=info.gid,
            size=size,
            linkname=linkname,
            content=content,
            package=package,
        )
        entries.append(entry)
        kept.add(path)
    return entries


def _kind(info: tarfile.TarInfo) -> EntryKind | None:
    if info.isreg():
        return EntryKind.FILE
    if info.isdir():
        return EntryKind.DIR
    if info.issym():
        return EntryKind.SYMLINK
    if info.islnk():
        return EntryKind.HARDLINK
    return None


def _type_name(info: tarfile.TarInfo) -> str:
    if info.ischr():
        return "character device"
    if info.isblk():
        return "block device"
    if info.isfifo():
        return "fifo"
    return f"tar member type {info.type!r}"
