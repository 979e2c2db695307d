"""distill's own :class:`~distill.scan.findings.Scanner`, for ``distill compare``.

It reads back the CycloneDX document ``compare`` hands every scanner and runs the same audit
as ``distill scan`` on it, so the counts are the ones ``distill scan`` prints. The sources
the counts rest on are named in the result's note (the compare table shows it). An image the
audit cannot speak for (no package database, no advisories for its release) gets "n/a"
with the reason, never a zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distill.audit.packages import from_cyclonedx
from distill.audit.scan import ScanOptions, audit_contents
from distill.scan.findings import ScanStatus, Vulnerabilities, unavailable
from distill.scan.result import counts

if TYPE_CHECKING:
    from distill.cache import BlobCache


class DistillScanner:
    """Counts findings by severity with distill's DB and the mirror's changelogs."""

    name = "distill"

    def __init__(self, options: ScanOptions | None = None, cache: BlobCache | None = None):
        self.options = options or ScanOptions()
        self.cache = cache

    def unavailable(self) -> Vulnerabilities | None:
        if self.options.changelog:
            return None  # the mirror can always be asked (or its cache, offline)
        from distill.scan.db import VulnDB, default_db_path

        path = self.options.db_path or default_db_path()
        db = VulnDB.open(path)
        if db is None:
            return unavailable(ScanStatus.NO_DB, f"no distill vulnerability DB at {path}")
        db.close()
        return None

    def count(self, cyclonedx: bytes) -> Vulnerabilities:
        contents = from_cyclonedx(cyclonedx)
        result = audit_contents(contents, "image", self.options, cache=self.cache)
        if not result.complete:
            return unavailable(ScanStatus.FAILED, result.problems[0].split(";")[0])
        by = counts(result.findings)
        ordered = {severity: by[severity] for severity in reversed(by)}  # CRITICAL first
        source = "distill: " + (", ".join(s.describe() for s in result.sources) or "no source")
        return Vulnerabilities(
            ScanStatus.SCANNED,
            source,
            ordered,
            len({f.vuln_id for f in result.findings}),
        )
