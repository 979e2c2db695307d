"""`distill copy` against `skopeo copy`, on the same fat image and the same loopback
registry, in the same run. Prints the times and the ratios; asserts nothing.

.venv/bin/python benchmarks/bench_copy.py [--runs 3] [--image FILE]

The image is bench_analyze's fat docker-archive (minbase trixie + openjdk-21-jdk-headless,
~430 MB, one layer), turned once into a gzip-compressed oci-archive by skopeo and kept
beside it. Each push goes to a registry of its own, started empty (so every blob is uploaded:
nothing to skip or mount), and is pulled back into a new file; the
order of the two tools alternates between rounds, and each tool's best round is kept.
Goal (issue #9): distill ≤ 1.2× skopeo's time, both directions. Last, distill pushes the
same image a second time and reports how many blobs that uploaded (goal: 0).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench_analyze import fat_archive

from registry_fixtures import run_registry

GOAL = 1.2
DISTILL = [sys.executable, "-m", "distill"]


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout + proc.stderr


def oci_archive(docker_archive: Path) -> Path:
    """The fat image as a gzip oci-archive, the usual shape of an image on disk or in CI."""
    path = docker_archive.with_name(docker_archive.stem + "-oci.tar")
    if not path.is_file():
        part = path.with_name(path.name + ".part")
        part.unlink(missing_ok=True)
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-compress-format",
                "gzip",
                "--dest-compress",
                f"docker-archive:{docker_archive}",
                f"oci-archive:{part}",
            ],
            check=True,
        )
        part.rename(path)
    return path


def skopeo(src: str, dst: str) -> list[str]:
    return [
        "skopeo",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        src,
        dst,
    ]


def distill(src: str, dst: str) -> list[str]:
    return [*DISTILL, "-q", "copy", "--no-tls-verify", src, dst]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", type=Path, help="a docker-archive to use instead")
    args = parser.parse_args()
    assert shutil.which("skopeo"), "skopeo is needed (apt install skopeo)"
    source = oci_archive(args.image or fat_archive(False))
    size = source.stat().st_size
    print(f"image: {source} ({size / 2**20:.0f} MiB)")
    tools = {"skopeo": skopeo, "distill": distill}
    best: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-copy-") as tmp:
        for round_no in range(args.runs + 1):  # round 0 warms the page cache; not counted
            order = list(tools) if round_no % 2 else list(reversed(tools))
            for name in order:
                # A registry of its own for each push: skopeo remembers where it pushed a
                # blob before (its blob-info cache) and would mount it instead of sending it.
                with run_registry(Path(tmp) / f"registry-{name}-{round_no}") as registry:
                    ref = f"docker://{registry.host}/{name}/fat:1"
                    push, _ = timed(tools[name](f"oci-archive:{source}", ref))
                    out = Path(tmp) / f"{name}-{round_no}.tar"
                    pull, _ = timed(tools[name](ref, f"oci-archive:{out}"))
                out.unlink()
                if round_no:
                    for key, seconds in (("push", push), ("pull", pull)):
                        best[(name, key)] = min(best.get((name, key), seconds), seconds)
                print(f"round {round_no} {name:8} push {push:6.2f}s  pull {pull:6.2f}s")
        with run_registry(Path(tmp) / "registry-again") as registry:
            ref = f"docker://{registry.host}/again/fat:1"
            timed(distill(f"oci-archive:{source}", ref))
            _, log = timed([*DISTILL, "copy", "--no-tls-verify", f"oci-archive:{source}", ref])
    print()
    for key, what in (("push", "oci-archive → registry"), ("pull", "registry → oci-archive")):
        ratio = best[("distill", key)] / best[("skopeo", key)]
        verdict = "met" if ratio <= GOAL else "MISSED"
        print(
            f"{what}: distill {best[('distill', key)]:.2f}s, skopeo {best[('skopeo', key)]:.2f}s "
            f"→ {ratio:.2f}× (goal ≤ {GOAL}×: {verdict})"
        )
    counts = re.search(r"(\d+) blobs written, (\d+) there already", log)
    print(f"second push: {counts.group(0) if counts else 'no blob counts in the output'}")


if __name__ == "__main__":
    main()
