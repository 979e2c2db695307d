"""``distill inspect``: what an image holds and exposes, from one pass over its layers.

The report says how big the image is (stored and unpacked), what each layer added, how the
config runs it, which OS it is, its attack surface (shells, package managers, executables,
setuid/setgid files, world-writable paths, whether it runs as root) and how much of what
its layers carry is wasted (overwritten or deleted by a later layer).

Efficiency is distill's own measure, ``1 - wasted / added``: the share of the file bytes
the layers add that the final filesystem still holds. dive's score is reported beside it:
dive divides, over all paths, each path's smallest size in any layer by the sum of its
sizes in all layers, and its "wasted bytes" count every copy of a path found in two or more
layers, the surviving copy included, so it calls more waste than there is.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distill.analyze.fsview import FsNode, FsView, NodeKind, analyse_fsview
from distill.bounded import one_line
from distill.context import Access
from distill.errors import DistillError
from distill.image.partial import ImageSource
from distill.image.platform import Platform
from distill.image.tarscan import TarEntry
from distill.rootfs.osrelease import MAX_OS_RELEASE, OS_RELEASE_PATHS, parse_os_release
from distill.transports import opened

if TYPE_CHECKING:
    pass

DEBIAN_VERSION = "etc/debian_version"
ALPINE_RELEASE = "etc/alpine-release"
PASSWD = "etc/passwd"
_SMALL_FILES = frozenset({*OS_RELEASE_PATHS, DEBIAN_VERSION, ALPINE_RELEASE, PASSWD})
_SMALL_LIMIT = 1 << 20
EXEC_HEAD = 64  # an ELF header; enough to tell ELF from "#!" scripts

# Where shells and package managers are looked for; symlinked ones (bin -> usr/bin) once.
BIN_DIRS = ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin", "busybox")
SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish"})
PACKAGE_MANAGERS = frozenset(
    {"apt", "apt-get", "dpkg", "apk", "rpm", "yum", "dnf", "microdnf", "pip", "pip3", "npm"}
)
BUSYBOX = "busybox"
# Levels of the --files tree at most: each is a nested entry in the report and its JSON.
MAX_TREE_DEPTH = 64


def inspect_want(path: str, member: TarEntry) -> int:
    """The bytes ``inspect`` needs: a few small files whole, and each executable's head."""
    if path in _SMALL_FILES:
        return MAX_OS_RELEASE if path in OS_RELEASE_PATHS else _SMALL_LIMIT
    return EXEC_HEAD if member.mode & 0o111 else 0


# --- the report --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayerRow:
    index: int
    digest: str | None
    diff_id: str | None
    media_type: str
    compression: str
    size: int  # as stored
    tar_size: int
    created_by: str | None
    entries: int
    files: int
    bytes_added: int
    whiteouts: int
    removed: int


@dataclass(frozen=True, slots=True)
class ConfigSummary:
    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    user: str
    workdir: str
    env: tuple[str, ...]
    ports: tuple[str, ...]
    volumes: tuple[str, ...]
    labels: dict[str, str]
    created: str | None
    stop_signal: str | None


@dataclass(frozen=True, slots=True)
class OsInfo:
    id: str
    version_id: str
    pretty_name: str
    codename: str
    source: str  # the file it was read from
    debian_version: str = ""
    alpine_release: str = ""


@dataclass(frozen=True, slots=True)
class Program:
    """A shell or package manager: ``path`` as listed in a bin directory, ``target`` the
    file it runs after symlinks and hardlinks."""

    name: str
    path: str
    target: str
    busybox: bool = False


@dataclass(frozen=True, slots=True)
class AttackSurface:
    shells: tuple[Program, ...]
    package_managers: tuple[Program, ...]
    busybox: tuple[str, ...]  # busybox binaries
    busybox_applets: tuple[str, ...]  # paths linked to one of them
    executables: int  # regular files with an exec bit that are ELF or "#!" scripts
    elf: int
    scripts: int
    other_exec_bit: int  # exec bit set, but neither (data, or content not read)
    setuid: tuple[str, ...]
    setgid: tuple[str, ...]
    world_writable: tuple[str, ...]  # files and directories, without the sticky bit
    user: str
    uid: int | None  # None: a user name /etc/passwd does not list
    runs_as_root: bool


@dataclass(frozen=True, slots=True)
class WastedPath:
    path: str
    wasted: int
    layers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Efficiency:
    score: float  # 1 - wasted / added
    wasted_bytes: int
    added_bytes: int
    dive_score: float
    dive_wasted_bytes: int
    deleted_paths: int
    top: tuple[WastedPath, ...]


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """du-like: ``size`` is the bytes of regular files at or under ``path`` (hardlinked
    files once), ``files`` their number; ``omitted`` children were left out, smallest."""

    path: str
    kind: str
    size: int
    files: int
    link: str = ""
    children: tuple[TreeEntry, ...] = ()
    omitted: int = 0
    omitted_size: int = 0


@dataclass(frozen=True, slots=True)
class InspectReport:
    reference: str
    platform: str
    platforms: tuple[str, ...]
    manifest_digest: str | None
    config_digest: str
    media_type: str
    compressed_size: int  # the layers as stored
    uncompressed_size: int  # the layers' tars
    content_size: int  # the final filesystem's files
    layers: tuple[LayerRow, ...]
    config: ConfigSummary
    os: OsInfo | None
    surface: AttackSurface
    efficiency: Efficiency
    files: TreeEntry | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (dicts, lists, strings, numbers)."""
        return dataclasses.asdict(self)


# --- OS and users ------------------------------------------------------------------------


def _text(view: FsView, path: str) -> str | None:
    real = view.resolve(path)
    node = view.get(real) if real is not None else None
    if node is None or node.content is None:
        return None
    if node.size > len(node.content):
        from distill import log

        log.warn(
            f"/{one_line(path)} is {node.size} bytes; only its first {len(node.content)} were read"
        )
        content = node.content[: node.content.rfind(b"\n") + 1]
    else:
        content = node.content
    return content.decode("utf-8", "replace")


def detect_os(view: FsView) -> OsInfo | None:
    debian = (_text(view, DEBIAN_VERSION) or "").strip()
    alpine = (_text(view, ALPINE_RELEASE) or "").strip()
    for path in OS_RELEASE_PATHS:
        text = _text(view, path)
        if text is not None:
            values = parse_os_release(text)
            return OsInfo(
                id=values.get("ID", ""),
                version_id=values.get("VERSION_ID", ""),
                pretty_name=values.get("PRETTY_NAME", ""),
                codename=values.get("VERSION_CODENAME", ""),
                source="/" + path,
                debian_version=debian,
                alpine_release=alpine,
            )
    if debian:
        return OsInfo("debian", "", f"Debian {debian}", "", "/" + DEBIAN_VERSION, debian)
    if alpine:
        return OsInfo(
            "alpine", alpine, f"Alpine Linux {alpine}", "", "/" + ALPINE_RELEASE, "", alpine
        )
    return None


def user_id(user: str, passwd: str | None) -> int | None:
    """The uid ``User`` (``name``, ``uid``, ``name:group``...) runs as; root when empty."""
    name = user.partition(":")[0].strip()
    if name in ("", "root"):
        return 0
    if name.isdigit():
        return int(name)
    for line in (passwd or "").splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


# --- attack surface ----------------------------------------------------------------------


def _bin_dirs(view: FsView) -> list[str]:
    seen: list[str] = []
    for directory in BIN_DIRS:
        real = view.resolve(directory)
        node = view.get(real) if real else None
        if real and node is not None and node.kind is NodeKind.DIR and real not in seen:
            seen.append(real)
    return seen


def _is_package_manager(name: str) -> bool:
    if name in PACKAGE_MANAGERS:
        return True
    # pip3.11 and the like, which pip installs beside pip3
    return name.startswith("pip3.") and name[5:].isdigit()


def _programs(view: FsView, want: set[str] | None, busybox: set[int]) -> list[Program]:
    """Files in the bin directories whose name is in ``want`` (or a package manager's,
    when ``want`` is None) that resolve to a regular file."""
    found = []
    for directory in _bin_dirs(view):
        for name in view.listdir(directory):
            if not (name in want if want is not None else _is_package_manager(name)):
                continue
            path = f"{directory}/{name}"
            target = view.resolve(path)
            node = view.get(target) if target else None
            if node is None or node.kind is not NodeKind.FILE:
                continue  # a dangling link runs nothing
            found.append(Program(name, "/" + path, "/" + str(target), node.inode in busybox))
    return found


def exec_kind(node: FsNode) -> str:
    """``elf``, ``script`` (``#!``) or ``other``, from the head ``inspect_want`` kept."""
    head = node.content or b""
    if head.startswith(b"\x7fELF"):
        return "elf"
    if head.startswith(b"#!"):
        return "script"
    return "other"


def attack_surface(view: FsView, user: str) -> AttackSurface:
    kinds = {"elf": 0, "script": 0, "other": 0}
    setuid: list[str] = []
    setgid: list[str] = []
    writable: list[str] = []
    busybox: list[str] = []
    for path in sorted(view.nodes):
        node = view.nodes[path]
        if node.kind is NodeKind.FILE:
            if node.mode & 0o111:
                kinds[exec_kind(node)] += 1
            if node.mode & 0o4000:
                setuid.append("/" + path)
            if node.mode & 0o2000:
                setgid.append("/" + path)
            if posixpath.basename(path) == BUSYBOX and exec_kind(node) == "elf":
                busybox.append(path)
        kind_ok = node.kind in (NodeKind.FILE, NodeKind.DIR)
        if kind_ok and node.mode & 0o002 and not node.mode & 0o1000:
            writable.append("/" + path)
    inodes = {view.nodes[p].inode for p in busybox}
    applets = []
    for path in sorted(view.nodes):
        node = view.nodes[path]
        if path in busybox:
            continue
        if node.kind is NodeKind.FILE and node.inode in inodes:
            applets.append("/" + path)
        elif node.kind is NodeKind.SYMLINK:
            target = view.resolve(path)
            if target is not None and target in busybox:
                applets.append("/" + path)
    uid = user_id(user, _text(view, PASSWD))
    return AttackSurface(
        shells=tuple(_programs(view, set(SHELLS), inodes)),
        package_managers=tuple(_programs(view, None, inodes)),
        busybox=tuple("/" + p for p in busybox),
        busybox_applets=tuple(applets),
        executables=kinds["elf"] + kinds["script"],
        elf=kinds["elf"],
        scripts=kinds["script"],
        other_exec_bit=kinds["other"],
        setuid=tuple(setuid),
        setgid=tuple(setgid),
        world_writable=tuple(writable),
        user=user,
        uid=uid,
        runs_as_root=uid == 0,
    )


# --- sizes -------------------------------------------------------------------------------


def _du(view: FsView) -> dict[str, tuple[int, int]]:
    """(bytes, files) of regular files at or under every path; hardlinks counted once.
    Summed bottom-up, each directory once: walking every file's ancestors would cost files
    times depth, which a deep tree makes large."""
    sizes: dict[str, list[int]] = {}
    seen: set[int] = set()
    for path in sorted(view.nodes):  # the first path of a hardlinked inode counts
        node = view.nodes[path]
        if node.kind is not NodeKind.FILE or node.inode in seen:
            continue
        seen.add(node.inode)
        sizes[path] = [node.size, 1]
        entry = sizes.setdefault(path.rpartition("/")[0], [0, 0])
        entry[0] += node.size
        entry[1] += 1
    directories = sorted((d for d in view.children if d), key=lambda d: -d.count("/"))
    for directory in directories:  # deepest first: each is complete when its turn comes
        total = sizes.get(directory)
        if total is not None:
            entry = sizes.setdefault(directory.rpartition("/")[0], [0, 0])
            entry[0] += total[0]
            entry[1] += total[1]
    return {path: (v[0], v[1]) for path, v in sizes.items()}


def file_tree(
    view: FsView,
    root: str = "/",
    depth: int = 2,
    limit: int = 25,
    du: dict[str, tuple[int, int]] | None = None,
) -> TreeEntry:
    """The tree under ``root`` (symlinks followed), ``depth`` levels of children deep,
    each directory's ``limit`` largest children listed."""
    real = view.resolve(root)
    if real is None:
        raise DistillError(f"{root} is not in the image", hint="give a path like /usr/lib")
    if du is None:
        du = _du(view)
    depth = min(depth, MAX_TREE_DEPTH)

    def entry(path: str, level: int) -> TreeEntry:
        node = view.get(path) if path else None
        kind = str(node.kind) if node is not None else "dir"
        size, files = du.get(path, (0, 0))
        link = node.linkname if node is not None else ""
        if kind != "dir" or level >= depth:
            return TreeEntry("/" + path, kind, size, files, link)
        names = view.listdir(path)
        paths = [f"{path}/{n}" if path else n for n in names]
        paths.sort(key=lambda p: (-du.get(p, (0, 0))[0], p))
        shown = [entry(p, level + 1) for p in paths[:limit]]
        rest = paths[limit:]
        return TreeEntry(
            "/" + path,
            kind,
            size,
            files,
            link,
            tuple(shown),
            len(rest),
            sum(du.get(p, (0, 0))[0] for p in rest),
        )

    return entry(real, 0)


# --- putting it together -----------------------------------------------------------------


def _layer_rows(source: ImageSource, view: FsView) -> tuple[LayerRow, ...]:
    history = source.config.layer_history()
    rows = []
    for layer, stats in zip(source.manifest.layers, view.layers, strict=True):
        step = history[layer.index]
        rows.append(
            LayerRow(
                index=layer.index,
                digest=layer.digest,
                diff_id=layer.diff_id,
                media_type=layer.media_type,
                compression=stats.compression,
                size=stats.stored_size,
                tar_size=stats.tar_size,
                created_by=step.created_by if step is not None else None,
                entries=stats.entries,
                files=stats.files,
                bytes_added=stats.bytes_added,
                whiteouts=stats.whiteouts,
                removed=stats.removed,
            )
        )
    return tuple(rows)


def _efficiency(view: FsView, top: int) -> Efficiency:
    return Efficiency(
        score=view.efficiency,
        wasted_bytes=view.wasted,
        added_bytes=view.total_added,
        dive_score=view.dive_score,
        dive_wasted_bytes=view.dive_wasted,
        deleted_paths=sum(d.removed for d in view.deletions),
        top=tuple(WastedPath("/" + w.path, w.wasted, w.layers) for w in view.waste[:top]),
    )


def _platforms(platforms: Iterable[Platform]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(p) for p in platforms))


def inspect_image(
    source: ImageSource,
    *,
    files: str | None = None,
    depth: int = 2,
    top: int = 10,
) -> InspectReport:
    """Read ``source`` once and report on it; ``files`` adds the tree under that path."""
    return analyse_fsview(
        source,
        inspect_want,
        lambda view: inspect_view(source, view, files=files, depth=depth, top=top),
    )


def inspect_view(
    source: ImageSource,
    view: FsView,
    *,
    files: str | None = None,
    depth: int = 2,
    top: int = 10,
) -> InspectReport:
    """The report on ``view``, the merged tree of ``source`` read with a ``want`` that keeps
    at least what ``inspect_want`` does (``compare`` reads once for this and the catalog)."""
    config = source.config
    manifest = source.manifest
    layers = _layer_rows(source, view)
    du = _du(view)
    return InspectReport(
        reference=source.name,
        platform=str(config.platform),
        platforms=_platforms(source.platforms()),
        manifest_digest=manifest.digest,
        config_digest=config.digest,
        media_type=manifest.media_type,
        compressed_size=sum(row.size for row in layers),
        uncompressed_size=sum(row.tar_size for row in layers),
        content_size=du.get("", (0, 0))[0],
        layers=layers,
        config=ConfigSummary(
            entrypoint=config.entrypoint,
            cmd=config.cmd,
            user=config.user,
            workdir=config.workdir,
            env=config.env,
            ports=config.ports,
            volumes=config.volumes,
            labels=dict(config.labels),
            created=config.created,
            stop_signal=config.stop_signal,
        ),
        os=detect_os(view),
        surface=attack_surface(view, config.user),
        efficiency=_efficiency(view, top),
        files=file_tree(view, files, depth, du=du) if files is not None else None,
    )


def inspect_reference(
    text: str,
    *,
    access: Access | None = None,
    files: str | None = None,
    depth: int = 2,
) -> InspectReport:
    """Open the image ``text`` names and inspect it; temporary files go afterwards."""
    if depth < 0:
        raise DistillError(f"--depth {depth} is negative", hint="give 0 or more levels")
    with opened(text, access or Access()) as source:
        return inspect_image(source, files=files, depth=depth)
