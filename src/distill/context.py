"""``Access``: how to reach images, in one object for every transport and verb.

TLS verification, credentials and ``limits`` (how long a server may take: the deadlines
of :mod:`distill.net.deadline`, from the environment when None) are for registries;
``platform`` chooses the image of a multi-platform source; ``jobs`` bounds parallel
transfers. Transports read what they need
and ignore the rest, so a new setting is one field here, not a parameter in twenty
signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distill.image.platform import Platform
    from distill.net.deadline import Limits
    from distill.registry.auth import Credentials

DEFAULT_JOBS = 4


@dataclass(frozen=True, slots=True)
class Access:
    tls_verify: bool = True
    credentials: Credentials | None = None
    platform: Platform | None = None
    jobs: int = DEFAULT_JOBS
    limits: Limits | None = None
