"""`distill package` of the plain-jar HTTP server (tests/java_apps.py) on `java21:nonroot`
and with `--jlink` on `cc:nonroot`: image sizes (stored and unpacked, from `distill inspect
--json`) and wall times, warm (the second run of each; the first fills the caches, including
the unpacked JDK). Prints; asserts nothing.

.venv/bin/python benchmarks/bench_jlink.py [--runs 2]

Goal (issue #11): the `--jlink` image ≤ 80 MB unpacked (`java21` is ~215 MB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from java_apps import plain_app

DISTILL = [sys.executable, "-m", "distill", "-q"]
GOAL = 80_000_000


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def sizes(layout: Path) -> tuple[int, int]:
    out = subprocess.run(
        [*DISTILL, "inspect", "--json", f"oci:{layout}"], capture_output=True, text=True, check=True
    ).stdout
    data = json.loads(out)
    return int(data["compressed_size"]), int(data["uncompressed_size"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-jlink-") as tmp:
        app = plain_app(Path(tmp) / "src")
        for label, extra in (("java21:nonroot", []), ("--jlink (cc:nonroot)", ["--jlink"])):
            times = []
            for run in range(args.runs):
                layout = Path(tmp) / f"out-{len(extra)}-{run}"
                times.append(
                    timed([*DISTILL, "package", str(app.jar), *extra, "-o", f"oci:{layout}"])
                )
            stored, unpacked = sizes(layout)
            print(
                f"{label:22} stored {stored / 1e6:6.1f} MB  unpacked {unpacked / 1e6:6.1f} MB  "
                f"first {times[0]:5.1f} s  warm {min(times[1:] or times):5.1f} s"
                + (f"  (goal ≤ {GOAL / 1e6:.0f} MB: {unpacked <= GOAL})" if extra else "")
            )


if __name__ == "__main__":
    main()
