"""A fast deb822 parser for Packages, Release, status and ``.sources`` files.

A Packages index is ~65k stanzas and a million fields, so nothing here loops over lines in
Python on the common path: stanzas come from one ``str.split``, fields from one ``findall`` per
stanza, and a single regex search over the whole text proves every line well-formed. Unusual
input (comments, whitespace-only separator lines, errors) takes a slower line-by-line path that
normalises the text or pins the error to its line number.

Values are raw: the text after ``Field:`` less its leading blanks, then each continuation line
verbatim (leading blank included), joined with ``\\n``. Keys are lower-cased.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager

from distill.errors import DistillError

# A field line and its continuations. deb822 names are non-blank chars up to the colon, not
# starting with '#' or '-'. Possessive quantifiers: nothing here ever needs to backtrack.
_NAME = r"[^\s:#-][^\s:]*+"
_FIELD = re.compile(rf"^({_NAME}):[ \t]*+(.*+(?:\n[ \t].*+)*+)", re.MULTILINE)
_HEADER = re.compile(rf"{_NAME}:")

# What the fast path cannot take at face value, right after a newline: a line that is not blank,
# not a continuation and not ``Name:`` (a comment, a bad name, no colon, a line opening with
# a blank other than space or tab, which the field regex would silently skip), a
# whitespace-only line, or a continuation opening a stanza. Searching only at newlines keeps
# this one cheap scan.
_ODD_BLANK = r"[^\S \t\n]"
_ANOMALY = re.compile(rf"\n(?:{_NAME}(?!:)|[#:-]|[ \t]++(?:\n|\Z)|\n[ \t]|{_ODD_BLANK})")
# The same for the first line, after any leading blank lines.
_HEAD_ANOMALY = re.compile(rf"\n*+(?:{_NAME}(?!:)|[#: \t-]|{_ODD_BLANK})")
_COMMENT_LINE = re.compile(r"^#[^\n]*(?:\n|\Z)", re.MULTILINE)
_BLANK_LINE = re.compile(r"^[ \t]+$", re.MULTILINE)


class _Keys(dict[str, str]):
    """Lower-cased field names, shared: a million fields use a few dozen distinct key strings."""

    def __missing__(self, key: str) -> str:
        lowered = self[key] = key.lower()
        return lowered


_KEYS = _Keys()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while bulk-building objects that form no cycles.

    An index parse allocates millions of objects; each batch of allocations makes the collector
    rescan an ever larger heap, which on a full Packages index costs as much as the parse itself.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_stanzas(text: str, *, origin: str = "control data") -> list[dict[str, str]]:
    """Parse deb822 text into one dict per stanza, keys lower-cased, values raw.

    Stanzas are separated by one or more blank (or whitespace-only) lines; CRLF line ends and
    ``#`` comment lines (as in ``.sources`` files) are accepted.
    ``origin`` names the input in error messages (a file name or an index description).
    Raises DistillError, with the 1-based line number, on a line that is neither ``Name: value``,
    a continuation, a blank nor a comment; on a continuation opening a stanza; and on a field
    given twice in one stanza.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    checked = text
    if _HEAD_ANOMALY.match(text) or _ANOMALY.search(text):
        _check_lines(checked, origin)  # raises on a real error; otherwise the text is only unusual
        text = _BLANK_LINE.sub("", _COMMENT_LINE.sub("", text))

    with gc_paused():
        return _parse_checked(text, checked, origin)


def _parse_checked(text: str, checked: str, origin: str) -> list[dict[str, str]]:
    """The fast path, for text known to hold only fields, continuations and blank lines."""
    stanzas: list[dict[str, str]] = []
    append = stanzas.append
    findall = _FIELD.findall
    keys = _KEYS.__getitem__
    for chunk in text.split("\n\n"):
        # Runs of blank lines leave empty chunks or chunks opening with newlines.
        if not chunk or chunk[0] == "\n":
            chunk = chunk.strip("\n")
            if not chunk:
                continue
        pairs = findall(chunk)
        stanza = {keys(name): value for name, value in pairs}
        if len(stanza) != len(pairs):
            _check_lines(checked, origin)
            raise DistillError(f"{origin}: a field is repeated in a stanza")  # pragma: no cover
        append(stanza)
    return stanzas


def parse_stanza(text: str, *, origin: str = "control data") -> dict[str, str]:
    """Parse text holding at most one stanza (a Release file, a control file); empty gives {}."""
    stanzas = parse_stanzas(text, origin=origin)
    if len(stanzas) > 1:
        raise DistillError(
            f"{origin}: expected one stanza, found {len(stanzas)}",
            "stanzas are separated by blank lines; remove the stray blank line",
        )
    return stanzas[0] if stanzas else {}


def field_lines(value: str) -> list[str]:
    """The non-empty lines of a multi-line value, stripped (e.g. Release ``SHA256`` entries)."""
    return [line for line in (raw.strip() for raw in value.split("\n")) if line]


def _check_lines(text: str, origin: str) -> None:
    """Walk the text line by line and raise on the first malformed line."""
    in_field = False
    seen: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith("#"):
            continue  # a comment neither ends a stanza nor breaks a continuation
        if not line.strip(" \t"):
            in_field = False
            seen.clear()
            continue
        if line[0] in " \t":
            if not in_field:
                raise _line_error(origin, number, "continuation line outside any field")
            continue
        match = _HEADER.match(line)
        if match is None:
            raise _line_error(origin, number, f"expected 'Name: value', got {line[:60]!r}")
        name = match.group()[:-1].lower()
        if name in seen:
            raise _line_error(
                origin, number, f"field {name!r} repeats the one on line {seen[name]}"
            )
        seen[name] = number
        in_field = True


def _line_error(origin: str, number: int, what: str) -> DistillError:
    return DistillError(
        f"{origin}: line {number}: {what}",
        "deb822 wants 'Name: value' lines, continuations starting with a space, and blank "
        "lines between stanzas; is this really a Debian control file (and not signed/HTML)?",
    )
