"""``distill rebase IMAGE --new-base NEW [--old-base OLD] -o DST``: an image's own layers
moved from the base it was built on to another one.

``rebase`` only speaks the image model: the image's layers above the old base are kept as
stored (their blobs pass through unchanged), the new base's layers go below them, the
config's ``rootfs.diff_ids`` and ``history`` are spliced, everything else in the config
(env, entrypoint, user…) is the image's, and the base annotations name the new base.

Safe by default: the old base's layers must be the bottom of the image's (diff_ids and
blob digests, where neither is a plain tar), and old and new base must be the same OS,
architecture and Debian release (from their os-release). ``force`` turns the second
check, and a difference in blob digests of the same content, into warnings; layers that
are not the old base's are never cut off. docs/rebase.md says the same for users.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from distill.bounded import one_line
from distill.context import Access
from distill.errors import DistillError
from distill.image.compose import index_of
from distill.image.config import ANNOTATION_PREFIX, parse_config
from distill.image.descriptor import Descriptor
from distill.image.digest import canonical_json, short
from distill.image.manifest import load_json_object
from distill.image.mediatypes import MEDIA_TYPE_INDEX
from distill.image.model import Image, Index, Top, assemble_image, check_platform
from distill.image.platform import Platform, platform_matches
from distill.mutate.release import read_release
from distill.transports import (
    Reference,
    WriteResult,
    input_paths,
    lookup,
    parse_reference,
    parse_source,
)

BASE_NAME = ANNOTATION_PREFIX + "base.name"
BASE_DIGEST = ANNOTATION_PREFIX + "base.digest"

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Base:
    """A base image as rebase sees it: the image, and the name it goes by."""

    image: Image
    name: str


def _refuse(message: str, hint: str, force: bool, warn: Warn) -> None:
    if not force:
        raise DistillError(message, hint=hint)
    warn(f"{message}; going on (--force)")


def check_prefix(image: Image, old: Base, name: str, *, force: bool, warn: Warn) -> int:
    """How many layers of ``image`` are ``old``'s; refuses unless they are its bottom."""
    count = len(old.image.layers)
    ours, theirs = image.diff_ids[:count], old.image.diff_ids
    if len(image.layers) < count or ours != theirs:
        at = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
        why = (
            f"it has {len(image.layers)} layers, the base {count}"
            if at is None
            else f"layer {at + 1} is {short(ours[at])}, the base's {short(theirs[at])}"
        )
        raise DistillError(
            f"{name} was not built on {old.name}: the base's layers are not its bottom layers "
            f"({why})",
            hint="give the base it was built on with --old-base",
        )
    for i, (mine, base) in enumerate(zip(image.layers, old.image.layers, strict=False)):
        # A docker archive or podman's storage keeps layers as plain tars (digest ==
        # diff_id): there only the diff_ids compare, and they did.
        plain = mine.digest == mine.diff_id or base.digest == base.diff_id
        if mine.digest != base.digest and not plain:
            _refuse(
                f"layer {i + 1} of {name} holds the same files as {old.name}'s but is stored "
                f"differently ({short(mine.digest)}, the base's {short(base.digest)})",
                "give the old base as it was pushed (oci:, oci-archive: or docker://), or --force",
                force,
                warn,
            )
            break
    return count


def check_compatible(old: Base, new: Base, *, force: bool, warn: Warn) -> None:
    """Old and new base must be the same OS, architecture and Debian release."""
    a, b = old.image.platform, new.image.platform
    if not (platform_matches(a, b) and platform_matches(b, a)):
        _refuse(
            f"{new.name} is for {b}, but {old.name} is for {a}",
            "a base of another architecture cannot run the image's own files; choose the "
            "new base's platform with --platform, or --force",
            force,
            warn,
        )
    old_release = read_release(old.image, old.name)
    new_release = read_release(new.image, new.name)
    if old_release is None or new_release is None:
        missing = old.name if old_release is None else new.name
        _refuse(
            f"{missing} has no os-release: cannot tell which release it is",
            "rebase onto a base of the same release only; --force skips this check",
            force,
            warn,
        )
    elif not old_release.same_release(new_release):
        _refuse(
            f"{new.name} is {new_release}, but {old.name} is {old_release}",
            "the image's own files were made for the old release; rebuild it on the new "
            "one, or --force",
            force,
            warn,
        )


def _split_history(history: list[Any], count: int) -> tuple[list[Any], list[Any]]:
    """The history entries of the bottom ``count`` layers, and the rest (the image's)."""
    layers = 0
    for i, entry in enumerate(history):
        if layers == count:
            return history[:i], history[i:]
        if not (isinstance(entry, dict) and entry.get("empty_layer")):
            layers += 1
    return history, []


def splice(
    image: Image,
    count: int,
    new: Base,
    *,
    where: str,
) -> Image:
    """``image`` with its bottom ``count`` layers replaced by ``new``'s."""
    config = load_json_object(image.config_bytes, f"the config of {where}")
    new_config = load_json_object(new.image.config_bytes, f"the config of {new.name}")
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict):
        raise DistillError(f"the config of {where} has no rootfs", hint="the image is damaged")
    own_layers = image.layers[count:]
    rootfs["diff_ids"] = [*new.image.diff_ids, *image.diff_ids[count:]]
    history = config.get("history")
    base_history = new_config.get("history")
    if isinstance(history, list) or isinstance(base_history, list):
        own = _split_history(history if isinstance(history, list) else [], count)[1]
        config["history"] = [*(base_history if isinstance(base_history, list) else []), *own]
    platform = new.image.platform
    config["os"], config["architecture"] = platform.os, platform.architecture
    if platform.variant:
        config["variant"] = platform.variant
    else:
        config.pop("variant", None)
    config_bytes = canonical_json(config)
    config_descriptor = Descriptor.of(image.config_descriptor.media_type, config_bytes)
    layers = (*new.image.layers, *own_layers)
    annotations = {**image.manifest.annotations, **base_annotations_of(new)}
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": image.media_type,
        "config": config_descriptor.to_json(),
        "layers": [layer.descriptor.to_json() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = annotations
    return assemble_image(
        canonical_json(manifest),
        image.media_type,
        parse_config(config_bytes, config_descriptor.digest, f"the rebased config of {where}"),
        config_descriptor,
        layers,
        annotations,
    )


def base_annotations_of(base: Base) -> dict[str, str]:
    """``base.name`` and, where the base has a manifest, ``base.digest``."""
    notes = {BASE_NAME: base.name}
    if base.image.manifest.digest is not None:
        notes[BASE_DIGEST] = base.image.digest
    return notes


def rebase(
    image: Image, old: Base, new: Base, *, name: str, force: bool = False, warn: Warn
) -> Image:
    """One platform's image rebased from ``old`` onto ``new`` (checks, then the splice)."""
    count = check_prefix(image, old, name, force=force, warn=warn)
    check_compatible(old, new, force=force, warn=warn)
    return splice(image, count, new, where=name)


# --- references --------------------------------------------------------------------------


def recorded_base(top: Top, name: str) -> str:
    """The base ``top``'s annotations name, or a clear refusal."""
    notes: Mapping[str, str] = (
        top.annotations if isinstance(top, Index) else top.manifest.annotations
    )
    if isinstance(top, Index) and BASE_NAME not in notes:
        first = next(top.images(), None)
        notes = first.manifest.annotations if first is not None else notes
    base = notes.get(BASE_NAME)
    if not base:
        raise DistillError(
            f"{name} does not say which base it was built on (no {BASE_NAME} annotation)",
            hint="give the base it was built on with --old-base",
        )
    transport, sep, _ = base.partition(":")
    if base.startswith("docker://") or (sep and lookup(transport) is not None):
        return base
    shown = one_line(repr(base), 200)  # a name from the image: quoted, capped
    raise DistillError(
        f"{name} was built on {shown}, which is not an image reference (a distill preset "
        "names how to build a base, not where one is)",
        hint=f"build it from the image's lock (`distill build {shown} --suite SUITE --lock "
        "LOCK -o oci:DIR`) and give it with --old-base oci:DIR",
    )


def _pick(top: Top, platform: Platform, name: str, *, strict: bool) -> Image:
    """The image of ``platform`` in an index. A single image is what it is when one image
    is rebased (whether its platform fits is ``check_compatible``'s to say, which --force
    can overrule); an index's platforms each need their own (``strict``)."""
    if isinstance(top, Index):
        return top.select(platform, name)
    if strict:
        check_platform(top, platform, name)
    return top


def _images(top: Top, access: Access, name: str) -> list[Image]:
    if isinstance(top, Image):
        check_platform(top, access.platform, name)
        return [top]
    if access.platform is not None:
        return [top.select(access.platform, name)]
    wanted = {d.digest for d in top.manifests()}
    return [image for image in top.images() if image.digest in wanted]


@dataclass(frozen=True, slots=True)
class RebaseResult:
    destination: Reference
    rebased: Top
    written: WriteResult
    old_base: str
    new_base: str

    @property
    def digest(self) -> str:
        return self.written.descriptor.digest


def rebase_reference(
    image_ref: str,
    new_base: str,
    destination: str | Reference,
    *,
    old_base: str | None = None,
    access: Access | None = None,
    force: bool = False,
    warn: Warn,
) -> RebaseResult:
    """Rebase the image ``image_ref`` names onto ``new_base`` and write it to
    ``destination``. An index is rebased platform by platform, each onto the new base's
    image of the same platform (refused when it has none); ``access.platform`` picks one."""
    access = access or Access()
    dst = parse_reference(destination) if isinstance(destination, str) else destination
    reads = [image_ref, new_base, *([old_base] if old_base else [])]
    dst.check_writable(access, inputs=input_paths(reads))
    with ExitStack() as stack:
        top = stack.enter_context(parse_source(image_ref).open(access)).top
        recorded = old_base is None
        if old_base is None:
            old_base = recorded_base(top, image_ref)
            dst.check_writable(access, inputs=input_paths([old_base]))  # not over it either
        old_top = stack.enter_context(parse_source(old_base).open(access)).top
        new_top = stack.enter_context(parse_source(new_base).open(access)).top
        images = _images(top, access, image_ref)
        if not dst.holds_index and len(images) > 1:
            raise DistillError(
                f"{dst.transport} holds one platform's image, but {image_ref} is an index",
                hint="pick one with --platform, or write oci:, oci-archive: or docker://",
            )
        rebased = []
        strict = len(images) > 1
        for image in images:
            old = Base(_pick(old_top, image.platform, old_base, strict=strict), old_base)
            # Each platform's manifest records the digest of its own base.
            recorded_digest = image.manifest.annotations.get(BASE_DIGEST) if recorded else None
            if recorded_digest is not None and old.image.digest != recorded_digest:
                raise DistillError(
                    f"{old_base} is {short(old.image.digest)} now, but {image_ref} was built "
                    f"on {short(recorded_digest)}",
                    hint="the tag moved; give the base it was built on with --old-base",
                )
            new = Base(_pick(new_top, image.platform, new_base, strict=strict), new_base)
            rebased.append(rebase(image, old, new, name=image_ref, force=force, warn=warn))
        result: Top
        if isinstance(top, Index) and len(rebased) > 1:
            result = _index(top, rebased, new_base)
        else:
            result = rebased[0]
        written = dst.write(result, access)
    return RebaseResult(dst, result, written, old_base, new_base)


def _index(top: Index, images: list[Image], new_base: str) -> Index:
    annotations = dict(top.annotations)
    if BASE_NAME in annotations or BASE_DIGEST in annotations:
        annotations[BASE_NAME] = new_base
        annotations.pop(BASE_DIGEST, None)
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [image.descriptor.to_json() for image in images],
    }
    if annotations:
        index["annotations"] = annotations
    return index_of(canonical_json(index), MEDIA_TYPE_INDEX, images, annotations)
