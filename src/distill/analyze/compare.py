"""``distill compare``: two or more images side by side, each read once.

For every image the one streaming pass over its layers feeds both the ``inspect`` report
(sizes, layers, attack surface, efficiency) and the package catalog of ``sbom``, so the
numbers are the ones those commands print. Ratios are against the first image named.

Vulnerabilities are counted by a :class:`~distill.scan.findings.Scanner` given the catalog
as CycloneDX: the command line hands in distill's own (``distill.audit.scanner``, which this
layer cannot import); without one, trivy's offline database (:mod:`distill.scan.trivy`).
Without a scanner or its database the comparison says "n/a (...)"; it never shows a count
that was not measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from distill.analyze import catalog as catalog_module
from distill.analyze.components import Catalog
from distill.analyze.fsview import FsView, NodeKind, analyse_fsview
from distill.analyze.inspect import InspectReport, exec_kind, inspect_view, inspect_want
from distill.context import Access
from distill.debian.control import gc_paused
from distill.errors import DistillError
from distill.image.partial import ImageSource
from distill.image.tarscan import TarEntry
from distill.scan.findings import FINAL, Scanner, ScanStatus, Vulnerabilities, unavailable
from distill.scan.trivy import Trivy
from distill.transports import opened

TOP = 20  # executables listed per difference
# A fixed document time: the SBOM only lives for the scan.
_SBOM_TIME = "1970-01-01T00:00:00Z"
_NOT_SCANNED = unavailable(ScanStatus.SKIPPED, "not scanned")


def compare_want(path: str, member: TarEntry) -> int:
    """What both ``inspect`` and the catalog need of a file: the larger of their wants."""
    return max(inspect_want(path, member), catalog_module.want(path, member))


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
    """Scans each image's SBOM with ``scanner`` until it turns out unable to (no database,
    no scanner at all); then every later image gets that same answer without asking again.
    None: vulnerabilities are not counted."""

    def __init__(self, scanner: Scanner | None) -> None:
        self.scanner = scanner
        self.final = scanner.unavailable() if scanner else _NOT_SCANNED

    def scan(self, source: ImageSource, catalog: Catalog) -> Vulnerabilities:
        if self.final is not None or self.scanner is None:
            return self.final or _NOT_SCANNED
        from distill.analyze.sbom import SbomFormat, image_info, render

        document = render(
            SbomFormat.CYCLONEDX_JSON, catalog, image_info(source), created=_SBOM_TIME
        )
        result = self.scanner.count(document)
        if result.status in FINAL:
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
    scan = scanner or VulnerabilityScanner(None)
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
    scanner: Scanner | None = None,
) -> Comparison:
    """Open each image in turn (one at a time, so memory holds one tree), summarise it and
    set the summaries side by side. Vulnerabilities are counted by ``scanner``, by default
    trivy with ``trivy_cache`` as its ``--cache-dir`` (None: its own)."""
    if len(references) < 2:
        raise DistillError("compare needs two or more images", hint="name them all: A B [C...]")
    if top < 0:
        raise DistillError(f"--top {top} is negative", hint="give 0 or more")
    chosen = (scanner or Trivy(trivy_cache)) if vulnerabilities else None
    counter = VulnerabilityScanner(chosen)
    summaries = []
    for text in references:
        with opened(text, access or Access()) as source:
            summaries.append(summarize_source(source, patterns=patterns, scanner=counter))
    return compare_summaries(summaries, top=top, patterns=patterns)
