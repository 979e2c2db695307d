from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.debian.control import field_lines, gc_paused, parse_stanza, parse_stanzas
from distill.errors import DistillError

PACKAGES = """\
Package: libc6
Source: glibc
Version: 2.41-12
Installed-Size: 12345
Maintainer: GNU Libc Maintainers <debian-glibc@lists.example.org>
Architecture: amd64
Multi-Arch: same
Depends: libgcc-s1
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
 .
 This package includes shared versions of the standard C library.
Homepage: https://www.gnu.org/software/libc/libc.html
Tag: role::shared-lib,
\tsuite::gnu
Filename: pool/main/g/glibc/libc6_2.41-12_amd64.deb
Size: 2850000
SHA256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

Package: base-files
Version: 13.8
Essential: yes
Architecture: amd64
Description: Debian base system miscellaneous files
"""


def test_parses_stanzas_fields_and_continuations() -> None:
    first, second = parse_stanzas(PACKAGES)
    assert first["package"] == "libc6"
    assert first["homepage"] == "https://www.gnu.org/software/libc/libc.html"  # colons in value
    assert first["description"] == (
        "GNU C Library: Shared libraries\n"
        " Contains the standard libraries that are used by nearly all programs on\n"
        " the system.\n"
        " .\n"
        " This package includes shared versions of the standard C library."
    )
    assert first["tag"] == "role::shared-lib,\n\tsuite::gnu"
    assert first["sha256"].endswith("cdef")  # the last field of a stanza keeps no newline
    assert second == {
        "package": "base-files",
        "version": "13.8",
        "essential": "yes",
        "architecture": "amd64",
        "description": "Debian base system miscellaneous files",
    }
    assert list(first)[:3] == ["package", "source", "version"]  # file order is kept


def test_field_names_are_case_insensitive() -> None:
    (stanza,) = parse_stanzas("PACKAGE: a\nMulti-ARCH: foreign\npre-depends: b\n")
    assert stanza == {"package": "a", "multi-arch": "foreign", "pre-depends": "b"}


def test_release_checksum_lists() -> None:
    release = (
        "Origin: Debian\n"
        "Suite: stable\n"
        "Acquire-By-Hash: yes\n"
        "SHA256:\n"
        " 0f1e 1234 main/binary-amd64/Packages\n"
        " a0b1    98765 main/binary-amd64/Packages.xz\n"
    )
    stanza = parse_stanza(release)
    assert stanza["acquire-by-hash"] == "yes"
    assert field_lines(stanza["sha256"]) == [
        "0f1e 1234 main/binary-amd64/Packages",
        "a0b1    98765 main/binary-amd64/Packages.xz",
    ]


def test_blank_line_runs_crlf_comments_and_blank_separators() -> None:
    text = (
        "\r\n\r\n# a deb822 .sources file\r\n"
        "Types: deb\r\n"
        "# a comment inside a stanza ends nothing\r\n"
        "URIs: http://mirror.invalid/debian\r\n"
        "Suites: trixie\r\n"
        "  trixie-updates\r\n"
        "\r\n"
        " \t \r\n"
        "\r\n"
        "Types: deb-src\r\n"
        "   \r\n"
        "Suites: sid\r\n"
        "#trailing comment\r\n"
    )
    assert parse_stanzas(text) == [
        {
            "types": "deb",
            "uris": "http://mirror.invalid/debian",
            "suites": "trixie\n  trixie-updates",
        },
        {"types": "deb-src"},
        {"suites": "sid"},  # a whitespace-only line separates stanzas, like a blank one
    ]


def test_empty_input_and_empty_values() -> None:
    assert parse_stanzas("") == []
    assert parse_stanzas("\n\n\n") == []
    assert parse_stanza("") == {}
    assert parse_stanza("Empty:\nFull: x") == {"empty": "", "full": "x"}


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("Package: a\nVersion 1.0\n", 2, "expected 'Name: value'"),
        ("Package: a\n\nno colon here\n", 3, "expected 'Name: value'"),
        ("not a field", 1, "expected 'Name: value'"),
        ("Package: a\nBad Name: x\n", 2, "expected 'Name: value'"),
        ("Package: a\n: x\n", 2, "expected 'Name: value'"),
        ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n", 1, "expected 'Name: value'"),
        (" leading: continuation\n", 1, "continuation line outside any field"),
        ("Package: a\n\n continued\n", 3, "continuation line outside any field"),
        ("\n\n\tcontinued\n", 3, "continuation line outside any field"),
        ("Package: a\nVersion: 1\npackage: b\n", 3, "repeats the one on line 1"),
        ("A: 1\n\nB: 2\r\n# c\r\nb: 3\r\n", 5, "repeats the one on line 3"),
    ],
)
def test_malformed_input_names_the_line(text: str, line: int, what: str) -> None:
    with pytest.raises(DistillError) as info:
        parse_stanzas(text, origin="test.Packages")
    assert info.value.message.startswith(f"test.Packages: line {line}: ")
    assert what in info.value.message
    assert info.value.hint


def test_parse_stanza_refuses_several_stanzas() -> None:
    with pytest.raises(DistillError) as info:
        parse_stanza("A: 1\n\nB: 2\n", origin="Release")
    assert "found 2" in info.value.message


def test_many_stanzas_keep_their_order() -> None:
    text = "".join(f"Package: p{i}\nVersion: {i}\n\n" for i in range(5000))
    stanzas = parse_stanzas(text)
    assert len(stanzas) == 5000
    assert stanzas[4999] == {"package": "p4999", "version": "4999"}


def test_gc_paused_restores_the_collector_state() -> None:
    assert gc.isenabled()
    with pytest.raises(DistillError), gc_paused():
        assert not gc.isenabled()
        parse_stanzas("broken")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a caller's choice to run without the collector is kept
    finally:
        gc.enable()


# --- round trip: whatever we write, we read back ------------------------------------------------

_PRINTABLE = "".join(map(chr, range(0x20, 0x7F)))
_names = st.builds(
    str.__add__,
    st.sampled_from("AaPpSsZz"),
    st.text(alphabet="AaBbZz09-", max_size=12),
)
_first_lines = st.text(alphabet=_PRINTABLE, max_size=30).map(str.strip)
_more_lines = st.lists(
    st.builds(str.__add__, st.sampled_from(" \t"), _first_lines.filter(bool)), max_size=3
)
_Field = tuple[str, str, list[str]]
# Names differing only in case are the same field, so a stanza may hold only one of them.
_stanzas = st.lists(
    st.tuples(_names, _first_lines, _more_lines),
    min_size=1,
    max_size=6,
    unique_by=lambda field: field[0].lower(),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_stanzas, max_size=5), st.sampled_from(["\n", "\r\n"]), st.integers(1, 3))
def test_round_trip(stanzas: list[list[_Field]], newline: str, blank_lines: int) -> None:
    blocks = [
        newline.join(
            line for name, first, more in stanza for line in [f"{name}: {first}".rstrip(" "), *more]
        )
        for stanza in stanzas
    ]
    text = (newline * (blank_lines + 1)).join(blocks) + newline
    expected = [
        {name.lower(): "\n".join([first, *more]) for name, first, more in stanza}
        for stanza in stanzas
    ]
    assert parse_stanzas(text) == expected
