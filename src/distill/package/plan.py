"""The contract between ``distill package``'s driver and the planner of each kind of app.

The driver (``package.core``) reads the base image into :class:`BaseFacts`; a planner
(``package.python``, ``package.node``, ``package.java``, ``package.elf``) turns the project
into an :class:`AppPlan`: layers of staged entries, the image config it wants, the Debian
packages its native code needs and the language packages it installed (for the lock and
the SBOM). The driver adds the Debian packages to the base, writes each layer through the
layer cache (same entries, same digest) and composes the image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from distill.image.fsentry import FsEntry

if TYPE_CHECKING:
    from distill.cache import BlobCache
    from distill.context import Access

APP_DIR = "/app"  # WORKDIR and where an app's own files go


class AppKind(StrEnum):
    PYTHON = "python"
    NODE = "node"
    JAVA = "java"
    ELF = "elf"


@dataclass(frozen=True, slots=True)
class BaseFacts:
    """What a planner may rely on about the base image: read from the image itself
    (its files, dpkg status and os-release), never assumed from a preset's name."""

    arch: str  # Debian architecture: amd64, arm64
    suite: str | None  # VERSION_CODENAME of its os-release (trixie, bookworm)
    files: frozenset[str]  # every path in the flattened base (relative, no leading "/")
    symlinks: Mapping[str, str]  # path → link target, as in the image
    packages: Mapping[str, str]  # installed Debian package → version
    python: str | None = None  # "3.13": the minor version of /usr/bin/python3
    glibc: str | None = None  # "2.41": from libc6's version; None on static
    node: str | None = None  # "22.12.0": the node the base ships, if any
    java: str | None = None  # "21": the feature version of the base's JRE, if any


@dataclass(frozen=True, slots=True)
class LangPackage:
    """One language dependency exactly as installed: what the lock records, so that a
    rebuild next month installs the same files, and what the SBOM names (its purl)."""

    ecosystem: str  # "pypi" | "npm" | "maven" | "deb" (a .deb a tool ran from: --jlink's JDK)
    name: str
    version: str
    digest: str  # "sha256:<hex>" (wheels, jars, .debs) or an npm integrity ("sha512-<base64>")
    source: str = ""  # where it came from: the wheel's file name, the tarball URL path, the
    # .deb's pool path
    size: int = 0  # "deb": the .deb's size (a pinned download is checked against it)
    pocket: str = ""  # "deb": the archive pocket it is fetched from


@dataclass(frozen=True, slots=True)
class AppLayer:
    """A layer of the app's, named for the user ("python dependencies", "application",
    a Spring Boot layer's name). ``entries`` are relative paths as in ``FsEntry``."""

    name: str
    entries: tuple[FsEntry, ...]


@dataclass(frozen=True, slots=True)
class AppPlan:
    kind: AppKind
    layers: tuple[AppLayer, ...]  # least often changed first; the last is the app's own code
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    debian_packages: tuple[str, ...] = ()  # to add to the base (libraries native code needs)
    lang_packages: tuple[LangPackage, ...] = ()
    base: str | None = None  # a base the planner needs instead of the default (jlink: "cc")
    notes: tuple[str, ...] = ()  # shown to the user: what was inferred, found, added


@dataclass(frozen=True, slots=True)
class AppOptions:
    """What the user said (command line or the spec's ``app:``); None: infer it."""

    path: Path
    kind: AppKind | None = None
    base: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    ports: tuple[int, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    jlink: bool = False
    offline: bool = False


@dataclass(frozen=True, slots=True)
class PlanContext:
    cache: BlobCache
    access: Access
    staging: Path  # a directory for staged files, on the cache's filesystem
    source_date_epoch: int
    locked: tuple[LangPackage, ...] | None = None  # from an earlier lock: install exactly these
    # `distill lock`: resolve the language dependencies afresh (a planner that can, e.g.
    # Python's for a pyproject without pins) instead of requiring a lock; ``locked`` is None.
    relock: bool = False


class Planner(Protocol):
    def plan(self, options: AppOptions, base: BaseFacts, ctx: PlanContext) -> AppPlan: ...
