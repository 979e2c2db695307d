"""``distill compare``: the command line of :mod:`distill.analyze.compare`.

The vulnerability scanner is chosen here and handed down (``analyze`` names no scanner of
its own choosing): distill's own (:mod:`distill.audit.scanner`) unless ``--scanner trivy``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from distill import log
from distill.cli.options import _access, _image_argument, _registry_options

if TYPE_CHECKING:
    from distill.registry.auth import Credentials
    from distill.scan.findings import Scanner


def make_scanner(name: str, *, db_path: Path | None, offline: bool, changelog: bool) -> Scanner:
    """The scanner ``--scanner`` names, set up from the command line."""
    if name == "trivy":
        from distill.scan.trivy import Trivy

        return Trivy()
    from distill.audit.scan import ScanOptions
    from distill.audit.scanner import DistillScanner

    return DistillScanner(ScanOptions(db_path=db_path, changelog=changelog, offline=offline))


@click.command()
@click.argument("images", nargs=-1, required=True, callback=_image_argument)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON on stdout.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path),
    help="Also write a self-contained HTML page (charts and tables) here.",
)
@click.option(
    "--top",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="Executables listed per difference (largest first).",
)
@click.option(
    "--count",
    "patterns",
    multiple=True,
    metavar="GLOB",
    help="Add a row counting executables whose path matches GLOB "
    "(e.g. '/usr/lib/jvm/*/bin/*'; * stays within one directory); repeatable.",
)
@click.option(
    "--vulnerabilities/--no-vulnerabilities",
    default=True,
    show_default=True,
    help="Count CVEs by severity (see --scanner).",
)
@click.option(
    "--scanner",
    type=click.Choice(["distill", "trivy"]),
    default="distill",
    show_default=True,
    help="distill: its own DB (`distill db`) and the Debian mirror's changelogs, as "
    "`distill scan`; trivy: trivy's local database (never downloaded; n/a without one).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="distill's vulnerability DB (default: the one `distill db` keeps).",
)
@click.option(
    "--offline", is_flag=True, help="distill's scanner downloads nothing (cached .debs only)."
)
@click.option(
    "--no-changelog",
    is_flag=True,
    help="distill's scanner leaves out advisories from the mirror's changelogs.",
)
@click.option("--platform", help="os/arch[/variant] of multi-platform images (default: host).")
@_registry_options
def compare(
    images: tuple[str, ...],
    as_json: bool,
    html_file: Path | None,
    top: int,
    patterns: tuple[str, ...],
    vulnerabilities: bool,
    scanner: str,
    db_path: Path | None,
    offline: bool,
    no_changelog: bool,
    platform: str | None,
    tls_verify: bool,
    credentials: Credentials | None,
) -> None:
    """Set two or more IMAGES side by side: sizes, packages, executables, attack surface,
    CVE counts.

    Ratios and the lists of executables one image has and another lacks are against the
    first image. Each IMAGE is named as for `distill inspect`. CVEs are counted by
    distill's own scanner (as `distill scan` counts them) unless --scanner trivy.
    """
    import json

    from rich.console import Console

    from distill.analyze.compare import compare_references
    from distill.analyze.render import render_compare
    from distill.fsutil import output_file
    from distill.transports import input_paths

    if html_file is not None:
        output_file(html_file, inputs=input_paths(images))  # before reading any image
    chosen = (
        make_scanner(scanner, db_path=db_path, offline=offline, changelog=not no_changelog)
        if vulnerabilities
        else None
    )
    with log.complete_step(f"Comparing {len(images)} images"):
        comparison = compare_references(
            images,
            access=_access(tls_verify, credentials, platform),
            top=top,
            patterns=patterns,
            vulnerabilities=vulnerabilities,
            scanner=chosen,
        )
    if html_file is not None:
        from distill.analyze.report import write_html

        write_html(comparison, html_file)
        log.info(f"[green]wrote[/] {html_file}")
    if as_json:
        click.echo(json.dumps(comparison.to_json(), indent=2))
    else:
        render_compare(comparison, Console())
