"""Reading images on this machine: OCI layouts (directory or tar) and docker archives, the
files behind the ``oci``, ``oci-archive``, ``docker-archive`` and ``containers-storage``
transports.

Archives are read in place: one pass over the outer tar's headers finds where each member's
bytes are, and each blob is then read from that offset, so nothing is extracted and no
layer is held in memory.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from distill.bounded import read_capped
from distill.errors import DistillError
from distill.fsutil import check_input_path
from distill.image.compression import Compression
from distill.image.descriptor import Descriptor, parse_descriptor
from distill.image.digest import check_digest, short
from distill.image.manifest import IMAGE_DAMAGED, load_json_object
from distill.image.mediatypes import (
    MANIFEST_TYPES,
)
from distill.image.model import Top
from distill.image.partial import MAX_JSON_BLOB, index_manifests, load_top
from distill.image.stream import FileRange, sniff_compression
from distill.image.tarscan import TarFormatError, TarScanner, TarTruncated

REF_ANNOTATIONS = ("org.opencontainers.image.ref.name", "io.containerd.image.name")
_HEX_NAME = re.compile(r"(?:.*/)?(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json|\.tar)?")


# --- files: a directory or a tar, read in place ------------------------------------------


class _Files(Protocol):
    def exists(self, name: str) -> bool: ...
    def size(self, name: str) -> int: ...
    def open(self, name: str) -> FileRange: ...
    def where(self, name: str) -> str: ...


def _read_small(files: _Files, name: str, what: str) -> bytes:
    where = files.where(name)
    if files.size(name) > MAX_JSON_BLOB:
        raise DistillError(f"{where} is too large to be {what}", hint=IMAGE_DAMAGED)
    with files.open(name) as handle:
        return read_capped(cast(BinaryIO, handle), MAX_JSON_BLOB, where, hint=IMAGE_DAMAGED)


class DirFiles:
    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def size(self, name: str) -> int:
        return (self.root / name).stat().st_size

    def open(self, name: str) -> FileRange:
        try:
            return FileRange(self.root / name)
        except OSError as exc:
            raise DistillError(
                f"cannot read {self.root / name}: {exc.strerror or exc}",
                hint="the layout is incomplete or unreadable",
            ) from None

    def where(self, name: str) -> str:
        return str(self.root / name)


@dataclass(frozen=True, slots=True)
class _Member:
    offset: int
    size: int
    link: str | None  # the archive path a symlink or hardlink member points to


def _member_name(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


class TarFiles:
    """A tar archive on disk, indexed by one pass over its headers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._members: dict[str, _Member] = {}
        try:
            with FileRange(path) as handle:
                try:
                    compressed = sniff_compression(handle.read(6)) is not Compression.NONE
                except DistillError:
                    compressed = True
                if compressed:
                    raise DistillError(
                        f"{path} is a compressed archive",
                        hint="decompress it first (gunzip, zstd -d, ...) and inspect the .tar",
                    )
                handle.seek(0)
                self._scan(handle)
        except OSError as exc:
            raise DistillError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _scan(self, handle: FileRange) -> None:
        try:
            for info in TarScanner(handle):
                name = _member_name(info.name)
                if info.isreg() and info.offset_data + info.stored > handle.size:
                    raise TarTruncated(name, handle.size, info.offset_data + info.stored)
                link = None
                if info.issym():
                    link = _member_name(posixpath.join(posixpath.dirname(name), info.linkname))
                elif info.islnk():
                    link = _member_name(info.linkname)
                if info.isreg() or link is not None:
                    self._members[name] = _Member(info.offset_data, info.stored, link)
        except TarTruncated as exc:
            raise DistillError(
                f"{self.path} is truncated: {exc.name} ends past the end of the file",
                hint="the archive was cut short; save or copy it again",
            ) from None
        except TarFormatError as exc:
            raise DistillError(
                f"{self.path} is not a tar archive ({exc})",
                hint="give an image archive written by docker save, podman save or skopeo",
            ) from None

    def _find(self, name: str) -> _Member | None:
        member = self._members.get(name)
        for _ in range(16):  # podman links <id>/layer.tar to ../<diff_id>.tar
            if member is None or member.link is None:
                return member
            member = self._members.get(member.link)
        return None

    def exists(self, name: str) -> bool:
        return self._find(name) is not None

    def size(self, name: str) -> int:
        member = self._find(name)
        return member.size if member else 0

    def open(self, name: str) -> FileRange:
        member = self._find(name)
        if member is None:
            raise DistillError(f"{self.where(name)} is missing", hint="the archive is incomplete")
        return FileRange(self.path, member.offset, member.size)

    def where(self, name: str) -> str:
        return f"{name} in {self.path}"


# --- OCI layouts -------------------------------------------------------------------------


class LayoutStore:
    """The ``BlobStore`` of an OCI layout: ``blobs/sha256/<hex>``."""

    def __init__(self, files: _Files, on_close: Callable[[], None] | None = None) -> None:
        self._files = files
        self._on_close = on_close

    @staticmethod
    def _name(digest: str) -> str:
        return "blobs/sha256/" + check_digest(digest, "blob").removeprefix("sha256:")

    def open_blob(self, descriptor: Descriptor) -> BinaryIO:
        return cast(BinaryIO, self.open_file(descriptor))

    def open_file(self, descriptor: Descriptor) -> FileRange:
        name = self._name(descriptor.digest)
        if not self._files.exists(name):
            raise DistillError(
                f"blob {short(descriptor.digest)} ({descriptor.media_type}) is missing: "
                f"there is no {self._files.where(name)}",
                hint="the image is incomplete; save or copy it again",
            )
        return self._files.open(name)

    def exists(self, digest: str) -> bool:
        return self._files.exists(self._name(digest))

    def where(self, digest: str) -> str:
        return self._files.where(self._name(digest))

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def _index_entries(files: _Files) -> list[Descriptor]:
    where = files.where("index.json")
    data = load_json_object(_read_small(files, "index.json", "an index"), where)
    return [parse_descriptor(item, where) for item in index_manifests(data, where)]


def _refs(descriptor: Descriptor) -> list[str]:
    return [descriptor.annotations[k] for k in REF_ANNOTATIONS if k in descriptor.annotations]


def _select_ref(entries: list[Descriptor], ref: str | None, where: str) -> list[Descriptor]:
    """The index.json entries ``ref`` names (all of them without a ref)."""
    if not entries:
        raise DistillError(f"{where} lists no images", hint="the layout is empty")
    if ref is None:
        return entries
    chosen = [d for d in entries if ref in _refs(d)]
    if not chosen:
        known = sorted({r for d in entries for r in _refs(d)})
        raise DistillError(
            f"{where} has no image named {ref!r}",
            hint="it has " + (", ".join(known) if known else "only images without names"),
        )
    return chosen


def open_layout(files: _Files, ref: str | None, name: str) -> tuple[LayoutStore, Top]:
    """The image or index ``ref`` names in the layout (the only one, without ``ref``),
    and the store it reads from, which the caller closes."""
    if not files.exists("index.json"):
        raise DistillError(
            f"{files.where('index.json')} does not exist: this is not an OCI image layout",
            hint="give a directory or archive written by skopeo, podman, umoci or distill",
        )
    where = files.where("index.json")
    chosen = _select_ref(_index_entries(files), ref, where)
    store = LayoutStore(files)
    try:
        if len(chosen) == 1:
            return store, load_top(store, chosen[0], name)
        if all(d.media_type in MANIFEST_TYPES and d.platform for d in chosen):
            # index.json itself lists one manifest per platform: it is the index.
            return store, load_top(store, chosen, name)
    except BaseException:
        store.close()
        raise
    names = sorted({r for d in chosen for r in _refs(d)})
    store.close()
    raise DistillError(
        f"{where} holds {len(chosen)} images; name one",
        hint=f"write {name}:REF with REF one of: {', '.join(names)}"
        if names
        else "the images have no names; copy the one you want to its own layout",
    )


# --- what a path is ----------------------------------------------------------------------


def archive_files(path: Path, transport: str) -> TarFiles:
    """The members of the archive at ``path``, indexed."""
    check_input_path(path)
    if not path.is_file():
        raise DistillError(
            f"{path} does not exist" if not path.exists() else f"{path} is not a file",
            hint=f"{transport}: names an archive file",
        )
    return TarFiles(path)


def layout_dir(path: Path) -> DirFiles:
    check_input_path(path)
    if not path.is_dir():
        raise DistillError(f"{path} is not a directory", hint="oci: names a layout directory")
    return DirFiles(path)


def split_path(rest: str, transport: str) -> tuple[Path, str | None]:
    """``PATH[:REF]``: as with skopeo, a path ends at its first ``:``."""
    path, sep, ref = rest.partition(":")
    if not path:
        raise DistillError(f"{transport}:{rest!r} names no path", hint=f"write {transport}:PATH")
    if sep and not ref:
        raise DistillError(
            f"{transport}:{rest} ends with ':' but names no reference",
            hint=f"write {transport}:{path}:REF, or leave out the ':'",
        )
    return Path(path), ref or None
