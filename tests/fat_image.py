"""A "fat" Debian image with a JDK, as a docker-archive: what distroless images are compared to.

mmdebstrap's minbase trixie plus ``openjdk-21-jdk-headless`` (about 430 MB), imported into
podman and saved with ``podman save``: one layer, a shell, apt and dpkg, everything the JDK
pulls in. ``build_fat_image`` makes one; the ``fat_image`` fixture makes it once per test
session (it needs the Debian archive and podman); ``benchmarks/bench_analyze.py`` keeps one in
the user cache directory.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.debian.mirror import discover_mirrors

FAT_PACKAGE = "openjdk-21-jdk-headless"


def debian_mirror() -> str:
    """The mirror distill itself would use (the machine's apt sources, or DISTILL_MIRROR)."""
    return discover_mirrors().main


def build_fat_image(out: Path, *, include: str | None = FAT_PACKAGE, suite: str = "trixie") -> Path:
    """Write mmdebstrap's minbase (plus ``include``) to ``out`` as a docker-archive, via
    ``podman import`` and ``podman save``; the rootfs tar goes afterwards."""
    out.parent.mkdir(parents=True, exist_ok=True)
    rootfs = out.with_name(out.name + ".rootfs.tar")
    podman = shutil.which("podman") or "podman"
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            *([f"--include={include}"] if include else []),
            suite,
            str(rootfs),
            debian_mirror(),
        ],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    name = f"localhost/distill-fat-{uuid.uuid4().hex[:12]}:1"
    partial = out.with_name(out.name + ".part")
    try:
        subprocess.run([podman, "import", "-q", str(rootfs), name], check=True, capture_output=True)
        rootfs.unlink()
        partial.unlink(missing_ok=True)
        subprocess.run(
            [podman, "save", "-q", "--format", "docker-archive", "-o", str(partial), name],
            check=True,
            capture_output=True,
            timeout=600,
        )
        partial.replace(out)
    finally:
        rootfs.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
        subprocess.run([podman, "rmi", "--force", name], capture_output=True, check=False)
    return out


@pytest.fixture(scope="session")
def fat_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The fat JDK image, built once per session; needs the network and podman."""
    if shutil.which("mmdebstrap") is None:
        pytest.fail("mmdebstrap is not installed (.ci/system-deps installs it)")
    path = build_fat_image(tmp_path_factory.mktemp("fat") / "fat.tar")
    yield path
    path.unlink(missing_ok=True)
