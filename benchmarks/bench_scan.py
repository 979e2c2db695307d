"""`distill scan` against a synthetic Debian security tracker file of realistic size.

.venv/bin/python benchmarks/bench_scan.py [--runs 3] [--image FILE] [--sources 30000]

Writes a tracker JSON (seeded, so every run is the same file: ≥ 60 MB, ≥ 150k CVE × release
entries, the real tracker's shape and quirks) whose packages include every source package
of the image, imports it with `distill db import`, then measures:

- the match alone, "with the DB loaded": the audit of 100 Debian packages (the image's,
  topped up with packages of the synthetic file) against the DB, in this process, after the
  image was read once — best of `--runs`;
- `distill scan IMAGE --no-changelog` as a subprocess, image read included (best time,
  largest peak RSS, as bench_analyze measures them).

The image is the fat JDK docker-archive bench_analyze keeps under the user cache directory
(built with mmdebstrap and podman the first time). Goals (issue 12): import ≤ 20 s; the
scan of a 100-package image with the DB loaded ≤ 0.5 s; peak RSS ≤ 300 MB. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analyze import fat_archive, measure, run_once

from distill.audit.scan import ScanOptions, audit_contents, read_contents
from distill.context import Access
from distill.scan.model import ImagePackage
from distill.transports import opened

RELEASES = ("bullseye", "bookworm", "trixie", "forky")
URGENCIES = ("low", "medium", "high", "unimportant", "not yet assigned", "low*", "medium**")
PACKAGES = 100
MATCH_GOAL, RSS_GOAL, IMPORT_GOAL = 0.5, 300 << 20, 20.0


def write_tracker(path: Path, sources: list[str], seed: int = 12) -> int:
    """Write a tracker document for ``sources`` to ``path``, one source package at a time
    (this process stays small: a child's peak RSS starts at its parent's size); returns
    its number of CVE × release entries."""
    rng = random.Random(seed)
    entries = 0
    with path.open("w") as out:
        out.write("{")
        for index, source in enumerate(sources):
            issues: dict[str, object] = {}
            for _ in range(rng.randint(1, 6)):
                vuln = (
                    f"CVE-{rng.randint(2005, 2026)}-{rng.randint(1000, 99999)}"
                    if rng.random() > 0.05
                    else f"TEMP-{rng.randint(0, 9999999):07d}-{rng.randint(0, 0xFFFFFF):06X}"
                )
                releases: dict[str, object] = {}
                for release in RELEASES[: rng.randint(0, len(RELEASES))]:
                    status = rng.choice(("resolved", "resolved", "open", "undetermined"))
                    entry: dict[str, object] = {
                        "status": status,
                        "repositories": {release: f"{rng.randint(1, 9)}.{rng.randint(0, 20)}-1"},
                        "urgency": rng.choice(URGENCIES),
                    }
                    if status == "resolved":
                        entry["fixed_version"] = rng.choice(("0", "1:99.0-1", "0.1-1"))
                    if rng.random() < 0.1:
                        entry["nodsa"] = "Minor issue"
                        entry["nodsa_reason"] = rng.choice(("ignored", "postponed", ""))
                    releases[release] = entry
                    entries += 1
                issue: dict[str, object] = {
                    "description": "x" * rng.randint(80, 600),
                    "scope": rng.choice(("local", "remote")),
                    "releases": releases or [],
                }
                if rng.random() < 0.3:
                    issue["debianbug"] = rng.randint(100000, 1100000)
                issues[vuln] = issue
            out.write(("," if index else "") + json.dumps(source) + ":" + json.dumps(issues))
        out.write("}")
    return entries


def image_sources(ref: str) -> list[str]:
    """The image's Debian source packages, from `distill sbom` run as a child."""
    done = subprocess.run(
        [sys.executable, "-m", "distill", "-q", "sbom", ref, "--format", "cyclonedx-json"],
        capture_output=True,
        check=True,
    )
    found = set()
    for component in json.loads(done.stdout)["components"]:
        props = {p["name"]: p["value"] for p in component.get("properties", [])}
        if props.get("distill:package-type") == "deb":
            found.add(props.get("distill:source", component["name"]).split("@")[0])
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", type=Path, help="a docker-archive to use instead")
    parser.add_argument("--sources", type=int, default=30000, help="synthetic source packages")
    args = parser.parse_args()
    image = args.image or fat_archive(False)
    ref = f"docker-archive:{image}"
    own = image_sources(ref)
    synthetic = [f"synthetic{i}" for i in range(args.sources)]
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        path = Path(tmp, "tracker.json")
        entries = write_tracker(path, own + synthetic)
        size = path.stat().st_size
        db = Path(tmp, "vuln.db")
        distill = [sys.executable, "-m", "distill", "-q"]
        import_seconds, import_rss = run_once(
            [*distill, "db", "import", "--db", str(db), str(path)]
        )
        cli = measure(
            "scan",
            [*distill, "scan", ref, "--db", str(db), "--no-changelog", "--format", "json"],
            args.runs,
        )
        with opened(ref, Access()) as source:
            contents = read_contents(source)
        debs = [p for p in contents.packages if p.ecosystem == "deb"]
        topped = debs + [
            ImagePackage("deb", name, "1.0-1", f"pkg:deb/debian/{name}@1.0-1")
            for name in synthetic[: max(PACKAGES - len(debs), 0)]
        ]
        hundred = replace(contents, packages=tuple(topped[:PACKAGES]))
        options = ScanOptions(db_path=db, changelog=False)
        timings = []
        for _ in range(args.runs + 1):
            start = time.perf_counter()
            result = audit_contents(hundred, ref, options)
            timings.append(time.perf_counter() - start)
        match = min(timings[1:])
        release = result.release
    print(
        f"\ntracker: {size / 1e6:.0f} MB, {len(own) + len(synthetic)} source packages, "
        f"{entries} CVE × release entries; image {image.name}: {len(debs)} Debian packages "
        f"({release})\n"
    )
    print("| step | time | peak RSS | goal |")
    print("|---|---|---|---|")
    ok = "met" if import_seconds <= IMPORT_GOAL and import_rss <= RSS_GOAL else "MISSED"
    print(
        f"| `distill db import` (once) | {import_seconds:.1f} s | "
        f"{import_rss / (1 << 20):.0f} MiB | {ok} (≤ {IMPORT_GOAL:.0f} s) |"
    )
    ok = "met" if match <= MATCH_GOAL else "MISSED"
    print(
        f"| audit of {len(hundred.packages)} packages, DB loaded ({len(result.findings)} "
        f"findings) | {match:.3f} s | | {ok} (≤ {MATCH_GOAL} s) |"
    )
    ok = "met" if cli.rss <= RSS_GOAL else "MISSED"
    print(
        f"| `distill scan` (image read included) | {cli.seconds:.2f} s | "
        f"{cli.rss / (1 << 20):.0f} MiB | {ok} (≤ {RSS_GOAL >> 20} MB RSS) |"
    )


if __name__ == "__main__":
    main()
