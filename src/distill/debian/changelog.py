"""Debian changelogs (``usr/share/doc/<pkg>/changelog.Debian.gz``): entries and the CVE ids
they name, read from a .deb with bounded memory.

An entry is a heading ``source (version) dist [dist…]; urgency=…[, key=value…]``, indented
change lines and a trailer `` -- Maintainer <email>  Date`` (deb-changelog(5)). binNMUs add
entries marked ``binary-only=yes``, shipped in ``changelog.Debian.<arch>.gz`` beside the
source's own changelog. Packages built from one source often make their doc directory (or
just the changelog) a symlink to a sibling's: such a .deb holds no changelog, only the name
of the package whose .deb does.

Changelogs come from a mirror, and anything can be in a file: the decompressed text is cut
at ``MAX_CHANGELOG_BYTES`` (the newest entries come first, so the cut loses only old ones),
and the cut is reported, never hidden.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from posixpath import basename, dirname, join, normpath
from typing import IO

from distill.debian.deb import iter_data
from distill.debian.version import parse_version
from distill.errors import DistillError

MAX_CHANGELOG_BYTES = 16 << 20
DOC_DIR = "usr/share/doc"
_SOURCE, _BINNMU = "source", "binnmu"
_READ = 1 << 16
_GZIP = 16 + zlib.MAX_WBITS  # a gzip header and trailer around deflate
# deb-changelog(5)'s heading. The version is taken as written and checked afterwards, so
# that a bad one still ends the entry before it (its text is not the older entry's).
_HEADING = re.compile(
    r"^(?P<source>\w[-+0-9a-z.]*) \((?P<version>[^()]*)\)"
    r"(?P<dists>(?:\s+[-+0-9a-z.]+)+)\s*;(?P<options>.*)$",
    re.IGNORECASE,
)
_TRAILER = re.compile(r"^ -- (?P<maintainer>.*?)(?:  (?P<date>.*))?\s*$")
# What ends the parseable part of old changelogs: older text follows in free form.
_END = re.compile(r"^(?:old changelog:|local variables:|#\s*vim?:)", re.IGNORECASE)
# Ids as MITRE assigns them: four digits of year, four or more of sequence. A longer digit
# run is not an id: the bound keeps a hostile line from making a huge "id".
CVE_ID = re.compile(r"(?<![\w-])CVE-(\d{4})-(\d{4,12})(?!\d)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ChangelogEntry:
    source: str
    version: str
    distributions: tuple[str, ...]
    urgency: str
    binary_only: bool
    cves: tuple[str, ...]  # the CVE ids the entry names, upper-cased, first mention first
    maintainer: str = ""
    date: str = ""


@dataclass(frozen=True, slots=True)
class Changelog:
    entries: tuple[ChangelogEntry, ...]  # newest first, as written
    cut: bool = False  # the text was longer than the cap: older entries are missing
    skipped: tuple[str, ...] = ()  # headings whose version dpkg would refuse


def cve_ids(text: str) -> tuple[str, ...]:
    """The CVE ids ``text`` names, upper-cased, each once, in order of first mention."""
    seen: dict[str, None] = {}
    for match in CVE_ID.finditer(text):
        seen.setdefault(f"CVE-{match.group(1)}-{match.group(2)}", None)
    return tuple(seen)


def _options(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if eq:
            found.setdefault(key.strip().lower(), value.strip())
    return found


class _Open:
    """An entry being read: its heading and the lines of text under it."""

    def __init__(self, heading: re.Match[str], binary_only: bool) -> None:
        self.heading = heading
        options = _options(heading.group("options"))
        self.urgency = options.get("urgency", "")
        self.binary_only = binary_only or options.get("binary-only", "").lower() == "yes"
        self.lines: list[str] = []
        self.maintainer = ""
        self.date = ""

    def close(self) -> ChangelogEntry:
        return ChangelogEntry(
            source=self.heading.group("source"),
            version=self.heading.group("version"),
            distributions=tuple(self.heading.group("dists").split()),
            urgency=self.urgency,
            binary_only=self.binary_only,
            cves=cve_ids("\n".join(self.lines)),
            maintainer=self.maintainer,
            date=self.date,
        )


def parse_changelog(text: str, *, binary_only: bool = False, cut: bool = False) -> Changelog:
    """The entries of a changelog's text. ``binary_only`` marks every entry so (a binNMU
    changelog, ``changelog.Debian.<arch>.gz``); ``cut`` says the text was truncated.

    An entry whose version dpkg would refuse is left out and named in ``skipped``; lines in
    no entry are ignored; the free-form tail of old changelogs ends the parse.
    """
    entries: list[ChangelogEntry] = []
    skipped: list[str] = []
    current: _Open | None = None

    def finish() -> None:
        if current is None:
            return
        entry = current.close()
        try:
            parse_version(entry.version)
        except DistillError:
            skipped.append(f"{entry.source} ({entry.version[:80]})")
            return
        entries.append(entry)

    for line in text.splitlines():
        heading = _HEADING.match(line) if line[:1].isalnum() else None
        if heading is not None:
            finish()
            current = _Open(heading, binary_only)
            continue
        if line.startswith(" -- "):
            trailer = _TRAILER.match(line)
            if current is not None and trailer is not None:
                current.maintainer = trailer.group("maintainer").strip()
                current.date = (trailer.group("date") or "").strip()
            continue
        if line[:1].isspace() or not line:
            if current is not None:
                current.lines.append(line)
            continue
        if _END.match(line):
            break
        if current is not None:  # dpkg warns and keeps going: so does this
            current.lines.append(line)
    finish()
    return Changelog(tuple(entries), cut, tuple(skipped))


def read_gzip_capped(stream: IO[bytes], limit: int = MAX_CHANGELOG_BYTES) -> tuple[bytes, bool]:
    """Decompress a gzip stream (every member of it, as gzip does), stopping at ``limit``
    bytes of output: the text and whether it was cut. Memory stays near ``limit`` whatever
    the stream expands to; a stream that ends mid-member counts as cut."""
    inflater = zlib.decompressobj(_GZIP)
    out = bytearray()
    data = b""
    fed = False  # the current member has had input
    while True:
        if not data:
            data = stream.read(_READ)
            if not data:
                return bytes(out), fed
        if len(out) >= limit:
            return bytes(out), True
        try:
            out += inflater.decompress(data, limit - len(out))
        except zlib.error as exc:
            if not fed and out:
                return bytes(out), False  # trailing garbage after a member: gzip ignores it
            raise DistillError(f"changelog does not decompress: {exc}") from exc
        fed = True
        data = inflater.unconsumed_tail
        if inflater.eof:
            data = inflater.unused_data
            inflater = zlib.decompressobj(_GZIP)
            fed = False


@dataclass(frozen=True, slots=True)
class DebChangelog:
    """What a .deb holds for one package's changelog.

    Either the changelog (``changelog``, and ``binnmu`` when the package is a binNMU), or
    ``link``: the package whose doc directory this one's points to (read that .deb), or
    neither (the .deb ships no changelog for the package).
    """

    package: str
    changelog: Changelog | None = None
    binnmu: Changelog | None = None
    link: str | None = None


def _name(member: str) -> str:
    while member.startswith("./"):
        member = member[2:]
    return member.strip("/")


def _linked_package(path: str, target: str) -> str | None:
    """The package a doc symlink at ``path`` leads to (``usr/share/doc/<pkg>`` or a file in
    it), or None when it leads anywhere else."""
    resolved = normpath(join(dirname(path), target)).lstrip("/")
    parent = dirname(resolved)
    if resolved.startswith(DOC_DIR + "/") and parent == DOC_DIR:
        return basename(resolved)
    if dirname(parent) == DOC_DIR and basename(resolved).startswith("changelog.Debian"):
        return basename(parent)
    return None


def read_deb_changelog(
    deb: Path, package: str, arch: str, *, native: bool = False, limit: int = MAX_CHANGELOG_BYTES
) -> DebChangelog:
    """Read ``usr/share/doc/<package>/changelog.Debian.gz`` (and the binNMU changelog
    ``changelog.Debian.<arch>.gz``) from a .deb, streaming its data archive once and
    stopping as soon as the doc directory has been passed. A ``native`` package (a version
    without a Debian revision) has its changelog in ``changelog.gz``."""
    doc = f"{DOC_DIR}/{package}"
    wanted = {f"{doc}/changelog.Debian.gz": _SOURCE, f"{doc}/changelog.Debian.{arch}.gz": _BINNMU}
    if native:
        wanted[f"{doc}/changelog.gz"] = _SOURCE
    found: dict[str, Changelog] = {}
    link: str | None = None
    members = iter_data(deb)
    inside = False
    try:
        for info, reader in members:
            name = _name(info.name)
            if name == doc and info.issym():
                link = _linked_package(name, info.linkname)
                break
            if name.startswith(doc + "/"):
                inside = True
            elif inside and found:
                break  # dpkg-deb writes a directory's files together: the rest is elsewhere
            kind = wanted.get(name)
            if kind is None or kind in found:
                continue
            if info.issym():
                link = link or _linked_package(name, info.linkname)
                continue
            if reader is None:
                continue
            data, cut = read_gzip_capped(reader, limit)
            text = data.decode("utf-8", errors="replace")
            found[kind] = parse_changelog(text, binary_only=kind == _BINNMU, cut=cut)
    except DistillError as exc:
        raise DistillError(f"{deb.name}: {exc.message}", hint=exc.hint) from exc
    finally:
        close = getattr(members, "close", None)
        if close is not None:
            close()
    if _SOURCE in found:
        return DebChangelog(package, found[_SOURCE], found.get(_BINNMU))
    return DebChangelog(package, None, found.get(_BINNMU), link)
