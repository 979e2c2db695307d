"""An app's lock: the base's Debian lock (``debian.lock``) plus the language packages the
app installed, so that a rebuild next month is the same image.

``debian.lock`` carries the language packages as an opaque list of string mappings (its
``languagePackages`` section); only this module knows they are ``LangPackage`` records.
The lock lives next to the app, ``PATH/distill.lock`` (the directory holding PATH when it
is a file), where ``distill lock PATH`` writes it and ``distill package PATH`` finds it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from distill.debian.lock import LOCK_HINT, Lock, read_lock
from distill.errors import DistillError
from distill.package.detect import project_dir
from distill.package.plan import LangPackage

LOCK_NAME = "distill.lock"
ECOSYSTEMS = ("pypi", "npm", "maven", "deb")
_SIZE = re.compile(r"[0-9]{1,15}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha(?:256|384|512)-[A-Za-z0-9+/]+={0,2}")


def app_lock_path(path: Path) -> Path:
    return project_dir(path) / LOCK_NAME


def lang_records(packages: Sequence[LangPackage]) -> tuple[dict[str, str], ...]:
    """What the lock records of each package, in a stable order."""
    ordered = sorted(packages, key=lambda p: (p.ecosystem, p.name, p.version, p.digest))
    return tuple(
        {
            "ecosystem": p.ecosystem,
            "name": p.name,
            "version": p.version,
            "digest": p.digest,
            **({"source": p.source} if p.source else {}),
            **({"size": str(p.size)} if p.size else {}),
            **({"pocket": p.pocket} if p.pocket else {}),
        }
        for p in ordered
    )


def lang_packages(records: Sequence[Mapping[str, str]], where: Path) -> tuple[LangPackage, ...]:
    """The records of a lock read back, each checked: a lock may have been edited."""
    found = []
    for i, record in enumerate(records):
        missing = [k for k in ("ecosystem", "name", "version", "digest") if not record.get(k)]
        if missing:
            raise _bad(where, f"languagePackages[{i}] has no {', '.join(missing)}")
        if record["ecosystem"] not in ECOSYSTEMS:
            raise _bad(where, f"languagePackages[{i}].ecosystem is not one of {ECOSYSTEMS}")
        if not _DIGEST.fullmatch(record["digest"]):
            raise _bad(where, f"languagePackages[{i}].digest is not a sha256:… or SRI digest")
        size = record.get("size", "0")
        if not _SIZE.fullmatch(size):
            raise _bad(where, f"languagePackages[{i}].size is not a number of bytes")
        if record["ecosystem"] == "deb" and not (
            record["digest"].startswith("sha256:") and int(size) and record.get("source")
            and record.get("pocket")
        ):  # fmt: skip
            raise _bad(where, f"languagePackages[{i}] (a .deb) lacks its sha256, size, pool path "
                       "or pocket")  # fmt: skip
        found.append(
            LangPackage(
                record["ecosystem"],
                record["name"],
                record["version"],
                record["digest"],
                record.get("source", ""),
                int(size),
                record.get("pocket", ""),
            )
        )
    return tuple(found)


def _bad(where: Path, what: str) -> DistillError:
    return DistillError(f"{where}: not a valid distill lock: {what}", hint=LOCK_HINT)


def read_app_lock(path: Path) -> tuple[Lock, tuple[LangPackage, ...]] | None:
    """The lock at ``path`` with its language packages, or None when there is none."""
    if not path.is_file():
        return None
    lock = read_lock(path)
    return lock, lang_packages(lock.language_packages, path)


def with_lang_packages(lock: Lock, packages: Sequence[LangPackage]) -> Lock:
    return replace(lock, language_packages=lang_records(packages))


def same_packages(a: Sequence[LangPackage], b: Sequence[LangPackage]) -> bool:
    return lang_records(a) == lang_records(b)
