"""Which kind of app a path holds, and the base each kind goes on by default.

The marker files are the ones each ecosystem's own tools look for first: a
``pyproject.toml``/``requirements.txt`` or wheels for Python, ``package.json`` for Node.js,
jars for Java, and the ELF magic for a compiled program. ``--kind`` overrides the guess.
"""

from __future__ import annotations

import os
from pathlib import Path

from distill.errors import DistillError
from distill.package.plan import AppKind

ELF_MAGIC = b"\x7fELF"
# One PT_INTERP program header makes a binary dynamic; checked by a planner. Here only the
# magic matters: which kind of planner reads the file.
PYTHON_MARKERS = ("pyproject.toml", "requirements.txt", "setup.py")
NODE_MARKERS = ("package.json",)
MAX_FILES_LOOKED_AT = 10_000  # in a directory, at most

DEFAULT_BASES = {
    AppKind.PYTHON: "python3:nonroot",
    AppKind.NODE: "nodejs:nonroot",
    AppKind.JAVA: "java21:nonroot",
}
STATIC_BASE = "static:nonroot"  # an ELF binary's base when it needs no loader
DYNAMIC_BASE = "base:nonroot"  # ... and when it does (glibc, libssl, CA certificates)

KINDS_HINT = "pass --kind " + "|".join(AppKind) + ", or point PATH at a project directory"


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == ELF_MAGIC
    except OSError:
        return False


def _has_jars(folder: Path) -> bool:
    for count, child in enumerate(folder.iterdir()):
        if count >= MAX_FILES_LOOKED_AT:
            break
        if child.suffix == ".jar" and child.is_file():
            return True
    return False


def detect_kind(path: Path, kind: AppKind | str | None = None) -> AppKind:
    """The kind of app at ``path`` (``kind``, when given, wins once it names a kind)."""
    if kind is not None:
        try:
            return AppKind(kind)
        except ValueError:
            raise DistillError(
                f"unknown kind of app {kind!r}", hint=f"one of: {', '.join(AppKind)}"
            ) from None
    if not path.exists():
        raise DistillError(
            f"{path} does not exist", hint="give the app's project directory, jar, wheel or binary"
        )
    if path.is_dir():
        if any((path / name).is_file() for name in PYTHON_MARKERS) or any(path.glob("*.whl")):
            return AppKind.PYTHON
        if any((path / name).is_file() for name in NODE_MARKERS):
            return AppKind.NODE
        if _has_jars(path):
            return AppKind.JAVA
        if _elf_files(path):
            return AppKind.ELF
        raise DistillError(
            f"{path} holds no pyproject.toml, requirements.txt, wheel, package.json, jar or "
            "ELF program: "
            "cannot tell what kind of app it is",
            hint=KINDS_HINT,
        )
    if not path.is_file():  # a FIFO or a device: nothing to package, and opening may block
        raise DistillError(
            f"{path} is not a regular file or a directory",
            hint="give the app's project directory, jar, wheel or binary",
        )
    if path.suffix == ".whl" or path.name in PYTHON_MARKERS:
        return AppKind.PYTHON
    if path.name in NODE_MARKERS:
        return AppKind.NODE
    if path.suffix == ".jar":
        return AppKind.JAVA
    if _is_elf(path):
        return AppKind.ELF
    raise DistillError(
        f"{path} is not a wheel, jar, package.json or ELF binary: cannot tell what kind of "
        "app it is",
        hint=KINDS_HINT,
    )


PROJECT_HINT = (
    "distill reads an app's files only from its project directory: copy the file in "
    "instead of linking to it"
)


def in_project(path: Path, root: Path) -> Path:
    """``path``, a file a planner reads from the project at ``root``, with its symlinks
    resolved: one leading out of the project (to /etc/shadow, to ../..) is refused before it
    is read, so its bytes reach neither the image nor an error message."""
    from distill.build.spec_values import confine

    return confine(path, root.resolve(), str(path.relative_to(root)), hint=PROJECT_HINT)


def project_dir(path: Path) -> Path:
    """Where the app's lock lives: the project directory, or the one holding the file."""
    return path if path.is_dir() else path.parent


def default_base(kind: AppKind, path: Path) -> str:
    """The base ``kind`` goes on when the user names none. An ELF program goes on ``static``
    only when it has no loader to find (no ``PT_INTERP``); the ELF planner says so."""
    if kind is not AppKind.ELF:
        return DEFAULT_BASES[kind]
    programs = _elf_files(path)
    return STATIC_BASE if programs and all(map(is_static_elf, programs)) else DYNAMIC_BASE


def _elf_files(path: Path) -> list[Path]:
    """The ELF files of an app: ``path`` itself, or those in its directory tree (the first
    ``MAX_FILES_LOOKED_AT`` files looked at)."""
    if not path.is_dir():
        return [path] if path.is_file() and _is_elf(path) else []
    found: list[Path] = []
    seen = 0
    for folder, dirs, names in os.walk(path):  # symlinked directories are not followed
        dirs.sort()
        for name in sorted(names):
            seen += 1
            if seen > MAX_FILES_LOOKED_AT:
                return found
            child = Path(folder, name)
            if child.is_file() and not child.is_symlink() and _is_elf(child):
                found.append(child)
    return found


def is_static_elf(path: Path) -> bool:
    """Whether the ELF file ``path`` has no ``PT_INTERP`` program header (needs no loader)."""
    import struct

    if not path.is_file():
        return False
    with path.open("rb") as fh:
        head = fh.read(64)
        if len(head) < 52 or head[:4] != ELF_MAGIC or head[4] not in (1, 2):
            return False
        wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
        if wide:
            phoff, phentsize, phnum = (
                struct.unpack_from(order + "Q", head, 32)[0],
                *struct.unpack_from(order + "HH", head, 54),
            )
        else:
            phoff, phentsize, phnum = (
                struct.unpack_from(order + "I", head, 28)[0],
                *struct.unpack_from(order + "HH", head, 42),
            )
        if not 0 < phnum <= 4096 or phentsize < (56 if wide else 32):
            return True
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    for i in range(min(phnum, len(table) // phentsize)):
        (p_type,) = struct.unpack_from(order + "I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True
