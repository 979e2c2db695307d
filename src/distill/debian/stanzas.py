"""Turn Packages-index stanzas into the typed model (BinaryPackage, Relation, Dependency).

Every relation field is parsed here once, so that a malformed index fails when it is loaded
(naming its pocket and package), but a BinaryPackage keeps the text and re-parses it lazily
from binary.py's cache; see binary.py for why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from sys import intern

from distill.debian.binary import (
    CACHE_LIMIT,
    BinaryPackage,
    parse_provides,
    parse_relations,
)
from distill.debian.control import gc_paused, parse_stanzas
from distill.errors import DistillError

__all__ = [
    "IndexTables",
    "index_tables",
    "other_relation_names",
    "package_from_stanza",
    "parse_packages_index",
    "parse_provides",
    "parse_relations",
]

_SOURCE = re.compile(
    r"\s*+(?P<name>[a-z0-9][a-z0-9+.-]*+)\s*+(?:\(\s*+(?P<ver>[^\s()<>=]++)\s*+\))?\s*+"
)
_sources: dict[str, tuple[str, str | None]] = {}

# The target names of a relation field, each with its qualifier: what follows the start, a
# comma or a bar. Only names are wanted from these fields (see other_relation_names), so text
# around them (versions, restrictions) is not checked.
_TARGET = re.compile(r"(?:^|[,|])\s*+([a-z0-9][a-z0-9+.-]*+(?::[a-z0-9][a-z0-9-]*+)?)")
_OTHER_FIELDS = ("conflicts", "breaks", "recommends", "suggests", "replaces", "enhances")


def other_relation_names(stanza: dict[str, str]) -> tuple[str, ...]:
    """Names in Conflicts, Breaks, Recommends, Suggests, Replaces and Enhances, apt's order.

    Each name appears once, as written (``foo:any`` stays qualified).
    """
    if stanza.keys().isdisjoint(_OTHER_FIELDS):  # most packages have none of them
        return ()
    get = stanza.get
    return tuple(dict.fromkeys(_TARGET.findall(",".join(filter(None, map(get, _OTHER_FIELDS))))))


def _source(field: str | None, name: str, version: str) -> tuple[str, str]:
    """``Source: src (version)``: the version is only given when it differs from the binary's."""
    if field is None:
        return name, version
    cached = _sources.get(field)
    if cached is None:
        if len(_sources) > CACHE_LIMIT:
            _sources.clear()
        match = _SOURCE.fullmatch(field)
        if match is None:
            raise DistillError(f"field 'source' is malformed: {field!r}")
        cached = _sources[field] = (match["name"], match["ver"])
    source, source_version = cached
    return source, source_version or version


def package_from_stanza(stanza: dict[str, str], pocket: str) -> BinaryPackage:
    """Build a BinaryPackage from one Packages stanza (keys lower-cased, as parse_stanzas gives).

    ``pocket`` records which index the stanza came from, e.g. ``trixie-security``. The relation
    fields are parsed (and so checked) here, though the package keeps their text.
    """
    get = stanza.get
    name = get("package", "?")
    try:
        version = stanza["version"]
        source, source_version = _source(get("source"), name, version)
        depends = get("depends", "")
        pre_depends = get("pre-depends", "")
        provides = get("provides", "")
        if depends:
            parse_relations(depends)
        if pre_depends:
            parse_relations(pre_depends)
        if provides:
            parse_provides(provides)
        installed_size = get("installed-size")
        # Positional, in field order: keywords cost a tenth of the parse here. Values that
        # repeat across the index are interned, so a loaded index holds one copy of each.
        return BinaryPackage(
            stanza["package"],
            version,
            intern(stanza["architecture"]),
            pocket,
            stanza["filename"],
            int(stanza["size"]),
            stanza["sha256"],
            source,
            source_version,
            intern(get("multi-arch", "no")),
            get("essential") == "yes",
            intern(get("priority", "")),
            intern(get("section", "")),
            int(installed_size) if installed_size else 0,
            depends,
            pre_depends,
            provides,
            other_relation_names(stanza),
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


# --- what the resolver needs of a whole index ------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexTables:
    """What resolving needs of every package of one index, beyond name, version and arch.

    Both tables come from relation fields, so they are worked out once per index and cached
    with it (see archive.py): a warm load then parses no relation of a package it never uses.
    """

    arch: str  # the architecture the creation order was worked out for
    # Every name apt's cache generator creates a package for, in creation order. A package's
    # ID in apt is that order, and apt's last tie-break between providers prefers higher IDs.
    creation_order: tuple[str, ...]
    # Every Provides entry, sorted by provided name (for bisection): the name, the position
    # of the providing package in the index, and the version it provides (None: unversioned).
    provided: tuple[str, ...]
    providers: tuple[int, ...]
    provided_versions: tuple[str | None, ...]


def index_tables(packages: Sequence[BinaryPackage], arch: str) -> IndexTables:
    """Work out an index's IndexTables (``arch``: the architecture the index is for)."""
    with gc_paused():
        return IndexTables(arch, _creation_order(packages, arch), *_provides_table(packages))


def _creation_order(packages: Sequence[BinaryPackage], arch: str) -> tuple[str, ...]:
    """The order in which apt's cache generator first creates a package for each name.

    apt reads each stanza's own name, then the targets of its relation fields in a fixed
    order (Pre-Depends, Depends, Conflicts, Breaks, Recommends, Suggests, Replaces, Enhances),
    then its Provides. A target qualified ``:any`` makes a separate ``name:any`` pseudo
    package, and one of a foreign architecture a package of that architecture, so neither
    creates the native package of the name; ``:native`` and ``:<arch>`` do. This matches the
    package IDs of apt 2.6's cache for every name of trixie and of bookworm (each with its
    -updates and -security pockets). Not modelled: once a foreign ``foo:i386`` exists, apt
    lets neither a Conflicts/Breaks/Replaces on ``foo`` nor a Multi-Arch: foreign package's
    ``Provides: foo`` create the native ``foo`` (no index of either suite does this).
    """
    native = {arch, "native"}
    order: dict[str, None] = {}
    add = order.setdefault
    for pkg in packages:
        add(pkg.name)
        for field in (pkg.pre_depends, pkg.depends):
            for group in field:
                for rel in group:
                    if rel.qualifier is None or rel.qualifier in native:
                        add(rel.name)
        for written in pkg.other_relation_names:
            name, _, qualifier = written.partition(":")
            if not qualifier or qualifier in native:
                add(name)
        for provided in pkg.provides:
            if provided.qualifier is None or provided.qualifier in native:
                add(provided.name)
    return tuple(order)


def _provides_table(
    packages: Sequence[BinaryPackage],
) -> tuple[tuple[str, ...], tuple[int, ...], tuple[str | None, ...]]:
    entries = [
        (provided.name, position, provided.version)
        for position, pkg in enumerate(packages)
        if pkg.provides_field
        for provided in pkg.provides
    ]
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    return (
        tuple(name for name, _, _ in entries),
        tuple(position for _, position, _ in entries),
        tuple(version for _, _, version in entries),
    )
