"""Hostile Node.js components: a tampered tarball in the cache, a lock whose integrity, path
or component does not fit. Each case is one real `distill build` from a real nodejs22 lock
(locked once, from the npm registry) that must end in one clean error, writing no image."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostile_harness import assert_clean_error, run_distill

from distill.cache import BlobCache

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def node_lock(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """A nodejs22 lock (amd64) and its tarball in the shared cache."""
    lock = tmp_path_factory.mktemp("nodelock") / "nodejs22.lock"
    done = subprocess.run(
        [sys.executable, "-m", "distill", "lock", "nodejs22", "--arch", "amd64", "-o", str(lock)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(lock.read_text())
    tarball = BlobCache().path(data["archs"]["amd64"]["components"][0]["sha256"])
    assert tarball.is_file()
    return data, tarball


def _other_integrity() -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(b"not node").digest()).decode()


def _tamper(path: Path) -> None:
    with path.open("r+b") as fh:  # same size: only the digests can tell
        fh.seek(1 << 20)
        byte = fh.read(1)
        fh.seek(1 << 20)
        fh.write(bytes([byte[0] ^ 0xFF]))


Edit = Callable[[dict[str, Any]], None]


def _component(edit: Callable[[dict[str, Any]], None]) -> Edit:
    return lambda lock: edit(lock["archs"]["amd64"]["components"][0])


CASES: dict[str, tuple[str, bool, bool, Edit | None, tuple[str, ...]]] = {
    # name: (preset, cache the tarball, tamper with it, lock edit, what the error names)
    "tampered-tarball-in-cache": ("nodejs22", True, True, None, ("integrity", "removed")),
    "integrity-mismatch-cached": (
        "nodejs22",
        True,
        False,
        _component(lambda c: c.update(integrity=_other_integrity())),
        ("lock's integrity",),
    ),
    "integrity-mismatch-downloaded": (
        "nodejs22",
        False,
        False,
        _component(lambda c: c.update(integrity=_other_integrity())),
        ("integrity", "npm registry"),
    ),
    "integrity-not-sha512": (
        "nodejs22",
        True,
        False,
        _component(lambda c: c.update(integrity="sha1-" + "A" * 27 + "=")),
        ("integrity is not a sha512",),
    ),
    "path-escapes-registry": (
        "nodejs22",
        False,
        False,
        _component(lambda c: c.update(path="../../etc/passwd")),
        ("not a path relative to the registry",),
    ),
    "path-names-a-host": (
        "nodejs22",
        False,
        False,
        _component(lambda c: c.update(path="http://example.invalid/node.tgz")),
        ("not a path relative to the registry",),
    ),
    "node-lock-for-a-spec-without-node": ("cc", True, False, None, ("does not ask for",)),
    "node22-lock-for-nodejs24": ("nodejs24", True, False, None, ("no Node.js 24.x",)),
    "node-removed-from-lock": (
        "nodejs22",
        True,
        False,
        lambda lock: lock["archs"]["amd64"].pop("components"),
        ("no Node.js 22.x",),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_node_component(
    case: str, sandbox: Path, node_lock: tuple[dict[str, Any], Path]
) -> None:
    preset, cached, tamper, edit, mentions = CASES[case]
    data, tarball = node_lock
    lock = json.loads(json.dumps(data))
    if edit is not None:
        edit(lock)
    (sandbox / "x.lock").write_text(json.dumps(lock))
    blob = sandbox / "cache" / "blobs" / "sha256" / tarball.name
    if cached:
        blob.parent.mkdir(parents=True)
        shutil.copyfile(tarball, blob)
        if tamper:
            _tamper(blob)
    outcome = run_distill(
        ["build", preset, "--lock", "x.lock", "-o", "oci-archive:out.tar"], cwd=sandbox
    )
    assert_clean_error(outcome, *mentions)
    assert not (sandbox / "out.tar").exists()
    if tamper:
        assert not blob.exists()  # the altered file is gone: the next run fetches it anew
    elif cached and "integrity" in case:
        assert blob.is_file()  # a wrong lock does not cost a good cached file
