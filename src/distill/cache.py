"""Content-addressed on-disk cache for downloaded blobs, plus a small keyed store for
artifacts derived from them (parsed indices, layer blobs).

Every write lands in ``root/tmp/`` first and is moved into place with ``os.replace``: readers
never see a half-written file, and two processes storing the same blob at once both succeed
(the second rename replaces identical content). Temporaries carry their owner's PID
(``distill.tempfiles``), so what a killed run left is swept by the next one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import sys
from pathlib import Path
from typing import BinaryIO

from distill import tempfiles
from distill.errors import DistillError

CACHE_DIR_ENV = "DISTILL_CACHE_DIR"
LAYER_TEMP_STEM = ".layer"  # a layer being written into the blob store (image.layer_blob)
_HASH_CHUNK = 1 << 20
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Namespaces and keys become path components: keep them to a charset that cannot escape
# the store or collide with our own temp names.
_COMPONENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
_UNSAFE_PREFIX_RE = re.compile(r"[^A-Za-z0-9._-]")


def cache_root() -> Path:
    """Where distill keeps its cache: ``$DISTILL_CACHE_DIR``, else ``$XDG_CACHE_HOME/distill``,
    else the platform's user cache directory."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "distill"
    if sys.platform == "linux":  # platformdirs' answer there, without its import (~2 ms)
        return Path(os.path.expanduser("~/.cache")) / "distill"
    import platformdirs

    return Path(platformdirs.user_cache_dir("distill", appauthor=False))


def is_sha256(value: str) -> bool:
    """True for a hex SHA-256 digest (either case)."""
    return _SHA256_RE.fullmatch(value.lower()) is not None


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks so large blobs never sit in memory."""
    with path.open("rb") as fh:
        return _hash_stream(fh)


def _hash_stream(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(_HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _normalize(sha256: str) -> str:
    lowered = sha256.lower()
    if _SHA256_RE.fullmatch(lowered) is None:
        raise DistillError(
            f"not a sha256 digest: {sha256!r}",
            hint="digests come from the lock file or an index; the input may be damaged",
        )
    return lowered


def _check_component(kind: str, value: str) -> None:
    if _COMPONENT_RE.fullmatch(value) is None:
        raise DistillError(
            f"invalid cache {kind} {value!r}",
            hint="use letters, digits, '.', '_' and '-' only (this is a bug in distill)",
        )


def _io_error(action: str, path: Path, exc: OSError) -> DistillError:
    return DistillError(
        f"could not {action} {path}: {exc.strerror or exc}",
        hint=f"check free space and permissions there, or set {CACHE_DIR_ENV} to another directory",
    )


class BlobCache:
    """Blobs stored as ``root/blobs/sha256/<hex>``, named by their own content hash."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else cache_root()
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.tmp_dir = self.root / "tmp"
        self.derived_dir = self.root / "derived"
        self._swept = False

    def path(self, sha256: str) -> Path:
        """Where the blob with this digest lives (whether or not it is there yet)."""
        return self.blobs_dir / _normalize(sha256)

    def get(self, sha256: str, size: int | None = None, *, verify: bool = False) -> Path | None:
        """The cached blob, or None when it is missing or fails the size (and, with ``verify``,
        hash) check; a failing entry is deleted so the next fetch replaces it."""
        path = self.path(sha256)
        try:
            actual_size = path.stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _io_error("read cache entry", path, exc) from exc
        if (size is not None and actual_size != size) or (
            verify and sha256_file(path) != _normalize(sha256)
        ):
            # Unlinking is safe against concurrent readers: an open file stays readable.
            path.unlink(missing_ok=True)
            return None
        return path

    def tmp_path(self, prefix: str = "") -> Path:
        """A fresh, empty file in ``root/tmp/`` (same filesystem as the store, so it can be
        renamed into place). The caller owns it and must move or delete it. The first call
        in a process sweeps what killed runs left (see ``sweep``)."""
        stem = _UNSAFE_PREFIX_RE.sub("_", prefix)[:64].rstrip("-") or "blob"
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            self.sweep()
            # O_EXCL: the name is ours even when other processes share the cache.
            return tempfiles.make_file(self.tmp_dir, stem)
        except OSError as exc:
            raise _io_error("create a temporary file in", self.tmp_dir, exc) from exc

    def sweep(self) -> None:
        """Remove the temporaries of runs that are gone (once per process and cache): in
        ``tmp/`` and ``staging/tmp/`` everything is one, in the blob store the hidden
        ``.NAME.PID.RANDOM.tmp`` of a layer being written. A live run's stay."""
        if self._swept:
            return
        self._swept = True
        tempfiles.sweep(self.tmp_dir)
        tempfiles.sweep(self.root / "staging" / "tmp")
        tempfiles.sweep(self.blobs_dir, [LAYER_TEMP_STEM])

    def put_file(self, src: Path, sha256: str, size: int | None) -> Path:
        """Move ``src`` into the store after checking its hash and size. On a mismatch ``src``
        is deleted and DistillError raised; ``src`` is consumed either way."""
        expected = _normalize(sha256)
        try:
            with src.open("rb") as fh:
                actual_size = os.fstat(fh.fileno()).st_size
                actual = _hash_stream(fh)
                _sync(fh)
        except OSError as exc:
            src.unlink(missing_ok=True)
            raise _io_error("read", src, exc) from exc
        if size is not None and actual_size != size:
            src.unlink(missing_ok=True)
            raise DistillError(
                f"size mismatch for {src.name}: expected {size} bytes, got {actual_size}",
                hint="the file is not the one that was asked for; it was not cached",
            )
        if actual != expected:
            src.unlink(missing_ok=True)
            raise DistillError(
                f"hash mismatch for {src.name}: expected {expected}, got {actual}",
                hint="the file is not the one that was asked for; it was not cached",
            )
        return self._install(src, self.blobs_dir / expected)

    def put_bytes(self, data: bytes, sha256: str) -> Path:
        """Store a small in-memory blob after checking its hash."""
        expected = _normalize(sha256)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise DistillError(
                f"hash mismatch for data to cache: expected {expected}, got {actual}",
                hint="the data is not what was asked for; it was not cached",
            )
        return self._write_atomic(self.blobs_dir / expected, data)

    def put_derived(self, namespace: str, key: str, data: bytes) -> Path:
        """Store an artifact computed from other inputs under ``derived/<namespace>/<key>``;
        the key should be a hash of those inputs so stale entries are simply never asked for."""
        _check_component("namespace", namespace)
        _check_component("key", key)
        return self._write_atomic(self.derived_dir / namespace / key, data)

    def get_derived(self, namespace: str, key: str) -> bytes | None:
        _check_component("namespace", namespace)
        _check_component("key", key)
        path = self.derived_dir / namespace / key
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _io_error("read cache entry", path, exc) from exc

    def _write_atomic(self, dest: Path, data: bytes) -> Path:
        tmp = self.tmp_path(dest.name[:16] + "-")
        try:
            with tmp.open("wb") as fh:
                fh.write(data)
                _sync(fh)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _io_error("write", tmp, exc) from exc
        return self._install(tmp, dest)

    def _install(self, src: Path, dest: Path) -> Path:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(src, dest)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # A caller's file on another filesystem: copy it next to the store first so
                # the final step is still an atomic rename.
                staged = self.tmp_path(dest.name[:16] + "-")
                try:
                    shutil.copyfile(src, staged)
                    os.replace(staged, dest)
                finally:
                    staged.unlink(missing_ok=True)
                src.unlink()
        except OSError as exc:
            src.unlink(missing_ok=True)
            raise _io_error("store", dest, exc) from exc
        return dest


def _sync(fh: BinaryIO) -> None:
    # Without fsync a crash soon after the rename can leave a correctly named but empty file
    # (delayed allocation), which a later size-less get() would trust. fsync also works on
    # the read-only handle put_file hashes through.
    fh.flush()
    os.fsync(fh.fileno())
