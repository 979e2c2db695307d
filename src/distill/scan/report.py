"""``distill scan``'s output formats: a table, JSON, SARIF 2.1.0 and CycloneDX with VEX.

Every format carries the same facts: each finding with its package (installed version,
source package, the layer that brought it in), status, severity, fixed version and the
sources it rests on; the sources of the scan with the DB's age; and, when the scan is
incomplete (no package database, no advisories for the release), why — never a bare zero.
"""

from __future__ import annotations

import json
from enum import StrEnum
from itertools import groupby
from typing import TYPE_CHECKING, Any

from distill.scan.model import Finding, ImagePackage
from distill.scan.result import (
    ScanResult,
    counts,
    layer_text,
    ordered,
    package_text,
    sources_text,
    summary_line,
)

if TYPE_CHECKING:
    from rich.console import Console

JSON_SCHEMA = "distill-scan/1"
_STYLE = {"CRITICAL": "bold red", "HIGH": "red", "MEDIUM": "yellow", "LOW": "cyan"}


class ReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"
    CYCLONEDX = "cyclonedx"


def render(result: ScanResult, report_format: ReportFormat, *, width: int = 160) -> bytes:
    """The report as bytes (UTF-8), ending in a newline; a table without colours."""
    if report_format is ReportFormat.TABLE:
        from io import StringIO

        from rich.console import Console

        buffer = StringIO()
        render_table(result, Console(file=buffer, width=width, color_system=None))
        return buffer.getvalue().encode("utf-8")
    if report_format is ReportFormat.JSON:
        document = to_json(result)
    elif report_format is ReportFormat.SARIF:
        from distill.scan.sarif import to_sarif

        document = to_sarif(result)
    else:
        from distill.scan.vex import to_cyclonedx

        return to_cyclonedx(result)
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# --- table -----------------------------------------------------------------------------------


def render_table(result: ScanResult, console: Console) -> None:
    """One table, a section per package (name, installed version and layer once), the
    summary line, the sources with the DB's age, and what made the scan incomplete."""
    from rich.table import Table
    from rich.text import Text

    console.print(Text(f"{result.target} ({result.os_name or 'unknown system'})", style="bold"))
    for source in result.sources:
        console.print(Text(f"source: {source.describe()}"))
    console.print(Text(result.describe_db(), style="dim"))
    if result.findings:
        table = Table(show_lines=False)
        for column in ("Package", "Installed", "Layer", "Vulnerability", "Severity", "Status"):
            table.add_column(column, overflow="fold")
        table.add_column("Fixed in", overflow="fold")
        table.add_column("Source", overflow="fold")
        groups = groupby(ordered(result.findings), key=lambda f: f.package)
        for index, (package, found) in enumerate(groups):
            if index:
                table.add_section()
            for row, finding in enumerate(found):
                first = row == 0
                table.add_row(
                    Text(package_text(package) if first else ""),
                    Text(package.version if first else ""),
                    Text(layer_text(package) if first else ""),
                    Text(finding.vuln_id),
                    Text(finding.severity, style=_STYLE.get(finding.severity, "")),
                    Text(finding.status.value),
                    Text(finding.fixed_version or ""),
                    Text(sources_text(finding)),
                )
        console.print(table)
    console.print(Text(summary_line(result.findings), style="bold"))
    for note in result.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    for problem in result.problems:
        console.print(Text(f"INCOMPLETE: {problem}", style="bold red"))


# --- JSON ------------------------------------------------------------------------------------


def package_json(package: ImagePackage) -> dict[str, Any]:
    return {
        "ecosystem": package.ecosystem,
        "name": package.name,
        "version": package.version,
        "purl": package.purl,
        "source_name": package.source_name or None,
        "source_version": package.source_version or None,
        "layer": package.layer,
        "layer_digest": package.layer_digest or None,
    }


def finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "id": finding.vuln_id,
        "package": package_json(finding.package),
        "status": finding.status.value,
        "severity": finding.severity,
        "fixed_version": finding.fixed_version,
        "sources": [o.value for o in finding.sources],
        "title": finding.title or None,
    }


def to_json(result: ScanResult) -> dict[str, Any]:
    by = counts(result.findings)
    return {
        "schema": JSON_SCHEMA,
        "target": result.target,
        "image_digest": result.image_digest or None,
        "os": result.os_name or None,
        "release": result.release or None,
        "complete": result.complete,
        "problems": list(result.problems),
        "notes": list(result.notes),
        "sources": [{"name": s.origin.value, "detail": s.detail} for s in result.sources],
        "db": {
            "path": result.db_path or None,
            "updated": result.db_updated.isoformat() if result.db_updated else None,
            "age_days": None if result.db_age_days is None else round(result.db_age_days, 3),
        },
        "summary": {"total": sum(by.values()), "by_severity": by},
        "findings": [finding_json(f) for f in ordered(result.findings)],
    }
