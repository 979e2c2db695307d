"""The base an app goes on: a preset or a spec (built here, through ``build.pipeline``,
with the Debian packages the app's native code needs added as a level of their own), or
an image from any transport (used as it is: nothing can be installed into it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from distill.build.pipeline import (
    SDE_ENV,
    ArchResult,
    BuildContext,
    build_arch,
    build_context,
    source_date_epoch,
)
from distill.build.spec import Level, Spec, Variant, load_preset, load_spec, presets
from distill.cache import BlobCache
from distill.context import Access
from distill.debian.lock import Lock
from distill.errors import DistillError
from distill.image.model import Image, Index, check_platform
from distill.image.platform import Platform
from distill.transports import lookup, parse_source

APP_LEVEL = "app packages"  # the level of the Debian packages added for an app
Warn = Callable[[str], None]


class BaseKind(StrEnum):
    PRESET = "preset"
    SPEC = "spec"
    IMAGE = "image"


def classify_base(ref: str) -> BaseKind:
    """What ``--base`` names: a preset (``python3:nonroot``), a spec file, or an image in
    any transport (``oci:DIR``, ``docker://…``, a layout or archive path)."""
    stem, sep, suffix = ref.rpartition(":")
    name = stem if sep and suffix in Variant.__members__.values() else ref
    if name in presets():
        return BaseKind.PRESET
    transport, sep, _ = ref.partition(":")
    if ref.startswith("docker://") or (sep and lookup(transport) is not None):
        return BaseKind.IMAGE
    path = Path(name)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return BaseKind.SPEC
    if Path(ref).exists():
        return BaseKind.IMAGE
    raise DistillError(
        f"no preset, spec file or image named {ref!r}",
        hint="give a preset (`distill presets`), a spec file, or an image such as oci:DIR or "
        "docker://HOST/REPO:TAG",
    )


def with_packages(spec: Spec, extra: Sequence[str], base: str | None = None) -> Spec:
    """``spec`` with the Debian packages ``extra`` added on a level of their own (so the
    base's own levels keep their layers where they can); ``base``: the preset ``spec`` is,
    which the build then records as the image's base when its layers are the bottom."""
    have = set(spec.roots)
    added = tuple(dict.fromkeys(p for p in extra if p not in have))
    if not added:
        return spec
    return replace(
        spec,
        packages=(*spec.packages, *added),
        levels=(*spec.levels, Level(APP_LEVEL, added)),
        base=base or spec.base,
    )


@dataclass(frozen=True, slots=True)
class Base:
    """A base ready for the app's layers."""

    image: Image
    name: str  # as the user (or the default) named it
    kind: BaseKind
    arch: str
    source_date_epoch: int
    spec: Spec | None = None  # PRESET/SPEC: the spec built (with the app's packages)
    lock: Lock | None = None  # ... and its Debian lock
    built: ArchResult | None = None
    recorded: Image | None = None  # the image the base annotations name (None: none)
    stale: str | None = None  # why the app's lock could not be used for the base


def load_base_spec(ref: str, kind: BaseKind, suite: str | None, arch: str) -> Spec:
    if kind is BaseKind.PRESET:
        from distill.build.spec import DEFAULT_SUITE

        return load_preset(ref, suite=suite or DEFAULT_SUITE, archs=(arch,))
    return load_spec(ref, suite=suite, archs=(arch,))


def build_spec_base(
    spec: Spec,
    name: str,
    kind: BaseKind,
    lock: Lock | None,
    arch: str,
    cache: BlobCache,
    *,
    extra: Sequence[str] = (),
    offline: bool = False,
) -> Base:
    """``spec`` with the Debian packages ``extra`` built for ``arch`` from ``lock`` when it
    fits (else resolved now, and why the lock did not fit is kept in ``stale``)."""
    stale = None
    ctx: BuildContext | None = None
    preset = name if kind is BaseKind.PRESET else None
    if lock is not None:
        count = len(spec.roots)
        locked = lock.roots[count:] if tuple(lock.roots[:count]) == spec.roots else ()
        missing = [p for p in extra if p not in locked]
        if missing:
            stale = f"the app now needs {', '.join(missing)}, which it does not hold"
        else:
            try:
                ctx = build_context(with_packages(spec, locked, preset), lock, (arch,), cache)
            except DistillError as exc:
                stale = exc.message
    if ctx is None:
        if offline:
            raise DistillError(
                f"--offline: no lock to build {spec.name} from",
                hint="lock the app first, online: `distill lock PATH`",
            )
        ctx = build_context(with_packages(spec, extra, preset), None, (arch,), cache)
    spec = ctx.spec
    result = build_arch(ctx, arch)
    # A base with packages added for the app is not the preset's image any more; its
    # bottom layers may still be (pipeline._base_image says).
    plain = not any(level.name == APP_LEVEL for level in spec.levels)
    recorded = result.image if plain and kind is BaseKind.PRESET else result.base
    return Base(
        image=result.image,
        name=name if plain else (spec.base or name),
        kind=kind,
        arch=arch,
        source_date_epoch=ctx.source_date_epoch,
        spec=spec,
        lock=ctx.lock,
        built=result,
        recorded=recorded,
        stale=stale,
    )


def open_image_base(ref: str, access: Access, arch: str | None, stack: ExitStack) -> Base:
    """The image ``ref`` names, kept open in ``stack`` (its layers are read when written)."""
    top = stack.enter_context(parse_source(ref).open(access)).top
    wanted = access.platform or (Platform.from_debian(arch) if arch else None)
    if isinstance(top, Index):
        image = top.select(wanted, ref)
    else:
        check_platform(top, wanted, ref)
        image = top
    from distill.package.base import debian_arch

    return Base(
        image=image,
        name=ref,
        kind=BaseKind.IMAGE,
        arch=debian_arch(image.platform),
        source_date_epoch=_image_epoch(image),
        recorded=image,
    )


def _image_epoch(image: Image) -> int:
    """SOURCE_DATE_EPOCH from the environment, else the base image's creation time."""
    text = os.environ.get(SDE_ENV, "").strip()
    if text:
        return source_date_epoch(Lock("", (), {}, (), (), ()))  # checks and reads the variable
    created = image.config.created
    if created:
        try:
            return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return 0
