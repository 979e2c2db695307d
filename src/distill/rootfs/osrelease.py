"""``/etc/os-release`` and ``/etc/debian_version``: how scanners tell which Debian this is.

base-files ships both (``etc/os-release`` as a link to ``../usr/lib/os-release``), so when it is
in the package set its files win and nothing is generated. Without it, the same files are
written for the suite: trivy reads ``etc/debian_version`` and ``ID``/``VERSION_ID`` from
os-release, syft and grype read os-release; without them no CVE is matched at all.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry

# Codename → major release, for the suites distill builds from.
DEBIAN_RELEASES: dict[str, str] = {
    "bullseye": "11",
    "bookworm": "12",
    "trixie": "13",
    "forky": "14",
}

OS_RELEASE = "usr/lib/os-release"
ETC_OS_RELEASE = "etc/os-release"
DEBIAN_VERSION = "etc/debian_version"


def os_release_text(codename: str, version_id: str) -> str:
    # The field set and quoting base-files uses, so readers see what they would on Debian.
    return (
        f'PRETTY_NAME="Debian GNU/Linux {version_id} ({codename})"\n'
        'NAME="Debian GNU/Linux"\n'
        f'VERSION_ID="{version_id}"\n'
        f'VERSION="{version_id} ({codename})"\n'
        f"VERSION_CODENAME={codename}\n"
        "ID=debian\n"
        'HOME_URL="https://www.debian.org/"\n'
        'SUPPORT_URL="https://www.debian.org/support"\n'
        'BUG_REPORT_URL="https://bugs.debian.org/"\n'
    )


def version_for(suite: str) -> tuple[str, str]:
    """(codename, major version) of a suite or pocket name such as ``trixie-security``."""
    codename = suite.split("-", 1)[0].lower()
    version = DEBIAN_RELEASES.get(codename)
    if version is None:
        known = ", ".join(sorted(DEBIAN_RELEASES))
        raise DistillError(
            f"no release number known for suite {suite!r}",
            hint=f"add base-files to the packages (it ships os-release), or use one of: {known}",
        )
    return codename, version


def os_release_entries(suite: str, present: Collection[str]) -> list[FsEntry]:
    """The os-release and debian_version entries the package set lacks.

    ``present`` holds the paths packages already provide (base-files ships all three).
    """
    wanted = [p for p in (OS_RELEASE, ETC_OS_RELEASE, DEBIAN_VERSION) if p not in present]
    if not wanted:
        return []
    codename, version = version_for(suite)
    entries: list[FsEntry] = []
    for path in wanted:
        if path == ETC_OS_RELEASE:
            entries.append(
                FsEntry(path, EntryKind.SYMLINK, 0o777, linkname="../usr/lib/os-release")
            )
            continue
        text = os_release_text(codename, version) if path == OS_RELEASE else f"{version}\n"
        data = text.encode()
        entries.append(FsEntry(path, EntryKind.FILE, 0o644, size=len(data), content=data))
    return entries


# etc/os-release is usually a symlink to usr/lib/os-release, so the file is often only there.
OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")
# os-release is a few hundred bytes; more than this is read no further (with a warning).
MAX_OS_RELEASE = 64 << 10


_ASSIGNMENT = re.compile(r"^([A-Z0-9_]+)=(.*)$")


def parse_os_release(text: str) -> dict[str, str]:
    """``KEY=value`` lines with shell quoting, as os-release(5) specifies."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line.strip())
        if not match:
            continue
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            if line.strip()[len(key) + 1] == '"':
                value = re.sub(r"\\([\\$\"`])", r"\1", value)
        values[key] = value
    return values
