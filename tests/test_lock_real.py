"""`distill lock` / `distill fetch` against the real Debian archive."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from distill.cache import BlobCache
from test_lock import run_cli

pytestmark = pytest.mark.network


@pytest.mark.parametrize(
    ("suite", "arch"), [("trixie", "amd64"), ("trixie", "arm64"), ("bookworm", "amd64")]
)
def test_lock_base_preset(tmp_path: Path, suite: str, arch: str) -> None:
    out = tmp_path / "base.lock"
    proc = run_cli("lock", "base", "--suite", suite, "--arch", arch, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert not re.search(r"\w+://", text), "a lock must not name a host"
    data = json.loads(text)
    assert data["suite"] == suite
    assert [p["name"] for p in data["pockets"]] == [suite, f"{suite}-updates", f"{suite}-security"]
    body = data["archs"][arch]
    names = [p["name"] for p in body["packages"]]
    assert names == sorted(names)
    assert {"libc6", "base-files", "tzdata", "ca-certificates"} <= set(names)
    assert ("libssl3t64" if suite == "trixie" else "libssl3") in names
    for pkg in body["packages"]:
        assert re.fullmatch(r"[0-9a-f]{64}", pkg["sha256"])
        assert pkg["filename"].startswith("pool/") and pkg["size"] > 0
        assert pkg["architecture"] in (arch, "all")
    # The distroless policy keeps install-time tools out, and says who wanted them.
    assert "debconf" not in names and "openssl" not in names
    wanted = {e["name"]: e["wanted_by"] for e in body["excluded"]}
    assert "debconf" in wanted and "ca-certificates" in wanted["debconf"]


def test_fetch_a_real_lock(tmp_path: Path) -> None:
    out = tmp_path / "static.lock"
    assert run_cli("lock", "static", "--arch", "amd64", "-o", str(out)).returncode == 0
    proc = run_cli("fetch", str(out))
    assert proc.returncode == 0, proc.stderr
    cache = BlobCache()
    for pkg in json.loads(out.read_text())["archs"]["amd64"]["packages"]:
        assert cache.get(pkg["sha256"], pkg["size"], verify=True) is not None


def test_unknown_package_suggests_close_names(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("packages: [libsssl3t64]\n")
    proc = run_cli("lock", str(spec), "--arch", "amd64", "-o", str(tmp_path / "x.lock"))
    assert proc.returncode == 1
    assert "libsssl3t64" in proc.stderr and "libssl3t64" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.lock").exists()
