"""The shape of the source tree that the import-linter contracts cannot state."""

from __future__ import annotations

from pathlib import Path

import distill

MAX_MODULE_LINES = 600  # issue #9: no module over ~600 lines
SOURCE = Path(distill.__file__).parent


def test_no_module_is_over_the_line_limit() -> None:
    too_long = {
        str(path.relative_to(SOURCE)): lines
        for path in sorted(SOURCE.rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"split these modules (at most {MAX_MODULE_LINES} lines): {too_long}"


def test_no_empty_package_is_left_behind() -> None:
    empty = [
        str(folder.relative_to(SOURCE))
        for folder in sorted(p.parent for p in SOURCE.rglob("__init__.py"))
        if not any(p.name != "__init__.py" for p in folder.iterdir() if p.suffix == ".py")
        and not any(p.is_dir() and (p / "__init__.py").exists() for p in folder.iterdir())
    ]
    assert not empty, f"packages without a module: {empty}"
