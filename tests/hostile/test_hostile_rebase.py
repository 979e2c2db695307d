"""Hostile images for `distill rebase`: each case one real run, ending in one clean error
line (or, for inputs that are only big, a correct result), bounded in time and memory,
with no output left behind when refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hostile_harness import assert_bounded, assert_clean_error, run_distill

from distill.context import Access
from distill.image.compose import compose_image
from distill.image.config import ImageConfigSpec
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, write_layer
from distill.image.model import Image
from distill.transports import parse_reference
from test_rebase import AMD64, SDE, make_app, make_base


def _write(top: Image, where: Path) -> None:
    parse_reference(f"oci:{where}").write(top, Access())


def _layer_over(base: Image, blobs: Path, entries: list[FsEntry]) -> Image:
    layer = write_layer(entries, blobs, compression=Compression.GZIP, source_date_epoch=SDE)
    return compose_image(ImageConfigSpec(), AMD64, [*base.layers, layer], source_date_epoch=SDE)


def _setup(sandbox: Path, base_name: str = "oci:old") -> tuple[Image, Path]:
    blobs = sandbox / "blobs"
    old = make_base(blobs, b"3.0.20")
    _write(old, sandbox / "old")
    _write(make_app(blobs, old, base_name=base_name), sandbox / "app")
    return old, blobs


@pytest.mark.parametrize(
    ("base_name", "mention"),
    [
        ("python3\n\x1b[31mred\x1b[0m [bold]x[/]", "not an image reference"),
        ("oci:/etc", "not an OCI image layout"),
        ("oci:old/../../../../etc", "old"),
        ("", "--old-base"),
        ("x" * 100_000, "not an image reference"),
    ],
    ids=["escapes", "etc", "climbing", "empty", "huge"],
)
def test_a_hostile_recorded_base_is_a_clean_error(
    sandbox: Path, base_name: str, mention: str
) -> None:
    _old, blobs = _setup(sandbox, base_name)
    _write(make_base(blobs, b"3.0.22"), sandbox / "new")
    outcome = run_distill(
        ["rebase", "oci:app", "--new-base", "oci:new", "-o", "oci:out"], cwd=sandbox
    )
    line = assert_clean_error(outcome, mention)
    assert "\x1b" not in line
    assert not (sandbox / "out").exists()


def test_os_release_links_in_a_loop_are_no_os_release(sandbox: Path) -> None:
    _old, blobs = _setup(sandbox)
    looping = _layer_over(
        make_base(blobs, b"3.0.22", release=False),
        blobs,
        [
            FsEntry("etc/os-release", EntryKind.SYMLINK, 0o777, linkname="/usr/lib/os-release"),
            FsEntry(
                "usr/lib/os-release", EntryKind.SYMLINK, 0o777, linkname="../../etc/os-release"
            ),
        ],
    )
    _write(looping, sandbox / "new")
    outcome = run_distill(
        ["rebase", "oci:app", "--old-base", "oci:old", "--new-base", "oci:new", "-o", "oci:out"],
        cwd=sandbox,
    )
    assert_clean_error(outcome, "has no os-release")


def test_a_huge_os_release_is_read_only_in_part(sandbox: Path) -> None:
    _old, blobs = _setup(sandbox)
    big = sandbox / "big"
    with big.open("wb") as fh:
        fh.write(b'ID=debian\nVERSION_ID="12"\n')
        fh.write(b"#" * (200 << 20))  # 200 MiB of comment: compresses to little
    new = make_base(blobs, b"3.0.22", release=False)
    new = _layer_over(
        new, blobs, [FsEntry("usr/lib/os-release", EntryKind.FILE, 0o644, content=big)]
    )
    os.unlink(big)
    _write(new, sandbox / "new")
    outcome = run_distill(
        ["rebase", "oci:app", "--old-base", "oci:old", "--new-base", "oci:new", "-o", "oci:out"],
        cwd=sandbox,
        timeout=60,
    )
    assert_bounded(outcome)
    assert outcome.returncode == 0, outcome.describe()


def test_a_damaged_new_base_blob_is_named(sandbox: Path) -> None:
    _old, blobs = _setup(sandbox)
    new = make_base(blobs, b"3.0.22")
    _write(new, sandbox / "new")
    blob = sandbox / "new/blobs/sha256" / new.layers[1].digest.removeprefix("sha256:")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    outcome = run_distill(
        ["rebase", "oci:app", "--old-base", "oci:old", "--new-base", "oci:new", "-o", "oci:out"],
        cwd=sandbox,
    )
    assert_clean_error(outcome, blob.name[:12])
    assert not (sandbox / "out").exists()


@pytest.mark.parametrize("which", ["image", "old", "new"])
def test_the_output_may_not_replace_an_input_archive(sandbox: Path, which: str) -> None:
    old, blobs = _setup(sandbox)
    parse_reference(f"oci-archive:{sandbox / 'image.tar'}").write(make_app(blobs, old), Access())
    parse_reference(f"oci-archive:{sandbox / 'old.tar'}").write(old, Access())
    new = make_base(blobs, b"3.0.22")
    parse_reference(f"oci-archive:{sandbox / 'new.tar'}").write(new, Access())
    before = (sandbox / f"{which}.tar").read_bytes()
    outcome = run_distill(
        [
            "rebase", "oci-archive:image.tar", "--old-base", "oci-archive:old.tar",
            "--new-base", "oci-archive:new.tar", "-o", f"oci-archive:{which}.tar",
        ],
        cwd=sandbox,
    )  # fmt: skip
    assert_clean_error(outcome, f"{which}.tar")
    assert (sandbox / f"{which}.tar").read_bytes() == before


def test_the_output_may_not_replace_the_recorded_base(sandbox: Path) -> None:
    blobs = sandbox / "blobs"
    old = make_base(blobs, b"3.0.20")
    parse_reference(f"oci-archive:{sandbox / 'old.tar'}").write(old, Access())
    _write(make_app(blobs, old, base_name="oci-archive:old.tar"), sandbox / "app")
    _write(make_base(blobs, b"3.0.22"), sandbox / "new")
    before = (sandbox / "old.tar").read_bytes()
    outcome = run_distill(
        ["rebase", "oci:app", "--new-base", "oci:new", "-o", "oci-archive:old.tar"], cwd=sandbox
    )
    assert_clean_error(outcome, "old.tar")
    assert (sandbox / "old.tar").read_bytes() == before
