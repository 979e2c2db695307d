"""Content descriptors: what a manifest or an index says about a blob."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distill.errors import DistillError
from distill.image.digest import check_digest, sha256_digest
from distill.image.platform import Platform, normal_platform


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, media_type: str, data: bytes, platform: Platform | None = None) -> Descriptor:
        return cls(media_type, sha256_digest(data), len(data), platform)

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def bare(self) -> Descriptor:
        """Only what describes the bytes (no platform, no annotations)."""
        return Descriptor(self.media_type, self.digest, self.size)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def parse_descriptor(value: object, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise DistillError(f"{where}: a descriptor is not an object", hint="the image is damaged")
    media_type = value.get("mediaType")
    size = value.get("size")
    if not isinstance(media_type, str) or not isinstance(size, int) or size < 0:
        raise DistillError(
            f"{where}: a descriptor lacks a mediaType or a size", hint="the image is damaged"
        )
    digest = check_digest(value.get("digest"), where)
    platform = None
    raw_platform = value.get("platform")
    if isinstance(raw_platform, dict):
        platform = normal_platform(
            str(raw_platform.get("architecture", "")),
            str(raw_platform.get("os", "")),
            raw_platform.get("variant") if isinstance(raw_platform.get("variant"), str) else None,
        )
    annotations = value.get("annotations")
    notes = (
        {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {}
    )
    return Descriptor(media_type, digest, size, platform, notes)
