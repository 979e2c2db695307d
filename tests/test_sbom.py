"""``distill sbom``: the SPDX and CycloneDX writers, the command, and what reads them.

Documents are checked against the official schemas (``tests/data``), parsed back with
spdx-tools, and read by trivy (shipped in the venv), which must find the same packages; on real
Debian images, distill and trivy must list the same packages with the same source packages.
The catalog itself is tested in ``test_catalog.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev extras
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from distill.analyze.catalog import (
    CapturedFile,
    Component,
    PackageType,
    build_catalog,
)
from distill.analyze.licenses import license_ref, spdx_id, spdx_license_expression
from distill.analyze.sbom import (
    SbomFormat,
    document_time,
    render,
    to_cyclonedx_json,
    to_spdx_json,
)
from distill.errors import DistillError
from distill.image.compose import compose_image
from distill.image.config import ImageConfigSpec
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import write_layer
from distill.image.platform import Platform
from distill.transports._write import write_oci_dir
from fat_image import build_fat_image
from sbom_fixtures import (
    BASE_FILES_CONTROL,
    DEBIAN_LINKS,
    DEBIAN_OS_RELEASE,
    REQUESTS_METADATA,
    SDE,
    SSL_CONTROL,
    debian_files,
    everything,
    f,
    image_info,
    java_files,
)

DATA = Path(__file__).with_name("data")
TRIVY = Path(sys.executable).with_name("trivy")


# --- executables without a database ----------------------------------------------------------


def test_no_package_database_is_a_loud_warning_in_both_documents() -> None:
    catalog = build_catalog({"app/app.jar": java_files()["app/app.jar"]}, executables=3)
    message = "no package database found: 3 executables are unaccounted for"
    assert catalog.warnings == (message,)
    spdx = to_spdx_json(catalog, image_info())
    assert message in spdx["comment"] and message in spdx["creationInfo"]["comment"]
    cdx = to_cyclonedx_json(catalog, image_info())
    assert {"name": "distill:warning", "value": message} in cdx["metadata"]["properties"]
    # The language packages are still listed: the warning is about what is missing.
    assert len(cdx["components"]) == 3
    assert build_catalog({}, executables=0).warnings == ()
    assert build_catalog({}, executables=1).warnings == (
        "no package database found: 1 executable is unaccounted for",
    )


# --- licences --------------------------------------------------------------------------------


def test_licence_names_map_to_spdx_ids_or_license_refs() -> None:
    assert spdx_id("GPL-2+") == "GPL-2.0-or-later"
    assert spdx_id("GPL-2") == "GPL-2.0-only"
    assert spdx_id("GPL-2.0+") == "GPL-2.0-or-later"
    assert spdx_id("LGPL-2.1+") == "LGPL-2.1-or-later"
    assert spdx_id("lgpl-3") == "LGPL-3.0-only"
    assert spdx_id("AGPL-3+") == "AGPL-3.0-or-later"
    assert spdx_id("GFDL-NIV-1.3+") == "GFDL-1.3-no-invariants-or-later"
    assert spdx_id("Expat") == "MIT"
    assert spdx_id("BSD-3-clause") == "BSD-3-Clause"
    assert spdx_id("zlib") == "Zlib"
    assert spdx_id("Apache-2.0") == "Apache-2.0"
    assert spdx_id("public-domain") is None
    assert spdx_id("LGPL-1+") is None  # the GNU rule builds LGPL-1.0-or-later: no such id
    assert spdx_id("GPL-2+ with OpenSSL exception") is None
    assert license_ref("GPL-2+ with OpenSSL exception") == (
        "LicenseRef-GPL-2-plus-with-OpenSSL-exception"
    )
    component = Component(
        "x", "1", PackageType.NPM, "pkg:npm/x@1", licenses=("MIT OR Apache-2.0", "Expat", "MIT")
    )
    assert spdx_license_expression(component) == "(MIT OR Apache-2.0) AND MIT"
    single = Component("x", "1", PackageType.NPM, "pkg:npm/x@1", licenses=("MIT OR (A AND B)",))
    assert spdx_license_expression(single) == "LicenseRef-MIT-OR-A-AND-B"
    nothing = Component("x", "1", PackageType.NPM, "pkg:npm/x@1")
    assert spdx_license_expression(nothing) == "NOASSERTION"


# --- the documents ---------------------------------------------------------------------------


def spdx_schema_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((DATA / "spdx-schema-2.3.json").read_text())
    return jsonschema.Draft7Validator(schema)


def test_spdx_document_validates_against_the_schema_and_spdx_tools(tmp_path: Path) -> None:
    document = to_spdx_json(everything(), image_info())
    errors = [e.message for e in spdx_schema_validator().iter_errors(document)]
    assert errors == []
    path = tmp_path / "image.spdx.json"
    path.write_bytes(render(SbomFormat.SPDX_JSON, everything(), image_info()))
    parsed = parse_file(str(path))
    messages = [m.validation_message for m in validate_full_spdx_document(parsed)]
    assert messages == []
    assert len(parsed.packages) == len(everything().components) + 2  # image and OS

    packages = {p["name"]: p for p in document["packages"]}
    libc = packages["libc6"]
    assert libc["licenseDeclared"] == (
        "LGPL-2.1-or-later AND GPL-2.0-or-later AND LicenseRef-Artistic AND BSD-3-Clause"
    )
    assert libc["sourceInfo"] == "built package from: glibc 2.41-12"
    assert libc["supplier"] == "Organization: GNU Libc Maintainers (debian-glibc@lists.debian.org)"
    assert libc["externalRefs"] == [
        {
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": "pkg:deb/debian/libc6@2.41-12?arch=amd64&distro=debian-13"
            "&upstream=glibc",
        }
    ]
    notes = [a["comment"] for a in libc["annotations"]]
    assert "distill:layer=0" in notes and f"distill:layer-diff-id=sha256:{'c' * 64}" in notes
    assert packages["mixed"]["licenseDeclared"] == "ISC AND LicenseRef-Custom-Thing"
    assert packages["dual"]["licenseDeclared"] == "(MIT OR Apache-2.0)"
    refs = {r["licenseId"]: r["name"] for r in document["hasExtractedLicensingInfos"]}
    assert refs["LicenseRef-Custom-Thing"] == "Custom Thing"
    assert refs["LicenseRef-public-domain"] == "public-domain"

    image = packages["docker://registry.example/team/app:1.2"]
    assert image["primaryPackagePurpose"] == "CONTAINER"
    assert image["externalRefs"][0]["referenceLocator"] == (
        f"pkg:oci/app@sha256:{'a' * 64}?arch=amd64&repository_url=registry.example/team/app&tag=1.2"
    )
    relations = {(r["spdxElementId"], r["relationshipType"]) for r in document["relationships"]}
    assert ("SPDXRef-DOCUMENT", "DESCRIBES") in relations
    assert ("SPDXRef-OperatingSystem", "CONTAINS") in relations
    assert document["creationInfo"]["creators"] == ["Tool: distill-0.1.0"]
    assert document["documentNamespace"].endswith("a" * 64)


def test_spdx_schema_check_can_fail() -> None:
    document = to_spdx_json(everything(), image_info())
    del document["packages"][3]["downloadLocation"]
    document["relationships"][0]["relationshipType"] = "OWNS"
    assert len(list(spdx_schema_validator().iter_errors(document))) == 2


def test_cyclonedx_document_validates_against_the_1_6_schema() -> None:
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    data = render(SbomFormat.CYCLONEDX_JSON, everything(), image_info()).decode()
    assert validator.validate_str(data) is None
    broken = json.loads(data)
    broken["components"][1]["licenses"].append({"expression": "MIT"})  # ids and expression
    assert validator.validate_str(json.dumps(broken)) is not None

    document = json.loads(data)
    os_entry = document["components"][0]
    assert (os_entry["type"], os_entry["name"], os_entry["version"]) == (
        "operating-system",
        "debian",
        "13",
    )
    components = {(c["name"], c.get("group", "")): c for c in document["components"][1:]}
    libc = components[("libc6", "")]
    props = {p["name"]: p["value"] for p in libc["properties"]}
    assert props["distill:layer"] == "0"
    assert props["distill:source"] == "glibc@2.41-12"
    assert props["aquasecurity:trivy:SrcName"] == "glibc"
    assert (props["aquasecurity:trivy:SrcVersion"], props["aquasecurity:trivy:SrcRelease"]) == (
        "2.41",
        "12",
    )
    assert components[("guava", "com.google.guava")]["purl"] == (
        "pkg:maven/com.google.guava/guava@33.4.0-jre"
    )
    assert components[("dual", "")]["licenses"] == [{"expression": "(MIT OR Apache-2.0)"}]
    assert components[("mixed", "")]["licenses"] == [
        {"license": {"id": "ISC"}},
        {"license": {"name": "Custom Thing"}},
    ]
    refs = [c["bom-ref"] for c in document["components"]]
    assert len(refs) == len(set(refs))  # the jar found twice keeps two distinct refs
    dependencies = {d["ref"]: d["dependsOn"] for d in document["dependencies"]}
    assert "os:debian@13" in dependencies[document["metadata"]["component"]["bom-ref"]]
    assert libc["bom-ref"] in dependencies["os:debian@13"]


def test_documents_are_deterministic_and_time_comes_from_source_date_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    for kind in SbomFormat:
        first = render(kind, everything(), image_info())
        assert first == render(kind, everything(), image_info())
    cdx = json.loads(render(SbomFormat.CYCLONEDX_JSON, everything(), image_info()))
    assert cdx["metadata"]["timestamp"] == "2025-03-04T05:06:07Z"  # the image's, no fraction
    other = json.loads(
        render(SbomFormat.CYCLONEDX_JSON, everything(), image_info(digest="sha256:" + "9" * 64))
    )
    assert cdx["serialNumber"] != other["serialNumber"]
    assert cdx["serialNumber"].startswith("urn:uuid:")

    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(SDE))
    spdx = json.loads(render(SbomFormat.SPDX_JSON, everything(), image_info()))
    assert spdx["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    assert document_time(image_info(created=""), {}) == "1970-01-01T00:00:00Z"
    assert document_time(image_info(created="2025-01-01T01:00:00+01:00"), {}) == (
        "2025-01-01T00:00:00Z"
    )
    with pytest.raises(DistillError, match="SOURCE_DATE_EPOCH"):
        document_time(image_info(), {"SOURCE_DATE_EPOCH": "yesterday"})


def trivy_reads(document: Path, cache: Path) -> dict[str, Any]:
    """What trivy makes of an SBOM, offline: its OS and package list."""
    out = cache / "report.json"
    subprocess.run(
        [
            str(TRIVY),
            "sbom",
            "--cache-dir",
            str(cache),
            "--cache-backend",
            "memory",
            "--offline-scan",
            "--skip-db-update",
            "--scanners",
            "license",
            "--format",
            "json",
            "--quiet",
            "--output",
            str(out),
            str(document),
        ],
        check=True,
        timeout=120,
    )
    report: dict[str, Any] = json.loads(out.read_text())
    return report


@pytest.mark.parametrize("kind", list(SbomFormat))
def test_trivy_reads_our_sboms_with_the_right_os_and_source_packages(
    kind: SbomFormat, tmp_path: Path
) -> None:
    catalog = build_catalog(debian_files(), symlinks=DEBIAN_LINKS)
    document = tmp_path / f"image.{kind.value}.json"
    document.write_bytes(render(kind, catalog, image_info()))
    report = trivy_reads(document, tmp_path)
    assert report["Metadata"]["OS"] == {"Family": "debian", "Name": "13"}
    os_results = [r for r in report["Results"] if r.get("Class") == "os-pkgs"]
    assert len(os_results) == 1
    found = {p["Name"]: p for p in os_results[0]["Packages"]}
    assert sorted(found) == ["bsdutils", "libc6", "python3-six", "tzdata"]
    assert (found["libc6"]["SrcName"], found["libc6"]["SrcVersion"]) == ("glibc", "2.41")
    assert found["bsdutils"]["SrcName"] == "util-linux"
    assert found["bsdutils"]["Version"] == "1:2.41-5"


# --- the command, on images written by distill's own OCI writers -------------------------------


def _entries(files: Mapping[str, CapturedFile]) -> list[FsEntry]:
    return [FsEntry(p, EntryKind.FILE, c.mode, content=c.data) for p, c in files.items()]


def write_test_image(tmp_path: Path, layers: list[list[FsEntry]]) -> Path:
    blobs = tmp_path / "blobs"
    built = [write_layer(entries, blobs, source_date_epoch=SDE) for entries in layers]
    image = compose_image(
        ImageConfigSpec(), Platform.parse("linux/amd64"), built, source_date_epoch=SDE
    )
    layout = tmp_path / "layout"
    write_oci_dir(image, layout)
    return layout


def run_distill(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # Wide enough that rich does not fold a long temporary path in the middle.
    wide = {"COLUMNS": "400"}
    return subprocess.run(
        [sys.executable, "-m", "distill", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **wide, **(env or {})},
    )


def test_sbom_command_reads_an_oci_layout_and_names_each_packages_layer(tmp_path: Path) -> None:
    base = {
        "usr/lib/os-release": f(DEBIAN_OS_RELEASE),
        "var/lib/dpkg/status.d/libssl3t64": f(SSL_CONTROL),
        "var/lib/dpkg/status.d/base-files": f(BASE_FILES_CONTROL),
        "usr/bin/true": f(b"\x7fELF" + b"\0" * 60, mode=0o755),
    }
    app = {
        "usr/local/lib/python3.13/site-packages/requests-2.32.3.dist-info/METADATA": f(
            REQUESTS_METADATA
        ),
        **java_files(),
    }
    del app["opt/tools/bad.war"]
    layout = write_test_image(tmp_path, [_entries(base), _entries(app)])
    out = tmp_path / "out" / "sbom.cdx.json"
    done = run_distill(
        "sbom",
        f"oci:{layout}",
        "--format",
        "cyclonedx-json",
        "-o",
        str(out),
        env={"SOURCE_DATE_EPOCH": str(SDE)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "2 deb, 3 maven, 1 python" in done.stderr
    document = json.loads(out.read_text())
    layers = {
        c["name"]: next(p["value"] for p in c["properties"] if p["name"] == "distill:layer")
        for c in document["components"][1:]
    }
    assert layers == {
        "base-files": "0",
        "libssl3t64": "0",
        "requests": "1",
        "app": "1",
        "guava": "1",
        "org.example.osgi.thing": "1",
    }
    assert document["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
    assert not list(out.parent.glob(".*"))  # the atomic write left no temporary behind

    again = run_distill("sbom", f"oci:{layout}", env={"SOURCE_DATE_EPOCH": str(SDE)})
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["spdxVersion"] == "SPDX-2.3"


def test_sbom_command_warns_on_stderr_when_nothing_accounts_for_the_executables(
    tmp_path: Path,
) -> None:
    scratch = {
        "app/server": f(b"\x7fELF\x02\x01\x01" + b"\0" * 57, mode=0o755),
        "app/run.sh": f(b"#!/bin/sh\nexec /app/server\n", mode=0o755),
        "app/data.bin": f(b"\x7fELF not executable", mode=0o644),
    }
    layout = write_test_image(tmp_path, [_entries(scratch)])
    done = run_distill("-q", "sbom", f"oci:{layout}", "--format", "spdx-json")
    assert done.returncode == 0, done.stderr
    message = "no package database found: 2 executables are unaccounted for"
    assert message in " ".join(done.stderr.split())
    document = json.loads(done.stdout)
    assert message in document["comment"]
    assert [p["name"] for p in document["packages"]] == [f"oci:{layout}"]


def test_sbom_command_errors_name_the_problem(tmp_path: Path) -> None:
    done = run_distill("sbom", str(tmp_path / "missing.tar"))
    assert done.returncode == 1
    assert "error:" in done.stderr and "missing.tar" in done.stderr
    done = run_distill("sbom", str(tmp_path), "--format", "xml")
    assert done.returncode == 2
    assert "xml" in done.stderr


# --- real Debian images, against trivy --------------------------------------------------------


def trivy_image(archive: Path, tmp_path: Path) -> Path:
    out = tmp_path / "trivy.cdx.json"
    subprocess.run(
        [
            str(TRIVY),
            "image",
            "--cache-dir",
            str(tmp_path / "trivy-cache"),
            "--cache-backend",
            "memory",
            "--input",
            str(archive),
            "--format",
            "cyclonedx",
            "--offline-scan",
            "--pkg-types",
            "os",
            "--quiet",
            "--output",
            str(out),
        ],
        check=True,
        timeout=300,
    )
    return out


_TRIVY_SOURCE = ("SrcName", "SrcVersion", "SrcRelease", "SrcEpoch")


def deb_packages(path: Path) -> dict[str, tuple[str | None, ...]]:
    """name -> (version, and the source package as trivy's properties spell it)."""
    return deb_packages_of(json.loads(path.read_text()))


def deb_packages_of(document: dict[str, Any]) -> dict[str, tuple[str | None, ...]]:
    found: dict[str, tuple[str | None, ...]] = {}
    for c in document["components"]:
        if c["type"] == "library" and c["purl"].startswith("pkg:deb/"):
            props = {p["name"]: p["value"] for p in c.get("properties", [])}
            source = tuple(props.get(f"aquasecurity:trivy:{key}") for key in _TRIVY_SOURCE)
            found[c["name"]] = (c["version"], *source)
    return found


def assert_same_as_trivy(archive: Path, tmp_path: Path, at_least: int) -> dict[str, Any]:
    ours = tmp_path / "ours.cdx.json"
    done = run_distill("sbom", str(archive), "--format", "cyclonedx-json", "-o", str(ours))
    assert done.returncode == 0, done.stderr
    mine, trivys = deb_packages(ours), deb_packages(trivy_image(archive, tmp_path))
    assert len(mine) >= at_least
    assert mine == trivys  # names, versions and source packages
    document: dict[str, Any] = json.loads(ours.read_text())
    assert document["components"][0]["type"] == "operating-system"
    assert document["metadata"].get("properties") is None  # no warning: dpkg accounts for all
    return document


@pytest.mark.network
@pytest.mark.container
def test_real_trixie_rootfs_lists_the_same_packages_as_trivy(tmp_path: Path) -> None:
    image = build_fat_image(tmp_path / "image.tar", include=None)
    assert_same_as_trivy(image, tmp_path, at_least=60)  # minbase holds ~80 packages


@pytest.mark.network
def test_distill_built_distroless_image_lists_the_same_packages_as_trivy(tmp_path: Path) -> None:
    image = tmp_path / "python3.tar"
    built = run_distill("-q", "build", "python3", "-o", f"docker-archive:{image}:py:1")
    assert built.returncode == 0, built.stderr
    document = assert_same_as_trivy(image, tmp_path, at_least=20)
    # status.d: one file per package; the packages sit in more than one layer.
    layers = {
        p["value"]
        for c in document["components"][1:]
        for p in c["properties"]
        if p["name"] == "distill:layer"
    }
    assert len(layers) > 1
