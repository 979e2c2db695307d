"""Filesystem entries as data: path, kind, metadata, content kept on disk or in memory.

``rootfs`` and ``build`` produce them; ``image.layer_blob`` writes them as a layer's tar.
Nothing here touches the host's ownership or permissions, so building works without root.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class EntryKind(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"


@dataclass(frozen=True, slots=True)
class FsEntry:
    """One path in the image. ``path`` is relative, normalised, without a leading slash."""

    path: str
    kind: EntryKind
    mode: int  # permission bits incl. setuid/setgid/sticky, without the file-type bits
    uid: int = 0
    gid: int = 0
    size: int = 0
    linkname: str = ""  # symlink target, or the hardlink's target path (relative)
    content: Path | bytes | None = None  # regular files: a staged file or the bytes
    package: str | None = None  # the Debian package that owns it; None for generated files

    def read_bytes(self) -> bytes:
        if isinstance(self.content, bytes):
            return self.content
        if isinstance(self.content, Path):
            return self.content.read_bytes()
        return b""
