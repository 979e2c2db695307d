"""Hostile references and sources for `distill copy`: each case one real run, ending in one
clean error line that names the problem, with nothing written outside the sandbox's
temporaries and no destination left behind."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from hostile_harness import assert_clean_error, changed, run_distill, snapshot

from distill.context import Access
from distill.image.compose import compose_image, compose_index
from distill.image.config import ImageConfigSpec
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, write_layer
from distill.image.model import Top
from distill.image.platform import Platform
from distill.transports import parse_reference


def _image(blobs: Path, arch: str = "amd64") -> Top:
    layer = write_layer(
        [FsEntry("hello", EntryKind.FILE, 0o644, content=f"{arch}\n".encode() * 4000)],
        blobs,
        compression=Compression.GZIP,
        source_date_epoch=1,
    )
    return compose_image(ImageConfigSpec(), Platform.parse(arch), [layer], source_date_epoch=1)


def _layout(sandbox: Path) -> Path:
    layout = sandbox / "in"
    parse_reference(f"oci:{layout}").write(_image(sandbox / "blobs"), Access())
    return layout


def _first_layer(layout: Path) -> Path:
    index = json.loads((layout / "index.json").read_text())
    manifest_hex = index["manifests"][0]["digest"][7:]
    manifest = json.loads((layout / "blobs/sha256" / manifest_hex).read_text())
    return layout / "blobs/sha256" / manifest["layers"][0]["digest"][7:]


@pytest.mark.parametrize(
    ("source", "destination", "mention"),
    [
        ("tarball:x.tar", "oci:out", "image reference"),
        ("oci:in", "tarball:out", "not an image reference"),
        ("oci:in", "oci:out:bad ref", "not a valid OCI layout reference"),
        ("oci:in", "docker-archive:out.tar:UPPER/case", "docker image name"),
        ("oci:in", "containers-storage:Bad Name", "does not name an image"),
        ("oci:in", "docker://", "empty image reference"),
        ("docker:reg.example/app", "oci:out", "docker://HOST/REPO"),
        ("oci:in", "oci:out:", "names no reference"),
        ("/etc", "oci:out", "not an OCI image layout"),
        ("oci-archive:in", "oci:out", "is not a file"),
    ],
)
def test_bad_references_fail_before_any_work(
    sandbox: Path, source: str, destination: str, mention: str
) -> None:
    _layout(sandbox)
    before = snapshot(sandbox)
    outcome = run_distill(["copy", source, destination], cwd=sandbox)
    assert_clean_error(outcome, mention)
    assert changed(before, snapshot(sandbox)) == set()


def test_all_platforms_into_a_one_platform_destination_is_refused(sandbox: Path) -> None:
    blobs = sandbox / "blobs"
    index = compose_index([_image(blobs), _image(blobs, "arm64")])  # type: ignore[list-item]
    parse_reference(f"oci:{sandbox / 'multi'}").write(index, Access())
    outcome = run_distill(
        ["copy", "--all-platforms", "oci:multi", "docker-archive:x.tar"], cwd=sandbox
    )
    assert_clean_error(outcome, "docker-archive")
    assert not (sandbox / "x.tar").exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "grow"])
@pytest.mark.parametrize(
    "destination", ["oci:out", "oci-archive:out.tar", "docker-archive:out.tar"]
)
def test_a_damaged_blob_stops_the_copy_naming_it(
    sandbox: Path, damage: str, destination: str
) -> None:
    blob = _first_layer(_layout(sandbox))
    data = bytearray(blob.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        del data[len(data) // 2 :]
    else:
        data += b"\0" * 1000
    blob.write_bytes(bytes(data))
    outcome = run_distill(["copy", "oci:in", destination], cwd=sandbox)
    assert_clean_error(outcome, blob.name[:12])
    assert not any(p.name.startswith("out") for p in sandbox.iterdir())


def test_a_blob_name_that_climbs_out_of_the_layout_is_refused(sandbox: Path) -> None:
    layout = _layout(sandbox)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../../etc/passwd"
    (layout / "index.json").write_text(json.dumps(index))
    outcome = run_distill(["copy", "oci:in", "oci:out"], cwd=sandbox)
    assert_clean_error(outcome, "not a sha256 digest")
    assert not (sandbox / "out").exists()


def test_a_docker_archive_layer_path_outside_the_archive_is_missing(sandbox: Path) -> None:
    archive = sandbox / "in.tar"
    parse_reference(f"docker-archive:{archive}").write(_image(sandbox / "blobs"), Access())
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    manifest = json.loads(members["manifest.json"])
    manifest[0]["Layers"] = ["../../../../etc/passwd"]
    members["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(archive, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))
    outcome = run_distill(["copy", f"docker-archive:{archive}", "oci:out"], cwd=sandbox)
    assert_clean_error(outcome, "missing")
    assert not (sandbox / "out").exists()


def test_an_existing_file_is_not_replaced_by_a_layout(sandbox: Path) -> None:
    _layout(sandbox)
    (sandbox / "precious").write_text("keep me")
    outcome = run_distill(["copy", "oci:in", "oci:precious"], cwd=sandbox)
    assert_clean_error(outcome, "precious")
    assert (sandbox / "precious").read_text() == "keep me"
