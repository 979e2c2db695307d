from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from distill.cache import BlobCache
from distill.debian import archive
from distill.debian.binary import BinaryPackage, Relation, RelOp
from distill.debian.control import parse_stanza
from distill.debian.stanzas import (
    index_tables,
    other_relation_names,
    package_from_stanza,
    parse_packages_index,
    parse_provides,
    parse_relations,
)
from distill.errors import DistillError

SHA = "ab" * 32

INDEX = f"""\
Package: libc6
Source: glibc
Version: 2.41-12
Installed-Size: 12345
Maintainer: GNU Libc Maintainers <glibc@lists.example.org>
Architecture: amd64
Multi-Arch: same
Depends: libgcc-s1
Recommends: libidn2-0
Breaks: hurd (<< 1:0.9.git20220301-2), nscd (<< 2.41)
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
 .
 This package includes shared versions of the standard C library.
Priority: optional
Section: libs
Filename: pool/main/g/glibc/libc6_2.41-12_amd64.deb
Size: 2850000
SHA256: {SHA}

Package: dash
Version: 0.5.12-12
Essential: yes
Installed-Size: 233
Pre-Depends: libc6 (>= 2.38), debconf (>= 0.5) | debconf-2.0
Depends: debianutils (>= 5.6-0.1)
Architecture: amd64
Multi-Arch: foreign
Provides: sh
Filename: pool/main/d/dash/dash_0.5.12-12_amd64.deb
Size: 93000
SHA256: {SHA}

Package: libssl3t64
Source: openssl (3.5.1-1)
Version: 3.5.1-1+b1
Architecture: amd64
Provides: libssl3 (= 3.5.1-1+b1), libssl-abi:any(=3)
Depends: libc6 (>= 2.34),
 libzstd1 (>= 1.5.5),
 zlib1g:any (>= 1:1.1.4)
Filename: pool/main/o/openssl/libssl3t64_3.5.1-1+b1_amd64.deb
Size: 2400000
SHA256: {SHA}
"""


def _rel(name: str, op: RelOp | None = None, version: str | None = None) -> Relation:
    return Relation(name, None, op, version)


def test_parse_packages_index_builds_the_model() -> None:
    libc, dash, ssl = parse_packages_index(INDEX, "trixie")
    assert libc == BinaryPackage(
        name="libc6",
        version="2.41-12",
        architecture="amd64",
        pocket="trixie",
        filename="pool/main/g/glibc/libc6_2.41-12_amd64.deb",
        size=2850000,
        sha256=SHA,
        source="glibc",
        source_version="2.41-12",
        multi_arch="same",
        essential=False,
        priority="optional",
        section="libs",
        installed_size=12345,
        depends_field="libgcc-s1",
        other_relation_names=("hurd", "nscd", "libidn2-0"),  # apt's order: Breaks first
    )
    assert libc.depends == ((_rel("libgcc-s1"),),)
    assert dash.essential is True
    assert dash.multi_arch == "foreign"
    assert (dash.source, dash.source_version) == ("dash", "0.5.12-12")  # no Source field
    assert dash.pre_depends == (
        (_rel("libc6", RelOp.GE, "2.38"),),
        (_rel("debconf", RelOp.GE, "0.5"), _rel("debconf-2.0")),
    )
    assert dash.provides == (_rel("sh"),)
    assert (ssl.source, ssl.source_version) == ("openssl", "3.5.1-1")  # binNMU: versions differ
    assert ssl.depends == (
        (_rel("libc6", RelOp.GE, "2.34"),),
        (_rel("libzstd1", RelOp.GE, "1.5.5"),),
        (Relation("zlib1g", "any", RelOp.GE, "1:1.1.4"),),
    )
    assert ssl.provides == (
        _rel("libssl3", RelOp.EQ, "3.5.1-1+b1"),
        Relation("libssl-abi", "any", RelOp.EQ, "3"),
    )
    assert ssl.installed_size == 0 and ssl.priority == "" and ssl.key == "libssl3t64:amd64"
    assert (dash.other_relation_names, ssl.other_relation_names) == ((), ())


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("", ()),
        ("a", ((_rel("a"),),)),
        ("a,b", ((_rel("a"),), (_rel("b"),))),
        ("a , b ,", ((_rel("a"),), (_rel("b"),))),  # a trailing comma is tolerated
        ("a|b | c", ((_rel("a"), _rel("b"), _rel("c")),)),
        ("a (<< 1)", ((_rel("a", RelOp.LT, "1"),),)),
        ("a (<= 1)", ((_rel("a", RelOp.LE, "1"),),)),
        ("a (= 1)", ((_rel("a", RelOp.EQ, "1"),),)),
        ("a (>= 1)", ((_rel("a", RelOp.GE, "1"),),)),
        ("a (>> 1)", ((_rel("a", RelOp.GT, "1"),),)),
        ("a (< 1)", ((_rel("a", RelOp.LE, "1"),),)),  # obsolete '<' means '<='
        ("a (> 1)", ((_rel("a", RelOp.GE, "1"),),)),  # obsolete '>' means '>='
        ("a(>=1:2.0~rc1-1+b2)", ((_rel("a", RelOp.GE, "1:2.0~rc1-1+b2"),),)),
        ("  a  (  >=  1  )  ", ((_rel("a", RelOp.GE, "1"),),)),
        ("a\n (>= 1),\n b", ((_rel("a", RelOp.GE, "1"),), (_rel("b"),))),
        ("python3:any (>= 3.11~)", ((Relation("python3", "any", RelOp.GE, "3.11~"),),)),
        ("gcc:native", ((Relation("gcc", "native"),),)),
        (
            "libfoo:amd64 | libfoo:i386",
            ((Relation("libfoo", "amd64"), Relation("libfoo", "i386")),),
        ),
        ("lib++c.1-x", ((_rel("lib++c.1-x"),),)),
        ("a [amd64 !i386] <!nocheck> <stage1 cross>", ((_rel("a"),),)),
        ("a (>= 1) [linux-any], b <!nodoc>", ((_rel("a", RelOp.GE, "1"),), (_rel("b"),))),
    ],
)
def test_parse_relations(field: str, expected: tuple[tuple[Relation, ...], ...]) -> None:
    assert parse_relations(field) == expected
    assert parse_relations(field) == expected  # the cached answer is the same


@pytest.mark.parametrize(
    "field",
    [
        "a (>= 1",
        "a (=> 1)",
        "a (>= )",
        "a b",
        "a |",
        "| a",
        "a || b",
        "A",  # package names are lower-case
        "a (>= 1) (<< 2)",
        "a:",
        "a ((>= 1))",
    ],
)
def test_parse_relations_rejects_garbage(field: str) -> None:
    with pytest.raises(DistillError) as info:
        parse_relations(field)
    assert "cannot parse package relation" in info.value.message


def test_parse_provides() -> None:
    assert parse_provides("") == ()
    assert parse_provides("mail-transport-agent") == (_rel("mail-transport-agent"),)
    assert parse_provides("foo (= 1.2), bar,baz(=1:3-1~b)") == (
        _rel("foo", RelOp.EQ, "1.2"),
        _rel("bar"),
        _rel("baz", RelOp.EQ, "1:3-1~b"),
    )
    assert parse_provides("a:any (= 1) ,") == (Relation("a", "any", RelOp.EQ, "1"),)
    assert parse_provides(" a,\n b") == (_rel("a"), _rel("b"))


@pytest.mark.parametrize(
    ("field", "why"),
    [
        ("foo (>= 1.2)", "must use '='"),
        ("foo (<< 1)", "must use '='"),
        ("a | b", "alternatives"),
        ("a (= 1", "unexpected syntax"),
    ],
)
def test_parse_provides_rejects(field: str, why: str) -> None:
    with pytest.raises(DistillError) as info:
        parse_provides(field)
    assert why in info.value.message


def _stanza(**extra: str) -> dict[str, str]:
    stanza = parse_stanza(
        f"Package: p\nVersion: 1\nArchitecture: all\nFilename: pool/p.deb\nSize: 1\nSHA256: {SHA}\n"
    )
    stanza.update({key.replace("_", "-"): value for key, value in extra.items()})
    return stanza


def test_package_from_stanza_defaults() -> None:
    package = package_from_stanza(_stanza(), "bookworm-security")
    assert package.pocket == "bookworm-security"
    assert (package.multi_arch, package.essential, package.installed_size) == ("no", False, 0)
    assert (package.depends, package.pre_depends, package.provides) == ((), (), ())
    assert package_from_stanza(_stanza(source="src"), "x").source_version == "1"
    assert package_from_stanza(_stanza(essential="no"), "x").essential is False


@pytest.mark.parametrize(
    ("stanza", "message"),
    [
        ({"package": "p"}, "package 'p' has no 'version' field"),
        ({k: v for k, v in _stanza().items() if k != "sha256"}, "has no 'sha256' field"),
        ({k: v for k, v in _stanza().items() if k != "filename"}, "has no 'filename' field"),
        (_stanza(size="big"), "not a number"),
        (_stanza(installed_size="1.5"), "not a number"),
        (_stanza(depends="libc6 (>= 2.3"), "package 'p': cannot parse package relation"),
        (_stanza(provides="x (>> 1)"), "must use '='"),
        (_stanza(source="src (1.0"), "field 'source' is malformed"),
    ],
)
def test_package_from_stanza_errors(stanza: dict[str, str], message: str) -> None:
    with pytest.raises(DistillError) as info:
        package_from_stanza(stanza, "trixie")
    assert info.value.message.startswith("trixie: ")
    assert message in info.value.message


def test_relations_are_shared_between_packages() -> None:
    one, two = parse_packages_index(
        INDEX.split("\n\n")[0] + "\n\n" + INDEX.split("\n\n")[0].replace("libc6", "libc6-x", 1),
        "trixie",
    )
    assert one.depends is two.depends


def test_index_errors_name_the_pocket_and_line() -> None:
    with pytest.raises(DistillError) as info:
        parse_packages_index("Package: a\nbroken\n", "trixie-updates")
    assert info.value.message.startswith("Packages index of trixie-updates: line 2:")


def test_other_relation_names_follow_apts_field_order() -> None:
    stanza = {
        "enhances": "e",
        "replaces": "r (<< 2), c",
        "suggests": "s1 | s2:any, s3:native",
        "recommends": "rec:amd64 (>= 1)",
        "breaks": "b (<< 1:2~)",
        "conflicts": "c,\n d [amd64] <!nocheck>",
        "depends": "not-these",
    }
    assert other_relation_names(stanza) == (
        "c", "d", "b", "rec:amd64", "s1", "s2:any", "s3:native", "r", "e",
    )  # fmt: skip
    assert other_relation_names({}) == ()


def test_index_tables() -> None:
    text = f"""\
Package: app
Version: 1
Architecture: amd64
Pre-Depends: pre
Depends: dep:any, alt1 | alt2:native
Recommends: rec:i386, rec2:amd64
Conflicts: conf
Provides: zvirt (= 1), avirt, anyvirt:any
Filename: pool/app.deb
Size: 1
SHA256: {SHA}

Package: second
Version: 1
Architecture: all
Provides: avirt (= 2)
Conflicts: app
Filename: pool/second.deb
Size: 1
SHA256: {SHA}
"""
    tables = index_tables(parse_packages_index(text, "trixie"), "amd64")
    # Own name, then Pre-Depends, Depends, Conflicts, Recommends, Provides; :any and foreign
    # targets create other packages than the native one in apt.
    assert tables.creation_order == (
        "app", "pre", "alt1", "alt2", "conf", "rec2", "zvirt", "avirt", "second",
    )  # fmt: skip
    assert tables.provided == ("anyvirt", "avirt", "avirt", "zvirt")
    assert tables.providers == (0, 0, 1, 0)
    assert tables.provided_versions == (None, None, "2", "1")


def test_relations_are_checked_at_load_and_parsed_lazily() -> None:
    package = package_from_stanza(_stanza(depends="a (>= 1), b | c"), "trixie")
    assert package.depends_field == "a (>= 1), b | c"
    assert package.depends == ((_rel("a", RelOp.GE, "1"),), (_rel("b"), _rel("c")))
    assert package.depends is package.depends  # parsed once, by its text
    # A package made by hand with a bad field fails when the field is read.
    broken = BinaryPackage("p", "1", "all", "x", "pool/p.deb", 1, SHA, "p", "1",
                           provides_field="x (>> 1)")  # fmt: skip
    with pytest.raises(DistillError, match="must use '='"):
        _ = broken.provides


def test_a_cached_index_loads_as_it_was_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = tmp_path / "Packages.xz"
    blob.write_bytes(lzma.compress(INDEX.encode(), format=lzma.FORMAT_XZ))
    cache = BlobCache(tmp_path / "cache")
    parsed = archive._load_packages(blob, "ab" * 32, "trixie", "amd64", cache)
    assert parsed[0] == tuple(parse_packages_index(INDEX, "trixie"))

    def no_parsing(text: str, pocket: str) -> list[BinaryPackage]:
        raise AssertionError("a cached index was parsed again")

    monkeypatch.setattr(archive, "parse_packages_index", no_parsing)
    loaded = archive._load_packages(blob, "ab" * 32, "trixie", "amd64", cache)
    assert loaded == parsed
    assert loaded[0][2].provides == parsed[0][2].provides
    # The tables depend on the architecture (a `foo:amd64` target), so the key names it.
    with pytest.raises(AssertionError, match="parsed again"):
        archive._load_packages(blob, "ab" * 32, "trixie", "arm64", cache)
    # A damaged entry is parsed again, not trusted.
    monkeypatch.undo()
    (entry,) = (cache.derived_dir / "packages").iterdir()
    entry.write_bytes(entry.read_bytes()[:1000])
    assert archive._load_packages(blob, "ab" * 32, "trixie", "amd64", cache) == parsed
