"""``distill scan --format cyclonedx``: a CycloneDX 1.6 BOM of the image's packages with the
findings as VEX-style vulnerabilities, built with cyclonedx-python-lib's model.

Each vulnerability names the packages it ``affects`` (their bom-refs), with the installed
version marked ``affected`` and, when there is one, the fixed version ``unaffected``. Its
``analysis`` says ``in_triage``: distill knows a vulnerable version is installed, not
whether the image can be exploited; the ``response`` is ``update`` when a fixed version
exists, ``will_not_fix`` when Debian says so. Severity is a rating whose source is where
the finding came from (the Debian tracker, OSV, a changelog).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from distill import __version__
from distill.scan.model import Finding, ImagePackage, Status
from distill.scan.result import ScanResult, ordered, rank

if TYPE_CHECKING:
    from cyclonedx.model import Property
    from cyclonedx.model.component import Component
    from cyclonedx.model.vulnerability import Vulnerability


def _properties(pairs: Iterable[tuple[str, str]]) -> list[Property]:
    from cyclonedx.model import Property

    return [Property(name=name, value=value) for name, value in pairs if value]


def _component(package: ImagePackage, ref: str) -> Component:
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    purl = PackageURL.from_string(package.purl) if package.purl else None
    source = f"{package.source_name}@{package.source_version}" if package.source_name else ""
    return Component(
        name=package.name,
        version=package.version,
        type=ComponentType.LIBRARY,
        purl=purl,
        bom_ref=ref,
        properties=_properties(
            [
                ("distill:package-type", package.ecosystem),
                ("distill:source", source),
                ("distill:layer", "" if package.layer is None else str(package.layer)),
                ("distill:layer-diff-id", package.layer_digest),
            ]
        ),
    )


def _vulnerability(
    vuln_id: str, findings: list[Finding], refs: dict[ImagePackage, str]
) -> Vulnerability:
    from cyclonedx.model.impact_analysis import (
        ImpactAnalysisAffectedStatus,
        ImpactAnalysisResponse,
        ImpactAnalysisState,
    )
    from cyclonedx.model.vulnerability import (
        BomTarget,
        BomTargetVersionRange,
        Vulnerability,
        VulnerabilityAnalysis,
        VulnerabilityRating,
        VulnerabilitySeverity,
        VulnerabilitySource,
    )

    worst = max(findings, key=lambda f: rank(f.severity))
    origins = list(dict.fromkeys(o for f in findings for o in f.sources))
    affects = []
    for finding in findings:
        versions = [
            BomTargetVersionRange(
                version=finding.package.version, status=ImpactAnalysisAffectedStatus.AFFECTED
            )
        ]
        if finding.fixed_version:
            versions.append(
                BomTargetVersionRange(
                    version=finding.fixed_version, status=ImpactAnalysisAffectedStatus.UNAFFECTED
                )
            )
        affects.append(BomTarget(ref=refs[finding.package], versions=versions))
    responses = set()
    if any(f.status is Status.FIXED and f.fixed_version for f in findings):
        responses.add(ImpactAnalysisResponse.UPDATE)
    if any(f.status is Status.WILL_NOT_FIX for f in findings):
        responses.add(ImpactAnalysisResponse.WILL_NOT_FIX)
    detail = "; ".join(
        f"{f.package.name} {f.package.version}: {f.status.value}"
        + (f", fixed in {f.fixed_version}" if f.fixed_version else "")
        for f in findings
    )
    severity = VulnerabilitySeverity(worst.severity.lower())
    return Vulnerability(
        bom_ref=f"vuln:{vuln_id}",
        id=vuln_id,
        source=VulnerabilitySource(name=origins[0].value),
        description=next((f.title for f in findings if f.title), None),
        ratings=[
            VulnerabilityRating(source=VulnerabilitySource(name=o.value), severity=severity)
            for o in origins
        ],
        analysis=VulnerabilityAnalysis(
            state=ImpactAnalysisState.IN_TRIAGE, responses=sorted(responses), detail=detail
        ),
        affects=affects,
        properties=_properties(("distill:source", o.value) for o in origins),
    )


def to_cyclonedx(result: ScanResult) -> bytes:
    """The BOM as CycloneDX 1.6 JSON bytes, ending in a newline."""
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    packages = list(dict.fromkeys([*result.packages, *(f.package for f in result.findings)]))
    refs: dict[ImagePackage, str] = {}
    used: set[str] = set()
    for i, package in enumerate(packages):
        ref = package.purl or f"{package.ecosystem}:{package.name}@{package.version}"
        if ref in used:  # the same package in two places: keep both, apart
            ref = f"{ref}#{i}"
        used.add(ref)
        refs[package] = ref
    findings = ordered(result.findings)
    by_id: dict[str, list[Finding]] = {}
    for finding in findings:
        by_id.setdefault(finding.vuln_id, []).append(finding)
    tool = Component(name="distill", version=__version__, type=ComponentType.APPLICATION)
    image = Component(
        name=result.target,
        version=result.image_digest or None,
        type=ComponentType.CONTAINER,
        bom_ref=f"image:{result.image_digest or result.target}",
    )
    metadata = BomMetaData(
        component=image,
        timestamp=result.scanned_at,
        properties=_properties(
            [
                ("distill:os", result.os_name),
                ("distill:release", result.release),
                ("distill:complete", "true" if result.complete else "false"),
                ("distill:db", result.describe_db()),
                *(("distill:source", s.describe()) for s in result.sources),
                *(("distill:problem", p) for p in result.problems),
                *(("distill:note", n) for n in result.notes),
            ]
        ),
    )
    metadata.tools.components.add(tool)
    serial = uuid.uuid5(
        uuid.NAMESPACE_URL, f"distill:scan:{result.image_digest or result.target}:{__version__}"
    )
    bom = Bom(
        serial_number=serial,
        metadata=metadata,
        components=[_component(p, refs[p]) for p in packages],
        vulnerabilities=[_vulnerability(v, by_id[v], refs) for v in sorted(by_id)],
    )
    return (JsonV1Dot6(bom).output_as_string(indent=2) + "\n").encode("utf-8")
