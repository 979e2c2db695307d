"""The base an app goes on: a preset or a spec (built here, through ``build.pipeline``,
with the Debian packages the app's native code needs added as a level of their own), or
an image from any transport (used as it is: nothing can be installed into it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from distill import __version__
from distill.bounded import parse_json
from distill.build.pipeline import (
    BuildContext,
    build_arch,
    build_context,
    environment_epoch,
)
from distill.build.spec import Level, Spec, Variant, load_preset, load_spec, presets
from distill.cache import BlobCache
from distill.context import Access
from distill.debian.lock import Lock, lock_to_json
from distill.errors import DistillError
from distill.image.config import parse_config
from distill.image.descriptor import Descriptor
from distill.image.layer import Layer
from distill.image.manifest import load_json_object
from distill.image.model import Image, Index, assemble_image, check_platform
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
    recorded: bool = False  # whether the annotations name the base
    recorded_digest: str | None = None  # ... and its manifest digest
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
    # A base with packages added for the app is not the preset's image any more; its
    # bottom layers may still be (pipeline._base_image says), as for a spec's.
    plain = kind is BaseKind.PRESET and not any(lv.name == APP_LEVEL for lv in spec.levels)
    key = _build_key(ctx, arch) if not spec.files else None  # files: read at build time
    remembered = _remembered(key, cache) if key else None
    if remembered is not None:
        image, recorded_digest = remembered
    else:
        result = build_arch(ctx, arch)
        image = result.image
        recorded_image = result.image if plain else result.base
        recorded_digest = recorded_image.digest if recorded_image is not None else None
        if key:
            _remember(key, image, recorded_digest, cache)
    return Base(
        image=image,
        name=name if plain else (spec.base or name),
        kind=kind,
        arch=arch,
        source_date_epoch=ctx.source_date_epoch,
        spec=spec,
        lock=ctx.lock,
        recorded=recorded_digest is not None,
        recorded_digest=recorded_digest,
        stale=stale,
    )


# --- remembered bases ------------------------------------------------------------------------

BASES_NAMESPACE = "package-bases"


def _build_key(ctx: BuildContext, arch: str) -> str:
    """What a base built from ``ctx`` depends on: the spec (no ``files:``, whose sources are
    read at build time), the lock, the architecture, compression, SOURCE_DATE_EPOCH and
    this distill."""
    inputs = [__version__, repr(ctx.spec), json.dumps(lock_to_json(ctx.lock), sort_keys=True),
              arch, str(ctx.compression), str(ctx.source_date_epoch)]  # fmt: skip
    return hashlib.sha256("\n".join(inputs).encode()).hexdigest()


def _remember(key: str, image: Image, recorded_digest: str | None, cache: BlobCache) -> None:
    blobs = []
    for layer in image.layers:
        if layer.where is None or not str(layer.where).startswith(str(cache.blobs_dir)):
            return  # only layers in the cache can be found again
        blobs.append({"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size,
                      "media_type": layer.media_type,
                      "uncompressed_size": layer.uncompressed_size or 0})  # fmt: skip
    record = {
        "manifest": image.manifest_bytes.decode(),
        "config": image.config_bytes.decode(),
        "layers": blobs,
        "recorded_digest": recorded_digest,
    }
    cache.put_derived(BASES_NAMESPACE, key, json.dumps(record).encode())


def _remembered(key: str, cache: BlobCache) -> tuple[Image, str | None] | None:
    """The base image built earlier from the same inputs, when every layer is still in the
    cache; None (build it) when not, or when the record is not one ``_remember`` wrote."""
    raw = cache.get_derived(BASES_NAMESPACE, key)
    if raw is None:
        return None
    try:
        record = parse_json(raw, "a remembered base")
        layers = []
        for blob in record["layers"]:
            path = cache.get(str(blob["digest"]).removeprefix("sha256:"), int(blob["size"]))
            if path is None:
                return None
            layers.append(Layer.from_file(path, media_type=str(blob["media_type"]),
                                          digest=str(blob["digest"]),
                                          diff_id=str(blob["diff_id"]), size=int(blob["size"]),
                                          uncompressed_size=int(blob["uncompressed_size"])
                                          or None))  # fmt: skip
        manifest, config = record["manifest"].encode(), record["config"].encode()
        parsed = load_json_object(manifest, "a remembered base's manifest")
        descriptor = Descriptor.of(str(parsed["config"]["mediaType"]), config)
        image = assemble_image(
            manifest,
            str(parsed["mediaType"]),
            parse_config(config, descriptor.digest, "a remembered base's config"),
            descriptor,
            layers,
            parsed.get("annotations") or {},
        )
        digest = record["recorded_digest"]
        return image, digest if isinstance(digest, str) else None
    except (DistillError, KeyError, TypeError, ValueError, AttributeError):
        return None


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
        recorded=True,
        recorded_digest=image.digest if image.manifest.digest is not None else None,
    )


def _image_epoch(image: Image) -> int:
    """SOURCE_DATE_EPOCH from the environment, else the base image's creation time."""
    epoch = environment_epoch()
    if epoch is not None:
        return epoch
    created = image.config.created
    if created:
        try:
            return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return 0
