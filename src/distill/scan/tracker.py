"""The Debian security tracker's JSON, read one source package at a time.

The file is ``{source_package: {issue_id: {description?, scope?, debianbug?, releases:
{codename: {status, repositories, fixed_version?, urgency, nodsa?, nodsa_reason?}}}}}`` and
is over 60 MB: decoding it whole costs over 300 MB of Python objects. Here the top-level
object is walked with ``json.JSONDecoder.raw_decode``, one member at a time, from a text
buffer refilled in chunks, so memory follows the largest source package (the kernel's),
not the file.

Every entry is checked as it is read; anything that is not the tracker's shape is a
``DistillError`` naming the package and issue, and since callers import into a temporary
database, nothing of a malformed file is ever kept.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import IO, Any

from distill.bounded import one_line
from distill.errors import DistillError
from distill.scan.model import DebianAdvisory, Origin

STATUSES = frozenset({"resolved", "open", "undetermined"})
DEFAULT_URGENCY = "not yet assigned"
CHUNK = 1 << 20
# The kernel's entry is the largest, a few MB; a member past this is not the tracker's.
# Decoded, an entry costs up to ~15 times its size (2 million tiny releases in 57 MB took
# 800 MB), so the cap is what bounds an import's memory.
MAX_MEMBER = 32 << 20
# The whole file is ~70 MB; past this (a gigabyte of blanks, a gzip bomb) it is not.
MAX_TRACKER = 1 << 30
_NOT_BLANK = re.compile(r"[^ \t\n\r]")
_HINT = "this is not the Debian security tracker's JSON, or it is damaged; get it again"


class _Reader:
    """A text buffer over a binary stream that the parser consumes from the front."""

    def __init__(
        self,
        fh: IO[bytes],
        where: str,
        chunk: int,
        max_member: int = MAX_MEMBER,
        hint: str = _HINT,
    ) -> None:
        self._fh = fh
        self.hint = hint
        self.chunk = chunk
        self.max_member = max_member
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.where = where
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.total = 0  # bytes read from the stream

    def more(self, want: int = 0) -> bool:
        """Read ``want`` more bytes into the buffer; False at the end of the stream."""
        if self.eof:
            return False
        if self.pos:
            self.buf = self.buf[self.pos :]
            self.pos = 0
        data = self._fh.read(want or self.chunk)
        self.total += len(data)
        if self.total > MAX_TRACKER:
            raise DistillError(
                f"{self.where} is larger than {MAX_TRACKER >> 20} MiB; the tracker's JSON is "
                "far smaller",
                hint=self.hint,
            )
        try:
            self.buf += self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise DistillError(
                f"{self.where} is not UTF-8 text: {exc.reason}", hint=self.hint
            ) from None
        if not data:
            self.eof = True
        return True

    def skip_ws(self) -> str:
        """The next non-blank character ("" at the end)."""
        while True:
            # A regex, not a loop over characters: a gigabyte of blanks costs a second.
            found = _NOT_BLANK.search(self.buf, self.pos)
            if found is not None:
                self.pos = found.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)
            if not self.more():
                return ""

    def expect(self, chars: str) -> str:
        found = self.skip_ws()
        if not found or found not in chars:
            shown = repr(found) if found else "the end of the file"
            raise DistillError(
                f"{self.where} is malformed: expected {' or '.join(map(repr, chars))}, "
                f"found {shown}",
                hint=self.hint,
            )
        self.pos += 1
        return found

    def value(self, decoder: json.JSONDecoder) -> Any:
        """The next JSON value, reading more until it is complete (or the file ends)."""
        want = self.chunk
        while True:
            self.skip_ws()
            # Never decode more than one entry may hold: a bigger one fails here, unparsed.
            limit = self.pos + self.max_member
            text = self.buf if len(self.buf) <= limit else self.buf[:limit]
            try:
                value, end = decoder.raw_decode(text, self.pos)
            except json.JSONDecodeError as exc:
                if len(self.buf) - self.pos > self.max_member:
                    raise DistillError(
                        f"{self.where}: one entry is larger than {self.max_member >> 20} MB",
                        hint=self.hint,
                    ) from None
                if not self.more(want):
                    raise DistillError(
                        f"{self.where} is truncated or malformed "
                        f"({exc.msg.removesuffix(' starting at').lower()})",
                        hint=self.hint,
                    ) from None
                want = min(want * 2, self.max_member)
                continue
            except RecursionError:
                raise DistillError(f"{self.where} is nested too deeply", hint=self.hint) from None
            # A number or literal cut by the buffer's end would parse short: make sure the
            # value ends before the buffer does, or the stream is over.
            if end >= len(self.buf) and not self.eof:
                self.more(want)
                continue
            self.pos = end
            return value


def iter_tracker(
    fh: IO[bytes], where: str, *, chunk: int = CHUNK
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(source_package, {issue_id: issue})`` for each member of the top-level object."""
    reader = _Reader(fh, where, chunk)
    decoder = json.JSONDecoder()
    reader.expect("{")
    if reader.skip_ws() == "}":
        reader.pos += 1
    else:
        while True:
            name = reader.value(decoder)
            if not isinstance(name, str):
                raise DistillError(f"{where} is malformed: a key is not a string", hint=_HINT)
            reader.expect(":")
            issues = reader.value(decoder)
            if not isinstance(issues, dict):
                raise DistillError(
                    f"{where}: the entry of {one_line(name, 80)!r} is not an object", hint=_HINT
                )
            yield name, issues
            if reader.expect(",}") == "}":
                break
    if reader.skip_ws():
        raise DistillError(f"{where} has data after its closing brace", hint=_HINT)


def iter_array(fh: IO[bytes], where: str, *, max_member: int, hint: str) -> Iterator[Any]:
    """The elements of a JSON array, one at a time, each at most ``max_member`` bytes: a
    long list of documents (OSV advisories) costs what its largest element does."""
    reader = _Reader(fh, where, CHUNK, max_member, hint)
    decoder = json.JSONDecoder()
    reader.expect("[")
    if reader.skip_ws() == "]":
        reader.pos += 1
    else:
        while True:
            yield reader.value(decoder)
            if reader.expect(",]") == "]":
                break
    if reader.skip_ws():
        raise DistillError(f"{where} has data after its closing bracket", hint=hint)


# One (issue, release) entry as the DB stores it:
# (vuln_id, release, status, fixed_version, urgency, nodsa, nodsa_reason).
Row = tuple[str, str, str, str | None, str, int, str]

# What dpkg could parse: [epoch:]upstream[-revision] from its characters. The full parse
# (distill.debian.version) costs too much for a few hundred thousand entries; the matcher
# does it, and this keeps out what it would refuse.
_UPSTREAM = re.compile(r"[A-Za-z0-9.+~:-]+")
_REVISION = re.compile(r"[A-Za-z0-9.+~]+")


def rows(source: str, issues: dict[str, Any], where: str) -> Iterator[tuple[Row, str]]:
    """The entries of one source package, each with its issue's description (stored once
    per issue, not once per release)."""
    for vuln_id, issue in issues.items():
        if not isinstance(issue, dict):
            raise _bad(where, source, vuln_id, "", "is not an object")
        description = issue.get("description", "")
        if not isinstance(description, str):
            raise _bad(where, source, vuln_id, "", "description is not a string")
        releases = issue.get("releases", {})
        # The tracker writes an issue that touches no release as "releases": [].
        if releases == []:
            continue
        if not isinstance(releases, dict):
            raise _bad(where, source, vuln_id, "", "releases is not an object")
        for release, entry in releases.items():
            yield (
                _row(vuln_id, release, entry) or _raise(where, source, vuln_id, release, entry),
                (description),
            )


def _row(vuln_id: str, release: str, entry: Any) -> Row | None:
    """The entry as a row, None when it is not the tracker's shape (the caller words it)."""
    if not isinstance(entry, dict):
        return None
    status = entry.get("status")
    fixed = entry.get("fixed_version")
    urgency = entry.get("urgency", DEFAULT_URGENCY)
    nodsa = entry.get("nodsa", False)
    reason = entry.get("nodsa_reason", "")
    if (
        type(status) is not str  # a list or an object is not hashable
        or status not in STATUSES
        or not (fixed is None or (isinstance(fixed, str) and _version_ok(fixed)))
        or not isinstance(urgency, str)
        or not isinstance(nodsa, str | bool)
        or not isinstance(reason, str)
        or not isinstance(entry.get("repositories", {}), dict)
    ):
        return None
    # The tracker gives nodsa as a note (possibly ""): its presence is what counts.
    return (
        vuln_id,
        release,
        status,
        fixed,
        urgency or DEFAULT_URGENCY,
        int(nodsa is not False),
        reason,
    )


def _version_ok(version: str) -> bool:
    if version == "0":
        return True
    if len(version) > 200:
        return False
    epoch, colon, rest = version.partition(":")
    if colon and not (epoch.isascii() and epoch.isdigit() and rest):
        return False
    if colon and int(epoch) > 2**31 - 1:  # dpkg's limit: the matcher would refuse it later
        return False
    upstream, hyphen, revision = (rest if colon else version).rpartition("-")
    if not hyphen:
        upstream, revision = revision, ""
    elif not revision or not _REVISION.fullmatch(revision):
        return False
    return bool(upstream) and _UPSTREAM.fullmatch(upstream) is not None


def _raise(where: str, source: str, vuln_id: str, release: str, entry: Any) -> Row:
    if not isinstance(entry, dict):
        raise _bad(where, source, vuln_id, release, "is not an object")
    status = entry.get("status")
    if not isinstance(status, str) or status not in STATUSES:
        raise _bad(where, source, vuln_id, release, f"unknown status {one_line(str(status), 40)!r}")
    fixed = entry.get("fixed_version")
    if fixed is not None:
        if not isinstance(fixed, str):
            raise _bad(where, source, vuln_id, release, "fixed_version is not a string")
        if not _version_ok(fixed):
            shown = one_line(fixed, 60)
            raise _bad(where, source, vuln_id, release, f"fixed_version {shown!r} is no version")
    raise _bad(
        where, source, vuln_id, release, "is not a tracker entry (a field has the wrong type)"
    )


def _bad(where: str, source: str, vuln_id: str, release: str, what: str) -> DistillError:
    at = f"{one_line(source, 80)} {one_line(vuln_id, 80)} {one_line(release, 40)}".rstrip()
    return DistillError(f"{where}: {at}: {what}", hint=_HINT)


def advisory(source: str, row: Row, description: str = "") -> DebianAdvisory:
    vuln_id, release, status, fixed, urgency, nodsa, reason = row
    return DebianAdvisory(
        vuln_id=vuln_id,
        source_package=source,
        release=release,
        status=status,
        fixed_version=fixed,
        urgency=urgency,
        nodsa=bool(nodsa),
        nodsa_reason=reason,
        description=description,
        origin=Origin.TRACKER,
    )
