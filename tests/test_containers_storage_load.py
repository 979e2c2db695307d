"""How containers-storage: hands an image to podman: an OCI image with gzip or plain layers
as an OCI archive (podman keeps its manifest, and does not need the base's layers
decompressed on every load), anything else as a docker-archive."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from copy_images import BUSYBOX, SDE, busybox_image, remove_podman_images, run
from distill.context import Access
from distill.image.compose import compose_image
from distill.image.config import ImageConfigSpec
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, write_layer
from distill.image.mediatypes import MEDIA_TYPE_DOCKER_MANIFEST
from distill.image.model import Image
from distill.image.platform import Platform
from distill.transports import parse_reference, parse_source
from distill.transports.containers_storage import loads_as_oci


def gzip_image(blob_dir: Path) -> Image:
    entries = [
        FsEntry("bin/busybox", EntryKind.FILE, 0o755, content=BUSYBOX),
        FsEntry("bin/sh", EntryKind.SYMLINK, 0o777, linkname="busybox"),
    ]
    base = write_layer(entries, blob_dir, compression=Compression.GZIP, source_date_epoch=SDE)
    app = write_layer(
        [FsEntry("app/hello", EntryKind.FILE, 0o644, content=f"{uuid.uuid4()}\n".encode())],
        blob_dir,
        compression=Compression.GZIP,
        source_date_epoch=SDE,
    )
    spec = ImageConfigSpec(entrypoint=("/bin/busybox",), cmd=("cat", "/app/hello"))
    return compose_image(spec, Platform.parse("linux/amd64"), [base, app], source_date_epoch=SDE)


def test_which_images_go_as_oci(tmp_path: Path) -> None:
    image = gzip_image(tmp_path)
    assert loads_as_oci(image, "localhost/app:1")
    # a docker name the OCI ref grammar has no room for
    assert not loads_as_oci(image, "localhost/a__b:1")
    # zstd layers: not every podman reads them
    assert not loads_as_oci(busybox_image(tmp_path), "localhost/app:1")
    docker_typed = replace(
        image, manifest=replace(image.manifest, media_type=MEDIA_TYPE_DOCKER_MANIFEST)
    )
    assert not loads_as_oci(docker_typed, "localhost/app:1")


@pytest.mark.container
def test_podman_keeps_the_manifest_and_runs_the_image(tmp_path: Path) -> None:
    image = gzip_image(tmp_path / "blobs")
    name = f"localhost/distill-load-{uuid.uuid4().hex[:8]}:1"
    try:
        written = parse_reference(f"containers-storage:{name}").write(image, Access())
        assert written.descriptor.digest == image.config_descriptor.digest  # the image ID
        inspect = ["podman", "image", "inspect", "--format", "{{.Id}} {{.Digest}}", name]
        image_id, digest = run(inspect).split()
        assert f"sha256:{image_id}" == image.config_descriptor.digest
        assert digest == image.descriptor.digest  # the manifest as distill made it
        with parse_source(f"containers-storage:{name}").open(Access()) as opened:
            back = opened.top
            assert isinstance(back, Image)
            assert back.config_bytes == image.config_bytes
            assert back.diff_ids == image.diff_ids
        with image.layers[1].open_uncompressed() as tar:
            expected = tar.read()
        assert expected  # the app layer's file is what the container prints
        out = subprocess.run(
            ["podman", "run", "--rm", "--network", "none", name],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        assert out.encode() in expected
    finally:
        remove_podman_images([name])
