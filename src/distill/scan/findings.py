"""What a vulnerability scan reports, and the interface every scanner implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")


class ScanStatus(StrEnum):
    SCANNED = "scanned"
    NO_DB = "no-db"  # the scanner is there, its vulnerability database is not
    NO_SCANNER = "no-scanner"
    SKIPPED = "skipped"  # --no-vulnerabilities
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Vulnerabilities:
    """Findings by severity (``SEVERITIES``), when ``status`` is ``scanned``; else ``note``
    says why there are none to show."""

    status: ScanStatus
    note: str = ""
    by_severity: dict[str, int] = field(default_factory=dict)
    unique_ids: int = 0  # distinct CVE (or other advisory) ids

    @property
    def total(self) -> int | None:
        return sum(self.by_severity.values()) if self.status is ScanStatus.SCANNED else None

    def describe(self) -> str:
        """``12 (2 critical, 10 high)`` or ``n/a (no vulnerability DB)``."""
        if self.status is not ScanStatus.SCANNED:
            return f"n/a ({self.note})"
        parts = [f"{n} {s.lower()}" for s in SEVERITIES if (n := self.by_severity.get(s, 0))]
        return f"{self.total}" + (f" ({', '.join(parts)})" if parts else "")


def unavailable(status: ScanStatus, note: str) -> Vulnerabilities:
    return Vulnerabilities(status, note)


# Statuses that hold for every later image too: asking again would give the same answer.
FINAL = frozenset({ScanStatus.NO_DB, ScanStatus.NO_SCANNER, ScanStatus.SKIPPED})


class Scanner(Protocol):
    """Counts the known vulnerabilities of an image's packages.

    The packages come as a CycloneDX JSON SBOM (what ``distill sbom`` writes): a standard
    document every scanner can read, so this layer needs nothing of ``analyze``."""

    def unavailable(self) -> Vulnerabilities | None:
        """Why this scanner cannot scan at all (before any SBOM is made), else None."""
        ...

    def count(self, cyclonedx: bytes) -> Vulnerabilities:
        """The findings for one SBOM; a scan that could not run is a status, not an error."""
        ...
