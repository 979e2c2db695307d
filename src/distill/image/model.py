"""The image model: one platform's ``Image``, and an ``Index`` over several.

An ``Image`` holds its manifest and config as the exact bytes they are digested as, their
parsed forms, and its ``Layer`` objects. The same types come out of ``distill build``
(layers backed by the layer cache's files) and out of every transport's reader (layers
backed by a layout's blobs, an archive's members or a registry), and every transport's
writer takes them, so a copy writes back the bytes it read and keeps every digest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from distill.errors import DistillError
from distill.image.config import ImageConfig
from distill.image.descriptor import Descriptor
from distill.image.digest import sha256_digest, short
from distill.image.layer import Layer
from distill.image.manifest import ImageManifest, LayerDescriptor
from distill.image.mediatypes import INDEX_TYPES
from distill.image.platform import Platform, host_platform, platform_matches


@dataclass(frozen=True, slots=True, eq=False)
class Image:
    """One platform's image. ``manifest.layers`` and ``layers`` list the same blobs in the
    same order (bottom first): the first as parsed, the second to read them."""

    manifest: ImageManifest
    config: ImageConfig
    layers: tuple[Layer, ...]

    @property
    def manifest_bytes(self) -> bytes:
        return self.manifest.raw

    @property
    def config_bytes(self) -> bytes:
        return self.config.raw

    @property
    def media_type(self) -> str:
        return self.manifest.media_type

    @property
    def digest(self) -> str:
        return self.manifest.digest or sha256_digest(self.manifest.raw)

    @property
    def platform(self) -> Platform:
        return self.config.platform

    @property
    def config_descriptor(self) -> Descriptor:
        return self.manifest.config

    @property
    def descriptor(self) -> Descriptor:
        """The manifest's descriptor, with the platform (as an index lists it)."""
        return Descriptor(self.media_type, self.digest, len(self.manifest_bytes), self.platform)

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return self.config.diff_ids

    def blobs(self) -> Iterator[Descriptor | Layer]:
        """What a destination must hold besides the manifest: the config, then the layers."""
        yield self.config_descriptor
        yield from self.layers


@dataclass(frozen=True, slots=True, eq=False)
class Index:
    """A multi-platform image: the index bytes as digested, and its entries (manifests or
    nested indexes), each loaded when asked for."""

    index_bytes: bytes
    media_type: str
    entries: tuple[Descriptor, ...]
    loader: Callable[[Descriptor], Image | Index] = field(repr=False)
    annotations: Mapping[str, str] = field(default_factory=dict)
    where: str = ""  # for messages: "index sha256:… at FILE"

    @property
    def digest(self) -> str:
        return sha256_digest(self.index_bytes)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.index_bytes))

    def _where(self) -> str:
        return self.where or f"index {short(self.digest)}"

    def load(self, entry: Descriptor) -> Image | Index:
        return self.loader(entry)

    def children(self) -> Iterator[tuple[Descriptor, Image | Index]]:
        for entry in self.entries:
            yield entry, self.loader(entry)

    def images(self) -> Iterator[Image]:
        """Every image, nested indexes flattened, in order."""
        for _, child in self.children():
            if isinstance(child, Index):
                yield from child.images()
            else:
                yield child

    def platforms(self) -> tuple[Platform, ...]:
        return tuple(d.platform for d in self.manifests() if d.platform is not None)

    def manifests(self, depth: int = 0, seen: list[int] | None = None) -> list[Descriptor]:
        """The image manifests' descriptors, nested indexes flattened (attestations and
        other entries without a real platform left out). ``seen`` counts every entry
        visited, so that indexes listing the same big index many times cannot multiply
        the work: more than ``MAX_MANIFESTS`` in all is no image index."""
        if depth >= _NESTING:
            raise DistillError(f"{self._where()}: indexes nest deeper than {_NESTING} levels")
        seen = [0] if seen is None else seen
        seen[0] += len(self.entries)
        if seen[0] > MAX_MANIFESTS:
            raise DistillError(
                f"{self._where()} lists more than {MAX_MANIFESTS} manifests; that is no image "
                "index",
                hint="the index is damaged or made to attack a reader",
            )
        found: list[Descriptor] = []
        for entry in self.entries:
            if entry.media_type in INDEX_TYPES:
                child = self.loader(entry)
                if isinstance(child, Index):
                    found.extend(child.manifests(depth + 1, seen))
            elif not is_attestation(entry):
                found.append(entry)
        return found

    def select(self, wanted: Platform | None, name: str) -> Image:
        """The image for ``wanted`` (default: this host's, or the only one there is)."""
        chosen = choose_platform(self.manifests(), wanted, f"{name} ({self._where()})")
        child = self._find(chosen, 0)
        assert isinstance(child, Image)
        return child

    def _find(self, wanted: Descriptor, depth: int) -> Image | Index | None:
        for entry in self.entries:
            if entry.digest == wanted.digest:
                return self.loader(entry)
            if entry.media_type in INDEX_TYPES and depth < _NESTING:
                child = self.loader(entry)
                if isinstance(child, Index) and (found := child._find(wanted, depth + 1)):
                    return found
        return None


_NESTING = 3  # indexes inside indexes (buildx, docker 29) go this deep at most
# An index listing more manifests than this (every platform, each with an attestation,
# is a few dozen) is not one.
MAX_MANIFESTS = 10_000


def is_attestation(descriptor: Descriptor) -> bool:
    platform = descriptor.platform
    return (platform is not None and platform.os == "unknown") or (
        "vnd.docker.reference.type" in descriptor.annotations
    )


def choose_platform(
    candidates: list[Descriptor], wanted: Platform | None, where: str
) -> Descriptor:
    """The manifest for ``wanted`` (default: this host; or the only platform there is)."""
    usable = [d for d in candidates if not is_attestation(d)]
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


def check_platform(image: Image | ImageConfig, wanted: Platform | None, name: str) -> None:
    """A single-platform image must be the platform asked for, if one was asked for."""
    platform = image.platform
    if wanted is not None and not platform_matches(wanted, platform):
        raise DistillError(
            f"{name} has no image for {wanted}; it has {platform}",
            hint=f"leave out --platform, or write --platform {platform}",
        )


def assemble_image(
    manifest_bytes: bytes,
    media_type: str,
    config: ImageConfig,
    config_descriptor: Descriptor,
    layers: Sequence[Layer],
    annotations: Mapping[str, str] | None = None,
) -> Image:
    """An ``Image`` from its parts (the manifest bytes must list exactly these)."""
    descriptors = tuple(
        LayerDescriptor(
            index=i,
            media_type=layer.media_type,
            size=layer.size,
            digest=layer.digest,
            diff_id=layer.diff_id,
            location=layer.where,
        )
        for i, layer in enumerate(layers)
    )
    manifest = ImageManifest(
        media_type=media_type,
        digest=sha256_digest(manifest_bytes),
        raw=manifest_bytes,
        config=config_descriptor,
        layers=descriptors,
        annotations=dict(annotations or {}),
    )
    return Image(manifest, config, tuple(layers))


Top = Image | Index
"""What a reference names, and what a destination takes."""
