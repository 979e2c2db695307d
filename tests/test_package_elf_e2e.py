"""A C HTTP server linked against libcurl (not in ``base``), compiled here with gcc on this
bookworm host, packaged by ``distill package`` with the packages found automatically,
pushed to a loopback registry, pulled and run with podman; the body it answers is the one
the same binary answers on the host. The same binary on ``static`` is refused."""

# ruff: noqa: F811  (fixtures are imported, then named as test parameters)
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from distill.cache import BlobCache
from distill.package.libraries import ARCHES, PackageFinder, expected_package_names
from distill.rootfs.accounts import NONROOT
from elf_fixtures import HOST_ARCH, compile_c, needs_gcc
from package_checks import assert_no_tools, http_get, inspect_json
from registry_fixtures import Registry, free_port, registry  # noqa: F401

pytestmark = [pytest.mark.network, pytest.mark.container, needs_gcc]

SERVER_C = r"""
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    /* libcurl does the work the answer shows: the image must have found the library. */
    char *escaped = curl_easy_escape(NULL, "distill elf/ok", 0);
    int server = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(server, (struct sockaddr *)&addr, sizeof addr) || listen(server, 16)) {
        perror("listen");
        return 1;
    }
    for (;;) {
        char request[4096], body[256], head[256];
        int client = accept(server, NULL, NULL);
        if (client < 0) continue;
        if (read(client, request, sizeof request) < 0) { close(client); continue; }
        int n = snprintf(body, sizeof body, "%s uid=%d\n", escaped, (int)getuid());
        int h = snprintf(head, sizeof head, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                         "Content-Length: %d\r\nConnection: close\r\n\r\n", n);
        if (write(client, head, h) < 0 || write(client, body, n) < 0) perror("write");
        close(client);
    }
}
"""


def _distill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distill", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "COLUMNS": "200"},
    )


def _podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(Path(__file__).with_name("containers.conf"))}


def _server(tmp_path: Path) -> Path:
    if not any(
        Path(d, "curl/curl.h").exists()
        for d in ("/usr/include", f"/usr/include/{ARCHES[HOST_ARCH].triplet}")
    ):
        pytest.skip("libcurl4-openssl-dev is not installed (.ci/system-deps)")
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    return compile_c(tmp_path / "app" / "server", SERVER_C, "-lcurl")


def _host_answer(program: Path) -> str:
    """The oracle: the same binary run on this machine, as a user that is not root."""
    port = free_port()
    proc = subprocess.Popen([str(program), str(port)])
    try:
        return http_get(f"http://127.0.0.1:{port}/", proc)
    finally:
        proc.terminate()
        proc.wait(30)


def test_curl_server_packaged_pushed_pulled_and_run(tmp_path: Path, registry: Registry) -> None:
    program = _server(tmp_path)
    on_host = _host_answer(program)
    assert on_host.startswith("distill%20elf%2Fok uid=")  # libcurl really ran

    image = f"{registry.host}/elf-app:1"
    done = _distill("package", str(program), "--port", "8080", "-o", f"docker://{image}")
    assert done.returncode == 0, done.stderr
    shown = " ".join((done.stdout + done.stderr).split())
    found = re.search(r"libcurl\.so\.4 → ([a-z0-9.+-]+)", shown)
    assert found, shown
    package = found.group(1)
    # The oracle for the package: its own .deb (verified against the signed index) holds
    # the library, and its name is the one Debian policy gives the soname.
    finder = PackageFinder("trixie", HOST_ARCH, BlobCache())
    assert finder.ships(package, f"usr/lib/{ARCHES[HOST_ARCH].triplet}/libcurl.so.4")
    assert package in expected_package_names("libcurl.so.4")

    assert_no_tools(f"docker://{image}")  # no shell, package manager or compiler
    assert not inspect_json(f"docker://{image}")["surface"]["runs_as_root"]
    sbom = _distill("sbom", "--format", "cyclonedx-json", f"docker://{image}")
    purls = {c.get("purl", "") for c in json.loads(sbom.stdout)["components"]}
    assert any(p.startswith(f"pkg:deb/debian/{package}@") for p in purls), purls

    env = _podman_env()
    pull = ["podman", "pull", "-q", "--tls-verify=false", f"docker://{image}"]
    image_id = subprocess.run(
        pull, env=env, check=True, capture_output=True, text=True, timeout=600
    ).stdout.strip()
    port = free_port()
    run = ["podman", "run", "-d", "-p", f"127.0.0.1:{port}:8080", image_id]
    container = subprocess.run(
        run, env=env, check=True, capture_output=True, text=True, timeout=300
    ).stdout.strip()
    try:
        answer = http_get(f"http://127.0.0.1:{port}/")
        # Same libcurl work as on the host; the image runs it as distroless's nonroot user.
        assert answer.split(" uid=")[0] == on_host.split(" uid=")[0]
        assert answer == f"distill%20elf%2Fok uid={NONROOT.uid}\n"
    finally:
        subprocess.run(["podman", "rm", "-f", container], env=env, capture_output=True, timeout=120)
        subprocess.run(["podman", "rmi", "-f", image_id], env=env, capture_output=True, timeout=120)


def test_the_same_binary_on_static_is_refused(tmp_path: Path) -> None:
    program = _server(tmp_path)
    out = tmp_path / "out.tar"
    done = _distill("package", str(program), "--base", "static", "-o", f"oci-archive:{out}")
    assert done.returncode == 1
    assert "no C library" in done.stderr and "hint:" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
