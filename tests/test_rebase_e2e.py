"""Rebase end to end (issue #9): an app on ``python3`` built from a bookworm lock without
the security pocket, moved onto ``python3`` rebuilt with it (a newer libssl3).

The result must run under podman, keep the app layer's digest, carry exactly the new
base's layers, and show the new libssl3 to ``distill sbom`` and to trivy. A new base of
another architecture or Debian release is refused; ``--force`` goes on with a warning.
Every image is built once for the module.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from test_lock import run_cli
from test_sbom import deb_packages, trivy_image

pytestmark = [pytest.mark.network, pytest.mark.container]

APP_SPEC = """\
extends: python3
suite: bookworm
pockets: [bookworm, bookworm-updates]
files:
  - {src: hello.py, dest: /app/hello.py}
entrypoint: [/usr/bin/python3, /app/hello.py]
"""
HELLO = "import ssl\nprint('hello from the app,', ssl.OPENSSL_VERSION)\n"
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


def distill(*args: str) -> subprocess.CompletedProcess[str]:
    done = run_cli("-q", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def manifest(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    data: dict[str, Any] = json.loads((layout / "blobs/sha256" / digest).read_text())
    data["digest"] = "sha256:" + digest
    return data


def layer_digests(layout: Path) -> list[str]:
    return [layer["digest"] for layer in manifest(layout)["layers"]]


def locked(lock: Path, name: str) -> str:
    data = json.loads(lock.read_text())
    return next(p["version"] for p in data["archs"]["amd64"]["packages"] if p["name"] == name)


@dataclass
class Built:
    root: Path
    app_lock: Path
    new_lock: Path

    def ref(self, name: str) -> str:
        return f"oci:{self.root / name}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("rebase")
    (root / "app.yaml").write_text(APP_SPEC)
    (root / "hello.py").write_text(HELLO)
    app_lock, new_lock = root / "app.lock", root / "new.lock"
    distill("lock", str(root / "app.yaml"), "--arch", "amd64", "-o", str(app_lock))
    distill("build", str(root / "app.yaml"), "--lock", str(app_lock), "-o", f"oci:{root / 'app'}")
    # The base as the app was built on it: the same preset from the same lock.
    distill(
        "build", "python3", "--suite", "bookworm", "--arch", "amd64",
        "--lock", str(app_lock), "-o", f"oci:{root / 'old'}",
    )  # fmt: skip
    # The patched base: every pocket, bookworm-security included.
    distill("lock", "python3", "--suite", "bookworm", "--arch", "amd64", "-o", str(new_lock))
    distill("build", "python3", "--lock", str(new_lock), "--suite", "bookworm",
            "-o", f"oci:{root / 'new'}")  # fmt: skip
    distill(
        "rebase", f"oci:{root / 'app'}", "--old-base", f"oci:{root / 'old'}",
        "--new-base", f"oci:{root / 'new'}", "-o", f"oci:{root / 'rebased'}",
    )  # fmt: skip
    distill(
        "copy", f"oci:{root / 'rebased'}", f"docker-archive:{root / 'rebased.tar'}:localhost/rb:1"
    )
    return Built(root, app_lock, new_lock)


def test_the_security_pocket_has_a_newer_libssl3(built: Built) -> None:
    pockets = [p["name"] for p in json.loads(built.app_lock.read_text())["pockets"]]
    assert pockets == ["bookworm", "bookworm-updates"]
    assert locked(built.app_lock, "libssl3") != locked(built.new_lock, "libssl3")


def test_build_records_the_base_it_can_rebuild(built: Built) -> None:
    notes = manifest(built.root / "app")["annotations"]
    assert notes[BASE_NAME] == "python3"
    assert notes[BASE_DIGEST] == manifest(built.root / "old")["digest"]
    old = layer_digests(built.root / "old")
    assert layer_digests(built.root / "app")[: len(old)] == old


def test_rebased_keeps_the_app_layer_and_takes_the_new_base(built: Built) -> None:
    app, new = layer_digests(built.root / "app"), layer_digests(built.root / "new")
    old = layer_digests(built.root / "old")
    rebased = manifest(built.root / "rebased")
    digests = [layer["digest"] for layer in rebased["layers"]]
    assert digests == [*new, *app[len(old) :]]
    # The new base really is another one (its package layers differ; the layer holding
    # only python3's /usr/bin/python link may be the same in both).
    assert len(set(new) - set(old)) >= len(new) - 1
    assert rebased["annotations"][BASE_NAME] == built.ref("new")
    assert rebased["annotations"][BASE_DIGEST] == manifest(built.root / "new")["digest"]
    assert rebased["annotations"]["org.opencontainers.image.title"] == "app"


def test_rebased_runs_under_podman(built: Built) -> None:
    tag = f"localhost/distill-rebase-{uuid.uuid4().hex[:8]}:1"
    load = subprocess.run(
        ["podman", "load", "-q", "-i", str(built.root / "rebased.tar")],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    loaded = load.stdout.strip().split()[-1]
    subprocess.run(["podman", "tag", loaded, tag], check=True, timeout=60)
    try:
        run = subprocess.run(
            ["podman", "run", "--rm", "--network", "none", tag],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    finally:
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, check=False)
    assert run.returncode == 0, run.stderr
    upstream = locked(built.new_lock, "libssl3").split("-")[0]
    assert run.stdout.startswith("hello from the app, OpenSSL ")
    assert upstream in run.stdout


def test_sbom_and_trivy_see_the_new_libssl3(built: Built, tmp_path: Path) -> None:
    archive = built.root / "rebased.tar"
    ours = tmp_path / "ours.cdx.json"
    distill("sbom", str(archive), "--format", "cyclonedx-json", "-o", str(ours))
    wanted = locked(built.new_lock, "libssl3")
    assert deb_packages(ours)["libssl3"][0] == wanted
    assert deb_packages(trivy_image(archive, tmp_path))["libssl3"][0] == wanted


def _refused(built: Built, new_base: str, *mentions: str) -> None:
    out = built.ref(f"out-{uuid.uuid4().hex[:8]}")
    args = ("rebase", built.ref("app"), "--old-base", built.ref("old"), "--new-base", new_base)
    refused = run_cli(*args, "-o", out)
    text = refused.stdout + refused.stderr
    assert refused.returncode == 1 and "Traceback" not in text
    assert all(m in text for m in mentions), text
    assert not Path(out.removeprefix("oci:")).exists()
    forced = run_cli(*args, "-o", out, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert (
        "warning:" in forced.stdout + forced.stderr and "--force" in forced.stderr + forced.stdout
    )


def test_a_base_of_another_architecture_is_refused(built: Built) -> None:
    lock = built.root / "arm64.lock"
    distill("lock", "python3", "--suite", "bookworm", "--arch", "arm64", "-o", str(lock))
    distill("build", "python3", "--suite", "bookworm", "--arch", "arm64", "--lock", str(lock),
            "-o", built.ref("arm64"))  # fmt: skip
    _refused(built, built.ref("arm64"), "linux/arm64", "linux/amd64")


def test_a_base_of_another_release_is_refused(built: Built) -> None:
    lock = built.root / "trixie.lock"
    distill("lock", "python3", "--suite", "trixie", "--arch", "amd64", "-o", str(lock))
    distill("build", "python3", "--arch", "amd64", "--lock", str(lock), "-o", built.ref("trixie"))
    _refused(built, built.ref("trixie"), "debian 13", "debian 12")


def test_a_preset_base_needs_old_base(built: Built) -> None:
    done = run_cli("rebase", built.ref("app"), "--new-base", built.ref("new"), "-o",
                   built.ref("never"))  # fmt: skip
    assert done.returncode == 1
    assert "python3" in done.stderr and "--old-base" in done.stderr
