"""``Access``: how to reach images, in one object for every transport and verb.

TLS verification, credentials and ``limits`` (how long a server may take: the deadlines
of :mod:`distill.net.deadline`, from the environment when None) are for registries;
``platform`` chooses the image of a multi-platform source; ``jobs`` bounds parallel
transfers. Transports read what they need and ignore the rest, so a new setting is one
field here, not a parameter in twenty signatures. ``Credentials`` live here too (where
they are found: :mod:`distill.registry.auth`), so this module sits below the registry.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from distill.errors import DistillError

if TYPE_CHECKING:
    from distill.image.platform import Platform
    from distill.net.deadline import Limits

DEFAULT_JOBS = 4
IDENTITY_TOKEN_USER = "<token>"  # how credential helpers mark an identity token


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password (or token), and where they were found (for messages)."""

    username: str
    password: str = field(repr=False)
    source: str = "given explicitly"

    @classmethod
    def parse(cls, text: str, source: str = "given explicitly") -> Credentials:
        """``USER:PASS``; the password may contain ``:``."""
        user, sep, password = text.partition(":")
        if not sep or not user:
            raise DistillError(
                f"credentials {source} are not USER:PASS",
                hint="write the user name, a colon, then the password or token",
            )
        return cls(user, password, source)

    @property
    def identity_token(self) -> bool:
        """An OAuth2 refresh token (docker's "identity token"): only a token server takes it."""
        return self.username == IDENTITY_TOKEN_USER

    def basic_header(self) -> str:
        if self.identity_token:
            raise DistillError(
                f"the credentials {self.source} are an identity token, and this registry "
                "wants a user name and password (Basic authentication)",
                hint="pass --creds USER:PASS",
            )
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Access:
    tls_verify: bool = True
    credentials: Credentials | None = None
    platform: Platform | None = None
    jobs: int = DEFAULT_JOBS
    limits: Limits | None = None
