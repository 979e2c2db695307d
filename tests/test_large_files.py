"""Large files an analysis keeps (fat jars, a big dpkg status): on disk, not in memory.

The filesystem view spools every kept file above ``SPOOL_ABOVE`` to a temporary file that
lives as long as the view; the catalog reads archives from there (nested ones too) and
reads text databases back whole. The memory test runs ``distill sbom`` on a 200 MiB jar
and reads the process's own peak (VmHWM).
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from analyze_images import file, simple_image
from distill.analyze.catalog import catalog_view
from distill.analyze.fsview import SPOOL_ABOVE, SPOOL_HEAD, build_fsview
from distill.analyze.source import opened
from distill.oci.layer import Compression
from distill.oci.layout import write_oci_dir

MiB = 1 << 20


def noise(size: int) -> bytes:
    """Incompressible and reproducible."""
    block = b"".join(hashlib.sha256(bytes([i, j])).digest() for i in range(32) for j in range(32))
    return (block * (size // len(block) + 1))[:size]


def digest(data: bytes | None) -> str:
    return "none" if data is None else hashlib.sha256(data).hexdigest()


def pom(group: str, artifact: str, version: str) -> bytes:
    return f"groupId={group}\nartifactId={artifact}\nversion={version}\n".encode()


def write_jar(out: io.BufferedIOBase, artifact: str, filler: int, **nested: bytes) -> None:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        properties = pom("org.example", artifact, "1.0")
        archive.writestr(f"META-INF/maven/org.example/{artifact}/pom.properties", properties)
        for name, data in nested.items():
            archive.writestr(name, data)
        with archive.open("filler.bin", "w", force_zip64=True) as target:
            left = filler
            chunk = noise(MiB)
            while left > 0:
                target.write(chunk[: min(left, MiB)])
                left -= MiB


def jar_bytes(artifact: str, filler: int, **nested: bytes) -> bytes:
    buffer = io.BytesIO()
    write_jar(buffer, artifact, filler, **nested)
    return buffer.getvalue()


def test_large_kept_files_are_spooled_and_removed_with_the_view(tmp_path: Path) -> None:
    data = noise(SPOOL_ABOVE + 3 * MiB)
    built = simple_image(tmp_path / "blobs", [file("big.bin", data), file("small", b"s")])
    write_oci_dir(built, tmp_path / "layout")
    with opened(str(tmp_path / "layout")) as source:
        view = build_fsview(source, lambda path, member: 1 << 40)
    node, small = view.nodes["big.bin"], view.nodes["small"]
    # Booleans and digests, not nodes and bytes: pytest's account of a failed comparison
    # of megabytes would itself take gigabytes.
    spooled = node.spool is not None
    assert spooled, "a large kept file stays in memory"
    assert node.spool is not None
    assert digest(node.content) == digest(data[:SPOOL_HEAD])
    assert digest(node.spool.read_bytes()) == digest(data)
    assert small.content == b"s" and small.spool is None
    spool_dir = node.spool.parent
    del view, node
    gc.collect()
    assert not spool_dir.exists()


def test_catalog_reads_spooled_archives_and_databases(tmp_path: Path) -> None:
    nested = jar_bytes("inner", SPOOL_ABOVE + MiB)  # extracted to a temporary file in turn
    outer = jar_bytes("outer", MiB, **{"BOOT-INF/lib/inner-1.0.jar": nested})
    description = "".join(f" line {i} {'x' * 60}\n" for i in range(SPOOL_ABOVE // 60))
    status = (
        "Package: big\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n"
        f"Description: a package with a long description\n{description}"
    ).encode()
    assert len(outer) > SPOOL_ABOVE and len(status) > SPOOL_ABOVE
    entries = [
        file("app/app.jar", outer),
        file("var/lib/dpkg/status", status),
        file("var/lib/dpkg/info/big.list", b"/usr/bin/big\n"),
        file("usr/bin/big", b"#!/bin/true\n", 0o755),
    ]
    built = simple_image(tmp_path / "blobs", entries, compression=Compression.NONE)
    write_oci_dir(built, tmp_path / "layout")
    from distill.analyze.catalog import want

    with opened(str(tmp_path / "layout")) as source:
        view = build_fsview(source, want)
        spooled = [p for p in ("app/app.jar", "var/lib/dpkg/status") if view.nodes[p].spool]
        assert spooled == ["app/app.jar", "var/lib/dpkg/status"]
        catalog = catalog_view(view)
    found = {(c.name, c.version, c.locations) for c in catalog.components}
    assert ("org.example:outer", "1.0", ("app/app.jar",)) in found
    assert ("org.example:inner", "1.0", ("app/app.jar!/BOOT-INF/lib/inner-1.0.jar",)) in found
    assert any(c.name == "big" and c.version == "1.0" for c in catalog.components)


def test_sbom_of_a_fat_jar_keeps_memory_flat(tmp_path: Path) -> None:
    """A 200 MiB jar: held in memory, as it was, the peak would pass 200 MiB."""
    big = tmp_path / "app.jar"
    with big.open("wb") as out:
        write_jar(out, "fat", 200 * MiB, **{"lib/dep.jar": jar_bytes("dep", 12 * MiB)})
    from distill.rootfs.tree import EntryKind, FsEntry

    entries = [FsEntry("app/app.jar", EntryKind.FILE, 0o644, content=big)]
    built = simple_image(tmp_path / "blobs", entries, compression=Compression.NONE)
    big.unlink()
    write_oci_dir(built, tmp_path / "layout")
    script = (
        "import sys\n"
        "from distill.analyze.sbom import SbomFormat, image_sbom\n"
        "result = image_sbom(sys.argv[1], SbomFormat.CYCLONEDX_JSON)\n"
        "sys.stdout.write(result.document.decode())\n"
        "sys.stderr.write(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "layout")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    names = {c["name"] for c in json.loads(done.stdout)["components"]}
    assert {"fat", "dep"} <= {name.rpartition(":")[2] for name in names}, names
    peak_kib = int(done.stderr.strip().split()[-1])
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib} KiB"
