"""What an image reader hands out: the parsed manifest and config, and layer descriptors.

These are read from images made by anyone, so parsing checks the shape of every field it
uses and names the blob (and the file it is in) when something is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distill.bounded import parse_json_object
from distill.image.descriptor import Descriptor
from distill.image.digest import short


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
