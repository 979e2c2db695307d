"""Turn Packages-index stanzas into the typed model (BinaryPackage, Relation, Dependency).

A full index holds ~65k packages but only ~100k distinct dependency strings, and a handful of
those (``libc6 (>= 2.34)``) repeat tens of thousands of times, so parsed relations are cached
by their exact text and the resulting immutable objects are shared between packages.
"""

from __future__ import annotations

import re

from distill.debian.control import gc_paused, parse_stanzas
from distill.debian.model import BinaryPackage, Dependency, Relation, RelOp
from distill.errors import DistillError

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

_SOURCE = re.compile(
    r"\s*+(?P<name>[a-z0-9][a-z0-9+.-]*+)\s*+(?:\(\s*+(?P<ver>[^\s()<>=]++)\s*+\))?\s*+"
)

# Caches keyed by the exact field text. They only grow with distinct strings (about 100k for a
# full index), and are dropped wholesale past a bound so a long-lived process cannot balloon.
_CACHE_LIMIT = 1 << 19
_fields: dict[str, tuple[Dependency, ...]] = {}
_deps: dict[str, Dependency] = {}
_provides: dict[str, tuple[Relation, ...]] = {}
_sources: dict[str, tuple[str, str | None]] = {}


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
    if len(_fields) > _CACHE_LIMIT or len(_deps) > _CACHE_LIMIT:
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
    if len(_provides) > _CACHE_LIMIT:
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


def _source(field: str | None, name: str, version: str) -> tuple[str, str]:
    """``Source: src (version)``: the version is only given when it differs from the binary's."""
    if field is None:
        return name, version
    cached = _sources.get(field)
    if cached is None:
        if len(_sources) > _CACHE_LIMIT:
            _sources.clear()
        match = _SOURCE.fullmatch(field)
        if match is None:
            raise DistillError(f"field 'source' is malformed: {field!r}")
        cached = _sources[field] = (match["name"], match["ver"])
    source, source_version = cached
    return source, source_version or version


def package_from_stanza(stanza: dict[str, str], pocket: str) -> BinaryPackage:
    """Build a BinaryPackage from one Packages stanza (keys lower-cased, as parse_stanzas gives).

    ``pocket`` records which index the stanza came from, e.g. ``trixie-security``.
    """
    get = stanza.get
    name = get("package", "?")
    try:
        version = stanza["version"]
        source, source_version = _source(get("source"), name, version)
        depends = get("depends")
        pre_depends = get("pre-depends")
        provides = get("provides")
        installed_size = get("installed-size")
        return BinaryPackage(
            name=stanza["package"],
            version=version,
            architecture=stanza["architecture"],
            pocket=pocket,
            filename=stanza["filename"],
            size=int(stanza["size"]),
            sha256=stanza["sha256"],
            source=source,
            source_version=source_version,
            multi_arch=get("multi-arch", "no"),
            essential=get("essential") == "yes",
            priority=get("priority", ""),
            section=get("section", ""),
            installed_size=int(installed_size) if installed_size else 0,
            depends=parse_relations(depends) if depends else (),
            pre_depends=parse_relations(pre_depends) if pre_depends else (),
            provides=parse_provides(provides) if provides else (),
        )
    except KeyError as missing:
        raise DistillError(
            f"{pocket}: package {name!r} has no {missing.args[0]!r} field",
            "the Packages index looks truncated or is not a binary package index",
        ) from None
    except ValueError:
        raise DistillError(
            f"{pocket}: package {name!r}: Size or Installed-Size is not a number "
            f"({get('size')!r}, {get('installed-size')!r})",
            "the Packages index looks corrupt",
        ) from None
    except DistillError as error:
        raise DistillError(f"{pocket}: package {name!r}: {error.message}", error.hint) from None


def parse_packages_index(text: str, pocket: str) -> list[BinaryPackage]:
    """Parse a whole (decompressed) Packages file into BinaryPackages, in file order."""
    stanzas = parse_stanzas(text, origin=f"Packages index of {pocket}")
    with gc_paused():
        return [package_from_stanza(stanza, pocket) for stanza in stanzas]
