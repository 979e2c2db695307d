"""The archive client refuses anything it cannot verify, and caches nothing of it."""

from __future__ import annotations

import lzma
import os
import subprocess
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests

from cache_helpers import cache_files
from distill.cache import BlobCache
from distill.debian.archive import (
    fetch_release,
    load_indices,
    parse_release,
    verify_inrelease,
)
from distill.debian.mirror import Mirrors, discover_mirrors
from distill.errors import DistillError


def _gpg(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--yes", *args],
        input=stdin,
        capture_output=True,
        check=True,
    ).stdout


@pytest.fixture(scope="module")
def test_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway signing key: (GNUPGHOME, exported public keyring)."""
    home = tmp_path_factory.mktemp("gnupg")
    os.chmod(home, 0o700)
    _gpg(
        home,
        "--passphrase",
        "",
        "--quick-gen-key",
        "distill test <t@example.invalid>",
        "ed25519",
        "sign",
        "1d",
    )
    keyring = home / "test-keyring.gpg"
    keyring.write_bytes(_gpg(home, "--export"))
    return home, keyring


def _release_text(date: datetime, valid_until: datetime | None, packages_xz: bytes) -> str:
    import hashlib

    lines = [
        "Origin: Test",
        "Suite: testing",
        "Codename: trixie",
        f"Date: {format_datetime(date, usegmt=True)}",
    ]
    if valid_until:
        lines.append(f"Valid-Until: {format_datetime(valid_until, usegmt=True)}")
    lines += [
        "Acquire-By-Hash: no",
        "SHA256:",
        f" {hashlib.sha256(packages_xz).hexdigest()} {len(packages_xz)} "
        "main/binary-amd64/Packages.xz",
    ]
    return "\n".join(lines) + "\n"


PACKAGES = """\
Package: hello
Version: 1.0-1
Architecture: amd64
Filename: pool/main/h/hello/hello_1.0-1_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000000
Description: test

"""


def _publish(root: Path, home: Path, release: str, packages_xz: bytes) -> None:
    dists = root / "dists/trixie"
    (dists / "main/binary-amd64").mkdir(parents=True)
    (dists / "main/binary-amd64/Packages.xz").write_bytes(packages_xz)
    (dists / "InRelease").write_bytes(_gpg(home, "--clearsign", stdin=release.encode()))


def test_signed_by_test_key_is_accepted(
    test_key: tuple[Path, Path],
    local_mirror: tuple[str, Path],
    private_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home, keyring = test_key
    url, root = local_mirror
    xz = lzma.compress(PACKAGES.encode(), format=lzma.FORMAT_XZ)
    now = datetime.now(UTC).replace(microsecond=0)
    _publish(root, home, _release_text(now, now + timedelta(days=7), xz), xz)
    monkeypatch.setenv("DISTILL_KEYRING", str(keyring))
    [index] = load_indices("trixie", "amd64", Mirrors(url, None), pockets=("trixie",))
    assert index.date == now
    assert [p.name for p in index.packages] == ["hello"]


def test_expired_valid_until_refused(
    test_key: tuple[Path, Path],
    local_mirror: tuple[str, Path],
    private_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home, keyring = test_key
    url, root = local_mirror
    xz = lzma.compress(PACKAGES.encode(), format=lzma.FORMAT_XZ)
    past = datetime.now(UTC) - timedelta(days=30)
    _publish(root, home, _release_text(past, past + timedelta(days=7), xz), xz)
    monkeypatch.setenv("DISTILL_KEYRING", str(keyring))
    with pytest.raises(DistillError, match="expired"):
        load_indices("trixie", "amd64", Mirrors(url, None), pockets=("trixie",))
    assert cache_files(private_cache) == []


def test_unknown_signer_refused(
    test_key: tuple[Path, Path], local_mirror: tuple[str, Path], private_cache: Path
) -> None:
    # Signed, but by a key that is not in the Debian archive keyring.
    home, _ = test_key
    url, root = local_mirror
    xz = lzma.compress(PACKAGES.encode(), format=lzma.FORMAT_XZ)
    _publish(root, home, _release_text(datetime.now(UTC), None, xz), xz)
    with pytest.raises(DistillError, match="signature check failed"):
        load_indices("trixie", "amd64", Mirrors(url, None), pockets=("trixie",))
    assert cache_files(private_cache) == []


def test_unsigned_text_refused(tmp_path: Path, test_key: tuple[Path, Path]) -> None:
    _, keyring = test_key
    with pytest.raises(DistillError, match="signature check failed"):
        verify_inrelease(b"Origin: Debian\nDate: Sat, 01 Jan 2000 00:00:00 UTC\n", "x", keyring)


def test_parse_release_fields() -> None:
    text = (
        "Origin: Debian\nDate: Sat, 21 Nov 2026 09:15:44 UTC\n"
        "Valid-Until: Sat, 28 Nov 2026 09:15:44 UTC\nAcquire-By-Hash: yes\nSHA256:\n"
        " " + "a" * 64 + " 123 main/binary-amd64/Packages.xz\n"
    )
    release = parse_release(text, "trixie")
    assert release.date == datetime(2026, 11, 21, 9, 15, 44, tzinfo=UTC)
    assert release.valid_until == datetime(2026, 11, 28, 9, 15, 44, tzinfo=UTC)
    assert release.acquire_by_hash
    assert release.files["main/binary-amd64/Packages.xz"].size == 123


# --- the real archive ------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_inrelease() -> tuple[Mirrors, bytes]:
    mirrors = discover_mirrors()
    data = requests.get(f"{mirrors.main}/dists/trixie/InRelease", timeout=30).content
    return mirrors, data


@pytest.mark.network
def test_real_inrelease_verifies(real_inrelease: tuple[Mirrors, bytes]) -> None:
    mirrors, _ = real_inrelease
    with requests.Session() as session:
        release = fetch_release(mirrors.main, "trixie", session)
    assert release.acquire_by_hash
    assert "main/binary-amd64/Packages.xz" in release.files
    assert release.date > datetime(2025, 8, 1, tzinfo=UTC)


@pytest.mark.network
def test_tampered_inrelease_refused_and_not_cached(
    real_inrelease: tuple[Mirrors, bytes], local_mirror: tuple[str, Path], private_cache: Path
) -> None:
    _, data = real_inrelease
    url, root = local_mirror
    # Change one byte inside the signed text (a digit of the Date line).
    pos = data.index(b"Date: ") + len(b"Date: Sat, 2")
    tampered = data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :]
    assert len(tampered) == len(data) and tampered != data
    (root / "dists/trixie").mkdir(parents=True)
    (root / "dists/trixie/InRelease").write_bytes(tampered)
    with pytest.raises(DistillError, match="signature check failed"):
        load_indices("trixie", "amd64", Mirrors(url, None), pockets=("trixie",))
    assert cache_files(private_cache) == []


@pytest.mark.network
def test_packages_with_wrong_hash_refused_and_not_cached(
    real_inrelease: tuple[Mirrors, bytes], local_mirror: tuple[str, Path], private_cache: Path
) -> None:
    # A genuine, signed InRelease, but the mirror serves a different Packages.xz.
    _, data = real_inrelease
    url, root = local_mirror
    dists = root / "dists/trixie"
    dists.mkdir(parents=True)
    (dists / "InRelease").write_bytes(data)
    text = verify_inrelease(data, "InRelease")
    entry = parse_release(text, "trixie").files["main/binary-amd64/Packages.xz"]
    by_hash = dists / "main/binary-amd64/by-hash/SHA256" / entry.sha256
    by_hash.parent.mkdir(parents=True)
    by_hash.write_bytes(b"\0" * entry.size)  # right size, wrong content
    with pytest.raises(DistillError, match=r"(?i)hash"):
        load_indices("trixie", "amd64", Mirrors(url, None), pockets=("trixie",))
    assert cache_files(private_cache) == []
    assert BlobCache().get(entry.sha256) is None
