"""The ELF planner: a compiled program (or a directory holding one) on the base it needs.

A static program (no loader, no libraries: C with ``-static``, Go with ``CGO_ENABLED=0``)
goes on ``static``. A dynamic one goes on ``base`` — or ``cc`` when it needs the C++/GCC
runtime — plus the Debian packages holding whatever else it needs (``libraries``), which
the driver adds to the base's lock. Its files go to ``/app``; the program is the entrypoint.

A dynamic program on a base with no C library is the "CGO trap": the kernel cannot find the
loader named in ``PT_INTERP`` and ``exec`` fails with a baffling "no such file or
directory". That is refused here, with what to do instead.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from distill.build.spec_values import Accounts, FileSpec
from distill.build.userfiles import file_entries
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.package.libraries import (
    CC_RUNTIME,
    ELF_MAGIC,
    ElfInfo,
    ImageFiles,
    check_arch,
    default_dirs,
    needed_libraries,
    resolve_libraries,
)
from distill.package.plan import (
    APP_DIR,
    AppKind,
    AppLayer,
    AppOptions,
    AppPlan,
    BaseFacts,
    PlanContext,
)

STATIC_BASE = "static:nonroot"
DYNAMIC_BASE = "base:nonroot"
CC_BASE = "cc:nonroot"
LAYER_NAME = "application"


def _starts_elf(entry: FsEntry) -> bool:
    if entry.kind is not EntryKind.FILE:
        return False
    if isinstance(entry.content, bytes):
        return entry.content[:4] == ELF_MAGIC
    if isinstance(entry.content, Path):
        with entry.content.open("rb") as fh:
            return fh.read(4) == ELF_MAGIC
    return False


def app_entries(path: Path, staging: Path) -> list[FsEntry]:
    """The program, or the directory's whole tree, copied under /app (symlinks stay links)."""
    real = path.resolve()
    if not real.exists():
        raise DistillError(f"{path} does not exist", hint="give the program or its directory")
    spec = FileSpec(
        src=real,
        context=real if real.is_dir() else real.parent,
        dest=APP_DIR,
        into=not real.is_dir(),
        # A lone program is what runs: executable whatever its mode here. A directory's
        # files keep theirs (0755 when executable here, else 0644).
        mode=None if real.is_dir() else 0o755,
        origin=str(path),
    )
    return file_entries([spec], Accounts(), staging)


def is_program(info: ElfInfo) -> bool:
    """An executable rather than a shared library: it has a loader, or is a fixed-address or
    static-pie executable (no loader, no soname)."""
    if info.interp is not None or info.elf_type == "ET_EXEC":
        return True
    return info.elf_type == "ET_DYN" and info.soname is None and not info.needed


def _entrypoint(options: AppOptions, programs: list[str]) -> tuple[tuple[str, ...], str]:
    if options.entrypoint:
        return options.entrypoint, f"entrypoint {' '.join(options.entrypoint)} (as given)"
    if len(programs) == 1:
        return ("/" + programs[0],), f"entrypoint /{programs[0]} (the only program)"
    if not programs:
        raise DistillError(
            f"{options.path} holds no executable ELF program",
            hint="point PATH at the compiled program (or a directory holding one)",
        )
    shown = ", ".join("/" + p for p in programs[:5])
    raise DistillError(
        f"{options.path} holds {len(programs)} programs ({shown}): which one runs?",
        hint="pass --entrypoint /app/<program>",
    )


def has_c_library(base: BaseFacts) -> bool:
    return base.glibc is not None or "libc6" in base.packages


def refuse_cgo_trap(base_name: str, program: str, info: ElfInfo) -> DistillError:
    return DistillError(
        f"{program} is dynamically linked (loader {info.interp}, "
        f"{len(info.needed)} libraries) and the base {base_name} has no C library: it would "
        "fail with 'no such file or directory'",
        hint=f"leave --base out (distill then uses {DYNAMIC_BASE} and adds the libraries it "
        "needs), or link the program statically (gcc -static; Go: CGO_ENABLED=0)",
    )


class ElfPlanner:
    def plan(self, options: AppOptions, base: BaseFacts, ctx: PlanContext) -> AppPlan:
        entries = app_entries(options.path, ctx.staging)
        infos: dict[str, tuple[ElfInfo, Path]] = {}
        for entry in entries:
            if _starts_elf(entry) and isinstance(entry.content, Path):
                info = needed_libraries(entry.content, "/" + entry.path)
                check_arch(info, base.arch, "/" + entry.path)
                infos[entry.path] = (info, entry.content)
        programs = sorted(
            p for p, (info, _) in infos.items() if is_program(info) and _executable(entries, p)
        )
        entrypoint, how = _entrypoint(options, programs)
        notes = [how]
        run = entrypoint[0].lstrip("/")
        dynamic = {p: i for p, (i, _) in infos.items() if not i.static}
        plan_base: str | None = None
        packages: tuple[str, ...] = ()
        if not dynamic:
            notes.append("statically linked: needs no loader and no libraries")
            if options.base is None:
                plan_base = STATIC_BASE
        else:
            plan_base, packages, found = _dynamic(options, base, ctx, infos, dynamic, run)
            notes += found
        return AppPlan(
            kind=AppKind.ELF,
            layers=(AppLayer(LAYER_NAME, tuple(entries)),),
            entrypoint=entrypoint,
            cmd=options.cmd or (),
            env=dict(options.env),
            debian_packages=packages,
            base=plan_base,
            notes=tuple(notes),
        )


def _executable(entries: list[FsEntry], path: str) -> bool:
    return any(e.path == path and e.mode & 0o111 for e in entries)


def _dynamic(
    options: AppOptions,
    base: BaseFacts,
    ctx: PlanContext,
    infos: dict[str, tuple[ElfInfo, Path]],
    dynamic: dict[str, ElfInfo],
    run: str,
) -> tuple[str | None, tuple[str, ...], list[str]]:
    """The base a dynamic app wants (None: the one it is on), the packages to add, notes."""
    name = options.base or "the chosen base"
    files = ImageFiles(base, list(infos))
    first = run if run in dynamic else sorted(dynamic)[0]
    if not has_c_library(base):
        interp = dynamic[first].interp
        if interp is None or not files.has(interp):
            raise refuse_cgo_trap(name, "/" + first, dynamic[first])
    cc_needs = sorted({n for i in dynamic.values() for n in i.needed if n in CC_RUNTIME})
    notes: list[str] = []
    if cc_needs:
        missing_cc = [n for n in cc_needs if not _in_default_dirs(files, n, base.arch)]
        if missing_cc and options.base is None:
            # The driver plans again on cc; the libraries then come with the base.
            notes.append(f"needs {', '.join(missing_cc)} (the C++/GCC runtime): on {CC_BASE}")
            return CC_BASE, (), notes
        if not missing_cc:
            notes.append(f"needs {', '.join(cc_needs)} (the C++/GCC runtime): in the base")
    if base.suite is None:
        raise DistillError(
            f"{name} has no VERSION_CODENAME in its os-release: cannot tell which Debian "
            "suite's packages provide the libraries the program needs",
            hint=f"use a Debian base (e.g. --base {DYNAMIC_BASE})",
        )
    resolution = resolve_libraries(
        [("/" + p, staged) for p, (_, staged) in sorted(infos.items())],
        base,
        cache=ctx.cache,
        access=ctx.access,
        suite=base.suite,
        arch=base.arch,
        offline=options.offline,
    )
    if resolution.notes:
        notes += [f"found in Debian: {n}" for n in resolution.notes]
    else:
        notes.append("every library it needs is in the base")
    return None, resolution.packages, notes


def _in_default_dirs(files: ImageFiles, soname: str, arch: str) -> bool:
    return any(files.has(posixpath.join(d, soname)) for d in default_dirs(arch))
