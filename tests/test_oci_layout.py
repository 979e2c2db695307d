"""Image JSON and output transports: canonical bytes, layouts and archives, real tools."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.context import Access
from distill.errors import DistillError
from distill.image.compose import compose_image, compose_index
from distill.image.config import HistoryEntry, ImageConfigSpec, build_config, rfc3339
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, LayerBlob, write_layer
from distill.image.mediatypes import MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST
from distill.image.model import Image as BuiltImage
from distill.image.model import Index as ImageIndex
from distill.image.platform import Platform
from distill.transports import parse_reference
from distill.transports._write import (
    REF_NAME,
    docker_tag,
    write_docker_archive,
    write_oci_archive,
    write_oci_dir,
)

SDE = 1_700_000_000
BUSYBOX = Path("/bin/busybox")

TRANSPORTS = ["oci", "oci-archive", "docker-archive"]


def write_to(top: BuiltImage | ImageIndex, text: str, *, mtime: int = 0) -> None:
    parse_reference(text).write(top, Access(), mtime=mtime)


def canonical(data: bytes) -> bytes:
    return json.dumps(
        json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def small_layer(
    blob_dir: Path, text: bytes = b"hello\n", compression: Compression = Compression.GZIP
) -> LayerBlob:
    entries = [
        FsEntry("etc/hello", EntryKind.FILE, 0o644, content=text),
        FsEntry("tmp", EntryKind.DIR, 0o1777),
    ]
    return write_layer(entries, blob_dir, compression=compression, source_date_epoch=SDE)


def small_image(blob_dir: Path, platform: str = "linux/amd64", **knobs: object) -> BuiltImage:
    spec = ImageConfigSpec(entrypoint=("/bin/true",), **knobs)  # type: ignore[arg-type]
    layer = small_layer(blob_dir, platform.encode())
    return compose_image(spec, Platform.parse(platform), [layer], source_date_epoch=SDE)


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


# --- image JSON ------------------------------------------------------------------------------


def test_config_holds_every_knob_in_canonical_json(tmp_path: Path) -> None:
    spec = ImageConfigSpec(
        entrypoint=("/usr/bin/app", "--serve"),
        cmd=(),
        env=("PATH=/usr/bin:/bin", "LANG=C.UTF-8", "EMPTY="),
        user="65532:65532",
        workdir="/home/nonroot",
        labels={"b": "2", "a": "1"},
        exposed_ports=("8080", "53/UDP"),
        volumes=("/data",),
        stop_signal="SIGTERM",
        author="distill tests",
    )
    layers = [small_layer(tmp_path / "b1", b"one"), small_layer(tmp_path / "b2", b"two")]
    history = [
        HistoryEntry("distill: base-files", comment="layer 1"),
        HistoryEntry("distill: config", empty_layer=True),
        HistoryEntry("distill: app"),
    ]
    raw = build_config(
        spec,
        Platform.from_debian("arm64"),
        [b.diff_id for b in layers],
        source_date_epoch=SDE,
        history=history,
    )
    assert raw == canonical(raw)  # sorted keys, no whitespace between tokens
    config = json.loads(raw)
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm64", "v8")
    assert config["author"] == "distill tests"
    assert config["config"] == {
        "Entrypoint": ["/usr/bin/app", "--serve"],
        "Cmd": [],
        "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "EMPTY="],
        "User": "65532:65532",
        "WorkingDir": "/home/nonroot",
        "Labels": {"a": "1", "b": "2"},
        "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
        "Volumes": {"/data": {}},
        "StopSignal": "SIGTERM",
    }
    assert config["rootfs"] == {"type": "layers", "diff_ids": [b.diff_id for b in layers]}
    assert config["history"] == [
        {
            "created": "2023-11-14T22:13:20Z",
            "created_by": "distill: base-files",
            "comment": "layer 1",
        },
        {"created": "2023-11-14T22:13:20Z", "created_by": "distill: config", "empty_layer": True},
        {"created": "2023-11-14T22:13:20Z", "created_by": "distill: app"},
    ]


def test_unset_knobs_are_left_out(tmp_path: Path) -> None:
    raw = build_config(ImageConfigSpec(), Platform.parse("linux/amd64"), [], source_date_epoch=0)
    config = json.loads(raw)
    assert config["config"] == {}
    assert "variant" not in config and "author" not in config
    assert config["created"] == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ImageConfigSpec(env=("NOVALUE",)), "KEY=value"),
        (ImageConfigSpec(env=("=x",)), "KEY=value"),
        (ImageConfigSpec(exposed_ports=("http",)), "not a port"),
        (ImageConfigSpec(exposed_ports=("70000",)), "not a port"),
        (ImageConfigSpec(exposed_ports=("80/icmp",)), "not a port"),
        (ImageConfigSpec(workdir="app"), "absolute"),
        (ImageConfigSpec(volumes=("data",)), "absolute"),
    ],
)
def test_bad_knobs_are_refused(spec: ImageConfigSpec, message: str) -> None:
    with pytest.raises(DistillError, match=message):
        build_config(spec, Platform.parse("amd64"), [], source_date_epoch=0)


def test_history_must_match_the_layers() -> None:
    with pytest.raises(DistillError, match="history"):
        build_config(
            ImageConfigSpec(),
            Platform.parse("amd64"),
            ["sha256:" + "0" * 64],
            source_date_epoch=0,
            history=[HistoryEntry("x", empty_layer=True)],
        )


def test_platforms() -> None:
    assert Platform.parse("linux/arm64") == Platform("arm64", "linux", "v8")
    assert Platform.parse("arm") == Platform("arm", "linux", "v7")
    assert Platform.parse("linux/arm/v6") == Platform("arm", "linux", "v6")
    assert str(Platform.parse("amd64")) == "linux/amd64"
    assert Platform.from_debian("armhf") == Platform("arm", "linux", "v7")
    assert Platform.from_debian("ppc64el").architecture == "ppc64le"
    assert Platform.from_debian("i386").architecture == "386"
    with pytest.raises(DistillError, match="platform"):
        Platform.parse("linux/")
    with pytest.raises(DistillError, match="Debian architecture"):
        Platform.from_debian("hurd-i386")


def test_manifest_annotations_and_descriptors(tmp_path: Path) -> None:
    image = small_image(
        tmp_path / "blobs",
        title="hello",
        version="1.2",
        source="https://example.invalid/src",
        base_name="scratch",
        description="a test",
        annotations={"org.example.x": "y"},
    )
    manifest = json.loads(image.manifest_bytes)
    assert image.manifest_bytes == canonical(image.manifest_bytes)
    assert manifest["mediaType"] == MEDIA_TYPE_MANIFEST and manifest["schemaVersion"] == 2
    assert manifest["annotations"] == {
        "org.opencontainers.image.created": rfc3339(SDE),
        "org.opencontainers.image.title": "hello",
        "org.opencontainers.image.version": "1.2",
        "org.opencontainers.image.source": "https://example.invalid/src",
        "org.opencontainers.image.base.name": "scratch",
        "org.opencontainers.image.description": "a test",
        "org.example.x": "y",
    }
    config = manifest["config"]
    assert config["digest"] == "sha256:" + hashlib.sha256(image.config_bytes).hexdigest()
    assert config["size"] == len(image.config_bytes)
    (layer,) = manifest["layers"]
    assert layer == {
        "mediaType": image.layers[0].media_type,
        "digest": image.layers[0].digest,
        "size": image.layers[0].size,
    }
    assert image.descriptor.digest == "sha256:" + hashlib.sha256(image.manifest_bytes).hexdigest()


def test_index_lists_platforms_in_order(tmp_path: Path) -> None:
    amd = small_image(tmp_path / "b", "linux/amd64")
    arm = small_image(tmp_path / "b", "linux/arm64")
    index = compose_index([amd, arm], {"org.opencontainers.image.created": rfc3339(SDE)})
    data = json.loads(index.index_bytes)
    assert data["mediaType"] == MEDIA_TYPE_INDEX
    assert [m["platform"] for m in data["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    assert [m["digest"] for m in data["manifests"]] == [
        amd.descriptor.digest,
        arm.descriptor.digest,
    ]
    with pytest.raises(DistillError, match="two images"):
        compose_index([amd, amd])


# --- destinations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci:out/img", ("oci", Path("out/img"), None)),
        ("oci:/tmp/img:v1.0", ("oci", Path("/tmp/img"), "v1.0")),
        ("oci-archive:img.tar:example/app:1", ("oci-archive", Path("img.tar"), "example/app:1")),
        ("docker-archive:img.tar:example/app", ("docker-archive", Path("img.tar"), "example/app")),
        (
            "docker-archive:img.tar:localhost:5000/app:v2",
            ("docker-archive", Path("img.tar"), "localhost:5000/app:v2"),
        ),
        ("docker-archive:img.tar", ("docker-archive", Path("img.tar"), None)),
    ],
)
def test_parse_destination(text: str, expected: tuple[str, Path, str | None]) -> None:
    ref = parse_reference(text)
    assert (ref.transport, ref.path, getattr(ref, "tag", getattr(ref, "name", None))) == expected  # type: ignore[attr-defined]
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("img.tar", "not an image reference"),
        ("dir:/tmp/x", "not an image reference"),
        ("oci:", "names no path"),
        ("oci:dir:", "names no reference"),
        ("oci:dir:bad ref", "not a valid OCI"),
        ("oci:dir:-lead", "not a valid OCI"),
        ("docker-archive:x.tar:Upper/case", "docker image name"),
        ("docker-archive:x.tar:App", "docker image name"),
        ("docker-archive:x.tar:app@sha256:" + "0" * 64, "docker image name"),
    ],
)
def test_bad_destinations_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DistillError, match=message) as info:
        parse_reference(text).check_writable(Access())
    assert info.value.hint


def test_docker_tag_adds_latest_only_when_untagged() -> None:
    assert docker_tag("app") == "app:latest"
    assert docker_tag("localhost:5000/a/b") == "localhost:5000/a/b:latest"
    assert docker_tag("a/b:1.0-rc") == "a/b:1.0-rc"
    assert docker_tag("Registry.Example:443/app:V1") == "Registry.Example:443/app:V1"


# --- oci:DIR ---------------------------------------------------------------------------------


def check_layout(root: Path, ref: str) -> dict[str, object]:
    assert json.loads((root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    for blob in (root / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    index = json.loads((root / "index.json").read_bytes())
    assert index["schemaVersion"] == 2
    (entry,) = index["manifests"]
    assert entry["annotations"] == {REF_NAME: ref}
    top = root / "blobs" / "sha256" / entry["digest"].removeprefix("sha256:")
    assert top.stat().st_size == entry["size"]
    return dict(entry)


def test_oci_dir_is_complete_and_deterministic(tmp_path: Path) -> None:
    image = small_image(tmp_path / "blobs")
    first = write_oci_dir(image, tmp_path / "one", ref="v1")
    write_oci_dir(image, tmp_path / "two", ref="v1")
    entry = check_layout(tmp_path / "one", "v1")
    assert entry["digest"] == first.digest == image.descriptor.digest
    assert entry["mediaType"] == MEDIA_TYPE_MANIFEST
    assert tree(tmp_path / "one") == tree(tmp_path / "two")
    names = set(tree(tmp_path / "one"))
    assert names == {
        "oci-layout",
        "index.json",
        f"blobs/sha256/{image.config_descriptor.hex}",
        f"blobs/sha256/{image.descriptor.hex}",
        f"blobs/sha256/{image.layers[0].digest.removeprefix('sha256:')}",
    }
    assert siblings(tmp_path / "one") == ["blobs", "one", "two"]


def test_oci_dir_replaces_a_layout_and_refuses_other_directories(tmp_path: Path) -> None:
    old = small_image(tmp_path / "blobs", "linux/amd64")
    new = small_image(tmp_path / "blobs", "linux/arm64")
    out = tmp_path / "out"
    write_oci_dir(old, out)
    write_oci_dir(new, out)
    assert check_layout(out, "latest")["digest"] == new.descriptor.digest
    assert siblings(out) == ["blobs", "out"]
    # A file distill did not write makes it someone else's directory: refused, kept.
    (out / "stale").write_text("not distill's")
    with pytest.raises(DistillError, match="not an OCI layout"):
        write_oci_dir(old, out)
    assert (out / "stale").read_text() == "not distill's"
    assert check_layout(out, "latest")["digest"] == new.descriptor.digest

    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(DistillError, match="not an OCI layout") as info:
        write_oci_dir(new, precious)
    assert info.value.hint and (precious / "notes.txt").read_text() == "keep me"
    assert siblings(precious) == ["blobs", "home", "out"]

    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(DistillError, match="not a directory"):
        write_oci_dir(new, afile)

    empty = tmp_path / "empty"
    empty.mkdir()
    write_oci_dir(new, empty)
    check_layout(empty, "latest")


def test_damaged_blob_leaves_nothing_behind(tmp_path: Path) -> None:
    image = small_image(tmp_path / "blobs")
    layer = Path(image.layers[0].where)
    damaged = bytearray(layer.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    layer.write_bytes(bytes(damaged))
    out = tmp_path / "out"
    with pytest.raises(DistillError, match="does not match its digest") as info:
        write_oci_dir(image, out / "layout")
    assert info.value.hint
    for transport in ("oci-archive", "docker-archive"):
        with pytest.raises(DistillError, match="does not match"):
            write_to(image, f"{transport}:{out / 'image.tar'}")
    assert list(out.iterdir()) == []


def test_truncated_blob_is_reported_as_damaged(tmp_path: Path) -> None:
    image = small_image(tmp_path / "blobs")
    layer = Path(image.layers[0].where)
    layer.write_bytes(layer.read_bytes()[:20])
    for text in ("oci:", "oci-archive:", "docker-archive:"):
        with pytest.raises(DistillError, match="does not match"):
            write_to(image, f"{text}{tmp_path / 'out' / 'x'}")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unwritable_destination_is_a_distill_error(tmp_path: Path, transport: str) -> None:
    image = small_image(tmp_path / "blobs")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DistillError, match="cannot write") as info:
        write_to(image, f"{transport}:{blocker / 'out'}")
    assert info.value.hint


# --- archives --------------------------------------------------------------------------------


def test_oci_archive_is_the_layout_as_a_deterministic_tar(tmp_path: Path) -> None:
    image = small_image(tmp_path / "blobs")
    write_oci_archive(image, tmp_path / "a.tar", ref="v1", source_date_epoch=SDE)
    write_oci_archive(image, tmp_path / "b.tar", ref="v1", source_date_epoch=SDE)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    write_oci_dir(image, tmp_path / "dir", ref="v1")
    with tarfile.open(tmp_path / "a.tar") as tar:
        members = tar.getmembers()
        assert [m.name for m in members][:4] == [
            "oci-layout",
            "index.json",
            "blobs",
            "blobs/sha256",
        ]
        assert all(m.mtime == SDE and m.uid == 0 and m.uname == "" for m in members)
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert tree(tmp_path / "unpacked") == tree(tmp_path / "dir")
    assert siblings(tmp_path / "a.tar") == ["a.tar", "b.tar", "blobs", "dir", "unpacked"]


def test_oci_archive_replaces_a_file_but_not_a_directory(tmp_path: Path) -> None:
    image = small_image(tmp_path / "blobs")
    target = tmp_path / "img.tar"
    target.write_text("old")
    write_oci_archive(image, target)
    assert tarfile.is_tarfile(target)
    with pytest.raises(DistillError, match="is a directory"):
        write_oci_archive(image, tmp_path)


@pytest.mark.parametrize("compression", list(Compression))
def test_docker_archive_has_uncompressed_layers_named_by_diff_id(
    tmp_path: Path, compression: Compression
) -> None:
    blob_dir = tmp_path / "blobs"
    layers = [
        small_layer(blob_dir, b"one", compression),
        small_layer(blob_dir, b"two", compression),
        small_layer(blob_dir, b"one", compression),  # the same layer twice
    ]
    image = compose_image(ImageConfigSpec(), Platform.parse("amd64"), layers, source_date_epoch=SDE)
    described = write_docker_archive(
        image, tmp_path / "d.tar", tag="example/app", source_date_epoch=SDE
    )
    assert described == image.config_descriptor
    with tarfile.open(tmp_path / "d.tar") as tar:
        names = tar.getnames()
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        (manifest,) = json.loads(manifest_file.read())
        assert manifest["RepoTags"] == ["example/app:latest"]
        assert manifest["Config"] == f"{image.config_descriptor.hex}.json"
        config = tar.extractfile(manifest["Config"])
        assert config is not None and config.read() == image.config_bytes
        assert manifest["Layers"] == [b.diff_id.removeprefix("sha256:") + ".tar" for b in layers]
        for name in manifest["Layers"]:
            layer = tar.extractfile(name)
            assert layer is not None
            assert hashlib.sha256(layer.read()).hexdigest() + ".tar" == name
    assert names == ["manifest.json", manifest["Config"], *manifest["Layers"][:2]]


def test_docker_archive_without_tag_and_refusing_many_platforms(tmp_path: Path) -> None:
    amd = small_image(tmp_path / "b", "linux/amd64")
    arm = small_image(tmp_path / "b", "linux/arm64")
    write_docker_archive(amd, tmp_path / "untagged.tar")
    with tarfile.open(tmp_path / "untagged.tar") as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        assert json.loads(manifest_file.read())[0]["RepoTags"] == []
    index = compose_index([amd, arm])
    with pytest.raises(DistillError, match="one platform") as info:
        write_to(index, f"docker-archive:{tmp_path / 'm.tar'}")
    assert info.value.hint and "--platform" in info.value.hint
    assert not (tmp_path / "m.tar").exists()
    # An index of one platform is fine.
    write_docker_archive(compose_index([arm]), tmp_path / "one.tar")
    assert tarfile.is_tarfile(tmp_path / "one.tar")


def test_multi_platform_layout_nests_the_index(tmp_path: Path) -> None:
    amd = small_image(tmp_path / "b", "linux/amd64")
    arm = small_image(tmp_path / "b", "linux/arm64")
    index = compose_index([amd, arm])
    described = write_oci_dir(index, tmp_path / "out", ref="multi")
    entry = check_layout(tmp_path / "out", "multi")
    assert entry["mediaType"] == MEDIA_TYPE_INDEX
    assert entry["digest"] == described.digest == index.descriptor.digest
    nested = tmp_path / "out" / "blobs" / "sha256" / index.descriptor.hex
    assert nested.read_bytes() == index.index_bytes


# --- with the real tools ---------------------------------------------------------------------


def run(*args: str | Path, timeout: float = 120) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """A runnable image: the host's static busybox as /bin/busybox and /bin/sh -> busybox."""
    assert BUSYBOX.is_file(), "busybox-static is needed for the container tests"
    blob_dir = tmp_path_factory.mktemp("busybox-blobs")
    entries = [
        FsEntry("bin/busybox", EntryKind.FILE, 0o755, content=BUSYBOX),
        FsEntry("bin/sh", EntryKind.SYMLINK, 0o777, linkname="busybox"),
        FsEntry("tmp", EntryKind.DIR, 0o1777),
        FsEntry("etc/passwd", EntryKind.FILE, 0o644, content=b"root:x:0:0:root:/:/bin/sh\n"),
    ]
    layer = write_layer(entries, blob_dir, compression=Compression.GZIP, source_date_epoch=SDE)
    spec = ImageConfigSpec(
        entrypoint=("/bin/busybox",),
        cmd=("echo", "default"),
        env=("PATH=/bin",),
        labels={"org.example.test": "distill"},
        title="busybox test",
    )
    return compose_image(spec, Platform.parse("linux/amd64"), [layer], source_date_epoch=SDE)


@pytest.fixture
def podman_names() -> Iterator[list[str]]:
    """Image names a test loads into podman; removed afterwards, even when it fails."""
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["podman", "rmi", "--force", name], capture_output=True, check=False)


def unique_name() -> str:
    return f"localhost/distill-test-{uuid.uuid4().hex[:12]}"


@pytest.mark.container
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_skopeo_inspects_each_transport(
    tmp_path: Path, busybox_image: BuiltImage, transport: str
) -> None:
    path = tmp_path / ("layout" if transport == "oci" else "image.tar")
    dest = f"{transport}:{path}:example/busybox:t1"
    write_to(busybox_image, dest, mtime=SDE)
    info = json.loads(run("skopeo", "inspect", dest))
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["Env"] == ["PATH=/bin"]
    assert info["Labels"] == {"org.example.test": "distill"}
    assert info["Created"] == "2023-11-14T22:13:20Z"
    config = json.loads(run("skopeo", "inspect", "--config", "--raw", dest))
    assert config["config"]["Entrypoint"] == ["/bin/busybox"]
    if transport == "docker-archive":
        # skopeo describes the layers by diff_id: the archive holds them uncompressed.
        assert info["Layers"] == [busybox_image.layers[0].diff_id]
    else:
        assert info["Digest"] == busybox_image.descriptor.digest
        assert info["Layers"] == [busybox_image.layers[0].digest]


@pytest.mark.container
def test_umoci_unpacks_the_layout(tmp_path: Path, busybox_image: BuiltImage) -> None:
    write_oci_dir(busybox_image, tmp_path / "layout", ref="t1")
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'layout'}:t1", bundle)
    rootfs = bundle / "rootfs"
    assert (rootfs / "bin" / "busybox").read_bytes() == BUSYBOX.read_bytes()
    assert (rootfs / "bin" / "busybox").stat().st_mode & 0o111
    assert (rootfs / "bin" / "sh").readlink() == Path("busybox")
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (rootfs / "etc" / "passwd").read_text().startswith("root:x:0:0")
    runtime = json.loads((bundle / "config.json").read_text())
    assert runtime["process"]["args"] == ["/bin/busybox", "echo", "default"]


@pytest.mark.container
@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_podman_loads_and_runs_the_archive(
    tmp_path: Path, busybox_image: BuiltImage, transport: str, podman_names: list[str]
) -> None:
    name = f"{unique_name()}:t1"
    podman_names.append(name)
    write_to(busybox_image, f"{transport}:{tmp_path / 'image.tar'}:{name}", mtime=SDE)
    output = run("podman", "load", "-i", tmp_path / "image.tar")
    loaded = re.findall(r"Loaded image(?:\(s\))?: (\S+)", output)
    assert loaded, output
    podman_names.extend(loaded)
    assert (
        run("podman", "run", "--rm", "--network", "none", loaded[0], "/bin/busybox", "echo", "hi")
        == "hi\n"
    )
    assert run("podman", "run", "--rm", "--network", "none", loaded[0]) == "default\n"
    image_id = run("podman", "image", "inspect", "--format", "{{.Id}}", loaded[0]).strip()
    assert f"sha256:{image_id}" == busybox_image.config_descriptor.digest


@pytest.mark.container
def test_skopeo_picks_a_platform_from_the_index(tmp_path: Path, busybox_image: BuiltImage) -> None:
    fake_arm = write_layer(
        [FsEntry("arch", EntryKind.FILE, 0o644, content=b"arm64\n")],
        tmp_path / "blobs",
        compression=Compression.ZSTD,
        source_date_epoch=SDE,
    )
    arm = compose_image(
        ImageConfigSpec(entrypoint=("/arch",)),
        Platform.from_debian("arm64"),
        [fake_arm],
        source_date_epoch=SDE,
    )
    index: ImageIndex = compose_index([busybox_image, arm])
    write_oci_dir(index, tmp_path / "layout", ref="multi")
    write_oci_archive(index, tmp_path / "multi.tar", ref="multi", source_date_epoch=SDE)
    raw = run("skopeo", "inspect", "--raw", f"oci:{tmp_path / 'layout'}:multi")
    assert raw.encode() == index.index_bytes
    copied = tmp_path / "copied"
    run(
        "skopeo",
        "copy",
        "--override-arch",
        "arm64",
        "--override-variant",
        "v8",
        f"oci:{tmp_path / 'layout'}:multi",
        f"dir:{copied}",
    )
    manifest = json.loads((copied / "manifest.json").read_bytes())
    assert [layer["digest"] for layer in manifest["layers"]] == [fake_arm.digest]
    blob = copied / fake_arm.digest.removeprefix("sha256:")
    assert blob.read_bytes() == fake_arm.path.read_bytes()
    info = json.loads(
        run(
            "skopeo",
            "inspect",
            "--override-arch",
            "arm64",
            f"oci-archive:{tmp_path / 'multi.tar'}:multi",
        )
    )
    assert (info["Architecture"], info["Digest"]) == ("arm64", index.descriptor.digest)
    amd = json.loads(run("skopeo", "inspect", f"oci:{tmp_path / 'layout'}:multi"))
    assert amd["Architecture"] == "amd64"


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_a_killed_write_are_swept(tmp_path: Path) -> None:
    image = small_image(tmp_path / "blobs")
    dead = _dead_pid()
    stale_dir = tmp_path / f".out.{dead}.abcd1234.tmp"
    (stale_dir / "blobs").mkdir(parents=True)
    stale_file = tmp_path / f".out.tar.{dead}.abcd1234.tmp"
    stale_file.write_bytes(b"half an archive")
    someone_elses = tmp_path / f".other.{dead}.abcd1234.tmp"
    someone_elses.write_bytes(b"not for this output")
    write_oci_dir(image, tmp_path / "out")
    write_oci_archive(image, tmp_path / "out.tar")
    assert not stale_dir.exists() and not stale_file.exists()
    assert someone_elses.exists()
    assert siblings(tmp_path / "out") == sorted(["blobs", "out", "out.tar", someone_elses.name])


def test_names_near_the_limit_still_have_room_for_a_temporary(tmp_path: Path) -> None:
    image = small_image(tmp_path / "blobs")
    name = "n" * 250  # the temporary's name would be longer than 255 if not shortened
    write_oci_dir(image, tmp_path / name)
    write_oci_archive(image, tmp_path / f"{name}.tar")
    check_layout(tmp_path / name, "latest")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["blobs", name, f"{name}.tar"])
    with pytest.raises(DistillError, match="too long"):
        write_oci_archive(image, tmp_path / ("n" * 256))


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-dir", "dangling"])
def test_archive_refuses_special_files_and_leaves_them(tmp_path: Path, kind: str) -> None:
    image = small_image(tmp_path / "blobs")
    node = tmp_path / "out.tar"
    if kind == "fifo":
        os.mkfifo(node)
    elif kind == "symlink-to-dir":
        node.symlink_to(tmp_path / "blobs")
    else:
        node.symlink_to("nowhere")
    before = os.lstat(node)
    for write in (write_oci_archive, write_docker_archive):
        with pytest.raises(DistillError, match="not replacing it") as info:
            write(image, node)
        assert info.value.hint
    after = os.lstat(node)
    assert (before.st_mode, before.st_ino, before.st_mtime_ns) == (
        after.st_mode,
        after.st_ino,
        after.st_mtime_ns,
    )
    assert siblings(node) == ["blobs", "out.tar"]


def test_archive_through_a_symlink_replaces_the_file_it_leads_to(tmp_path: Path) -> None:
    image = small_image(tmp_path / "blobs")
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "image.tar"
    real.write_bytes(b"old")
    link = tmp_path / "link.tar"
    link.symlink_to(real)
    write_oci_archive(image, link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert tarfile.is_tarfile(real) and os.listdir(tmp_path / "real") == ["image.tar"]
