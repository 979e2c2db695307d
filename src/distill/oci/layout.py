"""Where a built image goes: destinations named like skopeo's transports, and their writers.

``oci:DIR[:REF]``
    An OCI image layout directory. ``REF`` (default ``latest``) becomes the
    ``org.opencontainers.image.ref.name`` annotation in ``index.json``, which is how
    skopeo and umoci find the image. The layout is built in a temporary sibling directory
    and then swapped in: a new ``DIR`` appears whole; an existing ``DIR`` is replaced in one
    atomic exchange (``renameat2(RENAME_EXCHANGE)``; where the kernel or filesystem lacks
    it, by two renames, so ``DIR`` is briefly absent but never half-written). Only an
    empty directory or one holding nothing but a layout's files is replaced (see
    ``fsutil.output_layout``); anything else is refused, and the new layout holds only
    this image (other refs of an old layout are not kept).
``oci-archive:FILE[:REF]``
    The same layout as an uncompressed tar with fixed order, owners and mtimes, so equal
    images give byte-identical archives.
``docker-archive:FILE[:TAG]``
    The ``docker save`` format, for ``docker load`` and ``podman load``: ``manifest.json``,
    the config as ``<hex>.json`` and each layer as an *uncompressed* ``<diff_id hex>.tar``.
    Uncompressed because that is what ``docker save`` writes and what every ``docker load``
    accepts (zstd layers are not), and because readers address these layers by diff_id
    anyway (skopeo decompresses any compressed one to match it), so compressing here only
    costs time. One platform only: the format has no place for an index.

Archives are written to a temporary sibling file and renamed over ``FILE``, which must be a
regular file or absent (``fsutil.output_file``: a symlink to a regular file replaces that
file; devices, fifos, sockets and directories are refused). Missing parent
directories are created. Blobs are checked against their digests while they are copied, so
a damaged cache cannot produce an image whose digests lie.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import io
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from distill import tempfiles
from distill.errors import DistillError
from distill.fsutil import atomic_path, output_error, output_layout
from distill.oci.image import (
    MEDIA_TYPE_INDEX,
    BuiltImage,
    Descriptor,
    ImageIndex,
    canonical_json,
)
from distill.oci.layer import CHUNK, LayerBlob, decompressed

REF_NAME = "org.opencontainers.image.ref.name"
DEFAULT_REF = "latest"
OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})

Target = BuiltImage | ImageIndex


class Transport(StrEnum):
    OCI = "oci"
    OCI_ARCHIVE = "oci-archive"
    DOCKER_ARCHIVE = "docker-archive"


@dataclass(frozen=True, slots=True)
class Destination:
    transport: Transport
    path: Path
    ref: str | None = None  # oci: the ref name; docker-archive: the repo tag

    def __str__(self) -> str:
        return f"{self.transport}:{self.path}" + (f":{self.ref}" if self.ref else "")


# The ref grammar of the OCI image layout spec (annotations.md).
_OCI_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_OCI_REF = re.compile(rf"{_OCI_COMPONENT}(?:/{_OCI_COMPONENT})*")
# A docker reference with an optional tag and no digest (docker/distribution's grammar).
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOCKER_PATH = re.compile(rf"{_PATH_PART}(?:/{_PATH_PART})*")
_DOCKER_REF = re.compile(
    rf"(?P<name>(?:(?P<host>{_DOMAIN})/)?{_PATH_PART}(?:/{_PATH_PART})*)(?::(?P<tag>[\w][\w.-]{{0,127}}))?"
)


def _check_oci_ref(ref: str) -> str:
    if not _OCI_REF.fullmatch(ref):
        raise DistillError(
            f"{ref!r} is not a valid OCI layout reference",
            hint="use letters, digits and - . _ : @ + / between them, e.g. 'latest' or 'app:1.0'",
        )
    return ref


def docker_tag(ref: str) -> str:
    """``ref`` as a repo tag for a docker-archive: checked, with ``:latest`` if untagged."""
    match = _DOCKER_REF.fullmatch(ref)
    valid = match is not None and len(match.group("name")) <= 255
    if match is not None and valid and match.group("host"):
        host = match.group("host")
        # As docker decides: a first component is a host only if it looks like one;
        # otherwise it belongs to the repository path, which must be lower case.
        if "." not in host and ":" not in host and host != "localhost":
            valid = _DOCKER_PATH.fullmatch(match.group("name")) is not None
    if match is None or not valid:
        raise DistillError(
            f"{ref!r} is not a docker image name with an optional tag",
            hint="write NAME[:TAG] in lower case, e.g. 'example/app:1.0' (digests are not tags)",
        )
    return ref if match.group("tag") else f"{ref}:latest"


def parse_destination(text: str) -> Destination:
    """``oci:DIR[:REF]``, ``oci-archive:FILE[:REF]`` or ``docker-archive:FILE[:TAG]``.

    As with skopeo, the path ends at its first ``:``, so paths cannot contain one.
    """
    name, sep, rest = text.partition(":")
    try:
        transport = Transport(name)
    except ValueError:
        transport = None
    if not sep or transport is None:
        raise DistillError(
            f"not an output destination: {text!r}",
            hint="write oci:DIR[:REF], oci-archive:FILE[:REF] or docker-archive:FILE[:TAG]",
        )
    path, sep, ref = rest.partition(":")
    if not path:
        raise DistillError(f"{text!r} names no path", hint=f"write {name}:PATH")
    if sep and not ref:
        raise DistillError(
            f"{text!r} ends with ':' but names no reference",
            hint=f"write {name}:{path}:REF, or leave out the ':'",
        )
    if not ref:
        return Destination(transport, Path(path))
    if transport is Transport.DOCKER_ARCHIVE:
        return Destination(transport, Path(path), docker_tag(ref))
    return Destination(transport, Path(path), _check_oci_ref(ref))


# --- blobs ---------------------------------------------------------------------------------


def _images(target: Target) -> tuple[BuiltImage, ...]:
    return target.images if isinstance(target, ImageIndex) else (target,)


def _blobs(target: Target) -> list[tuple[str, bytes | LayerBlob]]:
    """Every blob of the layout as (hex digest, content), sorted by digest, each once."""
    found: dict[str, bytes | LayerBlob] = {}
    if isinstance(target, ImageIndex):
        found[target.descriptor.hex] = target.index
    for image in _images(target):
        found[image.config_descriptor.hex] = image.config
        found[image.descriptor.hex] = image.manifest
        for layer in image.layers:
            found[layer.digest.removeprefix("sha256:")] = layer
    return sorted(found.items())


def _index_json(target: Target, ref: str) -> bytes:
    top = target.descriptor
    entry = Descriptor(
        top.media_type, top.digest, top.size, top.platform, annotations={REF_NAME: ref}
    )
    return canonical_json(
        {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": [entry.to_json()]}
    )


def _damaged(blob: LayerBlob, what: str) -> DistillError:
    return DistillError(
        f"layer blob {blob.path} does not match its {what}",
        hint="the cached layer is damaged: delete it (or the cache) and build again",
    )


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _CheckedReader:
    """Reads a blob (or the tar inside it) for tarfile or a copy, hashing it to compare
    with ``digest`` at the end. Read failures are the blob's: they say it is damaged."""

    def __init__(self, stream: _Readable, blob: LayerBlob, *, tar_inside: bool) -> None:
        self._stream = stream
        self.blob = blob
        self._hash = hashlib.sha256()
        self.what = "diff_id" if tar_inside else "digest"
        self.expected_digest = blob.diff_id if tar_inside else blob.digest
        self.expected_size = blob.uncompressed_size if tar_inside else blob.size
        self.size = 0
        self.short = False  # a read returned less than asked: the stream ended

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size)
        except Exception as exc:  # corrupt compressed data: each library has its own error
            raise _damaged(self.blob, self.what) from exc
        self._hash.update(data)
        self.size += len(data)
        if 0 <= len(data) < size:
            self.short = True
        return data

    def check(self) -> None:
        if (
            self.read(1)
            or self.size != self.expected_size
            or f"sha256:{self._hash.hexdigest()}" != self.expected_digest
        ):
            raise _damaged(self.blob, self.what)


@contextlib.contextmanager
def _open_blob(blob: LayerBlob) -> Iterator[BinaryIO]:
    try:
        handle = blob.path.open("rb")
    except OSError as exc:
        raise DistillError(
            f"cannot read layer blob {blob.path}: {exc.strerror or exc}",
            hint="the cached layer went missing: build again",
        ) from exc
    with handle:
        yield handle


def _copy_blob(blob: LayerBlob, out: IO[bytes]) -> None:
    with _open_blob(blob) as handle:
        reader = _CheckedReader(handle, blob, tar_inside=False)
        while chunk := reader.read(CHUNK):
            out.write(chunk)
        reader.check()


# --- oci:DIR -------------------------------------------------------------------------------


def _fill_layout(root: Path, target: Target, ref: str) -> None:
    (root / "oci-layout").write_bytes(OCI_LAYOUT)
    blob_dir = root / "blobs" / "sha256"
    blob_dir.mkdir(parents=True)
    for hex_digest, content in _blobs(target):
        if isinstance(content, bytes):
            (blob_dir / hex_digest).write_bytes(content)
        else:
            with (blob_dir / hex_digest).open("wb") as out:
                _copy_blob(content, out)
    (root / "index.json").write_bytes(_index_json(target, ref))


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the kernel or filesystem cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = int(renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE))
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _install_dir(tmp: Path, path: Path) -> None:
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    output_layout(path)  # checked again: only a layout (or nothing) may go away
    if _exchange(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)  # now the old layout; the new one is in place
        return
    old = tempfiles.make_dir(path.parent, tempfiles.stem_for(path.name))
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except OSError:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_oci_dir(target: Target, path: Path, *, ref: str = DEFAULT_REF) -> Descriptor:
    """Write an OCI image layout at ``path``; returns the descriptor ``index.json`` lists."""
    _check_oci_ref(ref)
    output_layout(path)  # refuse before doing any work
    stem = tempfiles.stem_for(path.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfiles.sweep(path.parent, [stem])
        tmp = tempfiles.make_dir(path.parent, stem)
    except OSError as exc:
        raise output_error(path, exc) from exc
    try:
        tmp.chmod(0o755)
        _fill_layout(tmp, target, ref)
        _install_dir(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise output_error(path, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target.descriptor


# --- archives ------------------------------------------------------------------------------


def _member(name: str, size: int, mtime: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    return info


def _archive(out: IO[bytes]) -> tarfile.TarFile:
    return tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    tar.addfile(_member(name, len(data), mtime), io.BytesIO(data))


def _add_checked(tar: tarfile.TarFile, name: str, reader: _CheckedReader, mtime: int) -> None:
    try:
        tar.addfile(_member(name, reader.expected_size, mtime), reader)
    except OSError as exc:
        # tarfile's "unexpected end of data": the blob is short. Any other OSError is the
        # destination's failure, for the caller to report.
        if not reader.short:
            raise
        raise _damaged(reader.blob, reader.what) from exc
    reader.check()


def _add_layer(tar: tarfile.TarFile, name: str, blob: LayerBlob, mtime: int) -> None:
    with _open_blob(blob) as handle:
        _add_checked(tar, name, _CheckedReader(handle, blob, tar_inside=False), mtime)


def _add_uncompressed_layer(tar: tarfile.TarFile, name: str, blob: LayerBlob, mtime: int) -> None:
    """The tar inside ``blob``, decompressed on the fly and checked against its diff_id."""
    with _open_blob(blob) as handle, decompressed(handle, blob.compression) as stream:
        _add_checked(tar, name, _CheckedReader(stream, blob, tar_inside=True), mtime)


def write_oci_archive(
    target: Target, path: Path, *, ref: str = DEFAULT_REF, source_date_epoch: int = 0
) -> Descriptor:
    """Write the OCI layout as a tar at ``path``; every member's mtime is the SDE."""
    _check_oci_ref(ref)
    with atomic_path(path) as tmp, tmp.open("wb") as out, _archive(out) as tar:
        mtime = source_date_epoch
        _add_bytes(tar, "oci-layout", OCI_LAYOUT, mtime)
        _add_bytes(tar, "index.json", _index_json(target, ref), mtime)
        tar.addfile(_member("blobs", 0, mtime, directory=True))
        tar.addfile(_member("blobs/sha256", 0, mtime, directory=True))
        for hex_digest, content in _blobs(target):
            name = f"blobs/sha256/{hex_digest}"
            if isinstance(content, bytes):
                _add_bytes(tar, name, content, mtime)
            else:
                _add_layer(tar, name, content, mtime)
    return target.descriptor


def write_docker_archive(
    target: Target, path: Path, *, tag: str | None = None, source_date_epoch: int = 0
) -> Descriptor:
    """Write a ``docker save`` archive of one image at ``path``; returns the config's
    descriptor (its digest is the image ID docker and podman show)."""
    images = _images(target)
    if len(images) != 1:
        platforms = ", ".join(str(i.platform) for i in images)
        raise DistillError(
            f"a docker-archive holds one platform, but this image has {len(images)} ({platforms})",
            hint="pick one with --platform, or write oci: or oci-archive:, which hold them all",
        )
    image = images[0]
    tags = [docker_tag(tag)] if tag else []
    config = image.config_descriptor
    layer_names = [f"{b.diff_id.removeprefix('sha256:')}.tar" for b in image.layers]
    manifest = canonical_json(
        [{"Config": f"{config.hex}.json", "RepoTags": tags, "Layers": layer_names}]
    )
    with atomic_path(path) as tmp, tmp.open("wb") as out, _archive(out) as tar:
        mtime = source_date_epoch
        _add_bytes(tar, "manifest.json", manifest, mtime)
        _add_bytes(tar, f"{config.hex}.json", image.config, mtime)
        written: set[str] = set()
        for name, blob in zip(layer_names, image.layers, strict=True):
            if name not in written:  # the same layer twice in one image: once is enough
                written.add(name)
                _add_uncompressed_layer(tar, name, blob, mtime)
    return config


def write_image(target: Target, dest: Destination, *, source_date_epoch: int = 0) -> Descriptor:
    """Write ``target`` to ``dest``. The descriptor returned is the manifest's or index's,
    except for docker-archive, which has neither: there it is the config's (the image ID)."""
    if dest.transport is Transport.OCI:
        return write_oci_dir(target, dest.path, ref=dest.ref or DEFAULT_REF)
    if dest.transport is Transport.OCI_ARCHIVE:
        return write_oci_archive(
            target, dest.path, ref=dest.ref or DEFAULT_REF, source_date_epoch=source_date_epoch
        )
    return write_docker_archive(
        target, dest.path, tag=dest.ref, source_date_epoch=source_date_epoch
    )
