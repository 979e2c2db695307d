"""Fuzz the tar header reader: random bytes, and valid archives damaged field by field.

The reader's contract: members, or ``TarFormatError`` (``TarTruncated`` included), which
its callers turn into a DistillError naming the layer; and work bounded by the input (no
more members than header blocks, no more data than bytes). ``TarFiles``, the archive reader
built on it, must end in a DistillError.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from functools import cache
from pathlib import Path

import pytest
from fuzzing import FUZZ, clean, mutated_bytes
from hypothesis import assume, given
from hypothesis import strategies as st

from distill.image.tarscan import BLOCK, TarFormatError, TarScanner
from distill.transports._local import TarFiles


class BytesSource:
    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    def read(self, size: int) -> bytes:
        return self._stream.read(size)

    def skip(self, size: int) -> int:
        return len(self._stream.read(size))


def scan_all(data: bytes) -> None:
    """List every member and read its data; check the bounds on the way."""
    scanner = TarScanner(BytesSource(data))
    members = read = 0
    try:
        for entry in scanner:
            members += 1
            assert members <= len(data) // BLOCK, "more members than header blocks"
            assert entry.size >= 0 and entry.stored >= 0
            assert isinstance(entry.name, str) and isinstance(entry.linkname, str)
            read += len(scanner.read_data(entry.stored))
            assert read <= len(data)
    except TarFormatError:
        pass


# --- seeds: archives in every format, with what only GNU and PAX can say -------------------

_PAX_KEYS = [
    "path",
    "linkpath",
    "size",
    "uid",
    "gid",
    "mtime",
    "GNU.sparse.realsize",
    "GNU.sparse.size",
    "GNU.sparse.name",
    "GNU.sparse.major",
    "comment",
]
_PAX_VALUES = st.sampled_from(
    ["", "0", "-1", "+5", " 5", "1_0", "١٢", "9" * 5000, "0x10", "a/../../b", "x" * 300, "\udcff"]
) | st.text(max_size=10)
_names = st.sampled_from(
    ["a", "dir/", "./etc/passwd", "../up", "x" * 101, "p/" * 80 + "f", "ünï/名", "/abs"]
) | st.text(min_size=1, max_size=12)


@st.composite
def archives(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for _ in range(draw(st.integers(1, 4))):
            info = tarfile.TarInfo(draw(_names))
            info.type = draw(
                st.sampled_from(
                    [
                        tarfile.REGTYPE,
                        tarfile.DIRTYPE,
                        tarfile.SYMTYPE,
                        tarfile.LNKTYPE,
                        tarfile.CHRTYPE,
                        tarfile.FIFOTYPE,
                    ]
                )
            )
            data = draw(st.binary(max_size=1100)) if info.type == tarfile.REGTYPE else b""
            info.size = len(data)
            info.linkname = draw(_names) if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            info.uid = draw(st.sampled_from([0, 65532, 2**21, 2**40]))
            if fmt == tarfile.PAX_FORMAT:
                info.pax_headers = draw(
                    st.dictionaries(st.sampled_from(_PAX_KEYS), _PAX_VALUES, max_size=3)
                )
            try:
                tar.addfile(info, io.BytesIO(data))
            except (ValueError, UnicodeError):
                assume(False)  # a name this format cannot hold
    return out.getvalue()


@cache
def gnu_sparse_seeds() -> tuple[bytes, ...]:
    """Archives GNU tar writes with sparse members (old GNU 'S', PAX 0.1 and 1.0)."""
    tar = shutil.which("tar")
    if tar is None:
        return ()
    seeds = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "root")
        root.mkdir()
        with (root / "holes").open("wb") as out:
            for i in range(6):  # more holes than an old GNU header's four map slots
                out.seek(i * 8192)
                out.write(b"data")
            out.truncate(64 << 10)
        for options in (
            ["--format=gnu"],
            ["--format=posix", "--sparse-version=0.1"],
            ["--format=posix"],
        ):
            archive = Path(tmp, "a.tar")
            subprocess.run(
                [tar, "-c", "--sparse", *options, "-f", str(archive), "-C", str(root), "."],
                check=True,
            )
            seeds.append(archive.read_bytes())
    return tuple(seeds)


@st.composite
def seeds(draw: st.DrawFn) -> bytes:
    sparse = gnu_sparse_seeds()
    if sparse and draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(sparse))
    return draw(archives())


# --- header-aware damage -------------------------------------------------------------------

_FIELDS = {
    "name": (0, 100),
    "mode": (100, 8),
    "uid": (108, 8),
    "gid": (116, 8),
    "size": (124, 12),
    "mtime": (136, 12),
    "type": (156, 1),
    "linkname": (157, 100),
    "magic": (257, 8),
    "prefix": (345, 155),
    "sparse": (386, 96),
    "extended": (482, 1),
    "realsize": (483, 12),
    "star": (508, 4),
}


@st.composite
def field_values(draw: st.DrawFn, length: int) -> bytes:
    kind = draw(st.sampled_from(["octal", "base256", "digits", "type", "bytes", "text"]))
    if kind == "octal":
        value = f"{draw(st.integers(0, 8 ** (length - 1) - 1)):0{length - 1}o}".encode() + b"\0"
    elif kind == "base256":
        value = bytes([draw(st.sampled_from([0x80, 0xFF]))]) + draw(
            st.binary(min_size=length - 1, max_size=length - 1)
        )
    elif kind == "digits":
        value = draw(st.text("0123456789 +-\0", max_size=length)).encode()
    elif kind == "type":
        value = draw(st.sampled_from(list(b"0123456789xgLKSAVMNDI\0 "))).to_bytes(1, "big")
    elif kind == "text":
        value = draw(st.sampled_from([b"ustar\0", b"ustar  \0", b"tar\0", b"././@LongLink"]))
    else:
        value = draw(st.binary(max_size=length))
    return value[:length].ljust(length, b"\0")


def _fix_checksum(buf: bytearray, at: int) -> None:
    header = buf[at : at + BLOCK]
    header[148:156] = b" " * 8
    buf[at + 148 : at + 156] = f"{sum(header):06o}\0 ".encode()


def _header_offsets(data: bytes) -> list[int]:
    """Where the header blocks of an undamaged archive are (extended headers included)."""
    offsets, at = [], 0
    while at + BLOCK <= len(data) and data[at : at + BLOCK].strip(b"\0"):
        offsets.append(at)
        size_field = data[at + 124 : at + 136]
        if size_field[0] & 0x80:
            size = int.from_bytes(size_field[1:], "big")
        else:
            size = int(size_field.split(b"\0", 1)[0].strip() or b"0", 8)
        if chr(data[at + 156]) in "12345":
            size = 0
        at += BLOCK + size + (-size % BLOCK)
    return offsets or [0]


@st.composite
def damaged_archives(draw: st.DrawFn) -> bytes:
    buf = bytearray(draw(seeds()))
    offsets = _header_offsets(bytes(buf))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.sampled_from(offsets))
        start, length = _FIELDS[draw(st.sampled_from(sorted(_FIELDS)))]
        buf[at + start : at + start + length] = draw(field_values(length))
        if draw(st.integers(0, 9)):  # most damage keeps the checksum right, to get past it
            _fix_checksum(buf, at)
    return draw(mutated_bytes(bytes(buf), max_ops=2))


@FUZZ
@given(st.binary(max_size=4096) | st.binary(max_size=600).map(lambda b: b.ljust(512, b"\0")))
def test_random_bytes(data: bytes) -> None:
    scan_all(data)


@FUZZ
@given(damaged_archives())
def test_damaged_archives(data: bytes) -> None:
    scan_all(data)


@FUZZ
@given(damaged_archives())
def test_archive_reader_on_damaged_archives(data: bytes) -> None:
    with tempfile.NamedTemporaryFile(suffix=".tar") as handle:
        handle.write(data)
        handle.flush()
        clean(lambda: TarFiles(Path(handle.name)))


# Found by the targets above: PAX numbers past 4,300 digits made int() raise ValueError, and
# base-256 sizes beyond 64 bits reached read() (OverflowError).
def _one(info: tarfile.TarInfo, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        tar.addfile(info, io.BytesIO(b""))
    return out.getvalue()


@pytest.mark.parametrize("value", ["9" * 5000, "9" * 20, str(1 << 63), "-" + "9" * 4400])
def test_pax_numbers_beyond_64_bits_are_damage(value: str) -> None:
    info = tarfile.TarInfo("f")
    info.pax_headers = {"size": value}
    with pytest.raises(TarFormatError, match="PAX size") as error:
        list(TarScanner(BytesSource(_one(info))))
    assert len(str(error.value)) < 200


def test_base256_sizes_beyond_64_bits_are_damage() -> None:
    data = bytearray(_one(tarfile.TarInfo("f"), tarfile.GNU_FORMAT))
    data[124:136] = b"\x80" + b"\xff" * 11
    _fix_checksum(data, 0)
    with pytest.raises(TarFormatError, match="beyond 64 bits"):
        list(TarScanner(BytesSource(bytes(data))))
