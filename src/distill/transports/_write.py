"""Writing an image (any ``Image`` or ``Index``) as an OCI layout or a docker archive.

The manifest, config and index are written as the exact bytes they were read or built as,
and compressed layers are copied as stored, so their digests are kept; only docker-archive
changes what it must (see docs/copy.md).

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
``docker-archive:FILE[:NAME:TAG]``
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

import errno
import io
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import IO, BinaryIO, cast

from distill import tempfiles
from distill.errors import DistillError
from distill.fsutil import atomic_path, output_error, output_layout
from distill.image.compression import CHUNK
from distill.image.descriptor import Descriptor
from distill.image.digest import canonical_json
from distill.image.layer import Layer
from distill.image.mediatypes import MEDIA_TYPE_INDEX
from distill.image.model import Image, Index, Top
from distill.transports import Progress

REF_NAME = "org.opencontainers.image.ref.name"
DEFAULT_REF = "latest"
OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})


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


def is_oci_ref(ref: str) -> bool:
    return _OCI_REF.fullmatch(ref) is not None


def check_oci_ref(ref: str) -> str:
    if not is_oci_ref(ref):
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


# --- blobs ---------------------------------------------------------------------------------


def images_of(top: Top) -> list[Image]:
    return list(top.images()) if isinstance(top, Index) else [top]


def layer_digests(top: Top) -> tuple[str, ...]:
    """The layer blobs a local destination of ``top`` holds (what it wrote)."""
    return tuple(sorted({layer.digest for image in images_of(top) for layer in image.layers}))


def _walk(top: Top, found: dict[str, bytes | Layer]) -> None:
    if isinstance(top, Index):
        found[top.descriptor.hex] = top.index_bytes
        for _, child in top.children():
            _walk(child, found)
        return
    found[top.config_descriptor.hex] = top.config_bytes
    found[top.descriptor.hex] = top.manifest_bytes
    for layer in top.layers:
        found[layer.digest.removeprefix("sha256:")] = layer


def _blobs(target: Top) -> list[tuple[str, bytes | Layer]]:
    """Every blob of the layout as (hex digest, content), sorted by digest, each once."""
    found: dict[str, bytes | Layer] = {}
    _walk(target, found)
    return sorted(found.items())


def _index_json(target: Top, ref: str) -> bytes:
    top = target.descriptor
    entry = Descriptor(
        top.media_type, top.digest, top.size, top.platform, annotations={REF_NAME: ref}
    )
    return canonical_json(
        {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": [entry.to_json()]}
    )


def _copy_stream(source: BinaryIO, out: IO[bytes], progress: Progress | None = None) -> int:
    total = 0
    with source:
        while chunk := source.read(CHUNK):
            out.write(chunk)
            total += len(chunk)
            if progress is not None:
                progress(len(chunk))
    return total


class _Counted(io.RawIOBase):
    """``source``, telling ``progress`` how many bytes each read returned."""

    def __init__(self, source: BinaryIO, progress: Progress | None) -> None:
        super().__init__()
        self._source = source
        self._progress = progress

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if self._progress is not None and data:
            self._progress(len(data))
        return data

    def readinto(self, buffer: object) -> int:
        view = memoryview(buffer).cast("B")  # type: ignore[arg-type]
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._source.close()
        finally:
            super().close()


# --- oci:DIR -------------------------------------------------------------------------------


def _fill_layout(root: Path, target: Top, ref: str, progress: Progress | None) -> None:
    (root / "oci-layout").write_bytes(OCI_LAYOUT)
    blob_dir = root / "blobs" / "sha256"
    blob_dir.mkdir(parents=True)
    for hex_digest, content in _blobs(target):
        if isinstance(content, bytes):
            (blob_dir / hex_digest).write_bytes(content)
        else:
            with (blob_dir / hex_digest).open("wb") as out:
                _copy_stream(content.open_compressed(), out, progress)
    (root / "index.json").write_bytes(_index_json(target, ref))


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the kernel or filesystem cannot."""
    import ctypes  # only to replace an existing layout: kept off every run's start-up

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


def write_oci_dir(
    target: Top, path: Path, *, ref: str = DEFAULT_REF, progress: Progress | None = None
) -> Descriptor:
    """Write an OCI image layout at ``path``; returns the descriptor ``index.json`` lists."""
    check_oci_ref(ref)
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
        _fill_layout(tmp, target, ref, progress)
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


def _add_stream(tar: tarfile.TarFile, name: str, source: BinaryIO, size: int, mtime: int) -> None:
    """A member of ``size`` bytes from ``source``, a checking reader: read to its end,
    so that a blob longer, shorter or other than its descriptor says is refused."""
    with source:
        try:
            tar.addfile(_member(name, size, mtime), source)
        except OSError:
            # tarfile's "unexpected end of data": a short blob, whose reader says what is
            # wrong with it at its end. Any other OSError is the destination's.
            while source.read(CHUNK):
                pass
            raise
        if source.read(1):  # the reader raises first when there is more than ``size``
            raise AssertionError("unreachable: a checked blob is longer than its size")


def _tar_size(layer: Layer) -> int | None:
    if layer.uncompressed_size is not None:
        return layer.uncompressed_size
    if layer.is_uncompressed and layer.digest == layer.diff_id:
        return layer.size
    return None


def _add_uncompressed_layer(
    tar: tarfile.TarFile, name: str, layer: Layer, mtime: int, spool_dir: Path
) -> None:
    """The tar inside ``layer``, decompressed on the fly and checked against its diff_id.
    A tar member's size comes first, so a layer whose tar size nobody recorded is
    decompressed to a temporary file beside the archive first."""
    size = _tar_size(layer)
    if size is not None:
        _add_stream(tar, name, layer.open_uncompressed(), size, mtime)
        return
    with tempfile.TemporaryFile(dir=spool_dir) as spool:
        size = _copy_stream(layer.open_uncompressed(), spool)
        spool.seek(0)
        tar.addfile(_member(name, size, mtime), spool)


def write_oci_archive(
    target: Top,
    path: Path,
    *,
    ref: str = DEFAULT_REF,
    source_date_epoch: int = 0,
    progress: Progress | None = None,
) -> Descriptor:
    """Write the OCI layout as a tar at ``path``; every member's mtime is the SDE."""
    check_oci_ref(ref)
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
                source = _Counted(content.open_compressed(), progress)
                _add_stream(tar, name, cast(BinaryIO, source), content.size, mtime)
    return target.descriptor


def write_docker_archive(
    target: Top,
    path: Path,
    *,
    tag: str | None = None,
    source_date_epoch: int = 0,
    progress: Progress | None = None,
) -> Descriptor:
    """Write a ``docker save`` archive of one image at ``path``; returns the config's
    descriptor (its digest is the image ID docker and podman show)."""
    images = images_of(target)
    if len(images) != 1:
        platforms = ", ".join(str(i.platform) for i in images)
        raise DistillError(
            f"a docker-archive holds one platform, but this image has {len(images)} ({platforms})",
            hint="pick one with --platform, or write oci: or oci-archive:, which hold them all",
        )
    image = images[0]
    tags = [docker_tag(tag)] if tag else []
    config = image.config_descriptor
    layer_names = [f"{layer.diff_id.removeprefix('sha256:')}.tar" for layer in image.layers]
    manifest = canonical_json(
        [{"Config": f"{config.hex}.json", "RepoTags": tags, "Layers": layer_names}]
    )
    with atomic_path(path) as tmp, tmp.open("wb") as out, _archive(out) as tar:
        mtime = source_date_epoch
        _add_bytes(tar, "manifest.json", manifest, mtime)
        _add_bytes(tar, f"{config.hex}.json", image.config_bytes, mtime)
        written: set[str] = set()
        for name, layer in zip(layer_names, image.layers, strict=True):
            if name not in written:  # the same layer twice in one image: once is enough
                written.add(name)
                _add_uncompressed_layer(tar, name, layer, mtime, tmp.parent)
                if progress is not None:
                    progress(layer.size)
    return Descriptor(config.media_type, config.digest, config.size)
