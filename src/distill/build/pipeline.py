"""``distill build``: a spec (and its lock) in, an OCI image out.

The pipeline, per architecture: fetch the locked .debs into the cache, unpack them (cached per
.deb), finish the rootfs level by level (``layers`` says how levels become layers), add the
spec's own files, paths and the debug shell, write each layer through the layer cache, then
the config and manifest; with several architectures an index over them. Only the last step
writes outside the cache, atomically.

Every timestamp is SOURCE_DATE_EPOCH: the environment's if set, else the newest InRelease
``Date`` of the lock, so the same lock gives the same image digest on any machine.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from distill import __version__, log
from distill.build.layers import (
    LayerGroup,
    LayerRole,
    cached_layer,
    diff_entries,
    entries_digest,
    group_packages,
    package_levels,
)
from distill.build.nodejs import (
    check_locked,
    fetch_node,
    lock_components,
    node_entries,
    registry_url,
)
from distill.build.spec import DEBUG_PACKAGE, Accounts, Spec, load_preset
from distill.build.unpack import Unpacked, fetch_debs, staging_dir, unpack_all
from distill.build.userfiles import checked_source, file_entries, path_entries
from distill.cache import BlobCache
from distill.context import Access
from distill.debian.lock import Lock, lock_spec
from distill.debian.mirror import Mirrors, discover_mirrors
from distill.debian.version import parse_version
from distill.errors import DistillError
from distill.image.compose import compose_image, compose_index
from distill.image.config import ANNOTATION_PREFIX, HistoryEntry, ImageConfigSpec
from distill.image.descriptor import Descriptor
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, LayerBlob
from distill.image.model import Image
from distill.image.platform import Platform
from distill.rootfs.debug import busybox_entries
from distill.rootfs.prune import Keep, describe, prune
from distill.rootfs.system import SystemOptions, finish_rootfs
from distill.rootfs.usrmerge import relocate
from distill.transports import Reference, parse_reference

SDE_ENV = "SOURCE_DATE_EPOCH"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
DEFAULT_JOBS = 8


@dataclass(frozen=True, slots=True)
class BuildContext:
    spec: Spec
    lock: Lock
    cache: BlobCache
    compression: Compression
    jobs: int
    source_date_epoch: int
    mirrors: Callable[[], Mirrors]  # asked only when a .deb must be downloaded
    registry: Callable[[], str]  # the npm registry, asked only when Node.js must be downloaded


@dataclass(frozen=True, slots=True)
class LayerResult:
    role: LayerRole
    levels: tuple[str, ...]  # the spec levels whose packages it holds
    packages: tuple[str, ...]
    blob: LayerBlob
    reused: bool  # taken from the layer cache rather than compressed now


@dataclass(frozen=True, slots=True)
class ArchResult:
    arch: str
    packages: tuple[str, ...]
    excluded: tuple[str, ...]
    layers: tuple[LayerResult, ...]
    image: Image
    base: Image | None  # the image of spec.base the image was built on (see _base_image)
    notes: tuple[str, ...]  # what was skipped or overridden while assembling the rootfs
    unpacked_from_cache: int  # packages whose unpacking was remembered


@dataclass(frozen=True, slots=True)
class BuildResult:
    spec: str
    destination: Reference
    descriptor: Descriptor  # manifest (one arch) or index; docker-archive: the config
    source_date_epoch: int
    archs: tuple[ArchResult, ...]

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def layers_written(self) -> int:
        return sum(not layer.reused for arch in self.archs for layer in arch.layers)

    @property
    def layers_reused(self) -> int:
        return sum(layer.reused for arch in self.archs for layer in arch.layers)


# --- inputs ----------------------------------------------------------------------------------


def environment_epoch() -> int | None:
    """``$SOURCE_DATE_EPOCH`` when set (checked), else None."""
    text = os.environ.get(SDE_ENV)
    if text is None or not text.strip():
        return None
    if not text.strip().isdigit():
        raise DistillError(
            f"{SDE_ENV}={text!r} is not a number of seconds since 1970",
            hint=f"unset it, or set e.g. {SDE_ENV}=$(git log -1 --format=%ct)",
        )
    return int(text)


def source_date_epoch(lock: Lock) -> int:
    """``$SOURCE_DATE_EPOCH``, else the newest InRelease date of the lock."""
    epoch = environment_epoch()
    if epoch is not None:
        return epoch
    if not lock.pockets:
        raise DistillError(
            "the lock records no archive dates to take SOURCE_DATE_EPOCH from",
            hint=f"set {SDE_ENV}, or lock again with `distill lock`",
        )
    return int(lock.newest_date.timestamp())


def check_lock(spec: Spec, lock: Lock, archs: Sequence[str]) -> None:
    """Refuse a lock made for other packages, suite, pins or architectures than the spec's."""
    problems = []
    if lock.suite != spec.suite:
        problems.append(f"it is for {lock.suite}, the spec for {spec.suite}")
    if tuple(lock.roots) != spec.roots:
        added = [r for r in spec.roots if r not in lock.roots]
        dropped = [r for r in lock.roots if r not in spec.roots]
        what = [f"+{r}" for r in added] + [f"-{r}" for r in dropped]
        problems.append(f"the packages differ ({' '.join(what) or 'order'})")
    # A lock from fewer pockets than the spec allows is still the spec's (a base built
    # from its app's lock, for one); one from a pocket the spec leaves out is not.
    extra = [name for name, _ in lock.pockets if name not in spec.suite_pockets()]
    if extra:
        problems.append(f"it takes packages from {', '.join(extra)}, which the spec leaves out")
    if tuple(lock.exclude) != spec.exclude or tuple(lock.include) != spec.include:
        problems.append("the spec's exclude/include lists changed")
    for arch in archs:
        if arch not in lock.archs:
            problems.append(f"it has no {arch} packages")
            continue
        problems += check_locked(spec.node, lock.archs[arch], arch)
        versions = {p.name: p.version for p in lock.archs[arch].packages}
        for name, version in spec.pins.items():
            if versions.get(name) != version:
                problems.append(f"{name} is pinned to {version}, locked at {versions.get(name)}")
    if problems:
        raise DistillError(
            f"the lock does not match {spec.name}: {'; '.join(problems)}",
            hint="lock the spec again: `distill lock SPEC -o LOCKFILE`",
        )


def build_archs(spec: Spec, lock: Lock | None) -> tuple[str, ...]:
    """The spec's architectures; without any, a given lock's, else the host's."""
    if spec.archs or lock is None:
        return spec.target_archs()
    return tuple(lock.archs)


# --- the rootfs and its layers ---------------------------------------------------------------


def _finish(
    unpacked: Mapping[str, Unpacked], names: Sequence[str], options: SystemOptions, keep: Keep
) -> tuple[dict[str, FsEntry], list[str]]:
    """The finished rootfs of ``names`` with what ``keep`` does not keep left out (after the
    CA bundle and the keystore are made from the certificates: see ``rootfs.prune``)."""
    finished = finish_rootfs(
        [e for name in names for e in unpacked[name].entries],
        {name: unpacked[name].control for name in names},
        options,
    )
    rootfs, dropped = prune({e.path: e for e in finished.entries}, keep)
    summary = describe(dropped)
    return rootfs, [*finished.notes, *([summary] if summary else [])]


def _spec_entries(ctx: BuildContext, rootfs: Mapping[str, FsEntry]) -> list[list[FsEntry]]:
    """The spec's own ``paths:`` and ``files:`` entries, grouped by the spec that declared
    them, bottom of the ``extends`` chain first; the last group is the top spec's (with the
    workdir). A lower spec's group becomes a layer of its own, the same one that spec's own
    image has as its app layer: so python3's ``/usr/bin/python`` link does not keep
    python3's layers from being the bottom layers of an app built on it (``rebase``)."""
    spec = ctx.spec
    groups: dict[str, list[FsEntry]] = {}
    for path in spec.paths:
        groups.setdefault(_declared_by(path.origin), []).extend(path_entries([path], spec.accounts))
    staging = staging_dir(ctx.cache)
    for item in spec.files:
        groups.setdefault(_declared_by(item.origin), []).extend(
            file_entries([item], spec.accounts, staging)
        )
    own = groups.pop(spec.source, [])
    entries = [*(e for group in groups.values() for e in group), *own]
    if spec.workdir is not None:
        workdir = relocate(spec.workdir.strip("/"))
        if workdir and workdir not in rootfs and all(e.path != workdir for e in entries):
            own.append(FsEntry(workdir, EntryKind.DIR, 0o755))  # as Dockerfile WORKDIR
    return [*groups.values(), own]


def _declared_by(origin: str) -> str:
    """The spec source of an item's ``origin`` ("preset:python3:4" → "preset:python3")."""
    return re.sub(r":\d+$", "", origin)


def assemble(
    ctx: BuildContext,
    arch: str,
    unpacked: Mapping[str, Unpacked],
    component: Sequence[FsEntry] = (),
) -> tuple[list[tuple[LayerGroup, list[FsEntry]]], list[str]]:
    """The image's layers as entry lists (bottom first, empty ones dropped) and notes on
    what was skipped or overridden. ``component`` (Node.js from the npm registry) gets a
    layer of its own above the packages', below the app's."""
    unpacked = dict(unpacked)
    if DEBUG_PACKAGE in unpacked and ctx.spec.debug:
        shell = unpacked[DEBUG_PACKAGE]
        unpacked[DEBUG_PACKAGE] = replace(
            shell, entries=tuple(busybox_entries(shell.entries, shell.name))
        )
    groups, app_packages = group_packages(
        ctx.spec.levels, {name: u.control for name, u in unpacked.items()}
    )
    plain = Accounts()
    defaults = SystemOptions(ctx.spec.suite, arch, accounts=plain.users, groups=plain.groups)
    layers: list[tuple[LayerGroup, list[FsEntry]]] = []
    below: dict[str, FsEntry] = {}
    names: list[str] = []
    notes: list[str] = []
    for group in groups:
        names += group.packages
        rootfs, notes = _finish(unpacked, names, defaults, ctx.spec.keep)
        layers.append((group, diff_entries(below, rootfs)))
        below = rootfs
    if component:
        top = {**below, **{e.path: e for e in component}}
        layers.append(
            (LayerGroup(LayerRole.RUNTIME, ("node",), ("node",)), diff_entries(below, top))
        )
        below = top
    # The spec's accounts and the debug shell are the app's: lower layers stay the same
    # whatever a spec adds, so images share them.
    options = replace(defaults, accounts=ctx.spec.accounts.users, groups=ctx.spec.accounts.groups)
    if app_packages or options != defaults or not groups:
        final, notes = _finish(unpacked, [*names, *app_packages], options, ctx.spec.keep)
    else:
        final = dict(below)
    for entry in component:
        final.setdefault(entry.path, entry)
    *lower, own = _spec_entries(ctx, final)
    for declared in lower:
        top = {**below, **{e.path: e for e in declared}}
        layers.append((LayerGroup(LayerRole.APP, (), ()), diff_entries(below, top)))
        below = top
        final.update((e.path, e) for e in declared)
    final.update((e.path, e) for e in own)
    layers.append((LayerGroup(LayerRole.APP, (), app_packages), diff_entries(below, final)))
    skipped = [line for u in unpacked.values() for line in u.skipped]
    return [(g, entries) for g, entries in layers if entries], [*skipped, *notes]


# --- image config ----------------------------------------------------------------------------


def _check_user(spec: Spec) -> None:
    if spec.user is None:
        return
    user, _, group = spec.user.partition(":")
    users = {a.name for a in spec.accounts.users}
    groups = {g.name for g in spec.accounts.groups} | users
    for name, known, what in ((user, users, "user"), (group, groups, "group")):
        if name and not name.isdigit() and name not in known:
            raise DistillError(
                f"{spec.source}: user: no {what} {name!r} in the image",
                hint=f"use a number or one of: {', '.join(sorted(known))} (see `accounts:`)",
            )


def release_version(version: str) -> str:
    """The upstream release a Debian version packages: ``21.0.9+10-1~deb13u1`` → ``21.0.9``
    (no epoch, no revision, nothing from the first ``+`` or ``~``: build numbers and
    repackaging marks)."""
    upstream = parse_version(version).upstream
    return re.split(r"[+~]", upstream, maxsplit=1)[0]


def version_env(spec: Spec, versions: Mapping[str, str]) -> dict[str, str]:
    """The spec's ``version_env`` variables, from the locked versions (name → version)."""
    env = {}
    for variable, package in spec.version_env:
        if package not in versions:
            raise DistillError(
                f"{spec.source}: version_env: {variable} names {package}, which the lock "
                "does not hold",
                hint="name a package of the image in version_env, or add it to packages",
            )
        env[variable] = release_version(versions[package])
    return env


def image_config(
    spec: Spec, rootfs_paths: set[str], versions: Mapping[str, str] | None = None
) -> ImageConfigSpec:
    """The image config of ``spec``; ``versions`` (locked name → version) fills its
    ``version_env`` (None: left out, for the index's annotations)."""
    env = {"PATH": DEFAULT_PATH + (":/busybox" if spec.debug else "")}
    if CA_BUNDLE in rootfs_paths:
        env["SSL_CERT_FILE"] = f"/{CA_BUNDLE}"
    if versions is not None:
        env.update(version_env(spec, versions))
    env.update(spec.env)
    annotations = {(k if "." in k else ANNOTATION_PREFIX + k): v for k, v in spec.annotations}
    return ImageConfigSpec(
        entrypoint=spec.entrypoint,
        cmd=spec.cmd,
        env=tuple(f"{k}={v}" for k, v in env.items()),
        user=spec.user,
        workdir=spec.workdir,
        labels=dict(spec.labels),
        exposed_ports=spec.ports,
        volumes=spec.volumes,
        title=spec.name,
        annotations=annotations,
    )


def _history(layers: Sequence[LayerResult]) -> list[HistoryEntry]:
    entries = []
    for layer in layers:
        what = f"{layer.role} layer" + (f" of {', '.join(layer.levels)}" if layer.levels else "")
        comment = ", ".join(layer.packages) if layer.packages else ""
        entries.append(HistoryEntry(f"distill {__version__}: {what}", comment))
    return entries


# --- the build -------------------------------------------------------------------------------


def build_arch(ctx: BuildContext, arch: str) -> ArchResult:
    locked = ctx.lock.archs[arch]
    component: list[FsEntry] = []
    # Before the .debs: a tarball that fails its checks costs no download.
    for locked_component in locked.components:  # check_lock let only Node.js in
        with log.complete_step(f"Fetching Node.js {locked_component.version} ({arch})"):
            tarball = fetch_node(locked_component, ctx.cache, ctx.registry)
            component = node_entries(locked_component, tarball, staging_dir(ctx.cache))
    with log.complete_step(f"Fetching {len(locked.packages)} packages ({arch})"):
        debs = fetch_debs(ctx.lock, arch, ctx.cache, ctx.mirrors, jobs=ctx.jobs)
    with log.complete_step(f"Unpacking {len(locked.packages)} packages ({arch})"):
        keep = ctx.spec.keep.extract
        unpacked = unpack_all(locked.packages, debs, ctx.cache, keep, jobs=ctx.jobs)
    with log.complete_step(f"Writing layers ({arch})"):
        planned, notes = assemble(ctx, arch, unpacked, component)
        layers = []
        for group, entries in planned:
            blob, reused = cached_layer(entries, ctx.cache, ctx.compression, ctx.source_date_epoch)
            layers.append(LayerResult(group.role, group.levels, group.packages, blob, reused))
    keys = [entries_digest(entries) for _, entries in planned]
    base = _base_image(ctx, ctx.spec, arch, unpacked, keys, layers, component)
    image = _image(ctx, ctx.spec, arch, planned, layers, base)
    return ArchResult(
        arch=arch,
        packages=tuple(p.name for p in locked.packages),
        excluded=tuple(e.name for e in locked.excluded),
        layers=tuple(layers),
        image=image,
        base=base,
        notes=tuple(notes),
        unpacked_from_cache=sum(u.cached for u in unpacked.values()),
    )


def _image(
    ctx: BuildContext,
    spec: Spec,
    arch: str,
    planned: Sequence[tuple[LayerGroup, list[FsEntry]]],
    layers: Sequence[LayerResult],
    base: Image | None,
) -> Image:
    versions = {p.name: p.version for p in ctx.lock.archs[arch].packages}
    config = image_config(spec, {e.path for _, entries in planned for e in entries}, versions)
    if base is not None:
        config = replace(config, base_name=spec.base, base_digest=base.digest)
    return compose_image(
        config,
        Platform.from_debian(arch),
        [layer.blob for layer in layers],
        source_date_epoch=ctx.source_date_epoch,
        history=_history(layers),
    )


def _base_image(
    ctx: BuildContext,
    spec: Spec,
    arch: str,
    unpacked: Mapping[str, Unpacked],
    keys: Sequence[str],
    layers: Sequence[LayerResult],
    component: Sequence[FsEntry] = (),
) -> Image | None:
    """The image of ``spec.base`` (the nearest preset below it) as ``distill build`` makes
    it from the same packages, when its layers are exactly the bottom of ``spec``'s (whose
    contents hash to ``keys``); else None: then the image has no base it could be rebased
    from. A spec adding packages of its own regroups the levels into other layers, so only
    specs adding files, paths, accounts or config on a preset have one (docs/rebase.md)."""
    if spec.base is None:
        return None
    base_spec = load_preset(spec.base, suite=spec.suite, archs=spec.archs)
    depth = len(base_spec.levels)
    if base_spec.levels != spec.levels[:depth]:
        return None
    controls = {name: u.control for name, u in unpacked.items()}
    below = package_levels(spec.levels, controls)
    own = {name: u for name, u in unpacked.items() if below[name] < depth}
    groups, _ = group_packages(base_spec.levels, {name: u.control for name, u in own.items()})
    if [g.packages for g in groups] != [layer.packages for layer in layers[: len(groups)]]:
        return None  # other package layers: no need to assemble the base to know
    own_component = component if base_spec.node == spec.node else ()
    planned, _ = assemble(replace(ctx, spec=base_spec), arch, own, own_component)
    count = len(planned)
    if count > len(keys) or [entries_digest(e) for _, e in planned] != list(keys[:count]):
        return None
    base_layers = layers[:count]
    beneath = _base_image(ctx, base_spec, arch, own, keys[:count], base_layers, own_component)
    return _image(ctx, base_spec, arch, planned, base_layers, beneath)


def build_context(
    spec: Spec,
    lock: Lock | None,
    archs: Sequence[str],
    cache: BlobCache,
    compression: Compression = Compression.GZIP,
    jobs: int = DEFAULT_JOBS,
) -> BuildContext:
    """What ``build_arch`` needs: ``lock`` checked against ``spec``, or resolved now when
    None (``distill package`` builds its base through this too)."""
    mirrors = functools.cache(lambda: discover_mirrors(spec.mirror, spec.security_mirror))
    registry = functools.cache(registry_url)
    if lock is None:
        with log.complete_step(f"Resolving {spec.name} ({spec.suite}, {', '.join(archs)})"):
            lock, _ = lock_spec(spec, mirrors())
            lock = lock_components(lock, spec.node, cache, registry)
    else:
        check_lock(spec, lock, archs)
    ctx = BuildContext(
        spec, lock, cache, compression, jobs, source_date_epoch(lock), mirrors, registry
    )
    ctx.cache.sweep()  # what killed builds left in the cache
    return ctx


def build_image(
    spec: Spec,
    lock: Lock | None,
    destination: Reference | str,
    *,
    compression: Compression = Compression.GZIP,
    jobs: int = DEFAULT_JOBS,
    cache: BlobCache | None = None,
    access: Access | None = None,
    inputs: Sequence[Path | str] = (),
) -> BuildResult:
    """Build ``spec`` from ``lock`` (resolved now when None) and write it to ``destination``,
    any transport's reference (``oci:DIR``, ``docker://HOST/REPO[:TAG]``, ...); ``access``
    says how to reach a registry. The output is checked first, and must not be one of
    ``inputs`` (the spec, the lock)."""
    access = access or Access()
    dest = parse_reference(destination) if isinstance(destination, str) else destination
    dest.check_writable(access, inputs=[*inputs, spec.source])
    _check_user(spec)
    for item in spec.files:  # before any download: a typo or a dangling link costs nothing
        checked_source(item)
    archs = build_archs(spec, lock)
    if not dest.holds_index and len(archs) > 1:
        raise DistillError(
            f"{dest.transport} holds one platform, but {spec.name} is for {', '.join(archs)}",
            hint="pick one with --arch, or write oci:, oci-archive: or docker://, which hold "
            "them all",
        )
    ctx = build_context(spec, lock, archs, cache or BlobCache(), compression, jobs)
    results = tuple(build_arch(ctx, arch) for arch in archs)
    images = [r.image for r in results]
    config = image_config(spec, set())
    if all(r.base is not None for r in results):
        # Each platform's manifest names its own base's digest; the index names the base.
        config = replace(config, base_name=spec.base)
    annotations = config.manifest_annotations(ctx.source_date_epoch)
    target = images[0] if len(images) == 1 else compose_index(images, annotations)
    with log.complete_step(f"Writing {dest}"):
        written = dest.write(target, access, mtime=ctx.source_date_epoch)
    return BuildResult(spec.name, dest, written.descriptor, ctx.source_date_epoch, results)
