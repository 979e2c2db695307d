"""Layer blobs: deterministic bytes, the documented entry order, PAX headers, compression."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from backports import zstd

from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import (
    Compression,
    LayerBlob,
    layer_cache_key,
    ordered_entries,
    write_layer,
)

SDE = 1_700_000_000
LONG = "d/" + "n" * 150  # beyond ustar's 100-byte name field


def sample_entries(staging: Path) -> list[FsEntry]:
    staging.mkdir(parents=True, exist_ok=True)
    staged = staging / "staged-busybox"
    staged.write_bytes(b"\x7fELF" + bytes(range(256)) * 64)
    return [
        FsEntry("usr/bin/tool", EntryKind.FILE, 0o4755, content=staged, package="tool"),
        FsEntry("bin", EntryKind.SYMLINK, 0o777, linkname="usr/bin"),
        FsEntry("tmp", EntryKind.DIR, 0o1777),
        FsEntry("etc/passwd", EntryKind.FILE, 0o644, content=b"root:x:0:0::/root:/sbin/nologin\n"),
        FsEntry("home/nonroot", EntryKind.DIR, 0o700, uid=65532, gid=65532),
        # Sorts before its target: must be written after it.
        FsEntry("aa/link", EntryKind.HARDLINK, 0o644, linkname="zz/file"),
        FsEntry("zz/file", EntryKind.FILE, 0o644, uid=1000, gid=1001, content=b"linked"),
        FsEntry("zz/after", EntryKind.HARDLINK, 0o644, linkname="zz/file"),
        FsEntry("a-b", EntryKind.FILE, 0o600, content=b""),
        FsEntry("usr/share/café", EntryKind.FILE, 0o644, content=b"non-ascii name"),
        FsEntry(LONG, EntryKind.FILE, 0o644, content=b"long name"),
        FsEntry("empty", EntryKind.FILE, 0o644),
    ]


def tar_bytes(blob: LayerBlob) -> bytes:
    raw = blob.path.read_bytes()
    if blob.compression is Compression.GZIP:
        return gzip.decompress(raw)
    if blob.compression is Compression.ZSTD:
        return zstd.decompress(raw)
    return raw


def members(blob: LayerBlob) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(blob))) as tar:
        return tar.getmembers()


@pytest.mark.parametrize("compression", list(Compression))
def test_same_entries_in_any_order_give_identical_blobs(
    tmp_path: Path, compression: Compression
) -> None:
    entries = sample_entries(tmp_path / "staging")
    first = write_layer(entries, tmp_path / "one", compression=compression, source_date_epoch=SDE)
    for seed in range(3):
        shuffled = list(entries)
        random.Random(seed).shuffle(shuffled)
        again = write_layer(
            shuffled, tmp_path / f"two-{seed}", compression=compression, source_date_epoch=SDE
        )
        assert again.digest == first.digest
        assert again.diff_id == first.diff_id
        assert again.size == first.size
        assert again.path.read_bytes() == first.path.read_bytes()


def test_diff_id_does_not_depend_on_compression_but_on_sde(tmp_path: Path) -> None:
    entries = sample_entries(tmp_path / "staging")
    blobs = [
        write_layer(entries, tmp_path / c, compression=c, source_date_epoch=SDE)
        for c in Compression
    ]
    assert len({b.diff_id for b in blobs}) == 1
    assert len({b.digest for b in blobs}) == 3
    later = write_layer(
        entries, tmp_path / "later", compression=Compression.NONE, source_date_epoch=SDE + 1
    )
    assert later.diff_id != blobs[0].diff_id


@pytest.mark.parametrize("compression", list(Compression))
def test_blob_is_named_by_digest_and_its_hashes_match(
    tmp_path: Path, compression: Compression
) -> None:
    dest = tmp_path / "blobs"
    blob = write_layer(
        sample_entries(tmp_path / "staging"),
        dest,
        compression=compression,
        source_date_epoch=SDE,
    )
    data = blob.path.read_bytes()
    assert blob.path == dest / blob.digest.removeprefix("sha256:")
    assert [p.name for p in dest.iterdir()] == [blob.path.name]  # no temp file left
    assert blob.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert blob.size == len(data)
    tar = tar_bytes(blob)
    assert blob.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert blob.uncompressed_size == len(tar)
    assert blob.media_type == compression.media_type
    assert blob.compression is compression
    assert blob.file_count == len(members(blob))


def test_entries_follow_the_documented_order(tmp_path: Path) -> None:
    blob = write_layer(
        sample_entries(tmp_path / "staging"),
        tmp_path / "out",
        compression=Compression.NONE,
        source_date_epoch=SDE,
    )
    names = [m.name for m in members(blob)]
    assert names == [
        "a-b",
        "aa",
        "bin",
        "d",
        LONG,
        "empty",
        "etc",
        "etc/passwd",
        "home",
        "home/nonroot",
        "tmp",
        "usr",
        "usr/bin",
        "usr/bin/tool",
        "usr/share",
        "usr/share/café",
        "zz",
        "zz/file",
        # Both links sort before their target, so both follow it, in path order.
        "aa/link",
        "zz/after",
    ]


def test_component_order_keeps_subtrees_together(tmp_path: Path) -> None:
    entries = [
        FsEntry("a-b", EntryKind.FILE, 0o644),
        FsEntry("a/b", EntryKind.FILE, 0o644),
        FsEntry("a.b", EntryKind.FILE, 0o644),
        FsEntry("a/c", EntryKind.FILE, 0o644),
    ]
    assert [e.path for e in ordered_entries(entries)] == ["a", "a/b", "a/c", "a-b", "a.b"]


def test_headers_are_pax_numeric_and_dated_sde(tmp_path: Path) -> None:
    blob = write_layer(
        sample_entries(tmp_path / "staging"),
        tmp_path / "out",
        compression=Compression.NONE,
        source_date_epoch=SDE,
    )
    raw = blob.path.read_bytes()
    # Every header block is POSIX ustar ("ustar\0" "00"), never GNU's "ustar  \0".
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        offsets = [m.offset for m in tar.getmembers()]
    for offset in offsets:
        assert raw[offset + 257 : offset + 265] == b"ustar\x0000"
    for member in members(blob):
        assert member.mtime == SDE
        assert member.uname == "" and member.gname == ""
        assert not {"atime", "ctime", "mtime", "uname", "gname"} & set(member.pax_headers)


def test_modes_owners_links_and_contents(tmp_path: Path) -> None:
    entries = sample_entries(tmp_path / "staging")
    blob = write_layer(
        entries, tmp_path / "out", compression=Compression.GZIP, source_date_epoch=SDE
    )
    with tarfile.open(blob.path) as tar:
        by_name = {m.name: m for m in tar.getmembers()}
        tool = by_name["usr/bin/tool"]
        assert tool.isreg() and tool.mode == 0o4755
        extracted = tar.extractfile(tool)
        assert extracted is not None
        assert extracted.read() == (tmp_path / "staging" / "staged-busybox").read_bytes()
        assert by_name["tmp"].isdir() and by_name["tmp"].mode == 0o1777
        assert by_name["bin"].issym() and by_name["bin"].linkname == "usr/bin"
        link = by_name["aa/link"]
        assert link.islnk() and link.linkname == "zz/file"
        target = by_name["zz/file"]
        assert (target.uid, target.gid) == (1000, 1001)
        home = by_name["home/nonroot"]
        assert (home.uid, home.gid, home.mode) == (65532, 65532, 0o700)
        assert by_name["empty"].size == 0
        passwd = tar.extractfile("etc/passwd")
        assert passwd is not None and passwd.read().startswith(b"root:x:0:0")


def test_implied_directories_are_root_0755(tmp_path: Path) -> None:
    entries = [FsEntry("usr/lib/x/y.so", EntryKind.FILE, 0o644, uid=5, gid=5, content=b"y")]
    blob = write_layer(
        entries, tmp_path / "out", compression=Compression.NONE, source_date_epoch=SDE
    )
    dirs = [m for m in members(blob) if m.isdir()]
    assert [d.name for d in dirs] == ["usr", "usr/lib", "usr/lib/x"]
    assert all((d.mode, d.uid, d.gid) == (0o755, 0, 0) for d in dirs)
    assert blob.file_count == 4


def test_listed_directories_keep_their_metadata(tmp_path: Path) -> None:
    entries = [
        FsEntry("var/cache/app", EntryKind.DIR, 0o750, uid=100, gid=101),
        FsEntry("var/cache/app/f", EntryKind.FILE, 0o640, content=b"f"),
    ]
    blob = write_layer(
        entries, tmp_path / "out", compression=Compression.NONE, source_date_epoch=SDE
    )
    app = {m.name: m for m in members(blob)}["var/cache/app"]
    assert (app.mode, app.uid, app.gid) == (0o750, 100, 101)


def test_long_and_non_ascii_names_use_pax_records(tmp_path: Path) -> None:
    blob = write_layer(
        sample_entries(tmp_path / "staging"),
        tmp_path / "out",
        compression=Compression.NONE,
        source_date_epoch=SDE,
    )
    by_name = {m.name: m for m in members(blob)}
    assert by_name[LONG].pax_headers.get("path") == LONG
    assert by_name["usr/share/café"].pax_headers.get("path") == "usr/share/café"


def test_gzip_header_is_fixed_and_stream_is_valid(tmp_path: Path) -> None:
    blob = write_layer(
        sample_entries(tmp_path / "staging"),
        tmp_path / "out",
        compression=Compression.GZIP,
        source_date_epoch=SDE,
    )
    raw = blob.path.read_bytes()
    # magic, deflate, no flags (no name), mtime 0, no extra flags, OS 255
    assert raw[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:  # checks CRC and length
        assert hashlib.sha256(stream.read()).hexdigest() == blob.diff_id.removeprefix("sha256:")


def test_gzip_of_no_entries_is_still_a_valid_stream(tmp_path: Path) -> None:
    blob = write_layer([], tmp_path / "out", compression=Compression.GZIP, source_date_epoch=0)
    assert gzip.decompress(blob.path.read_bytes()) == b"\0" * 10240
    assert blob.file_count == 0


def test_zstd_round_trip_has_a_checksum(tmp_path: Path) -> None:
    blob = write_layer(
        sample_entries(tmp_path / "staging"),
        tmp_path / "out",
        compression=Compression.ZSTD,
        source_date_epoch=SDE,
    )
    raw = blob.path.read_bytes()
    assert raw[:4] == b"\x28\xb5\x2f\xfd"
    assert zstd.get_frame_info(raw).dictionary_id == 0
    tar = zstd.decompress(raw)
    assert hashlib.sha256(tar).hexdigest() == blob.diff_id.removeprefix("sha256:")
    damaged = bytearray(raw)
    damaged[-2] ^= 0xFF  # inside the content checksum
    with pytest.raises(zstd.ZstdError):
        zstd.decompress(bytes(damaged))


def test_hardlink_chains_point_at_the_file(tmp_path: Path) -> None:
    entries = [
        FsEntry("c", EntryKind.FILE, 0o644, content=b"data"),
        FsEntry("b", EntryKind.HARDLINK, 0o644, linkname="c"),
        FsEntry("a", EntryKind.HARDLINK, 0o644, linkname="b"),
    ]
    ordered = ordered_entries(entries)
    assert [(e.path, e.linkname) for e in ordered] == [("c", ""), ("a", "c"), ("b", "c")]
    blob = write_layer(entries, tmp_path / "o", compression=Compression.NONE, source_date_epoch=0)
    with tarfile.open(blob.path) as tar:
        tar.extractall(tmp_path / "x", filter="tar")
    assert (tmp_path / "x" / "a").read_bytes() == b"data"
    assert (tmp_path / "x" / "a").stat().st_ino == (tmp_path / "x" / "c").stat().st_ino


def test_identical_duplicates_collapse(tmp_path: Path) -> None:
    entries = [
        FsEntry("usr", EntryKind.DIR, 0o755, package="a"),
        FsEntry("usr", EntryKind.DIR, 0o755, package="b"),
        FsEntry("usr/f", EntryKind.FILE, 0o644, content=b"x", package="a"),
        FsEntry("usr/f", EntryKind.FILE, 0o644, content=b"x", package="b"),
    ]
    assert [e.path for e in ordered_entries(entries)] == ["usr", "usr/f"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([FsEntry("/etc/x", EntryKind.FILE, 0o644)], "not a normalised"),
        ([FsEntry("etc/../x", EntryKind.FILE, 0o644)], "not a normalised"),
        ([FsEntry("./etc", EntryKind.DIR, 0o755)], "not a normalised"),
        ([FsEntry("etc//x", EntryKind.FILE, 0o644)], "not a normalised"),
        ([FsEntry("etc/", EntryKind.DIR, 0o755)], "not a normalised"),
        (
            [
                FsEntry("etc/x", EntryKind.FILE, 0o644, content=b"1", package="p"),
                FsEntry("etc/x", EntryKind.FILE, 0o644, content=b"2", package="q"),
            ],
            "twice",
        ),
        (
            [
                FsEntry("lib", EntryKind.SYMLINK, 0o777, linkname="usr/lib"),
                FsEntry("lib/libc.so.6", EntryKind.FILE, 0o755),
            ],
            "not a directory",
        ),
        ([FsEntry("a", EntryKind.HARDLINK, 0o644, linkname="gone")], "not in the layer"),
        (
            [
                FsEntry("d", EntryKind.DIR, 0o755),
                FsEntry("a", EntryKind.HARDLINK, 0o644, linkname="d"),
            ],
            "directory",
        ),
        (
            [
                FsEntry("a", EntryKind.HARDLINK, 0o644, linkname="b"),
                FsEntry("b", EntryKind.HARDLINK, 0o644, linkname="a"),
            ],
            "loop",
        ),
        ([FsEntry("a", EntryKind.HARDLINK, 0o644, linkname="../etc/shadow")], "hardlink target"),
    ],
)
def test_bad_entries_are_refused(tmp_path: Path, entries: list[FsEntry], message: str) -> None:
    with pytest.raises(DistillError, match=message):
        write_layer(entries, tmp_path / "o", compression=Compression.GZIP, source_date_epoch=0)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_missing_staged_file_leaves_nothing_behind(tmp_path: Path) -> None:
    dest = tmp_path / "blobs"
    dest.mkdir()
    entries = [
        FsEntry("a", EntryKind.FILE, 0o644, content=b"a" * 100_000),
        FsEntry("b", EntryKind.FILE, 0o644, content=tmp_path / "vanished"),
    ]
    with pytest.raises(DistillError, match="staged content of /b") as info:
        write_layer(entries, dest, compression=Compression.GZIP, source_date_epoch=0)
    assert info.value.hint
    assert list(dest.iterdir()) == []


def test_unwritable_destination_is_a_distill_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DistillError, match="cannot write a layer") as info:
        write_layer(
            [FsEntry("a", EntryKind.FILE, 0o644)],
            blocker / "blobs",
            compression=Compression.NONE,
            source_date_epoch=0,
        )
    assert info.value.hint


def test_big_files_are_streamed_not_held_in_memory(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with big.open("wb") as out:
        out.truncate(64 << 20)  # sparse: costs no disk
    tracemalloc.start()
    try:
        blob = write_layer(
            [FsEntry("big", EntryKind.FILE, 0o644, content=big)],
            tmp_path / "out",
            compression=Compression.GZIP,
            source_date_epoch=0,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blob.uncompressed_size > 64 << 20
    assert peak < 12 << 20, f"peak Python memory {peak} bytes for a 64 MiB file"


def test_cache_key_names_inputs_and_options() -> None:
    key = layer_cache_key(["aa", "bb"], Compression.GZIP, 0)
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == layer_cache_key(iter(["aa", "bb"]), Compression.GZIP, 0)
    others = {
        layer_cache_key(["bb", "aa"], Compression.GZIP, 0),
        layer_cache_key(["aa", "bb"], Compression.ZSTD, 0),
        layer_cache_key(["aa", "bb"], Compression.GZIP, 1),
        layer_cache_key(["aa"], Compression.GZIP, 0),
        layer_cache_key(["aabb"], Compression.GZIP, 0),
    }
    assert key not in others and len(others) == 5


def test_layer_blob_round_trips_through_a_dict(tmp_path: Path) -> None:
    blob = write_layer(
        [FsEntry("f", EntryKind.FILE, 0o644, content=b"f")],
        tmp_path / "cache",
        compression=Compression.ZSTD,
        source_date_epoch=0,
    )
    assert LayerBlob.from_dict(blob.to_dict(), tmp_path / "cache") == blob


def test_unknown_media_type_is_refused() -> None:
    with pytest.raises(DistillError, match="media type"):
        Compression.from_media_type("application/vnd.oci.image.layer.v1.tar+bzip2")
