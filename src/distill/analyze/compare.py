"""``distill compare``: two or more images side by side, each read once.

For every image the one streaming pass over its layers feeds both the ``inspect`` report
(sizes, layers, attack surface, efficiency) and the package catalog of ``sbom``, so the
numbers are the ones those commands print. Ratios are against the first image named.

Vulnerabilities are counted only when trivy has a vulnerability database: the catalog is
written as CycloneDX and handed to ``trivy sbom --offline-scan --skip-db-update``, which
fails on a machine where no database was ever downloaded. The comparison then says
"n/a (no vulnerability DB)"; it never shows a count that was not measured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from distill import tempfiles
from distill.analyze import catalog as catalog_module
from distill.analyze.components import Catalog
from distill.analyze.fsview import FsView, NodeKind, analyse_fsview
from distill.analyze.inspect import InspectReport, exec_kind, inspect_view, inspect_want
from distill.bounded import parse_json
from distill.context import Access
from distill.debian.control import gc_paused
from distill.errors import DistillError
from distill.image.partial import ImageSource
from distill.image.tarscan import TarEntry
from distill.transports import opened

if TYPE_CHECKING:
    pass

TOP = 20  # executables listed per difference
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")
TRIVY_TIMEOUT = 600
# A fixed document time: the SBOM only lives for the scan.
_SBOM_TIME = "1970-01-01T00:00:00Z"
# What trivy says when --skip-db-update meets an empty cache (and, in older releases, a
# database it cannot open).
_NO_DB = ("cannot be specified on the first run", "DB error", "database error")


def compare_want(path: str, member: TarEntry) -> int:
    """What both ``inspect`` and the catalog need of a file: the larger of their wants."""
    return max(inspect_want(path, member), catalog_module.want(path, member))


# --- vulnerabilities ---------------------------------------------------------------------


class ScanStatus(StrEnum):
    SCANNED = "scanned"
    NO_DB = "no-db"  # trivy is there, its vulnerability database is not
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


def _unavailable(status: ScanStatus, note: str) -> Vulnerabilities:
    return Vulnerabilities(status, note)


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
        return _unavailable(ScanStatus.NO_SCANNER, "trivy not found")
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
            return _unavailable(ScanStatus.FAILED, f"trivy failed: {exc}")
        if done.returncode != 0:
            if any(marker in done.stderr for marker in _NO_DB):
                return _unavailable(ScanStatus.NO_DB, "no vulnerability DB")
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return _unavailable(ScanStatus.FAILED, f"trivy failed: {last[-200:]}")
        return parse_trivy_report(out.read_bytes())


# --- one image ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Executable:
    path: str  # absolute
    size: int


def executables(view: FsView) -> tuple[Executable, ...]:
    """What ``inspect`` counts as executables: regular files with an exec bit that are ELF
    binaries or ``#!`` scripts, each path once (hardlinks too), in path order."""
    return tuple(
        Executable("/" + path, node.size)
        for path, node in sorted(view.nodes.items())
        if node.kind is NodeKind.FILE and node.mode & 0o111 and exec_kind(node) != "other"
    )


def count_matching(found: Iterable[Executable], pattern: str) -> int:
    """Executables whose path matches ``pattern`` (``*`` stays within one path segment;
    the leading ``/`` is optional)."""
    absolute = "/" + pattern.lstrip("/")
    return sum(1 for e in found if PurePosixPath(e.path).match(absolute))


@dataclass(frozen=True, slots=True)
class ImageSummary:
    """The numbers ``compare`` puts side by side for one image."""

    reference: str
    platform: str
    os: str
    compressed_size: int  # the layers as stored (a docker-archive's are usually plain tar)
    uncompressed_size: int  # the layers' tars
    content_size: int  # the final filesystem's files
    layers: int
    os_packages: int
    language_packages: int
    package_databases: tuple[str, ...]
    executables: int
    elf: int
    scripts: int
    shells: tuple[str, ...]  # names, each once
    package_managers: tuple[str, ...]
    busybox: bool
    setuid: int
    setgid: int
    world_writable: int
    user: str
    runs_as_root: bool
    efficiency: float
    wasted_bytes: int
    dive_score: float
    vulnerabilities: Vulnerabilities
    matches: dict[str, int] = field(default_factory=dict)  # --count pattern -> executables
    executable_paths: tuple[Executable, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["executable_paths"]  # thousands in a fat image; the diffs list the telling
        data["vulnerabilities"]["total"] = self.vulnerabilities.total
        return data


def _names(programs: Iterable[Any]) -> tuple[str, ...]:
    return tuple(sorted({p.name for p in programs}))


def summarize(
    report: InspectReport,
    catalog: Catalog,
    found: tuple[Executable, ...],
    vulnerabilities: Vulnerabilities,
    patterns: Sequence[str] = (),
) -> ImageSummary:
    """One column of the comparison, from what ``inspect`` and the catalog found."""
    surface = report.surface
    os_text = ""
    if report.os is not None:
        os_text = report.os.pretty_name or f"{report.os.id} {report.os.version_id}".strip()
    os_count = sum(1 for c in catalog.components if c.type.is_os)
    return ImageSummary(
        reference=report.reference,
        platform=report.platform,
        os=os_text,
        compressed_size=report.compressed_size,
        uncompressed_size=report.uncompressed_size,
        content_size=report.content_size,
        layers=len(report.layers),
        os_packages=os_count,
        language_packages=len(catalog.components) - os_count,
        package_databases=catalog.databases,
        executables=surface.executables,
        elf=surface.elf,
        scripts=surface.scripts,
        shells=_names(surface.shells),
        package_managers=_names(surface.package_managers),
        busybox=bool(surface.busybox),
        setuid=len(surface.setuid),
        setgid=len(surface.setgid),
        world_writable=len(surface.world_writable),
        user=surface.user,
        runs_as_root=surface.runs_as_root,
        efficiency=report.efficiency.score,
        wasted_bytes=report.efficiency.wasted_bytes,
        dive_score=report.efficiency.dive_score,
        vulnerabilities=vulnerabilities,
        matches={p: count_matching(found, p) for p in patterns},
        executable_paths=found,
    )


class VulnerabilityScanner:
    """Scans each image's SBOM until trivy turns out to have no database or none at all;
    then every later image gets that same answer without running trivy again."""

    def __init__(self, enabled: bool, cache_dir: Path | None) -> None:
        self.cache_dir = cache_dir
        self.trivy = find_trivy() if enabled else None
        self.final: Vulnerabilities | None = None
        if not enabled:
            self.final = _unavailable(ScanStatus.SKIPPED, "not scanned")
        elif self.trivy is None:
            self.final = _unavailable(ScanStatus.NO_SCANNER, "trivy not found")

    def scan(self, source: ImageSource, catalog: Catalog) -> Vulnerabilities:
        if self.final is not None:
            return self.final
        from distill.analyze.sbom import SbomFormat, image_info, render

        document = render(
            SbomFormat.CYCLONEDX_JSON, catalog, image_info(source), created=_SBOM_TIME
        )
        result = scan_sbom(document, trivy=self.trivy, cache_dir=self.cache_dir)
        if result.status in (ScanStatus.NO_DB, ScanStatus.NO_SCANNER):
            self.final = result
        return result


def summarize_source(
    source: ImageSource,
    *,
    patterns: Sequence[str] = (),
    scanner: VulnerabilityScanner | None = None,
) -> ImageSummary:
    """Read ``source`` once and summarise it (vulnerabilities skipped without a scanner)."""

    def analyse(view: FsView) -> tuple[InspectReport, Catalog, tuple[Executable, ...]]:
        return inspect_view(source, view), catalog_module.catalog_view(view), executables(view)

    with gc_paused():  # as for sbom: a pass of many small objects and no cycles
        report, catalog, found = analyse_fsview(source, compare_want, analyse)
    if catalog.warnings:
        from distill import log

        for warning in catalog.warnings:
            log.warn(f"{source.name}: {warning}")
    scan = scanner or VulnerabilityScanner(enabled=False, cache_dir=None)
    return summarize(report, catalog, found, scan.scan(source, catalog), patterns)


# --- the comparison ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecutableDiff:
    """Executables (by path) in the first image and not in ``other``, and the reverse;
    ``top_*`` are the largest ``TOP`` of each."""

    base: str
    other: str
    only_in_base: int
    only_in_other: int
    common: int
    top_only_in_base: tuple[Executable, ...]
    top_only_in_other: tuple[Executable, ...]


def diff_executables(base: ImageSummary, other: ImageSummary, top: int = TOP) -> ExecutableDiff:
    mine = {e.path: e for e in base.executable_paths}
    theirs = {e.path: e for e in other.executable_paths}

    def largest(found: dict[str, Executable], absent: dict[str, Executable]) -> list[Executable]:
        only = [e for p, e in found.items() if p not in absent]
        return sorted(only, key=lambda e: (-e.size, e.path))

    only_base, only_other = largest(mine, theirs), largest(theirs, mine)
    return ExecutableDiff(
        base=base.reference,
        other=other.reference,
        only_in_base=len(only_base),
        only_in_other=len(only_other),
        common=len(mine.keys() & theirs.keys()),
        top_only_in_base=tuple(only_base[:top]),
        top_only_in_other=tuple(only_other[:top]),
    )


def ratio(value: int, base: int) -> float | None:
    """``value / base``; None when the base is 0."""
    return value / base if base else None


@dataclass(frozen=True, slots=True)
class Comparison:
    images: tuple[ImageSummary, ...]  # the first is the base of ratios and diffs
    diffs: tuple[ExecutableDiff, ...]  # the first image against each other one
    patterns: tuple[str, ...] = ()

    @property
    def base(self) -> ImageSummary:
        return self.images[0]

    def ratios(self, image: ImageSummary) -> dict[str, float | None]:
        """``image``'s sizes and counts over the first image's."""
        base = self.base
        return {
            "compressed_size": ratio(image.compressed_size, base.compressed_size),
            "uncompressed_size": ratio(image.uncompressed_size, base.uncompressed_size),
            "os_packages": ratio(image.os_packages, base.os_packages),
            "executables": ratio(image.executables, base.executables),
        }

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (lists, not tuples); ``ratios`` are against the first image."""
        data = {
            "base": self.base.reference,
            "images": [{**image.to_json(), "ratios": self.ratios(image)} for image in self.images],
            "executable_diffs": [asdict(d) for d in self.diffs],
            "patterns": list(self.patterns),
        }
        return {key: plain(value) for key, value in data.items()}


def plain(value: Any) -> Any:
    """``value`` with tuples made lists, as ``json.loads`` would give it back."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def compare_summaries(
    summaries: Sequence[ImageSummary], *, top: int = TOP, patterns: Sequence[str] = ()
) -> Comparison:
    if len(summaries) < 2:
        raise DistillError("compare needs two or more images", hint="name them all: A B [C...]")
    base = summaries[0]
    diffs = tuple(diff_executables(base, other, top) for other in summaries[1:])
    return Comparison(tuple(summaries), diffs, tuple(patterns))


def compare_references(
    references: Sequence[str],
    *,
    access: Access | None = None,
    top: int = TOP,
    patterns: Sequence[str] = (),
    vulnerabilities: bool = True,
    trivy_cache: Path | None = None,
) -> Comparison:
    """Open each image in turn (one at a time, so memory holds one tree), summarise it and
    set the summaries side by side. ``trivy_cache`` is trivy's ``--cache-dir`` (default:
    its own)."""
    if len(references) < 2:
        raise DistillError("compare needs two or more images", hint="name them all: A B [C...]")
    if top < 0:
        raise DistillError(f"--top {top} is negative", hint="give 0 or more")
    scanner = VulnerabilityScanner(vulnerabilities, trivy_cache)
    summaries = []
    for text in references:
        with opened(text, access or Access()) as source:
            summaries.append(summarize_source(source, patterns=patterns, scanner=scanner))
    return compare_summaries(summaries, top=top, patterns=patterns)
