"""OSV: each ecosystem's version order, range evaluation, and findings through the DB.

Orderings come from the ecosystems' own specifications and test suites: SemVer 2.0 §11,
PEP 440's examples, and Maven's "Version Order Specification" and ComparableVersionTest
lists (as data, re-typed here).
"""

from __future__ import annotations

import itertools
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from distill.errors import DistillError
from distill.scan import osv
from distill.scan.db import SourceKind, VulnDB, detect_kind, import_sources, imports_for
from distill.scan.model import ImagePackage, Origin, Status
from distill.scan.versions import maven_compare, pep440_key, semver_key


def assert_ordered(versions: list[str], compare: Callable[[str, str], int]) -> None:
    for (i, a), (j, b) in itertools.product(enumerate(versions), repeat=2):
        assert compare(a, b) == (i > j) - (i < j), (a, b)


def by_key(key: Callable[[str], Any]) -> Callable[[str, str], int]:
    def compare(a: str, b: str) -> int:
        ka, kb = key(a), key(b)
        return (ka > kb) - (ka < kb)

    return compare


def test_semver_precedence_from_the_spec() -> None:
    # SemVer 2.0.0 §11's own example, plus major/minor/patch numeric order.
    assert_ordered(
        [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2.0",
            "1.10.0",
            "2.0.0",
        ],
        by_key(semver_key),
    )
    assert semver_key("1.0.0+build.5") == semver_key("1.0.0")  # build metadata ignored
    assert semver_key("v1.2.3") == semver_key("1.2.3")
    for bad in ("1.2", "01.2.3", "1.2.3-", "latest"):
        assert semver_key(bad) is None


def test_pep440_order_from_the_pep() -> None:
    assert_ordered(
        [
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
        ],
        by_key(pep440_key),
    )
    assert pep440_key("not a version") is None


# Maven's ComparableVersionTest: each list is in ascending order.
MAVEN_QUALIFIERS = [
    "1-alpha2snapshot", "1-alpha2", "1-alpha-123", "1-beta-2", "1-beta123", "1-m2", "1-m11",
    "1-rc", "1-cr2", "1-rc123", "1-SNAPSHOT", "1", "1-sp", "1-sp2", "1-sp123", "1-abc",
    "1-def", "1-pom-1", "1-1-snapshot", "1-1", "1-2", "1-123",
]  # fmt: skip
MAVEN_NUMBERS = [
    "2.0", "2-1", "2.0.a", "2.0.0.a", "2.0.2", "2.0.123", "2.1.0", "2.1-a", "2.1b", "2.1-c",
    "2.1-1", "2.1.0.1", "2.2", "2.123", "11.a2", "11.a11", "11.b2", "11.b11", "11.m2",
    "11.m11", "11", "11.a", "11b", "11c", "11m",
]  # fmt: skip


@pytest.mark.parametrize("versions", [MAVEN_QUALIFIERS, MAVEN_NUMBERS])
def test_maven_orderings_from_its_test_suite(versions: list[str]) -> None:
    assert_ordered(versions, maven_compare)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # The "Version Order Specification" of Maven's POM reference.
        ("1", "1.1", -1),  # number padding
        ("1-snapshot", "1", -1),  # qualifier padding
        ("1", "1-sp", -1),
        ("1-foo2", "1-foo10", -1),  # switching to numeric order
        ("1-foo", "1-1", -1),
        ("1-1", "1.1", -1),
        ("1.ga", "1", 0),  # trailing "null" values removed
        ("1-ga", "1", 0),
        ("1-0", "1", 0),
        ("1.0", "1", 0),
        ("1-sp", "1-ga", 1),
        ("1-sp.1", "1-ga.1", 1),
        ("1-sp-1", "1-ga-1", -1),
        ("1-a1", "1-alpha-1", 0),
        # ComparableVersionTest's equalities and pairs.
        ("1x", "1-x", 0),
        ("1ga", "1", 0),
        ("1release", "1", 0),
        ("1final", "1", 0),
        ("1cr", "1rc", 0),
        ("1b2", "1-beta-2", 0),
        ("1m3", "1-milestone-3", 0),
        ("1X", "1x", 0),
        ("1.0-alpha-1", "1.0", -1),
        ("1.0-alpha-1-SNAPSHOT", "1.0-alpha-1", -1),
        ("1.0.0", "1.0-1", -1),
        ("2.0-1", "2.0.1", -1),
        ("2.0.1", "2.0.1-xyz", -1),
        ("2.0.1-xyz", "2.0.1-123", -1),
        ("2.0.1-klm", "2.0.1-lmn", -1),
        ("1.0-RC1", "1.0-SNAPSHOT", -1),
        ("6.1.0rc3", "6.1.0", -1),
    ],
)
def test_maven_pairs(a: str, b: str, expected: int) -> None:
    assert maven_compare(a, b) == expected
    assert maven_compare(b, a) == -expected


def affected_json(ranges: list[Any], versions: list[str] | None = None) -> str:
    return json.dumps({"ranges": ranges, "versions": versions or []})


def ecosystem_range(*events: dict[str, str], kind: str = "ECOSYSTEM") -> dict[str, Any]:
    return {"type": kind, "events": list(events)}


def intro(v: str) -> dict[str, str]:
    return {"introduced": v}


def fix(v: str) -> dict[str, str]:
    return {"fixed": v}


def last(v: str) -> dict[str, str]:
    return {"last_affected": v}


def eco(*events: dict[str, str]) -> list[dict[str, Any]]:
    return [ecosystem_range(*events)]


def sem(*events: dict[str, str]) -> list[dict[str, Any]]:
    return [ecosystem_range(*events, kind="SEMVER")]


TWO = sem(intro("0"), fix("2.9.1"), intro("3.0.0"), fix("3.2.0"))


@pytest.mark.parametrize(
    ("ecosystem", "version", "ranges", "versions", "expected"),
    [
        ("pypi", "1.4", eco(intro("0"), fix("1.5")), [], (True, "1.5")),
        ("pypi", "1.5", eco(intro("0"), fix("1.5")), [], (False, None)),
        ("pypi", "1.5rc1", eco(intro("1.0"), fix("1.5")), [], (True, "1.5")),
        ("pypi", "0.9", eco(intro("1.0"), fix("1.5")), [], (False, None)),
        # last_affected: the named version is affected, the next is not, no fix is known.
        ("npm", "2.3.4", sem(intro("2.0.0"), last("2.3.4")), [], (True, None)),
        ("npm", "2.3.5", sem(intro("2.0.0"), last("2.3.4")), [], (False, None)),
        # Two branches in one range; the fix reported is the one closing the hit interval.
        ("npm", "3.1.0", TWO, [], (True, "3.2.0")),
        ("npm", "2.9.5", TWO, [], (False, None)),
        ("npm", "1.0.0", TWO, [], (True, "2.9.1")),
        ("maven", "2.14.1", eco(intro("2.0-beta9"), fix("2.15.0")), [], (True, "2.15.0")),
        ("maven", "2.0-alpha1", eco(intro("2.0-beta9"), fix("2.15.0")), [], (False, None)),
        ("maven", "2.15.0", eco(intro("2.0-beta9"), fix("2.15.0")), [], (False, None)),
        # Explicit versions, also when no range speaks of them; PEP 440 equality (1.0 == 1.0.0).
        ("pypi", "1.0.0", [], ["1.0"], (True, None)),
        ("pypi", "1.0.1", [], ["1.0"], (False, None)),
        # GIT ranges name commits: never matched against an installed version.
        ("pypi", "1.0", [ecosystem_range(intro("0"), fix("abc1"), kind="GIT")], [], (False, None)),
    ],
)  # fmt: skip
def test_range_evaluation(
    ecosystem: str,
    version: str,
    ranges: list[Any],
    versions: list[str],
    expected: tuple[bool, str | None],
) -> None:
    assert osv.affects(ecosystem, version, affected_json(ranges, versions)) == expected


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        # Scores as the CVSS 3.1 calculator gives them (FIRST's worked examples / NVD).
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
    ],
)
def test_cvss3_base_score(vector: str, score: float) -> None:
    assert osv.cvss3_base_score(vector) == score


def record(
    vuln_id: str, ecosystem: str, name: str, ranges: list[Any], **extra: Any
) -> dict[str, Any]:
    return {
        "schema_version": "1.6.0",
        "id": vuln_id,
        "modified": "2026-01-01T00:00:00Z",
        "summary": f"{name} is vulnerable",
        "affected": [{"package": {"ecosystem": ecosystem, "name": name}, "ranges": ranges}],
        **extra,
    }


RECORDS = [
    record(
        "GHSA-aaaa-0001",
        "PyPI",
        "Jinja2",
        [ecosystem_range({"introduced": "0"}, {"fixed": "3.1.3"})],
        database_specific={"severity": "MODERATE"},
    ),
    record(
        "GHSA-aaaa-0002",
        "npm",
        "@scope/pkg",
        [ecosystem_range({"introduced": "1.0.0"}, {"last_affected": "1.4.0"}, kind="SEMVER")],
        severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    ),
    record(
        "GHSA-aaaa-0003",
        "Maven",
        "org.apache.logging.log4j:log4j-core",
        [ecosystem_range({"introduced": "2.0-beta9"}, {"fixed": "2.15.0"})],
        database_specific={"severity": "CRITICAL"},
    ),
    record("GHSA-aaaa-0004", "crates.io", "regex", [ecosystem_range({"introduced": "0"})]),
    record(
        "GHSA-aaaa-0005",
        "PyPI",
        "jinja2",
        [ecosystem_range({"introduced": "0"})],
        withdrawn="2026-02-01T00:00:00Z",
    ),
]

PACKAGES = [
    ImagePackage("pypi", "jinja2", "3.1.2", "pkg:pypi/jinja2@3.1.2"),
    ImagePackage("npm", "pkg", "1.4.0", "pkg:npm/%40scope/pkg@1.4.0"),
    ImagePackage(
        "maven", "log4j-core", "2.14.1", "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"
    ),
    ImagePackage("pypi", "requests", "2.0.0", "pkg:pypi/requests@2.0.0"),
    ImagePackage("deb", "libc6", "2.36-9", "pkg:deb/debian/libc6@2.36-9"),
]

EXPECTED = {
    ("GHSA-aaaa-0001", "jinja2"): (Status.FIXED, "MEDIUM", "3.1.3"),
    ("GHSA-aaaa-0002", "pkg"): (Status.AFFECTED, "CRITICAL", None),
    ("GHSA-aaaa-0003", "log4j-core"): (Status.FIXED, "CRITICAL", "2.15.0"),
}


def write_layouts(tmp_path: Path) -> dict[str, Path]:
    single = tmp_path / "one.json"
    single.write_text(json.dumps(RECORDS))
    directory = tmp_path / "dir"
    directory.mkdir()
    for rec in RECORDS:
        (directory / f"{rec['id']}.json").write_text(json.dumps(rec))
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rec in RECORDS:
            zf.writestr(f"{rec['id']}.json", json.dumps(rec))
    return {"file": single, "dir": directory, "zip": archive}


@pytest.mark.parametrize("layout", ["file", "dir", "zip"])
def test_osv_findings(tmp_path: Path, layout: str) -> None:
    source = write_layouts(tmp_path)[layout]
    assert detect_kind(source) is SourceKind.OSV
    path = tmp_path / "vuln.db"
    import_sources(path, imports_for([source]))
    db = VulnDB.open(path)
    assert db is not None
    with db:
        findings = db.osv_findings(PACKAGES)
        st = db.status()
    got = {(f.vuln_id, f.package.name): (f.status, f.severity, f.fixed_version) for f in findings}
    assert got == EXPECTED
    assert all(f.origin is Origin.OSV for f in findings)
    assert [(s.name, s.kind, s.count) for s in st.sources] == [(f"osv:{source.name}", "osv", 3)]


def test_single_record_file_and_tracker_together(tmp_path: Path) -> None:
    single = tmp_path / "GHSA-aaaa-0001.json"
    single.write_text(json.dumps(RECORDS[0]))
    tracker = tmp_path / "tracker.json"
    tracker.write_text(json.dumps({"glibc": {"CVE-1": {"releases": []}}}))
    path = tmp_path / "vuln.db"
    import_sources(path, imports_for([single, tracker]))
    db = VulnDB.open(path)
    assert db is not None
    with db:
        names = [s.name for s in db.status().sources]
        assert [f.vuln_id for f in db.osv_findings(PACKAGES)] == ["GHSA-aaaa-0001"]
    assert names == ["debian-tracker", "osv:GHSA-aaaa-0001.json"]


@pytest.mark.parametrize(
    "content",
    [
        b'{"id": "X", "affected": "nope"}',
        b'[{"summary": "no id"}]',
        b'{"id": "X", "affected": [{"ranges": []}]}',
        b'{"id": "X", "affected": [{"package": {"ecosystem": "PyPI"}}]}',
    ],
)
def test_malformed_osv_is_refused(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(DistillError):
        import_sources(tmp_path / "vuln.db", imports_for([bad]))
    assert not (tmp_path / "vuln.db").exists()


def test_importing_one_source_keeps_the_others(tmp_path: Path) -> None:
    osv_file = write_layouts(tmp_path)["file"]
    tracker = tmp_path / "tracker.json"
    tracker.write_text(json.dumps({"glibc": {"CVE-1": {"releases": []}}}))
    path = tmp_path / "vuln.db"
    import_sources(path, imports_for([osv_file]))
    import_sources(path, imports_for([tracker]))
    import_sources(path, imports_for([tracker]))
    db = VulnDB.open(path)
    assert db is not None
    with db:
        assert [s.name for s in db.status().sources] == ["debian-tracker", "osv:one.json"]
        assert len(db.osv_findings(PACKAGES)) == len(EXPECTED)
