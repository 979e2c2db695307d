"""The Python planner: a project (pyproject.toml, a pinned requirements.txt, or a directory of
wheels) as two layers on a base with Python.

- *python dependencies*: the lock's wheels, each chosen for the image's interpreter (version,
  glibc and architecture read from the base), downloaded verified into the cache and
  installed as pip would into Debian's ``/usr/local/lib/python3.X/dist-packages`` (on
  ``sys.path``, so ``.pth`` files and namespace packages work), console scripts in
  ``/usr/local/bin`` starting ``#!/usr/bin/python3``. Nothing is built and nothing is
  byte-compiled (see :func:`distill.package.wheels.install_wheel`).
- *application*: the project's own files, copied to ``/app`` as they are (not built into a
  wheel: building needs the project's build backend, and the copy is what changes most
  often, so it stays small and last), a ``.pth`` that puts ``/app`` (and ``/app/src``) on
  ``sys.path``, and the project's ``[project.scripts]`` as console scripts. For a directory
  of wheels, the wheels no other wheel requires are the application.

The lock is the project's requirements.txt when every requirement in it is pinned (``==``,
hashes checked when given), or the packages an earlier ``distill lock`` recorded
(``PlanContext.locked``); a project with neither is refused rather than resolved anew, so
that an image is rebuilt from the same wheels next month.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from distill.bounded import one_line
from distill.cache import BlobCache, sha256_file
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
from distill.package.pymemo import checked, launcher, note_checked, wheel_info
from distill.package.pypi import (
    Pinned,
    WheelRef,
    fetch_wheels,
    pip_lines,
    resolve,
    resolve_pinned,
)
from distill.package.pyproject import PYPROJECT, REQUIREMENTS, Project, read_project
from distill.package.wheels import (
    INTERPRETER,
    LOCK_HINT,
    Scheme,
    Target,
    Unmet,
    WheelInfo,
    applies,
    canonicalize_name,
    check_compatible,
    check_complete,
    parse_requirement,
    read_wheel,
    target_for,
    walk_requirements,
)

if TYPE_CHECKING:
    from packaging.requirements import Requirement
    from packaging.utils import NormalizedName
from distill.package.wheelstage import installed_entries, union

DEPENDENCIES_LAYER = "python dependencies"
APPLICATION_LAYER = "application"
APP_PTH = "distill-app.pth"
# What a project directory holds that is not the app: VCS data, virtualenvs, caches, builds.
SKIP_NAMES = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".idea",
        ".vscode",
        "node_modules",
        "dist",
        "build",
        ".DS_Store",
        "distill.lock",  # the lock is about the image, not a file of the app's
    }
)
SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")
# Run time: no bytecode written into the image's read-only tree; logs reach the runtime now.
PYTHON_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}


class PythonPlanner:
    """:class:`distill.package.plan.Planner` for Python apps, and ``lock`` for
    ``distill lock PATH`` (same arguments; returns what :attr:`PlanContext.locked` takes)."""

    def plan(self, options: AppOptions, base: BaseFacts, ctx: PlanContext) -> AppPlan:
        target = target_for(base)
        project = read_project(options.path, target, ctx.cache)
        notes = [f"python: {target.describe()}; binary wheels for {target.wanted} or older"]
        wheels, label = _chosen_wheels(project, target, ctx, options.offline, notes)
        infos = {canonicalize_name(info.name): info for info, _, _ in wheels}
        if not _known_complete(project, infos, target, ctx):
            check_complete(_roots(project, infos), infos, target, label)
            _note_complete(project, infos, target, ctx)
        app_keys = _app_wheels(project, infos, target)
        scheme = Scheme(target.python)
        deps: dict[str, list[FsEntry]] = {}
        own: dict[str, list[FsEntry]] = {}
        for info, path, (sha, filename) in sorted(
            wheels, key=lambda w: canonicalize_name(w[0].name)
        ):
            layer = own if canonicalize_name(info.name) in app_keys else deps
            layer[info.name] = installed_entries(
                path, filename, sha, info, scheme, ctx.cache, ctx.staging
            )
        if project.scripts:
            own[f"{PYPROJECT} [project.scripts]"] = _project_scripts(project, scheme, ctx.cache)
        if not project.wheels:
            own[APP_PTH] = _app_pth(project, scheme)
            own[f"{project.root.name}/"] = project_entries(project.root)
        union({**deps, **own})  # nothing installed twice, across the two layers either
        layers = [
            AppLayer(DEPENDENCIES_LAYER, tuple(union(deps))),
            AppLayer(APPLICATION_LAYER, tuple(union(own))),
        ]
        entrypoint, how = _entrypoint(options, project, [infos[k] for k in sorted(app_keys)])
        notes.append(f"entrypoint: {' '.join(entrypoint)} ({how})")
        compiled = sorted(i.name for i, _, _ in wheels if i.compiled)
        if wheels:
            notes.append(
                f"installed {len(wheels)} wheels into /{scheme.site}"
                + (f" ({len(compiled)} compiled: {', '.join(compiled)})" if compiled else "")
                + "; not byte-compiled"
            )
        return AppPlan(
            kind=AppKind.PYTHON,
            layers=tuple(layers),
            entrypoint=entrypoint,
            cmd=options.cmd or (),
            env={**PYTHON_ENV, **options.env},
            lang_packages=_lang_packages(wheels),
            notes=tuple(notes),
        )

    def lock(
        self, options: AppOptions, base: BaseFacts, ctx: PlanContext
    ) -> tuple[LangPackage, ...]:
        """What ``plan`` with ``ctx.relock`` would install, without staging anything."""
        target = target_for(base)
        project = read_project(options.path, target)
        wheels = _fresh_wheels(project, target, ctx)
        infos = {canonicalize_name(i.name): i for i, _, _ in wheels}
        check_complete(_roots(project, infos), infos, target, "the resolved set")
        return _lang_packages(wheels)


def _lang_packages(wheels: Sequence[Wheel]) -> tuple[LangPackage, ...]:
    return tuple(
        sorted(
            (_lang_package(i, s, f) for i, _, (s, f) in wheels),
            key=lambda p: canonicalize_name(p.name),
        )
    )


def _fresh_wheels(project: Project, target: Target, ctx: PlanContext) -> list[Wheel]:
    """The project's dependencies resolved afresh for the image's interpreter (``distill
    lock``): the pins of its requirements.txt if it has them, else its pyproject
    dependencies through pip's resolver. Every wheel is fetched and checked."""
    if project.wheels:
        return [_local_wheel(p, target) for p in project.wheels]
    if project.requirements is not None:
        refs = resolve(
            pip_lines(project.requirements),
            target,
            no_deps=True,
            pip_options=project.pip_options,
            scratch=ctx.cache.tmp_dir,
        )
        _check_refs(project.requirements, refs)
        return _fetched(refs, ctx, offline=False)
    if project.dependencies:
        return _resolve_for_image(project, target, ctx)
    return []


RESOLVE_ROUNDS = 4


def _resolve_for_image(project: Project, target: Target, ctx: PlanContext) -> list[Wheel]:
    """pip's resolution of the pyproject dependencies, corrected for the image: pip picks
    files for the image's tags but evaluates dependency markers for the Python it runs on,
    so what only the host needs is dropped, and what only the image needs is asked for by
    name in another round."""
    added: list[str] = []
    wheels: list[Wheel] = []
    reached: set[NormalizedName] = set()
    for _ in range(RESOLVE_ROUNDS):
        refs = resolve(
            [*project.dependencies, *added],
            target,
            no_deps=False,
            pip_options=project.pip_options,
            scratch=ctx.cache.tmp_dir,
        )
        wheels = _fetched(refs, ctx, offline=False)
        infos = {canonicalize_name(i.name): i for i, _, _ in wheels}
        reached, unmet = walk_requirements(_roots(project, infos), infos, target)
        missing = [_without_marker(u.requirement) for u in unmet if u.have is None]
        if not missing:
            break
        added += missing
    return [w for w in wheels if canonicalize_name(w[0].name) in reached]


def _without_marker(req: Requirement) -> str:
    copy = parse_requirement(str(req), "a requirement")
    copy.marker = None
    return str(copy)


Wheel = tuple[WheelInfo, Path, tuple[str, str]]  # what it declares, the file, (sha256, name)


def _lang_package(info: WheelInfo, sha: str, filename: str) -> LangPackage:
    return LangPackage("pypi", info.name, info.version, f"sha256:{sha}", filename)


def _chosen_wheels(
    project: Project, target: Target, ctx: PlanContext, offline: bool, notes: list[str]
) -> tuple[list[Wheel], str]:
    """The wheels to install and what they are called in messages. distill's lock wins
    while it fits the project; a stale one (requirements.txt pins something else, or the
    pyproject needs what it lacks) is resolved afresh as the driver does for .debs, and
    said, unless --offline."""
    if project.wheels:
        notes.append(f"wheels: {len(project.wheels)} files in {project.root.name}/")
        return [_local_wheel(p, target) for p in project.wheels], "the wheels given"
    if not ctx.relock and ctx.locked is not None:
        pins = [
            Pinned(p.name, p.version, (p.digest.removeprefix("sha256:"),))
            for p in ctx.locked
            if p.ecosystem == "pypi"
        ]
        why = _stale(project, pins)
        if why is None:
            wheels = _wheels_of(pins, project, target, ctx, offline)
            infos = {canonicalize_name(i.name): i for i, _, _ in wheels}
            unmet = (
                []
                if _known_complete(project, infos, target, ctx)
                else _unmet(project, infos, target)
            )
            if not unmet:
                _note_complete(project, infos, target, ctx)
                notes.append(f"lock: distill's lock ({len(pins)} packages)")
                return wheels, "distill's lock"
            why = f"{unmet[0].who} requires {unmet[0].requirement}"
        if offline:
            raise DistillError(
                f"distill's lock is stale: {why}", hint="refresh it: `distill lock PATH`"
            )
        notes.append(f"distill's lock is stale ({why}): resolved afresh")
        ctx = replace(ctx, relock=True)
    if ctx.relock:
        wheels = _fresh_wheels(project, target, ctx)
        notes.append(f"lock: resolved afresh ({len(wheels)} packages)")
        return wheels, "the resolved set"
    pins = _pins(project)
    notes.append(f"lock: {REQUIREMENTS} ({len(pins)} packages)")
    return _wheels_of(pins, project, target, ctx, offline), REQUIREMENTS


def _wheels_of(
    pins: Sequence[Pinned], project: Project, target: Target, ctx: PlanContext, offline: bool
) -> list[Wheel]:
    refs = resolve_pinned(pins, target, ctx.cache, pip_options=project.pip_options, offline=offline)
    _check_refs(pins, refs)
    return _fetched(refs, ctx, offline=offline)


# Lock files of other tools: distill reads none of them, but says how to export one.
FOREIGN_LOCKS = {
    "uv.lock": "uv export --format requirements-txt -o requirements.txt",
    "poetry.lock": "poetry export -f requirements.txt -o requirements.txt",
    "pdm.lock": "pdm export -o requirements.txt",
    "Pipfile.lock": "pipenv requirements --hash > requirements.txt",
}


def _pins(project: Project) -> list[Pinned]:
    if project.requirements is not None:
        return list(project.requirements)
    foreign = [name for name in FOREIGN_LOCKS if (project.root / name).is_file()]
    if project.dependencies or foreign:
        why = (
            f"only {foreign[0]}, which distill does not read (it reads a pinned {REQUIREMENTS})"
            if foreign
            else f"{PYPROJECT} lists dependencies but nothing pins them"
        )
        export = f"export it: {FOREIGN_LOCKS[foreign[0]]}; or " if foreign else ""
        raise DistillError(
            f"{project.root.name}: no lockfile: {why}",
            hint=f"{export}write a pinned {REQUIREMENTS} with hashes (pip-compile "
            "--generate-hashes, uv pip compile --generate-hashes) or run `distill lock "
            f"{project.root}`",
        )
    return []


def _stale(project: Project, pins: Sequence[Pinned]) -> str | None:
    # distill's lock was made from requirements.txt when there is one: a pin changed since
    # means the lock is stale, not that the user wants the old version.
    locked = {canonicalize_name(p.name): p.version for p in pins}
    for pin in project.requirements or ():
        have = locked.get(canonicalize_name(pin.name))
        if have != pin.version:
            return f"{REQUIREMENTS} pins {pin.name}=={pin.version}, the lock has {have or 'none'}"
    return None


def _check_refs(pins: Sequence[Pinned], refs: Sequence[WheelRef]) -> None:
    by_name = {canonicalize_name(r.name): r for r in refs}
    for pin in pins:
        ref = by_name.get(canonicalize_name(pin.name))
        if ref is None:
            raise DistillError(f"pip found no wheel of {pin.name}=={pin.version}", hint=LOCK_HINT)
        if pin.hashes and ref.sha256 not in pin.hashes:
            raise DistillError(
                f"{ref.filename} has sha256 {ref.sha256}, none of the hashes the lock gives "
                f"for {pin.name}=={pin.version}",
                hint="the index serves another file than the one locked; re-lock if intended",
            )


def _fetched(refs: Sequence[WheelRef], ctx: PlanContext, *, offline: bool) -> list[Wheel]:
    files = fetch_wheels(refs, ctx.cache, offline=offline)
    return [
        (
            wheel_info(files[r.sha256], r.sha256, r.filename, ctx.cache),
            files[r.sha256],
            (r.sha256, r.filename),
        )
        for r in refs
    ]


def _local_wheel(path: Path, target: Target) -> Wheel:
    check_compatible(path.name, target)
    return read_wheel(path, path.name), path, (sha256_file(path), path.name)


def _unmet(
    project: Project, infos: Mapping[NormalizedName, WheelInfo], target: Target
) -> list[Unmet]:
    return walk_requirements(_roots(project, infos), infos, target)[1]


def _complete_inputs(
    project: Project, infos: Mapping[NormalizedName, WheelInfo], target: Target
) -> object:
    # Everything _roots and walk_requirements read: a hit means the same walk found nothing unmet.
    wheels = sorted([i.name, i.version, list(i.requires)] for i in infos.values())
    return [
        list(project.dependencies),
        wheels,
        [target.python, target.full_version, target.machine, list(target.glibc)],
    ]


def _known_complete(
    project: Project, infos: Mapping[NormalizedName, WheelInfo], target: Target, ctx: PlanContext
) -> bool:
    return not project.wheels and checked(
        ctx.cache, "complete", _complete_inputs(project, infos, target)
    )


def _note_complete(
    project: Project, infos: Mapping[NormalizedName, WheelInfo], target: Target, ctx: PlanContext
) -> None:
    if not project.wheels:
        note_checked(ctx.cache, "complete", _complete_inputs(project, infos, target))


def _roots(
    project: Project, infos: Mapping[NormalizedName, WheelInfo]
) -> list[tuple[Requirement, str]]:
    """What must be installed: the pyproject's dependencies, every pin of a requirements
    file (as itself), every wheel of a wheels directory."""
    where = f"{project.root.name}/{PYPROJECT}"
    roots = [(parse_requirement(d, where), where) for d in project.dependencies]
    if not project.dependencies:
        for info in infos.values():
            roots.append(
                (parse_requirement(f"{info.name}=={info.version}", "the lock"), "the lock")
            )
    return roots


def _app_wheels(
    project: Project, infos: Mapping[NormalizedName, WheelInfo], target: Target
) -> set[NormalizedName]:
    """For a directory of wheels: those no other wheel requires (the app itself)."""
    if not project.wheels:
        return set()
    required: set[NormalizedName] = set()
    for info in infos.values():
        for text in info.requires:
            req = parse_requirement(text, info.name)
            # Needed under some extra still makes it a dependency, not the app.
            if applies(req, target) or (req.marker is not None and "extra" in str(req.marker)):
                required.add(canonicalize_name(req.name))
    return {k for k in infos if k not in required}


def _entrypoint(
    options: AppOptions, project: Project, app_wheels: Sequence[WheelInfo]
) -> tuple[tuple[str, ...], str]:
    if options.entrypoint:
        return options.entrypoint, "as given"
    bin_dir = "/usr/local/bin"
    if project.scripts:
        names = list(project.scripts)
        preferred = project.name and canonicalize_name(project.name)
        name = next((n for n in names if canonicalize_name(n) == preferred), names[0])
        return (f"{bin_dir}/{name}",), (
            f"console script {name} = {project.scripts[name]} from {PYPROJECT}"
        )
    scripts = sorted({s for w in app_wheels for s in w.scripts})
    if len(scripts) == 1:
        return (f"{bin_dir}/{scripts[0]}",), "the console script of the wheels"
    module = _main_module(project)
    if module is not None:
        return (INTERPRETER, "-m", module), f"{module}/__main__.py"
    for script in ("main.py", "app.py", "__main__.py"):
        if (project.root / script).is_file():
            return (INTERPRETER, f"{APP_DIR}/{script}"), script
    found = f" (console scripts: {', '.join(scripts)})" if scripts else ""
    raise DistillError(
        f"cannot tell how to start the Python app in {project.root}{found}",
        hint="give --entrypoint, or add [project.scripts] to pyproject.toml, a package with "
        "__main__.py, or main.py",
    )


def _main_module(project: Project) -> str | None:
    """A package with ``__main__.py``: the project's own name first, else the only one."""
    candidates: list[str] = []
    for top in (project.root, project.root / "src"):
        if not top.is_dir():
            continue
        for child in sorted(top.iterdir()):
            if child.name not in SKIP_NAMES and (child / "__main__.py").is_file():
                candidates.append(child.name)
    if project.name:
        own = project.name.replace("-", "_").replace(".", "_").lower()
        if own in candidates:
            return own
    return candidates[0] if len(candidates) == 1 else None


def _project_scripts(project: Project, scheme: Scheme, cache: BlobCache) -> list[FsEntry]:
    entries = [FsEntry(p, EntryKind.DIR, 0o755) for p in _parent_dirs(f"{scheme.scripts}/x")]
    for name, spec in project.scripts.items():
        module, _, attr = spec.partition(":")
        if not module.strip() or "/" in name or name in ("", ".", ".."):
            raise DistillError(f"{PYPROJECT}: [project.scripts] {one_line(name, 100)} is invalid")
        attr = attr.split("[", 1)[0].strip()  # extras in an entry point are ignored
        data = launcher(name, module.strip(), attr, cache)
        path = f"{scheme.scripts}/{name}"
        entries.append(FsEntry(path, EntryKind.FILE, 0o755, size=len(data), content=data))
    return entries


def _app_pth(project: Project, scheme: Scheme) -> list[FsEntry]:
    # /app on sys.path from anywhere: the project's console scripts (run from /usr/local/bin)
    # and `python3 -m` import it like an installed package, without building it.
    paths = [APP_DIR] + ([f"{APP_DIR}/src"] if (project.root / "src").is_dir() else [])
    body = "".join(f"{p}\n" for p in paths).encode()
    path = f"{scheme.site}/{APP_PTH}"
    parents = [FsEntry(p, EntryKind.DIR, 0o755) for p in _parent_dirs(path)]
    return [*parents, FsEntry(path, EntryKind.FILE, 0o644, size=len(body), content=body)]


def _parent_dirs(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def project_entries(root: Path) -> list[FsEntry]:
    """The project's files under /app: regular files and directories as they are (root-owned,
    so the nonroot user cannot change them), symlinks as links (their targets never read);
    VCS data, virtualenvs, caches and build outputs left out."""
    prefix = APP_DIR.strip("/")
    entries = [FsEntry(prefix, EntryKind.DIR, 0o755)]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
        rel_dir = os.path.relpath(dirpath, root)
        base = prefix if rel_dir == "." else f"{prefix}/{rel_dir}"
        for name in dirnames:
            full = Path(dirpath, name)
            if full.is_symlink():
                entries.append(
                    FsEntry(f"{base}/{name}", EntryKind.SYMLINK, 0o777, linkname=os.readlink(full))
                )
            else:
                entries.append(FsEntry(f"{base}/{name}", EntryKind.DIR, 0o755))
        for name in sorted(filenames):
            if _skipped(name):
                continue
            full = Path(dirpath, name)
            st = full.lstat()
            rel = f"{base}/{name}"
            if stat.S_ISLNK(st.st_mode):
                entries.append(FsEntry(rel, EntryKind.SYMLINK, 0o777, linkname=os.readlink(full)))
            elif stat.S_ISREG(st.st_mode):
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                entries.append(FsEntry(rel, EntryKind.FILE, mode, size=st.st_size, content=full))
    return entries


def _skipped(name: str) -> bool:
    return name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES)
