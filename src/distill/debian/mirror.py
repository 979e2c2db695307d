"""Where the Debian archive lives: the spec, the environment, or the machine's apt sources.

No mirror host is written into distill: a build uses the mirror its machine already trusts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from distill.debian.control import parse_stanzas
from distill.errors import DistillError

MIRROR_ENV = "DISTILL_MIRROR"
SECURITY_MIRROR_ENV = "DISTILL_SECURITY_MIRROR"

_HINT = (
    f"set {MIRROR_ENV}=http://<mirror>/debian (and {SECURITY_MIRROR_ENV}=http://<mirror>/"
    "debian-security), or `mirror:` in the spec, or add a deb822 source under "
    "/etc/apt/sources.list.d/"
)
_SCHEMES = ("http://", "https://", "file://")


@dataclass(frozen=True, slots=True)
class Mirrors:
    main: str
    security: str | None

    def for_pocket(self, pocket: str) -> str:
        if pocket.endswith("-security"):
            if self.security is None:
                raise DistillError(
                    f"no security mirror known for {pocket}",
                    hint=f"set {SECURITY_MIRROR_ENV}, `security_mirror:` in the spec, or a "
                    "`<suite>-security` source in the machine's apt sources",
                )
            return self.security
        return self.main


@dataclass(frozen=True, slots=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]


def _normalise(uri: str) -> str:
    uri = uri.strip().rstrip("/")
    if not uri.startswith(_SCHEMES):
        raise DistillError(
            f"unsupported mirror URL {uri!r}", hint="use an http://, https:// or file:// URL"
        )
    return uri


def _deb822_sources(text: str) -> list[AptSource]:
    # Comments may hold other URLs (snapshot links): only URIs: fields count.
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    found: list[AptSource] = []
    for stanza in parse_stanzas("\n".join(lines)):
        if "deb" not in stanza.get("types", "").split():
            continue
        if stanza.get("enabled", "yes").strip().lower() == "no":
            continue
        suites = tuple(stanza.get("suites", "").split())
        found += [AptSource(u, suites) for u in stanza.get("uris", "").split()]
    return found


_ONE_LINE = re.compile(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")


def _one_line_sources(text: str) -> list[AptSource]:
    found = []
    for line in text.splitlines():
        match = _ONE_LINE.match(line.strip())
        if match:
            found.append(AptSource(match.group(1), (match.group(2),)))
    return found


def read_apt_sources(root: Path = Path("/")) -> list[AptSource]:
    """All ``deb`` sources of a machine, in apt's reading order."""
    etc = root / "etc/apt"
    found: list[AptSource] = []
    main_list = etc / "sources.list"
    if main_list.is_file():
        found += _one_line_sources(main_list.read_text(errors="replace"))
    parts = etc / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".sources":
                found += _deb822_sources(path.read_text(errors="replace"))
            elif path.suffix == ".list":
                found += _one_line_sources(path.read_text(errors="replace"))
    return [s for s in found if s.uri.startswith(_SCHEMES)]


def _is_security(suite: str) -> bool:
    return suite.endswith("-security") or suite.endswith("/updates")


def discover_mirrors(
    spec_mirror: str | None = None,
    spec_security_mirror: str | None = None,
    *,
    apt_root: Path = Path("/"),
) -> Mirrors:
    """The spec wins, then the environment, then the first matching apt source."""
    sources = read_apt_sources(apt_root)
    main = spec_mirror or os.environ.get(MIRROR_ENV)
    if not main:
        main = next((s.uri for s in sources if not all(map(_is_security, s.suites))), None)
    if not main:
        raise DistillError("no Debian mirror found", hint=_HINT)
    security = spec_security_mirror or os.environ.get(SECURITY_MIRROR_ENV)
    if not security:
        security = next((s.uri for s in sources if any(map(_is_security, s.suites))), None)
    return Mirrors(_normalise(main), _normalise(security) if security else None)
