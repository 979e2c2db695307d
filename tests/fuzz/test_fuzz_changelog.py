"""Fuzz the Debian changelog reader: changelog text, and the gzip stream it comes in."""

from __future__ import annotations

import gzip
import io

from fuzzing import FUZZ, clean, mutated_bytes, mutated_text
from hypothesis import given

from distill.debian.changelog import parse_changelog, read_gzip_capped
from distill.errors import DistillError

SAMPLE = (
    "foo (1:2.0~rc1-1+deb12u1) bookworm-security; urgency=high, binary-only=yes\n"
    "\n"
    "  * Fix CVE-2024-1111 and cve-2024-22222.\n"
    "\n"
    " -- Jane Doe <jane@example.invalid>  Tue, 02 Jan 2024 10:00:00 +0100\n"
    "\n"
    "foo (2.0~rc1-1) unstable; urgency=medium\n"
    "\n"
    "  * Initial release (CVE-2019-9999).\n"
    "\n"
    " -- Jane Doe <jane@example.invalid>  Sun, 31 Dec 2023 00:00:00 +0000\n"
    "\n"
    "Local variables:\n"
)


@FUZZ
@given(mutated_text(SAMPLE, max_ops=6))
def test_changelog_text(text: str) -> None:
    log = clean(lambda: parse_changelog(text))
    if isinstance(log, DistillError):
        return
    for entry in log.entries:
        assert entry.version and all(c.startswith("CVE-") for c in entry.cves)


@FUZZ
@given(mutated_bytes(gzip.compress(SAMPLE.encode(), mtime=0) * 2, max_ops=6))
def test_changelog_gzip(data: bytes) -> None:
    result = clean(lambda: read_gzip_capped(io.BytesIO(data), 4096))
    if not isinstance(result, DistillError):
        text, _cut = result
        assert len(text) <= 4096
