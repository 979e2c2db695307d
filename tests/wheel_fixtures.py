"""Wheels, sdists and a PEP 503 package index made by the tests themselves, so Python
packaging can be tested offline and honestly: pip and distill see real files."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from distill.package.plan import BaseFacts

TRIXIE = BaseFacts(
    arch="amd64",
    suite="trixie",
    files=frozenset(),
    symlinks={},
    packages={"python3.13": "3.13.5-2", "libc6": "2.41-12"},
    python="3.13",
    glibc="2.41",
)
BOOKWORM = BaseFacts(
    arch="amd64",
    suite="bookworm",
    files=frozenset(),
    symlinks={},
    packages={"python3.11": "3.11.2-6+deb12u6", "libc6": "2.36-9+deb12u13"},
    python="3.11",
    glibc="2.36",
)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    tag: str = "py3-none-any",
    files: Mapping[str, str | bytes] | None = None,
    requires: Sequence[str] = (),
    extras: Sequence[str] = (),
    console_scripts: Mapping[str, str] | None = None,
) -> Path:
    """A wheel with METADATA, WHEEL, RECORD and ``files`` (default: a module named after
    the project). Returns its path."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    contents: dict[str, bytes] = {}
    for path, data in (files or {f"{dist}/__init__.py": f"VERSION = {version!r}\n"}).items():
        contents[path] = data.encode() if isinstance(data, str) else data
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Provides-Extra: {e}" for e in extras]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    contents[f"{info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    purelib = "true" if tag.endswith("-none-any") else "false"
    wheel = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n"
    contents[f"{info}/WHEEL"] = wheel.encode()
    if console_scripts:
        lines = ["[console_scripts]", *(f"{k} = {v}" for k, v in console_scripts.items())]
        contents[f"{info}/entry_points.txt"] = ("\n".join(lines) + "\n").encode()
    record = [f"{p},{_record_hash(d)},{len(d)}" for p, d in contents.items()]
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in contents.items():
            zf.writestr(member, data)
    return path


def make_sdist(directory: Path, name: str, version: str) -> Path:
    """A source distribution: what a project without wheels publishes."""
    dist = name.replace("-", "_")
    top = f"{dist}-{version}"
    members = {
        f"{top}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{top}/pyproject.toml": f'[project]\nname = "{name}"\nversion = "{version}"\n',
        f"{top}/{dist}/__init__.py": "",
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, text in members.items():
            data = text.encode()
            item = tarfile.TarInfo(member)
            item.size = len(data)
            tar.addfile(item, io.BytesIO(data))
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def simple_index(root: Path, files: Sequence[Path]) -> None:
    """A PEP 503 index under ``root/simple`` linking ``files`` (kept in ``root/files``)."""
    by_project: dict[str, list[Path]] = {}
    (root / "files").mkdir(parents=True, exist_ok=True)
    for path in files:
        target = root / "files" / path.name
        if path != target:
            target.write_bytes(path.read_bytes())
        project = path.name.split("-", 1)[0]
        by_project.setdefault(str(canonicalize_name(project)), []).append(target)
    for project, paths in by_project.items():
        page = root / "simple" / project
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="../../files/{p.name}#sha256={sha256_of(p)}">{p.name}</a>\n' for p in paths
        )
        (page / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")


def isolate_pip(
    monkeypatch: pytest.MonkeyPatch, index_url: str | None = None, find_links: Path | None = None
) -> None:
    """pip reads no configuration file and looks only where the test says."""
    for name in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    if index_url is not None:
        monkeypatch.setenv("PIP_INDEX_URL", index_url)
    else:
        monkeypatch.setenv("PIP_NO_INDEX", "1")
    if find_links is not None:
        monkeypatch.setenv("PIP_FIND_LINKS", str(find_links))
