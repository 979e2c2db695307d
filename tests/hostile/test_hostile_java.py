"""Hostile and bad Java apps: each case is one real `distill package` of a crafted jar that
must end in one clean error with a hint, exit 1, writing no image. The base is
`static:nonroot` (small to build): every case is refused while the jar is read, before the
planner asks the base for a java."""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_harness import assert_clean_error, run_distill

pytestmark = pytest.mark.network

MANIFEST = "Manifest-Version: 1.0\r\nMain-Class: a.B\r\n\r\n"
INDEX = '- "application":\n  - "a/"\n'


def _no_main_class(jar: Path) -> None:
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\n\r\n")
        zf.writestr("a/B.class", b"\xca\xfe\xba\xbe")


def _not_a_zip(jar: Path) -> None:
    jar.write_bytes(b"#!/bin/sh\nexec java -jar app.jar\n")


def _traversal(jar: Path) -> None:
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", MANIFEST)
        zf.writestr("a/B.class", b"\xca\xfe\xba\xbe")
        zf.writestr("BOOT-INF/layers.idx", INDEX)
        zf.writestr("../../../tmp/owned", b"x")


def _lying_sizes(jar: Path) -> None:
    """A layered jar whose central directory says one member unpacks to 3.75 GiB."""
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", MANIFEST)
        zf.writestr("a/B.class", b"\xca\xfe\xba\xbe")
        zf.writestr("BOOT-INF/layers.idx", INDEX)
        zf.writestr("a/zeros", b"\0" * 16)
    data = bytearray(jar.read_bytes())
    entry = data.rfind(b"PK\x01\x02")  # the last central directory entry: a/zeros
    struct.pack_into("<L", data, entry + 24, 0xF0000000)
    jar.write_bytes(bytes(data))


def _truncated(jar: Path) -> None:
    _traversal(jar)
    jar.write_bytes(jar.read_bytes()[:100])


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "no-main-class": (_no_main_class, "Main-Class"),
    "not-a-zip": (_not_a_zip, "not a jar"),
    "traversal": (_traversal, "outside the app directory"),
    "lying-sizes": (_lying_sizes, "zip bomb"),
    "truncated": (_truncated, "not a jar"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_jar(sandbox: Path, case: str) -> None:
    make, mention = CASES[case]
    make(sandbox / "app.jar")
    outcome = run_distill(
        ["package", "app.jar", "--base", "static:nonroot", "-o", "oci:out"], cwd=sandbox
    )
    assert_clean_error(outcome, mention)
    assert not (sandbox / "out").exists()
