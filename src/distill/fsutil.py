"""Writing outputs so that a failure leaves nothing behind: temp name, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from distill.errors import DistillError


def _unwritable(path: Path, exc: OSError) -> DistillError:
    return DistillError(
        f"cannot write {path}: {exc.strerror or exc}",
        hint="check that the directory exists and is writable",
    )


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling file of ``path``; on success it replaces ``path`` at once."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        tmp = Path(name)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _unwritable(path, exc) from exc
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def spool_dir() -> str | None:
    """Where large temporary files go: ``$TMPDIR`` if set, else ``/var/tmp`` (disk, where
    ``/tmp`` is often RAM), as containers/image does; None lets ``tempfile`` choose."""
    if os.environ.get("TMPDIR"):
        return None
    return "/var/tmp" if os.access("/var/tmp", os.W_OK | os.X_OK) else None
