"""Options and arguments several commands share."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from distill.context import Access
    from distill.registry.auth import Credentials

F = TypeVar("F", bound=Callable[..., Any])


def _parse_creds(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> Credentials | None:
    if value is None:
        return None  # and requests (~0.1 s to import) is not loaded for local images
    from distill.registry.auth import Credentials

    return Credentials.parse(value, "given with --creds")


def _access(
    tls_verify: bool, credentials: Credentials | None, platform: str | None = None
) -> Access:
    """The command line's access settings, as one object for every transport."""
    from distill.context import Access
    from distill.image.platform import Platform

    wanted = Platform.parse(platform) if platform else None
    return Access(tls_verify=tls_verify, credentials=credentials, platform=wanted)


def _image_argument(
    ctx: click.Context, param: click.Parameter, value: str | tuple[str, ...] | None
) -> str | tuple[str, ...] | None:
    """A ``docker://`` reference is parsed before anything prints it: one carrying
    ``USER:PASS@`` is refused without being echoed."""
    for text in (value,) if isinstance(value, str) else value or ():
        # The registry code is imported only for a docker:// name (the one prefix that
        # registry.reference.TRANSPORT_PREFIX is, checked by the tests).
        if text.startswith("docker://"):
            from distill.registry.reference import parse_reference

            parse_reference(text)
    return value


def _registry_options(func: F) -> F:
    """``--tls-verify/--no-tls-verify`` and ``--creds``, for commands that read or write
    ``docker://`` images; they arrive as ``tls_verify`` and ``credentials``."""
    func = click.option(
        "--creds",
        "credentials",
        metavar="USER:PASS",
        callback=_parse_creds,
        help="Registry credentials (docker:// images). Default: $DISTILL_REGISTRY_AUTH, "
        "then the auth files of podman login and docker login.",
    )(func)
    func = click.option(
        "--tls-verify/--no-tls-verify",
        default=True,
        show_default=True,
        help="Use https with a verified certificate for docker:// images. Registries on "
        "this machine may use plain http either way.",
    )(func)
    return func
