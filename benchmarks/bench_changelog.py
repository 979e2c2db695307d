"""Advisories from the mirror's changelogs: a cold scan, a warm one and an offline one of
the same image, each in a fresh interpreter. Prints times, .debs read and peak RSS; asserts
nothing.

.venv/bin/python benchmarks/bench_changelog.py [--image FILE]

Without ``--image``, the bookworm ``python3`` image is built from the ``bookworm`` pocket
alone (so bookworm-security has newer candidates for some of its packages). The cold scan
uses an empty cache directory (indices downloaded and parsed, .debs fetched); the warm and
offline ones reuse it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ONE_SCAN = """
import json, resource, sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_scan_changelog_e2e import _packages
from distill.cache import BlobCache
from distill.debian.mirror import discover_mirrors
from distill.scan.changelog import changelog_advisories
packages, release = _packages(Path({image!r}))
start = time.perf_counter()
found = changelog_advisories(packages, release, "amd64", cache=BlobCache(),
                             mirrors=discover_mirrors, offline={offline})
print(json.dumps({{"seconds": time.perf_counter() - start, "packages": len(packages),
    "outdated": found.outdated, "opened": found.opened, "advisories": len(found.advisories),
    "unchecked": len(found.unchecked),
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}}))
"""


def build_image(tmp: Path) -> Path:
    spec = tmp / "narrow.yaml"
    spec.write_text("extends: python3\nsuite: bookworm\npockets: [bookworm]\n")
    out = tmp / "narrow.tar"
    argv = [sys.executable, "-m", "distill", "-q", "build", str(spec), "--arch", "amd64"]
    subprocess.run(
        [*argv, "-o", f"oci-archive:{out}"],
        check=True,
        capture_output=True,
    )
    return out


def scan(image: Path, cache: Path, offline: bool) -> dict[str, float]:
    code = ONE_SCAN.format(tests=str(ROOT / "tests"), image=str(image), offline=offline)
    env = {**os.environ, "DISTILL_CACHE_DIR": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", type=Path, help="an oci-archive to scan")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-changelog-") as tmp:
        image = args.image or build_image(Path(tmp))
        cache = Path(tmp) / "cache"
        for label, offline in (("cold", False), ("warm", False), ("offline", True)):
            r = scan(image, cache, offline)
            print(
                f"{label:8} {r['seconds']:6.2f} s  packages {r['packages']}  outdated "
                f"{r['outdated']}  .debs read {r['opened']}  advisories {r['advisories']}  "
                f"unchecked {r['unchecked']}  peak RSS {r['peak_mib']} MiB"
            )


if __name__ == "__main__":
    main()
