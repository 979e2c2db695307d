"""A spec document's text and what reading it gives, without PyYAML: a shipped preset's
parsed form is remembered in the cache, keyed by its text, so a warm run neither imports
nor runs the YAML parser (PyYAML's import alone compiles a large Unicode regex).

Only presets are remembered: they come with distill, so their parsed form is plain data of
known shape. A user's spec is parsed every time (its aliases could make the remembered JSON
much larger than the text, and reading it is checked by ``spec_yaml``'s caps).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.bounded import read_regular_file
from distill.cache import BlobCache
from distill.errors import DistillError

MAX_SPEC_BYTES = 1 << 20
NOT_A_SPEC_HINT = "a spec is a YAML mapping in UTF-8; see docs/spec.md"
PRESETS_NAMESPACE = "spec-presets"
_FORMAT = 1  # bump when Document's JSON changes


@dataclass(frozen=True)
class Document:
    """A spec's plain data and the line of each top-level key (and of each item of a
    top-level list), for error messages."""

    data: dict[str, Any]
    lines: dict[str, int]
    items: dict[str, list[int]]


def read_spec_text(path: Path, source: str) -> str:
    """A spec file's text: a regular file of at most MAX_SPEC_BYTES, in UTF-8."""
    try:
        data = read_regular_file(path, MAX_SPEC_BYTES, source, hint=NOT_A_SPEC_HINT)
    except FileNotFoundError:
        raise DistillError(f"{source}: no such file") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DistillError(f"{source}: not a spec: not UTF-8 text", hint=NOT_A_SPEC_HINT) from None


def _key(text: str) -> str:
    return hashlib.sha256(f"{_FORMAT}\0{text}".encode()).hexdigest()


def remembered(text: str, cache: BlobCache) -> Document | None:
    """The preset ``text``'s document as an earlier run parsed it, or None. A damaged or
    unreadable entry is a miss: the text is parsed again."""
    try:
        raw = cache.get_derived(PRESETS_NAMESPACE, _key(text))
        value = json.loads(raw) if raw is not None else None
    except (DistillError, ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    data, lines, items = value.get("data"), value.get("lines"), value.get("items")
    if not (isinstance(data, dict) and isinstance(lines, dict) and isinstance(items, dict)):
        return None
    return Document(data, lines, items)


def remember(text: str, document: Document, cache: BlobCache) -> None:
    """Keep a preset's document for the next run, when JSON gives it back exactly (a
    date or a non-string key would not survive); a cache that cannot be written is only
    a slower next run. Never the first write into a cache: a command refused before any
    work (an output it cannot write) must leave no cache directory behind."""
    if not cache.derived_dir.is_dir():
        return
    value = {"data": document.data, "lines": document.lines, "items": document.items}
    try:
        raw = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return
    if json.loads(raw) != value:
        return
    with contextlib.suppress(DistillError):
        cache.put_derived(PRESETS_NAMESPACE, _key(text), raw.encode())
