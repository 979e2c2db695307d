"""A blob read from a registry, checked against its digest as it streams, and held to the
minimum rate of :mod:`distill.net.deadline` (a blob that stalls or trickles fails)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from types import TracebackType

import requests

from distill.errors import DistillError
from distill.net.deadline import Deadline, read_some
from distill.net.http import CHUNK_SIZE, NETWORK_ERRORS, RetryPolicy, resumed_at

Opener = Callable[[int], requests.Response]
"""Requests the blob from a byte offset (0: all of it); returns a 200 or 206 response."""


class BlobStream:
    """A blob being read from a registry; checked against its digest (and size) at the end.

    A dropped connection is resumed with ``Range`` from where it stopped, up to
    ``retry.attempts`` times. ``label`` (``HOST/REPO``) names the blob in messages."""

    def __init__(
        self,
        opener: Opener,
        label: str,
        digest: str,
        size: int | None,
        retry: RetryPolicy,
        deadline: Deadline,
    ) -> None:
        self.digest = digest
        self.size = size
        self._opener = opener
        self._label = label
        self._retry = retry
        self._deadline = deadline
        self._resp = opener(0)
        self._hasher = hashlib.sha256()
        self._received = 0
        self._done = False
        self._failures = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK_SIZE), b""))
        out = bytearray()
        while len(out) < size and not self._done:
            chunk = self._chunk(size - len(out))
            if not chunk:
                self._finish()
                break
            out += chunk
        return bytes(out)

    def _chunk(self, size: int) -> bytes:
        while True:
            try:
                chunk = read_some(self._resp, min(size, CHUNK_SIZE), self._deadline)
            except NETWORK_ERRORS as exc:
                if self.size is not None and self._received == self.size:
                    return b""  # every byte is here (the digest decides), whatever was promised
                self._resume(exc)
                continue
            self._hasher.update(chunk)
            self._received += len(chunk)
            if self.size is not None and self._received > self.size:
                self._mismatch(f"more than {self.size} bytes")
            return chunk

    def _resume(self, exc: Exception) -> None:
        """Carry on from byte ``_received`` on a new request, or raise DistillError."""
        retry = self._retry
        while True:
            self._resp.close()
            self._failures += 1
            if self._failures >= retry.attempts:
                raise DistillError(
                    f"the connection broke {self._failures} times while pulling "
                    f"{self._label}@{self.digest}: {exc}",
                    hint="try again; check the network",
                ) from exc
            self._deadline.pause(
                retry.pause(self._failures - 1, None, self._deadline.limits.timeout)
            )
            self._resp = self._opener(self._received)
            if resumed_at(self._resp, self._received):
                return
            if self._resp.status_code != 200:
                raise DistillError(
                    f"could not resume pulling {self._label}@{self.digest} (the registry "
                    f"answered a range request with "
                    f"HTTP {self._resp.status_code})",
                    hint="try again; check the network",
                ) from exc
            # The whole blob again: skip what we have (same digest, so the same bytes).
            try:
                left = self._received
                while left:
                    skipped = len(read_some(self._resp, min(left, CHUNK_SIZE), self._deadline))
                    if not skipped:
                        break
                    left -= skipped
            except NETWORK_ERRORS as again:
                exc = again
                continue
            if not left:
                return
            exc = ConnectionError("the blob ended early while skipping what was already read")

    def _finish(self) -> None:
        self._done = True
        self._resp.close()
        if self.size is not None and self._received != self.size:
            self._mismatch(f"{self._received} bytes, not {self.size}")
        actual = f"sha256:{self._hasher.hexdigest()}"
        if actual != self.digest:
            self._mismatch(f"digest {actual}")

    def _mismatch(self, what: str) -> None:
        self._done = True
        self._resp.close()
        raise DistillError(
            f"the blob {self._label}@{self.digest} has {what}",
            hint="the registry served damaged content (its storage may be corrupt); nothing "
            "from it should be used",
        )

    def close(self) -> None:
        self._resp.close()

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
