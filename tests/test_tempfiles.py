"""Owner-stamped temporaries: what a killed run leaves is swept by the next, a live run's
temporaries are not, and SIGTERM removes what the run made (real processes, real signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill import tempfiles
from distill.cache import BlobCache
from distill.fsutil import atomic_path

# A child that starts writing ``argv[1]`` through atomic_path and waits to be killed.
_WRITER = """
import sys, time
from pathlib import Path
from distill.fsutil import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"half")
    print(tmp, flush=True)
    time.sleep(60)
"""


def _killed_writer(target: Path) -> Path:
    """The temporary a SIGKILLed writer of ``target`` left behind."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    tmp = Path(proc.stdout.readline().decode().strip())
    proc.kill()
    proc.wait()
    assert tmp.exists() and f".{proc.pid}." in tmp.name
    return tmp


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_names_carry_the_owner(tmp_path: Path) -> None:
    made = tempfiles.make_file(tmp_path, ".out.tar")
    assert made.name.startswith(f".out.tar.{os.getpid()}.") and made.name.endswith(".tmp")
    assert tempfiles.sweep(tmp_path) == 0 and made.exists()  # ours, and we are alive


def test_the_next_write_of_an_output_sweeps_what_a_killed_one_left(tmp_path: Path) -> None:
    target = tmp_path / "out.tar"
    left = _killed_writer(target)
    other = tmp_path / "other.json"
    other_left = _killed_writer(other)
    (tmp_path / "mine.txt").write_text("not a temporary")
    with atomic_path(target) as tmp:
        assert not left.exists()
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    # Only the same output's temporaries are swept there; other files are not touched.
    assert other_left.exists() and (tmp_path / "mine.txt").exists()


def test_a_live_owner_keeps_its_temporary(tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        name = tmp_path / f".out.tar.{live.pid}.abcd1234.tmp"
        name.write_bytes(b"being written")
        dead = tmp_path / f".out.tar.{_dead_pid()}.abcd1234.tmp"
        dead.write_bytes(b"left")
        assert tempfiles.sweep(tmp_path, [".out.tar"]) == 1
        assert name.exists() and not dead.exists()
        # A process that started after the temporary was last written is not its owner:
        # the PID was reused.
        hour_ago = time.time() - 3600
        os.utime(name, (hour_ago, hour_ago))
        assert tempfiles.sweep(tmp_path, [".out.tar"]) == 1 and not name.exists()
    finally:
        live.kill()
        live.wait()


def test_names_without_an_owner_go_by_age(tmp_path: Path) -> None:
    fresh, old = tmp_path / "abc-0123.part", tmp_path / "def-4567.part"
    fresh.write_bytes(b"")
    old.write_bytes(b"")
    long_ago = time.time() - tempfiles.STALE_AFTER - 60
    os.utime(old, (long_ago, long_ago))
    (tmp_path / "dir.1.abcdefgh.tmp").mkdir()  # PID 1 is alive and older than this
    assert tempfiles.sweep(tmp_path) == 1
    assert fresh.exists() and not old.exists() and (tmp_path / "dir.1.abcdefgh.tmp").exists()


def test_cache_sweeps_tmp_staging_and_layer_temporaries(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    dead = _dead_pid()
    left = [
        cache.tmp_dir / f"0123abcd.{dead}.abcd1234.tmp",
        cache.root / "staging" / "tmp" / f"stage.{dead}.abcd1234.tmp",
        cache.blobs_dir / f".layer.{dead}.abcd1234.tmp",
    ]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    blob = cache.blobs_dir / ("0" * 64)
    blob.write_bytes(b"not checked here")
    made = cache.tmp_path("x-")
    assert not any(p.exists() for p in left)
    assert made.exists() and blob.exists()


_SPOOLER = """
import sys, time
from distill import tempfiles
d = tempfiles.spool_tempdir("distill-spool")
open(d.name + "/1", "wb").write(b"x" * 1000)
print(d.name, flush=True)
time.sleep(60)
"""


def test_stale_spool_directories_are_swept_when_the_next_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", _SPOOLER], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    left = Path(proc.stdout.readline().decode().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert left.is_dir() and left.parent == tmp_path
    tempfiles._swept_spool.cache_clear()
    with tempfiles.spool_tempdir("distill-spool") as new:
        assert Path(new).parent == tmp_path
        assert not left.exists()
