"""Wheels for the image's interpreter: which tags it accepts, what a wheel declares, whether
a set of wheels is complete, and installing one into a staged root.

The target is read from the base (:class:`~distill.package.plan.BaseFacts`), never from the
host: the host's Python may be another minor version and its glibc another release. Only
binary wheels are installed; nothing is built, so no compiler or build dependency comes near
the image.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, cast

from distill.bounded import one_line
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.package.plan import BaseFacts

if TYPE_CHECKING:
    import zipfile

    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.tags import Tag
    from packaging.utils import NormalizedName

# packaging is imported where it is used: a warm run that finds its wheels' metadata and
# their completeness remembered (package.pymemo) never loads it (~18 ms).
_SEPARATORS = re.compile(r"[-_.]+")


def canonicalize_name(name: str) -> NormalizedName:
    """The name PEP 503 normalizes ``name`` to (what packaging's function of this name
    returns)."""
    return cast("NormalizedName", _SEPARATORS.sub("-", name).lower())


# Debian architecture → the machine name in wheel platform tags.
MACHINES = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "armhf": "armv7l",
    "i386": "i686",
    "ppc64el": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
# The pre-PEP 600 manylinux names and the glibc minor each stands for (PEP 600 keeps them
# valid as aliases); only these machines ever had wheels published under them.
_LEGACY = {5: "manylinux1", 12: "manylinux2010", 17: "manylinux2014"}
_LEGACY_MACHINES = {
    5: {"x86_64", "i686"},
    12: {"x86_64", "i686"},
    17: {"x86_64", "i686", "aarch64", "armv7l", "ppc64", "ppc64le", "s390x"},
}
# No wheel was ever tagged below these (manylinux1 is glibc 2.5; others start at 2014's 2.17).
_OLDEST_GLIBC = {"x86_64": 5, "i686": 5}

# Caps on what one wheel may hold: a wheel is a zip from the network.
MAX_WHEEL_MEMBERS = 100_000
MAX_WHEEL_UNPACKED = 2 << 30
MAX_METADATA_BYTES = 4 << 20

WHEEL_HINT = "the file is damaged or not a wheel; rebuild or re-download it"
LOCK_HINT = (
    "pin every dependency with hashes (pip-compile --generate-hashes, uv pip compile "
    "--generate-hashes) or run `distill lock PATH`"
)


@dataclass(frozen=True)
class Target:
    """The interpreter wheels are chosen for: CPython ``python`` on ``machine`` with glibc
    ``glibc``."""

    python: str  # "3.13"
    full_version: str  # "3.13.5": for python_full_version markers
    machine: str  # "x86_64"
    glibc: tuple[int, int]  # (2, 41)

    @property
    def nodot(self) -> str:
        return self.python.replace(".", "")

    @cached_property
    def platforms(self) -> tuple[str, ...]:
        """manylinux platform tags, newest glibc first (a wheel built for an older glibc runs
        on a newer one, never the reverse)."""
        major, newest = self.glibc
        out: list[str] = []
        if major != 2:
            return ()
        for minor in range(newest, _OLDEST_GLIBC.get(self.machine, 17) - 1, -1):
            out.append(f"manylinux_2_{minor}_{self.machine}")
            if minor in _LEGACY and self.machine in _LEGACY_MACHINES[minor]:
                out.append(f"{_LEGACY[minor]}_{self.machine}")
        return tuple(out)

    @cached_property
    def tags(self) -> tuple[Tag, ...]:
        """Every tag a wheel may carry to run here, most specific first (as pip ranks them)."""
        from packaging.tags import compatible_tags, cpython_tags

        version = tuple(int(p) for p in self.python.split("."))
        abi = f"cp{self.nodot}"
        specific = cpython_tags(version, abis=[abi], platforms=self.platforms)
        generic = compatible_tags(version, interpreter=abi, platforms=self.platforms)
        return tuple(dict.fromkeys([*specific, *generic]))

    @cached_property
    def ranks(self) -> Mapping[Tag, int]:
        return {tag: i for i, tag in enumerate(self.tags)}

    @property
    def wanted(self) -> str:
        """The tag a compiled wheel needs at best, for messages."""
        return f"cp{self.nodot}-cp{self.nodot}-{self.platforms[0] if self.platforms else '?'}"

    def describe(self) -> str:
        return f"CPython {self.python}, glibc {self.glibc[0]}.{self.glibc[1]}, {self.machine}"

    def environment(self, extra: str = "") -> dict[str, str]:
        """PEP 508 marker variables of the image's interpreter: all of them, so nothing of
        the host's interpreter leaks into an evaluation."""
        return {
            "implementation_name": "cpython",
            "implementation_version": self.full_version,
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": self.full_version,
            "python_version": self.python,
            "sys_platform": "linux",
            "extra": extra,
        }

    def pip_args(self) -> list[str]:
        """pip's options for choosing wheels for this target (pip does not widen a
        manylinux_2_X tag to older glibcs itself, so every one is named)."""
        args = ["--only-binary=:all:", "--implementation", "cp"]
        args += ["--python-version", self.python, "--abi", f"cp{self.nodot}"]
        for platform in self.platforms:
            args += ["--platform", platform]
        return args


def target_for(base: BaseFacts) -> Target:
    if not base.python:
        raise DistillError(
            "the base image has no python3 for a Python app",
            hint="use a base with Python (--base python3:nonroot), or --kind to package it "
            "as another kind of app",
        )
    if not re.fullmatch(r"3\.\d+", base.python):
        raise DistillError(f"the base image's python3 version {base.python!r} is not 3.X")
    if not base.glibc or not re.match(r"\d+\.\d+", base.glibc):
        raise DistillError(
            "the base image has no glibc (libc6) that compiled wheels could link against",
            hint="package a Python app on a base with Python (--base python3:nonroot)",
        )
    machine = MACHINES.get(base.arch)
    if machine is None:
        raise DistillError(f"no wheel platform tag is known for the architecture {base.arch}")
    major, minor = (int(p) for p in re.findall(r"\d+", base.glibc)[:2])
    return Target(base.python, _full_version(base), machine, (major, minor))


def _full_version(base: BaseFacts) -> str:
    assert base.python is not None
    # Debian's python3.13 package version ("3.13.5-2") carries the micro release.
    deb = base.packages.get(f"python{base.python}") or base.packages.get(
        f"libpython{base.python}-minimal", ""
    )
    found = re.match(rf"{re.escape(base.python)}\.(\d+)", deb)
    return f"{base.python}.{found.group(1)}" if found else f"{base.python}.0"


@dataclass(frozen=True, slots=True)
class WheelName:
    name: NormalizedName
    version: str
    tags: frozenset[Tag]


def parse_wheel_name(filename: str) -> WheelName:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        name, version, _build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise DistillError(
            f"{one_line(filename, 200)} is not a wheel's file name: {one_line(str(exc), 200)}",
            hint="a wheel is named NAME-VERSION-PYTHON-ABI-PLATFORM.whl",
        ) from exc
    return WheelName(name, str(version), tags)


def wheel_rank(filename: str, target: Target) -> int | None:
    """How well the wheel fits ``target`` (lower is better); None: it does not run there."""
    ranks = [target.ranks[t] for t in parse_wheel_name(filename).tags if t in target.ranks]
    return min(ranks) if ranks else None


def check_compatible(filename: str, target: Target) -> None:
    if wheel_rank(filename, target) is None:
        raise DistillError(
            f"{one_line(filename, 200)} does not run on the image's Python "
            f"({target.describe()}): wanted {target.wanted} or a pure-Python wheel",
            hint="use a wheel built for the image's interpreter, or a base whose Python "
            "matches the wheel (Debian 12 bookworm has 3.11, Debian 13 trixie 3.13)",
        )


@dataclass(frozen=True, slots=True)
class WheelInfo:
    """What a wheel declares about itself."""

    name: str  # as in METADATA
    version: str
    requires: tuple[str, ...]  # Requires-Dist, unevaluated
    scripts: tuple[str, ...]  # console_scripts and gui_scripts names
    compiled: bool  # carries native code (Root-Is-Purelib false)

    @property
    def key(self) -> NormalizedName:
        return canonicalize_name(self.name)


def read_wheel(path: Path, filename: str) -> WheelInfo:
    """Read and check a wheel: a zip within the caps, one ``.dist-info`` whose METADATA names
    the same project and version as the file name, files matching its RECORD."""
    import zipfile  # a warm run reads no wheel (package.pymemo)

    expected = parse_wheel_name(filename)
    label = one_line(filename, 200)
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            if len(members) > MAX_WHEEL_MEMBERS:
                raise DistillError(
                    f"{label} has {len(members)} files, more than distill reads", hint=WHEEL_HINT
                )
            if sum(m.file_size for m in members) > MAX_WHEEL_UNPACKED:
                raise DistillError(
                    f"{label} unpacks to more than {MAX_WHEEL_UNPACKED >> 30} GiB", hint=WHEEL_HINT
                )
            dist_info = {
                m.filename.split("/", 1)[0]
                for m in members
                if m.filename.split("/", 1)[0].endswith(".dist-info")
            }
            if len(dist_info) != 1:
                raise DistillError(
                    f"{label} has {len(dist_info)} .dist-info directories, not 1", hint=WHEEL_HINT
                )
            info_dir = dist_info.pop()
            metadata = _member_text(zf, f"{info_dir}/METADATA", label)
            wheel = _member_text(zf, f"{info_dir}/WHEEL", label)
            names = {m.filename for m in members}
            entry_points = (
                _member_text(zf, f"{info_dir}/entry_points.txt", label)
                if f"{info_dir}/entry_points.txt" in names
                else ""
            )
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DistillError(
            f"{label} is not a readable wheel: {one_line(str(exc), 200)}", hint=WHEEL_HINT
        ) from exc
    from email.parser import HeaderParser  # a warm run reads no wheel (package.python)

    headers = HeaderParser().parsestr(metadata)
    name, version = (headers.get("Name") or "").strip(), (headers.get("Version") or "").strip()
    if canonicalize_name(name) != expected.name or not _same_version(version, expected.version):
        raise DistillError(
            f"{label}: its METADATA names {one_line(name, 100)} {one_line(version, 100)}, "
            "not the project and version of its file name",
            hint=WHEEL_HINT,
        )
    purelib = HeaderParser().parsestr(wheel).get("Root-Is-Purelib", "").strip().lower()
    return WheelInfo(
        name=name,
        version=version,
        requires=tuple(str(v) for v in headers.get_all("Requires-Dist") or ()),
        scripts=tuple(_script_names(entry_points)),
        compiled=purelib != "true",
    )


def _same_version(a: str, b: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return False


def _member_text(zf: zipfile.ZipFile, member: str, label: str) -> str:
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise DistillError(f"{label} has no {member}", hint=WHEEL_HINT) from None
    if info.file_size > MAX_METADATA_BYTES:
        raise DistillError(
            f"{label}: {member} is larger than {MAX_METADATA_BYTES >> 20} MiB", hint=WHEEL_HINT
        )
    with zf.open(info) as fh:
        return fh.read(MAX_METADATA_BYTES + 1).decode("utf-8", "replace")


def _script_names(entry_points: str) -> Iterator[str]:
    section = ""
    for raw in entry_points.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif "=" in line and section in ("console_scripts", "gui_scripts"):
            yield line.split("=", 1)[0].strip()


# --- completeness -----------------------------------------------------------------------


def parse_requirement(text: str, where: str) -> Requirement:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise DistillError(
            f"{where}: {one_line(text, 200)} is not a requirement: {one_line(str(exc), 200)}"
        ) from exc


def applies(req: Requirement, target: Target, extras: Iterable[str] = ()) -> bool:
    """Whether ``req`` is wanted on ``target`` when the dependent was asked for ``extras``."""
    if req.marker is None:
        return True
    from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName

    try:
        return any(_evaluate(req.marker, target.environment(e)) for e in ("", *extras))
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
        return True  # a marker packaging cannot evaluate: check the requirement anyway


def _evaluate(marker: Marker, env: dict[str, str]) -> bool:
    return marker.evaluate(env)


@dataclass(frozen=True, slots=True)
class Unmet:
    requirement: Requirement
    who: str  # who asks for it: a wheel's "name version", or where a root was written
    have: WheelInfo | None  # what is installed under that name, if anything


def walk_requirements(
    roots: Sequence[tuple[Requirement, str]],
    installed: Mapping[NormalizedName, WheelInfo],
    target: Target,
) -> tuple[set[NormalizedName], list[Unmet]]:
    """Follow the roots through the installed wheels' Requires-Dist (markers evaluated for
    ``target``, extras followed): what is reached, and every requirement not met."""
    extras: dict[NormalizedName, set[str]] = {}
    # A root with a marker (a pyproject dependency for older Pythons) counts only if it
    # applies to the image, like every Requires-Dist below it.
    queue = [(req, who) for req, who in roots if applies(req, target)]
    reached: set[NormalizedName] = set()
    unmet: list[Unmet] = []
    while queue:
        req, who = queue.pop(0)
        key = canonicalize_name(req.name)
        wheel = installed.get(key)
        if wheel is None or (
            req.specifier and not req.specifier.contains(wheel.version, prereleases=True)
        ):
            unmet.append(Unmet(req, who, wheel))
            continue
        wanted = extras.setdefault(key, set())
        new = {canonicalize_name(e) for e in req.extras} - wanted
        if key in reached and not new:
            continue
        wanted |= new
        reached.add(key)
        for text in wheel.requires:
            dep = parse_requirement(text, f"{wheel.name} {wheel.version}'s Requires-Dist")
            if applies(dep, target, sorted(wanted)):
                queue.append((dep, f"{wheel.name} {wheel.version}"))
    return reached, unmet


def check_complete(
    roots: Sequence[tuple[Requirement, str]],
    installed: Mapping[NormalizedName, WheelInfo],
    target: Target,
    lock_label: str,
) -> None:
    """Every root requirement and everything it needs on ``target`` is met by
    ``installed``, else one error naming the first unmet one. ``roots`` pairs a requirement
    with where it was written."""
    _, unmet = walk_requirements(roots, installed, target)
    if not unmet:
        return
    first = unmet[0]
    req, have = first.requirement, first.have
    if have is None:
        raise DistillError(
            f"{first.who} requires {req} (on Python {target.python}), but {req.name} is not "
            f"in {lock_label}",
            hint="the lock is incomplete: " + LOCK_HINT,
        )
    raise DistillError(
        f"{first.who} requires {req} (on Python {target.python}), but {lock_label} has "
        f"{have.name} {have.version}",
        hint="the lock does not satisfy its own dependencies: " + LOCK_HINT,
    )


# --- installing -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scheme:
    """Where Debian's python3 looks for locally installed packages: ``posix_local`` of its
    sysconfig, i.e. under /usr/local, with ``dist-packages`` (on ``sys.path``, and where
    ``site`` reads ``.pth`` files)."""

    python: str

    @property
    def site(self) -> str:
        return f"usr/local/lib/python{self.python}/dist-packages"

    @property
    def scripts(self) -> str:
        return "usr/local/bin"

    def paths(self, root: Path, name: str) -> dict[str, str]:
        return {
            "purelib": str(root / self.site),
            "platlib": str(root / self.site),
            "scripts": str(root / self.scripts),
            "data": str(root / "usr/local"),
            "headers": str(root / f"usr/local/include/python{self.python}/{name}"),
        }


INTERPRETER = "/usr/bin/python3"


def install_wheel(path: Path, filename: str, info: WheelInfo, root: Path, scheme: Scheme) -> None:
    """Unpack the wheel under ``root`` as pip would install it into the image's /usr/local:
    RECORD checked first, console scripts with ``#!/usr/bin/python3``, no bytecode.

    Not byte-compiled: a .pyc is only used by the exact minor version that wrote it, the
    host's Python is often another one, and running the image's own interpreter at build
    time needs its rootfs and loader. Python compiles in memory at import instead (~ms per
    module); ``PYTHONDONTWRITEBYTECODE`` keeps it from writing into the image at run time.
    """
    import zipfile

    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.exceptions import InstallerError
    from installer.sources import WheelFile

    destination = SchemeDictionaryDestination(
        scheme_dict=scheme.paths(root, info.name),
        interpreter=INTERPRETER,
        script_kind="posix",
        bytecode_optimization_levels=(),
    )
    try:
        with path.open("rb") as fh, zipfile.ZipFile(fh) as zf:
            # The cache names files by hash; installer reads name and version from this.
            zf.filename = filename
            source = WheelFile(zf)
            source.validate_record()
            install(source, destination, {"INSTALLER": b"distill\n"})
    except (InstallerError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DistillError(
            f"could not install {info.name} {info.version}: {one_line(str(exc), 300)}",
            hint="the wheel is damaged or malformed; clear it from the cache and retry",
        ) from exc


def staged_entries(root: Path, prefix: str = "") -> list[FsEntry]:
    """FsEntries for the tree under ``root`` (mapped to ``prefix`` in the image) with their
    parent directories: owned by root, files 0644 or 0755, directories 0755, so the same
    files give the same layer whatever the host's umask."""
    entries: dict[str, FsEntry] = {}
    for parent in _parents(prefix):
        entries[parent] = FsEntry(parent, EntryKind.DIR, 0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        base = prefix if rel_dir == "." else _join(prefix, rel_dir)
        for parent in _parents(base):
            entries.setdefault(parent, FsEntry(parent, EntryKind.DIR, 0o755))
        for name in sorted(filenames):
            full = Path(dirpath, name)
            st = full.lstat()
            rel = _join(base, name)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = FsEntry(rel, EntryKind.SYMLINK, 0o777, linkname=os.readlink(full))
            elif stat.S_ISREG(st.st_mode):
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                entries[rel] = FsEntry(rel, EntryKind.FILE, mode, size=st.st_size, content=full)
        for name in dirnames:
            full = Path(dirpath, name)
            if full.is_symlink():
                rel = _join(base, name)
                entries[rel] = FsEntry(rel, EntryKind.SYMLINK, 0o777, linkname=os.readlink(full))
    return [entries[k] for k in sorted(entries)]


def _join(a: str, b: str) -> str:
    return f"{a}/{b}" if a else b


def _parents(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
