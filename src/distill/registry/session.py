"""The HTTP side of registry access: scheme, authentication, retries, error messages.

Internal to :mod:`distill.registry`; :class:`~distill.registry.client.RegistryClient` is
the interface.

Scheme: ``https://HOST``. When TLS checks are off (``tls_verify=False``) or the host is
this machine, https is tried first and plain http after it, as containers/image does for
insecure registries; with TLS checks off, certificates are not verified either. The first
request (``GET /v2/``) decides the scheme and learns how the registry authenticates (see
:mod:`distill.registry.auth`); a 401 later on is answered once, with a fresh token for
whatever scopes its challenge names.

Throttling and server trouble (:data:`~distill.net.http.RETRY_STATUSES`; ``Retry-After``
honoured, up to the retry policy's longest pause) and dropped connections are retried with backoff,
except for requests that carry part of an upload: those raise :class:`Transient` so the
upload can start over.

Every request keeps to the deadlines of :mod:`distill.net.deadline` (``DISTILL_TIMEOUT``,
``DISTILL_MIN_RATE``): a request, its small body included, has ``timeout`` seconds; an
upload of a file is a transfer, held to the minimum rate instead. Redirects (reads only)
and upload locations are followed to http(s) only. Bodies of errors and of answers without
a payload are read here, capped; others by the caller through :meth:`read_body`.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests
import urllib3.exceptions

from distill.bounded import one_line, parse_json
from distill.context import Credentials
from distill.errors import DistillError
from distill.net.deadline import Deadline, Limits, read_body, send
from distill.net.http import (
    CHUNK_SIZE,
    DEFAULT_RETRY,
    NETWORK_ERRORS,
    RETRY_STATUSES,
    RetryPolicy,
    Transient,
    make_session,
    retry_after,
)
from distill.registry.auth import (
    CREDENTIALS_HINT,
    Challenge,
    Token,
    fetch_token,
    find_credentials,
    pick_challenge,
)
from distill.registry.reference import check_host, check_repository, is_loopback

ERROR_BODY_LIMIT = 64 << 10  # what distill reads of an error (or an empty answer's) body
_PATHS = re.compile(
    r"/v2/(?P<repo>.+?)/(?:(?P<uploads>blobs/uploads)(?:/.*)?|(?P<kind>manifests|blobs)/(?P<ref>[^/]+))"
)


class UploadAborted(Exception):
    """An upload's body stopped being sent by :meth:`RegistrySession.abort_uploads`."""


@dataclass(frozen=True, slots=True)
class Body:
    """A request body that can be sent again: bytes, or a slice of a file."""

    data: bytes | None = None
    path: Path | None = None
    offset: int = 0
    length: int = 0

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.length

    @contextmanager
    def open(self, on_read: Callable[[int], None] | None = None) -> Iterator[bytes | FileSlice]:
        if self.data is not None:
            yield self.data
            return
        assert self.path is not None
        try:
            fh = self.path.open("rb")
        except OSError as exc:
            raise DistillError(
                f"cannot read {self.path}: {exc.strerror or exc}",
                hint="the blob to upload is missing; build the image again",
            ) from exc
        with fh:
            fh.seek(self.offset)
            yield FileSlice(fh, self.length, on_read)


class FileSlice:
    """``length`` bytes of an open file, streamed by requests with a Content-Length."""

    def __init__(
        self, fh: IO[bytes], length: int, on_read: Callable[[int], None] | None = None
    ) -> None:
        self._fh = fh
        self._left = length
        self._length = length
        self._on_read = on_read  # progress, for the upload's deadline

    def __len__(self) -> int:
        # requests sends Content-Length from len(); without it, it would go chunked.
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK_SIZE):
            yield chunk

    def read(self, size: int = -1) -> bytes:
        want = self._left if size < 0 else min(size, self._left)
        data = self._fh.read(want) if want else b""
        self._left -= len(data)
        if self._on_read is not None:
            self._on_read(len(data))
        return data


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def errors_text(resp: requests.Response) -> str:
    """The registry's error codes and messages (``{"errors": [...]}``), if any, short and on
    one line. Only a body the session has read (capped) is looked at."""
    data = resp._content if isinstance(resp._content, bytes) else b""
    try:
        doc = parse_json(data, "the error body") if data.strip() else None
    except DistillError:
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors[:5]:
        if isinstance(error, dict):
            code, message = error.get("code", ""), error.get("message", "")
            parts.append(f"{code}: {message}" if message else str(code))
    return one_line("; ".join(p for p in parts if p), 300)


class RegistrySession:
    """Authenticated, retried requests to one registry. Thread-safe."""

    def __init__(
        self,
        host: str,
        *,
        tls_verify: bool = True,
        credentials: Credentials | None = None,
        session: requests.Session | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        limits: Limits | None = None,
    ) -> None:
        self.host = check_host(host)
        self.tls_verify = tls_verify
        self.retry = retry
        self.limits = limits if limits is not None else Limits.from_env()
        # The deadline each streamed response's body is read under (see read_body).
        self._deadlines: weakref.WeakKeyDictionary[requests.Response, Deadline] = (
            weakref.WeakKeyDictionary()
        )
        self._explicit = credentials
        self._session = session if session is not None else make_session()
        self._own_session = session is None
        self._lock = threading.RLock()
        self._abort = threading.Event()
        self._base: str | None = None
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, tuple[str, ...]], Token] = {}
        self._credentials: dict[str, Credentials | None] = {}
        # A proxy cannot reach this machine's registry; "" (unlike None) survives requests'
        # merging with the environment's proxy settings and means "connect directly".
        self._proxies = {"http": "", "https": ""} if is_loopback(host) else None
        if not tls_verify:
            # Asked for explicitly; one warning per request would bury the output.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    def abort_uploads(self, abort: bool = True) -> None:
        """Make every request body being sent (or sent later) stop with
        :class:`UploadAborted`, until called with ``abort=False``. For a push that failed
        or was interrupted: its other uploads need not run to their end."""
        if abort:
            self._abort.set()
        else:
            self._abort.clear()

    def _body_read(self, deadline: Deadline) -> Callable[[int], None]:
        def on_read(count: int) -> None:
            if self._abort.is_set():
                raise UploadAborted(deadline.what)
            deadline.moved(count)

        return on_read

    @property
    def base_url(self) -> str:
        """``https://HOST`` or ``http://HOST``, decided by the first request."""
        with self._lock:
            if self._base is None:
                self._base = self._detect()
            return self._base

    def ping(self) -> None:
        """Check that ``host`` speaks the registry API (and learn how it authenticates)."""
        _ = self.base_url

    def describe(self, method: str, url: str) -> str:
        """What a request is about, for messages: the blob, manifest or upload, and host."""
        path = urllib.parse.urlsplit(url).path
        match = _PATHS.fullmatch(path)
        if match is None:
            thing = "the API check" if path == "/v2/" else f"{method} {one_line(path, 100)}"
        elif match["uploads"]:
            thing = f"an upload to {match['repo']}"
        elif match["kind"] == "blobs":
            thing = f"the blob {match['repo']}@{match['ref']}"
        else:
            sep = "@" if ":" in match["ref"] else ":"
            thing = f"the manifest {match['repo']}{sep}{match['ref']}"
        return f"{one_line(thing, 200)} on the registry {self.host}"

    def _send(
        self,
        method: str,
        url: str,
        deadline: Deadline,
        *,
        headers: dict[str, str] | None = None,
        data: bytes | FileSlice | None = None,
    ) -> requests.Response:
        return send(
            self._session,
            method,
            url,
            deadline=deadline,
            verify=self.tls_verify,
            # Only reads are redirected (blob storage elsewhere); a body is not sent twice.
            follow_redirects=method in ("GET", "HEAD"),
            headers=headers,
            data=data,
            proxies=self._proxies,
        )

    def _read_small(self, resp: requests.Response, deadline: Deadline) -> None:
        """Read an answer's body the caller will not stream (capped, and only looked at for
        an error's text) so the connection can serve again."""
        try:
            resp._content = read_body(resp, ERROR_BODY_LIMIT, deadline, "an answer's body")
        except DistillError:
            resp._content = b""  # too big or too slow: the status says enough

    def read_body(self, resp: requests.Response, limit: int, where: str) -> bytes:
        """The body of a streamed answer from :meth:`request`, within its deadline."""
        deadline = self._deadlines.get(resp) or self.limits.request(where)
        return read_body(resp, limit, deadline, where)

    def _detect(self) -> str:
        plain_ok = not self.tls_verify or is_loopback(self.host)
        tls_error: Exception | None = None
        problems: list[str] = []
        for scheme in ("https", "http") if plain_ok else ("https",):
            url = f"{scheme}://{self.host}/v2/"
            try:
                with self._send("GET", url, self.limits.request(self.describe("GET", url))) as resp:
                    if resp.status_code in (200, 401):
                        if resp.status_code == 401:
                            self._challenge = pick_challenge(resp.headers.get("WWW-Authenticate"))
                        return f"{scheme}://{self.host}"
                    problems.append(f"{url} answered HTTP {resp.status_code}")
            except requests.exceptions.SSLError as exc:
                tls_error = exc
                problems.append(f"{url}: TLS error: {one_line(str(exc), 300)}")
            except requests.RequestException as exc:
                problems.append(f"{url}: {one_line(str(exc), 300)}")
        if tls_error is not None:
            raise DistillError(
                f"TLS error talking to the registry {self.host}: {'; '.join(problems)}",
                hint="if the registry has a self-signed certificate or speaks plain http, "
                "pass --no-tls-verify; otherwise check the system's CA certificates",
            )
        raise DistillError(
            f"cannot reach a registry at {self.host}: {'; '.join(problems)}",
            hint="check the address and port (is the registry running?); a plain-http "
            "registry on another machine needs --no-tls-verify",
        )

    def url(self, path_or_url: str) -> str:
        if "://" in path_or_url:
            return path_or_url
        return self.base_url + path_or_url

    def creds(self, repository: str) -> Credentials | None:
        with self._lock:
            if repository not in self._credentials:
                self._credentials[repository] = find_credentials(
                    self.host, repository, self._explicit
                )
            return self._credentials[repository]

    def _authorization(
        self, repository: str, scopes: tuple[str, ...], *, renew: bool
    ) -> str | None:
        with self._lock:
            challenge = self._challenge
            if challenge is None:
                return None
            creds = self.creds(repository)
            if challenge.scheme == "basic":
                return creds.basic_header() if creds is not None else None
            key = (challenge.params.get("realm", ""), challenge.params.get("service", ""), scopes)
            token = self._tokens.get(key)
            if renew or token is None or not token.fresh:
                token = fetch_token(
                    self._session,
                    challenge,
                    scopes,
                    creds,
                    tls_verify=self.tls_verify,
                    limits=self.limits,
                    proxies=self._proxies,
                )
                self._tokens[key] = token
            return f"Bearer {token.value}"

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        repository: str,
        scopes: Sequence[str],
        action: str,
        headers: dict[str, str] | None = None,
        body: Body | None = None,
        stream: bool = False,
        retry_transient: bool = True,
        deadline: Deadline | None = None,
        what: str | None = None,
    ) -> requests.Response:
        """Send with authentication, answering one 401 challenge and retrying transient
        failures (unless ``retry_transient`` is false: then they raise ``Transient``).
        Returns any other response for the caller to judge (and close); with ``stream``,
        a successful answer's body is the caller's to read (:meth:`read_body`, or
        :func:`~distill.net.deadline.read_some` under ``deadline``, which a transfer passes;
        without one, each attempt is a request with its own deadline). ``what`` names the
        request in messages when its URL cannot (an upload's POST, for one blob)."""
        check_repository(repository)
        url = self.url(path_or_url)
        what = what or self.describe(method, url)
        wanted = tuple(sorted(set(scopes)))
        last: Transient | None = None
        attempts = max(self.retry.attempts, 1) if retry_transient else 1
        for attempt in range(attempts):
            if last is not None:
                pause = self.retry.pause(attempt - 1, last.retry_after, self.limits.timeout)
                if deadline is not None:
                    deadline.pause(pause)
                else:
                    time.sleep(pause)
            clock = deadline or (
                self.limits.transfer(what)
                if body is not None and body.path is not None
                else self.limits.request(what)
            )
            try:
                resp = self._authorized(
                    method, url, repository, wanted, action, headers, body, clock
                )
            except Transient as exc:
                last = exc
                continue
            if resp.status_code not in RETRY_STATUSES:
                if stream and resp.status_code < 300:
                    self._deadlines[resp] = clock
                else:
                    self._read_small(resp, clock)
                return resp
            resp.close()
            last = Transient(f"HTTP {resp.status_code}", retry_after(resp))
        assert last is not None
        if not retry_transient:
            raise last
        raise DistillError(
            f"{what} kept failing ({last.reason}) after {attempts} attempts",
            hint="the registry or the network is having trouble; try again later",
        )

    def _authorized(
        self,
        method: str,
        url: str,
        repository: str,
        scopes: tuple[str, ...],
        action: str,
        headers: dict[str, str] | None,
        body: Body | None,
        deadline: Deadline,
    ) -> requests.Response:
        for round_ in (0, 1):
            all_headers = dict(headers or {})
            auth = self._authorization(repository, scopes, renew=round_ == 1)
            if auth is not None:
                all_headers["Authorization"] = auth
            try:
                if body is None:
                    resp = self._send(method, url, deadline, headers=all_headers)
                elif self._abort.is_set():  # bytes bodies are not read through on_read
                    raise UploadAborted(deadline.what)
                else:
                    with body.open(self._body_read(deadline)) as data:
                        resp = self._send(method, url, deadline, headers=all_headers, data=data)
            except requests.exceptions.SSLError as exc:
                raise DistillError(
                    f"TLS error talking to the registry {self.host}: {one_line(str(exc), 300)}",
                    hint="pass --no-tls-verify for a registry with a self-signed certificate",
                ) from exc
            except NETWORK_ERRORS as exc:
                raise Transient(f"connection trouble: {one_line(str(exc), 300)}") from exc
            except requests.RequestException as exc:  # an unusable URL, say
                raise DistillError(
                    f"cannot send a request for {self.describe(method, url)}: "
                    f"{one_line(str(exc), 300)}",
                    hint="the registry sent distill somewhere it cannot go; tell its operator",
                ) from exc
            if resp.status_code != 401:
                return resp
            offered = pick_challenge(resp.headers.get("WWW-Authenticate"))
            resp.close()
            if offered is None or round_ == 1:
                break
            with self._lock:
                self._challenge = offered
            if offered.scheme == "bearer":
                # A fresh token, for whatever more the registry wants (push needs pull too).
                scopes = tuple(sorted(set(scopes) | set(offered.scopes)))
            elif auth is not None or self.creds(repository) is None:
                break  # Basic: the same credentials (or none) would fail the same way
        raise self.unauthorized(repository, action)

    def unauthorized(self, repository: str, action: str) -> DistillError:
        creds = self.creds(repository)
        if creds is None:
            return DistillError(
                f"the registry {self.host} requires credentials to {action} {repository}",
                hint=CREDENTIALS_HINT.replace("HOST", self.host),
            )
        return DistillError(
            f"the registry {self.host} rejected the credentials {creds.source} "
            f"(user {creds.username!r}) to {action} {repository}",
            hint="check the user name, password and their rights on this repository; "
            + CREDENTIALS_HINT.replace("HOST", self.host),
        )

    def fail(self, resp: requests.Response, repository: str, action: str) -> DistillError:
        """The error for an unexpected response (the caller handles the expected ones)."""
        detail = errors_text(resp)
        code = resp.status_code
        text = f"the registry {self.host} refused to {action} (HTTP {code})"
        if detail:
            text += f": {detail}"
        if code in (401, 403):
            creds = self.creds(repository)
            source = f"the credentials {creds.source}" if creds else "no credentials"
            return DistillError(
                text,
                hint=f"{source} may lack the rights to {action} {repository}; "
                + CREDENTIALS_HINT.replace("HOST", self.host),
            )
        if code == 413:
            return DistillError(
                text, hint="something limits request sizes; lower the upload chunk size"
            )
        if code >= 500:
            return DistillError(text, hint="the registry is having trouble; try again later")
        return DistillError(text, hint="check the repository name and the registry's logs")
