"""The Java planner (package/java.py, package/jlink.py) on jars compiled here.

The planner is run directly: its layers are checked against the test's own inputs (the
jar's members, the index the test wrote), and the staged layout is run with the host's
java (17; the classes are ``--release 17``) to answer an HTTP request, so a layout that
only looks right fails. The jlink tests fetch Debian's JDK (network).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from distill.cache import BlobCache
from distill.context import Access
from distill.errors import DistillError
from distill.image.fsentry import EntryKind
from distill.package.java import JavaPlanner
from distill.package.plan import AppKind, AppOptions, AppPlan, BaseFacts, PlanContext
from java_apps import (
    BOOT_BODY,
    LAUNCHER,
    MAVEN,
    PLAIN_BODY,
    boot_app,
    expected_layers,
    manifest,
    need_javac,
    plain_app,
    zip_dir,
)

JAVA21_BASE = BaseFacts(
    arch="amd64",
    suite="trixie",
    files=frozenset({"usr/bin/java"}),
    symlinks={},
    packages={"openjdk-21-jre-headless": "21"},
    java="21",
)


@pytest.fixture
def ctx(tmp_path: Path) -> PlanContext:
    cache = BlobCache(tmp_path / "cache")
    staging = cache.root / "staging"
    staging.mkdir(parents=True)
    return PlanContext(cache, Access(), staging, 0)


def plan(path: Path, ctx: PlanContext, **options: object) -> AppPlan:
    return JavaPlanner().plan(AppOptions(path, kind=AppKind.JAVA, **options), JAVA21_BASE, ctx)  # type: ignore[arg-type]


def files_of(layer_entries: object) -> dict[str, bytes]:
    return {
        e.path: e.read_bytes()
        for e in layer_entries  # type: ignore[attr-defined]
        if e.kind == EntryKind.FILE
    }


def materialise(p: AppPlan, root: Path) -> None:
    for layer in p.layers:
        for entry in layer.entries:
            target = root / entry.path
            if entry.kind == EntryKind.DIR:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(entry.read_bytes())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, deadline: float = 60.0) -> str:
    end = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


def host_run(p: AppPlan, root: Path) -> Iterator[str]:
    """Run the plan's entrypoint with the host's java, /app mapped to ``root``/app; yields
    the server's answer."""
    materialise(p, root)
    java = shutil.which("java")
    assert java is not None
    args = [java] + [_on_host(a, root) for a in p.entrypoint[1:]]
    port = free_port()
    proc = subprocess.Popen(
        [*args, str(port)], cwd=root / "app", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        yield get(f"http://127.0.0.1:{port}/")
    finally:
        proc.kill()
        proc.wait()


def _on_host(arg: str, root: Path) -> str:
    """An argument with each ``/app`` path (classpath elements too) moved under ``root``."""
    return ":".join(
        str(root) + part if part == "/app" or part.startswith("/app/") else part
        for part in arg.split(":")
    )


def host_feature() -> str:
    out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=True)
    return out.stderr.split('"')[1].split(".")[0]


# --- plain jars ------------------------------------------------------------------------------


def test_plain_jar_one_layer_and_runs(tmp_path: Path, ctx: PlanContext) -> None:
    app = plain_app(tmp_path / "src")
    p = plan(app.jar, ctx)
    assert [layer.name for layer in p.layers] == ["application"]
    assert files_of(p.layers[0].entries) == {"app/app.jar": app.jar.read_bytes()}
    assert p.entrypoint == ("/usr/bin/java", "-jar", "/app/app.jar")
    assert p.base is None and p.lang_packages == ()
    assert next(host_run(p, tmp_path / "run")) == PLAIN_BODY.format(feature=host_feature())


def test_class_path_jar_dependencies_layer(tmp_path: Path, ctx: PlanContext) -> None:
    app = plain_app(tmp_path / "src")
    p = plan(app.class_path_jar, ctx)
    assert [layer.name for layer in p.layers] == ["dependencies", "application"]
    assert files_of(p.layers[0].entries) == {"app/lib/body-1.0.jar": app.body_jar.read_bytes()}
    assert set(files_of(p.layers[1].entries)) == {"app/server.jar"}
    assert p.entrypoint == ("/usr/bin/java", "-jar", "/app/server.jar")
    group, artifact, version = MAVEN["body-1.0.jar"]
    digest = "sha256:" + hashlib.sha256(app.body_jar.read_bytes()).hexdigest()
    assert [(x.ecosystem, x.name, x.version, x.digest) for x in p.lang_packages] == [
        ("maven", f"{group}:{artifact}", version, digest)
    ]
    assert next(host_run(p, tmp_path / "run")) == PLAIN_BODY.format(feature=host_feature())


def test_directory_of_jars_class_path_entrypoint(tmp_path: Path, ctx: PlanContext) -> None:
    app = plain_app(tmp_path / "src")
    p = plan(app.directory, ctx)
    assert [layer.name for layer in p.layers] == ["dependencies", "application"]
    assert set(files_of(p.layers[0].entries)) == {"app/lib/body-1.0.jar"}
    assert set(files_of(p.layers[1].entries)) == {"app/app.jar"}
    # No Class-Path in the app's manifest: the classpath is spelled out.
    assert p.entrypoint == (
        "/usr/bin/java",
        "-cp",
        "/app/app.jar:/app/lib/body-1.0.jar",
        "demo.Server",
    )
    assert next(host_run(p, tmp_path / "run")) == PLAIN_BODY.format(feature=host_feature())


def test_java_path_from_base(tmp_path: Path, ctx: PlanContext) -> None:
    app = plain_app(tmp_path / "src")
    jvm = "usr/lib/jvm/java-21-openjdk-amd64/bin/java"
    base = BaseFacts("amd64", "trixie", frozenset({jvm}), {}, {})
    p = JavaPlanner().plan(AppOptions(app.jar), base, ctx)
    assert p.entrypoint[0] == f"/{jvm}"
    with pytest.raises(DistillError, match="no java") as info:
        JavaPlanner().plan(
            AppOptions(app.jar), BaseFacts("amd64", "trixie", frozenset(), {}, {}), ctx
        )
    assert "--jlink" in (info.value.hint or "")


# --- Spring Boot -----------------------------------------------------------------------------


def test_spring_boot_layers_and_runs(tmp_path: Path, ctx: PlanContext) -> None:
    jar = boot_app(tmp_path / "src")
    p = plan(jar, ctx)
    want = expected_layers(jar)
    # The index's order, the empty snapshot-dependencies layer dropped, the custom one kept.
    assert [layer.name for layer in p.layers] == list(want)
    assert len(p.layers) == 4
    with zipfile.ZipFile(jar) as zf:
        for layer in p.layers:
            got = files_of(layer.entries)
            assert set(got) == {f"app/{m}" for m in want[layer.name]}
            for path, data in got.items():
                assert data == zf.read(path.removeprefix("app/"))
            for entry in layer.entries:  # each layer carries the directories above its files
                if entry.kind == EntryKind.FILE:
                    parent = entry.path.rpartition("/")[0]
                    assert parent in {e.path for e in layer.entries if e.kind == EntryKind.DIR}
    assert p.entrypoint == ("/usr/bin/java", "-cp", "/app", LAUNCHER)
    names = {(x.name, x.version) for x in p.lang_packages}
    assert names == {
        (f"{g}:{a}", v) for g, a, v in (MAVEN["greeting-1.0.jar"], MAVEN["company-2.0.jar"])
    }
    assert next(host_run(p, tmp_path / "run")) == BOOT_BODY


def test_spring_boot_old_launcher_name(tmp_path: Path, ctx: PlanContext) -> None:
    """Before Boot 3.2 the launcher was org.springframework.boot.loader.JarLauncher: the
    entrypoint follows the manifest, and a launcher missing from the jar is refused."""
    old = "org.springframework.boot.loader.JarLauncher"
    p = plan(boot_app(tmp_path / "old", launcher=old), ctx)
    assert p.entrypoint == ("/usr/bin/java", "-cp", "/app", old)
    assert next(host_run(p, tmp_path / "run")) == BOOT_BODY
    jar = boot_app(tmp_path / "src", launcher=old, compiled_as=LAUNCHER)
    with pytest.raises(
        DistillError,
        match=re.escape("Main-Class org.springframework.boot.loader.JarLauncher is not in the jar"),
    ):
        plan(jar, ctx)


# --- bad input -------------------------------------------------------------------------------


def one_line_error(path: Path, ctx: PlanContext) -> DistillError:
    with pytest.raises(DistillError) as info:
        plan(path, ctx)
    assert "\n" not in info.value.message
    return info.value


def test_jar_without_main_class(tmp_path: Path, ctx: PlanContext) -> None:
    need_javac()
    jar = zip_dir(tmp_path / "lib.jar", tmp_path, manifest())
    error = one_line_error(jar, ctx)
    assert "names no Main-Class" in error.message and error.hint


def test_directory_without_runnable_jar(tmp_path: Path, ctx: PlanContext) -> None:
    (tmp_path / "d").mkdir()
    zip_dir(tmp_path / "d" / "a.jar", tmp_path / "d", manifest())
    assert "no jar in" in one_line_error(tmp_path / "d", ctx).message


def test_not_a_zip(tmp_path: Path, ctx: PlanContext) -> None:
    fake = tmp_path / "app.jar"
    fake.write_bytes(b"#!/bin/sh\necho not a jar\n")
    assert "not a jar" in one_line_error(fake, ctx).message


@pytest.mark.parametrize(
    "member",
    ["../../etc/passwd", "/etc/passwd", "BOOT-INF/../../x", "a\\..\\b"],
)
def test_hostile_member_names(tmp_path: Path, ctx: PlanContext, member: str) -> None:
    jar = tmp_path / "evil.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", manifest(Main_Class="a.B"))
        zf.writestr("a/B.class", b"\xca\xfe\xba\xbe")
        zf.writestr("BOOT-INF/layers.idx", '- "application":\n  - "a/"\n')
        zf.writestr(member, b"x")
    error = one_line_error(jar, ctx)
    assert "outside the app directory" in error.message
    assert not (tmp_path / "etc").exists()


def test_zip_bomb_refused(
    tmp_path: Path, ctx: PlanContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member whose declared size takes the extracted total past the cap is refused
    before a byte is extracted (the cap lowered so the test need not write gigabytes)."""
    import distill.package.java as java

    monkeypatch.setattr(java, "MAX_EXTRACTED", 1 << 20)
    jar = tmp_path / "bomb.jar"
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("META-INF/MANIFEST.MF", manifest(Main_Class="a.B"))
        zf.writestr("a/B.class", b"\xca\xfe\xba\xbe")
        zf.writestr("BOOT-INF/layers.idx", '- "application":\n  - "a/"\n')
        zf.writestr("a/zeros", b"\0" * (4 << 20))
    assert jar.stat().st_size < 64 << 10
    error = one_line_error(jar, ctx)
    assert "zip bomb" in (error.hint or "")
    assert not list((ctx.staging).glob("??/*"))


def test_member_count_read_from_the_end_record(
    tmp_path: Path, ctx: PlanContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The member count is taken from the zip's end record before zipfile lists them (the
    cap lowered so the test need not write a million members)."""
    import distill.package.java as java

    monkeypatch.setattr(java, "MAX_MEMBERS", 5)
    jar = tmp_path / "many.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", manifest(Main_Class="a.B"))
        for i in range(10):
            zf.writestr(f"a/C{i}.class", b"")
    error = one_line_error(jar, ctx)
    assert "declares 11 members" in error.message


def test_duplicate_member_and_bad_index(tmp_path: Path, ctx: PlanContext) -> None:
    jar = tmp_path / "dup.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", manifest(Main_Class="a.B"))
        zf.writestr("a/B.class", b"\xca\xfe\xba\xbe")
        zf.writestr("BOOT-INF/layers.idx", "this is not an index\n")
    assert "not a Spring Boot layer index" in one_line_error(jar, ctx).message
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", manifest(Main_Class="a.B"))
        zf.writestr("a/B.class", b"\xca\xfe\xba\xbe")
        zf.writestr("BOOT-INF/layers.idx", '- "application":\n  - "a/"\n')
        with pytest.warns(UserWarning):
            zf.writestr("a/B.class", b"again")
    assert "twice" in one_line_error(jar, ctx).message


# --- jlink -----------------------------------------------------------------------------------


@pytest.fixture
def shared_ctx() -> PlanContext:
    """The user's cache, as network tests share it: the JDK (~100 MB of .debs, 310 MB
    unpacked) is fetched and unpacked once per machine, not once per test."""
    cache = BlobCache()
    return PlanContext(cache, Access(), cache.root / "staging", 0)


def cc_base(glibc: str | None) -> BaseFacts:
    return BaseFacts("amd64", "trixie", frozenset({"usr/lib/x86_64-linux-gnu/libc.so.6"}), {},
                     {"libc6": f"{glibc}-1"} if glibc else {}, glibc=glibc)  # fmt: skip


@pytest.mark.network
def test_jlink_runtime_plan(tmp_path: Path, shared_ctx: PlanContext) -> None:
    app = plain_app(tmp_path / "src")
    p = JavaPlanner().plan(AppOptions(app.jar, jlink=True), cc_base("2.41"), shared_ctx)
    assert p.base == "cc:nonroot"
    assert [layer.name for layer in p.layers] == ["java runtime (jlink)", "application"]
    runtime = files_of(p.layers[0].entries)
    assert p.entrypoint == ("/opt/java/bin/java", "-jar", "/app/app.jar")
    assert "opt/java/bin/java" in runtime
    # jlink's own record of what it linked: the module jdeps found in the test's source.
    release = runtime["opt/java/release"].decode()
    modules = release.split('MODULES="', 1)[1].split('"', 1)[0].split()
    assert "jdk.httpserver" in modules and "java.base" in modules
    assert "java.desktop" not in modules  # the point of jlink: only what the app needs
    stanza = runtime["var/lib/dpkg/status.d/openjdk-21-jdk-headless"].decode()
    assert "Package: openjdk-21-jdk-headless" in stanza and "Source: openjdk-21" in stanza
    assert "zlib1g" in p.debian_packages  # libzip.so needs it, and cc does not carry it
    size = sum(e.size for layer in p.layers for e in layer.entries)
    assert size < 60 << 20


@pytest.mark.network
def test_jlink_pins_the_jdk_in_the_lock_and_links_offline_from_it(
    tmp_path: Path, shared_ctx: PlanContext
) -> None:
    app = plain_app(tmp_path / "src")
    options, base = AppOptions(app.jar, jlink=True), cc_base("2.41")
    first = JavaPlanner().plan(options, base, shared_ctx)
    debs = [p for p in first.lang_packages if p.ecosystem == "deb"]
    # Oracles: each record names a .deb whose bytes hash to its digest and have its size,
    # and the JDK's version is the one the runtime's own dpkg stanza gives.
    for p in debs:
        path = shared_ctx.cache.get(p.digest.removeprefix("sha256:"))
        assert path is not None, p
        data = path.read_bytes()
        assert ("sha256:" + hashlib.sha256(data).hexdigest(), len(data)) == (p.digest, p.size)
    runtime = files_of(first.layers[0].entries)
    stanza = runtime["var/lib/dpkg/status.d/openjdk-21-jdk-headless"].decode()
    jdk = next(p for p in debs if p.name == "openjdk-21-jdk-headless")
    assert f"\nVersion: {jdk.version}\n" in stanza
    # From the lock's records and --offline: the same runtime, the same records.
    offline = replace(options, offline=True)
    again = JavaPlanner().plan(offline, base, replace(shared_ctx, locked=first.lang_packages))
    assert again.lang_packages == first.lang_packages
    assert files_of(again.layers[0].entries) == runtime
    # The pinned closure is what is used: a pinned .deb the cache lacks is an error offline.
    gone = tuple(
        replace(p, digest="sha256:" + "0" * 64) if p == jdk else p for p in first.lang_packages
    )
    with pytest.raises(DistillError, match="not in the cache"):
        JavaPlanner().plan(offline, base, replace(shared_ctx, locked=gone))
    # A lock that pins no JDK: offline there is no telling which JDK to link.
    with pytest.raises(DistillError, match="does not pin"):
        JavaPlanner().plan(offline, base, replace(shared_ctx, locked=()))


@pytest.mark.network
def test_lock_jlink_then_package_offline_gives_the_same_image(tmp_path: Path) -> None:
    """On the command line: `distill lock APP --jlink` pins the base and the JDK, and
    `distill package --jlink --offline` from that lock writes the image an online run does."""

    def distill(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "distill", "-q", *args],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    app = plain_app(tmp_path / "src")
    distill("lock", str(app.jar), "--jlink")
    lock = json.loads((app.jar.parent / "distill.lock").read_text())
    assert "openjdk-21-jdk-headless" in {
        p["name"] for p in lock["languagePackages"] if p["ecosystem"] == "deb"
    }
    online = distill("package", str(app.jar), "--jlink", "-o", f"oci:{tmp_path / 'online'}")
    offline = distill(
        "package", str(app.jar), "--jlink", "--offline", "-o", f"oci:{tmp_path / 'offline'}"
    )
    assert online.split()[-1] == offline.split()[-1]
    assert online.split()[-1].startswith("sha256:")


def test_catalog_reads_the_packaged_layout(tmp_path: Path, ctx: PlanContext) -> None:
    """What ``distill sbom`` reads from a packaged Spring Boot app: the jars in
    BOOT-INF/lib and the app's own pom.properties, left loose by the extraction."""
    from distill.analyze.catalog import wanted
    from distill.analyze.components import CapturedFile
    from distill.analyze.langpkgs import language_components

    p = plan(boot_app(tmp_path / "src"), ctx)
    found = set()
    for number, layer in enumerate(p.layers):
        for entry in layer.entries:
            if entry.kind == EntryKind.FILE and wanted(entry.path, entry.size):
                captured = CapturedFile(entry.read_bytes(), number)
                for c in language_components(entry.path, captured):
                    found.add((c.purl, c.locations[0]))
    want = {
        (f"pkg:maven/{g}/{a}@{v}", f"app/BOOT-INF/lib/{jar}")
        for jar, (g, a, v) in MAVEN.items()
        if jar != "body-1.0.jar"
    }
    want.add(
        ("pkg:maven/com.example/demo@0.0.1", "app/META-INF/maven/com.example/demo/pom.properties")
    )
    assert found == want


def test_class_path_link_out_of_the_directory(tmp_path: Path, ctx: PlanContext) -> None:
    """A Class-Path jar that is a link to a file outside the jar's directory is not read."""
    app = plain_app(tmp_path / "src")
    lib = app.class_path_jar.parent / "lib" / "body-1.0.jar"
    outside = tmp_path / "secret"
    outside.write_bytes(b"not for the image")
    lib.unlink()
    lib.symlink_to(outside)
    error = one_line_error(app.class_path_jar, ctx)
    assert "lib/body-1.0.jar" in error.message and "not beside it" in error.message
    assert not any(
        p.read_bytes() == b"not for the image" for p in ctx.staging.rglob("*") if p.is_file()
    )


@pytest.mark.network
@pytest.mark.parametrize("glibc", ["2.36", None], ids=["bookworm", "static"])
def test_jlink_refuses_an_older_glibc(
    tmp_path: Path, shared_ctx: PlanContext, glibc: str | None
) -> None:
    """trixie's JDK links trixie's native code: a base with bookworm's glibc (2.36) or
    none could not start the runtime."""
    app = plain_app(tmp_path / "src")
    with pytest.raises(DistillError, match="needs glibc") as info:
        JavaPlanner().plan(AppOptions(app.jar, jlink=True), cc_base(glibc), shared_ctx)
    assert "\n" not in info.value.message and info.value.hint
