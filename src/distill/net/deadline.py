"""HTTP exchanges bounded in time and in where they may lead (registries and mirrors alike).

requests' ``timeout=`` bounds each socket operation, not an exchange: a server that sends
one byte a second never trips it, and one that redirects to itself or to ``file://`` ends
in a requests exception. Here:

* a **request** (connect, send, headers and a small body: a manifest, a token, an error,
  an upload's answer) has ``timeout`` seconds in all;
* a **transfer** (a layer, a ``.deb``, an upload of a blob) may take as long as it moves:
  in every window of ``timeout`` seconds at least ``min_rate`` bytes a second must go
  through, or it fails. A stall is a transfer that moves nothing.

Both come from one :class:`Limits` (``DISTILL_TIMEOUT`` and ``DISTILL_MIN_RATE``). The
wait for an answer runs in a helper thread that is given up on at the deadline, since a
trickling header is as slow as a trickling body; bodies are read one socket read at a time
so the clock is checked between reads. Redirects are followed here, only to http(s), at
most ``MAX_REDIRECTS`` times, and never from https to plain http while TLS is verified.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, TypeVar, cast

import requests
import urllib3.exceptions

from distill.bounded import DAMAGED_HINT, one_line, read_capped
from distill.errors import DistillError

TIMEOUT_ENV = "DISTILL_TIMEOUT"
MIN_RATE_ENV = "DISTILL_MIN_RATE"
DEFAULT_TIMEOUT = 30.0  # seconds
DEFAULT_MIN_RATE = 1024  # bytes per second, averaged over a window of DEFAULT_TIMEOUT
CONNECT_TIMEOUT = 15.0
MAX_REDIRECTS = 10  # Go's http client (and so containers/image) stops at 10 too
READ_SIZE = 1 << 16
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SOCKET_TIMEOUTS = (
    requests.Timeout,
    urllib3.exceptions.TimeoutError,
    TimeoutError,
    socket.timeout,
)

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Limits:
    """How long distill waits on a server: ``timeout`` seconds for a request, and at least
    ``min_rate`` bytes a second over each ``timeout`` seconds of a transfer."""

    timeout: float = DEFAULT_TIMEOUT
    min_rate: int = DEFAULT_MIN_RATE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        env = os.environ if env is None else env
        return cls(
            _number(env, TIMEOUT_ENV, DEFAULT_TIMEOUT, float),
            int(_number(env, MIN_RATE_ENV, DEFAULT_MIN_RATE, int)),
        )

    @property
    def socket_timeout(self) -> tuple[float, float]:
        """requests' (connect, read) timeouts: no socket operation outlives the deadline."""
        return min(CONNECT_TIMEOUT, self.timeout), self.timeout

    def request(self, what: str) -> Deadline:
        return Deadline(self, what, progressive=False)

    def transfer(self, what: str) -> Deadline:
        return Deadline(self, what, progressive=True)

    @property
    def hint(self) -> str:
        return (
            "the server or the network is too slow, or stalled; to wait longer set "
            f"{TIMEOUT_ENV}=SECONDS (now {self.timeout:g}) or lower "
            f"{MIN_RATE_ENV}=BYTES_PER_SECOND (now {self.min_rate})"
        )


def _number(env: Mapping[str, str], name: str, default: float, kind: type) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(kind(text))
    except ValueError:
        value = -1.0
    if not value > 0 or value > 1e7:
        raise DistillError(
            f"{name}={one_line(text, 40)!r} is not a positive number",
            hint=f"set {name} to a number of "
            + ("seconds" if name == TIMEOUT_ENV else "bytes per second")
            + f", or unset it for the default ({default:g})",
        )
    return value


class Deadline:
    """The clock of one request or transfer. ``what`` names it in the error (host and
    request or blob). Thread-safe enough: ``moved`` may be called from a sending thread."""

    def __init__(self, limits: Limits, what: str, *, progressive: bool) -> None:
        self.limits = limits
        self.what = what
        self.progressive = progressive
        self._window_start = time.monotonic()
        self._window_bytes = 0

    def moved(self, nbytes: int) -> None:
        self._window_bytes += nbytes

    def pause(self, seconds: float) -> None:
        """Sleep (a retry's backoff) without the time counting against a transfer's rate."""
        time.sleep(seconds)
        if self.progressive:
            self._window_start += seconds

    def remaining(self) -> float:
        """Seconds until the deadline (for a transfer: the end of the current window)."""
        return self._window_start + self.limits.timeout - time.monotonic()

    def check(self) -> None:
        """Raise the deadline's error when it has passed; a transfer that moved enough in
        the window just ended starts a new one."""
        while self.remaining() <= 0:
            needed = self.limits.min_rate * self.limits.timeout
            if not self.progressive or self._window_bytes < needed:
                raise self.expired()
            self._window_start += self.limits.timeout
            self._window_bytes = 0

    def expired(self, *, stalled: bool = False) -> DistillError:
        timeout = self.limits.timeout
        if not self.progressive:
            text = f"gave up on {self.what} after {timeout:g} s"
        elif stalled or self._window_bytes == 0:
            text = f"gave up on {self.what}: nothing moved for {timeout:g} s"
        else:
            text = (
                f"gave up on {self.what}: {self._window_bytes} bytes in {timeout:g} s, "
                f"below the minimum of {self.limits.min_rate} bytes/s"
            )
        return DistillError(text, hint=self.limits.hint)

    def call(self, func: Callable[[], R], discard: Callable[[R], None]) -> R:
        """``func()`` in a helper thread, given up on at the deadline (the thread is left to
        end on its socket timeout; what it returns then goes to ``discard``)."""
        lock = threading.Lock()
        box: list[tuple[bool, Any]] = []
        finished = threading.Event()
        abandoned = False

        def run() -> None:
            try:
                outcome: tuple[bool, Any] = (True, func())
            except BaseException as exc:  # handed to the waiting thread
                outcome = (False, exc)
            with lock:
                box.append(outcome)
                late = abandoned
            finished.set()
            if late and outcome[0]:
                discard(outcome[1])

        threading.Thread(target=run, name="distill-http", daemon=True).start()
        while not finished.wait(max(self.remaining(), 0.01)):
            try:
                self.check()
            except DistillError:
                with lock:
                    if not box:
                        abandoned = True
                if abandoned:
                    raise
                break
        ok, value = box[0]
        if not ok:
            raise value
        return cast(R, value)


def check_location(current: str, location: str, *, verify: bool, what: str) -> str:
    """The absolute URL a ``Location`` (a redirect's, or an upload's next URL) leads to
    from ``current``; an error unless it is http(s) and, while TLS is verified,
    no step down from https to http."""
    target = urllib.parse.urljoin(current, location.strip())
    scheme = urllib.parse.urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise DistillError(
            f"{what}: the server sent distill to {one_line(target, 120)!r}, "
            "which is not an http(s) URL",
            hint="the server is misconfigured or hostile; tell its operator",
        )
    if verify and scheme == "http" and urllib.parse.urlsplit(current).scheme == "https":
        raise DistillError(
            f"{what}: the server redirected from https to plain http ({one_line(target, 120)!r})",
            hint="refusing to leave TLS; pass --no-tls-verify only if you accept that",
        )
    return target


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
    return (pa.scheme, pa.netloc.lower()) == (pb.scheme, pb.netloc.lower()) or (
        pa.scheme == "http" and pb.scheme == "https" and pa.hostname == pb.hostname
    )


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    verify: bool = True,
    follow_redirects: bool = False,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> requests.Response:
    """``session.request`` (always streamed) within ``deadline``, redirects followed here
    (see the module docstring; credentials are not carried to another host). The caller
    reads the body (with :func:`read_some` or :func:`read_body`) and closes it."""
    sent = dict(headers or {})
    for _ in range(MAX_REDIRECTS + 1):
        try:
            resp = deadline.call(
                functools.partial(
                    session.request,
                    method,
                    url,
                    headers=sent,
                    stream=True,
                    allow_redirects=False,
                    timeout=deadline.limits.socket_timeout,
                    verify=verify,
                    **kwargs,
                ),
                discard=requests.Response.close,
            )
        except requests.ConnectTimeout:
            raise  # no answer to connect: worth another try, as a refused connection is
        except _SOCKET_TIMEOUTS as exc:
            raise deadline.expired(stalled=True) from exc
        location = resp.headers.get("Location")
        if not (follow_redirects and resp.status_code in _REDIRECTS and location):
            return resp
        resp.close()
        target = check_location(url, location, verify=verify, what=deadline.what)
        if not _same_origin(url, target):
            sent.pop("Authorization", None)
        kwargs.pop("params", None)  # the Location carries its own query
        url = target
    raise DistillError(
        f"{deadline.what}: the server redirected more than {MAX_REDIRECTS} times",
        hint="the server is misconfigured (a redirect loop?); tell its operator",
    )


def _set_socket_timeout(resp: requests.Response, seconds: float) -> None:
    # Between reads the socket's own timeout is what is left of the deadline, so a read
    # that waits cannot outlast it.
    conn = getattr(resp.raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(max(seconds, 0.01))


def read_some(
    resp: requests.Response, size: int, deadline: Deadline, *, decode: bool = False
) -> bytes:
    """At most ``size`` bytes of the body (b"" at its end): one socket read at most, after
    checking the deadline. A socket that stays silent until the deadline ends it too."""
    deadline.check()
    # A transfer may wait a whole window for its next byte; a request only what is left.
    wait = deadline.limits.timeout if deadline.progressive else deadline.remaining()
    _set_socket_timeout(resp, wait)
    try:
        data = resp.raw.read1(size, decode_content=decode)
    except _SOCKET_TIMEOUTS as exc:
        raise deadline.expired(stalled=True) from exc
    deadline.moved(len(data))
    return data


class _Body(io.RawIOBase):
    """A response body as a file whose reads keep to a deadline (for read_capped)."""

    def __init__(self, resp: requests.Response, deadline: Deadline) -> None:
        self._resp = resp
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            want = READ_SIZE if size < 0 else min(READ_SIZE, size - len(out))
            chunk = read_some(self._resp, want, self._deadline, decode=True)
            if not chunk:
                break
            out += chunk
        return bytes(out)


def read_body(
    resp: requests.Response, limit: int, deadline: Deadline, where: str, *, hint: str = DAMAGED_HINT
) -> bytes:
    """The whole (decoded) body, at most ``limit`` bytes, within ``deadline``: the one way
    distill reads a small document from a server."""
    return read_capped(cast(IO[bytes], _Body(resp, deadline)), limit, where, hint=hint)
