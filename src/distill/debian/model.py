"""Typed view of Debian binary package stanzas, shared by the parser, resolver and lock."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RelOp(StrEnum):
    LT = "<<"
    LE = "<="
    EQ = "="
    GE = ">="
    GT = ">>"


@dataclass(frozen=True, slots=True)
class Relation:
    """One alternative of a dependency: ``name[:qual] [(op version)]``."""

    name: str
    qualifier: str | None = None  # "any", "native" or an architecture
    op: RelOp | None = None
    version: str | None = None

    def __str__(self) -> str:
        text = self.name + (f":{self.qualifier}" if self.qualifier else "")
        if self.op is not None:
            text += f" ({self.op} {self.version})"
        return text


# A dependency is a tuple of alternatives (``a | b``); a field is a tuple of dependencies.
Dependency = tuple[Relation, ...]


@dataclass(frozen=True, slots=True)
class BinaryPackage:
    name: str
    version: str
    architecture: str
    pocket: str  # e.g. "trixie-security": which index it came from
    filename: str  # pool path relative to the mirror root
    size: int
    sha256: str
    source: str
    source_version: str
    multi_arch: str = "no"
    essential: bool = False
    priority: str = ""
    section: str = ""
    installed_size: int = 0  # KiB, as in the index
    depends: tuple[Dependency, ...] = ()
    pre_depends: tuple[Dependency, ...] = ()
    provides: tuple[Relation, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}:{self.architecture}"
