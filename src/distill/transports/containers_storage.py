"""``containers-storage:NAME``: an image in podman's local storage.

Read through ``podman image save --format docker-archive`` to a temporary file (then as a
docker-archive: layers uncompressed, so the manifest is one made for them). Written to a
temporary archive tagged ``NAME``, then ``podman load``: an OCI archive for an image with
OCI media types and gzip or plain layers (podman keeps its manifest and layers as they
are), else a docker-archive (layers uncompressed, the manifest one podman makes). Either
way the layers' diff_ids and the config (the image ID) are kept (docs/copy.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from distill import tempfiles
from distill.context import Access
from distill.errors import DistillError
from distill.image.descriptor import Descriptor
from distill.image.mediatypes import MEDIA_TYPE_LAYER, MEDIA_TYPE_MANIFEST
from distill.image.model import Image, Top
from distill.image.partial import ImageSource
from distill.transports import Opened, Progress, Reference, WriteResult
from distill.transports._local import TarFiles
from distill.transports._write import (
    docker_tag,
    is_oci_ref,
    layer_digests,
    write_docker_archive,
    write_oci_archive,
)
from distill.transports.docker_archive import open_archive, open_archive_source


def _podman() -> str:
    podman = shutil.which("podman")
    if podman is None:
        raise DistillError(
            "containers-storage: needs podman, which is not installed",
            hint="install podman, or use an archive made with podman save or docker save",
        )
    return podman


# The layer types every podman reads in an OCI archive (zstd needs a recent one).
_OCI_LAYER_TYPES = frozenset({MEDIA_TYPE_LAYER, f"{MEDIA_TYPE_LAYER}+gzip"})


def loads_as_oci(image: Image, tag: str) -> bool:
    """Whether ``image`` goes to podman as an OCI archive rather than a docker-archive.

    A docker-archive holds every layer uncompressed, so each load decompressed and wrote
    out the whole image, base layers included, to have podman find it already has them.
    An OCI archive holds the blobs as stored (copied, checked against their digests), and
    podman keeps the manifest it is given instead of making one. ``tag`` names the image
    there, as the layout's ref.name: a docker name the OCI ref grammar lacks (``a__b``)
    goes as a docker-archive.
    """
    return (
        is_oci_ref(tag)
        and image.descriptor.media_type == MEDIA_TYPE_MANIFEST
        and all(layer.media_type in _OCI_LAYER_TYPES for layer in image.layers)
    )


def _last_line(text: str, fallback: object) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else str(fallback)


# What podman takes as an image: a name[:tag][@digest] or an ID. Checked so that no text
# from the command line reaches podman as anything else (an option, a second argument).
_STORAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,511}")


def check_storage_name(image: str) -> None:
    if not _STORAGE_NAME.fullmatch(image):
        raise DistillError(
            f"containers-storage:{image!r} does not name an image",
            hint="write containers-storage:NAME[:TAG] or an image ID, as `podman images` shows",
        )


def podman_save(image: str) -> Path:
    """Save ``image`` from podman's storage to a docker-archive in a new temporary
    directory, which the caller removes."""
    podman = _podman()
    check_storage_name(image)
    tmp = tempfiles.spool_mkdtemp("distill-inspect")
    out = tmp / "image.tar"
    try:
        # "--": a name is never an option, whatever check_storage_name lets through.
        done = subprocess.run(
            [podman, "image", "save", "--format", "docker-archive", "-o", str(out), "--", image],
            capture_output=True,
            text=True,
            check=False,
            # podman stages the archive in $TMPDIR: inside ours, it goes when ours does.
            env={**os.environ, "TMPDIR": str(tmp)},
        )
    except BaseException:  # SIGTERM or Ctrl-C while podman writes: no half-saved image left
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DistillError(
            f"podman could not save {image}: {_last_line(done.stderr, done.returncode)}",
            hint="check the name with `podman images`",
        )
    return tmp


@dataclass(frozen=True)
class ContainersStorageReference(Reference, transport="containers-storage"):
    name: str

    holds_index = False

    @classmethod
    def parse(cls, rest: str) -> ContainersStorageReference:
        if not rest:
            raise DistillError(
                f"containers-storage:{rest!r} names no image", hint="write containers-storage:NAME"
            )
        check_storage_name(rest)
        return cls(rest)

    def __str__(self) -> str:
        return f"containers-storage:{self.name}"

    def open(self, access: Access) -> Opened:
        tmp = podman_save(self.name)
        try:
            found, close = open_archive(TarFiles(tmp / "image.tar"), None, str(self))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

        def close_all() -> None:
            try:
                close()
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

        return Opened(cast(Top, found), close_all)

    def open_source(self, access: Access, name: str) -> ImageSource:
        tmp = podman_save(self.name)
        try:
            files = TarFiles(tmp / "image.tar")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return open_archive_source(
            files, None, name, access.platform, lambda: shutil.rmtree(tmp, ignore_errors=True)
        )

    def check_writable(self, access: Access, *, inputs: Sequence[Path | str] = ()) -> None:
        docker_tag(self.name)
        _podman()

    def write(
        self, top: Top, access: Access, *, mtime: int = 0, progress: Progress | None = None
    ) -> WriteResult:
        self.refuse_index(top)
        podman = _podman()
        with tempfiles.spool_tempdir("distill-load") as tmp:
            archive = Path(tmp) / "image.tar"
            tag = docker_tag(self.name)
            if isinstance(top, Image) and loads_as_oci(top, tag):
                # podman names the image by the layout's ref.name, as a docker-archive's tag
                write_oci_archive(
                    top,
                    archive,
                    ref=tag,
                    source_date_epoch=mtime,
                    progress=progress,
                )
                config = top.config_descriptor
                descriptor = Descriptor(config.media_type, config.digest, config.size)
            else:
                descriptor = write_docker_archive(
                    top, archive, tag=self.name, source_date_epoch=mtime, progress=progress
                )
            done = subprocess.run(
                [podman, "load", "-q", "-i", str(archive)],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "TMPDIR": tmp},  # podman's staging goes with ours
            )
        if done.returncode != 0:
            raise DistillError(
                f"podman could not load the image as {self.name}: "
                f"{_last_line(done.stderr, done.returncode)}",
                hint="see `podman load --help`; check podman's storage",
            )
        return WriteResult(descriptor, layer_digests(top))
