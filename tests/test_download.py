from __future__ import annotations

import hashlib
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from distill.cache import BlobCache
from distill.errors import DistillError
from distill.net.deadline import Limits
from distill.net.download import DownloadRequest, fetch_all, fetch_blob, fetch_bytes
from distill.net.http import RetryPolicy, make_session

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


def _blob(seed: int, size: int = 300_000) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    status: int


@dataclass
class Mirror:
    """What the loopback server serves, and everything it was asked."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    # Per path, one scripted action per request (then normal service): ("status", code)
    # answers with that code, ("drop", n) sends the headers and n body bytes, then hangs up,
    # ("slow", ms) sends the body in 16 KiB pieces, ms milliseconds apart, ("hang", ms)
    # sends the headers, then nothing for ms milliseconds.
    plans: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location
    ignore_range: set[str] = field(default_factory=set)
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, data: bytes, *plan: tuple[str, int]) -> DownloadRequest:
        self.files[path] = data
        self.plans[path] = list(plan)
        sha = hashlib.sha256(data).hexdigest()
        return DownloadRequest(self.url + path, sha, len(data), path.rsplit("/", 1)[-1])

    def hits_for(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mirror: Mirror


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        mirror = self.server.mirror
        path = urlsplit(self.path).path
        with mirror.lock:
            plan = mirror.plans.get(path)
            action = plan.pop(0) if plan else ("serve", 0)
        data = mirror.files.get(path)
        if path in mirror.redirects:
            self.send_response(302)
            self.send_header("Location", mirror.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif data is None:
            self._reply(path, 404, b"")
        elif action[0] == "status":
            self._reply(path, action[1], b"")
        elif action[0] == "drop":
            self._reply(path, 200, data, etag=_etag(data), cut_at=action[1])
        elif action[0] == "slow":
            self._reply(path, 200, data, etag=_etag(data), pause=action[1] / 1000)
        elif action[0] == "hang":
            self._reply(path, 200, data, cut_at=0)
            time.sleep(action[1] / 1000)
        else:
            self._serve(path, data)

    def _serve(self, path: str, data: bytes) -> None:
        etag = _etag(data)
        asked = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        match = re.fullmatch(r"bytes=(\d+)-", asked or "")
        honour = path not in self.server.mirror.ignore_range
        if match and honour and if_range in (None, etag):
            start = int(match[1])
            if start >= len(data):
                self._reply(path, 416, b"")
                return
            content_range = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._reply(path, 206, data[start:], etag=etag, content_range=content_range)
        else:
            self._reply(path, 200, data, etag=etag)

    def _reply(
        self,
        path: str,
        status: int,
        body: bytes,
        *,
        etag: str | None = None,
        content_range: str | None = None,
        cut_at: int | None = None,
        pause: float = 0.0,
    ) -> None:
        with self.server.mirror.lock:
            headers = {k.lower(): v for k, v in self.headers.items()}
            self.server.mirror.hits.append(Hit(path, headers, status))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if etag:
            self.send_header("ETag", etag)
        if content_range:
            self.send_header("Content-Range", content_range)
        self.end_headers()
        if cut_at is not None:
            self.wfile.write(body[:cut_at])
            self.close_connection = True
            return
        step = 16384 if pause else max(len(body), 1)
        try:
            for start in range(0, len(body), step):
                self.wfile.write(body[start : start + step])
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up: expected in cancel tests


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    # A proxy set in the environment must not swallow loopback traffic.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    server = _Server(("127.0.0.1", 0), _Handler)
    server.mirror = Mirror(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server.mirror
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def cache(tmp_path: Path) -> BlobCache:
    return BlobCache(tmp_path / "cache")


def _stored(cache: BlobCache) -> list[Path]:
    found = []
    for directory in (cache.blobs_dir, cache.tmp_dir):
        if directory.exists():
            found += [p for p in directory.iterdir()]
    return found


def test_cached_blob_needs_no_request(mirror: Mirror, cache: BlobCache) -> None:
    data = _blob(1)
    req = mirror.add("/pool/a.deb", data)
    cache.put_bytes(data, req.sha256)
    assert fetch_blob(req, cache, retry=FAST) == cache.path(req.sha256)
    assert fetch_all([req], cache, show_progress=False, retry=FAST) == {
        req.sha256: cache.path(req.sha256)
    }
    assert mirror.hits == []


def test_download_lands_in_cache(mirror: Mirror, cache: BlobCache) -> None:
    data = _blob(2)
    req = mirror.add("/pool/main/a/a_1.0_amd64.deb", data)
    seen: list[int] = []
    path = fetch_blob(req, cache, progress_cb=seen.append, retry=FAST)
    assert path == cache.blobs_dir / req.sha256
    assert path.read_bytes() == data
    assert sum(seen) == len(data)
    assert _stored(cache) == [path]
    (hit,) = mirror.hits
    assert hit.headers["user-agent"].startswith("distill/")
    assert hit.headers["accept-encoding"] == "identity"
    assert "range" not in hit.headers


def test_wrong_hash_refused_and_nothing_cached(mirror: Mirror, cache: BlobCache) -> None:
    served = mirror.add("/pool/b.deb", _blob(3))
    claimed = hashlib.sha256(b"something else").hexdigest()
    req = DownloadRequest(served.url, claimed, served.size, "b.deb")
    with pytest.raises(DistillError) as info:
        fetch_blob(req, cache, retry=FAST)
    message = str(info.value)
    assert f"hash mismatch for b.deb: expected {claimed}, got {served.sha256}" in message
    assert served.url in message
    assert "mirror" in (info.value.hint or "")
    assert _stored(cache) == []
    assert len(mirror.hits) == 1  # a bad hash is not worth retrying


def test_longer_body_than_expected_aborted(mirror: Mirror, cache: BlobCache) -> None:
    served = mirror.add("/pool/c.deb", _blob(4))
    assert served.size is not None
    req = DownloadRequest(served.url, served.sha256, served.size - 10, "c.deb")
    with pytest.raises(DistillError, match=r"size mismatch for c\.deb") as info:
        fetch_blob(req, cache, retry=FAST)
    assert served.url in str(info.value)
    assert _stored(cache) == []


def test_dropped_connection_resumes_with_range(mirror: Mirror, cache: BlobCache) -> None:
    data = _blob(5)
    req = mirror.add("/pool/d.deb", data, ("drop", 100_000))
    path = fetch_blob(req, cache, retry=FAST)
    assert path.read_bytes() == data
    first, second = mirror.hits_for("/pool/d.deb")
    assert "range" not in first.headers
    assert second.headers["range"] == "bytes=100000-"
    assert second.headers["if-range"] == _etag(data)
    assert second.status == 206
    assert _stored(cache) == [path]


def test_server_ignoring_range_restarts_from_zero(mirror: Mirror, cache: BlobCache) -> None:
    data = _blob(6)
    req = mirror.add("/pool/e.deb", data, ("drop", 120_000))
    mirror.ignore_range.add("/pool/e.deb")
    progress: list[int] = []
    path = fetch_blob(req, cache, progress_cb=progress.append, retry=FAST)
    assert path.read_bytes() == data
    _, second = mirror.hits_for("/pool/e.deb")
    assert second.headers["range"] == "bytes=120000-"
    assert second.status == 200
    # The discarded partial is taken back off the progress total.
    assert -120_000 in progress
    assert sum(progress) == len(data)


def test_repeated_drops_resume_each_time(mirror: Mirror, cache: BlobCache) -> None:
    data = _blob(7)
    req = mirror.add("/pool/f.deb", data, ("drop", 50_000), ("drop", 10))
    path = fetch_blob(req, cache, retry=FAST)
    assert path.read_bytes() == data
    ranges = [h.headers.get("range") for h in mirror.hits_for("/pool/f.deb")]
    # The second drop serves the whole file again (scripted 200), cut after 10 bytes.
    assert ranges == [None, "bytes=50000-", "bytes=10-"]


@pytest.mark.parametrize("status", [404, 410])
def test_gone_file_names_file_and_url(mirror: Mirror, cache: BlobCache, status: int) -> None:
    req = mirror.add("/pool/g_1.0_amd64.deb", _blob(8), ("status", status))
    with pytest.raises(DistillError) as info:
        fetch_blob(req, cache, retry=FAST)
    message = str(info.value)
    assert f"g_1.0_amd64.deb is gone from the mirror (HTTP {status})" in message
    assert req.url in message
    assert "re-lock" in (info.value.hint or "")
    assert len(mirror.hits) == 1
    assert _stored(cache) == []


def test_503_twice_then_success(mirror: Mirror, cache: BlobCache) -> None:
    data = _blob(9)
    req = mirror.add("/pool/h.deb", data, ("status", 503), ("status", 503))
    assert fetch_blob(req, cache, retry=FAST).read_bytes() == data
    assert [h.status for h in mirror.hits] == [503, 503, 200]


def test_persistent_5xx_gives_up_naming_url(mirror: Mirror, cache: BlobCache) -> None:
    req = mirror.add("/pool/i.deb", _blob(10), *[("status", 502)] * 10)
    with pytest.raises(DistillError, match="after 4 attempts \\(HTTP 502\\)") as info:
        fetch_blob(req, cache, retry=FAST)
    assert req.url in str(info.value)
    assert len(mirror.hits) == 4
    assert _stored(cache) == []


def test_other_client_error_is_not_retried(mirror: Mirror, cache: BlobCache) -> None:
    req = mirror.add("/pool/j.deb", _blob(11), ("status", 403))
    with pytest.raises(DistillError, match="HTTP 403") as info:
        fetch_blob(req, cache, retry=FAST)
    assert req.url in str(info.value)
    assert len(mirror.hits) == 1


def test_connection_refused_is_reported(cache: BlobCache) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    url = f"http://127.0.0.1:{port}/pool/k.deb"
    req = DownloadRequest(url, hashlib.sha256(b"k").hexdigest(), 1, "k.deb")
    with pytest.raises(DistillError, match=r"could not download k\.deb after 4 attempts") as info:
        fetch_blob(req, cache, retry=FAST)
    assert url in str(info.value)
    assert _stored(cache) == []


def test_invalid_digest_names_url(mirror: Mirror, cache: BlobCache) -> None:
    req = DownloadRequest(mirror.url + "/pool/l.deb", "nothex", 3, "l.deb")
    with pytest.raises(DistillError, match="invalid sha256") as info:
        fetch_blob(req, cache, retry=FAST)
    assert req.url in str(info.value)
    assert mirror.hits == []


def test_fetch_all_downloads_missing_ones(mirror: Mirror, cache: BlobCache) -> None:
    reqs = [mirror.add(f"/pool/m{i}.deb", _blob(100 + i, 50_000 + i)) for i in range(6)]
    cache.put_bytes(mirror.files["/pool/m0.deb"], reqs[0].sha256)
    reqs[3] = mirror.add("/pool/m3.deb", mirror.files["/pool/m3.deb"], ("status", 503))
    session = make_session(4)
    try:
        paths = fetch_all(
            [*reqs, reqs[1]], cache, jobs=4, show_progress=False, session=session, retry=FAST
        )
    finally:
        session.close()
    assert set(paths) == {r.sha256 for r in reqs}
    for i, req in enumerate(reqs):
        assert paths[req.sha256].read_bytes() == mirror.files[f"/pool/m{i}.deb"]
    assert mirror.hits_for("/pool/m0.deb") == []
    assert len(mirror.hits_for("/pool/m1.deb")) == 1  # listed twice, fetched once
    assert len(mirror.hits_for("/pool/m3.deb")) == 2
    assert not any(cache.tmp_dir.iterdir())


def test_fetch_all_first_error_raised_and_bad_blob_not_cached(
    mirror: Mirror, cache: BlobCache
) -> None:
    good = [mirror.add(f"/pool/n{i}.deb", _blob(200 + i, 40_000)) for i in range(5)]
    served = mirror.add("/pool/bad.deb", _blob(299, 40_000))
    bad = DownloadRequest(served.url, hashlib.sha256(b"x").hexdigest(), served.size, "bad.deb")
    with pytest.raises(DistillError, match=r"hash mismatch for bad\.deb") as info:
        fetch_all([*good, bad], cache, jobs=3, show_progress=False, retry=FAST)
    assert served.url in str(info.value)
    assert cache.get(bad.sha256) is None
    assert not cache.path(served.sha256).exists()
    assert not cache.tmp_dir.exists() or not any(cache.tmp_dir.iterdir())
    # Whatever did make it into the cache is intact.
    for req in good:
        path = cache.get(req.sha256)
        assert path is None or cache.get(req.sha256, req.size, verify=True) == path


def test_fetch_all_cancels_running_downloads_on_error(mirror: Mirror, cache: BlobCache) -> None:
    # 2 MB in 16 KiB pieces 50 ms apart: over 6 s if it were allowed to finish.
    slow = mirror.add("/pool/slow.deb", _blob(500, 2_000_000), ("slow", 50))
    gone = mirror.add("/pool/gone.deb", _blob(501, 1000), ("status", 404))
    started = time.monotonic()
    with pytest.raises(DistillError, match=r"gone\.deb is gone"):
        fetch_all([slow, gone], cache, jobs=2, show_progress=False, retry=FAST)
    assert time.monotonic() - started < 3
    assert cache.get(slow.sha256) is None
    assert not any(cache.tmp_dir.iterdir())


def test_fetch_all_with_progress_bar(mirror: Mirror, cache: BlobCache) -> None:
    reqs = [mirror.add(f"/pool/o{i}.deb", _blob(300 + i, 20_000)) for i in range(3)]
    paths = fetch_all(reqs, cache, jobs=2, show_progress=True, retry=FAST)
    assert [paths[r.sha256].read_bytes() for r in reqs] == [
        mirror.files[urlsplit(r.url).path] for r in reqs
    ]


def test_fetch_bytes_returns_body(mirror: Mirror) -> None:
    mirror.add("/dists/trixie/InRelease", b"Origin: Debian\n", ("status", 500))
    body = fetch_bytes(mirror.url + "/dists/trixie/InRelease", retry=FAST)
    assert body == b"Origin: Debian\n"
    assert [h.status for h in mirror.hits] == [500, 200]


def test_fetch_bytes_missing_file(mirror: Mirror) -> None:
    url = mirror.url + "/dists/nosuch/InRelease"
    with pytest.raises(DistillError, match="InRelease is gone from the mirror \\(HTTP 404\\)") as e:
        fetch_bytes(url, retry=FAST)
    assert url in str(e.value)
    assert "suite" in (e.value.hint or "")


def test_fetch_bytes_refuses_oversized_body(mirror: Mirror) -> None:
    mirror.add("/dists/big/InRelease", bytes(5000))
    url = mirror.url + "/dists/big/InRelease"
    with pytest.raises(DistillError, match="larger than the 1000 bytes allowed") as info:
        fetch_bytes(url, max_size=1000, retry=FAST)
    assert url in str(info.value)


def test_fetch_bytes_retries_truncated_body(mirror: Mirror) -> None:
    data = _blob(400, 30_000)
    mirror.add("/dists/t/InRelease", data, ("drop", 1000))
    assert fetch_bytes(mirror.url + "/dists/t/InRelease", retry=FAST) == data
    assert len(mirror.hits) == 2


# --- deadlines and redirects (distill.net.deadline) ----------------------------------------------


def test_a_trickling_mirror_fails_once_below_the_minimum_rate(
    mirror: Mirror, cache: BlobCache
) -> None:
    # 16 KiB every 0.5 s, where 64 KiB a second are asked for over each second.
    req = mirror.add("/pool/slow.deb", _blob(50), ("slow", 500))
    started = time.monotonic()
    with pytest.raises(DistillError, match="below the minimum of 65536 bytes/s") as info:
        fetch_blob(req, cache, retry=FAST, limits=Limits(timeout=1.0, min_rate=64 << 10))
    assert time.monotonic() - started < 5  # not after the whole body, nor after retries
    assert "slow.deb from 127.0.0.1:" in info.value.message
    assert "DISTILL_TIMEOUT" in (info.value.hint or "")
    assert len(mirror.hits) == 1  # a slow mirror is not asked again
    assert _stored(cache) == []


def test_a_stalled_mirror_fails_and_is_not_waited_for(mirror: Mirror, cache: BlobCache) -> None:
    req = mirror.add("/pool/stall.deb", _blob(51), ("hang", 20_000))
    with pytest.raises(DistillError, match="nothing moved for 1 s"):
        fetch_blob(req, cache, retry=FAST, limits=Limits(timeout=1.0))
    with pytest.raises(DistillError, match=r"InRelease from 127\.0\.0\.1"):
        mirror.add("/dists/t/InRelease", b"x", ("hang", 20_000))
        fetch_bytes(mirror.url + "/dists/t/InRelease", retry=FAST, limits=Limits(timeout=1.0))


@pytest.mark.parametrize(
    ("location", "complaint"),
    [
        ("file:///etc/passwd", "not an http\\(s\\) URL"),
        ("/pool/loop.deb", "redirected more than 10 times"),
    ],
)
def test_redirects_go_to_http_only_and_not_in_circles(
    mirror: Mirror, cache: BlobCache, location: str, complaint: str
) -> None:
    req = mirror.add("/pool/loop.deb", _blob(52))
    mirror.redirects["/pool/loop.deb"] = location
    with pytest.raises(DistillError, match=complaint):
        fetch_blob(req, cache, retry=FAST)


def test_a_redirect_is_followed(mirror: Mirror, cache: BlobCache) -> None:
    req = mirror.add("/pool/moved.deb", _blob(53))
    mirror.files["/elsewhere/moved.deb"] = mirror.files["/pool/moved.deb"]
    mirror.redirects["/pool/moved.deb"] = "/elsewhere/moved.deb"
    assert fetch_blob(req, cache, retry=FAST).read_bytes() == mirror.files["/elsewhere/moved.deb"]


def test_limits_from_the_environment() -> None:
    assert Limits.from_env({}) == Limits()
    assert Limits.from_env({"DISTILL_TIMEOUT": "2.5", "DISTILL_MIN_RATE": "10"}) == Limits(2.5, 10)
    for bad in ({"DISTILL_TIMEOUT": "soon"}, {"DISTILL_TIMEOUT": "-1"}, {"DISTILL_MIN_RATE": "0"}):
        with pytest.raises(DistillError, match="is not a positive number"):
            Limits.from_env(bad)
