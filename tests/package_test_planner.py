"""A minimal planner for a static ELF program, for testing the driver of ``distill package``
before (and independently of) the real ELF planner: the binary at ``/app/<name>``, run
as the entrypoint, with a second layer of the other files next to it."""

from __future__ import annotations

from pathlib import Path

from distill.image.fsentry import EntryKind, FsEntry
from distill.package.plan import (
    AppKind,
    AppLayer,
    AppOptions,
    AppPlan,
    BaseFacts,
    LangPackage,
    PlanContext,
)


def _file(path: str, source: Path, mode: int) -> FsEntry:
    return FsEntry(path, EntryKind.FILE, mode, size=source.stat().st_size, content=source)


class StaticElfPlanner:
    """PATH: a directory with ``bin/<program>`` (static ELF) and data files, or one binary."""

    def plan(self, options: AppOptions, base: BaseFacts, ctx: PlanContext) -> AppPlan:
        root = options.path
        if root.is_file():
            name = root.name
            return AppPlan(
                AppKind.ELF,
                (AppLayer("application", (_file(f"app/{name}", root, 0o755),)),),
                entrypoint=(f"/app/{name}",),
                notes=(f"entrypoint: the binary {name}",),
            )
        program = sorted((root / "bin").iterdir())[0]
        binary = AppLayer("program", (_file(f"app/bin/{program.name}", program, 0o755),))
        data = tuple(
            _file(f"app/{p.relative_to(root).as_posix()}", p, 0o644)
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.parent != root / "bin"
        )
        return AppPlan(
            AppKind.ELF,
            (binary, AppLayer("application", data)),
            entrypoint=(f"/app/bin/{program.name}",),
            env={"APP_MODE": "test"},
            lang_packages=ctx.locked
            or (LangPackage("pypi", "demo", "1.0", "sha256:" + "0" * 64, "demo-1.0.whl"),),
            notes=(f"base python: {base.python}, glibc: {base.glibc}",),
        )
