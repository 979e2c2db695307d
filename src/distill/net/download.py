"""Verified, resumable, parallel downloads into the blob cache.

Modelled on pip's downloader: bytes are streamed to a partial file in the cache's tmp dir
and hashed on the way, transient failures (connection trouble, 5xx, a truncated body) are
retried with exponential backoff, resuming with ``Range`` where the server allows it, and
nothing reaches the cache before its size and sha256 check out. Every download is a
transfer held to :mod:`distill.net.deadline`'s limits: one that stalls, or moves less than the
minimum rate, fails instead of waiting forever; redirects go to http(s) only.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import requests

from distill.bounded import one_line
from distill.cache import BlobCache, is_sha256
from distill.errors import DistillError
from distill.net.deadline import Deadline, Limits, read_some, send
from distill.net.http import (
    CHUNK_SIZE,
    DEFAULT_RETRY,
    NETWORK_ERRORS,
    RETRY_STATUSES,
    RetryPolicy,
    Transient,
    content_length,
    make_session,
    range_headers,
    resumed_at,
    retry_after,
    validator,
)
from distill.net.request import DownloadRequest as DownloadRequest  # its old home

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_JOBS = 8

_GONE_STATUSES = frozenset({404, 410})
# A body read can also fail as any other requests error (a broken chunked encoding, say).
_READ_ERRORS: tuple[type[Exception], ...] = (*NETWORK_ERRORS, requests.RequestException)

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just received; negative when a restart discards bytes."""


class _Cancelled(Exception):
    """Another download of the same batch failed; stop quietly."""


class _Partial:
    """What has been received so far: the open file, its length and running hash."""

    def __init__(self, fh: BinaryIO, progress_cb: ProgressCallback | None) -> None:
        self.fh = fh
        self.progress_cb = progress_cb
        self.size = 0
        self.hasher = hashlib.sha256()
        self.validator: str | None = None  # for If-Range: ETag or Last-Modified
        self.resumed = False

    def append(self, chunk: bytes) -> None:
        self.fh.write(chunk)
        self.hasher.update(chunk)
        self.size += len(chunk)
        if self.progress_cb is not None:
            self.progress_cb(len(chunk))

    def restart(self) -> None:
        self.fh.seek(0)
        self.fh.truncate()
        if self.progress_cb is not None and self.size:
            self.progress_cb(-self.size)
        self.size = 0
        self.hasher = hashlib.sha256()
        self.resumed = False


def fetch_blob(
    req: DownloadRequest,
    cache: BlobCache,
    session: requests.Session | None = None,
    progress_cb: ProgressCallback | None = None,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
    limits: Limits | None = None,
) -> Path:
    """The cached blob for ``req``, downloading and verifying it first if needed."""
    return _fetch_blob(req, cache, session, progress_cb, retry, None, limits or Limits.from_env())


def _fetch_blob(
    req: DownloadRequest,
    cache: BlobCache,
    session: requests.Session | None,
    progress_cb: ProgressCallback | None,
    retry: RetryPolicy,
    stop: threading.Event | None,
    limits: Limits,
) -> Path:
    if not is_sha256(req.sha256):
        raise DistillError(
            f"{req.name} has an invalid sha256 {req.sha256!r}: {req.url}",
            hint="the lock file looks damaged; re-lock to regenerate it",
        )
    cached = cache.get(req.sha256, req.size)
    if cached is not None:
        return cached
    part = cache.tmp_path(req.sha256[:12] + "-")
    done = False
    try:
        with _session_for(session) as sess:
            try:
                with part.open("wb") as fh:
                    partial = _Partial(fh, progress_cb)
                    _download(req, partial, sess, retry, stop, limits)
            except OSError as exc:
                raise DistillError(
                    f"could not write {req.name} to {part} while fetching {req.url}: "
                    f"{exc.strerror or exc}",
                    hint="check free space and permissions of the cache directory "
                    "(DISTILL_CACHE_DIR moves it)",
                ) from exc
        _verify(req, partial)
        path = cache.put_file(part, req.sha256, req.size)
        done = True
        return path
    finally:
        if not done:
            part.unlink(missing_ok=True)


def _verify(req: DownloadRequest, partial: _Partial) -> None:
    if req.size is not None and partial.size != req.size:
        raise _size_mismatch(req, partial.size)
    actual = partial.hasher.hexdigest()
    if actual != req.sha256.lower():
        raise DistillError(
            f"hash mismatch for {req.name}: expected {req.sha256.lower()}, got {actual} "
            f"(from {req.url})",
            hint="the mirror may be out of sync (caught mid-update) or something between "
            "altered the file; try again later or use another mirror. Nothing was cached.",
        )


def _size_mismatch(req: DownloadRequest, got: int) -> DistillError:
    return DistillError(
        f"size mismatch for {req.name}: expected {req.size} bytes, got "
        f"{'more than ' if req.size is not None and got > req.size else ''}{got} "
        f"(from {req.url})",
        hint="the mirror may be out of sync (caught mid-update); try again later or use "
        "another mirror. Nothing was cached.",
    )


def _download(
    req: DownloadRequest,
    partial: _Partial,
    session: requests.Session,
    retry: RetryPolicy,
    stop: threading.Event | None,
    limits: Limits,
) -> None:
    last: Transient | None = None
    for attempt in range(max(retry.attempts, 1)):
        if last is not None:
            _sleep(retry.pause(attempt - 1, last.retry_after, limits.timeout), stop)
        if req.size is not None and partial.size == req.size:
            # A previous attempt got every byte before failing; a Range past the end
            # would only earn a 416.
            return
        try:
            _attempt(req, partial, session, stop, limits.transfer(_what(req.name, req.url)))
        except Transient as exc:
            last = exc
            continue
        last_chance = attempt == retry.attempts - 1
        if partial.resumed and not last_chance and partial.hasher.hexdigest() != req.sha256.lower():
            # Spliced from two versions of the file despite If-Range: fetch it whole.
            partial.restart()
            last = Transient("content changed while resuming")
            continue
        return
    assert last is not None
    raise DistillError(
        f"could not download {req.name} after {retry.attempts} attempts ({last.reason}): {req.url}",
        hint="the network or the mirror is having trouble; try again, or use another mirror "
        "(check http_proxy/https_proxy if you are behind a proxy)",
    )


def _attempt(
    req: DownloadRequest,
    partial: _Partial,
    session: requests.Session,
    stop: threading.Event | None,
    deadline: Deadline,
) -> None:
    # Identity encoding: the bytes on disk must be the bytes that were hashed upstream.
    headers = {"Accept-Encoding": "identity", **range_headers(partial.size, partial.validator)}
    with _get(session, req.url, req.name, headers, deadline) as resp:
        if resp.status_code == 416 and partial.size:
            partial.restart()
            raise Transient("server refused to resume (HTTP 416)")
        _check_status(resp, req.name, gone_hint=_GONE_HINT)
        if resp.status_code == 206:
            if not resumed_at(resp, partial.size):
                partial.restart()
                raise Transient("server resumed at the wrong offset")
            partial.resumed = partial.size > 0
        else:
            # A full body: the server ignored our Range (or the file changed); start over.
            if partial.size:
                partial.restart()
            partial.validator = validator(resp)
        expected_len = content_length(resp)
        received = 0
        try:
            while chunk := read_some(resp, CHUNK_SIZE, deadline):
                if stop is not None and stop.is_set():
                    raise _Cancelled
                partial.append(chunk)
                received += len(chunk)
                if req.size is not None and partial.size > req.size:
                    raise _size_mismatch(req, partial.size)
        except _READ_ERRORS as exc:
            raise Transient(f"connection lost after {partial.size} bytes: {exc}") from exc
        # urllib3 2 raises on a short body by itself; 1.x (still allowed by requests) does not.
        if expected_len is not None and received < expected_len:
            raise Transient(f"body truncated at {received} of {expected_len} bytes")


_GONE_HINT = (
    "the mirror has moved on since this was locked (Debian removes superseded versions); "
    "re-lock to pick up current versions, or use a snapshot mirror"
)


def fetch_bytes(
    url: str,
    session: requests.Session | None = None,
    *,
    name: str | None = None,
    max_size: int = DEFAULT_MAX_BYTES,
    retry: RetryPolicy = DEFAULT_RETRY,
    limits: Limits | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A small file (e.g. InRelease) in memory, with the same retry policy and limits as
    blobs. Refuses bodies larger than ``max_size`` bytes."""
    label = name or url.rstrip("/").rsplit("/", 1)[-1] or url
    limits = limits or Limits.from_env()
    last: Transient | None = None
    with _session_for(session) as sess:
        for attempt in range(max(retry.attempts, 1)):
            if last is not None:
                _sleep(retry.pause(attempt - 1, last.retry_after, limits.timeout), None)
            try:
                deadline = limits.transfer(_what(label, url))
                return _attempt_bytes(sess, url, label, max_size, deadline, headers or {})
            except Transient as exc:
                last = exc
    assert last is not None
    raise DistillError(
        f"could not download {label} after {retry.attempts} attempts ({last.reason}): {url}",
        hint="the network or the mirror is having trouble; try again, or use another mirror "
        "(check http_proxy/https_proxy if you are behind a proxy)",
    )


def _attempt_bytes(
    session: requests.Session,
    url: str,
    label: str,
    max_size: int,
    deadline: Deadline,
    headers: dict[str, str],
) -> bytes:
    with _get(session, url, label, headers, deadline) as resp:
        _check_status(
            resp,
            label,
            gone_hint="check the mirror URL and the suite name; the mirror may not carry it",
        )
        declared = content_length(resp)
        if declared is not None and declared > max_size:
            raise _too_large(label, url, max_size)
        body = bytearray()
        try:
            while chunk := read_some(resp, CHUNK_SIZE, deadline, decode=True):
                body += chunk
                if len(body) > max_size:
                    raise _too_large(label, url, max_size)
        except _READ_ERRORS as exc:
            raise Transient(f"connection lost after {len(body)} bytes: {exc}") from exc
        encoded = "Content-Encoding" in resp.headers
        if declared is not None and not encoded and len(body) < declared:
            raise Transient(f"body truncated at {len(body)} of {declared} bytes")
        return bytes(body)


def _too_large(label: str, url: str, max_size: int) -> DistillError:
    return DistillError(
        f"{label} is larger than the {max_size} bytes allowed: {url}",
        hint="this does not look like the file distill expected; check the mirror URL",
    )


def _what(label: str, url: str) -> str:
    return f"{one_line(label, 200)} from {one_line(urllib.parse.urlsplit(url).netloc, 100)}"


@contextmanager
def _get(
    session: requests.Session,
    url: str,
    label: str,
    headers: dict[str, str],
    deadline: Deadline,
) -> Iterator[requests.Response]:
    try:
        resp = send(session, "GET", url, deadline=deadline, follow_redirects=True, headers=headers)
    except requests.exceptions.SSLError as exc:
        # A certificate problem will not fix itself between attempts.
        raise DistillError(
            f"TLS error fetching {label}: {url}: {exc}",
            hint="check the system's CA certificates and the mirror URL, or a proxy that "
            "intercepts TLS",
        ) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise Transient(f"could not connect: {exc}") from exc
    except requests.RequestException as exc:
        raise DistillError(
            f"cannot fetch {label}: {url}: {one_line(str(exc), 300)}",
            hint="check the mirror URL (it must start with http:// or https://)",
        ) from exc
    try:
        yield resp
    finally:
        resp.close()


def _check_status(resp: requests.Response, label: str, *, gone_hint: str) -> None:
    code = resp.status_code
    if code in (200, 206):
        return
    url = resp.url
    if code in _GONE_STATUSES:
        raise DistillError(f"{label} is gone from the mirror (HTTP {code}): {url}", hint=gone_hint)
    if code in RETRY_STATUSES or code >= 500:
        raise Transient(f"HTTP {code}", retry_after(resp))
    raise DistillError(
        f"HTTP {code} {resp.reason or ''} fetching {label}: {url}".replace("  ", " "),
        hint="the server refused the request; check the mirror URL and any proxy settings "
        "(http_proxy/https_proxy)",
    )


def _sleep(seconds: float, stop: threading.Event | None) -> None:
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise _Cancelled


@contextmanager
def _session_for(session: requests.Session | None) -> Iterator[requests.Session]:
    if session is not None:
        yield session
        return
    own = make_session(1)
    try:
        yield own
    finally:
        own.close()


def fetch_all(
    reqs: Sequence[DownloadRequest],
    cache: BlobCache,
    jobs: int = DEFAULT_JOBS,
    show_progress: bool | None = None,
    *,
    session: requests.Session | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    limits: Limits | None = None,
) -> dict[str, Path]:
    """Fetch every request (``jobs`` at a time) and return their cache paths keyed by
    sha256. The first failure stops the others and is raised. A progress bar is drawn on
    stderr when it is a terminal, unless ``show_progress`` says otherwise."""
    result: dict[str, Path] = {}
    pending: dict[str, DownloadRequest] = {}
    for req in reqs:
        if req.sha256 in result or req.sha256 in pending:
            continue
        cached = cache.get(req.sha256, req.size) if is_sha256(req.sha256) else None
        if cached is not None:
            result[req.sha256] = cached
        else:
            pending[req.sha256] = req
    if not pending:
        return result
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    limits = limits or Limits.from_env()
    stop = threading.Event()
    sess = session if session is not None else make_session(jobs)
    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(pending))))
    try:
        with _progress(list(pending.values()), show_progress) as on_bytes:
            futures = {
                pool.submit(_fetch_blob, req, cache, sess, on_bytes, retry, stop, limits): sha
                for sha, req in pending.items()
            }
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for fut in done:
                exc = fut.exception()
                if exc is not None:
                    raise exc
            for fut, sha in futures.items():
                result[sha] = fut.result()
    finally:
        # On the first error (or Ctrl-C) the queued jobs are dropped and the running ones
        # notice the event at their next chunk or backoff, deleting their partial files.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        if session is None:
            sess.close()
    return result


@contextmanager
def _progress(reqs: Sequence[DownloadRequest], show: bool) -> Iterator[ProgressCallback | None]:
    if not show:
        yield None
        return
    # Imported here: rich is only needed when someone is watching.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    sizes = [r.size for r in reqs if r.size is not None]
    total = sum(sizes) if sizes else None
    noun = "file" if len(reqs) == 1 else "files"
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(f"Downloading {len(reqs)} {noun}", total=total)

        def on_bytes(n: int) -> None:
            progress.advance(task, n)

        yield on_bytes
