"""``distill copy SRC DST``: an image from any transport to any other.

It only speaks the image model: open the source, choose what to copy, let the destination
write it. Blobs pass through as stored and manifests, configs and indexes as the bytes
read, so between ``oci:``, ``oci-archive:`` and ``docker://`` every digest is kept; a
docker archive (and podman's storage, loaded from one) holds uncompressed layers and no
manifest, so there the manifest and layer digests change and diff_ids and the config do
not (docs/copy.md).

Which images: the platform ``access.platform`` names, else this host's (as skopeo does
without flags), else the only one there is; ``all_platforms`` copies an index whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.context import Access
from distill.errors import DistillError
from distill.image.model import Index, Top, check_platform
from distill.transports import (
    Progress,
    Reference,
    WriteResult,
    input_paths,
    parse_reference,
    parse_source,
)


@dataclass(frozen=True, slots=True)
class CopyResult:
    source: Reference
    destination: Reference
    copied: Top  # what was written: an index, or one platform's image
    written: WriteResult

    @property
    def digest(self) -> str:
        return self.written.descriptor.digest


def choose(top: Top, access: Access, *, all_platforms: bool, name: str) -> Top:
    """What to copy from ``top``: the index whole, or one platform's image."""
    if all_platforms:
        if access.platform is not None:
            raise DistillError(
                "--platform and --all-platforms exclude each other",
                hint="give one of them (or neither: this host's platform)",
            )
        if isinstance(top, Index):
            top.manifests()  # bounds what a copy of it walks (see Index.manifests)
        return top
    if isinstance(top, Index):
        return top.select(access.platform, name)
    check_platform(top, access.platform, name)
    return top


def blob_bytes(top: Top) -> int:
    """The layer bytes a copy of ``top`` moves (for a progress bar)."""
    images = list(top.images()) if isinstance(top, Index) else [top]
    seen: dict[str, int] = {}
    for image in images:
        for layer in image.layers:
            seen[layer.digest] = layer.size
    return sum(seen.values())


def copy_image(
    source: str | Reference,
    destination: str | Reference,
    access: Access | None = None,
    *,
    all_platforms: bool = False,
    progress: Progress | None = None,
    on_start: Progress | None = None,
) -> CopyResult:
    """Copy ``source`` to ``destination``. ``on_start`` is told the layer bytes to move,
    ``progress`` the bytes of each layer as it is done."""
    access = access or Access()
    src = parse_source(source) if isinstance(source, str) else source
    dst = parse_reference(destination) if isinstance(destination, str) else destination
    if all_platforms and not dst.holds_index:
        raise DistillError(
            f"{dst.transport} holds one platform's image; --all-platforms needs a "
            "destination that holds an index",
            hint="write oci:, oci-archive: or docker://, or pick one with --platform",
        )
    dst.check_writable(access, inputs=input_paths([str(src)]))
    with src.open(access) as opened:
        chosen = choose(opened.top, access, all_platforms=all_platforms, name=str(src))
        if on_start is not None:
            on_start(blob_bytes(chosen))
        written = dst.write(chosen, access, progress=progress)
    return CopyResult(src, dst, chosen, written)
