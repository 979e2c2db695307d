"""``distill inspect``: the report on hand-built images, its renderings, and a real Debian."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from rich.console import Console

from analyze_images import (
    ADDED,
    SDE,
    elf,
    file,
    fixture_image,
    hardlink,
    opened,
    simple_image,
    symlink,
)
from distill.analyze.inspect import (
    AttackSurface,
    InspectReport,
    Program,
    TreeEntry,
    inspect_image,
    inspect_reference,
    parse_os_release,
    user_id,
)
from distill.analyze.render import render_inspect
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.model import Image as BuiltImage
from distill.transports._write import write_docker_archive, write_oci_dir
from fat_image import build_fat_image
from test_lock import run_cli


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    return fixture_image(tmp_path_factory.mktemp("blobs"))


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, image: BuiltImage) -> Path:
    path = tmp_path_factory.mktemp("inspect") / "layout"
    write_oci_dir(image, path, ref="v1")
    return path


@pytest.fixture(scope="module")
def report(layout: Path) -> InspectReport:
    with opened(f"oci:{layout}:v1") as source:
        return inspect_image(source, files="/usr", depth=1)


def test_sizes_layers_and_config(report: InspectReport, image: BuiltImage) -> None:
    assert report.manifest_digest == image.descriptor.digest
    assert report.config_digest == image.config_descriptor.digest
    assert report.platform == "linux/amd64" and report.platforms == ("linux/amd64",)
    assert report.compressed_size == sum(b.size for b in image.layers)
    assert report.uncompressed_size == sum(b.uncompressed_size for b in image.layers)
    # What the layers add, less what later layers overwrite or delete (bin/ls is a hardlink
    # to bin/busybox: its bytes once).
    assert report.content_size == sum(ADDED) - 3050
    assert [r.created_by for r in report.layers] == ["layer one", "layer two", "layer three"]
    assert [r.digest for r in report.layers] == [b.digest for b in image.layers]
    assert [r.compression for r in report.layers] == ["gzip", "zstd", "none"]
    assert [(r.files, r.bytes_added, r.whiteouts) for r in report.layers] == [
        (18, ADDED[0], 0),
        (1, 800, 3),
        (2, 750, 1),
    ]
    config = report.config
    assert (config.entrypoint, config.cmd) == (("/usr/local/bin/run.sh",), ("--serve",))
    assert (config.user, config.workdir, config.ports) == ("app", "/app", ("8080/tcp",))
    assert config.env == ("PATH=/usr/bin:/bin", "LANG=C.UTF-8")
    assert report.os is not None
    assert (report.os.id, report.os.version_id, report.os.codename) == ("debian", "13", "trixie")
    assert (report.os.source, report.os.debian_version) == ("/etc/os-release", "13.0")


def test_attack_surface(report: InspectReport) -> None:
    assert report.surface == AttackSurface(
        shells=(
            Program("bash", "/usr/bin/bash", "/usr/bin/bash"),
            Program("ash", "/bin/ash", "/bin/busybox", busybox=True),
            Program("sh", "/bin/sh", "/bin/busybox", busybox=True),
        ),
        # apt-get was deleted by layer 2; pip3.12 is pip under another name
        package_managers=(
            Program("dpkg", "/usr/bin/dpkg", "/usr/bin/dpkg"),
            Program("pip3.12", "/usr/bin/pip3.12", "/usr/bin/pip3.12"),
        ),
        busybox=("/bin/busybox",),
        busybox_applets=("/bin/ash", "/bin/ls", "/bin/sh"),  # symlinks and a hardlink
        executables=8,  # busybox, ls, bash, dpkg, su, wall; pip3.12 and run.sh
        elf=6,
        scripts=2,
        other_exec_bit=1,  # usr/share/data.bin
        setuid=("/usr/bin/su",),
        setgid=("/usr/bin/wall",),
        world_writable=("/data", "/var/www/upload.txt"),  # not /tmp: it is sticky
        user="app",
        uid=1000,
        runs_as_root=False,
    )


def test_efficiency_by_hand(report: InspectReport) -> None:
    e = report.efficiency
    assert (e.added_bytes, e.wasted_bytes) == (sum(ADDED), 3050)
    assert e.score == pytest.approx(1 - 3050 / sum(ADDED))
    assert e.dive_score == pytest.approx((sum(ADDED) - 2150) / sum(ADDED))
    assert e.dive_wasted_bytes == 2850
    assert e.deleted_paths == 0 + 1 + 1 + 3  # notthere, old.log, apt-get, cache's three
    assert [(w.path, w.wasted, w.layers) for w in e.top] == [
        ("/app/big.bin", 1800, (0, 1, 2)),
        ("/cache/sub/b", 500, (0, 2)),
        ("/cache/a", 400, (0, 2)),
        ("/app/old.log", 300, (0, 1)),
        ("/usr/bin/apt-get", 50, (0, 1)),
    ]


def test_file_tree(report: InspectReport, layout: Path) -> None:
    assert report.files == TreeEntry(
        "/usr",
        "dir",
        419 + 93 + 20 + 18,
        8,
        children=(
            TreeEntry("/usr/bin", "dir", 200 + 150 + 19 + 30 + 20, 5),
            TreeEntry("/usr/lib", "dir", 93, 1),
            TreeEntry("/usr/share", "dir", 20, 1),
            TreeEntry("/usr/local", "dir", 18, 1),
        ),
    )
    with opened(str(layout)) as source:
        root = inspect_image(source, files="/bin/", depth=3).files
    assert root is not None
    assert (root.path, root.size, root.files) == ("/bin", 1000, 1)  # ls: the same inode
    assert [(c.path, c.kind, c.link) for c in root.children] == [
        ("/bin/busybox", "file", ""),
        ("/bin/ash", "symlink", "/bin/busybox"),
        ("/bin/ls", "file", ""),
        ("/bin/sh", "symlink", "busybox"),
    ]
    with (
        opened(str(layout)) as source,
        pytest.raises(DistillError, match="/nowhere is not in the image"),
    ):
        inspect_image(source, files="/nowhere")


def test_tree_lists_the_largest_children(tmp_path: Path) -> None:
    entries = [file(f"d/f{i:02}", b"x" * i) for i in range(1, 31)]
    write_oci_dir(simple_image(tmp_path / "b", entries), tmp_path / "layout")
    with opened(str(tmp_path / "layout")) as source:
        tree = inspect_image(source, files="/d", depth=1).files
    assert tree is not None
    assert [c.size for c in tree.children] == list(range(30, 5, -1))  # 25 largest
    assert (tree.omitted, tree.omitted_size) == (5, 1 + 2 + 3 + 4 + 5)


def test_json_is_plain_data(report: InspectReport) -> None:
    data = json.loads(json.dumps(report.to_json()))
    assert data["efficiency"]["wasted_bytes"] == 3050
    assert data["surface"]["shells"][0] == {
        "name": "bash",
        "path": "/usr/bin/bash",
        "target": "/usr/bin/bash",
        "busybox": False,
    }
    assert data["files"]["children"][0]["path"] == "/usr/bin"
    assert data["layers"][1]["created_by"] == "layer two"


def test_render(report: InspectReport) -> None:
    console = Console(record=True, width=200, color_system=None)
    render_inspect(report, console)
    text = console.export_text()
    for expected in (
        "Debian GNU/Linux 13 (trixie)",
        "/usr/bin/bash, /bin/ash (busybox), /bin/sh (busybox)",
        "/bin/busybox with 3 applets",
        "8 (6 ELF, 2 scripts); 1 other files with an exec bit",
        "/usr/bin/su",
        "/data, /var/www/upload.txt",
        "app: uid 1000",
        f"efficiency {1 - 3050 / sum(ADDED):.1%}",
        "/app/big.bin",
        "layer three",
        "/usr/bin/",
    ):
        assert expected in text, expected


# --- users and OS detection ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "uid"),
    [
        ("", 0),
        ("root", 0),
        ("0", 0),
        ("0:0", 0),
        ("root:staff", 0),
        ("app", 1000),
        ("app:app", 1000),
        ("65532", 65532),
        ("nobody", None),  # not in /etc/passwd: a runtime would refuse to start it
    ],
)
def test_user_id(user: str, uid: int | None) -> None:
    assert user_id(user, "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n") == uid


@pytest.mark.parametrize("user", ["", "0:0", "root"])
def test_root_images_are_flagged(tmp_path: Path, user: str) -> None:
    built = fixture_image(tmp_path / "b", user=user)
    write_oci_dir(built, tmp_path / "layout")
    with opened(str(tmp_path / "layout")) as source:
        surface = inspect_image(source).surface
    assert (surface.uid, surface.runs_as_root) == (0, True)


def test_os_release_parsing() -> None:
    text = 'NAME="Alpine Linux"\nID=alpine\n# comment\nVERSION_ID=3.20.1\nPRETTY_NAME="A \\"q\\""\n'
    assert parse_os_release(text) == {
        "NAME": "Alpine Linux",
        "ID": "alpine",
        "VERSION_ID": "3.20.1",
        "PRETTY_NAME": 'A "q"',
    }


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([file("etc/alpine-release", b"3.20.1\n")], ("alpine", "3.20.1", "/etc/alpine-release")),
        ([file("etc/debian_version", b"12.7\n")], ("debian", "", "/etc/debian_version")),
        (
            [file("usr/lib/os-release", b"ID=wolfi\nVERSION_ID=20230201\n")],
            ("wolfi", "20230201", "/usr/lib/os-release"),
        ),
        ([file("etc/hostname", b"x\n")], None),
    ],
)
def test_os_detection(
    tmp_path: Path, entries: list[FsEntry], expected: tuple[str, str, str] | None
) -> None:
    write_oci_dir(simple_image(tmp_path / "b", entries), tmp_path / "layout")
    with opened(str(tmp_path / "layout")) as source:
        found = inspect_image(source).os
    assert (None if found is None else (found.id, found.version_id, found.source)) == expected


def test_distroless_debug_busybox_and_dangling_shells(tmp_path: Path) -> None:
    """distroless-style /busybox/ with applets as hardlinks; a /bin/sh that points nowhere is
    not a shell."""
    entries = [
        file("busybox/busybox", elf(500), 0o755),
        hardlink("busybox/sh", "busybox/busybox"),
        hardlink("busybox/wget", "busybox/busybox"),
        symlink("bin/sh", "/busybox/gone"),
        FsEntry("usr/bin/npm", EntryKind.SYMLINK, 0o777, linkname="../lib/node/npm-cli.js"),
        file("usr/lib/node/npm-cli.js", b"#!/usr/bin/env node\n", 0o755),
    ]
    write_oci_dir(simple_image(tmp_path / "b", entries), tmp_path / "layout")
    with opened(str(tmp_path / "layout")) as source:
        surface = inspect_image(source).surface
    assert surface.shells == (Program("sh", "/busybox/sh", "/busybox/sh", busybox=True),)
    assert surface.busybox == ("/busybox/busybox",)
    assert surface.busybox_applets == ("/busybox/sh", "/busybox/wget")
    assert surface.package_managers == (Program("npm", "/usr/bin/npm", "/usr/lib/node/npm-cli.js"),)
    assert (surface.elf, surface.scripts) == (3, 1)


# --- the command line ----------------------------------------------------------------------


def test_cli_json_matches_the_library(layout: Path) -> None:
    done = run_cli("-q", "inspect", f"oci:{layout}:v1", "--json", "--files=/usr", "--depth", "1")
    assert done.returncode == 0, done.stderr
    with opened(f"oci:{layout}:v1") as source:
        expected = inspect_image(source, files="/usr", depth=1)
    assert json.loads(done.stdout) == json.loads(json.dumps(expected.to_json()))


def test_cli_human_output_and_files_flag(tmp_path: Path, image: BuiltImage) -> None:
    archive = tmp_path / "image.tar"
    write_docker_archive(image, archive, tag="example/app:1", source_date_epoch=SDE)
    done = run_cli("inspect", str(archive), "--files", env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "attack surface" in done.stdout and "/usr/bin/dpkg" in done.stdout
    assert "— (docker archive)" in done.stdout
    assert re.search(r"\d (B|KiB)\s+/$", done.stdout, re.MULTILINE)  # the tree's root, "/"
    assert "Inspecting" in done.stderr  # progress goes to stderr, the report to stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/image.tar"], "neither a file, a directory nor an image reference"),
        (["--platform", "linux/s390x"], "has no image for linux/s390x"),
        (["--files=/nowhere"], "/nowhere is not in the image"),
    ],
)
def test_cli_errors(layout: Path, args: list[str], message: str) -> None:
    if args[0].startswith("-"):
        args = [str(layout), *args]
    done = run_cli("inspect", *args, env={"COLUMNS": "300"})
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


# --- a real Debian, as a fat image ---------------------------------------------------------


@pytest.fixture
def debian_image(tmp_path: Path) -> Path:
    """mmdebstrap's minbase trixie, imported into podman and saved as a docker-archive."""
    return build_fat_image(tmp_path / "debian.tar", include=None)


@pytest.mark.network
@pytest.mark.container
def test_fat_debian_image(debian_image: Path) -> None:
    assert shutil.which("mmdebstrap")
    start = time.monotonic()
    report = inspect_reference(str(debian_image), files="/", depth=1)
    elapsed = time.monotonic() - start
    assert report.os is not None
    assert (report.os.id, report.os.version_id) == ("debian", "13")
    shells = {p.name for p in report.surface.shells}
    assert {"bash", "dash", "sh"} <= shells
    managers = {p.name for p in report.surface.package_managers}
    assert {"apt", "apt-get", "dpkg"} <= managers
    assert report.surface.runs_as_root
    assert report.surface.elf > 100 and "/usr/bin/su" in report.surface.setuid
    assert report.efficiency.score == 1.0  # one layer wastes nothing
    assert report.content_size > 50 << 20
    assert elapsed < 30, f"inspect took {elapsed:.1f}s"
    if os.environ.get("DISTILL_TEST_VERBOSE"):
        print(f"inspect: {elapsed:.2f}s for {report.uncompressed_size} bytes")
