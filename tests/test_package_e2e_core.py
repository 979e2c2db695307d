"""``distill package`` end to end on real presets (Debian mirror) and real transports
(a loopback registry, podman's storage): a static program (Debian's busybox-static) on
``static:nonroot``, planned by the minimal planner of ``package_test_planner`` so the
driver is tested whatever the real planners do. Each image is run with podman."""

# ruff: noqa: F811  (fixtures are imported, then named as test parameters)
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from copy_images import Places, remove_podman_images
from distill.analyze.catalog import PackageType, catalog_view, want
from distill.analyze.fsview import analyse_fsview
from distill.context import Access
from distill.debian.lock import read_lock, write_lock
from distill.package.applock import app_lock_path
from distill.package.core import PLANNERS, lock_app, package_app
from distill.package.plan import AppKind, AppOptions, AppPlan, BaseFacts, PlanContext
from distill.transports import opened
from package_checks import assert_no_tools, layer_digests, oci_config, oci_manifest
from package_test_planner import StaticElfPlanner
from registry_fixtures import Registry, auth_registry  # noqa: F401
from test_package_core import make_app

pytestmark = [pytest.mark.network, pytest.mark.container]

BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
TRANSPORTS = ("oci", "oci-archive", "docker-archive", "docker", "containers-storage")


@pytest.fixture
def places(tmp_path: Path, auth_registry: Registry) -> Iterator[Places]:
    names: list[str] = []
    yield Places(tmp_path, auth_registry, names)
    remove_podman_images(names)


def _distill(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "distill", "-q", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def test_every_transport_holds_an_image_that_runs(places: Places) -> None:
    busybox = Path(shutil.which("busybox") or "/bin/busybox")
    digests = {}
    for transport in TRANSPORTS:
        ref = places.reference(transport, "app")
        options = AppOptions(busybox, kind=AppKind.ELF, cmd=("echo", "packaged"))
        result = package_app(options, ref, access=places.access, planner=StaticElfPlanner())
        assert places.podman_run(ref) == "packaged\n", transport
        digests[transport] = result.image.digest
        if transport == "oci":
            assert_no_tools(ref)
    assert len(set(digests.values())) == 1  # the same image, whatever holds it


def test_a_locked_app_rebuilds_offline_to_the_same_image(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    options = AppOptions(app, kind=AppKind.ELF)
    lock, prepared = lock_app(options, planner=StaticElfPlanner())
    assert prepared.base.name == "static:nonroot"  # the default for a static program
    write_lock(lock, app_lock_path(app))
    first = package_app(
        replace(options, offline=True), f"oci:{tmp_path / 'one'}", planner=StaticElfPlanner()
    )
    assert first.prepared.lock_file == app_lock_path(app) and first.prepared.stale == ()
    second = package_app(options, f"oci:{tmp_path / 'two'}", planner=StaticElfPlanner())
    assert first.digest == second.digest
    # The base the annotations name is the preset as `distill build` makes it from the lock.
    _distill("build", "static:nonroot", "--lock", str(app_lock_path(app)),
             "-o", f"oci:{tmp_path / 'base'}")  # fmt: skip
    base = oci_manifest(tmp_path / "base")
    notes = oci_manifest(tmp_path / "one")["annotations"]
    assert notes[BASE_NAME] == "static:nonroot" and notes[BASE_DIGEST] == base["digest"]
    base_layers = layer_digests(tmp_path / "base")
    assert layer_digests(tmp_path / "one")[: len(base_layers)] == base_layers
    config = oci_config(tmp_path / "one")["config"]
    assert (config["User"], config["WorkingDir"]) == ("65532", "/app")


class NeedsCurl(StaticElfPlanner):
    """A program whose native code needs libcurl, which ``base`` lacks."""

    def plan(self, options: AppOptions, base: BaseFacts, ctx: PlanContext) -> AppPlan:
        return replace(super().plan(options, base, ctx), debian_packages=("libcurl4t64",))


def _debs(ref: str) -> dict[str, str]:
    with opened(ref, Access()) as source:
        catalog = analyse_fsview(source, want, catalog_view)
    return {c.name: c.version for c in catalog.components if c.type is PackageType.DEB}


def test_debian_packages_the_plan_needs_are_added_and_locked(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    options = AppOptions(app, kind=AppKind.ELF, base="base:nonroot")
    lock, prepared = lock_app(options, planner=NeedsCurl())
    assert prepared.added == ("libcurl4t64",)
    assert "libcurl4t64" in lock.roots
    write_lock(lock, app_lock_path(app))
    result = package_app(options, f"oci:{tmp_path / 'out'}", planner=NeedsCurl())
    assert result.prepared.stale == () and result.prepared.added == ("libcurl4t64",)
    locked = {p.name: p.version for p in read_lock(app_lock_path(app)).archs["amd64"].packages}
    debs = _debs(f"oci:{tmp_path / 'out'}")
    assert debs["libcurl4t64"] == locked["libcurl4t64"]
    assert set(debs) == set(locked)  # exactly the lock's packages, nothing else


def test_build_and_lock_of_a_spec_with_an_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from distill.cli import main

    monkeypatch.setitem(PLANNERS, AppKind.ELF, "package_test_planner:StaticElfPlanner")
    make_app(tmp_path)
    spec = tmp_path / "app.yaml"
    spec.write_text(
        "extends: static:nonroot\nenv: {FROM_SPEC: '1'}\n"
        "app: {path: app, kind: elf, ports: [8080], env: {FROM_APP: '2'}}\n"
    )
    lock = tmp_path / "app.lock"
    main(["-q", "lock", str(spec), "--arch", "amd64", "-o", str(lock)])
    data = json.loads(lock.read_text())
    assert [p["name"] for p in data["languagePackages"]] == ["demo"]
    main(["-q", "build", str(spec), "--lock", str(lock), "-o", f"oci:{tmp_path / 'out'}"])
    digest = capsys.readouterr().out.strip().splitlines()[-1]
    assert digest == oci_manifest(tmp_path / "out")["digest"]
    config = oci_config(tmp_path / "out")["config"]
    assert "FROM_SPEC=1" in config["Env"] and "FROM_APP=2" in config["Env"]
    assert config["Entrypoint"] == ["/app/bin/server"] and "8080/tcp" in config["ExposedPorts"]
    # `distill package` on the command line, with a JSON entrypoint.
    main(["-q", "package", str(tmp_path / "app"), "--entrypoint", '["/app/bin/server", "true"]',
          "--port", "9000", "-o", f"oci:{tmp_path / 'cli'}"])  # fmt: skip
    config = oci_config(tmp_path / "cli")["config"]
    assert config["Entrypoint"] == ["/app/bin/server", "true"]
    assert set(config["ExposedPorts"]) == {"9000/tcp"}
