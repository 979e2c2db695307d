"""Command line: parse arguments, call the library, render with rich. Nothing else.

One module per verb as verbs move out of this one (``cli.rebase``); shared options in
``cli.options``. ``main`` is the entry point.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from distill import __version__, log
from distill.cli.options import F, _access, _image_argument, _registry_options
from distill.cli.package import app_lock_options
from distill.errors import DistillError
from distill.log import human

if TYPE_CHECKING:
    from distill.registry.auth import Credentials


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
        "--arch",
        "archs",
        multiple=True,
        help="Architecture (amd64, arm64); repeat for several. Default: host.",
    )(func)
    func = click.option("--suite", help="Debian suite: trixie (default) or bookworm.")(func)
    func = click.option(
        "--context",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="The directory the spec's files: and extends: may read from. Default: the "
        "spec file's directory.",
    )(func)
    return func


@cli.command()
@click.argument("spec")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Where to write the lock. Default: distill.lock; for an app PATH, PATH/distill.lock.",
)
@_spec_options
@app_lock_options
def lock(
    spec: str,
    output: Path | None,
    suite: str | None,
    archs: tuple[str, ...],
    context: Path | None,
    **app: Any,
) -> None:
    """Resolve SPEC (a spec file or preset) into a lockfile of exact .debs; for an app
    (a PATH, or a spec with `app:`), its language packages too."""
    from distill.build.spec import load_spec
    from distill.cli.package import lock_if_app
    from distill.debian.lock import lock_spec, write_lock
    from distill.debian.mirror import discover_mirrors
    from distill.fsutil import output_file

    if lock_if_app(spec, output, suite, archs, context, **app):
        return
    output = output or Path("distill.lock")
    loaded = load_spec(spec, suite=suite, archs=archs, context=context)
    output_file(output, inputs=[loaded.source])  # before resolving: a bad -o costs nothing
    mirrors = discover_mirrors(loaded.mirror, loaded.security_mirror)
    with log.complete_step(
        f"Resolving {loaded.name} ({loaded.suite}, {', '.join(loaded.target_archs())})"
    ):
        result, resolutions = lock_spec(loaded, mirrors)
    if loaded.node is not None:
        from distill.build.nodejs import lock_components, registry_url
        from distill.cache import BlobCache

        with log.complete_step(f"Resolving Node.js {loaded.node}.x from the npm registry"):
            result = lock_components(result, loaded.node, BlobCache(), registry_url)
    from rich.table import Table

    for arch, resolution in resolutions.items():
        table = Table(title=f"{loaded.name} · {loaded.suite} · {arch}", title_justify="left")
        table.add_column("package")
        table.add_column("version")
        table.add_column("pocket")
        table.add_column("size", justify="right")
        for pkg in resolution.packages:
            table.add_row(pkg.name, pkg.version, pkg.pocket, human(pkg.size))
        log.show(table)
        total = sum(p.size for p in resolution.packages)
        log.info(f"{len(resolution.packages)} packages, {human(total)} of .debs")
        for component in result.archs[arch].components:
            log.info(f"{component.name} {component.version} ({human(component.size)} tarball)")
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
    from distill.net.download import fetch_all

    locked = read_lock(lockfile)
    requests = lock_downloads(locked, discover_mirrors(), arch)
    with log.complete_step(f"Fetching {len(requests)} packages"):
        paths = fetch_all(requests, BlobCache(), jobs=jobs)
    total = sum(p.stat().st_size for p in paths.values())
    log.info(f"{len(paths)} packages verified in the cache ({human(total)})")
    components = [
        c for name, body in sorted(locked.archs.items()) if arch in (None, name)
        for c in body.components
    ]  # fmt: skip
    if components:
        import functools

        from distill.build.nodejs import fetch_node, registry_url

        registry = functools.cache(registry_url)
        for component in components:
            with log.complete_step(f"Fetching {component.name} {component.version}"):
                fetch_node(component, BlobCache(), registry)
        log.info(f"{len(components)} components verified in the cache")


@cli.command()
@click.argument("spec")
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="TRANSPORT:PATH[:REF]",
    help="oci:DIR, oci-archive:FILE or docker-archive:FILE, optionally with :REF (a tag); "
    "or docker://HOST/REPO[:TAG] to push to a registry.",
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
@_registry_options
def build(
    spec: str,
    output: str,
    lock_file: Path | None,
    compression: str,
    jobs: int,
    suite: str | None,
    archs: tuple[str, ...],
    context: Path | None,
    tls_verify: bool,
    credentials: Credentials | None,
) -> None:
    """Build SPEC (a spec file or PRESET[:VARIANT]) into an OCI image.

    Variants: nonroot, debug, debug-nonroot. The image digest is printed on stdout.
    """
    from distill.build.pipeline import build_image
    from distill.build.spec import load_spec
    from distill.debian.lock import read_lock
    from distill.image.layer_blob import Compression
    from distill.transports import parse_reference

    loaded = load_spec(spec, suite=suite, archs=archs, context=context)
    if loaded.app is not None:  # the spec is the base of an app: `distill package`'s work
        from distill.cli.package import build_app

        return build_app(loaded, output, _access(tls_verify, credentials), compression, lock_file)
    destination = parse_reference(output)
    locked = read_lock(lock_file) if lock_file is not None else None
    result = build_image(
        loaded,
        locked,
        destination,
        compression=Compression(compression),
        jobs=jobs,
        access=_access(tls_verify, credentials),
        inputs=[lock_file] if lock_file is not None else [],
    )
    from rich.table import Table

    for arch in result.archs:
        table = Table(
            title=f"{result.spec} · {arch.arch} · {len(arch.packages)} packages, "
            f"{len(arch.excluded)} excluded",
            title_justify="left",
        )
        for column in ("layer", "packages", "files"):
            table.add_column(column)
        table.add_column("size", justify="right")
        table.add_column("compressed", justify="right")
        table.add_column("cache")
        table.add_column("digest")
        for layer in arch.layers:
            blob = layer.blob
            table.add_row(
                layer.role,
                str(len(layer.packages)),
                str(blob.file_count),
                human(blob.uncompressed_size),
                human(blob.size),
                "[dim]reused[/]" if layer.reused else "[green]new[/]",
                blob.digest.removeprefix("sha256:")[:12],
            )
        log.show(table)
        total = sum(layer.blob.uncompressed_size for layer in arch.layers)
        log.info(f"{human(total)} uncompressed; excluded: {' '.join(arch.excluded) or 'none'}")
        for note in arch.notes:
            log.info(f"  [dim]{note}[/]")
    log.info(
        f"[green]wrote[/] {result.destination} "
        f"({result.layers_written} layers written, {result.layers_reused} reused)"
    )
    click.echo(result.digest)


@cli.command()
@click.argument("source", callback=_image_argument)
@click.argument("destination", callback=_image_argument)
@click.option("--platform", help="os/arch[/variant] to copy from a multi-platform image.")
@click.option(
    "--all-platforms", is_flag=True, help="Copy every platform of an index, and the index."
)
@click.option(
    "-j",
    "--jobs",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Blobs sent to a registry at once.",
)
@_registry_options
def copy(
    source: str,
    destination: str,
    platform: str | None,
    all_platforms: bool,
    jobs: int,
    tls_verify: bool,
    credentials: Credentials | None,
) -> None:
    """Copy an image from SOURCE to DESTINATION, in any transport.

    Both are oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG],
    docker://HOST/REPO[:TAG], containers-storage:NAME (SOURCE also a path). Without
    --platform or --all-platforms, a multi-platform image's copy is this host's platform.
    Blobs pass through unchanged, so digests are kept where the destination can hold
    them (see docs/copy.md). The digest written is printed on stdout.
    """
    from dataclasses import replace

    from distill.mutate.copy import copy_image

    access = replace(_access(tls_verify, credentials, platform), jobs=jobs)
    with log.complete_step(f"Copying {source} to {destination}"), log.byte_progress() as bar:
        result = copy_image(
            source,
            destination,
            access,
            all_platforms=all_platforms,
            progress=bar.advance,
            on_start=bar.start,
        )
    written = result.written
    log.info(
        f"[green]wrote[/] {result.destination}: {len(written.written)} blobs written, "
        f"{len(written.skipped)} there already, {len(written.mounted)} mounted"
    )
    click.echo(result.digest)


@cli.command()
def presets() -> None:
    """List the shipped presets."""
    from rich.table import Table

    from distill.build.spec import load_spec
    from distill.build.spec import presets as all_presets

    table = Table("preset", "description", "packages")
    for name, text in sorted(all_presets().items()):
        spec = load_spec(name)
        first = text.splitlines()[0].lstrip("# ") if text.startswith("#") else ""
        table.add_row(name, first, " ".join(spec.packages))
    log.console().print(table, soft_wrap=False)


@cli.command()
@click.argument("image", callback=_image_argument)
@click.option(
    "--format",
    "sbom_format",
    type=click.Choice(["spdx-json", "cyclonedx-json"]),
    default="spdx-json",
    show_default=True,
    help="SPDX 2.3 or CycloneDX 1.6, as JSON.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Write the SBOM here (atomically) instead of to stdout.",
)
@click.option("--platform", help="os/arch[/variant] of a multi-platform image (default: host).")
@_registry_options
def sbom(
    image: str,
    sbom_format: str,
    output: Path | None,
    platform: str | None,
    tls_verify: bool,
    credentials: Credentials | None,
) -> None:
    """Describe every package in IMAGE as an SBOM.

    IMAGE is oci:DIR, oci-archive:FILE, docker-archive:FILE, containers-storage:NAME,
    docker://HOST/REPO:TAG or a path to a layout or archive. SOURCE_DATE_EPOCH, when set,
    is the document's creation time (else the image's), so the output is reproducible.
    """
    from distill.fsutil import output_file
    from distill.transports import input_paths, opened

    if output is not None:
        output_file(output, inputs=input_paths([image]))  # before reading the image
    with (
        log.complete_step(f"Cataloguing {image}"),
        opened(image, _access(tls_verify, credentials, platform)) as source,
    ):
        # A local image's layers are being hashed from here on (see LayerFiles): the
        # cataloguing modules load meanwhile.
        from distill.analyze.sbom import SbomFormat, source_sbom

        result = source_sbom(source, SbomFormat(sbom_format))
    from distill.fsutil import atomic_write_bytes

    for warning in result.catalog.warnings:
        log.warn(warning)
    counts: dict[str, int] = {}
    for component in result.catalog.components:
        counts[component.type.value] = counts.get(component.type.value, 0) + 1
    found = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "no packages"
    osr = result.catalog.os
    log.info(f"{found}" + (f" on {osr.pretty_name or osr.distro}" if osr else ""))
    if output is None:
        sys.stdout.buffer.write(result.document)
        sys.stdout.flush()
    else:
        atomic_write_bytes(output, result.document, inputs=input_paths([image]))
        log.info(f"[green]wrote[/] {output}")


@cli.command()
@click.argument("image", callback=_image_argument)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option(
    "--files",
    "files",
    is_flag=False,
    flag_value="/",
    default=None,
    metavar="[PATH]",
    help="Add a du-like tree of PATH (default /); put it after IMAGE or write --files=PATH.",
)
@click.option(
    "--depth",
    default=2,
    show_default=True,
    type=click.IntRange(min=0),
    help="Levels of the --files tree.",
)
@click.option("--platform", help="os/arch[/variant] of a multi-platform image (default: host).")
@_registry_options
def inspect(
    image: str,
    as_json: bool,
    files: str | None,
    depth: int,
    platform: str | None,
    tls_verify: bool,
    credentials: Credentials | None,
) -> None:
    """Look inside IMAGE without running it: layers, config, OS, attack surface, waste.

    IMAGE is oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE,
    containers-storage:NAME, docker://HOST/REPO:TAG or a path to a layout or archive.
    """
    from distill.transports import opened

    with (
        log.complete_step(f"Inspecting {image}"),
        opened(image, _access(tls_verify, credentials, platform)) as source,
    ):
        # As for sbom: the layers are being hashed while the rest loads.
        from distill.analyze.inspect import inspect_image

        report = inspect_image(source, files=files, depth=depth)
    if as_json:
        import json

        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        from rich.console import Console

        from distill.analyze.render import render_inspect

        render_inspect(report, Console())


class _Terminated(BaseException):
    """SIGTERM (a CI job cancelled, `timeout`): unwinds like Ctrl-C, so temporary files and
    half-written outputs are removed on the way out instead of left behind."""


def _terminate(signum: int, frame: object) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut cleanup short
    raise _Terminated


def _print_error(message: str, hint: str | None) -> None:
    """The error as one line and the hint as one more, whatever they quote: text from an
    image or a server can hold newlines, terminal escapes or rich markup."""
    from rich.markup import escape

    from distill.bounded import one_line

    log.console().print(f"[bold red]error:[/] {escape(one_line(message))}")
    if hint:
        log.console().print(f"[dim]hint:[/] {escape(one_line(hint))}")


def main(argv: list[str] | None = None) -> None:
    import signal

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    # Restored at the end: a caller running main() in-process (tests, scripts) must not be
    # left ignoring SIGTERM — nor the children it starts later, which inherit SIG_IGN.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=argv, prog_name="distill", standalone_mode=False)
    except click.exceptions.Abort:
        log.console().print("[red]aborted[/]")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DistillError as exc:
        if debug:
            raise
        _print_error(exc.message, exc.hint)
        sys.exit(1)
    except Exception as exc:
        # Only a subprocess can have failed if subprocess was loaded (it is not, for most
        # commands, to start faster).
        subprocess = sys.modules.get("subprocess")
        if debug or subprocess is None or not isinstance(exc, subprocess.CalledProcessError):
            raise
        log.console().print(
            f"[bold red]error:[/] {exc.cmd[0]} failed with exit code {exc.returncode}"
        )
        sys.exit(1)
    except KeyboardInterrupt:
        log.console().print("[red]interrupted[/]")
        sys.exit(130)
    except _Terminated:
        log.console().print("[red]terminated[/]")
        sys.exit(143)
    finally:
        from distill import tempfiles

        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # on the way out already
        try:
            tempfiles.remove_own()
        finally:
            signal.signal(signal.SIGTERM, previous)


def _add_commands() -> None:
    from distill.cli.compare import compare
    from distill.cli.db import db
    from distill.cli.package import package
    from distill.cli.rebase import rebase
    from distill.cli.scan import scan

    cli.add_command(compare)
    cli.add_command(rebase)
    cli.add_command(package)
    cli.add_command(db)
    cli.add_command(scan)


_add_commands()
