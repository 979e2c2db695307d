"""The Debian matcher, fed through the real import path from tracker-format fixtures.

Every fixture is built here from the tracker's structure ``{source: {issue: {description?,
releases: {codename: {status, repositories, fixed_version?, urgency, nodsa?,
nodsa_reason?}}}}}``; each expected finding follows from the fixture's own fields and the
rules of docs/scan.md, never from a recorded run.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from distill.debian.version import compare_versions, parse_version
from distill.errors import DistillError
from distill.scan import tracker
from distill.scan.db import (
    SCHEMA_VERSION,
    TRACKER_SOURCE,
    Import,
    SourceKind,
    VulnDB,
    detect_kind,
    import_sources,
    imports_for,
)
from distill.scan.match import match_debian, severity_of, status_of
from distill.scan.model import DebianAdvisory, Finding, ImagePackage, Origin, Status

RELEASE = "bookworm"


def entry(
    status: str,
    urgency: str,
    fixed: str | None = None,
    nodsa: str | None = None,
    reason: str | None = None,
    repo: str = "1.0-1",
) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "repositories": {RELEASE: repo}, "urgency": urgency}
    if fixed is not None:
        out["fixed_version"] = fixed
    if nodsa is not None:
        out["nodsa"] = nodsa
    if reason is not None:
        out["nodsa_reason"] = reason
    return out


def issue(release_entry: dict[str, Any] | list[Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"releases": release_entry}
    if description:
        out["description"] = description
    return out


# One source package per quirk; the installed version of each is INSTALLED[source].
INSTALLED = {
    "fixedpkg": "1.0-1",
    "zeropkg": "1.0-1",
    "openpkg": "2.0-3",
    "undetpkg": "1.0-1",
    "eolpkg": "0.9-1",
    "nodsapkg": "1.0-1",
    "uptodate": "1.2-1",
    "temppkg": "4.0-1",
    "emptypkg": "1.0-1",
    "tildepkg": "1.0~rc1-1",
    "epochpkg": "1:0.5-1",
}

FIXTURE: dict[str, Any] = {
    "fixedpkg": {
        "CVE-2024-0001": issue(
            {RELEASE: entry("resolved", "high", fixed="1.0-2")}, "A heap overflow.\nMore text."
        ),
        "CVE-2024-0002": issue({RELEASE: entry("resolved", "medium*", fixed="1.0-1+deb12u1")}),
        "CVE-2024-0003": issue({RELEASE: entry("resolved", "low**", fixed="1.1-1")}),
        "CVE-2024-0004": issue({RELEASE: entry("resolved", "unimportant", fixed="2.0-1")}),
        # Fixed for another release only: must not leak into bookworm.
        "CVE-2024-0005": issue({"trixie": entry("resolved", "high", fixed="9.9-1")}),
    },
    "zeropkg": {"CVE-2024-0010": issue({RELEASE: entry("resolved", "high", fixed="0")})},
    "openpkg": {
        "CVE-2024-0020": issue({RELEASE: entry("open", "medium")}),
        "CVE-2024-0021": issue({RELEASE: entry("open", "not yet assigned")}),
    },
    "undetpkg": {"CVE-2024-0030": issue({RELEASE: entry("undetermined", "high")})},
    "eolpkg": {"CVE-2024-0040": issue({RELEASE: entry("open", "end-of-life")})},
    "nodsapkg": {
        "CVE-2024-0050": issue(
            {RELEASE: entry("open", "low", nodsa="Minor issue", reason="ignored")}
        ),
        "CVE-2024-0051": issue({RELEASE: entry("open", "medium", nodsa="", reason="postponed")}),
        "CVE-2024-0052": issue({RELEASE: entry("open", "high*", nodsa="Minor issue", reason="")}),
    },
    "uptodate": {
        "CVE-2024-0060": issue({RELEASE: entry("resolved", "high", fixed="1.2-1")}),
        "CVE-2024-0061": issue({RELEASE: entry("resolved", "high", fixed="1.1-5")}),
    },
    "temppkg": {"TEMP-0123456-ABCDEF": issue({RELEASE: entry("open", "unimportant")})},
    "emptypkg": {"CVE-2024-0070": issue([]), "TEMP-0000000-000000": issue([])},
    "tildepkg": {"CVE-2024-0080": issue({RELEASE: entry("resolved", "medium", fixed="1.0-1")})},
    "epochpkg": {"CVE-2024-0090": issue({RELEASE: entry("resolved", "medium", fixed="2.0-1")})},
}

# What the rules say each (source, id) gives: (status, severity, fixed_version).
EXPECTED: dict[tuple[str, str], tuple[Status, str, str | None]] = {
    ("fixedpkg", "CVE-2024-0001"): (Status.FIXED, "HIGH", "1.0-2"),
    ("fixedpkg", "CVE-2024-0002"): (Status.FIXED, "MEDIUM", "1.0-1+deb12u1"),
    ("fixedpkg", "CVE-2024-0003"): (Status.FIXED, "LOW", "1.1-1"),
    ("fixedpkg", "CVE-2024-0004"): (Status.FIXED, "LOW", "2.0-1"),
    ("openpkg", "CVE-2024-0020"): (Status.AFFECTED, "MEDIUM", None),
    ("openpkg", "CVE-2024-0021"): (Status.AFFECTED, "UNKNOWN", None),
    ("eolpkg", "CVE-2024-0040"): (Status.END_OF_LIFE, "UNKNOWN", None),
    ("nodsapkg", "CVE-2024-0050"): (Status.WILL_NOT_FIX, "LOW", None),
    ("nodsapkg", "CVE-2024-0051"): (Status.FIX_DEFERRED, "MEDIUM", None),
    ("nodsapkg", "CVE-2024-0052"): (Status.AFFECTED, "HIGH", None),
    ("temppkg", "TEMP-0123456-ABCDEF"): (Status.AFFECTED, "LOW", None),
    ("tildepkg", "CVE-2024-0080"): (Status.FIXED, "MEDIUM", "1.0-1"),
}


def write_fixture(path: Path, data: dict[str, Any] = FIXTURE) -> Path:
    path.write_text(json.dumps(data, indent=1))
    return path


def package(source: str, binary: str | None = None, version: str | None = None) -> ImagePackage:
    installed = INSTALLED[source]
    name = binary or f"lib{source}1"
    return ImagePackage(
        ecosystem="deb",
        name=name,
        # A binNMU'd binary: its own version differs, its source version does not.
        version=version or f"{installed}+b1",
        purl=f"pkg:deb/debian/{name}@{version or installed}",
        source_name=source,
        source_version=installed,
    )


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "cache" / "vuln.db"
    import_sources(path, imports_for([write_fixture(tmp_path / "tracker.json")]))
    return path


def scan(db_path: Path, packages: list[ImagePackage], release: str = RELEASE) -> list[Finding]:
    db = VulnDB.open(db_path)
    assert db is not None
    with db:
        sources = {p.source_name or p.name for p in packages}
        return match_debian(packages, db.debian_advisories(release, sources))


def test_every_quirk_and_mapping(db_path: Path) -> None:
    packages = [package(source) for source in INSTALLED]
    findings = scan(db_path, packages)
    got = {
        (f.package.source_name, f.vuln_id): (f.status, f.severity, f.fixed_version)
        for f in findings
    }
    assert got == EXPECTED
    assert all(f.origin is Origin.TRACKER for f in findings)
    # Matched by source package: each finding is about the binary package the image has.
    assert {f.package.name for f in findings} == {f"lib{s}1" for s, _ in EXPECTED}
    first = next(f for f in findings if f.vuln_id == "CVE-2024-0001")
    assert first.title == "A heap overflow."


def test_the_fixture_exercises_every_status_and_severity() -> None:
    assert {status for status, _, _ in EXPECTED.values()} == set(Status)
    assert {severity for _, severity, _ in EXPECTED.values()} == {
        "LOW",
        "MEDIUM",
        "HIGH",
        "UNKNOWN",
    }


@pytest.mark.parametrize(
    ("source", "vuln_id"),
    [
        ("zeropkg", "CVE-2024-0010"),  # fixed_version "0": never affected
        ("undetpkg", "CVE-2024-0030"),  # undetermined: never reported
        ("uptodate", "CVE-2024-0060"),  # installed == fixed
        ("uptodate", "CVE-2024-0061"),  # installed > fixed
        ("epochpkg", "CVE-2024-0090"),  # epoch 1 beats 2.0-1
        ("fixedpkg", "CVE-2024-0005"),  # another release's advisory
    ],
)
def test_not_reported(db_path: Path, source: str, vuln_id: str) -> None:
    findings = scan(db_path, [package(source)])
    assert vuln_id not in {f.vuln_id for f in findings}
    # The advisory itself was imported (it is the rule, not the import, that drops it).
    db = VulnDB.open(db_path)
    assert db is not None
    with db:
        stored = {a.vuln_id for a in db.debian_advisories("trixie", [source])}
        stored |= {a.vuln_id for a in db.debian_advisories(RELEASE, [source])}
    assert vuln_id in stored


def test_empty_releases_list_imports_nothing_for_that_issue(db_path: Path) -> None:
    db = VulnDB.open(db_path)
    assert db is not None
    with db:
        assert db.debian_advisories(RELEASE, ["emptypkg"]) == []
        st = db.status()
    expected = sum(
        len(i["releases"]) for issues in FIXTURE.values() for i in issues.values() if i["releases"]
    )
    assert [(s.name, s.count) for s in st.sources] == [(TRACKER_SOURCE, expected)]
    assert st.releases == {RELEASE: expected - 1, "trixie": 1}


def test_versions_compare_as_dpkg_does() -> None:
    # The oracle for the tilde and epoch cases above.
    assert compare_versions("1.0~rc1-1", "1.0-1") < 0
    assert compare_versions("1:0.5-1", "2.0-1") > 0


def test_release_without_data(db_path: Path) -> None:
    db = VulnDB.open(db_path)
    assert db is not None
    with db:
        assert db.has_release(RELEASE)
        assert db.has_release("trixie")
        assert not db.has_release("bullseye")
    assert scan(db_path, [package("fixedpkg")], release="bullseye") == []


def test_packages_of_other_ecosystems_are_ignored(db_path: Path) -> None:
    pypi = ImagePackage("pypi", "fixedpkg", "0.1", "pkg:pypi/fixedpkg@0.1")
    assert scan(db_path, [pypi]) == []


@pytest.mark.parametrize(
    ("urgency", "severity"),
    [
        ("unimportant", "LOW"),
        ("low", "LOW"),
        ("low*", "LOW"),
        ("medium", "MEDIUM"),
        ("medium**", "MEDIUM"),
        ("high", "HIGH"),
        ("high*", "HIGH"),
        ("not yet assigned", "UNKNOWN"),
        ("end-of-life", "UNKNOWN"),
        ("", "UNKNOWN"),
    ],
)
def test_severity_of(urgency: str, severity: str) -> None:
    assert severity_of(urgency) == severity


def advisory(**kw: Any) -> DebianAdvisory:
    base: dict[str, Any] = {
        "vuln_id": "CVE-2024-9999",
        "source_package": "fixedpkg",
        "release": RELEASE,
        "status": "open",
        "fixed_version": None,
        "urgency": "medium",
    }
    base.update(kw)
    return DebianAdvisory(**base)


@pytest.mark.parametrize(
    ("kw", "status"),
    [
        ({}, Status.AFFECTED),
        ({"nodsa": True, "nodsa_reason": "ignored"}, Status.WILL_NOT_FIX),
        ({"nodsa": True, "nodsa_reason": "postponed"}, Status.FIX_DEFERRED),
        ({"nodsa": True, "nodsa_reason": ""}, Status.AFFECTED),
        ({"urgency": "end-of-life"}, Status.END_OF_LIFE),
        ({"status": "undetermined"}, None),
        ({"status": "resolved", "fixed_version": "0"}, None),
        ({"status": "resolved", "fixed_version": "1.0-2"}, Status.FIXED),
        ({"status": "resolved", "fixed_version": "1.0-1"}, None),
        # Open in the release yet with a version that has the fix (the tracker's "open"
        # entries can carry one): fixed when older, nothing when not.
        ({"fixed_version": "1.0-2"}, Status.FIXED),
        ({"fixed_version": "0.9-1"}, None),
    ],
)
def test_status_rules(kw: dict[str, Any], status: Status | None) -> None:
    assert status_of(advisory(**kw), "1.0-1") is status


def test_changelog_advisories_defer_to_the_tracker() -> None:
    pkg = package("fixedpkg")
    changelog = dict(origin=Origin.CHANGELOG, status="resolved", urgency="not yet assigned")
    advisories = [
        # The tracker settled this one as fixed long ago: the changelog's mention is moot.
        advisory(vuln_id="CVE-1", status="resolved", fixed_version="0.5-1", urgency="high"),
        advisory(vuln_id="CVE-1", fixed_version="1.0-3", **changelog),
        # Undetermined in the tracker: the changelog's fix is reported, with the tracker's
        # severity.
        advisory(vuln_id="CVE-2", status="undetermined", urgency="high"),
        advisory(vuln_id="CVE-2", fixed_version="1.0-3", **changelog),
        # Unknown to the tracker: a changelog finding of unknown severity.
        advisory(vuln_id="CVE-3", fixed_version="1.0-3", **changelog),
    ]
    got = {
        f.vuln_id: (f.status, f.severity, f.origin, f.fixed_version)
        for f in match_debian([pkg], advisories)
    }
    assert got == {
        "CVE-2": (Status.FIXED, "HIGH", Origin.CHANGELOG, "1.0-3"),
        "CVE-3": (Status.FIXED, "UNKNOWN", Origin.CHANGELOG, "1.0-3"),
    }


# ---------------------------------------------------------------- the reader and the DB


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_streaming_reader_matches_json_loads(chunk: int) -> None:
    data = json.dumps(FIXTURE, indent=2).encode()
    got = dict(tracker.iter_tracker(io.BytesIO(data), "fixture", chunk=chunk))
    assert got == json.loads(data)


def test_streaming_reader_handles_multibyte_text_across_chunks() -> None:
    data = json.dumps({"pkg": {"CVE-1": issue([], "naïve ünïcödé — ✓" * 3)}}, ensure_ascii=False)
    assert dict(tracker.iter_tracker(io.BytesIO(data.encode()), "x", chunk=3)) == json.loads(data)


MALFORMED = [
    b"",
    b"[]",
    b'{"pkg": {"CVE-1": {"releases": {"bookworm": {"status": "open", "urgency": "low"}}}}',
    b'{"pkg": {"CVE-1": {"releases": {"bookworm": {"status": "fixed", "urgency": "low"}}}}}',
    b'{"pkg": {"CVE-1": {"releases": {"bookworm": {"status": "resolved", "urgency": "low",'
    b' "fixed_version": "not a version!"}}}}}',
    b'{"pkg": {"CVE-1": {"releases": "bookworm"}}}',
    b'{"pkg": {"CVE-1": {"releases": {"bookworm": {"status": "open", "urgency": 3}}}}}',
    b'{"pkg": ["CVE-1"]}',
    b'{"pkg": {}} trailing',
    b'{"pkg": {}, }',
    b"\xff\xfe{}",
    b'{"pkg": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # nested past any stack
    b'{"pkg": {"CVE-1": {"releases": {"bookworm": {"status": "open", "urgency": "low", '
    b'"nodsa": 3}}}}}',
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_tracker_is_refused_and_the_old_db_kept(db_path: Path, data: bytes) -> None:
    before = db_path.read_bytes()
    bad = db_path.parent / "bad.json"
    bad.write_bytes(data)
    with pytest.raises(DistillError):
        import_sources(db_path, [Import(bad, SourceKind.TRACKER, TRACKER_SOURCE)])
    assert db_path.read_bytes() == before
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["bad.json", "vuln.db"]


def test_reimport_replaces_the_tracker(db_path: Path, tmp_path: Path) -> None:
    small = {"openpkg": {"CVE-2024-0020": issue({RELEASE: entry("open", "medium")})}}
    import_sources(db_path, imports_for([write_fixture(tmp_path / "small.json", small)]))
    findings = scan(db_path, [package(s) for s in INSTALLED])
    assert [(f.vuln_id, f.status) for f in findings] == [("CVE-2024-0020", Status.AFFECTED)]


def test_gzipped_tracker(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "tracker.json.gz"
    path.write_bytes(gzip.compress(json.dumps(FIXTURE).encode()))
    assert detect_kind(path) is SourceKind.TRACKER
    db = tmp_path / "v.db"
    import_sources(db, imports_for([path]))
    got = {(f.package.source_name, f.vuln_id) for f in scan(db, [package(s) for s in INSTALLED])}
    assert got == set(EXPECTED)


@pytest.mark.parametrize("version", [SCHEMA_VERSION - 1, SCHEMA_VERSION + 1])
def test_other_schema_is_refused_with_a_hint(db_path: Path, version: int) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()
    with pytest.raises(DistillError) as info:
        VulnDB.open(db_path)
    assert "schema" in info.value.message
    assert "distill db update" in (info.value.hint or "")


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "vuln.db"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(DistillError):
        VulnDB.open(path)
    assert VulnDB.open(tmp_path / "missing.db") is None


@given(st.text(alphabet="0123456789:-.+~aZ!", min_size=1, max_size=12))
@example("3000000000:0")  # an epoch beyond dpkg's int (found by this test)
@example(f"{2**31 - 1}:0")
@settings(max_examples=3000, deadline=None)
def test_import_version_check_agrees_with_dpkg_parse(version: str) -> None:
    # The import's cheap check must refuse exactly what the matcher's full parse would.
    try:
        parse_version(version)
        parses = True
    except DistillError:
        parses = False
    assert tracker._version_ok(version) is parses


@pytest.mark.parametrize("status", ["resolved", "open"])
def test_fixed_version_zero_means_never_affected_even_below_zero(status: str) -> None:
    # dpkg orders "0~git1-1" before "0": only the rule, not the comparison, keeps it out.
    assert compare_versions("0~git1-1", "0") < 0
    assert status_of(advisory(status=status, fixed_version="0"), "0~git1-1") is None
