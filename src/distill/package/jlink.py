"""``distill package --jlink``: a Java runtime of just the modules an app needs, on ``cc``.

The tools are Debian's: ``openjdk-21-jdk-headless`` and its closure, resolved from trixie's
verified indices (or exactly the closure the app's lock pins: its ``deb`` records, which
the plan hands back for the lock), fetched as verified .debs and unpacked with distill's
own archive client (``debian/``, ``build/unpack.py``) into a directory of the cache keyed
by the closure's .deb digests. The host's Java, if any, is never used.

trixie's JDK needs trixie's glibc, newer than a bookworm host's, so its tools are started
through the unpacked tree's own dynamic loader (``ld-linux-* --library-path ROOT-libs:JDK-libs
JDK/bin/jdeps``): the host's libc is never loaded into them. The JDK starts helpers with
``posix_spawn`` through ``jspawnhelper`` (which would run under the host's loader), so the
tools are told to ``vfork`` instead. Absolute symlinks inside the tree are made relative so
they stay inside it.

``jdeps --print-module-deps`` over every jar and class directory of the app gives the
modules; ``jlink`` builds ``/opt/java`` from the JDK's ``jmods``. The image's SBOM still
names where the runtime came from: the JDK package's own control stanza is written to
``/var/lib/dpkg/status.d/`` (the distroless package database trivy, syft and ``distill sbom``
read), without an ``md5sums`` file, because the runtime's files are jlink's output and not
the package's. Its copyright file goes with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from distill import log, tempfiles
from distill.bounded import one_line
from distill.build.spec import host_arch
from distill.build.unpack import fetch_debs, unpack_all
from distill.debian.archive import load_indices, pockets_for
from distill.debian.deb import DebControl
from distill.debian.lock import ArchLock, Lock, LockedPackage, resolve_spec
from distill.debian.mirror import Mirrors, discover_mirrors
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.package.plan import AppLayer, AppPlan, BaseFacts, LangPackage, PlanContext
from distill.rootfs.dpkg_status import status_entries
from distill.rootfs.extract import KeepOptions, entries_from_rows, stage_stream, staged_row

JDK_PACKAGE = "openjdk-21-jdk-headless"
JDK_SUITE = "trixie"
JAVA_HOME = "opt/java"  # in the image
JLINK_JAVA = f"/{JAVA_HOME}/bin/java"
RUNTIME_BASE = "cc:nonroot"
RUNTIME_LAYER = "java runtime (jlink)"
# Service providers jdeps cannot see: the elliptic-curve provider TLS needs (its own module
# in 21) and the DNS provider ``InetAddress`` loads by name.
ALWAYS_MODULES = ("jdk.crypto.ec",)
JDK_FORMAT = 1  # bump when the unpacked tree's layout changes
DEB_ECOSYSTEM = "deb"  # the JDK's .debs among the app lock's packages
TOOL_TIMEOUT = 600
JLINK_OPTIONS = ("--strip-debug", "--no-man-pages", "--no-header-files", "--compress=zip-6")
JDEPS_NAMESPACE = "jdeps"
_TOOL_ENV_DROPPED = frozenset(
    {"JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS", "CLASSPATH", "JAVA_HOME",
     "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"}
)  # fmt: skip
JLINK_NAMESPACE = "jlink"
TRIPLETS = {
    "amd64": ("x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
    "arm64": ("aarch64-linux-gnu", "ld-linux-aarch64.so.1"),
}


@dataclass(frozen=True, slots=True)
class _Request:
    """A ``debian.lock.LockRequest`` for the JDK's closure."""

    arch: str
    suite: str = JDK_SUITE
    roots: tuple[str, ...] = (JDK_PACKAGE,)
    pins: dict[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] = ()

    def target_archs(self) -> tuple[str, ...]:
        return (self.arch,)

    def suite_pockets(self) -> tuple[str, ...]:
        return pockets_for(self.suite)


@dataclass(frozen=True, slots=True)
class Jdk:
    root: Path  # the unpacked closure
    home: Path  # root/usr/lib/jvm/java-21-openjdk-ARCH
    arch: str
    owners: dict[str, str]  # path in the tree → Debian package
    controls: dict[str, str]  # package → its control stanza
    copyright: dict[str, Path]  # package → its staged copyright file
    version: str
    key: str  # sha256 over the closure's .deb digests
    glibc: tuple[int, int]  # the libc6 it was built against: the runtime needs at least it
    packages: tuple[LockedPackage, ...] = ()  # the closure's .debs

    def run(self, tool: str, args: Sequence[str]) -> str:
        triplet, loader = TRIPLETS[self.arch]
        libs = [self.root / "usr/lib" / triplet, self.home / "lib", self.home / "lib/server"]
        command = [
            str(self.root / "usr/lib" / triplet / loader),
            "--library-path",
            ":".join(map(str, libs)),
            str(self.home / "bin" / tool),
            "-J-Djdk.lang.Process.launchMechanism=VFORK",
            *args,
        ]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=TOOL_TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
                env=_tool_env(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DistillError(f"{tool} from {JDK_PACKAGE} could not run ({exc})") from exc
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise DistillError(
                f"{tool} from {JDK_PACKAGE} failed: {one_line(lines[-1] if lines else '', 300)}",
                hint=f"the JDK is unpacked in {self.root}; run {tool} there for its whole output",
            )
        return done.stdout

    def libraries(self, elf: Path) -> dict[str, str]:
        """soname → the file in the tree the JDK's loader resolves it to (``ld.so --list``)."""
        triplet, loader = TRIPLETS[self.arch]
        libs = [self.root / "usr/lib" / triplet, elf.parent, self.home / "lib/server"]
        command = [
            str(self.root / "usr/lib" / triplet / loader),
            "--library-path",
            ":".join(map(str, libs)),
            "--list",
            str(elf),
        ]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                stdin=subprocess.DEVNULL,
                env=_tool_env(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DistillError(f"the libraries of {elf.name} could not be listed ({exc})") from exc
        found, missing = {}, []
        for line in done.stdout.splitlines():
            name, sep, rest = line.strip().partition(" => ")
            if sep and rest.startswith("/"):
                found[name] = rest.split(" (", 1)[0]
            elif sep and rest.startswith("not found"):
                missing.append(name)
        if done.returncode != 0 or missing:
            # Without the list the image could lack a library the runtime loads.
            raise DistillError(
                f"the libraries of the runtime's {elf.name} could not be listed"
                + (f": {', '.join(missing)} not found" if missing else ""),
                hint=f"the unpacked JDK in {self.root} may be incomplete; delete it to unpack "
                "it again",
            )
        return found


def _tool_env() -> dict[str, str]:
    """The environment without what would change the tools' output or load the host's
    libraries into them (options the JVM reads, preloads, library paths)."""
    return {k: v for k, v in os.environ.items() if k not in _TOOL_ENV_DROPPED}


def _host_arch_matches(arch: str) -> None:
    if arch != host_arch():
        raise DistillError(
            f"--jlink runs the JDK's tools on this machine ({host_arch()}); the image is {arch}",
            hint="build the jlink image on a machine of the image's architecture",
        )


def load_jdk(
    arch: str,
    ctx: PlanContext,
    pinned: tuple[LockedPackage, ...] | None = None,
    *,
    offline: bool = False,
) -> Jdk:
    """The JDK's closure, resolved (or the one ``pinned`` by the app's lock), fetched,
    verified and unpacked (once per closure). ``offline``: only from the cache."""
    _host_arch_matches(arch)
    if arch not in TRIPLETS:
        raise DistillError(f"--jlink does not support {arch}")
    request = _Request(arch)
    if pinned is None:
        if offline:
            raise DistillError(
                f"--offline: the app's lock does not pin the {JDK_PACKAGE} --jlink runs",
                hint="lock the app online with `distill lock PATH --jlink`",
            )
        found = discover_mirrors()
        indices = load_indices(
            JDK_SUITE, arch, found, pockets=request.suite_pockets(), cache=ctx.cache
        )
        resolution = resolve_spec(request, arch, indices)
        packages = tuple(LockedPackage.of(p) for p in resolution.packages)
    else:
        packages, found = pinned, None

    def mirrors() -> Mirrors:  # asked only when a .deb is not in the cache
        if offline:
            raise DistillError(
                f"--offline: the .debs of {JDK_PACKAGE} the lock pins are not in the cache",
                hint="package once without --offline to fetch them",
            )
        return found or discover_mirrors()

    lock = Lock(JDK_SUITE, (), {arch: ArchLock(packages, ())}, request.roots, (), ())
    debs = fetch_debs(lock, arch, ctx.cache, mirrors, jobs=ctx.access.jobs)
    unpacked = unpack_all(packages, debs, ctx.cache, KeepOptions(), jobs=ctx.access.jobs)
    key = hashlib.sha256(
        f"{JDK_FORMAT}\n".encode() + "\n".join(sorted(p.sha256 for p in packages)).encode()
    ).hexdigest()
    root = ctx.cache.root / "jdk" / key
    if not (root / ".complete").is_file():
        _materialise(root, [e for u in unpacked.values() for e in u.entries])
    owners = {e.path: name for name, u in unpacked.items() for e in u.entries}
    homes = sorted((root / "usr/lib/jvm").glob("java-21-openjdk-*"))
    homes = [h for h in homes if not h.is_symlink() and (h / "bin/jlink").exists()]
    if not homes:
        raise DistillError(f"{JDK_PACKAGE} unpacked without bin/jlink; cannot link a runtime")
    copyright = {
        name: e.content
        for name, u in unpacked.items()
        for e in u.entries
        if e.path == f"usr/share/doc/{name}/copyright" and isinstance(e.content, Path)
    }
    version = next(p.version for p in packages if p.name == JDK_PACKAGE)
    controls = {name: u.control.control for name, u in unpacked.items()}
    libc = next((p.version for p in packages if p.name == "libc6"), "0.0")
    return Jdk(root, homes[0], arch, owners, controls, copyright, version, key, _major_minor(libc),
               packages)  # fmt: skip


def pinned_jdk(ctx: PlanContext, arch: str) -> tuple[LockedPackage, ...] | None:
    """The JDK closure the app's lock pins (its ``deb`` records), or None when it pins none."""
    records = [p for p in ctx.locked or () if p.ecosystem == DEB_ECOSYSTEM]
    if not records:
        return None
    pockets = pockets_for(JDK_SUITE)
    for p in records:
        if p.pocket not in pockets:
            raise DistillError(
                f"the lock pins {p.name[:100]} from {p.pocket[:100]!r}, not a pocket of "
                f"{JDK_SUITE} ({', '.join(pockets)})",
                hint="lock the app again: `distill lock PATH --jlink`",
            )
    if not any(p.name == JDK_PACKAGE for p in records):
        raise DistillError(
            f"the lock pins .debs for --jlink but not {JDK_PACKAGE}",
            hint="lock the app again: `distill lock PATH --jlink`",
        )
    return tuple(
        LockedPackage(
            p.name,
            p.version,
            arch,
            p.source,
            p.digest.removeprefix("sha256:"),
            p.size,
            p.name,
            p.version,
            p.pocket,
        )
        for p in records
    )


def jdk_records(jdk: Jdk) -> tuple[LangPackage, ...]:
    """The JDK closure as the app's lock records it, so a rebuild links the same JDK."""
    return tuple(
        LangPackage(
            DEB_ECOSYSTEM, p.name, p.version, f"sha256:{p.sha256}", p.filename, p.size, p.pocket
        )
        for p in jdk.packages
    )


def _major_minor(version: str) -> tuple[int, int]:
    match = re.match(r"(?:\d+:)?(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _check_glibc(jdk: Jdk, base: BaseFacts) -> None:
    """The runtime's native code is trixie's: a base with an older glibc (bookworm's) or
    none (static) could not start it."""
    have = _major_minor(base.glibc) if base.glibc else None
    if have is None or have < jdk.glibc:
        need = ".".join(map(str, jdk.glibc))
        raise DistillError(
            f"the jlink'ed runtime from {JDK_SUITE}'s {JDK_PACKAGE} needs glibc {need} or "
            f"newer; the base has {base.glibc or 'none'}",
            hint=f"package on a {JDK_SUITE} base with glibc (the default, cc:nonroot)",
        )


def _materialise(root: Path, entries: Sequence[FsEntry]) -> None:
    """The entries as a real tree at ``root``, built beside it and renamed into place."""
    root.parent.mkdir(parents=True, exist_ok=True)
    work = tempfiles.make_dir(root.parent, "jdk")
    try:
        # Hard links last: their targets may sort after them.
        ordered = sorted(entries, key=lambda e: (e.kind == EntryKind.HARDLINK, e.path))
        for entry in ordered:
            target = work / entry.path
            if entry.kind == EntryKind.DIR:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            if entry.kind == EntryKind.SYMLINK:
                link = entry.linkname
                if link.startswith("/"):  # keep it inside the tree
                    link = os.path.relpath(link.lstrip("/"), os.path.dirname(entry.path) or ".")
                target.symlink_to(link)
            elif entry.kind == EntryKind.HARDLINK:
                os.link(work / entry.linkname, target)
            elif isinstance(entry.content, Path):
                shutil.copyfile(entry.content, target)
                target.chmod(entry.mode & 0o755)
            else:
                target.write_bytes(entry.read_bytes())
                target.chmod(entry.mode & 0o755)
        (work / ".complete").write_text("")
        try:
            work.rename(root)
        except OSError:
            if not (root / ".complete").is_file():
                raise
            shutil.rmtree(work)  # another run finished first
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


@dataclass(frozen=True, slots=True)
class JlinkRuntime:
    java: str
    layer: AppLayer
    debian_packages: tuple[str, ...]
    notes: tuple[str, ...]
    jdk: tuple[LangPackage, ...] = ()  # the .debs the runtime was linked from, for the lock

    def apply(self, plan: AppPlan) -> AppPlan:
        return replace(
            plan,
            layers=(self.layer, *plan.layers),
            lang_packages=(*plan.lang_packages, *self.jdk),
            base=RUNTIME_BASE,
            debian_packages=tuple(dict.fromkeys((*plan.debian_packages, *self.debian_packages))),
            env={**plan.env, "JAVA_HOME": f"/{JAVA_HOME}"},
            notes=(*self.notes, *plan.notes),
        )


def app_modules(jdk: Jdk, app_root: Path) -> list[str]:
    """What ``jdeps`` says the app's jars and class directories need."""
    targets = sorted(str(p) for p in app_root.rglob("*.jar") if p.is_file())
    classes = sorted({str(p.parent) for p in app_root.rglob("*.class")})
    # Every class directory's root: jdeps reads a directory's classes whatever their depth.
    roots = sorted({c for c in classes if not any(c.startswith(o + "/") for o in classes)})
    if not targets and not roots:
        raise DistillError(f"nothing for jdeps to read under {app_root}")
    out = jdk.run(
        "jdeps",
        ["--multi-release", "21", "--ignore-missing-deps", "--print-module-deps", *targets, *roots],
    )
    modules = [m.strip() for m in out.strip().splitlines()[-1].split(",") if m.strip()]
    return modules or ["java.base"]


def _link(jdk: Jdk, modules: Sequence[str], ctx: PlanContext) -> Path:
    out = tempfiles.make_dir(ctx.staging, "jlink") / "runtime"
    jdk.run(
        "jlink",
        [
            "--module-path",
            str(jdk.home / "jmods"),
            "--add-modules",
            ",".join(modules),
            *JLINK_OPTIONS,
            "--output",
            str(out),
        ],
    )
    return out


def _derived_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([JDK_FORMAT, *parts]).encode()).hexdigest()


def _modules(jdk: Jdk, app_root: Path, app_key: str, ctx: PlanContext) -> list[str]:
    """jdeps' answer, remembered per JDK and app contents (``app_key``)."""
    key = _derived_key(jdk.key, app_key, ALWAYS_MODULES)
    cached = ctx.cache.get_derived(JDEPS_NAMESPACE, key)
    if cached is not None:
        try:
            found = json.loads(cached)
            if isinstance(found, list) and all(isinstance(m, str) for m in found):
                return found
        except ValueError:
            pass
    with log.complete_step("Finding the modules the app needs (jdeps)"):
        modules = sorted({*app_modules(jdk, app_root), *ALWAYS_MODULES})
    ctx.cache.put_derived(JDEPS_NAMESPACE, key, json.dumps(modules).encode())
    return modules


def _runtime(
    jdk: Jdk, modules: Sequence[str], ctx: PlanContext
) -> tuple[list[FsEntry], tuple[str, ...]]:
    """The runtime's entries (staged) and the packages of the libraries it loads, linked
    once per JDK and module list: a warm run reads a record instead of running jlink."""
    key = _derived_key(jdk.key, list(modules), JLINK_OPTIONS)
    cached = ctx.cache.get_derived(JLINK_NAMESPACE, key)
    found = _from_record(cached, ctx.staging) if cached is not None else None
    if found is not None:
        return found
    with log.complete_step(f"Linking a runtime of {', '.join(modules)} (jlink)"):
        out = _link(jdk, modules, ctx)
    try:
        files = runtime_entries(out, ctx)
        packages = _needed_packages(jdk, out)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    record = {
        "entries": [staged_row(e) for e in files],
        "packages": list(packages),
    }  # fmt: skip
    ctx.cache.put_derived(JLINK_NAMESPACE, key, json.dumps(record).encode())
    return files, packages


def _from_record(data: bytes, staging: Path) -> tuple[list[FsEntry], tuple[str, ...]] | None:
    """A remembered runtime, or None when the record is unreadable or a staged file is gone."""
    try:
        record = json.loads(data)
        entries = entries_from_rows(record["entries"], staging)
        if entries is None:
            return None
        packages = tuple(str(p) for p in record["packages"])
    except (ValueError, KeyError, TypeError):
        return None
    return entries, packages


def runtime_entries(out: Path, ctx: PlanContext) -> list[FsEntry]:
    entries = []
    for path in sorted(out.rglob("*")):
        rel = f"{JAVA_HOME}/{path.relative_to(out).as_posix()}"
        if path.is_symlink():
            entries.append(FsEntry(rel, EntryKind.SYMLINK, 0o777, linkname=os.readlink(path)))
        elif path.is_dir():
            entries.append(FsEntry(rel, EntryKind.DIR, 0o755))
        else:
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with path.open("rb") as fh:
                staged, size = stage_stream(fh, ctx.staging, "jlink")
            entries.append(FsEntry(rel, EntryKind.FILE, mode, size=size, content=staged))
    return entries


def _needed_packages(jdk: Jdk, out: Path) -> tuple[str, ...]:
    """The Debian packages of the system libraries the runtime loads (libc6 aside: every
    ``cc`` has it)."""
    elves = [p for p in (*out.glob("bin/*"), *out.rglob("*.so")) if p.is_file()]
    needed: set[str] = set()
    prefix = str(jdk.root) + "/"
    for elf in elves:
        for file in jdk.libraries(elf).values():
            real = os.path.realpath(file)
            for candidate in (file, real):
                if candidate.startswith(prefix):
                    owner = jdk.owners.get(candidate[len(prefix) :])
                    if (
                        owner is not None
                        and owner not in ("libc6", JDK_PACKAGE)
                        and not owner.startswith("openjdk-")
                    ):
                        needed.add(owner)
    return tuple(sorted(needed))


def jlink_runtime(
    app_root: Path, app_key: str, base: BaseFacts, ctx: PlanContext, *, offline: bool = False
) -> JlinkRuntime:
    """A jlink'ed runtime for the app staged at ``app_root`` (its files as the image has
    them under /app; ``app_key`` a digest of their paths and contents)."""
    pinned = pinned_jdk(ctx, base.arch)
    with log.complete_step(f"Unpacking {JDK_PACKAGE} from {JDK_SUITE} for jdeps and jlink"):
        jdk = load_jdk(base.arch, ctx, pinned, offline=offline)
    _check_glibc(jdk, base)
    modules = _modules(jdk, app_root, app_key, ctx)
    files, packages = _runtime(jdk, modules, ctx)
    sbom = status_entries([_control(jdk)])
    doc = jdk.copyright.get(JDK_PACKAGE)
    if doc is not None:
        where = f"usr/share/doc/{JDK_PACKAGE}/copyright"
        sbom += [
            FsEntry("usr/share/doc", EntryKind.DIR, 0o755),
            FsEntry(f"usr/share/doc/{JDK_PACKAGE}", EntryKind.DIR, 0o755),
            FsEntry(where, EntryKind.FILE, 0o644, size=doc.stat().st_size, content=doc),
        ]
    parents = [FsEntry(d, EntryKind.DIR, 0o755) for d in ("opt", "usr", "usr/share")]
    layer = AppLayer(RUNTIME_LAYER, (*parents, *sbom, *files))
    notes = (
        f"jlink runtime at /{JAVA_HOME} from {JDK_PACKAGE} {jdk.version}: {', '.join(modules)}",
        *((f"added for the runtime: {', '.join(packages)}",) if packages else ()),
    )
    return JlinkRuntime(JLINK_JAVA, layer, packages, notes, jdk_records(jdk))


def _control(jdk: Jdk) -> DebControl:
    return DebControl(jdk.controls[JDK_PACKAGE], "", (), {})
