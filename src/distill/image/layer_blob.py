"""Deterministic layer blobs: rootfs entries in, a compressed tar named by its digest out.

The same entries (in any input order) give byte-identical tars, so ``diff_id`` is
reproducible everywhere. The compressed ``digest`` is reproducible for the same compressor
library version on the same kind of CPU (ISA-L picks SIMD kernels at run time, which may
not emit the same bytes on, say, x86-64 and arm64); the compressors are fed fixed-size
chunks, so the output never depends on how Python happens to split writes.

Entry order, a documented total order so that tars can be compared and diffed:

1. entries are sorted by their path split into ``/`` components, compared component by
   component as Unicode code points (the same order as comparing UTF-8 bytes), so a
   directory is immediately followed by its whole subtree (``a``, ``a/b``, ``a-b``);
2. a hardlink whose target sorts after it is moved to just after its target (after any
   earlier-moved links to the same target, in the order of 1.), because extractors can
   only link to a file they have already written.

Every header is PAX (``ustar\\0`` + ``00``, with extended records only where ustar fields are
too small), mtime is ``source_date_epoch``, there is no atime/ctime, owners are numeric
with empty user and group names, and directories that entries imply but do not list are
added as ``0755 0:0``. The image root itself (``./``) is not an entry.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import sys
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from isal import isal_zlib

from distill import tempfiles
from distill.errors import DistillError
from distill.image.compression import CHUNK, Compression, decompressed
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer import Layer
from distill.image.mediatypes import MEDIA_TYPE_LAYER

__all__ = [
    "CHUNK",
    "MEDIA_TYPE_LAYER",
    "Compression",
    "LayerBlob",
    "decompressed",
    "write_layer",
]

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

# Bump when the bytes of the tar for the same entries change, so cached blobs are not reused.
LAYER_FORMAT_VERSION = 1

GZIP_LEVEL = 2  # isal's default: ~10x zlib-6's speed for a few percent larger layers
ZSTD_LEVEL = 3


@dataclass(frozen=True, slots=True)
class LayerBlob:
    """A written layer. ``digest`` and ``size`` describe the (compressed) blob file at
    ``path``; ``diff_id`` and ``uncompressed_size`` the tar inside it. ``file_count`` counts
    tar entries of every kind, implied directories included."""

    digest: str
    diff_id: str
    size: int
    media_type: str
    uncompressed_size: int
    file_count: int
    path: Path

    @property
    def compression(self) -> Compression:
        return Compression.from_media_type(self.media_type)

    def layer(self) -> Layer:
        """This blob as a layer of an image."""
        return Layer.from_file(
            self.path,
            media_type=self.media_type,
            digest=self.digest,
            diff_id=self.diff_id,
            size=self.size,
            uncompressed_size=self.uncompressed_size,
        )

    def to_dict(self) -> dict[str, object]:
        """Everything but the path, for a cache's metadata file."""
        return {
            "digest": self.digest,
            "diff_id": self.diff_id,
            "size": self.size,
            "media_type": self.media_type,
            "uncompressed_size": self.uncompressed_size,
            "file_count": self.file_count,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], blob_dir: Path) -> LayerBlob:
        """The inverse of ``to_dict`` for a blob stored in ``blob_dir`` under its hex digest."""
        digest = str(data["digest"])
        return cls(
            digest=digest,
            diff_id=str(data["diff_id"]),
            size=int(data["size"]),
            media_type=str(data["media_type"]),
            uncompressed_size=int(data["uncompressed_size"]),
            file_count=int(data["file_count"]),
            path=blob_dir / digest.removeprefix("sha256:"),
        )


def layer_cache_key(inputs: Iterable[str], compression: Compression, sde: int) -> str:
    """A hex key naming the blob that these inputs (e.g. .deb sha256s, in the order they are
    unpacked: later files win, so order matters) and options produce."""
    canonical = json.dumps(
        {
            "format": LAYER_FORMAT_VERSION,
            "inputs": list(inputs),
            "compression": str(compression),
            "source_date_epoch": sde,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_key(path: str) -> tuple[str, ...]:
    """The sort key of rule 1 in the module docstring."""
    return tuple(path.split("/"))


# --- ordering and validation -------------------------------------------------------------


def _check_path(path: str, what: str = "path") -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise DistillError(
            f"layer entry {what} {path!r} is not a normalised relative path",
            hint="rootfs entries need paths like 'usr/bin/env': no leading '/', '.' or '..'",
        )


def _member(entry: FsEntry) -> tuple[object, ...]:
    """What decides the tar member an entry writes: entries equal in it may both be given."""
    return (entry.kind, entry.mode, entry.uid, entry.gid, entry.linkname, entry.content)


def _owner(entry: FsEntry) -> str:
    return entry.package or "generated"


def ordered_entries(entries: Iterable[FsEntry]) -> list[FsEntry]:
    """Validate ``entries``, add implied directories and return them in layer order."""
    by_path: dict[str, FsEntry] = {}
    for entry in entries:
        _check_path(entry.path)
        seen = by_path.get(entry.path)
        if seen is None:
            by_path[entry.path] = entry
        elif _member(seen) != _member(entry):
            raise DistillError(
                f"/{entry.path} is in the layer twice, differently"
                f" ({_owner(seen)}: {seen.kind}, {_owner(entry)}: {entry.kind})",
                hint="the rootfs stages must decide which one wins before writing the layer",
            )
    for path in list(by_path):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            found = by_path.get(parent)
            if found is None:
                by_path[parent] = FsEntry(parent, EntryKind.DIR, 0o755)
            elif found.kind is not EntryKind.DIR:
                raise DistillError(
                    f"/{path} is under /{parent}, which is a {found.kind}, not a directory",
                    hint="move the entry to where the link points (e.g. after usr-merge)",
                )
    # Hardlinks may point at hardlinks: tar wants the file itself, so follow the chain.
    # Afterwards no hardlink is the target of another, so one pass can order them.
    result: list[FsEntry] = []
    written: set[str] = set()
    waiting: dict[str, list[FsEntry]] = {}  # target path -> links that sort before it
    for entry in sorted(by_path.values(), key=lambda e: order_key(e.path)):
        if entry.kind is EntryKind.HARDLINK:
            entry = _resolve_hardlink(entry, by_path)
            if entry.linkname not in written:
                waiting.setdefault(entry.linkname, []).append(entry)
                continue
        result.append(entry)
        written.add(entry.path)
        for link in waiting.pop(entry.path, ()):
            result.append(link)
            written.add(link.path)
    return result


def _resolve_hardlink(entry: FsEntry, by_path: dict[str, FsEntry]) -> FsEntry:
    _check_path(entry.linkname, "hardlink target")
    target = entry.linkname
    for _ in range(len(by_path)):
        found = by_path.get(target)
        if found is None:
            raise DistillError(
                f"hardlink /{entry.path} points to /{target}, which is not in the layer",
                hint="keep the link's target, or turn the link into a copy",
            )
        if found.kind is EntryKind.DIR:
            raise DistillError(
                f"hardlink /{entry.path} points to directory /{target}",
                hint="directories cannot be hardlinked; make it a symlink",
            )
        if found.kind is not EntryKind.HARDLINK:
            break
        target = found.linkname
    else:
        raise DistillError(
            f"hardlink /{entry.path} is part of a loop of hardlinks",
            hint="a hardlink chain must end at a file",
        )
    if target == entry.linkname:
        return entry
    return FsEntry(
        entry.path, entry.kind, entry.mode, entry.uid, entry.gid, 0, target, None, entry.package
    )


# --- streaming ---------------------------------------------------------------------------


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


# A fixed gzip header: no name, mtime 0, no extra flags, OS "unknown" (as Go and Python
# write), so the bytes do not depend on the host or on the deflate library's own header.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class _GzipCompressor:
    """Raw deflate from isal between our own header and trailer."""

    def __init__(self) -> None:
        self._deflate = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, -15)
        self._crc = 0
        self._size = 0
        self._started = False

    def compress(self, data: bytes) -> bytes:
        self._crc = isal_zlib.crc32(data, self._crc)
        self._size += len(data)
        out: bytes = self._deflate.compress(data)
        if not self._started:
            self._started = True
            return _GZIP_HEADER + out
        return out

    def flush(self) -> bytes:
        head = b"" if self._started else _GZIP_HEADER
        self._started = True
        tail: bytes = self._deflate.flush()
        return head + tail + struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF)


class _ZstdCompressor:
    def __init__(self) -> None:
        # Parameters spelled out so a library default changing cannot change the bytes.
        options: dict[int, int] = {
            zstd.CompressionParameter.compression_level: ZSTD_LEVEL,
            zstd.CompressionParameter.checksum_flag: 1,
            zstd.CompressionParameter.content_size_flag: 0,
            zstd.CompressionParameter.nb_workers: 0,
        }
        self._zstd = zstd.ZstdCompressor(options=options)

    def compress(self, data: bytes) -> bytes:
        return bytes(self._zstd.compress(data))

    def flush(self) -> bytes:
        return bytes(self._zstd.flush())


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


def _compressor(compression: Compression) -> _Compressor:
    if compression is Compression.GZIP:
        return _GzipCompressor()
    if compression is Compression.ZSTD:
        return _ZstdCompressor()
    return _Identity()


class _HashingSink:
    """What tarfile writes to: hashes the tar, compresses it in fixed chunks, hashes and
    writes the compressed bytes to ``out``."""

    def __init__(self, out: IO[bytes], compression: Compression) -> None:
        self._out = out
        self._compressor = _compressor(compression)
        self._buffer = bytearray()
        self.diff_id = hashlib.sha256()
        self.digest = hashlib.sha256()
        self.uncompressed_size = 0
        self.size = 0

    def tell(self) -> int:
        return self.uncompressed_size  # tarfile asks once, to learn where the archive starts

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.diff_id.update(view)
        self.uncompressed_size += len(view)
        self._buffer += view
        while len(self._buffer) >= CHUNK:
            self._emit(self._compressor.compress(bytes(self._buffer[:CHUNK])))
            del self._buffer[:CHUNK]
        return len(view)

    def finish(self) -> None:
        if self._buffer:
            self._emit(self._compressor.compress(bytes(self._buffer)))
            self._buffer.clear()
        self._emit(self._compressor.flush())

    def _emit(self, data: bytes) -> None:
        if data:
            self.digest.update(data)
            self.size += len(data)
            self._out.write(data)


def _tarinfo(entry: FsEntry, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = mtime
    info.mode = entry.mode & 0o7777
    info.uid = entry.uid
    info.gid = entry.gid
    info.uname = ""
    info.gname = ""
    if entry.kind is EntryKind.FILE:
        info.type = tarfile.REGTYPE
        info.size = size
    elif entry.kind is EntryKind.DIR:
        info.type = tarfile.DIRTYPE
    elif entry.kind is EntryKind.SYMLINK:
        info.type = tarfile.SYMTYPE
        info.linkname = entry.linkname
    else:
        info.type = tarfile.LNKTYPE
        info.linkname = entry.linkname
    return info


def _open_content(entry: FsEntry) -> tuple[BinaryIO, int]:
    if isinstance(entry.content, Path):
        try:
            handle = entry.content.open("rb")
        except OSError as exc:
            raise DistillError(
                f"cannot read the staged content of /{entry.path}: {exc}",
                hint="the staging directory changed during the build; build again",
            ) from exc
        return handle, os.fstat(handle.fileno()).st_size
    data = entry.content if isinstance(entry.content, bytes) else b""
    return io.BytesIO(data), len(data)


def _write_tar(entries: list[FsEntry], sink: _HashingSink, mtime: int) -> None:
    with tarfile.TarFile(
        fileobj=sink,  # type: ignore[arg-type]
        mode="w",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
        copybufsize=CHUNK,
    ) as tar:
        for entry in entries:
            if entry.kind is not EntryKind.FILE:
                tar.addfile(_tarinfo(entry, 0, mtime))
                continue
            handle, size = _open_content(entry)
            with handle:
                try:
                    tar.addfile(_tarinfo(entry, size, mtime), handle)
                except OSError as exc:
                    # tarfile says "unexpected end of data" when the file shrank; anything
                    # else (a full disk) is the caller's to report.
                    if isinstance(handle, io.BytesIO) or os.fstat(handle.fileno()).st_size == size:
                        raise
                    raise DistillError(
                        f"the staged content of /{entry.path} changed while being read",
                        hint="the staging directory changed during the build; build again",
                    ) from exc


def write_layer(
    entries: Iterable[FsEntry],
    dest_dir: Path,
    *,
    compression: Compression = Compression.GZIP,
    source_date_epoch: int,
) -> LayerBlob:
    """Write ``entries`` as one layer blob into ``dest_dir``, named by its hex digest.

    File contents are streamed: memory use does not grow with the layer. The blob appears
    under its final name only when complete; an existing blob of that name (the same bytes)
    is replaced.
    """
    ordered = ordered_entries(entries)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfiles.mkstemp(dest_dir, ".layer")  # swept by BlobCache.sweep
    except OSError as exc:
        raise DistillError(
            f"cannot write a layer into {dest_dir}: {exc.strerror or exc}",
            hint="check that the directory is writable and the disk has space",
        ) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            sink = _HashingSink(out, compression)
            _write_tar(ordered, sink, source_date_epoch)
            sink.finish()
        hex_digest = sink.digest.hexdigest()
        os.chmod(tmp, 0o644)
        final = dest_dir / hex_digest
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DistillError(
            f"cannot write a layer into {dest_dir}: {exc.strerror or exc}",
            hint="check that the directory is writable and the disk has space",
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return LayerBlob(
        digest=f"sha256:{hex_digest}",
        diff_id=f"sha256:{sink.diff_id.hexdigest()}",
        size=sink.size,
        media_type=compression.media_type,
        uncompressed_size=sink.uncompressed_size,
        file_count=len(ordered),
        path=final,
    )
