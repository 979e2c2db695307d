"""The ``:debug`` variant's shell: Debian's busybox-static laid out as distroless does it.

distroless's debug images carry busybox in ``/busybox`` (the binary and one symlink per
applet), a directory no default PATH names, so nothing in the image starts a shell by
accident. Debian's package puts the binary at ``/usr/bin/busybox`` (``/bin/busybox`` before
trixie) and creates no applet links (its postinst does not either), so both are done here.

The applet list is read from the binary, not by running it: the image may be for another
architecture. busybox keeps its applet names as one sorted, NUL-separated table
(``applet_names`` in ``applets.h``) that starts with ``[`` and ``[[``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry

BUSYBOX_DIR = "busybox"
_BINARIES = ("usr/bin/busybox", "bin/busybox")
_APPLET = re.compile(rb"[a-z0-9_.\[\]-]+")
_TABLE_START = b"[\0[[\0"
_MIN_APPLETS = 20  # a real table has hundreds; fewer means we found something else


def busybox_applets(binary: bytes) -> list[str]:
    """The applet names compiled into a busybox binary, in its (sorted) table order."""
    start = binary.find(_TABLE_START)
    while start != -1:
        names = _table_at(binary, start)
        if names is not None:
            return names
        start = binary.find(_TABLE_START, start + 1)
    raise DistillError(
        "cannot find the applet table in the busybox binary",
        hint="the busybox-static package may be built unusually; report it with its version",
    )


def _table_at(binary: bytes, offset: int) -> list[str] | None:
    end = binary.find(b"\0\0", offset)
    if end == -1:
        return None
    raw = binary[offset:end].split(b"\0")
    if len(raw) < _MIN_APPLETS or not all(_APPLET.fullmatch(n) for n in raw) or raw != sorted(raw):
        return None
    names = [n.decode() for n in raw]
    return names if "sh" in names else None


def busybox_entries(entries: Sequence[FsEntry], package: str) -> list[FsEntry]:
    """The entries of the busybox package rearranged for ``/busybox``: the binary, a link per
    applet, and the package's copyright (for licence scanners); nothing else of it."""
    by_path = {e.path: e for e in entries}
    binary = next((by_path[p] for p in _BINARIES if p in by_path), None)
    if binary is None or binary.kind is not EntryKind.FILE:
        raise DistillError(
            f"{package} ships no busybox binary at /{_BINARIES[0]}",
            hint="the debug variant needs Debian's busybox-static package",
        )
    applets = busybox_applets(binary.read_bytes())
    result = [
        FsEntry(BUSYBOX_DIR, EntryKind.DIR, 0o755, package=package),
        replace(binary, path=f"{BUSYBOX_DIR}/busybox"),
    ]
    result += [
        FsEntry(
            f"{BUSYBOX_DIR}/{name}", EntryKind.SYMLINK, 0o777, linkname="busybox", package=package
        )
        for name in applets
        if name != "busybox"
    ]
    result += [e for e in entries if e.path.startswith("usr/share/doc/")]
    return result
