"""One scan of one image, as every report format writes it, and what the command line asks
of it: which findings to show (``--severity``, ``--ignore-unfixed``), whether they fail the
run (``--fail-on``), the summary counts.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from distill.errors import DistillError
from distill.scan.findings import SEVERITIES
from distill.scan.model import Finding, ImagePackage, Origin, Status

# Lowest first: the order of the summary line and of --fail-on's threshold.
ASCENDING = tuple(reversed(SEVERITIES))  # UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL
_RANK = {severity: rank for rank, severity in enumerate(ASCENDING)}


@dataclass(frozen=True, slots=True)
class SourceUse:
    """A source of advisories this scan used, and what it rests on (a DB's import date, how
    many packages the mirror's changelogs were checked for)."""

    origin: Origin
    detail: str = ""

    def describe(self) -> str:
        return f"{self.origin.value} ({self.detail})" if self.detail else self.origin.value


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What ``distill scan`` found in ``target``.

    ``problems`` make the scan incomplete (no package database, no advisories for the
    image's release): the command exits 2 and every format says so. ``notes`` are what the
    reader should know without the scan being wrong (packages ``--offline`` could not check).
    """

    target: str
    findings: tuple[Finding, ...]
    packages: tuple[ImagePackage, ...] = ()
    os_name: str = ""
    release: str = ""
    image_digest: str = ""
    sources: tuple[SourceUse, ...] = ()
    db_path: str = ""
    db_updated: datetime | None = None
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    scanned_at: datetime | None = None

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def db_age_days(self) -> float | None:
        if self.db_updated is None:
            return None
        now = self.scanned_at or datetime.now(UTC)
        return max((now - self.db_updated).total_seconds(), 0.0) / 86400

    def describe_db(self) -> str:
        """``DB: PATH, updated 2026-12-01 10:00 UTC (3.2 days ago)``, or why there is none."""
        if self.db_updated is None:
            return f"DB: none at {self.db_path}" if self.db_path else "DB: not used"
        when = self.db_updated.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f"DB: {self.db_path}, updated {when} ({self.db_age_days:.1f} days ago)"


def parse_severities(text: str) -> tuple[str, ...]:
    """``--severity HIGH,critical`` → ("HIGH", "CRITICAL")."""
    chosen = tuple(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
    unknown = [s for s in chosen if s not in _RANK]
    if unknown or not chosen:
        raise DistillError(
            f"not a severity: {', '.join(unknown) or repr(text)}",
            hint=f"use one or more of {','.join(ASCENDING)}",
        )
    return chosen


def rank(severity: str) -> int:
    """0 (UNKNOWN) to 4 (CRITICAL); anything else counts as UNKNOWN."""
    return _RANK.get(severity, 0)


def select(
    result: ScanResult, *, severities: Collection[str] = (), ignore_unfixed: bool = False
) -> ScanResult:
    """``result`` with only the findings of ``severities`` (all when empty), and without
    those no fixed version exists for when ``ignore_unfixed``."""
    kept = tuple(
        f
        for f in result.findings
        if (not severities or f.severity in severities)
        and not (ignore_unfixed and (f.status is not Status.FIXED or not f.fixed_version))
    )
    return replace(result, findings=kept)


def fails(findings: Iterable[Finding], threshold: str) -> bool:
    """Whether any finding is at ``threshold`` or above (``--fail-on``)."""
    bar = rank(threshold)
    return any(rank(f.severity) >= bar for f in findings)


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    """Findings by severity, every severity present (lowest first)."""
    found = dict.fromkeys(ASCENDING, 0)
    for finding in findings:
        found[finding.severity if finding.severity in found else "UNKNOWN"] += 1
    return found


def summary_line(findings: Iterable[Finding]) -> str:
    """``Total: N (UNKNOWN: a, LOW: b, MEDIUM: c, HIGH: d, CRITICAL: e)``."""
    by = counts(findings)
    parts = ", ".join(f"{severity}: {n}" for severity, n in by.items())
    return f"Total: {sum(by.values())} ({parts})"


def ordered(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """By package (name, version, ecosystem), then severity (highest first), then id."""
    return tuple(
        sorted(
            findings,
            key=lambda f: (
                f.package.name,
                f.package.version,
                f.package.ecosystem,
                -rank(f.severity),
                f.vuln_id,
            ),
        )
    )


def sources_text(finding: Finding) -> str:
    return ", ".join(o.value for o in finding.sources)


def layer_text(package: ImagePackage) -> str:
    """``1 (sha256:0123456789ab)``: the layer's index and the start of its digest."""
    if package.layer is None:
        return ""
    digest = package.layer_digest
    short = digest[: len("sha256:") + 12] if digest.startswith("sha256:") else digest[:19]
    return f"{package.layer} ({short})" if short else str(package.layer)


def package_text(package: ImagePackage) -> str:
    """``libssl3`` or ``libssl3 (openssl)``: the binary package and the source it is built from."""
    source = package.source_name
    return f"{package.name} ({source})" if source and source != package.name else package.name
