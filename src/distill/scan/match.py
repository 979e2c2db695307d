"""Debian advisories × an image's packages → findings.

A Debian package is matched by its *source* package and source version (the tracker speaks
of source packages; binNMUs and renamed binaries keep theirs), against the advisories of the
image's release, with dpkg's version order. One finding per binary package and issue, as
trivy reports them. The rules, and where they differ from trivy's and grype's, are in
docs/scan.md.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from distill.bounded import one_line
from distill.debian.version import compare_versions
from distill.errors import DistillError
from distill.scan.model import DebianAdvisory, Finding, ImagePackage, Origin, Status

_SEVERITY = {
    "unimportant": "LOW",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
}
# Which advisory wins when two sources speak of the same package and issue: the tracker
# weighs every release's history; a changelog only says a newer version names the id.
_RANK = {Origin.TRACKER: 0, Origin.OSV: 1, Origin.CHANGELOG: 2}


@functools.lru_cache(maxsize=256)
def severity_of(urgency: str) -> str:
    """The tracker's urgency as a severity. The tracker marks an urgency it took from
    elsewhere with "*" or "**"; the word is what counts. Anything else ("not yet assigned",
    "end-of-life", "") is UNKNOWN."""
    word = urgency.strip().rstrip("*").strip().lower()
    return _SEVERITY.get(word, "UNKNOWN")


def status_of(advisory: DebianAdvisory, installed: str) -> Status | None:
    """The finding one advisory makes for a package at source version ``installed``, or
    None when it makes none."""
    fixed = advisory.fixed_version
    if advisory.status == "undetermined" or fixed == "0":
        return None  # nobody knows yet / never affected
    if advisory.status == "resolved":
        if not fixed:
            return None
        return Status.FIXED if _older(installed, fixed, advisory) else None
    if advisory.status != "open":
        return None
    if fixed and not _older(installed, fixed, advisory):
        return None  # open elsewhere, but this version already has the fix
    if fixed:
        return Status.FIXED
    if advisory.urgency.strip().rstrip("*").strip().lower() == "end-of-life":
        return Status.END_OF_LIFE
    reason = advisory.nodsa_reason.strip().lower()
    if advisory.nodsa and reason == "ignored":
        return Status.WILL_NOT_FIX
    if advisory.nodsa and reason == "postponed":
        return Status.FIX_DEFERRED
    return Status.AFFECTED


def _older(installed: str, fixed: str, advisory: DebianAdvisory) -> bool:
    try:
        return compare_versions(installed, fixed) < 0
    except DistillError as exc:
        # The installed version is the image's say: a 5,000-digit one stays one short line.
        raise DistillError(
            f"cannot compare {one_line(installed, 80)!r} with {one_line(advisory.vuln_id, 80)}'s "
            f"fixed version for {one_line(advisory.source_package, 80)}: {exc.message}",
            hint=exc.hint,
        ) from None


def match_debian(
    packages: Sequence[ImagePackage], advisories: Iterable[DebianAdvisory]
) -> list[Finding]:
    """Findings for the Debian packages among ``packages`` (others are ignored).

    When the tracker has a determined advisory for a package's issue, it alone decides
    (also that there is nothing to report); a changelog's advisory speaks only for issues
    the tracker does not settle, and takes its severity from the tracker's urgency when the
    tracker knows the issue at all."""
    by_source: dict[str, dict[str, list[DebianAdvisory]]] = {}
    for advisory in advisories:
        issues = by_source.setdefault(advisory.source_package, {})
        issues.setdefault(advisory.vuln_id, []).append(advisory)
    findings: list[Finding] = []
    for package in packages:
        if package.ecosystem != "deb":
            continue
        source = package.source_name or package.name
        installed = package.source_version or package.version
        for _vuln_id, group in sorted(by_source.get(source, {}).items()):
            finding = _decide(package, installed, group)
            if finding is not None:
                findings.append(finding)
    return findings


def _decide(package: ImagePackage, installed: str, group: list[DebianAdvisory]) -> Finding | None:
    if len(group) == 1:  # the usual case: one source speaks of the issue
        only = group[0]
        status = status_of(only, installed)
        return (
            None if status is None else _finding(package, only, status, severity_of(only.urgency))
        )
    known = [a for a in group if a.origin is not Origin.CHANGELOG]
    settled = [a for a in known if a.status != "undetermined"]
    ranked = sorted(settled or group, key=lambda a: _RANK.get(a.origin, 9))
    fallback = next(
        (s for s in map(severity_of, (a.urgency for a in known)) if s != "UNKNOWN"), "UNKNOWN"
    )
    for advisory in ranked:
        status = status_of(advisory, installed)
        if status is None:
            continue
        severity = severity_of(advisory.urgency)
        description = advisory.description or next(
            (a.description for a in known if a.description), ""
        )
        return _finding(
            package,
            advisory,
            status,
            fallback if severity == "UNKNOWN" else severity,
            description,
        )
    return None


def _finding(
    package: ImagePackage,
    advisory: DebianAdvisory,
    status: Status,
    severity: str,
    description: str | None = None,
) -> Finding:
    text = (advisory.description if description is None else description).strip()
    return Finding(
        vuln_id=advisory.vuln_id,
        package=package,
        status=status,
        severity=severity,
        origin=advisory.origin,
        fixed_version=advisory.fixed_version if status is Status.FIXED else None,
        title=text.splitlines()[0][:200] if text else "",
    )
