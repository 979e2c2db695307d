"""Manifest and index for built images, as canonical JSON, so equal inputs give equal
digests (the config: ``image.config``).

Canonical here means: keys sorted, no insignificant whitespace, UTF-8 (non-ASCII kept as
is), and fields left out rather than written empty when the user did not set them. Every
timestamp is ``source_date_epoch``; nothing reads the clock or the host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from distill.errors import DistillError
from distill.image.config import HistoryEntry, ImageConfigSpec, build_config, parse_config
from distill.image.descriptor import Descriptor
from distill.image.digest import canonical_json
from distill.image.layer import Layer
from distill.image.mediatypes import MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST
from distill.image.model import Image, Index, assemble_image
from distill.image.platform import Platform

if TYPE_CHECKING:  # only annotations: reading an image does not load the layer writer
    from distill.image.layer_blob import LayerBlob


def build_manifest(
    config: bytes, layers: Sequence[Layer], annotations: Mapping[str, str] | None = None
) -> bytes:
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": Descriptor.of(MEDIA_TYPE_CONFIG, config).to_json(),
        "layers": [layer.descriptor.to_json() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return canonical_json(manifest)


def compose_image(
    spec: ImageConfigSpec,
    platform: Platform,
    layers: Sequence[LayerBlob | Layer],
    *,
    source_date_epoch: int,
    history: Sequence[HistoryEntry] | None = None,
) -> Image:
    """Config and manifest for ``layers`` (bottom first), annotated from ``spec``."""
    parts = [layer if isinstance(layer, Layer) else layer.layer() for layer in layers]
    config = build_config(
        spec,
        platform,
        [layer.diff_id for layer in parts],
        source_date_epoch=source_date_epoch,
        history=history,
    )
    annotations = spec.manifest_annotations(source_date_epoch)
    config_descriptor = Descriptor.of(MEDIA_TYPE_CONFIG, config)
    return assemble_image(
        build_manifest(config, parts, annotations),
        MEDIA_TYPE_MANIFEST,
        parse_config(config, config_descriptor.digest, "the image config built"),
        config_descriptor,
        parts,
        annotations,
    )


def compose_index(images: Sequence[Image], annotations: Mapping[str, str] | None = None) -> Index:
    """An image index over one image per platform, listed in the order given."""
    seen: set[Platform] = set()
    for image in images:
        if image.platform in seen:
            raise DistillError(
                f"two images for platform {image.platform} in one index",
                hint="build each platform once",
            )
        seen.add(image.platform)
    if not images:
        raise DistillError("an image index needs at least one image")
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [image.descriptor.to_json() for image in images],
    }
    if annotations:
        index["annotations"] = dict(annotations)
    return index_of(canonical_json(index), MEDIA_TYPE_INDEX, images, annotations)


def index_of(
    data: bytes,
    media_type: str,
    children: Sequence[Image | Index],
    annotations: Mapping[str, str] | None = None,
) -> Index:
    """An ``Index`` whose entries are ``children``, in memory already."""
    by_digest = {child.digest: child for child in children}
    entries = tuple(child.descriptor for child in children)
    return Index(data, media_type, entries, lambda d: by_digest[d.digest], dict(annotations or {}))
