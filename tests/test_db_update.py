"""``distill db update`` against a local HTTP server: a first download (200), a conditional
one answered 304 through the ETag, then truncated and malformed bodies that must be refused
with the old DB left exactly as it was."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from distill.scan.db import TRACKER_SOURCE, VulnDB

TRACKER = {
    "openssl": {
        "CVE-2024-0001": {
            "description": "x",
            "releases": {
                "bookworm": {
                    "status": "resolved",
                    "repositories": {"bookworm": "3.0.11-1~deb12u2"},
                    "fixed_version": "3.0.11-1~deb12u3",
                    "urgency": "high",
                }
            },
        }
    },
    "glibc": {"TEMP-0000000-ABCDEF": {"releases": []}},
}


@dataclass
class Server:
    body: bytes = b""
    mode: str = "ok"  # ok | truncated | close-early
    requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@pytest.fixture()
def server() -> Iterator[Server]:
    state = Server(body=json.dumps(TRACKER).encode())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(dict(self.headers.items()))
            if self.headers.get("If-None-Match") == state.etag:
                self.send_response(304)
                self.send_header("ETag", state.etag)
                self.end_headers()
                return
            body = state.body
            self.send_response(200)
            self.send_header("ETag", state.etag)
            self.send_header("Last-Modified", "Fri, 04 Dec 2026 10:00:00 GMT")
            if state.mode == "close-early":
                # No length: the body simply ends early, mid-JSON.
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if state.mode == "ok" else body[: len(body) // 2])
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/tracker/data/json"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def distill(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        DISTILL_CACHE_DIR=str(tmp_path / "cache"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        DISTILL_TIMEOUT="20",
    )
    env.pop("DISTILL_TRACKER_URL", None)
    env.pop("DISTILL_VULN_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "distill", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_update_200_then_304_then_refused_bodies(tmp_path: Path, server: Server) -> None:
    db_path = tmp_path / "cache" / "vuln.db"

    # No URL configured anywhere: an error that says how to configure one.
    first = distill(tmp_path, "db", "update")
    assert first.returncode == 1
    assert "no URL is configured" in first.stderr and "--url" in first.stderr
    assert not db_path.exists()

    # 200: imported, the URL and the validators remembered.
    done = distill(tmp_path, "db", "update", "--url", server.url)
    assert done.returncode == 0, done.stderr
    assert "imported 1 tracker entries" in done.stdout
    db = VulnDB.open(db_path)
    assert db is not None
    with db:
        source = db.source(TRACKER_SOURCE)
        assert db.meta("tracker_url") == server.url
        assert [a.vuln_id for a in db.debian_advisories("bookworm", ["openssl"])] == [
            "CVE-2024-0001"
        ]
    assert source is not None
    assert (source.url, source.etag, source.count) == (server.url, server.etag, 1)
    assert "If-None-Match" not in server.requests[-1]

    # 304: the remembered URL, the ETag sent back, the DB untouched.
    before = db_path.read_bytes()
    again = distill(tmp_path, "db", "update")
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout
    assert server.requests[-1].get("If-None-Match") == server.etag
    assert server.requests[-1].get("If-Modified-Since") == "Fri, 04 Dec 2026 10:00:00 GMT"
    assert db_path.read_bytes() == before

    # The tracker changes; its new body arrives cut short (Content-Length says more).
    changed = dict(TRACKER, zlib={"CVE-2024-0002": {"releases": []}})
    server.body = json.dumps(changed).encode()
    for mode in ("truncated", "close-early"):
        server.mode = mode
        refused = distill(tmp_path, "db", "update")
        assert refused.returncode != 0, (mode, refused.stdout)
        assert "error:" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
        assert db_path.read_bytes() == before, mode
        assert sorted(p.name for p in db_path.parent.iterdir()) == ["vuln.db"], mode

    # A whole body again: accepted.
    server.mode = "ok"
    ok = distill(tmp_path, "db", "update")
    assert ok.returncode == 0, ok.stderr
    assert db_path.read_bytes() != before


def test_update_refuses_a_body_that_is_not_tracker_json(tmp_path: Path, server: Server) -> None:
    assert distill(tmp_path, "db", "update", "--url", server.url).returncode == 0
    db_path = tmp_path / "cache" / "vuln.db"
    before = db_path.read_bytes()
    server.body = b"<html>maintenance</html>"
    refused = distill(tmp_path, "db", "update")
    assert refused.returncode == 1
    assert "error:" in refused.stderr and "Traceback" not in refused.stderr
    assert db_path.read_bytes() == before


def test_status_and_import(tmp_path: Path) -> None:
    empty = distill(tmp_path, "db", "status")
    assert empty.returncode == 0 and "no vulnerability DB" in empty.stdout
    src = tmp_path / "tracker.json"
    src.write_text(json.dumps(TRACKER))
    db = tmp_path / "other.db"
    imported = distill(tmp_path, "db", "import", "--db", str(db), str(src))
    assert imported.returncode == 0, imported.stderr
    shown = distill(tmp_path, "db", "status", "--db", str(db))
    assert shown.returncode == 0
    assert "debian-tracker" in shown.stdout and "bookworm (1)" in shown.stdout


def test_import_of_a_bad_file_is_a_clean_error(tmp_path: Path) -> None:
    good = tmp_path / "tracker.json"
    good.write_text(json.dumps(TRACKER))
    db = tmp_path / "v.db"
    assert distill(tmp_path, "db", "import", "--db", str(db), str(good)).returncode == 0
    before = db.read_bytes()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(TRACKER)[:-20])
    for args in ([str(bad)], [str(good), str(bad)], [str(tmp_path / "missing.json")]):
        out = distill(tmp_path, "db", "import", "--db", str(db), *args)
        assert out.returncode == 1, out.stdout
        errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
        assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("v.")) == ["v.db"]
