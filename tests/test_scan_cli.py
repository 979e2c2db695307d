"""``distill scan`` end to end: a two-layer Debian image built here, a DB imported from a
Debian security tracker fixture written here, and every output format and exit status.

The fixture says, for every advisory, what it must give (status and severity, or nothing);
the expected table rows and summary counts are derived from that and from which binary
packages of the image are built from each source package — never typed in as numbers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev extras
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from analyze_images import SDE, elf, file, symlink
from changelog_mirror import Deb, entry, gz, make_key, publish
from distill.image.compose import compose_image
from distill.image.config import ImageConfigSpec
from distill.image.fsentry import FsEntry
from distill.image.layer_blob import Compression, write_layer
from distill.image.platform import Platform
from distill.scan.db import import_sources, imports_for
from distill.scan.result import ASCENDING, rank
from distill.transports._write import write_docker_archive, write_oci_dir
from registry_fixtures import Registry, registry  # noqa: F401  (a pytest fixture)
from test_lock import run_cli

SARIF_SCHEMA = Path(__file__).with_name("data") / "sarif-schema-2.1.0.json"
BOOKWORM = (
    b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
    b'VERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n'
)


# --- the image: (binary, source, version) per layer ------------------------------------------

LAYER0 = [
    ("libssl3", "openssl", "3.0.11-1~deb12u2"),
    ("openssl", "openssl", "3.0.11-1~deb12u2"),
    ("libc6", "glibc", "2.36-9+deb12u4"),
    ("zlib1g", "zlib", "1:1.2.13.dfsg-1"),
    ("tzdata", "tzdata", "2024a-0+deb12u1"),
]
LAYER1 = [("curl", "curl", "7.88.1-10+deb12u5"), ("libcurl4", "curl", "7.88.1-10+deb12u5")]


def stanza(binary: str, source: str, version: str) -> str:
    src = f"Source: {source}\n" if source != binary else ""
    return (
        f"Package: {binary}\nStatus: install ok installed\n{src}Version: {version}\n"
        "Architecture: amd64\nMaintainer: Debian <debian@example.org>\n\n"
    )


def dpkg_layer(packages: list[tuple[str, str, str]], status: str) -> list[FsEntry]:
    """A layer that (re)writes dpkg's status and lists each package's files, as apt would."""
    entries = [file("var/lib/dpkg/status", status.encode())]
    for binary, _, _ in packages:
        entries.append(file(f"var/lib/dpkg/info/{binary}.list", f"/usr/lib/{binary}.so\n".encode()))
        entries.append(file(f"usr/lib/{binary}.so", elf(100), 0o755))
    return entries


def write_image(
    root: Path, layers: list[list[FsEntry]], name: str, *, archive: bool = False
) -> str:
    blobs = root / f"blobs-{name}"
    written = [
        write_layer(entries, blobs, compression=Compression.GZIP, source_date_epoch=SDE)
        for entries in layers
    ]
    image = compose_image(
        ImageConfigSpec(entrypoint=("/usr/bin/curl",)),
        Platform.parse("linux/amd64"),
        written,
        source_date_epoch=SDE,
    )
    out = root / name
    if archive:
        write_docker_archive(image, out, tag="scan:1")
        return f"docker-archive:{out}"
    write_oci_dir(image, out, ref="1")
    return f"oci:{out}:1"


def debian_image(
    root: Path, os_release: bytes = BOOKWORM, name: str = "deb", *, archive: bool = False
) -> str:
    status0 = "".join(stanza(*p) for p in LAYER0)
    status1 = status0 + "".join(stanza(*p) for p in LAYER1)
    base = [
        file("usr/lib/os-release", os_release),
        symlink("etc/os-release", "../usr/lib/os-release"),
        *dpkg_layer(LAYER0, status0),
    ]
    return write_image(root, [base, dpkg_layer(LAYER1, status1)], name, archive=archive)


# --- the tracker fixture, with what each advisory must give -----------------------------------


@dataclass(frozen=True)
class Advisory:
    source: str
    vuln_id: str
    release: dict[str, Any]  # the tracker's release entry (bookworm)
    status: str | None  # the finding's expected status; None: no finding
    severity: str = ""


ADVISORIES = [
    Advisory(
        "openssl",
        "CVE-2024-0001",
        {"status": "resolved", "fixed_version": "3.0.13-1~deb12u1", "urgency": "high"},
        "fixed",
        "HIGH",
    ),
    Advisory(
        "openssl", "CVE-2024-0002", {"status": "open", "urgency": "medium*"}, "affected", "MEDIUM"
    ),
    Advisory(
        "openssl",
        "CVE-2023-0003",
        {"status": "resolved", "fixed_version": "3.0.9-1", "urgency": "low"},
        None,  # the installed version has the fix
    ),
    Advisory(
        "glibc",
        "CVE-2010-0004",
        {"status": "resolved", "fixed_version": "0", "urgency": "unimportant"},
        None,  # never affected
    ),
    Advisory(
        "glibc",
        "TEMP-0000000-A1B2C3",
        {"status": "open", "urgency": "unimportant"},
        "affected",
        "LOW",
    ),
    Advisory(
        "glibc",
        "CVE-2024-0005",
        {"status": "open", "urgency": "low", "nodsa": "Minor issue", "nodsa_reason": "ignored"},
        "will_not_fix",
        "LOW",
    ),
    Advisory(
        "glibc",
        "CVE-2024-0006",
        {"status": "open", "urgency": "medium", "nodsa": "x", "nodsa_reason": "postponed"},
        "fix_deferred",
        "MEDIUM",
    ),
    Advisory("glibc", "CVE-2024-0007", {"status": "undetermined", "urgency": "low"}, None),
    Advisory(
        "curl",
        "CVE-2024-0008",
        {"status": "resolved", "fixed_version": "7.88.1-10+deb12u7", "urgency": "not yet assigned"},
        "fixed",
        "UNKNOWN",
    ),
    Advisory(
        "curl",
        "CVE-2024-0009",
        {"status": "resolved", "fixed_version": "7.88.1-10+deb12u8", "urgency": "high**"},
        "fixed",
        "HIGH",
    ),
    Advisory(
        "zlib",
        "CVE-2023-0010",
        {"status": "resolved", "fixed_version": "1:1.2.13.dfsg-1", "urgency": "medium"},
        None,  # fixed in exactly the installed version
    ),
]


def tracker_json(releases: tuple[str, ...] = ("bookworm",)) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for adv in ADVISORIES:
        entry = {"repositories": {"bookworm": "x"}, **adv.release}
        issue = {"description": f"{adv.vuln_id} in {adv.source}", "scope": "local"}
        issue["releases"] = {release: entry for release in releases}
        data.setdefault(adv.source, {})[adv.vuln_id] = issue
    data["tzdata"] = {"TEMP-0000000-EMPTY": {"releases": []}}  # the quirk: a list, empty
    return data


def expected_findings() -> list[tuple[str, str, str, str]]:
    """(binary, id, status, severity) per finding: each advisory × every binary built from
    its source package."""
    every = LAYER0 + LAYER1
    return sorted(
        (binary, adv.vuln_id, adv.status, adv.severity)
        for adv in ADVISORIES
        if adv.status is not None
        for binary, source, _ in every
        if source == adv.source
    )


def layer_of(binary: str) -> int:
    return 0 if any(b == binary for b, _, _ in LAYER0) else 1


def make_db(root: Path, releases: tuple[str, ...] = ("bookworm",)) -> Path:
    tracker = root / f"tracker-{'-'.join(releases)}.json"
    tracker.write_text(json.dumps(tracker_json(releases)))
    db = root / f"vuln-{'-'.join(releases)}.db"
    import_sources(db, imports_for([tracker]))
    return db


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("scan")
    return {"root": root, "image": debian_image(root), "db": make_db(root)}


def scan(setup: dict[str, Any], *args: str, image: str | None = None, db: Path | None = None):  # type: ignore[no-untyped-def]
    return run_cli(
        "scan",
        image or setup["image"],
        "--db",
        str(db or setup["db"]),
        "--no-changelog",
        *args,
        env={"DISTILL_CACHE_DIR": str(setup["root"] / "cache")},
    )


def json_scan(setup: dict[str, Any], *args: str) -> dict[str, Any]:
    done = scan(setup, "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


# --- tests -----------------------------------------------------------------------------------


def test_json_holds_every_expected_finding_with_its_layer(setup: dict[str, Any]) -> None:
    report = json_scan(setup)
    found = sorted(
        (f["package"]["name"], f["id"], f["status"], f["severity"]) for f in report["findings"]
    )
    assert found == expected_findings()
    for f in report["findings"]:
        package = f["package"]
        assert package["layer"] == layer_of(package["name"])
        assert package["layer_digest"].startswith("sha256:")
        assert f["sources"] == ["debian-tracker"]
        assert package["source_name"] == {b: s for b, s, _ in LAYER0 + LAYER1}[package["name"]]
    by = Counter(sev for _, _, _, sev in expected_findings())
    assert report["summary"]["by_severity"] == {s: by.get(s, 0) for s in ASCENDING}
    assert report["complete"] is True and report["problems"] == []
    assert report["release"] == "bookworm"
    assert report["db"]["updated"] and report["db"]["age_days"] is not None


def test_table_groups_by_package_and_sums_up(setup: dict[str, Any]) -> None:
    done = scan(setup)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    expected = expected_findings()
    by = Counter(sev for _, _, _, sev in expected)
    counts = ", ".join(f"{s}: {by.get(s, 0)}" for s in ASCENDING)
    assert f"Total: {len(expected)} ({counts})" in out.splitlines()
    # each package's name, version and layer once, at the head of its group
    lines = out.splitlines()
    for binary, _source, version in LAYER0 + LAYER1:
        if not any(b == binary for b, *_ in expected):
            assert not any(f" {binary} " in line for line in lines)
            continue
        heads = [
            line for line in lines if line.startswith(("│ " + binary + " ", "┃ " + binary + " "))
        ]
        assert len(heads) == 1, (binary, heads)
        assert version in heads[0] and f" {layer_of(binary)} (sha256:" in heads[0]
        ids = [vid for b, vid, *_ in expected if b == binary]
        assert all(any(vid in line for line in lines) for vid in ids)
    assert "source: debian-tracker" in out and "DB: " in out and "days ago" in out


def test_severity_and_ignore_unfixed_filter(setup: dict[str, Any]) -> None:
    high = json_scan(setup, "--severity", "high,CRITICAL")
    assert sorted(f["id"] for f in high["findings"]) == sorted(
        vid for _, vid, _, sev in expected_findings() if sev in ("HIGH", "CRITICAL")
    )
    fixed = json_scan(setup, "--ignore-unfixed")
    assert sorted((f["package"]["name"], f["id"]) for f in fixed["findings"]) == sorted(
        (b, vid) for b, vid, status, _ in expected_findings() if status == "fixed"
    )
    assert all(f["fixed_version"] for f in fixed["findings"])


@pytest.mark.parametrize("threshold", ASCENDING)
def test_fail_on_exit_status(setup: dict[str, Any], threshold: str) -> None:
    worst = max((sev for *_, sev in expected_findings()), key=rank)
    done = scan(setup, "--fail-on", threshold.lower(), "--format", "json")
    assert done.returncode == (1 if rank(worst) >= rank(threshold) else 0), done.stderr
    # --fail-on looks only at what is shown
    done = scan(setup, "--fail-on", threshold, "--severity", "LOW", "--format", "json")
    assert done.returncode == (1 if rank(threshold) <= rank("LOW") else 0)


def test_sarif_is_valid_sarif_2_1_0(setup: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "scan.sarif"
    done = scan(setup, "--format", "sarif", "-o", str(out))
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    schema = json.loads(SARIF_SCHEMA.read_text())
    jsonschema.Draft4Validator(schema).validate(document)
    run = document["runs"][0]
    expected = expected_findings()
    assert len(run["results"]) == len(expected)
    rules = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert rules == {vid for _, vid, *_ in expected}
    for result in run["results"]:
        assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
    assert run["invocations"][0]["executionSuccessful"] is True
    broken = json.loads(out.read_text())
    broken["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(broken)


def test_cyclonedx_is_valid_and_carries_the_vulnerabilities(setup: dict[str, Any]) -> None:
    done = scan(setup, "--format", "cyclonedx")
    assert done.returncode == 0, done.stderr
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    assert validator.validate_str(done.stdout) is None
    bom = json.loads(done.stdout)
    refs = {c["bom-ref"]: c for c in bom["components"]}
    assert {c["name"] for c in bom["components"]} == {b for b, _, _ in LAYER0 + LAYER1}
    expected = expected_findings()
    vulns = {v["id"]: v for v in bom["vulnerabilities"]}
    assert set(vulns) == {vid for _, vid, *_ in expected}
    for binary, vid, status, severity in expected:
        vuln = vulns[vid]
        names = {refs[a["ref"]]["name"] for a in vuln["affects"]}
        assert binary in names
        assert vuln["ratings"][0]["severity"] == severity.lower()
        if status == "fixed":
            assert "update" in vuln["analysis"]["response"]
            assert any(
                v.get("status") == "unaffected" for a in vuln["affects"] for v in a["versions"]
            )
        if status == "will_not_fix":
            assert "will_not_fix" in vuln["analysis"]["response"]


def test_docker_archive_gives_the_same_findings(setup: dict[str, Any]) -> None:
    archive = debian_image(setup["root"], name="deb.tar", archive=True)
    done = scan(setup, "--format", "json", image=archive)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["findings"] == json_scan(setup)["findings"]


@pytest.mark.container
def test_a_registry_image_gives_the_same_findings(
    setup: dict[str, Any],
    registry: Registry,  # noqa: F811
) -> None:
    remote = f"docker://{registry.host}/scan/deb:1"
    copied = run_cli("copy", setup["image"], remote)
    assert copied.returncode == 0, copied.stderr
    done = scan(setup, "--format", "json", image=remote)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["findings"] == json_scan(setup)["findings"]


def test_image_without_dpkg_data_exits_2_loudly(setup: dict[str, Any]) -> None:
    root = setup["root"]
    image = write_image(
        root,
        [[file("usr/lib/os-release", BOOKWORM), file("usr/bin/app", elf(500), 0o755)]],
        "nodpkg",
    )
    for fmt in ("table", "json"):
        done = scan(setup, "--format", fmt, image=image)
        assert done.returncode == 2, done.stderr
        assert "INCOMPLETE" in done.stderr and "no package database" in done.stderr
    report = json.loads(scan(setup, "--format", "json", image=image).stdout)
    assert report["complete"] is False and "no package database" in report["problems"][0]
    table = scan(setup, image=image).stdout
    assert "INCOMPLETE: no package database" in table


def test_release_the_db_lacks_exits_2_loudly(setup: dict[str, Any]) -> None:
    root = setup["root"]
    trixie_db = make_db(root, ("trixie",))
    done = scan(setup, "--format", "json", db=trixie_db)
    assert done.returncode == 2
    assert "INCOMPLETE" in done.stderr and "no advisories for Debian bookworm" in done.stderr
    report = json.loads(done.stdout)
    assert report["complete"] is False and report["findings"] == []
    # --fail-on does not turn an incomplete scan into a pass or a plain failure
    assert scan(setup, "--fail-on", "LOW", db=trixie_db).returncode == 2
    # and without any DB at all
    assert scan(setup, db=root / "absent.db").returncode == 2


def test_bad_severity_is_a_clean_error(setup: dict[str, Any]) -> None:
    done = scan(setup, "--severity", "SEVERE")
    assert done.returncode == 1
    assert "not a severity: SEVERE" in done.stderr and "Traceback" not in done.stderr


# --- with the mirror's changelogs: a signed local mirror -------------------------------------

FOO_OLD, FOO_FIX = "1.0-1", "1.0-1+deb12u1"
TRACKED, UNTRACKED = "CVE-2024-1111", "CVE-2024-2222"  # the tracker knows only the first
FOO_LOG = entry("foo", FOO_FIX, "bookworm-security", TRACKED, f"Fix {UNTRACKED}.") + entry(
    "foo", FOO_OLD, "bookworm", "Initial release."
)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A bookworm mirror whose security pocket has a newer foo, an image with the old one,
    and a tracker DB that knows one of the two CVEs the new changelog names."""
    home = tmp_path_factory.mktemp("gnupg")
    keyring = make_key(home)
    debs = tmp_path_factory.mktemp("debs")
    root = tmp_path_factory.mktemp("mirror")

    def foo(version: str, log: str) -> list[Path]:
        doc = "usr/share/doc/libfoo1/changelog.Debian.gz"
        return [Deb("libfoo1", version, source="foo", files={doc: gz(log)}).build(debs)]

    old_log = entry("foo", FOO_OLD, "bookworm", "Initial release.")
    publish(
        root,
        home,
        {
            "bookworm": foo(FOO_OLD, old_log),
            "bookworm-updates": [],
            "bookworm-security": foo(FOO_FIX, FOO_LOG),
        },
    )
    work = tmp_path_factory.mktemp("foo-image")
    status = stanza("libfoo1", "foo", FOO_OLD)
    base = [
        file("usr/lib/os-release", BOOKWORM),
        symlink("etc/os-release", "../usr/lib/os-release"),
        *dpkg_layer([("libfoo1", "foo", FOO_OLD)], status),
    ]
    image = write_image(work, [base], "foo")
    tracker = {
        "foo": {
            TRACKED: {
                "releases": {
                    "bookworm": {
                        "status": "resolved",
                        "fixed_version": FOO_FIX,
                        "urgency": "high",
                        "repositories": {"bookworm": FOO_OLD},
                    }
                }
            }
        }
    }
    (work / "tracker.json").write_text(json.dumps(tracker))
    db = work / "vuln.db"
    import_sources(db, imports_for([work / "tracker.json"]))
    return {"root": root, "keyring": keyring, "image": image, "db": db, "work": work}


def mirror_scan(
    mirror: dict[str, Any], url: str, cache: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "DISTILL_MIRROR": url,
        "DISTILL_SECURITY_MIRROR": url,
        "DISTILL_KEYRING": str(mirror["keyring"]),
        "DISTILL_CACHE_DIR": str(cache),
    }
    return run_cli("scan", mirror["image"], "--format", "json", *args, env=env)


def test_changelog_and_tracker_findings_name_every_source(
    mirror: dict[str, Any], local_mirror: tuple[str, Path], tmp_path: Path
) -> None:
    url, served = local_mirror
    shutil.copytree(mirror["root"], served, dirs_exist_ok=True)
    cache = tmp_path / "cache"
    done = mirror_scan(mirror, url, cache, "--db", str(mirror["db"]))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    found = {f["id"]: f for f in report["findings"]}
    assert set(found) == {TRACKED, UNTRACKED}
    assert found[TRACKED]["sources"] == ["debian-tracker", "changelog"]
    assert found[TRACKED]["severity"] == "HIGH"  # the tracker's urgency
    assert found[UNTRACKED]["sources"] == ["changelog"]
    assert found[UNTRACKED]["severity"] == "UNKNOWN"
    assert {f["fixed_version"] for f in found.values()} == {FOO_FIX}
    assert {s["name"] for s in report["sources"]} == {"debian-tracker", "changelog"}
    # no DB at all: the mirror alone is a source, and the scan is complete
    alone = mirror_scan(mirror, url, cache, "--db", str(tmp_path / "none.db"))
    assert alone.returncode == 0, alone.stderr
    assert {f["id"] for f in json.loads(alone.stdout)["findings"]} == {TRACKED, UNTRACKED}
    # --offline from the cache this scan filled: the same findings, nothing downloaded
    shutil.rmtree(served)
    served.mkdir()
    offline = mirror_scan(mirror, url, cache, "--db", str(tmp_path / "none.db"), "--offline")
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["findings"] == json.loads(alone.stdout)["findings"]


def test_offline_with_nothing_cached_says_so_and_is_incomplete_without_a_db(
    mirror: dict[str, Any], tmp_path: Path
) -> None:
    unreachable = "http://127.0.0.1:9"
    cache = tmp_path / "empty-cache"
    done = mirror_scan(mirror, unreachable, cache, "--db", str(tmp_path / "none.db"), "--offline")
    assert done.returncode == 2
    assert "not checked against the mirror's changelogs" in done.stderr
    assert "INCOMPLETE" in done.stderr and "no advisories for Debian bookworm" in done.stderr
    # with the tracker DB the scan is complete, and still says what it could not check
    done = mirror_scan(mirror, unreachable, cache, "--db", str(mirror["db"]), "--offline")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [f["id"] for f in report["findings"]] == [TRACKED]
    assert any("not checked against the mirror's changelogs" in n for n in report["notes"])


# --- compare, with distill's scanner and no network -----------------------------------------


def test_compare_counts_with_distills_scanner(setup: dict[str, Any]) -> None:
    bare = write_image(setup["root"], [[file("usr/lib/os-release", BOOKWORM)]], "bare-cmp")
    env = {"DISTILL_CACHE_DIR": str(setup["root"] / "cache")}
    args = ["compare", setup["image"], bare, "--json", "--no-changelog"]
    done = run_cli(*args, "--db", str(setup["db"]), env=env)
    assert done.returncode == 0, done.stderr
    debian, empty = (i["vulnerabilities"] for i in json.loads(done.stdout)["images"])
    by = Counter(sev for *_, sev in expected_findings())
    assert {s: n for s, n in debian["by_severity"].items() if n} == dict(by)
    assert debian["note"].startswith("distill: debian-tracker")
    assert empty["status"] == "failed" and "no package database" in empty["note"]
    # no DB and no changelogs: the scanner has nothing to count with, for any image
    done = run_cli(*args, "--db", str(setup["root"] / "absent.db"), env=env)
    assert done.returncode == 0, done.stderr
    for image in json.loads(done.stdout)["images"]:
        assert image["vulnerabilities"]["status"] == "no-db"
        assert image["vulnerabilities"]["total"] is None


# --- language packages: OSV ------------------------------------------------------------------

PYPI_FIXED = "2.31.0"


def test_python_packages_are_matched_against_imported_osv(setup: dict[str, Any]) -> None:
    root = setup["root"]
    metadata = b"Metadata-Version: 2.1\nName: requests\nVersion: 2.25.0\n"
    site = "usr/local/lib/python3.11/site-packages"
    layer = [file(f"{site}/requests-2.25.0.dist-info/METADATA", metadata)]
    osv = {
        "id": "GHSA-aaaa-bbbb-cccc",
        "aliases": ["CVE-2023-32681"],
        "summary": "Unintended leak of Proxy-Authorization header",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "requests"},
                "ranges": [
                    {
                        "type": "ECOSYSTEM",
                        "events": [{"introduced": "2.3.0"}, {"fixed": PYPI_FIXED}],
                    }
                ],
            }
        ],
        "database_specific": {"severity": "MODERATE"},
    }
    tracker = root / "tracker-bookworm.json"
    (root / "osv.json").write_text(json.dumps(osv))
    db = root / "with-osv.db"
    import_sources(db, imports_for([tracker, root / "osv.json"]))
    both = write_image(
        root,
        [
            [
                file("usr/lib/os-release", BOOKWORM),
                symlink("etc/os-release", "../usr/lib/os-release"),
                *dpkg_layer(LAYER0, "".join(stanza(*p) for p in LAYER0)),
            ],
            layer,
        ],
        "deb-and-python",
    )
    done = scan(setup, "--format", "json", image=both, db=db)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    python = [f for f in report["findings"] if f["package"]["ecosystem"] == "pypi"]
    assert [(f["id"], f["package"]["name"], f["severity"], f["fixed_version"]) for f in python] == [
        (osv["id"], "requests", "MEDIUM", PYPI_FIXED)
    ]
    assert python[0]["sources"] == ["osv"] and python[0]["package"]["layer"] == 1
    assert python[0]["package"]["purl"] == "pkg:pypi/requests@2.25.0"
    assert "osv" in {s["name"] for s in report["sources"]}
    # without OSV data the Python package is said to be unchecked, not counted as clean
    plain = json.loads(scan(setup, "--format", "json", image=both).stdout)
    assert not [f for f in plain["findings"] if f["package"]["ecosystem"] == "pypi"]
    assert any("1 language packages" in note and "not checked" in note for note in plain["notes"])


def test_a_hostile_release_name_is_refused_without_a_traceback(setup: dict[str, Any]) -> None:
    hostile = BOOKWORM.replace(
        b"VERSION_CODENAME=bookworm", b"VERSION_CODENAME='../x[/bold]\x1b[2J'"
    )
    image = debian_image(setup["root"], hostile, name="hostile")
    done = scan(setup, image=image)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "\x1b[2J" not in done.stderr + done.stdout
    assert "no advisories for Debian" in done.stderr
