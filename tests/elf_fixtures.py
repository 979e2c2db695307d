"""ELF programs compiled in the test with the host's gcc, and bases made of the host's own
installed packages (``dpkg -L``): real files, real sonames, no hand-written lists."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from distill.package.plan import BaseFacts

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
HOST_ARCH = subprocess.run(
    ["dpkg", "--print-architecture"], capture_output=True, text=True, check=False
).stdout.strip()


def compile_c(out: Path, source: str, *flags: str, cxx: bool = False) -> Path:
    """Compile ``source`` to ``out``; the source file is removed again, so a directory of
    programs holds only what the compiler made."""
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.parent / f".{out.name}.src{'.cc' if cxx else '.c'}"
    src.write_text(source)
    try:
        proc = subprocess.run(
            ["g++" if cxx else "gcc", "-O1", "-o", str(out), str(src), *flags],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        src.unlink()
    assert proc.returncode == 0, proc.stderr
    return out


def readelf(path: Path) -> tuple[str | None, list[str], list[str], list[str]]:
    """(interpreter, NEEDED, RUNPATH, RPATH) as binutils' readelf reads them: the oracle."""
    prog = subprocess.run(
        ["readelf", "-lW", str(path)], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"Requesting program interpreter: ([^\]]+)\]", prog)
    dyn = subprocess.run(
        ["readelf", "-dW", str(path)], capture_output=True, text=True, check=True
    ).stdout

    def tag(name: str) -> list[str]:
        return re.findall(rf"\({name}\)\s+\S+(?: \S+)*?: \[([^\]]*)\]", dyn)

    split = [p for v in tag("RUNPATH") for p in v.split(":")]
    rsplit = [p for v in tag("RPATH") for p in v.split(":")]
    return (match.group(1) if match else None), tag("NEEDED"), split, rsplit


def host_base(*packages: str, suite: str = "trixie") -> BaseFacts:
    """A base holding exactly the host's files of ``packages`` (plus the usr-merge links),
    paths as the loader sees them: real directories, links kept as links."""
    files: set[str] = set()
    links: dict[str, str] = {}
    for top in ("lib", "lib64", "bin", "sbin"):
        if os.path.islink("/" + top):
            links[top] = os.readlink("/" + top)
            files.add(top)
    versions: dict[str, str] = {}
    for name in packages:
        listing = subprocess.run(["dpkg", "-L", name], capture_output=True, text=True, check=True)
        versions[name] = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True, check=True
        ).stdout
        for line in listing.stdout.splitlines():
            if not line.startswith("/") or not os.path.lexists(line):
                continue
            real = os.path.join(os.path.realpath(os.path.dirname(line)), os.path.basename(line))
            rel = real.lstrip("/")
            if os.path.islink(line):
                links[rel] = os.readlink(line)
            files.add(rel)
    glibc = versions.get("libc6", "").split("-")[0] or None
    return BaseFacts(
        arch=HOST_ARCH,
        suite=suite,
        files=frozenset(files),
        symlinks=links,
        packages=versions,
        glibc=glibc,
    )


HELLO = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
CURL = (
    "#include <curl/curl.h>\n#include <stdio.h>\n"
    "int main(void) { puts(curl_version()); return 0; }\n"
)
