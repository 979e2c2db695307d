"""Java apps for the packaging tests, compiled here with the host's javac (``--release 17``)
from tests/data/java: a plain-jar HTTP server (alone, with a Class-Path dependency, or as a
directory of jars) and a Spring-Boot-shaped jar with a ``BOOT-INF/layers.idx``.

Nothing is downloaded: the Spring Boot launcher is a stand-in compiled under Boot 3.2's
class name, and each dependency jar carries the ``pom.properties`` a Maven build writes.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCES = Path(__file__).parent / "data" / "java"
LAUNCHER = "org.springframework.boot.loader.launch.JarLauncher"
START_CLASS = "demo.BootApp"
PLAIN_BODY = "plain jar on java {feature}"
BOOT_BODY = "spring-shaped jar with a custom layer"
# Spring Boot's default layers plus a custom one, in the order the index gives them;
# snapshot-dependencies is left empty so the planner has a layer to drop.
BOOT_LAYERS = (
    ("dependencies", ["BOOT-INF/lib/greeting-1.0.jar"]),
    ("spring-boot-loader", ["org/"]),
    ("snapshot-dependencies", []),
    ("company-dependencies", ["BOOT-INF/lib/company-2.0.jar"]),
    ("application", ["BOOT-INF/classes/", "BOOT-INF/layers.idx", "META-INF/"]),
)
MAVEN = {  # jar → (groupId, artifactId, version)
    "greeting-1.0.jar": ("com.example", "greeting", "1.0"),
    "company-2.0.jar": ("com.example.company", "company", "2.0"),
    "body-1.0.jar": ("com.example", "body", "1.0"),
}


def need_javac() -> None:
    if shutil.which("javac") is None or shutil.which("jar") is None:
        pytest.skip("javac and jar are needed to build the test apps")


def javac(out: Path, *sources: Path, classpath: list[Path] | None = None) -> Path:
    """``sources`` compiled into ``out``. javac's output depends only on its inputs, so a
    test process compiles each set of sources (and classpath jars) once and copies the
    classes after that: a JVM start per compile was most of these tests' time."""
    digest = hashlib.sha256(b"--release 17\0")
    for path in [*sources, *(classpath or [])]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    done = _compiled_dir() / digest.hexdigest()
    if not done.is_dir():
        work = done.with_name(done.name + ".tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        cp = ["-cp", ":".join(map(str, classpath))] if classpath else []
        subprocess.run(
            ["javac", "--release", "17", "-d", str(work), *cp, *map(str, sources)],
            check=True,
            capture_output=True,
        )
        work.rename(done)
    shutil.copytree(done, out, dirs_exist_ok=True)
    return out


@functools.cache
def _compiled_dir() -> Path:
    path = tempfile.mkdtemp(prefix="distill-javac-")
    atexit.register(shutil.rmtree, path, True)
    return Path(path)


def _pom(artifact: str) -> tuple[str, bytes]:
    group, name, version = MAVEN[artifact]
    text = f"groupId={group}\nartifactId={name}\nversion={version}\n"
    return f"META-INF/maven/{group}/{name}/pom.properties", text.encode()


def zip_dir(
    jar: Path,
    classes: Path,
    manifest: str | None,
    extra: dict[str, bytes] | None = None,
    prefix: str = "",
) -> Path:
    """A jar of ``classes`` (under ``prefix``), with ``manifest`` and extra members."""
    jar.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as zf:
        if manifest is not None:
            zf.writestr("META-INF/MANIFEST.MF", manifest)
        for path in sorted(classes.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(classes).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return jar


def manifest(**fields: str) -> str:
    lines = ["Manifest-Version: 1.0", *(f"{k.replace('_', '-')}: {v}" for k, v in fields.items())]
    return "\r\n".join(lines) + "\r\n\r\n"


@dataclass(frozen=True)
class PlainApp:
    jar: Path  # the runnable jar
    directory: Path  # the jar and its dependency, as a directory of jars
    class_path_jar: Path  # a jar whose Class-Path names lib/body-1.0.jar beside it
    body_jar: Path


def plain_app(tmp: Path) -> PlainApp:
    need_javac()
    src = SOURCES / "plain" / "demo"
    classes = javac(tmp / "classes", src / "Server.java", src / "Body.java")
    body_classes = tmp / "body-classes" / "demo"
    body_classes.mkdir(parents=True)
    shutil.copy(classes / "demo" / "Body.class", body_classes)
    server_only = tmp / "server-classes" / "demo"
    server_only.mkdir(parents=True)
    for cls in (classes / "demo").glob("Server*.class"):
        shutil.copy(cls, server_only)

    single = zip_dir(tmp / "single" / "app.jar", classes, manifest(Main_Class="demo.Server"))
    directory = tmp / "dir"
    body = zip_dir(
        directory / "lib" / "body-1.0.jar",
        body_classes.parent,
        manifest(),
        dict([_pom("body-1.0.jar")]),
    )
    zip_dir(directory / "app.jar", server_only.parent, manifest(Main_Class="demo.Server"))
    with_cp = tmp / "classpath"
    (with_cp / "lib").mkdir(parents=True)
    shutil.copy(body, with_cp / "lib" / body.name)
    cp_jar = zip_dir(
        with_cp / "server.jar",
        server_only.parent,
        manifest(Main_Class="demo.Server", Class_Path="lib/body-1.0.jar"),
    )
    return PlainApp(single, directory, cp_jar, body)


def layers_idx() -> str:
    lines = []
    for name, paths in BOOT_LAYERS:
        lines.append(f'- "{name}":')
        lines += [f'  - "{p}"' for p in paths]
    return "\n".join(lines) + "\n"


def boot_app(tmp: Path, launcher: str = LAUNCHER, compiled_as: str | None = None) -> Path:
    """The Spring-Boot-shaped jar: the launcher at the root, the app in BOOT-INF/classes,
    two dependency jars in BOOT-INF/lib, the index and a manifest naming both classes."""
    need_javac()
    compiled_as = compiled_as or launcher
    src = SOURCES / "boot"
    greeting = javac(tmp / "greeting", src / "lib" / "greeting" / "Greeting.java")
    company = javac(tmp / "company", src / "lib" / "company" / "Suffix.java")
    libs = tmp / "libs"
    greeting_jar = zip_dir(
        libs / "greeting-1.0.jar", greeting, manifest(), dict([_pom("greeting-1.0.jar")])
    )
    company_jar = zip_dir(
        libs / "company-2.0.jar", company, manifest(), dict([_pom("company-2.0.jar")])
    )
    app = javac(tmp / "app", src / "demo" / "BootApp.java", classpath=[greeting_jar, company_jar])
    # The stand-in launcher compiled under ``compiled_as`` (Boot 3.2's name, or the older
    # one); the manifest may name another class (``launcher``) to make a broken jar.
    package, _, name = compiled_as.rpartition(".")
    source = (src / "org/springframework/boot/loader/launch/JarLauncher.java").read_text()
    source = source.replace(f"package {LAUNCHER.rpartition('.')[0]};", f"package {package};")
    launcher_src = tmp / "launcher-src" / f"{name}.java"
    launcher_src.parent.mkdir(parents=True)
    launcher_src.write_text(source.replace("JarLauncher", name))
    loader = javac(tmp / "loader", launcher_src)
    jar = tmp / "boot" / "demo-0.0.1.jar"
    jar.parent.mkdir(parents=True)
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "META-INF/MANIFEST.MF",
            manifest(
                Main_Class=launcher,
                Start_Class=START_CLASS,
                Spring_Boot_Layers_Index="BOOT-INF/layers.idx",
            ),
        )
        zf.writestr(
            "META-INF/maven/com.example/demo/pom.properties",
            "groupId=com.example\nartifactId=demo\nversion=0.0.1\n",
        )
        for path in sorted(loader.rglob("*.class")):
            zf.write(path, path.relative_to(loader).as_posix())
        for path in sorted(app.rglob("*.class")):
            zf.write(path, "BOOT-INF/classes/" + path.relative_to(app).as_posix())
        # Spring Boot stores nested jars uncompressed so they can be read in place.
        for lib in (greeting_jar, company_jar):
            zf.write(lib, f"BOOT-INF/lib/{lib.name}", compress_type=zipfile.ZIP_STORED)
        zf.writestr("BOOT-INF/layers.idx", layers_idx())
    return jar


def expected_layers(jar: Path) -> dict[str, set[str]]:
    """Which of the jar's files each index layer gets, by Spring's rule (first match,
    ``/`` ends a prefix): the oracle the planner's layers are checked against."""
    with zipfile.ZipFile(jar) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
    layers: dict[str, set[str]] = {name: set() for name, _ in BOOT_LAYERS}
    for member in names:
        for name, paths in BOOT_LAYERS:
            if any(member == p or (p.endswith("/") and member.startswith(p)) for p in paths):
                layers[name].add(member)
                break
        else:
            raise AssertionError(f"{member} is in no layer of the test's own index")
    return {k: v for k, v in layers.items() if v}
