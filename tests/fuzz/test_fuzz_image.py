"""Fuzz the image documents: OCI index, manifest and config, and docker-archive's
manifest.json, each generated from its real schema and then damaged in a few places.

The layouts and archives are real files opened through ``open_source``, so parsing runs as
it does for ``inspect``: digests are recomputed after the damage (most of the time) so that
the reader gets past the digest check to the parsing behind it."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzzing import FUZZ, clean, dumps, mutated_bytes, mutated_json
from hypothesis import example, given
from hypothesis import strategies as st

from distill import transports
from distill.context import Access
from distill.image.config import parse_config
from distill.image.manifest import load_json_object
from distill.image.platform import Platform

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DIFF_ID = "sha256:" + "ab" * 32


def config_doc(layers: int) -> dict[str, Any]:
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": "2025-01-01T00:00:00Z",
        "author": "fuzz",
        "config": {
            "User": "65532",
            "Env": ["PATH=/usr/bin"],
            "Entrypoint": ["/app"],
            "Cmd": ["--serve"],
            "WorkingDir": "/",
            "ExposedPorts": {"8080/tcp": {}},
            "Volumes": {"/data": {}},
            "Labels": {"a": "b"},
            "StopSignal": "SIGTERM",
        },
        "rootfs": {"type": "layers", "diff_ids": [DIFF_ID] * layers},
        "history": [
            {"created_by": "distill", "created": "2025-01-01T00:00:00Z"},
            {"created_by": "env", "empty_layer": True},
        ],
    }


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}


_PLATFORMS = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
    {"architecture": "unknown", "os": "unknown"},
]


@st.composite
def layouts(draw: st.DrawFn) -> dict[str, bytes]:
    """The files of an OCI layout: index.json and blobs, bottom-up, each damaged a little."""
    blobs: dict[str, bytes] = {}

    def blob(doc: Any) -> bytes:
        data = dumps(draw(mutated_json(doc, max_ops=2)))
        if draw(st.integers(0, 19)) == 0:
            data = draw(mutated_bytes(data, max_ops=2))
        if draw(st.integers(0, 19)):  # else: stored under a digest it does not have
            blobs["sha256:" + hashlib.sha256(data).hexdigest()] = data
        else:
            blobs["sha256:" + "0" * 64] = data
        return data

    layers = draw(st.integers(0, 3))
    config = blob(config_doc(layers))
    layer = descriptor(OCI_LAYER, b"layer")
    manifest = blob(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [layer] * layers,
            "annotations": {"org.opencontainers.image.created": "2025"},
        }
    )
    top = descriptor(OCI_MANIFEST, manifest, platform=draw(st.sampled_from(_PLATFORMS)))
    for _ in range(draw(st.integers(0, 2))):  # nested indexes, as buildx writes them
        index = blob({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]})
        top = descriptor(OCI_INDEX, index)
    top["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    files = {"index.json": dumps(draw(mutated_json({"schemaVersion": 2, "manifests": [top]})))}
    files.update({f"blobs/sha256/{d.removeprefix('sha256:')}": b for d, b in blobs.items()})
    return files


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="distill-fuzz-image-") as tmp:
        yield Path(tmp)


def _open(reference: str, platform: str | None) -> None:
    def run() -> None:
        wanted = Platform.parse(platform) if platform else None
        source = transports.open_source(reference, Access(platform=wanted))
        try:
            assert source.manifest.config.digest
            assert len(list(source.layers())) == len(source.config.diff_ids)
            source.platforms()
        finally:
            source.close()

    clean(run)


@FUZZ
@example(files={"index.json": b"[" * 100_000}, platform=None)
@given(layouts(), st.sampled_from([None, None, "linux/amd64", "linux/arm64", "linux/s390x"]))
def test_oci_layout(work: Path, files: dict[str, bytes], platform: str | None) -> None:
    layout = work / "layout"
    shutil.rmtree(layout, ignore_errors=True)
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    for name, data in files.items():
        (layout / name).write_bytes(data)
    _open(f"oci:{layout}", platform)


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


EMPTY_TAR = bytes(1024)


@st.composite
def docker_archives(draw: st.DrawFn) -> bytes:
    """A classic ``docker save`` archive whose manifest.json and config are damaged."""
    layers = draw(st.integers(0, 2))
    config = dumps(
        draw(
            mutated_json(
                config_doc(layers)
                | {
                    "rootfs": {
                        "type": "layers",
                        "diff_ids": ["sha256:" + hashlib.sha256(EMPTY_TAR).hexdigest()] * layers,
                    }
                },
                max_ops=2,
            )
        )
    )
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_names = [f"{f'{i:064x}'}/layer.tar" for i in range(layers)]
    entry = {"Config": config_name, "RepoTags": ["fuzz:1"], "Layers": layer_names}
    manifest = dumps(draw(mutated_json([entry], max_ops=3)))
    if draw(st.integers(0, 9)) == 0:
        manifest = draw(mutated_bytes(manifest))
    return _tar(
        {"manifest.json": manifest, config_name: config} | dict.fromkeys(layer_names, EMPTY_TAR)
    )


@FUZZ
@example(archive=_tar({"manifest.json": b"[" * 100_000}), ref="")
@given(docker_archives(), st.sampled_from(["", ":fuzz:1", ":@0", ":@7", ":other"]))
def test_docker_archive(work: Path, archive: bytes, ref: str) -> None:
    path = work / "image.tar"
    path.write_bytes(archive)
    _open(f"docker-archive:{path}{ref}", None)


@FUZZ
@example(raw=b'{"rootfs": ' + b"[" * 100_000)
@given(
    st.builds(config_doc, st.integers(0, 3)).flatmap(mutated_json).map(dumps)
    | st.binary(max_size=200)
)
def test_parse_config(raw: bytes) -> None:
    clean(lambda: parse_config(raw, "sha256:" + "0" * 64, "config"))


@FUZZ
@example(raw=b"[" * 100_000)
@given(st.binary(max_size=300) | st.sampled_from([b"[" * 100_000, b'{"a":' * 50_000]))
def test_json_documents_from_raw_bytes(raw: bytes) -> None:
    result = clean(lambda: load_json_object(raw, "index.json"))
    if isinstance(result, dict):
        json.dumps(result)  # what callers do with it next must not fail either
