"""Index parse and load times, and `distill lock python3` cold vs warm. Prints; asserts nothing.

.venv/bin/python benchmarks/bench_index.py
"""

from __future__ import annotations

import lzma
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from distill.cache import BlobCache
from distill.debian.archive import _load_packages, _packages_request, fetch_release
from distill.debian.binary import clear_relation_caches
from distill.debian.control import parse_stanzas
from distill.debian.mirror import discover_mirrors
from distill.debian.stanzas import index_tables, parse_packages_index
from distill.net.download import fetch_blob
from distill.net.http import make_session


def best_of(n: int, func: Callable[[], object], before: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(n):
        if before is not None:
            before()
        start = time.perf_counter()
        result = func()  # freed after the clock stops: freeing 70k packages takes ~0.1 s
        times.append(time.perf_counter() - start)
        del result
    return min(times)


_LOAD = """
import sys, time
from pathlib import Path
from distill.cache import BlobCache
from distill.debian.archive import _load_packages

blob, sha256, cache = sys.argv[1:]
start = time.perf_counter()
loaded = _load_packages(Path(blob), sha256, "trixie", "amd64", BlobCache(Path(cache)))
print(time.perf_counter() - start)
"""


def parse_times() -> None:
    mirrors = discover_mirrors()
    session = make_session()
    release = fetch_release(mirrors.main, "trixie", session)
    request = _packages_request(mirrors.main, release, "amd64")
    blob = fetch_blob(request, BlobCache(), session=session)
    start = time.perf_counter()
    text = lzma.decompress(blob.read_bytes()).decode()
    xz = time.perf_counter() - start
    stanzas = len(parse_stanzas(text))
    raw = best_of(3, lambda: parse_stanzas(text))
    # Each parse starts with empty relation caches, as the one parse of a cold load does.
    full = best_of(3, lambda: parse_packages_index(text, "trixie"), clear_relation_caches)
    packages = parse_packages_index(text, "trixie")
    tables = best_of(3, lambda: index_tables(packages, "amd64"))
    with tempfile.TemporaryDirectory() as tmp:
        _load_packages(blob, request.sha256, "trixie", "amd64", BlobCache(Path(tmp)))
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
        # Timed in a fresh interpreter, as a warm lock loads it (this one's heap is churned).
        args = [str(blob), request.sha256, tmp]
        warm = min(
            float(subprocess.run([sys.executable, "-c", _LOAD, *args], check=True,
                                 capture_output=True, text=True).stdout)
            for _ in range(3)
        )  # fmt: skip
    print(f"trixie main amd64 Packages: {stanzas} stanzas, {len(text) / 1e6:.1f} MB text")
    print(f"  xz decompress            {xz:.3f} s")
    print(f"  parse_stanzas            {raw:.3f} s   (goal <= 0.8 s)")
    print(f"  parse_packages_index     {full:.3f} s   (stanzas → BinaryPackage, relations checked)")
    print(f"  index_tables             {tables:.3f} s   (apt's creation order, provides table)")
    print(f"  load from the cache      {warm:.3f} s   ({size / 1e6:.1f} MB cached)")


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
        for label in ("cold", "warm", "warm", "warm", "warm", "warm"):
            start = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            print(f"distill lock python3 ({label} cache): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    parse_times()
    lock_times()
