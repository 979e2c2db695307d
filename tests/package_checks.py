"""Checks every packaged image must pass, for the driver's tests and the planners': no
shell, package manager or compiler in it (read with ``distill inspect`` and the image's
merged filesystem), and what its manifest and config say."""

from __future__ import annotations

import json
import posixpath
import subprocess
import sys
from pathlib import Path
from typing import Any

from distill.analyze.fsview import NodeKind, build_fsview
from distill.context import Access
from distill.transports import opened

# Compilers and build tools a multi-stage build leaves behind when the last stage is wrong.
COMPILERS = frozenset(
    {"cc", "gcc", "g++", "c++", "cpp", "clang", "ld", "as", "make", "javac", "rustc", "go"}
)


def inspect_json(ref: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "distill", "-q", "inspect", "--json", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def assert_no_tools(ref: str) -> None:
    """No shell, pip, npm or other package manager (``distill inspect``), no compiler."""
    surface = inspect_json(ref)["surface"]
    assert surface["shells"] == [], surface
    assert surface["package_managers"] == [], surface
    with opened(ref, Access()) as source:
        view = build_fsview(source)
        names = {
            posixpath.basename(path)
            for path, node in view.nodes.items()
            if node.kind in (NodeKind.FILE, NodeKind.SYMLINK) and node.mode & 0o111
        }
    assert not names & COMPILERS, sorted(names & COMPILERS)


def oci_manifest(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    data: dict[str, Any] = json.loads((layout / "blobs/sha256" / digest).read_text())
    data["digest"] = "sha256:" + digest
    return data


def oci_config(layout: Path) -> dict[str, Any]:
    digest = oci_manifest(layout)["config"]["digest"].removeprefix("sha256:")
    data: dict[str, Any] = json.loads((layout / "blobs/sha256" / digest).read_text())
    return data


def layer_digests(layout: Path) -> list[str]:
    return [layer["digest"] for layer in oci_manifest(layout)["layers"]]


def http_get(url: str, proc: subprocess.Popen[bytes] | None = None, tries: int = 300) -> str:
    """The body at ``url``, retried while the server starts (bounded by ``tries``); gives up
    at once if ``proc``, the server, has exited."""
    import time
    import urllib.request

    last: Exception | None = None
    for _ in range(tries):
        if proc is not None and proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return str(answer.read().decode())
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"no answer from {url}: {last}")
