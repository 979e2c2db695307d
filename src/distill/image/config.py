"""The image config, both ways: what ``distill build`` writes (``ImageConfigSpec`` ->
``build_config``, canonical JSON, so equal inputs give equal digests) and what a reader
parses out of anyone's image (``parse_config`` -> ``ImageConfig``, every field it uses
checked for shape, the blob named when something is wrong).

Canonical here means: keys sorted, no insignificant whitespace, UTF-8 (non-ASCII kept as
is), and fields left out rather than written empty when the user did not set them. Every
timestamp is ``source_date_epoch``; nothing reads the clock or the host.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from distill.errors import DistillError
from distill.image.digest import canonical_json, check_digest
from distill.image.manifest import load_json_object
from distill.image.platform import Platform, normal_platform

# --- what build writes -----------------------------------------------------------------------

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


# --- what readers parse ----------------------------------------------------------------------


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
