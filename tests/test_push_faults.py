"""Faults while pushing (issue #9): a push that is interrupted or that meets a failing
registry never leaves a tag, and a registry that fails once is retried.

Every run is ``distill copy oci-archive:… docker://…`` for real, against a loopback
``docker-registry``. Faults come from :class:`FaultProxy`, a small HTTP proxy in front of
the registry that answers 500 to chosen requests (before or after forwarding them) or
holds one until the test lets it go. The registry builds its upload ``Location`` URLs from
the ``Host`` header, which the proxy passes through, so distill stays behind the proxy for
the whole upload.
"""

# ruff: noqa: F811  (fixtures are imported, then named as test parameters)
from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from analyze_images import OS_RELEASE, SDE, file
from distill.image.compose import compose_image
from distill.image.config import ImageConfigSpec
from distill.image.layer_blob import Compression, LayerBlob, write_layer
from distill.image.model import Image
from distill.image.platform import Platform
from distill.transports._write import write_oci_archive
from hostile.hostile_harness import Outcome, assert_clean_error, run_distill
from registry_fixtures import Registry, registry  # noqa: F401

pytestmark = pytest.mark.container

MiB = 1 << 20
# distill sends blobs above 32 MiB in PATCH chunks and smaller ones in one PUT.
CHUNKED_LAYER = 40 * MiB
WAIT = 30.0  # bound on every wait for something a run is expected to do soon
_FAULT_BODY = b'{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}'
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


# --- images --------------------------------------------------------------------------------


def _random_layer(blob_dir: Path, name: str, size: int) -> LayerBlob:
    # Random bytes do not compress: the layer's size is what goes over the wire.
    entries = [file("etc/os-release", OS_RELEASE), file(name, os.urandom(size))]
    return write_layer(entries, blob_dir, compression=Compression.NONE, source_date_epoch=SDE)


def _image(blob_dir: Path, sizes: list[int]) -> Image:
    layers = [_random_layer(blob_dir, f"data{i}.bin", size) for i, size in enumerate(sizes)]
    spec = ImageConfigSpec(entrypoint=("/bin/true",))
    return compose_image(spec, Platform.parse("linux/amd64"), layers, source_date_epoch=SDE)


@dataclass(frozen=True)
class Source:
    archive: Path
    image: Image

    @property
    def config(self) -> str:
        return self.image.config_descriptor.digest

    @property
    def layers(self) -> list[str]:
        return [layer.digest for layer in self.image.layers]


def _source(root: Path, sizes: list[int]) -> Source:
    image = _image(root / "blobs", sizes)
    archive = root / "image.tar"
    write_oci_archive(image, archive)
    return Source(archive, image)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """Config (one PUT) and one layer that goes up in two PATCH chunks."""
    return _source(tmp_path_factory.mktemp("small"), [CHUNKED_LAYER])


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """Two layers of 48 MiB: an upload that takes a while."""
    return _source(tmp_path_factory.mktemp("big"), [48 * MiB, 48 * MiB])


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "sandbox"
    (root / "tmp").mkdir(parents=True)
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("TMPDIR", str(root / "tmp"))
    return root


# --- the registry seen from outside ---------------------------------------------------------


def _manifest_status(host: str, repo: str, tag: str) -> int:
    accept = "application/vnd.oci.image.manifest.v1+json"
    url = f"http://{host}/v2/{repo}/manifests/{tag}"
    return requests.head(url, headers={"Accept": accept}, timeout=10).status_code


def _tags(host: str, repo: str) -> list[str]:
    resp = requests.get(f"http://{host}/v2/{repo}/tags/list", timeout=10)
    if resp.status_code == 404:
        return []
    resp.raise_for_status()
    return list(resp.json().get("tags") or [])


def _uploads(reg: Registry, repo: str) -> list[str]:
    """Upload sessions the registry holds open for ``repo``. (A finished session can leave
    an empty ``hashstates`` tree behind; an open one has its ``startedat`` file.)"""
    directory = reg.root / "docker/registry/v2/repositories" / repo / "_uploads"
    return sorted(p.parent.name for p in directory.glob("*/startedat"))


def _uploading(reg: Registry, repo: str) -> bool:
    """Layer data is arriving: an open upload of ``repo`` holds more than 1 MiB."""
    directory = reg.root / "docker/registry/v2/repositories" / repo / "_uploads"
    for data in directory.glob("*/data"):
        with contextlib.suppress(OSError):
            if data.stat().st_size > MiB:
                return True
    return False


def _assert_no_tag(host: str, repo: str, tag: str) -> None:
    assert _manifest_status(host, repo, tag) == 404
    assert tag not in _tags(host, repo)


# --- a fault-injecting proxy ---------------------------------------------------------------


@dataclass
class Rule:
    """What to do to requests whose method is ``method`` and whose path matches ``path``:
    from the ``nth`` one on (1-based), ``times`` of them (0: all) are answered 500 -- after
    the registry handled them when ``forward_first`` -- or, with ``hold``, kept waiting
    until ``release`` is set, then answered 500 without being forwarded."""

    method: str
    path: str
    nth: int = 1
    times: int = 1
    forward_first: bool = False
    hold: bool = False
    watch: bool = False  # only set ``hit`` when such a request starts, and forward it
    seen: int = 0
    faults: int = 0
    hit: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def applies(self, method: str, path: str) -> bool:
        if method != self.method or not re.search(self.path, path):
            return False
        self.seen += 1
        if self.seen < self.nth or (self.times and self.seen >= self.nth + self.times):
            return False
        self.faults += 1
        return True


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.requests: list[tuple[str, str, int]] = []  # method, path, status answered
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that hung up (a killed distill): nothing to report

        self._server = Server(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        for rule in self.rules:
            rule.release.set()
        self._server.shutdown()
        self._server.server_close()

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and re.search(pattern, p))

    def handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        with self._lock:
            rule = next((r for r in self.rules if r.applies(req.command, req.path)), None)
        if rule is not None and rule.watch:
            rule.hit.set()
            rule = None
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        if len(body) < length:
            # The client hung up mid-body: the registry gets none of it, as if the client
            # had been talking to it directly and it dropped the half-sent request.
            with self._lock:
                self.requests.append((req.command, req.path, 0))
            req.close_connection = True
            return
        if rule is not None and rule.hold:
            rule.hit.set()
            # A held request is never forwarded: its client gave up on it (or was killed).
            rule.release.wait(WAIT)
        if rule is not None and not rule.forward_first:
            self._answer(req, 500, [("Content-Type", "application/json")], _FAULT_BODY)
            return
        status, headers, data = self._forward(req, body)
        if rule is not None:
            self._answer(req, 500, [("Content-Type", "application/json")], _FAULT_BODY)
            return
        self._answer(req, status, headers, data)

    def _forward(
        self, req: http.server.BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in req.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Host"] = self.host  # the registry's Location URLs then point here
        conn = http.client.HTTPConnection(self.upstream, timeout=WAIT)
        try:
            has_body = req.command in ("POST", "PUT", "PATCH")
            conn.request(req.command, req.path, body=body if has_body else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
            kept = [
                (k, v.replace(self.upstream, self.host) if k.lower() == "location" else v)
                for k, v in kept
            ]
            if req.command == "HEAD" and resp.getheader("Content-Length"):
                kept.append(("Content-Length", resp.getheader("Content-Length", "0")))
            return resp.status, kept, data
        finally:
            conn.close()

    def _answer(
        self,
        req: http.server.BaseHTTPRequestHandler,
        status: int,
        headers: list[tuple[str, str]],
        data: bytes,
    ) -> None:
        with self._lock:
            self.requests.append((req.command, req.path, status))
        req.send_response(status)
        for key, value in headers:
            req.send_header(key, value)
        if req.command != "HEAD":
            req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(data)


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(registry.host)
    try:
        yield fault_proxy
    finally:
        fault_proxy.close()


# --- runs ----------------------------------------------------------------------------------


def _repo() -> str:
    return f"faults/{uuid.uuid4().hex[:12]}"


def _copy(source: Source, host: str, repo: str, cwd: Path, *extra: str) -> Outcome:
    return run_distill(
        ["copy", f"oci-archive:{source.archive}", f"docker://{host}/{repo}:v1", *extra], cwd=cwd
    )


def _assert_pushed(outcome: Outcome, source: Source, host: str, repo: str) -> None:
    assert outcome.returncode == 0, outcome.describe()
    assert outcome.stdout.strip() == source.image.digest, outcome.describe()
    assert _manifest_status(host, repo, "v1") == 200


# --- a registry that fails once --------------------------------------------------------------

_UPLOAD_START = r"/blobs/uploads/$"
_UPLOAD_SESSION = r"/blobs/uploads/[^?]+"


def _put_of(digest: str) -> str:
    # The PUT that completes the upload of ``digest`` (the digest is in its query).
    return _UPLOAD_SESSION + r"\?.*digest=sha256%3A" + digest.removeprefix("sha256:")


def _once_cases(source: Source) -> dict[str, Rule]:
    """One fault each. The first POST is the access check, made before any blob is sent;
    the config goes up in one PUT carrying its data, the 40 MiB layer in two PATCHes and a
    closing PUT."""
    return {
        "access-check-post": Rule("POST", _UPLOAD_START),
        "blob-upload-post": Rule("POST", _UPLOAD_START, nth=2),
        "first-chunk-patch": Rule("PATCH", _UPLOAD_SESSION),
        "second-chunk-patch-after-the-registry-took-it": Rule(
            "PATCH", _UPLOAD_SESSION, nth=2, forward_first=True
        ),
        "monolithic-put": Rule("PUT", _put_of(source.config)),
        "monolithic-put-after-the-registry-took-it": Rule(
            "PUT", _put_of(source.config), forward_first=True
        ),
        "closing-put-after-chunks": Rule("PUT", _put_of(source.layers[0])),
        "blob-head": Rule("HEAD", "/blobs/" + source.layers[0]),
        "manifest-put": Rule("PUT", r"/manifests/v1$"),
        "manifest-put-after-the-registry-took-it": Rule(
            "PUT", r"/manifests/v1$", forward_first=True
        ),
    }


_ONCE = [
    "access-check-post",
    "blob-upload-post",
    "first-chunk-patch",
    "second-chunk-patch-after-the-registry-took-it",
    "monolithic-put",
    "monolithic-put-after-the-registry-took-it",
    "closing-put-after-chunks",
    "blob-head",
    "manifest-put",
    "manifest-put-after-the-registry-took-it",
]


@pytest.mark.parametrize("case", _ONCE)
def test_a_registry_failing_once_is_retried(
    case: str, small: Source, proxy: FaultProxy, registry: Registry, sandbox: Path
) -> None:
    rule = proxy.add(_once_cases(small)[case])
    repo = _repo()
    outcome = _copy(small, proxy.host, repo, sandbox)
    _assert_pushed(outcome, small, registry.host, repo)
    assert rule.faults == 1, f"{case}: the fault was never injected\n{proxy.requests}"
    if not (rule.method == "PATCH" and rule.forward_first):
        # Cancelled or completed. Not after a PATCH the registry took but whose answer was
        # lost: distribution then refuses the DELETE (its upload URL carries a state token
        # that no longer matches the data) and purges the session itself later.
        assert _uploads(registry, repo) == [], "\n".join(
            f"{m} {s} {p[:70]}" for m, p, s in proxy.requests
        )


# --- a registry that keeps failing -----------------------------------------------------------


def _always_cases(source: Source) -> dict[str, tuple[Rule, str]]:
    """A fault on every such request, and what the one-line error must name."""
    config, layer = source.config, source.layers[0]
    return {
        "access-check-post": (Rule("POST", _UPLOAD_START, times=0), "an upload to faults/"),
        "blob-upload-post": (
            Rule("POST", _UPLOAD_START, nth=2, times=0),
            "the upload of sha256:",
        ),
        "chunk-patch": (Rule("PATCH", _UPLOAD_SESSION, times=0), layer),
        "monolithic-put": (Rule("PUT", _put_of(config), times=0), config),
        "blob-head": (Rule("HEAD", "/blobs/" + layer, times=0), layer),
        "manifest-put": (Rule("PUT", r"/manifests/v1$", times=0), "the manifest faults/"),
    }


_ALWAYS = [
    "access-check-post",
    "blob-upload-post",
    "chunk-patch",
    "monolithic-put",
    "blob-head",
    "manifest-put",
]


@pytest.mark.parametrize("case", _ALWAYS)
def test_a_registry_that_keeps_failing_is_a_clean_error(
    case: str, small: Source, proxy: FaultProxy, registry: Registry, sandbox: Path
) -> None:
    rule, mention = _always_cases(small)[case]
    proxy.add(rule)
    repo = _repo()
    outcome = _copy(small, proxy.host, repo, sandbox)
    line = assert_clean_error(outcome, mention, "500")
    if case == "blob-upload-post":  # either blob's POST may be the first to give up
        assert small.config in line or small.layers[0] in line, line
    assert rule.faults >= 2, proxy.requests  # retried before giving up
    _assert_no_tag(registry.host, repo, "v1")
    # The registry recovers; the next copy goes through.
    rule.times, rule.nth = 1, 1 << 30
    _assert_pushed(_copy(small, proxy.host, repo, sandbox), small, registry.host, repo)


# --- SIGTERM --------------------------------------------------------------------------------


def _start(source: Source, host: str, repo: str, cwd: Path) -> subprocess.Popen[bytes]:
    args = ["copy", "--jobs", "1", f"oci-archive:{source.archive}", f"docker://{host}/{repo}:v1"]
    return subprocess.Popen(
        [sys.executable, "-m", "distill", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(proc: subprocess.Popen[bytes], ready: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT
    while not ready():
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "the push never got there"
        time.sleep(0.002)


def _terminated(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=WAIT)
    text = err.decode()
    assert proc.returncode == 143, text[-3000:]
    assert "terminated" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert out == b""  # no digest printed: nothing was published
    return text


def _blob_stored(reg: Registry, repo: str, digest: str) -> bool:
    """The blob's upload to ``repo`` is complete. (Blob data is shared between
    repositories; the per-repository link is what one push makes.)"""
    hex_digest = digest.removeprefix("sha256:")
    layers = reg.root / "docker/registry/v2/repositories" / repo / "_layers"
    return (layers / "sha256" / hex_digest / "link").is_file()


@pytest.mark.parametrize("moment", ["first-blob", "between-blobs", "second-blob"])
def test_sigterm_during_a_push_leaves_no_tag(
    moment: str, big: Source, registry: Registry, sandbox: Path
) -> None:
    """With --jobs 1 the blobs go up one by one: config, then layer 0, then layer 1."""
    repo = _repo()
    proc = _start(big, registry.host, repo, sandbox)
    first = big.layers[0]
    if moment == "first-blob":
        _wait_for(proc, lambda: _uploading(registry, repo))
    elif moment == "between-blobs":
        _wait_for(proc, lambda: _blob_stored(registry, repo, first))
    else:
        _wait_for(proc, lambda: _blob_stored(registry, repo, first) and _uploading(registry, repo))
    _terminated(proc)
    _assert_no_tag(registry.host, repo, "v1")
    # distill stops the upload in flight mid-body; whether the registry had received all
    # of it by then depends on the machine's load, so that is checked deterministically,
    # through a proxy, by test_sigterm_cancels_the_open_upload_session. (A session whose
    # DELETE distribution refuses stays until the registry purges it: at most one here.)
    assert len(_uploads(registry, repo)) <= 1
    # The next run succeeds (and skips what the killed one finished).
    outcome = run_distill(
        ["copy", f"oci-archive:{big.archive}", f"docker://{registry.host}/{repo}:v1"], cwd=sandbox
    )
    _assert_pushed(outcome, big, registry.host, repo)


def test_sigterm_while_the_manifest_is_sent_leaves_no_tag(
    small: Source, proxy: FaultProxy, registry: Registry, sandbox: Path
) -> None:
    """The proxy holds the manifest PUT: every blob is in, only the tag is missing."""
    repo = _repo()
    held = proxy.add(Rule("PUT", r"/manifests/v1$", hold=True))
    proc = _start(small, proxy.host, repo, sandbox)
    _wait_for(proc, held.hit.is_set)
    _terminated(proc)
    held.release.set()
    assert all(_blob_stored(registry, repo, d) for d in [small.config, *small.layers])
    _assert_no_tag(registry.host, repo, "v1")
    outcome = _copy(small, proxy.host, repo, sandbox)
    _assert_pushed(outcome, small, registry.host, repo)


def test_sigterm_cancels_the_open_upload_session(
    small: Source, proxy: FaultProxy, registry: Registry, sandbox: Path
) -> None:
    """SIGTERM while a chunk is on its way: distill stops sending and DELETEs the session.
    The proxy passes no half-sent request on, so the registry accepts the DELETE."""
    repo = _repo()
    started = proxy.add(Rule("PATCH", _UPLOAD_SESSION, watch=True))
    proc = _start(small, proxy.host, repo, sandbox)
    _wait_for(proc, started.hit.is_set)
    _terminated(proc)
    assert [s for m, _, s in proxy.requests if m == "DELETE"][-1:] == [204], proxy.requests
    assert _uploads(registry, repo) == []
    assert not _blob_stored(registry, repo, small.layers[0])
    _assert_no_tag(registry.host, repo, "v1")


# --- distill build -o docker:// -------------------------------------------------------------


@pytest.mark.network
def test_build_pushes_through_the_same_faults(
    proxy: FaultProxy, registry: Registry, tmp_path: Path
) -> None:
    """``distill build … -o docker://`` writes through the same push: a manifest PUT that
    fails once is retried; a blob HEAD that keeps failing is a one-line error naming the
    blob, with no tag. (The Debian cache is the user's, shared as network tests do.)"""
    lock = tmp_path / "static.lock"
    assert run_distill(["lock", "static", "-o", str(lock)], cwd=tmp_path).returncode == 0
    build = ["build", "static", "--lock", str(lock)]
    repo = _repo()
    failing_head = proxy.add(Rule("HEAD", r"/blobs/sha256:", times=0))
    outcome = run_distill([*build, "-o", f"docker://{proxy.host}/{repo}:v1"], cwd=tmp_path)
    assert_clean_error(outcome, "the blob", "sha256:", "500")
    assert failing_head.faults >= 2
    _assert_no_tag(registry.host, repo, "v1")
    failing_head.nth = 1 << 30
    once = proxy.add(Rule("PUT", r"/manifests/v1$"))
    outcome = run_distill([*build, "-o", f"docker://{proxy.host}/{repo}:v1"], cwd=tmp_path)
    assert outcome.returncode == 0, outcome.describe()
    assert once.faults == 1
    assert _manifest_status(registry.host, repo, "v1") == 200
