"""Preset image sizes against the goals, and `distill build` time against mmdebstrap + podman.

.venv/bin/python benchmarks/bench_build.py [--runs 3] [--skip-mmdebstrap] [--presets a,b]

1. **Sizes.** Each preset is locked and built (amd64) to a docker-archive, loaded into podman,
   and measured as podman measures it: `podman image inspect --format {{.Size}}`, the
   uncompressed size `podman images` shows. Also: the gzip-compressed layer bytes (what a
   registry stores and a pull transfers) and the locked packages. The goals are the issue's
   (MiB for the small images, MB as `podman images` prints for java21 and nodejs).
2. **java21, warm.** `distill build java21 --lock L -o docker-archive:...`, run once to warm
   the caches and then `--runs` times (best kept), against what a user without distill runs:
   `mmdebstrap --variant=minbase --include=<the lock's packages> trixie out.tar <mirrors>`
   then `podman import out.tar`, with apt's package cache kept between runs (mmdebstrap's
   sync-in/sync-out hooks), so both sides download no .deb. mmdebstrap still fetches the
   archive's indices, and apt still resolves and dpkg still unpacks and configures: that is
   the work distill's lock and caches avoid.
3. **Rebuild after a `files:` change.** A spec extending java21 with one file; the file's
   bytes change between two builds: which layers are written and which reused, and the time.

Each command is a subprocess, timed from start to exit. Prints; asserts nothing. Needs
podman, mmdebstrap (for 2), and the Debian archive unless every .deb is cached; the mirror
is the machine's apt source (`discover_mirrors`).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from distill import log
from distill.build.pipeline import build_image
from distill.build.spec import load_spec
from distill.debian.lock import read_lock
from distill.debian.mirror import discover_mirrors

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "tests" / "containers.conf"))

MIB, MB = 1 << 20, 1_000_000
PRESETS = ("static", "base-nossl", "base", "cc", "python3", "nodejs", "java21", "java25", "java17")
# The acceptance goals: (amount, unit bytes, unit name).
GOALS: dict[str, tuple[float, int, str]] = {
    "static": (2.5, MIB, "MiB"),
    "base": (21, MIB, "MiB"),
    "cc": (25, MIB, "MiB"),
    "python3": (55, MIB, "MiB"),
    "java21": (215, MB, "MB"),
    "nodejs": (130, MB, "MB"),
}
ARCH = "amd64"
SUITE = "trixie"
SPEEDUP_GOAL = 10.0


@dataclass
class Size:
    preset: str
    packages: int
    uncompressed: int  # podman's Size
    compressed: int  # gzip layer blobs


def distill(*args: str, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "distill", *(["-q"] if quiet else []), *args]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"distill {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def podman(*args: str) -> str:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def timed(func: object) -> float:
    start = time.perf_counter()
    func()  # type: ignore[operator]
    return time.perf_counter() - start


def lock_preset(preset: str, work: Path) -> Path:
    path = work / f"{preset}.lock"
    if not path.exists():
        distill("lock", preset, "--arch", ARCH, "-o", str(path))
    return path


# --- 1. sizes ---------------------------------------------------------------------------------


def measure_size(preset: str, work: Path) -> Size:
    lock = read_lock(lock_preset(preset, work))
    tag = preset.replace(":", "-")  # a variant (java21:debug) is no valid tag as it is
    archive = work / f"{tag}.docker.tar"
    # A name of our own: removing it afterwards leaves other tags of the same image alone.
    name = f"localhost/distill-bench-{uuid.uuid4().hex[:12]}:{tag}"
    result = build_image(load_spec(preset), lock, f"docker-archive:{archive}:{name}")
    podman("load", "-q", "-i", str(archive))
    try:
        size = int(podman("image", "inspect", "--format", "{{.Size}}", name))
    finally:
        subprocess.run(["podman", "rmi", name], capture_output=True, check=False)
    compressed = sum(layer.blob.size for layer in result.archs[0].layers)
    return Size(preset, len(lock.archs[ARCH].packages), size, compressed)


def verdict(size: Size) -> str:
    if size.preset not in GOALS:
        return "(no goal)"
    amount, unit, name = GOALS[size.preset]
    have = size.uncompressed / unit
    mark = "ok" if size.uncompressed <= amount * unit else "OVER"
    return f"goal <= {amount:g} {name}: {have:.2f} {name}, {mark} ({amount - have:+.2f})"


def sizes(presets: list[str], work: Path) -> None:
    print(f"== sizes ({ARCH}, podman image inspect .Size)")
    print(f"{'preset':<11}{'pkgs':>5}{'MiB':>9}{'MB':>9}{'gzip MiB':>10}  vs goal")
    for preset in presets:
        s = measure_size(preset, work)
        print(
            f"{s.preset:<11}{s.packages:>5}{s.uncompressed / MIB:>9.2f}{s.uncompressed / MB:>9.2f}"
            f"{s.compressed / MIB:>10.2f}  {verdict(s)}"
        )


# --- 2. java21 warm build vs mmdebstrap + podman import ----------------------------------------


def distill_warm(lock: Path, work: Path, runs: int) -> float:
    out = work / "java21-timed.tar"
    build = ("build", "java21", "--arch", ARCH, "--lock", str(lock), "-o", f"docker-archive:{out}")
    first = timed(lambda: distill(*build))
    times = [timed(lambda: distill(*build)) for _ in range(runs)]
    print(
        f"distill build java21 --lock: first {first:.2f} s, warm "
        + ", ".join(f"{t:.2f}" for t in times)
        + " s"
    )
    return min(times)


def mmdebstrap_sources() -> list[str]:
    mirrors = discover_mirrors()
    lines = [f"deb {mirrors.main} {SUITE} main", f"deb {mirrors.main} {SUITE}-updates main"]
    if mirrors.security:
        lines.append(f"deb {mirrors.security} {SUITE}-security main")
    return lines


def mmdebstrap_route(packages: list[str], work: Path, cache: Path) -> tuple[float, float, int]:
    """One mmdebstrap + podman import with apt's cache synced in and out: (seconds for
    mmdebstrap, seconds for the import, the imported image's size)."""
    rootfs = work / "mmdebstrap.tar"
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        "--skip=essential/unlink",
        '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
        f"--setup-hook=sync-in {cache} /var/cache/apt/archives/",
        f"--customize-hook=sync-out /var/cache/apt/archives {cache}",
        SUITE,
        str(rootfs),
        *mmdebstrap_sources(),
    ]
    strap = timed(lambda: subprocess.run(cmd, check=True, capture_output=True, timeout=1800))
    name = f"localhost/distill-bench-{uuid.uuid4().hex[:12]}:mmdebstrap"
    try:
        imported = timed(lambda: podman("import", "-q", str(rootfs), name))
        size = int(podman("image", "inspect", "--format", "{{.Size}}", name))
    finally:
        subprocess.run(["podman", "rmi", name], capture_output=True, check=False)
        rootfs.unlink(missing_ok=True)
    return strap, imported, size


def build_times(work: Path, runs: int, skip_mmdebstrap: bool) -> None:
    print("== java21: warm build time")
    lock_path = lock_preset("java21", work)
    ours = distill_warm(lock_path, work, runs)
    if skip_mmdebstrap or shutil.which("mmdebstrap") is None:
        print("mmdebstrap: skipped")
        return
    packages = [p.name for p in read_lock(lock_path).archs[ARCH].packages]
    cache = work / "apt-archives"
    strap, imported, _ = mmdebstrap_route(packages, work, cache)
    print(f"mmdebstrap + podman import, filling apt's cache: {strap:.2f} + {imported:.2f} s")
    best: tuple[float, float, int] | None = None
    for _ in range(runs):
        run = mmdebstrap_route(packages, work, cache)
        print(f"mmdebstrap + podman import, warm apt cache: {run[0]:.2f} + {run[1]:.2f} s")
        if best is None or sum(run[:2]) < sum(best[:2]):
            best = run
    assert best is not None
    theirs = best[0] + best[1]
    ratio = theirs / ours
    mark = "ok" if ratio >= SPEEDUP_GOAL else "UNDER GOAL"
    print(
        f"best warm: distill {ours:.2f} s vs mmdebstrap + import {theirs:.2f} s "
        f"({best[0]:.2f} + {best[1]:.2f}): {ratio:.1f}x faster (goal >= {SPEEDUP_GOAL:g}x, {mark})"
    )
    print(f"the mmdebstrap image: {best[2] / MB:.1f} MB (podman .Size), {len(packages)} roots")


# --- 3. rebuild after a files: change ------------------------------------------------------------

_LAYERS = re.compile(r"\((\d+) layers written, (\d+) reused\)")


def rebuild(work: Path) -> None:
    print("== rebuild after changing one files: entry (spec extends java21)")
    lock = lock_preset("java21", work)
    app = work / "app"
    app.mkdir(exist_ok=True)
    (app / "spec.yaml").write_text(
        "extends: java21\nfiles:\n  - {src: app.jar, dest: /app/app.jar}\ncmd: [/app/app.jar]\n"
    )
    out = work / "app.tar"
    build = ("build", str(app / "spec.yaml"), "--arch", ARCH, "--lock", str(lock))
    for label in ("first build", "after the change"):
        (app / "app.jar").write_bytes(os.urandom(256 << 10))  # new bytes each time
        start = time.perf_counter()
        proc = distill(*build, "-o", f"docker-archive:{out}", quiet=False)
        seconds = time.perf_counter() - start
        found = _LAYERS.search(" ".join(proc.stderr.split()))
        written, reused = found.groups() if found else ("?", "?")
        print(f"{label}: {seconds:.2f} s, {written} layers written, {reused} reused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-mmdebstrap", action="store_true")
    parser.add_argument("--presets", default=",".join(PRESETS))
    args = parser.parse_args()
    log.set_quiet(True)
    machine = f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}"
    print(f"{time.strftime('%Y-%m-%d')}: {machine}")
    with tempfile.TemporaryDirectory(prefix="distill-bench-build-") as tmp:
        work = Path(tmp)
        sizes(args.presets.split(","), work)
        build_times(work, args.runs, args.skip_mmdebstrap)
        rebuild(work)


if __name__ == "__main__":
    main()
