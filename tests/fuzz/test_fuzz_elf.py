"""Fuzz the ELF reader (pyelftools under ``needed_libraries``) with programs gcc compiled
here, edited in a few places: it returns what the headers say, or a DistillError."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from fuzzing import FUZZ, clean, mutated_bytes
from hypothesis import given
from hypothesis import strategies as st

from distill.package.libraries import needed_libraries

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def _programs() -> list[bytes]:
    if shutil.which("gcc") is None:
        return [b"\x7fELF"]
    with tempfile.TemporaryDirectory(prefix="fuzz-elf-") as name:
        return _compiled(Path(name))


def _compiled(tmp: Path) -> list[bytes]:
    src = tmp / "p.c"
    src.write_text('#include <stdio.h>\nint main(void) { puts("x"); return 0; }\n')
    out = []
    for flags in ([], ["-static-pie"], ["-Wl,-rpath,$ORIGIN/lib", "-Wl,--disable-new-dtags"]):
        subprocess.run(["gcc", "-o", str(tmp / "p"), str(src), *flags], check=True)
        data = (tmp / "p").read_bytes()
        # The headers and the first tables are where the parser looks: keep examples small.
        out.append(data if len(data) < 64 << 10 else data[: 64 << 10])
    return out


_PROGRAMS = _programs()


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(_PROGRAMS))
    data = draw(mutated_bytes(data, max_ops=6))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


@FUZZ
@given(damaged())
def test_needed_libraries_returns_or_refuses(data: bytes) -> None:
    clean(lambda: needed_libraries(data, "prog"))
