"""``docker-archive:FILE[:NAME:TAG]``: a ``docker save`` / ``podman save`` tar.

Read: the classic format (``manifest.json`` with ``<id>/layer.tar`` or ``<hex>.tar``
layers) and the one docker 25+ writes, an OCI layout beside ``manifest.json`` (read as
OCI, with its real manifests). ``NAME:TAG`` picks an image by its ``RepoTags`` (``@N`` by
position); without it the archive must hold one image. A classic archive has no
manifest: the ``Image`` it gives has an OCI manifest made from ``manifest.json`` (the same
bytes every time), whose layers are the uncompressed tars, so their digests are their
diff_ids. The analysers read a classic archive through ``DockerArchiveImage``.

Written: the classic format, one platform's image, layers uncompressed (see
``_write.write_docker_archive`` and docs/copy.md for which digests change).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, cast

from distill.bounded import parse_json
from distill.context import Access
from distill.errors import DistillError
from distill.fsutil import output_file
from distill.image.compression import Compression
from distill.image.config import ImageConfig, parse_config
from distill.image.descriptor import Descriptor, parse_descriptor
from distill.image.digest import canonical_json, sha256_digest
from distill.image.layer import Layer
from distill.image.manifest import ImageManifest, LayerDescriptor, load_json_object
from distill.image.mediatypes import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER,
    MEDIA_TYPE_MANIFEST,
)
from distill.image.model import Image, Top, assemble_image, check_platform
from distill.image.partial import (
    ImageReader,
    ImageSource,
    check_layer_count,
    index_manifests,
    load_top,
    read_json_blob,
)
from distill.image.platform import Platform
from distill.image.stream import LayerFiles, LayerStream, sniff_compression
from distill.transports import Opened, Progress, Reference, WriteResult
from distill.transports._local import (
    LayoutStore,
    TarFiles,
    _index_entries,
    _read_small,
    archive_files,
    open_layout,
)
from distill.transports._write import docker_tag, layer_digests, write_docker_archive

_HEX_NAME = re.compile(r"(?:.*/)?(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json|\.tar)?")


def _docker_entries(files: TarFiles) -> list[dict[str, object]]:
    where = files.where("manifest.json")
    data = parse_json(_read_small(files, "manifest.json", "manifest.json"), where)
    if not isinstance(data, list) or not data or not all(isinstance(e, dict) for e in data):
        raise DistillError(f"{where} lists no images", hint="the archive is damaged")
    for entry in data:
        layers = entry.get("Layers")
        if not isinstance(entry.get("Config"), str) or not isinstance(layers, list):
            raise DistillError(f"{where}: an entry lacks Config or Layers")
        if not all(isinstance(layer, str) for layer in layers):
            raise DistillError(f"{where}: Layers is not a list of paths")
    return data


def _tags(entry: dict[str, object]) -> list[str]:
    tags = entry.get("RepoTags")
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _docker_entry(files: TarFiles, ref: str | None) -> dict[str, object]:
    entries = _docker_entries(files)
    if ref is not None and ref.startswith("@") and ref[1:].isdigit():
        position = int(ref[1:])
        if position >= len(entries):
            raise DistillError(f"{files.path} has {len(entries)} images; there is no {ref}")
        return entries[position]
    if ref is not None:
        wanted = {ref, ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:latest"}
        for entry in entries:
            if wanted & set(_tags(entry)):
                return entry
        known = ", ".join(t for e in entries for t in _tags(e)) or "no tags"
        raise DistillError(f"{files.path} has no image {ref!r}", hint=f"it has {known}")
    if len(entries) > 1:
        raise DistillError(
            f"{files.path} holds {len(entries)} images; name one",
            hint="write docker-archive:FILE:NAME:TAG or docker-archive:FILE:@N (from 0)",
        )
    return entries[0]


def _hex_of(path: str) -> str | None:
    match = _HEX_NAME.fullmatch(path)
    return f"sha256:{match.group(1)}" if match else None


def _oci_manifest_for(files: TarFiles, config_digest: str) -> Descriptor | None:
    """In a docker 25+ archive, the OCI manifest whose config is ``config_digest``."""
    store = LayoutStore(files)
    pending = _index_entries(files)
    seen = [len(pending)]
    for _ in range(64):  # nested indexes and a few platforms; never a loop
        if not pending:
            break
        descriptor = pending.pop(0)
        if not store.exists(descriptor.digest):
            continue  # docker saves one platform's blobs and lists the others
        if descriptor.media_type in INDEX_TYPES:
            where = store.where(descriptor.digest)
            data = load_json_object(read_json_blob(store, descriptor, "index"), where)
            items = index_manifests(data, where, seen)
            pending.extend(parse_descriptor(i, where) for i in items)
        elif descriptor.media_type in MANIFEST_TYPES:
            where = store.where(descriptor.digest)
            data = load_json_object(read_json_blob(store, descriptor, "manifest"), where)
            config = data.get("config")
            if isinstance(config, dict) and config.get("digest") == config_digest:
                return descriptor
    return None


def _entry_config(files: TarFiles, entry: dict[str, object]) -> tuple[bytes, str, ImageConfig]:
    """The config an entry of manifest.json names: its bytes, digest and parsed form,
    checked against the digest its file name claims."""
    config_path = str(entry["Config"])
    where = files.where(config_path)
    if not files.exists(config_path):
        raise DistillError(f"{where} is missing: manifest.json names it as the config")
    raw = _read_small(files, config_path, "an image config")
    digest = sha256_digest(raw)
    named = _hex_of(config_path)
    if named is not None and named != digest:
        raise DistillError(
            f"{where} does not match the digest in its name: it hashes to {digest}",
            hint="the archive is damaged",
        )
    return raw, digest, parse_config(raw, digest, where)


class DockerArchiveImage:
    """A classic ``docker save`` image: ``manifest.json`` and files named in it."""

    def __init__(
        self,
        files: TarFiles,
        entry: dict[str, object],
        *,
        name: str,
        platform: Platform | None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._files = files
        self._name = name
        self._on_close = on_close
        raw, digest, self._config = _entry_config(files, entry)
        paths = [str(p) for p in cast(list[object], entry["Layers"])]
        check_layer_count(len(paths), self._config, files.where("manifest.json"))
        layers = []
        for i, path in enumerate(paths):
            if not files.exists(path):
                raise DistillError(
                    f"layer {i + 1}: {files.where(path)} is missing (manifest.json names it)",
                    hint="the archive is incomplete; save it again",
                )
            layers.append(
                LayerDescriptor(
                    index=i,
                    media_type=MEDIA_TYPE_DOCKER_LAYER,
                    size=files.size(path),
                    digest=_hex_of(path) if path.startswith("blobs/") else None,
                    diff_id=self._config.diff_ids[i],
                    location=files.where(path),
                )
            )
        self._paths = paths
        check_platform(self._config, platform, name)
        self._manifest = ImageManifest(
            media_type="",
            digest=None,
            raw=_read_small(files, "manifest.json", "manifest.json"),
            config=Descriptor(MEDIA_TYPE_DOCKER_CONFIG, digest, len(raw)),
            layers=tuple(layers),
        )
        # Opened now so that hashing them starts now (see LayerFiles).
        self._layer_files = LayerFiles.open(
            {i: partial(files.open, path) for i, path in enumerate(paths)}
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def manifest(self) -> ImageManifest:
        return self._manifest

    @property
    def config(self) -> ImageConfig:
        return self._config

    def platforms(self) -> tuple[Platform, ...]:
        return (self._config.platform,)

    def layers(self) -> Iterator[LayerDescriptor]:
        return iter(self._manifest.layers)

    def open_layer(self, layer: LayerDescriptor) -> LayerStream:
        path = self._paths[layer.index]
        return self._layer_files.stream(layer, lambda: cast(BinaryIO, self._files.open(path)))

    def add_on_close(self, action: Callable[[], None]) -> None:
        previous = self._on_close

        def both() -> None:
            try:
                if previous is not None:
                    previous()
            finally:
                action()

        self._on_close = both

    def close(self) -> None:
        self._layer_files.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def _classic_layer(files: TarFiles, path: str, diff_id: str) -> Layer:
    """A classic archive's layer file: a tar (its digest is its diff_id), or, as some tools
    write them, a compressed one, hashed now to learn its digest."""
    with files.open(path) as handle:
        compression = sniff_compression(handle.read(6))
        digest = diff_id
        if compression is not Compression.NONE:
            handle.seek(0)
            hasher = hashlib.sha256()
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
            digest = f"sha256:{hasher.hexdigest()}"
    return Layer(
        media_type=compression.media_type,
        digest=digest,
        size=files.size(path),
        diff_id=diff_id,
        where=files.where(path),
        opener=lambda: cast(BinaryIO, files.open(path)),
        file=partial(files.open, path),
    )


def classic_image(files: TarFiles, entry: dict[str, object]) -> Image:
    """The ``Image`` of a classic archive's entry, with a manifest made for it."""
    raw, digest, config = _entry_config(files, entry)
    paths = [str(p) for p in cast(list[object], entry["Layers"])]
    check_layer_count(len(paths), config, files.where("manifest.json"))
    layers = []
    for i, path in enumerate(paths):
        if not files.exists(path):
            raise DistillError(
                f"layer {i + 1}: {files.where(path)} is missing (manifest.json names it)",
                hint="the archive is incomplete; save it again",
            )
        layers.append(_classic_layer(files, path, config.diff_ids[i]))
    config_descriptor = Descriptor(MEDIA_TYPE_CONFIG, digest, len(raw))
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": config_descriptor.to_json(),
        "layers": [layer.descriptor.to_json() for layer in layers],
    }
    return assemble_image(
        canonical_json(manifest), MEDIA_TYPE_MANIFEST, config, config_descriptor, layers
    )


def open_archive(
    files: TarFiles, ref: str | None, name: str, *, analysis: Platform | bool | None = False
) -> tuple[Top | ImageSource, Callable[[], None]]:
    """What the archive holds: an image or index to copy, or (``analysis`` set to the
    platform wanted, or None) a source for the analysers. Returns what closes it too."""
    if not files.exists("manifest.json"):
        if files.exists("index.json"):  # an OCI archive under the other name
            store, top = open_layout(files, ref, name)
            return top, store.close
        raise DistillError(
            f"{files.path} is a tar archive but not an image: "
            "it has neither manifest.json nor index.json",
            hint="give an archive written by docker save, podman save or skopeo",
        )
    entry = _docker_entry(files, ref)
    config_digest = _hex_of(str(entry["Config"]))
    if files.exists("index.json") and config_digest is not None:
        top_descriptor = _oci_manifest_for(files, config_digest)
        if top_descriptor is not None:  # docker 25+: read it as OCI, with the real manifest
            store = LayoutStore(files)
            return load_top(store, top_descriptor, name), store.close
    if analysis is not False:
        wanted = analysis if isinstance(analysis, Platform) else None
        return DockerArchiveImage(files, entry, name=name, platform=wanted), lambda: None
    return classic_image(files, entry), lambda: None


def open_archive_source(
    files: TarFiles,
    ref: str | None,
    name: str,
    platform: Platform | None,
    on_close: Callable[[], None] | None = None,
) -> ImageSource:
    """The analysers' view of one platform's image in the archive."""
    try:
        found, close = open_archive(files, ref, name, analysis=platform)
    except BaseException:
        if on_close is not None:
            on_close()
        raise

    def close_all() -> None:
        try:
            close()
        finally:
            if on_close is not None:
                on_close()

    if isinstance(found, DockerArchiveImage):
        found.add_on_close(close_all)
        return found
    assert not isinstance(found, ImageReader)
    try:
        return ImageReader(cast(Top, found), name=name, platform=platform, on_close=close_all)
    except BaseException:
        close_all()
        raise


@dataclass(frozen=True)
class DockerArchiveReference(Reference, transport="docker-archive"):
    path: Path
    name: str | None = None  # NAME:TAG, or @N to read the N-th image (from 0)

    holds_index = False

    @classmethod
    def parse(cls, rest: str) -> DockerArchiveReference:
        path, sep, name = rest.partition(":")
        if not path:
            raise DistillError(
                f"docker-archive:{rest!r} names no path", hint="write docker-archive:PATH"
            )
        if sep and not name:
            raise DistillError(
                f"docker-archive:{rest} ends with ':' but names no reference",
                hint=f"write docker-archive:{path}:NAME:TAG, or leave out the ':'",
            )
        return cls(Path(path), name or None)

    @classmethod
    def at_path(cls, path: Path) -> DockerArchiveReference:
        return cls(path)

    def __str__(self) -> str:
        return f"docker-archive:{self.path}" + (f":{self.name}" if self.name else "")

    def open(self, access: Access) -> Opened:
        found, close = open_archive(
            archive_files(self.path, "docker-archive"), self.name, str(self)
        )
        return Opened(cast(Top, found), close)

    def open_source(self, access: Access, name: str) -> ImageSource:
        files = archive_files(self.path, "docker-archive")
        return open_archive_source(files, self.name, name, access.platform)

    def check_writable(self, access: Access, *, inputs: Sequence[Path | str] = ()) -> None:
        if self.name and not self.name.startswith("@"):
            docker_tag(self.name)
        output_file(self.path, inputs=inputs)

    def write(
        self, top: Top, access: Access, *, mtime: int = 0, progress: Progress | None = None
    ) -> WriteResult:
        self.refuse_index(top)
        descriptor = write_docker_archive(
            top, self.path, tag=self.name, source_date_epoch=mtime, progress=progress
        )
        return WriteResult(descriptor, layer_digests(top))
