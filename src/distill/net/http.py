"""The HTTP pieces every client of distill shares: the Debian downloader
(:mod:`distill.net.download`) and the registry client (:mod:`distill.registry.session`).

One session factory (User-Agent, pooled connections, no hidden retries), one retry policy
(exponential backoff with jitter, ``Retry-After`` honoured up to its longest pause), one
table of statuses worth another try, one list of what a dropped connection looks like, and
the ``Range`` helpers that resume a body where it broke off. Deadlines (how long a request
or a transfer may take) are :mod:`distill.net.deadline`'s.
"""

from __future__ import annotations

import http.client
import random
from dataclasses import dataclass

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from distill import __version__

USER_AGENT = f"distill/{__version__} python-requests/{requests.__version__}"
CHUNK_SIZE = 1 << 16
DEFAULT_POOL = 8  # connections per host: enough for the default number of parallel jobs

# Worth another try: the server or something in between is having a bad moment.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# What a dropped or stalled connection looks like, depending on where in requests/urllib3
# it surfaces; reading ``resp.raw`` directly raises the urllib3 ones unwrapped.
NETWORK_ERRORS: tuple[type[Exception], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


class Transient(Exception):
    """A failed attempt that deserves another one (throttling, gateway trouble, a dropped
    connection, a truncated body)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (0-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        backoff = min(self.base_delay * 2.0**retry_number, self.max_delay)
        # Jitter keeps parallel jobs that failed together from retrying in lockstep.
        return backoff * random.uniform(0.8, 1.0)

    def pause(self, retry_number: int, retry_after: float | None, longest: float) -> float:
        """:meth:`delay`, never longer than ``longest`` (a deadline's timeout): a pause may
        not outlast what a stalled server would be allowed."""
        return min(self.delay(retry_number, retry_after), longest)


DEFAULT_RETRY = RetryPolicy()


def make_session(jobs: int = DEFAULT_POOL) -> requests.Session:
    """A session with distill's User-Agent and enough pooled connections per host for
    ``jobs`` parallel transfers. Proxies come from the environment, as requests does."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    # Retries are ours (with resume); urllib3's own would restart bodies from zero.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(jobs, 1), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def retry_after(resp: requests.Response) -> float | None:
    """``Retry-After`` in seconds; the HTTP-date form is rare, and backoff stands in for it."""
    value = resp.headers.get("Retry-After", "").strip()
    return float(value) if value.isascii() and value.isdigit() else None


def content_length(resp: requests.Response) -> int | None:
    value = resp.headers.get("Content-Length", "").strip()
    return _count(value)


def range_headers(offset: int, validator: str | None = None) -> dict[str, str]:
    """What asks for a body from byte ``offset`` on; ``validator`` (If-Range) makes the
    server send the whole body instead when it has changed since."""
    if not offset:
        return {}
    headers = {"Range": f"bytes={offset}-"}
    if validator:
        headers["If-Range"] = validator
    return headers


def resumed_at(resp: requests.Response, offset: int) -> bool:
    """Whether ``resp`` is a partial answer that starts exactly at ``offset``."""
    return resp.status_code == 206 and range_start(resp.headers.get("Content-Range")) == offset


def range_start(content_range: str | None) -> int | None:
    """The first byte of ``Content-Range: bytes FIRST-LAST/SIZE``."""
    if not content_range or not content_range.startswith("bytes "):
        return None
    return _count(content_range[6:].partition("-")[0].strip())


def validator(resp: requests.Response) -> str | None:
    """The strong validator to resume this body with (``If-Range``), if it has one."""
    etag = resp.headers.get("ETag")
    # RFC 9110 forbids weak validators in If-Range.
    if etag and not etag.startswith("W/"):
        return etag
    return resp.headers.get("Last-Modified")


def _count(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None
