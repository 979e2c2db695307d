"""A preset's parsed form is remembered in the cache (a warm run need not import PyYAML):
the remembered document gives the same Spec as parsing, and a damaged entry is a miss."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distill.build.spec import load_preset, presets
from distill.build.spec_text import PRESETS_NAMESPACE, remember, remembered
from distill.build.spec_yaml import load_yaml
from distill.cache import BlobCache


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path / "cache"))
    # A cache some earlier command made: remembering a preset never makes the first entry.
    (tmp_path / "cache" / "derived").mkdir(parents=True)
    return tmp_path / "cache"


def test_every_preset_is_remembered_as_it_parses(cache_dir: Path) -> None:
    cache = BlobCache(cache_dir)
    for name in sorted(presets()):
        fresh = load_preset(name, suite="trixie")  # parses, then remembers
        again = load_preset(name, suite="trixie")
        assert again == fresh, name
    for name, text in presets().items():
        assert remembered(text, cache) == load_yaml(text, f"preset:{name}"), name


def test_a_damaged_entry_is_parsed_again(cache_dir: Path) -> None:
    fresh = load_preset("python3:nonroot", suite="trixie")
    entries = list((cache_dir / "derived" / PRESETS_NAMESPACE).iterdir())
    assert entries
    for entry in entries:
        entry.write_bytes(b'{"data": [1]')
    assert load_preset("python3:nonroot", suite="trixie") == fresh


def test_a_warm_preset_load_imports_no_yaml(cache_dir: Path) -> None:
    code = (
        "import sys\n"
        "from distill.build.spec import load_preset\n"
        "load_preset('python3:nonroot', suite='trixie')\n"
        "print('yaml' in sys.modules)\n"
    )
    run = [sys.executable, "-c", code]
    first = subprocess.run(run, capture_output=True, text=True, check=True)
    second = subprocess.run(run, capture_output=True, text=True, check=True)
    assert (first.stdout.strip(), second.stdout.strip()) == ("True", "False")


def test_a_preset_is_not_the_first_thing_in_a_cache(tmp_path: Path) -> None:
    """A command refused before any work must leave no cache behind: parsing a preset into
    a cache that does not exist yet remembers nothing (and creates nothing)."""
    cache = BlobCache(tmp_path / "fresh")
    text = presets()["python3"]
    remember(text, load_yaml(text, "preset:python3"), cache)
    assert not (tmp_path / "fresh").exists()
    assert remembered(text, cache) is None
