"""Image readers and the merged filesystem view: every transport, whiteouts, damaged input.

Images are built with distill's writers (tests/analyze_images.py); podman, skopeo and a
local registry are the independent witnesses for the formats other tools write.
"""

# ruff: noqa: F811  (pytest fixtures are imported, then named as test parameters)

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyze_images import (
    ADDED,
    LAYER0,
    OS_RELEASE,
    SDE,
    elf,
    file,
    fixture_image,
    member,
    open_source,
    opened,
    raw_image,
    raw_layer,
    run_measuring_peak,
    simple_image,
    symlink,
    tar_bytes,
    write_docker25_archive,
)
from distill.analyze.fsview import FsView, NodeKind, analyse_fsview, build_fsview
from distill.errors import DistillError
from distill.image.compose import compose_image, compose_index
from distill.image.config import ImageConfigSpec
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, write_layer
from distill.image.model import Image as BuiltImage
from distill.image.platform import Platform, host_platform
from distill.image.stream import sniff_compression
from distill.transports import parse_source
from distill.transports._write import write_docker_archive, write_oci_archive, write_oci_dir
from registry_fixtures import Registry, registry  # noqa: F401

TAG = "example/app:1"


def view_of(reference: str, want: object = None, **kwargs: object) -> FsView:
    with opened(reference, **kwargs) as source:  # type: ignore[arg-type]
        return build_fsview(source, want)  # type: ignore[arg-type]


def summary(view: FsView) -> dict[str, tuple[object, ...]]:
    """What must not depend on the transport: every path's metadata and history."""
    return {
        path: (n.kind, n.mode, n.uid, n.gid, n.size, n.linkname, n.hardlink_to, n.layers)
        for path, n in view.nodes.items()
    }


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    return fixture_image(tmp_path_factory.mktemp("blobs"))


@pytest.fixture(scope="module")
def transports(tmp_path_factory: pytest.TempPathFactory, image: BuiltImage) -> dict[str, str]:
    """The fixture image written every way distill can read it, by reference."""
    root = tmp_path_factory.mktemp("transports")
    write_oci_dir(image, root / "layout", ref="v1")
    write_oci_archive(image, root / "oci.tar", ref="v1", source_date_epoch=SDE)
    write_docker_archive(image, root / "docker.tar", tag=TAG, source_date_epoch=SDE)
    write_docker25_archive(image, root / "docker25.tar", TAG, root / "work")
    return {
        "oci": f"oci:{root / 'layout'}:v1",
        "oci-bare": str(root / "layout"),
        "oci-archive": f"oci-archive:{root / 'oci.tar'}:v1",
        "oci-archive-bare": str(root / "oci.tar"),
        "docker-archive": f"docker-archive:{root / 'docker.tar'}",
        "docker-archive-tag": f"docker-archive:{root / 'docker.tar'}:{TAG}",
        "docker-archive-bare": str(root / "docker.tar"),
        "docker25": f"docker-archive:{root / 'docker25.tar'}",
    }


# --- references ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "transport"),
    [
        ("oci:/x/layout", "oci"),
        ("oci:layout:app:1.0", "oci"),
        ("oci-archive:a.tar:v1", "oci-archive"),
        ("docker-archive:a.tar", "docker-archive"),
        ("docker-archive:a.tar:@1", "docker-archive"),
        ("containers-storage:localhost/app:1", "containers-storage"),
        ("docker://127.0.0.1:5000/team/app@sha256:" + "0" * 64, "docker"),
    ],
)
def test_parse_source(text: str, transport: str) -> None:
    assert parse_source(text).transport == transport
    assert str(parse_source(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tarball:x.tar", "image reference"),
        ("oci:", "names no path"),
        ("oci:dir:", "names no reference"),
        ("containers-storage:", "names no image"),
        ("docker://", "names no repository"),
    ],
)
def test_bad_references_are_refused(text: str, message: str) -> None:
    with pytest.raises(DistillError, match=message):
        parse_source(text)


def test_a_path_that_is_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="neither a file, a directory nor an image"):
        open_source(str(tmp_path / "missing"))
    with pytest.raises(DistillError, match="not an OCI image layout"):
        open_source(str(tmp_path))


# --- every transport reads the same image --------------------------------------------------


def test_all_transports_agree(image: BuiltImage, transports: dict[str, str]) -> None:
    views = {}
    for name, reference in transports.items():
        with opened(reference) as source:
            assert source.config.digest == image.config_descriptor.digest, name
            assert [layer.diff_id for layer in source.layers()] == [
                b.diff_id for b in image.layers
            ], name
            assert source.platforms() == (Platform.parse("linux/amd64"),)
            views[name] = build_fsview(source)
    expected = summary(views["oci"])
    for name, view in views.items():
        assert summary(view) == expected, name
        assert [s.tar_size for s in view.layers] == [b.uncompressed_size for b in image.layers]
    # OCI transports keep the blobs as stored; a docker-archive holds the tars themselves.
    assert [s.compression for s in views["oci"].layers] == ["gzip", "zstd", "none"]
    assert [s.stored_size for s in views["oci-archive"].layers] == [b.size for b in image.layers]
    assert [s.compression for s in views["docker-archive"].layers] == ["none"] * 3


def test_oci_transports_have_the_manifest(image: BuiltImage, transports: dict[str, str]) -> None:
    for name in ("oci", "oci-archive", "docker25"):
        with opened(transports[name]) as source:
            assert source.manifest.digest == image.descriptor.digest, name
            assert source.manifest.raw == image.manifest_bytes
            assert [layer.digest for layer in source.layers()] == [b.digest for b in image.layers]
    with opened(transports["docker-archive"]) as source:
        assert source.manifest.digest is None  # a classic docker save has no manifest
        assert json.loads(source.manifest.raw)[0]["RepoTags"] == [TAG]


def test_merged_tree(transports: dict[str, str]) -> None:
    view = view_of(transports["oci"])
    big = view.get("app/big.bin")
    assert big is not None
    assert (big.size, big.added_in, big.changed_in) == (700, 0, (1, 2))
    assert view.get("app/old.log") is None  # whiteout
    assert view.get("usr/bin/apt-get") is None
    assert view.listdir("cache") == ["new"]  # opaque: a and sub/ are hidden
    assert view.get("notes/readme") is not None
    ls = view.get("bin/ls")
    assert ls is not None
    assert (ls.kind, ls.hardlink_to, ls.size, ls.mode) == (
        NodeKind.FILE,
        "bin/busybox",
        1000,
        0o755,
    )
    assert view.resolve("bin/sh") == view.resolve("bin/ash") == "bin/busybox"
    assert view.resolve("etc/os-release") == "usr/lib/os-release"
    su = view.get("usr/bin/su")
    assert su is not None and su.mode == 0o4755
    tmp = view.get("tmp")
    assert tmp is not None and (tmp.kind, tmp.mode) == (NodeKind.DIR, 0o1777)
    deletions = {(d.layer, d.path, d.opaque): (d.removed, d.removed_bytes) for d in view.deletions}
    assert deletions == {
        (1, "notthere", False): (0, 0),
        (1, "app/old.log", False): (1, 300),
        (1, "usr/bin/apt-get", False): (1, 50),
        (2, "cache", True): (3, 900),  # cache/a, cache/sub/b and cache/sub
    }
    assert [(s.entries, s.files, s.bytes_added, s.whiteouts) for s in view.layers] == [
        (38, 18, ADDED[0], 0),
        (7, 1, 800, 3),
        (5, 2, 750, 1),
    ]


def test_efficiency_by_hand(transports: dict[str, str]) -> None:
    view = view_of(transports["oci"])
    # Overwritten: big.bin 1000 (layer 2) and 800 (layer 3). Deleted: old.log 300, apt-get
    # 50, the opaque cache/ 400 + 500.
    assert view.total_added == sum(ADDED) == ADDED[0] + 800 + 750
    assert view.wasted == 1000 + 800 + 300 + 50 + 400 + 500 == 3050
    assert view.efficiency == pytest.approx(1 - 3050 / sum(ADDED))
    kept = sum(n.stored for n in view.nodes.values() if n.kind is NodeKind.FILE)
    assert kept + view.wasted == view.total_added
    assert [(w.path, w.wasted, w.layers) for w in view.waste] == [
        ("app/big.bin", 1800, (0, 1, 2)),
        ("cache/sub/b", 500, (0, 2)),
        ("cache/a", 400, (0, 2)),
        ("app/old.log", 300, (0, 1)),
        ("usr/bin/apt-get", 50, (0, 1)),
    ]
    # dive: per path min/sum over layers. big.bin 700/2500, old.log 0/300 and apt-get 0/50
    # (a file's whiteout counts 0); opaque markers are ignored, so cache/ looks untouched.
    assert view.dive_score == pytest.approx((sum(ADDED) - 1800 - 300 - 50) / sum(ADDED))
    assert view.dive_wasted == 2500 + 300 + 50


def test_want_keeps_only_what_it_asks_for(transports: dict[str, str]) -> None:
    asked: list[str] = []

    def want(path: str, info: tarfile.TarInfo) -> int:
        asked.append(path)
        if path == "usr/lib/os-release":
            return 1 << 20
        return 64 if info.mode & 0o111 else 0

    view = view_of(transports["docker-archive"], want)
    assert view.nodes["usr/lib/os-release"].content == OS_RELEASE
    assert view.nodes["bin/busybox"].content == elf(1000)[:64]
    assert view.nodes["bin/ls"].content == elf(1000)[:64]  # a hardlink shares its target's
    assert view.nodes["usr/bin/pip3.12"].content == b"#!/usr/bin/python3\n"
    assert view.nodes["app/big.bin"].content is None
    assert not any(".wh." in p for p in asked)  # whiteouts are not files
    assert "bin/ls" not in asked  # nor are hardlinks: they have no bytes of their own
    assert [n.path for n in view.captured()] == sorted(
        p for p, n in view.nodes.items() if n.content is not None
    )


def test_compression_is_sniffed_not_taken_from_the_media_type(tmp_path: Path) -> None:
    layer = write_layer(
        [file("etc/hello", b"hi\n")],
        tmp_path / "b",
        compression=Compression.ZSTD,
        source_date_epoch=SDE,
    )
    lying = dataclasses.replace(layer, media_type=Compression.GZIP.media_type)
    built = compose_image(
        ImageConfigSpec(), Platform.parse("linux/amd64"), [lying], source_date_epoch=SDE
    )
    write_oci_dir(built, tmp_path / "layout")
    view = view_of(f"oci:{tmp_path / 'layout'}")
    assert view.layers[0].compression == "zstd"
    assert view.nodes["etc/hello"].size == 3
    assert sniff_compression(b"\x1f\x8b\x08") is Compression.GZIP
    assert sniff_compression(b"ustar") is Compression.NONE
    with pytest.raises(DistillError, match="bzip2"):
        sniff_compression(b"BZh91AY")


# --- odd but valid layers ------------------------------------------------------------------


def test_raw_tar_semantics(tmp_path: Path) -> None:
    """Layers as other tools write them: no parent entries, ./ names, a parent that is a
    symlink, an opaque marker after the layer's own entries, a hardlink to a lower layer."""
    blobs = tmp_path / "blobs"
    lower = raw_layer(
        blobs,
        tar_bytes(
            [
                (member("./", tarfile.DIRTYPE, mode=0o755), b""),
                (member("./usr/lib/libc.so", mode=0o755), b"libc"),
                (member("./lib", tarfile.SYMTYPE, mode=0o777, link="usr/lib"), b""),
                (member("./d/old"), b"old!"),
            ]
        ),
    )
    upper = raw_layer(
        blobs,
        tar_bytes(
            [
                (member("lib/extra.so"), b"extra"),  # through the lib -> usr/lib symlink
                (member("d/new"), b"new"),
                (member("d/.wh..wh..opq"), b""),  # after d/new: must not hide it
                (member("bin/libc-link", tarfile.LNKTYPE, link="usr/lib/libc.so"), b""),
            ]
        ),
    )
    write_oci_dir(raw_image(blobs, [lower, upper]), tmp_path / "layout")
    view = view_of(str(tmp_path / "layout"))
    assert view.get("lib") is not None and view.nodes["lib"].kind is NodeKind.SYMLINK
    assert view.nodes["usr/lib/extra.so"].size == 5
    assert view.listdir("d") == ["new"]
    link = view.nodes["bin/libc-link"]
    assert (link.hardlink_to, link.size, link.mode) == ("usr/lib/libc.so", 4, 0o755)
    assert view.nodes["usr"].added_in == 0  # implied by usr/lib/libc.so
    assert "" not in view.nodes  # the root's own entry is not a path


def test_empty_layer_and_empty_tar(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    layers = [raw_layer(blobs, b""), raw_layer(blobs, tar_bytes([]))]
    write_oci_dir(raw_image(blobs, layers), tmp_path / "layout")
    view = view_of(str(tmp_path / "layout"))
    assert view.nodes == {}
    assert [s.entries for s in view.layers] == [0, 0]


# --- platforms -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multi")
    images = [
        simple_image(root / "b", [file("arch", p.encode())], p)
        for p in ("linux/amd64", "linux/arm64")
    ]
    write_oci_dir(compose_index(images), root / "layout", ref="multi")
    return root / "layout"


def test_index_picks_the_platform(multi: Path) -> None:
    for platform in ("linux/amd64", "linux/arm64", "linux/arm64/v8", "arm64"):
        view = view_of(f"oci:{multi}:multi", platform=platform)
        expected = Platform.parse(platform)
        assert view.nodes["arch"].size == len(f"{expected.os}/{expected.architecture}")
    with opened(f"oci:{multi}") as source:
        assert source.platforms() == (
            Platform.parse("linux/amd64"),
            Platform.parse("linux/arm64"),
        )
        if host_platform().architecture in ("amd64", "arm64"):
            assert source.config.platform == host_platform()


def test_missing_platform_lists_the_others(multi: Path) -> None:
    with pytest.raises(DistillError, match="no image for linux/s390x") as caught:
        open_source(f"oci:{multi}", platform="linux/s390x")
    assert "linux/amd64, linux/arm64/v8" in caught.value.message
    assert "--platform" in (caught.value.hint or "")


def test_single_image_checks_the_platform(transports: dict[str, str]) -> None:
    with pytest.raises(DistillError, match="has no image for linux/arm64/v8; it has linux/amd64"):
        open_source(transports["docker-archive"], platform="linux/arm64")
    with opened(transports["oci"], platform="linux/amd64") as source:
        assert source.config.platform == Platform.parse("linux/amd64")


def test_layout_refs(tmp_path: Path, transports: dict[str, str]) -> None:
    with pytest.raises(DistillError, match="has no image named 'nope'") as caught:
        open_source(transports["oci"].replace(":v1", ":nope"))
    assert "v1" in (caught.value.hint or "")
    with pytest.raises(DistillError, match="has no image 'other:2'"):
        open_source(transports["docker-archive"] + ":other:2")
    with opened(transports["docker-archive"] + ":@0") as source:
        assert source.config.user == "app"


# --- damaged input -------------------------------------------------------------------------


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of the fixture image as a layout, to damage."""
    write_oci_dir(fixture_image(tmp_path / "blobs"), tmp_path / "layout")
    yield tmp_path / "layout"


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def manifest_of(layout: Path) -> dict[str, object]:
    index = json.loads((layout / "index.json").read_bytes())
    data: dict[str, object] = json.loads(blob(layout, index["manifests"][0]["digest"]).read_bytes())
    return data


def layer_digests(layout: Path) -> list[str]:
    return [str(d["digest"]) for d in manifest_of(layout)["layers"]]  # type: ignore[attr-defined]


def test_missing_layer_blob_is_named(layout: Path) -> None:
    digest = layer_digests(layout)[1]
    blob(layout, digest).unlink()
    with pytest.raises(DistillError, match="is missing") as caught:
        view_of(str(layout))
    assert digest[:19] in caught.value.message
    assert str(blob(layout, digest)) in caught.value.message


def test_index_pointing_nowhere(layout: Path) -> None:
    index = json.loads((layout / "index.json").read_bytes())
    index["manifests"][0]["digest"] = "sha256:" + "ab" * 32
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(DistillError, match=r"sha256:abababababab.*is missing"):
        open_source(str(layout))


def test_config_that_does_not_match_its_digest(layout: Path) -> None:
    config = manifest_of(layout)["config"]
    path = blob(layout, config["digest"])  # type: ignore[index]
    path.write_bytes(path.read_bytes().replace(b'"app"', b'"APP"'))
    with pytest.raises(DistillError, match=r"config sha256:.* does not match its digest"):
        open_source(str(layout))


def test_layer_with_a_wrong_digest(layout: Path) -> None:
    digest = layer_digests(layout)[2]  # the uncompressed one: flip a byte of file data
    path = blob(layout, digest)
    path.write_bytes(path.read_bytes().replace(b"C" * 700, b"D" * 700))
    with pytest.raises(DistillError, match=r"layer 3 .* does not match its digest") as caught:
        view_of(str(layout))
    assert str(path) in caught.value.message


def test_truncated_layers(layout: Path) -> None:
    digests = layer_digests(layout)
    plain = blob(layout, digests[2])
    plain.write_bytes(plain.read_bytes()[:1600])  # inside cache/new or app/big.bin
    # The tar ends inside a member, but the blob's size says why first.
    with pytest.raises(DistillError, match=r"layer 3 .* is truncated: it is 1600 bytes, but"):
        view_of(str(layout))
    zipped = blob(layout, digests[0])
    zipped.write_bytes(zipped.read_bytes()[:-100])
    with pytest.raises(DistillError, match=r"layer 1 .* is truncated: it is \d+ bytes, but"):
        view_of(str(layout))


def test_corrupt_gzip_under_honest_digests(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    noise = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(200))  # incompressible
    cut = gzip.compress(tar_bytes([(member("a"), noise)]), mtime=0)[:-100]
    write_oci_dir(raw_image(blobs, [raw_layer(blobs, cut)]), tmp_path / "layout")
    with pytest.raises(DistillError, match=r"layer 1 .* gzip data is truncated or corrupt"):
        view_of(str(tmp_path / "layout"))


def test_layer_that_is_not_a_tar(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    junk = raw_layer(blobs, b"this is not a tar archive, not at all" * 20)
    write_oci_dir(raw_image(blobs, [junk]), tmp_path / "layout")
    with pytest.raises(DistillError, match=r"layer 1 .* is not a valid tar archive"):
        view_of(str(tmp_path / "layout"))


def test_hardlink_to_nothing(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    bad = raw_layer(blobs, tar_bytes([(member("bin/x", tarfile.LNKTYPE, link="bin/gone"), b"")]))
    write_oci_dir(raw_image(blobs, [bad]), tmp_path / "layout")
    with pytest.raises(DistillError, match="hardlink /bin/x points to /bin/gone, which is not"):
        view_of(str(tmp_path / "layout"))


def test_layer_count_must_match_the_config(layout: Path) -> None:
    index = json.loads((layout / "index.json").read_bytes())
    manifest = manifest_of(layout)
    manifest["layers"] = manifest["layers"][:2]  # type: ignore[index]
    data = json.dumps(manifest).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob(layout, digest).write_bytes(data)
    index["manifests"][0].update(digest=digest, size=len(data))
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(DistillError, match="lists 2 layers but its config has 3 diff_ids"):
        open_source(str(layout))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not a tar archive"),
        (b"\x00garbage" * 100, "is not a tar archive"),
        (gzip.compress(b"x" * 2000, mtime=0), "is a compressed archive"),
        (tar_bytes([(member("hello.txt"), b"hi")]), "neither manifest.json nor index.json"),
    ],
)
def test_files_that_are_not_images(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "thing.tar"
    path.write_bytes(content)
    for reference in (str(path), f"docker-archive:{path}"):
        with pytest.raises(DistillError, match=message) as caught:
            open_source(reference)
        assert str(path) in caught.value.message


def test_oci_archive_that_is_a_docker_archive(transports: dict[str, str]) -> None:
    path = transports["docker-archive-bare"]
    with pytest.raises(DistillError, match=r"no index.json: it is not an OCI archive") as caught:
        open_source(f"oci-archive:{path}")
    assert "docker-archive:" in (caught.value.hint or "")


def test_index_json_that_is_not_json(layout: Path) -> None:
    (layout / "index.json").write_text("{not json")
    with pytest.raises(DistillError, match=r"index\.json is not valid JSON"):
        open_source(str(layout))


def test_artifact_that_is_not_an_image(layout: Path) -> None:
    index = json.loads((layout / "index.json").read_bytes())
    manifest = manifest_of(layout)
    manifest["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json"  # type: ignore[index]
    data = json.dumps(manifest).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob(layout, digest).write_bytes(data)
    index["manifests"][0].update(digest=digest, size=len(data))
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(DistillError, match="is not a container image"):
        open_source(str(layout))


def test_layer_changed_while_it_is_read(layout: Path) -> None:
    """The second thread hashes the file the parser reads; a file rewritten meanwhile (here:
    between opening and reading, the same bytes but a new mtime) is not trusted."""
    plain = blob(layout, layer_digests(layout)[2])
    with opened(str(layout)) as source:
        plain.write_bytes(plain.read_bytes())
        with pytest.raises(DistillError, match=r"layer 3 .* changed while it was being read"):
            build_fsview(source)


def test_docker_archive_layer_with_a_flipped_byte(
    tmp_path: Path, transports: dict[str, str]
) -> None:
    """docker-archive layers are plain tars hashed beside the parse: a changed byte inside
    file data the parser skips is still caught, by the diff_id."""
    data = bytearray(Path(transports["docker-archive-bare"]).read_bytes())
    at = data.index(b"C" * 700)  # inside app/big.bin's data in the third layer
    data[at + 100] ^= 0x01
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(bytes(data))
    with pytest.raises(DistillError, match=r"layer 3 .* does not match its diff_id"):
        view_of(f"docker-archive:{damaged}")


def test_nothing_unverified_gets_out(layout: Path) -> None:
    """analyse_fsview runs the analysis while hashing may go on, but returns only after
    every check: a damaged layer raises even though the analysis itself succeeded."""
    path = blob(layout, layer_digests(layout)[2])
    path.write_bytes(path.read_bytes().replace(b"C" * 700, b"D" * 700))
    ran = []
    with opened(str(layout)) as source, pytest.raises(DistillError, match="does not match"):
        analyse_fsview(source, None, lambda view: ran.append(len(view.nodes)))
    assert ran and ran[0] > 0


def test_a_digest_error_is_reported_before_what_it_caused(layout: Path) -> None:
    """A failure on bytes that were not yet verified (a bad header, an analysis that chokes)
    is reported as the damage that caused it when the blob does not match its digest."""
    path = blob(layout, layer_digests(layout)[2])
    data = bytearray(path.read_bytes())
    data[3] ^= 0xFF  # inside the first header's name: its checksum is now wrong
    path.write_bytes(bytes(data))
    with pytest.raises(DistillError, match=r"layer 3 .* does not match its digest"):
        view_of(str(layout))
    data[3] ^= 0xFF
    path.write_bytes(bytes(data).replace(b"C" * 700, b"D" * 700))

    def choke(view: FsView) -> None:
        raise DistillError("the analysis could not make sense of it")

    with opened(str(layout)) as source, pytest.raises(DistillError, match="does not match"):
        analyse_fsview(source, None, choke)


def test_a_layer_that_fails_to_open_leaks_nothing(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    bzip = raw_layer(blobs, b"BZh91AY&SY" + bytes(500))
    write_oci_dir(raw_image(blobs, [bzip]), tmp_path / "layout")
    threads, descriptors = threading.active_count(), open_descriptors()
    for _ in range(3):
        with pytest.raises(DistillError, match="bzip2"):
            view_of(str(tmp_path / "layout"))
    assert (threading.active_count(), open_descriptors()) == (threads, descriptors)


def open_descriptors() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


@pytest.mark.parametrize("damaged", [False, True])
def test_no_thread_or_descriptor_outlives_the_source(
    tmp_path: Path, transports: dict[str, str], damaged: bool
) -> None:
    source_path = Path(transports["docker-archive-bare"])
    if damaged:
        data = bytearray(source_path.read_bytes())
        data[data.index(b"C" * 700)] ^= 0x01
        source_path = tmp_path / "damaged.tar"
        source_path.write_bytes(bytes(data))
    threads, descriptors = threading.active_count(), open_descriptors()
    interval = sys.getswitchinterval()
    for _ in range(3):
        try:
            view_of(f"docker-archive:{source_path}")
        except DistillError:
            assert damaged
        with opened(f"docker-archive:{source_path}"):
            pass  # opened and closed unread: hashing must stop, not run on
    assert (threading.active_count(), open_descriptors()) == (threads, descriptors)
    assert sys.getswitchinterval() == interval


def test_damaged_docker_archives(
    tmp_path: Path, image: BuiltImage, transports: dict[str, str]
) -> None:
    source = Path(transports["docker-archive-bare"])
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(source.read_bytes()[:-20000])
    with pytest.raises(DistillError, match=r"truncated.tar is truncated: .* ends past the end"):
        open_source(str(truncated))
    # A layer that manifest.json names but the archive lacks.
    last = image.layers[2].diff_id.removeprefix("sha256:") + ".tar"
    missing = tmp_path / "missing.tar"
    with tarfile.open(source) as src, tarfile.open(missing, "w") as out:
        for info in src:
            if info.name != last:
                out.addfile(info, src.extractfile(info))
    with pytest.raises(DistillError, match=f"layer 3: {last} in .*missing.tar is missing"):
        open_source(str(missing))


# --- other tools' formats ------------------------------------------------------------------


def test_docker29_archive_with_a_nested_index(tmp_path: Path, multi: Path) -> None:
    """docker 29 saves the whole index but only one platform's blobs: the reader must find
    that platform's manifest from manifest.json's config."""
    layout = tmp_path / "layout"
    shutil.copytree(multi, layout)
    index = json.loads((layout / "index.json").read_bytes())
    top = index["manifests"][0]["digest"]
    nested = json.loads(blob(layout, top).read_bytes())
    arm = next(m for m in nested["manifests"] if m["platform"]["architecture"] == "arm64")
    arm_manifest = json.loads(blob(layout, arm["digest"]).read_bytes())
    amd = next(m for m in nested["manifests"] if m["platform"]["architecture"] == "amd64")
    amd_manifest = json.loads(blob(layout, amd["digest"]).read_bytes())
    for digest in [arm["digest"], arm_manifest["config"]["digest"]]:
        blob(layout, digest).unlink()
    for layer in arm_manifest["layers"]:
        blob(layout, layer["digest"]).unlink()
    entry = {
        "Config": "blobs/sha256/" + amd_manifest["config"]["digest"].removeprefix("sha256:"),
        "RepoTags": ["example/multi:1"],
        "Layers": [
            "blobs/sha256/" + d["digest"].removeprefix("sha256:") for d in amd_manifest["layers"]
        ],
    }
    (layout / "manifest.json").write_text(json.dumps([entry]))
    archive = tmp_path / "docker29.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=path.relative_to(layout).as_posix(), recursive=False)
    with opened(f"docker-archive:{archive}") as source:
        assert source.manifest.digest == amd["digest"]
        assert source.config.platform == Platform.parse("linux/amd64")
        assert build_fsview(source).nodes["arch"].size == len("linux/amd64")


def run(*args: str | Path, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


@pytest.fixture
def podman_image(transports: dict[str, str]) -> Iterator[str]:
    """The fixture image loaded into podman's storage under a unique name."""
    name = f"localhost/distill-analyze-{uuid.uuid4().hex[:12]}:1"
    path = transports["docker-archive-bare"]
    loaded = re.findall(r"Loaded image(?:\(s\))?: (\S+)", run("podman", "load", "-i", path))
    assert loaded
    run("podman", "tag", loaded[0], name)
    try:
        yield name
    finally:
        subprocess.run(["podman", "rmi", "--force", name, loaded[0]], capture_output=True)


@pytest.mark.container
def test_podman_save_formats(tmp_path: Path, podman_image: str, transports: dict[str, str]) -> None:
    """What podman 4.x writes, read back the same as distill's own archives."""
    expected = summary(view_of(transports["oci"]))
    docker = tmp_path / "docker.tar"
    oci = tmp_path / "oci.tar"
    run("podman", "save", "--format", "docker-archive", "-o", docker, podman_image)
    run("podman", "save", "--format", "oci-archive", "-o", oci, podman_image)
    with tarfile.open(docker) as tar:
        names = tar.getnames()
    # podman 4 writes the classic format: <diff_id>.tar layers, the legacy <id>/layer.tar
    # symlinks to them, no OCI layout.
    assert "manifest.json" in names and "index.json" not in names
    assert any(re.fullmatch(r"[0-9a-f]{64}/layer\.tar", n) for n in names)
    with tarfile.open(oci) as tar:
        assert "index.json" in tar.getnames() and "manifest.json" not in tar.getnames()
    for reference in (f"docker-archive:{docker}", f"oci-archive:{oci}", str(docker), str(oci)):
        assert summary(view_of(reference)) == expected, reference


@pytest.mark.container
def test_containers_storage(podman_image: str, transports: dict[str, str]) -> None:
    with opened(f"containers-storage:{podman_image}") as source:
        view = build_fsview(source)
        assert source.name == f"containers-storage:{podman_image}"
    assert summary(view) == summary(view_of(transports["oci"]))
    with pytest.raises(DistillError, match="podman could not save localhost/no-such-image"):
        open_source("containers-storage:localhost/no-such-image:0")


def test_containers_storage_without_podman(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DistillError, match="needs podman, which is not installed"):
        open_source("containers-storage:localhost/app:1")


@pytest.mark.container
def test_registry_source(registry: Registry, transports: dict[str, str], multi: Path) -> None:
    reference = f"{registry.host}/analyze/app:1"
    run("skopeo", "copy", "--dest-tls-verify=false", transports["oci"], f"docker://{reference}")
    with opened(f"docker://{reference}", tls_verify=False) as source:
        assert source.manifest.digest is not None
        view = build_fsview(source)
    assert summary(view) == summary(view_of(transports["oci"]))
    multi_ref = f"{registry.host}/analyze/multi:1"
    run(
        "skopeo",
        "copy",
        "--all",
        "--dest-tls-verify=false",
        f"oci:{multi}",
        f"docker://{multi_ref}",
    )
    arm = view_of(f"docker://{multi_ref}", platform="linux/arm64", tls_verify=False)
    assert arm.nodes["arch"].size == len("linux/arm64")
    with pytest.raises(DistillError, match="manifest unknown"):
        open_source(f"docker://{registry.host}/analyze/none:1", tls_verify=False)


# --- memory --------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.NONE])
def test_a_large_layer_is_streamed(tmp_path: Path, compression: Compression) -> None:
    """A 300 MiB file in a layer: reading it must not hold it (peak RSS well below). An
    uncompressed layer is hashed by the second thread, which reads the file in chunks of
    its own: those must not pile up either."""
    sparse = tmp_path / "big"
    with sparse.open("wb") as out:
        out.truncate(300 << 20)
    entries = [FsEntry("big", EntryKind.FILE, 0o755, content=sparse), *LAYER0[:2]]
    built = simple_image(tmp_path / "blobs", entries, compression=compression)
    write_oci_archive(built, tmp_path / "big.tar")
    sparse.unlink()
    script = (
        "import sys\n"
        "from distill.context import Access\nfrom distill.transports import opened\n"
        "from distill.analyze.fsview import build_fsview\n"
        "with opened(sys.argv[1], Access()) as s:\n"
        "    v = build_fsview(s, lambda p, m: 64)\n"
        "assert v.nodes['big'].size == 300 << 20 and v.nodes['big'].content == bytes(64)\n"
    )
    _, peak_kib = run_measuring_peak(script, tmp_path / "big.tar")
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib} KiB"


def test_symlink_loops_do_not_hang(tmp_path: Path) -> None:
    built = simple_image(tmp_path / "b", [symlink("a", "b"), symlink("b", "a"), file("f", b"x")])
    write_oci_dir(built, tmp_path / "layout")
    view = view_of(str(tmp_path / "layout"))
    assert view.resolve("a") is None
    assert view.resolve("f") == "f"
    assert view.resolve("f/x") is None  # a file is not a directory
    assert view.resolve("../../f") == "f"  # clamped to the root
