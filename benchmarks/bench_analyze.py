"""`distill inspect` and `distill sbom` against trivy, on the same fat docker-archive, in
the same run. Prints time and peak RSS of each and the ratios; asserts nothing.

.venv/bin/python benchmarks/bench_analyze.py [--runs 3] [--image FILE] [--rebuild]

The image is minbase trixie plus openjdk-21-jdk-headless (~430 MB, one layer), built with
mmdebstrap and podman (tests/fat_image.py) the first time and kept under the user cache
directory (`$DISTILL_CACHE_DIR/bench`, else ~/.cache/distill/bench), so reruns start at
once. Each command is a subprocess; its peak RSS is the ru_maxrss `wait4` reports for it.
Each is run once to warm the page cache, then `--runs` times; the best time and the
largest RSS are kept. Goals: ≤ 1.5× trivy's time, ≤ 200 MB RSS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from distill.cache import cache_root

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fat_image import build_fat_image

TRIVY = Path(sys.executable).with_name("trivy")
TIME_GOAL = 1.5
RSS_GOAL = 200 << 20


@dataclass
class Measure:
    name: str
    seconds: float
    rss: int  # bytes


def run_once(argv: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err[-2000:]}")
    return elapsed, usage.ru_maxrss * 1024  # Linux reports KiB


def measure(name: str, argv: list[str], runs: int) -> Measure:
    run_once(argv)  # warm the page cache and Python's bytecode cache
    results = [run_once(argv) for _ in range(runs)]
    return Measure(name, min(t for t, _ in results), max(r for _, r in results))


def fat_archive(rebuild: bool) -> Path:
    path = cache_root() / "bench" / "fat-openjdk-21.tar"
    if rebuild or not path.is_file():
        print(f"building {path} (mmdebstrap + podman, a minute or two)…", flush=True)
        start = time.perf_counter()
        build_fat_image(path)
        print(f"  built in {time.perf_counter() - start:.0f}s")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", type=Path, help="a docker-archive to use instead")
    parser.add_argument("--rebuild", action="store_true", help="build the fat image again")
    args = parser.parse_args()
    image = args.image or fat_archive(args.rebuild)
    ref = f"docker-archive:{image}"
    distill = [sys.executable, "-m", "distill", "-q"]
    with tempfile.TemporaryDirectory(prefix="bench-analyze-") as tmp:
        trivy = [str(TRIVY), "image", "--cache-dir", f"{tmp}/trivy", "--cache-backend", "memory"]
        trivy += ["--input", str(image), "--format", "cyclonedx", "--offline-scan", "--quiet"]
        commands = {
            "distill inspect --json": [*distill, "inspect", ref, "--json"],
            "distill sbom (cyclonedx)": [
                *distill,
                "sbom",
                ref,
                "--format",
                "cyclonedx-json",
                "-o",
                f"{tmp}/d.json",
            ],
            "trivy image --pkg-types os": [*trivy, "--pkg-types", "os", "-o", f"{tmp}/t.json"],
            # trivy's library scan of .jar files wants its Java DB, which cannot be had
            # offline; the rest of its library analysers run.
            "trivy image (os + library, no jars)": [
                *trivy,
                "--skip-files",
                "**/*.jar",
                "-o",
                f"{tmp}/t2.json",
            ],
        }
        found = [measure(name, argv, args.runs) for name, argv in commands.items()]
    size = image.stat().st_size
    print(f"\n{image}: {size / 1e6:.0f} MB; best of {args.runs} runs after a warm-up\n")
    base = found[2]
    print("| command | time | peak RSS | time ÷ trivy (os) | goal |")
    print("|---|---|---|---|---|")
    for m in found:
        ratio = m.seconds / base.seconds
        goal = ""
        if m.name.startswith("distill"):
            ok = ratio <= TIME_GOAL and m.rss <= RSS_GOAL
            goal = ("met" if ok else "MISSED") + f" (≤ {TIME_GOAL}×, ≤ {RSS_GOAL >> 20} MB)"
        print(
            f"| `{m.name}` | {m.seconds:.2f} s | {m.rss / (1 << 20):.0f} MiB | {ratio:.2f}× "
            f"| {goal} |"
        )


if __name__ == "__main__":
    main()
