"""Which Debian package ships a library: the archive's ``Contents-<arch>`` index, narrowed.

``main/Contents-<arch>.gz`` maps every file of every package of a pocket to its packages
(~170 MB of text for trixie amd64). It is fetched like a Packages file — named with its
SHA256 in the verified InRelease, checked before it enters the cache — and read once,
streaming, into a small table of the files a dynamic loader can be asked for: shared
objects in the library directories. That table is cached under the hash of the Contents
file it came from (it can never disagree with it), so later lookups read a few MB.

Paths are kept usr-merged (``lib/x`` and ``usr/lib/x`` are one file on every supported
release), relative, without a leading ``/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
from isal import igzip

from distill import log
from distill.cache import BlobCache
from distill.debian.archive import COMPONENT, Release, fetch_release, pockets_for
from distill.debian.mirror import Mirrors, discover_mirrors
from distill.errors import DistillError
from distill.net.download import DownloadRequest, fetch_blob, fetch_bytes
from distill.net.http import make_session

# Bump when what is kept or how it is stored changes: old derived tables are then never read.
_TABLE_FORMAT = "contents-libs:1"
_DERIVED_NS = "contents"
_UNLISTED_NS = "contents-unlisted"  # InRelease's hash → what the mirror served instead
# Directories whose children a loader may open by name (after the usr merge). Deeper files
# are kept only when they look like versioned libraries: the targets of alternatives
# (usr/lib/<triplet>/blas/libblas.so.3) and of RUNPATHs into a package's private directory.
_LIB_ROOTS = ("usr/lib/", "usr/lib64/", "usr/lib32/", "usr/libx32/")
_SHARED_OBJECT = re.compile(rb"\.so(\.[0-9][0-9A-Za-z.+_-]*)?$")
_VERSIONED_LIB = re.compile(rb"^lib[^/]*\.so\.[0-9]")
_MAX_CONTENTS = 256 << 20  # an unverified Contents file is read into memory: cap it
_MERGED = {"lib": "usr/lib", "lib32": "usr/lib32", "lib64": "usr/lib64", "libx32": "usr/libx32"}


def usr_merged(path: str) -> str:
    """``lib/x86_64-linux-gnu/libz.so.1`` → ``usr/lib/x86_64-linux-gnu/libz.so.1``."""
    path = path.lstrip("/")
    head, sep, rest = path.partition("/")
    merged = _MERGED.get(head)
    return f"{merged}{sep}{rest}" if merged else path


@dataclass(frozen=True, slots=True)
class LibraryIndex:
    """Library files of the Debian archive (one suite, one architecture) → their packages."""

    suite: str
    arch: str
    paths: Mapping[str, tuple[str, ...]]  # usr-merged path → packages, sorted
    sources: tuple[str, ...]  # "trixie/main/Contents-amd64.gz sha256:…" for each pocket read
    # False when a mirror served a Contents file that its InRelease does not name (a mirror
    # out of sync): its answers are then only candidates, each to be confirmed from the
    # package's own verified .deb (see ``deb_ships``).
    verified: bool = True

    def packages_at(self, path: str) -> tuple[str, ...]:
        return self.paths.get(usr_merged(path), ())

    def named(self, name: str) -> dict[str, tuple[str, ...]]:
        """Every kept path whose file is called ``name``, wherever it lies: where a library
        not in a loader directory might still come from (alternatives, private dirs)."""
        return {p: pkgs for p, pkgs in self.paths.items() if p.rpartition("/")[2] == name}


def _keep(path: bytes) -> bool:
    if not _SHARED_OBJECT.search(path):
        return False
    head = path.partition(b"/")[0]
    if head in (b"lib", b"lib32", b"lib64", b"libx32"):
        path = b"usr/" + path
    elif head != b"usr":
        return False
    for root in _LIB_ROOTS:
        broot = root.encode()
        if not path.startswith(broot):
            continue
        inner = path[len(broot) :]
        depth = inner.count(b"/")
        # usr/lib/<name> and usr/lib/<triplet>/<name>: what a loader searches by default.
        if depth == 0 or (depth == 1 and b"-linux-" in inner.partition(b"/")[0]):
            return True
        return _VERSIONED_LIB.match(inner.rpartition(b"/")[2]) is not None
    return False


def parse_contents(lines: Iterable[bytes]) -> dict[str, tuple[str, ...]]:
    """The kept lines of a Contents file: ``PATH<spaces>[area/]section/pkg,…``. A path may
    itself hold spaces, so the locations are the last field."""
    table: dict[str, set[str]] = {}
    for raw in lines:
        # Cheap tests first: ~97% of the ~1.5M lines are not under a lib directory.
        if not raw.startswith((b"usr/lib", b"lib")):
            continue
        parts = raw.rstrip(b"\n").rsplit(None, 1)
        if len(parts) != 2 or not _keep(parts[0]):
            continue
        path = usr_merged(parts[0].decode("utf-8", "replace"))
        names = table.setdefault(path, set())
        for loc in parts[1].decode("ascii", "replace").split(","):
            name = loc.rpartition("/")[2].strip()
            if name:
                names.add(name)
    return {path: tuple(sorted(names)) for path, names in table.items() if names}


def _contents_request(mirror: str, release: Release, arch: str) -> DownloadRequest | None:
    path = f"{COMPONENT}/Contents-{arch}.gz"
    entry = release.files.get(path)
    if entry is None:
        return None
    if release.acquire_by_hash:
        url = f"{mirror}/dists/{release.pocket}/{COMPONENT}/by-hash/SHA256/{entry.sha256}"
    else:
        url = f"{mirror}/dists/{release.pocket}/{path}"
    return DownloadRequest(
        url=url, sha256=entry.sha256, size=entry.size, name=f"{release.pocket}/{path}"
    )


def _fetch_contents(
    mirror: str,
    release: Release,
    arch: str,
    req: DownloadRequest,
    cache: BlobCache,
    session: requests.Session,
) -> tuple[Path, str, bool]:
    """The Contents file as (cached blob, its sha256, whether it is the one InRelease names).

    Mirrors serve Contents files on their own schedule: some lack the by-hash copies, some
    serve a plain file from another day than their InRelease. Such a file is still a useful
    list of candidates, and cannot smuggle a package in: the caller confirms every answer
    from that package's verified .deb. It is kept in the cache under its own hash, and
    remembered under the hash the InRelease wanted, so the next run does not fetch it again
    until the InRelease changes.
    """
    plain = f"{mirror}/dists/{release.pocket}/{COMPONENT}/Contents-{arch}.gz"
    if cache.get(req.sha256, req.size) is None and req.url != plain:
        # No by-hash copy (or a bad one): the plain file below.
        with contextlib.suppress(DistillError):
            fetch_blob(req, cache, session=session)
    listed = cache.get(req.sha256, req.size)
    if listed is not None:
        return listed, req.sha256, True
    note_key = hashlib.sha256(f"{_TABLE_FORMAT}:{plain}:{req.sha256}".encode()).hexdigest()
    noted = cache.get_derived(_UNLISTED_NS, note_key)
    if noted is not None and (seen := cache.get(noted.decode("ascii", "replace"))) is not None:
        digest = noted.decode("ascii")
    else:
        data = fetch_bytes(plain, session, name=req.name, max_size=_MAX_CONTENTS)
        digest = hashlib.sha256(data).hexdigest()
        seen = cache.put_bytes(data, digest)
        if digest == req.sha256:
            return seen, digest, True
        cache.put_derived(_UNLISTED_NS, note_key, digest.encode("ascii"))
    log.warn(
        f"{req.name}: the mirror serves a file its InRelease does not name (sha256 "
        f"{digest[:12]}…, wanted {req.sha256[:12]}…): its answers are only candidates, each "
        "confirmed from the package's verified .deb"
    )
    return seen, digest, False


def _load_table(blob: Path, sha256: str, name: str, cache: BlobCache) -> dict[str, tuple[str, ...]]:
    key = hashlib.sha256(f"{_TABLE_FORMAT}:{sha256}".encode()).hexdigest()
    cached = cache.get_derived(_DERIVED_NS, key)
    if cached is not None:
        try:
            form, table = pickle.loads(cached)
            if form == _TABLE_FORMAT and isinstance(table, dict):
                return table
        except Exception:  # a damaged entry: derive it again below
            pass
    try:
        with (
            blob.open("rb") as fh,
            igzip.IGzipFile(fileobj=fh, mode="rb") as raw,  # type: ignore[no-untyped-call]
        ):
            table = parse_contents(io.BufferedReader(raw, 1 << 20))
    except (OSError, EOFError, ValueError) as exc:
        raise DistillError(
            f"{name} does not decompress: {exc}",
            hint="the cached file is damaged; remove it from the cache and run again",
        ) from exc
    data = pickle.dumps((_TABLE_FORMAT, table), protocol=pickle.HIGHEST_PROTOCOL)
    cache.put_derived(_DERIVED_NS, key, data)
    return table


def library_index(
    suite: str,
    arch: str,
    *,
    cache: BlobCache | None = None,
    mirrors: Mirrors | None = None,
    session: requests.Session | None = None,
    pockets: tuple[str, ...] | None = None,
) -> LibraryIndex:
    """The library files of a suite's pockets (main component) for one architecture.

    A pocket whose InRelease names no Contents file for the architecture is skipped, except
    the suite itself: without it nothing could be looked up.
    """
    mirrors = mirrors or discover_mirrors()
    session = session or make_session()
    cache = cache or BlobCache()
    merged: dict[str, set[str]] = {}
    sources: list[str] = []
    verified = True
    for pocket in pockets or pockets_for(suite):
        mirror = mirrors.for_pocket(pocket)
        release = fetch_release(mirror, pocket, session)
        request = _contents_request(mirror, release, arch)
        if request is None:
            if pocket == suite:
                raise DistillError(
                    f"{pocket} has no {COMPONENT}/Contents-{arch}.gz",
                    hint=f"is {arch!r} an architecture of {suite}? (e.g. amd64, arm64)",
                )
            continue
        blob, digest, ok = _fetch_contents(mirror, release, arch, request, cache, session)
        verified = verified and ok
        for path, names in _load_table(blob, digest, request.name, cache).items():
            merged.setdefault(path, set()).update(names)
        sources.append(f"{request.name} sha256:{digest}")
    paths = {path: tuple(sorted(names)) for path, names in merged.items()}
    return LibraryIndex(suite, arch, paths, tuple(sources), verified)
