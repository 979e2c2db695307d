"""Which system a base image is: its platform and its os-release, read from its layers.

Rebase compares the old and the new base on these, so only the two os-release paths are
looked at, each read to at most ``MAX_OS_RELEASE`` bytes; the rest of every layer is
skipped (but still read to its end, so its digest and diff_id are checked).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import BinaryIO

from distill.errors import DistillError
from distill.image.compression import CHUNK
from distill.image.model import Image
from distill.image.tarscan import TarFormatError, TarScanner
from distill.rootfs.osrelease import MAX_OS_RELEASE, OS_RELEASE_PATHS, parse_os_release

_OPAQUE = ".wh..wh..opq"
_WHITEOUT = ".wh."
_MAX_LINKS = 8  # symlinks followed from etc/os-release


@dataclass(frozen=True, slots=True)
class Release:
    """``ID`` and ``VERSION_ID`` (``debian``, ``12``), and the codename, from os-release."""

    id: str
    version_id: str
    codename: str

    def __str__(self) -> str:
        name = f"{self.id} {self.version_id}".strip()
        return f"{name} ({self.codename})" if self.codename else name or "an unnamed system"

    def same_release(self, other: Release) -> bool:
        if self.id != other.id:
            return False
        if self.version_id and other.version_id:
            return self.version_id.split(".")[0] == other.version_id.split(".")[0]
        return self.codename == other.codename


class _Reader:
    """A tar source (``read``/``skip``) over a layer's uncompressed stream."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def read(self, size: int) -> bytes:
        return self._raw.read(size)

    def skip(self, size: int) -> int:
        moved = 0
        while moved < size and (data := self._raw.read(min(CHUNK, size - moved))):
            moved += len(data)
        return moved


def _normal(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _under(path: str, folder: str) -> bool:
    return not folder or path == folder or path.startswith(folder + "/")


def _scan_layer(image_name: str, index: int, image: Image, found: dict[str, str | bytes]) -> None:
    """Apply layer ``index`` to ``found`` (path → file content, or a symlink's target as
    str), for the os-release paths only."""
    layer = image.layers[index]
    wanted = set(OS_RELEASE_PATHS)
    try:
        with layer.open_uncompressed() as raw:
            tar = TarScanner(_Reader(raw))
            for member in tar:
                path = _normal(member.name)
                parent, base = posixpath.split(path)
                if base == _OPAQUE or base.startswith(_WHITEOUT):
                    gone = parent if base == _OPAQUE else posixpath.join(parent, base[4:])
                    for known in [p for p in found if _under(p, gone) and p != parent]:
                        del found[known]
                    continue
                if path not in wanted:
                    if any(_under(p, path) for p in found) and not member.isdir():
                        for known in [p for p in found if _under(p, path)]:
                            del found[known]  # a directory above replaced by a file
                    continue
                if member.issym():
                    found[path] = member.linkname
                elif member.isreg():
                    found[path] = tar.read_data(min(member.size, MAX_OS_RELEASE))
                else:
                    found.pop(path, None)
            raw.read()  # to the end: the digests are checked there
    except TarFormatError as exc:
        raise DistillError(
            f"{image_name}: {layer.label} is not a valid tar archive ({exc})",
            hint="the layer is damaged; fetch or save the image again",
        ) from None


def read_release(image: Image, name: str) -> Release | None:
    """The os-release of ``image`` (None when it has none)."""
    found: dict[str, str | bytes] = {}
    for index in range(len(image.layers)):
        _scan_layer(name, index, image, found)
    for path in OS_RELEASE_PATHS:
        current = path
        for _ in range(_MAX_LINKS):
            value = found.get(current)
            if not isinstance(value, str):
                break
            start = "" if value.startswith("/") else posixpath.dirname(current)
            current = _normal(posixpath.join(start, value))
        value = found.get(current)
        if isinstance(value, bytes):
            values = parse_os_release(value.decode("utf-8", "replace"))
            return Release(
                values.get("ID", ""),
                values.get("VERSION_ID", ""),
                values.get("VERSION_CODENAME", ""),
            )
    return None
