"""`distill build`: layering, the layer cache, determinism, outputs, and refusing bad input.

The network tests lock the small presets once per module and share the user's .deb cache
(downloads are verified), so they stay fast after the first run.
"""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest

from distill.build.layers import LayerRole, diff_entries, group_packages
from distill.build.pipeline import BuildResult, build_image, check_lock, source_date_epoch
from distill.build.spec import Level, load_spec
from distill.cache import BlobCache
from distill.debian.deb import DebControl
from distill.debian.lock import ArchLock, Lock, LockedPackage, lock_spec, write_lock
from distill.debian.mirror import discover_mirrors
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.rootfs.debug import busybox_applets

SHELLS = {"sh", "bash", "dash", "ash", "busybox"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "distill", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "1000"},  # rich wraps at the width, even inside a path
    )
    proc.stderr = " ".join(proc.stderr.split())  # and compare messages as one line
    return proc


def files_in(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def image_entries(result: BuildResult) -> dict[str, tarfile.TarInfo]:
    """Path → tar member of the merged image (upper layers win; whiteouts applied)."""
    merged: dict[str, tarfile.TarInfo] = {}
    for layer in result.archs[0].layers:
        with tarfile.open(layer.blob.path, "r:*") as tar:
            for info in tar:
                parent, name = posixpath.split(info.name)
                if name.startswith(".wh."):
                    gone = posixpath.join(parent, name[4:])
                    merged = {
                        p: i for p, i in merged.items() if not (p + "/").startswith(gone + "/")
                    }
                else:
                    merged[info.name] = info
    return merged


def control(name: str, depends: str = "", provides: str = "") -> DebControl:
    text = f"Package: {name}\nVersion: 1\nArchitecture: amd64\n"
    text += f"Depends: {depends}\n" if depends else ""
    text += f"Provides: {provides}\n" if provides else ""
    return DebControl(text)


# --- offline: the layering rule ----------------------------------------------------------------


def test_packages_go_to_the_lowest_level_that_reaches_them() -> None:
    levels = [
        Level("static", ("base-files",)),
        Level("base", ("libc6",)),
        Level("cc", ("libstdc++6",)),
        Level("python3", ("python3=3.13.5-1",)),
        Level(":debug", ("busybox-static",)),
    ]
    controls = {
        "base-files": control("base-files"),
        "busybox-static": control("busybox-static"),
        "libc6": control("libc6", "libgcc-s1"),
        "libgcc-s1": control("libgcc-s1", "libc6"),
        "libstdc++6": control("libstdc++6", "libc6, libgcc-s1"),
        "python3": control("python3", "python3.13, libc-dev | mime-support"),
        "python3.13": control("python3.13", "libc6, libexpat1"),
        "libexpat1": control("libexpat1", "libc6"),
        "media": control("media", provides="mime-support"),
    }
    groups, app = group_packages(levels, controls)
    assert [(g.role, g.levels) for g in groups] == [
        (LayerRole.SYSTEM, ("static",)),
        (LayerRole.LIBRARIES, ("base", "cc")),
        (LayerRole.RUNTIME, ("python3",)),
    ]
    assert groups[1].packages == ("libc6", "libgcc-s1", "libstdc++6")
    # The virtual mime-support is satisfied through Provides; libc6 stays in libraries.
    assert set(groups[2].packages) == {"python3", "python3.13", "libexpat1", "media"}
    assert app == ("busybox-static",)


def test_two_levels_make_system_and_runtime() -> None:
    levels = [Level("static", ("a",)), Level("mine", ("b",))]
    groups, app = group_packages(levels, {"a": control("a"), "b": control("b", "a")})
    assert [(g.role, g.packages) for g in groups] == [
        (LayerRole.SYSTEM, ("a",)),
        (LayerRole.RUNTIME, ("b",)),
    ]
    assert app == ()


def test_diff_adds_parents_whiteouts_and_copies_hardlinks() -> None:
    def d(path: str, mode: int = 0o755) -> FsEntry:
        return FsEntry(path, EntryKind.DIR, mode)

    def f(path: str, data: bytes) -> FsEntry:
        return FsEntry(path, EntryKind.FILE, 0o644, size=len(data), content=data)

    lower = {e.path: e for e in [d("tmp", 0o1777), d("etc"), f("etc/a", b"1"), f("etc/gone", b"")]}
    upper = {
        e.path: e
        for e in [
            d("tmp", 0o1777),
            d("etc"),
            f("etc/a", b"1"),
            f("tmp/new", b"x"),
            FsEntry("tmp/link", EntryKind.HARDLINK, 0o644, linkname="etc/a"),
        ]
    }
    layer = {e.path: e for e in diff_entries(lower, upper)}
    assert set(layer) == {"tmp", "tmp/new", "tmp/link", "etc", "etc/.wh.gone"}
    assert layer["tmp"].mode == 0o1777  # the parent as the image has it, not a default 0755
    assert layer["tmp/link"].kind is EntryKind.FILE and layer["tmp/link"].content == b"1"
    assert diff_entries(upper, upper) == []


def test_busybox_applet_table_is_found() -> None:
    names = [b"[", b"[[", b"cat", b"ls", b"sh", *[f"z{i:02}".encode() for i in range(30)]]
    binary = b"\x7fELF junk [not a table\0" + b"\0".join(names) + b"\0\0/var/run"
    assert busybox_applets(binary)[:5] == ["[", "[[", "cat", "ls", "sh"]
    with pytest.raises(DistillError, match="applet table"):
        busybox_applets(b"\x7fELF [\0[[\0only\0\0")


# --- offline: inputs -------------------------------------------------------------------------


def _fake_lock(roots: tuple[str, ...], version: str = "1.0") -> Lock:
    pkg = LockedPackage("hello", version, "amd64", "pool/h.deb", "a" * 64, 1, "hello", "1", "x")
    arch = ArchLock((pkg,), ())
    return Lock(
        "trixie", (("trixie", "2025-08-09T10:00:00+00:00"),), {"amd64": arch}, roots, (), ()
    )


def test_lock_must_match_the_spec(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("packages: [hello=1.0]\narchs: [amd64]\n")
    spec = load_spec(str(tmp_path / "s.yaml"))
    check_lock(spec, _fake_lock(("hello",)), ["amd64"])
    with pytest.raises(DistillError, match=r"packages differ \(\+hello -other\)"):
        check_lock(spec, _fake_lock(("other",)), ["amd64"])
    with pytest.raises(DistillError, match=r"pinned to 1\.0, locked at 2\.0"):
        check_lock(spec, _fake_lock(("hello",), "2.0"), ["amd64"])
    with pytest.raises(DistillError, match="no arm64 packages"):
        check_lock(spec, _fake_lock(("hello",)), ["arm64"])


def test_a_lock_may_use_fewer_pockets_than_the_spec_allows(tmp_path: Path) -> None:
    from dataclasses import replace

    (tmp_path / "s.yaml").write_text("packages: [hello]\narchs: [amd64]\npockets: [trixie]\n")
    narrow = load_spec(str(tmp_path / "s.yaml"))
    wide = replace(narrow, pockets=())
    check_lock(narrow, _fake_lock(("hello",)), ["amd64"])
    check_lock(wide, _fake_lock(("hello",)), ["amd64"])  # a base built from its app's lock
    security = replace(
        _fake_lock(("hello",)),
        pockets=(("trixie", "2025-08-09T10:00:00+00:00"), ("trixie-security", "2025-08-10")),
    )
    check_lock(wide, security, ["amd64"])
    with pytest.raises(DistillError, match="from trixie-security, which the spec leaves out"):
        check_lock(narrow, security, ["amd64"])


def test_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert source_date_epoch(_fake_lock(())) == 1754733600
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "12345")
    assert source_date_epoch(_fake_lock(())) == 12345
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(DistillError, match="SOURCE_DATE_EPOCH"):
        source_date_epoch(_fake_lock(()))


def test_docker_archive_of_two_archs_fails_before_any_work(tmp_path: Path) -> None:
    spec = load_spec("static", archs=("amd64", "arm64"))
    with pytest.raises(DistillError, match="docker-archive holds one platform") as err:
        build_image(spec, None, f"docker-archive:{tmp_path}/x.tar")
    assert "--arch" in (err.value.hint or "")
    assert files_in(tmp_path) == []


def test_cli_refuses_unknown_preset_and_bad_yaml(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("build", "statik", "-o", f"oci-archive:{out}/x.tar")
    assert proc.returncode == 1 and "no spec file or preset named 'statik'" in proc.stderr
    assert "did you mean static" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "bad.yaml").write_text("extends: static\nfiles: [\n  {src: a, dest: /a}\n")
    proc = run_cli("build", str(tmp_path / "bad.yaml"), "-o", f"oci-archive:{out}/x.tar")
    assert proc.returncode == 1 and "bad.yaml:" in proc.stderr and "invalid YAML" in proc.stderr
    assert not out.exists()


# --- network: real builds --------------------------------------------------------------------


@pytest.fixture(scope="module")
def static_lock(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lock, Path]:
    lock, _ = lock_spec(load_spec("static"), discover_mirrors())
    path = tmp_path_factory.mktemp("lock") / "static.lock"
    write_lock(lock, path)
    return lock, path


@pytest.mark.network
@pytest.mark.container
def test_static_oci_archive_inspects_and_unpacks(
    static_lock: tuple[Lock, Path], tmp_path: Path
) -> None:
    archive = tmp_path / "static.tar"
    result = build_image(load_spec("static"), static_lock[0], f"oci-archive:{archive}:v1")
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{archive}:v1"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(inspect.stdout)
    assert data["Digest"] == result.digest
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in data["Env"]
    assert len(data["Layers"]) == 1
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle)],
        capture_output=True,
        check=True,
    )
    rootfs = bundle / "rootfs"
    assert "nonroot:x:65532:65532:" in (rootfs / "etc/passwd").read_text()
    assert (rootfs / "etc/ssl/certs/ca-certificates.crt").stat().st_size > 100_000
    assert (rootfs / "usr/share/zoneinfo/UTC").exists()
    assert os.readlink(rootfs / "bin") == "usr/bin"
    assert not (rootfs / "usr/lib/x86_64-linux-gnu").exists()  # no libc in static


@pytest.mark.network
def test_same_lock_gives_the_same_image_anywhere(
    static_lock: tuple[Lock, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = static_lock[0]
    first = build_image(load_spec("static"), lock, f"oci-archive:{tmp_path}/a/image.tar")
    # Another machine: a fresh cache (holding only the .debs, so no download) and TMPDIR.
    user_cache = BlobCache()
    other = BlobCache(tmp_path / "other-cache")
    other.blobs_dir.mkdir(parents=True)
    for pkg in lock.archs[first.archs[0].arch].packages:
        os.link(user_cache.path(pkg.sha256), other.path(pkg.sha256))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    second = build_image(
        load_spec("static"), lock, f"oci-archive:{tmp_path}/b/image.tar", cache=other
    )
    assert second.layers_reused == 0 and second.archs[0].unpacked_from_cache == 0
    assert second.digest == first.digest
    assert (tmp_path / "a/image.tar").read_bytes() == (tmp_path / "b/image.tar").read_bytes()


@pytest.mark.network
def test_changing_files_rebuilds_only_the_app_layer(
    static_lock: tuple[Lock, Path], tmp_path: Path
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/app.toml").write_text("port = 1\n")
    (tmp_path / "run").write_text("#!/app/run\n")
    (tmp_path / "run").chmod(0o755)
    (tmp_path / "spec.yaml").write_text(
        "extends: static\n"
        "files:\n"
        "  - {src: conf, dest: /etc/app}\n"
        "  - {src: run, dest: /app/, owner: 'nonroot:nonroot'}\n"
        "paths:\n"
        "  - {path: /data, type: directory, mode: '0700', owner: '65532'}\n"
        "user: nonroot\n"
    )
    spec = load_spec(str(tmp_path / "spec.yaml"))
    first = build_image(spec, static_lock[0], f"oci:{tmp_path}/out")
    roles = [layer.role for layer in first.archs[0].layers]
    assert roles == [LayerRole.SYSTEM, LayerRole.APP]
    entries = image_entries(first)
    assert entries["app/run"].mode == 0o755 and entries["app/run"].uid == 65532
    assert entries["etc/app/app.toml"].mode == 0o644 and entries["etc/app/app.toml"].uid == 0
    assert entries["data"].isdir() and entries["data"].mode == 0o700

    # Unique content: the user cache may hold layers of earlier runs of this test.
    (tmp_path / "conf/app.toml").write_text(f"port = 2  # {uuid.uuid4()}\n")
    second = build_image(spec, static_lock[0], f"oci:{tmp_path}/out")
    reused = [(layer.role, layer.reused) for layer in second.archs[0].layers]
    assert reused == [(LayerRole.SYSTEM, True), (LayerRole.APP, False)]
    assert second.layers_written == 1 and second.digest != first.digest
    # and nothing changed: everything comes from the cache, the image is the same
    third = build_image(spec, static_lock[0], f"oci:{tmp_path}/out")
    assert third.layers_written == 0 and third.digest == second.digest


@pytest.mark.network
def test_missing_local_file_and_unwritable_output_fail_cleanly(
    static_lock: tuple[Lock, Path], tmp_path: Path
) -> None:
    (tmp_path / "spec.yaml").write_text(
        "extends: static\nfiles:\n  - {src: here.txt, dest: /here.txt}\n  - {src: gone, dest: /x}\n"
    )
    (tmp_path / "here.txt").write_text("hi\n")
    out = tmp_path / "out"
    lock = str(static_lock[1])
    proc = run_cli(
        "build", str(tmp_path / "spec.yaml"), "--lock", lock, "-o", f"oci-archive:{out}/i.tar"
    )
    assert proc.returncode == 1, proc.stderr
    assert f"{tmp_path / 'spec.yaml'}:4: files: {tmp_path / 'gone'} does not exist" in proc.stderr
    assert not out.exists() or files_in(out) == []

    (tmp_path / "blocker").write_text("a file, not a directory\n")
    proc = run_cli("build", "static", "--lock", lock, "-o", f"oci-archive:{tmp_path}/blocker/i.tar")
    assert proc.returncode == 1 and "is not a directory" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "here.txt", "spec.yaml"]

    ok = run_cli("-q", "build", "static", "--lock", lock, "-o", f"oci-archive:{out}/i.tar")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().startswith("sha256:") and files_in(out) == ["i.tar"]


@pytest.mark.network
@pytest.mark.parametrize("preset", ["static", "base", "cc", "python3"])
def test_images_have_no_shell_and_no_package_manager(preset: str, tmp_path: Path) -> None:
    result = build_image(load_spec(preset), None, f"oci-archive:{tmp_path}/i.tar")
    entries = image_entries(result)
    found = [
        path
        for path, info in entries.items()
        if not info.isdir()
        and (
            posixpath.basename(path) in SHELLS
            or posixpath.basename(path).startswith(("apt", "dpkg"))
        )
    ]
    assert found == []
    assert "var/lib/dpkg/status.d/base-files" in entries
    config = json.loads(result.archs[0].image.config_bytes)["config"]
    expected = {"python3": ["/usr/bin/python3"]}.get(preset)
    assert config.get("Entrypoint") == expected
    assert "User" not in config


@pytest.mark.network
def test_debug_variant_has_busybox_in_its_own_directory(tmp_path: Path) -> None:
    plain = build_image(load_spec("base"), None, f"oci-archive:{tmp_path}/plain.tar")
    result = build_image(load_spec("base:debug-nonroot"), None, f"oci-archive:{tmp_path}/debug.tar")
    entries = image_entries(result)
    assert entries["busybox/sh"].issym() and entries["busybox/sh"].linkname == "busybox"
    assert entries["busybox/busybox"].isfile() and entries["busybox/busybox"].mode == 0o755
    assert "usr/bin/busybox" not in entries
    assert "var/lib/dpkg/status.d/busybox-static" in entries
    config = json.loads(result.archs[0].image.config_bytes)["config"]
    assert config["Entrypoint"] == ["/busybox/sh"]
    assert config["User"] == "65532" and config["WorkingDir"] == "/home/nonroot"
    assert any(e.startswith("PATH=") and e.endswith(":/busybox") for e in config["Env"])
    # The package layers are the plain image's: only the app layer holds the shell.
    plain_layers = [layer.blob.digest for layer in plain.archs[0].layers]
    debug_layers = [layer.blob.digest for layer in result.archs[0].layers]
    assert debug_layers[:-1] == plain_layers
    assert result.archs[0].layers[-1].role is LayerRole.APP
