"""A signed local Debian mirror of .debs built with dpkg-deb, for the changelog tests.

Each pocket gets an InRelease clearsigned with a throwaway key and a Packages.xz made from
the .debs' own control files, as a real archive would list them.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path


def gpg(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--yes", *args],
        input=stdin,
        capture_output=True,
        check=True,
    ).stdout


def make_key(home: Path) -> Path:
    """A throwaway signing key in ``home``; returns the exported public keyring."""
    os.chmod(home, 0o700)
    gpg(home, "--passphrase", "", "--quick-gen-key", "changelog test", "ed25519", "sign", "1d")
    keyring = home / "keyring.gpg"
    keyring.write_bytes(gpg(home, "--export"))
    return keyring


def gz(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return gzip.compress(data, mtime=0)


@dataclass
class Deb:
    name: str
    version: str
    arch: str = "amd64"
    source: str = ""  # "name" or "name (version)"; empty: same as the package
    files: dict[str, bytes] = field(default_factory=dict)  # path → content
    links: dict[str, str] = field(default_factory=dict)  # path → symlink target

    def build(self, out_dir: Path) -> Path:
        root = out_dir / f"root-{self.name}-{self.version.replace(':', '_')}-{self.arch}"
        (root / "DEBIAN").mkdir(parents=True)
        control = [
            f"Package: {self.name}",
            f"Version: {self.version}",
            f"Architecture: {self.arch}",
            "Maintainer: Test <test@example.invalid>",
        ]
        if self.source:
            control.append(f"Source: {self.source}")
        control.append("Description: a package for the changelog tests")
        (root / "DEBIAN/control").write_text("\n".join(control) + "\n")
        for path, data in self.files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
        for path, target in self.links.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).symlink_to(target)
        deb = out_dir / f"{self.name}_{self.version.replace(':', '_')}_{self.arch}.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
            check=True,
            capture_output=True,
        )
        return deb


def _stanza(deb: Path, pool: str) -> str:
    control = subprocess.run(
        ["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True
    ).stdout.rstrip("\n")
    data = deb.read_bytes()
    return (
        f"{control}\nFilename: {pool}\nSize: {len(data)}\n"
        f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
    )


def publish(root: Path, home: Path, pockets: dict[str, list[Path]]) -> None:
    """Put the .debs in ``root``'s pool and sign an index for each pocket."""
    now = datetime.now(UTC).replace(microsecond=0)
    for pocket, debs in pockets.items():
        stanzas = []
        for deb in debs:
            pool = f"pool/main/{pocket}/{deb.name}"
            (root / pool).parent.mkdir(parents=True, exist_ok=True)
            (root / pool).write_bytes(deb.read_bytes())
            stanzas.append(_stanza(deb, pool))
        xz = lzma.compress("\n".join(stanzas).encode(), format=lzma.FORMAT_XZ)
        dists = root / "dists" / pocket
        (dists / "main/binary-amd64").mkdir(parents=True, exist_ok=True)
        (dists / "main/binary-amd64/Packages.xz").write_bytes(xz)
        release = "\n".join(
            [
                "Origin: Test",
                f"Codename: {pocket}",
                f"Date: {format_datetime(now, usegmt=True)}",
                f"Valid-Until: {format_datetime(now + timedelta(days=7), usegmt=True)}",
                "SHA256:",
                f" {hashlib.sha256(xz).hexdigest()} {len(xz)} main/binary-amd64/Packages.xz",
            ]
        )
        inrelease = gpg(home, "--clearsign", stdin=(release + "\n").encode())
        (dists / "InRelease").write_bytes(inrelease)


def entry(source: str, version: str, dist: str, *lines: str, options: str = "") -> str:
    """A changelog entry as dch writes it."""
    body = "\n".join(f"  * {line}" for line in lines) or "  * No change."
    extra = f", {options}" if options else ""
    return (
        f"{source} ({version}) {dist}; urgency=medium{extra}\n\n{body}\n\n"
        " -- Test Maintainer <test@example.invalid>  Mon, 01 Jan 2024 00:00:00 +0000\n\n"
    )
