"""What is in a cache directory, for tests that check what a run left in it. (Not in
conftest.py: tests/hostile/ has a conftest of its own, and two modules named conftest
cannot both be imported by name.)"""

from __future__ import annotations

from pathlib import Path


def cache_files(root: Path) -> list[Path]:
    """Every file in a cache directory (blobs, derived data, temp files)."""
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
