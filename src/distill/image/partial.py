"""Images from content-addressed blobs, and the analysers' view of an image.

A source that offers blobs by digest (an OCI layout, a docker 25+ archive, a registry)
implements only ``BlobStore``; ``load_top`` makes the ``Image`` or ``Index`` a descriptor
names out of it, reading and checking every small blob (index, manifest, config) and
leaving the layers to be read, checked, when opened.

``ImageSource`` is what the analysers (inspect, sbom, compare) read: one platform's
``Image``, its layers opened as ``LayerStream``s whose files are hashed on a second thread
from the moment the image is opened (``LayerFiles``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, BinaryIO, Protocol

from distill.errors import DistillError
from distill.image.config import ImageConfig, parse_config
from distill.image.descriptor import Descriptor, parse_descriptor
from distill.image.digest import canonical_json, short
from distill.image.layer import Layer
from distill.image.manifest import ImageManifest, LayerDescriptor, load_json_object
from distill.image.mediatypes import CONFIG_TYPES, INDEX_TYPES, MANIFEST_TYPES, MEDIA_TYPE_INDEX
from distill.image.model import (
    MAX_MANIFESTS,
    Image,
    Index,
    Top,
    assemble_image,
    check_platform,
)
from distill.image.platform import Platform
from distill.image.stream import FileRange, LayerFiles, LayerStream

MAX_JSON_BLOB = 16 << 20  # an index, manifest or config larger than this is not one
# Docker stops at 125 layers and overlay mounts at a few hundred; more is not an image.
MAX_LAYERS = 1000


# --- the interface -----------------------------------------------------------------------


class ImageSource(Protocol):
    """One platform's image, ready to be read layer by layer."""

    @property
    def name(self) -> str:
        """The reference as the user gave it."""
        ...

    def platforms(self) -> tuple[Platform, ...]:
        """Every platform the reference offers (one, unless it names an index)."""
        ...

    @property
    def manifest(self) -> ImageManifest: ...

    @property
    def config(self) -> ImageConfig: ...

    def layers(self) -> Iterator[LayerDescriptor]:
        """The layers, bottom first."""
        ...

    def open_layer(self, layer: LayerDescriptor) -> LayerStream:
        """The uncompressed tar of ``layer``, checked against its digest, size and diff_id
        when read to the end."""
        ...

    def close(self) -> None: ...


class BlobStore(Protocol):
    """Content-addressed blobs: what an OCI layout or a registry offers."""

    def open_blob(self, descriptor: Descriptor) -> BinaryIO:
        """The blob's bytes as stored; a ``DistillError`` naming it when it is missing."""
        ...

    def where(self, digest: str) -> str:
        """Where the blob is, for messages: ``blobs/sha256/… in image.tar``."""
        ...

    def open_file(self, descriptor: Descriptor) -> FileRange | None:
        """The blob as a range of a local file, or None if it is not one (a registry's)."""
        ...

    def close(self) -> None: ...


def read_json_blob(store: BlobStore, descriptor: Descriptor, what: str) -> bytes:
    """A small blob (index, manifest, config), checked against its descriptor."""
    where = f"{what} {short(descriptor.digest)} at {store.where(descriptor.digest)}"
    if descriptor.size > MAX_JSON_BLOB:
        raise DistillError(
            f"{where} claims to be {descriptor.size} bytes; that is no {what}",
            hint="the image is damaged or not an image",
        )
    with store.open_blob(descriptor) as handle:
        data = handle.read(descriptor.size + 1)
    actual = f"sha256:{hashlib.sha256(data).hexdigest()}"
    if len(data) != descriptor.size or actual != descriptor.digest:
        size_note = f" (it is {len(data)} bytes, not {descriptor.size})"
        raise DistillError(
            f"{where} does not match its digest"
            + (size_note if len(data) != descriptor.size else ""),
            hint="the blob is damaged or was replaced; fetch or save the image again",
        )
    return data


# --- manifests and blobs -----------------------------------------------------------------


# --- manifests and indexes from blobs --------------------------------------------------


def load_top(store: BlobStore, top: Descriptor | Sequence[Descriptor], name: str) -> Top:
    """The image or index ``top`` names; a list of descriptors (a layout's ``index.json``
    naming several images) is taken as an index over them."""
    if isinstance(top, Descriptor):
        if top.media_type in INDEX_TYPES:
            return load_index(store, top, name)
        return load_image(store, top, name)
    entries = tuple(top)
    seen = [len(entries)]
    document = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [entry.to_json() for entry in entries],
    }
    return Index(
        canonical_json(document),
        MEDIA_TYPE_INDEX,
        entries,
        _loader(store, name, seen),
        where="index.json",
    )


def _loader(store: BlobStore, name: str, seen: list[int]) -> Callable[[Descriptor], Top]:
    loaded: dict[str, Top] = {}

    def load(entry: Descriptor) -> Top:
        if entry.digest not in loaded:
            if entry.media_type in INDEX_TYPES:
                loaded[entry.digest] = load_index(store, entry, name, seen)
            else:
                loaded[entry.digest] = load_image(store, entry, name)
        return loaded[entry.digest]

    return load


def load_index(
    store: BlobStore, descriptor: Descriptor, name: str, seen: list[int] | None = None
) -> Index:
    """The index ``descriptor`` names; ``seen`` counts the entries of every index read for
    the same image, so that indexes listing the same big index many times cannot multiply
    the work."""
    seen = [0] if seen is None else seen
    where = f"index {short(descriptor.digest)} at {store.where(descriptor.digest)}"
    raw = read_json_blob(store, descriptor, "index")
    data = load_json_object(raw, where)
    manifests = index_manifests(data, where, seen)
    entries = tuple(parse_descriptor(item, where) for item in manifests)
    notes = data.get("annotations")
    return Index(
        raw,
        str(data.get("mediaType") or descriptor.media_type),
        entries,
        _loader(store, name, seen),
        {str(k): str(v) for k, v in notes.items()} if isinstance(notes, dict) else {},
        where=where,
    )


def load_image(store: BlobStore, chosen: Descriptor, name: str) -> Image:
    """The image whose manifest ``chosen`` describes: manifest and config read and checked,
    layers described (and read only when opened)."""
    where = f"manifest {short(chosen.digest)} at {store.where(chosen.digest)}"
    if chosen.media_type not in MANIFEST_TYPES:
        raise DistillError(
            f"{where} has media type {chosen.media_type!r}, which is not an image manifest",
            hint="distill reads OCI and docker schema 2 images",
        )
    raw = read_json_blob(store, chosen, "manifest")
    data = load_json_object(raw, where)
    if data.get("schemaVersion") != 2:
        raise DistillError(
            f"{where} is schema version {data.get('schemaVersion')!r}, not 2",
            hint="docker schema 1 images are obsolete; pull and push the image again",
        )
    config_desc = parse_descriptor(data.get("config"), f"{where} config")
    if config_desc.media_type not in CONFIG_TYPES:
        raise DistillError(
            f"{where} is not a container image: its config is {config_desc.media_type!r}",
            hint="this is another kind of OCI artifact (a chart, a signature, ...)",
        )
    config_where = f"config {short(config_desc.digest)} at "
    config_where += store.where(config_desc.digest)
    config = parse_config(
        read_json_blob(store, config_desc, "config"), config_desc.digest, config_where
    )
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list):
        raise DistillError(f"{where} has no layers list", hint="the manifest is damaged")
    descriptors = [parse_descriptor(item, f"{where} layers") for item in raw_layers]
    check_layer_count(len(descriptors), config, where)
    origin = getattr(store, "origin", None)
    layers = [
        Layer(
            media_type=d.media_type,
            digest=d.digest,
            size=d.size,
            diff_id=config.diff_ids[i],
            where=store.where(d.digest),
            opener=partial(store.open_blob, d.bare()),
            file=partial(store.open_file, d.bare()),
            origin=origin,
        )
        for i, d in enumerate(descriptors)
    ]
    notes = data.get("annotations")
    image = assemble_image(
        raw,
        str(data.get("mediaType") or chosen.media_type),
        config,
        config_desc,
        layers,
        {str(k): str(v) for k, v in notes.items()} if isinstance(notes, dict) else {},
    )
    return image


def index_manifests(data: dict[str, Any], where: str, seen: list[int] | None = None) -> list[Any]:
    """The ``manifests`` list of an index, refused when it (with the other indexes read for
    the same image, counted in ``seen``) lists more than ``MAX_MANIFESTS`` entries."""
    manifests = data.get("manifests")
    if not isinstance(manifests, list):
        raise DistillError(f"{where} has no manifests list", hint="the index is damaged")
    total = len(manifests) + (seen[0] if seen else 0)
    if total > MAX_MANIFESTS:
        raise DistillError(
            f"{where} lists more than {MAX_MANIFESTS} manifests; that is no image index",
            hint="the index is damaged or made to attack a reader",
        )
    if seen is not None:
        seen[0] = total
    return manifests


def check_layer_count(count: int, config: ImageConfig, where: str) -> None:
    if count > MAX_LAYERS:
        raise DistillError(
            f"{where} lists {count} layers; distill reads images of at most {MAX_LAYERS}",
            hint="docker refuses images deeper than 125 layers; the image is damaged or made "
            "to attack a reader",
        )
    if count != len(config.diff_ids):
        raise DistillError(
            f"{where} lists {count} layers but its config has {len(config.diff_ids)} diff_ids",
            hint="the manifest and config do not belong together; the image is damaged",
        )


def select(top: Top, wanted: Platform | None, name: str) -> Image:
    """The image of ``top`` for ``wanted`` (default: this host's, or the only one)."""
    image = top.select(wanted, name) if isinstance(top, Index) else top
    check_platform(image, wanted, name)
    return image


class ImageReader:
    """An ``ImageSource`` over one platform's ``Image`` of ``top``. Its layers that are
    files are opened now, so that hashing them starts now (see ``LayerFiles``)."""

    def __init__(
        self,
        top: Top,
        *,
        name: str,
        platform: Platform | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._name = name
        self._on_close = on_close
        self._layer_files = LayerFiles({})
        try:
            self.image = select(top, platform, name)
            self._platforms = top.platforms() if isinstance(top, Index) else (self.image.platform,)
            self._layer_files = LayerFiles.open(
                {i: layer.file for i, layer in enumerate(self.image.layers)}
            )
        except BaseException:
            self.close()
            raise

    @property
    def name(self) -> str:
        return self._name

    @property
    def manifest(self) -> ImageManifest:
        return self.image.manifest

    @property
    def config(self) -> ImageConfig:
        return self.image.config

    def platforms(self) -> tuple[Platform, ...]:
        return self._platforms

    def layers(self) -> Iterator[LayerDescriptor]:
        return iter(self.image.manifest.layers)

    def open_layer(self, layer: LayerDescriptor) -> LayerStream:
        return self._layer_files.stream(layer, self.image.layers[layer.index].opener)

    def close(self) -> None:
        try:
            self._layer_files.close()
        finally:
            if self._on_close is not None:
                self._on_close()
                self._on_close = None
