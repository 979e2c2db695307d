"""``distill rebase``: the command line of :mod:`distill.mutate.rebase`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from distill import log
from distill.cli.options import _access, _image_argument, _registry_options

if TYPE_CHECKING:
    from distill.registry.auth import Credentials


@click.command()
@click.argument("image", callback=_image_argument)
@click.option("--new-base", required=True, callback=_image_argument, help="The base to move onto.")
@click.option(
    "--old-base",
    callback=_image_argument,
    help="The base IMAGE was built on. Default: the one its base.name annotation names.",
)
@click.option(
    "-o", "--output", "destination", required=True, callback=_image_argument, help="Where to write."
)
@click.option("--platform", help="os/arch[/variant]: rebase only this platform of an index.")
@click.option(
    "--force",
    is_flag=True,
    help="Go on (with a warning) when the bases differ in OS, architecture or release.",
)
@_registry_options
def rebase(
    image: str,
    new_base: str,
    old_base: str | None,
    destination: str,
    platform: str | None,
    force: bool,
    tls_verify: bool,
    credentials: Credentials | None,
) -> None:
    """Move IMAGE's own layers from its base onto NEW_BASE; write the result to -o.

    The old base's layers must be IMAGE's bottom layers, and old and new base the same
    OS, architecture and Debian release (from os-release), else rebase refuses; --force
    skips the second check. IMAGE's own layers are kept byte for byte, its config (env,
    entrypoint, user...) too; the base annotations then name NEW_BASE. Every platform of
    an index is rebased onto the same platform of NEW_BASE. The digest written is printed
    on stdout (see docs/rebase.md).
    """
    from distill.mutate.rebase import rebase_reference

    access = _access(tls_verify, credentials, platform)
    with log.complete_step(f"Rebasing {image} onto {new_base}"):
        result = rebase_reference(
            image,
            new_base,
            destination,
            old_base=old_base,
            access=access,
            force=force,
            warn=log.warn,
        )
    log.info(f"[green]wrote[/] {result.destination} (from {result.old_base} to {result.new_base})")
    click.echo(result.digest)
