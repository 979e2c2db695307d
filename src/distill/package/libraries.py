"""What native code needs at run time, and which Debian packages provide what a base lacks.

``needed_libraries`` reads one ELF file (pyelftools): its class and machine, ``PT_INTERP``,
``DT_NEEDED``, ``DT_RUNPATH``/``DT_RPATH`` and ``DT_SONAME``. ``resolve_libraries`` walks
every needed library of a set of binaries the way glibc's loader would look for it in the
image (RPATH when there is no RUNPATH, then RUNPATH, then the default directories; no
``ld.so.cache``, as distill's images have none), and maps what neither the base nor the
app itself holds to Debian packages through the archive's Contents index. The packages'
own libraries are their Depends' business: the resolver adds those when the driver adds
the packages to the lock.

Several packages may ship one soname (``libqt5gui5t64`` and ``libqt5gui5-gles``; a t64
rename and its predecessor in another pocket). The choice is deterministic, in this order:
the package must exist in the suite's Packages for the architecture; a package already
chosen for another library of the same app wins (fewer packages); then one whose name is
what Debian policy derives from the soname (``libfoo.so.1`` → ``libfoo1``, ``libfoo1t64``;
``libfoo-2.so.0`` → ``libfoo-2-0``); then one whose name starts with that; then names
without a ``-dev``/``-dbg`` suffix; then the smaller name.
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from distill.bounded import one_line
from distill.debian.archive import load_indices
from distill.debian.contents import LibraryIndex, library_index, usr_merged
from distill.debian.deb import iter_data
from distill.debian.mirror import Mirrors, discover_mirrors
from distill.debian.version import compare_versions
from distill.errors import DistillError
from distill.net.request import DownloadRequest
from distill.package.plan import BaseFacts

if TYPE_CHECKING:
    from distill.cache import BlobCache
    from distill.context import Access
    from distill.debian.binary import BinaryPackage


@dataclass(frozen=True, slots=True)
class ArchInfo:
    elf_class: int  # 32 or 64
    machine: str  # pyelftools' e_machine name
    little_endian: bool
    triplet: str  # the multiarch directory under usr/lib
    platform: str  # what $PLATFORM expands to


ARCHES: Mapping[str, ArchInfo] = {
    "amd64": ArchInfo(64, "EM_X86_64", True, "x86_64-linux-gnu", "x86_64"),
    "arm64": ArchInfo(64, "EM_AARCH64", True, "aarch64-linux-gnu", "aarch64"),
    "armhf": ArchInfo(32, "EM_ARM", True, "arm-linux-gnueabihf", "v7l"),
    "armel": ArchInfo(32, "EM_ARM", True, "arm-linux-gnueabi", "v5l"),
    "i386": ArchInfo(32, "EM_386", True, "i386-linux-gnu", "i686"),
    "ppc64el": ArchInfo(64, "EM_PPC64", True, "powerpc64le-linux-gnu", "powerpc64le"),
    "s390x": ArchInfo(64, "EM_S390", False, "s390x-linux-gnu", "s390x"),
    "riscv64": ArchInfo(64, "EM_RISCV", True, "riscv64-linux-gnu", "riscv64"),
}
ELF_MAGIC = b"\x7fELF"
_EF_ARM_ABI_FLOAT_HARD = 0x400
_MAX_DYNAMIC_TAGS = 1 << 16  # real programs have tens; a damaged table claims millions
_DEB_FILES_FORMAT = "1"  # bump when how a .deb's file list is stored changes
# Libraries that only the C++/GCC runtime packages ship: a binary needing them wants the
# `cc` base rather than `base`.
CC_RUNTIME = frozenset({"libstdc++.so.6", "libgcc_s.so.1", "libgomp.so.1"})


@dataclass(frozen=True, slots=True)
class ElfInfo:
    elf_class: int
    machine: str
    little_endian: bool
    elf_type: str  # ET_EXEC, ET_DYN (PIE executables and shared libraries), ...
    interp: str | None  # PT_INTERP: the dynamic loader's path
    needed: tuple[str, ...]  # DT_NEEDED, in order
    runpath: tuple[str, ...]  # DT_RUNPATH entries, unexpanded
    rpath: tuple[str, ...]  # DT_RPATH entries (ignored by the loader when RUNPATH is set)
    soname: str | None = None
    flags: int = 0  # e_flags: on 32-bit ARM, the float ABI tells armhf from armel

    @property
    def static(self) -> bool:
        """Needs nothing at run time: no loader, no libraries (static and static-pie)."""
        return self.interp is None and not self.needed

    @property
    def arch(self) -> str | None:
        """The Debian architecture this runs on, if it is one distill knows."""
        matches = [
            name
            for name, info in ARCHES.items()
            if (info.elf_class, info.machine, info.little_endian)
            == (self.elf_class, self.machine, self.little_endian)
        ]
        if len(matches) > 1:  # armhf and armel: the same machine, another float ABI
            return "armhf" if self.flags & _EF_ARM_ABI_FLOAT_HARD else "armel"
        return matches[0] if matches else None

    def describe(self) -> str:
        return f"ELF{self.elf_class} {self.machine.removeprefix('EM_')}"


def needed_libraries(elf: Path | bytes, name: str | None = None) -> ElfInfo:
    """What an ELF file needs from the image it runs in. Anything that is not a readable ELF
    file is refused with a DistillError naming it."""
    label = name or (str(elf) if isinstance(elf, Path) else "ELF data")
    try:
        if isinstance(elf, Path):
            with elf.open("rb") as fh:
                return _read_elf(fh, label)
        return _read_elf(io.BytesIO(elf), label)
    except OSError as exc:
        raise DistillError(f"cannot read {label}: {exc.strerror or exc}") from exc


def _tag_text(tag: object, attr: str) -> str:
    # pyelftools sets a string tag's text as an attribute named after the tag.
    return str(getattr(tag, attr))


def _read_elf(fh: BinaryIO, label: str) -> ElfInfo:
    if fh.read(4) != ELF_MAGIC:
        raise DistillError(f"{label} is not an ELF file", hint="pass a Linux executable")
    fh.seek(0)
    try:
        elf = ELFFile(fh)
        interp: str | None = None
        for segment in elf.iter_segments():
            if isinstance(segment, InterpSegment):
                interp = segment.get_interp_name()
        needed: list[str] = []
        runpath: list[str] = []
        rpath: list[str] = []
        soname = None
        for section in elf.iter_sections():
            if not isinstance(section, DynamicSection):
                continue
            for count, tag in enumerate(section.iter_tags()):
                if count >= _MAX_DYNAMIC_TAGS:
                    raise ValueError(f"more than {_MAX_DYNAMIC_TAGS} dynamic tags")
                kind = tag.entry.d_tag
                if kind == "DT_NEEDED":
                    needed.append(_tag_text(tag, "needed"))
                elif kind == "DT_RUNPATH":
                    runpath.extend(p for p in _tag_text(tag, "runpath").split(":") if p)
                elif kind == "DT_RPATH":
                    rpath.extend(p for p in _tag_text(tag, "rpath").split(":") if p)
                elif kind == "DT_SONAME":
                    soname = _tag_text(tag, "soname")
        return ElfInfo(
            elf_class=elf.elfclass,
            machine=str(elf["e_machine"]),
            little_endian=elf.little_endian,
            elf_type=str(elf["e_type"]),
            interp=interp,
            needed=tuple(dict.fromkeys(needed)),
            runpath=tuple(runpath),
            rpath=tuple(rpath),
            soname=soname,
            flags=int(elf["e_flags"]),
        )
    except (OSError, DistillError):
        raise
    except Exception as exc:
        # pyelftools raises all kinds of errors on damaged headers (its own, struct's,
        # OverflowError on absurd offsets, found by fuzzing): reading them is pure parsing.
        raise DistillError(
            f"{label} is a damaged ELF file: {str(exc)[:200]}",
            hint="rebuild it; distill reads its headers to find the libraries it needs",
        ) from exc


def check_arch(info: ElfInfo, arch: str, label: str) -> None:
    if info.arch != arch:
        built = f"{info.arch} ({info.describe()})" if info.arch else info.describe()
        raise DistillError(
            f"{label} is built for {built}, the image is {arch}",
            hint=f"build it for {arch}, or build the image for {info.arch or 'its'} "
            "architecture (--arch)",
        )


def default_dirs(arch: str) -> tuple[str, ...]:
    """Where the loader looks when nothing else says (relative, in its order)."""
    triplet = ARCHES[arch].triplet
    return (f"lib/{triplet}", f"usr/lib/{triplet}", "lib", "usr/lib")


def expand_dir(entry: str, origin: str, arch: str) -> str | None:
    """A RUNPATH/RPATH entry as a path in the image, relative; None for what cannot be
    placed (a relative entry is relative to the process's working directory)."""
    info = ARCHES[arch]
    for token, value in (
        ("ORIGIN", "/" + origin),
        ("LIB", f"lib/{info.triplet}"),
        ("PLATFORM", info.platform),
    ):
        entry = entry.replace("${" + token + "}", value).replace("$" + token, value)
    if not entry.startswith("/"):
        return None
    return posixpath.normpath(entry).lstrip("/")


class ImageFiles:
    """The base's files plus the app's, with symlinks followed as the kernel would."""

    def __init__(self, base: BaseFacts, extra: Sequence[str] = ()) -> None:
        self._files = base.files
        self._links = base.symlinks
        self._extra = frozenset(p.lstrip("/") for p in extra)

    def resolve(self, path: str) -> str | None:
        """The path with every symlink on the way followed; None if it does not exist."""
        parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            current = "/".join([*done, part])
            target = self._links.get(current)
            if target is not None:
                hops += 1
                if hops > 40:  # the kernel's ELOOP limit
                    return None
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                if target.startswith("/"):
                    done = []
                continue
            done.append(part)
        # Directories need not be listed: a file under a missing one is missing itself.
        final = "/".join(done)
        return final if self._exists(final) else None

    def _exists(self, path: str) -> bool:
        return path in self._files or path in self._extra

    def has(self, path: str) -> bool:
        return self.resolve(path) is not None


@dataclass(frozen=True, slots=True)
class LibraryResolution:
    packages: tuple[str, ...]  # Debian packages to add, sorted
    found: Mapping[str, str]  # soname (or loader path) → the package it comes from
    missing: tuple[str, ...]  # what neither the image nor any package provides
    present: Mapping[str, str] = field(default_factory=dict)  # soname → path in the image
    notes: tuple[str, ...] = ()  # "libcurl.so.4 → libcurl4t64", in the order found


def expected_package_names(soname: str) -> tuple[str, ...]:
    """The package names Debian policy (8.1) derives from a soname, most likely first."""
    stem, sep, version = soname.partition(".so")
    version = version.lstrip(".").split(".")[0] if sep else ""
    stem = stem.lower().replace("_", "-")
    if not version:
        return (stem,)
    joined = f"{stem}-{version}" if stem[-1:].isdigit() else f"{stem}{version}"
    return (joined, f"{joined}t64")


def choose_package(soname: str, candidates: Sequence[str], chosen: Sequence[str] = ()) -> str:
    """The one of several packages shipping ``soname`` to use (see the module's docstring)."""
    expected = expected_package_names(soname)

    def rank(name: str) -> tuple[int, int, int, str]:
        if name in expected:
            match = 0
        elif name.startswith(expected[0]):
            match = 1
        else:
            match = 2
        tooling = int(name.endswith(("-dev", "-dbg", "-dbgsym")))
        return (int(name not in chosen), match, tooling, name)

    return min(candidates, key=rank)


_SONAME_HINT = re.compile(r"^lib([A-Za-z0-9_+-]+?)[-.]")


def missing_hint(soname: str, elsewhere: Mapping[str, tuple[str, ...]]) -> str:
    if elsewhere:
        path, pkgs = sorted(elsewhere.items())[0]
        return (
            f"{pkgs[0]} ships it as /{path}, outside the loader's directories: add that "
            "package to the base and a RUNPATH to the program, or put the library in the "
            "app's directory and reach it with RUNPATH $ORIGIN"
        )
    match = _SONAME_HINT.match(soname)
    stem = match.group(1) if match else soname
    return (
        f"build the program against a library Debian has (apt-file search {stem}), link it "
        "statically, or put the library in the app's directory and reach it with "
        "RUNPATH $ORIGIN"
    )


class PackageFinder:
    """Looks sonames up in the Contents index and picks one package for each; loads the
    suite's Packages only when there is a choice to make or a candidate to confirm."""

    def __init__(
        self,
        suite: str,
        arch: str,
        cache: BlobCache,
        index: LibraryIndex | None = None,
        mirrors: Mirrors | None = None,
    ) -> None:
        self.suite, self.arch, self.cache = suite, arch, cache
        self._index = index
        self._mirrors = mirrors
        self._packages: dict[str, BinaryPackage] | None = None

    @property
    def mirrors(self) -> Mirrors:
        if self._mirrors is None:
            self._mirrors = discover_mirrors()
        return self._mirrors

    @property
    def index(self) -> LibraryIndex:
        if self._index is None:
            self._index = library_index(
                self.suite, self.arch, cache=self.cache, mirrors=self.mirrors
            )
        return self._index

    @property
    def packages(self) -> dict[str, BinaryPackage]:
        """The newest version of each package of the suite's pockets, by name."""
        if self._packages is None:
            newest: dict[str, BinaryPackage] = {}
            for pocket in load_indices(self.suite, self.arch, self.mirrors, cache=self.cache):
                for pkg in pocket.packages:
                    old = newest.get(pkg.name)
                    if old is None or compare_versions(pkg.version, old.version) > 0:
                        newest[pkg.name] = pkg
            self._packages = newest
        return self._packages

    def find(self, name: str, dirs: Sequence[str], chosen: Sequence[str]) -> str | None:
        """The package to install for library ``name`` looked for in ``dirs`` (in order)."""
        for directory in dirs:
            path = usr_merged(f"{directory}/{name}")
            candidates = list(self.index.packages_at(path))
            if len(candidates) > 1 or (candidates and not self.index.verified):
                candidates = [c for c in candidates if c in self.packages]
            while candidates:
                pick = choose_package(name, candidates, chosen)
                if self.index.verified or self.ships(pick, path):
                    return pick
                candidates.remove(pick)
        return None

    def elsewhere(self, name: str) -> dict[str, tuple[str, ...]]:
        return self.index.named(name)

    def ships(self, package: str, path: str) -> bool:
        """Whether the package's own .deb (verified against the signed index) has ``path``."""
        pkg = self.packages[package]
        request = DownloadRequest(
            url=f"{self.mirrors.for_pocket(pkg.pocket)}/{pkg.filename}",
            sha256=pkg.sha256,
            size=pkg.size,
            name=f"{pkg.name}_{pkg.version}_{pkg.architecture}.deb",
        )
        return path in self._deb_files(request)

    def _deb_files(self, request: DownloadRequest) -> frozenset[str]:
        # Listing a .deb means decompressing its data archive: keep the list, under the
        # .deb's verified hash.
        key = f"{_DEB_FILES_FORMAT}-{request.sha256}"
        listed = self.cache.get_derived("deb-files", key)
        if listed is None:
            from distill.net.download import fetch_blob  # the network stack, only when used

            deb = fetch_blob(request, self.cache)
            names = sorted({usr_merged(info.name.lstrip(".")) for info, _ in iter_data(deb)})
            listed = "\n".join(names).encode()
            self.cache.put_derived("deb-files", key, listed)
        return frozenset(listed.decode("utf-8", "replace").split("\n"))


def resolve_libraries(
    binaries: Sequence[tuple[str, Path]],
    base: BaseFacts,
    *,
    cache: BlobCache,
    access: Access | None = None,
    suite: str,
    arch: str,
    index: LibraryIndex | None = None,
    strict: bool = True,
    offline: bool = False,
) -> LibraryResolution:
    """Every library ``binaries`` (path in the image, staged file) need, found in the image
    or mapped to the Debian packages that ship it. With ``strict`` a library no package
    ships raises DistillError naming it; otherwise it is listed in ``missing``. ``offline``:
    a library the image lacks is an error (looking it up needs the archive's indices)."""
    del access  # the Debian archive is reached through the machine's mirrors, not a registry
    if arch not in ARCHES:
        raise DistillError(f"unknown architecture {arch!r}", hint=f"use one of {sorted(ARCHES)}")
    infos: list[tuple[str, ElfInfo]] = []
    for image_path, staged in binaries:
        info = needed_libraries(staged, image_path)
        check_arch(info, arch, image_path)
        infos.append((image_path.lstrip("/"), info))
    files = ImageFiles(base, [p for p, _ in infos])
    finder = PackageFinder(suite, arch, cache, index)
    present: dict[str, str] = {}
    wanted: dict[str, tuple[str, ...]] = {}  # soname or loader path → directories to look in
    for image_path, info in infos:
        if info.interp is not None:
            where = files.resolve(info.interp)
            if where is None:
                wanted.setdefault(info.interp, (posixpath.dirname(info.interp.lstrip("/")),))
            else:
                present[info.interp] = where
        dirs = search_dirs(info, image_path, arch)
        for soname in info.needed:
            if "/" in soname:  # a path, used as it is
                dirs_for: tuple[str, ...] = (posixpath.dirname(soname.lstrip("/")),)
                name = posixpath.basename(soname)
            else:
                dirs_for, name = dirs, soname
            hit = next((r for d in dirs_for if (r := files.resolve(f"{d}/{name}"))), None)
            if hit is not None:
                present.setdefault(soname, hit)
            elif soname not in wanted:
                wanted[soname] = dirs_for
    if wanted and offline and index is None:
        first = sorted(wanted)[0]
        raise DistillError(
            f"{first} is not in the image, and finding the Debian package that ships it "
            "needs the archive (--offline)",
            hint="run `distill lock PATH` once with the network: the lock then holds the "
            "packages, and offline builds use it",
        )
    found: dict[str, str] = {}
    notes: list[str] = []
    missing: list[str] = []
    for soname in sorted(wanted):
        pick = finder.find(posixpath.basename(soname), wanted[soname], list(found.values()))
        if pick is None:
            missing.append(soname)
            continue
        found[soname] = pick
        notes.append(f"{soname} → {pick}")
    if missing and strict:
        first = missing[0]
        # A crafted binary may name thousands: the line names a few and counts the rest.
        shown = ", ".join(one_line(m, 100) for m in missing[1:6])
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        others = f" (and {shown}{more})" if missing[1:] else ""
        raise DistillError(
            f"{one_line(first, 100)}{others}, needed by the app, is not in the image and no "
            f"Debian package of {suite}/{arch} ships it",
            hint=missing_hint(posixpath.basename(first), finder.elsewhere(first)),
        )
    return LibraryResolution(
        packages=tuple(sorted(set(found.values()))),
        found=found,
        missing=tuple(missing),
        present=present,
        notes=tuple(notes),
    )


def search_dirs(info: ElfInfo, image_path: str, arch: str) -> tuple[str, ...]:
    """The loader's directories for the libraries ``info`` needs, in its order."""
    origin = posixpath.dirname(image_path.lstrip("/"))
    entries = (() if info.runpath else info.rpath) + info.runpath
    dirs = [d for e in entries if (d := expand_dir(e, origin, arch)) is not None]
    return tuple(dict.fromkeys([*dirs, *default_dirs(arch)]))
