"""Debian version comparison with dpkg's exact semantics.

Each version is parsed once into a sort key made of plain tuples and ints, so comparing two
versions is a single C-level tuple comparison; the resolver compares the same few thousand
versions over and over, hence the cache on parsing.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from functools import lru_cache

from distill.debian.binary import RelOp
from distill.errors import DistillError

# One segment of a part: the dpkg order of each non-digit char (plus the 0 that dpkg sees where
# the segment ends), then the value of the digit run that follows it (0 when there is none).
_Segment = tuple[tuple[int, ...], int]
_PartKey = tuple[_Segment, ...]

# dpkg's order(): '~' sorts before the end of the string, which sorts before letters, which sort
# before every other character. Digits never reach this table: they are compared as numbers.
_ORDER: dict[str, int] = {c: ord(c) for c in string.ascii_letters}
_ORDER.update({c: ord(c) + 256 for c in ".+-:"})
_ORDER["~"] = -1

# dpkg keeps comparing an exhausted part as if it went on with empty segments worth 0. Every
# segment but the first has at least one non-digit char, so its first order value already differs
# from this terminator's: a key ending with it compares exactly like dpkg's padding.
_END: _Segment = ((0,), 0)

_DIGITS = re.compile(r"([0-9]+)")
_UPSTREAM_OK = re.compile(r"[A-Za-z0-9.+~:-]+")
_REVISION_OK = re.compile(r"[A-Za-z0-9.+~]+")
_EPOCH_MAX = 2**31 - 1  # dpkg stores the epoch in an int and refuses anything larger
# dpkg sets no limit, but archive versions stay under 100 characters; a longer one is damage
# or an attack, and would cost key memory (and past 4,300 digits, int() refuses a digit run).
MAX_VERSION_LENGTH = 1000


def _part_key(text: str) -> _PartKey:
    pieces = _DIGITS.split(text)  # [non-digits, digits, non-digits, ..., non-digits]
    order = _ORDER.__getitem__
    segments = [
        ((*map(order, pieces[i]), 0), int(pieces[i + 1])) for i in range(0, len(pieces) - 1, 2)
    ]
    last = pieces[-1]
    # A trailing empty run would equal _END only at the first position, so it is dropped there
    # and kept only when it is the whole part ("" and "0" must both reduce to (_END, _END)).
    if last or len(pieces) == 1:
        segments.append(((*map(order, last), 0), 0))
    segments.append(_END)
    return tuple(segments)


def _bad(version: str, why: str) -> DistillError:
    shown = repr(version) if len(version) <= 80 else repr(version[:80]) + "…"
    return DistillError(
        f"invalid Debian version {shown}: {why}",
        "versions look like [epoch:]upstream[-revision], e.g. 1:2.36-9+deb12u4",
    )


@dataclass(frozen=True, slots=True, order=True)
class DebVersion:
    """A parsed version. Equality and order follow dpkg, so ``1.0 == 1.0-0 == 0:1.0``."""

    epoch: int = field(compare=False)
    upstream: str = field(compare=False)
    revision: str = field(default="", compare=False)
    key: tuple[int, _PartKey, _PartKey] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        text = str(self)
        if len(text) > MAX_VERSION_LENGTH:
            raise _bad(text, f"it is longer than {MAX_VERSION_LENGTH} characters")
        if not 0 <= self.epoch <= _EPOCH_MAX:
            raise _bad(text, "epoch out of range")
        if not self.upstream:
            raise _bad(text, "upstream version is empty")
        if not _UPSTREAM_OK.fullmatch(self.upstream):
            raise _bad(text, "invalid character in upstream version")
        if self.revision and not _REVISION_OK.fullmatch(self.revision):
            raise _bad(text, "invalid character in revision")
        if "-" in self.upstream and not self.revision:
            raise _bad(text, "a hyphen in the upstream version needs a revision")
        key = (self.epoch, _part_key(self.upstream), _part_key(self.revision))
        object.__setattr__(self, "key", key)

    def __str__(self) -> str:
        # A colon in the upstream part only reads back correctly behind an explicit epoch.
        text = self.upstream
        if self.epoch or ":" in text:
            text = f"{self.epoch}:{text}"
        return f"{text}-{self.revision}" if self.revision else text


@lru_cache(maxsize=1 << 16)
def parse_version(version: str) -> DebVersion:
    """Parse ``[epoch:]upstream[-revision]`` as dpkg does; also usable as a ``sorted`` key.

    Surrounding whitespace is ignored, like dpkg. Beyond dpkg's hard errors (empty parts, bad
    epoch, embedded spaces), characters dpkg would only warn about are refused too: the archive
    never carries them, so meeting one means the input is not what it claims to be.
    """
    text = version.strip()
    if not text:
        raise _bad(version, "it is empty")
    if len(text) > MAX_VERSION_LENGTH:
        raise _bad(version, f"it is longer than {MAX_VERSION_LENGTH} characters")
    if any(c.isspace() for c in text):
        raise _bad(version, "it contains whitespace")
    epoch = 0
    epoch_text, colon, rest = text.partition(":")
    if colon:
        if not epoch_text:
            raise _bad(version, "epoch is empty")
        if not (epoch_text.isascii() and epoch_text.isdigit()):
            raise _bad(version, "epoch is not a number")
        epoch = int(epoch_text)
        if epoch > _EPOCH_MAX:
            raise _bad(version, "epoch is too big")
        if not rest:
            raise _bad(version, "nothing after the epoch colon")
    else:
        rest = text
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    elif not revision:
        raise _bad(version, "revision is empty")
    if not upstream:
        raise _bad(version, "upstream version is empty")
    return DebVersion(epoch, upstream, revision)


def compare_versions(a: str, b: str) -> int:
    """Return -1, 0 or 1 as ``a`` sorts before, equal to or after ``b`` for dpkg."""
    ka = parse_version(a).key
    kb = parse_version(b).key
    return (ka > kb) - (ka < kb)


# For each operator, whether it accepts a comparison result of -1, 0, 1 (indexed by result + 1).
_ACCEPTS: dict[RelOp, tuple[bool, bool, bool]] = {
    RelOp.LT: (True, False, False),
    RelOp.LE: (True, True, False),
    RelOp.EQ: (False, True, False),
    RelOp.GE: (False, True, True),
    RelOp.GT: (False, False, True),
}


def version_satisfies(candidate: str, op: RelOp | None, wanted: str | None) -> bool:
    """Whether ``candidate`` meets ``(op wanted)``; an unversioned relation accepts anything."""
    if op is None:
        return True
    if wanted is None:
        raise DistillError(f"relation operator {op} has no version to compare with")
    return _ACCEPTS[op][compare_versions(candidate, wanted) + 1]
