"""Fetch a lock's .debs and unpack them into rootfs entries, remembering what unpacking gave.

Unpacking is ``rootfs.extract`` into a staging directory in the cache (file contents stored
by their sha256, so every build and every package shares one copy of each file). What a .deb
unpacked to is recorded in the cache's derived store, keyed by the .deb's sha256 and the
extraction options: a warm build reads a small JSON file per package instead of
decompressing every data archive again. A record is only used while every staged file it
names is still there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.cache import BlobCache, is_sha256
from distill.debian.deb import DebControl, read_control
from distill.debian.lock import Lock, LockedPackage, lock_downloads
from distill.debian.mirror import Mirrors
from distill.image.fsentry import FsEntry
from distill.rootfs.extract import KeepOptions, entries_from_rows, extract_package, staged_row

# Bump when extract_package's output for the same .deb changes (new filters, new fields).
UNPACK_FORMAT_VERSION = 1
UNPACKED_NAMESPACE = "unpacked"


@dataclass(frozen=True, slots=True)
class Unpacked:
    """One package as the rootfs stages see it."""

    name: str
    entries: tuple[FsEntry, ...]
    control: DebControl
    skipped: tuple[str, ...]  # what extraction left out, for the build's notes
    cached: bool  # read from the derived store rather than unpacked now


def staging_dir(cache: BlobCache) -> Path:
    """Where staged files live, on the cache's filesystem; made here, since a run that
    unpacks no .deb (an app on an image base, on a fresh cache) stages files too."""
    staging = cache.root / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def fetch_debs(
    lock: Lock, arch: str, cache: BlobCache, mirrors: Callable[[], Mirrors], *, jobs: int
) -> dict[str, Path]:
    """Every .deb of one architecture of the lock in the cache (sha256 → path), downloading
    the missing ones. ``mirrors`` is only called when something is missing, so a build whose
    packages are all cached needs neither a mirror nor the network."""
    found: dict[str, Path] = {}
    missing: set[str] = set()
    for pkg in lock.archs[arch].packages:
        path = cache.get(pkg.sha256, pkg.size) if is_sha256(pkg.sha256) else None
        if path is None:
            missing.add(pkg.sha256)
        else:
            found[pkg.sha256] = path
    if missing:
        from distill.net.download import fetch_all  # the network stack, only when used

        requests = [r for r in lock_downloads(lock, mirrors(), arch) if r.sha256 in missing]
        found.update(fetch_all(requests, cache, jobs=jobs))
    return found


def _key(pkg: LockedPackage, keep: KeepOptions) -> str:
    text = json.dumps(
        {
            "format": UNPACK_FORMAT_VERSION,
            "deb": pkg.sha256.lower(),
            "name": pkg.name,
            "keep": [keep.doc, keep.man, keep.locale],
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _to_json(unpacked: Unpacked) -> bytes:
    control = unpacked.control
    record: dict[str, Any] = {
        "entries": [staged_row(e) for e in unpacked.entries],
        "skipped": list(unpacked.skipped),
        "control": {
            "control": control.control,
            "md5sums": control.md5sums,
            "conffiles": list(control.conffiles),
            "scripts": control.scripts,
        },
    }
    return json.dumps(record, separators=(",", ":")).encode()


def _from_json(name: str, data: bytes, staging: Path) -> Unpacked | None:
    """The record, or None when it is unreadable or a staged file it names is gone."""
    try:
        record = json.loads(data)
        entries = entries_from_rows(record["entries"], staging, name)
        if entries is None:
            return None
        c = record["control"]
        control = DebControl(c["control"], c["md5sums"], tuple(c["conffiles"]), c["scripts"])
        return Unpacked(name, tuple(entries), control, tuple(record["skipped"]), cached=True)
    except (ValueError, KeyError, TypeError):
        return None


def unpack_package(pkg: LockedPackage, deb: Path, cache: BlobCache, keep: KeepOptions) -> Unpacked:
    key = _key(pkg, keep)
    staging = staging_dir(cache)
    data = cache.get_derived(UNPACKED_NAMESPACE, key)
    if data is not None:
        found = _from_json(pkg.name, data, staging)
        if found is not None:
            return found
    skipped: list[str] = []
    entries = extract_package(deb, pkg.name, staging, keep, skipped=skipped)
    unpacked = Unpacked(pkg.name, tuple(entries), read_control(deb), tuple(skipped), False)
    cache.put_derived(UNPACKED_NAMESPACE, key, _to_json(unpacked))
    return unpacked


def unpack_all(
    packages: Sequence[LockedPackage],
    debs: Mapping[str, Path],
    cache: BlobCache,
    keep: KeepOptions,
    *,
    jobs: int,
) -> dict[str, Unpacked]:
    """Unpack every package (``jobs`` at a time: decompression and hashing release the
    GIL), keyed by package name, in the order given."""
    from concurrent.futures import ThreadPoolExecutor  # and logging: only when unpacking

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [
            pool.submit(unpack_package, pkg, debs[pkg.sha256], cache, keep) for pkg in packages
        ]
        return {pkg.name: fut.result() for pkg, fut in zip(packages, futures, strict=True)}
