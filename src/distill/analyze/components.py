"""What a catalog is made of: the packages found in an image, and the files they came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class PackageType(StrEnum):
    DEB = "deb"
    APK = "apk"
    PYTHON = "python"
    NPM = "npm"
    MAVEN = "maven"
    GENERIC = "generic"  # a program installed from outside any package manager (Node.js)

    @property
    def is_os(self) -> bool:
        return self in (PackageType.DEB, PackageType.APK)


_PURL_TYPE = {
    PackageType.DEB: "deb",
    PackageType.APK: "apk",
    PackageType.PYTHON: "pypi",
    PackageType.NPM: "npm",
    PackageType.MAVEN: "maven",
    PackageType.GENERIC: "generic",
}


@dataclass(frozen=True, slots=True)
class CapturedFile:
    """A file taken from the image: its bytes, the layer that wrote it, its mode bits. A
    large archive is left in a temporary ``file`` (``data`` then holds only its head)."""

    data: bytes
    layer: int
    mode: int = 0o644
    file: Path | None = None


@dataclass(frozen=True, slots=True)
class OsRelease:
    """The distribution, from ``os-release``: what scanners key their advisories on."""

    id: str
    version_id: str = ""
    codename: str = ""
    pretty_name: str = ""

    @property
    def distro(self) -> str:
        """The purl ``distro`` qualifier syft and grype use: ``debian-13``."""
        release = self.version_id or self.codename
        return f"{self.id}-{release}" if release else self.id


@dataclass(frozen=True, slots=True)
class Component:
    """One package found in the image.

    ``licenses`` are the names as the package declares them (Debian short names, SPDX
    expressions, free text), de-duplicated in the order found; the SBOM writers map them.
    ``layer`` is the index of the layer that added the package's metadata; ``locations`` the
    paths that prove it is there; ``files`` the paths the package owns, when its database says.
    """

    name: str
    version: str
    type: PackageType
    purl: str
    licenses: tuple[str, ...] = ()
    source_name: str = ""
    source_version: str = ""
    arch: str = ""
    layer: int | None = None
    locations: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    supplier: str = ""
    group: str = ""


@dataclass(frozen=True, slots=True)
class Catalog:
    components: tuple[Component, ...]
    os: OsRelease | None
    databases: tuple[str, ...]  # the OS package databases read
    warnings: tuple[str, ...]


def text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def make_purl(
    kind: PackageType,
    name: str,
    version: str,
    namespace: str | None = None,
    qualifiers: Mapping[str, str] | None = None,
) -> str:
    """The package URL; qualifiers with empty values are left out."""
    from packageurl import PackageURL  # only once there is a package to name

    quals = {k: v for k, v in (qualifiers or {}).items() if v}
    purl = PackageURL(_PURL_TYPE[kind], namespace, name, version or None, quals or None)
    return str(purl.to_string())
