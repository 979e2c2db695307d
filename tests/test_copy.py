"""``distill copy`` between every pair of the five transports, checked by skopeo and podman.

Two images go through all 25 source x destination pairs: a single-platform runnable
image (the host's static busybox) and a two-platform (amd64 + arm64) index. Each source
is filled once from an original, then copied to every destination. After each hop skopeo
accepts the result, podman runs the amd64 image, the diff_ids and the config are the
original's, and between oci:, oci-archive: and docker:// the manifest (or index) digest
is the original's too. The registry is a loopback docker-registry with htpasswd auth.
"""

# ruff: noqa: F811  (fixtures are imported, then named as test parameters)
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from analyze_images import run_measuring_peak
from copy_images import (
    KEEPS_DIGESTS,
    TRANSPORTS,
    Places,
    busybox_image,
    diff_ids,
    remove_podman_images,
    two_platform_index,
)
from distill.build.pipeline import build_image
from distill.build.spec import load_spec
from distill.context import Access
from distill.errors import DistillError
from distill.image.compose import compose_image
from distill.image.config import ImageConfigSpec
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, write_layer
from distill.image.model import Image, Index, Top
from distill.image.platform import Platform
from distill.mutate.copy import copy_image
from distill.registry.client import RegistryClient
from distill.registry.push import push_image
from distill.transports import parse_reference, parse_source
from registry_fixtures import Registry, auth_registry  # noqa: F401

pytestmark = pytest.mark.container


@pytest.fixture
def places(tmp_path: Path, auth_registry: Registry) -> Iterator[Places]:
    names: list[str] = []
    yield Places(tmp_path, auth_registry, names)
    remove_podman_images(names)


def _amd64(top: Top) -> Image:
    return top.select(None, "test") if isinstance(top, Index) else top


Runs = Callable[[Places, str], None]


def _check_hop(
    places: Places, original: Top, source: str, destination: str, copied: Top, runs: Runs
) -> None:
    s = "docker" if source.startswith("docker://") else source.partition(":")[0]
    d = "docker" if destination.startswith("docker://") else destination.partition(":")[0]
    where = f"{source} -> {destination}"
    raw = places.skopeo(destination, "--raw")
    if s in KEEPS_DIGESTS and d in KEEPS_DIGESTS:
        # digests are kept: the index (--all-platforms) or the manifest
        assert f"sha256:{hashlib.sha256(raw.encode()).hexdigest()}" == original.digest, where
        assert copied.digest == original.digest, where
    info = json.loads(places.skopeo(destination))
    assert info["Architecture"] == "amd64", where
    with parse_source(destination).open(places.access) as opened:
        back = opened.top
        if isinstance(original, Index) and isinstance(back, Index):
            assert diff_ids(back) == diff_ids(original), where
        amd = _amd64(back)
        assert amd.diff_ids == _amd64(original).diff_ids, where
        assert amd.config_bytes == _amd64(original).config_bytes, where
    runs(places, destination)


def copy_matrix(places: Places, label: str, original: Top, runs: Runs) -> None:
    """``original`` into each transport once, and from there to each transport."""
    origin = f"oci-archive:{places.root / (label + '-origin.tar')}:t1"
    parse_reference(origin).write(original, Access())
    access = places.access
    try:
        for s in TRANSPORTS:
            source = places.reference(s, f"{label}-{s}")
            whole = isinstance(original, Index) and s in KEEPS_DIGESTS
            copy_image(origin, source, access, all_platforms=whole)
            for d in TRANSPORTS:
                destination = places.reference(d, f"{label}-{s}-to-{d}")
                result = copy_image(
                    source, destination, access, all_platforms=whole and d in KEEPS_DIGESTS
                )
                _check_hop(places, original, source, destination, result.copied, runs)
    finally:  # what podman pulled to run: by image ID, the same everywhere
        remove_podman_images([_amd64(original).config_descriptor.digest])


def says(message: str) -> Runs:
    def check(places: Places, reference: str) -> None:
        assert places.podman_run(reference) == message, reference

    return check


def test_copy_matrix_single(places: Places) -> None:
    image = busybox_image(places.root / "blobs", b"single from distill\n")
    copy_matrix(places, "single", image, says("single from distill\n"))


def test_copy_matrix_two_platforms(places: Places) -> None:
    index = two_platform_index(places.root / "blobs")
    copy_matrix(places, "multi", index, says("hello from distill\n"))


@pytest.mark.network
def test_copy_matrix_java21(places: Places) -> None:
    """The issue's single-platform image: the java21 preset, built from the mirror."""
    out = places.root / "java21.tar"
    build_image(load_spec("java21", archs=("amd64",)), None, f"oci-archive:{out}")
    with parse_source(f"oci-archive:{out}").open(Access()) as opened:
        image = opened.top

        def java_runs(places: Places, reference: str) -> None:
            version = places.podman_run(
                reference, "-version", entrypoint="/usr/bin/java", stderr=True
            )
            assert 'version "21' in version, reference

        copy_matrix(places, "java21", image, java_runs)


def test_pushing_again_sends_nothing_and_same_registry_copies_mount(places: Places) -> None:
    image = busybox_image(places.root / "blobs", b"pushed twice\n")
    origin = f"oci:{places.root / 'origin'}"
    parse_reference(origin).write(image, Access())
    host = places.registry.host
    first = copy_image(origin, f"docker://{host}/copy/twice:1", places.access)
    assert len(first.written.written) == 3  # two layers and the config
    again = copy_image(origin, f"docker://{host}/copy/twice:2", places.access)
    assert again.written.written == () and len(again.written.skipped) == 3
    mounted = copy_image(
        f"docker://{host}/copy/twice:1", f"docker://{host}/copy/elsewhere:1", places.access
    )
    assert set(mounted.written.mounted) == {layer.digest for layer in image.layers}
    assert mounted.digest == image.digest


def test_a_failed_copy_writes_no_tag(places: Places) -> None:
    image = busybox_image(places.root / "blobs", b"never tagged\n")
    layout = places.root / "origin"
    parse_reference(f"oci:{layout}").write(image, Access())
    blob = layout / "blobs/sha256" / image.layers[1].digest[7:]
    blob.write_bytes(blob.read_bytes()[:-10])
    with pytest.raises(DistillError, match=image.layers[1].digest[:19]):
        copy_image(f"oci:{layout}", f"docker://{places.registry.host}/copy/failed:1", places.access)
    with (
        RegistryClient(places.registry.host, credentials=places.access.credentials) as client,
        pytest.raises(DistillError, match="manifest unknown"),
    ):
        client.get_manifest("copy/failed", "1")


def test_cli_copy(places: Places, tmp_path: Path) -> None:
    image = busybox_image(places.root / "blobs", b"cli\n")
    parse_reference(f"oci-archive:{tmp_path / 'in.tar'}").write(image, Access())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "distill",
            "copy",
            f"oci-archive:{tmp_path / 'in.tar'}",
            f"oci:{tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == image.digest


def test_blobs_go_up_in_chunks_from_an_archive_member(places: Places) -> None:
    """A layer inside an archive is sent from its range of the file, chunk by chunk."""
    image = busybox_image(places.root / "blobs", b"chunked\n")
    archive = f"oci-archive:{places.root / 'in.tar'}"
    parse_reference(archive).write(image, Access())
    host = places.registry.host
    with (
        parse_source(archive).open(places.access) as opened,
        RegistryClient(
            host, credentials=places.access.credentials, upload_chunk_size=64 << 10
        ) as client,
    ):
        assert opened.top.layers[0].size > 4 * (64 << 10)  # type: ignore[union-attr]
        result = push_image(opened.top, f"{host}/copy/chunked:1", client=client)
    assert set(result.uploaded) >= {layer.digest for layer in image.layers}
    assert (
        places.skopeo(f"docker://{host}/copy/chunked:1", "--raw") == image.manifest_bytes.decode()
    )


def test_a_copy_from_a_registry_streams_its_blobs(places: Places) -> None:
    """A 96 MiB incompressible layer from the registry to an archive: the copy's peak RSS
    stays far below the layer's size (the blob streams through, checked, to the file)."""
    big = places.root / "big"
    with big.open("wb") as out:
        for _ in range(96):
            out.write(os.urandom(1 << 20))
    layer = write_layer(
        [FsEntry("big", EntryKind.FILE, 0o644, content=big)],
        places.root / "blobs",
        compression=Compression.NONE,
        source_date_epoch=1,
    )
    image = compose_image(
        ImageConfigSpec(), Platform.parse("linux/amd64"), [layer], source_date_epoch=1
    )
    host, creds = places.registry.host, places.registry.creds
    parse_reference(f"docker://{host}/copy/big:1").write(image, places.access)
    big.unlink()
    script = (
        "import sys\n"
        "from distill.context import Access\n"
        "from distill.mutate.copy import copy_image\n"
        "from distill.registry.auth import Credentials\n"
        "access = Access(credentials=Credentials.parse(sys.argv[3], 'test'))\n"
        "copy_image(sys.argv[1], sys.argv[2], access)\n"
    )
    out = places.root / "out.tar"
    _, peak_kib = run_measuring_peak(
        script, f"docker://{host}/copy/big:1", f"oci-archive:{out}", creds
    )
    assert peak_kib < 90 * 1024, f"peak RSS {peak_kib} KiB for a 96 MiB layer"
    with parse_source(f"oci-archive:{out}").open(Access()) as opened:
        assert opened.top.digest == image.digest
