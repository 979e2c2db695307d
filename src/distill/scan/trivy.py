"""The :class:`~distill.scan.findings.Scanner` that runs trivy on an SBOM, offline.

``trivy sbom --offline-scan --skip-db-update`` uses the database already on the machine
and never downloads one; on a machine where none was ever downloaded it fails, and the
count is "n/a (no vulnerability DB)", never a number that was not measured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from distill import tempfiles
from distill.bounded import parse_json
from distill.scan.findings import SEVERITIES, ScanStatus, Vulnerabilities, unavailable

TRIVY_TIMEOUT = 600
# What trivy says when --skip-db-update meets an empty cache (and, in older releases, a
# database it cannot open).
_NO_DB = ("cannot be specified on the first run", "DB error", "database error")


def find_trivy() -> str | None:
    """trivy on ``PATH``, else beside this Python (a virtualenv's ``bin``)."""
    found = shutil.which("trivy")
    if found:
        return found
    sibling = Path(sys.executable).with_name("trivy")
    return str(sibling) if sibling.is_file() and os.access(sibling, os.X_OK) else None


def parse_trivy_report(data: bytes) -> Vulnerabilities:
    """Count the findings of a ``trivy --format json`` report."""
    report = parse_json(data, "trivy's report", hint="run trivy by hand to see what it says")
    counts = dict.fromkeys(SEVERITIES, 0)
    ids: set[str] = set()
    results = report.get("Results") if isinstance(report, dict) else None
    for result in results if isinstance(results, list) else ():
        found = result.get("Vulnerabilities") if isinstance(result, dict) else None
        for vuln in found if isinstance(found, list) else ():
            if not isinstance(vuln, dict):
                continue
            severity = str(vuln.get("Severity", "UNKNOWN")).upper()
            counts[severity if severity in counts else "UNKNOWN"] += 1
            ids.add(str(vuln.get("VulnerabilityID", "")))
    return Vulnerabilities(ScanStatus.SCANNED, "trivy", counts, len(ids - {""}))


def scan_sbom(
    document: bytes, *, trivy: str | None, cache_dir: Path | None = None
) -> Vulnerabilities:
    """Scan a CycloneDX ``document`` with trivy's local database, never downloading one."""
    if trivy is None:
        return unavailable(ScanStatus.NO_SCANNER, "trivy not found")
    with tempfiles.spool_tempdir("distill-compare") as tmp:
        sbom, out = Path(tmp, "sbom.cdx.json"), Path(tmp, "report.json")
        sbom.write_bytes(document)
        args = [trivy, "sbom", "--offline-scan", "--skip-db-update", "--skip-java-db-update"]
        args += ["--scanners", "vuln", "--format", "json", "--quiet", "--output", str(out)]
        if cache_dir is not None:
            args += ["--cache-dir", str(cache_dir)]
        try:
            done = subprocess.run(
                [*args, str(sbom)], capture_output=True, text=True, timeout=TRIVY_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return unavailable(ScanStatus.FAILED, f"trivy failed: {exc}")
        if done.returncode != 0:
            if any(marker in done.stderr for marker in _NO_DB):
                return unavailable(ScanStatus.NO_DB, "no vulnerability DB")
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return unavailable(ScanStatus.FAILED, f"trivy failed: {last[-200:]}")
        return parse_trivy_report(out.read_bytes())


class Trivy:
    """trivy found on this machine (or ``executable``), with its database in ``cache_dir``
    (trivy's own default when None)."""

    def __init__(self, cache_dir: Path | None = None, executable: str | None = None) -> None:
        self.executable = executable or find_trivy()
        self.cache_dir = cache_dir

    def unavailable(self) -> Vulnerabilities | None:
        if self.executable is None:
            return unavailable(ScanStatus.NO_SCANNER, "trivy not found")
        return None

    def count(self, cyclonedx: bytes) -> Vulnerabilities:
        return scan_sbom(cyclonedx, trivy=self.executable, cache_dir=self.cache_dir)
