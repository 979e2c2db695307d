"""Index parse time and `distill lock python3` cold vs warm. Prints numbers; asserts nothing.

.venv/bin/python benchmarks/bench_index.py
"""

from __future__ import annotations

import lzma
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distill.cache import BlobCache
from distill.debian.archive import _packages_request, fetch_release
from distill.debian.control import parse_stanzas
from distill.debian.mirror import discover_mirrors
from distill.debian.packages import parse_packages_index
from distill.download import fetch_blob, make_session


def best_of(n: int, func: object) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        func()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def parse_times() -> None:
    mirrors = discover_mirrors()
    session = make_session()
    release = fetch_release(mirrors.main, "trixie", session)
    blob = fetch_blob(
        _packages_request(mirrors.main, release, "amd64"), BlobCache(), session=session
    )
    start = time.perf_counter()
    text = lzma.decompress(blob.read_bytes()).decode()
    xz = time.perf_counter() - start
    stanzas = len(parse_stanzas(text))
    raw = best_of(3, lambda: parse_stanzas(text))
    full = best_of(3, lambda: parse_packages_index(text, "trixie"))
    print(f"trixie main amd64 Packages: {stanzas} stanzas, {len(text) / 1e6:.1f} MB text")
    print(f"  xz decompress            {xz:.3f} s")
    print(f"  parse_stanzas            {raw:.3f} s   (goal <= 0.8 s)")
    print(f"  parse_packages_index     {full:.3f} s   (stanzas + relations → BinaryPackage)")


def lock_times() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DISTILL_CACHE_DIR": str(Path(tmp, "cache"))}
        cmd = [
            sys.executable,
            "-m",
            "distill",
            "-q",
            "lock",
            "python3",
            "--arch",
            "amd64",
            "-o",
            str(Path(tmp, "python3.lock")),
        ]
        for label in ("cold", "warm", "warm"):
            start = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            print(f"distill lock python3 ({label} cache): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    parse_times()
    lock_times()
