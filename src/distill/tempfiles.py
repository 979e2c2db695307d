"""Temporary files and directories, named so that a later run can sweep what a killed one left.

Every temporary distill makes is called ``STEM.PID.RANDOM.tmp``: ``STEM`` says what it is for
(``.app.tar`` next to the output ``app.tar``, ``distill-spool`` in ``$TMPDIR``), ``PID`` is the
process that made it. A later run that is about to make one of the same kind first removes
the stale ones: those whose owner is gone (no such process, or one that started after the
temporary was last written, i.e. the PID was reused). A temporary whose owner is alive is a
concurrent run's, and stays. Names without a PID (made by older versions) are stale once
they are older than ``STALE_AFTER``.

A process killed with SIGKILL cannot clean up; this sweep is what bounds the leftovers to one
run's worth, and removes them the next time the same kind of temporary is made.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

STALE_AFTER = 3600.0  # seconds: for temporaries whose name carries no owner
SUFFIX = ".tmp"
# Spool kinds made in the spool directory ($TMPDIR or /var/tmp): swept together.
SPOOL_STEMS = (
    "distill-spool",
    "distill-jar",
    "distill-inspect",
    "distill-compare",
    "distill-gpgv",
    "distill-blob",
    "distill-load",
)
_NAME = re.compile(r"(?P<stem>.+)\.(?P<pid>[1-9][0-9]{0,9})\.[a-z0-9_]{8}\.tmp")
_STEM_BYTES = 200  # leaves room for ".PID.RANDOM.tmp" within a 255-byte file name
_CLOCK_SLACK = 2.0  # seconds: /proc start times are rounded to the boot time's second
# What this process made, for remove_own: a name still there at exit was never moved into
# place nor removed (a signal came between making it and guarding it).
_made: set[str] = set()


def stem_for(name: str) -> str:
    """The stem of a hidden sibling temporary for the file or directory ``name``."""
    stem = f".{name}"
    while len(os.fsencode(stem)) > _STEM_BYTES:
        stem = stem[:-1]
    return stem


def _prefix(stem: str) -> str:
    return f"{stem}.{os.getpid()}."


def make_file(directory: Path, stem: str) -> Path:
    """A new empty file ``directory/STEM.PID.RANDOM.tmp`` (created exclusively)."""
    while True:
        path = directory / f"{_prefix(stem)}{secrets.token_hex(4)}{SUFFIX}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        _made.add(str(path))
        os.close(fd)
        return path


def mkstemp(directory: Path, stem: str) -> tuple[int, str]:
    """``tempfile.mkstemp`` with an owner-stamped name."""
    fd, name = tempfile.mkstemp(prefix=_prefix(stem), suffix=SUFFIX, dir=directory)
    _made.add(name)
    return fd, name


def make_dir(directory: Path, stem: str) -> Path:
    name = tempfile.mkdtemp(prefix=_prefix(stem), suffix=SUFFIX, dir=directory)
    _made.add(name)
    return Path(name)


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _started(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or None where /proc cannot tell."""
    boot = _boot_time()
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
        return None if boot is None else boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def owner_alive(pid: int, written: float) -> bool:
    """Whether process ``pid`` exists and could have written a file last changed at
    ``written`` (it started before then; a later one just reuses the number)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return True
    started = _started(pid)
    return started is None or started <= written + _CLOCK_SLACK


def is_stale(name: str, st: os.stat_result, *, now: float | None = None) -> bool:
    match = _NAME.fullmatch(name)
    if match is not None:
        return not owner_alive(int(match["pid"]), st.st_mtime)
    return (now if now is not None else time.time()) - st.st_mtime > STALE_AFTER


def _remove(path: Path, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        # Gone already, or not ours to remove: never a reason to fail a run.
        with contextlib.suppress(OSError):
            path.unlink()


def sweep(directory: Path, stems: Iterable[str] | None = None) -> int:
    """Remove the stale temporaries in ``directory`` (only those with one of ``stems``, or
    any entry when ``stems`` is None: a directory that holds nothing but temporaries).
    Returns how many were removed."""
    wanted = None if stems is None else frozenset(stems)
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if wanted is not None:
            match = _NAME.fullmatch(entry.name)
            if match is None or match["stem"] not in wanted:
                continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if is_stale(entry.name, st, now=now):
            _remove(Path(entry.path), st)
            removed += 1
    return removed


def spool_base() -> str:
    """Where large temporary files go: ``$TMPDIR`` if set, else ``/var/tmp`` (disk, where
    ``/tmp`` is often RAM), as containers/image does."""
    explicit = os.environ.get("TMPDIR")
    if explicit and os.path.isdir(explicit):
        return explicit
    if not explicit and os.access("/var/tmp", os.W_OK | os.X_OK):
        return "/var/tmp"
    return tempfile.gettempdir()


@functools.cache
def _swept_spool(base: str) -> None:
    sweep(Path(base), SPOOL_STEMS)


def spool_prefix(stem: str) -> tuple[str, str]:
    """``(prefix, directory)`` for ``tempfile`` functions making a spool temporary of kind
    ``stem`` (one of SPOOL_STEMS); the stale spools of earlier runs are swept first."""
    base = spool_base()
    _swept_spool(base)
    return _prefix(stem), base


def spool_tempdir(stem: str) -> tempfile.TemporaryDirectory[str]:
    prefix, base = spool_prefix(stem)
    return tempfile.TemporaryDirectory(prefix=prefix, suffix=SUFFIX, dir=base)


def spool_mkdtemp(stem: str) -> Path:
    prefix, base = spool_prefix(stem)
    return Path(tempfile.mkdtemp(prefix=prefix, suffix=SUFFIX, dir=base))


def remove_own() -> None:
    """Remove every temporary of this process that is still there: the spool directory's
    entries named with its PID, and what ``make_file``/``mkstemp``/``make_dir`` made. For
    the way out (cli.main): a SIGTERM that lands between making a temporary and the
    ``try`` that guards it then leaves nothing either."""
    for name in sorted(_made):
        path = Path(name)
        with contextlib.suppress(OSError):
            _remove(path, path.lstat())
    _made.clear()
    pid = str(os.getpid())
    base = Path(spool_base())
    with contextlib.suppress(OSError), os.scandir(base) as entries:
        for entry in entries:
            match = _NAME.fullmatch(entry.name)
            if match and match["pid"] == pid and match["stem"] in SPOOL_STEMS:
                with contextlib.suppress(OSError):
                    _remove(Path(entry.path), entry.stat(follow_symlinks=False))
