"""Running distill on hostile input, and what every such run must show.

A hostile case is a command line plus the files it reads. It passes when distill ends in its
own error (exit 1, one ``error:`` line, at most one ``hint:`` line, no traceback) or in a
correct result, within CASE_SECONDS and CASE_RSS, with nothing written outside its target.
The run is a real subprocess: its peak RSS comes from ``wait4``'s rusage of that one child.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CASE_SECONDS = 30.0
CASE_RSS = 1 << 30  # 1 GiB


@dataclass(frozen=True)
class Outcome:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss: int  # bytes
    timed_out: bool
    written: frozenset[str]  # paths under cwd the run added or changed (cache and TMPDIR aside)
    leftovers: tuple[str, ...]  # what the run left in TMPDIR (when TMPDIR is under cwd)

    def describe(self) -> str:
        return (
            f"distill {' '.join(self.args)[:300]}\n exit {self.returncode} in "
            f"{self.seconds:.1f}s, peak RSS {self.max_rss >> 20} MiB"
            f"{' (TIMED OUT)' if self.timed_out else ''}\n--- stderr ---\n{self.stderr[-3000:]}"
            f"\n--- stdout ---\n{self.stdout[-1000:]}"
        )


# Runs distill as `python -m distill` would, and on the way out writes the process's own
# peak RSS (VmHWM, which exec resets) to the file named by HOSTILE_HWM_FILE.
_WRAPPER = """
import atexit, os, runpy, sys
def _hwm():
    with open("/proc/self/status") as status:
        kib = status.read().split("VmHWM:")[1].split()[0]
    with open(os.environ["HOSTILE_HWM_FILE"], "w") as out:
        out.write(kib)
atexit.register(_hwm)
sys.argv[0] = "distill"
runpy.run_module("distill", run_name="__main__", alter_sys=True)
"""


def _drain(stream: object, sink: list[bytes]) -> None:
    assert hasattr(stream, "read")
    while chunk := stream.read(65536):
        sink.append(chunk)


def run_distill(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = CASE_SECONDS,
) -> Outcome:
    """Run ``distill ARGS`` in ``cwd``; kill it (and its process group) after ``timeout``."""
    full_env = dict(os.environ)
    full_env.pop("COLUMNS", None)
    full_env.update(env or {})
    hwm_fd, hwm_name = tempfile.mkstemp(prefix="hostile-hwm-")
    os.close(hwm_fd)
    full_env["HOSTILE_HWM_FILE"] = hwm_name
    private = [Path(full_env[k]) for k in ("DISTILL_CACHE_DIR", "TMPDIR") if full_env.get(k)]
    tmpdir = Path(full_env["TMPDIR"]) if full_env.get("TMPDIR") else None
    tmp_before = set(os.listdir(tmpdir)) if tmpdir is not None and tmpdir.is_dir() else set()
    before = snapshot(cwd)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRAPPER, *args],
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [
        threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True),
    ]
    for reader in readers:
        reader.start()
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, _kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    # wait4's ru_maxrss also counts the pytest process the child was forked from (Linux
    # keeps the pre-exec high-water mark), so the child's own VmHWM is used when it wrote
    # one; a killed child did not, and then the larger, conservative figure stands.
    try:
        own = Path(hwm_name).read_text().strip()
    finally:
        os.unlink(hwm_name)
    max_rss = int(own) * 1024 if own.isdigit() else usage.ru_maxrss * 1024
    for reader in readers:
        reader.join(5)
    skip = [os.path.relpath(p, cwd) for p in private]
    written = frozenset(
        p
        for p in changed(before, snapshot(cwd))
        if not any(p == d or p.startswith(d + os.sep) for d in skip)
    )
    tmp_after = set(os.listdir(tmpdir)) if tmpdir is not None and tmpdir.is_dir() else set()
    outcome = Outcome(
        args=tuple(args),
        written=written,
        leftovers=tuple(sorted(tmp_after - tmp_before)),
        returncode=proc.returncode,
        stdout=b"".join(out).decode("utf-8", "replace"),
        stderr=b"".join(err).decode("utf-8", "replace"),
        seconds=seconds,
        max_rss=max_rss,
        timed_out=timed_out.is_set(),
    )
    if os.environ.get("HOSTILE_REPORT"):
        _record(Path(os.environ["HOSTILE_REPORT"]), outcome)
    return outcome


def _record(report: Path, outcome: Outcome) -> None:
    """One JSON line per run, for the figures in docs/reliability.md (set HOSTILE_REPORT)."""
    line = json.dumps(
        {
            "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
            "args": [a[:80] for a in outcome.args],
            "returncode": outcome.returncode,
            "seconds": round(outcome.seconds, 3),
            "max_rss": outcome.max_rss,
            "timed_out": outcome.timed_out,
            "traceback": "Traceback" in outcome.stderr + outcome.stdout,
            "written": sorted(outcome.written),
            "leftovers": list(outcome.leftovers),
        }
    )
    with report.open("a") as out:  # O_APPEND: xdist workers may write at once
        out.write(line + "\n")


def assert_bounded(outcome: Outcome) -> None:
    assert not outcome.timed_out, outcome.describe()
    assert outcome.seconds < CASE_SECONDS, outcome.describe()
    assert outcome.max_rss <= CASE_RSS, outcome.describe()
    assert "Traceback" not in outcome.stderr, outcome.describe()
    assert "Traceback" not in outcome.stdout, outcome.describe()
    assert not outcome.leftovers, f"left in TMPDIR: {outcome.leftovers}\n{outcome.describe()}"


def assert_clean_error(outcome: Outcome, *mentions: str) -> str:
    """Exit 1 with exactly one ``error:`` line (and at most one ``hint:`` line after it),
    bounded, no traceback; each of ``mentions`` appears in the error or hint. Returns the
    error line."""
    assert_bounded(outcome)
    assert outcome.returncode == 1, outcome.describe()
    # A refused input writes nothing: no partial output, nothing beside the target.
    assert not outcome.written, f"wrote {sorted(outcome.written)}\n{outcome.describe()}"
    lines = outcome.stderr.rstrip("\n").splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1, outcome.describe()
    tail = lines[errors[0] :]
    assert len(tail) == 1 or (len(tail) == 2 and tail[1].startswith("hint:")), outcome.describe()
    text = "\n".join(tail)
    for mention in mentions:
        assert mention in text, f"{mention!r} not in the error\n{outcome.describe()}"
    return lines[errors[0]]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime: compare two to find what a run
    wrote where it should not."""
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            # A directory counts by its existence: its mtime moves when a temporary is
            # made and removed inside it, which leaves nothing behind.
            is_dir = stat.S_ISDIR(st.st_mode)
            found[os.path.relpath(path, root)] = (0, 0) if is_dir else (st.st_size, st.st_mtime_ns)
    return found


# A shipped preset's parsed form (build.spec_text), a console script's launcher,
# a wheel's metadata and passed checks (package.pymemo), remembered by their inputs: data
# distill derives from itself, not output, so a failing run may leave it.
_REMEMBERED_PRESET = re.compile(
    r"(?:.*/)?cache(?:/tmp|/derived(?:/(?:spec-presets|console-scripts|wheel-info|python-checked)"
    r"(?:/[0-9a-f]{64})?)?)?"
)


def changed(
    before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]]
) -> set[str]:
    return {
        p
        for p in before.keys() | after.keys()
        if before.get(p) != after.get(p) and not _REMEMBERED_PRESET.fullmatch(p)
    }
