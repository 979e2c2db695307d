"""Hostile outputs: ``-o`` (and ``--html``) aimed at what must not be replaced.

Each case points a real run of distill at a node in the sandbox and asserts a clean error
that names the path, the node untouched (``os.lstat`` before and after), and nothing written
anywhere else. The image read is a tiny OCI archive made in the test. ``distill build`` cases
need a preset's packages only if the output check failed to stop them first: they are
marked network, and also assert that nothing was fetched (the check runs before any work).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hostile_harness import assert_bounded, assert_clean_error, changed, run_distill, snapshot

from analyze_images import OS_RELEASE, file, simple_image
from distill.transports._write import write_oci_archive

IMAGE = "img.tar"
Maker = Callable[[Path], tuple[Path, str]]  # sandbox -> (node to watch, -o argument)


def _image(sandbox: Path) -> None:
    image = simple_image(sandbox / "blobs", [file("etc/os-release", OS_RELEASE)])
    write_oci_archive(image, sandbox / IMAGE)
    shutil.rmtree(sandbox / "blobs")


def _state(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_rdev, st.st_nlink)


def _device(sandbox: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    node = sandbox / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
    return node


def _fifo(sandbox: Path) -> Path:
    os.mkfifo(sandbox / "fifo")
    return sandbox / "fifo"


@pytest.fixture
def listening(sandbox: Path) -> Iterator[Path]:
    path = sandbox / "sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    yield path
    server.close()


def _symlink(sandbox: Path, name: str, target: str | Path) -> Path:
    (sandbox / name).symlink_to(target)
    return sandbox / name


def _immutable_dir(sandbox: Path) -> Path:
    locked = sandbox / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o500)
        return locked
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(locked)], check=False).returncode:
        pytest.skip("root needs chattr +i to make a directory it cannot write")
    return locked


def _unlock(sandbox: Path) -> None:
    locked = sandbox / "locked"
    if locked.exists() and os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(locked)], check=False)


def _long(length: int) -> str:
    return "x" * length


# name -> (make the node, what the error mentions). The watched node is what must not change.
FILE_CASES: dict[str, tuple[Maker, tuple[str, ...]]] = {
    "device_node": (lambda s: (_device(s), "null"), ("character device",)),
    "fifo": (lambda s: (_fifo(s), "fifo"), ("fifo",)),
    "dangling_symlink": (
        lambda s: (_symlink(s, "dangling", "nowhere"), "dangling"),
        ("symlink to nothing",),
    ),
    "symlink_to_device": (
        lambda s: (_symlink(s, "to-null", _device(s)), "to-null"),
        ("symlink to a character device",),
    ),
    "symlink_to_directory": (
        lambda s: (_symlink(s, "to-dir", s / "tmp"), "to-dir"),
        ("symlink to a directory",),
    ),
    "symlink_loop": (
        lambda s: (_symlink(s, "loop", "loop"), "loop"),
        ("symbolic links",),
    ),
    "directory_as_file_output": (lambda s: (s / "tmp", "tmp"), ("is a directory",)),
    "output_is_the_input": (lambda s: (s / IMAGE, IMAGE), ("is the input",)),
    "symlink_to_the_input": (
        lambda s: (_symlink(s, "alias.tar", IMAGE), "alias.tar"),
        ("is the input",),
    ),
    "path_under_a_regular_file": (
        lambda s: (s / IMAGE, f"{IMAGE}/sbom.json"),
        ("not a directory",),
    ),
    "over_long_path": (lambda s: (s, "a/" * 2600 + "sbom.json"), ("too long",)),
    "over_long_name": (lambda s: (s, _long(300) + ".json"), ("too long",)),
    "unwritable_parent": (
        lambda s: (_immutable_dir(s), "locked/sbom.json"),
        ("not writable",),
    ),
}


def _refused(sandbox: Path, args: list[str], node: Path, mentions: tuple[str, ...]) -> None:
    before_node = _state(node)
    before = snapshot(sandbox)
    try:
        outcome = run_distill(args, cwd=sandbox)
    finally:
        _unlock(sandbox)
    assert_clean_error(outcome, *mentions)
    assert _state(node) == before_node, "the node was changed"
    assert changed(before, snapshot(sandbox)) == set(), outcome.describe()


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_sbom_output_refused(sandbox: Path, case: str) -> None:
    _image(sandbox)
    make, mentions = FILE_CASES[case]
    node, target = make(sandbox)
    _refused(sandbox, ["sbom", f"oci-archive:{IMAGE}", "-o", target], node, mentions)


def test_sbom_output_onto_a_socket_refused(sandbox: Path, listening: Path) -> None:
    _image(sandbox)
    _refused(sandbox, ["sbom", IMAGE, "-o", "sock"], listening, ("socket",))


@pytest.mark.parametrize(
    "case", ["device_node", "fifo", "directory_as_file_output", "output_is_the_input"]
)
def test_compare_html_refused(sandbox: Path, case: str) -> None:
    _image(sandbox)
    make, mentions = FILE_CASES[case]
    node, target = make(sandbox)
    args = ["compare", IMAGE, f"oci-archive:{IMAGE}", "--no-vulnerabilities", "--html", target]
    _refused(sandbox, args, node, mentions)


def test_symlink_to_a_regular_file_replaces_that_file(sandbox: Path) -> None:
    """The one kind of symlink followed: the file it leads to is replaced, the link stays."""
    _image(sandbox)
    (sandbox / "out").mkdir()
    real = sandbox / "out" / "sbom.json"
    real.write_text("old")
    link = _symlink(sandbox, "sbom.json", real)
    link_before = _state(link)
    outcome = run_distill(["sbom", IMAGE, "-o", "sbom.json"], cwd=sandbox)
    assert_bounded(outcome)
    assert outcome.returncode == 0, outcome.describe()
    assert _state(link) == link_before
    assert real.read_text().startswith("{")
    assert sorted(os.listdir(sandbox / "out")) == ["sbom.json"]  # no temporary left


def test_the_5000_character_oci_path_of_the_issue(sandbox: Path) -> None:
    """Was a "File name too long" traceback: a clean error, long path cut in the message."""
    outcome = run_distill(["inspect", f"oci:{_long(5000)}"], cwd=sandbox)
    line = assert_clean_error(outcome)
    assert len(line) < 600


def test_containers_storage_name_is_not_an_option(sandbox: Path) -> None:
    """``containers-storage:--help`` must not reach podman as its option."""
    outcome = run_distill(["inspect", "containers-storage:--help"], cwd=sandbox)
    assert_clean_error(outcome, "does not name an image")
    assert "Usage" not in outcome.stdout + outcome.stderr


# --- distill build: the output is checked before anything is fetched ----------------------


def _layout_with_foreign_files(sandbox: Path) -> tuple[Path, str]:
    out = sandbox / "layout"
    (out / "blobs" / "sha256").mkdir(parents=True)
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (out / "index.json").write_text('{"schemaVersion":2,"manifests":[]}')
    (out / "notes.txt").write_text("mine, not distill's")
    return out / "notes.txt", "oci:layout"


BUILD_CASES: dict[str, tuple[Maker, tuple[str, ...]]] = {
    "docker_archive_onto_a_device": (
        lambda s: (_device(s), "docker-archive:null"),
        ("character device",),
    ),
    "oci_archive_onto_a_fifo": (lambda s: (_fifo(s), "oci-archive:fifo"), ("fifo",)),
    "oci_dir_with_foreign_files": (_layout_with_foreign_files, ("not an OCI layout",)),
    "oci_dir_that_is_a_file": (
        lambda s: (s / IMAGE, f"oci:{IMAGE}"),
        ("regular file, not a directory",),
    ),
    "oci_dir_through_a_symlink": (
        lambda s: (_symlink(s, "to-tmp", s / "tmp"), "oci:to-tmp"),
        ("symlink",),
    ),
    "oci_5000_character_path": (lambda s: (s, f"oci:{_long(5000)}"), ("too long",)),
}


def _spec(sandbox: Path) -> Path:
    (sandbox / "spec.yaml").write_text("extends: static\n")
    return sandbox / "spec.yaml"


@pytest.mark.network
@pytest.mark.parametrize("command", ["build", "lock"])
def test_output_that_is_the_spec_refused_before_any_work(sandbox: Path, command: str) -> None:
    spec = _spec(sandbox)
    target = "docker-archive:spec.yaml" if command == "build" else "spec.yaml"
    _refused(sandbox, [command, "spec.yaml", "-o", target], spec, ("is the input",))
    assert not (sandbox / "cache").exists(), "it resolved or fetched before checking -o"


@pytest.mark.network
@pytest.mark.parametrize("case", sorted(BUILD_CASES))
def test_build_output_refused_before_any_work(sandbox: Path, case: str) -> None:
    _image(sandbox)
    make, mentions = BUILD_CASES[case]
    node, target = make(sandbox)
    _refused(sandbox, ["build", "static", "-o", target], node, mentions)
    assert not (sandbox / "cache").exists(), "the build fetched or wrote before checking -o"
