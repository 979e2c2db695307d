"""``docker://`` images for the analysers, and ``distill build -o docker://``.

Images are built with distill's writers, pushed with ``push_image`` to Debian's
docker-registry on 127.0.0.1 (registry_fixtures.py), and read back through ``open_source``:
everything must come out as the oci-archive reader gives it for the same image. Damage is
made by editing the registry's storage directly. Tampered images are unique to their test
(blobs are shared by every repository of a registry, and the registries by the session).
"""

# ruff: noqa: F811  (pytest fixtures are imported, then named as test parameters)

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from analyze_images import (
    SDE,
    file,
    fixture_image,
    open_source,
    opened,
    run_measuring_peak,
    simple_image,
)
from distill.analyze.fsview import build_fsview
from distill.context import Access, Credentials
from distill.errors import DistillError
from distill.image.compose import compose_image, compose_index
from distill.image.config import ImageConfigSpec
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, write_layer
from distill.image.model import Image as BuiltImage
from distill.image.partial import ImageSource
from distill.image.platform import Platform
from distill.registry.auth import AUTH_ENV
from distill.registry.push import push_image
from distill.registry.reference import ImageReference
from distill.transports import parse_reference
from distill.transports._write import write_oci_archive
from distill.transports.docker import DockerReference
from registry_fixtures import (  # noqa: F401  (the fixtures are used by name)
    Registry,
    auth_registry,
    free_port,
    install_credential_helper,
    no_ambient_credentials,
    registry,
)

pytestmark = pytest.mark.container

KEEP_ALL = 1 << 20  # fsview: keep every file's bytes (the test images are small)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def creds(reg: Registry) -> Credentials:
    assert reg.username is not None and reg.password is not None
    return Credentials(reg.username, reg.password)


def snapshot(source: ImageSource) -> dict[str, Any]:
    """Everything a reader hands out, minus where it found it (``location``)."""
    manifest, config = source.manifest, source.config
    view = build_fsview(source, lambda path, member: KEEP_ALL)
    return {
        "platforms": source.platforms(),
        "manifest": (manifest.media_type, manifest.digest, manifest.raw, manifest.config),
        "config": (config.digest, config.raw, config.platform),
        "layers": [
            (layer.index, layer.media_type, layer.size, layer.digest, layer.diff_id)
            for layer in source.layers()
        ],
        "files": {
            path: (n.kind, n.mode, n.uid, n.gid, n.size, n.linkname, n.layers, n.content)
            for path, n in view.nodes.items()
        },
    }


def read(reference: str, **options: Any) -> dict[str, Any]:
    with opened(reference, **options) as source:
        return snapshot(source)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "distill", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    proc.stderr = " ".join(proc.stderr.split())  # rich wraps at the terminal width
    return proc


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """Three layers (gzip, zstd, none), whiteouts, links, setuid files: analyze_images.py."""
    return fixture_image(tmp_path_factory.mktemp("blobs"))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, image: BuiltImage) -> str:
    path = tmp_path_factory.mktemp("archive") / "image.tar"
    write_oci_archive(image, path, ref="v1", source_date_epoch=SDE)
    return f"oci-archive:{path}:v1"


@pytest.fixture(scope="module")
def pushed(registry: Registry, image: BuiltImage) -> ImageReference:
    """``image`` in the anonymous registry, tagged; the reference carries its digest."""
    return push_image(image, f"docker://{registry.host}/read/app:1").reference


# --- reading ---------------------------------------------------------------------------------


def test_registry_image_reads_like_the_oci_archive(pushed: ImageReference, archive: str) -> None:
    expected = read(archive)
    by_tag = f"docker://{pushed.host}/{pushed.repository}:1"
    with opened(by_tag) as source:
        assert source.name == by_tag
        assert source.manifest.digest == pushed.digest
        assert all(layer.location == f"{pushed.name}@{layer.digest}" for layer in source.layers())
        assert snapshot(source) == expected
    by_digest = f"docker://{pushed.name}@{pushed.digest}"
    assert read(by_digest) == expected
    # A loopback registry is reachable over plain http with TLS checks on or off.
    assert read(by_tag, tls_verify=False) == expected


def test_index_platform_choice(tmp_path: Path, registry: Registry) -> None:
    images = [
        simple_image(tmp_path / "blobs", [file("arch", p.encode())], platform=p)
        for p in ("linux/amd64", "linux/arm64")
    ]
    index = compose_index(images)
    write_oci_archive(index, tmp_path / "multi.tar", ref="multi", source_date_epoch=SDE)
    local = f"oci-archive:{tmp_path / 'multi.tar'}:multi"
    remote = f"docker://{registry.host}/read/multi:1"
    push_image(index, remote)
    for platform in ("linux/amd64", "linux/arm64"):
        got = read(remote, platform=platform)
        assert got == read(local, platform=platform)
        assert got["files"]["arch"][-1] == platform.encode()
        assert got["config"][2].architecture == platform.split("/")[1]
    with pytest.raises(DistillError, match="has no image for linux/s390x") as err:
        open_source(remote, platform="linux/s390x")
    assert "linux/amd64, linux/arm64" in err.value.message


def test_missing_tag_and_bad_references(registry: Registry, pushed: ImageReference) -> None:
    with pytest.raises(DistillError, match=r"manifest unknown: read/app:2"):
        open_source(f"docker://{registry.host}/read/app:2")
    with pytest.raises(DistillError, match="not a valid repository name"):
        open_source(f"docker://{registry.host}/Read/App:1")
    with pytest.raises(DistillError, match="cannot reach a registry"):
        open_source(f"docker://127.0.0.1:{free_port()}/read/app:1")


def test_basic_auth(
    auth_registry: Registry,
    image: BuiltImage,
    archive: str,
    no_ambient_credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = f"docker://{auth_registry.host}/read/private:1"
    push_image(image, reference, access=Access(credentials=creds(auth_registry)))
    assert read(reference, credentials=creds(auth_registry)) == read(archive)
    with pytest.raises(DistillError, match="requires credentials to pull read/private") as err:
        open_source(reference)
    assert "--creds" in (err.value.hint or "")
    wrong = Credentials(creds(auth_registry).username, "wrong", "given with --creds")
    with pytest.raises(DistillError, match="rejected the credentials given with --creds"):
        open_source(reference, credentials=wrong)
    monkeypatch.setenv(AUTH_ENV, auth_registry.creds)  # the environment, when none are given
    assert read(reference)["manifest"] == read(archive)["manifest"]


# --- damage in the registry's storage --------------------------------------------------------


def _unique_image(blob_dir: Path) -> BuiltImage:
    """One gzip layer and a config no other test has, so its blobs are its own."""
    return simple_image(blob_dir, [file("id", uuid.uuid4().hex.encode()), file("etc/x", b"x")])


def test_tampered_config(tmp_path: Path, registry: Registry) -> None:
    built = _unique_image(tmp_path)
    reference = f"docker://{registry.host}/read/{unique('config')}:1"
    push_image(built, reference)
    digest = built.config_descriptor.digest
    data = registry.blob_file(digest).read_bytes()
    registry.blob_file(digest).write_bytes(data.replace(b"/bin/true", b"/bin/fals"))
    with pytest.raises(DistillError, match=f"@{digest} has digest sha256:") as err:
        open_source(reference)
    assert "damaged" in (err.value.hint or "")


def test_tampered_layer_same_size(tmp_path: Path, registry: Registry) -> None:
    """The gzip header's mtime changed: the layer still unpacks to its diff_id, only its
    digest is wrong, and that is found once the stream is read to the end."""
    built = _unique_image(tmp_path)
    reference = f"docker://{registry.host}/read/{unique('layer')}:1"
    push_image(built, reference)
    digest = built.layers[0].digest
    blob = registry.blob_file(digest)
    data = bytearray(blob.read_bytes())
    assert data[:2] == b"\x1f\x8b"
    data[4] ^= 0xFF
    blob.write_bytes(bytes(data))
    with opened(reference) as source:  # the manifest and config are intact
        assert next(source.layers()).digest == digest
        with pytest.raises(DistillError, match=f"@{digest} has digest sha256:"):
            build_fsview(source)


def run_to_end(reference: str) -> None:
    with opened(reference) as source:
        for layer in source.layers():
            with source.open_layer(layer) as stream:
                stream.finish()


def test_truncated_layer_and_tampered_manifest(tmp_path: Path, registry: Registry) -> None:
    built = _unique_image(tmp_path)
    reference = f"docker://{registry.host}/read/{unique('trunc')}:1"
    result = push_image(built, reference)
    digest = built.layers[0].digest
    blob = registry.blob_file(digest)
    blob.write_bytes(blob.read_bytes()[:-10])
    with pytest.raises(DistillError, match=f"{digest}"):
        run_to_end(reference)
    manifest = registry.blob_file(result.descriptor.digest)
    manifest.write_bytes(b"{ " + manifest.read_bytes()[1:])  # the same JSON, other bytes
    with pytest.raises(DistillError, match=f"has digest sha256:.*not {result.descriptor.digest}"):
        open_source(reference)


def test_layers_are_streamed(tmp_path: Path, registry: Registry) -> None:
    """A 96 MiB incompressible layer through the registry: peak RSS stays far below it."""
    big = tmp_path / "big"
    with big.open("wb") as out:
        for _ in range(96):
            out.write(os.urandom(1 << 20))
    layer = write_layer(
        [FsEntry("big", EntryKind.FILE, 0o644, content=big)],
        tmp_path / "blobs",
        compression=Compression.NONE,
        source_date_epoch=SDE,
    )
    built = compose_image(
        ImageConfigSpec(), Platform.parse("linux/amd64"), [layer], source_date_epoch=SDE
    )
    reference = f"docker://{registry.host}/read/{unique('big')}:1"
    push_image(built, reference)
    big.unlink()
    script = (
        "import sys\n"
        "from distill.context import Access\nfrom distill.transports import opened\n"
        "from distill.analyze.fsview import build_fsview\n"
        "with opened(sys.argv[1], Access()) as s:\n"
        "    v = build_fsview(s, lambda p, m: 64)\n"
        "assert v.nodes['big'].size == 96 << 20 and len(v.nodes['big'].content) == 64\n"
    )
    _, peak_kib = run_measuring_peak(script, reference)
    assert peak_kib < 90 * 1024, f"peak RSS {peak_kib} KiB for a 96 MiB layer"


# --- the command line ------------------------------------------------------------------------


def test_cli_inspect_and_sbom(pushed: ImageReference, archive: str) -> None:
    remote = f"docker://{pushed.host}/{pushed.repository}:1"
    proc = run_cli("inspect", "--json", remote)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    local = json.loads(run_cli("inspect", "--json", archive).stdout)
    assert report["reference"] == remote
    assert report["manifest_digest"] == pushed.digest
    assert {**report, "reference": ""} == {**local, "reference": ""}
    sbom = run_cli("sbom", remote)
    assert sbom.returncode == 0, sbom.stderr
    assert json.loads(sbom.stdout)["spdxVersion"] == "SPDX-2.3"


def test_cli_credentials(
    auth_registry: Registry, image: BuiltImage, no_ambient_credentials: Path
) -> None:
    remote = f"docker://{auth_registry.host}/read/cli:1"
    push_image(image, remote, access=Access(credentials=creds(auth_registry)))
    env = dict(os.environ)
    good = run_cli("inspect", "--json", "--creds", auth_registry.creds, remote, env=env)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["reference"] == remote
    for args, message in [
        (["--creds", "distill:wrong"], "rejected the credentials given with --creds"),
        ([], "requires credentials to pull read/cli"),
        (["--creds", "no-colon"], "credentials given with --creds are not USER:PASS"),
    ]:
        for command in ("inspect", "sbom"):
            proc = run_cli(command, *args, remote, env=env)
            assert proc.returncode == 1, (command, args, proc.stderr)
            assert message in proc.stderr, (command, args, proc.stderr)
            assert "Traceback" not in proc.stderr and not proc.stdout


def test_cli_credentials_from_a_credential_helper(
    tmp_path: Path,
    auth_registry: Registry,
    image: BuiltImage,
    no_ambient_credentials: Path,
) -> None:
    """After `docker login` with a credential store, config.json holds only the store's
    name: distill runs the helper, as docker and podman do."""
    remote = f"docker://{auth_registry.host}/read/helper:1"
    push_image(image, remote, access=Access(credentials=creds(auth_registry)))
    env = dict(os.environ)
    bin_dir = tmp_path / "bin"
    store = {auth_registry.host: [auth_registry.username, auth_registry.password]}
    install_credential_helper(bin_dir, "teststore", store)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    config = Path(env["HOME"]) / ".docker" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"auths": {auth_registry.host: {}}, "credsStore": "teststore"}))
    good = run_cli("inspect", "--json", remote, env=env)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["reference"] == remote
    install_credential_helper(bin_dir, "teststore", {})  # logged out: the store is empty
    anonymous = run_cli("inspect", "--json", remote, env=env)
    assert anonymous.returncode == 1
    assert "requires credentials to pull read/helper" in anonymous.stderr


# --- build output ----------------------------------------------------------------------------


def test_parse_output() -> None:
    pushed = parse_reference("docker://127.0.0.1:5000/x:1")
    assert isinstance(pushed, DockerReference)
    assert pushed.ref == ImageReference("127.0.0.1:5000", "x", "1")
    assert str(parse_reference("docker://127.0.0.1:5000/x")) == "docker://127.0.0.1:5000/x:latest"
    assert str(parse_reference("oci:out:v1")) == "oci:out:v1"
    with pytest.raises(DistillError, match="not a valid repository name"):
        parse_reference("docker://127.0.0.1:5000/X:1")


def test_write_output_pushes(
    registry: Registry, auth_registry: Registry, image: BuiltImage, archive: str
) -> None:
    dest = parse_reference(f"docker://{registry.host}/read/built:1")
    dest.check_writable(Access())
    written = dest.write(image, Access(), mtime=SDE)
    assert written.descriptor.digest == image.descriptor.digest
    assert read(f"docker://{registry.host}/read/built:1") == read(archive)
    private = parse_reference(f"docker://{auth_registry.host}/read/built:1")
    private.check_writable(Access(credentials=creds(auth_registry)))
    with pytest.raises(DistillError, match="rejected the credentials"):
        private.check_writable(Access(credentials=Credentials("distill", "wrong")))


def test_cli_build_checks_push_access_first(
    auth_registry: Registry, no_ambient_credentials: Path, tmp_path: Path
) -> None:
    """Wrong credentials fail the build before anything is resolved or downloaded."""
    env = {**os.environ, "DISTILL_CACHE_DIR": str(tmp_path / "cache")}
    out = f"docker://{auth_registry.host}/read/static:1"
    proc = run_cli("build", "static", "-o", out, "--creds", "distill:wrong", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "rejected the credentials given with --creds" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.deb"))


@pytest.mark.network
def test_cli_build_static_to_a_registry(
    auth_registry: Registry, no_ambient_credentials: Path
) -> None:
    out = f"docker://{auth_registry.host}/read/static:1"
    env = dict(os.environ)
    proc = run_cli("build", "static", "-o", out, "--creds", auth_registry.creds, env=env)
    assert proc.returncode == 0, proc.stderr
    digest = proc.stdout.strip()
    assert f"wrote {out}" in proc.stderr
    report = run_cli("inspect", "--json", "--creds", auth_registry.creds, out, env=env)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["manifest_digest"] == digest
    assert data["os"]["id"] == "debian"
    again = run_cli("build", "static", "-o", out, "--creds", auth_registry.creds, env=env)
    assert again.returncode == 0 and again.stdout.strip() == digest  # reproducible
