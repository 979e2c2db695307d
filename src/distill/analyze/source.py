"""Where an image to analyse comes from: references named like skopeo's, one reader interface.

``oci:DIR[:REF]``, ``oci-archive:FILE[:REF]``
    An OCI image layout, as a directory or a tar. ``REF`` matches the
    ``org.opencontainers.image.ref.name`` (or containerd's ``io.containerd.image.name``)
    annotation in ``index.json``; without it the layout must hold one image.
``docker-archive:FILE[:NAME:TAG|:@N]``
    A ``docker save`` / ``podman save`` tar: the classic format (``manifest.json`` with
    ``<id>/layer.tar`` or ``<hex>.tar`` layers) and the one docker 25+ writes, an OCI layout
    beside ``manifest.json``.
``containers-storage:NAME``
    An image in podman's local storage, saved to a temporary docker-archive with podman.
``docker://HOST/REPO:TAG`` or ``docker://HOST/REPO@DIGEST``
    A registry, through ``distill.registry.client`` (``analyze.registry_source``).

A path without a transport is recognised by its contents: a directory with ``oci-layout``,
or a tar with ``manifest.json`` (docker-archive) or ``index.json`` (oci-archive).

Every reader implements ``ImageSource``. Readers whose images are manifests and blobs (OCI
layouts, docker 25+ archives, registries) implement only ``BlobStore`` and get the rest from
``ManifestImage``: platform selection, digest checks, config parsing.
"""

from __future__ import annotations

import hashlib
import platform as host
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from distill.analyze.model import (
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST,
    ImageConfig,
    ImageManifest,
    LayerDescriptor,
    load_json_object,
    parse_config,
    parse_descriptor,
    short,
)
from distill.analyze.stream import FileRange, LayerFiles, LayerStream
from distill.errors import DistillError
from distill.oci.image import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST,
    Descriptor,
    Platform,
)

if TYPE_CHECKING:
    from distill.registry.auth import Credentials

MAX_JSON_BLOB = 16 << 20  # an index, manifest or config larger than this is not one
# Docker stops at 125 layers and overlay mounts at a few hundred; more is not an image.
MAX_LAYERS = 1000
# An index listing more manifests than this (every platform, each with an attestation,
# is a few dozen) is not one.
MAX_MANIFESTS = 10_000
INDEX_TYPES = frozenset({MEDIA_TYPE_INDEX, MEDIA_TYPE_DOCKER_LIST})
MANIFEST_TYPES = frozenset({MEDIA_TYPE_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({MEDIA_TYPE_CONFIG, MEDIA_TYPE_DOCKER_CONFIG})
_NESTING = 3  # indexes inside indexes (buildx, docker 29) go this deep at most

_HOST_ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "i386": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def host_platform() -> Platform:
    machine = host.machine().lower()
    return Platform.parse(f"linux/{_HOST_ARCHES.get(machine, machine)}")


class SourceTransport(StrEnum):
    OCI = "oci"
    OCI_ARCHIVE = "oci-archive"
    DOCKER_ARCHIVE = "docker-archive"
    CONTAINERS_STORAGE = "containers-storage"
    DOCKER = "docker"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A parsed image reference. ``path`` is the directory or file, the storage image name,
    or for ``docker`` the registry reference (``HOST/REPO:TAG`` or ``HOST/REPO@DIGEST``)."""

    transport: SourceTransport
    path: str
    ref: str | None = None

    def __str__(self) -> str:
        if self.transport is SourceTransport.DOCKER:
            return f"docker://{self.path}"
        return f"{self.transport}:{self.path}" + (f":{self.ref}" if self.ref else "")


_TRANSPORT_HINT = (
    "write oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE, "
    "containers-storage:NAME or docker://HOST/REPO:TAG"
)


def parse_source(text: str) -> SourceRef:
    """Parse a reference; as with skopeo, a path ends at its first ``:``. A bare path is
    returned as ``oci`` or an archive transport only by ``open_source``, which looks at it."""
    if text.startswith("docker://"):
        name = text.removeprefix("docker://")
        if not name or "/" not in name.strip("/"):
            raise DistillError(f"{text!r} names no repository", hint="write docker://HOST/REPO:TAG")
        return SourceRef(SourceTransport.DOCKER, name)
    prefix, sep, rest = text.partition(":")
    try:
        transport = SourceTransport(prefix) if sep else None
    except ValueError:
        transport = None
    if transport is None or transport is SourceTransport.DOCKER:
        raise DistillError(f"not an image reference: {text!r}", hint=_TRANSPORT_HINT)
    if transport is SourceTransport.CONTAINERS_STORAGE:
        if not rest:
            raise DistillError(f"{text!r} names no image", hint="write containers-storage:NAME")
        return SourceRef(transport, rest)
    path, sep, ref = rest.partition(":")
    if not path:
        raise DistillError(f"{text!r} names no path", hint=f"write {prefix}:PATH")
    if sep and not ref:
        raise DistillError(
            f"{text!r} ends with ':' but names no reference",
            hint=f"write {prefix}:{path}:REF, or leave out the ':'",
        )
    return SourceRef(transport, path, ref or None)


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


# --- platform choice ---------------------------------------------------------------------


def _is_attestation(descriptor: Descriptor) -> bool:
    platform = descriptor.platform
    return (platform is not None and platform.os == "unknown") or (
        "vnd.docker.reference.type" in descriptor.annotations
    )


def platform_matches(wanted: Platform, offered: Platform) -> bool:
    if (wanted.os, wanted.architecture) != (offered.os, offered.architecture):
        return False
    return wanted.variant is None or offered.variant in (None, wanted.variant)


def choose_platform(
    candidates: list[Descriptor], wanted: Platform | None, where: str
) -> Descriptor:
    """The manifest for ``wanted`` (default: this host; or the only platform there is)."""
    usable = [d for d in candidates if not _is_attestation(d)]
    if not usable:
        raise DistillError(f"{where} lists no image manifests", hint="the index is empty")
    target = wanted or host_platform()
    for descriptor in usable:
        if descriptor.platform is None or platform_matches(target, descriptor.platform):
            return descriptor
    if wanted is None and len(usable) == 1:
        return usable[0]  # inspecting needs no matching CPU: take the only image there is
    offered = ", ".join(str(d.platform) for d in usable)
    raise DistillError(
        f"{where} has no image for {target}; it has {offered}",
        hint="choose one with --platform, e.g. --platform " + str(usable[0].platform),
    )


# --- manifests and blobs -----------------------------------------------------------------


class ManifestImage:
    """An ``ImageSource`` over a ``BlobStore``, starting at the descriptor of a manifest or
    an index (or at a list of them, which is then the index). Everything small is read and
    checked here; layers are read when opened."""

    def __init__(
        self,
        store: BlobStore,
        top: Descriptor | Sequence[Descriptor],
        *,
        name: str,
        platform: Platform | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._name = name
        self._on_close = on_close
        self._layer_files = LayerFiles({})
        try:
            self._platforms, chosen = self._resolve(top, platform)
            self._manifest, self._config = self._load(chosen, platform)
            # Opened now so that hashing them starts now (see LayerFiles).
            self._layer_files = LayerFiles.open(
                {
                    layer.index: partial(
                        self._store.open_file,
                        Descriptor(layer.media_type, layer.digest, layer.size),
                    )
                    for layer in self._manifest.layers
                    if layer.digest is not None
                }
            )
        except BaseException:
            self.close()
            raise

    @property
    def name(self) -> str:
        return self._name

    @property
    def manifest(self) -> ImageManifest:
        return self._manifest

    @property
    def config(self) -> ImageConfig:
        return self._config

    def platforms(self) -> tuple[Platform, ...]:
        return self._platforms

    def layers(self) -> Iterator[LayerDescriptor]:
        return iter(self._manifest.layers)

    def open_layer(self, layer: LayerDescriptor) -> LayerStream:
        if layer.digest is None:
            raise DistillError(f"{layer.label} has no digest to fetch it by")
        descriptor = Descriptor(layer.media_type, layer.digest, layer.size)
        return self._layer_files.stream(layer, partial(self._store.open_blob, descriptor))

    def close(self) -> None:
        try:
            self._layer_files.close()
            self._store.close()
        finally:
            if self._on_close is not None:
                self._on_close()
                self._on_close = None

    def _resolve(
        self, top: Descriptor | Sequence[Descriptor], wanted: Platform | None
    ) -> tuple[tuple[Platform, ...], Descriptor]:
        """Follow indexes down to one manifest; also collect what platforms there are."""
        if isinstance(top, Descriptor):
            if top.media_type not in INDEX_TYPES:
                return (), top
            where = f"index {short(top.digest)} at {self._store.where(top.digest)}"
            entries = self._flatten(top, where, 0)
        else:  # the entries of an index that is not a blob (a layout's index.json)
            where = "index.json"
            entries = []
            for descriptor in top:
                if descriptor.media_type in INDEX_TYPES:
                    entries.extend(self._flatten(descriptor, where, 1))
                elif descriptor.media_type in MANIFEST_TYPES:
                    entries.append(descriptor)
        chosen = choose_platform(entries, wanted, f"{self._name} ({where})")
        platforms = tuple(
            d.platform for d in entries if d.platform is not None and not _is_attestation(d)
        )
        return platforms, chosen

    def _flatten(
        self, index: Descriptor, where: str, depth: int, seen: list[int] | None = None
    ) -> list[Descriptor]:
        """The manifests under ``index``; ``seen`` counts the entries read in all, so that
        indexes listing the same big index many times cannot multiply the work."""
        if depth >= _NESTING:
            raise DistillError(f"{where}: indexes nest deeper than {_NESTING} levels")
        seen = [0] if seen is None else seen
        data = load_json_object(read_json_blob(self._store, index, "index"), where)
        manifests = index_manifests(data, where, seen)
        found: list[Descriptor] = []
        for item in manifests:
            descriptor = parse_descriptor(item, where)
            if descriptor.media_type in INDEX_TYPES:
                found.extend(self._flatten(descriptor, where, depth + 1, seen))
            elif descriptor.media_type in MANIFEST_TYPES:
                found.append(descriptor)
        return found

    def _load(
        self, chosen: Descriptor, wanted: Platform | None
    ) -> tuple[ImageManifest, ImageConfig]:
        where = f"manifest {short(chosen.digest)} at {self._store.where(chosen.digest)}"
        if chosen.media_type not in MANIFEST_TYPES:
            raise DistillError(
                f"{where} has media type {chosen.media_type!r}, which is not an image manifest",
                hint="distill reads OCI and docker schema 2 images",
            )
        raw = read_json_blob(self._store, chosen, "manifest")
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
        config_where += self._store.where(config_desc.digest)
        config = parse_config(
            read_json_blob(self._store, config_desc, "config"), config_desc.digest, config_where
        )
        raw_layers = data.get("layers")
        if not isinstance(raw_layers, list):
            raise DistillError(f"{where} has no layers list", hint="the manifest is damaged")
        descriptors = [parse_descriptor(item, f"{where} layers") for item in raw_layers]
        check_layer_count(len(descriptors), config, where)
        layers = tuple(
            LayerDescriptor(
                index=i,
                media_type=d.media_type,
                size=d.size,
                digest=d.digest,
                diff_id=config.diff_ids[i],
                location=self._store.where(d.digest),
            )
            for i, d in enumerate(descriptors)
        )
        check_platform(config, wanted, self._name)
        notes = data.get("annotations")
        manifest = ImageManifest(
            media_type=str(data.get("mediaType") or chosen.media_type),
            digest=chosen.digest,
            raw=raw,
            config=config_desc,
            layers=layers,
            annotations={str(k): str(v) for k, v in notes.items()}
            if isinstance(notes, dict)
            else {},
        )
        if not self._platforms:
            self._platforms = (config.platform,)
        return manifest, config


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


def check_platform(config: ImageConfig, wanted: Platform | None, name: str) -> None:
    """A single-platform image must be the platform asked for, if one was asked for."""
    if wanted is not None and not platform_matches(wanted, config.platform):
        raise DistillError(
            f"{name} has no image for {wanted}; it has {config.platform}",
            hint=f"leave out --platform, or write --platform {config.platform}",
        )


# --- opening -----------------------------------------------------------------------------


def open_source(
    text: str,
    *,
    platform: str | Platform | None = None,
    tls_verify: bool = True,
    credentials: Credentials | None = None,
) -> ImageSource:
    """Open the image ``text`` names, for ``platform`` (default: this host's, or the only
    one). The caller closes it (``ImageSource.close``); see ``opened`` for a ``with``.
    ``tls_verify`` and ``credentials`` are for ``docker://`` images."""
    from distill.analyze import readers

    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    prefix = text.partition(":")[0]
    if text.startswith("docker://") or prefix in set(SourceTransport):
        ref = parse_source(text)
    else:
        ref = readers.detect_path(text)
    if ref.transport is SourceTransport.DOCKER:
        from distill.analyze import registry_source  # requests, only when needed

        return registry_source.open_registry_image(
            ref.path, name=text, platform=wanted, tls_verify=tls_verify, credentials=credentials
        )
    return readers.open_local(ref, text, wanted)


@contextmanager
def opened(
    text: str,
    *,
    platform: str | Platform | None = None,
    tls_verify: bool = True,
    credentials: Credentials | None = None,
) -> Iterator[ImageSource]:
    """``open_source`` for a ``with`` block: temporary files go when it ends."""
    source = open_source(text, platform=platform, tls_verify=tls_verify, credentials=credentials)
    try:
        yield source
    finally:
        source.close()
