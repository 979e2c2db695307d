"""``/var/lib/dpkg/status.d/``: the package database scanners read in distroless images.

There is no dpkg in the image, so instead of ``/var/lib/dpkg/status`` each package gets the
layout distroless uses (rules_distroless' ``dpkg_statusd``):

- ``var/lib/dpkg/status.d/<package>``: the package's ``control`` file, verbatim. It carries
  ``Package``, ``Version``, ``Architecture`` and, whenever the source differs from the binary
  in name or version, ``Source: <name> [(<version>)]``; scanners map CVEs through it and take
  the binary's name and version when it is absent, as dpkg does.
- ``var/lib/dpkg/status.d/<package>.md5sums``: the package's ``md5sums``, when it has one.

No ``Status:`` line is written, as distroless writes none: trivy only drops stanzas whose
Status says ``deinstall`` or ``purge`` and syft only ``deinstall``; both treat a stanza without
one as installed. trivy reads every file directly in ``status.d/`` except ``*.md5sums``; syft
globs ``status.d/*`` and finds the md5sums as ``<name>:<arch>.md5sums`` or ``<name>.md5sums``.
A package name is unique in an image unless a Multi-Arch: same package is there for two
architectures; only then are the files named ``<package>:<arch>``, as in dpkg's info dir.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from distill.debian.deb import DebControl
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry

STATUS_DIR = "var/lib/dpkg/status.d"
_NAME = re.compile(r"^[a-z0-9][a-z0-9+.\-]*$")


def control_field(control: str, name: str) -> str:
    """The first line of a field in a control stanza ("" when absent)."""
    match = re.search(rf"(?im)^{re.escape(name)}:[ \t]*(.*?)[ \t]*$", control)
    return match.group(1) if match else ""


def _file(path: str, text: str) -> FsEntry:
    data = text.encode("utf-8")
    return FsEntry(path, EntryKind.FILE, 0o644, size=len(data), content=data)


def status_entries(controls: Iterable[DebControl]) -> list[FsEntry]:
    """The ``status.d`` directory with one stanza file (and md5sums) per package."""
    items = [(control_field(c.control, "Package"), c) for c in controls]
    for name, control in items:
        if not _NAME.match(name):
            first = control.control.strip().splitlines()[:1]
            raise DistillError(
                f"a control stanza has no valid Package field ({name!r})",
                hint=f"the stanza starts: {first[0] if first else '(empty)'}",
            )
    counts = Counter(name for name, _ in items)
    entries = [
        FsEntry("var", EntryKind.DIR, 0o755),
        FsEntry("var/lib", EntryKind.DIR, 0o755),
        FsEntry("var/lib/dpkg", EntryKind.DIR, 0o755),
        FsEntry(STATUS_DIR, EntryKind.DIR, 0o755),
    ]
    seen: set[str] = set()
    for name, control in items:
        arch = control_field(control.control, "Architecture")
        key = f"{name}:{arch}" if counts[name] > 1 else name
        if key in seen:
            raise DistillError(
                f"package {key} is in the image twice",
                hint="each package may appear once per architecture",
            )
        seen.add(key)
        entries.append(_file(f"{STATUS_DIR}/{key}", control.control.rstrip("\n") + "\n"))
        if control.md5sums.strip():
            entries.append(_file(f"{STATUS_DIR}/{key}.md5sums", control.md5sums))
    return entries
