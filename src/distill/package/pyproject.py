"""A Python project as distill reads it: ``pyproject.toml``'s ``[project]`` table, a pinned
``requirements.txt`` (the language lock), or a directory of wheels."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from distill.bounded import one_line, read_regular_file
from distill.cache import BlobCache
from distill.errors import DistillError
from distill.package.detect import in_project
from distill.package.pymemo import checked, note_checked
from distill.package.pypi import Pinned
from distill.package.wheels import (
    LOCK_HINT,
    Target,
    applies,
    canonicalize_name,
    parse_requirement,
)

if TYPE_CHECKING:
    from packaging.requirements import Requirement

MAX_PROJECT_FILE = 4 << 20
REQUIREMENTS = "requirements.txt"
PYPROJECT = "pyproject.toml"
# requirements.txt options that say where pip looks: passed on to pip as the user wrote them.
_INDEX_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f", "--no-index")
_HASH = re.compile(r"--hash[=\s]+sha256:([0-9a-fA-F]{64})")


@dataclass(frozen=True)
class Project:
    root: Path
    name: str | None = None  # [project] name
    version: str | None = None
    dependencies: tuple[str, ...] = ()  # [project] dependencies, as written
    scripts: Mapping[str, str] = field(default_factory=dict)  # [project.scripts]
    requires_python: str | None = None
    requirements: tuple[Pinned, ...] | None = None  # requirements.txt, when it is a lock
    pip_options: tuple[str, ...] = ()  # index options from requirements.txt
    wheels: tuple[Path, ...] = ()  # a directory of wheels: these are the app

    @property
    def has_pyproject(self) -> bool:
        return (self.root / PYPROJECT).is_file()


def read_project(root: Path, target: Target, cache: BlobCache | None = None) -> Project:
    """The project at ``root``; with ``cache``, dependencies an earlier run parsed are not
    parsed again (package.pymemo)."""
    if root.is_file() and root.suffix == ".whl":
        return Project(root.parent, wheels=(root,))
    if not root.is_dir():
        raise DistillError(f"{root} is not a directory")
    pyproject = in_project(root / PYPROJECT, root)
    reqs = in_project(root / REQUIREMENTS, root)
    wheels = tuple(sorted(in_project(p, root) for p in root.glob("*.whl") if p.is_file()))
    # exists(), not is_file(): a fifo or a directory in their place is refused when read,
    # not passed over (which would package the app without its dependencies).
    if not pyproject.exists() and not reqs.exists():
        if wheels:
            return Project(root, wheels=wheels)
        raise DistillError(
            f"{root} has no pyproject.toml, requirements.txt or wheels",
            hint="a Python app is a directory with one of them (or use --kind)",
        )
    project = _read_pyproject(pyproject, target, cache) if pyproject.exists() else Project(root)
    if reqs.exists():
        pinned, options = read_requirements(reqs, target)
        project = Project(
            root,
            project.name,
            project.version,
            project.dependencies,
            project.scripts,
            project.requires_python,
            pinned,
            options,
        )
    return project


def _read_pyproject(path: Path, target: Target, cache: BlobCache | None) -> Project:
    data = read_regular_file(path, MAX_PROJECT_FILE, str(path))
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DistillError(f"{path}: not valid TOML: {one_line(str(exc), 200)}") from exc
    table = doc.get("project", {})
    if not isinstance(table, dict):
        raise DistillError(f"{path}: [project] is not a table")
    deps = table.get("dependencies", [])
    scripts = table.get("scripts", {})
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise DistillError(f"{path}: [project] dependencies is not a list of strings")
    if not isinstance(scripts, dict) or not all(isinstance(v, str) for v in scripts.values()):
        raise DistillError(f"{path}: [project.scripts] is not a table of strings")
    if deps and not checked(cache, "requirements", deps):
        for dep in deps:
            parse_requirement(dep, f"{path}: dependencies")
        note_checked(cache, "requirements", deps)
    requires = table.get("requires-python")
    if isinstance(requires, str):
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            spec = SpecifierSet(requires)
        except InvalidSpecifier as exc:
            raise DistillError(f"{path}: requires-python {requires!r} is not valid") from exc
        if not spec.contains(target.full_version, prereleases=True):
            raise DistillError(
                f"{path}: requires-python {requires!r} excludes the image's Python "
                f"{target.full_version}",
                hint="choose a base with a matching Python (bookworm has 3.11, trixie 3.13)",
            )
    name, version = table.get("name"), table.get("version")
    return Project(
        path.parent,
        name=name if isinstance(name, str) else None,
        version=version if isinstance(version, str) else None,
        dependencies=tuple(deps),
        scripts=dict(scripts),
        requires_python=requires if isinstance(requires, str) else None,
    )


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines joined at trailing backslashes, comments dropped, with their first line number."""
    out: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            out.append((start, whole))
    if pending.strip():
        out.append((start, pending.strip()))
    return out


def read_requirements(
    path: Path, target: Target
) -> tuple[tuple[Pinned, ...] | None, tuple[str, ...]]:
    """The pins of ``requirements.txt``, or None when nothing in it is pinned (it is a list of
    wishes then, not a lock). A file that pins some and not others is refused."""
    data = read_regular_file(path, MAX_PROJECT_FILE, str(path))
    text = data.decode("utf-8", "replace")
    pinned: list[Pinned] = []
    loose: list[tuple[int, str]] = []
    options: list[str] = []
    for number, line in _logical_lines(text):
        where = f"{path.name}:{number}"
        if line.startswith("-"):
            option = line.split(None, 1)[0].split("=", 1)[0]
            if option in _INDEX_OPTIONS:
                options.append(line)
                continue
            raise DistillError(
                f"{where}: {one_line(line, 200)}: distill reads only pinned requirements, "
                "hashes and index options",
                hint="flatten it into one pinned file (pip-compile, uv pip compile)",
            )
        hashes = tuple(h.lower() for h in _HASH.findall(line))
        spec = _HASH.sub("", line).strip()
        req = parse_requirement(spec, where)
        if not applies(req, target):
            continue  # not for the image's Python
        if req.url:
            raise DistillError(
                f"{where}: {req.name} @ {one_line(req.url, 100)}: direct URLs are not supported",
                hint="pin it by version (name==X.Y) from an index or find-links directory",
            )
        version = _exact(req)
        if version is None:
            loose.append((number, spec))
            continue
        pinned.append(Pinned(req.name, version, hashes))
    if not pinned:
        return None, tuple(options)
    if loose:
        number, spec = loose[0]
        raise DistillError(
            f"{path.name}:{number}: {one_line(spec, 200)} is not pinned with ==; "
            f"{path.name} is only a lock if every requirement is",
            hint=LOCK_HINT,
        )
    return _no_duplicates(pinned, path), tuple(options)


def _exact(req: Requirement) -> str | None:
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def _no_duplicates(pinned: list[Pinned], path: Path) -> tuple[Pinned, ...]:
    seen: dict[str, Pinned] = {}
    for pin in pinned:
        key = canonicalize_name(pin.name)
        if key in seen and seen[key].version != pin.version:
            raise DistillError(
                f"{path.name} pins {pin.name} twice ({seen[key].version} and {pin.version})",
                hint=LOCK_HINT,
            )
        seen.setdefault(key, pin)
    return tuple(seen.values())


def root_requirements(project: Project) -> list[tuple[Requirement, str]]:
    """What the project asks for directly: its pyproject dependencies (when it has a
    pyproject), with where each was written."""
    where = f"{project.root.name}/{PYPROJECT}"
    return [(parse_requirement(dep, where), where) for dep in project.dependencies]
