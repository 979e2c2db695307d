"""An image's packages as the scanner sees them: :class:`~distill.scan.model.ImagePackage`.

Two ways in, one result: from the catalog of an image read here (``distill scan``), or back
from the CycloneDX document ``distill sbom`` writes (the :class:`Scanner` of ``compare``,
which is handed only that document). Both give Debian packages with their source package
and the layer that brought them in, and PyPI, npm and Maven packages with their purls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from distill.analyze.components import Catalog, Component, OsRelease, PackageType
from distill.bounded import parse_json
from distill.errors import DistillError
from distill.rootfs.osrelease import DEBIAN_RELEASES
from distill.scan.model import ImagePackage

# The catalog's package types → the scanner's ecosystems (OSV's, lower-cased, and "deb").
ECOSYSTEMS: dict[PackageType, str] = {
    PackageType.DEB: "deb",
    PackageType.PYTHON: "pypi",
    PackageType.NPM: "npm",
    PackageType.MAVEN: "maven",
}
_BY_TYPE_NAME = {kind.value: ecosystem for kind, ecosystem in ECOSYSTEMS.items()}
_CODENAMES = {version: codename for codename, version in DEBIAN_RELEASES.items()}
_SBOM_HINT = "give the CycloneDX document `distill sbom --format cyclonedx-json` writes"


@dataclass(frozen=True, slots=True)
class ImageContents:
    """What the scanner needs of an image: its packages, its system and architecture."""

    packages: tuple[ImagePackage, ...]
    os: OsRelease | None
    arch: str  # Debian's name (amd64, arm64); "" without Debian packages
    databases: tuple[str, ...]  # the OS package databases read; () = none found
    unscanned: tuple[str, ...] = ()  # package kinds found that no source covers (apk...)
    warnings: tuple[str, ...] = ()  # the catalog's: files too large to read, and the like


def debian_release(osr: OsRelease | None) -> str | None:
    """The Debian codename advisories are keyed on (``bookworm``), from os-release; None for
    a system that is not Debian or names no release distill knows."""
    if osr is None or osr.id != "debian":
        return None
    if osr.codename:
        return osr.codename.lower()
    major = osr.version_id.split(".", 1)[0]
    return _CODENAMES.get(major)


def _package(component: Component, diff_ids: Sequence[str]) -> ImagePackage | None:
    ecosystem = ECOSYSTEMS.get(component.type)
    if ecosystem is None:
        return None
    layer = component.layer
    digest = diff_ids[layer] if layer is not None and 0 <= layer < len(diff_ids) else ""
    deb = component.type is PackageType.DEB
    return ImagePackage(
        ecosystem=ecosystem,
        name=component.name,
        version=component.version,
        purl=component.purl,
        source_name=component.source_name if deb else "",
        source_version=component.source_version if deb else "",
        layer=layer,
        layer_digest=digest,
    )


def _main_arch(arches: Iterable[str]) -> str:
    """The architecture most Debian packages are built for (``all`` is none)."""
    counts = Counter(a for a in arches if a and a != "all")
    return counts.most_common(1)[0][0] if counts else ""


def from_catalog(catalog: Catalog, diff_ids: Sequence[str]) -> ImageContents:
    """The scanner's view of a catalog; ``diff_ids`` name the layers (bottom first)."""
    packages = tuple(p for c in catalog.components if (p := _package(c, diff_ids)) is not None)
    unscanned = sorted({c.type.value for c in catalog.components if c.type not in ECOSYSTEMS})
    arch = _main_arch(c.arch for c in catalog.components if c.type is PackageType.DEB)
    return ImageContents(
        packages, catalog.os, arch, catalog.databases, tuple(unscanned), catalog.warnings
    )


# --- back from CycloneDX ---------------------------------------------------------------------


def _properties(entry: dict[str, object]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    raw = entry.get("properties")
    for prop in raw if isinstance(raw, list) else ():
        if isinstance(prop, dict) and isinstance(prop.get("name"), str):
            found.setdefault(prop["name"], []).append(str(prop.get("value", "")))
    return found


def _first(props: dict[str, list[str]], name: str) -> str:
    return (props.get(name) or [""])[0]


def _os_from(entry: dict[str, object]) -> OsRelease:
    name, version = str(entry.get("name", "")), str(entry.get("version", ""))
    numeric = version[:1].isdigit()
    return OsRelease(
        id=name.lower(),
        version_id=version if numeric else "",
        codename="" if numeric else version.lower(),
        pretty_name=str(entry.get("description", "")),
    )


def _from_entry(entry: dict[str, object]) -> tuple[ImagePackage | None, str, str]:
    """(the package, its Debian arch, its type name) of one component."""
    props = _properties(entry)
    kind = _first(props, "distill:package-type")
    ecosystem = _BY_TYPE_NAME.get(kind)
    name, version = entry.get("name"), entry.get("version")
    if ecosystem is None or not isinstance(name, str) or not isinstance(version, str):
        return None, "", kind
    group = entry.get("group")
    if ecosystem == "maven" and isinstance(group, str) and group:
        name = f"{group}:{name}"
    source_name, _, source_version = _first(props, "distill:source").partition("@")
    layer_text = _first(props, "distill:layer")
    package = ImagePackage(
        ecosystem=ecosystem,
        name=name,
        version=version,
        purl=str(entry.get("purl", "")),
        source_name=source_name if ecosystem == "deb" else "",
        source_version=source_version if ecosystem == "deb" else "",
        layer=int(layer_text) if layer_text.isdigit() else None,
        layer_digest=_first(props, "distill:layer-diff-id"),
    )
    return package, _first(props, "distill:arch"), kind


def _database(location: str) -> str:
    """The package database a Debian package's first location names."""
    folder, _, _ = location.rpartition("/")
    return folder if folder.endswith("status.d") else location


def from_cyclonedx(document: bytes) -> ImageContents:
    """The scanner's view of a CycloneDX BOM written by ``distill sbom``."""
    bom = parse_json(document, "the CycloneDX SBOM", hint=_SBOM_HINT)
    components = bom.get("components") if isinstance(bom, dict) else None
    if not isinstance(components, list):
        raise DistillError("the CycloneDX SBOM has no components list", hint=_SBOM_HINT)
    packages: list[ImagePackage] = []
    arches: list[str] = []
    osr: OsRelease | None = None
    unscanned: set[str] = set()
    databases: set[str] = set()
    for entry in components:
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "operating-system":
            osr = _os_from(entry)
            continue
        package, arch, kind = _from_entry(entry)
        if package is None:
            if kind:
                unscanned.add(kind)
            continue
        packages.append(package)
        if package.ecosystem == "deb":
            arches.append(arch)
            databases.update(
                _database(loc) for loc in _properties(entry).get("distill:location", [])[:1]
            )
    if any(k == PackageType.APK.value for k in unscanned):
        databases.add("lib/apk/db/installed")
    return ImageContents(
        tuple(packages), osr, _main_arch(arches), tuple(sorted(databases)), tuple(sorted(unscanned))
    )
