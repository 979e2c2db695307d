"""Layer compression: the choices, their media types, and reading a compressed blob.

Apart from ``layer.py`` (which writes layers) so that reading an image does not load the
layer writer, and the codecs load only when a blob needs them.
"""

from __future__ import annotations

import io
import sys
from enum import StrEnum
from types import ModuleType
from typing import BinaryIO, cast

from distill.errors import DistillError
from distill.image.mediatypes import MEDIA_TYPE_LAYER

CHUNK = 1 << 20  # compressor input block; fixed so compressed output is reproducible


class Compression(StrEnum):
    GZIP = "gzip"
    ZSTD = "zstd"
    NONE = "none"

    @property
    def media_type(self) -> str:
        if self is Compression.NONE:
            return MEDIA_TYPE_LAYER
        return f"{MEDIA_TYPE_LAYER}+{self.value}"

    @classmethod
    def from_media_type(cls, media_type: str) -> Compression:
        for member in cls:
            if member.media_type == media_type:
                return member
        raise DistillError(
            f"unsupported layer media type {media_type!r}",
            hint="distill writes tar layers that are uncompressed, gzip or zstd",
        )


def decompressed(raw: BinaryIO, compression: Compression) -> io.BufferedIOBase | BinaryIO:
    """A reader of the tar inside a layer blob opened as ``raw``."""
    if compression is Compression.GZIP:
        from isal import igzip

        return igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call]
    if compression is Compression.ZSTD:
        return cast(BinaryIO, zstd_module().ZstdFile(raw, "rb"))
    return raw


def zstd_module() -> ModuleType:
    """``compression.zstd`` (Python 3.14+) or its backport."""
    if sys.version_info >= (3, 14):
        from compression import zstd
    else:
        from backports import zstd
    return zstd


def decompression_errors() -> tuple[type[Exception], ...]:
    """What the decompressors raise for bad or short data (and OSError for an unreadable
    file)."""
    from isal import isal_zlib

    return (
        OSError,
        EOFError,
        ValueError,
        cast(type[Exception], isal_zlib.error),
        zstd_module().ZstdError,
    )
