"""``distill scan``: an image's packages against every advisory source distill has.

image → catalog (``analyze``) → :class:`ImagePackage` list → advisories: the local DB's
Debian tracker data for the image's release and its OSV findings for language packages,
and the advisories the mirror's changelogs give for packages that have a newer candidate →
findings (``scan.match``), one per id × package with every source that reports it named.

A scan that cannot say anything about the image's Debian packages — no package database,
or a release neither the DB nor the mirror's changelogs have data for — is *incomplete*:
its ``problems`` say why, and the command exits 2 instead of printing a quiet zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from distill.audit.packages import ImageContents, debian_release, from_catalog
from distill.errors import DistillError
from distill.scan.model import DebianAdvisory, Finding, ImagePackage, Origin
from distill.scan.result import ScanResult, SourceUse

if TYPE_CHECKING:
    from distill.cache import BlobCache
    from distill.context import Access
    from distill.debian.mirror import Mirrors
    from distill.image.partial import ImageSource
    from distill.scan.db import VulnDB

_DB_HINT = "run `distill db import FILE` (a Debian security tracker JSON) or `distill db update`"


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """Where advisories come from: the DB at ``db_path`` (None: the default one), and the
    mirror's changelogs unless ``changelog`` is off; ``offline`` uses only cached .debs."""

    db_path: Path | None = None
    changelog: bool = True
    offline: bool = False


def name_every_source(
    findings: Iterable[Finding], *alone: Iterable[Finding]
) -> tuple[Finding, ...]:
    """``findings`` (one per id × package, as the matcher decided them from every source
    together), each naming in ``origins`` every source that reports it on its own:
    ``alone`` are the findings of each source matched by itself. The deciding source comes
    first. A repeated id × package is kept once."""
    reported: dict[tuple[str, ImagePackage], list[Origin]] = {}
    for found in alone:
        for finding in found:
            reported.setdefault((finding.vuln_id, finding.package), []).append(finding.origin)
    named: dict[tuple[str, ImagePackage], Finding] = {}
    for finding in findings:
        key = (finding.vuln_id, finding.package)
        if key in named:
            continue
        origins = tuple(dict.fromkeys([finding.origin, *reported.get(key, ())]))
        named[key] = replace(finding, origins=origins if len(origins) > 1 else ())
    return tuple(named.values())


def _db_source(db: VulnDB, kind: str) -> SourceUse | None:
    """The DB's sources of one kind (``debian-tracker``, ``osv``), described."""
    status = db.status()
    found = [s for s in status.sources if str(s.kind) == kind]
    if not found:
        return None
    parts = []
    for source in found:
        when = source.imported_at.astimezone(UTC).strftime("%Y-%m-%d")
        name = "" if source.name == kind else f"{source.name}, "
        parts.append(f"{name}{source.count} entries, imported {when}")
    return SourceUse(Origin(kind), "; ".join(parts))


def _changelog_advisories(
    packages: Sequence[ImagePackage],
    release: str,
    arch: str,
    options: ScanOptions,
    cache: BlobCache | None,
    mirrors: Callable[[], Mirrors] | None,
) -> tuple[list[DebianAdvisory], SourceUse | None, list[str]]:
    """The mirror's changelog advisories, the source as used, and notes (what could not be
    checked); no source when none could be read at all."""
    from distill.cache import BlobCache
    from distill.debian.mirror import discover_mirrors
    from distill.scan.changelog import changelog_advisories

    try:
        found = changelog_advisories(
            packages,
            release,
            arch,
            cache=cache or BlobCache(),
            mirrors=mirrors or discover_mirrors,
            offline=options.offline,
        )
    except DistillError as exc:
        return [], None, [f"the mirror's changelogs could not be read: {exc.message}"]
    notes = [f"not checked against the mirror's changelogs: {why}" for why in found.unchecked]
    if found.checked == 0 and found.unchecked:
        return list(found.advisories), None, notes
    mode = ", offline: cached .debs only" if options.offline else ""
    detail = f"Debian mirror changelogs, {found.checked} packages checked{mode}"
    return list(found.advisories), SourceUse(Origin.CHANGELOG, detail), notes


def audit_contents(
    contents: ImageContents,
    target: str,
    options: ScanOptions | None = None,
    *,
    image_digest: str = "",
    cache: BlobCache | None = None,
    mirrors: Callable[[], Mirrors] | None = None,
) -> ScanResult:
    """Every finding for ``contents`` from every source ``options`` allow."""
    from distill.scan.db import VulnDB, default_db_path
    from distill.scan.match import match_debian

    options = options or ScanOptions()
    db_path = options.db_path or default_db_path()
    problems: list[str] = []
    notes: list[str] = []
    sources: list[SourceUse] = []
    debs = [p for p in contents.packages if p.ecosystem == "deb"]
    others = [p for p in contents.packages if p.ecosystem != "deb"]
    osr = contents.os
    os_name = (osr.pretty_name or f"{osr.id} {osr.version_id}".strip()) if osr else ""
    release = debian_release(osr)
    if not contents.databases:
        problems.append(
            "no package database in the image (no dpkg status or status.d): its OS packages "
            "cannot be checked"
        )
    elif release is None:
        problems.append(
            f"the image's system ({os_name or 'no os-release'}) is not a Debian release: "
            "distill's scanner has advisories for Debian only"
        )
    notes += contents.warnings
    for kind in contents.unscanned:
        notes.append(f"{kind} packages are not checked: no advisory source for them")

    findings: list[Finding] = []
    advisories: list[DebianAdvisory] = []
    db = VulnDB.open(db_path)
    db_updated = None
    try:
        if db is not None:
            db_updated = db.status().updated
            if release and debs and db.has_release(release):
                names = sorted({p.source_name or p.name for p in debs})
                advisories += db.debian_advisories(release, names)
                tracker = _db_source(db, Origin.TRACKER.value)
                sources.append(tracker or SourceUse(Origin.TRACKER))
            if others:
                findings += db.osv_findings(others)
                osv = _db_source(db, Origin.OSV.value)
                if osv is not None:
                    sources.append(osv)
        if others and not any(s.origin is Origin.OSV for s in sources):
            notes.append(
                f"{len(others)} language packages (PyPI, npm, Maven) not checked: no OSV data "
                "in the DB (`distill db import` an OSV file)"
            )
    finally:
        if db is not None:
            db.close()

    changelog_used = False
    if release and debs and options.changelog:
        found, used, said = _changelog_advisories(
            debs, release, contents.arch, options, cache, mirrors
        )
        advisories += found
        notes += said
        if used is not None:
            sources.append(used)
            changelog_used = True
    if (
        release
        and debs
        and not changelog_used
        and not any(s.origin is Origin.TRACKER for s in sources)
    ):
        why = "no DB" if db is None else f"the DB has no data for {release}"
        off = "off (--no-changelog)" if not options.changelog else "unavailable"
        problems.append(
            f"no advisories for Debian {release}: {why} at {db_path}, and the mirror's "
            f"changelog source is {off}; {_DB_HINT}"
        )
    elif release and debs and not any(s.origin is Origin.TRACKER for s in sources):
        # Changelogs only know what a newer package fixed: open issues need the tracker.
        why = "no DB" if db is None else f"the DB has no data for {release}"
        notes.append(
            f"only issues fixed in newer Debian packages can be found ({why}); issues still "
            f"open are not: {_DB_HINT}"
        )
    findings += match_debian(debs, advisories)
    by_origin: dict[Origin, list[DebianAdvisory]] = {}
    for advisory in advisories:
        by_origin.setdefault(advisory.origin, []).append(advisory)
    alone = (
        [match_debian(debs, found) for found in by_origin.values()] if len(by_origin) > 1 else []
    )
    return ScanResult(
        target=target,
        findings=name_every_source(findings, *alone),
        packages=contents.packages,
        os_name=os_name,
        release=release or "",
        image_digest=image_digest,
        sources=tuple(sources),
        db_path=str(db_path),
        db_updated=db_updated,
        problems=tuple(problems),
        notes=tuple(notes),
        scanned_at=datetime.now(UTC),
    )


def read_contents(source: ImageSource) -> ImageContents:
    """The packages of an open image, from one pass over its layers (as ``distill sbom``)."""
    from distill.analyze.catalog import catalog_view, want
    from distill.analyze.fsview import analyse_fsview
    from distill.debian.control import gc_paused

    with gc_paused():
        catalog = analyse_fsview(source, want, catalog_view)
    return from_catalog(catalog, source.config.diff_ids)


def audit_image(
    reference: str,
    options: ScanOptions | None = None,
    *,
    access: Access | None = None,
) -> ScanResult:
    """Scan the image ``reference`` names (any transport)."""
    from distill.context import Access
    from distill.transports import opened

    with opened(reference, access or Access()) as source:
        contents = read_contents(source)
        digest = source.manifest.digest or ""
    return audit_contents(contents, reference, options, image_digest=digest)
