"""``distill package``: the command line of :mod:`distill.package.core`; also what
``distill lock`` and ``distill build`` do for an app (a PATH, or a spec with ``app:``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from distill import log
from distill.cli.options import F, _access, _image_argument, _registry_options
from distill.log import human

if TYPE_CHECKING:
    from distill.build.spec import Spec
    from distill.package.core import PackageResult, Prepared
    from distill.package.plan import AppOptions
    from distill.registry.auth import Credentials


def parse_command(text: str | None, flag: str) -> tuple[str, ...] | None:
    """``--entrypoint``/``--cmd``: a JSON list of strings, or words split as a shell would
    (the image has no shell to do it at run time)."""
    if text is None:
        return None
    import shlex

    from distill.bounded import parse_json
    from distill.errors import DistillError

    if text.lstrip().startswith("["):
        value = parse_json(text.encode(), f"{flag}", hint='write a JSON list: ["/app/run", "-v"]')
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DistillError(f"{flag} is not a list of strings", hint='e.g. ["/app/run", "-v"]')
        return tuple(value)
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise DistillError(f"{flag}: {exc}", hint="close the quote, or give a JSON list") from None


def parse_env(items: tuple[str, ...]) -> dict[str, str]:
    from distill.errors import DistillError

    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or any(c.isspace() for c in key):
            raise DistillError(f"--env {item!r} is not KEY=VALUE", hint="e.g. --env APP_ENV=prod")
        env[key] = value
    return env


def app_options_of_spec(spec: Spec) -> AppOptions:
    """The ``app:`` of a spec as the planners' options (its base: the spec itself)."""
    from distill.package.plan import AppKind, AppOptions

    app = spec.app
    assert app is not None
    return AppOptions(
        path=app.path,
        kind=AppKind(app.kind) if app.kind else None,
        entrypoint=app.entrypoint,
        cmd=app.cmd,
        ports=tuple(int(p.split("/")[0]) for p in app.ports),
        env=dict(app.env),
        jlink=app.jlink,
    )


def show_result(result: PackageResult) -> None:
    prepared = result.prepared
    if log.is_quiet():
        _warn_stale(prepared)
        return
    from rich.table import Table

    table = Table(
        title=f"{prepared.options.path} · {prepared.kind} on {prepared.base.name} · "
        f"{prepared.base.arch}",
        title_justify="left",
    )
    for column in ("layer", "files"):
        table.add_column(column)
    table.add_column("size", justify="right")
    table.add_column("compressed", justify="right")
    table.add_column("cache")
    table.add_column("digest")
    base_size = sum(layer.size for layer in prepared.base.image.layers)
    table.add_row(
        f"base ({len(prepared.base.image.layers)} layers)", "", "", human(base_size), "", ""
    )
    for layer in result.layers:
        blob = layer.blob
        table.add_row(
            layer.name,
            str(blob.file_count),
            human(blob.uncompressed_size),
            human(blob.size),
            "[dim]reused[/]" if layer.reused else "[green]new[/]",
            blob.digest.removeprefix("sha256:")[:12],
        )
    log.show(table)
    _show_plan(prepared, result.entrypoint, result.cmd)
    log.info(f"[green]wrote[/] {result.destination}")


def _show_plan(prepared: Prepared, entrypoint: tuple[str, ...], cmd: tuple[str, ...]) -> None:
    import json

    from distill.package.core import plan_notes

    log.info(
        f"entrypoint: {json.dumps(list(entrypoint))}"
        + (f" cmd: {json.dumps(list(cmd))}" if cmd else "")
    )
    langs = [p for p in prepared.plan.lang_packages if p.ecosystem != "deb"]  # not the JDK's
    if langs:
        log.info(
            f"{len(langs)} language packages: "
            + ", ".join(f"{p.name} {p.version}" for p in langs[:12])
            + (" …" if len(langs) > 12 else "")
        )
    for note in plan_notes(prepared):
        log.info(f"  [dim]{note}[/]")
    _warn_stale(prepared)


def _warn_stale(prepared: Prepared) -> None:
    if prepared.stale:
        log.warn(
            f"{prepared.lock_file or 'the lock'} is stale ({'; '.join(prepared.stale)}); "
            "refresh it with "
            f"`distill lock {prepared.options.path}`"
        )


def lock_app_command(
    options: AppOptions,
    output: Path | None,
    *,
    suite: str | None,
    arch: str | None,
    base_spec: Spec | None = None,
) -> None:
    """``distill lock PATH`` (or a spec with ``app:``): the base's .debs and the app's
    language packages, written next to the app unless -o says where."""
    from distill.debian.lock import write_lock
    from distill.fsutil import output_file
    from distill.package.applock import app_lock_path
    from distill.package.core import lock_app

    target = output or app_lock_path(options.path)
    output_file(target, inputs=[options.path])
    lock, prepared = lock_app(options, suite=suite, arch=arch, base_spec=base_spec)
    langs = prepared.plan.lang_packages
    tools = sum(p.ecosystem == "deb" for p in langs)  # --jlink's JDK closure
    log.info(
        f"{prepared.kind} app on {prepared.base.name}: "
        f"{sum(len(a.packages) for a in lock.archs.values())} Debian packages, "
        f"{len(langs) - tools} language packages"
        + (f", the JDK's {tools} .debs for jlink" if tools else "")
    )
    for note in prepared.plan.notes:
        log.info(f"  [dim]{note}[/]")
    write_lock(lock, target)
    log.info(f"[green]wrote[/] {target}")


def is_app_path(text: str) -> bool:
    """Whether ``distill lock``'s argument is an app rather than a spec or preset."""
    path = Path(text)
    return path.is_dir() or (path.is_file() and path.suffix not in (".yaml", ".yml"))


_KINDS = click.Choice(["python", "node", "java", "elf"])


def app_lock_options(func: F) -> F:
    """``distill lock``'s options for an app PATH: the base and kind it is packaged with."""
    func = click.option("--jlink", is_flag=True, help="App PATH, Java: lock for --jlink.")(func)
    func = click.option("--kind", type=_KINDS, help="App PATH: its kind. Default: detected.")(func)
    func = click.option(
        "--base",
        callback=_image_argument,
        help="App PATH: the base it is packaged on (as for `distill package`).",
    )(func)
    return func


def lock_if_app(
    spec: str,
    output: Path | None,
    suite: str | None,
    archs: tuple[str, ...],
    ctx: Path | None,
    *,
    base: str | None = None,
    kind: str | None = None,
    jlink: bool = False,
) -> bool:
    """``distill lock`` of an app (a PATH, or a spec with ``app:``); False: not an app."""
    arch = archs[0] if archs else None
    if is_app_path(spec):
        from distill.package.plan import AppKind, AppOptions

        options = AppOptions(
            Path(spec), kind=AppKind(kind) if kind else None, base=base, jlink=jlink
        )
        lock_app_command(options, output, suite=suite, arch=arch)
        return True
    if base or kind or jlink:
        from distill.errors import DistillError

        raise DistillError(
            "--base, --kind and --jlink are for an app PATH; a spec's `app:` says these itself",
            hint="leave them out, or give the app's directory",
        )
    from dataclasses import replace

    from distill.build.spec import load_spec

    loaded = load_spec(spec, suite=suite, archs=archs, context=ctx)
    if loaded.app is None:
        return False
    lock_app_command(app_options_of_spec(loaded), output or Path("distill.lock"), suite=suite,
                     arch=arch, base_spec=replace(loaded, app=None))  # fmt: skip
    return True


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "destination",
    required=True,
    callback=_image_argument,
    metavar="TRANSPORT:PATH[:REF]",
    help="oci:DIR, oci-archive:FILE, docker-archive:FILE, containers-storage:NAME or "
    "docker://HOST/REPO[:TAG].",
)
@click.option(
    "--base",
    callback=_image_argument,
    help="PRESET[:VARIANT], a spec file, or an image (oci:DIR, docker://…). Default: "
    "python3:nonroot, nodejs:nonroot, java21:nonroot, static:nonroot or base:nonroot by kind.",
)
@click.option(
    "--kind",
    type=_KINDS,
    help="Default: detected from PATH.",
)
@click.option("--suite", help="Debian suite of a preset base: trixie (default) or bookworm.")
@click.option("--entrypoint", help="The program: a JSON list or a command line. Default: inferred.")
@click.option("--cmd", help="Default arguments: a JSON list or a command line.")
@click.option(
    "--port",
    "ports",
    multiple=True,
    type=click.IntRange(1, 65535),
    help="Port to expose; repeatable.",
)
@click.option(
    "--env", "env", multiple=True, metavar="KEY=VALUE", help="Environment variable; repeatable."
)
@click.option(
    "--jlink", is_flag=True, help="Java: a runtime of only the modules the app needs, on cc."
)
@click.option("--arch", help="Architecture (amd64, arm64). Default: the lock's, else the host's.")
@click.option("--offline", is_flag=True, help="Use only the lock and the cache; no network.")
@click.option(
    "--compression",
    type=click.Choice(["gzip", "zstd"]),
    default="gzip",
    show_default=True,
    help="Layer compression.",
)
@_registry_options
def package(
    path: Path,
    destination: str,
    base: str | None,
    kind: str | None,
    suite: str | None,
    entrypoint: str | None,
    cmd: str | None,
    ports: tuple[int, ...],
    env: tuple[str, ...],
    jlink: bool,
    arch: str | None,
    offline: bool,
    compression: str,
    tls_verify: bool,
    credentials: Credentials | None,
) -> None:
    """Package the app at PATH (a project directory, wheel, jar or ELF binary) onto a
    distroless base; write the image to -o.

    The kind is detected from PATH (pyproject.toml/requirements.txt/wheels: python,
    package.json: node, jars: java, an ELF file: elf). PATH/distill.lock, when present,
    pins the base's packages and the app's dependencies (`distill lock PATH` writes it).
    The digest written is printed on stdout (see docs/package.md).
    """
    from distill.image.layer_blob import Compression
    from distill.package.core import package_app
    from distill.package.plan import AppKind, AppOptions

    options = AppOptions(
        path=path,
        kind=AppKind(kind) if kind else None,
        base=base,
        entrypoint=parse_command(entrypoint, "--entrypoint"),
        cmd=parse_command(cmd, "--cmd"),
        ports=tuple(dict.fromkeys(ports)),
        env=parse_env(env),
        jlink=jlink,
        offline=offline,
    )
    result = package_app(
        options,
        destination,
        suite=suite,
        arch=arch,
        access=_access(tls_verify, credentials),
        compression=Compression(compression),
    )
    show_result(result)
    click.echo(result.digest)


def build_app(
    spec: Spec, output: str, access: Any, compression: str, lock_file: Path | None
) -> None:
    """``distill build`` of a spec with ``app:``: the spec is the app's base."""
    from dataclasses import replace

    from distill.image.layer_blob import Compression
    from distill.package.core import package_app

    options = app_options_of_spec(spec)
    archs = spec.target_archs()
    if len(archs) > 1:
        from distill.errors import DistillError

        raise DistillError(
            f"{spec.name} packages an app, for one architecture only, not {', '.join(archs)}",
            hint="pick one with --arch",
        )
    result = package_app(
        options,
        output,
        arch=archs[0],
        access=access,
        compression=Compression(compression),
        base_spec=replace(spec, app=None),
        lock_path=lock_file,  # else the app's own, PATH/distill.lock, when there is one
        inputs=[spec.source],
    )
    show_result(result)
    click.echo(result.digest)
