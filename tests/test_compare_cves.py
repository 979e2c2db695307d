"""``distill compare`` of a fat JDK image and distill's java21 counts CVEs with distill's own
scanner: once from the Debian mirror's changelogs alone, once from a Debian security
tracker fixture written here from the two images' own package lists. The counts, by
severity, and the source they rest on are in the JSON, the terminal table and the HTML page.

Oracles: ``distill scan`` of each image (the same findings, reached through the image's
catalog rather than compare's CycloneDX round trip), dpkg's own version comparison for the
changelog findings, and for the tracker fixture the counts worked out here from the images'
dpkg databases and the urgency each advisory was given.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distill.analyze.sbom import SbomFormat, image_sbom
from distill.debian.version import compare_versions
from distill.scan.db import import_sources, imports_for
from distill.scan.findings import SEVERITIES
from fat_image import fat_image  # noqa: F401  (a pytest fixture)
from test_lock import run_cli

pytestmark = [pytest.mark.network, pytest.mark.container]

# Urgency as the tracker writes it → the severity distill must give (the table).
URGENCIES = [
    ("high", "HIGH"),
    ("medium**", "MEDIUM"),
    ("unimportant", "LOW"),
    ("low*", "LOW"),
    ("not yet assigned", "UNKNOWN"),
]


@pytest.fixture(scope="module")
def java21(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    out = tmp_path_factory.mktemp("java21") / "java21.tar"
    built = run_cli("-q", "build", "java21", "--arch", "amd64", "-o", f"docker-archive:{out}")
    assert built.returncode == 0, built.stdout + built.stderr
    yield f"docker-archive:{out}"
    out.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def images(fat_image: Path, java21: str) -> list[str]:  # noqa: F811
    return [str(fat_image), java21]


def compare(images: list[str], tmp_path: Path, *args: str) -> tuple[dict[str, Any], str, str]:
    """(the JSON, the terminal table, the HTML page) of one comparison."""
    page = tmp_path / "cmp.html"
    done = run_cli("compare", *images, "--json", "--html", str(page), *args)
    assert done.returncode == 0, done.stderr
    table = run_cli("compare", *images, *args, env={"COLUMNS": "400"})
    assert table.returncode == 0, table.stderr
    return json.loads(done.stdout), table.stdout, page.read_text()


def scan_json(image: str, *args: str) -> dict[str, Any]:
    done = run_cli("scan", image, "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def severity_text(by: dict[str, int]) -> str:
    """What the compare row says: ``12 (2 high, 10 unknown)``."""
    total = sum(by.values())
    parts = [f"{by[s]} {s.lower()}" for s in SEVERITIES if by.get(s)]
    return f"{total}" + (f" ({', '.join(parts)})" if parts else "")


def row(table: str, label: str) -> str:
    found = [line for line in table.splitlines() if re.match(rf"^\W*{re.escape(label)}\s*│", line)]
    assert len(found) == 1, (label, table)
    return found[0]


def check_shown(
    data: dict[str, Any], table: str, page: str, expected: list[dict[str, int]], source: str
) -> None:
    """Every image's counts by severity as expected, the source named, in all three."""
    vulns_row, source_row = row(table, "vulnerabilities"), row(table, "vulnerabilities from")
    for image, by in zip(data["images"], expected, strict=True):
        vulns = image["vulnerabilities"]
        assert vulns["status"] == "scanned", vulns
        assert {s: n for s, n in vulns["by_severity"].items() if n} == {
            s: n for s, n in by.items() if n
        }
        assert vulns["note"].startswith("distill: ") and source in vulns["note"]
        text = severity_text(by)
        assert text in vulns_row and text in page
        assert html.escape(vulns["note"], quote=True) in page
    assert source_row.count(f"distill: {source}") == len(expected)


def test_counts_from_the_mirror_changelogs(images: list[str], tmp_path: Path) -> None:
    no_db = str(tmp_path / "no.db")  # nothing imported: the mirror alone
    data, table, page = compare(images, tmp_path, "--db", no_db)
    scans = [scan_json(image, "--db", no_db) for image in images]
    expected = [scan["summary"]["by_severity"] for scan in scans]
    check_shown(data, table, page, expected, "changelog")
    fat, slim = scans
    assert fat["sources"][0]["name"] == "changelog"
    # the fat image is trixie's main pocket alone: what security updates have fixed since
    # is found; java21 is built from every pocket, so nothing newer exists for it
    assert fat["summary"]["total"] > 0 and slim["summary"]["total"] == 0
    dpkg = shutil.which("dpkg")
    for finding in fat["findings"]:
        assert finding["sources"] == ["changelog"] and finding["status"] == "fixed"
        assert re.fullmatch(r"CVE-\d{4}-\d{4,}", finding["id"])
        installed = finding["package"]["source_version"] or finding["package"]["version"]
        if dpkg:  # dpkg's own order: the fix is newer than what is installed
            args = [dpkg, "--compare-versions", finding["fixed_version"], "gt", installed]
            assert subprocess.run(args, check=False).returncode == 0, finding
    print(f"\nmirror-derived: fat {fat['summary']}, java21 {slim['summary']}")


def tracker_fixture(images: list[str]) -> tuple[dict[str, Any], list[dict[str, int]]]:
    """A trixie tracker file with one advisory per source package of either image (fixed
    in a version newer than any installed, or open), and each image's expected counts."""
    catalogs = [image_sbom(image, SbomFormat.CYCLONEDX_JSON).catalog for image in images]
    newest: dict[str, str] = {}
    for catalog in catalogs:
        for c in catalog.components:
            if c.type.value == "deb":
                seen = newest.get(c.source_name)
                if seen is None or compare_versions(c.source_version, seen) > 0:
                    newest[c.source_name] = c.source_version
    tracker: dict[str, Any] = {}
    severity_of: dict[str, str] = {}
    for i, source in enumerate(sorted(newest)):
        urgency, severity = URGENCIES[i % len(URGENCIES)]
        release: dict[str, Any] = {"repositories": {"trixie": newest[source]}, "urgency": urgency}
        if i % 2:
            release["status"] = "open"
        else:
            release |= {"status": "resolved", "fixed_version": newest[source] + "+fix1"}
        tracker[source] = {f"CVE-2099-{10000 + i}": {"releases": {"trixie": release}}}
        severity_of[source] = severity
    expected = []
    for catalog in catalogs:
        debs = [c for c in catalog.components if c.type.value == "deb"]
        by = Counter(severity_of[c.source_name] for c in debs)
        expected.append({s: by.get(s, 0) for s in SEVERITIES})
    return tracker, expected


def test_counts_from_an_imported_tracker_file(images: list[str], tmp_path: Path) -> None:
    tracker, expected = tracker_fixture(images)
    path = tmp_path / "tracker.json"
    path.write_text(json.dumps(tracker))
    db = tmp_path / "vuln.db"
    import_sources(db, imports_for([path]))
    data, table, page = compare(images, tmp_path, "--db", str(db), "--no-changelog")
    check_shown(data, table, page, expected, "debian-tracker")
    for image, by in zip(images, expected, strict=True):
        scanned = scan_json(image, "--db", str(db), "--no-changelog")
        assert {s: n for s, n in scanned["summary"]["by_severity"].items() if n} == {
            s: n for s, n in by.items() if n
        }
    assert sum(expected[0].values()) > sum(expected[1].values()) > 0
    print(f"\ntracker fixture: fat {expected[0]}, java21 {expected[1]}")


def test_trivy_stays_available_on_request(images: list[str], tmp_path: Path) -> None:
    data, table, _ = compare(images, tmp_path, "--scanner", "trivy")
    for image in data["images"]:  # trivy's DB cannot be downloaded here
        assert image["vulnerabilities"]["status"] in ("no-db", "no-scanner", "scanned")
        if image["vulnerabilities"]["status"] == "scanned":
            assert image["vulnerabilities"]["note"] == "trivy"
    assert "distill:" not in row(table, "vulnerabilities from")
