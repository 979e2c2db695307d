"""Hostile images: layers, manifests, indexes, configs and archive members crafted to cost
memory, stack, open files or time. Each case is one real run of ``distill inspect``,
``sbom`` or ``compare`` on an image written here, ending in a clean error or a correct result
(with a warning where a cap was hit), within the harness's time and memory bounds."""

from __future__ import annotations

import json
import resource
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_harness import (
    Outcome,
    assert_bounded,
    assert_clean_error,
    changed,
    run_distill,
    snapshot,
)
from hostile_images import (
    INDEX_TYPE,
    MANIFEST_TYPE,
    OS_RELEASE,
    Layer,
    Layout,
    descriptor,
    docker_archive,
    image_of,
    info,
    nested_json,
    oci_archive,
    repeated,
    write_layout,
)

MB = 1 << 20
STANZA = b"Package: p%d\nStatus: install ok installed\nVersion: 1.%d\nArchitecture: amd64\n\n"


def stanzas(count: int, start: int = 0) -> bytes:
    return b"".join(STANZA % (i, i) for i in range(start, start + count))


def small_image(tmp: Path) -> str:
    layout = image_of(tmp, lambda layer: layer.file("etc/os-release", OS_RELEASE))
    return f"oci:{layout.root}"


def succeeded(outcome: Outcome, *warnings: str) -> str:
    """Exit 0, bounded, no traceback, and each of ``warnings`` in a warning line."""
    assert_bounded(outcome)
    assert outcome.returncode == 0, outcome.describe()
    warned = "\n".join(line for line in outcome.stderr.splitlines() if "warning:" in line)
    for text in warnings:
        assert text in warned, f"{text!r} not warned\n{outcome.describe()}"
    return outcome.stdout


def report(name: str, outcome: Outcome) -> None:
    print(
        f"\n{name}: exit {outcome.returncode}, {outcome.seconds:.1f} s, {outcome.max_rss >> 20} MiB"
    )


# --- package databases and other files read from an image ----------------------------------


@pytest.fixture(scope="module")
def huge_status(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image whose dpkg status is 200 MB of real-looking stanzas."""
    tmp = tmp_path_factory.mktemp("status")
    block = stanzas(20_000)
    size = 200 * MB
    layout = image_of(
        tmp,
        lambda layer: layer.file("etc/os-release", OS_RELEASE).stream(
            "var/lib/dpkg/status", size, repeated(block, size)
        ),
    )
    return f"oci:{layout.root}"


def test_a_200mb_dpkg_status_is_refused_by_sbom_in_bounded_memory(
    sandbox: Path, huge_status: str
) -> None:
    outcome = run_distill(["sbom", huge_status], cwd=sandbox)
    report("sbom, 200 MB dpkg status", outcome)
    assert_clean_error(outcome, "/var/lib/dpkg/status", "64 MiB")
    assert outcome.max_rss < 256 * MB, outcome.describe()


def test_a_200mb_dpkg_status_is_refused_by_compare_in_bounded_memory(
    sandbox: Path, huge_status: str, tmp_path: Path
) -> None:
    outcome = run_distill(
        ["compare", "--no-vulnerabilities", small_image(tmp_path), huge_status], cwd=sandbox
    )
    report("compare, 200 MB dpkg status", outcome)
    assert_clean_error(outcome, "/var/lib/dpkg/status", "64 MiB")
    assert outcome.max_rss < 256 * MB, outcome.describe()


def test_a_200mb_dpkg_status_costs_inspect_nothing(sandbox: Path, huge_status: str) -> None:
    outcome = run_distill(["inspect", huge_status], cwd=sandbox)
    report("inspect, 200 MB dpkg status", outcome)
    assert "Debian" in succeeded(outcome)


def test_a_status_declaring_more_packages_than_any_image_is_refused(
    sandbox: Path, tmp_path: Path
) -> None:
    data = stanzas(60_000)  # 4 MB: under the size cap, over the package cap
    layout = image_of(tmp_path, lambda layer: layer.file("var/lib/dpkg/status", data))
    outcome = run_distill(["sbom", f"oci:{layout.root}"], cwd=sandbox)
    report("sbom, 60,000 packages", outcome)
    assert_clean_error(outcome, "more than 50000 packages")


def test_a_big_real_looking_status_is_read_whole(sandbox: Path, tmp_path: Path) -> None:
    data = stanzas(20_000)  # 1.4 MB, read in several windows
    layout = image_of(tmp_path, lambda layer: layer.file("var/lib/dpkg/status", data))
    outcome = run_distill(["sbom", "--format", "cyclonedx-json", f"oci:{layout.root}"], cwd=sandbox)
    document = json.loads(succeeded(outcome))
    assert len(document["components"]) == 20_000


def test_an_oversized_status_d_stanza_is_refused(sandbox: Path, tmp_path: Path) -> None:
    stanza = b"Package: big\nVersion: 1\nDescription: x\n" + b" y\n" * (MB // 2)
    layout = image_of(tmp_path, lambda layer: layer.file("var/lib/dpkg/status.d/big", stanza))
    outcome = run_distill(["sbom", f"oci:{layout.root}"], cwd=sandbox)
    assert_clean_error(outcome, "/var/lib/dpkg/status.d/big", "1 MiB")


@pytest.mark.parametrize("command", ["sbom", "inspect"])
def test_a_300mb_os_release_is_read_only_to_its_cap(
    sandbox: Path, tmp_path: Path, command: str
) -> None:
    size = 300 * MB
    head = OS_RELEASE + b"VERSION_CODENAME=trixie\n"
    line = b"# " + b"padding " * 15 + b"\n"
    layout = image_of(
        tmp_path,
        lambda layer: layer.stream(
            "etc/os-release", size, [head, *repeated(line * 8192, size - len(head))]
        ),
    )
    outcome = run_distill([command, f"oci:{layout.root}"], cwd=sandbox)
    report(f"{command}, 300 MB os-release", outcome)
    out = succeeded(outcome, "/etc/os-release is 314572800 bytes")
    assert "64 KiB" in outcome.stderr or "65536" in outcome.stderr
    assert "Debian GNU/Linux 13" in out
    assert outcome.max_rss < 256 * MB, outcome.describe()


def test_an_oversized_file_list_is_read_to_its_cap_with_a_warning(
    sandbox: Path, tmp_path: Path
) -> None:
    listing = b"".join(b"/usr/share/p/file-%08d\n" % i for i in range(800_000))  # 20 MB
    layout = image_of(
        tmp_path,
        lambda layer: layer.file("var/lib/dpkg/status", stanzas(1)).file(
            "var/lib/dpkg/info/p0.list", listing
        ),
    )
    outcome = run_distill(["sbom", f"oci:{layout.root}"], cwd=sandbox)
    out = succeeded(outcome, "/var/lib/dpkg/info/p0.list", "16 MiB")
    assert "pkg:deb/debian/p0@1.0" in out


def test_a_huge_copyright_file_is_read_to_its_cap(sandbox: Path, tmp_path: Path) -> None:
    text = b"Format: https://example.org/dep5\n\nFiles: *\nLicense: MIT\n" + b"x" * (5 * MB) + b"\n"
    layout = image_of(
        tmp_path,
        lambda layer: layer.file("var/lib/dpkg/status", stanzas(1)).file(
            "usr/share/doc/p0/copyright", text
        ),
    )
    outcome = run_distill(["sbom", "--format", "cyclonedx-json", f"oci:{layout.root}"], cwd=sandbox)
    out = succeeded(outcome, "/usr/share/doc/p0/copyright", "4 MiB")
    assert "MIT" in out


def test_an_oversized_python_metadata_file_is_skipped_with_a_warning(
    sandbox: Path, tmp_path: Path
) -> None:
    metadata = b"Metadata-Version: 2.1\nName: big\nVersion: 1.0\n\n" + b"d" * (2 * MB)
    layout = image_of(
        tmp_path,
        lambda layer: layer.file(
            "usr/lib/python3/dist-packages/big-1.0.dist-info/METADATA", metadata
        ),
    )
    outcome = run_distill(["sbom", f"oci:{layout.root}"], cwd=sandbox)
    out = succeeded(outcome, "big-1.0.dist-info/METADATA", "skipped")
    assert "pkg:pypi/big" not in out


def test_a_package_json_nested_50k_deep_is_a_warning(sandbox: Path, tmp_path: Path) -> None:
    good = json.dumps({"name": "left-pad", "version": "1.3.0"}).encode()
    layout = image_of(
        tmp_path,
        lambda layer: layer.file("app/node_modules/evil/package.json", nested_json(50_000)).file(
            "app/node_modules/left-pad/package.json", good
        ),
    )
    outcome = run_distill(["sbom", f"oci:{layout.root}"], cwd=sandbox)
    out = succeeded(outcome, "app/node_modules/evil/package.json is nested more than")
    assert "pkg:npm/left-pad@1.3.0" in out


# --- tar names and paths -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tar_format"),
    [("gnu-longname", tarfile.GNU_FORMAT), ("pax-path", tarfile.PAX_FORMAT)],
)
def test_a_1mb_tar_name_is_refused(
    sandbox: Path, tmp_path: Path, name: str, tar_format: int
) -> None:
    layer = Layer(tmp_path / "layer.tar", tar_format)
    layer.file("a" * 1_000_000, b"x")
    layout = write_layout(tmp_path / "layout", [layer.close()])
    outcome = run_distill(["inspect", f"oci:{layout.root}"], cwd=sandbox)
    report(f"inspect, 1 MB {name}", outcome)
    assert_clean_error(outcome, "layer 1", "longer than 65536 bytes")


def test_a_1mb_symlink_target_is_refused(sandbox: Path, tmp_path: Path) -> None:
    layout = image_of(
        tmp_path, lambda layer: layer.add(info("link", tarfile.SYMTYPE, link="b/" * 500_000))
    )
    outcome = run_distill(["sbom", f"oci:{layout.root}"], cwd=sandbox)
    assert_clean_error(outcome, "link target longer than 65536 bytes")


def test_a_2mb_pax_header_is_refused(sandbox: Path, tmp_path: Path) -> None:
    member = info("f", size=1)
    member.pax_headers = {"comment": "c" * (2 * MB)}
    layout = image_of(tmp_path, lambda layer: layer.add(member, b"x"))
    outcome = run_distill(["inspect", f"oci:{layout.root}"], cwd=sandbox)
    assert_clean_error(outcome, "extended header")


@pytest.mark.parametrize("command", ["inspect", "sbom"])
def test_a_path_20000_directories_deep_is_refused(
    sandbox: Path, tmp_path: Path, command: str
) -> None:
    layout = image_of(tmp_path, lambda layer: layer.file("d/" * 20_000 + "f", b"x"))
    outcome = run_distill([command, f"oci:{layout.root}"], cwd=sandbox)
    report(f"{command}, 20,000-deep path", outcome)
    assert_clean_error(outcome, "longer than 4096 bytes")


def test_deep_directories_made_one_entry_at_a_time_are_refused(
    sandbox: Path, tmp_path: Path
) -> None:
    def build(layer: Layer) -> None:
        for depth in range(1, 2100):
            layer.add(info("d/" * depth, tarfile.DIRTYPE, mode=0o755))

    layout = image_of(tmp_path, build)
    outcome = run_distill(
        ["compare", "--no-vulnerabilities", f"oci:{layout.root}", small_image(tmp_path / "s")],
        cwd=sandbox,
    )
    assert_clean_error(outcome, "longer than 4096 bytes")


def test_a_symlink_to_its_own_directory_20000_times_over_lands_at_the_root(
    sandbox: Path, tmp_path: Path
) -> None:
    layout = image_of(
        tmp_path,
        lambda layer: layer.add(info("l", tarfile.SYMTYPE, link=".")).file(
            "l/" * 20_000 + "f", b"x"
        ),
    )
    outcome = run_distill(["inspect", "--json", f"oci:{layout.root}", "--files=/"], cwd=sandbox)
    assert '"/f"' in succeeded(outcome)


def test_a_path_climbing_out_through_a_symlink_stays_in_the_image(
    sandbox: Path, tmp_path: Path
) -> None:
    root = tmp_path / "outside"
    root.mkdir()
    before = snapshot(tmp_path)
    layout = image_of(
        tmp_path / "img",
        lambda layer: (
            layer.add(info("up", tarfile.SYMTYPE, link="../../../../" + str(root)))
            .file("up/escaped", b"x")
            .file("../../../escaped2", b"y")
        ),
    )
    outcome = run_distill(["inspect", "--json", f"oci:{layout.root}"], cwd=sandbox)
    succeeded(outcome)
    assert not any(p.startswith("outside/") for p in changed(before, snapshot(tmp_path)))


# --- manifests, configs, indexes -----------------------------------------------------------


def _deep(doc: dict[str, Any]) -> bytes:
    del doc
    return nested_json(50_000, '{"a": 1}')


@pytest.mark.parametrize("part", ["index", "manifest", "config"])
def test_json_nested_50k_deep_is_refused(sandbox: Path, tmp_path: Path, part: str) -> None:
    layout = image_of(tmp_path, lambda layer: layer.file("f", b"x"), **{part: _deep})
    outcome = run_distill(["inspect", f"oci:{layout.root}"], cwd=sandbox)
    assert_clean_error(outcome, "nested more than 200 levels")


def test_20000_layers_are_refused(sandbox: Path, tmp_path: Path) -> None:
    def many(doc: dict[str, Any]) -> bytes:
        doc["layers"] = doc["layers"] * 20_000
        return json.dumps(doc).encode()

    def diff_ids(doc: dict[str, Any]) -> bytes:
        doc["rootfs"]["diff_ids"] = doc["rootfs"]["diff_ids"] * 20_000
        return json.dumps(doc).encode()

    layout = image_of(tmp_path, lambda layer: layer.file("f", b"x"), manifest=many, config=diff_ids)
    outcome = run_distill(["sbom", f"oci:{layout.root}"], cwd=sandbox)
    report("sbom, 20,000 layers", outcome)
    assert_clean_error(outcome, "20000 layers", "at most 1000")


@pytest.fixture
def few_open_files() -> Iterator[None]:
    """The children of this test may open 200 files at once, far fewer than the layers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_1000_layers_are_read_without_an_open_file_each(
    sandbox: Path, tmp_path: Path, few_open_files: None
) -> None:
    layers = []
    for i in range(1000):
        layer = Layer(tmp_path / f"layer{i}.tar")
        layers.append(layer.file(f"layer/{i}", b"%d" % i).close())
    layout = write_layout(tmp_path / "layout", layers)
    outcome = run_distill(["inspect", "--json", f"oci:{layout.root}"], cwd=sandbox)
    report("inspect, 1,000 layers, 200 open files at most", outcome)
    assert len(json.loads(succeeded(outcome))["layers"]) == 1000


def test_an_index_of_100k_manifests_is_refused(sandbox: Path, tmp_path: Path) -> None:
    def huge(doc: dict[str, Any]) -> bytes:
        doc["manifests"] = doc["manifests"] * 100_000
        return json.dumps(doc).encode()

    layout = image_of(tmp_path, lambda layer: layer.file("f", b"x"), index=huge)
    outcome = run_distill(["inspect", f"oci:{layout.root}"], cwd=sandbox)
    assert_clean_error(outcome, "more than 10000 manifests")


def _index_chain(layout: Layout, levels: int, fanout: int = 1) -> bytes:
    """index.json over ``levels`` nested index blobs, each listing the next ``fanout`` times."""
    inner = descriptor(MANIFEST_TYPE, layout.manifest)
    for _ in range(levels):
        data = json.dumps({"schemaVersion": 2, "manifests": [inner] * fanout}).encode()
        inner = {"mediaType": INDEX_TYPE, **layout.blob(data)}
    return json.dumps({"schemaVersion": 2, "manifests": [inner]}).encode()


def test_indexes_nested_too_deep_are_refused(sandbox: Path, tmp_path: Path) -> None:
    layout = image_of(tmp_path, lambda layer: layer.file("f", b"x"))
    (layout.root / "index.json").write_bytes(_index_chain(layout, 6))
    outcome = run_distill(["inspect", f"oci:{layout.root}"], cwd=sandbox)
    assert_clean_error(outcome, "nest deeper than")


def test_indexes_listing_each_other_thousands_of_times_are_refused(
    sandbox: Path, tmp_path: Path
) -> None:
    layout = image_of(tmp_path, lambda layer: layer.file("f", b"x"))
    (layout.root / "index.json").write_bytes(_index_chain(layout, 2, fanout=5000))
    outcome = run_distill(["inspect", f"oci:{layout.root}"], cwd=sandbox)
    assert_clean_error(outcome, "more than 10000 manifests")


@pytest.mark.parametrize(
    ("what", "mention"),
    [
        ("layer", "but the manifest says"),
        ("config", "claims to be"),
        ("negative", "lacks a mediaType or a size"),
    ],
)
def test_absurd_sizes_in_descriptors_are_refused(
    sandbox: Path, tmp_path: Path, what: str, mention: str
) -> None:
    def patch(doc: dict[str, Any]) -> bytes:
        if what == "layer":
            doc["layers"][0]["size"] = 1 << 62
        elif what == "config":
            doc["config"]["size"] = 1 << 62
        else:
            doc["layers"][0]["size"] = -5
        return json.dumps(doc).encode()

    layout = image_of(tmp_path, lambda layer: layer.file("f", b"x"), manifest=patch)
    outcome = run_distill(["sbom", f"oci:{layout.root}"], cwd=sandbox)
    assert_clean_error(outcome, mention)


# --- archive members -----------------------------------------------------------------------


def _one_layer(tmp: Path) -> Path:
    return Layer(tmp / "layer.tar").file("etc/os-release", OS_RELEASE).close()


def test_a_docker_archive_manifest_nested_50k_deep_is_refused(
    sandbox: Path, tmp_path: Path
) -> None:
    archive = docker_archive(
        tmp_path / "x.tar", [_one_layer(tmp_path)], manifest=lambda _: nested_json(50_000)
    )
    outcome = run_distill(["inspect", f"docker-archive:{archive}"], cwd=sandbox)
    assert_clean_error(outcome, "manifest.json", "nested more than 200 levels")


def test_a_docker_archive_naming_missing_layers_is_refused(sandbox: Path, tmp_path: Path) -> None:
    def missing(entries: list[dict[str, Any]]) -> bytes:
        entries[0]["Layers"] = ["nowhere/layer.tar"]
        return json.dumps(entries).encode()

    archive = docker_archive(tmp_path / "x.tar", [_one_layer(tmp_path)], manifest=missing)
    outcome = run_distill(["sbom", f"docker-archive:{archive}"], cwd=sandbox)
    assert_clean_error(outcome, "nowhere/layer.tar", "missing")


@pytest.mark.parametrize(
    ("kind", "link"),
    [
        (tarfile.SYMTYPE, "loop/layer.tar"),  # a link to itself
        (tarfile.LNKTYPE, "/etc/passwd"),  # a hardlink out of the archive
        (tarfile.SYMTYPE, "../../../../etc/passwd"),
        (tarfile.CHRTYPE, ""),  # a device
        (tarfile.FIFOTYPE, ""),
    ],
)
def test_docker_archive_layers_that_are_links_or_devices_are_refused(
    sandbox: Path, tmp_path: Path, kind: bytes, link: str
) -> None:
    def odd(entries: list[dict[str, Any]]) -> bytes:
        entries[0]["Layers"] = ["loop/layer.tar"]
        return json.dumps(entries).encode()

    member = info("loop/layer.tar", kind, link=link)
    archive = docker_archive(
        tmp_path / "x.tar", [_one_layer(tmp_path)], manifest=odd, extra=[(member, b"")]
    )
    outcome = run_distill(["inspect", f"docker-archive:{archive}"], cwd=sandbox)
    assert_clean_error(outcome, "loop/layer.tar")


def test_duplicate_docker_archive_members_read_as_the_last_one(
    sandbox: Path, tmp_path: Path
) -> None:
    layer = _one_layer(tmp_path)
    bogus = info("0/layer.tar", size=10240)
    archive = docker_archive(tmp_path / "x.tar", [layer], extra=[(bogus, bytes(10240))])
    outcome = run_distill(["inspect", f"docker-archive:{archive}"], cwd=sandbox)
    assert_clean_error(outcome, "layer 1", "diff_id")


def test_oci_archive_members_named_with_dotdot_are_read_in_place(
    sandbox: Path, tmp_path: Path
) -> None:
    layout = image_of(tmp_path / "img", lambda layer: layer.file("etc/os-release", OS_RELEASE))
    archive = tmp_path / "x.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.root.rglob("*")):
            tar.add(
                path, arcname="../../" + path.relative_to(layout.root).as_posix(), recursive=False
            )
    before = snapshot(tmp_path)
    outcome = run_distill(["inspect", f"oci-archive:{archive}"], cwd=sandbox)
    assert "Debian" in succeeded(outcome)
    assert changed(before, snapshot(tmp_path)) <= {"sandbox", "sandbox/tmp"}


def test_an_oci_archive_blob_hardlinked_out_of_the_archive_is_missing(
    sandbox: Path, tmp_path: Path
) -> None:
    layout = image_of(tmp_path / "img", lambda layer: layer.file("f", b"x"))
    blob = next(
        p for p in (layout.root / "blobs" / "sha256").iterdir() if p.name in layout.layers[0]
    )
    blob.unlink()
    member = info(f"blobs/sha256/{blob.name}", tarfile.LNKTYPE, link="/etc/passwd")
    archive = oci_archive(layout.root, tmp_path / "x.tar", extra=[(member, b"")])
    outcome = run_distill(["sbom", f"oci-archive:{archive}"], cwd=sandbox)
    assert_clean_error(outcome, blob.name[:12], "missing")


def test_a_layer_with_an_absurd_member_size_is_refused(sandbox: Path, tmp_path: Path) -> None:
    member = info("f", size=1)
    member.pax_headers = {"size": str(1 << 80)}
    layout = image_of(tmp_path, lambda layer: layer.add(member, b"x"))
    outcome = run_distill(["inspect", f"oci:{layout.root}"], cwd=sandbox)
    assert_clean_error(outcome, "layer 1")


def test_an_oversized_pom_properties_in_a_jar_is_skipped_with_a_warning(
    sandbox: Path, tmp_path: Path
) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as jar:
        jar.writestr("META-INF/maven/g/a/pom.properties", b"groupId=g\n" + b"#" * (2 * MB))
        jar.writestr(
            "META-INF/MANIFEST.MF", "Implementation-Title: app\nImplementation-Version: 2.0\n"
        )
    layout = image_of(tmp_path, lambda layer: layer.file("app/app.jar", buffer.getvalue()))
    outcome = run_distill(["sbom", f"oci:{layout.root}"], cwd=sandbox)
    out = succeeded(outcome, "app/app.jar!/META-INF/maven/g/a/pom.properties", "1 MiB")
    assert "pkg:maven/app@2.0" in out


def test_thousands_of_files_2000_directories_deep_are_summed_once(
    sandbox: Path, tmp_path: Path
) -> None:
    def build(layer: Layer) -> None:
        for i in range(5000):
            layer.file("d/" * 2030 + f"f{i}", b"x")

    layout = image_of(tmp_path, build)
    outcome = run_distill(
        ["inspect", "--json", f"oci:{layout.root}", "--files=/", "--depth", "100000"], cwd=sandbox
    )
    report("inspect, 5,000 files 2,030 directories deep", outcome)
    tree = json.loads(succeeded(outcome))["files"]
    assert (tree["size"], tree["files"]) == (5000, 5000)


@pytest.mark.parametrize("command", ["sbom", "compare"])
def test_markup_and_newlines_in_a_file_name_are_warned_as_text(
    sandbox: Path, tmp_path: Path, command: str
) -> None:
    name = "x[/y]\nerror: forged/node_modules/p/package.json"
    layout = image_of(tmp_path / "img", lambda layer: layer.file(name, b"{bad"))
    image = f"oci:{layout.root}"
    args = (
        ["sbom", image] if command == "sbom" else ["compare", "--no-vulnerabilities", image, image]
    )
    outcome = run_distill(args, cwd=sandbox)
    succeeded(outcome, "x[/y]\\nerror: forged/node_modules/p/package.json is not valid JSON")
    assert not any(line.startswith("error:") for line in outcome.stderr.splitlines())


def test_a_docker_archive_of_20000_layers_is_refused(sandbox: Path, tmp_path: Path) -> None:
    def many(entries: list[dict[str, Any]]) -> bytes:
        entries[0]["Layers"] = entries[0]["Layers"] * 20_000
        return json.dumps(entries).encode()

    archive = docker_archive(tmp_path / "x.tar", [_one_layer(tmp_path)], manifest=many)
    outcome = run_distill(
        ["compare", "--no-vulnerabilities", archive.as_posix(), archive.as_posix()], cwd=sandbox
    )
    assert_clean_error(outcome, "20000 layers", "at most 1000")


def test_an_index_json_larger_than_any_index_is_refused(sandbox: Path, tmp_path: Path) -> None:
    def padded(doc: dict[str, Any]) -> bytes:
        return json.dumps(doc).encode() + b" " * (17 * MB)

    layout = image_of(tmp_path, lambda layer: layer.file("f", b"x"), index=padded)
    outcome = run_distill(["sbom", f"oci:{layout.root}"], cwd=sandbox)
    assert_clean_error(outcome, "index.json", "too large")
