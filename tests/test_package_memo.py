"""What a warm Python package run remembers instead of recomputing (so it need not import
installer or the email parser): a console script's launcher, by its inputs, and a cached
wheel's metadata, by its sha256. Each gives what computing it gives, and a damaged entry is
computed again."""

from __future__ import annotations

import json
from pathlib import Path

from installer.scripts import Script

from distill.cache import BlobCache, sha256_file
from distill.package.pymemo import (
    INTERPRETER,
    LAUNCHERS_NAMESPACE,
    WHEEL_INFO_NAMESPACE,
    launcher,
    wheel_info,
)
from distill.package.wheels import read_wheel
from wheel_fixtures import make_wheel


def test_the_remembered_launcher_is_installers(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    _, oracle = Script("hello", "hello.server", "main", "console").generate(INTERPRETER, "posix")
    assert launcher("hello", "hello.server", "main", cache) == oracle
    assert launcher("hello", "hello.server", "main", cache) == oracle  # from the cache
    (entry,) = (tmp_path / "derived" / LAUNCHERS_NAMESPACE).iterdir()
    entry.write_bytes(entry.read_bytes()[:-5] + b"pwned")
    assert launcher("hello", "hello.server", "main", cache) == oracle
    other = launcher("hello", "hello.server", "other", cache)
    assert (
        other
        == Script("hello", "hello.server", "other", "console").generate(INTERPRETER, "posix")[1]
    )


def test_a_wheels_remembered_metadata_is_what_reading_it_gives(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    wheel = make_wheel(
        tmp_path / "w",
        "demo-pkg",
        "1.0",
        requires=["idna>=3", 'colorama; os_name == "nt"'],
        console_scripts={"demo": "demo_pkg:main"},
    )
    sha = sha256_file(wheel)
    oracle = read_wheel(wheel, wheel.name)
    assert wheel_info(wheel, sha, wheel.name, cache) == oracle
    assert wheel_info(wheel, sha, wheel.name, cache) == oracle  # from the cache
    (entry,) = (tmp_path / "cache" / "derived" / WHEEL_INFO_NAMESPACE).iterdir()
    for damaged in (b'{"name": 1', json.dumps({"name": "x", "requires": "ab"}).encode()):
        entry.write_bytes(damaged)
        assert wheel_info(wheel, sha, wheel.name, cache) == oracle
