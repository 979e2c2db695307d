"""Command line: parse arguments, call the library, render with rich. Nothing else."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table

from distill import __version__, log
from distill.errors import DistillError

F = TypeVar("F", bound=Callable[..., Any])


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="distill")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only print results and warnings.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Build minimal, shell-free container images from Debian packages."""
    ctx.obj = {"debug": debug}
    log.set_quiet(quiet)


def _spec_options(func: F) -> F:
    func = click.option(
        "--arch", "archs", multiple=True,
        help="Architecture (amd64, arm64); repeat for several. Default: host.",
    )(func)
    func = click.option("--suite", help="Debian suite: trixie (default) or bookworm.")(func)
    return func


@cli.command()
@click.argument("spec")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("distill.lock"),
              show_default=True, help="Where to write the lock.")
@_spec_options
def lock(spec: str, output: Path, suite: str | None, archs: tuple[str, ...]) -> None:
    """Resolve SPEC (a spec file or preset) into a lockfile of exact .debs."""
    from distill.debian.lock import lock_spec, write_lock
    from distill.debian.mirror import discover_mirrors
    from distill.spec import load_spec

    loaded = load_spec(spec, suite=suite, archs=archs)
    mirrors = discover_mirrors(loaded.mirror, loaded.security_mirror)
    with log.complete_step(f"Resolving {loaded.name} ({loaded.suite}, "
                           f"{', '.join(loaded.target_archs())})"):
        result, resolutions = lock_spec(loaded, mirrors)
    for arch, resolution in resolutions.items():
        table = Table(title=f"{loaded.name} · {loaded.suite} · {arch}", title_justify="left")
        table.add_column("package")
        table.add_column("version")
        table.add_column("pocket")
        table.add_column("size", justify="right")
        for pkg in resolution.packages:
            table.add_row(pkg.name, pkg.version, pkg.pocket, _human(pkg.size))
        log.show(table)
        total = sum(p.size for p in resolution.packages)
        log.info(f"{len(resolution.packages)} packages, {_human(total)} of .debs")
        for exc in resolution.excluded:
            log.info(f"  [dim]{exc.wanted_by} → excluded: {exc.reason}[/]")
    write_lock(result, output)
    log.info(f"[green]wrote[/] {output}")


@cli.command()
@click.argument("lockfile", type=click.Path(path_type=Path))
@click.option("--arch", help="Only this architecture.")
@click.option("-j", "--jobs", default=8, show_default=True, help="Parallel downloads.")
def fetch(lockfile: Path, arch: str | None, jobs: int) -> None:
    """Download and verify every .deb of LOCKFILE into the cache."""
    from distill.cache import BlobCache
    from distill.debian.lock import lock_downloads, read_lock
    from distill.debian.mirror import discover_mirrors
    from distill.download import fetch_all

    locked = read_lock(lockfile)
    requests = lock_downloads(locked, discover_mirrors(), arch)
    with log.complete_step(f"Fetching {len(requests)} packages"):
        paths = fetch_all(requests, BlobCache(), jobs=jobs)
    total = sum(p.stat().st_size for p in paths.values())
    log.info(f"{len(paths)} packages verified in the cache ({_human(total)})")


@cli.command()
@click.argument("spec")
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="TRANSPORT:PATH[:REF]",
    help="oci:DIR, oci-archive:FILE or docker-archive:FILE, optionally with :REF (a tag).",
)
@click.option(
    "--lock",
    "lock_file",
    type=click.Path(path_type=Path),
    help="Build exactly this lock (it must match the spec); default: resolve now.",
)
@click.option(
    "--compression",
    type=click.Choice(["gzip", "zstd"]),
    default="gzip",
    show_default=True,
    help="Layer compression (zstd needs a recent runtime to pull).",
)
@click.option("-j", "--jobs", default=8, show_default=True, help="Parallel downloads/unpacks.")
@_spec_options
def build(
    spec: str,
    output: str,
    lock_file: Path | None,
    compression: str,
    jobs: int,
    suite: str | None,
    archs: tuple[str, ...],
) -> None:
    """Build SPEC (a spec file or PRESET[:VARIANT]) into an OCI image.

    Variants: nonroot, debug, debug-nonroot. The image digest is printed on stdout.
    """
    from distill.build import build_image
    from distill.debian.lock import read_lock
    from distill.oci.layer import Compression
    from distill.oci.layout import parse_destination
    from distill.spec import load_spec

    loaded = load_spec(spec, suite=suite, archs=archs)
    destination = parse_destination(output)
    locked = read_lock(lock_file) if lock_file is not None else None
    result = build_image(
        loaded, locked, destination, compression=Compression(compression), jobs=jobs
    )
    for arch in result.archs:
        table = Table(
            title=f"{result.spec} · {arch.arch} · {len(arch.packages)} packages, "
            f"{len(arch.excluded)} excluded",
            title_justify="left",
        )
        for column in ("layer", "packages", "files", "size", "compressed", "cache", "digest"):
            table.add_column(column, justify="right" if column in ("size", "compressed") else None)
        for layer in arch.layers:
            blob = layer.blob
            table.add_row(
                layer.role,
                str(len(layer.packages)),
                str(blob.file_count),
                _human(blob.uncompressed_size),
                _human(blob.size),
                "[dim]reused[/]" if layer.reused else "[green]new[/]",
                blob.digest.removeprefix("sha256:")[:12],
            )
        log.show(table)
        total = sum(layer.blob.uncompressed_size for layer in arch.layers)
        log.info(f"{_human(total)} uncompressed; excluded: {' '.join(arch.excluded) or 'none'}")
        for note in arch.notes:
            log.info(f"  [dim]{note}[/]")
    log.info(f"[green]wrote[/] {result.destination} ({result.layers_written} layers written, "
             f"{result.layers_reused} reused)")
    click.echo(result.digest)


@cli.command()
def presets() -> None:
    """List the shipped presets."""
    from distill.spec import load_spec
    from distill.spec import presets as all_presets

    table = Table("preset", "description", "packages")
    for name, text in sorted(all_presets().items()):
        spec = load_spec(name)
        first = text.splitlines()[0].lstrip("# ") if text.startswith("#") else ""
        table.add_row(name, first, " ".join(spec.packages))
    log.console.print(table, soft_wrap=False)


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="distill", standalone_mode=False)
    except click.exceptions.Abort:
        log.console.print("[red]aborted[/]")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DistillError as exc:
        if debug:
            raise
        log.console.print(f"[bold red]error:[/] {exc.message}")
        if exc.hint:
            log.console.print(f"[dim]hint:[/] {exc.hint}")
        sys.exit(1)
    except subprocess.CalledProcessError as exc:
        if debug:
            raise
        log.console.print(f"[bold red]error:[/] {exc.cmd[0]} failed with exit code "
                          f"{exc.returncode}")
        sys.exit(1)
    except KeyboardInterrupt:
        log.console.print("[red]interrupted[/]")
        sys.exit(130)

