"""The Node planner: a project with package.json and a lockfile → two layers under ``/app``
(``node_modules`` from ``npm ci``, then the app's own files), an entrypoint that runs the
base's own ``node``, and the npm packages installed (for the lock and the SBOM).

Dependencies come from the lockfile only (see ``package.npm``); native addons are checked
against the image and the Debian packages their libraries need are added (see
``package.addons``). The project's own ``node_modules`` (built for this machine), ``.git``
and ``.npmrc`` (it may hold registry tokens) never go into the image.
"""

from __future__ import annotations

import posixpath
import shlex
import shutil
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from distill.bounded import one_line
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.package import npm
from distill.package.addons import check_addons, find_addons
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
from distill.package.tree import tree_entries

NODE_PATHS = ("nodejs/bin/node", "usr/bin/node")  # the official builds' place, then Debian's
# node_modules is this machine's install; .npmrc may hold registry tokens; distill.lock
# describes the image, not the app (a refreshed lock must not re-create the app layer).
LEFT_OUT = ("node_modules", ".git", ".npmrc", "distill.lock")
DEPENDENCIES_LAYER = "node dependencies"
APPLICATION_LAYER = "application"
_APP = APP_DIR.strip("/")
# Node options that take the next word as their value: `node -r dotenv/config server.js`.
_VALUED = {"-r", "--require", "--import", "--loader", "--experimental-loader", "--env-file"}
_SHELL = set("|&;<>()$`*?[]{}~")


class NodePlanner:
    def plan(self, options: AppOptions, base: BaseFacts, ctx: PlanContext) -> AppPlan:
        root = options.path
        if root.name == "package.json" and root.is_file():
            root = root.parent  # PATH may name the project's package.json
        if not root.is_dir():
            raise DistillError(
                f"{root}: a Node project is a directory with package.json",
                hint="give the project's directory",
            )
        project = npm.read_project(root)
        node = node_binary(base)
        work = npm.staging_dir(ctx.staging)
        try:
            installed = npm.install(project, base.arch, work, offline=options.offline)
            modules = installed.node_modules
            deps: list[FsEntry] = [FsEntry(_APP, EntryKind.DIR, 0o755)]
            if modules.is_dir():
                deps += tree_entries(modules, f"{_APP}/node_modules", ctx.staging)
            langs = npm.lang_packages(project, modules)
            gyp = _gyp_packages(project, modules)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _check_locked(langs, ctx.locked)
        app = tree_entries(root, _APP, ctx.staging, skip=LEFT_OUT)
        everything = [*deps, *app]
        check = check_addons(
            find_addons(everything), gyp, _optional(project), base, everything, ctx
        )
        if options.entrypoint is not None:
            entrypoint, why = list(options.entrypoint), "given"
        else:
            runnable = {e.path for e in everything if e.kind is not EntryKind.DIR}
            entrypoint, why = infer_entrypoint(project.manifest, node, runnable)
        notes = [f"entrypoint: {shlex.join(entrypoint)} ({why})"]
        notes.append(
            f"{len(langs)} npm packages installed by `npm ci --omit=dev` for linux/"
            f"{npm.npm_cpu(base.arch)}/glibc"
        )
        if installed.scripts_skipped:
            notes.append(
                f"install scripts not run (the image is {base.arch}, this machine "
                f"{npm.host_arch() or 'another platform'}): {', '.join(installed.scripts_skipped)}"
            )
        return AppPlan(
            kind=AppKind.NODE,
            layers=(
                AppLayer(DEPENDENCIES_LAYER, tuple(deps)),
                AppLayer(APPLICATION_LAYER, tuple(app)),
            ),
            entrypoint=tuple(entrypoint),
            cmd=tuple(options.cmd or ()),
            env={"NODE_ENV": "production", **options.env},
            debian_packages=check.debian_packages,
            lang_packages=langs,
            notes=(*notes, *check.notes),
        )


def node_binary(base: BaseFacts) -> str:
    """The image path of the base's ``node``: read from the base's files, not its name."""
    for path in NODE_PATHS:
        if path in base.files or path in base.symlinks:
            return f"/{path}"
    raise DistillError(
        "the base image has no node (/nodejs/bin/node or /usr/bin/node)",
        hint="package onto a Node.js base: --base nodejs:nonroot (or nodejs22, nodejs24)",
    )


def _gyp_packages(project: npm.Project, node_modules: Path) -> list[str]:
    return [
        npm.package_name(path, entry)
        for path, entry in project.lock.items()
        if path.startswith("node_modules/")
        and (node_modules.parent / path / "binding.gyp").is_file()
    ]


def _optional(project: npm.Project) -> set[str]:
    return {
        npm.package_name(path, entry)
        for path, entry in project.lock.items()
        if path and (entry.get("optional") or entry.get("devOptional"))
    }


def _check_locked(langs: Sequence[LangPackage], locked: Sequence[LangPackage] | None) -> None:
    """An earlier ``distill lock`` pins the packages: the lockfile must still install them."""
    if locked is None:
        return
    want = {(p.name, p.version, p.digest) for p in locked if p.ecosystem == "npm"}
    have = {(p.name, p.version, p.digest) for p in langs}
    if want == have:
        return
    name, version, _ = sorted(want ^ have)[0]
    where = "the lock" if (name, version) in {(n, v) for n, v, _ in want} else "package-lock.json"
    raise DistillError(
        f"package-lock.json and distill's lock disagree: {one_line(name, 200)}@"
        f"{one_line(version, 50)} is only in {where}",
        hint="refresh the lock with `distill lock`, or restore package-lock.json",
    )


def infer_entrypoint(
    manifest: Mapping[str, Any], node: str, files: Collection[str]
) -> tuple[list[str], str]:
    """[node, ...] from the ``start`` script when it is ``node [OPTIONS] FILE [ARGS]``, else
    from ``main``, else npm's own defaults (``server.js`` for start, ``index.js`` for main)."""
    scripts = manifest.get("scripts")
    start = scripts.get("start") if isinstance(scripts, dict) else None
    main = manifest.get("main")
    main = main if isinstance(main, str) else None
    if isinstance(start, str):
        command = _node_command(start, files, main)
        if command is not None:
            return [node, *command], "package.json scripts.start"
    candidates = [(main, "package.json main")] if main else []
    candidates += [("server.js", "server.js, npm start's default")]
    candidates += [("index.js", "index.js, the default main")]
    for name, why in candidates:
        found = _module_file(name, files)
        if found is not None:
            return [node, f"/{found}"], why
    raise DistillError(
        "cannot tell how to start the app: package.json has no `main` and no `start` script "
        "of the form `node FILE`",
        hint='set "main" in package.json, or give --entrypoint',
    )


def _node_command(script: str, files: Collection[str], main: str | None) -> list[str] | None:
    """The node arguments of a start script ``node [OPTIONS] FILE [ARGS]``, FILE made an
    image path; None for anything else (a shell pipeline, another program)."""
    try:
        words = shlex.split(script)
    except ValueError:
        return None
    if not words or words[0] != "node" or any(set(w) & _SHELL for w in words[1:]):
        return None
    options: list[str] = []
    rest = words[1:]
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        options.append(option)
        if option in _VALUED and rest:
            options.append(rest.pop(0))
    if not rest:
        return None
    target = posixpath.normpath(rest[0])
    # `node .` runs the project's package: its main, else index.js.
    found = (
        _module_file(main or "index.js", files) if target == "." else _module_file(target, files)
    )
    return None if found is None else [*options, f"/{found}", *rest[1:]]


def _module_file(name: str, files: Collection[str]) -> str | None:
    """The image path node would load for ``name`` given in /app (its file, with an added
    extension, or a directory's index.js), None if there is none or it leaves /app."""
    path = posixpath.normpath(posixpath.join(_APP, name))
    if not path.startswith(f"{_APP}/"):
        return None
    for candidate in (path, f"{path}.js", f"{path}.cjs", f"{path}.mjs", f"{path}/index.js"):
        if candidate in files:
            return candidate
    return None
