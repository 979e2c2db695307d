"""``distill package`` on Java apps end to end: each jar packaged by the CLI, pushed to a
loopback registry, pulled and run by podman with ``-p``; an HTTP request must return the
body the app's own source answers. The jlink image must stay within 80 MB unpacked, and
its SBOM must still name the Debian JDK package the runtime was made from.
"""

# ruff: noqa: F811  (fixtures are imported, then named as test parameters)
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from java_apps import BOOT_BODY, BOOT_LAYERS, MAVEN, PLAIN_BODY, boot_app, plain_app
from registry_fixtures import Registry, free_port, registry  # noqa: F401
from test_sbom import deb_packages_of, trivy_image

pytestmark = [pytest.mark.network, pytest.mark.container]

MAX_JLINK_IMAGE = 80_000_000
JDK = "openjdk-21-jdk-headless"  # bytes unpacked (issue #11); java21 is ~215 MB


def distill(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "distill", "-q", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def podman(*args: str, check: bool = True) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    if check:
        assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def pulled(registry: Registry) -> Iterator[list[str]]:
    """Names of pulled images, removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        podman("rmi", "-f", name, check=False)


def package_push_pull(app: Path, registry: Registry, pulled: list[str], *extra: str) -> str:
    name = f"{registry.host}/java-{uuid.uuid4().hex[:8]}:1"
    distill("package", str(app), *extra, "--port", "8080", "-o", f"docker://{name}")
    podman("pull", "--tls-verify=false", name)
    pulled.append(name)
    return name


def answer(image: str) -> str:
    port = free_port()
    container = podman("run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8080", image).strip()
    try:
        end = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    return response.read().decode()
            except OSError:
                if time.monotonic() > end:
                    logs = podman("logs", container, check=False)
                    raise AssertionError(f"{image} did not answer; its log:\n{logs}") from None
                time.sleep(0.5)
    finally:
        podman("rm", "-f", container, check=False)


def sbom_purls(image: str) -> set[str]:
    document = json.loads(distill("sbom", f"docker://{image}", "--format", "cyclonedx-json"))
    return {c.get("purl", "") for c in document.get("components", [])}


def test_plain_jar(tmp_path: Path, registry: Registry, pulled: list[str]) -> None:
    app = plain_app(tmp_path / "src")
    image = package_push_pull(app.jar, registry, pulled)
    assert answer(image) == PLAIN_BODY.format(feature="21")


def test_directory_of_jars(tmp_path: Path, registry: Registry, pulled: list[str]) -> None:
    app = plain_app(tmp_path / "src")
    image = package_push_pull(app.directory, registry, pulled)
    assert answer(image) == PLAIN_BODY.format(feature="21")
    group, artifact, version = MAVEN["body-1.0.jar"]
    assert f"pkg:maven/{group}/{artifact}@{version}" in sbom_purls(image)


def test_spring_boot_jar(tmp_path: Path, registry: Registry, pulled: list[str]) -> None:
    jar = boot_app(tmp_path / "src")
    image = package_push_pull(jar, registry, pulled)
    assert answer(image) == BOOT_BODY
    history = json.loads(podman("image", "inspect", image))[0]["History"]
    comments = " ".join(h.get("created_by", "") + h.get("comment", "") for h in history)
    for name, paths in BOOT_LAYERS:
        assert (name in comments) == bool(paths), name  # empty layers are dropped
    purls = sbom_purls(image)
    for jar_name in ("greeting-1.0.jar", "company-2.0.jar"):
        group, artifact, version = MAVEN[jar_name]
        assert f"pkg:maven/{group}/{artifact}@{version}" in purls


def test_jlink_image(tmp_path: Path, registry: Registry, pulled: list[str]) -> None:
    app = plain_app(tmp_path / "src")
    image = package_push_pull(app.jar, registry, pulled, "--jlink")
    assert answer(image) == PLAIN_BODY.format(feature="21")
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).strip())
    assert size <= MAX_JLINK_IMAGE, size
    # The runtime's Debian package, in distill's SBOM and in trivy's (the oracle), at the
    # same version.
    ours = {p.split("?")[0] for p in sbom_purls(image) if p.startswith(f"pkg:deb/debian/{JDK}@")}
    assert len(ours) == 1
    archive = tmp_path / "image.tar"
    distill("copy", f"docker://{image}", f"docker-archive:{archive}")
    theirs = deb_packages_of(json.loads(trivy_image(archive, tmp_path).read_text()))
    assert JDK in theirs
    assert ours == {f"pkg:deb/debian/{JDK}@{quote(str(theirs[JDK][0]), safe='~')}"}
