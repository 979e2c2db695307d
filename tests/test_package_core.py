"""The driver of ``distill package`` (package/core.py, detect.py, base.py, applock.py), run
for real without the network: the base is an image this test composes (os-release, a
distroless ``status.d`` database, a Python tree), written to an OCI layout, and the app is
planned by the minimal planner of ``package_test_planner`` (the real planners have their
own tests). The images are read back through the transports and ``distill inspect``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from distill.build.layers import cached_layer
from distill.build.spec import load_spec
from distill.build.spec_app import APP_KINDS
from distill.cache import BlobCache
from distill.context import Access
from distill.debian.lock import read_lock, write_lock
from distill.errors import DistillError
from distill.image.compose import compose_image
from distill.image.config import ImageConfigSpec, rfc3339
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression
from distill.image.partial import ImageReader
from distill.image.platform import Platform
from distill.package.applock import app_lock_path, lang_packages, lang_records, read_app_lock
from distill.package.base import base_facts
from distill.package.core import PLANNERS, PackageResult, lock_app, package_app
from distill.package.detect import default_base, detect_kind, is_static_elf
from distill.package.plan import AppKind, AppOptions, AppPlan, BaseFacts, LangPackage, PlanContext
from distill.transports import opened, parse_reference
from hostile.hostile_harness import assert_clean_error, run_distill
from package_checks import assert_no_tools, layer_digests, oci_config, oci_manifest
from package_test_planner import StaticElfPlanner

SDE = 1_700_000_000
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'
OS_RELEASE += "VERSION_CODENAME=trixie\n"
STANZAS = {
    "libc6": "Package: libc6\nVersion: 2.41-12\nArchitecture: amd64\nSource: glibc\n",
    "python3": "Package: python3\nVersion: 3.13.5-1\nArchitecture: amd64\n",
}


def _dir(path: str) -> FsEntry:
    return FsEntry(path, EntryKind.DIR, 0o755)


def _file(path: str, text: str, mode: int = 0o644) -> FsEntry:
    data = text.encode()
    return FsEntry(path, EntryKind.FILE, mode, size=len(data), content=data)


def make_base(root: Path, user: str | None = None) -> str:
    """A small Debian-like base image at oci:ROOT/base, returned as its reference."""
    entries = [
        *(_dir(d) for d in ("etc", "usr", "usr/bin", "usr/lib", "usr/lib/python3.13", "var")),
        *(_dir(d) for d in ("var/lib", "var/lib/dpkg", "var/lib/dpkg/status.d")),
        _file("etc/os-release", OS_RELEASE),
        _file("usr/bin/python3", "\x7fELF not really", 0o755),
        _file("usr/lib/python3.13/os.py", "# os\n"),
        *(_file(f"var/lib/dpkg/status.d/{n}", s) for n, s in STANZAS.items()),
        FsEntry("usr/bin/python", EntryKind.SYMLINK, 0o777, linkname="python3"),
    ]
    cache = BlobCache()
    blob, _ = cached_layer(entries, cache, Compression.GZIP, SDE)
    config = ImageConfigSpec(env=("PATH=/usr/bin", "LANG=C.UTF-8"), user=user, title="base")
    image = compose_image(config, Platform.from_debian("amd64"), [blob], source_date_epoch=SDE)
    ref = f"oci:{root / 'base'}"
    parse_reference(ref).write(image, Access(), mtime=SDE)
    return ref


def make_app(root: Path) -> Path:
    """An app directory: a static program in bin/ and data files."""
    app = root / "app"
    (app / "bin").mkdir(parents=True)
    shutil.copy(_static_binary(), app / "bin" / "server")
    (app / "static").mkdir()
    (app / "static" / "index.html").write_text("<p>hello</p>\n")
    (app / "config.txt").write_text("mode=1\n")
    return app


def _static_binary() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(candidate).is_file() and is_static_elf(Path(candidate)):
            return Path(candidate)
    pytest.skip("no static busybox on this machine (apt-get install busybox-static)")


@pytest.fixture
def base(tmp_path: Path, private_cache: Path) -> str:
    return make_base(tmp_path)


def package(path: Path, dest: str, base_ref: str, **options: Any) -> PackageResult:
    return package_app(
        AppOptions(path, kind=AppKind.ELF, base=base_ref, **options),
        dest,
        planner=StaticElfPlanner(),
    )


# --- detection -------------------------------------------------------------------------------


def test_kinds_are_detected_from_marker_files(tmp_path: Path) -> None:
    cases = {
        "py": ("pyproject.toml", AppKind.PYTHON),
        "req": ("requirements.txt", AppKind.PYTHON),
        "whl": ("demo-1.0-py3-none-any.whl", AppKind.PYTHON),
        "node": ("package.json", AppKind.NODE),
        "jars": ("app.jar", AppKind.JAVA),
    }
    for folder, (marker, kind) in cases.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / marker).write_text("x")
        assert detect_kind(tmp_path / folder) is kind
    assert detect_kind(tmp_path / "jars" / "app.jar") is AppKind.JAVA
    assert detect_kind(tmp_path / "whl" / "demo-1.0-py3-none-any.whl") is AppKind.PYTHON
    assert detect_kind(_static_binary()) is AppKind.ELF
    assert detect_kind(make_app(tmp_path / "elf")) is AppKind.ELF  # a program in bin/
    assert detect_kind(tmp_path / "py", "node") is AppKind.NODE  # --kind wins


def test_unknown_kinds_and_missing_paths_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    for path in (tmp_path, tmp_path / "notes.txt", tmp_path / "missing"):
        with pytest.raises(DistillError) as caught:
            detect_kind(path)
        assert caught.value.hint and "\n" not in caught.value.message
    with pytest.raises(DistillError, match="unknown kind"):
        detect_kind(tmp_path, "cobol")
    os.mkfifo(tmp_path / "pipe")  # refused without being opened (which would block)
    with pytest.raises(DistillError, match="not a regular file"):
        detect_kind(tmp_path / "pipe")


def test_the_spec_app_kinds_are_the_planners_kinds() -> None:
    assert set(APP_KINDS) == {str(k) for k in AppKind} == {str(k) for k in PLANNERS}


def test_elf_default_base_follows_the_program_header() -> None:
    assert default_base(AppKind.ELF, _static_binary()) == "static:nonroot"
    dynamic = Path(shutil.which("ls") or "/bin/ls")
    # The oracle: a dynamic executable names its loader (the PT_INTERP string) in its bytes.
    assert b"ld-linux" in dynamic.read_bytes()[:4096]
    assert default_base(AppKind.ELF, dynamic) == "base:nonroot"
    assert default_base(AppKind.PYTHON, dynamic) == "python3:nonroot"


# --- base facts ------------------------------------------------------------------------------


def test_base_facts_are_read_from_the_image(tmp_path: Path, base: str) -> None:
    source = parse_reference(base).open_source(Access(), base)
    assert isinstance(source, ImageReader)
    facts = base_facts(source.image, base)
    assert facts.arch == "amd64" and facts.suite == "trixie"
    assert facts.packages == {"libc6": "2.41-12", "python3": "3.13.5-1"}
    assert (facts.python, facts.glibc, facts.node, facts.java) == ("3.13", "2.41", None, None)
    assert "usr/lib/python3.13/os.py" in facts.files
    assert facts.symlinks == {"usr/bin/python": "python3"}
    # Remembered by the config digest: the second read comes from the cache, the same facts.
    cache = BlobCache()
    first = base_facts(source.image, base, cache)
    assert list((cache.derived_dir / "base-facts").iterdir())
    assert first == facts == base_facts(source.image, base, cache)
    source.close()


# --- packaging -------------------------------------------------------------------------------


def test_two_runs_give_the_same_image(
    tmp_path: Path, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tmp_path)
    first = package(app, f"oci:{tmp_path / 'one'}", base)
    # The second run from another, empty cache: nothing is taken from the first.
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path / "other-cache"))
    second = package(app, f"oci:{tmp_path / 'two'}", base)
    assert first.digest == second.digest
    assert layer_digests(tmp_path / "one") == layer_digests(tmp_path / "two")


def test_changing_an_app_file_changes_only_the_app_layer(tmp_path: Path, base: str) -> None:
    app = make_app(tmp_path)
    package(app, f"oci:{tmp_path / 'before'}", base)
    (app / "static" / "index.html").write_text("<p>hello again</p>\n")
    result = package(app, f"oci:{tmp_path / 'after'}", base)
    before, after = layer_digests(tmp_path / "before"), layer_digests(tmp_path / "after")
    base_layers = len(layer_digests(tmp_path / "base"))
    assert len(before) == len(after) == base_layers + 2  # base, program, application
    assert before[:-1] == after[:-1] and before[-1] != after[-1]
    assert [layer.reused for layer in result.layers] == [True, False]


def test_config_defaults(tmp_path: Path, base: str) -> None:
    app = make_app(tmp_path)
    package(app, f"oci:{tmp_path / 'out'}", base, ports=(8080, 9090), env={"EXTRA": "1"})
    config = oci_config(tmp_path / "out")["config"]
    assert config["User"] == "65532"  # the base sets none: nonroot
    assert config["WorkingDir"] == "/app"
    assert config["Entrypoint"] == ["/app/bin/server"]
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9090/tcp"}
    # The base's variables, the plan's, the user's.
    assert config["Env"] == ["PATH=/usr/bin", "LANG=C.UTF-8", "APP_MODE=test", "EXTRA=1"]
    history = oci_config(tmp_path / "out")["history"]
    assert [h.get("comment") for h in history[-2:]] == ["program", "application"]
    notes = oci_manifest(tmp_path / "out")["annotations"]
    assert notes["org.opencontainers.image.base.name"] == base
    assert (
        notes["org.opencontainers.image.base.digest"] == oci_manifest(tmp_path / "base")["digest"]
    )
    assert_no_tools(f"oci:{tmp_path / 'out'}")


def test_user_entrypoint_and_base_user_win(tmp_path: Path, private_cache: Path) -> None:
    base_ref = make_base(tmp_path, user="1000")
    app = make_app(tmp_path)
    package(app, f"oci:{tmp_path / 'out'}", base_ref, entrypoint=("/app/bin/server", "-v"))
    config = oci_config(tmp_path / "out")["config"]
    assert config["User"] == "1000"
    assert config["Entrypoint"] == ["/app/bin/server", "-v"] and "Cmd" not in config


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_output_to_archives(tmp_path: Path, base: str, transport: str) -> None:
    app = make_app(tmp_path)
    dest = f"{transport}:{tmp_path / 'out.tar'}"
    result = package(app, dest, base)
    with opened(dest, Access()) as source:
        config = source.config
    assert config.entrypoint == ("/app/bin/server",) and config.workdir == "/app"
    assert len(config.diff_ids) == len(result.image.layers)


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_a_base_image_from_an_archive_gives_the_same_app(
    tmp_path: Path, base: str, transport: str
) -> None:
    """The base read through another transport: the same filesystem (diff_ids), the same
    app layers and config as from the oci: layout it was copied from."""
    app = make_app(tmp_path)
    archive = f"{transport}:{tmp_path / 'base.tar'}"
    done = subprocess.run([sys.executable, "-m", "distill", "-q", "copy", base, archive],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    layout = package(app, f"oci:{tmp_path / 'one'}", base)
    other = package(app, f"oci:{tmp_path / 'two'}", archive)
    assert other.image.config.diff_ids == layout.image.config.diff_ids
    assert [layer.blob.digest for layer in other.layers] == [
        layer.blob.digest for layer in layout.layers
    ]
    assert other.image.config.entrypoint == layout.image.config.entrypoint
    notes = oci_manifest(tmp_path / "two")["annotations"]
    assert notes["org.opencontainers.image.base.name"] == archive


def test_an_image_base_cannot_take_debian_packages(tmp_path: Path, base: str) -> None:
    class NeedsCurl(StaticElfPlanner):
        def plan(self, options: AppOptions, facts: BaseFacts, ctx: PlanContext) -> AppPlan:
            return replace(super().plan(options, facts, ctx), debian_packages=("libcurl4t64",))

    with pytest.raises(DistillError, match="libcurl4t64") as caught:
        package_app(
            AppOptions(make_app(tmp_path), kind=AppKind.ELF, base=base),
            f"oci:{tmp_path / 'out'}",
            planner=NeedsCurl(),
        )
    assert "preset" in (caught.value.hint or "")
    assert not (tmp_path / "out").exists()


# --- the lock --------------------------------------------------------------------------------


def test_the_lock_records_the_language_packages(tmp_path: Path, base: str) -> None:
    app = make_app(tmp_path)
    options = AppOptions(app, kind=AppKind.ELF, base=base)
    lock, prepared = lock_app(options, planner=StaticElfPlanner())
    write_lock(lock, app_lock_path(app))
    data = json.loads(app_lock_path(app).read_text())
    wanted = [
        {"ecosystem": p.ecosystem, "name": p.name, "version": p.version, "digest": p.digest,
         "source": p.source}
        for p in prepared.plan.lang_packages
    ]  # fmt: skip
    assert data["languagePackages"] == wanted
    found = read_app_lock(app_lock_path(app))
    assert found is not None and found[1] == prepared.plan.lang_packages
    assert read_lock(app_lock_path(app)).language_packages == tuple(wanted)


def test_a_lock_is_given_to_the_planner_and_a_stale_one_said(tmp_path: Path, base: str) -> None:
    app = make_app(tmp_path)
    options = AppOptions(app, kind=AppKind.ELF, base=base)
    lock, _ = lock_app(options, planner=StaticElfPlanner())
    edited = dict(lock.language_packages[0], version="2.0")
    write_lock(replace(lock, language_packages=(edited,)), app_lock_path(app))
    result = package_app(options, f"oci:{tmp_path / 'out'}", planner=StaticElfPlanner())
    # The test planner installs exactly what is locked: the edited version.
    assert [p.version for p in result.prepared.plan.lang_packages] == ["2.0"]
    assert result.prepared.stale == ()

    class Unlocked(StaticElfPlanner):  # a planner whose project asks for other packages
        def plan(self, options: AppOptions, facts: BaseFacts, ctx: PlanContext) -> AppPlan:
            return super().plan(options, facts, replace(ctx, locked=None))

    result = package_app(options, f"oci:{tmp_path / 'out2'}", planner=Unlocked())
    assert result.prepared.stale == ("the app's language packages changed",)


def test_a_damaged_lock_is_refused(tmp_path: Path, base: str) -> None:
    app = make_app(tmp_path)
    lock, _ = lock_app(AppOptions(app, kind=AppKind.ELF, base=base), planner=StaticElfPlanner())
    write_lock(lock, app_lock_path(app))
    data = json.loads(app_lock_path(app).read_text())
    data["languagePackages"][0]["digest"] = "md5:abc"
    app_lock_path(app).write_text(json.dumps(data))
    with pytest.raises(DistillError, match="digest"):
        package(app, f"oci:{tmp_path / 'out'}", base)
    assert not (tmp_path / "out").exists()


def test_debs_a_tool_ran_from_round_trip_and_are_checked(tmp_path: Path) -> None:
    """``--jlink``'s JDK closure is kept among the lock's packages as ``deb`` records: each
    field read back as written; a record without what a pinned download needs is refused."""
    deb = LangPackage("deb", "openjdk-21-jdk-headless", "21.0.9+10-1", "sha256:" + "ab" * 32,
                      "pool/main/o/openjdk-21/x.deb", 123456, "trixie-security")  # fmt: skip
    wheel = LangPackage("pypi", "flask", "3.1.0", "sha256:" + "cd" * 32, "flask.whl")
    where = tmp_path / "distill.lock"
    assert lang_packages(lang_records([deb, wheel]), where) == (deb, wheel)
    for key, value in (("size", "0"), ("size", "1e3"), ("size", "\u00b2"), ("pocket", ""),
                       ("source", ""), ("digest", "sha512-" + "A" * 86 + "==")):  # fmt: skip
        record = dict(lang_records([deb])[0], **{key: value})
        with pytest.raises(DistillError, match="not a valid distill lock"):
            lang_packages([record], where)


# --- the spec's app: -------------------------------------------------------------------------


def test_the_spec_app_key(tmp_path: Path) -> None:
    make_app(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "extends: static\napp:\n  path: app\n  kind: elf\n  ports: [8080]\n"
        "  env: {A: '1'}\n  entrypoint: [/app/bin/server]\n"
    )
    app = load_spec(str(spec)).app
    assert app is not None
    assert (app.path, app.kind, app.ports) == ((tmp_path / "app").resolve(), "elf", ("8080/tcp",))
    assert (app.env, app.entrypoint, app.jlink) == ((("A", "1"),), ("/app/bin/server",), False)
    for bad, says in (
        ("app: {path: missing}", "does not exist"),
        ("app: {path: app, kind: cobol}", "kind"),
        ("app: {path: ../..}", "outside the build context"),
        ("app: {path: app, colour: red}", "unknown key"),
        ("app: [app]", "mapping"),
    ):
        spec.write_text(f"extends: static\n{bad}\n")
        with pytest.raises(DistillError, match=says):
            load_spec(str(spec))


# --- the command line ------------------------------------------------------------------------


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README").write_text("x")
    out = f"oci:{tmp_path / 'out'}"
    cases = [
        (["package", str(tmp_path / "missing"), "-o", out], "does not exist"),
        (["package", str(tmp_path / "notes"), "-o", out], "kind"),
        (["package", str(app), "--kind", "elf", "--base", "no-such-base", "-o", out], "no-such"),
        (["package", str(app), "--entrypoint", "[1, 2]", "-o", out], "--entrypoint"),
        (["package", str(app), "--env", "NOEQUALS", "-o", out], "--env"),
        (["package", str(app), "-o", "oci-archive:/dev/null"], "/dev/null"),
    ]
    for args, says in cases:
        assert_clean_error(run_distill(args, cwd=tmp_path), says)


def test_timestamps_are_the_base_s_or_source_date_epoch(
    tmp_path: Path, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tmp_path)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    package(app, f"oci:{tmp_path / 'one'}", base)
    assert oci_config(tmp_path / "one")["created"] == oci_config(tmp_path / "base")["created"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    package(app, f"oci:{tmp_path / 'two'}", base)
    assert oci_config(tmp_path / "two")["created"] == rfc3339(1234567890)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(DistillError, match="SOURCE_DATE_EPOCH"):
        package(app, f"oci:{tmp_path / 'three'}", base)


def test_lock_and_package_on_the_command_line(
    tmp_path: Path, base: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from distill.cli import main

    monkeypatch.setitem(PLANNERS, AppKind.ELF, "package_test_planner:StaticElfPlanner")
    app = make_app(tmp_path)
    main(["-q", "lock", str(app), "--base", base])
    assert [p["name"] for p in json.loads((app / "distill.lock").read_text())["languagePackages"]]
    main(["-q", "package", str(app), "--base", base, "--env", "A=1", "--cmd", "serve --fast",
          "-o", f"oci-archive:{tmp_path / 'out.tar'}"])  # fmt: skip
    digest = capsys.readouterr().out.strip()
    with opened(f"oci-archive:{tmp_path / 'out.tar'}", Access()) as source:
        assert source.manifest.digest == digest
        assert source.config.cmd == ("serve", "--fast") and "A=1" in source.config.env
    spec = tmp_path / "spec.yaml"
    spec.write_text("extends: static\n")
    outcome = run_distill(["lock", str(spec), "--kind", "elf"], cwd=tmp_path)
    assert_clean_error(outcome, "--kind")
