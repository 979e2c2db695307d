"""``distill db status | update | import``: the command line of :mod:`distill.scan.db`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from distill import log


def _db_path(value: str | None) -> Path:
    from distill.scan.db import default_db_path

    return Path(value).expanduser() if value else default_db_path()


_db_option = click.option(
    "--db",
    "db",
    metavar="PATH",
    help="The vulnerability DB. Default: $DISTILL_VULN_DB, else vuln.db in distill's cache dir.",
)


@click.group()
def db() -> None:
    """The local vulnerability DB that `distill scan` matches against."""


@db.command()
@_db_option
def status(db: str | None) -> None:
    """Show what the DB holds: its sources, their age, and the releases it covers."""
    from distill.scan.db import VulnDB

    path = _db_path(db)
    vdb = VulnDB.open(path)
    if vdb is None:
        click.echo(f"no vulnerability DB at {path}")
        click.echo("create one with `distill db update --url URL` or `distill db import FILE…`")
        return
    with vdb:
        st = vdb.status()
    click.echo(f"DB:       {st.path}  (schema {st.schema_version})")
    click.echo(f"updated:  {_age(st.updated)}")
    if st.tracker_url:
        click.echo(f"tracker:  {st.tracker_url}")
    for source in st.sources:
        extra = f"  {source.url}" if source.url else ""
        kind = "" if source.name == source.kind else f" ({source.kind})"
        click.echo(
            f"source:   {source.name}{kind}: {source.count} entries, "
            f"imported {_age(source.imported_at)}{extra}"
        )
    if st.releases:
        listed = ", ".join(f"{name} ({count})" for name, count in st.releases.items())
        click.echo(f"releases: {listed}")


@db.command()
@_db_option
@click.option(
    "--url",
    help="The Debian security tracker's JSON. Default: $DISTILL_TRACKER_URL, "
    "else the URL of the last update.",
)
def update(db: str | None, url: str | None) -> None:
    """Download the Debian security tracker's JSON (only if it changed) and import it."""
    from distill.scan.update import tracker_url, update_tracker

    path = _db_path(db)
    chosen = tracker_url(path, url)
    with log.complete_step("Updating the vulnerability DB"):
        result = update_tracker(path, chosen)
    if not result.changed:
        click.echo(f"up to date ({chosen} has not changed)")
        return
    assert result.status is not None
    count = next((s.count for s in result.status.sources if s.url == chosen), 0)
    click.echo(f"imported {count} tracker entries into {path}")


@db.command(name="import")
@_db_option
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def import_(db: str | None, files: tuple[Path, ...]) -> None:
    """Import Debian security tracker JSON or OSV files (JSON, directories, zips)."""
    from distill.scan.db import import_sources, imports_for

    path = _db_path(db)
    items = imports_for(files)
    with log.complete_step(f"Importing {len(items)} file(s) into the vulnerability DB"):
        st = import_sources(path, items)
    counts = {s.name: s.count for s in st.sources}
    for item in items:
        click.echo(f"{item.name}: {counts.get(item.name, 0)} entries from {item.path}")


def _age(when: datetime | None) -> str:
    if when is None:
        return "never"
    seconds = (datetime.now(UTC) - when).total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{when.isoformat()} ({n} {unit}{'s' if n != 1 else ''} ago)"
    return f"{when.isoformat()} (just now)"
