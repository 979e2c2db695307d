"""The lockfile: exactly which .debs an image is made of, per architecture.

A lock names pool paths relative to the mirror (never a host) with their size and SHA256, so
a build from a lock fetches exactly those bytes from whichever mirror the machine uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from distill.debian.archive import PocketIndex, load_indices
from distill.debian.mirror import Mirrors
from distill.debian.model import BinaryPackage
from distill.debian.resolve import Resolution, build_universe, resolve_closure
from distill.download import DownloadRequest
from distill.errors import DistillError
from distill.fsutil import atomic_write_bytes
from distill.spec import Spec

LOCK_VERSION = 1


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
class ArchLock:
    packages: tuple[LockedPackage, ...]
    excluded: tuple[LockedExclusion, ...]


@dataclass(frozen=True, slots=True)
class Lock:
    suite: str
    pockets: tuple[tuple[str, str], ...]  # (pocket, InRelease Date as RFC 3339)
    archs: dict[str, ArchLock]
    roots: tuple[str, ...]
    exclude: tuple[str, ...]
    include: tuple[str, ...]

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


def resolve_spec(spec: Spec, arch: str, indices: list[PocketIndex]) -> Resolution:
    universe = build_universe(indices, arch, spec.pins)
    known = {p.name for index in indices for p in index.packages}
    roots = choose_roots(spec.roots, known)
    # A package asked for by name is wanted at run time, whatever the default policy says.
    include = (*spec.include, *roots)
    return resolve_closure(universe, roots, exclude=spec.exclude, include=include)


def lock_spec(spec: Spec, mirrors: Mirrors) -> tuple[Lock, dict[str, Resolution]]:
    archs: dict[str, ArchLock] = {}
    resolutions: dict[str, Resolution] = {}
    pockets: tuple[tuple[str, str], ...] = ()
    for arch in spec.target_archs():
        indices = load_indices(spec.suite, arch, mirrors)
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
            }
            for arch, a in sorted(lock.archs.items())
        },
    }


def write_lock(lock: Lock, path: Path) -> None:
    text = json.dumps(lock_to_json(lock), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(path, text.encode())


def _bad(path: Path, what: str) -> DistillError:
    return DistillError(
        f"{path}: not a valid distill lock: {what}",
        hint="regenerate it with `distill lock SPEC -o FILE`",
    )


def read_lock(path: Path) -> Lock:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DistillError(
            f"lock file {path} not found", hint="create one with `distill lock SPEC -o FILE`"
        ) from None
    except (OSError, ValueError) as exc:
        raise _bad(path, str(exc)) from exc
    if not isinstance(data, dict) or data.get("lockVersion") != LOCK_VERSION:
        raise _bad(path, f"expected lockVersion {LOCK_VERSION}")
    try:
        archs = {
            arch: ArchLock(
                packages=tuple(
                    LockedPackage(
                        p["name"],
                        p["version"],
                        p["architecture"],
                        p["filename"],
                        p["sha256"],
                        int(p["size"]),
                        p["source"],
                        p["source_version"],
                        p["pocket"],
                    )
                    for p in body["packages"]
                ),
                excluded=tuple(
                    LockedExclusion(e["name"], e["wanted_by"]) for e in body["excluded"]
                ),
            )
            for arch, body in data["archs"].items()
        }
        request = data["request"]
        return Lock(
            suite=data["suite"],
            pockets=tuple((p["name"], p["date"]) for p in data["pockets"]),
            archs=archs,
            roots=tuple(request["packages"]),
            exclude=tuple(request["exclude"]),
            include=tuple(request["include"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, f"missing or wrong field {exc}") from exc


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
