"""Hostile images, written by hand so that every byte can be wrong on purpose.

Layers are uncompressed tars streamed to files (a 200 MB member is never held in memory);
``write_layout`` hashes them as files and writes the config, manifest and index around them,
each of which a case may replace with raw bytes. ``oci_archive`` and ``docker_archive`` tar
a layout up, with extra or odd members where a case wants them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
SDE = 1_700_000_000
OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def nested_json(depth: int, inner: str = "0") -> bytes:
    """A JSON array nested ``depth`` deep: ``[[[...0...]]]``."""
    return ("[" * depth + inner + "]" * depth).encode()


def info(
    name: str, kind: bytes = tarfile.REGTYPE, *, size: int = 0, mode: int = 0o644, link: str = ""
) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.size = size
    member.mode = mode
    member.linkname = link
    member.mtime = SDE
    return member


class Layer:
    """An uncompressed layer tar, written member by member to ``path``."""

    def __init__(self, path: Path, tar_format: int = tarfile.PAX_FORMAT) -> None:
        self.path = path
        self.tar = tarfile.open(path, "w", format=tar_format)  # noqa: SIM115 - closed by close()

    def file(self, name: str, data: bytes, mode: int = 0o644) -> Layer:
        self.tar.addfile(info(name, size=len(data), mode=mode), io.BytesIO(data))
        return self

    def stream(self, name: str, size: int, chunks: Iterable[bytes]) -> Layer:
        """A member of ``size`` bytes written from ``chunks`` (which must add up to it)."""
        self.tar.addfile(info(name, size=size), _ChunkReader(chunks))
        return self

    def add(self, member: tarfile.TarInfo, data: bytes = b"") -> Layer:
        self.tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
        return self

    def close(self) -> Path:
        self.tar.close()
        return self.path


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        while len(self._pending) < size or size < 0:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._pending += chunk
        if size < 0:
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        return data


def repeated(block: bytes, size: int) -> Iterable[bytes]:
    """``size`` bytes of ``block`` over and over, a block at a time."""
    left = size
    while left > 0:
        part = block[:left]
        left -= len(part)
        yield part


@dataclass
class Layout:
    """What ``write_layout`` wrote: the directory and the JSON it wrote, as bytes."""

    root: Path
    config: bytes
    manifest: bytes
    index: bytes
    layers: list[str] = field(default_factory=list)  # digests

    def blob(self, data: bytes) -> dict[str, Any]:
        """Store ``data`` as a blob; its descriptor (media type to be filled in)."""
        digest = hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}


def write_layout(
    root: Path,
    layers: list[Path],
    *,
    config: Callable[[dict[str, Any]], bytes] | None = None,
    manifest: Callable[[dict[str, Any]], bytes] | None = None,
    index: Callable[[dict[str, Any]], bytes] | None = None,
) -> Layout:
    """An OCI layout of ``layers`` (moved into it). ``config``, ``manifest`` and ``index``
    may turn the document distill would expect into the bytes to store instead."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    descriptors = []
    digests = []
    for layer in layers:
        hexdigest = sha256_file(layer)
        size = layer.stat().st_size
        target = blobs / hexdigest
        if not target.exists():
            os.replace(layer, target)
        descriptors.append({"mediaType": LAYER_TYPE, "digest": f"sha256:{hexdigest}", "size": size})
        digests.append(f"sha256:{hexdigest}")
    config_doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": digests},
    }
    config_bytes = config(config_doc) if config else json.dumps(config_doc).encode()
    (blobs / hashlib.sha256(config_bytes).hexdigest()).write_bytes(config_bytes)
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, config_bytes),
        "layers": descriptors,
    }
    manifest_bytes = manifest(manifest_doc) if manifest else json.dumps(manifest_doc).encode()
    (blobs / hashlib.sha256(manifest_bytes).hexdigest()).write_bytes(manifest_bytes)
    index_doc = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [descriptor(MANIFEST_TYPE, manifest_bytes)],
    }
    index_bytes = index(index_doc) if index else json.dumps(index_doc).encode()
    (root / "index.json").write_bytes(index_bytes)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return Layout(root, config_bytes, manifest_bytes, index_bytes, digests)


def image_of(tmp: Path, build: Callable[[Layer], object], **changes: Any) -> Layout:
    """A one-layer layout at ``tmp/layout`` whose layer ``build`` fills."""
    tmp.mkdir(parents=True, exist_ok=True)
    layer = Layer(tmp / "layer.tar")
    build(layer)
    return write_layout(tmp / "layout", [layer.close()], **changes)


def oci_archive(
    layout: Path, out: Path, extra: Iterable[tuple[tarfile.TarInfo, bytes]] = ()
) -> Path:
    """``layout`` as an oci-archive, then ``extra`` members (which may be anything)."""
    with tarfile.open(out, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=path.relative_to(layout).as_posix(), recursive=False)
        for member, data in extra:
            tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return out


def docker_archive(
    out: Path,
    layers: list[Path],
    *,
    manifest: Callable[[list[dict[str, Any]]], bytes] | None = None,
    extra: Iterable[tuple[tarfile.TarInfo, bytes]] = (),
) -> Path:
    """A classic docker-archive: ``<hex>.json`` config, ``<n>/layer.tar`` layers."""
    diff_ids = ["sha256:" + sha256_file(layer) for layer in layers]
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    names = [f"{i}/layer.tar" for i in range(len(layers))]
    entries = [{"Config": config_name, "RepoTags": ["x:1"], "Layers": names}]
    manifest_bytes = manifest(entries) if manifest else json.dumps(entries).encode()
    with tarfile.open(out, "w") as tar:
        tar.addfile(info(config_name, size=len(config)), io.BytesIO(config))
        for name, layer in zip(names, layers, strict=True):
            tar.add(layer, arcname=name)
        for member, data in extra:
            tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
        tar.addfile(info("manifest.json", size=len(manifest_bytes)), io.BytesIO(manifest_bytes))
    return out
