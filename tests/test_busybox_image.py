"""A busybox-only image with no package database: trivy finds no package, distill agrees
and says so loudly, and inspect still sees the shell."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from analyze_images import SDE
from distill.image.compose import compose_image
from distill.image.config import ImageConfigSpec
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, write_layer
from distill.image.platform import Platform
from distill.transports._write import write_docker_archive
from test_lock import run_cli
from test_sbom import deb_packages, trivy_image

pytestmark = pytest.mark.container

BUSYBOX = Path("/bin/busybox")


@pytest.fixture
def busybox_archive(tmp_path: Path) -> Path:
    if not BUSYBOX.is_file():
        pytest.fail("busybox-static is not installed (make system-deps installs it)")
    entries = [
        FsEntry("bin", EntryKind.DIR, 0o755),
        FsEntry("bin/busybox", EntryKind.FILE, 0o755, size=BUSYBOX.stat().st_size, content=BUSYBOX),
        *(
            FsEntry(f"bin/{name}", EntryKind.SYMLINK, 0o777, linkname="busybox")
            for name in ("sh", "ls", "cat", "wget")
        ),
    ]
    layer = write_layer(
        entries, tmp_path / "blobs", compression=Compression.GZIP, source_date_epoch=SDE
    )
    image = compose_image(
        ImageConfigSpec(entrypoint=("/bin/sh",)),
        Platform.parse("linux/amd64"),
        [layer],
        source_date_epoch=SDE,
    )
    out = tmp_path / "busybox.tar"
    write_docker_archive(image, out, tag="localhost/busybox-only:1", source_date_epoch=SDE)
    return out


def test_no_package_database(busybox_archive: Path, tmp_path: Path) -> None:
    assert deb_packages(trivy_image(busybox_archive, tmp_path)) == {}

    sbom = tmp_path / "sbom.json"
    proc = run_cli(
        "-q",
        "sbom",
        f"docker-archive:{busybox_archive}",
        "--format",
        "cyclonedx-json",
        "-o",
        str(sbom),
    )
    assert proc.returncode == 0, proc.stderr
    assert "no package database found: 1 executable is unaccounted for" in " ".join(
        proc.stderr.split()
    )
    bom = json.loads(sbom.read_text())
    assert not [c for c in bom.get("components", []) if "purl" in c]
    assert "no package database found" in json.dumps(bom)

    proc = run_cli("-q", "inspect", "--json", f"docker-archive:{busybox_archive}")
    assert proc.returncode == 0, proc.stderr
    surface = json.loads(proc.stdout)["surface"]
    assert {s["name"] for s in surface["shells"]} == {"sh"}
    assert surface["busybox"] == ["/bin/busybox"]
    assert surface["executables"] == 1 and surface["elf"] == 1
    assert shutil.which("busybox") is not None
