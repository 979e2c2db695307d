"""`distill package` against the usual way: a two-stage Containerfile built by podman.

.venv/bin/python benchmarks/bench_package.py [--runs 5] [--html FILE] [--keep DIR]

The app: a small Flask server (Flask pulls MarkupSafe, a compiled extension), written here
as a pyproject project with a console script, and locked once with `distill lock APP`.

1. **The usual way.** A fat base: `mmdebstrap --variant=minbase --include=python3-pip
   trixie` imported with `podman import` (made once, kept in podman's storage). The
   Containerfile's first stage pip-installs the locked wheels (downloaded beforehand by
   `pip download` for the image's Python, so the build needs no network) into a
   directory; the second stage, on the same fat base, copies them and the app's code.
   `podman build --layers` into podman's storage.
2. **distill.** `distill package APP -o containers-storage:NAME`: the base (python3:nonroot)
   built from the lock, the wheels from distill's cache.

Both run once to warm their caches; then, `--runs` times, one app source file is changed
and each builds again (warm: only the app changed), timed from start to exit as a
subprocess. The ratio is podman's median over distill's median (the issue's goal: 5×).
Then `distill compare` of the two images (size, packages, executables, shells) and, with
`--html`, its HTML report. Prints; asserts nothing. Needs podman, mmdebstrap, pip, PyPI
(through the machine's pip configuration) and the Debian archive (the machine's apt
sources), unless cached.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from distill.debian.mirror import discover_mirrors

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "tests" / "containers.conf"))

FAT = "localhost/distill-bench-fat-python:trixie"
SUITE = "trixie"
PYTHON = "3.13"  # trixie's; the wheels are downloaded for it
GOAL = 5.0

PYPROJECT = """\
[project]
name = "hello"
version = "1.0"
dependencies = ["flask>=3,<4"]

[project.scripts]
hello = "hello.server:main"
"""
SERVER = """\
import markupsafe
from flask import Flask

app = Flask(__name__)
REVISION = {revision}


@app.get("/")
def index() -> str:
    return str(markupsafe.escape(f"<hello from flask, revision {{REVISION}}>"))


def main() -> None:
    app.run(host="0.0.0.0", port=8080)
"""
CONTAINERFILE = f"""\
FROM {FAT} AS build
COPY requirements.txt /tmp/requirements.txt
COPY wheels /wheels
RUN pip install --break-system-packages --no-index --find-links /wheels \\
    --target /deps -r /tmp/requirements.txt

FROM {FAT}
COPY --from=build /deps /usr/local/lib/python3/dist-packages/
COPY hello /app/hello
ENV PYTHONPATH=/usr/local/lib/python3/dist-packages:/app PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER 65532
EXPOSE 8080
ENTRYPOINT ["python3", "-c", "from hello.server import main; main()"]
"""


def run(*cmd: str, timeout: float = 1800) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


# distill as installed: byte-compiled once (pip writes .pyc files; a checkout run with
# PYTHONDONTWRITEBYTECODE would compile every module on every run).
DISTILL_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def distill(*args: str) -> str:
    cmd = [sys.executable, "-m", "distill", "-q", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=DISTILL_ENV)
    if done.returncode != 0:
        raise SystemExit(f"distill {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


CPU: dict[str, list[float]] = {}  # CPU seconds (user + system) of each timed command


def timed(action: Callable[[], object], name: str | None = None) -> float:
    """Wall seconds of ``action``; with ``name``, its children's CPU seconds are kept too
    (on a shared machine the wall clock also counts waiting for a core)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    action()
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if name is not None:
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        CPU.setdefault(name, []).append(cpu)
    return took


def fat_base() -> None:
    """mmdebstrap minbase + python3-pip, imported into podman once."""
    if subprocess.run(["podman", "image", "exists", FAT], check=False).returncode == 0:
        print(f"fat base: {FAT} (kept from an earlier run)")
        return
    mirrors = discover_mirrors()
    sources = [f"deb {mirrors.main} {SUITE} main", f"deb {mirrors.main} {SUITE}-updates main"]
    if mirrors.security:
        sources.append(f"deb {mirrors.security} {SUITE}-security main")
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp) / "fat.tar"
        took = timed(
            lambda: run(
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                "--include=python3-pip",
                SUITE,
                str(rootfs),
                *sources,
            )
        )
        run("podman", "import", "-q", str(rootfs), FAT)
    print(f"fat base: mmdebstrap + podman import in {took:.1f} s")


def write_app(app: Path, revision: int) -> None:
    (app / "hello").mkdir(parents=True, exist_ok=True)
    (app / "pyproject.toml").write_text(PYPROJECT)
    (app / "hello" / "__init__.py").write_text("")
    (app / "hello" / "server.py").write_text(SERVER.format(revision=revision))


def podman_context(app: Path, context: Path) -> None:
    """The Containerfile's context: the app, its locked pins and their wheels."""
    lock = json.loads((app / "distill.lock").read_text())
    pins = [f"{p['name']}=={p['version']}" for p in lock["languagePackages"]]
    context.mkdir(parents=True, exist_ok=True)
    (context / "requirements.txt").write_text("\n".join(pins) + "\n")
    (context / "Containerfile").write_text(CONTAINERFILE)
    run(
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--platform", "manylinux_2_17_x86_64", "--python-version", PYTHON,
        "--implementation", "cp", "--abi", "cp" + PYTHON.replace(".", ""),
        "-d", str(context / "wheels"), *pins,
    )  # fmt: skip


def sync_code(app: Path, context: Path) -> None:
    shutil.copytree(app / "hello", context / "hello", dirs_exist_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--html", type=Path, help="write distill compare's HTML report here")
    parser.add_argument("--keep", type=Path, help="work here (kept) instead of a temporary dir")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-package-"))
    work.mkdir(parents=True, exist_ok=True)
    app, context = work / "app", work / "context"
    tag = uuid.uuid4().hex[:8]
    usual, ours = f"localhost/bench-usual-{tag}:1", f"localhost/bench-distill-{tag}:1"
    try:
        fat_base()
        write_app(app, 0)
        print(f"distill lock: {timed(lambda: distill('lock', str(app), '--arch', 'amd64')):.2f} s")
        podman_context(app, context)
        sync_code(app, context)
        build = ("podman", "build", "-q", "--layers", "-t", usual, str(context))
        package = ("package", str(app), "--port", "8080", "-o", f"containers-storage:{ours}")
        oci = ("package", str(app), "--port", "8080", "-o", f"oci:{work / 'oci'}")
        cold_podman = timed(lambda: run(*build))
        cold_distill = timed(lambda: distill(*package))
        print(f"first build: podman {cold_podman:.2f} s, distill package {cold_distill:.2f} s")
        times: dict[str, list[float]] = {"podman build": [], "distill -o storage": [],
                                         "distill -o oci": []}  # fmt: skip
        for revision in range(1, args.runs + 1):
            write_app(app, revision)  # one source file changed
            sync_code(app, context)
            times["podman build"].append(timed(lambda: run(*build), "podman build"))
            times["distill -o storage"].append(
                timed(lambda: distill(*package), "distill -o storage")
            )
            times["distill -o oci"].append(timed(lambda: distill(*oci), "distill -o oci"))
        print("warm, after changing hello/server.py (s):")
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        for name, ts in times.items():
            print(
                f"  {name:20}" + " ".join(f"{t:5.2f}" for t in ts) + f"  median {medians[name]:.2f}"
            )
        cpu = {name: statistics.median(ts) for name, ts in CPU.items()}
        print("  CPU seconds (user + system, children included), median: "
              + ", ".join(f"{name} {t:.2f}" for name, t in cpu.items()))  # fmt: skip
        for name in ("distill -o storage", "distill -o oci"):
            ratio = medians["podman build"] / medians[name]
            by_cpu = cpu["podman build"] / cpu[name]
            print(f"  {name}: {ratio:.1f}x faster than podman build by the clock, "
                  f"{by_cpu:.1f}x by CPU time (goal: {GOAL:.0f}x)")  # fmt: skip
        html = ("--html", str(args.html)) if args.html else ()
        report = distill("compare", "--no-vulnerabilities", "--json", *html,
                         f"containers-storage:{usual}", f"containers-storage:{ours}")  # fmt: skip
        summary(json.loads(report))
        if args.html:
            print(f"HTML report: {args.html}")
    finally:
        subprocess.run(["podman", "rmi", "--force", usual, ours], capture_output=True, check=False)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def summary(report: dict[str, object]) -> None:
    images = report.get("images")
    if not isinstance(images, list):
        print(json.dumps(report)[:2000])
        return
    wanted = ("uncompressed_size", "layers", "os_packages", "language_packages", "executables",
              "elf", "scripts", "setuid", "setgid", "shells", "package_managers")  # fmt: skip
    print("distill compare (the usual image, then distill's):")
    for image in images:
        if isinstance(image, dict):
            print("  " + json.dumps({k: image[k] for k in wanted if k in image}))


if __name__ == "__main__":
    main()
