"""Java apps: a runnable jar, a directory of jars, or a Spring Boot jar split along its layers.

A jar is hostile input like any archive: it is opened only after its size is checked, its
member count and the bytes extracted from it are capped, its manifest is read with a cap,
and a member may never name a path outside the app directory. Every file the image gets is
staged (copied into the staging directory by its sha256) so what is written is what was
read, even if the input changes meanwhile.

- **Plain jar** (or a directory of jars: the one with a ``Main-Class`` is the app): the
  other jars (the manifest's ``Class-Path``, or the rest of the directory) go in a
  *dependencies* layer, the app jar in the last one, under ``/app`` with their relative
  paths kept. The entrypoint is ``java -jar`` when ``Class-Path`` reaches every other jar,
  else ``java -cp APP:DEPS… Main-Class``.
- **Spring Boot** (``BOOT-INF/layers.idx``): the jar is extracted the way Spring's
  ``layertools extract`` lays it out, one layer per index layer in the index's order (empty
  ones dropped), and started as ``java -cp /app LAUNCHER``: the launcher is the manifest's
  ``Main-Class`` (``org.springframework.boot.loader.launch.JarLauncher`` since Boot 3.2,
  ``org.springframework.boot.loader.JarLauncher`` before), which finds the exploded
  archive from where its own classes were loaded.
- ``--jlink``: see ``package.jlink``.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from distill.analyze.components import PackageType
from distill.analyze.langpkgs import MAX_NESTED_DEPTH, java_archive, manifest_main_section
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.package.plan import (
    APP_DIR,
    AppKind,
    AppLayer,
    AppOptions,
    AppPlan,
    BaseFacts,
    LangPackage,
    PlanContext,
)
from distill.rootfs.extract import stage_stream

MAX_JAR_BYTES = 1 << 30  # one input jar
MAX_MEMBERS = 100_000  # members of one jar (a large Spring Boot jar has a few thousand)
MAX_EXTRACTED = 2 << 30  # bytes extracted from one Spring Boot jar, in all
MAX_MANIFEST = 1 << 20
MAX_LAYERS_IDX = 1 << 20
MAX_JARS = 10_000  # jars in an input directory
LAYERS_IDX = "BOOT-INF/layers.idx"
MANIFEST = "META-INF/MANIFEST.MF"
DEPENDENCIES = "dependencies"
APPLICATION = "application"
_EOCD = struct.Struct("<4s4H2LH")
_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
# What reading a damaged (or encrypted: RuntimeError) member raises.
_DAMAGED = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    ValueError,
    EOFError,
    NotImplementedError,
    RuntimeError,
)
_CLASS_NAME = re.compile(r"[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*")
_NOT_A_JAR_HINT = "give a runnable jar (one whose manifest names a Main-Class) or a directory"


@dataclass(frozen=True, slots=True)
class JarFacts:
    path: Path
    manifest: dict[str, str]
    layered: bool  # has BOOT-INF/layers.idx

    @property
    def main_class(self) -> str:
        return self.manifest.get("Main-Class", "")


def _central_directory(fh: IO[bytes], size: int) -> tuple[int, int]:
    """(members, bytes) of a zip's central directory, from its end records alone: zipfile
    builds an object per member before anyone can count them, so a crafted directory of
    millions of members is refused here first. (0, 0) when there is no end record."""
    tail_size = min(size, _EOCD.size + 0xFFFF)
    fh.seek(size - tail_size)
    tail = fh.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        return 0, 0
    fields = _EOCD.unpack_from(tail, at)
    members, length = fields[4], fields[5]
    if (members == 0xFFFF or length == 0xFFFFFFFF) and at >= _LOCATOR.size:
        locator = _LOCATOR.unpack_from(tail, at - _LOCATOR.size)
        if locator[0] == b"PK\x06\x07" and locator[2] + _EOCD64.size <= size:
            fh.seek(locator[2])
            record = fh.read(_EOCD64.size)
            if len(record) == _EOCD64.size and record[:4] == b"PK\x06\x06":
                fields64 = _EOCD64.unpack(record)
                members, length = fields64[7], fields64[8]
    return members, length


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_JAR_BYTES:
                raise DistillError(
                    f"{path} is {size >> 20} MiB, more than the {MAX_JAR_BYTES >> 20} MiB "
                    "distill reads"
                )
            members, length = _central_directory(fh, size)
    except OSError as exc:
        raise DistillError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if members > MAX_MEMBERS or length > MAX_MEMBERS * 1024:
        raise DistillError(
            f"{path} declares {members} members in a {length >> 10} KiB directory, more than "
            f"the {MAX_MEMBERS} distill reads",
            hint="the jar is damaged or crafted; nothing was written",
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DistillError(
            f"{path} is not a jar: not a readable zip archive ({exc})", hint=_NOT_A_JAR_HINT
        ) from exc
    if len(archive.infolist()) > MAX_MEMBERS:
        archive.close()
        raise DistillError(f"{path} has more than {MAX_MEMBERS} members; refusing to read it")
    return archive


def _read_member(archive: zipfile.ZipFile, name: str, limit: int, jar: Path) -> bytes | None:
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except _DAMAGED as exc:
        raise DistillError(
            f"{jar}: {name} cannot be read ({exc})", hint="the jar is damaged"
        ) from exc
    if len(data) > limit:
        raise DistillError(f"{jar}: {name} is larger than {limit >> 10} KiB; not a real one")
    return data


def read_jar(path: Path) -> JarFacts:
    with _open_zip(path) as archive:
        raw = _read_member(archive, MANIFEST, MAX_MANIFEST, path)
        layered = LAYERS_IDX in archive.NameToInfo
    manifest = manifest_main_section(raw.decode("utf-8", "replace")) if raw is not None else {}
    return JarFacts(path, manifest, layered)


def _safe_member(name: str, jar: Path) -> str:
    """A member name as a relative path that stays inside the app directory."""
    norm = posixpath.normpath(name)
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\0" in name
        or norm.startswith("..")
        or norm in (".", "")
    ):
        raise DistillError(
            f"{jar}: member {name[:200]!r} would land outside the app directory",
            hint="the jar is damaged or crafted; nothing was written",
        )
    return norm


# --- layers.idx ------------------------------------------------------------------------------


def parse_layers_idx(text: str, jar: Path) -> list[tuple[str, list[str]]]:
    """``- "name":`` lines open a layer, ``  - "path"`` lines add a path (a prefix when it ends
    in ``/``), as Spring Boot writes the index."""
    layers: list[tuple[str, list[str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        layer = re.fullmatch(r'- "([^"/]+)":\s*', line)
        entry = re.fullmatch(r'\s+- "([^"]+)"\s*', line)
        if layer:
            if any(name == layer.group(1) for name, _ in layers):
                raise _bad_index(jar, f"layer {layer.group(1)!r} is named twice")
            layers.append((layer.group(1), []))
        elif entry and layers:
            layers[-1][1].append(entry.group(1))
        else:
            raise _bad_index(jar, f"line {number} is not a layer or an entry: {line[:80]!r}")
    if not layers:
        raise _bad_index(jar, "it names no layers")
    return layers


def _bad_index(jar: Path, what: str) -> DistillError:
    return DistillError(
        f"{jar}: {LAYERS_IDX} is not a Spring Boot layer index: {what}",
        hint="rebuild the jar with Spring Boot's layered packaging, or remove the index",
    )


def _layer_of(name: str, layers: Sequence[tuple[str, list[str]]]) -> str | None:
    for layer, patterns in layers:
        for pattern in patterns:
            if name == pattern or (pattern.endswith("/") and name.startswith(pattern)):
                return layer
    return None


# --- entries ---------------------------------------------------------------------------------


def _dirs(paths: Iterator[str] | Sequence[str]) -> list[FsEntry]:
    """The directories above ``paths`` (relative), so each layer stands on its own."""
    found: set[str] = set()
    for path in paths:
        parent = posixpath.dirname(path)
        while parent and parent not in found:
            found.add(parent)
            parent = posixpath.dirname(parent)
    return [FsEntry(d, EntryKind.DIR, 0o755) for d in sorted(found)]


def _stage_file(source: Path, ctx: PlanContext) -> tuple[Path, int]:
    try:
        with source.open("rb") as fh:
            return stage_stream(fh, ctx.staging, "jar")
    except OSError as exc:
        raise DistillError(f"{source}: cannot read it ({exc.strerror or exc})") from exc


def _file_entry(path: str, staged: Path, size: int) -> FsEntry:
    return FsEntry(path, EntryKind.FILE, 0o644, size=size, content=staged)


def _layer(name: str, files: Sequence[FsEntry]) -> AppLayer:
    return AppLayer(name, (*_dirs([f.path for f in files]), *files))


def maven_packages(jar: Path, where: str) -> list[LangPackage]:
    """The Maven artifacts a jar's ``pom.properties`` name (not those of jars nested in it),
    each with the jar's sha256."""
    from distill.cache import sha256_file

    try:
        found = [
            c
            for c in java_archive(where, jar, 0, depth=MAX_NESTED_DEPTH)
            if c.type == PackageType.MAVEN and c.group
        ]
    except DistillError:
        return []
    if not found:
        return []
    digest = f"sha256:{sha256_file(jar)}"
    return [LangPackage("maven", c.name, c.version, digest, where) for c in found]


# --- the planner -----------------------------------------------------------------------------


def _java_path(base: BaseFacts) -> str:
    """``/usr/bin/java``, else Debian's ``/usr/lib/jvm/*/bin/java``, else the shortest
    ``…/bin/java`` (an image with a JDK of its own in /opt)."""
    if "usr/bin/java" in base.files or "usr/bin/java" in base.symlinks:
        return "/usr/bin/java"
    found = sorted(
        (not _is_jvm_java(p), p.count("/"), p)
        for p in base.files
        if p.endswith("/bin/java") and p.count("/") <= 6
    )
    if found:
        return f"/{found[0][2]}"
    raise DistillError(
        "the base image has no java",
        hint="use a Java base (--base java21:nonroot), or --jlink to ship a runtime of its own",
    )


def _is_jvm_java(path: str) -> bool:
    return path.startswith("usr/lib/jvm/") and path.endswith("/bin/java") and path.count("/") == 5


def _find_jars(directory: Path) -> list[Path]:
    jars: list[Path] = []
    for path in sorted(directory.rglob("*")):
        if path.suffix.lower() == ".jar" and path.is_file() and not path.is_symlink():
            jars.append(path)
            if len(jars) > MAX_JARS:
                raise DistillError(f"{directory} holds more than {MAX_JARS} jars")
    if not jars:
        raise DistillError(f"{directory} holds no jar", hint=_NOT_A_JAR_HINT)
    return jars


def _choose_app(jars: Sequence[Path], directory: Path) -> JarFacts:
    facts = [read_jar(j) for j in jars]
    runnable = [f for f in facts if f.main_class]
    if len(runnable) == 1:
        return runnable[0]
    if not runnable:
        raise DistillError(
            f"no jar in {directory} names a Main-Class in its manifest",
            hint="build the app jar with a Main-Class (jar --main-class, or the build tool's "
            "manifest setting), or give --entrypoint",
        )
    names = ", ".join(str(f.path.relative_to(directory)) for f in runnable[:5])
    raise DistillError(
        f"more than one jar in {directory} names a Main-Class ({names})",
        hint="give the app jar itself, or a directory with only one runnable jar",
    )


def _class_path(app: JarFacts, app_rel: str) -> list[str]:
    """The manifest's ``Class-Path`` as paths relative to the app directory."""
    entries = []
    for url in app.manifest.get("Class-Path", "").split():
        if "://" in url or url.startswith("/"):
            continue  # a URL or an absolute path is the deployment's business, not ours
        rel = posixpath.normpath(posixpath.join(posixpath.dirname(app_rel), url))
        if rel.startswith("..") or rel == ".":
            raise DistillError(
                f"{app.path}: Class-Path entry {url[:200]!r} lies outside the app's directory",
                hint="ship the jar with its dependencies in a directory below it",
            )
        entries.append(rel)
    return entries


class JavaPlanner:
    """``plan.Planner`` for Java."""

    def plan(self, options: AppOptions, base: BaseFacts, ctx: PlanContext) -> AppPlan:
        path = options.path
        if path.is_dir():
            jars = _find_jars(path)
            app = _choose_app(jars, path)
            root = path
        else:
            app = read_jar(path)
            root = path.parent
            jars = [path]
        if not app.main_class and options.entrypoint is None:
            raise DistillError(
                f"{app.path} names no Main-Class in its manifest",
                hint="build it as a runnable jar (jar --main-class, or the build tool's manifest "
                "setting), or give --entrypoint",
            )
        if app.main_class and not _CLASS_NAME.fullmatch(app.main_class):
            raise DistillError(
                f"{app.path}: Main-Class {app.main_class[:200]!r} is not a class name"
            )
        if options.jlink:
            from distill.package.jlink import JLINK_JAVA

            java = JLINK_JAVA
        else:
            java = _java_path(base) if options.entrypoint is None else "java"
        plan = _spring_boot(app, java, ctx) if app.layered else _plain(app, jars, root, java, ctx)
        if options.jlink:
            plan = _with_jlink(plan, base, ctx, offline=options.offline)
        return plan


def _with_jlink(plan: AppPlan, base: BaseFacts, ctx: PlanContext, *, offline: bool) -> AppPlan:
    """The plan on a jlink'ed runtime made for exactly the files it ships."""
    import shutil

    from distill import tempfiles
    from distill.package.jlink import jlink_runtime

    tree = tempfiles.make_dir(ctx.staging, "jdeps")
    identity = sorted(
        (e.path, e.content.name if isinstance(e.content, Path) else "")
        for layer in plan.layers
        for e in layer.entries
        if e.kind == EntryKind.FILE
    )
    app_key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
    try:
        for layer in plan.layers:
            for entry in layer.entries:
                target = tree / entry.path
                if entry.kind == EntryKind.DIR:
                    target.mkdir(parents=True, exist_ok=True)
                elif isinstance(entry.content, Path):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.symlink_to(entry.content)
        runtime = jlink_runtime(tree / APP_DIR.lstrip("/"), app_key, base, ctx, offline=offline)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return runtime.apply(plan)


def _plain(app: JarFacts, jars: Sequence[Path], root: Path, java: str, ctx: PlanContext) -> AppPlan:
    app_rel = app.path.relative_to(root).as_posix()
    class_path = _class_path(app, app_rel)
    deps = [j for j in jars if j != app.path]
    if len(jars) == 1:
        # A single jar: its Class-Path jars are beside it on the host.
        deps = [root / rel for rel in class_path if (root / rel).is_file()]
        missing = [rel for rel in class_path if not (root / rel).is_file()]
        if missing:
            raise DistillError(
                f"{app.path}: Class-Path names {missing[0]!r}, which is not beside it",
                hint="give the directory holding the jar and its dependencies",
            )
    dep_files, packages = [], []
    for dep in deps:
        rel = dep.relative_to(root).as_posix()
        staged, size = _stage_file(dep, ctx)
        dep_files.append(_file_entry(f"{APP_DIR[1:]}/{rel}", staged, size))
        packages += maven_packages(staged, f"{APP_DIR}/{rel}")
    staged, size = _stage_file(app.path, ctx)
    app_file = _file_entry(f"{APP_DIR[1:]}/{app_rel}", staged, size)
    packages += maven_packages(staged, f"{APP_DIR}/{app_rel}")
    dep_rels = {d.relative_to(root).as_posix() for d in deps}
    app_in_image = f"{APP_DIR}/{app_rel}"
    if dep_rels <= set(class_path):
        entrypoint: tuple[str, ...] = (java, "-jar", app_in_image)
    else:
        cp = ":".join([app_in_image, *(f"{APP_DIR}/{r}" for r in sorted(dep_rels))])
        entrypoint = (java, "-cp", cp, app.main_class)
    layers = [_layer(DEPENDENCIES, dep_files)] if dep_files else []
    layers.append(_layer(APPLICATION, [app_file]))
    notes = [f"Main-Class {app.main_class} from {app.path.name}"]
    if dep_files:
        notes.append(f"{len(dep_files)} dependency jar(s) in their own layer")
    return AppPlan(
        kind=AppKind.JAVA,
        layers=tuple(layers),
        entrypoint=entrypoint,
        lang_packages=tuple(packages),
        notes=tuple(notes),
    )


def _spring_boot(app: JarFacts, java: str, ctx: PlanContext) -> AppPlan:
    launcher = app.main_class
    with _open_zip(app.path) as archive:
        raw = _read_member(archive, LAYERS_IDX, MAX_LAYERS_IDX, app.path) or b""
        index = parse_layers_idx(raw.decode("utf-8", "replace"), app.path)
        launcher_class = launcher.replace(".", "/") + ".class"
        if launcher_class not in archive.NameToInfo:
            raise DistillError(
                f"{app.path}: its Main-Class {launcher} is not in the jar",
                hint="a Spring Boot jar's Main-Class is its launcher (JarLauncher); the jar "
                "may be damaged",
            )
        files = _extract(archive, app.path, ctx)
    by_layer: dict[str, list[FsEntry]] = {name: [] for name, _ in index}
    unindexed = 0
    for name, entry in files:
        layer = _layer_of(name, index)
        if layer is None:
            # Spring's own extraction refuses such a jar; the last layer is where an
            # unplanned file changes least else.
            layer, unindexed = index[-1][0], unindexed + 1
        by_layer[layer].append(entry)
    layers = tuple(_layer(name, by_layer[name]) for name, _ in index if by_layer[name])
    packages = [
        p
        for name, entry in files
        if name.startswith("BOOT-INF/lib/")
        and name.endswith(".jar")
        and isinstance(entry.content, Path)
        for p in maven_packages(entry.content, f"/{entry.path}")
    ]
    start = app.manifest.get("Start-Class", "")
    notes = [
        f"Spring Boot jar: {len(layers)} layers from {LAYERS_IDX} "
        f"({', '.join(layer.name for layer in layers)})",
        f"launcher {launcher}" + (f", Start-Class {start}" if start else ""),
    ]
    if unindexed:
        notes.append(f"{unindexed} file(s) not in {LAYERS_IDX} went into {index[-1][0]}")
    return AppPlan(
        kind=AppKind.JAVA,
        layers=layers,
        entrypoint=(java, "-cp", APP_DIR, launcher),
        lang_packages=tuple(packages),
        notes=tuple(notes),
    )


def _extract(archive: zipfile.ZipFile, jar: Path, ctx: PlanContext) -> list[tuple[str, FsEntry]]:
    """Every regular member, staged, as (member name, entry under /app). Links and modes in
    the zip are ignored: every member becomes a plain readable file."""
    infos = [i for i in archive.infolist() if not i.is_dir()]
    total = sum(i.file_size for i in infos)
    if total > MAX_EXTRACTED:
        raise DistillError(
            f"{jar} would extract to {total >> 20} MiB, more than the {MAX_EXTRACTED >> 20} MiB "
            "distill allows",
            hint="the jar is damaged or a zip bomb; nothing was written",
        )
    seen: set[str] = set()
    out = []
    for info in infos:
        name = _safe_member(info.filename, jar)
        if name in seen:
            raise DistillError(
                f"{jar}: member {name[:200]!r} is there twice",
                hint="the jar is damaged or crafted; nothing was written",
            )
        seen.add(name)

        def check(written: int, info: zipfile.ZipInfo = info) -> None:
            if written != info.file_size:
                raise DistillError(f"{jar}: {info.filename} is not the size its header says")

        try:
            with archive.open(info) as member:
                staged, size = stage_stream(member, ctx.staging, "jar", check)
        except _DAMAGED as exc:
            raise DistillError(
                f"{jar}: {info.filename[:200]} cannot be read ({exc})", hint="the jar is damaged"
            ) from exc
        out.append((name, _file_entry(f"{APP_DIR[1:]}/{name}", staged, size)))
    parents = {d for name in seen for d in _parents(name)}
    clash = sorted(seen & parents)
    if clash:
        raise DistillError(
            f"{jar}: {clash[0][:200]!r} is both a file and a directory",
            hint="the jar is damaged or crafted; nothing was written",
        )
    return out


def _parents(path: str) -> Iterator[str]:
    parent = posixpath.dirname(path)
    while parent:
        yield parent
        parent = posixpath.dirname(parent)
