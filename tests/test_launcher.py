"""A console script's launcher is remembered by its inputs (a warm run need not import
installer): the remembered bytes are installer's, and a damaged entry is made again."""

from __future__ import annotations

from pathlib import Path

from installer.scripts import Script

from distill.cache import BlobCache
from distill.package.python import INTERPRETER, LAUNCHERS_NAMESPACE, _launcher


def test_the_remembered_launcher_is_installers(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    _, oracle = Script("hello", "hello.server", "main", "console").generate(INTERPRETER, "posix")
    assert _launcher("hello", "hello.server", "main", cache) == oracle
    assert _launcher("hello", "hello.server", "main", cache) == oracle  # from the cache
    (entry,) = (tmp_path / "derived" / LAUNCHERS_NAMESPACE).iterdir()
    entry.write_bytes(entry.read_bytes()[:-5] + b"pwned")
    assert _launcher("hello", "hello.server", "main", cache) == oracle
    other = _launcher("hello", "hello.server", "other", cache)
    assert (
        other
        == Script("hello", "hello.server", "other", "console").generate(INTERPRETER, "posix")[1]
    )
