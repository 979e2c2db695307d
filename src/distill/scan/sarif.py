"""``distill scan --format sarif``: SARIF 2.1.0, the format code-scanning dashboards read.

One rule per vulnerability id and one result per finding (id × package). A result's level
follows its severity; ``security-severity`` (a number code-scanning tools sort by) is the
usual midpoint of each CVSS band, since Debian's urgencies carry no score. The package is
the result's location: its purl as the artifact, the package and its layer as logical
locations. An incomplete scan is an unsuccessful invocation with an error notification.
"""

from __future__ import annotations

from typing import Any

from distill import __version__
from distill.scan.model import Finding
from distill.scan.result import ScanResult, layer_text, ordered, package_text, rank, sources_text

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
_LEVEL = {"CRITICAL": "error", "HIGH": "error", "MEDIUM": "warning", "LOW": "note"}
_SECURITY_SEVERITY = {"CRITICAL": "9.5", "HIGH": "8.0", "MEDIUM": "5.5", "LOW": "2.0"}


def _level(severity: str) -> str:
    return _LEVEL.get(severity, "note")


def _rule(vuln_id: str, findings: list[Finding]) -> dict[str, Any]:
    worst = max(findings, key=lambda f: rank(f.severity))
    title = next((f.title for f in findings if f.title), "")
    properties: dict[str, Any] = {"tags": ["vulnerability", "security", worst.severity]}
    if worst.severity in _SECURITY_SEVERITY:
        properties["security-severity"] = _SECURITY_SEVERITY[worst.severity]
    return {
        "id": vuln_id,
        "name": vuln_id,
        "shortDescription": {"text": title or vuln_id},
        "defaultConfiguration": {"level": _level(worst.severity)},
        "properties": properties,
    }


def _message(finding: Finding) -> str:
    package = finding.package
    fixed = f"fixed in {finding.fixed_version}" if finding.fixed_version else "no fix"
    layer = layer_text(package)
    return (
        f"{finding.vuln_id} in {package_text(package)} {package.version}: {finding.severity}, "
        f"{finding.status.value}, {fixed}; source: {sources_text(finding)}"
        + (f"; layer {layer}" if layer else "")
    )


def _result(finding: Finding, index: int) -> dict[str, Any]:
    package = finding.package
    logical: list[dict[str, Any]] = [
        {
            "name": package.name,
            "fullyQualifiedName": package.purl or package.name,
            "kind": "package",
        }
    ]
    if package.layer is not None:
        logical.append({"name": f"layer {package.layer}", "kind": "module"})
    location: dict[str, Any] = {"logicalLocations": logical}
    if package.purl:
        location["physicalLocation"] = {"artifactLocation": {"uri": package.purl}}
    properties: dict[str, Any] = {
        "package": package.name,
        "installedVersion": package.version,
        "status": finding.status.value,
        "severity": finding.severity,
        "sources": [o.value for o in finding.sources],
    }
    if finding.fixed_version:
        properties["fixedVersion"] = finding.fixed_version
    if package.source_name:
        properties["sourcePackage"] = f"{package.source_name} {package.source_version}".strip()
    if package.layer_digest:
        properties["layerDigest"] = package.layer_digest
    return {
        "ruleId": finding.vuln_id,
        "ruleIndex": index,
        "level": _level(finding.severity),
        "message": {"text": _message(finding)},
        "locations": [location],
        "properties": properties,
    }


def to_sarif(result: ScanResult) -> dict[str, Any]:
    findings = ordered(result.findings)
    by_id: dict[str, list[Finding]] = {}
    for finding in findings:
        by_id.setdefault(finding.vuln_id, []).append(finding)
    ids = sorted(by_id)
    index = {vuln_id: i for i, vuln_id in enumerate(ids)}
    notifications = [
        {"level": "error", "message": {"text": problem}} for problem in result.problems
    ] + [{"level": "warning", "message": {"text": note}} for note in result.notes]
    invocation: dict[str, Any] = {
        "executionSuccessful": result.complete,
        "properties": {
            "sources": [s.describe() for s in result.sources],
            "db": result.describe_db(),
        },
    }
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "distill",
                "version": __version__,
                "rules": [_rule(vuln_id, by_id[vuln_id]) for vuln_id in ids],
            }
        },
        "invocations": [invocation],
        "results": [_result(f, index[f.vuln_id]) for f in findings],
        "properties": {
            "target": result.target,
            "imageDigest": result.image_digest,
            "os": result.os_name,
            "release": result.release,
        },
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}
