"""Typed view of Debian binary package stanzas, and the grammar of their relation fields.

A BinaryPackage keeps its Depends, Pre-Depends and Provides as the index wrote them and parses
them on first use: a full index holds ~70k packages, a resolution reads the relations of a few
hundred, and building every Relation up front is what made loading a cached index slow. Parsed
relations are cached by their exact text, and the resulting immutable objects are shared
between packages: ~60k Depends fields hold ~45k distinct strings, and a handful of them
(``libc6 (>= 2.34)``) repeat tens of thousands of times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from distill.errors import DistillError


class RelOp(StrEnum):
    LT = "<<"
    LE = "<="
    EQ = "="
    GE = ">="
    GT = ">>"


@dataclass(frozen=True, slots=True)
class Relation:
    """One alternative of a dependency: ``name[:qual] [(op version)]``."""

    name: str
    qualifier: str | None = None  # "any", "native" or an architecture
    op: RelOp | None = None
    version: str | None = None

    def __str__(self) -> str:
        text = self.name + (f":{self.qualifier}" if self.qualifier else "")
        if self.op is not None:
            text += f" ({self.op} {self.version})"
        return text


# A dependency is a tuple of alternatives (``a | b``); a field is a tuple of dependencies.
Dependency = tuple[Relation, ...]


@dataclass(frozen=True, slots=True)
class BinaryPackage:
    name: str
    version: str
    architecture: str
    pocket: str  # e.g. "trixie-security": which index it came from
    filename: str  # pool path relative to the mirror root
    size: int
    sha256: str
    source: str
    source_version: str
    multi_arch: str = "no"
    essential: bool = False
    priority: str = ""
    section: str = ""
    installed_size: int = 0  # KiB, as in the index
    # The relation fields as written in the index ("" when absent); see depends etc. below.
    depends_field: str = ""
    pre_depends_field: str = ""
    provides_field: str = ""
    # Every package named by Conflicts, Breaks, Recommends, Suggests, Replaces and Enhances, in
    # that order (apt's), each once, with its ``:qualifier`` if written. distill does not follow
    # these relations, but they decide the order in which apt's cache creates packages, and so
    # apt's last tie-break between equal providers.
    other_relation_names: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}:{self.architecture}"

    @property
    def depends(self) -> tuple[Dependency, ...]:
        return parse_relations(self.depends_field) if self.depends_field else ()

    @property
    def pre_depends(self) -> tuple[Dependency, ...]:
        return parse_relations(self.pre_depends_field) if self.pre_depends_field else ()

    @property
    def provides(self) -> tuple[Relation, ...]:
        return parse_provides(self.provides_field) if self.provides_field else ()


# --- relation fields ----------------------------------------------------------------------

# name[:qualifier] [(op version)] [[arch ...]] [<profile ...> ...]. The restrictions only occur
# in source-package fields; they are accepted and dropped since a binary index is already
# filtered for its architecture.
_RELATION = re.compile(
    r"""\s*+
    (?P<name>[a-z0-9][a-z0-9+.-]*+)
    (?::(?P<qual>[a-z0-9][a-z0-9-]*+))?
    \s*+(?:\(\s*+(?P<op><<|<=|>=|>>|=|<|>)\s*+(?P<ver>[^\s()<>=]++)\s*+\))?
    \s*+(?:\[[^\[\]]*+\]\s*+)?
    (?:<[^<>]*+>\s*+)*+""",
    re.VERBOSE,
)

# A Provides entry: no alternatives, no restrictions, and only "=" may version it.
_PROVIDE = (
    r"\s*+([a-z0-9][a-z0-9+.-]*+)(?::([a-z0-9][a-z0-9-]*+))?"
    r"\s*+(?:\((\s*+=\s*+)([^\s()<>=]++)\s*+\)\s*+)?"
)
_PROVIDES = re.compile(rf"(?:{_PROVIDE})?(?:,(?:{_PROVIDE})?)*")
_PROVIDE_ITEMS = re.compile(rf"{_PROVIDE},?")

# "<" and ">" are dpkg's obsolete spellings of "<=" and ">=", not strict comparisons.
_OPS: dict[str, RelOp] = {
    "<<": RelOp.LT,
    "<=": RelOp.LE,
    "<": RelOp.LE,
    "=": RelOp.EQ,
    ">=": RelOp.GE,
    ">": RelOp.GE,
    ">>": RelOp.GT,
}

# Caches keyed by the exact field text. They only grow with distinct strings (about 100k for a
# full index), and are dropped wholesale past a bound so a long-lived process cannot balloon.
CACHE_LIMIT = 1 << 19
_fields: dict[str, tuple[Dependency, ...]] = {}
_deps: dict[str, Dependency] = {}
_provides: dict[str, tuple[Relation, ...]] = {}


def clear_relation_caches() -> None:
    """Forget every parsed relation (for benchmarks that time a first parse)."""
    _fields.clear()
    _deps.clear()
    _provides.clear()


def _relation_error(text: str, why: str) -> DistillError:
    return DistillError(
        f"cannot parse package relation {text.strip()!r}: {why}",
        "relations look like 'name[:arch] [(op version)]' with op one of << <= = >= >>",
    )


def _parse_relation(text: str) -> Relation:
    match = _RELATION.fullmatch(text)
    if match is None:
        raise _relation_error(text, "unexpected syntax")
    name, qualifier, op, version = match.groups()
    if op is None:
        return Relation(name, qualifier)
    return Relation(name, qualifier, _OPS[op], version)


def _parse_dependency(text: str) -> Dependency:
    if "|" not in text:
        match = _RELATION.fullmatch(text)
        if match is not None:
            name, qualifier, op, version = match.groups()
            if op is None:
                return (Relation(name, qualifier),)
            return (Relation(name, qualifier, _OPS[op], version),)
        if not text or text.isspace():
            return ()
        return (_parse_relation(text),)  # raises the syntax error
    alternatives = text.split("|")
    for alternative in alternatives:
        if not alternative.strip():
            raise _relation_error(text, "empty alternative around '|'")
    return tuple(map(_parse_relation, alternatives))


def parse_relations(field: str) -> tuple[Dependency, ...]:
    """Parse a Depends-style field: comma-separated dependencies of ``|``-separated alternatives.

    Empty entries (a stray or trailing comma) are skipped; anything else unparsable raises
    DistillError.
    """
    cached = _fields.get(field)
    if cached is not None:
        return cached
    if len(_fields) > CACHE_LIMIT or len(_deps) > CACHE_LIMIT:
        _fields.clear()
        _deps.clear()
    deps = _deps
    result: list[Dependency] = []
    for piece in field.split(","):
        dep = deps.get(piece)
        if dep is None:
            dep = deps[piece] = _parse_dependency(piece)
        if dep:
            result.append(dep)
    parsed = _fields[field] = tuple(result)
    return parsed


def parse_provides(field: str) -> tuple[Relation, ...]:
    """Parse a Provides field; a versioned provide may only use ``=`` (as dpkg enforces)."""
    cached = _provides.get(field)
    if cached is not None:
        return cached
    if len(_provides) > CACHE_LIMIT:
        _provides.clear()
    # Provides lists are long and mostly unique (Rust crates list every feature), so one regex
    # pass over the whole field beats splitting it and caching the pieces.
    if _PROVIDES.fullmatch(field) is None:
        return _provides_slowly(field)
    parsed = _provides[field] = tuple(
        [
            Relation(name, qual or None, RelOp.EQ, version) if op else Relation(name, qual or None)
            for name, qual, op, version in _PROVIDE_ITEMS.findall(field)
        ]
    )
    return parsed


def _provides_slowly(field: str) -> tuple[Relation, ...]:
    """Explain why a Provides field failed the fast regex (or parse it, if only spacing is odd)."""
    relations: list[Relation] = []
    for piece in field.split(","):
        if "|" in piece:
            raise _relation_error(piece, "Provides cannot list alternatives")
        dep = _parse_dependency(piece)
        if dep:
            relation = dep[0]
            if relation.op is not None and relation.op is not RelOp.EQ:
                raise _relation_error(piece, "a versioned Provides must use '='")
            relations.append(relation)
    return tuple(relations)
