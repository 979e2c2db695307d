"""What distill leaves out of an image (``rootfs.prune``), and that ``keep:`` brings it back.

Offline tests check the rules on small hand-made trees; the container tests build real images
and run programs in them under podman: iconv still converts the basic charsets once the extra
ones (and the cache naming them) are gone, and the JVM still maps its default CDS archive and
still starts with the options whose archive was dropped.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.build.pipeline import build_image
from distill.build.spec import load_spec
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.rootfs.prune import KEEP_KINDS, Keep, describe, gconv_modules, prune

GCONV = "usr/lib/x86_64-linux-gnu/gconv"
JVM = "usr/lib/jvm/java-21-openjdk-amd64"
BASIC = b"""# comment
alias\tUTF16//\tUTF-16//
module\tUTF-16//\tINTERNAL\tUTF-16\t1
module\tINTERNAL\tUTF-16//\tUTF-16\t1   # trailing comment
"""
EXTRA = b"module\tSJIS//\tINTERNAL\tSJIS\t1\nmodule\tINTERNAL\tSJIS//\tSJIS\t1\n"


def _dir(path: str, package: str | None = None) -> FsEntry:
    return FsEntry(path, EntryKind.DIR, 0o755, package=package)


def _file(path: str, data: bytes = b"x", package: str | None = "libc6") -> FsEntry:
    return FsEntry(path, EntryKind.FILE, 0o644, size=len(data), content=data, package=package)


def _link(path: str, target: str) -> FsEntry:
    return FsEntry(path, EntryKind.SYMLINK, 0o777, linkname=target)


def _tree(*entries: FsEntry) -> dict[str, FsEntry]:
    return {e.path: e for e in entries}


def _gconv_tree() -> dict[str, FsEntry]:
    return _tree(
        _dir(GCONV),
        _file(f"{GCONV}/gconv-modules", BASIC),
        _dir(f"{GCONV}/gconv-modules.d"),
        _file(f"{GCONV}/gconv-modules.d/gconv-modules-extra.conf", EXTRA),
        _file(f"{GCONV}/gconv-modules.cache", b"cache"),
        _file(f"{GCONV}/UTF-16.so", b"utf16"),
        _file(f"{GCONV}/SJIS.so", b"sjis!"),
        _file(f"{GCONV}/libJIS.so", b"helper"),
        _file(f"{GCONV}/OTHER.so", b"other", package="libother"),
    )


def test_gconv_keeps_the_basic_modules_and_drops_the_extra_set() -> None:
    kept, dropped = prune(_gconv_tree(), Keep())
    assert sorted(kept) == [
        GCONV,
        f"{GCONV}/OTHER.so",  # another package's module stays
        f"{GCONV}/UTF-16.so",
        f"{GCONV}/gconv-modules",
    ]
    # the emptied gconv-modules.d goes with its file
    assert [(d.kind, d.files, d.size) for d in dropped] == [("gconv", 5, 5 + 5 + 6 + len(EXTRA))]
    assert prune(_gconv_tree(), Keep(gconv=True))[0] == _gconv_tree()


def test_gconv_needs_both_configuration_files() -> None:
    tree = _gconv_tree()
    del tree[f"{GCONV}/gconv-modules"]
    assert prune(tree, Keep())[0] == tree


def test_gconv_modules_reads_module_lines_only() -> None:
    assert gconv_modules(BASIC.decode()) == {"UTF-16"}
    assert gconv_modules("module A// INTERNAL\n#module B// INTERNAL B 1\n") == set()


def test_cds_keeps_the_default_archive_only() -> None:
    tree = _tree(
        _dir(f"{JVM}/lib/server", "openjdk"),
        _file(f"{JVM}/lib/server/classes.jsa", b"a" * 10),
        _file(f"{JVM}/lib/server/classes_nocoops.jsa", b"b" * 20),
        _file(f"{JVM}/lib/server/classes_coh.jsa", b"c" * 30),
        _file(f"{JVM}/lib/classlist", b"java/lang/Object\n"),
        _file(f"{JVM}/lib/server/libjvm.so", b"elf"),
    )
    kept, dropped = prune(tree, Keep())
    server = f"{JVM}/lib/server"
    assert sorted(kept) == [server, f"{server}/classes.jsa", f"{server}/libjvm.so"]
    assert dropped[0].kind == "cds" and dropped[0].size == 50 + 17
    assert prune(tree, Keep(cds=True))[0] == tree


def test_links_into_dropped_paths_go_and_linked_dirs_stay() -> None:
    tree = _tree(
        _dir(f"{JVM}/man/man1"),
        _file(f"{JVM}/man/man1/java.1.gz"),
        _link("etc/alternatives/java.1.gz", f"/{JVM}/man/man1/java.1.gz"),
        _link("usr/share/man/man1/java.1.gz", "/etc/alternatives/java.1.gz"),
        _dir("usr/share/man/man1"),
        _link("etc/alternatives/java", f"/{JVM}/bin/java"),
        _file(f"{JVM}/bin/java"),
        _file("usr/lib/x86_64-linux-gnu/libthread_db.so.1"),
        _link("usr/lib/x86_64-linux-gnu/libthread_db.so", "libthread_db.so.1"),
        FsEntry("usr/lib/hard", EntryKind.HARDLINK, 0o644, linkname="usr/share/gdb/x.py"),
        _file("usr/share/gdb/x.py"),
        _dir("usr/sbin"),
        _file("usr/sbin/update-ca-certificates"),
        _link("sbin", "usr/sbin"),
        _dir("etc/ca-certificates"),
        _dir("etc/ca-certificates/update.d"),
    )
    kept, dropped = prune(tree, Keep())
    assert sorted(kept) == sorted(["etc/alternatives/java", f"{JVM}/bin/java", "sbin", "usr/sbin"])
    assert {d.kind for d in dropped} == {"man", "debugging", "ca_sources"}
    everything = Keep(**dict.fromkeys(KEEP_KINDS, True))
    assert prune(tree, everything) == (tree, [])


def test_tz_right_drops_the_leap_second_zones_and_keeps_the_old_names() -> None:
    zi = "usr/share/zoneinfo"
    tree = _tree(
        _dir(zi),
        _dir(f"{zi}/America"),
        _file(f"{zi}/America/New_York", b"TZif2", package="tzdata"),
        _dir(f"{zi}/US"),
        _link(f"{zi}/US/Eastern", "../America/New_York"),
        _dir(f"{zi}/right"),
        _dir(f"{zi}/right/America"),
        _file(f"{zi}/right/America/New_York", b"TZif2+leap", package="tzdata-legacy"),
        _dir(f"{zi}/right/US"),
        _link(f"{zi}/right/US/Eastern", "../America/New_York"),
        _link(f"{zi}/leap-pointer", "right/America/New_York"),
    )
    kept, dropped = prune(tree, Keep())
    assert sorted(kept) == [
        zi,
        f"{zi}/America",
        f"{zi}/America/New_York",
        f"{zi}/US",
        f"{zi}/US/Eastern",
    ]
    assert [(d.kind, d.files, d.size) for d in dropped] == [("tz_right", 6, 10)]
    assert prune(tree, Keep(tz_right=True))[0] == tree


def test_the_build_note_says_what_was_left_out() -> None:
    _, dropped = prune(_gconv_tree(), Keep())
    assert describe(dropped) == "left out (keep: to restore): gconv 5 files 0.0 MiB"
    assert describe([]) == ""


def test_keep_keys_parse_merge_and_are_checked(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: base\nkeep: {gconv: true, man: true}\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nkeep: {man: false, ca_sources: true}\n")
    spec = load_spec(str(tmp_path / "b.yaml"))
    assert spec.keep == Keep(gconv=True, ca_sources=True)
    assert spec.keep.extract.man is False
    (tmp_path / "c.yaml").write_text("keep: {gdb: true}\n")
    with pytest.raises(DistillError) as info:
        load_spec(str(tmp_path / "c.yaml"))
    assert "unknown kind 'gdb'" in str(info.value) and "debugging" in (info.value.hint or "")


# --- real images under podman ---------------------------------------------------------------

ICONV_C = r"""
#include <iconv.h>
#include <stdio.h>
#include <string.h>
static int convert(const char *to) {
    iconv_t cd = iconv_open(to, "UTF-8");
    if (cd == (iconv_t)-1) { printf("%s:refused\n", to); return 0; }
    char in[] = "hi", out[16]; char *ip = in, *op = out;
    size_t il = strlen(in), ol = sizeof out;
    size_t r = iconv(cd, &ip, &il, &op, &ol);
    printf("%s:%s:%zu\n", to, r == (size_t)-1 ? "failed" : "ok", sizeof out - ol);
    return iconv_close(cd);
}
int main(void) { convert("UTF-16LE"); convert("ISO-8859-15"); convert("SHIFT_JIS"); return 0; }
"""


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=False, timeout=300
    )


@pytest.fixture(scope="module")
def program_dir() -> Iterator[Path]:
    out = Path(tempfile.mkdtemp(prefix="distill-prune-"))
    out.chmod(0o755)
    try:
        (out / "iconv.c").write_text(ICONV_C)
        subprocess.run(["gcc", "-O2", "-o", out / "iconv", out / "iconv.c"], check=True)
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _load(spec: str, tmp_path: Path) -> str:
    archive = tmp_path / f"{uuid.uuid4().hex}.tar"
    build_image(load_spec(spec), None, f"docker-archive:{archive}")
    loaded = podman("load", "-q", "-i", str(archive))
    assert loaded.returncode == 0, loaded.stderr
    return loaded.stdout.strip().split()[-1]


def _run(
    image: str, program: str, *args: str, mount: Path | None = None
) -> subprocess.CompletedProcess[str]:
    volume = ["-v", f"{mount}:/test:ro"] if mount else []
    return podman(
        "run", "--rm", "--network", "none", *volume, "--entrypoint", program, image, *args
    )


@pytest.mark.network
@pytest.mark.container
def test_iconv_converts_the_basic_charsets_and_keep_restores_the_rest(
    program_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "all.yaml").write_text("extends: base\nkeep: {gconv: true}\n")
    images = [_load("base", tmp_path), _load(str(tmp_path / "all.yaml"), tmp_path)]
    try:
        outputs = [_run(image, "/test/iconv", mount=program_dir) for image in images]
    finally:
        podman("rmi", "-f", *images)
    assert all(p.returncode == 0 for p in outputs), [p.stderr for p in outputs]
    basic = "UTF-16LE:ok:4\nISO-8859-15:ok:2\n"
    assert outputs[0].stdout == basic + "SHIFT_JIS:refused\n"
    assert outputs[1].stdout == basic + "SHIFT_JIS:ok:2\n"


@pytest.mark.network
@pytest.mark.container
def test_jvm_maps_its_default_archive_and_runs_without_the_dropped_one(tmp_path: Path) -> None:
    image = _load("java21", tmp_path)
    try:
        shared = _run(image, "/usr/bin/java", "-Xshare:on", "-Xlog:cds=info", "-version")
        nocoops = _run(image, "/usr/bin/java", "-XX:-UseCompressedOops", "-version")
    finally:
        podman("rmi", "-f", image)
    # -Xshare:on fails outright when the archive cannot be mapped
    assert shared.returncode == 0 and "sharing" in shared.stderr, shared.stderr
    assert nocoops.returncode == 0 and 'version "21' in nocoops.stderr, nocoops.stderr
    assert "sharing" not in nocoops.stderr  # no archive for this mode: started without CDS
