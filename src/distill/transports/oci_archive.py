"""``oci-archive:FILE[:TAG]``: an OCI image layout in a tar file.

Read in place (members are ranges of the file, nothing is extracted); written as a tar with
fixed order, owners and mtimes, so equal images give byte-identical archives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from distill.context import Access
from distill.errors import DistillError
from distill.fsutil import output_file
from distill.image.model import Top
from distill.transports import Opened, Progress, Reference, WriteResult
from distill.transports._local import archive_files, open_layout, split_path
from distill.transports._write import DEFAULT_REF, check_oci_ref, layer_digests, write_oci_archive


@dataclass(frozen=True)
class OciArchiveReference(Reference, transport="oci-archive"):
    path: Path
    tag: str | None = None

    @classmethod
    def parse(cls, rest: str) -> OciArchiveReference:
        path, tag = split_path(rest, "oci-archive")
        return cls(path, check_oci_ref(tag) if tag else None)

    def __str__(self) -> str:
        return f"oci-archive:{self.path}" + (f":{self.tag}" if self.tag else "")

    def open(self, access: Access) -> Opened:
        files = archive_files(self.path, "oci-archive")
        if not files.exists("index.json") and files.exists("manifest.json"):
            raise DistillError(
                f"{self.path} has no index.json: it is not an OCI archive",
                hint=f"it looks like a docker archive: write docker-archive:{self.path}",
            )
        store, top = open_layout(files, self.tag, str(self))
        return Opened(top, store.close)

    def check_writable(self, access: Access, *, inputs: Sequence[Path | str] = ()) -> None:
        output_file(self.path, inputs=inputs)

    def write(
        self, top: Top, access: Access, *, mtime: int = 0, progress: Progress | None = None
    ) -> WriteResult:
        descriptor = write_oci_archive(
            top, self.path, ref=self.tag or DEFAULT_REF, source_date_epoch=mtime, progress=progress
        )
        return WriteResult(descriptor, layer_digests(top))
