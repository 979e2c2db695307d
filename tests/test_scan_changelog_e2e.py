"""Mirror-only scanning with real data: a bookworm python3 image built from the bookworm
pocket alone has packages that bookworm-security has since updated, and `distill scan`,
with the mirror's changelogs as its only source, reports for each exactly the CVE ids the
security candidate's changelog names, fixed in the versions of the entries that name them.
The same spec built from every pocket has none of those findings.

The oracle is Debian's own changelog, read here with dpkg-deb, zcat and
dpkg-parsechangelog, not distill's parser.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from distill.analyze.sbom import SbomFormat, image_sbom
from distill.cache import BlobCache
from distill.debian.archive import load_indices
from distill.debian.binary import BinaryPackage
from distill.debian.mirror import discover_mirrors
from distill.debian.version import parse_version
from distill.net.download import DownloadRequest, fetch_blob
from distill.scan.changelog import ChangelogAdvisories, changelog_advisories
from distill.scan.model import ImagePackage
from test_lock import run_cli

pytestmark = pytest.mark.network

# The packages bookworm-security is known to carry newer than bookworm (ENVIRONMENT.md),
# each with a binary whose own doc directory holds the source's changelog.
UPDATED = {"libssl3": "openssl", "libpython3.11-minimal": "python3.11", "libexpat1": "expat"}
ORACLE_CVE = re.compile(r"CVE-\d{4}-\d{4,}")


def _build(tmp: Path, name: str, pockets: str) -> Path:
    spec = tmp / f"{name}.yaml"
    spec.write_text(f"extends: python3\nsuite: bookworm\n{pockets}")
    out = tmp / f"{name}.tar"
    proc = run_cli("-q", "build", str(spec), "--arch", "amd64", "-o", f"oci-archive:{out}")
    assert proc.returncode == 0, proc.stderr
    return out


def _packages(image: Path) -> tuple[list[ImagePackage], str]:
    catalog = image_sbom(f"oci-archive:{image}", SbomFormat.CYCLONEDX_JSON).catalog
    assert catalog.os is not None
    packages = [
        ImagePackage("deb", c.name, c.version, c.purl, c.source_name, c.source_version, c.layer)
        for c in catalog.components
        if c.type.value == "deb"
    ]
    return packages, catalog.os.codename


def _scan(packages: Sequence[ImagePackage], release: str, cache: BlobCache) -> ChangelogAdvisories:
    return changelog_advisories(packages, release, "amd64", cache=cache, mirrors=discover_mirrors)


def _security_candidate(name: str, cache: BlobCache) -> BinaryPackage:
    [index] = load_indices(
        "bookworm", "amd64", discover_mirrors(), pockets=("bookworm-security",), cache=cache
    )
    found = [p for p in index.packages if p.name == name]
    return max(found, key=lambda p: parse_version(p.version))


def _changelog_text(deb: Path, package: str) -> str:
    """The changelog as Debian ships it: dpkg-deb's tar stream, tar, zcat."""
    member = f"./usr/share/doc/{package}/changelog.Debian.gz"
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True)
    gz = subprocess.run(
        ["tar", "-xOf", "-", member], input=tar.stdout, capture_output=True, check=True
    )
    return subprocess.run(
        ["zcat"], input=gz.stdout, capture_output=True, check=True
    ).stdout.decode()


def _oracle(text: str, since: str, tmp: Path) -> dict[str, str]:
    """CVE id → version of the oldest entry newer than ``since`` that names it, as
    dpkg-parsechangelog splits the entries."""
    path = tmp / "changelog"
    path.write_text(text)
    out = subprocess.run(
        ["dpkg-parsechangelog", "-l", str(path), "--format", "rfc822", "--since", since],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected: dict[str, str] = {}
    for stanza in out.split("\n\n"):
        version = re.search(r"^Version: (\S+)$", stanza, re.MULTILINE)
        if version is None:
            continue
        for vuln_id in ORACLE_CVE.findall(stanza.upper()):
            expected[vuln_id] = version.group(1)  # later stanzas are older: the oldest wins
    return expected


def _scan_cli(image: Path, tmp: Path, *flags: str) -> dict[str, Any]:
    """``distill scan`` with the changelogs as the only source (the DB path holds none)."""
    argv = ["-q", "scan", f"oci-archive:{image}", "--format", "json", "--db", str(tmp / "no.db")]
    proc = run_cli(*argv, *flags)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    assert report["complete"] and [s["name"] for s in report["sources"]] == ["changelog"]
    return report


def _findings(report: dict[str, Any], package: str) -> dict[str, str]:
    found = {}
    for finding in report["findings"]:
        if finding["package"]["name"] == package:
            assert finding["status"] == "fixed" and finding["sources"] == ["changelog"]
            assert finding["severity"] == "UNKNOWN"
            found[finding["id"]] = finding["fixed_version"]
    return found


def test_bookworm_pocket_image_has_the_security_changelogs_cves(tmp_path: Path) -> None:
    cache = BlobCache()
    image = _build(tmp_path, "narrow", "pockets: [bookworm]\n")
    packages, release = _packages(image)
    assert release == "bookworm"
    installed = {p.name: p for p in packages}
    assert set(UPDATED) <= set(installed)

    report = _scan_cli(image, tmp_path)
    assert report["release"] == "bookworm" and _checked_all(report["notes"])
    for name in UPDATED:
        candidate = _security_candidate(name, cache)
        pkg = installed[name]
        assert parse_version(candidate.version) > parse_version(pkg.version), name
        deb = fetch_blob(
            DownloadRequest(
                f"{discover_mirrors().for_pocket(candidate.pocket)}/{candidate.filename}",
                candidate.sha256,
                candidate.size,
                candidate.filename.rsplit("/", 1)[-1],
            ),
            cache,
        )
        expected = _oracle(_changelog_text(deb, name), pkg.source_version or pkg.version, tmp_path)
        assert expected, f"{name}: the security changelog names no CVE since {pkg.version}"
        assert _findings(report, name) == expected, name

    # A second scan is answered from the cache alone, and so is an offline one.
    again = _scan(packages, release, cache)
    assert again.opened == 0 and again.unchecked == ()
    offline = _scan_cli(image, tmp_path, "--offline")
    assert offline["findings"] == report["findings"] and _checked_all(offline["notes"])

    wide = _build(tmp_path, "wide", "")
    clean = _scan_cli(wide, tmp_path)
    wide_packages, _ = _packages(wide)
    for pkg in wide_packages:
        if pkg.name in UPDATED:
            assert pkg.version == _security_candidate(pkg.name, cache).version
    sources = set(UPDATED.values())
    assert not [f for f in clean["findings"] if f["package"]["source_name"] in sources]
    assert not [f for f in clean["findings"] if f["package"]["name"] in UPDATED]


def _checked_all(notes: list[str]) -> bool:
    """Every package was checked: the one note is that, without a DB, open issues are not
    known (the changelogs only name what newer packages fixed)."""
    return [n.split(" (")[0] for n in notes] == [
        "only issues fixed in newer Debian packages can be found"
    ]
