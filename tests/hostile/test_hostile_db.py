"""``distill db import | update`` and ``distill scan`` on hostile input: tracker JSON that
is deep, blank, mistyped, not UTF-8 or cut short; OSV zips that explode or climb out; an
advisory with a million ranges; a tracker server that never stops, trickles, or loops; a
DB file that is not distill's; images whose package database or os-release lie.

A refused import or update leaves the DB as it was, byte for byte; a scan it cannot
complete says so (exit 2) or ends in one clean error."""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hostile_apps import BASE_OS_RELEASE, dpkg_status, write_zip, zip_with_big_member
from hostile_harness import Outcome, assert_bounded, assert_clean_error, run_distill
from hostile_images import image_of

MB = 1 << 20


def report(name: str, outcome: Outcome) -> None:
    said = " | ".join(outcome.stderr.strip().splitlines()[-2:])[:300]
    print(
        f"\n{name}: exit {outcome.returncode}, {outcome.seconds:.1f} s, "
        f"{outcome.max_rss >> 20} MiB: {said}"
    )


def tracker(releases: Any = None) -> dict[str, Any]:
    entry = {"status": "resolved", "fixed_version": "1.2-1", "urgency": "medium"}
    return {
        "openssl": {
            "CVE-2024-0001": {
                "description": "a bug",
                "releases": {"trixie": entry} if releases is None else releases,
            }
        }
    }


@pytest.fixture
def db(sandbox: Path) -> Path:
    """A DB holding one good tracker import: what every refused import must leave alone."""
    good = sandbox / "good.json"
    good.write_text(json.dumps(tracker()))
    path = sandbox / "vuln.db"
    outcome = run_distill(["db", "import", "--db", str(path), str(good)], cwd=sandbox)
    assert outcome.returncode == 0, outcome.describe()
    return path


def import_refused(sandbox: Path, db: Path, name: str, *mentions: str) -> Outcome:
    before = db.read_bytes()
    outcome = run_distill(["db", "import", "--db", str(db), str(sandbox / name)], cwd=sandbox)
    report(f"db import {name}", outcome)
    assert_clean_error(outcome, *mentions)
    assert db.read_bytes() == before
    return outcome


# --- the tracker's JSON ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"openssl": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deep-member"),
        pytest.param(
            b'{"openssl": {"CVE-1": {"releases": {"trixie": '
            + b'{"a": ' * 100_000
            + b"1"
            + b"}" * 100_000
            + b"}}}}",
            id="deep-release",
        ),
        pytest.param(b"{" + b'"a": {' * 100_000, id="deep-unclosed"),
    ],
)
def test_deeply_nested_tracker_json_is_refused(sandbox: Path, db: Path, data: bytes) -> None:
    (sandbox / "t.json").write_bytes(data)
    import_refused(sandbox, db, "t.json")


def test_a_gigabyte_of_whitespace_is_refused_quickly(sandbox: Path, db: Path) -> None:
    with (sandbox / "t.json").open("wb") as fh:
        fh.write(b"{")
        block = b" \n\t\r" * (MB // 4)
        for _ in range(1024):
            fh.write(block)
    import_refused(sandbox, db, "t.json")


def test_a_gzip_bomb_of_whitespace_is_refused(sandbox: Path, db: Path) -> None:
    # 4 GiB of blanks inside a 4 MB .gz: what the import reads is bounded, not the file.
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (16 * MB)
    with (sandbox / "t.json.gz").open("wb") as fh:
        fh.write(squeeze.compress(b"{"))
        for _ in range(256):
            fh.write(squeeze.compress(block))
        fh.write(squeeze.flush())
    import_refused(sandbox, db, "t.json.gz")


MISTYPED = {
    "source-is-a-list": {"openssl": ["CVE-1"]},
    "issue-is-a-string": {"openssl": {"CVE-1": "open"}},
    "releases-is-a-string": tracker("trixie"),
    "releases-is-a-number": tracker(7),
    "release-is-a-list": tracker({"trixie": ["open"]}),
    "status-is-a-number": tracker({"trixie": {"status": 1, "urgency": "low"}}),
    "status-is-a-list": tracker({"trixie": {"status": ["open"], "urgency": "low"}}),
    "status-is-an-object": tracker({"trixie": {"status": {"a": 1}, "urgency": "low"}}),
    "status-is-null": tracker({"trixie": {"status": None}}),
    "fixed-is-a-number": tracker({"trixie": {"status": "resolved", "fixed_version": 1.2}}),
    "fixed-is-a-list": tracker({"trixie": {"status": "resolved", "fixed_version": ["1"]}}),
    "fixed-is-garbage": tracker({"trixie": {"status": "resolved", "fixed_version": "::x y::"}}),
    "fixed-epoch-too-big": tracker(
        {"trixie": {"status": "resolved", "fixed_version": "3000000000:1.0-1"}}
    ),
    "urgency-is-a-list": tracker({"trixie": {"status": "open", "urgency": ["low"]}}),
    "repositories-is-a-list": tracker({"trixie": {"status": "open", "repositories": []}}),
    "nodsa-is-a-number": tracker({"trixie": {"status": "open", "nodsa": 3}}),
    "reason-is-an-object": tracker({"trixie": {"status": "open", "nodsa_reason": {}}}),
    "description-is-a-list": {"openssl": {"CVE-1": {"description": [], "releases": {}}}},
}


@pytest.mark.parametrize("case", sorted(MISTYPED))
def test_wrong_types_in_the_tracker_are_refused(sandbox: Path, db: Path, case: str) -> None:
    (sandbox / "t.json").write_text(json.dumps(MISTYPED[case]))
    import_refused(sandbox, db, "t.json")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"openssl": {"CVE-\xff\xfe": {"releases": []}}}', id="latin1-key"),
        pytest.param(b"\xff\xfe{\x00}\x00", id="utf16"),
        pytest.param(b'{"a": "\xed\xa0\x80"}', id="surrogate"),
        pytest.param(b"\x00" * 4096, id="nuls"),
    ],
)
def test_tracker_json_that_is_not_utf8_is_refused(sandbox: Path, db: Path, data: bytes) -> None:
    (sandbox / "t.json").write_bytes(data)
    import_refused(sandbox, db, "t.json")


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_a_truncated_tracker_is_refused(sandbox: Path, db: Path, keep: float) -> None:
    full = json.dumps({f"pkg{i}": tracker()["openssl"] for i in range(20_000)}).encode()
    (sandbox / "t.json").write_bytes(full[: int(len(full) * keep)])
    import_refused(sandbox, db, "t.json")


def test_a_truncated_gzip_tracker_is_refused(sandbox: Path, db: Path) -> None:
    full = gzip.compress(
        json.dumps({f"pkg{i}": tracker()["openssl"] for i in range(20_000)}).encode()
    )
    (sandbox / "t.json.gz").write_bytes(full[: len(full) // 2])
    import_refused(sandbox, db, "t.json.gz")


# --- OSV -------------------------------------------------------------------------------------


def osv_record(vuln_id: str = "GHSA-1", ranges: int = 1) -> dict[str, Any]:
    events = [{"introduced": "0"}, {"fixed": "2.0"}]
    return {
        "id": vuln_id,
        "modified": "2024-01-01T00:00:00Z",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "flask"},
                "ranges": [{"type": "ECOSYSTEM", "events": events}] * ranges,
            }
        ],
    }


def test_an_osv_zip_bomb_is_refused(sandbox: Path, db: Path) -> None:
    zip_with_big_member(sandbox / "osv.zip", "GHSA-bomb.json", 2 << 30, {})
    import_refused(sandbox, db, "osv.zip", "GHSA-bomb.json")


def test_an_osv_zip_declaring_a_huge_member_reads_only_what_is_there(
    sandbox: Path, db: Path
) -> None:
    # The declared size is never trusted: each member is read up to its cap, whatever it says.
    from hostile_apps import declare_size

    write_zip(sandbox / "osv.zip", {"GHSA-1.json": json.dumps(osv_record()).encode()})
    declare_size(sandbox / "osv.zip", "GHSA-1.json", 0xFFFFFFF0)
    outcome = run_distill(["db", "import", "--db", str(db), "osv.zip"], cwd=sandbox)
    report("db import, OSV member declaring 4 GiB", outcome)
    assert_bounded(outcome)
    if outcome.returncode != 0:
        assert_clean_error(outcome)


def test_osv_zip_members_that_climb_out_are_only_read(sandbox: Path, db: Path) -> None:
    members = [
        ("../../../../../../../tmp/hostile-osv.json", json.dumps(osv_record("GHSA-a")).encode()),
        ("/tmp/hostile-osv-abs.json", json.dumps(osv_record("GHSA-b")).encode()),
    ]
    write_zip(sandbox / "osv.zip", members)
    outcome = run_distill(["db", "import", "--db", str(db), "osv.zip"], cwd=sandbox)
    report("db import, OSV zip with ../ and absolute members", outcome)
    assert_bounded(outcome)
    assert not Path("/tmp/hostile-osv.json").exists()
    assert not Path("/tmp/hostile-osv-abs.json").exists()
    assert {p for p in outcome.written if not p.startswith("vuln.db")} == set(), outcome.written
    if outcome.returncode != 0:
        assert_clean_error(outcome)


def test_an_osv_advisory_with_a_million_ranges_is_bounded(sandbox: Path, db: Path) -> None:
    (sandbox / "osv.json").write_text(json.dumps(osv_record(ranges=1_000_000)))
    before = db.read_bytes()
    outcome = run_distill(["db", "import", "--db", str(db), "osv.json"], cwd=sandbox)
    report("db import, OSV advisory with 1M ranges", outcome)
    assert_bounded(outcome)
    if outcome.returncode != 0:
        assert_clean_error(outcome)
        assert db.read_bytes() == before


def test_an_osv_zip_of_a_million_members_is_bounded(sandbox: Path, db: Path) -> None:
    import zipfile

    with zipfile.ZipFile(sandbox / "osv.zip", "w", zipfile.ZIP_STORED) as zf:
        for i in range(1_000_000):
            zf.writestr(f"{i}.txt", b"")
    outcome = run_distill(["db", "import", "--db", str(db), "osv.zip"], cwd=sandbox)
    report("db import, OSV zip of 1M members", outcome)
    assert_bounded(outcome)
    if outcome.returncode != 0:
        assert_clean_error(outcome)


# --- DB files that are not distill's ---------------------------------------------------------


def other_schema(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    conn.execute("CREATE TABLE vulns (id TEXT)")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("kind", ["random", "empty", "other-schema-v1", "other-schema-v0", "dir"])
def test_a_db_that_is_not_distills(sandbox: Path, kind: str) -> None:
    path = sandbox / "vuln.db"
    if kind == "random":
        path.write_bytes(os.urandom(64 * 1024))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "dir":
        path.mkdir()
    else:
        other_schema(path, int(kind[-1]))
    for args in (["db", "status"], ["db", "update", "--url", "http://127.0.0.1:9/t.json"]):
        outcome = run_distill([*args, "--db", str(path)], cwd=sandbox)
        report(f"{' '.join(args[:2])} on a {kind} DB", outcome)
        assert_bounded(outcome)
        if outcome.returncode != 0:
            assert_clean_error(outcome)


# --- distill db update against a server that misbehaves --------------------------------------


SHADOW = "file:///etc/shadow"


@functools.cache
def gzip_bomb() -> bytes:
    """``{`` and 2 GiB of blanks, gzipped to ~2 MB: bigger than any tracker decoded."""
    squeeze = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = b" " * (16 * MB)
    parts = [squeeze.compress(b"{")]
    parts += [squeeze.compress(block) for _ in range(128)]
    return b"".join([*parts, squeeze.flush()])


class _TrackerServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    mode = "ok"
    stop = threading.Event()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _TrackerServer)
        mode = server.mode
        try:
            if mode in ("redirect-loop", "redirect-file"):
                self.send_response(302)
                self.send_header("Location", self.path if mode == "redirect-loop" else SHADOW)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif mode == "endless":
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b'{"openssl": {"CVE-1": {"description": "')
                block = b"x" * MB
                while not server.stop.is_set():
                    self.wfile.write(block)
            elif mode == "huge-declared":
                self.send_response(200)
                self.send_header("Content-Length", str(1 << 40))
                self.end_headers()
                block = b" " * MB
                while not server.stop.is_set():
                    self.wfile.write(block)
            elif mode == "trickle":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(1000):
                    if server.stop.wait(1):
                        return
                    self.wfile.write(b" ")
                    self.wfile.flush()
            elif mode == "gzip-bomb":
                body = gzip_bomb()
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif mode == "truncated":
                body = json.dumps(tracker()).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            pass


@contextmanager
def tracker_server(mode: str) -> Iterator[str]:
    server = _TrackerServer(("127.0.0.1", 0), _Handler)
    server.mode = mode
    server.stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tracker.json"
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "mode",
    [
        "endless",
        "huge-declared",
        "trickle",
        "redirect-loop",
        "redirect-file",
        "gzip-bomb",
        "truncated",
    ],
)
def test_db_update_from_a_misbehaving_server_keeps_the_old_db(
    sandbox: Path, db: Path, mode: str
) -> None:
    before = db.read_bytes()
    if mode == "gzip-bomb":
        gzip_bomb()  # made before the server answers, not while distill waits
    with tracker_server(mode) as url:
        start = time.monotonic()
        outcome = run_distill(
            ["db", "update", "--db", str(db), "--url", url],
            cwd=sandbox,
            env={"DISTILL_TIMEOUT": "3"},
        )
    report(f"db update, server {mode} ({time.monotonic() - start:.1f} s)", outcome)
    assert_clean_error(outcome)
    assert db.read_bytes() == before


# --- distill scan ----------------------------------------------------------------------------


def scan_image(sandbox: Path, tmp: Path, status: bytes, os_release: bytes = BASE_OS_RELEASE) -> str:
    layout = image_of(
        tmp,
        lambda layer: layer.file("etc/os-release", os_release).file("var/lib/dpkg/status", status),
    )
    return f"oci:{layout.root}"


def scan(sandbox: Path, image: str, db: Path, *args: str) -> Outcome:
    return run_distill(
        ["scan", image, "--db", str(db), "--no-changelog", "--format", "json", *args], cwd=sandbox
    )


def test_a_status_claiming_100k_packages_is_refused(
    sandbox: Path, tmp_path: Path, db: Path
) -> None:
    status = dpkg_status({f"p{i}": f"1.{i}" for i in range(100_000)})
    outcome = scan(sandbox, scan_image(sandbox, tmp_path, status), db)
    report("scan, 100k packages", outcome)
    assert_clean_error(outcome, "packages")


@pytest.mark.parametrize(
    "version",
    ["::::", "1.0-", "-1", "a:1.0", "1.0 2.0", "\x1b[31m1.0", "9" * 5000, "1:", "ü1.0", ""],
)
def test_garbage_versions_in_the_status_are_a_clean_result(
    sandbox: Path, tmp_path: Path, db: Path, version: str
) -> None:
    status = (
        f"Package: libssl3\nSource: openssl\nStatus: install ok installed\n"
        f"Version: {version}\nArchitecture: amd64\n\n"
    ).encode()
    outcome = scan(sandbox, scan_image(sandbox, tmp_path, status), db)
    report(f"scan, version {version[:20]!r}", outcome)
    assert_bounded(outcome)
    if outcome.returncode == 1:
        line = assert_clean_error(outcome)
        assert len(line) < 1000, line
    else:
        assert outcome.returncode in (0, 2), outcome.describe()
        json.loads(outcome.stdout)


@pytest.mark.parametrize(
    "os_release",
    [
        b'ID=debian\nVERSION_ID="99"\nVERSION_CODENAME=hostile\n',
        b"ID=debian\nVERSION_CODENAME=../../etc\n",
        b"ID=debian\nVERSION_CODENAME='; DROP TABLE debian; --\n",
        b"ID=debian\n",
        b"\xff\xfe\x00garbage",
    ],
    ids=["unknown", "dotdot", "sql", "none", "binary"],
)
def test_an_unknown_codename_is_an_incomplete_scan(
    sandbox: Path, tmp_path: Path, db: Path, os_release: bytes
) -> None:
    status = dpkg_status({"libssl3": "1.0-1"})
    before = db.read_bytes()
    outcome = scan(sandbox, scan_image(sandbox, tmp_path, status, os_release), db)
    report(f"scan, os-release {os_release[:30]!r}", outcome)
    assert_bounded(outcome)
    assert outcome.returncode == 2, outcome.describe()
    assert "INCOMPLETE" in outcome.stderr, outcome.describe()
    assert db.read_bytes() == before


@pytest.mark.parametrize("kind", ["random", "empty", "other-schema-v1", "other-schema-v7"])
def test_scan_with_a_damaged_db_is_a_clean_error(sandbox: Path, tmp_path: Path, kind: str) -> None:
    path = sandbox / "bad.db"
    if kind == "random":
        path.write_bytes(os.urandom(64 * 1024))
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        other_schema(path, int(kind[-1]))
    image = scan_image(sandbox, tmp_path, dpkg_status({"libssl3": "1.0-1"}))
    outcome = scan(sandbox, image, path)
    report(f"scan, {kind} DB", outcome)
    assert_bounded(outcome)
    if outcome.returncode == 1:
        assert_clean_error(outcome, "bad.db")
    else:
        assert outcome.returncode == 2, outcome.describe()
        assert "INCOMPLETE" in outcome.stderr, outcome.describe()


def test_an_osv_list_of_many_advisories_is_read_one_at_a_time(sandbox: Path, db: Path) -> None:
    # 200,000 advisories in one JSON list (~40 MB): memory follows one advisory, not the list.
    with (sandbox / "osv.json").open("w") as fh:
        fh.write("[")
        fh.write(",".join(json.dumps(osv_record(f"GHSA-{i}")) for i in range(200_000)))
        fh.write("]")
    outcome = run_distill(["db", "import", "--db", str(db), "osv.json"], cwd=sandbox)
    report("db import, OSV list of 200k advisories", outcome)
    assert_bounded(outcome)
    assert outcome.returncode == 0, outcome.describe()
    assert "200000 entries" in outcome.stdout, outcome.stdout


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"[" + b"[" * 100_000, id="deep"),
        pytest.param(b'[{"id": "A"}, ', id="truncated"),
        pytest.param(b'[{"id": "A"}] trailing', id="trailing"),
        pytest.param(b'[{"id": "A"}, 7]', id="not-a-record"),
    ],
)
def test_a_damaged_osv_list_is_refused(sandbox: Path, db: Path, data: bytes) -> None:
    (sandbox / "osv.json").write_bytes(data)
    import_refused(sandbox, db, "osv.json")


# --- fifos and devices where a file belongs --------------------------------------------------


@pytest.mark.parametrize("command", ["status", "import", "update", "scan"])
def test_a_fifo_as_the_db_does_not_hang(sandbox: Path, tmp_path: Path, command: str) -> None:
    fifo = sandbox / "vuln.db"
    os.mkfifo(fifo)
    good = sandbox / "good.json"
    good.write_text(json.dumps(tracker()))
    args = {
        "status": ["db", "status"],
        "import": ["db", "import", str(good)],
        "update": ["db", "update", "--url", "http://127.0.0.1:9/t.json"],
        "scan": ["scan", scan_image(sandbox, tmp_path, dpkg_status({"a": "1"})), "--no-changelog"],
    }[command]
    outcome = run_distill([*args, "--db", str(fifo)], cwd=sandbox, timeout=15)
    report(f"{command} with a fifo as the DB", outcome)
    assert_clean_error(outcome)


def test_a_fifo_to_import_does_not_hang(sandbox: Path, db: Path) -> None:
    os.mkfifo(sandbox / "t.json")
    before = db.read_bytes()
    outcome = run_distill(["db", "import", "--db", str(db), "t.json"], cwd=sandbox, timeout=15)
    report("db import of a fifo", outcome)
    assert_clean_error(outcome, "t.json")
    assert db.read_bytes() == before


def test_a_device_as_the_db_is_not_replaced(sandbox: Path) -> None:
    good = sandbox / "good.json"
    good.write_text(json.dumps(tracker()))
    outcome = run_distill(["db", "import", "--db", "/dev/null", str(good)], cwd=sandbox)
    report("db import into /dev/null", outcome)
    assert_clean_error(outcome, "/dev/null")
    assert Path("/dev/null").is_char_device()


# --- a DB of distill's schema whose rows were tampered with ----------------------------------


def python_image(sandbox: Path, tmp: Path) -> str:
    status = (
        b"Package: libssl3\nSource: openssl\nStatus: install ok installed\n"
        b"Version: 1.0-1\nArchitecture: amd64\n\n"
    )
    metadata = b"Metadata-Version: 2.1\nName: flask\nVersion: 1.0\n"
    layout = image_of(
        tmp,
        lambda layer: (
            layer.file("etc/os-release", BASE_OS_RELEASE)
            .file("var/lib/dpkg/status", status)
            .file("usr/lib/python3/dist-packages/flask-1.0.dist-info/METADATA", metadata)
        ),
    )
    return f"oci:{layout.root}"


TAMPERED = {
    "osv-affected-deep": "UPDATE osv SET affected = '" + "[" * 100_000 + "]" * 100_000 + "'",
    "osv-affected-not-json": "UPDATE osv SET affected = '{not json'",
    "osv-affected-a-string": "UPDATE osv SET affected = '\"ranges\"'",
    "osv-affected-ranges-a-number": 'UPDATE osv SET affected = \'{"ranges": 7, "versions": 3}\'',
    "osv-affected-events-wrong": (
        'UPDATE osv SET affected = \'{"ranges": [{"type": "ECOSYSTEM", "events": '
        '[{"introduced": 7}, {"fixed": [1]}, 3]}], "versions": [null, 1, "1.0"]}\''
    ),
    "osv-severity-garbage": "UPDATE osv SET severity = x'1b5b33316d'",
    "debian-status-garbage": "UPDATE debian SET status = 'pwned'",
    "debian-fixed-garbage": "UPDATE debian SET fixed_version = ':::'",
    "debian-fixed-a-number": "UPDATE debian SET fixed_version = 12",
    "debian-nodsa-text": "UPDATE debian SET nodsa = 'yes'",
    "debian-urgency-blob": "UPDATE debian SET urgency = x'00ff'",
    "description-huge": "UPDATE issues SET description = printf('%.*c', 5000000, 'x')",
    "updated-garbage": "UPDATE meta SET value = 'yesterday' WHERE key = 'updated'",
    "sources-garbage": "UPDATE sources SET imported_at = 'never', count = 'many'",
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_db_is_a_clean_result_or_error(
    sandbox: Path, tmp_path: Path, db: Path, case: str
) -> None:
    (sandbox / "osv.json").write_text(json.dumps(osv_record()))
    imported = run_distill(["db", "import", "--db", str(db), "osv.json"], cwd=sandbox)
    assert imported.returncode == 0, imported.describe()
    conn = sqlite3.connect(db)
    conn.execute(TAMPERED[case])
    conn.commit()
    conn.close()
    image = python_image(sandbox, tmp_path)
    for args in (["scan", image, "--no-changelog", "--format", "json"], ["db", "status"]):
        outcome = run_distill([*args, "--db", str(db)], cwd=sandbox)
        report(f"{args[0]} {args[1] if args[0] == 'db' else ''}, DB tampered: {case}", outcome)
        assert_bounded(outcome)
        if outcome.returncode == 1:
            line = assert_clean_error(outcome)
            assert len(line) < 2000, line
        else:
            assert outcome.returncode in (0, 2), outcome.describe()


@pytest.mark.parametrize("target", ["/dev/null", "image", "db", "dir"])
def test_a_scan_report_never_replaces_what_it_must_not(
    sandbox: Path, tmp_path: Path, db: Path, target: str
) -> None:
    image = scan_image(sandbox, tmp_path, dpkg_status({"libssl3": "1.0-1"}))
    archive = sandbox / "image.tar"
    from hostile_images import oci_archive

    oci_archive(Path(image.removeprefix("oci:")), archive)
    (sandbox / "dir").mkdir()
    (sandbox / "dir" / "keep").write_text("keep\n")
    out = {"/dev/null": "/dev/null", "image": str(archive), "db": str(db), "dir": "dir"}[target]
    before = {p: p.read_bytes() for p in (archive, db)}
    outcome = run_distill(
        ["scan", f"oci-archive:{archive}", "--db", str(db), "--no-changelog", "-o", out],
        cwd=sandbox,
    )
    report(f"scan -o {target}", outcome)
    assert_clean_error(outcome)
    assert db.read_bytes() == before[db]
    assert archive.read_bytes() == before[archive]
    assert Path("/dev/null").is_char_device()
    assert (sandbox / "dir" / "keep").read_text() == "keep\n"


@pytest.mark.parametrize("releases", [700_000, 2_000_000], ids=["19MB", "57MB"])
def test_one_huge_tracker_entry_is_bounded(sandbox: Path, db: Path, releases: int) -> None:
    # Around the 32 MiB one source package may take: a million tiny releases or two.
    with (sandbox / "t.json").open("w") as fh:
        fh.write('{"openssl": {"CVE-1": {"releases": {')
        fh.write(",".join(f'"r{i}":{{"status":"open"}}' for i in range(releases)))
        fh.write("}}}}")
    size = (sandbox / "t.json").stat().st_size
    before = db.read_bytes()
    outcome = run_distill(["db", "import", "--db", str(db), "t.json"], cwd=sandbox)
    report(f"db import, one tracker entry of {size >> 20} MiB", outcome)
    if size > 32 << 20:
        assert_clean_error(outcome, "larger than 32 MB")
        assert db.read_bytes() == before
    else:
        assert_bounded(outcome)
        assert outcome.returncode == 0, outcome.describe()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("t.json", b'{"open\\ud800ssl": {"CVE-1": {"releases": {"trixie": {"status": "open"}}}}}'),
        ("t.json", b'{"openssl": {"CVE-\\udfff": {"description": "\\ud800", "releases": []}}}'),
        (
            "t.json",
            b'{"openssl": {"CVE-1": {"releases": {"trixie": {"status": "open", '
            b'"urgency": "\\udc80", "nodsa_reason": "\\u0000"}}}}}',
        ),
        ("osv.json", b'{"id": "GHSA-\\ud800", "affected": []}'),
        (
            "osv.json",
            b'{"id": "GHSA-1", "summary": "\\udc00", "affected": [{"package": '
            b'{"ecosystem": "PyPI", "name": "fl\\ud800ask"}}]}',
        ),
    ],
    ids=["tracker-source", "tracker-id", "tracker-urgency", "osv-id", "osv-name"],
)
def test_lone_surrogates_in_json_strings(sandbox: Path, db: Path, name: str, data: bytes) -> None:
    # Valid JSON, but no UTF-8 string: SQLite cannot store it as text.
    (sandbox / name).write_bytes(data)
    before = db.read_bytes()
    outcome = run_distill(["db", "import", "--db", str(db), name], cwd=sandbox)
    report(f"db import, lone surrogate in {name}", outcome)
    assert_bounded(outcome)
    if outcome.returncode != 0:
        assert_clean_error(outcome)
        assert db.read_bytes() == before
    else:
        status = run_distill(["db", "status", "--db", str(db)], cwd=sandbox)
        assert status.returncode == 0, status.describe()


def test_a_lone_surrogate_in_an_images_package_json(
    sandbox: Path, tmp_path: Path, db: Path
) -> None:
    (sandbox / "osv.json").write_text(json.dumps(osv_record()))
    assert run_distill(["db", "import", "--db", str(db), "osv.json"], cwd=sandbox).returncode == 0
    manifest = b'{"name": "fl\\ud800ask", "version": "1.0.0\\udc00"}'
    layout = image_of(
        tmp_path,
        lambda layer: (
            layer.file("etc/os-release", BASE_OS_RELEASE)
            .file("var/lib/dpkg/status", dpkg_status({"libssl3": "1.0-1"}))
            .file("app/node_modules/flask/package.json", manifest)
        ),
    )
    outcome = scan(sandbox, f"oci:{layout.root}", db)
    report("scan, a lone surrogate in an image's package.json", outcome)
    assert_bounded(outcome)
    if outcome.returncode == 1:
        assert_clean_error(outcome)
    else:
        assert outcome.returncode in (0, 2), outcome.describe()


@pytest.mark.network  # the changelog source looks the suite up on the Debian mirror
@pytest.mark.parametrize("codename", ["../../etc", "hostile"])
def test_an_unknown_codename_with_the_changelog_source(
    sandbox: Path, tmp_path: Path, db: Path, codename: str
) -> None:
    os_release = f"ID=debian\nVERSION_CODENAME={codename}\n".encode()
    image = scan_image(sandbox, tmp_path, dpkg_status({"libssl3": "1.0-1"}), os_release)
    outcome = run_distill(["scan", image, "--db", str(db), "--format", "json"], cwd=sandbox)
    report(f"scan with changelogs, codename {codename!r}", outcome)
    assert_bounded(outcome)
    if outcome.returncode == 1:
        assert_clean_error(outcome)
    else:
        assert outcome.returncode == 2, outcome.describe()
        assert "INCOMPLETE" in outcome.stderr, outcome.describe()
