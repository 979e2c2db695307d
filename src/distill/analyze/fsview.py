"""The merged filesystem of an image, built in one streaming pass over its layers.

Each layer's tar is read once, front to back (``TarScanner``), and applied as a container
runtime would: entries replace what lower layers had at their path, ``.wh.NAME`` deletes
``NAME`` and ``.wh..wh..opq`` hides everything lower layers put in its directory. Whiteouts
only remove what *lower* layers wrote, so their place in the tar does not matter (the image
spec only says they SHOULD come first). Parent directories that are symlinks in the tree are
followed, as containerd's applier and tar do, so ``bin/x`` over ``bin -> usr/bin`` lands in
``usr/bin/x``. Hardlinks take their target's metadata and content.

File contents are skipped, except what a ``want`` hook asks for: it sees each regular
file's path and tar header and says how many leading bytes to keep (0: none; the file's
size or more: all), so analysers can take ``etc/os-release`` whole and only the first 64
bytes of each executable. More than ``SPOOL_ABOVE`` bytes go to a temporary file that
lives as long as the view (``FsNode.spool``), so a fat jar does not sit in memory.

Wasted space is counted as the layers are applied: a file's bytes are wasted when a later
layer overwrites or deletes it, so what the final tree holds plus what was wasted is what
the layers added. ``dive_score`` is dive's own metric, for comparison (see ``FsView``).
"""

from __future__ import annotations

import posixpath
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from distill import tempfiles
from distill.bounded import one_line
from distill.errors import DistillError
from distill.image.manifest import LayerDescriptor
from distill.image.partial import ImageSource
from distill.image.stream import LayerStream
from distill.image.tarscan import TarEntry, TarFormatError, TarScanner, TarTruncated

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_SYMLINK_HOPS = 40  # as Linux's path resolution
# Longer paths cannot be created by a runtime unpacking the layer (Linux's PATH_MAX); a
# deeper tree costs memory growing with the square of its depth, so it is refused.
MAX_PATH = 4096
# A kept file larger than this goes to a temporary file, so memory does not grow with the
# archives an SBOM reads (a fat jar can be hundreds of MiB); its head stays in memory.
SPOOL_ABOVE = 8 << 20
SPOOL_HEAD = 64 << 10
SPOOL_CHUNK = 1 << 20

T = TypeVar("T")
Want = Callable[[str, TarEntry], int]
"""``want(path, member)``: how many leading bytes of this regular file to keep."""


class NodeKind(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"


_KINDS = {
    "5": NodeKind.DIR,
    "2": NodeKind.SYMLINK,
    "3": NodeKind.CHAR,
    "4": NodeKind.BLOCK,
    "6": NodeKind.FIFO,
}


@dataclass(frozen=True, slots=True)
class FsNode:
    """A path in the merged tree. ``added_in`` is the layer that created it (since it was
    last deleted), ``changed_in`` the later layers that wrote it again. ``stored`` is what
    this version took in its layer's tar (0 for a hardlink, whose ``size`` is its
    target's); ``inode`` is shared by hardlinked paths, so sizes can count them once."""

    path: str
    kind: NodeKind
    mode: int
    uid: int
    gid: int
    size: int
    added_in: int
    changed_in: tuple[int, ...] = ()
    linkname: str = ""  # a symlink's target, as written
    hardlink_to: str = ""  # the path a hardlink was made to
    content: bytes | None = None  # what ``want`` kept (of a spooled file: its head)
    stored: int = 0
    inode: int = 0
    # Where a kept file larger than SPOOL_ABOVE is, whole: a temporary file that lives as
    # long as the view (memory holds only its first SPOOL_HEAD bytes, in ``content``).
    spool: Path | None = None

    @property
    def layer(self) -> int:
        """The layer that wrote this version."""
        return self.changed_in[-1] if self.changed_in else self.added_in

    @property
    def layers(self) -> tuple[int, ...]:
        return (self.added_in, *self.changed_in)


@dataclass(frozen=True, slots=True)
class Deletion:
    """What a whiteout removed: ``path`` (or, when ``opaque``, the contents lower layers put
    in directory ``path``), ``removed`` paths holding ``removed_bytes`` of files."""

    layer: int
    path: str
    opaque: bool
    removed: int
    removed_bytes: int


@dataclass(frozen=True, slots=True)
class LayerStats:
    index: int
    entries: int  # tar members, whiteouts included
    files: int  # regular files (not hardlinks)
    bytes_added: int  # their sizes
    whiteouts: int
    removed: int  # paths of lower layers this layer deleted or replaced
    tar_size: int
    stored_size: int
    compression: str


@dataclass(frozen=True, slots=True)
class Waste:
    """Bytes of ``path`` that the final tree does not hold, and the layers that wrote or
    removed it."""

    path: str
    wasted: int
    layers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FsView:
    """The merged tree and what applying the layers cost.

    ``efficiency`` is ``1 - wasted / total_added``: the share of the bytes the layers added
    that the final tree still holds. ``dive_score`` and ``dive_wasted`` are dive's numbers:
    per path, the smallest size it had in any layer over the sum of its sizes in all layers
    (a whiteout of a directory counting the bytes it hid, of a file 0; opaque whiteouts
    ignored, as dive does), and the summed sizes of every path found in two or more layers,
    the surviving copy included.
    """

    nodes: Mapping[str, FsNode]
    children: Mapping[str, frozenset[str]]
    layers: tuple[LayerStats, ...]
    deletions: tuple[Deletion, ...]
    total_added: int
    wasted: int
    waste: tuple[Waste, ...]  # largest first
    dive_score: float
    dive_wasted: int
    spool_dir: tempfile.TemporaryDirectory[str] | None = None  # removed with the view

    @property
    def efficiency(self) -> float:
        return 1.0 if self.total_added == 0 else 1.0 - self.wasted / self.total_added

    def get(self, path: str) -> FsNode | None:
        return self.nodes.get(path.strip("/"))

    def listdir(self, path: str) -> list[str]:
        return sorted(self.children.get(path.strip("/"), ()))

    def resolve(self, path: str, *, follow_last: bool = True) -> str | None:
        return resolve(self.nodes, path, follow_last=follow_last)

    def captured(self) -> Iterator[FsNode]:
        """Every node ``want`` kept bytes of, in path order."""
        for path in sorted(self.nodes):
            node = self.nodes[path]
            if node.content is not None:
                yield node


def resolve(nodes: Mapping[str, FsNode], path: str, *, follow_last: bool = True) -> str | None:
    """The real path of ``path`` with symlinks followed inside the image root ('' is the
    root), or None when a component is missing, not a directory, or links loop."""
    parts = deque(p for p in path.split("/") if p)
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.popleft()
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = "/".join([*resolved, part])
        node = nodes.get(candidate)
        if node is None:
            return None
        if node.kind is NodeKind.SYMLINK and (parts or follow_last):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                return None
            if node.linkname.startswith("/"):
                resolved = []
            parts.extendleft(reversed([p for p in node.linkname.split("/") if p]))
            continue
        if parts and node.kind is not NodeKind.DIR:
            return None
        resolved.append(part)
    return "/".join(resolved)


def _normal(name: str) -> str:
    # Clamped to the root as runtimes do: "../x" and "/x" both mean "x".
    return posixpath.normpath("/" + name).lstrip("/")


@dataclass(slots=True)
class _Counts:
    entries: int = 0
    files: int = 0
    bytes_added: int = 0
    whiteouts: int = 0
    removed: int = 0


@dataclass(slots=True)
class _Builder:
    want: Want | None
    nodes: dict[str, FsNode] = field(default_factory=dict)
    children: dict[str, set[str]] = field(default_factory=lambda: {"": set()})
    deletions: list[Deletion] = field(default_factory=list)
    waste: dict[str, tuple[int, frozenset[int]]] = field(default_factory=dict)
    dive: dict[str, list[int]] = field(default_factory=dict)  # [cumulative, minimum, count]
    total_added: int = 0
    wasted: int = 0
    inodes: int = 0
    layer: int = 0
    counts: _Counts = field(default_factory=_Counts)
    spool_dir: tempfile.TemporaryDirectory[str] | None = None
    spool_users: dict[Path, int] = field(default_factory=dict)  # paths sharing a spool file
    where: str = ""  # the layer being applied, for messages

    # --- tree edits ---------------------------------------------------------------------

    def _link(self, node: FsNode) -> None:
        """Put ``node`` in the tree (its parent exists), keeping the children index."""
        parent, _, base = node.path.rpartition("/")
        self.nodes[node.path] = node
        self.children[parent].add(base)
        if node.kind is NodeKind.DIR:
            self.children.setdefault(node.path, set())

    def _waste(self, node: FsNode) -> None:
        if node.kind is NodeKind.FILE and node.stored:
            self.wasted += node.stored
            before, layers = self.waste.get(node.path, (0, frozenset()))
            self.waste[node.path] = (before + node.stored, layers | {*node.layers, self.layer})

    def _remove(self, path: str, *, lower_only: bool) -> tuple[bool, int, int]:
        """Remove ``path`` and what is under it; with ``lower_only``, only what lower layers
        wrote (a directory stays if this layer wrote anything in it). Returns (gone, paths
        removed, file bytes removed)."""
        node = self.nodes.get(path)
        if node is None:
            return True, 0, 0
        # Without recursion (a tree may be thousands of directories deep): everything under
        # ``path`` parents first, then undone children first.
        order: list[tuple[str, FsNode]] = []
        stack = [(path, node)]
        while stack:
            here, current = stack.pop()
            order.append((here, current))
            if current.kind is NodeKind.DIR:
                for child in self.children.get(here, ()):
                    below = f"{here}/{child}"
                    stack.append((below, self.nodes[below]))
        kept: set[str] = set()
        count = removed_bytes = 0
        for here, current in reversed(order):
            parent, _, base = here.rpartition("/")
            if here in kept or (lower_only and current.layer == self.layer):
                kept.add(parent)
                continue
            del self.nodes[here]
            self.children.pop(here, None)
            self.children[parent].discard(base)
            self._waste(current)
            if current.spool is not None:
                self._release(current.spool)
            count += 1
            removed_bytes += current.size if current.kind is NodeKind.FILE else 0
        return path not in self.nodes, count, removed_bytes

    def _dive(self, path: str, size: int) -> None:
        entry = self.dive.get(path)
        if entry is None:
            self.dive[path] = [size, size, 1]
        else:
            entry[0] += size
            entry[1] = min(entry[1], size)
            entry[2] += 1

    def _check_length(self, path: str) -> None:
        if len(path) > MAX_PATH:
            raise DistillError(
                f"{self.where} holds a path longer than {MAX_PATH} bytes, which no runtime "
                f"can unpack: /{one_line(path, 60)}",
                hint="the layer is damaged or was made to attack a reader",
            )

    def _implied_dir(self, path: str) -> FsNode:
        node = FsNode(path, NodeKind.DIR, 0o755, 0, 0, 0, added_in=self.layer)
        self._link(node)
        return node

    def _dir(self, path: str) -> str:
        """The real path of directory ``path``, created (as tar does) where missing."""
        node = self.nodes.get(path)
        if path == "" or (node is not None and node.kind is NodeKind.DIR):
            return path
        real = ""
        for base in path.split("/"):
            here = f"{real}/{base}" if real else base
            self._check_length(here)
            node = self.nodes.get(here)
            if node is not None and node.kind is NodeKind.SYMLINK:
                target = resolve(self.nodes, here)
                if target == "" or (target and self.nodes[target].kind is NodeKind.DIR):
                    real = target
                    continue
            if node is not None and node.kind is not NodeKind.DIR:
                self.counts.removed += self._remove(here, lower_only=False)[1]
                node = None
            if node is None:
                self._implied_dir(here)
            real = here
        return real

    # --- entries ------------------------------------------------------------------------

    def entry(self, tar: TarScanner, member: TarEntry, where: str) -> None:
        self.counts.entries += 1
        path = _normal(member.name)
        if not path:
            return  # the root directory's own entry
        parent, _, base = path.rpartition("/")
        if base.startswith(WHITEOUT):
            self._whiteout(parent, base)
            return
        parent = self._dir(parent)
        path = f"{parent}/{base}" if parent else base
        self._check_length(path)
        if member.islnk():
            node = self._hardlink(path, member, where)
        else:
            node = self._node(path, member, tar)
        old = self.nodes.get(path)
        if old is not None and not (old.kind is NodeKind.DIR and node.kind is NodeKind.DIR):
            self.counts.removed += self._remove(path, lower_only=False)[1]
        if old is not None:
            changed = old.changed_in if old.layer == self.layer else (*old.changed_in, self.layer)
            node = replace(node, added_in=old.added_in, changed_in=changed)
        self._link(node)
        if node.kind is not NodeKind.DIR:
            self._dive(path, node.stored)

    def _node(self, path: str, member: TarEntry, tar: TarScanner) -> FsNode:
        kind = _KINDS.get(member.type, NodeKind.FILE)
        size = member.size if kind is NodeKind.FILE else 0
        content = None
        spool = None
        if kind is NodeKind.FILE:
            self.counts.files += 1
            self.counts.bytes_added += size
            self.total_added += size
            keep = self.want(path, member) if self.want is not None else 0
            if keep > 0 and not member.sparse:  # a sparse file's data is not its content
                keep = min(keep, size)
                content = tar.read_data(min(keep, SPOOL_HEAD if keep > SPOOL_ABOVE else keep))
                if keep > SPOOL_ABOVE:
                    spool = self._spool(content, tar, keep)
        self.inodes += 1
        return FsNode(
            path,
            kind,
            member.mode & 0o7777,
            member.uid,
            member.gid,
            size,
            added_in=self.layer,
            linkname=member.linkname if kind is NodeKind.SYMLINK else "",
            content=content,
            stored=size,
            inode=self.inodes,
            spool=spool,
        )

    def _spool(self, head: bytes, tar: TarScanner, size: int) -> Path:
        """A large kept file, written to the view's spool directory as it is read."""
        if self.spool_dir is None:
            self.spool_dir = tempfiles.spool_tempdir("distill-spool")
        path = Path(self.spool_dir.name) / str(self.inodes + 1)
        with path.open("wb") as out:
            out.write(head)
            left = size - len(head)
            while left > 0:
                chunk = tar.read_data(min(SPOOL_CHUNK, left))
                out.write(chunk)
                left -= len(chunk)
        self.spool_users[path] = 1
        return path

    def _share(self, spool: Path | None) -> Path | None:
        if spool is not None:
            self.spool_users[spool] += 1
        return spool

    def _release(self, spool: Path) -> None:
        """A path holding ``spool`` is gone: the file goes with the last of them (a later
        layer that overwrites or deletes a fat jar frees its disk space at once)."""
        self.spool_users[spool] -= 1
        if not self.spool_users[spool]:
            del self.spool_users[spool]
            spool.unlink()

    def _hardlink(self, path: str, member: TarEntry, where: str) -> FsNode:
        target_path = _normal(member.linkname)
        parent, _, base = target_path.rpartition("/")
        real_parent = resolve(self.nodes, parent)
        if real_parent is not None:
            target_path = f"{real_parent}/{base}" if real_parent else base
        target = self.nodes.get(target_path)
        if target is None or target.kind is NodeKind.DIR:
            raise DistillError(
                f"{where}: hardlink /{path} points to /{target_path}, which "
                + ("is a directory" if target else "is not in the image"),
                hint="the layer is damaged: a hardlink's target must come before it",
            )
        return FsNode(
            path,
            target.kind,
            target.mode,
            target.uid,
            target.gid,
            target.size,
            added_in=self.layer,
            linkname=target.linkname,
            hardlink_to=target_path,
            content=target.content,
            stored=0,
            inode=target.inode,
            spool=self._share(target.spool),
        )

    def _whiteout(self, parent: str, base: str) -> None:
        self.counts.whiteouts += 1
        real_parent = resolve(self.nodes, parent)
        opaque = base == OPAQUE
        name = base.removeprefix(WHITEOUT)
        if real_parent is None or (not opaque and not name):
            return  # nothing below to hide
        if opaque:
            target, count, size = real_parent, 0, 0
            for child in list(self.children.get(real_parent, ())):
                child_path = f"{real_parent}/{child}" if real_parent else child
                _, n, removed = self._remove(child_path, lower_only=True)
                count += n
                size += removed
            # dive skips opaque markers altogether ("never allow processing of purely
            # whiteout flag files"), so its numbers do not see this deletion either.
        else:
            target = f"{real_parent}/{name}" if real_parent else name
            old = self.nodes.get(target)
            _, count, size = self._remove(target, lower_only=True)
            # dive counts a whiteout as the bytes of the directory it hid, or 0 for a file.
            self._dive(target, size if old is not None and old.kind is NodeKind.DIR else 0)
        self.counts.removed += count
        self.deletions.append(Deletion(self.layer, target, opaque, count, size))

    # --- layers -------------------------------------------------------------------------

    def add_layer(self, layer: LayerDescriptor, stream: LayerStream, *, wait: bool) -> LayerStats:
        """Apply ``layer``; with ``wait=False`` its digests may be checked later (the caller
        then calls ``stream.complete()``)."""
        self.layer = layer.index
        self.counts = _Counts()
        where = self.where = f"{layer.label} at {layer.location}"
        try:
            tar = TarScanner(stream)
            for member in tar:
                self.entry(tar, member, where)
        except TarTruncated as exc:
            raise DistillError(
                f"{where} is truncated: {exc}",
                hint="the blob was cut short; fetch or save the image again",
            ) from None
        except TarFormatError as exc:
            if stream.tar_size or str(exc) != "empty file":
                raise DistillError(
                    f"{where} is not a valid tar archive ({exc})",
                    hint="the layer is damaged or not a layer; fetch or save the image again",
                ) from None
        stream.finish(wait=wait)
        c = self.counts
        return LayerStats(
            index=layer.index,
            entries=c.entries,
            files=c.files,
            bytes_added=c.bytes_added,
            whiteouts=c.whiteouts,
            removed=c.removed,
            tar_size=stream.tar_size,
            stored_size=stream.stored_size,
            compression=str(stream.compression),
        )

    def view(self, layers: list[LayerStats]) -> FsView:
        waste = sorted(
            (Waste(path, size, tuple(sorted(ls))) for path, (size, ls) in self.waste.items()),
            key=lambda w: (-w.wasted, w.path),
        )
        cumulative = sum(entry[0] for entry in self.dive.values())
        minimum = sum(entry[1] for entry in self.dive.values())
        return FsView(
            nodes=self.nodes,
            children={k: frozenset(v) for k, v in self.children.items()},
            layers=tuple(layers),
            deletions=tuple(self.deletions),
            total_added=self.total_added,
            wasted=self.wasted,
            waste=tuple(waste),
            dive_score=1.0 if cumulative == 0 else minimum / cumulative,
            dive_wasted=sum(entry[0] for entry in self.dive.values() if entry[2] >= 2),
            spool_dir=self.spool_dir,
        )


def build_fsview(source: ImageSource, want: Want | None = None) -> FsView:
    """Read every layer of ``source`` once, bottom first, and merge them."""
    return analyse_fsview(source, want, lambda view: view)


def analyse_fsview(source: ImageSource, want: Want | None, analysis: Callable[[FsView], T]) -> T:
    """``analysis`` of the merged view of ``source``, run while the second thread may still
    be hashing the layers it read (see ``LayerFiles``); the result is returned only once
    every layer has passed its digest checks, so nothing unverified gets out."""
    builder = _Builder(want)
    stats = []
    pending: list[LayerStream] = []
    try:
        for layer in source.layers():
            with source.open_layer(layer) as stream:
                try:
                    stats.append(builder.add_layer(layer, stream, wait=False))
                except Exception:
                    stream.check_blob()  # a damaged blob explains a bad tar best
                    raise
                if not stream.checked:
                    pending.append(stream)
        result = analysis(builder.view(stats))
    except Exception:
        # Whatever failed may have failed on unverified bytes: a layer that does not match
        # its digest is the error to report, if there is one.
        for stream in pending:
            stream.complete()
        raise
    for stream in pending:
        stream.complete()
    return result
