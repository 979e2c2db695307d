"""Whether a path could be written, checked before any work is done."""

from __future__ import annotations

import os
from pathlib import Path

from distill.errors import DistillError


def check_writable_path(path: Path, *, directory: bool) -> None:
    """Fail early when ``path`` (a layout directory, or an archive file) cannot be
    written: its nearest existing parent is no writable directory, or an archive path is a
    directory."""
    probe = path.absolute().parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise DistillError(
            f"cannot write {path}: {probe} is not a directory",
            hint="choose an output path inside a directory",
        )
    if not directory and path.is_dir():
        raise DistillError(
            f"{path} is a directory; an archive destination must be a file",
            hint="name a file, e.g. image.tar, or use oci: to write a layout directory",
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DistillError(
            f"cannot write {path}: {probe} is not writable",
            hint="choose another output path, or fix the directory's permissions",
        )
