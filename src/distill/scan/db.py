"""distill's vulnerability DB: one SQLite file under the user cache dir.

The file is only ever replaced whole: an import copies the current DB into a temporary
file beside it, replaces the rows of the sources it imports there, and renames it into
place. A failure at any point (a malformed file, a full disk, Ctrl-C) leaves the old DB as
it was. Readers open it read-only; the schema version is SQLite's ``user_version``, and a
DB of another version is refused with the command that rebuilds it.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, cast

from packageurl import PackageURL

from distill.bounded import one_line
from distill.cache import cache_root
from distill.errors import DistillError
from distill.fsutil import atomic_path, shown
from distill.scan import osv, tracker
from distill.scan.findings import SEVERITIES
from distill.scan.model import DebianAdvisory, Finding, ImagePackage, Origin, Status

SCHEMA_VERSION = 1
DB_ENV = "DISTILL_VULN_DB"
TRACKER_SOURCE = "debian-tracker"
_BATCH = 20_000
_IN_CHUNK = 500  # SQLite allows 999 host parameters in older builds
_REBUILD_HINT = "rebuild it with `distill db update` (or `distill db import FILE…` offline)"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources (
    name TEXT PRIMARY KEY, kind TEXT NOT NULL, url TEXT NOT NULL DEFAULT '',
    etag TEXT NOT NULL DEFAULT '', last_modified TEXT NOT NULL DEFAULT '',
    imported_at TEXT NOT NULL, count INTEGER NOT NULL);
CREATE TABLE issues (
    source TEXT NOT NULL, vuln_id TEXT NOT NULL, description TEXT NOT NULL,
    PRIMARY KEY (vuln_id, source)) WITHOUT ROWID;
CREATE TABLE debian (
    source TEXT NOT NULL, release TEXT NOT NULL, package TEXT NOT NULL,
    vuln_id TEXT NOT NULL, status TEXT NOT NULL, fixed_version TEXT,
    urgency TEXT NOT NULL, nodsa INTEGER NOT NULL, nodsa_reason TEXT NOT NULL);
CREATE TABLE releases (release TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE osv (
    source TEXT NOT NULL, ecosystem TEXT NOT NULL, name TEXT NOT NULL,
    vuln_id TEXT NOT NULL, aliases TEXT NOT NULL, summary TEXT NOT NULL,
    severity TEXT NOT NULL, affected TEXT NOT NULL);
"""
# Made after the rows are in: one sort instead of a B-tree insert per row.
_INDEXES = (
    "CREATE INDEX debian_by_package ON debian (release, package)",
    "CREATE INDEX osv_by_package ON osv (ecosystem, name)",
)
_COPIED = ("sources", "issues", "debian", "osv")


class SourceKind(StrEnum):
    TRACKER = "debian-tracker"
    OSV = "osv"


@dataclass(frozen=True, slots=True)
class SourceInfo:
    name: str
    kind: str
    imported_at: datetime
    url: str = ""
    etag: str = ""
    last_modified: str = ""
    count: int = 0


@dataclass(frozen=True, slots=True)
class DBStatus:
    path: Path
    schema_version: int
    updated: datetime | None
    sources: tuple[SourceInfo, ...] = ()
    releases: dict[str, int] = field(default_factory=dict)  # codename → advisories
    tracker_url: str = ""


@dataclass(frozen=True, slots=True)
class Import:
    """One file to import: a tracker JSON (plain or gzip) or OSV (file, directory, zip)."""

    path: Path
    kind: SourceKind
    name: str  # the source's name in the DB: a re-import of the same name replaces it
    url: str = ""
    etag: str = ""
    last_modified: str = ""
    label: str = ""  # how errors name the file (default: its path)


def default_db_path() -> Path:
    """``$DISTILL_VULN_DB``, else ``vuln.db`` in distill's cache dir."""
    explicit = os.environ.get(DB_ENV)
    return Path(explicit).expanduser() if explicit else cache_root() / "vuln.db"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _when(text: object, path: Path) -> datetime:
    """A time the DB recorded; anything else means the file was damaged or edited."""
    try:
        return datetime.fromisoformat(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _damaged(path, f"{one_line(str(text), 40)!r} is not a time") from None


def _damaged(path: Path, what: str) -> DistillError:
    return DistillError(
        f"the vulnerability DB {shown(path)} is damaged: {what}", hint=_REBUILD_HINT
    )


# What each query's rows hold, as import wrote them: a row of other types (an edited or
# damaged file) is refused here, once, rather than failing wherever the value is used.
_DEBIAN_ROW = (str, str, str, (str, type(None)), str, int, str, str)
_OSV_ROW = (str, str, str, str)


def _db_error(path: Path, exc: sqlite3.Error) -> DistillError:
    return DistillError(
        f"the vulnerability DB {shown(path)} cannot be read: {exc}", hint=_REBUILD_HINT
    )


class VulnDB:
    """A read-only view of the DB (``open``); imports go through :func:`import_sources`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    @classmethod
    def open(cls, path: Path) -> VulnDB | None:
        """The DB at ``path``, None if there is none; another schema is an error."""
        if not path.exists():
            return None
        if not path.is_file():  # SQLite would block forever opening a fifo
            raise DistillError(
                f"the vulnerability DB {shown(path)} is not a regular file", hint=_REBUILD_HINT
            )
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                conn.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.Error as exc:
            raise _db_error(path, exc) from None
        if version != SCHEMA_VERSION:
            conn.close()
            age = "an older" if version < SCHEMA_VERSION else "a newer"
            raise DistillError(
                f"the vulnerability DB {shown(path)} has {age} schema ({version}) than this "
                f"distill reads ({SCHEMA_VERSION})",
                hint=_REBUILD_HINT,
            )
        return cls(path, conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> VulnDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _db_error(self.path, exc) from None

    def _typed(self, rows: list[Any], kinds: tuple[Any, ...], what: str) -> list[Any]:
        for row in rows:
            if not all(isinstance(value, kind) for value, kind in zip(row, kinds, strict=True)):
                raise _damaged(self.path, f"{what} of the wrong type")
        return rows

    def meta(self, key: str) -> str:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else ""

    def status(self) -> DBStatus:
        sources = tuple(
            SourceInfo(name, kind, _when(at, self.path), url, etag, modified, count)
            for name, kind, url, etag, modified, at, count in self._query(
                "SELECT name, kind, url, etag, last_modified, imported_at, count "
                "FROM sources ORDER BY name"
            )
        )
        updated = self.meta("updated")
        return DBStatus(
            path=self.path,
            schema_version=SCHEMA_VERSION,
            updated=_when(updated, self.path) if updated else None,
            sources=sources,
            releases=dict(self._query("SELECT release, count FROM releases ORDER BY release")),
            tracker_url=self.meta("tracker_url"),
        )

    def source(self, name: str) -> SourceInfo | None:
        return next((s for s in self.status().sources if s.name == name), None)

    def has_release(self, release: str) -> bool:
        return bool(self._query("SELECT 1 FROM releases WHERE release = ?", (release,)))

    def debian_advisories(
        self, release: str, source_packages: Collection[str]
    ) -> list[DebianAdvisory]:
        """The tracker's advisories for these source packages in ``release``."""
        names = sorted(set(source_packages))
        out: list[DebianAdvisory] = []
        for i in range(0, len(names), _IN_CHUNK):
            chunk = names[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                "SELECT d.vuln_id, d.package, d.status, d.fixed_version, d.urgency, d.nodsa, "
                "d.nodsa_reason, coalesce(i.description, '') FROM debian d "
                "LEFT JOIN issues i ON i.vuln_id = d.vuln_id AND i.source = d.source "
                f"WHERE d.release = ? AND d.package IN ({marks})",
                (release, *chunk),
            )
            self._typed(rows, _DEBIAN_ROW, "a Debian advisory holds values")
            out.extend(
                tracker.advisory(
                    package, (vuln_id, release, status, fixed, urgency, nodsa, reason), text
                )
                for vuln_id, package, status, fixed, urgency, nodsa, reason, text in rows
            )
        return out

    def osv_findings(self, packages: Sequence[ImagePackage]) -> list[Finding]:
        """Findings for the PyPI, npm and Maven packages among ``packages``."""
        findings: list[Finding] = []
        seen: set[tuple[str, int]] = set()
        for index, package in enumerate(packages):
            key = osv_key(package)
            if key is None:
                continue
            rows = self._query(
                "SELECT vuln_id, severity, summary, affected FROM osv "
                "WHERE ecosystem = ? AND name = ? ORDER BY vuln_id",
                key,
            )
            self._typed(rows, _OSV_ROW, "an OSV advisory holds values")
            for vuln_id, severity, summary, affected in rows:
                try:
                    hit, fixed = osv.affects(key[0], package.version, affected)
                except ValueError as exc:
                    raise _damaged(self.path, f"OSV {one_line(vuln_id, 80)}: {exc}") from None
                if not hit or (vuln_id, index) in seen:
                    continue
                seen.add((vuln_id, index))
                findings.append(
                    Finding(
                        vuln_id=vuln_id,
                        package=package,
                        status=Status.FIXED if fixed else Status.AFFECTED,
                        severity=severity if severity in SEVERITIES else "UNKNOWN",
                        origin=Origin.OSV,
                        fixed_version=fixed,
                        title=summary,
                    )
                )
        return findings


def osv_key(package: ImagePackage) -> tuple[str, str] | None:
    """(ecosystem, name as OSV's rows key it), from the purl when it has one (it carries
    the npm scope and the Maven group), else from the package's own fields."""
    ecosystem = package.ecosystem.lower()
    name = package.name
    if package.purl.startswith("pkg:"):
        try:
            purl = PackageURL.from_string(package.purl)
        except ValueError:
            purl = None
        if purl is not None:
            ecosystem = {"pypi": "pypi", "npm": "npm", "maven": "maven"}.get(purl.type, ecosystem)
            if purl.type == "npm" and purl.namespace:
                name = f"{purl.namespace}/{purl.name}"
            elif purl.type == "maven" and purl.namespace:
                name = f"{purl.namespace}:{purl.name}"
            elif purl.type in ("npm", "maven", "pypi"):
                name = purl.name
    if ecosystem not in osv.ECOSYSTEMS.values():
        return None
    return ecosystem, osv.package_key(ecosystem, name)


# ---------------------------------------------------------------- importing


def detect_kind(path: Path) -> SourceKind:
    """OSV for a directory, a zip, a JSON array or a record with OSV's fields; else the
    tracker (its top-level keys are source package names)."""
    if path.is_dir():
        return SourceKind.OSV
    if not path.is_file():  # a fifo would block the read below
        raise DistillError(f"{shown(path)} is neither a file nor a directory")
    try:
        with _open_text(path) as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise DistillError(f"cannot read {shown(path)}: {exc.strerror}") from None
    if head.startswith(b"PK"):
        return SourceKind.OSV
    text = head.lstrip()
    if text.startswith(b"["):
        return SourceKind.OSV
    if text.startswith(b"{"):
        first = text[1:].lstrip().split(b'"', 2)
        if len(first) > 2 and first[1].decode("utf-8", "replace") in osv.OSV_FIELDS:
            return SourceKind.OSV
        return SourceKind.TRACKER
    raise DistillError(
        f"{shown(path)} is neither the Debian security tracker's JSON nor OSV",
        hint="import the tracker's JSON (plain or .gz) or OSV files (JSON, a directory, a zip)",
    )


@contextlib.contextmanager
def _open_text(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, gunzipped when it is gzip (the tracker is often fetched so)."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield cast(IO[bytes], unzipped)
        else:
            yield raw


def import_sources(
    path: Path, imports: Sequence[Import], *, tracker_url: str | None = None
) -> DBStatus:
    """Build the DB at ``path`` anew from the current one plus ``imports`` (each replacing
    the source of the same name), and rename it into place. All or nothing."""
    with atomic_path(path) as tmp:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            # A temporary file: if distill dies it is thrown away, so durability buys nothing.
            conn.executescript(
                "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -32768;"
            )
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            _keep_old(conn, path, {item.name for item in imports})
            conn.execute("BEGIN")
            for item in imports:
                count = _import_one(conn, item)
                conn.execute(
                    "INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        item.name,
                        item.kind.value,
                        item.url,
                        item.etag,
                        item.last_modified,
                        _now(),
                        count,
                    ),
                )
            for statement in _INDEXES:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO releases SELECT release, count(*) FROM debian GROUP BY release"
            )
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('updated', ?)", (_now(),))
            if tracker_url:
                conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('tracker_url', ?)", (tracker_url,)
                )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise DistillError(
                f"cannot write the vulnerability DB {shown(path)}: {exc}",
                hint="check the free space and permissions of its directory",
            ) from None
        finally:
            conn.close()
    db = VulnDB.open(path)
    assert db is not None
    with db:
        return db.status()


def _keep_old(conn: sqlite3.Connection, path: Path, replaced: set[str]) -> None:
    """Copy the current DB's rows of the sources not being replaced (and its metadata).
    A DB of another schema (or none) contributes nothing: it is rebuilt from the imports."""
    if not path.exists():
        return
    try:
        old = VulnDB.open(path)
    except DistillError:
        return
    if old is None:
        return
    old.close()
    conn.execute("ATTACH DATABASE ? AS old", (str(path),))
    try:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO meta SELECT * FROM old.meta")
        marks = ",".join("?" * len(replaced))
        for table in _COPIED:
            column = "name" if table == "sources" else "source"
            conn.execute(
                f"INSERT INTO {table} SELECT * FROM old.{table} WHERE {column} NOT IN ({marks})",
                tuple(replaced),
            )
        conn.execute("COMMIT")
    finally:
        conn.execute("DETACH DATABASE old")


def _import_one(conn: sqlite3.Connection, item: Import) -> int:
    try:
        if item.kind is SourceKind.TRACKER:
            return _import_tracker(conn, item)
        return _import_osv(conn, item)
    except UnicodeEncodeError as exc:
        # JSON may escape half a surrogate pair ("\ud800"): valid JSON, but no text SQLite
        # (or anything downstream) can store.
        raise DistillError(
            f"{item.label or shown(item.path)} holds a string that is not Unicode text "
            f"({exc.object[exc.start : exc.end]!r}, a lone surrogate escape)",
            hint="the file is damaged or was made to attack a reader; get it again",
        ) from None


def _import_tracker(conn: sqlite3.Connection, item: Import) -> int:
    where = item.label or shown(item.path)
    count = 0
    rows: list[tuple[Any, ...]] = []
    issues: dict[str, str] = {}
    try:
        with _open_text(item.path) as fh:
            for source, entries in tracker.iter_tracker(fh, where):
                for row, description in tracker.rows(source, entries, where):
                    vuln_id, release, *rest = row
                    rows.append((item.name, release, source, vuln_id, *rest))
                    if description:
                        issues.setdefault(vuln_id, description)
                    # Inside the package's loop: one package may hold millions of entries.
                    if len(rows) >= _BATCH:
                        count += _flush(conn, rows, issues, item.name)
            count += _flush(conn, rows, issues, item.name)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DistillError(
            f"cannot read {where}: {exc}",
            hint="the file is truncated or damaged; get it again",
        ) from None
    return count


def _flush(
    conn: sqlite3.Connection, rows: list[tuple[Any, ...]], issues: dict[str, str], source: str
) -> int:
    conn.executemany("INSERT INTO debian VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.executemany(
        "INSERT OR IGNORE INTO issues VALUES (?, ?, ?)",
        ((source, vuln_id, text) for vuln_id, text in issues.items()),
    )
    count = len(rows)
    rows.clear()
    issues.clear()
    return count


def _import_osv(conn: sqlite3.Connection, item: Import) -> int:
    count = 0
    batch: list[tuple[str, ...]] = []
    for where, record in osv.iter_records(item.path):
        for row in osv.rows(record, where):
            batch.append(
                (
                    item.name,
                    row.ecosystem,
                    row.name,
                    row.vuln_id,
                    row.aliases,
                    row.summary,
                    row.severity,
                    row.affected,
                )
            )
        if len(batch) >= _BATCH:
            count += _insert_osv(conn, batch)
    return count + _insert_osv(conn, batch)


def _insert_osv(conn: sqlite3.Connection, batch: list[tuple[str, ...]]) -> int:
    conn.executemany("INSERT INTO osv VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
    count = len(batch)
    batch.clear()
    return count


def imports_for(paths: Iterable[Path]) -> list[Import]:
    """What ``distill db import`` makes of its files: the tracker is one source (named
    ``debian-tracker``), each OSV file, directory or zip another (named ``osv:NAME``)."""
    out = []
    for path in paths:
        if not path.exists():
            raise DistillError(f"{shown(path)} does not exist")
        kind = detect_kind(path)
        name = TRACKER_SOURCE if kind is SourceKind.TRACKER else f"osv:{path.name}"
        out.append(Import(path, kind, name))
    return out
