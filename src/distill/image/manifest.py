"""What an image reader hands out: the parsed manifest and config, and layer descriptors.

These are read from images made by anyone, so parsing checks the shape of every field it
uses and names the blob (and the file it is in) when something is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distill.bounded import parse_json_object
from distill.errors import DistillError
from distill.image.descriptor import Descriptor
from distill.image.digest import check_digest, short
from distill.image.platform import Platform, normal_platform


@dataclass(frozen=True, slots=True)
class LayerDescriptor:
    """One layer of the chosen image, bottom first. ``digest`` and ``size`` describe the blob
    as stored (``digest`` is None where the source does not say, as in a classic
    docker-archive); ``diff_id`` is the tar inside, from the config. ``location`` says where
    the blob is, for messages."""

    index: int
    media_type: str
    size: int
    digest: str | None
    diff_id: str | None
    location: str

    @property
    def label(self) -> str:
        return f"layer {self.index + 1} ({short(self.digest or self.diff_id)})"


@dataclass(frozen=True, slots=True)
class HistoryItem:
    created_by: str
    created: str | None = None
    comment: str = ""
    empty_layer: bool = False


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image config that analysers use, plus the raw bytes."""

    digest: str
    raw: bytes
    platform: Platform
    created: str | None
    author: str | None
    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    user: str
    workdir: str
    env: tuple[str, ...]
    ports: tuple[str, ...]
    volumes: tuple[str, ...]
    labels: Mapping[str, str]
    stop_signal: str | None
    diff_ids: tuple[str, ...]
    history: tuple[HistoryItem, ...]

    def layer_history(self) -> list[HistoryItem | None]:
        """The history entry of each layer: non-empty entries taken in order, as docker and
        dive align them; None where the history has fewer such entries than layers."""
        steps = [h for h in self.history if not h.empty_layer]
        return [steps[i] if i < len(steps) else None for i in range(len(self.diff_ids))]


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """The chosen image's manifest. A classic docker-archive has none: there ``digest`` is
    None and ``raw`` is its ``manifest.json`` entry."""

    media_type: str
    digest: str | None
    raw: bytes
    config: Descriptor
    layers: tuple[LayerDescriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


# --- parsing -----------------------------------------------------------------------------


IMAGE_DAMAGED = "the image is damaged or not an image; fetch or save it again"


def load_json_object(data: bytes, where: str) -> dict[str, Any]:
    """An index, manifest or config: bounded in nesting (``distill.bounded``)."""
    return parse_json_object(data, where, hint=IMAGE_DAMAGED)


def _strings(value: object, what: str, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DistillError(f"{where}: {what} is not a list of strings", hint="the image is damaged")
    return tuple(value)


def _text(value: object, what: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise DistillError(f"{where}: {what} is not a string", hint="the image is damaged")
    return value


def _keys(value: object, what: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise DistillError(f"{where}: {what} is not an object", hint="the image is damaged")
    return tuple(str(k) for k in value)


def _history(value: object, where: str) -> tuple[HistoryItem, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise DistillError(
            f"{where}: history is not a list of objects", hint="the image is damaged"
        )
    return tuple(
        HistoryItem(
            created_by=_text(item.get("created_by"), "history created_by", where) or "",
            created=_text(item.get("created"), "history created", where),
            comment=_text(item.get("comment"), "history comment", where) or "",
            empty_layer=bool(item.get("empty_layer", False)),
        )
        for item in value
    )


def parse_config(raw: bytes, digest: str, where: str) -> ImageConfig:
    data = load_json_object(raw, where)
    rootfs = data.get("rootfs")
    if not isinstance(rootfs, dict):
        raise DistillError(
            f"{where} has no rootfs: it is not a container image config",
            hint="distill inspects container images; this may be another kind of artifact",
        )
    diff_ids = _strings(rootfs.get("diff_ids"), "rootfs.diff_ids", where) or ()
    for diff_id in diff_ids:
        check_digest(diff_id, f"{where} rootfs.diff_ids")
    arch = _text(data.get("architecture"), "architecture", where) or "unknown"
    os_name = _text(data.get("os"), "os", where) or "unknown"
    variant = _text(data.get("variant"), "variant", where)
    container = data.get("config") or {}
    if not isinstance(container, dict):
        raise DistillError(f"{where}: config is not an object", hint="the image is damaged")
    labels = container.get("Labels") or {}
    if not isinstance(labels, dict):
        raise DistillError(f"{where}: Labels is not an object", hint="the image is damaged")
    return ImageConfig(
        digest=digest,
        raw=raw,
        platform=normal_platform(arch, os_name, variant),
        created=_text(data.get("created"), "created", where),
        author=_text(data.get("author"), "author", where),
        entrypoint=_strings(container.get("Entrypoint"), "Entrypoint", where),
        cmd=_strings(container.get("Cmd"), "Cmd", where),
        user=_text(container.get("User"), "User", where) or "",
        workdir=_text(container.get("WorkingDir"), "WorkingDir", where) or "",
        env=_strings(container.get("Env"), "Env", where) or (),
        ports=_keys(container.get("ExposedPorts"), "ExposedPorts", where),
        volumes=_keys(container.get("Volumes"), "Volumes", where),
        labels={str(k): str(v) for k, v in labels.items()},
        stop_signal=_text(container.get("StopSignal"), "StopSignal", where),
        diff_ids=diff_ids,
        history=_history(data.get("history"), where),
    )
