"""Lockfiles: round trip, validation, and fetching exactly the locked bytes."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cache_helpers import cache_files
from distill.debian.lock import (
    ArchLock,
    Lock,
    LockedExclusion,
    LockedPackage,
    choose_roots,
    lock_downloads,
    read_lock,
    write_lock,
)
from distill.debian.mirror import Mirrors
from distill.errors import DistillError

CONTENT = b"pretend this is a .deb\n" * 100


def _lock(sha256: str, filename: str = "pool/main/h/hello/hello_1.0-1_amd64.deb") -> Lock:
    pkg = LockedPackage(
        "hello", "1.0-1", "amd64", filename, sha256, len(CONTENT), "hello", "1.0-1", "trixie"
    )
    sec = LockedPackage(
        "libfoo1",
        "2.0-1+deb13u1",
        "amd64",
        "pool/updates/main/f/foo/libfoo1_2.0-1+deb13u1_amd64.deb",
        "b" * 64,
        5,
        "foo",
        "2.0-1+deb13u1",
        "trixie-security",
    )
    return Lock(
        "trixie",
        (("trixie", "2026-11-21T09:15:44+00:00"),),
        {"amd64": ArchLock((pkg, sec), (LockedExclusion("dpkg", "x Pre-Depends dpkg"),))},
        ("hello",),
        (),
        (),
    )


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "distill", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_roundtrip(tmp_path: Path) -> None:
    lock = _lock("a" * 64)
    write_lock(lock, tmp_path / "x.lock")
    assert read_lock(tmp_path / "x.lock") == lock
    data = json.loads((tmp_path / "x.lock").read_text())
    assert data["archs"]["amd64"]["excluded"] == [
        {"name": "dpkg", "wanted_by": "x Pre-Depends dpkg"}
    ]
    assert not re.search(r"https?://", (tmp_path / "x.lock").read_text())


def test_downloads_use_the_pockets_mirror() -> None:
    reqs = lock_downloads(
        _lock("a" * 64), Mirrors("http://m.example/debian", "http://s.example/debian-security")
    )
    assert [r.url for r in reqs] == [
        "http://m.example/debian/pool/main/h/hello/hello_1.0-1_amd64.deb",
        "http://s.example/debian-security/pool/updates/main/f/foo/libfoo1_2.0-1+deb13u1_amd64.deb",
    ]


def test_unsafe_filename_refused() -> None:
    with pytest.raises(DistillError, match="unsafe"):
        lock_downloads(_lock("a" * 64, "../../etc/passwd"), Mirrors("http://m.example", None))


@pytest.mark.parametrize("body", ["not json", "{}", '{"lockVersion": 1, "suite": "trixie"}'])
def test_malformed_lock(tmp_path: Path, body: str) -> None:
    (tmp_path / "bad.lock").write_text(body)
    with pytest.raises(DistillError, match="not a valid distill lock"):
        read_lock(tmp_path / "bad.lock")


def _edited(tmp_path: Path, edit: str) -> Path:
    """A valid lock with one value replaced: ``edit`` is ``path=json`` (path with dots)."""
    data = json.loads(json.dumps(_lock_json()))
    where, value = edit.split("=", 1)
    *parents, last = where.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = json.loads(value)
    (tmp_path / "x.lock").write_text(json.dumps(data))
    return tmp_path / "x.lock"


def _lock_json() -> dict[str, object]:
    from distill.debian.lock import lock_to_json

    return lock_to_json(_lock("a" * 64))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ('archs.amd64.packages.0.size="5"', r"archs\.amd64\.packages\[0\]\.size is not a size"),
        ("archs.amd64.packages.0.size=-1", "size is not a size"),
        ("archs.amd64.packages.0.size=true", "size is not a size"),
        ("archs.amd64.packages.0.name=[1]", r"packages\[0\]\.name is not a string"),
        ('archs.amd64.packages.0.version="1\\n2"', "version is not a string of printable"),
        ('archs.amd64.packages.0.sha256="../x"', "sha256 is not a SHA256"),
        ('archs.amd64.packages="x"', r"archs\.amd64\.packages is not a list"),
        ("archs.amd64.packages.0=7", r"archs\.amd64\.packages\[0\] is not an object"),
        ("archs.amd64=[]", "archs.amd64 is not an object"),
        ("archs=[]", "archs is not an object"),
        ("request.packages=[1]", "request.packages is not a list of strings"),
        ('pockets.0.date="yesterday"', r"pockets\[0\]\.date is not an RFC 3339 date"),
        ("suite=null", "suite is not a string"),
        ("lockVersion=2", "expected lockVersion 1"),
    ],
)
def test_every_lock_field_is_checked(tmp_path: Path, edit: str, match: str) -> None:
    with pytest.raises(DistillError, match=match) as err:
        read_lock(_edited(tmp_path, edit))
    assert "not a valid distill lock" in err.value.message


def test_hostile_lock_documents(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DistillError, match="nested more than"):
        read_lock(path)
    path.write_bytes(b"\xff\x00" * 100)
    with pytest.raises(DistillError, match="not valid JSON"):
        read_lock(path)
    path.write_bytes(b" " * (17 << 20))
    with pytest.raises(DistillError, match="larger than"):
        read_lock(path)
    path.unlink()
    path.mkdir()
    with pytest.raises(DistillError, match="not a regular file"):
        read_lock(path)


def test_root_alternatives_take_first_known() -> None:
    assert choose_roots(("libssl3t64 | libssl3", "zlib1g"), {"libssl3", "zlib1g"}) == (
        "libssl3",
        "zlib1g",
    )


def _one_package_lock(tmp_path: Path, sha256: str) -> Path:
    lock = _lock(sha256)
    only = Lock(
        lock.suite,
        lock.pockets,
        {"amd64": ArchLock(lock.archs["amd64"].packages[:1], ())},
        lock.roots,
        (),
        (),
    )
    write_lock(only, tmp_path / "one.lock")
    return tmp_path / "one.lock"


def test_fetch_verifies_and_caches(
    tmp_path: Path, local_mirror: tuple[str, Path], private_cache: Path
) -> None:
    url, root = local_mirror
    deb = root / "pool/main/h/hello/hello_1.0-1_amd64.deb"
    deb.parent.mkdir(parents=True)
    deb.write_bytes(CONTENT)
    path = _one_package_lock(tmp_path, hashlib.sha256(CONTENT).hexdigest())
    proc = run_cli("fetch", str(path), env={"DISTILL_MIRROR": url})
    assert proc.returncode == 0, proc.stderr
    blobs = cache_files(private_cache / "blobs")
    assert [b.read_bytes() for b in blobs] == [CONTENT]


def test_fetch_refuses_wrong_hash(
    tmp_path: Path, local_mirror: tuple[str, Path], private_cache: Path
) -> None:
    url, root = local_mirror
    deb = root / "pool/main/h/hello/hello_1.0-1_amd64.deb"
    deb.parent.mkdir(parents=True)
    deb.write_bytes(CONTENT[:-1] + b"!")  # same size, one byte differs
    path = _one_package_lock(tmp_path, hashlib.sha256(CONTENT).hexdigest())
    proc = run_cli("fetch", str(path), env={"DISTILL_MIRROR": url})
    assert proc.returncode != 0
    assert "hash" in proc.stderr.lower() and "hello" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert cache_files(private_cache) == []


def test_fetch_names_a_file_gone_from_the_mirror(
    tmp_path: Path, local_mirror: tuple[str, Path], private_cache: Path
) -> None:
    url, _ = local_mirror
    path = _one_package_lock(tmp_path, hashlib.sha256(CONTENT).hexdigest())
    proc = run_cli("fetch", str(path), env={"DISTILL_MIRROR": url})
    assert proc.returncode != 0
    assert "hello_1.0-1_amd64.deb" in proc.stderr and "404" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_unknown_preset_suggests(tmp_path: Path) -> None:
    proc = run_cli("lock", "pyhton3", "-o", str(tmp_path / "x.lock"))
    assert proc.returncode == 1
    assert "no spec file or preset named 'pyhton3'" in proc.stderr
    assert "python3" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.lock").exists()
