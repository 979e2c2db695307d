"""Every transport, one contract: what is written is read back the same, and every blob
read is checked (a damaged one is refused, and the message names it).

containers-storage and docker:// need podman and a registry: they are marked container.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from copy_images import (
    KEEPS_DIGESTS,
    TRANSPORTS,
    Places,
    busybox_image,
    remove_podman_images,
)
from distill.errors import DistillError
from distill.image.digest import short
from distill.image.model import Image
from distill.transports import parse_reference, parse_source
from registry_fixtures import Registry, auth_registry  # noqa: F401

NEEDS_CONTAINERS = {"docker", "containers-storage"}


def params(transports: list[str]) -> list[object]:
    return [
        pytest.param(t, marks=pytest.mark.container) if t in NEEDS_CONTAINERS else t
        for t in transports
    ]


@pytest.fixture
def places(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Places]:
    transport = request.node.callspec.params["transport"]
    # Only docker:// needs the registry; the local transports run without it.
    registry = (
        request.getfixturevalue("auth_registry")
        if transport == "docker"
        else Registry("none", tmp_path, tmp_path / "log", "u", "p")
    )
    names: list[str] = []
    yield Places(tmp_path, registry, names)
    remove_podman_images(names)


@pytest.mark.parametrize("transport", params(TRANSPORTS))
def test_what_is_written_is_read_back(places: Places, transport: str) -> None:
    image = busybox_image(places.root / "blobs")
    reference = places.reference(transport, "conformance")
    parse_reference(reference).write(image, places.access)
    with parse_source(reference).open(places.access) as opened:
        back = opened.top
        assert isinstance(back, Image)
        assert back.config_bytes == image.config_bytes
        assert back.config_descriptor.digest == image.config_descriptor.digest
        assert back.diff_ids == image.diff_ids
        if transport in KEEPS_DIGESTS:
            assert back.manifest_bytes == image.manifest_bytes
            assert [layer.digest for layer in back.layers] == [
                layer.digest for layer in image.layers
            ]
        else:  # a docker archive holds the tars themselves: their digests are the diff_ids
            assert [layer.digest for layer in back.layers] == list(image.diff_ids)
        for layer, built in zip(back.layers, image.layers, strict=True):
            with layer.open_compressed() as stored:
                assert len(stored.read()) == layer.size
            with layer.open_uncompressed() as tar, built.open_uncompressed() as original:
                assert tar.read() == original.read()


def _flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _damage(places: Places, transport: str, reference: str, image: Image) -> str:
    """Flip a byte in the middle of the first layer's blob where ``reference`` keeps it;
    the blob's digest there."""
    layer = image.layers[0]
    if transport == "oci":
        path = Path(reference.split(":")[1]) / "blobs/sha256" / layer.digest[7:]
        _flip_byte(path, layer.size // 2)
        return layer.digest
    if transport == "docker":
        _flip_byte(places.registry.blob_file(layer.digest), layer.size // 2)
        return layer.digest
    archive = Path(reference.split(":")[1])
    name = (
        f"blobs/sha256/{layer.digest[7:]}"
        if transport == "oci-archive"
        else f"{layer.diff_id[7:]}.tar"
    )
    with tarfile.open(archive) as tar:
        member = tar.getmember(name)
    _flip_byte(archive, member.offset_data + member.size // 2)
    return layer.digest if transport == "oci-archive" else layer.diff_id


# Not containers-storage: podman keeps (and checks) its own storage; what distill reads
# from it is a docker archive podman writes, whose checks the docker-archive case covers.
@pytest.mark.parametrize("transport", params(["oci", "oci-archive", "docker-archive", "docker"]))
def test_a_damaged_blob_is_refused_naming_it(places: Places, transport: str) -> None:
    image = busybox_image(places.root / "blobs")
    reference = places.reference(transport, "damaged")
    parse_reference(reference).write(image, places.access)
    digest = _damage(places, transport, reference, image)
    with parse_source(reference).open(places.access) as opened:
        back = opened.top
        assert isinstance(back, Image)
        for view in ("open_compressed", "open_uncompressed"):
            with (
                pytest.raises(DistillError, match=short(digest)) as caught,
                getattr(back.layers[0], view)() as stream,
            ):
                while stream.read(1 << 20):
                    pass
            assert caught.value.hint
        # and a copy of it stops there, writing nothing
        out = places.root / "copy"
        with pytest.raises(DistillError, match=short(digest)):
            parse_reference(f"oci:{out}").write(back, places.access)
        assert not out.exists()
