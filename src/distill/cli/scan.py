"""``distill scan``: the command line of :mod:`distill.audit.scan`.

Exit status: 0 scanned; 1 ``--fail-on`` met (or an error); 2 the scan is incomplete — no
package database in the image, or no advisories for its release — whatever else it found.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from distill import log
from distill.cli.options import _access, _image_argument, _registry_options

if TYPE_CHECKING:
    from distill.registry.auth import Credentials

INCOMPLETE = 2
FAILED = 1
_SEVERITY_NAMES = ["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"]


@click.command()
@click.argument("image", callback=_image_argument)
@click.option(
    "--format",
    "report_format",
    type=click.Choice(["table", "json", "sarif", "cyclonedx"]),
    default="table",
    show_default=True,
    help="A table grouped by package, JSON, SARIF 2.1.0, or CycloneDX 1.6 with the "
    "vulnerabilities (VEX).",
)
@click.option(
    "--severity",
    "severities",
    metavar="S,...",
    help="Only these severities (UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL). Default: all.",
)
@click.option(
    "--ignore-unfixed", is_flag=True, help="Leave out findings no fixed version exists for."
)
@click.option(
    "--fail-on",
    type=click.Choice(_SEVERITY_NAMES, case_sensitive=False),
    help="Exit 1 when a finding shown is of this severity or higher.",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The vulnerability DB (default: the one `distill db` keeps in the user cache).",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Download nothing: changelogs only from .debs already cached; says what it could "
    "not check.",
)
@click.option(
    "--no-changelog",
    is_flag=True,
    help="Do not derive advisories from newer packages' changelogs on the Debian mirror.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Write the report here (atomically) instead of to stdout.",
)
@click.option("--platform", help="os/arch[/variant] of a multi-platform image (default: host).")
@_registry_options
def scan(
    image: str,
    report_format: str,
    severities: str | None,
    ignore_unfixed: bool,
    fail_on: str | None,
    db_path: Path | None,
    offline: bool,
    no_changelog: bool,
    output: Path | None,
    platform: str | None,
    tls_verify: bool,
    credentials: Credentials | None,
) -> None:
    """Find the known vulnerabilities of IMAGE's packages, with distill's own data.

    Debian packages are matched by source package and version against the Debian security
    tracker data in distill's DB (`distill db import | update`) for the image's release,
    and against the CVEs named by the changelogs of newer versions on the Debian mirror;
    PyPI, npm and Maven packages against imported OSV data. IMAGE is named as for
    `distill inspect`. Exits 1 when --fail-on is met, 2 when the scan is incomplete (no
    package database, or no advisories for the image's release). See docs/scan.md.
    """
    from distill.audit.scan import ScanOptions, audit_image
    from distill.fsutil import atomic_write_bytes, output_file
    from distill.scan.db import default_db_path
    from distill.scan.report import ReportFormat, render, render_table
    from distill.scan.result import fails, parse_severities, select
    from distill.transports import input_paths

    chosen = parse_severities(severities) if severities else ()
    # The DB is read too: a report written over it would replace the user's advisories.
    inputs = [*input_paths([image]), db_path or default_db_path()]
    if output is not None:
        output_file(output, inputs=inputs)  # before reading the image
    options = ScanOptions(db_path=db_path, changelog=not no_changelog, offline=offline)
    with log.complete_step(f"Scanning {image}"):
        result = audit_image(image, options, access=_access(tls_verify, credentials, platform))
    for note in result.notes:
        log.warn(note)
    for problem in result.problems:
        log.console().print(f"[bold red]INCOMPLETE SCAN:[/] {_escaped(problem)}")
    shown = select(result, severities=chosen, ignore_unfixed=ignore_unfixed)
    kind = ReportFormat(report_format)
    if output is None and kind is ReportFormat.TABLE and sys.stdout.isatty():
        from rich.console import Console

        render_table(shown, Console(highlight=False))
    else:
        document = render(shown, kind)
        if output is None:
            sys.stdout.buffer.write(document)
            sys.stdout.flush()
        else:
            atomic_write_bytes(output, document, inputs=inputs)
            log.info(f"[green]wrote[/] {output}")
    if not result.complete:
        sys.exit(INCOMPLETE)
    if fail_on is not None and fails(shown.findings, fail_on.upper()):
        sys.exit(FAILED)


def _escaped(text: str) -> str:
    from rich.markup import escape

    from distill.bounded import one_line

    return escape(one_line(text))
