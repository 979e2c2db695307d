from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest

from distill.cache import BlobCache, cache_root, is_sha256, sha256_file
from distill.errors import DistillError

DATA = b"distill cache test blob\n" * 100
SHA = hashlib.sha256(DATA).hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def test_cache_root_prefers_distill_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "explicit"


def test_cache_root_falls_back_to_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DISTILL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "distill"


def test_cache_root_falls_back_to_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISTILL_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    root = cache_root()
    assert root == Path(platformdirs.user_cache_dir("distill", appauthor=False))
    assert root.name == "distill"


def test_blob_cache_defaults_to_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path))
    assert BlobCache().path(SHA) == tmp_path / "blobs" / "sha256" / SHA


def test_put_bytes_then_get(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    assert cache.get(SHA) is None
    stored = cache.put_bytes(DATA, SHA)
    assert stored == tmp_path / "blobs" / "sha256" / SHA
    assert stored.read_bytes() == DATA
    assert cache.get(SHA, len(DATA)) == stored
    assert cache.get(SHA.upper(), verify=True) == stored
    assert _files(tmp_path / "tmp") == []


def test_put_bytes_refuses_wrong_hash(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    with pytest.raises(DistillError, match="hash mismatch"):
        cache.put_bytes(DATA + b"x", SHA)
    assert _files(tmp_path) == []


def test_get_with_wrong_size_drops_entry(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    stored = cache.put_bytes(DATA, SHA)
    assert cache.get(SHA, len(DATA) + 1) is None
    assert not stored.exists()


def test_corrupt_entry_detected_only_when_verifying(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    stored = cache.put_bytes(DATA, SHA)
    # Same length, different bytes: only a re-hash can tell.
    stored.write_bytes(bytes(len(DATA)))
    assert cache.get(SHA, len(DATA)) == stored
    assert cache.get(SHA, len(DATA), verify=True) is None
    assert not stored.exists()
    assert cache.get(SHA) is None


def test_put_file_moves_verified_file(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    src = cache.tmp_path("x-")
    src.write_bytes(DATA)
    stored = cache.put_file(src, SHA, len(DATA))
    assert stored == cache.path(SHA)
    assert sha256_file(stored) == SHA
    assert not src.exists()
    assert _files(tmp_path / "tmp") == []


def test_put_file_accepts_file_outside_tmp(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache")
    src = tmp_path / "elsewhere.bin"
    src.write_bytes(DATA)
    assert cache.put_file(src, SHA, None).read_bytes() == DATA
    assert not src.exists()


def test_put_file_refuses_wrong_hash_and_deletes_src(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    src = cache.tmp_path("x-")
    src.write_bytes(DATA[:-1] + b"?")
    with pytest.raises(DistillError, match=f"hash mismatch .*expected {SHA}"):
        cache.put_file(src, SHA, len(DATA))
    assert not src.exists()
    assert cache.get(SHA) is None
    assert _files(tmp_path) == []


def test_put_file_refuses_wrong_size_and_deletes_src(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    src = cache.tmp_path("x-")
    src.write_bytes(DATA)
    with pytest.raises(DistillError, match="size mismatch"):
        cache.put_file(src, SHA, len(DATA) - 1)
    assert not src.exists()
    assert _files(tmp_path) == []


def test_invalid_digest_rejected(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    assert not is_sha256("../../etc/passwd")
    assert is_sha256(SHA.upper())
    with pytest.raises(DistillError, match="not a sha256"):
        cache.path("../" + SHA[3:])
    with pytest.raises(DistillError, match="not a sha256"):
        cache.get(SHA[:-1])


def test_tmp_paths_are_unique_and_in_tmp_dir(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    paths = {cache.tmp_path("a/b c-") for _ in range(50)}
    assert len(paths) == 50
    for path in paths:
        assert path.parent == tmp_path / "tmp"
        assert path.exists()
        assert "/" not in path.name.removesuffix(".part")


def test_derived_round_trip(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    assert cache.get_derived("packages", "abc123") is None
    path = cache.put_derived("packages", "abc123", b"one")
    assert path == tmp_path / "derived" / "packages" / "abc123"
    assert cache.get_derived("packages", "abc123") == b"one"
    cache.put_derived("packages", "abc123", b"two")
    assert cache.get_derived("packages", "abc123") == b"two"
    assert cache.get_derived("layers", "abc123") is None
    assert _files(tmp_path / "tmp") == []


@pytest.mark.parametrize("namespace,key", [("..", "k"), ("ns", "../k"), ("ns", ""), ("a/b", "k")])
def test_derived_rejects_unsafe_names(tmp_path: Path, namespace: str, key: str) -> None:
    cache = BlobCache(tmp_path)
    with pytest.raises(DistillError, match="invalid cache"):
        cache.put_derived(namespace, key, b"x")
    with pytest.raises(DistillError, match="invalid cache"):
        cache.get_derived(namespace, key)
    assert _files(tmp_path) == []


_WRITER = """
import sys
from pathlib import Path
from distill.cache import BlobCache
cache = BlobCache(Path(sys.argv[1]))
data = Path(sys.argv[2]).read_bytes()
for _ in range(30):
    cache.put_bytes(data, sys.argv[3])
    src = cache.tmp_path("p-")
    src.write_bytes(data)
    cache.put_file(src, sys.argv[3], len(data))
    got = cache.get(sys.argv[3], len(data), verify=True)
    assert got is not None and got.read_bytes() == data
"""


def test_concurrent_processes_store_same_blob(tmp_path: Path) -> None:
    data = DATA * 50
    sha = hashlib.sha256(data).hexdigest()
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    root = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root), str(source), sha],
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    cache = BlobCache(root)
    assert cache.get(sha, len(data), verify=True) is not None
    assert _files(root / "tmp") == []
    assert _files(root / "blobs") == [cache.path(sha)]
