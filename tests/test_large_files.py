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
import os
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from analyze_images import SDE, file, hardlink, opened, run_measuring_peak, simple_image
from distill.analyze import langpkgs
from distill.analyze.catalog import catalog_view
from distill.analyze.components import CapturedFile
from distill.analyze.fsview import SPOOL_ABOVE, SPOOL_HEAD, build_fsview
from distill.analyze.langpkgs import language_components
from distill.image.compose import compose_image
from distill.image.config import ImageConfigSpec
from distill.image.layer_blob import Compression, write_layer
from distill.image.platform import Platform
from distill.transports._write import write_oci_dir
from sbom_fixtures import jar

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


def test_a_spool_goes_with_the_last_path_that_holds_it(tmp_path: Path) -> None:
    """Three layers write a large file, the last one deletes it: only the copy a hardlink
    still holds stays on disk."""
    blobs = tmp_path / "blobs"
    first, second = noise(SPOOL_ABOVE + MiB), noise(SPOOL_ABOVE + 2 * MiB)[::-1]
    layers = [
        [file("app/app.jar", first)],
        [file("app/app.jar", second), hardlink("app/keep.jar", "app/app.jar")],
        [file("app/app.jar", first)],
        [file("app/.wh.app.jar", b"")],
    ]
    blobs_written = [
        write_layer(entries, blobs, compression=Compression.NONE, source_date_epoch=SDE)
        for entries in layers
    ]
    built = compose_image(
        ImageConfigSpec(), Platform.parse("linux/amd64"), blobs_written, source_date_epoch=SDE
    )
    write_oci_dir(built, tmp_path / "layout")
    with opened(str(tmp_path / "layout")) as source:
        view = build_fsview(source, lambda path, member: 1 << 40)
    assert "app/app.jar" not in view.nodes
    keep = view.nodes["app/keep.jar"].spool
    assert keep is not None and view.spool_dir is not None
    assert list(Path(view.spool_dir.name).iterdir()) == [keep]
    assert digest(keep.read_bytes()) == digest(second)


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
    from distill.image.fsentry import EntryKind, FsEntry

    entries = [FsEntry("app/app.jar", EntryKind.FILE, 0o644, content=big)]
    built = simple_image(tmp_path / "blobs", entries, compression=Compression.NONE)
    big.unlink()
    write_oci_dir(built, tmp_path / "layout")
    script = (
        "import sys\n"
        "from distill.analyze.sbom import SbomFormat, image_sbom\n"
        "result = image_sbom(sys.argv[1], SbomFormat.CYCLONEDX_JSON)\n"
        "sys.stdout.write(result.document.decode())\n"
    )
    document, peak_kib = run_measuring_peak(script, tmp_path / "layout")
    names = {c["name"] for c in json.loads(document)["components"]}
    assert {"fat", "dep"} <= {name.rpartition(":")[2] for name in names}, names
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib} KiB"


# --- archives that would fill the disk, or cannot be read ----------------------------------


def test_nested_archives_have_a_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small jar of large nested ones (a zip bomb's shape) stops at MAX_EXTRACTED, and says
    so; what was read before the budget ran out is kept."""
    monkeypatch.setattr(langpkgs, "MAX_EXTRACTED", 3 * MiB)
    nested = {f"lib/dep{i}.jar": jar_bytes(f"dep{i}", 2 * MiB) for i in range(3)}
    outer = jar({**nested, "lib/notazip.jar": b"plain text, not a zip"})
    warnings: list[str] = []
    found = language_components("app/app.jar", CapturedFile(outer, 0), warnings)
    assert [c.name for c in found] == ["org.example:dep0"]
    assert len(warnings) == 2 and all("take more than 3 MiB extracted" in w for w in warnings)
    assert "app/app.jar!/lib/dep1.jar" in warnings[0]


def test_damaged_compressed_members_do_not_stop_the_catalog() -> None:
    good = jar({"META-INF/maven/g/a/pom.properties": pom("g", "a", "1") * 50})
    damaged = bytearray(good)
    start = damaged.index(b"pom.properties") + len("pom.properties")
    damaged[start + 5 : start + 25] = b"\xff" * 20  # inside the deflate stream: zlib.error
    outer = jar({"lib/inner.jar": bytes(damaged), "lib/ok.jar": good})
    warnings: list[str] = []
    found = language_components("app/app.jar", CapturedFile(outer, 0), warnings)
    assert [(c.name, c.locations) for c in found] == [("g:a", ("app/app.jar!/lib/ok.jar",))]
    assert warnings == []


def test_a_nested_archive_that_cannot_be_extracted_is_a_warning(tmp_path: Path) -> None:
    """The disk fills up (here: a 4 MiB file size limit) while a 10 MiB nested jar is
    extracted: the SBOM must say its packages are missing, not just leave them out."""
    outer = tmp_path / "app.jar"
    with outer.open("wb") as out:
        write_jar(out, "outer", 0, **{"lib/big.jar": jar_bytes("big", 10 * MiB)})
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from distill.analyze.langpkgs import language_components\n"
        "from distill.analyze.components import CapturedFile\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))\n"
        "warnings = []\n"
        "found = language_components('app.jar', CapturedFile(b'', 0, 0o644, Path(sys.argv[1])),"
        " warnings)\n"
        "print([c.name for c in found]); print(warnings)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(outer)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    names, warnings = done.stdout.splitlines()
    assert names == "['org.example:outer']"
    assert "app.jar!/lib/big.jar could not be extracted to a temporary file" in warnings
    assert "its packages are missing" in warnings


# --- interrupted ---------------------------------------------------------------------------


def test_sigterm_removes_the_spool(tmp_path: Path) -> None:
    """A cancelled CI job or `timeout` sends SIGTERM: the CLI's handler unwinds like Ctrl-C,
    so the spool directory goes instead of staying in the temporary directory."""
    built = simple_image(tmp_path / "blobs", [file("big.bin", noise(SPOOL_ABOVE + MiB))])
    write_oci_dir(built, tmp_path / "layout")
    temp = tmp_path / "tmp"
    temp.mkdir()
    script = (
        "import signal, sys, time\n"
        "from distill.cli import _terminate\n"
        "from distill.context import Access\nfrom distill.transports import opened\n"
        "from distill.analyze.fsview import build_fsview\n"
        "signal.signal(signal.SIGTERM, _terminate)\n"
        "with opened(sys.argv[1], Access()) as source:\n"
        "    view = build_fsview(source, lambda p, m: 1 << 40)\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "layout")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    assert [p.name.split(".")[0] for p in temp.iterdir()] == ["distill-spool"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert list(temp.iterdir()) == []


def test_cli_exits_on_sigterm_with_a_message(tmp_path: Path) -> None:
    """A registry that accepts the connection and never answers: the CLI waits in a read,
    and SIGTERM ends it with exit status 143 and a word, not a traceback."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "distill", "inspect", f"docker://127.0.0.1:{port}/x/y:1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        connection, _ = server.accept()  # the CLI is now waiting for an answer
        with connection:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert "terminated" in err and "Traceback" not in err


def test_main_in_process_leaves_sigterm_as_it_found_it() -> None:
    """main() run in-process (as tests and scripts do) restores the caller's SIGTERM
    handler: leaving SIG_IGN behind made every later child of the caller immune to TERM."""
    import contextlib

    from distill.cli import main

    before = signal.getsignal(signal.SIGTERM)
    for argv in (["presets", "--no-such-option"], ["--version"], ["presets"]):
        with contextlib.suppress(SystemExit):
            main(argv)
        assert signal.getsignal(signal.SIGTERM) is before, argv
