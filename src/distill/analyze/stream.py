"""A layer blob as a stream of the tar inside, checked against its digests as it is read.

The compression is taken from the blob's first bytes, not from the media type: docker
archives say nothing, and some registries and tools label layers wrongly. The stored bytes
are hashed on the way in (``digest``, ``size``) and the tar on the way out (``diff_id``);
when the reader reaches the end, a mismatch is a ``DistillError`` naming the layer. Nothing
is buffered beyond one read, so memory does not grow with the layer.
"""

from __future__ import annotations

import hashlib
import sys
from typing import BinaryIO, cast

from isal import isal_zlib

from distill.analyze.model import LayerDescriptor
from distill.errors import DistillError
from distill.oci.layer import CHUNK, Compression, decompressed

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# What the decompressors raise for bad or short data (and OSError for an unreadable file).
_BAD_DATA: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    ValueError,
    cast(type[Exception], isal_zlib.error),
    zstd.ZstdError,
)
_UNSUPPORTED = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x04\x22\x4d\x18": "lz4"}


def sniff_compression(head: bytes) -> Compression:
    """The compression of a blob that starts with ``head`` (at least 6 bytes, or all)."""
    if head.startswith(GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    for magic, name in _UNSUPPORTED.items():
        if head.startswith(magic):
            raise DistillError(
                f"a layer is compressed with {name}, which container runtimes do not accept",
                hint="layers are tar, gzip or zstd; recompress the layer",
            )
    return Compression.NONE


class _RawCounter:
    """The stored bytes: hashed and counted as the decompressor pulls them."""

    def __init__(self, raw: BinaryIO, head: bytes) -> None:
        self._raw = raw
        self._head = head
        self.hash = hashlib.sha256(head)
        self.size = len(head)

    def read(self, size: int = -1) -> bytes:
        if self._head:
            # The sniffed bytes (already hashed and counted) come first, as asked for.
            if size < 0:
                data, self._head = self._head, b""
                return data + self.read()
            data, self._head = self._head[:size], self._head[size:]
            return data
        data = self._raw.read(size)
        self.hash.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        pass  # the raw stream is the LayerStream's to close


class LayerStream:
    """The uncompressed tar of one layer. Read it to the end (``finish()`` does) to have it
    checked; ``close()`` alone does not check, so an aborted read is not an error."""

    def __init__(self, raw: BinaryIO, layer: LayerDescriptor) -> None:
        self.layer = layer
        self._raw = raw
        head = _read_head(raw, 6)
        try:
            self.compression = sniff_compression(head)
        except DistillError as exc:
            raise DistillError(f"{self._what()}: {exc.message}", exc.hint) from None
        self._counter = _RawCounter(raw, head)
        self._tar = decompressed(self._counter, self.compression)  # type: ignore[arg-type]
        self._diff = hashlib.sha256()
        self.tar_size = 0
        self._checked = False
        self._needed = 0  # the tar must be at least this long: the end of its last member
        self._needed_by = ""

    def _what(self) -> str:
        return f"{self.layer.label} at {self.layer.location}"

    @property
    def stored_size(self) -> int:
        return self._counter.size

    def read(self, size: int = -1) -> bytes:
        if self._checked:
            return b""
        try:
            data: bytes = self._tar.read(size)
        except _BAD_DATA as exc:
            raise DistillError(
                f"{self._what()} is damaged: its {self.compression} data is truncated or "
                f"corrupt ({exc or type(exc).__name__})",
                hint="fetch or save the image again",
            ) from exc
        self._diff.update(data)
        self.tar_size += len(data)
        if not data and size != 0:
            self._verify()
        return data

    def readable(self) -> bool:
        return True

    def expect(self, end: int, member: str) -> None:
        """The tar reader has seen ``member``, whose data ends at byte ``end`` of the tar:
        a tar that ends sooner is reported as truncated (tarfile's stream mode skips data
        without checking that it was there)."""
        self._needed = end
        self._needed_by = member

    def finish(self) -> None:
        """Read whatever the tar reader left (end-of-archive padding) and check digests."""
        while self.read(CHUNK):
            pass

    def _verify(self) -> None:
        self._checked = True
        while self._counter.read(CHUNK):  # bytes after the compressed stream still count
            pass
        layer = self.layer
        what = self._what()
        if self.tar_size < self._needed:
            raise DistillError(
                f"{what} is truncated: its tar ends at byte {self.tar_size}, inside "
                f"{self._needed_by!r}, which needs {self._needed}",
                hint="the blob was cut short; fetch or save the image again",
            )
        stored = f"sha256:{self._counter.hash.hexdigest()}"
        if self._counter.size != layer.size:
            raise DistillError(
                f"{what} is {self._counter.size} bytes, but the manifest says {layer.size}",
                hint="the blob is truncated or damaged; fetch or save the image again",
            )
        if layer.digest is not None and stored != layer.digest:
            raise DistillError(
                f"{what} does not match its digest: it hashes to {stored}",
                hint="the blob is damaged or was replaced; fetch or save the image again",
            )
        diff_id = f"sha256:{self._diff.hexdigest()}"
        if layer.diff_id is not None and diff_id != layer.diff_id:
            raise DistillError(
                f"{what} does not match its diff_id {layer.diff_id}: its tar hashes to {diff_id}",
                hint="the layer is damaged, or the config lists other layers than the manifest",
            )

    def close(self) -> None:
        try:
            self._tar.close()
        finally:
            self._raw.close()

    def __enter__(self) -> LayerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_head(raw: BinaryIO, size: int) -> bytes:
    head = b""
    while len(head) < size:
        data = raw.read(size - len(head))
        if not data:
            break
        head += data
    return head
