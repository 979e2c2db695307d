"""Installed wheels kept in the cache: each wheel is installed once per interpreter, its files
staged content-addressed beside the .debs' (``staging/<sha[:2]>/<sha>``) and its entries
recorded, so a rebuild lists them instead of installing again, and no installed tree is left
per run. Wheels install into disjoint paths (a file two of them install is refused), so the
layer is the union of their entries."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from distill import tempfiles
from distill.cache import BlobCache
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.package.wheels import INTERPRETER, Scheme, WheelInfo, install_wheel, staged_entries
from distill.rootfs.extract import entries_from_rows, stage_stream, staged_row

INSTALLED_NAMESPACE = "pypi-installed"
_RECORD_VERSION = "1"


def installed_entries(
    wheel: Path, filename: str, sha256: str, info: WheelInfo, scheme: Scheme, cache: BlobCache,
    staging: Path,
) -> list[FsEntry]:  # fmt: skip
    """The entries of ``wheel`` installed for ``scheme``'s interpreter (see
    :func:`distill.package.wheels.install_wheel`), from the cache when it was done before."""
    key = hashlib.sha256(
        "\0".join((_RECORD_VERSION, sha256, scheme.python, INTERPRETER)).encode()
    ).hexdigest()
    data = cache.get_derived(INSTALLED_NAMESPACE, key)
    if data is not None:
        found = _from_json(data, staging)
        if found is not None:
            return found
    (staging / "tmp").mkdir(parents=True, exist_ok=True)
    work = tempfiles.make_dir(staging / "tmp", "wheel")
    try:
        install_wheel(wheel, filename, info, work, scheme)
        entries = []
        for entry in staged_entries(work):
            if entry.kind is EntryKind.FILE and isinstance(entry.content, Path):
                with entry.content.open("rb") as fh:
                    staged, _ = stage_stream(fh, staging, "wheel")
                entry = replace(entry, content=staged)
            entries.append(entry)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cache.put_derived(INSTALLED_NAMESPACE, key, _to_json(entries))
    return entries


def _to_json(entries: Iterable[FsEntry]) -> bytes:
    rows = [staged_row(e) for e in entries]
    return json.dumps({"entries": rows}, separators=(",", ":")).encode()


def _from_json(data: bytes, staging: Path) -> list[FsEntry] | None:
    """The recorded entries, or None when the record is unreadable or a staged file is gone."""
    try:
        return entries_from_rows(json.loads(data)["entries"], staging)
    except (ValueError, KeyError, TypeError):
        return None


def union(parts: Mapping[str, Iterable[FsEntry]]) -> list[FsEntry]:
    """One layer's entries from several wheels' (``parts``: owner → entries), sorted; a path
    two owners install as a file or link is refused, shared directories are merged."""
    merged: dict[str, FsEntry] = {}
    owner: dict[str, str] = {}
    for name, entries in parts.items():
        for entry in entries:
            have = merged.get(entry.path)
            if have is None:
                merged[entry.path], owner[entry.path] = entry, name
            elif have.kind is not EntryKind.DIR or entry.kind is not EntryKind.DIR:
                raise DistillError(
                    f"{owner[entry.path]} and {name} both install /{entry.path}",
                    hint="two of the locked packages overwrite each other; keep one of them",
                )
    return [merged[k] for k in sorted(merged)]
