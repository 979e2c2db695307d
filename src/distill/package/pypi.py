"""Finding and fetching wheels: pip (from distill's own environment) as the resolver, distill's
verified downloader and content-addressed cache for the files.

pip is asked only for *which* files: ``pip install --dry-run --report`` with the image's
tags (``--platform``/``--python-version``/``--abi``, binary wheels only) answers with each
wheel's URL and sha256 without installing anything. pip reads the user's own configuration
(index, find-links, credentials), so distill names no index itself. The wheels themselves
come through :mod:`distill.net.download` (or a local find-links file) into the cache, checked
against their sha256; a resolution of pinned requirements is remembered in the cache so a
warm rebuild asks no one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from distill import tempfiles
from distill.bounded import one_line, parse_json, read_regular_file
from distill.cache import BlobCache, is_sha256
from distill.errors import DistillError
from distill.net.download import DownloadRequest, fetch_all
from distill.package.wheels import Target, check_compatible

RESOLVE_NAMESPACE = "pypi-resolve"
PIP_TIMEOUT = 900.0  # seconds for one pip resolution; it fetches metadata of every candidate
MAX_REPORT = 64 << 20


@dataclass(frozen=True, slots=True)
class WheelRef:
    """One wheel as a resolution names it."""

    name: str
    version: str
    filename: str
    url: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Pinned:
    """A requirement of the lock: exactly ``name==version``, optionally with the hashes its
    file must have."""

    name: str
    version: str
    hashes: tuple[str, ...] = ()

    def line(self, *, hashes: bool = True) -> str:
        # No marker: distill evaluated it for the image; pip would for its own Python.
        hashes_ = "".join(f" --hash=sha256:{h}" for h in self.hashes) if hashes else ""
        return f"{self.name}=={self.version}{hashes_}"


def pip_lines(pinned: Sequence[Pinned]) -> list[str]:
    """Requirement lines for pip: with hashes only when every pin has them (pip's
    hash-checking mode is all or nothing; distill checks the others itself)."""
    every = all(p.hashes for p in pinned)
    return sorted(p.line(hashes=every) for p in pinned)


def resolve(
    requirements: Sequence[str],
    target: Target,
    *,
    no_deps: bool,
    pip_options: Sequence[str] = (),
    scratch: Path,
) -> list[WheelRef]:
    """Ask pip which wheels install ``requirements`` for ``target``. With ``no_deps`` the
    requirements are taken as the whole set (a lock); otherwise pip resolves the closure."""
    scratch.mkdir(parents=True, exist_ok=True)
    work = tempfiles.make_dir(scratch, "pip-resolve")
    try:
        req_file = work / "requirements.txt"
        req_file.write_text("".join(f"{line}\n" for line in [*pip_options, *requirements]))
        report = work / "report.json"
        args = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        args += ["--quiet", "--no-input", "--disable-pip-version-check", "--report", str(report)]
        args += target.pip_args()
        if no_deps:
            args.append("--no-deps")
        args += ["-r", str(req_file)]
        proc = _run_pip(args, work)
        if proc.returncode != 0:
            raise _pip_failure(proc.stderr, target)
        data = read_regular_file(report, MAX_REPORT, "pip's resolution report")
        return _parse_report(parse_json(data, "pip's resolution report"), target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_pip(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PIP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DistillError(
            f"pip did not finish resolving the wheels within {PIP_TIMEOUT:.0f} s",
            hint="check the package index in your pip configuration is reachable",
        ) from None
    except OSError as exc:
        raise DistillError(f"could not run pip: {exc.strerror or exc}") from exc


# pip's own words for "no file fits": the requirement is quoted after them.
_NO_MATCH = re.compile(
    r"(?:No matching distribution found for|Could not find a version that satisfies the "
    r"requirement) (\S+)"
)
_HASH_MISMATCH = re.compile(r"^\s+(\S+==\S+) from \S*/([^/\s]+\.whl)", re.MULTILINE)
_NO_DIST_LIST = re.compile(
    r"no matching distributions available for your environment:\s*\n((?:\s+\S+\s*\n?)+)"
)


def _pip_failure(stderr: str, target: Target) -> DistillError:
    if "No module named pip" in stderr:
        return DistillError(
            "distill needs pip (in its own Python environment) to find wheels",
            hint=f"install it: {sys.executable} -m ensurepip",
        )
    listed = _NO_DIST_LIST.search(stderr)
    names = listed.group(1).split() if listed else []
    found = _NO_MATCH.search(stderr)
    if found and not names:
        names = [found.group(1)]
    if names:
        which = ", ".join(one_line(n, 100) for n in names)
        return DistillError(
            f"no wheel of {which} for the image's Python ({target.describe()}): wanted "
            f"{target.wanted} or a pure-Python wheel",
            hint="distill installs binary wheels only and builds nothing; use a version that "
            "publishes wheels for this Python and platform, or a base whose Python matches",
        )
    if "DO NOT MATCH THE HASHES" in stderr:
        found = _HASH_MISMATCH.search(stderr)
        which = f"{one_line(found.group(1), 100)} " if found else ""
        got = f" (the index's is {one_line(found.group(2), 200)})" if found else ""
        return DistillError(
            f"no wheel of {which}with the hashes the lock gives fits the image's Python "
            f"({target.describe()}){got}",
            hint="the lock was made for another Python or platform: re-lock for this base "
            "(`distill lock PATH`, or pip-compile --generate-hashes under its Python)",
        )
    errors = [ln.removeprefix("ERROR: ") for ln in stderr.splitlines() if ln.startswith("ERROR")]
    detail = errors[-1] if errors else (stderr.strip().splitlines() or ["no output"])[-1]
    return DistillError(
        f"pip could not resolve the wheels: {one_line(detail, 300)}",
        hint="check the requirements and the package index in your pip configuration",
    )


def _parse_report(report: object, target: Target) -> list[WheelRef]:
    items = report.get("install") if isinstance(report, dict) else None
    if not isinstance(items, list):
        raise DistillError("pip's resolution report has no install list")
    refs: list[WheelRef] = []
    for item in items:
        info = item.get("download_info") if isinstance(item, dict) else None
        meta = item.get("metadata") if isinstance(item, dict) else None
        if not isinstance(info, dict) or not isinstance(meta, dict):
            raise DistillError("pip's resolution report has an entry without download_info")
        url = str(info.get("url", ""))
        archive = info.get("archive_info")
        hashes = archive.get("hashes") if isinstance(archive, dict) else None
        sha = hashes.get("sha256") if isinstance(hashes, dict) else None
        filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        name, version = str(meta.get("name", "")), str(meta.get("version", ""))
        if not filename.endswith(".whl"):
            raise DistillError(
                f"{one_line(name, 100)} {one_line(version, 100)} resolves to "
                f"{one_line(filename, 200)}, not a wheel",
                hint="distill installs binary wheels only; a local directory or VCS "
                "requirement cannot be installed without building it",
            )
        if not isinstance(sha, str) or not is_sha256(sha):
            raise DistillError(f"the package index gave no sha256 for {one_line(filename, 200)}")
        check_compatible(filename, target)
        refs.append(WheelRef(name, version, filename, url, sha.lower()))
    return refs


def resolve_pinned(
    pinned: Sequence[Pinned],
    target: Target,
    cache: BlobCache,
    *,
    pip_options: Sequence[str] = (),
    offline: bool = False,
) -> list[WheelRef]:
    """The wheels of an exact set of pins; remembered in the cache, so a rebuild of the same
    lock for the same target needs neither pip nor the network."""
    lines = pip_lines(pinned)
    key_doc = json.dumps(
        {"lines": lines, "options": list(pip_options), "target": target.pip_args()},
        sort_keys=True,
    )
    key = hashlib.sha256(key_doc.encode()).hexdigest()
    remembered = cache.get_derived(RESOLVE_NAMESPACE, key)
    if remembered is not None:
        refs = _refs_from_json(remembered)
        if refs is not None:
            return refs
    if offline:
        raise DistillError(
            "--offline: the wheels of this lock were never resolved on this machine",
            hint="run once without --offline to fetch them into the cache",
        )
    if not pinned:
        return []
    refs = resolve(lines, target, no_deps=True, pip_options=pip_options, scratch=cache.tmp_dir)
    cache.put_derived(RESOLVE_NAMESPACE, key, json.dumps([asdict(r) for r in refs]).encode())
    return refs


def _refs_from_json(data: bytes) -> list[WheelRef] | None:
    try:
        items = parse_json(data, "a cached wheel resolution")
        return [WheelRef(**{k: str(v) for k, v in item.items()}) for item in items]
    except (DistillError, TypeError, AttributeError):
        return None  # damaged: resolve again


def fetch_wheels(refs: Sequence[WheelRef], cache: BlobCache, *, offline: bool) -> dict[str, Path]:
    """Each wheel's cached file by sha256, downloading (verified) what the cache lacks."""
    found: dict[str, Path] = {}
    remote: list[DownloadRequest] = []
    for ref in refs:
        cached = cache.get(ref.sha256)
        if cached is not None:
            found[ref.sha256] = cached
        elif offline:
            raise DistillError(
                f"--offline: {ref.filename} is not in the cache",
                hint="run once without --offline to fetch it",
            )
        elif urllib.parse.urlsplit(ref.url).scheme == "file":
            found[ref.sha256] = _put_local(ref, cache)
        else:
            remote.append(DownloadRequest(ref.url, ref.sha256, None, ref.filename))
    if remote:
        found.update(fetch_all(remote, cache))
    return found


def _put_local(ref: WheelRef, cache: BlobCache) -> Path:
    # A find-links directory on this machine: copied in, then checked like a download.
    source = Path(urllib.request.url2pathname(urllib.parse.urlsplit(ref.url).path))
    part = cache.tmp_path(ref.sha256[:12] + "-")
    try:
        shutil.copyfile(source, part)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise DistillError(f"could not read {source}: {exc.strerror or exc}") from exc
    return cache.put_file(part, ref.sha256, None)
