"""The hostile corpus: each case is distill run for real on one crafted input (see
hostile_harness). Cases live in test_hostile_*.py, one file per kind of input."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a private cache and TMPDIR inside it, so that anything a run
    writes is either in its target or visible in this tree."""
    root = tmp_path / "sandbox"
    (root / "tmp").mkdir(parents=True)
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("TMPDIR", str(root / "tmp"))
    return root
