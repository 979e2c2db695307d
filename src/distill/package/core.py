"""``distill package``: an application's last build stage, without a daemon.

The driver: detect the kind of app (``detect``), get its base (``baseimage``: a preset or
spec built here, or an image read from any transport) and what it holds (``base``), let
the kind's planner turn the project into layers (``plan.Planner``), add the Debian
packages the plan needs to the base, write each app layer through the layer cache (same
entries, same digest) and compose the image over the base's layers, then write it to any
transport. The app's lock (``applock``) pins both the base's .debs and the language
packages, so a rebuild is the same image.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from distill import __version__, log
from distill.build.layers import cached_layer
from distill.build.spec import NONROOT_USER, Spec, host_arch
from distill.build.unpack import staging_dir
from distill.cache import BlobCache
from distill.context import Access
from distill.debian.lock import Lock
from distill.errors import DistillError
from distill.image.compose import compose_image
from distill.image.config import HistoryEntry, ImageConfigSpec
from distill.image.descriptor import Descriptor
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, LayerBlob
from distill.image.model import Image
from distill.mutate.rebase import BASE_DIGEST, BASE_NAME
from distill.package.applock import app_lock_path, read_app_lock, same_packages, with_lang_packages
from distill.package.base import base_facts
from distill.package.baseimage import (
    APP_LEVEL,
    Base,
    BaseKind,
    build_spec_base,
    classify_base,
    load_base_spec,
    open_image_base,
)
from distill.package.detect import default_base, detect_kind
from distill.package.plan import (
    APP_DIR,
    AppKind,
    AppLayer,
    AppOptions,
    AppPlan,
    BaseFacts,
    PlanContext,
    Planner,
)
from distill.transports import Reference, input_paths, parse_reference

Warn = Callable[[str], None]

# Each kind's planner, imported only when an app of that kind is packaged.
PLANNERS: dict[AppKind, str] = {
    AppKind.PYTHON: "distill.package.python:PythonPlanner",
    AppKind.NODE: "distill.package.node:NodePlanner",
    AppKind.JAVA: "distill.package.java:JavaPlanner",
    AppKind.ELF: "distill.package.elf:ElfPlanner",
}
JLINK_BASE = "cc:nonroot"  # a jlink'ed runtime needs only glibc and zlib


def planner_for(kind: AppKind) -> Planner:
    module_name, _, class_name = PLANNERS[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise DistillError(
            f"this distill cannot package {kind} apps yet (no {module_name})",
            hint=f"choose another --kind than {kind}, or update distill",
        ) from None
    planner: type[Planner] = getattr(module, class_name)
    return planner()


@dataclass(frozen=True, slots=True)
class PackagedLayer:
    name: str
    blob: LayerBlob
    reused: bool  # taken from the layer cache


@dataclass(frozen=True, slots=True)
class Prepared:
    """The app planned on its base: everything but the app's layers and the image."""

    options: AppOptions
    kind: AppKind
    base: Base
    facts: BaseFacts
    plan: AppPlan
    added: tuple[str, ...]  # Debian packages added to the base for the app
    lock_file: Path | None  # the app lock used (None: none, or not usable)
    stale: tuple[str, ...]  # why the lock did not fit


@dataclass(frozen=True, slots=True)
class PackageResult:
    prepared: Prepared
    destination: Reference
    image: Image
    descriptor: Descriptor
    layers: tuple[PackagedLayer, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]

    @property
    def digest(self) -> str:
        return self.descriptor.digest


# --- planning --------------------------------------------------------------------------------


def _arch(arch: str | None, lock: Lock | None) -> str:
    if arch:
        return arch
    if lock is not None and lock.archs:
        host = host_arch()
        return host if host in lock.archs else sorted(lock.archs)[0]
    return host_arch()


def _base_ref(options: AppOptions, kind: AppKind) -> str:
    if options.base:
        return options.base
    if kind is AppKind.JAVA and options.jlink:
        return JLINK_BASE
    return default_base(kind, options.path)


def prepare(
    options: AppOptions,
    *,
    stack: ExitStack,
    suite: str | None = None,
    arch: str | None = None,
    access: Access | None = None,
    cache: BlobCache | None = None,
    use_lock: bool = True,
    lock_path: Path | None = None,
    planner: Planner | None = None,
    base_spec: Spec | None = None,
) -> Prepared:
    """Plan ``options``'s app on its base. ``use_lock``: read ``PATH/distill.lock`` (not
    when locking anew). ``base_spec``: a ``Spec`` to build as the base (a spec's ``app:``)
    instead of ``options.base``. Image bases stay open in ``stack``."""
    access = access or Access()
    cache = cache or BlobCache()
    kind = detect_kind(options.path, options.kind)
    options = replace(options, kind=kind)
    lock_file = lock_path or app_lock_path(options.path)
    found = read_app_lock(lock_file) if use_lock else None
    lock, locked = found if found is not None else (None, None)
    arch = _arch(arch, lock)
    ref = _base_ref(options, kind)
    base = _base(ref, base_spec, lock, suite or (lock.suite if lock else None), arch, access,
                 cache, stack, options.offline)  # fmt: skip
    # Locking anew (``use_lock`` off): the planner resolves the app's dependencies afresh.
    ctx = PlanContext(
        cache, access, staging_dir(cache), base.source_date_epoch, locked, relock=not use_lock
    )
    with log.complete_step(f"Reading {base.name}"):
        facts = base_facts(base.image, base.name, cache)
    chosen = planner or planner_for(kind)
    with log.complete_step(f"Planning the {kind} app {options.path}"):
        plan = chosen.plan(options, facts, ctx)
    if plan.base and plan.base != ref and not options.base and base_spec is None:
        # The planner needs another base (a jlink'ed runtime goes on cc): plan again on it.
        options = replace(options, base=plan.base)
        return prepare(options, stack=stack, suite=suite, arch=arch, access=access,
                       cache=cache, use_lock=use_lock, lock_path=lock_path,
                       planner=chosen)  # fmt: skip
    needed = tuple(p for p in dict.fromkeys(plan.debian_packages) if p not in facts.packages)
    stale = [base.stale] if base.stale else []
    if needed:
        if base.spec is None:
            raise DistillError(
                f"the app needs Debian packages the image base {base.name} lacks: "
                f"{', '.join(needed)}",
                hint="package it on a preset or spec base (e.g. --base base:nonroot), which "
                "distill can add packages to, or on an image that has them",
            )
        with log.complete_step(f"Adding {', '.join(needed)} to {base.name}"):
            base = _rebuild(base, needed, lock, cache)
        stale += [base.stale] if base.stale else []
    if lock is not None and locked is not None and not same_packages(locked, plan.lang_packages):
        stale.append("the app's language packages changed")
    added = _added(base)
    return Prepared(options, kind, base, facts, plan, added,
                    lock_file if lock is not None else None, tuple(stale))  # fmt: skip


def _base(
    ref: str,
    base_spec: Spec | None,
    lock: Lock | None,
    suite: str | None,
    arch: str,
    access: Access,
    cache: BlobCache,
    stack: ExitStack,
    offline: bool,
) -> Base:
    if base_spec is not None:
        with log.complete_step(f"Building the base {base_spec.name} ({arch})"):
            return build_spec_base(
                base_spec, base_spec.name, BaseKind.SPEC, lock, arch, cache, offline=offline
            )
    kind = classify_base(ref)
    if kind is BaseKind.IMAGE:
        return open_image_base(ref, access, arch, stack)
    spec = load_base_spec(ref, kind, suite, arch)
    with log.complete_step(f"Building the base {ref} ({spec.suite}, {arch})"):
        return build_spec_base(spec, ref, kind, lock, arch, cache, offline=offline)


def _rebuild(base: Base, needed: Sequence[str], lock: Lock | None, cache: BlobCache) -> Base:
    assert base.spec is not None  # a preset's or spec's base
    spec = base.spec
    below = [level for level in spec.levels if level.name != APP_LEVEL]
    plain = replace(spec, levels=tuple(below))
    have = tuple(p for level in spec.levels if level.name == APP_LEVEL for p in level.packages)
    plain = replace(plain, packages=tuple(p for p in spec.packages if p not in have))
    return build_spec_base(
        plain, base.name, base.kind, lock, base.arch, cache, extra=(*have, *needed)
    )


def _added(base: Base) -> tuple[str, ...]:
    if base.spec is None:
        return ()
    return tuple(p for level in base.spec.levels if level.name == APP_LEVEL for p in level.packages)


# --- layers and config -----------------------------------------------------------------------


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:depth]) for depth in range(1, len(parts))]


def complete_layers(layers: Sequence[AppLayer], present: frozenset[str]) -> list[AppLayer]:
    """The plan's layers with the directories their entries need and the base lacks (each
    in the first layer that needs it), and ``/app`` (the working directory) in the last."""
    have = set(present)
    done = []
    for index, layer in enumerate(layers):
        entries = list(layer.entries)
        paths = {e.path for e in entries}
        for entry in layer.entries:
            for parent in _parents(entry.path):
                if parent not in have and parent not in paths:
                    entries.append(FsEntry(parent, EntryKind.DIR, 0o755))
                    paths.add(parent)
        if index == len(layers) - 1 and APP_DIR.strip("/") not in have | paths:
            entries.append(FsEntry(APP_DIR.strip("/"), EntryKind.DIR, 0o755))
        have |= paths
        done.append(replace(layer, entries=tuple(entries)))
    return done


def _env_pairs(items: Sequence[str]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items)


def app_config(
    prepared: Prepared, title: str
) -> tuple[ImageConfigSpec, tuple[str, ...], tuple[str, ...]]:
    """The image config: the base's environment and labels, the plan's entrypoint, command
    and environment, what the user said over both; the base's user, else nonroot."""
    options, plan, base = prepared.options, prepared.plan, prepared.base
    config = base.image.config
    env = {**_env_pairs(config.env), **plan.env, **options.env}
    entrypoint = options.entrypoint if options.entrypoint is not None else plan.entrypoint
    # A program given by the user does not take the inferred one's arguments.
    default_cmd = plan.cmd if options.entrypoint is None else ()
    cmd = options.cmd if options.cmd is not None else default_cmd
    if not entrypoint and not cmd:
        raise DistillError(
            f"no entrypoint could be inferred for {options.path}",
            hint='give one with --entrypoint \'["/app/bin/server", "--port", "8080"]\'',
        )
    ports = tuple(dict.fromkeys((*config.ports, *(f"{p}/tcp" for p in options.ports))))
    annotations = {}
    if base.recorded:
        annotations[BASE_NAME] = base.name
        if base.recorded_digest is not None:
            annotations[BASE_DIGEST] = base.recorded_digest
    spec = ImageConfigSpec(
        entrypoint=entrypoint or None,
        cmd=cmd or None,
        env=tuple(f"{k}={v}" for k, v in env.items()),
        user=config.user or NONROOT_USER,
        workdir=APP_DIR,
        labels=dict(config.labels),
        exposed_ports=ports,
        title=title,
        annotations=annotations,
    )
    return spec, tuple(entrypoint), tuple(cmd)


def _history(base: Image, layers: Sequence[AppLayer], kind: AppKind) -> list[HistoryEntry]:
    entries = []
    for i, item in enumerate(base.config.layer_history()):
        if item is None:
            entries.append(HistoryEntry(f"base layer {i + 1}"))
        else:
            entries.append(HistoryEntry(item.created_by or f"base layer {i + 1}", item.comment))
    for layer in layers:
        entries.append(HistoryEntry(f"distill {__version__}: package {kind} app", layer.name))
    return entries


def package_image(
    prepared: Prepared,
    cache: BlobCache,
    compression: Compression = Compression.GZIP,
) -> tuple[Image, tuple[PackagedLayer, ...], tuple[str, ...], tuple[str, ...]]:
    """The app's image: its layers (through the layer cache) over the base's."""
    base, sde = prepared.base, prepared.base.source_date_epoch
    layers = [
        layer
        for layer in complete_layers(prepared.plan.layers, prepared.facts.files)
        if layer.entries
    ]
    if not layers:
        layers = complete_layers((AppLayer("application", ()),), prepared.facts.files)
    packaged = []
    with log.complete_step(f"Writing {len(layers)} app layers"):
        for layer in layers:
            blob, reused = cached_layer(layer.entries, cache, compression, sde)
            packaged.append(PackagedLayer(layer.name, blob, reused))
    title = prepared.options.path.resolve().name or "app"
    config, entrypoint, cmd = app_config(prepared, title)
    image = compose_image(
        config,
        base.image.platform,
        [*base.image.layers, *(p.blob for p in packaged)],
        source_date_epoch=sde,
        history=_history(base.image, layers, prepared.kind),
    )
    return image, tuple(packaged), entrypoint, cmd


def package_app(
    options: AppOptions,
    destination: Reference | str,
    *,
    suite: str | None = None,
    arch: str | None = None,
    access: Access | None = None,
    cache: BlobCache | None = None,
    compression: Compression = Compression.GZIP,
    planner: Planner | None = None,
    base_spec: Spec | None = None,
    use_lock: bool = True,
    lock_path: Path | None = None,
    inputs: Sequence[Path | str] = (),
) -> PackageResult:
    """Package the app ``options`` names and write it to ``destination`` (any transport);
    the destination is checked before any work."""
    access = access or Access()
    cache = cache or BlobCache()
    dest = parse_reference(destination) if isinstance(destination, str) else destination
    reads = [options.path, lock_path or app_lock_path(options.path), *inputs]
    if options.base:
        reads += input_paths([options.base])
    dest.check_writable(access, inputs=reads)
    with ExitStack() as stack:
        prepared = prepare(options, stack=stack, suite=suite, arch=arch, access=access,
                           cache=cache, use_lock=use_lock, lock_path=lock_path,
                           planner=planner, base_spec=base_spec)  # fmt: skip
        image, layers, entrypoint, cmd = package_image(prepared, cache, compression)
        with log.complete_step(f"Writing {dest}"):
            written = dest.write(image, access, mtime=prepared.base.source_date_epoch)
    return PackageResult(prepared, dest, image, written.descriptor, layers, entrypoint, cmd)


def lock_app(
    options: AppOptions,
    *,
    suite: str | None = None,
    arch: str | None = None,
    access: Access | None = None,
    cache: BlobCache | None = None,
    planner: Planner | None = None,
    base_spec: Spec | None = None,
) -> tuple[Lock, Prepared]:
    """The app's lock, made anew: its base's Debian lock (with the packages the app needs)
    and the language packages the planner installed."""
    with ExitStack() as stack:
        prepared = prepare(options, stack=stack, suite=suite, arch=arch, access=access,
                           cache=cache, use_lock=False, planner=planner,
                           base_spec=base_spec)  # fmt: skip
    base = prepared.base
    lock = base.lock or Lock(prepared.facts.suite or "", (), {}, (), (), ())
    return with_lang_packages(lock, prepared.plan.lang_packages), prepared


def plan_notes(prepared: Prepared) -> list[str]:
    """What the user is told besides the layers: what was inferred, found and added."""
    notes = list(prepared.plan.notes)
    if prepared.added:
        notes.append(f"Debian packages added to the base: {', '.join(prepared.added)}")
    return notes
