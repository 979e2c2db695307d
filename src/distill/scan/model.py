"""What distill's own scanner works with: advisories (from the DB or derived from Debian
changelogs), the packages of an image, and the findings that match the two.

``scan.db`` stores advisories, ``scan.changelog`` derives them from the mirror,
``scan.match`` turns advisories and packages into findings, ``scan.report`` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """A finding's status, named as trivy names it."""

    FIXED = "fixed"  # installed < the fixed version
    AFFECTED = "affected"  # open, no fix yet (also nodsa without a reason)
    WILL_NOT_FIX = "will_not_fix"  # nodsa_reason: ignored
    FIX_DEFERRED = "fix_deferred"  # nodsa_reason: postponed
    END_OF_LIFE = "end_of_life"


class Origin(StrEnum):
    """What a finding rests on."""

    TRACKER = "debian-tracker"  # Debian security tracker JSON (db import/update)
    OSV = "osv"  # OSV files (db import)
    CHANGELOG = "changelog"  # a newer candidate's changelog.Debian on the mirror


@dataclass(frozen=True, slots=True)
class DebianAdvisory:
    """One issue × one source package × one release, as the tracker (or a changelog) says."""

    vuln_id: str  # CVE-2024-1234, TEMP-0000000-ABCDEF, DSA-…
    source_package: str
    release: str  # codename: bookworm, trixie
    status: str  # the tracker's: resolved | open | undetermined
    fixed_version: str | None  # None: no fix; "0": never affected
    urgency: str  # as given (suffixes such as "*" kept; the matcher strips them)
    nodsa: bool = False
    nodsa_reason: str = ""
    description: str = ""
    origin: Origin = Origin.TRACKER


@dataclass(frozen=True, slots=True)
class ImagePackage:
    """A package found in an image: Debian (``ecosystem`` "deb") or a language package."""

    ecosystem: str  # deb | pypi | npm | maven
    name: str  # binary package name (deb) or the language package's name
    version: str
    purl: str
    source_name: str = ""  # deb: the source package ("" = same as name)
    source_version: str = ""  # deb: the source version ("" = same as version)
    layer: int | None = None  # index of the layer that brought it in (bottom = 0)
    layer_digest: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    vuln_id: str
    package: ImagePackage
    status: Status
    severity: str  # one of findings.SEVERITIES
    origin: Origin
    fixed_version: str | None = None
    title: str = ""
    # Every source that reports this id for this package, when several do (the merge keeps
    # them all); () means ``origin`` alone.
    origins: tuple[Origin, ...] = ()

    @property
    def sources(self) -> tuple[Origin, ...]:
        return self.origins or (self.origin,)
