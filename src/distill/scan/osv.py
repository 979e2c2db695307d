"""OSV advisories (one JSON file, a directory of them, or a zip such as an ecosystem's
``all.zip``) for the language packages distill finds in images: PyPI, npm and Maven.

Each advisory's ``affected`` entries become rows keyed by (ecosystem, normalized name),
keeping the ranges and explicit ``versions`` as JSON; :func:`affects` evaluates them with
the ecosystem's own version order (:mod:`distill.scan.versions`) at match time.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.bounded import parse_json, read_capped, read_regular_file
from distill.errors import DistillError
from distill.scan import tracker
from distill.scan.versions import KEYS

# OSV's ecosystem names → the ``ImagePackage.ecosystem`` they match.
ECOSYSTEMS = {"PyPI": "pypi", "npm": "npm", "Maven": "maven"}
MAX_RECORD = 16 << 20  # one advisory; real ones are a few KB
MAX_FILES = 2_000_000
MAX_FILE = 512 << 20  # one JSON file holding a list of advisories
# OSV's top-level fields: a JSON object starting with one of these is OSV, not the tracker.
OSV_FIELDS = frozenset(
    [
        "id",
        "modified",
        "published",
        "withdrawn",
        "schema_version",
        "aliases",
        "upstream",
        "related",
        "summary",
        "details",
        "severity",
        "affected",
        "references",
        "credits",
        "database_specific",
    ]
)
_HINT = "this is not an OSV advisory, or it is damaged; get it again from its source"
_SEVERITY_WORDS = {"LOW": "LOW", "MODERATE": "MEDIUM", "MEDIUM": "MEDIUM", "HIGH": "HIGH"}
_SEVERITY_WORDS["CRITICAL"] = "CRITICAL"


@dataclass(frozen=True, slots=True)
class OsvRow:
    """One advisory × one affected package."""

    ecosystem: str  # pypi | npm | maven
    name: str  # normalized (see package_key)
    vuln_id: str
    aliases: str  # comma-separated
    summary: str
    severity: str
    affected: str  # JSON: {"ranges": [...], "versions": [...]}


def package_key(ecosystem: str, name: str) -> str:
    """The name as the ecosystem compares it: PEP 503 for PyPI; npm and Maven exactly."""
    if ecosystem == "pypi":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name


def iter_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, record)`` for every advisory in a file, a directory or a zip."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        if len(files) > MAX_FILES:
            raise DistillError(f"{path} holds more than {MAX_FILES} JSON files", hint=_HINT)
        for file in files:
            yield from _records(read_regular_file(file, MAX_RECORD, str(file)), str(file))
    elif zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if info.is_dir() or not info.filename.endswith(".json"):
                        continue
                    where = f"{path}:{info.filename}"
                    with archive.open(info) as fh:
                        yield from _records(read_capped(fh, MAX_RECORD, where), where)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DistillError(f"{path} is not a readable zip: {exc}", hint=_HINT) from None
    else:
        yield from _file_records(path)


def _file_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """One advisory, or a list of them read one at a time: decoded whole, JSON costs ~15
    times its size (a 75 MB advisory of a million ranges took 1 GB)."""
    where = str(path)
    if not path.is_file():  # a fifo would block the open below
        raise DistillError(f"{where} is not a regular file", hint=_HINT)
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip()
        fh.seek(0)
        if not head.startswith(b"["):
            yield from _records(read_regular_file(path, MAX_RECORD, where), where)
            return
        if os.fstat(fh.fileno()).st_size > MAX_FILE:
            raise DistillError(f"{where} is larger than {MAX_FILE >> 20} MiB", hint=_HINT)
        for record in tracker.iter_array(fh, where, max_member=MAX_RECORD, hint=_HINT):
            yield from _records_of([record], where)


def _records(data: bytes, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    value = parse_json(data, where, hint=_HINT)
    yield from _records_of(value if isinstance(value, list) else [value], where)


def _records_of(values: list[Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for record in values:
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise DistillError(f"{where} is not an OSV advisory (no id)", hint=_HINT)
        yield where, record


def rows(record: dict[str, Any], where: str) -> Iterator[OsvRow]:
    """The rows of one advisory for the ecosystems distill scans (others are skipped)."""
    vuln_id = record["id"]
    if record.get("withdrawn"):
        return
    aliases = record.get("aliases") or []
    summary = record.get("summary") or record.get("details") or ""
    affected = record.get("affected") or []
    if not isinstance(aliases, list) or not isinstance(summary, str):
        raise DistillError(f"{where}: {vuln_id}: aliases or summary malformed", hint=_HINT)
    if not isinstance(affected, list):
        raise DistillError(f"{where}: {vuln_id}: affected is not a list", hint=_HINT)
    for entry in affected:
        package = entry.get("package") if isinstance(entry, dict) else None
        if not isinstance(package, dict):
            raise DistillError(f"{where}: {vuln_id}: an affected entry has no package", hint=_HINT)
        ecosystem = ECOSYSTEMS.get(str(package.get("ecosystem", "")).partition(":")[0])
        name = package.get("name")
        if ecosystem is None:
            continue
        if not isinstance(name, str) or not name:
            raise DistillError(f"{where}: {vuln_id}: a package has no name", hint=_HINT)
        ranges = entry.get("ranges") or []
        versions = entry.get("versions") or []
        if not isinstance(ranges, list) or not isinstance(versions, list):
            raise DistillError(f"{where}: {vuln_id}: ranges or versions malformed", hint=_HINT)
        yield OsvRow(
            ecosystem=ecosystem,
            name=package_key(ecosystem, name),
            vuln_id=vuln_id,
            aliases=",".join(a for a in aliases if isinstance(a, str)),
            summary=summary.strip().splitlines()[0][:300] if summary.strip() else "",
            severity=severity_of(record, entry),
            affected=json.dumps({"ranges": ranges, "versions": versions}),
        )


def severity_of(record: dict[str, Any], entry: dict[str, Any]) -> str:
    """The advisory's own word for it (GHSA's database_specific, or the affected entry's
    ecosystem_specific), else the CVSS v3 base score's band, else UNKNOWN."""
    for holder in (entry.get("ecosystem_specific"), record.get("database_specific")):
        word = holder.get("severity") if isinstance(holder, dict) else None
        if isinstance(word, str) and word.upper() in _SEVERITY_WORDS:
            return _SEVERITY_WORDS[word.upper()]
    for item in record.get("severity") or []:
        if isinstance(item, dict) and str(item.get("type", "")).startswith("CVSS_V3"):
            score = cvss3_base_score(str(item.get("score", "")))
            if score is not None:
                return _band(score)
    return "UNKNOWN"


def _band(score: float) -> str:
    if score >= 9.0:
        return "CRITICAL"
    if score >= 7.0:
        return "HIGH"
    if score >= 4.0:
        return "MEDIUM"
    return "LOW" if score > 0 else "UNKNOWN"


_CVSS_WEIGHTS = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}


def cvss3_base_score(vector: str) -> float | None:
    """The CVSS 3.x base score of a vector (the specification's formulas), None if the
    vector is not a complete 3.x one."""
    parts = dict(p.split(":", 1) for p in vector.split("/")[1:] if ":" in p)
    if not vector.startswith("CVSS:3.") or parts.get("S") not in ("U", "C"):
        return None
    changed = parts["S"] == "C"
    try:
        w = {k: table[parts[k]] for k, table in _CVSS_WEIGHTS.items()}
        pr = {"N": 0.85, "L": 0.68 if changed else 0.62, "H": 0.5 if changed else 0.27}[parts["PR"]]
    except KeyError:
        return None
    iss = 1 - (1 - w["C"]) * (1 - w["I"]) * (1 - w["A"])
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    exploitability = 8.22 * w["AV"] * w["AC"] * pr * w["UI"]
    if impact <= 0:
        return 0.0
    total = (impact + exploitability) * (1.08 if changed else 1.0)
    return _roundup(min(total, 10.0))


def _roundup(value: float) -> float:
    scaled = round(value * 100_000)
    return scaled / 100_000 if scaled % 10_000 == 0 else (math.floor(scaled / 10_000) + 1) / 10


def affects(ecosystem: str, version: str, affected: str) -> tuple[bool, str | None]:
    """Whether ``version`` is affected per one row's ranges and versions, and the version
    that fixes it (the ``fixed`` event closing the range it falls in), if any."""
    ranges, listed = _stored(affected)
    key = KEYS[ecosystem]
    mine = key(version)
    if version in listed or (mine is not None and any(_same(key, v, mine) for v in listed)):
        return True, _fix_for(ranges, key, mine)
    if mine is None:
        return False, None
    for rng in ranges:
        if not isinstance(rng, dict) or rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue  # GIT ranges name commits, which an installed package does not have
        hit, fixed = _in_range(_events(rng), key, mine)
        if hit:
            return True, fixed
    return False, None


def _stored(affected: str) -> tuple[list[Any], list[Any]]:
    """The ranges and versions of one row as ``rows`` stored them; ValueError for anything
    else (the DB file was damaged or edited), which the DB words as such."""
    try:
        data = json.loads(affected)
    except RecursionError:
        raise ValueError("its affected ranges are nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError("its affected ranges are not an object")
    ranges, versions = data.get("ranges") or [], data.get("versions") or []
    if not isinstance(ranges, list) or not isinstance(versions, list):
        raise ValueError("its ranges or versions are not lists")
    return ranges, versions


def _events(rng: dict[str, Any]) -> list[Any]:
    events = rng.get("events") or []
    if not isinstance(events, list):
        raise ValueError("a range's events are not a list")
    return events


def _same(key: Any, listed: Any, mine: Any) -> bool:
    other = key(listed) if isinstance(listed, str) else None
    return other is not None and other == mine


def _fix_for(ranges: list[Any], key: Any, mine: Any) -> str | None:
    if mine is None:
        return None
    for rng in ranges:
        if isinstance(rng, dict):
            hit, fixed = _in_range(_events(rng), key, mine)
            if hit:
                return fixed
    return None


def _in_range(events: list[Any], key: Any, mine: Any) -> tuple[bool, str | None]:
    """OSV's evaluation: walk the events in version order; ``introduced`` opens, ``fixed``
    (at or below the version) and ``last_affected`` (below it) close. "0" is the least."""
    parsed: list[tuple[Any, int, str, str]] = []
    for event in events:
        if not isinstance(event, dict):
            continue
        for kind, order in (("introduced", 0), ("fixed", 1), ("last_affected", 1)):
            value = event.get(kind)
            if not isinstance(value, str):
                continue
            if kind == "introduced" and value == "0":
                parsed.append((None, order, kind, value))
            elif (k := key(value)) is not None:
                parsed.append((k, order, kind, value))
    lowest = [e for e in parsed if e[0] is None]
    ordered = lowest + sorted((e for e in parsed if e[0] is not None), key=lambda e: e[0])
    affected = False
    for k, _order, kind, _value in ordered:
        if kind == "introduced":
            affected = affected or k is None or mine >= k
        elif k is not None and (mine > k or (kind == "fixed" and mine == k)):
            affected = False
    if not affected:
        return False, None
    fixes = [e for e in ordered if e[2] == "fixed" and e[0] is not None and e[0] > mine]
    return True, fixes[0][3] if fixes else None
