"""Reading .deb files: real ones built by dpkg-deb, and hand-made broken ones."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from distill.debian.deb import DebControl, iter_data, read_control
from distill.errors import DistillError

CONTROL = """\
Package: hello-distill
Source: hello-src (1.0-1)
Version: 1.0-1+b1
Architecture: amd64
Maintainer: Test <test@example.invalid>
Description: a package for tests
 Long description line.
"""
POSTINST = "#!/bin/sh\nset -e\nupdate-alternatives --install /usr/bin/hi hi /usr/bin/hello 10\n"


def build_deb(tmp: Path, compression: str = "xz") -> Path:
    """A real .deb from dpkg-deb with control files, a script and a few data files."""
    root = tmp / f"pkg-{compression}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(CONTROL)
    (root / "DEBIAN/conffiles").write_text("/etc/hello.conf\n")
    (root / "DEBIAN/postinst").write_text(POSTINST)
    (root / "DEBIAN/postinst").chmod(0o755)
    (root / "etc").mkdir()
    (root / "etc/hello.conf").write_text("greeting=hi\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/hello").write_bytes(b"\x7fELF" + os.urandom(300_000))
    (root / "usr/bin/hello").chmod(0o755)
    (root / "DEBIAN/md5sums").write_text("0123456789abcdef0123456789abcdef  usr/bin/hello\n")
    out = tmp / f"hello_{compression}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(root), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def ar_archive(members: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def tar_bytes(files: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("compression", ["xz", "zstd", "gzip", "none"])
def test_control_and_data_round_trip(tmp_path: Path, compression: str) -> None:
    deb = build_deb(tmp_path, compression)
    control = read_control(deb)
    assert isinstance(control, DebControl)
    assert control.control == CONTROL
    assert control.md5sums.endswith("usr/bin/hello\n")
    assert control.conffiles == ("/etc/hello.conf",)
    assert control.postinst == POSTINST
    assert set(control.scripts) == {"postinst"}

    seen: dict[str, bytes | None] = {}
    for info, stream in iter_data(deb):
        seen[info.name] = stream.read() if stream is not None else None
    source = tmp_path / f"pkg-{compression}"
    assert seen["./usr/bin/hello"] == (source / "usr/bin/hello").read_bytes()
    assert seen["./etc/hello.conf"] == b"greeting=hi\n"
    assert seen["./usr/bin"] is None  # directories have no reader


def test_members_can_be_skipped_unread(tmp_path: Path) -> None:
    deb = build_deb(tmp_path)
    names = [info.name for info, _ in iter_data(deb)]
    assert "./usr/bin/hello" in names and "./etc/hello.conf" in names


def test_bzip2_data_and_uncompressed_control(tmp_path: Path) -> None:
    deb = tmp_path / "bz.deb"
    deb.write_bytes(
        ar_archive(
            [
                ("debian-binary", b"2.0\n"),
                ("control.tar", tar_bytes({"./control": b"Package: bz\nVersion: 1\n"})),
                ("data.tar.bz2", tar_bytes({"./usr/share/bz/file": b"bzip2 content"}, "w:bz2")),
            ]
        )
    )
    assert read_control(deb).control == "Package: bz\nVersion: 1\n"
    assert [(i.name, s.read() if s else None) for i, s in iter_data(deb)] == [
        ("./usr/share/bz/file", b"bzip2 content")
    ]


def _drain(deb: Path) -> None:
    for _, stream in iter_data(deb):
        if stream is not None:
            stream.read()


@pytest.mark.parametrize("keep", [0.999, 0.9, 0.5, 0.02])
def test_truncated_deb_is_an_error_naming_the_file(tmp_path: Path, keep: float) -> None:
    whole = build_deb(tmp_path).read_bytes()
    deb = tmp_path / "cut_1.0_amd64.deb"
    deb.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(DistillError, match=r"cut_1\.0_amd64\.deb"):
        read_control(deb)
        _drain(deb)


def test_corrupt_compressed_data_is_an_error(tmp_path: Path) -> None:
    data = bytearray(build_deb(tmp_path).read_bytes())
    start = data.index(b"data.tar.xz") + 60 + 200  # well inside the xz stream
    for i in range(start, start + 64):
        data[i] ^= 0x55
    deb = tmp_path / "flipped.deb"
    deb.write_bytes(bytes(data))
    with pytest.raises(DistillError, match=r"flipped\.deb"):
        _drain(deb)


def test_not_a_deb(tmp_path: Path) -> None:
    deb = tmp_path / "text.deb"
    deb.write_text("hello, I am not an archive\n")
    with pytest.raises(DistillError, match=r"text\.deb is not a valid \.deb"):
        read_control(deb)
    with pytest.raises(DistillError, match="not found"):
        read_control(tmp_path / "missing.deb")


def test_structure_errors(tmp_path: Path) -> None:
    no_data = tmp_path / "nodata.deb"
    no_data.write_bytes(
        ar_archive(
            [
                ("debian-binary", b"2.0\n"),
                ("control.tar", tar_bytes({"./control": b"Package: x\n"})),
            ]
        )
    )
    with pytest.raises(DistillError, match=r"no data\.tar member"):
        _drain(no_data)
    wrong_order = tmp_path / "order.deb"
    wrong_order.write_bytes(
        ar_archive(
            [
                ("control.tar", tar_bytes({"./control": b"Package: x\n"})),
                ("debian-binary", b"2.0\n"),
            ]
        )
    )
    with pytest.raises(DistillError, match="first member"):
        read_control(wrong_order)
    no_control_file = tmp_path / "empty-control.deb"
    no_control_file.write_bytes(
        ar_archive(
            [
                ("debian-binary", b"2.0\n"),
                ("control.tar", tar_bytes({"./md5sums": b""})),
                ("data.tar", tar_bytes({})),
            ]
        )
    )
    with pytest.raises(DistillError, match="no control file"):
        read_control(no_control_file)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_agrees_with_dpkg_deb_listing(tmp_path: Path) -> None:
    deb = build_deb(tmp_path, "zstd")
    listing = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(listing)) as tar:
        expected = [(m.name, m.size, m.mode) for m in tar.getmembers()]
    assert [(i.name, i.size, i.mode) for i, _ in iter_data(deb)] == expected
