"""Advisories derived from the Debian mirror alone: what a newer candidate's changelog says
it fixed.

For each Debian package of an image that its release's pockets (suite, ``-updates``,
``-security``) carry in a newer version, the candidate's ``changelog.Debian.gz`` is read
from its .deb (verified against the signed indices, cached by content), and every CVE id
named in an entry newer than the installed version becomes an advisory fixed in that
entry's version. One .deb per source package and candidate version is enough: the binaries
of one source share a changelog. What a .deb yielded is cached per (source, candidate
version), so a second scan opens no .deb at all.

Offline, only the cache is used: the indices last verified for the release, the derived
results and the .debs already there. Whatever cannot be checked that way is listed in
``unchecked``, never passed over in silence.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests

from distill.bounded import one_line, parse_json, parse_json_object
from distill.cache import BlobCache
from distill.debian.archive import PocketIndex, cached_index, load_indices, pockets_for
from distill.debian.binary import BinaryPackage
from distill.debian.changelog import Changelog, read_deb_changelog
from distill.debian.mirror import Mirrors
from distill.debian.version import parse_version
from distill.errors import DistillError
from distill.net.download import DownloadRequest, fetch_all, fetch_blob
from distill.net.http import make_session
from distill.scan.model import DebianAdvisory, ImagePackage, Origin

URGENCY = "not yet assigned"  # a changelog's urgency is the upload's, not the issue's
STATUS = "resolved"
# Bump when what is derived from a .deb changes, so older cache entries are not reused.
_FORMAT = "1"
_DERIVED = "changelog"
_POINTER = "changelog-indices"
# How many .debs of one source to try for its changelog (some binaries ship none), and how
# many doc-directory symlinks to follow from one of them.
_MAX_DEBS = 3
_MAX_HOPS = 4
_JOBS = 4  # .debs downloaded at once
_NO_CHANGELOG = "no binary of its source ships a changelog"
_CODENAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
_SINGLE_POCKET = frozenset({"sid", "unstable", "experimental"})


@dataclass(frozen=True, slots=True)
class ChangelogAdvisories:
    advisories: tuple[DebianAdvisory, ...] = ()
    unchecked: tuple[str, ...] = ()  # what could not be checked, and why, one line each
    checked: int = 0  # Debian packages whose candidate was looked up (and changelog read)
    outdated: int = 0  # of those, packages with a newer candidate
    opened: int = 0  # .debs read in this run (0: every result came from the cache)
    indices_date: datetime | None = None  # the newest index the candidates were taken from


@dataclass(frozen=True, slots=True)
class _Entry:
    version: str
    binary_only: bool
    cves: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Derived:
    """What one candidate's changelog says, kept independent of any installed version."""

    entries: tuple[_Entry, ...]  # only the entries that name CVE ids, newest first
    oldest: str  # the oldest entry read ("" if none): a cut changelog stops there
    cut: bool
    deb: str  # the .deb it was read from
    missing: str = ""  # why there is no changelog to read ("": there is one)

    def to_json(self) -> bytes:
        entries = [[e.version, e.binary_only, list(e.cves)] for e in self.entries]
        doc = {"format": _FORMAT, "entries": entries, "oldest": self.oldest, "cut": self.cut}
        return json.dumps({**doc, "deb": self.deb, "missing": self.missing}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> _Derived:
        doc = parse_json_object(data, "cached changelog result")
        if doc.get("format") != _FORMAT:
            raise ValueError("stale format")
        entries = tuple(
            _Entry(str(v), bool(b), tuple(str(c) for c in cves)) for v, b, cves in doc["entries"]
        )
        oldest, deb, missing = str(doc["oldest"]), str(doc["deb"]), str(doc["missing"])
        return cls(entries, oldest, bool(doc["cut"]), deb, missing)


@dataclass
class _Group:
    """The image's packages whose candidates come from one source at one version."""

    candidate: BinaryPackage
    packages: list[ImagePackage] = field(default_factory=list)


class _Fetcher:
    """The .debs of candidates: from the cache, or (online) downloaded and verified."""

    def __init__(
        self, cache: BlobCache, mirrors: Callable[[], Mirrors] | None, offline: bool
    ) -> None:
        self.cache = cache
        self._mirrors_of = mirrors
        self._mirrors: Mirrors | None = None
        self.offline = offline
        self._session: requests.Session | None = None
        self.opened = 0

    def deb(self, pkg: BinaryPackage) -> Path | None:
        cached = self.cache.get(pkg.sha256, pkg.size)
        if cached is not None or self.offline:
            return cached
        if self._session is None:
            self._session = make_session()
        return fetch_blob(self._request(pkg), self.cache, session=self._session)

    def _request(self, pkg: BinaryPackage) -> DownloadRequest:
        if self._mirrors is None:
            assert self._mirrors_of is not None
            self._mirrors = self._mirrors_of()
        url = f"{self._mirrors.for_pocket(pkg.pocket)}/{pkg.filename}"
        name = pkg.filename.rsplit("/", 1)[-1]
        return DownloadRequest(url=url, sha256=pkg.sha256, size=pkg.size, name=name)

    def prefetch(self, packages: Sequence[BinaryPackage]) -> None:
        """Download these .debs in parallel ahead of reading them. A failure is left for
        the one-by-one fetch to meet again and name, with the packages it concerns."""
        if self.offline or not packages:
            return
        with contextlib.suppress(DistillError):
            fetch_all([self._request(p) for p in packages], self.cache, _JOBS, False)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


def changelog_advisories(
    packages: Sequence[ImagePackage],
    release: str,
    arch: str,
    *,
    cache: BlobCache,
    mirrors: Callable[[], Mirrors],
    offline: bool = False,
) -> ChangelogAdvisories:
    """Advisories for the image's Debian ``packages`` from their newer candidates'
    changelogs in ``release`` (a codename) for ``arch``. ``mirrors`` is only called when
    something must be downloaded; ``offline`` uses the cache alone."""
    if not _CODENAME.fullmatch(release):
        raise DistillError(
            f"not a Debian release codename: {one_line(release, 80)!r}",
            hint="the image's os-release names its release in VERSION_CODENAME (e.g. bookworm)",
        )
    debs = [p for p in packages if p.ecosystem == "deb"]
    if not debs:
        return ChangelogAdvisories()
    indices = _indices(release, arch, cache, mirrors, offline)
    if indices is None:
        return ChangelogAdvisories(
            unchecked=(
                f"{len(debs)} Debian packages: no cached index of {release} ({arch}); "
                "scan once without --offline",
            )
        )
    date = max(index.date for index in indices)
    unchecked: list[str] = []
    candidates = _candidates(indices, arch, {p.name for p in debs})
    groups: dict[tuple[str, str], _Group] = {}
    checked = 0
    for pkg in debs:
        candidate = candidates.get(pkg.name)
        try:
            newer = candidate is not None and _newer(candidate.version, pkg.version)
        except DistillError:
            unchecked.append(f"{_label(pkg)}: version not understood")
            continue
        if candidate is None or not newer:
            checked += 1
            continue
        key = (candidate.source, candidate.version)
        groups.setdefault(key, _Group(candidate)).packages.append(pkg)
    siblings = _siblings(indices, arch, {g.candidate.source for g in groups.values()})
    fetcher = _Fetcher(cache, mirrors, offline)
    found: dict[tuple[str, str], tuple[str, str]] = {}  # (source, id) → (version, why)
    outdated = 0
    try:
        fetcher.prefetch(
            [
                _choices(g.candidate, siblings, fetcher)[0]
                for g in groups.values()
                if cache.get_derived(_DERIVED, _derived_key(g.candidate, arch)) is None
            ]
        )
        for group in groups.values():
            outdated += len(group.packages)
            derived, problem = _derive(group.candidate, siblings, arch, fetcher)
            if derived is None:
                unchecked += [_unchecked(p, group.candidate, problem) for p in group.packages]
                continue
            checked += len(group.packages)
            for pkg in group.packages:
                unchecked += _record(pkg, group.candidate, derived, found)
    finally:
        fetcher.close()
    advisories = tuple(
        DebianAdvisory(
            vuln_id=vuln_id,
            source_package=source,
            release=release,
            status=STATUS,
            fixed_version=version,
            urgency=URGENCY,
            description=why,
            origin=Origin.CHANGELOG,
        )
        for (source, vuln_id), (version, why) in sorted(found.items())
    )
    return ChangelogAdvisories(
        advisories, tuple(unchecked), checked, outdated, fetcher.opened, date
    )


def _newer(version: str, than: str) -> bool:
    return parse_version(version) > parse_version(than)


def _label(pkg: ImagePackage) -> str:
    """A package named in a message: its name and version come from the image."""
    return one_line(f"{pkg.name} {pkg.version}", 200)


def _unchecked(pkg: ImagePackage, candidate: BinaryPackage, problem: str) -> str:
    return f"{_label(pkg)} (newer: {candidate.version}): {problem}"


def _record(
    pkg: ImagePackage,
    candidate: BinaryPackage,
    derived: _Derived,
    found: dict[tuple[str, str], tuple[str, str]],
) -> list[str]:
    """Note the CVE ids of the entries newer than what ``pkg`` has installed. Source entries
    are compared with the installed source version, binNMU entries with the binary's."""
    installed_source = pkg.source_version or pkg.version
    source = candidate.source
    try:
        for entry in derived.entries:
            if not _newer(entry.version, pkg.version if entry.binary_only else installed_source):
                continue
            why = f"named in the changelog of {source} {entry.version}"
            for vuln_id in entry.cves:
                known = found.get((source, vuln_id))
                # An id named again later (a regression fix) stays fixed where it was first.
                if known is None or _newer(known[0], entry.version):
                    found[(source, vuln_id)] = (entry.version, why)
        if derived.cut and derived.oldest and _newer(derived.oldest, installed_source):
            return [
                f"{_label(pkg)}: the changelog in {derived.deb} is cut short; "
                f"entries older than {derived.oldest} were not read"
            ]
    except DistillError:
        return [f"{_label(pkg)}: version not understood"]
    return []


# --- indices and candidates -------------------------------------------------------------


def _pockets(release: str) -> tuple[str, ...]:
    return (release,) if release in _SINGLE_POCKET else pockets_for(release)


def _pointer_key(release: str, arch: str) -> str:
    return hashlib.sha256(f"{_FORMAT}:{release}:{arch}".encode()).hexdigest()


def _indices(
    release: str,
    arch: str,
    cache: BlobCache,
    mirrors: Callable[[], Mirrors],
    offline: bool,
) -> list[PocketIndex] | None:
    """The release's verified indices: fetched (and remembered for offline use), or, offline,
    the ones last verified; None when offline and there are none."""
    key = _pointer_key(release, arch)
    if not offline:
        indices = load_indices(release, arch, mirrors(), pockets=_pockets(release), cache=cache)
        pointer = [
            {"pocket": i.pocket, "sha256": i.sha256, "date": i.date.isoformat()} for i in indices
        ]
        cache.put_derived(_POINTER, key, json.dumps(pointer).encode())
        return indices
    data = cache.get_derived(_POINTER, key)
    if data is None:
        return None
    try:
        pointer = parse_json(data, "cached index pointer")
        found = [
            cached_index(p["pocket"], arch, p["sha256"], datetime.fromisoformat(p["date"]), cache)
            for p in pointer
        ]
    except (DistillError, ValueError, KeyError, TypeError):
        return None  # damaged: as if there were none
    indices = [i for i in found if i is not None]
    return indices if len(indices) == len(found) and indices else None


def _candidates(
    indices: Iterable[PocketIndex], arch: str, names: set[str]
) -> dict[str, BinaryPackage]:
    """apt's candidate of each name: the highest version in any pocket."""
    best: dict[str, BinaryPackage] = {}
    for index in indices:
        for pkg in index.packages:
            if pkg.name not in names or pkg.architecture not in (arch, "all"):
                continue
            known = best.get(pkg.name)
            if known is None or _newer(pkg.version, known.version):
                best[pkg.name] = pkg
    return best


_Siblings = dict[tuple[str, str], list[BinaryPackage]]


def _siblings(indices: Iterable[PocketIndex], arch: str, sources: set[str]) -> _Siblings:
    """Every binary of the given sources, by (source, source version)."""
    found: _Siblings = {}
    for index in indices:
        for pkg in index.packages:
            if pkg.source in sources and pkg.architecture in (arch, "all"):
                found.setdefault((pkg.source, pkg.source_version), []).append(pkg)
    return found


# --- reading a candidate's changelog ------------------------------------------------------


def _derived_key(candidate: BinaryPackage, arch: str) -> str:
    text = f"{_FORMAT}:{candidate.source}:{candidate.version}:{arch}"
    return hashlib.sha256(text.encode()).hexdigest()


def _choices(
    candidate: BinaryPackage, siblings: _Siblings, fetcher: _Fetcher
) -> list[BinaryPackage]:
    """The source's binaries at the candidate's version, in the order to read them: offline,
    those in the cache first; then a binNMU's arch-specific ones (only they carry its own
    changelog); then the smallest."""
    same = siblings.get((candidate.source, candidate.source_version), [candidate])

    def rank(pkg: BinaryPackage) -> tuple[bool, bool, int, str]:
        missing = fetcher.offline and fetcher.cache.get(pkg.sha256, pkg.size) is None
        return missing, pkg.version != candidate.version, pkg.size, pkg.name

    return sorted(same, key=rank)


def _derive(
    candidate: BinaryPackage, siblings: _Siblings, arch: str, fetcher: _Fetcher
) -> tuple[_Derived | None, str]:
    """The candidate's changelog, from the cache or its source's smallest .debs."""
    key = _derived_key(candidate, arch)
    data = fetcher.cache.get_derived(_DERIVED, key)
    if data is not None:
        try:
            cached = _Derived.from_json(data)
        except (DistillError, ValueError, KeyError, TypeError):
            pass  # damaged or stale: derive it again
        else:
            return (None, cached.missing) if cached.missing else (cached, "")
    same = siblings.get((candidate.source, candidate.source_version), [candidate])
    problem = _NO_CHANGELOG
    for pkg in _choices(candidate, siblings, fetcher)[:_MAX_DEBS]:
        try:
            result = _read_following_links(pkg, same, arch, fetcher)
        except DistillError as exc:
            return None, one_line(exc.message, 300)
        if result is None:
            problem = "its .deb is not in the cache (scan without --offline)"
            continue
        if result.changelog is not None:
            derived = _summarise(result.changelog, result.binnmu, result.deb)
            fetcher.cache.put_derived(_DERIVED, key, derived.to_json())
            return derived, ""
    if problem == _NO_CHANGELOG:  # the .debs say so, and will go on saying it: remember
        fetcher.cache.put_derived(_DERIVED, key, _Derived((), "", False, "", problem).to_json())
    return None, problem


@dataclass(frozen=True, slots=True)
class _Read:
    changelog: Changelog | None
    binnmu: Changelog | None
    deb: str


def _read_following_links(
    pkg: BinaryPackage, same: Sequence[BinaryPackage], arch: str, fetcher: _Fetcher
) -> _Read | None:
    """Read ``pkg``'s changelog, following its doc directory's symlinks to sibling packages
    of the same source version; None when a .deb needed is not available offline."""
    binnmu: Changelog | None = None
    current = pkg
    for _ in range(_MAX_HOPS):
        deb = fetcher.deb(current)
        if deb is None:
            return None
        fetcher.opened += 1
        native = "-" not in current.source_version
        read = read_deb_changelog(deb, current.name, arch, native=native)
        binnmu = binnmu or read.binnmu
        if read.changelog is not None or read.link is None:
            return _Read(read.changelog, binnmu, deb.name)
        target = next((p for p in same if p.name == read.link), None)
        if target is None:  # a link to another source's package: not this source's history
            return _Read(None, binnmu, deb.name)
        current = target
    return _Read(None, binnmu, pkg.name)


def _summarise(changelog: Changelog, binnmu: Changelog | None, deb: str) -> _Derived:
    entries = [*(binnmu.entries if binnmu else ()), *changelog.entries]
    kept = tuple(_Entry(e.version, e.binary_only, e.cves) for e in entries if e.cves)
    oldest = changelog.entries[-1].version if changelog.entries else ""
    return _Derived(kept, oldest, changelog.cut, deb)
