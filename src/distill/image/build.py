"""Image config, manifest and index as canonical JSON, so equal inputs give equal digests.

Canonical here means: keys sorted, no insignificant whitespace, UTF-8 (non-ASCII kept as
is), and fields left out rather than written empty when the user did not set them. Every
timestamp is ``source_date_epoch``; nothing reads the clock or the host.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distill.errors import DistillError
from distill.image.descriptor import Descriptor
from distill.image.digest import canonical_json
from distill.image.layer import Layer
from distill.image.manifest import parse_config
from distill.image.mediatypes import MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST
from distill.image.model import Image, Index, assemble_image
from distill.image.platform import Platform

if TYPE_CHECKING:  # only annotations: reading an image does not load the layer writer
    from distill.image.layer_blob import LayerBlob

ANNOTATION_PREFIX = "org.opencontainers.image."


def rfc3339(epoch: int) -> str:
    """``epoch`` as an RFC 3339 UTC timestamp with second precision."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of ``docker history``: a layer's provenance, or a config-only step."""

    created_by: str
    comment: str = ""
    empty_layer: bool = False


@dataclass(frozen=True, slots=True)
class ImageConfigSpec:
    """What the user says about the image. ``None`` leaves a field out; an empty tuple writes
    an empty list (``cmd=()`` is "no default arguments"). Manifest annotations come from
    the metadata fields (``title`` -> ``org.opencontainers.image.title`` and so on) and
    ``annotations``, which may override any of them."""

    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()  # "KEY=value", in order
    user: str | None = None  # "65532", "65532:65532" or "nonroot"
    workdir: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = ()  # "8080", "8080/tcp", "53/udp"
    volumes: tuple[str, ...] = ()
    stop_signal: str | None = None
    author: str | None = None
    # manifest annotations
    title: str | None = None
    description: str | None = None
    version: str | None = None
    source: str | None = None
    revision: str | None = None
    url: str | None = None
    documentation: str | None = None
    licenses: str | None = None
    vendor: str | None = None
    authors: str | None = None
    base_name: str | None = None
    base_digest: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def manifest_annotations(self, source_date_epoch: int) -> dict[str, str]:
        named = {
            "created": rfc3339(source_date_epoch),
            "title": self.title,
            "description": self.description,
            "version": self.version,
            "source": self.source,
            "revision": self.revision,
            "url": self.url,
            "documentation": self.documentation,
            "licenses": self.licenses,
            "vendor": self.vendor,
            "authors": self.authors,
            "base.name": self.base_name,
            "base.digest": self.base_digest,
        }
        out = {ANNOTATION_PREFIX + k: v for k, v in named.items() if v is not None}
        out.update(self.annotations)
        return out


# --- validation ----------------------------------------------------------------------------

_ENV_KEY = re.compile(r"[^=\s][^=]*")
_PORT = re.compile(r"(\d{1,5})(?:/(tcp|udp|sctp))?")


def _env(items: Sequence[str]) -> list[str]:
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not _ENV_KEY.fullmatch(key):
            raise DistillError(
                f"environment entry {item!r} is not KEY=value",
                hint="write each variable as NAME=value (the value may be empty)",
            )
    return list(items)


def _port(text: str) -> str:
    match = _PORT.fullmatch(text.strip().lower())
    if match is None or not 1 <= int(match.group(1)) <= 65535:
        raise DistillError(
            f"not a port: {text!r}", hint="write ports as 8080, 8080/tcp, 53/udp or 9/sctp"
        )
    return f"{int(match.group(1))}/{match.group(2) or 'tcp'}"


def _absolute(what: str, path: str) -> str:
    if not path.startswith("/"):
        raise DistillError(f"{what} {path!r} is not an absolute path", hint=f"write /{path}")
    return path


def _container_config(spec: ImageConfigSpec) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if spec.entrypoint is not None:
        config["Entrypoint"] = list(spec.entrypoint)
    if spec.cmd is not None:
        config["Cmd"] = list(spec.cmd)
    if spec.env:
        config["Env"] = _env(spec.env)
    if spec.user is not None:
        config["User"] = spec.user
    if spec.workdir is not None:
        config["WorkingDir"] = _absolute("working directory", spec.workdir)
    if spec.labels:
        config["Labels"] = dict(spec.labels)
    if spec.exposed_ports:
        config["ExposedPorts"] = {_port(p): {} for p in spec.exposed_ports}
    if spec.volumes:
        config["Volumes"] = {_absolute("volume", v): {} for v in spec.volumes}
    if spec.stop_signal is not None:
        config["StopSignal"] = spec.stop_signal
    return config


# --- builders --------------------------------------------------------------------------------


def build_config(
    spec: ImageConfigSpec,
    platform: Platform,
    diff_ids: Sequence[str],
    *,
    source_date_epoch: int,
    history: Sequence[HistoryEntry] | None = None,
) -> bytes:
    """The image config. Without ``history``, each layer gets a ``created_by: distill``
    entry; with it, the non-empty entries must match the layers one to one."""
    if history is None:
        history = [HistoryEntry("distill") for _ in diff_ids]
    layer_steps = sum(1 for h in history if not h.empty_layer)
    if layer_steps != len(diff_ids):
        raise DistillError(
            f"{layer_steps} history entries describe layers, but the image has {len(diff_ids)}",
            hint="give one history entry per layer (plus any with empty_layer=True)",
        )
    created = rfc3339(source_date_epoch)
    steps: list[dict[str, Any]] = []
    for entry in history:
        step: dict[str, Any] = {"created": created, "created_by": entry.created_by}
        if entry.comment:
            step["comment"] = entry.comment
        if entry.empty_layer:
            step["empty_layer"] = True
        steps.append(step)
    config: dict[str, Any] = {
        "created": created,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": _container_config(spec),
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": steps,
    }
    if platform.variant:
        config["variant"] = platform.variant
    if spec.author is not None:
        config["author"] = spec.author
    return canonical_json(config)


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


def build_image(
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


def build_index(images: Sequence[Image], annotations: Mapping[str, str] | None = None) -> Index:
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
