"""Which files go into which layer, and the layer cache.

The rule (docs/build.md has the long form):

1. **Levels.** A spec's ``extends`` chain is a list of levels, bottom first, each with the
   packages it names (``static`` → ``base-nossl`` → ``base`` → ``cc`` → ``python3`` → your
   spec). A locked package belongs to the lowest level whose roots reach it through the
   Depends/Pre-Depends of the locked packages' control files: libc6 is base-nossl's even in
   a python3 image.
2. **Layers.** At most four: *system* holds the bottom level, *runtime* the top level that
   adds packages, *libraries* every level between them; *app* holds what the spec adds on
   top of packages (``files:``, ``paths:``, accounts of its own, the debug shell).
   Layers with nothing in them are left out.
3. **Contents.** Layer *n* is the difference between the finished rootfs of its levels and
   everything below and the finished rootfs of the levels below (files added or changed,
   whiteouts for files removed), the way ``docker commit`` sees a step. So the generated
   files (``/etc/passwd``, the CA bundle, ``status.d``) sit with the packages they come from,
   and the merged layers are exactly the image's rootfs.

Because a layer depends only on its levels, images built from the same lock share their lower
layers byte for byte (python3, java21 and nodejs share *system* and *libraries*), and a
change to ``files:`` rebuilds only *app*.

The cache: a layer's key is the hash of its exact entries (paths, metadata and content
sha256s, after ordering), the compression and SOURCE_DATE_EPOCH; the derived store maps the
key to the blob's descriptor and the blob itself lives content-addressed in the blob store.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from distill.build.spec import DEBUG_LEVEL, Level
from distill.cache import BlobCache, is_sha256
from distill.debian.control import parse_stanza
from distill.debian.deb import DebControl
from distill.debian.stanzas import parse_provides, parse_relations
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import (
    Compression,
    LayerBlob,
    layer_cache_key,
    ordered_entries,
    write_layer,
)

MAX_LAYERS = 4
LAYERS_NAMESPACE = "layers"
WHITEOUT_PREFIX = ".wh."


class LayerRole(StrEnum):
    SYSTEM = "system"
    LIBRARIES = "libraries"
    RUNTIME = "runtime"
    APP = "app"


@dataclass(frozen=True, slots=True)
class LayerGroup:
    """The packages of one package layer and the levels they come from."""

    role: LayerRole
    levels: tuple[str, ...]
    packages: tuple[str, ...]  # names, in unpack order


# --- levels ----------------------------------------------------------------------------------


def _root_names(level: Level, locked: Iterable[str]) -> list[str]:
    """A level's package names as locked: pins dropped, ``a | b`` → the one in the lock."""
    present = set(locked)
    names = []
    for item in level.packages:
        options = [o.split("=", 1)[0].strip() for o in item.split("|")]
        names.append(next((o for o in options if o in present), options[0]))
    return names


def _dependency_graph(controls: Mapping[str, DebControl]) -> dict[str, list[str]]:
    """name → the locked packages its Pre-Depends and Depends chose (first present choice of
    each alternative group, through Provides where a name is virtual)."""
    stanzas = {
        name: parse_stanza(c.control, origin=f"{name} control") for name, c in controls.items()
    }
    providers: dict[str, str] = {}
    for name in sorted(stanzas):
        for rel in parse_provides(stanzas[name].get("provides", "")):
            providers.setdefault(rel.name, name)
    graph: dict[str, list[str]] = {}
    for name, stanza in stanzas.items():
        children = []
        for field in ("pre-depends", "depends"):
            for group in parse_relations(stanza.get(field, "")):
                for rel in group:
                    chosen = rel.name if rel.name in stanzas else providers.get(rel.name)
                    if chosen is not None:
                        children.append(chosen)
                        break
        graph[name] = children
    return graph


def package_levels(levels: Sequence[Level], controls: Mapping[str, DebControl]) -> dict[str, int]:
    """Each package's level: the index of the lowest level whose roots reach it. A package no
    root reaches (possible only with a hand-edited lock) goes to the top level."""
    graph = _dependency_graph(controls)
    found: dict[str, int] = {}
    for index, level in enumerate(levels):
        queue = [n for n in _root_names(level, controls) if n in graph and n not in found]
        for name in queue:
            found.setdefault(name, index)
        while queue:
            for child in graph[queue.pop()]:
                if child not in found:
                    found[child] = index
                    queue.append(child)
    top = max(len(levels) - 1, 0)
    return {name: found.get(name, top) for name in controls}


def group_packages(
    levels: Sequence[Level], controls: Mapping[str, DebControl]
) -> tuple[list[LayerGroup], tuple[str, ...]]:
    """The package layers (bottom first) and the packages that belong to *app* (the debug
    shell), by the rule in the module docstring."""
    assigned = package_levels(levels, controls)
    by_level: list[list[str]] = [[] for _ in levels]
    for name in controls:  # controls are in unpack order; keep it within a level
        by_level[assigned[name]].append(name)
    app = tuple(n for i, lv in enumerate(levels) if lv.name == DEBUG_LEVEL for n in by_level[i])
    used = [i for i, lv in enumerate(levels) if lv.name != DEBUG_LEVEL and by_level[i]]
    if not used:
        return [], app
    spans: list[tuple[LayerRole, list[int]]] = [(LayerRole.SYSTEM, used[:1])]
    if len(used) > 2:
        spans.append((LayerRole.LIBRARIES, used[1:-1]))
    if len(used) > 1:
        spans.append((LayerRole.RUNTIME, used[-1:]))
    groups = [
        LayerGroup(
            role,
            tuple(levels[i].name for i in indices),
            tuple(n for i in indices for n in by_level[i]),
        )
        for role, indices in spans
    ]
    return groups, app


# --- differences -----------------------------------------------------------------------------


def _same(a: FsEntry, b: FsEntry) -> bool:
    return (a.kind, a.mode, a.uid, a.gid, a.linkname, a.content) == (
        b.kind,
        b.mode,
        b.uid,
        b.gid,
        b.linkname,
        b.content,
    )


def _parents(path: str) -> Iterable[str]:
    parts = path.split("/")
    return ("/".join(parts[:depth]) for depth in range(1, len(parts)))


def _whiteout(path: str) -> FsEntry:
    parent, name = posixpath.split(path)
    wh = posixpath.join(parent, WHITEOUT_PREFIX + name)
    return FsEntry(wh, EntryKind.FILE, 0o644, size=0, content=b"")


def diff_entries(lower: Mapping[str, FsEntry], upper: Mapping[str, FsEntry]) -> list[FsEntry]:
    """The layer that turns rootfs ``lower`` into ``upper`` (both keyed by path): new and
    changed entries with their parent directories as ``upper`` has them, a whiteout for each
    removed path whose parent stays, and hardlinks whose target lies below made copies."""
    changed = {p: e for p, e in upper.items() if p not in lower or not _same(lower[p], e)}
    for path in lower:
        parent = posixpath.dirname(path)
        if path in upper or (parent and parent not in upper):
            continue  # kept, or the parent's removal takes this path with it
        if parent and upper[parent].kind is not EntryKind.DIR:
            continue  # the parent is replaced by a non-directory, which removes it too
        whiteout = _whiteout(path)
        changed[whiteout.path] = whiteout
    for path in list(changed):
        for parent in _parents(path):
            if parent in upper and parent not in changed:
                changed[parent] = upper[parent]
    for path, entry in list(changed.items()):
        if entry.kind is EntryKind.HARDLINK and entry.linkname not in changed:
            changed[path] = _copy_of_target(entry, upper)
    return list(changed.values())


def _copy_of_target(link: FsEntry, rootfs: Mapping[str, FsEntry]) -> FsEntry:
    target = rootfs.get(link.linkname)
    for _ in range(len(rootfs)):
        if target is None or target.kind is not EntryKind.HARDLINK:
            break
        target = rootfs.get(target.linkname)
    if target is None or target.kind is not EntryKind.FILE:
        raise DistillError(f"hardlink /{link.path} points to /{link.linkname}, which is missing")
    return replace(target, path=link.path, package=link.package)


# --- the layer cache -------------------------------------------------------------------------


def _content_id(entry: FsEntry) -> str | None:
    content = entry.content
    if isinstance(content, bytes):
        return hashlib.sha256(content).hexdigest()
    if content is None:
        return None
    # Staged files are named by their sha256 (extract and userfiles write them so).
    if is_sha256(content.name) and content.parent.name == content.name[:2]:
        return content.name
    digest = hashlib.sha256()
    with content.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def entries_digest(entries: Iterable[FsEntry]) -> str:
    """A hex digest of exactly what a layer of these entries holds."""
    digest = hashlib.sha256()
    for e in ordered_entries(entries):
        row = [e.path, str(e.kind), e.mode, e.uid, e.gid, e.linkname, _content_id(e)]
        digest.update(json.dumps(row, separators=(",", ":")).encode() + b"\n")
    return digest.hexdigest()


def layer_key(entries: Sequence[FsEntry], compression: Compression, sde: int) -> str:
    return layer_cache_key([f"entries:{entries_digest(entries)}"], compression, sde)


def cached_layer(
    entries: Sequence[FsEntry], cache: BlobCache, compression: Compression, sde: int
) -> tuple[LayerBlob, bool]:
    """The layer blob of ``entries`` and whether it came from the cache (else it was written
    now)."""
    key = layer_key(entries, compression, sde)
    record = cache.get_derived(LAYERS_NAMESPACE, key)
    if record is not None:
        try:
            blob = LayerBlob.from_dict(json.loads(record), cache.blobs_dir)
        except (ValueError, KeyError, TypeError):
            blob = None
        if blob is not None and cache.get(blob.digest.removeprefix("sha256:"), blob.size):
            return blob, True
    blob = write_layer(entries, cache.blobs_dir, compression=compression, source_date_epoch=sde)
    cache.put_derived(LAYERS_NAMESPACE, key, json.dumps(blob.to_dict(), sort_keys=True).encode())
    return blob, False
