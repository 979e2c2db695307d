"""Version order for the OSV ecosystems distill scans: PEP 440 (PyPI), SemVer 2.0 (npm) and
Maven's ``ComparableVersion``.

Each ecosystem gives a sort key (``None`` for a version its rules cannot order), so that a
range check is plain comparisons. Maven's order is not a total order of tuples (its padding
rules compare an item against "nothing"), so its key wraps a comparison function.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from packaging.version import InvalidVersion, Version

# ---------------------------------------------------------------- PEP 440


def pep440_key(version: str) -> Any:
    try:
        return Version(version)
    except InvalidVersion:
        return None


# ---------------------------------------------------------------- SemVer 2.0 (npm)

_SEMVER = re.compile(
    r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)


def semver_key(version: str) -> Any:
    """Precedence per SemVer 2.0 §11: build metadata ignored, a pre-release sorts before its
    release, numeric identifiers before alphanumeric ones and by value."""
    match = _SEMVER.fullmatch(version.strip())
    if not match:
        return None
    major, minor, patch, pre = match.groups()
    if pre is None:
        tail: tuple[Any, ...] = (1,)
    else:
        tail = (0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return (int(major), int(minor), int(patch), tail)


# ---------------------------------------------------------------- Maven ComparableVersion

# Known qualifiers in their order; "" is the release itself. Unknown ones sort after all of
# these, alphabetically (the key is compared as text, as Maven does).
_QUALIFIERS = ("alpha", "beta", "milestone", "rc", "snapshot", "", "sp")
_ALIASES = {"ga": "", "final": "", "release": "", "cr": "rc"}
_SHORT = {"a": "alpha", "b": "beta", "m": "milestone"}
_RELEASE = str(_QUALIFIERS.index(""))

_Item = int | str | list[Any]  # a number, a qualifier's comparable text, a sub-list


def _qualifier(text: str, followed_by_digit: bool) -> str:
    if followed_by_digit and text in _SHORT:
        text = _SHORT[text]
    text = _ALIASES.get(text, text)
    if text in _QUALIFIERS:
        return str(_QUALIFIERS.index(text))
    return f"{len(_QUALIFIERS)}-{text}"


def _is_null(item: _Item) -> bool:
    return item == 0 or item == _RELEASE or item == []


def _normalize(items: list[_Item]) -> None:
    """Drop trailing "null" items (0, the release qualifier, empty lists), looking through
    sub-lists (they were normalized first and may now be empty)."""
    for i in range(len(items) - 1, -1, -1):
        if _is_null(items[i]):
            del items[i]
        elif not isinstance(items[i], list):
            break


def _maven_items(version: str) -> list[_Item]:
    """Tokens split at '.', '-' and digit/letter transitions; '-' and a transition open a
    sub-list, so "1-1" and "1.1" differ."""
    text = version.strip().lower()
    root: list[_Item] = []
    current = root
    lists = [root]
    digits = False
    start = 0

    def token(end: int, followed_by_digit: bool = False) -> _Item:
        part = text[start:end]
        return int(part) if digits else _qualifier(part, followed_by_digit)

    def sublist() -> list[_Item]:
        new: list[_Item] = []
        current.append(new)
        lists.append(new)
        return new

    for i, ch in enumerate(text):
        if ch in ".-":
            current.append(0 if i == start else token(i))
            start = i + 1
            if ch == "-":
                current = sublist()
        elif "0" <= ch <= "9":
            if not digits and i > start:
                current.append(token(i, followed_by_digit=True))
                start = i
                current = sublist()
            digits = True
        else:
            if digits and i > start:
                current.append(token(i))
                start = i
                current = sublist()
            digits = False
    if len(text) > start:
        current.append(token(len(text)))
    for items in reversed(lists):
        _normalize(items)
    return root


def _compare(a: _Item | None, b: _Item | None) -> int:
    if a is None:
        return 0 if b is None else -_compare(b, None)
    if isinstance(a, int):
        if b is None:
            return 0 if a == 0 else 1
        if isinstance(b, int):
            return (a > b) - (a < b)
        return 1  # 1.1 > 1-sp and 1.1 > 1-1
    if isinstance(a, str):
        if b is None:
            return (a > _RELEASE) - (a < _RELEASE)
        if isinstance(b, str):
            return (a > b) - (a < b)
        return -1  # 1.qualifier < 1.1 and < 1-1
    if b is None:
        return next((r for r in (_compare(x, None) for x in a) if r), 0)
    if isinstance(b, int):
        return -1
    if isinstance(b, str):
        return 1
    for i in range(max(len(a), len(b))):
        result = _compare(a[i] if i < len(a) else None, b[i] if i < len(b) else None)
        if result:
            return result
    return 0


def maven_compare(a: str, b: str) -> int:
    """-1, 0 or 1 as Maven orders versions ``a`` and ``b``."""
    return _compare(_maven_items(a), _maven_items(b))


def _compare_lists(a: list[_Item], b: list[_Item]) -> int:
    return _compare(a, b)


_MavenKey = functools.cmp_to_key(_compare_lists)


def maven_key(version: str) -> Any:
    return _MavenKey(_maven_items(version)) if version.strip() else None


# ---------------------------------------------------------------- by ecosystem

KEYS: dict[str, Callable[[str], Any]] = {
    "pypi": pep440_key,
    "npm": semver_key,
    "maven": maven_key,
}
