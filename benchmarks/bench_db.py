"""The vulnerability DB at the Debian security tracker's real size: import time and peak
RSS of `distill db import`, and the time to match a 100-package image. Prints; asserts
nothing.

.venv/bin/python benchmarks/bench_db.py [--keep DIR]

The tracker file is synthetic (written here, deterministic): the real one cannot be
downloaded on the build machine. It follows the real file's shape and proportions — a few
source packages (the kernel, browsers) carry thousands of issues, most a handful; four
releases per issue; descriptions of tracker length; every quirk (TEMP ids, ``releases: []``,
``fixed_version: "0"``, urgency suffixes, nodsa reasons, end-of-life) in the mix.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distill.scan.db import VulnDB
from distill.scan.match import match_debian
from distill.scan.model import ImagePackage

RELEASES = ("bullseye", "bookworm", "trixie", "sid")
URGENCIES = ("low", "medium", "high", "unimportant", "not yet assigned", "low*", "medium**")
_TEXT = (
    "buffer overflow heap use-after-free remote attackers crafted file denial of service "
    "via integer out-of-bounds read write function allows local users arbitrary code "
    "execution memory corruption NULL pointer dereference in the parser of certain inputs"
)
WORDS = _TEXT.split()


def synthetic_tracker(path: Path, packages: int, seed: int = 12) -> tuple[int, int]:
    """Write the file; return (source packages, CVE × release entries)."""
    rng = random.Random(seed)
    entries = 0
    with open(path, "w") as out:
        out.write("{")
        for p in range(packages):
            name = "linux" if p == 0 else f"pkg{p:05d}"
            # Heavy-tailed: the kernel ~6,000 issues, a few hundred packages with 100+.
            count = 6000 if p == 0 else max(1, int(rng.paretovariate(1.1) * 3))
            count = min(count, 1500)
            issues = {}
            for i in range(count):
                vuln_id = (
                    f"TEMP-{rng.randrange(10**7):07d}-{rng.randrange(16**6):06X}"
                    if rng.random() < 0.03
                    else f"CVE-{rng.randrange(1999, 2027)}-{p * 7 + i:05d}"
                )
                issue: dict[str, object] = {
                    "description": " ".join(rng.choices(WORDS, k=rng.randrange(20, 60))),
                    "scope": "remote",
                }
                if rng.random() < 0.02:
                    issue["releases"] = []
                    issues[vuln_id] = issue
                    continue
                releases = {}
                for release in RELEASES:
                    releases[release] = _entry(rng, release)
                    entries += 1
                issue["releases"] = releases
                issues[vuln_id] = issue
            out.write(("," if p else "") + json.dumps(name) + ":" + json.dumps(issues))
        out.write("}")
    return packages, entries


def _entry(rng: random.Random, release: str) -> dict[str, object]:
    version = f"{rng.randrange(1, 9)}.{rng.randrange(20)}-{rng.randrange(1, 5)}"
    entry: dict[str, object] = {
        "repositories": {release: version},
        "urgency": rng.choice(URGENCIES),
    }
    roll = rng.random()
    if roll < 0.55:
        entry["status"] = "resolved"
        entry["fixed_version"] = "0" if rng.random() < 0.1 else f"{version}+deb{rng.randrange(9)}u1"
    elif roll < 0.9:
        entry["status"] = "open"
        if rng.random() < 0.4:
            entry["nodsa"] = "Minor issue"
            entry["nodsa_reason"] = rng.choice(("ignored", "postponed", ""))
        if rng.random() < 0.02:
            entry["urgency"] = "end-of-life"
    else:
        entry["status"] = "undetermined"
    return entry


def child_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def import_into(db_path: Path, src: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `distill db import` in a fresh process."""
    cpu, start = child_cpu(), time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "distill", "-q", "db", "import", "--db", str(db_path), str(src)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start, child_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--packages", type=int, default=5_000)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-scan-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "tracker.json"
    start = time.perf_counter()
    packages, entries = synthetic_tracker(src, args.packages)
    print(
        f"synthetic tracker: {src.stat().st_size / 1e6:.1f} MB, {packages} source packages, "
        f"{entries} CVE x release entries (written in {time.perf_counter() - start:.1f} s)"
    )

    db_path = work / "vuln.db"
    db_path.unlink(missing_ok=True)
    wall, cpu = import_into(db_path, src)
    print(
        f"db import (fresh process): {wall:.2f} s ({cpu:.2f} s CPU), "
        f"peak RSS {child_rss_mb():.0f} MB"
    )
    print(f"DB file: {db_path.stat().st_size / 1e6:.1f} MB")
    wall, cpu = import_into(db_path, src)
    print(f"db import over an existing DB: {wall:.2f} s ({cpu:.2f} s CPU)")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    # A 100-package image: the kernel's headers and 99 other packages, some heavy.
    rng = random.Random(7)
    names = ["linux"] + [f"pkg{p:05d}" for p in rng.sample(range(1, args.packages), 99)]
    image = [
        ImagePackage(
            "deb",
            f"lib{n}",
            "1.0-1",
            f"pkg:deb/debian/lib{n}@1.0-1",
            source_name=n,
            source_version="1.0-1",
        )
        for n in names
    ]
    times = []
    cpu_times = []
    found = 0
    for _ in range(5):
        t0, c0 = time.perf_counter(), time.process_time()
        db = VulnDB.open(db_path)
        assert db is not None
        with db:
            findings = match_debian(image, db.debian_advisories("bookworm", names))
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        found = len(findings)
    print(
        f"scan of a 100-package image (open DB + query + match): best {min(times):.3f} s, "
        f"worst {max(times):.3f} s (CPU best {min(cpu_times):.3f} s), {found} findings"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"this process's peak RSS (generator + scans): {rss:.0f} MB")
    if not args.keep:
        for p in work.iterdir():
            p.unlink()
        os.rmdir(work)


if __name__ == "__main__":
    main()
