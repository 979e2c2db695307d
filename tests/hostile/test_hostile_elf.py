"""Hostile ELF programs for `distill package`: one that needs a library no Debian package
ships, one for another CPU, damaged headers, a dynamic one on `static`. Each is compiled
here (gcc) or derived from one that was, and each run must end in one clean error with
nothing written."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hostile_harness import assert_clean_error, run_distill

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed"),
]

HELLO = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'


def _gcc(out: Path, source: str, *flags: str) -> Path:
    src = out.parent / f".{out.name}.c"
    src.write_text(source)
    subprocess.run(["gcc", "-o", str(out), str(src), *flags], check=True, capture_output=True)
    src.unlink()
    return out


def _package(cwd: Path, program: Path, *extra: str) -> str:
    outcome = run_distill(
        ["package", str(program), *extra, "-o", "oci-archive:out.tar"], cwd=cwd, timeout=120
    )
    return assert_clean_error(outcome)


def test_a_library_no_debian_package_ships(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    lib = _gcc(
        tmp_path / "libanswer.so.1",
        "int answer(void) { return 42; }\n",
        "-shared",
        "-fPIC",
        "-Wl,-soname,libanswer.so.1",
    )
    program = _gcc(
        app / "server",
        "int answer(void);\nint main(void) { return answer(); }\n",
        str(lib),
    )
    lib.unlink()
    outcome = run_distill(
        ["package", str(program), "-o", "oci-archive:out.tar"], cwd=tmp_path, timeout=120
    )
    line = assert_clean_error(outcome, "libanswer.so.1", "RUNPATH")
    assert "no Debian package" in line


def test_a_program_for_another_cpu(tmp_path: Path) -> None:
    program = _gcc(tmp_path / "server", HELLO, "-static")
    data = bytearray(program.read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # e_machine: EM_AARCH64
    program.write_bytes(bytes(data))
    line = _package(tmp_path, program, "--base", "static")
    assert "arm64" in line


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:64],  # the header only: its tables point past the end
        lambda b: b[:20] + b"\xff" * 44 + b[64:],  # garbage offsets and counts
        lambda b: b[:4] + b"\x09" + b[5:],  # an ELF class that does not exist
    ],
)
def test_damaged_headers(tmp_path: Path, damage: object) -> None:
    program = _gcc(tmp_path / "server", HELLO)
    assert callable(damage)
    program.write_bytes(damage(program.read_bytes()))
    _package(tmp_path, program, "--kind", "elf", "--base", "static")


def test_a_dynamic_program_on_static(tmp_path: Path) -> None:
    program = _gcc(tmp_path / "server", HELLO)
    line = _package(tmp_path, program, "--base", "static")
    assert "no C library" in line
