"""``oci:DIR[:TAG]``: an OCI image layout directory.

Read: the image (or index) ``index.json`` names with ``TAG`` in its
``org.opencontainers.image.ref.name`` annotation, or the only one without ``TAG``.
Written: a new layout holding only this image, tagged ``TAG`` (default ``latest``),
swapped in whole (see ``_write.write_oci_dir``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from distill.context import Access
from distill.fsutil import output_layout
from distill.image.model import Top
from distill.transports import Opened, Progress, Reference, WriteResult
from distill.transports._local import layout_dir, open_layout, split_path
from distill.transports._write import DEFAULT_REF, check_oci_ref, layer_digests, write_oci_dir


@dataclass(frozen=True)
class OciReference(Reference, transport="oci"):
    path: Path
    tag: str | None = None

    @classmethod
    def parse(cls, rest: str) -> OciReference:
        path, tag = split_path(rest, "oci")
        return cls(path, check_oci_ref(tag) if tag else None)

    @classmethod
    def at_path(cls, path: Path) -> OciReference:
        return cls(path)

    def __str__(self) -> str:
        return f"oci:{self.path}" + (f":{self.tag}" if self.tag else "")

    def open(self, access: Access) -> Opened:
        store, top = open_layout(layout_dir(self.path), self.tag, str(self))
        return Opened(top, store.close)

    def check_writable(self, access: Access, *, inputs: Sequence[Path | str] = ()) -> None:
        output_layout(self.path)

    def write(
        self, top: Top, access: Access, *, mtime: int = 0, progress: Progress | None = None
    ) -> WriteResult:
        descriptor = write_oci_dir(top, self.path, ref=self.tag or DEFAULT_REF, progress=progress)
        return WriteResult(descriptor, layer_digests(top))
