"""Dependency closure of a set of Debian packages, choosing exactly what apt would choose.

The walk mirrors apt's internal solver for ``apt-get install --no-install-recommends`` on an
empty system (``pkgDepCache::MarkInstall``): every root is marked first, then each package's
Pre-Depends and Depends are visited depth-first in field order; a dependency already satisfied
by a marked package is skipped, otherwise the first alternative with an installable candidate
wins, and among several candidates for one alternative apt's provider order decides. Only the
candidate (highest, or pinned) version of a name is ever considered, as in apt.

The distroless policy is applied afterwards, to the graph of that walk: excluded packages are
cut out and what is reachable from the roots only through them falls away. Pruning the walk
instead of steering it keeps every choice identical to apt's, so the image is always a subset
of what ``apt-get install`` would have unpacked.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from distill.debian.binary import BinaryPackage, Dependency, Relation
from distill.debian.control import gc_paused
from distill.debian.stanzas import IndexTables, index_tables
from distill.debian.version import compare_versions, parse_version, version_satisfies
from distill.errors import DistillError

if TYPE_CHECKING:
    from distill.debian.archive import PocketIndex

COMPONENT = "main"

# Packages that only serve dpkg and maintainer scripts at install time. distill unpacks
# packages without running maintainer scripts and writes what they would have generated
# itself (passwd/group, the CA bundle, the Java keystore), so none of these is needed in the
# image. Each entry is an fnmatch pattern on the package name; docs/resolver.md says why each
# one is install-time only.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "dpkg",  # the package manager itself; nothing runs it in a distroless image
    "debconf",  # configuration questions asked by maintainer scripts
    "debconf-i18n",
    "cdebconf",  # the other debconf-2.0 provider
    "ucf",  # config-file merging for maintainer scripts
    "tar",  # dpkg's unpacker (dpkg Depends tar)
    "perl-base",  # interpreter of maintainer scripts (and of debconf)
    "util-linux",  # Essential tools for admin scripts; pulls PAM and the login stack
    "login",
    "passwd",  # useradd/groupadd for postinst scripts: distill writes /etc/passwd itself
    "adduser",
    "base-passwd",  # seeds /etc/passwd at install time
    "libpam*",  # PAM only matters to login/su/passwd, which are excluded
    "init-system-helpers",  # deb-systemd-helper, invoke-rc.d: service setup at install time
    "sensible-utils",  # sensible-editor/pager for interactive scripts
    "readline-common",  # inputrc and info pages: interactive line editing only
    "install-info",  # updates the info directory at install time
    "ca-certificates-java",  # builds the Java keystore in a trigger: distill writes it itself
    "java-common",  # update-java-alternatives, an admin tool
)


class DepKind(StrEnum):
    PRE_DEPENDS = "Pre-Depends"
    DEPENDS = "Depends"


class ExclusionReason(StrEnum):
    INSTALL_TIME = "install-time only"
    SPEC = "excluded by spec"


@dataclass(frozen=True, slots=True)
class Provider:
    """A candidate package offering a virtual name, with the version it provides (if any)."""

    package: BinaryPackage
    version: str | None


@dataclass(frozen=True)
class Universe:
    """What apt would see for one suite and architecture: one candidate per name."""

    suite: str
    arch: str
    packages: Mapping[str, BinaryPackage]  # the candidate of each name
    available: Mapping[str, tuple[BinaryPackage, ...]]  # every version seen, highest first
    providers: Mapping[str, tuple[Provider, ...]]  # virtual name → candidates providing it
    # Per index, in the order apt reads them: the names its cache creates (see cache_rank).
    creation_orders: tuple[tuple[str, ...], ...] = ()
    _ranks: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def where(self) -> str:
        return f"{self.suite}/{COMPONENT} {self.arch}"

    def cache_rank(self, name: str) -> tuple[int, int]:
        """Where apt's cache creates ``name``'s package: the higher, the later (apt's ID order).

        That is the first index naming it and the name's place there, as apt reads the indices
        in order. Only a tie between providers needs it (about 20 dependencies in all of trixie
        reach one), so it is looked up when asked, not worked out for all ~150k names.
        """
        rank = self._ranks.get(name)
        if rank is None:
            rank = (-1, -1)  # not in any index: apt would have no package for it
            for number, order in enumerate(self.creation_orders):
                try:  # a linear scan in C: a millisecond or two for a whole suite
                    rank = (number, order.index(name))
                except ValueError:
                    continue
                break
            self._ranks[name] = rank
        return rank

    def names(self) -> list[str]:
        """Every name a dependency could point at: real and virtual."""
        return sorted({*self.packages, *self.providers})


class _Providers(Mapping[str, tuple[Provider, ...]]):
    """Virtual name → the candidates providing it, looked up on first use and remembered.

    A full suite provides ~70k names and a resolution asks about a few hundred, so each is
    found by bisecting the indices' sorted provides tables rather than indexed up front.
    """

    def __init__(
        self,
        tables: Sequence[tuple[IndexTables, Sequence[BinaryPackage]]],
        candidates: Mapping[str, BinaryPackage],
    ) -> None:
        self._tables = tables
        self._candidates = candidates
        self._found: dict[str, tuple[Provider, ...]] = {}

    def __getitem__(self, name: str) -> tuple[Provider, ...]:
        found = self._found.get(name)
        if found is None:
            found = self._found[name] = self._find(name)
        if not found:
            raise KeyError(name)
        return found

    def _find(self, name: str) -> tuple[Provider, ...]:
        found: list[Provider] = []
        for tables, packages in self._tables:
            provided = tables.provided
            start = bisect_left(provided, name)
            for row in range(start, bisect_right(provided, name, start)):
                pkg = packages[tables.providers[row]]
                if self._candidates.get(pkg.name) is pkg:  # only candidates provide
                    found.append(Provider(pkg, tables.provided_versions[row]))
        return tuple(found)

    def __iter__(self) -> Iterator[str]:
        names = {name for tables, _ in self._tables for name in tables.provided}
        return (name for name in sorted(names) if name in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True, slots=True)
class Edge:
    """``parent`` needs ``child`` through one dependency (``relation`` as written)."""

    parent: str
    kind: DepKind
    relation: str
    child: str

    def __str__(self) -> str:
        return f"{self.parent} {self.kind} {self.child}"


@dataclass(frozen=True, slots=True, order=True)
class Exclusion:
    """A package the policy kept out, and the dependencies of kept packages that wanted it."""

    name: str
    wanted_by: str  # the edges, e.g. "python3-minimal Depends dpkg" (", "-separated if several)
    reason: ExclusionReason
    edges: tuple[Edge, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        return f"{self.wanted_by} → excluded: {self.reason}"


@dataclass(frozen=True)
class Resolution:
    roots: tuple[str, ...]
    packages: tuple[BinaryPackage, ...]  # sorted by name
    excluded: tuple[Exclusion, ...]  # sorted
    why: Mapping[str, str]  # name → "libc6 ← python3.13-minimal Depends" (roots: "← requested")
    edges: tuple[Edge, ...]  # every dependency edge between kept packages

    def names(self) -> list[str]:
        return [p.name for p in self.packages]


# --- the universe -------------------------------------------------------------------------

# apt's pkgCache::State::VerPriority; a stanza without Priority keeps apt's zero.
_PRIORITY_RANK = {"": 0, "required": 1, "important": 2, "standard": 3, "optional": 4, "extra": 5}


def _suite_of(indices: Sequence[PocketIndex]) -> str:
    # Pockets are "<suite>", "<suite>-updates", "<suite>-security": the suite is the shortest.
    pockets = [index.pocket for index in indices]
    return min(pockets, key=len) if pockets else "?"


def _version_list(packages: Sequence[BinaryPackage]) -> str:
    return ", ".join(f"{p.version} ({p.pocket})" for p in packages)


def build_universe(
    indices: Sequence[PocketIndex], arch: str, pins: Mapping[str, str] | None = None
) -> Universe:
    """Merge pockets the way apt picks candidates: the highest version of each name wins.

    Only ``arch`` and ``all`` packages are kept (single-architecture resolution). A pin
    (``pins[name] = version``) selects that exact version instead. On equal versions the
    earlier pocket in ``indices`` is kept, so the suite itself wins over its -security copy.
    """
    # Tens of thousands of small acyclic objects: the cyclic collector would only rescan them.
    with gc_paused():
        return _build_universe(indices, arch, pins or {})


def _build_universe(indices: Sequence[PocketIndex], arch: str, pins: Mapping[str, str]) -> Universe:
    suite = _suite_of(indices)
    seen: dict[str, list[BinaryPackage]] = {}
    for index in indices:
        for pkg in index.packages:
            if pkg.architecture != arch and pkg.architecture != "all":
                continue
            versions = seen.get(pkg.name)
            if versions is None:
                seen[pkg.name] = [pkg]
            elif all(compare_versions(pkg.version, v.version) != 0 for v in versions):
                versions.append(pkg)  # (the same version again, from a later pocket, is not)
    available: dict[str, tuple[BinaryPackage, ...]] = {}
    for name, versions in seen.items():
        if len(versions) > 1:  # most names have one version: parsing them all costs a second
            versions.sort(key=lambda p: parse_version(p.version), reverse=True)
        available[name] = tuple(versions)
    candidates = {name: versions[0] for name, versions in available.items()}
    where = f"{suite}/{COMPONENT} {arch}"
    for name, wanted in pins.items():
        if name not in available:
            raise DistillError(
                f"pinned package {name}={wanted} is not in {where}", hint=_suggest(name, available)
            )
        match = [p for p in available[name] if compare_versions(p.version, wanted) == 0]
        if not match:
            raise DistillError(
                f"pinned version {name}={wanted} is not in {where}",
                hint=f"available: {_version_list(available[name])}",
            )
        candidates[name] = match[0]
    tables = [(_tables(index, arch), index.packages) for index in indices]
    return Universe(
        suite=suite,
        arch=arch,
        packages=candidates,
        available=available,
        providers=_Providers(tables, candidates),
        creation_orders=tuple(t.creation_order for t, _ in tables),
    )


def _tables(index: PocketIndex, arch: str) -> IndexTables:
    """The index's tables as loaded with it, or worked out now (a hand-made index)."""
    if index.tables is not None and index.tables.arch == arch:
        return index.tables
    return index_tables(index.packages, arch)


def _suggest(name: str, names: Mapping[str, object] | Sequence[str]) -> str:
    import difflib  # only for a wrong name: kept off the import of every run

    close = difflib.get_close_matches(name, list(names), n=5, cutoff=0.6)
    if close:
        return "did you mean: " + ", ".join(close) + "?"
    return "check the name with `apt-cache search`, or the suite and architecture"


# --- matching one relation ----------------------------------------------------------------


def _arch_ok(universe: Universe, rel: Relation, pkg: BinaryPackage) -> bool:
    """Whether ``pkg`` meets the relation's architecture qualifier, as dpkg's archsatisfied()."""
    qualifier = rel.qualifier
    if qualifier is None or qualifier == "native":
        return True
    if qualifier == "any":
        # dpkg and apt: "foo:any" is satisfied only by a Multi-Arch: allowed foo.
        return pkg.multi_arch == "allowed"
    # An explicit architecture: only ours can be met in a single-architecture resolution,
    # and apt files Architecture: all packages under the native architecture.
    return qualifier == universe.arch


def _priority_rank(pkg: BinaryPackage) -> int:
    return _PRIORITY_RANK.get(pkg.priority.strip().lower(), 5)


def _solutions(universe: Universe, rel: Relation) -> list[BinaryPackage]:
    """Candidates that satisfy one alternative, in apt's CompareProviders order.

    apt prefers the package named by the relation over providers of that name, then Essential
    packages, then the higher Priority, and last the package apt's cache created later.
    """
    found: list[BinaryPackage] = []
    real = universe.packages.get(rel.name)
    if (
        real is not None
        and version_satisfies(real.version, rel.op, rel.version)
        and _arch_ok(universe, rel, real)
    ):
        found.append(real)
    for provider in universe.providers.get(rel.name, ()):
        pkg = provider.package
        if any(p.name == pkg.name for p in found) or not _arch_ok(universe, rel, pkg):
            continue
        if rel.op is not None:
            # An unversioned Provides never satisfies a versioned dependency.
            if provider.version is None:
                continue
            if not version_satisfies(provider.version, rel.op, rel.version):
                continue
        found.append(pkg)
    if len(found) > 1:
        keys: dict[str, tuple[int, ...]] = {
            p.name: (p.name != rel.name, not p.essential, _priority_rank(p)) for p in found
        }
        if len(set(keys.values())) < len(keys):  # a tie: apt's cache order decides
            for name, key in keys.items():
                index, position = universe.cache_rank(name)
                keys[name] = (*key, -index, -position)
        found.sort(key=lambda p: (keys[p.name], p.name))
    return found


def _explain(universe: Universe, rel: Relation) -> str:
    """Why no candidate satisfies ``rel``, for an error message."""
    real = universe.packages.get(rel.name)
    providers = universe.providers.get(rel.name, ())
    if real is None and not providers:
        return f"not in {universe.where}"
    parts: list[str] = []
    if real is not None:
        if not _arch_ok(universe, rel, real):
            if rel.qualifier == "any":
                parts.append(f"{rel.name} is Multi-Arch: {real.multi_arch}, not allowed")
            else:
                parts.append(f"only {universe.arch} is resolved")
        else:
            others = [p for p in universe.available.get(rel.name, ()) if p is not real]
            text = f"{universe.where} has {real.version} ({real.pocket})"
            if others:
                text += f"; also {_version_list(others)}"
            parts.append(text)
    if providers:
        offers = ", ".join(
            f"{p.package.name} (= {p.version})" if p.version else f"{p.package.name} (unversioned)"
            for p in providers
        )
        parts.append(f"provided by {offers}")
    return "; ".join(parts)


def _group_text(group: Dependency) -> str:
    return " | ".join(str(rel) for rel in group)


def _dependencies(pkg: BinaryPackage) -> Iterator[tuple[DepKind, Dependency]]:
    # apt builds each version's dependency list Pre-Depends first, then Depends, both in the
    # order written; the walk visits them in that order.
    for group in pkg.pre_depends:
        yield DepKind.PRE_DEPENDS, group
    for group in pkg.depends:
        yield DepKind.DEPENDS, group


# --- the walk -----------------------------------------------------------------------------


class _Unsatisfiable(Exception):
    def __init__(self, chain: tuple[str, ...], detail: str) -> None:
        super().__init__(detail)
        self.chain = chain
        self.detail = detail


class _Walk:
    """The mutable state of one resolution: what is marked, and through which edges."""

    def __init__(self, universe: Universe, excluded: Callable[[str], bool]) -> None:
        self.universe = universe
        self.excluded = excluded
        self.marked: dict[str, BinaryPackage] = {}  # insertion order = marking order
        self.edges: list[Edge] = []

    def satisfier(self, group: Dependency) -> str | None:
        """The marked package that already satisfies ``group``, if any (first alternative)."""
        for rel in group:
            for pkg in _solutions(self.universe, rel):
                if self.marked.get(pkg.name) is pkg:
                    return pkg.name
        return None

    def expand(self, pkg: BinaryPackage, chain: tuple[str, ...]) -> None:
        for kind, group in _dependencies(pkg):
            relation = _group_text(group)
            done = self.satisfier(group)
            if done is not None:
                self.edges.append(Edge(pkg.name, kind, relation, done))
                continue
            options: list[BinaryPackage] = []
            for rel in group:
                taken = {p.name for p in options}
                options += [p for p in _solutions(self.universe, rel) if p.name not in taken]
            if not options:
                detail = "; ".join(f"{rel}: {_explain(self.universe, rel)}" for rel in group)
                if len(group) == 1:
                    detail = _explain(self.universe, group[0])
                raise _Unsatisfiable((*chain, relation), detail)
            failures: list[_Unsatisfiable] = []
            for option in options:
                edge = Edge(pkg.name, kind, relation, option.name)
                failure = self.install(option, edge, (*chain, option.name))
                if failure is None:
                    break
                failures.append(failure)  # apt moves on to the next alternative
            else:
                raise failures[0]

    def install(
        self, pkg: BinaryPackage, edge: Edge, chain: tuple[str, ...]
    ) -> _Unsatisfiable | None:
        """Mark ``pkg`` and its dependencies; on failure undo it all and say why."""
        before = (len(self.marked), len(self.edges))
        self.edges.append(edge)
        self.marked[pkg.name] = pkg
        marked = (len(self.marked), len(self.edges))
        try:
            self.expand(pkg, chain)
        except _Unsatisfiable as failure:
            if self.excluded(pkg.name):
                # An excluded package is never unpacked, so what it needs cannot break the
                # image: keep it as a leaf. (Excluding is how a user gets past such a break.)
                self.rollback(marked)
                return None
            self.rollback(before)
            return failure
        return None

    def rollback(self, mark: tuple[int, int]) -> None:
        n_marked, n_edges = mark
        for name in list(self.marked)[n_marked:]:
            del self.marked[name]
        del self.edges[n_edges:]


def _root_package(universe: Universe, name: str) -> BinaryPackage:
    pkg = universe.packages.get(name)
    if pkg is not None:
        return pkg
    providers = universe.providers.get(name, ())
    owners = sorted({p.package.name for p in providers})
    if len(owners) == 1:
        # apt-get install does the same: "Note, selecting X instead of virtual Y".
        return universe.packages[owners[0]]
    if owners:
        raise DistillError(
            f"{name} is a virtual package in {universe.where}, provided by {', '.join(owners)}",
            hint="ask for one of the providers by name",
        )
    raise DistillError(
        f"unknown package {name!r}: not in {universe.where}", hint=_suggest(name, universe.names())
    )


def _exclusion_reason(
    name: str, policy: bool, exclude: Sequence[str], keep: set[str]
) -> ExclusionReason | None:
    if name in keep:
        return None
    if any(fnmatchcase(name, pattern) for pattern in exclude):
        return ExclusionReason.SPEC
    if policy and any(fnmatchcase(name, pattern) for pattern in DEFAULT_EXCLUDES):
        return ExclusionReason.INSTALL_TIME
    return None


def resolve_closure(
    universe: Universe,
    roots: Sequence[str],
    exclude: Sequence[str] = (),
    include: Sequence[str] = (),
    policy: bool = True,
) -> Resolution:
    """The packages an image of ``roots`` needs: apt's closure, less what the policy cuts.

    ``policy`` applies DEFAULT_EXCLUDES; ``exclude`` adds fnmatch patterns; names in
    ``include`` (and the roots themselves) are never excluded. A dependency whose chosen
    package is excluded counts as satisfied, and what only that package needed stays out.
    """
    root_pkgs: list[BinaryPackage] = []
    for name in roots:
        pkg = _root_package(universe, name)
        if pkg not in root_pkgs:
            root_pkgs.append(pkg)
    keep = {*include, *(p.name for p in root_pkgs)}
    walk = _Walk(universe, lambda name: _exclusion_reason(name, policy, exclude, keep) is not None)
    # apt-get marks every requested package before installing the dependencies of any.
    for pkg in root_pkgs:
        walk.marked[pkg.name] = pkg
    for pkg in root_pkgs:
        try:
            walk.expand(pkg, (pkg.name,))
        except _Unsatisfiable as failure:
            raise DistillError(
                f"{' → '.join(failure.chain)}: {failure.detail}",
                hint="pin another version, pick another suite, or exclude the package that "
                "needs it",
            ) from None
    return _prune(walk, root_pkgs, exclude, keep, policy)


def _prune(
    walk: _Walk,
    root_pkgs: Sequence[BinaryPackage],
    exclude: Sequence[str],
    keep: set[str],
    policy: bool,
) -> Resolution:
    children: dict[str, list[Edge]] = {}
    for edge in walk.edges:
        children.setdefault(edge.parent, []).append(edge)
    # Breadth-first from the roots: each package's "why" is a shortest chain to a root.
    why = {p.name: f"{p.name} ← requested" for p in root_pkgs}
    kept_edges: list[Edge] = []
    cut: dict[str, list[Edge]] = {}  # excluded name → the edges of kept packages wanting it
    reasons: dict[str, ExclusionReason] = {}
    queue = deque(p.name for p in root_pkgs)
    while queue:
        parent = queue.popleft()
        for edge in children.get(parent, ()):
            reason = _exclusion_reason(edge.child, policy, exclude, keep)
            if reason is not None:
                reasons[edge.child] = reason
                cut.setdefault(edge.child, []).append(edge)
                continue
            kept_edges.append(edge)
            if edge.child not in why:
                why[edge.child] = f"{edge.child} ← {edge.parent} {edge.kind}"
                queue.append(edge.child)
    excluded = [
        Exclusion(name, ", ".join(map(str, wanting)), reasons[name], tuple(wanting))
        for name, wanting in cut.items()
    ]
    packages = sorted((walk.marked[name] for name in why), key=lambda p: p.name)
    return Resolution(
        roots=tuple(p.name for p in root_pkgs),
        packages=tuple(packages),
        excluded=tuple(sorted(excluded)),
        why=dict(sorted(why.items())),
        edges=tuple(kept_edges),
    )
