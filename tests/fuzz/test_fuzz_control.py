"""Fuzz the deb822 parser and what reads its stanzas: Packages indexes and Release files."""

from __future__ import annotations

from datetime import datetime

import pytest
from fuzzing import FUZZ, clean, mutated_text, nasty_text
from hypothesis import example, given
from hypothesis import strategies as st

from distill.debian.archive import Release, parse_release
from distill.debian.control import parse_stanza, parse_stanzas
from distill.debian.stanzas import parse_packages_index
from distill.errors import DistillError

_NAMES = ["Package", "Version", "Depends", "SHA256", "Description", "Size", "X-a", "a:b", "#c"]
_field_names = st.sampled_from(_NAMES) | st.text(
    st.characters(codec="ascii", exclude_characters="\n"), min_size=1, max_size=6
)
_values = st.text(max_size=20) | st.sampled_from(["", " ", "1.0-1", "libc6 (>= 2.36)", "a |"])


@st.composite
def deb822(draw: st.DrawFn) -> str:
    """Stanzas of fields with continuations, separated by blank, whitespace-only or comment
    lines, then edited in a few places."""
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    stanzas = []
    for _ in range(draw(st.integers(0, 4))):
        lines = []
        for _ in range(draw(st.integers(0, 5))):
            lines.append(
                f"{draw(_field_names)}:{draw(st.sampled_from(['', ' ', '  ', chr(9)]))}"
                f"{draw(_values)}"
            )
            for _ in range(draw(st.integers(0, 2))):
                lines.append(draw(st.sampled_from([" ", "\t", " ."])) + draw(_values))
            if draw(st.integers(0, 7)) == 0:
                lines.append("# " + draw(_values))
        stanzas.append(newline.join(lines))
    separator = draw(st.sampled_from(["\n\n", "\n \n", "\n\t\n", "\n\n\n", "\n#x\n\n"]))
    return draw(mutated_text(separator.replace("\n", newline).join(stanzas)))


def _check_stanzas(result: list[dict[str, str]] | DistillError) -> None:
    if isinstance(result, DistillError):
        return
    for stanza in result:
        assert stanza, "an empty stanza"
        for key, value in stanza.items():
            assert key and key == key.lower() and ":" not in key
            assert isinstance(value, str)


@FUZZ
@given(deb822())
def test_parse_stanzas_structured(text: str) -> None:
    _check_stanzas(clean(lambda: parse_stanzas(text, origin="fuzz")))
    clean(lambda: parse_stanza(text, origin="fuzz"))


@FUZZ
@given(st.text() | nasty_text)
def test_parse_stanzas_any_text(text: str) -> None:
    _check_stanzas(clean(lambda: parse_stanzas(text, origin="fuzz")))


_RELEASE = (
    "Origin: Debian\nSuite: stable\nCodename: trixie\n"
    "Date: Sat, 15 Nov 2025 09:03:38 UTC\nValid-Until: Sat, 22 Nov 2025 09:03:38 UTC\n"
    "Acquire-By-Hash: yes\nSHA256:\n"
    " 0a7d0e1b0e0b64b3b5d3a2c0d6d29e36b3d8f8a9b8cbbf1a1b7e7a4b3c2d1e0f 1234 main/binary-amd64/"
    "Packages.xz\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 "
    "main/binary-amd64/Release\n"
)


@st.composite
def release_text(draw: st.DrawFn) -> str:
    text = _RELEASE
    if draw(st.booleans()):  # a date or size of the wrong kind, in the right place
        bad = draw(
            st.sampled_from(["", "x", "-1", "99999999999999999999", "1e3", "١٢", "0x10"])
            | st.text(max_size=8)
        )
        field = draw(st.sampled_from(["1234", "Sat, 15 Nov 2025 09:03:38 UTC", "yes"]))
        text = text.replace(field, bad, 1)
    return draw(mutated_text(text))


@FUZZ
@example(text=_RELEASE.replace(" 1234 ", " x "))
@given(release_text())
def test_parse_release(text: str) -> None:
    result = clean(lambda: parse_release(text, "trixie"))
    if isinstance(result, Release):
        assert isinstance(result.date, datetime)
        assert all(f.size >= 0 for f in result.files.values())


_PACKAGE = (
    "Package: libc6\nSource: glibc (2.41-12)\nVersion: 2.41-12\nInstalled-Size: 12345\n"
    "Architecture: amd64\nMulti-Arch: same\nPriority: optional\nSection: libs\n"
    "Depends: libgcc-s1, libc-bin (= 2.41-12) | foo:any (>> 1~)\nProvides: libc6-x (= 1)\n"
    "Breaks: bar (<< 3)\nFilename: pool/main/g/glibc/libc6_2.41-12_amd64.deb\nSize: 3301234\n"
    "SHA256: 0a7d0e1b0e0b64b3b5d3a2c0d6d29e36b3d8f8a9b8cbbf1a1b7e7a4b3c2d1e0f\n"
    "Description: GNU C Library: Shared libraries\n Contains the standard libraries.\n"
)


@st.composite
def packages_text(draw: st.DrawFn) -> str:
    stanzas = []
    for _ in range(draw(st.integers(1, 3))):
        stanza = _PACKAGE
        if draw(st.booleans()):
            old = draw(
                st.sampled_from(
                    [
                        "12345",
                        "3301234",
                        "2.41-12",
                        "glibc (2.41-12)",
                        "libgcc-s1",
                        "(= 2.41-12)",
                        "(>> 1~)",
                        "libc6-x (= 1)",
                    ]
                )
            )
            stanza = stanza.replace(old, draw(nasty_text | st.sampled_from(["(", ")", "|", ","])))
        stanzas.append(stanza)
    return draw(mutated_text("\n".join(stanzas)))


@FUZZ
@given(packages_text())
def test_parse_packages_index(text: str) -> None:
    clean(lambda: parse_packages_index(text, "trixie"))


# Found by the targets above: a line opening with a blank other than space or tab (\r, \f,
# \x85...) was dropped without a word by the fast path; it is an error, as on the slow one.
@pytest.mark.parametrize("text", ["\r:", "A: 1\n\x0cB: 2", "A: 1\n\x85\n", "\x0bA: 1"])
def test_odd_blank_at_line_start_is_an_error(text: str) -> None:
    with pytest.raises(DistillError, match="expected 'Name: value'"):
        parse_stanzas(text)
