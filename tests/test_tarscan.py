"""The tar header reader against Python's tarfile and GNU tar: same members, same data.

tarfile is the oracle for what a header means (every format it writes and reads), GNU tar
for the sparse formats tarfile only reads. Damaged archives must fail loudly where tarfile
would stop listing without a word.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distill.image.stream import FileRange
from distill.image.tarscan import MAX_NAME, TarEntry, TarFormatError, TarScanner, TarTruncated

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}


class BytesSource:
    """A TarSource over bytes that, like a pipe, can only skip by reading."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    def read(self, size: int) -> bytes:
        return self._stream.read(size)

    def skip(self, size: int) -> int:
        return len(self._stream.read(size))


def scan(data: bytes, *, read_all: bool = False) -> list[tuple[TarEntry, bytes | None]]:
    scanner = TarScanner(BytesSource(data))
    return [(e, scanner.read_data(e.stored) if read_all else None) for e in scanner]


def oracle(data: bytes) -> list[tuple[tuple[object, ...], bytes | None]]:
    out: list[tuple[tuple[object, ...], bytes | None]] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for m in tar:
            handle = tar.extractfile(m) if m.isreg() else None
            key = (m.name, m.type.decode(), m.mode, m.uid, m.gid, m.size, m.linkname)
            out.append(((*key, m.offset_data), handle.read() if handle else None))
    return out


def ours(data: bytes) -> list[tuple[tuple[object, ...], bytes | None]]:
    return [
        (
            (e.name, e.type, e.mode, e.uid, e.gid, e.size, e.linkname, e.offset_data),
            data_ if e.isreg() else None,
        )
        for e, data_ in scan(data, read_all=True)
    ]


def build(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int, **kwargs: object) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt, **kwargs) as tar:  # type: ignore[call-overload]
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def info(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **fields: object
) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.size = size
    member.mode = 0o644
    for key, value in fields.items():
        setattr(member, key, value)
    return member


LONG = "usr/share/" + "/".join(f"directory-{i:02d}" for i in range(12)) + "/file.txt"  # > 255


def every_kind(fmt: str) -> list[tuple[tarfile.TarInfo, bytes]]:
    members = [
        (info("etc", tarfile.DIRTYPE, mode=0o755), b""),
        (info("etc/passwd", size=5, uid=0, gid=0), b"root\n"),
        (info("bin/exact", size=512, mode=0o4755), b"x" * 512),
        (info("bin/empty", mode=0o755), b""),
        (info("bin/sh", tarfile.SYMTYPE, linkname="dash"), b""),
        (info("bin/hard", tarfile.LNKTYPE, linkname="bin/exact"), b""),
        (info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3), b""),
        (info("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), b""),
        (info("run/fifo", tarfile.FIFOTYPE), b""),
        (info("home/nonroot", tarfile.DIRTYPE, uid=65532, gid=65532, mode=0o700), b""),
        (info("a" * 99 + "/b" * 60, size=3), b"abc"),  # ustar splits it into prefix + name
    ]
    if fmt != "ustar":  # what only GNU and PAX can say
        members += [
            (info(LONG, size=1000), bytes(range(256)) * 3 + b"tail" * 58),
            (info("link-to-long", tarfile.SYMTYPE, linkname="../" + LONG), b""),
            (info("big-ids", size=1, uid=3_000_000_000, gid=2_500_000_000), b"!"),
            (info("ünïcødé/名前.txt", size=2), b"ok"),
        ]
    return members


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_kind_of_member_as_tarfile_reads_it(fmt: str) -> None:
    data = build(every_kind(fmt), FORMATS[fmt])
    assert ours(data) == oracle(data)
    assert len(ours(data)) == len(every_kind(fmt))


def pax_global(records: dict[str, str]) -> bytes:
    """A PAX global header block and its records, as tarfile writes one."""
    return tarfile.TarInfo("global").create_pax_global_header(records)


def test_pax_global_headers_change_nothing() -> None:
    """Go's archive/tar (what runtimes unpack layers with) ignores them; tarfile applies them
    to every later member, size included, so a layer could show files a runtime would not
    unpack: a global size=0 turns readme's data into a second member for tarfile."""
    hidden = build([(info("usr/bin/evil", size=4, mode=0o755), b"evil")], 0)[:1024]
    plain = build([(info("usr/share/doc/readme", size=len(hidden)), hidden)], 0)
    data = pax_global({"size": "0", "uid": "4242", "path": "renamed"}) + plain
    assert [(e.name, e.uid, e.size) for e, _ in scan(data)] == [("usr/share/doc/readme", 0, 1024)]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert [(m.name, m.uid) for m in tar] != [("usr/share/doc/readme", 0)]


def test_a_damaged_global_header_is_still_an_error() -> None:
    data = bytearray(pax_global({"comment": "x"}) + two_files())
    start = data.index(b" comment=x")
    data[start - 2 : start] = b"99"
    with pytest.raises(TarFormatError, match="damaged PAX header"):
        scan(bytes(data))


def test_gnu_long_names_win_over_pax_paths() -> None:
    """Go applies the PAX records, then the GNU long name: so must we (tarfile agrees when
    the long name comes first)."""
    pax_member = info("short", size=2)
    pax_member.pax_headers = {"path": "from-pax", "linkpath": "pax-link"}
    pax_part = build([(pax_member, b"ok")], tarfile.PAX_FORMAT)[:-1024]  # x + header + data
    gnu = build([(info("g" * 120, size=0), b"")], tarfile.GNU_FORMAT)
    long_block = gnu[: gnu.index(b"g" * 120) + 512 - gnu.index(b"g" * 120) % 512]
    data = long_block + pax_part + bytes(1024)
    assert [e.name for e, _ in scan(data)] == ["g" * 120]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["g" * 120]


@pytest.mark.parametrize("value", [" 5", "1_0", "0x10", "５", "-512"])
def test_pax_numbers_are_plain_digits(value: str) -> None:
    member = info("n", size=0)
    member.pax_headers = {"size": value}
    with pytest.raises(TarFormatError, match=r"not a number|negative size"):
        scan(build([(member, b"")], tarfile.PAX_FORMAT))


def test_a_negative_base256_size_is_refused() -> None:
    data = bytearray(two_files())
    data[124:136] = b"\xff" * 11 + b"\x00"  # -256 in base-256
    rechecksum(data)
    with pytest.raises(TarFormatError, match="negative size"):
        scan(bytes(data))


def test_pax_records_override_the_header() -> None:
    member = info("short", size=3)
    member.pax_headers = {"path": "a/much/longer/name", "uid": "7", "linkpath": "ignored"}
    data = build([(member, b"abc")], tarfile.PAX_FORMAT)
    assert ours(data) == oracle(data)
    assert scan(data)[0][0].name == "a/much/longer/name"


def rechecksum(data: bytearray, at: int = 0) -> None:
    header = data[at : at + 512]
    header[148:156] = b" " * 8
    header[148:155] = f"{sum(header):06o}\0".encode()
    data[at : at + 512] = header


def test_v7_directory_written_as_a_file_with_a_slash() -> None:
    header = bytearray(tarfile.TarInfo("old/").tobuf(tarfile.USTAR_FORMAT))
    header[156] = 0  # AREGTYPE, as v7 tar wrote every member
    header[257:265] = bytes(8)  # no ustar magic
    rechecksum(header)
    data = bytes(header) + bytes(1024)
    assert [(e.name, e.type) for e, _ in scan(data)] == [("old", "5")]
    assert ours(data)[0][0][:2] == ("old", "5") == oracle(data)[0][0][:2]


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE])
def test_links_and_directories_have_no_data_whatever_their_size_says(kind: bytes) -> None:
    data = bytearray(
        build([(info("l", kind, linkname="t"), b""), (info("next", size=2), b"ok")], 0)
    )
    data[124:136] = b"%011o\0" % 1000  # a size field that lies
    rechecksum(data)
    assert ours(bytes(data)) == oracle(bytes(data))
    assert [e.name for e, _ in scan(bytes(data))] == ["l", "next"]


def test_read_part_then_skip_the_rest() -> None:
    data = build([(info("a", size=3000), b"A" * 3000), (info("b", size=5), b"BBBBB")], 0)
    scanner = TarScanner(BytesSource(data))
    got = {}
    for entry in scanner:
        got[entry.name] = scanner.read_data(10)
        assert scanner.read_data(10**9) == (b"A" * 2990 if entry.name == "a" else b"")
    assert got == {"a": b"A" * 10, "b": b"BBBBB"}


def test_a_file_range_skips_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "t.tar"
    prefix = b"P" * 1000  # the archive is a range of a bigger file, as in a docker-archive
    data = build(every_kind("gnu"), tarfile.GNU_FORMAT)
    path.write_bytes(prefix + data + b"S" * 77)
    with FileRange(path, len(prefix), len(data)) as source:
        entries = [(e.name, e.offset_data) for e in TarScanner(source)]
    assert entries == [(key[0], key[-1]) for key, _ in oracle(data)]


members_strategy = st.lists(
    st.tuples(
        st.text(
            alphabet=st.characters(
                codec="utf-8", exclude_characters="\0/", exclude_categories=["Cs"]
            ),
            min_size=1,
            max_size=40,
        ),
        st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE]),
        st.binary(max_size=1500),
        st.integers(min_value=0, max_value=0o7777),
        st.integers(min_value=0, max_value=2**21 - 1),
        st.integers(min_value=1, max_value=5),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=members_strategy, fmt=st.sampled_from(sorted(FORMATS)))
def test_random_archives_list_as_tarfile_lists_them(
    members: list[tuple[str, bytes, bytes, int, int, int]], fmt: str
) -> None:
    built = []
    for name, kind, content, mode, uid, depth in members:
        path = "/".join([name] * depth)  # deep paths: long names in every format
        if fmt == "ustar" and (len(path.encode()) > 100 or not path.isascii()):
            path = name[:20].encode("ascii", "ignore").decode() or "x"
        member = info(path, kind, len(content) if kind == tarfile.REGTYPE else 0)
        member.mode, member.uid = mode, uid
        if kind == tarfile.SYMTYPE:
            member.linkname = name
        built.append((member, content))
    data = build(built, FORMATS[fmt])
    assert ours(data) == oracle(data)


@pytest.mark.parametrize(
    "options",
    [["--format=gnu"], ["--format=posix", "--sparse-version=0.1"], ["--format=posix"]],
    ids=["gnu-old-sparse", "pax-sparse-0.1", "pax-sparse-1.0"],
)
def test_gnu_tar_sparse_files(tmp_path: Path, options: list[str]) -> None:
    gnu_tar = shutil.which("tar")
    if gnu_tar is None:
        pytest.fail("GNU tar is part of the base system; it must be installed")
    root = tmp_path / "root"
    root.mkdir()
    holes = root / "holes.img"
    with holes.open("wb") as out:  # data, a hole, data, a hole: a real sparse map
        out.write(b"head")
        out.seek(3 << 20)
        out.write(b"middle")
        out.truncate(9 << 20)
    (root / "after").write_bytes(b"after the sparse one")
    archive = tmp_path / "sparse.tar"
    subprocess.run(
        [gnu_tar, "-c", "--sparse", *options, "-f", str(archive), "-C", str(root), "."],
        check=True,
    )
    data = archive.read_bytes()
    with tarfile.open(archive) as tar:
        expected = {m.name.removeprefix("./"): m.size for m in tar if m.isfile()}
        after = tar.extractfile("./after")
        assert after is not None and after.read() == b"after the sparse one"
    scanner = TarScanner(BytesSource(data))
    found = {}
    for entry in scanner:
        if entry.isreg():
            found[entry.name.removeprefix("./")] = entry.size
            if entry.name.endswith("after"):
                assert scanner.read_data(100) == b"after the sparse one"
            else:
                assert entry.sparse and entry.stored < entry.size
    assert found == expected == {"holes.img": 9 << 20, "after": 20}


# --- damage ------------------------------------------------------------------------------


def two_files() -> bytes:
    return build([(info("one", size=700), b"1" * 700), (info("two", size=10), b"2" * 10)], 0)


def test_empty_and_not_a_tar() -> None:
    with pytest.raises(TarFormatError, match="empty file"):
        scan(b"")
    with pytest.raises(TarFormatError, match="first header's checksum is wrong"):
        scan(b"this is not a tar archive" * 40)
    with pytest.raises(TarFormatError, match="shorter than one header"):
        scan(two_files()[:100])
    assert scan(bytes(1024)) == []  # an empty archive is two zero blocks


def test_a_damaged_header_after_the_first_is_an_error() -> None:
    data = bytearray(two_files())
    second = 512 + 1024  # the header after "one" (700 bytes: two blocks)
    data[second + 10] ^= 0x20
    with pytest.raises(TarFormatError, match=f"wrong checksum\\) at byte {second}"):
        scan(bytes(data))
    # tarfile lists only "one" and stops without a word: the reason for strictness
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
        assert tar.getnames() == ["one"]


@pytest.mark.parametrize(
    ("cut", "name"),
    [(900, "one"), (512 + 1024 + 100, "a header"), (512 + 1024 + 512 + 5, "two")],
)
def test_truncation_is_named(cut: int, name: str) -> None:
    data = two_files()[:cut]
    with pytest.raises(TarTruncated) as caught:
        scan(data, read_all=True)
    assert caught.value.name == name
    assert caught.value.end == cut
    with pytest.raises(TarTruncated):
        scan(data)  # skipping the data finds it too


def test_an_absurd_extended_header_is_refused() -> None:
    header = info("x", b"x", size=1 << 30).tobuf(tarfile.USTAR_FORMAT)
    with pytest.raises(TarFormatError, match="extended header"):
        scan(header + bytes(1024))


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_names_and_link_targets_are_capped(fmt: str) -> None:
    fits = MAX_NAME - 1  # tarfile may add "/" to a directory: stay one under
    for name, link, refused in (
        ("n" * fits, "", None),
        ("n" * (MAX_NAME + 1), "", "a name longer"),
        ("l", "t" * (MAX_NAME + 1), "a link target longer"),
    ):
        kind = tarfile.SYMTYPE if link else tarfile.REGTYPE
        data = build([(info(name, kind, linkname=link), b"")], FORMATS[fmt])
        if refused is None:
            assert [e.name for e, _ in scan(data)] == [name]
        else:
            with pytest.raises(TarFormatError, match=refused):
                scan(data)


def test_extended_headers_are_capped_as_go_caps_them() -> None:
    member = info("f", size=0)
    member.pax_headers = {"comment": "c" * (1 << 20)}
    with pytest.raises(TarFormatError, match="extended header"):
        scan(build([(member, b"")], tarfile.PAX_FORMAT))


def test_bad_pax_records_are_refused() -> None:
    member = info("p", size=0)
    member.pax_headers = {"path": "fine"}
    data = bytearray(build([(member, b"")], tarfile.PAX_FORMAT))
    start = data.index(b" path=fine")
    data[start - 2 : start] = b"99"  # a record longer than the header holds
    with pytest.raises(TarFormatError, match="damaged PAX header"):
        scan(bytes(data))


def test_a_lone_zero_block_followed_by_more_is_damage() -> None:
    data = two_files()
    one = 512 + 1024  # where "two"'s header starts
    spliced = data[:one] + bytes(512) + data[one:]
    with pytest.raises(TarFormatError, match=f"lone zero block at byte {one}"):
        scan(spliced)
    # one zero block and then nothing is a clean (if short) end, as for Go
    assert [e.name for e, _ in scan(data[:one] + bytes(512))] == ["one"]


def test_missing_padding_names_where_it_ends() -> None:
    data = two_files()[: 512 + 700 + 10]  # "one"'s data is whole, its padding is not
    with pytest.raises(TarTruncated) as caught:
        scan(data)
    assert (caught.value.name, caught.value.end, caught.value.needed) == ("one", 1222, 1536)


def test_star_prefix() -> None:
    header = bytearray(info("name", size=0).tobuf(tarfile.USTAR_FORMAT))
    header[345:476] = b"p" * 131  # a full prefix: no NUL ends it
    header[476:488] = b"%011o\0" % 0o17  # star keeps times here, after its shorter prefix
    header[508:512] = b"tar\0"
    rechecksum(header)
    assert [e.name for e, _ in scan(bytes(header) + bytes(1024))] == ["p" * 131 + "/name"]
