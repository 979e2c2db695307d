"""Readers for images on this machine: OCI layouts (directory or tar), docker archives, and
podman's storage (through ``podman image save``).

Archives are read in place: one pass over the outer tar's headers finds where each member's
bytes are, and each blob is then read from that offset, so nothing is extracted and no
layer is held in memory.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from distill import tempfiles
from distill.analyze.model import (
    IMAGE_DAMAGED,
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER,
    ImageConfig,
    ImageManifest,
    LayerDescriptor,
    check_digest,
    load_json_object,
    parse_config,
    parse_descriptor,
    short,
)
from distill.analyze.source import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_JSON_BLOB,
    ManifestImage,
    SourceRef,
    SourceTransport,
    check_layer_count,
    check_platform,
    index_manifests,
    read_json_blob,
)
from distill.analyze.stream import FileRange, LayerFiles, LayerStream, sniff_compression
from distill.analyze.tarscan import TarFormatError, TarScanner, TarTruncated
from distill.bounded import parse_json, read_capped
from distill.errors import DistillError
from distill.fsutil import check_input_path
from distill.oci.compression import Compression
from distill.oci.image import Descriptor, Platform, sha256_digest

REF_ANNOTATIONS = ("org.opencontainers.image.ref.name", "io.containerd.image.name")
_HEX_NAME = re.compile(r"(?:.*/)?(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json|\.tar)?")


# --- files: a directory or a tar, read in place ------------------------------------------


class _Files(Protocol):
    def exists(self, name: str) -> bool: ...
    def size(self, name: str) -> int: ...
    def open(self, name: str) -> FileRange: ...
    def where(self, name: str) -> str: ...


def _read_small(files: _Files, name: str, what: str) -> bytes:
    where = files.where(name)
    if files.size(name) > MAX_JSON_BLOB:
        raise DistillError(f"{where} is too large to be {what}", hint=IMAGE_DAMAGED)
    with files.open(name) as handle:
        return read_capped(cast(BinaryIO, handle), MAX_JSON_BLOB, where, hint=IMAGE_DAMAGED)


class DirFiles:
    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def size(self, name: str) -> int:
        return (self.root / name).stat().st_size

    def open(self, name: str) -> FileRange:
        try:
            return FileRange(self.root / name)
        except OSError as exc:
            raise DistillError(
                f"cannot read {self.root / name}: {exc.strerror or exc}",
                hint="the layout is incomplete or unreadable",
            ) from None

    def where(self, name: str) -> str:
        return str(self.root / name)


@dataclass(frozen=True, slots=True)
class _Member:
    offset: int
    size: int
    link: str | None  # the archive path a symlink or hardlink member points to


def _member_name(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


class TarFiles:
    """A tar archive on disk, indexed by one pass over its headers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._members: dict[str, _Member] = {}
        try:
            with FileRange(path) as handle:
                try:
                    compressed = sniff_compression(handle.read(6)) is not Compression.NONE
                except DistillError:
                    compressed = True
                if compressed:
                    raise DistillError(
                        f"{path} is a compressed archive",
                        hint="decompress it first (gunzip, zstd -d, ...) and inspect the .tar",
                    )
                handle.seek(0)
                self._scan(handle)
        except OSError as exc:
            raise DistillError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _scan(self, handle: FileRange) -> None:
        try:
            for info in TarScanner(handle):
                name = _member_name(info.name)
                if info.isreg() and info.offset_data + info.stored > handle.size:
                    raise TarTruncated(name, handle.size, info.offset_data + info.stored)
                link = None
                if info.issym():
                    link = _member_name(posixpath.join(posixpath.dirname(name), info.linkname))
                elif info.islnk():
                    link = _member_name(info.linkname)
                if info.isreg() or link is not None:
                    self._members[name] = _Member(info.offset_data, info.stored, link)
        except TarTruncated as exc:
            raise DistillError(
                f"{self.path} is truncated: {exc.name} ends past the end of the file",
                hint="the archive was cut short; save or copy it again",
            ) from None
        except TarFormatError as exc:
            raise DistillError(
                f"{self.path} is not a tar archive ({exc})",
                hint="give an image archive written by docker save, podman save or skopeo",
            ) from None

    def _find(self, name: str) -> _Member | None:
        member = self._members.get(name)
        for _ in range(16):  # podman links <id>/layer.tar to ../<diff_id>.tar
            if member is None or member.link is None:
                return member
            member = self._members.get(member.link)
        return None

    def exists(self, name: str) -> bool:
        return self._find(name) is not None

    def size(self, name: str) -> int:
        member = self._find(name)
        return member.size if member else 0

    def open(self, name: str) -> FileRange:
        member = self._find(name)
        if member is None:
            raise DistillError(f"{self.where(name)} is missing", hint="the archive is incomplete")
        return FileRange(self.path, member.offset, member.size)

    def where(self, name: str) -> str:
        return f"{name} in {self.path}"


# --- OCI layouts -------------------------------------------------------------------------


class LayoutStore:
    """The ``BlobStore`` of an OCI layout: ``blobs/sha256/<hex>``."""

    def __init__(self, files: _Files, on_close: Callable[[], None] | None = None) -> None:
        self._files = files
        self._on_close = on_close

    @staticmethod
    def _name(digest: str) -> str:
        return "blobs/sha256/" + check_digest(digest, "blob").removeprefix("sha256:")

    def open_blob(self, descriptor: Descriptor) -> BinaryIO:
        return cast(BinaryIO, self.open_file(descriptor))

    def open_file(self, descriptor: Descriptor) -> FileRange:
        name = self._name(descriptor.digest)
        if not self._files.exists(name):
            raise DistillError(
                f"blob {short(descriptor.digest)} ({descriptor.media_type}) is missing: "
                f"there is no {self._files.where(name)}",
                hint="the image is incomplete; save or copy it again",
            )
        return self._files.open(name)

    def exists(self, digest: str) -> bool:
        return self._files.exists(self._name(digest))

    def where(self, digest: str) -> str:
        return self._files.where(self._name(digest))

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def _index_entries(files: _Files) -> list[Descriptor]:
    where = files.where("index.json")
    data = load_json_object(_read_small(files, "index.json", "an index"), where)
    return [parse_descriptor(item, where) for item in index_manifests(data, where)]


def _refs(descriptor: Descriptor) -> list[str]:
    return [descriptor.annotations[k] for k in REF_ANNOTATIONS if k in descriptor.annotations]


def _select_ref(entries: list[Descriptor], ref: str | None, where: str) -> list[Descriptor]:
    """The index.json entries ``ref`` names (all of them without a ref)."""
    if not entries:
        raise DistillError(f"{where} lists no images", hint="the layout is empty")
    if ref is None:
        return entries
    chosen = [d for d in entries if ref in _refs(d)]
    if not chosen:
        known = sorted({r for d in entries for r in _refs(d)})
        raise DistillError(
            f"{where} has no image named {ref!r}",
            hint="it has " + (", ".join(known) if known else "only images without names"),
        )
    return chosen


def _open_layout(
    files: _Files,
    ref: str | None,
    name: str,
    wanted: Platform | None,
    on_close: Callable[[], None] | None = None,
) -> ManifestImage:
    if not files.exists("index.json"):
        raise DistillError(
            f"{files.where('index.json')} does not exist: this is not an OCI image layout",
            hint="give a directory or archive written by skopeo, podman, umoci or distill",
        )
    where = files.where("index.json")
    chosen = _select_ref(_index_entries(files), ref, where)
    store = LayoutStore(files, on_close)
    if len(chosen) == 1:
        return ManifestImage(store, chosen[0], name=name, platform=wanted)
    if all(d.media_type in MANIFEST_TYPES and d.platform for d in chosen):
        # index.json itself lists one manifest per platform: it is the index to choose from.
        return ManifestImage(store, chosen, name=name, platform=wanted)
    names = sorted({r for d in chosen for r in _refs(d)})
    store.close()
    raise DistillError(
        f"{where} holds {len(chosen)} images; name one",
        hint=f"write {name}:REF with REF one of: {', '.join(names)}"
        if names
        else "the images have no names; copy the one you want to its own layout",
    )


# --- docker archives ---------------------------------------------------------------------


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
        self._config: ImageConfig = parse_config(raw, digest, where)
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

    def close(self) -> None:
        self._layer_files.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def _open_docker_archive(
    files: TarFiles,
    ref: str | None,
    name: str,
    wanted: Platform | None,
    on_close: Callable[[], None] | None = None,
) -> ManifestImage | DockerArchiveImage:
    if not files.exists("manifest.json"):
        if files.exists("index.json"):  # an OCI archive under the other name
            return _open_layout(files, ref, name, wanted, on_close)
        raise DistillError(
            f"{files.path} is a tar archive but not an image: "
            "it has neither manifest.json nor index.json",
            hint="give an archive written by docker save, podman save or skopeo",
        )
    entry = _docker_entry(files, ref)
    config_digest = _hex_of(str(entry["Config"]))
    if files.exists("index.json") and config_digest is not None:
        top = _oci_manifest_for(files, config_digest)
        if top is not None:  # docker 25+: read it as OCI, with the real manifest
            return ManifestImage(LayoutStore(files, on_close), top, name=name, platform=wanted)
    return DockerArchiveImage(files, entry, name=name, platform=wanted, on_close=on_close)


# --- podman's storage --------------------------------------------------------------------


# What podman takes as an image: a name[:tag][@digest] or an ID. Checked so that no text
# from the command line reaches podman as anything else (an option, a second argument).
_STORAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,511}")


def check_storage_name(image: str) -> None:
    if not _STORAGE_NAME.fullmatch(image):
        raise DistillError(
            f"containers-storage:{image!r} does not name an image",
            hint="write containers-storage:NAME[:TAG] or an image ID, as `podman images` shows",
        )


def podman_save(image: str) -> Path:
    """Save ``image`` from podman's storage to a docker-archive in a new temporary
    directory, which the caller removes."""
    import shutil  # these two only here: local archives open without loading them
    import subprocess

    podman = shutil.which("podman")
    if podman is None:
        raise DistillError(
            "containers-storage: needs podman, which is not installed",
            hint="install podman, or inspect an archive made with podman save or docker save",
        )
    check_storage_name(image)
    tmp = tempfiles.spool_mkdtemp("distill-inspect")
    out = tmp / "image.tar"
    try:
        # "--": a name is never an option, whatever check_storage_name lets through.
        done = subprocess.run(
            [podman, "image", "save", "--format", "docker-archive", "-o", str(out), "--", image],
            capture_output=True,
            text=True,
            check=False,
            # podman stages the archive in $TMPDIR: inside ours, it goes when ours does.
            env={**os.environ, "TMPDIR": str(tmp)},
        )
    except BaseException:  # SIGTERM or Ctrl-C while podman writes: no half-saved image left
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        lines = done.stderr.strip().splitlines()
        raise DistillError(
            f"podman could not save {image}: {lines[-1] if lines else done.returncode}",
            hint="check the name with `podman images`",
        )
    return tmp


# --- dispatch ----------------------------------------------------------------------------


def detect_path(text: str) -> SourceRef:
    """A path without a transport: a layout directory, or an archive (either kind)."""
    path = Path(text)
    check_input_path(path)
    if path.is_dir():
        if (path / "index.json").is_file() or (path / "oci-layout").is_file():
            return SourceRef(SourceTransport.OCI, text)
        raise DistillError(
            f"{path} is a directory but not an OCI image layout (it has no index.json)",
            hint="give oci:DIR for a layout, or an image archive",
        )
    if path.is_file():
        return SourceRef(SourceTransport.DOCKER_ARCHIVE, text)  # falls back to OCI inside
    raise DistillError(
        f"{text!r} is neither a file, a directory nor an image reference",
        hint="write oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE, "
        "containers-storage:NAME or docker://HOST/REPO:TAG",
    )


def open_local(
    ref: SourceRef, name: str, wanted: Platform | None
) -> ManifestImage | DockerArchiveImage:
    path = Path(ref.path)
    check_input_path(path)
    if ref.transport is SourceTransport.OCI:
        if not path.is_dir():
            raise DistillError(f"{path} is not a directory", hint="oci: names a layout directory")
        return _open_layout(DirFiles(path), ref.ref, name, wanted)
    if ref.transport is SourceTransport.CONTAINERS_STORAGE:
        import shutil

        tmp = podman_save(ref.path)
        try:
            files = TarFiles(tmp / "image.tar")
            return _open_docker_archive(
                files, None, name, wanted, lambda: shutil.rmtree(tmp, ignore_errors=True)
            )
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if not path.is_file():
        raise DistillError(
            f"{path} does not exist" if not path.exists() else f"{path} is not a file",
            hint=f"{ref.transport}: names an archive file",
        )
    files = TarFiles(path)
    if ref.transport is SourceTransport.OCI_ARCHIVE:
        if not files.exists("index.json") and files.exists("manifest.json"):
            raise DistillError(
                f"{path} has no index.json: it is not an OCI archive",
                hint=f"it looks like a docker archive: write docker-archive:{path}",
            )
        return _open_layout(files, ref.ref, name, wanted)
    return _open_docker_archive(files, ref.ref, name, wanted)
