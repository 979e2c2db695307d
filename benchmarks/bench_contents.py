"""The Contents index (trixie amd64) cold and warm, and resolving a libcurl program's
libraries. Each run is a fresh interpreter; prints; asserts nothing.

.venv/bin/python benchmarks/bench_contents.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_INDEX = """
import json, resource, sys, time
from distill.cache import BlobCache
from distill.debian.contents import library_index
start = time.perf_counter()
index = library_index("trixie", "amd64", cache=BlobCache())
loaded = time.perf_counter() - start
start = time.perf_counter()
for _ in range(1000):
    index.packages_at("usr/lib/x86_64-linux-gnu/libcurl.so.4")
lookup = (time.perf_counter() - start) / 1000
print(json.dumps({"load": loaded, "lookup_us": lookup * 1e6, "paths": len(index.paths),
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "verified": index.verified}))
"""

_RESOLVE = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, "tests")
from elf_fixtures import host_base
from distill.cache import BlobCache
from distill.package.libraries import resolve_libraries
base = host_base("libc6")
start = time.perf_counter()
found = resolve_libraries([("/app/server", Path(sys.argv[1]))], base, cache=BlobCache(),
    suite="trixie", arch="amd64")
print(json.dumps({"resolve": time.perf_counter() - start, "packages": found.packages,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(code: str, cache: Path, *args: str) -> dict[str, object]:
    env = {**os.environ, "DISTILL_CACHE_DIR": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True
    )
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp, "cache")
        print("index, cold cache (download, verify, derive):", run(_INDEX, cache))
        for _ in range(3):
            print("index, warm cache:", run(_INDEX, cache))
        derived = sorted((cache / "derived" / "contents").iterdir())
        print("derived tables:", [p.stat().st_size for p in derived])
        src = Path(tmp, "server.c")
        src.write_text(
            "#include <curl/curl.h>\n#include <stdio.h>\n"
            "int main(void) { puts(curl_version()); return 0; }\n"
        )
        prog = Path(tmp, "server")
        subprocess.run(["gcc", "-o", str(prog), str(src), "-lcurl"], check=True)
        print("resolve libcurl program, first:", run(_RESOLVE, cache, str(prog)))
        for _ in range(2):
            print("resolve libcurl program, warm:", run(_RESOLVE, cache, str(prog)))
        shutil.rmtree(cache)


if __name__ == "__main__":
    main()
