"""Small images for the analyser tests, built with distill's own layer and layout writers.

``fixture_image`` has three layers (gzip, zstd, uncompressed) whose effect is worked out by
hand in the tests: a file overwritten twice, a whiteout, an opaque directory, a busybox with
symlink and hardlink applets, setuid/setgid files, world-writable paths, scripts and ELFs.
``raw_layer`` writes a layer from tar members given as they are, for cases distill's writer
would never produce (missing parent entries, odd orders, broken hardlinks).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from contextlib import AbstractContextManager
from pathlib import Path

from distill import transports
from distill.context import Access
from distill.image.compose import compose_image
from distill.image.config import HistoryEntry, ImageConfigSpec
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, LayerBlob, write_layer
from distill.image.mediatypes import MEDIA_TYPE_LAYER
from distill.image.model import Image as BuiltImage
from distill.image.partial import ImageSource
from distill.image.platform import Platform
from distill.transports._write import write_oci_dir

SDE = 1_700_000_000
OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'
OS_RELEASE += b"VERSION_CODENAME=trixie\n"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"


def elf(size: int) -> bytes:
    """Bytes that start like a 64-bit little-endian ELF file."""
    head = b"\x7fELF\x02\x01\x01" + bytes(57)
    return (head + b"\x90" * size)[:size]


def file(path: str, data: bytes, mode: int = 0o644) -> FsEntry:
    return FsEntry(path, EntryKind.FILE, mode, content=data)


def symlink(path: str, target: str) -> FsEntry:
    return FsEntry(path, EntryKind.SYMLINK, 0o777, linkname=target)


def hardlink(path: str, target: str) -> FsEntry:
    return FsEntry(path, EntryKind.HARDLINK, 0o755, linkname=target)


def directory(path: str, mode: int = 0o755) -> FsEntry:
    return FsEntry(path, EntryKind.DIR, mode)


LAYER0 = [
    file("bin/busybox", elf(1000), 0o755),
    symlink("bin/sh", "busybox"),
    symlink("bin/ash", "/bin/busybox"),
    hardlink("bin/ls", "bin/busybox"),
    file("usr/bin/bash", elf(200), 0o755),
    file("usr/bin/dpkg", elf(150), 0o755),
    file("usr/bin/apt-get", elf(50), 0o755),
    file("usr/bin/pip3.12", b"#!/usr/bin/python3\n", 0o755),
    file("usr/bin/su", elf(30), 0o4755),
    file("usr/bin/wall", elf(20), 0o2755),
    file("usr/local/bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755),
    file("usr/share/data.bin", b"DATA" * 5, 0o755),
    file("usr/lib/os-release", OS_RELEASE),
    symlink("etc/os-release", "../usr/lib/os-release"),
    file("etc/debian_version", b"13.0\n"),
    file("etc/passwd", PASSWD),
    directory("data", 0o777),
    directory("tmp", 0o1777),
    file("var/www/upload.txt", b"x" * 10, 0o666),
    file("app/big.bin", b"A" * 1000),
    file("app/old.log", b"L" * 300),
    file("cache/a", b"a" * 400),
    file("cache/sub/b", b"b" * 500),
    file("notes/readme", b"r" * 10),
]
LAYER1 = [
    file("app/big.bin", b"B" * 800),
    file("app/.wh.old.log", b""),
    file("usr/bin/.wh.apt-get", b""),
    file(".wh.notthere", b""),
]
LAYER2 = [
    file("cache/.wh..wh..opq", b""),
    file("cache/new", b"n" * 50),
    file("app/big.bin", b"C" * 700),
]
LAYERS = (LAYER0, LAYER1, LAYER2)
HISTORY = [
    HistoryEntry("layer one"),
    HistoryEntry("ENV A=1", empty_layer=True),
    HistoryEntry("layer two"),
    HistoryEntry("layer three"),
]
# Bytes of regular files each layer adds (whiteout markers are not files).
ADDED = [
    sum(len(e.read_bytes()) for e in layer if e.kind is EntryKind.FILE and ".wh." not in e.path)
    for layer in LAYERS
]


def fixture_layers(
    blob_dir: Path,
    compressions: tuple[Compression, ...] = (Compression.GZIP, Compression.ZSTD, Compression.NONE),
) -> list[LayerBlob]:
    return [
        write_layer(entries, blob_dir, compression=c, source_date_epoch=SDE)
        for entries, c in zip(LAYERS, compressions, strict=True)
    ]


def fixture_image(
    blob_dir: Path,
    *,
    platform: str = "linux/amd64",
    user: str = "app",
    compressions: tuple[Compression, ...] = (Compression.GZIP, Compression.ZSTD, Compression.NONE),
) -> BuiltImage:
    spec = ImageConfigSpec(
        entrypoint=("/usr/local/bin/run.sh",),
        cmd=("--serve",),
        env=("PATH=/usr/bin:/bin", "LANG=C.UTF-8"),
        user=user,
        workdir="/app",
        exposed_ports=("8080",),
    )
    return compose_image(
        spec,
        Platform.parse(platform),
        fixture_layers(blob_dir, compressions),
        source_date_epoch=SDE,
        history=HISTORY,
    )


def simple_image(
    blob_dir: Path,
    entries: list[FsEntry],
    platform: str = "linux/amd64",
    compression: Compression = Compression.GZIP,
) -> BuiltImage:
    layer = write_layer(entries, blob_dir, compression=compression, source_date_epoch=SDE)
    spec = ImageConfigSpec(entrypoint=("/bin/true",))
    return compose_image(spec, Platform.parse(platform), [layer], source_date_epoch=SDE)


# --- raw layers ----------------------------------------------------------------------------


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def member(
    name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    info.mtime = SDE
    return info


def raw_layer(blob_dir: Path, data: bytes, *, tar: bytes | None = None) -> LayerBlob:
    """A layer blob of exactly ``data`` (uncompressed), described as if it held ``tar``
    (default: ``data`` itself), so a test can store damaged bytes under honest digests."""
    blob_dir.mkdir(parents=True, exist_ok=True)
    described = data if tar is None else tar
    digest = hashlib.sha256(described).hexdigest()
    path = blob_dir / digest
    path.write_bytes(data)
    return LayerBlob(
        digest=f"sha256:{digest}",
        diff_id=f"sha256:{digest}",
        size=len(described),
        media_type=MEDIA_TYPE_LAYER,
        uncompressed_size=len(described),
        file_count=0,
        path=path,
    )


def raw_image(blob_dir: Path, layers: list[LayerBlob]) -> BuiltImage:
    return compose_image(
        ImageConfigSpec(), Platform.parse("linux/amd64"), layers, source_date_epoch=SDE
    )


# --- the docker 25+ archive format ---------------------------------------------------------


def write_docker25_archive(image: BuiltImage, path: Path, tag: str, work: Path) -> None:
    """What ``docker save`` writes since 25: an OCI layout (blobs as stored, an index.json
    naming the image for containerd) plus ``manifest.json`` pointing into ``blobs/``."""
    layout = work / "layout"
    write_oci_dir(image, layout, ref=tag.rsplit(":", 1)[-1])
    index = json.loads((layout / "index.json").read_bytes())
    index["manifests"][0]["annotations"]["io.containerd.image.name"] = tag
    config_hex = image.config_descriptor.hex
    manifest = [
        {
            "Config": f"blobs/sha256/{config_hex}",
            "RepoTags": [tag],
            "Layers": [f"blobs/sha256/{b.digest.removeprefix('sha256:')}" for b in image.layers],
        }
    ]
    with tarfile.open(path, "w") as tar:
        for name in sorted(p.relative_to(layout).as_posix() for p in layout.rglob("*")):
            if name == "index.json":
                continue
            tar.add(layout / name, arcname=name, recursive=False)
        for name, data in (
            ("index.json", json.dumps(index).encode()),
            ("manifest.json", json.dumps(manifest).encode()),
            ("repositories", json.dumps({tag.rsplit(":", 1)[0]: {}}).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# --- memory ----------------------------------------------------------------------------------

_PRINT_PEAK = (  # appended to a measured script: its last words on stderr
    "\nimport sys as _sys\n"
    "_sys.stderr.write('\\nVmHWM ' + open('/proc/self/status').read()"
    ".split('VmHWM:')[1].split()[0])\n"
)


def run_measuring_peak(script: str, *args: str | Path) -> tuple[str, int]:
    """Run ``script`` in a fresh Python; its stdout and its peak RSS in KiB.

    The peak is the process's own VmHWM, not getrusage's ru_maxrss: that survives execve,
    so a child reports its parent's peak when that is higher (a pytest worker's, late in a
    run)."""
    done = subprocess.run(
        [sys.executable, "-c", script + _PRINT_PEAK, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, int(done.stderr.rsplit("VmHWM ", 1)[1])


def access(
    platform: str | None = None, tls_verify: bool = True, credentials: object = None
) -> Access:
    """The ``Access`` of the keyword arguments tests find handy."""
    return Access(
        tls_verify=tls_verify,
        credentials=credentials,  # type: ignore[arg-type]
        platform=Platform.parse(platform) if platform else None,
    )


def opened(text: str, **settings: object) -> AbstractContextManager[ImageSource]:
    return transports.opened(text, access(**settings))  # type: ignore[arg-type]


def open_source(text: str, **settings: object) -> ImageSource:
    return transports.open_source(text, access(**settings))  # type: ignore[arg-type]
