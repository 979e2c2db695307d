"""SBOM documents from a catalog: SPDX 2.3 JSON (our own writer) and CycloneDX 1.6 JSON.

Both are deterministic: the same image gives the same bytes. Nothing random goes in: the SPDX
namespace and the CycloneDX serial number derive from the image digest, the timestamp is
``SOURCE_DATE_EPOCH`` when set, else the image's creation time.

Licences are mapped to SPDX by ``distill.analyze.licenses``. What only one format or one kind
of package needs (the Debian version parser, ``packageurl``) is imported on first use: a CLI
run pays at start-up only for what it writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from distill import __version__
from distill.analyze.catalog import (
    Catalog,
    Component,
    OsRelease,
    PackageType,
    catalog_view,
    want,
)
from distill.analyze.fsview import FsView, analyse_fsview
from distill.analyze.licenses import (
    NOASSERTION,
    NOT_ID_CHARS,
    LicenseKind,
    component_licenses,
    spdx_license_expression,
)
from distill.context import Access
from distill.debian.control import gc_paused
from distill.errors import DistillError
from distill.image.partial import ImageSource
from distill.transports import opened

if TYPE_CHECKING:
    pass

TOOL = f"distill-{__version__}"
_EPOCH_START = "1970-01-01T00:00:00Z"


class SbomFormat(StrEnum):
    SPDX_JSON = "spdx-json"
    CYCLONEDX_JSON = "cyclonedx-json"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the SBOM says about the image itself.

    ``digest`` is the manifest digest (``sha256:...``); ``layers`` the layers' diff IDs, bottom
    first, so a component's layer index can be named. ``repository``/``tag`` are set when the
    image came from a registry-style reference (they go into the ``pkg:oci`` purl).
    """

    name: str
    digest: str
    config_digest: str = ""
    created: str = ""
    os: str = "linux"
    architecture: str = ""
    variant: str = ""
    layers: tuple[str, ...] = ()
    repository: str = ""
    tag: str = ""


# --- time and identity -----------------------------------------------------------------------


def document_time(image: ImageInfo, environ: Mapping[str, str] | None = None) -> str:
    """``SOURCE_DATE_EPOCH`` if set, else the image's creation time, else the epoch (UTC, Z)."""
    env = os.environ if environ is None else environ
    sde = env.get("SOURCE_DATE_EPOCH", "").strip()
    if sde:
        try:
            moment = datetime.fromtimestamp(int(sde), UTC)
        except (ValueError, OverflowError, OSError) as exc:
            raise DistillError(
                f"SOURCE_DATE_EPOCH={sde!r} is not a Unix timestamp",
                hint="set it to whole seconds since 1970, e.g. $(git log -1 --format=%ct)",
            ) from exc
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if image.created:
        try:
            moment = datetime.fromisoformat(image.created.replace("Z", "+00:00"))
        except ValueError:
            return _EPOCH_START
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        # SPDX wants exactly YYYY-MM-DDThh:mm:ssZ: no fraction, no offset.
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _EPOCH_START


def _digest_hex(image: ImageInfo) -> str:
    """The image's identity as hex: its manifest digest, else its config digest (a classic
    docker-archive has no manifest digest), else a hash of its name."""
    for digest in (image.digest, image.config_digest):
        if digest.startswith("sha256:"):
            return digest.removeprefix("sha256:")
    return hashlib.sha256(image.name.encode()).hexdigest()


def oci_purl(image: ImageInfo) -> str:
    """``pkg:oci/<name>@sha256:...`` with arch, repository_url and tag qualifiers; "" if unknown."""
    if not image.digest.startswith("sha256:"):
        return ""
    repository = image.repository
    name = (repository.rsplit("/", 1)[-1] if repository else "").lower() or "image"
    qualifiers = {
        "arch": image.architecture,
        "repository_url": repository if "/" in repository else "",
        "tag": image.tag,
    }
    quals = {k: v for k, v in qualifiers.items() if v}
    from packageurl import PackageURL

    return str(PackageURL("oci", None, name, image.digest, quals or None).to_string())


def _layer_diff_id(component: Component, image: ImageInfo) -> str:
    index = component.layer
    return image.layers[index] if index is not None and index < len(image.layers) else ""


# --- SPDX 2.3 --------------------------------------------------------------------------------


def _spdx_id(prefix: str, *parts: str) -> str:
    # SPDX ids allow letters, digits, '.' and '-'; a hash keeps two similar names apart.
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
    readable = NOT_ID_CHARS.sub("-", parts[0]).strip("-")[:60]
    return f"SPDXRef-{prefix}-{readable}-{digest}"


_TEAM = re.compile(
    r"\b(team|maintainers|developers|group|project|foundation|community|inc|ltd|llc)\b", re.I
)


def _spdx_supplier(supplier: str) -> str:
    """``Name <mail>`` → ``Person: Name (mail)``, or Organization for a team's name."""
    match = re.match(r"^\s*([^<(]*?)\s*(?:<([^>]*)>)?\s*$", supplier)
    if not match or not match.group(1):
        return NOASSERTION
    name, mail = match.group(1), match.group(2)
    kind = "Organization" if _TEAM.search(name) else "Person"
    return f"{kind}: {name}" + (f" ({mail})" if mail else "")


def _spdx_image_package(image: ImageInfo) -> dict[str, Any]:
    package: dict[str, Any] = {
        "SPDXID": "SPDXRef-Image",
        "name": image.name,
        "versionInfo": image.digest or NOASSERTION,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "supplier": NOASSERTION,
    }
    if image.digest.startswith("sha256:"):
        package["checksums"] = [
            {"algorithm": "SHA256", "checksumValue": image.digest.removeprefix("sha256:")}
        ]
    purl = oci_purl(image)
    if purl:
        package["externalRefs"] = [_purl_ref(purl)]
    return package


def _purl_ref(purl: str) -> dict[str, str]:
    return {
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": purl,
    }


def _spdx_os_package(osr: OsRelease) -> dict[str, Any]:
    package: dict[str, Any] = {
        "SPDXID": "SPDXRef-OperatingSystem",
        "name": osr.id,
        "versionInfo": osr.version_id or osr.codename or NOASSERTION,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "primaryPackagePurpose": "OPERATING_SYSTEM",
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
    }
    if osr.pretty_name:
        package["description"] = osr.pretty_name
    return package


def _spdx_package(
    component: Component, image: ImageInfo, spdxid: str, created: str
) -> dict[str, Any]:
    package: dict[str, Any] = {
        "SPDXID": spdxid,
        "name": component.name,
        "versionInfo": component.version,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "primaryPackagePurpose": "LIBRARY",
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": spdx_license_expression(component),
        "copyrightText": NOASSERTION,
        "supplier": _spdx_supplier(component.supplier),
        "externalRefs": [_purl_ref(component.purl)],
    }
    if component.source_name:
        # The wording trivy writes and reads back: without it, a scanner matches advisories on
        # the binary name and misses every CVE filed against the source (libc6 vs glibc).
        package["sourceInfo"] = (
            f"built package from: {component.source_name} {component.source_version}"
        )
    notes = [f"distill:location={location}" for location in component.locations]
    if component.layer is not None:
        notes.append(f"distill:layer={component.layer}")
        diff_id = _layer_diff_id(component, image)
        if diff_id:
            notes.append(f"distill:layer-diff-id={diff_id}")
    package["annotations"] = [
        {
            "annotationDate": created,
            "annotationType": "OTHER",
            "annotator": f"Tool: {TOOL}",
            "comment": note,
        }
        for note in notes
    ]
    return package


def to_spdx_json(
    catalog: Catalog, image: ImageInfo, *, created: str | None = None
) -> dict[str, Any]:
    """An SPDX 2.3 document: the image DESCRIBED, CONTAINing the OS and every package."""
    when = created or document_time(image)
    name = image.name or "image"
    slug = NOT_ID_CHARS.sub("-", name).strip("-") or "image"
    # Documents without a domain of their own use spdx.org/spdxdocs (SPDX 2.3 §6.5).
    namespace = f"https://spdx.org/spdxdocs/{TOOL}/{slug}-{_digest_hex(image)}"
    packages = [_spdx_image_package(image)]
    relationships = [_relationship("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image")]
    if catalog.os is not None:
        packages.append(_spdx_os_package(catalog.os))
        relationships.append(_relationship("SPDXRef-Image", "CONTAINS", "SPDXRef-OperatingSystem"))
    refs: dict[str, str] = {}
    for component in catalog.components:
        spdxid = _spdx_id(
            component.type.value, component.name, component.purl, *component.locations
        )
        packages.append(_spdx_package(component, image, spdxid, when))
        parent = (
            "SPDXRef-OperatingSystem" if component.type.is_os and catalog.os else "SPDXRef-Image"
        )
        relationships.append(_relationship(parent, "CONTAINS", spdxid))
        for lic in component_licenses(component):
            if lic.kind is LicenseKind.REF:
                refs.setdefault(lic.spdx, lic.raw)
    creation: dict[str, Any] = {"created": when, "creators": [f"Tool: {TOOL}"]}
    document: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": namespace,
        "creationInfo": creation,
        "packages": packages,
        "relationships": relationships,
    }
    if catalog.warnings:
        creation["comment"] = "; ".join(f"warning: {w}" for w in catalog.warnings)
        document["comment"] = creation["comment"]
    if refs:
        document["hasExtractedLicensingInfos"] = [
            {
                "licenseId": ref,
                "name": raw,
                "extractedText": f"The package declares the licence {raw!r} (no SPDX id).",
            }
            for ref, raw in sorted(refs.items())
        ]
    return document


def _relationship(element: str, kind: str, related: str) -> dict[str, str]:
    return {"spdxElementId": element, "relationshipType": kind, "relatedSpdxElement": related}


# --- CycloneDX 1.6 ---------------------------------------------------------------------------


def _cdx_licenses(component: Component) -> list[dict[str, Any]]:
    licenses = component_licenses(component)
    if not licenses:
        return []
    # 1.6 allows either licence objects or one expression, never both: with an expression
    # among them, AND them into one when every part is SPDX; otherwise name each, as written.
    if any(lic.kind is LicenseKind.EXPRESSION for lic in licenses) and all(
        lic.kind is not LicenseKind.REF for lic in licenses
    ):
        if len(licenses) == 1:
            return [{"expression": licenses[0].spdx}]
        return [{"expression": spdx_license_expression(component)}]
    return [
        {"license": {"id": lic.spdx} if lic.kind is LicenseKind.ID else {"name": lic.raw}}
        for lic in licenses
    ]


def _properties(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs if value]


def _cdx_component(component: Component, image: ImageInfo, ref: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "bom-ref": ref,
        "type": "application" if component.type is PackageType.GENERIC else "library",
        "name": component.name,
        "version": component.version,
        "purl": component.purl,
    }
    if component.group:
        entry["group"] = component.group
        entry["name"] = component.name.removeprefix(f"{component.group}:")
    if component.supplier:
        entry["supplier"] = {"name": component.supplier}
    licenses = _cdx_licenses(component)
    if licenses:
        entry["licenses"] = licenses
    source = ""
    if component.source_name:
        source = f"{component.source_name}@{component.source_version}"
    pairs = [
        ("distill:package-type", component.type.value),
        ("distill:layer", "" if component.layer is None else str(component.layer)),
        ("distill:layer-diff-id", _layer_diff_id(component, image)),
        ("distill:source", source),
        ("distill:arch", component.arch),
    ]
    pairs += [("distill:location", location) for location in component.locations]
    pairs += _trivy_source(component)
    entry["properties"] = _properties(pairs)
    return entry


def _trivy_source(component: Component) -> list[tuple[str, str]]:
    """trivy's own properties for the source package of an OS package.

    trivy ignores the purl's ``upstream`` qualifier when it reads a CycloneDX BOM, and Debian
    advisories are filed against source packages: these properties (a registered CycloneDX
    taxonomy) are what lets ``trivy sbom`` match glibc's CVEs to libc6.
    """
    if not component.type.is_os or not component.source_name:
        return []
    pairs = [("aquasecurity:trivy:SrcName", component.source_name)]
    if component.type is PackageType.DEB:
        from distill.debian.version import parse_version

        try:
            parsed = parse_version(component.source_version)
        except DistillError:
            return [*pairs, ("aquasecurity:trivy:SrcVersion", component.source_version)]
        pairs += [
            ("aquasecurity:trivy:SrcEpoch", str(parsed.epoch) if parsed.epoch else ""),
            ("aquasecurity:trivy:SrcVersion", parsed.upstream),
            ("aquasecurity:trivy:SrcRelease", parsed.revision),
        ]
    else:
        pairs.append(("aquasecurity:trivy:SrcVersion", component.source_version))
    return pairs


def to_cyclonedx_json(
    catalog: Catalog, image: ImageInfo, *, created: str | None = None
) -> dict[str, Any]:
    """A CycloneDX 1.6 BOM: the image as metadata.component, the OS as an operating-system
    component that depends on the OS packages (how trivy and grype find the distro)."""
    when = created or document_time(image)
    # The same image described by the same distill gets the same serial number.
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"distill:cyclonedx:{_digest_hex(image)}:{TOOL}")
    image_ref = oci_purl(image) or f"image:{_digest_hex(image)}"
    metadata_component: dict[str, Any] = {
        "bom-ref": image_ref,
        "type": "container",
        "name": image.name or "image",
    }
    if image.digest:
        metadata_component["version"] = image.digest
    if image.digest.startswith("sha256:"):
        metadata_component["hashes"] = [
            {"alg": "SHA-256", "content": image.digest.removeprefix("sha256:")}
        ]
    purl = oci_purl(image)
    if purl:
        metadata_component["purl"] = purl
    metadata_component["properties"] = _properties(
        [
            ("distill:config-digest", image.config_digest),
            ("distill:architecture", image.architecture),
        ]
        + [(f"distill:layer:{i}", diff_id) for i, diff_id in enumerate(image.layers)]
    )
    if not metadata_component["properties"]:
        del metadata_component["properties"]

    components: list[dict[str, Any]] = []
    image_deps: list[str] = []
    os_deps: list[str] = []
    os_ref = ""
    if catalog.os is not None:
        osr = catalog.os
        os_ref = f"os:{osr.id}@{osr.version_id or osr.codename or 'unknown'}"
        os_entry: dict[str, Any] = {"bom-ref": os_ref, "type": "operating-system", "name": osr.id}
        if osr.version_id or osr.codename:
            os_entry["version"] = osr.version_id or osr.codename
        if osr.pretty_name:
            os_entry["description"] = osr.pretty_name
        components.append(os_entry)
        image_deps.append(os_ref)
    used: set[str] = set()
    for component in catalog.components:
        ref = component.purl
        if ref in used:  # the same artifact in two places: keep both, apart
            ref = f"{component.purl}#{component.locations[0] if component.locations else ''}"
        used.add(ref)
        components.append(_cdx_component(component, image, ref))
        (os_deps if component.type.is_os and os_ref else image_deps).append(ref)

    metadata: dict[str, Any] = {
        "timestamp": when,
        "tools": {
            "components": [{"type": "application", "name": "distill", "version": __version__}]
        },
        "component": metadata_component,
    }
    if catalog.warnings:
        metadata["properties"] = _properties(("distill:warning", w) for w in catalog.warnings)
    dependencies = [{"ref": image_ref, "dependsOn": sorted(image_deps)}]
    if os_ref:
        dependencies.append({"ref": os_ref, "dependsOn": sorted(os_deps)})
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": dependencies,
    }


def render(
    sbom_format: SbomFormat, catalog: Catalog, image: ImageInfo, *, created: str | None = None
) -> bytes:
    """The document as UTF-8 JSON bytes, keys in a fixed order, ending in a newline."""
    if sbom_format is SbomFormat.SPDX_JSON:
        document = to_spdx_json(catalog, image, created=created)
    else:
        document = to_cyclonedx_json(catalog, image, created=created)
    # As json.dumps(indent=2) writes it, without its list of every token: a few thousand
    # tokens at a time are joined and encoded, so a big catalog is held once as text.
    out = bytearray()
    pieces: list[str] = []
    for piece in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(document):
        pieces.append(piece)
        if len(pieces) >= 4096:
            out += "".join(pieces).encode("utf-8")
            pieces.clear()
    pieces.append("\n")
    out += "".join(pieces).encode("utf-8")
    return bytes(out)


# --- from an image ---------------------------------------------------------------------------


def _repository_and_tag(name: str) -> tuple[str, str]:
    """``HOST/REPO`` and ``TAG`` of a registry or podman-storage reference; ("", "") else."""
    for prefix in ("docker://", "containers-storage:"):
        if name.startswith(prefix):
            reference = name.removeprefix(prefix).split("@", 1)[0]
            repository, colon, tag = reference.rpartition(":")
            if not colon or "/" in tag:
                return reference, ""
            return repository, tag
    return "", ""


def image_info(source: ImageSource) -> ImageInfo:
    manifest, config = source.manifest, source.config
    repository, tag = _repository_and_tag(source.name)
    return ImageInfo(
        name=source.name,
        digest=manifest.digest or "",
        config_digest=config.digest,
        created=config.created or "",
        os=config.platform.os,
        architecture=config.platform.architecture,
        variant=config.platform.variant or "",
        layers=config.diff_ids,
        repository=repository,
        tag=tag,
    )


@dataclass(frozen=True, slots=True)
class ImageSbom:
    document: bytes
    catalog: Catalog
    image: ImageInfo


def image_sbom(
    reference: str,
    sbom_format: SbomFormat,
    *,
    access: Access | None = None,
) -> ImageSbom:
    """Read the image ``reference`` names (any transport ``open_source`` takes) in one pass
    over its layers, and describe it in ``sbom_format``."""
    with opened(reference, access or Access()) as source:
        return source_sbom(source, sbom_format)


def source_sbom(source: ImageSource, sbom_format: SbomFormat) -> ImageSbom:
    """``image_sbom`` for an image already open."""
    info = image_info(source)
    # The pass allocates a node and a tar header per entry and makes no garbage cycles:
    # the collector's rescans of the growing heap would cost a few percent for nothing.
    with gc_paused():
        return analyse_fsview(source, want, lambda view: _sbom_of(view, info, sbom_format))


def _sbom_of(view: FsView, info: ImageInfo, sbom_format: SbomFormat) -> ImageSbom:
    catalog = catalog_view(view)
    return ImageSbom(render(sbom_format, catalog, info), catalog, info)
