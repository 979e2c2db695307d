"""A layer blob as a stream of the tar inside, checked against its digests as it is read.

The compression is taken from the blob's first bytes, not from the media type: docker
archives say nothing, and some registries and tools label layers wrongly. The stored bytes
are hashed on the way in (``digest``, ``size``) and the tar on the way out (``diff_id``);
when the reader reaches the end, a mismatch is a ``DistillError`` naming the layer. Nothing
is buffered beyond one read, so memory does not grow with the layer.
"""

from __future__ import annotations

import hashlib
import io
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
    """The stored bytes: counted, and hashed unless ``hashing`` is off (an uncompressed
    layer's stored bytes are its tar, which the ``LayerStream`` hashes anyway)."""

    def __init__(self, raw: BinaryIO, head: bytes, *, hashing: bool = True) -> None:
        self._raw = raw
        self._head = head
        self.hash = hashlib.sha256(head) if hashing else None
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
        if self.hash is not None:
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
        plain = self.compression is Compression.NONE
        self._counter = _RawCounter(raw, head, hashing=not plain)
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
        """``size`` bytes (all that are left if fewer, or if ``size`` < 0), as a file does:
        ``tarfile`` takes a short read for a truncated archive."""
        data = self._read(size)
        if size < 0 or len(data) == size or not data:
            return data
        parts = [data]
        got = len(data)
        while got < size and (more := self._read(size - got)):
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def _read(self, size: int) -> bytes:
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

    def seekable(self) -> bool:
        """Forward only: ``tarfile`` in ``r:`` mode seeks past the data it does not want,
        which is read (and hashed) in large blocks, not buffered and sliced as its stream
        mode does for every header."""
        return True

    def tell(self) -> int:
        return self.tar_size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self.tar_size + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self.tar_size:
            raise io.UnsupportedOperation("a layer stream only seeks forward")
        while self.tar_size < target and self.read(min(CHUNK, target - self.tar_size)):
            pass
        return self.tar_size

    def expect(self, end: int, member: str) -> None:
        """The tar reader has seen ``member``, whose data ends at byte ``end`` of the tar:
        a tar that ends sooner is reported as truncated (tarfile skips a last member's data
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
        stored_hash = self._counter.hash or self._diff
        stored = f"sha256:{stored_hash.hexdigest()}"
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
