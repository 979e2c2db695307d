"""A layer of an image: the blob as stored (compressed) and the tar inside it.

Both views are checked as they are read: ``open_compressed()`` against the blob's digest
and size, ``open_uncompressed()`` against the diff_id. A reader that reaches the end of
damaged data gets a ``DistillError`` naming the layer and where it is, never the data.
Where the blob is a range of a local file (a layout's blob, an archive's member, a built
layer), ``file()`` gives that range, so a writer can copy or upload it without a pass
through Python, and the analysers can hash it on a second thread.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from distill.errors import DistillError
from distill.image.compression import CHUNK, Compression, decompressed, decompression_errors
from distill.image.descriptor import Descriptor
from distill.image.digest import short
from distill.image.mediatypes import MEDIA_TYPE_DOCKER_LAYER, MEDIA_TYPE_LAYER
from distill.image.stream import FileRange, sniff_compression

_UNCOMPRESSED_TYPES = frozenset({MEDIA_TYPE_LAYER, MEDIA_TYPE_DOCKER_LAYER})


class VerifiedReader(io.RawIOBase):
    """``raw``'s bytes, hashed as they pass; at their end, a mismatch with ``digest`` (or
    with ``size``, when given) raises instead of returning end-of-file. ``at_end`` runs
    first (to drain and check what ``raw`` was read from)."""

    def __init__(
        self,
        raw: BinaryIO,
        digest: str,
        size: int | None,
        what: str,
        *,
        at_end: Callable[[], None] | None = None,
        also_close: BinaryIO | None = None,
    ) -> None:
        super().__init__()
        self._also_close = also_close
        self._raw = raw
        self._digest = digest
        self._size = size
        self._what = what
        self._at_end = at_end
        self._hash = hashlib.sha256()
        self.count = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        view = memoryview(buffer).cast("B")  # type: ignore[arg-type]
        if self._done:
            return 0
        try:
            data = self._raw.read(len(view))
        except Exception as exc:
            if isinstance(exc, DistillError) or not isinstance(exc, decompression_errors()):
                raise
            raise DistillError(
                f"{self._what} is damaged: its data is truncated or corrupt "
                f"({exc or type(exc).__name__})",
                hint="the blob is damaged; fetch, save or copy the image again",
            ) from None
        if not data:
            self._finish()
            return 0
        self._hash.update(data)
        self.count += len(data)
        if self._size is not None and self.count > self._size:
            raise DistillError(
                f"{self._what} does not match its digest: it is larger than the {self._size} "
                "bytes its descriptor says",
                hint="the blob is damaged or was replaced; fetch, save or copy the image again",
            )
        view[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        self._done = True
        if self._at_end is not None:
            self._at_end()
        if self._size is not None and self.count != self._size:
            raise DistillError(
                f"{self._what} does not match its digest: it is truncated to {self.count} "
                f"bytes of {self._size}",
                hint="the blob is damaged; fetch, save or copy the image again",
            )
        actual = f"sha256:{self._hash.hexdigest()}"
        if actual != self._digest:
            raise DistillError(
                f"{self._what} does not match its digest: it hashes to {actual}",
                hint="the blob is damaged or was replaced; fetch, save or copy the image again",
            )

    def close(self) -> None:
        try:
            self._raw.close()
            if self._also_close is not None:
                self._also_close.close()
        finally:
            super().close()


def _no_file() -> FileRange | None:
    return None


def _drain(stream: BinaryIO) -> Callable[[], None]:
    def drain() -> None:
        while stream.read(CHUNK):
            pass

    return drain


@dataclass(frozen=True, slots=True, eq=False)
class Layer:
    """One layer. ``digest``, ``size`` and ``media_type`` describe the blob as stored;
    ``diff_id`` the tar inside. ``where`` says where the blob is, for messages; ``origin``
    is ``HOST/REPO`` for a registry's blob (what a cross-repository mount needs)."""

    media_type: str
    digest: str
    size: int
    diff_id: str
    where: str
    opener: Callable[[], BinaryIO] = field(repr=False)
    file: Callable[[], FileRange | None] = field(default=_no_file, repr=False)
    uncompressed_size: int | None = None
    origin: str | None = None

    @classmethod
    def from_file(
        cls,
        path: Path,
        *,
        media_type: str,
        digest: str,
        size: int,
        diff_id: str,
        uncompressed_size: int | None = None,
    ) -> Layer:
        """A layer whose blob is the file ``path`` (as ``distill build`` writes them)."""

        def file() -> FileRange:
            try:
                return FileRange(path)
            except OSError as exc:
                raise DistillError(
                    f"cannot read the layer {short(digest)} at {path}: {exc.strerror or exc}",
                    hint="the layer cache changed since the build; build the image again",
                ) from None

        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            diff_id=diff_id,
            where=str(path),
            opener=lambda: cast(BinaryIO, file()),
            file=file,
            uncompressed_size=uncompressed_size,
        )

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)

    @property
    def label(self) -> str:
        return f"layer {short(self.digest)} at {self.where}"

    @property
    def is_uncompressed(self) -> bool:
        return self.media_type in _UNCOMPRESSED_TYPES

    def open_compressed(self) -> BinaryIO:
        """The blob as stored, checked against ``digest`` and ``size`` as it is read."""
        return cast(BinaryIO, VerifiedReader(self.opener(), self.digest, self.size, self.label))

    def open_uncompressed(self) -> BinaryIO:
        """The tar inside, checked against ``diff_id`` (and the blob against its digest)."""
        stored = io.BufferedReader(cast(io.RawIOBase, self.open_compressed()), CHUNK)
        try:
            compression = sniff_compression(stored.peek(6)[:6])
        except DistillError as exc:
            stored.close()
            raise DistillError(f"{self.label}: {exc.message}", exc.hint) from None
        if compression is Compression.NONE and self.digest == self.diff_id:
            return cast(BinaryIO, stored)  # the blob is the tar: its check is the diff_id's
        tar = decompressed(cast(BinaryIO, stored), compression)
        return cast(
            BinaryIO,
            VerifiedReader(
                cast(BinaryIO, tar),
                self.diff_id,
                self.uncompressed_size,
                f"the tar of {self.label} (diff_id {short(self.diff_id)})",
                at_end=_drain(cast(BinaryIO, stored)),
                also_close=cast(BinaryIO, stored),
            ),
        )
