"""Every preset and variant, built for real and run under podman (runc).

Each image is built from a lock to docker-archive and oci-archive, accepted by skopeo and
umoci, loaded by podman, run with a program that needs what the preset promises, and read
by trivy, which must see Debian 13 and exactly the locked packages.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from test_lock import run_cli
from test_sbom import deb_packages_of, trivy_image

pytestmark = [pytest.mark.network, pytest.mark.container]

PRESETS = ("static", "base-nossl", "base", "cc", "python3", "java21", "nodejs")
VARIANTS = ("", ":nonroot", ":debug")
SHELLS = ("sh", "bash", "dash", "busybox", "ash", "zsh")
MANAGERS = ("apt", "apt-get", "apt-cache", "dpkg", "dpkg-deb", "dpkg-query")
NONROOT_UID = 65532

STATIC_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("static uid=%d\n", (int)getuid()); return 0; }
"""
SSL_C = r"""
#include <stdio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
int main(void) {
    unsigned char md[EVP_MAX_MD_SIZE]; unsigned int n = 0;
    EVP_Digest("abc", 3, md, &n, EVP_sha256(), NULL);
    printf("%s sha256(abc)=%02x%02x\n", OpenSSL_version(OPENSSL_VERSION), md[0], md[1]);
    return 0;
}
"""
CXX = r"""
#include <iostream>
#include <map>
#include <string>
int main() {
    std::map<std::string, int> m{{"cc", 1}};
    std::cout << "c++ ok " << m.size() << std::endl;
}
"""
HELLO_JAVA = """
public class Hello {
    public static void main(String[] args) {
        System.out.println("hello from java " + System.getProperty("java.version"));
    }
}
"""
PY_CHECK = (
    "import ssl, sqlite3, ctypes, json, os; "
    "n = len(ssl.create_default_context().get_ca_certs()); "
    "print(json.dumps({'certs': n, 'sqlite': sqlite3.sqlite_version, 'uid': os.getuid()}))"
)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, timeout=300
    )


@pytest.fixture(scope="session")
def programs() -> Iterator[Path]:
    # Not under pytest's 0700 tmp dir: the nonroot variants run them as uid 65532.
    out = Path(tempfile.mkdtemp(prefix="distill-programs-"))
    out.chmod(0o755)
    try:
        yield _compile(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _compile(out: Path) -> Path:
    (out / "static.c").write_text(STATIC_C)
    (out / "ssl.c").write_text(SSL_C)
    (out / "cc.cpp").write_text(CXX)
    (out / "Hello.java").write_text(HELLO_JAVA)
    subprocess.run(
        ["gcc", "-static", "-O2", "-o", out / "static-hello", out / "static.c"], check=True
    )
    subprocess.run(["gcc", "-O2", "-o", out / "ssl-hello", out / "ssl.c", "-lcrypto"], check=True)
    subprocess.run(["g++", "-O2", "-o", out / "cc-hello", out / "cc.cpp"], check=True)
    subprocess.run(["javac", "--release", "17", "-d", out, out / "Hello.java"], check=True)
    subprocess.run(
        [
            "jar",
            "--create",
            "--file",
            out / "hello.jar",
            "--main-class",
            "Hello",
            "-C",
            out,
            "Hello.class",
        ],
        check=True,
    )
    for path in out.iterdir():
        path.chmod(0o755)
    return out


def _build(ref: str, lock: Path, dest: str) -> None:
    proc = run_cli("-q", "build", ref, "--arch", "amd64", "--lock", str(lock), "-o", dest)
    assert proc.returncode == 0, proc.stderr


def _image_paths(oci_archive: Path, tmp: Path) -> set[str]:
    """Paths of the merged rootfs, via umoci (which must accept the image)."""
    layout = tmp / "layout"
    with tarfile.open(oci_archive) as tar:
        tar.extractall(layout, filter="tar")
    bundle = tmp / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:latest", bundle],
        check=True,
        capture_output=True,
    )
    rootfs = bundle / "rootfs"
    return {str(p.relative_to(rootfs)) for p in rootfs.rglob("*")}


def _trivy_packages(archive: Path, tmp: Path) -> tuple[str, set[tuple[str, str]]]:
    bom = json.loads(trivy_image(archive, tmp).read_text())
    os_name = next(
        f"{c['name']} {c.get('version', '')}"
        for c in bom.get("components", [])
        if c.get("type") == "operating-system"
    )
    return os_name, {(name, v[0] or "") for name, v in deb_packages_of(bom).items()}


def _distill_packages(source: str, tmp: Path) -> set[tuple[str, str]]:
    out = tmp / "sbom.json"
    proc = run_cli("-q", "sbom", source, "--format", "cyclonedx-json", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    bom = json.loads(out.read_text())
    return {
        (c["name"], c["version"])
        for c in bom["components"]
        if c.get("purl", "").startswith("pkg:deb/")
    }


def _surface(source: str) -> dict[str, Any]:
    proc = run_cli("-q", "inspect", "--json", source)
    assert proc.returncode == 0, proc.stderr
    surface: dict[str, Any] = json.loads(proc.stdout)["surface"]
    surface["shells"] = sorted(shell["name"] for shell in surface["shells"])
    return surface


def _run(image: str, *args: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--entrypoint", entrypoint] if entrypoint is not None else []
    return podman("run", "--rm", "--network", "none", *extra, image, *args, check=False)


def _exec(image: str, entrypoint: str, *args: str, mount: Path | None = None) -> str:
    """Run ENTRYPOINT ARGS in the image (no network); return stdout+stderr, checking rc 0."""
    volume = ["-v", f"{mount}:/test:ro"] if mount else []
    proc = podman(
        "run",
        "--rm",
        "--network",
        "none",
        *volume,
        "--entrypoint",
        entrypoint,
        image,
        *args,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def _check_runs(preset: str, variant: str, image: str, programs: Path) -> None:
    uid = NONROOT_UID if "nonroot" in variant else 0
    if preset in ("static", "base-nossl"):
        assert _exec(image, "/test/static-hello", mount=programs).strip() == f"static uid={uid}"
    elif preset == "base":
        out = _exec(image, "/test/ssl-hello", mount=programs)
        assert "OpenSSL 3." in out and "sha256(abc)=ba78" in out
    elif preset == "cc":
        assert _exec(image, "/test/cc-hello", mount=programs).strip() == "c++ ok 1"
    elif preset == "python3":
        result = json.loads(_exec(image, "/usr/bin/python3", "-c", PY_CHECK))
        assert result["certs"] > 100 and result["uid"] == uid
    elif preset == "java21":
        assert 'version "21' in _exec(image, "/usr/bin/java", "-version")
        out = _exec(image, "/usr/bin/java", "-jar", "/test/hello.jar", mount=programs)
        assert out.startswith("hello from java 21"), out
    elif preset == "nodejs":
        js = "console.log(process.versions.node, process.getuid())"
        assert _exec(image, "/usr/bin/node", "-e", js).split()[1] == str(uid)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.strip(":") or "default")
@pytest.mark.parametrize("preset", PRESETS)
def test_preset(preset: str, variant: str, tmp_path: Path, programs: Path) -> None:
    ref = preset + variant
    lock = tmp_path / "image.lock"
    proc = run_cli("-q", "lock", ref, "--arch", "amd64", "-o", str(lock))
    assert proc.returncode == 0, proc.stderr
    locked = {
        (p["name"], p["version"])
        for p in json.loads(lock.read_text())["archs"]["amd64"]["packages"]
    }

    docker_tar, oci_tar = tmp_path / "image.docker.tar", tmp_path / "image.oci.tar"
    _build(ref, lock, f"docker-archive:{docker_tar}")
    _build(ref, lock, f"oci-archive:{oci_tar}")
    for transport, path in (("docker-archive", docker_tar), ("oci-archive", oci_tar)):
        info = json.loads(
            subprocess.run(
                ["skopeo", "inspect", f"{transport}:{path}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert info["Architecture"] == "amd64" and info["Os"] == "linux"

    paths = _image_paths(oci_tar, tmp_path)
    names = {Path(p).name for p in paths if "/bin/" in f"/{p}" or p.startswith("busybox/")}
    if "debug" in variant:
        assert "busybox/sh" in paths and "busybox/busybox" in paths
    else:
        assert not names & set(SHELLS), names & set(SHELLS)
        assert not names & set(MANAGERS), names & set(MANAGERS)
        assert not any(p.startswith("var/lib/dpkg/info") for p in paths)

    os_name, scanned = _trivy_packages(docker_tar, tmp_path)
    assert os_name.startswith("debian 13."), os_name
    assert scanned == locked

    # distill's own analyzers agree with trivy and with the image's real contents.
    for source in (f"docker-archive:{docker_tar}", f"oci-archive:{oci_tar}"):
        assert _distill_packages(source, tmp_path) == scanned
    surface = _surface(f"oci-archive:{oci_tar}")
    if "debug" in variant:
        assert "sh" in surface["shells"] and surface["busybox"] == ["/busybox/busybox"]
    else:
        assert surface["shells"] == [] and surface["busybox"] == []
        assert surface["package_managers"] == []
    assert surface["runs_as_root"] is ("nonroot" not in variant)

    tag = f"localhost/distill-test-{uuid.uuid4().hex[:12]}:{preset}"
    try:
        loaded = podman("load", "-q", "-i", str(docker_tar)).stdout.strip().split()[-1]
        podman("tag", loaded, tag)
        oci_loaded = podman("load", "-q", "-i", str(oci_tar)).stdout.strip().split()[-1]
        assert podman("image", "exists", oci_loaded, check=False).returncode == 0
        _check_runs(preset, variant, tag, programs)
        if "debug" in variant:
            proc = _run(tag, "-c", "echo debug-shell")
            assert proc.returncode == 0 and proc.stdout.strip() == "debug-shell", proc.stderr
        else:
            assert _run(tag, entrypoint="/bin/sh").returncode != 0
    finally:
        podman("rmi", "-f", tag, check=False)
