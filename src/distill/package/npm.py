"""A Node project's dependencies: its package.json and lockfile read, and ``npm ci`` run for
the image in a staging copy of the project.

npm runs on this machine, never in the image. It installs from the lockfile only (``npm ci``,
which refuses a lockfile out of sync with package.json), without dev dependencies, choosing
optional platform packages for the image's OS, CPU and libc (``--os``, ``--cpu``,
``--libc``). Its registry and credentials come from npm's own configuration (the user's
``~/.npmrc``, the project's ``.npmrc``, ``npm_config_*``), so no registry is named here.

Install scripts run on this machine, for this machine: a package that compiles its addon
in ``install`` builds it for the host's CPU, against the host's Node.js headers and glibc.
They are run when the image's CPU is the host's (npm's default; the addon check that
follows verifies what they built) and skipped (``--ignore-scripts``) for another CPU, where
whatever they built would be for the wrong machine; the packages whose scripts were skipped
are named in the plan's notes.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill import tempfiles
from distill.bounded import one_line, parse_json_object, read_regular_file
from distill.errors import DistillError
from distill.package.detect import in_project
from distill.package.plan import LangPackage

LOCKFILES = ("npm-shrinkwrap.json", "package-lock.json")  # npm's own order of preference
MAX_MANIFEST = 4 << 20
MAX_LOCKFILE = 128 << 20  # real lockfiles of large monorepos are ~10 MB
NPM_TIMEOUT = 1800.0  # seconds for one `npm ci`; the downloads are npm's own
NPM_CPU = {"amd64": "x64", "arm64": "arm64", "i386": "ia32", "armhf": "arm", "s390x": "s390x"}
NPM_CPU |= {"ppc64el": "ppc64", "riscv64": "riscv64"}
_HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "armv7l": "armhf"}
_LOCK_HINT = "run `npm install --package-lock-only` in the project and commit package-lock.json"


@dataclass(frozen=True, slots=True)
class Project:
    root: Path
    manifest: dict[str, Any]  # package.json
    lockfile: Path
    lock: dict[str, Any]  # its "packages" map: install path ("node_modules/x") → entry

    @property
    def name(self) -> str:
        name = self.manifest.get("name")
        return name if isinstance(name, str) and name else self.root.name


@dataclass(frozen=True, slots=True)
class Install:
    node_modules: Path  # in the staging copy; may not exist (no dependencies)
    scripts_skipped: tuple[str, ...]  # packages with install scripts that were not run


def read_project(root: Path) -> Project:
    """The project at ``root``: package.json and the lockfile npm would use, both checked."""
    try:
        data = read_regular_file(
            in_project(root / "package.json", root), MAX_MANIFEST, "package.json"
        )
    except FileNotFoundError:
        raise DistillError(
            f"{root}: no package.json", hint="a Node project has package.json at its top"
        ) from None
    manifest = parse_json_object(data, "package.json", hint="fix package.json")
    for candidate in LOCKFILES:
        try:
            raw = read_regular_file(
                in_project(root / candidate, root), MAX_LOCKFILE, candidate, hint=_LOCK_HINT
            )
        except FileNotFoundError:
            continue
        lock = parse_json_object(raw, candidate, hint=_LOCK_HINT)
        return Project(root, manifest, root / candidate, _packages(lock, candidate))
    raise DistillError(f"{root}: no lockfile (package-lock.json)", hint=_LOCK_HINT)


def _packages(lock: dict[str, Any], where: str) -> dict[str, Any]:
    version = lock.get("lockfileVersion")
    packages = lock.get("packages")
    if not isinstance(version, int) or version < 2 or not isinstance(packages, dict):
        raise DistillError(
            f"{where} is lockfileVersion {one_line(str(version), 20)}: it has no exact install "
            "tree (npm 7 and later write version 2 or 3)",
            hint=_LOCK_HINT,
        )
    for path, entry in packages.items():
        if not isinstance(entry, dict):
            raise DistillError(f"{where}: packages[{one_line(path, 200)!r}] is not an object")
        resolved = entry.get("resolved")
        if path and (entry.get("link") or str(resolved or "").startswith("file:")):
            raise DistillError(
                f"{where}: {one_line(path, 200)} is a local link or file: dependency; "
                "distill installs dependencies from the registry only",
                hint="publish the local package (or pack it with `npm pack`) and depend on that",
            )
    return packages


def package_name(path: str, entry: dict[str, Any]) -> str:
    """The name of the package installed at lockfile path ``path`` (``a/node_modules/@s/b``
    → ``@s/b``); an aliased dependency records its real name in ``name``."""
    name = entry.get("name")
    if isinstance(name, str) and name:
        return name
    return path.rpartition("node_modules/")[2]


def lang_packages(project: Project, node_modules: Path) -> tuple[LangPackage, ...]:
    """Every package ``npm ci`` put on disk, with the lockfile's version and integrity; a
    package installed at several paths is named once."""
    seen: dict[tuple[str, str, str], LangPackage] = {}
    for path, entry in sorted(project.lock.items()):
        if not path.startswith("node_modules/"):
            continue  # "" is the project itself; workspaces were refused
        if not (node_modules.parent / path / "package.json").is_file():
            continue  # a dev or other-platform package npm left out
        name = package_name(path, entry)
        version = str(entry.get("version", ""))
        integrity = str(entry.get("integrity", ""))
        seen.setdefault(
            (name, version, integrity),
            LangPackage("npm", name, version, integrity, _tarball_path(name, version, entry)),
        )
    return tuple(seen.values())


def _tarball_path(name: str, version: str, entry: dict[str, Any]) -> str:
    """The tarball's path on the registry: from ``resolved`` (its host left out: it is the
    machine's registry, not the package's), else npm's own layout for registry packages
    (lockfiles written with ``omit-lockfile-registry-resolved`` leave ``resolved`` out)."""
    resolved = entry.get("resolved")
    if isinstance(resolved, str) and resolved:
        return urllib.parse.urlsplit(resolved).path or resolved
    return f"/{name}/-/{name.rpartition('/')[2]}-{version}.tgz"


def host_arch() -> str | None:
    if platform.system() != "Linux":
        return None
    return _HOST_ARCH.get(platform.machine())


def npm_cpu(arch: str) -> str:
    cpu = NPM_CPU.get(arch)
    if cpu is None:
        raise DistillError(
            f"npm has no CPU name for the Debian architecture {arch}",
            hint="package for amd64 or arm64",
        )
    return cpu


def install(project: Project, arch: str, work: Path, *, offline: bool) -> Install:
    """``npm ci --omit=dev`` for linux/``arch``/glibc in ``work``, a fresh directory holding
    copies of package.json, the lockfile and the project's .npmrc: the user's directory is
    never written to, and its own node_modules (built for this machine) never used."""
    npm = shutil.which("npm")
    if npm is None:
        raise DistillError(
            "npm is not installed on this machine",
            hint="install Node.js with npm 10 or later; it runs here, never in the image",
        )
    for name in ("package.json", project.lockfile.name, ".npmrc"):
        source = project.root / name
        if source.is_file():
            shutil.copyfile(source, work / name)
    same_cpu = host_arch() == arch
    args = [npm, "ci", "--omit=dev", "--os=linux", f"--cpu={npm_cpu(arch)}", "--libc=glibc"]
    args += ["--no-audit", "--no-fund", "--no-update-notifier"]
    if not same_cpu:
        args.append("--ignore-scripts")
    if offline:
        args.append("--offline")
    env = dict(os.environ, npm_config_loglevel="error")
    try:
        done = subprocess.run(
            args,
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
            timeout=NPM_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DistillError(
            f"`npm ci` did not finish in {NPM_TIMEOUT:g} s",
            hint="check npm's registry configuration (`npm config get registry`)",
        ) from None
    except OSError as exc:
        raise DistillError(f"cannot run npm: {exc.strerror}") from None
    if done.returncode != 0:
        raise _npm_failed(project, done.stdout + "\n" + done.stderr, offline=offline)
    skipped = () if same_cpu else _with_scripts(project, work / "node_modules")
    return Install(work / "node_modules", skipped)


def _with_scripts(project: Project, node_modules: Path) -> tuple[str, ...]:
    names = {
        package_name(path, entry)
        for path, entry in project.lock.items()
        if path
        and entry.get("hasInstallScript")
        and (node_modules.parent / path / "package.json").is_file()
    }
    return tuple(sorted(names))


def _npm_failed(project: Project, output: str, *, offline: bool) -> DistillError:
    lines = [
        line.removeprefix("npm error").removeprefix("npm ERR!").strip()
        for line in output.splitlines()
    ]
    lines = [line for line in lines if line]
    if any("in sync" in line for line in lines):
        missing = [line for line in lines if line.startswith(("Missing:", "Invalid:"))]
        detail = f" ({one_line('; '.join(missing[:3]), 300)})" if missing else ""
        return DistillError(
            f"{project.lockfile.name} is out of sync with package.json{detail}",
            hint="run `npm install` in the project and commit the updated lockfile",
        )
    if offline and any("ENOTCACHED" in line for line in lines):
        return DistillError(
            "`npm ci --offline`: a package is not in npm's cache",
            hint="package once without --offline",
        )
    errors = [line for line in lines if not line.startswith(("code ", "A complete log"))]
    reason = one_line(errors[0] if errors else "no output", 300)
    return DistillError(
        f"`npm ci` failed: {reason}",
        hint="run `npm ci --omit=dev` in a copy of the project to see npm's whole message",
    )


def staging_dir(staging: Path) -> Path:
    """A fresh directory for one install, removed by the caller."""
    staging.mkdir(parents=True, exist_ok=True)
    return tempfiles.make_dir(staging, ".npm-ci")
