"""Verified Debian archive indices: InRelease (OpenPGP-checked) → Packages (hash-checked).

Nothing unverified is parsed or cached: the InRelease signature is checked with gpgv against
the Debian archive keyring, and only the text gpgv says is signed is read; every Packages
file is checked against the size and SHA256 that signed text names before it is cached.
"""

from __future__ import annotations

import hashlib
import lzma
import operator
import os
import pickle
import re
import shutil
import subprocess
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING

from distill import tempfiles
from distill.bounded import one_line
from distill.cache import BlobCache
from distill.debian.binary import BinaryPackage
from distill.debian.control import gc_paused, parse_stanza
from distill.debian.mirror import Mirrors, discover_mirrors
from distill.debian.stanzas import IndexTables, index_tables, parse_packages_index
from distill.errors import DistillError
from distill.net.request import DownloadRequest

if TYPE_CHECKING:
    import requests

KEYRING_ENV = "DISTILL_KEYRING"
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
COMPONENT = "main"
# A cached index stores each package as a tuple of its fields, in constructor order.
_FIELDS = tuple(f.name for f in fields(BinaryPackage))
_TABLE_FIELDS = tuple(f.name for f in fields(IndexTables))
_row = operator.attrgetter(*_FIELDS)
# Bump when the parser changes, so cached parsed indices are not reused. A change to the
# fields of BinaryPackage or IndexTables changes the key by itself.
_INDEX_FORMAT = f"2:{','.join(_FIELDS)}:{','.join(_TABLE_FIELDS)}"


@dataclass(frozen=True, slots=True)
class IndexFile:
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Release:
    pocket: str
    date: datetime
    valid_until: datetime | None
    acquire_by_hash: bool
    files: dict[str, IndexFile] = field(default_factory=dict)  # path → hash, from SHA256:


@dataclass(frozen=True, slots=True)
class PocketIndex:
    pocket: str
    date: datetime
    packages: tuple[BinaryPackage, ...]
    # Derived from the packages when the index was parsed, and cached with them; None for an
    # index made by hand, whose tables the resolver works out itself.
    tables: IndexTables | None = None
    sha256: str = ""  # of the verified Packages file it was read from ("" when made by hand)


def pockets_for(suite: str) -> tuple[str, ...]:
    return (suite, f"{suite}-updates", f"{suite}-security")


def keyring_path() -> Path:
    path = Path(os.environ.get(KEYRING_ENV, DEFAULT_KEYRING))
    if not path.is_file():
        raise DistillError(
            f"archive keyring {path} not found",
            hint=f"install debian-archive-keyring, or set {KEYRING_ENV} to a keyring file",
        )
    return path


def _gpgv() -> str:
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise DistillError(
            "gpgv not found: InRelease signatures cannot be checked",
            hint="install gpgv (apt-get install gpgv)",
        )
    return gpgv


def verify_inrelease(data: bytes, name: str, keyring: Path | None = None) -> str:
    """Return the signed text of an InRelease file, or refuse it.

    Like apt: at least one good signature from the keyring and no bad one. A missing key for
    one of several signatures is tolerated (older keyrings lack the newest release key).
    """
    keyring = keyring or keyring_path()
    with tempfiles.spool_tempdir("distill-gpgv") as tmp:
        signed = Path(tmp, "InRelease")
        signed.write_bytes(data)
        out = Path(tmp, "signed.txt")
        proc = subprocess.run(
            [
                _gpgv(),
                "--status-fd",
                "1",
                "--keyring",
                str(keyring),
                "--output",
                str(out),
                str(signed),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        status = [ln.split()[1:] for ln in proc.stdout.splitlines() if ln.startswith("[GNUPG:]")]
        words = [s[0] for s in status if s]
        # BADSIG means altered data: fatal. A signature by an unknown, expired or revoked
        # key is worthless but harmless when another one is good (apt's rule).
        bad = "BADSIG" in words
        good = words.count("VALIDSIG")
        if bad or not good or not out.is_file():
            detail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no signature"
            raise DistillError(
                f"signature check failed for {name}: {detail}",
                hint="the file was altered or not signed by a key in the Debian archive keyring "
                f"({keyring}); check the mirror, or the keyring's age",
            )
        return out.read_text(encoding="utf-8", errors="replace")


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_POCKET = re.compile(r"[a-z0-9][a-z0-9.+~-]{0,63}(?:/updates)?")


def _parse_date(value: str, what: str) -> datetime:
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DistillError(f"bad {what} date {value[:80]!r} in InRelease") from exc


def parse_release(text: str, pocket: str) -> Release:
    fields = parse_stanza(text)
    if "date" not in fields:
        raise DistillError(f"InRelease of {pocket} has no Date field")
    files: dict[str, IndexFile] = {}
    for line in fields.get("sha256", "").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        checksum, size, name = parts
        # Signed, but still checked: a malformed line must not become a size of -1 or a
        # traceback (found by tests/fuzz/test_fuzz_control.py).
        if not _SHA256_HEX.fullmatch(checksum) or not size.isascii() or not size.isdigit():
            raise DistillError(
                f"InRelease of {pocket} has a malformed SHA256 line for {name[:200]!r}",
                hint="the mirror serves a damaged index; try another mirror",
            )
        files[name] = IndexFile(checksum, int(size))
    valid_until = fields.get("valid-until")
    return Release(
        pocket=pocket,
        date=_parse_date(fields["date"], "Date"),
        valid_until=_parse_date(valid_until, "Valid-Until") if valid_until else None,
        acquire_by_hash=fields.get("acquire-by-hash", "no").strip().lower() == "yes",
        files=files,
    )


def fetch_release(
    mirror: str, pocket: str, session: requests.Session, *, now: datetime | None = None
) -> Release:
    from distill.net.download import fetch_bytes  # the network stack, only when used

    if not _POCKET.fullmatch(pocket):
        # It may come from an image's os-release: "../../x" would walk the mirror's tree.
        raise DistillError(
            f"{one_line(pocket, 80)!r} is not a Debian suite name",
            hint="a suite is a codename such as trixie or bookworm (from the spec, or the "
            "image's /etc/os-release)",
        )
    url = f"{mirror}/dists/{pocket}/InRelease"
    text = verify_inrelease(fetch_bytes(url, session=session), f"{pocket}/InRelease")
    release = parse_release(text, pocket)
    now = now or datetime.now(UTC)
    if release.valid_until is not None and now > release.valid_until:
        raise DistillError(
            f"{pocket}/InRelease expired at {release.valid_until:%Y-%m-%d %H:%M} UTC",
            hint="the mirror is out of date (or replays an old index); use a current mirror",
        )
    return release


def _packages_request(mirror: str, release: Release, arch: str) -> DownloadRequest:
    path = f"{COMPONENT}/binary-{arch}/Packages.xz"
    entry = release.files.get(path)
    if entry is None:
        raise DistillError(
            f"{release.pocket} has no {path}",
            hint=f"is {arch!r} an architecture of this suite? (e.g. amd64, arm64)",
        )
    if release.acquire_by_hash:
        base = f"{mirror}/dists/{release.pocket}/{COMPONENT}/binary-{arch}"
        url = f"{base}/by-hash/SHA256/{entry.sha256}"
    else:
        url = f"{mirror}/dists/{release.pocket}/{path}"
    return DownloadRequest(
        url=url, sha256=entry.sha256, size=entry.size, name=f"{release.pocket}/{path}"
    )


def _load_packages(
    blob: Path, sha256: str, pocket: str, arch: str, cache: BlobCache
) -> tuple[tuple[BinaryPackage, ...], IndexTables]:
    # Parsing ~70k stanzas and working out their tables takes seconds. The result is cached
    # under the verified hash of the index it came from, so it can never disagree with it.
    # It is stored as tuples of strings and numbers: they unpickle in a fraction of the time
    # the dataclasses themselves take (slotted dataclasses unpickle field by field, in Python).
    key = hashlib.sha256(f"{_INDEX_FORMAT}:{pocket}:{arch}:{sha256}".encode()).hexdigest()
    cached = cache.get_derived("packages", key)
    if cached is not None:
        try:
            return _from_cache(cached)
        except Exception:  # a stale or damaged entry: parse again below
            pass
    try:
        text = lzma.decompress(blob.read_bytes()).decode("utf-8", errors="replace")
    except lzma.LZMAError as exc:
        raise DistillError(f"{pocket} Packages.xz does not decompress: {exc}") from exc
    packages = tuple(parse_packages_index(text, pocket))
    tables = index_tables(packages, arch)
    cache.put_derived("packages", key, _to_cache(packages, tables))
    return packages, tables


def _to_cache(packages: tuple[BinaryPackage, ...], tables: IndexTables) -> bytes:
    rows = [_row(pkg) for pkg in packages]
    table_rows = tuple(getattr(tables, name) for name in _TABLE_FIELDS)
    return pickle.dumps((_INDEX_FORMAT, rows, table_rows), protocol=pickle.HIGHEST_PROTOCOL)


def _from_cache(data: bytes) -> tuple[tuple[BinaryPackage, ...], IndexTables]:
    with gc_paused():
        form, rows, table_rows = pickle.loads(data)
        if form != _INDEX_FORMAT:
            raise ValueError(f"cached index format {form!r}")
        return tuple(BinaryPackage(*row) for row in rows), IndexTables(*table_rows)


def load_indices(
    suite: str,
    arch: str,
    mirrors: Mirrors | None = None,
    *,
    pockets: tuple[str, ...] | None = None,
    session: requests.Session | None = None,
    cache: BlobCache | None = None,
) -> list[PocketIndex]:
    """Verified package indices of every pocket of a suite, for one architecture."""
    from distill.net.download import fetch_blob  # the network stack, only when used
    from distill.net.http import make_session

    mirrors = mirrors or discover_mirrors()
    session = session or make_session()
    cache = cache or BlobCache()
    result = []
    for pocket in pockets or pockets_for(suite):
        mirror = mirrors.for_pocket(pocket)
        release = fetch_release(mirror, pocket, session)
        request = _packages_request(mirror, release, arch)
        blob = fetch_blob(request, cache, session=session)
        packages, tables = _load_packages(blob, request.sha256, pocket, arch, cache)
        result.append(PocketIndex(pocket, release.date, packages, tables, request.sha256))
    return result


def cached_index(
    pocket: str, arch: str, sha256: str, date: datetime, cache: BlobCache
) -> PocketIndex | None:
    """A pocket's index as verified by an earlier ``load_indices`` (its Packages file named
    by ``sha256``), from the cache alone; None when the cache no longer has it."""
    blob = cache.get(sha256, verify=True)
    if blob is None:
        return None
    packages, tables = _load_packages(blob, sha256, pocket, arch, cache)
    return PocketIndex(pocket, date, packages, tables, sha256)
