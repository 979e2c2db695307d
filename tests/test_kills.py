"""Killing distill: what SIGTERM and SIGKILL leave behind, and that the next run recovers.

SIGTERM unwinds (cli.main): the run's spool directories and half-written outputs go with it.
SIGKILL cannot be caught: the acceptance test kills ``distill build static`` at random points
(into an oci-archive, then pushing to a loopback registry) and checks that the next run
succeeds with the same digest, sweeps every temporary the killed runs left, that every cache
entry still matches its hash, and that no killed push left a tag to a partial image.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import requests

from analyze_images import OS_RELEASE, file, simple_image
from distill.image.fsentry import FsEntry
from distill.image.layer_blob import Compression
from distill.transports._write import write_docker_archive, write_oci_archive
from registry_fixtures import Registry, registry  # noqa: F401  (the fixture is used by name)

KILLS = 15  # per kind of run
SEED = int(os.environ.get("DISTILL_KILL_SEED", "20261204"))
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _start(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "distill", *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _run(args: list[str], env: Mapping[str, str], cwd: Path) -> tuple[float, str]:
    start = time.monotonic()
    proc = _start(args, env, cwd)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"distill {' '.join(args)}:\n{err.decode()[-3000:]}"
    return time.monotonic() - start, out.decode().strip()


# --- SIGTERM -----------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a private cache and TMPDIR inside it."""
    root = tmp_path / "sandbox"
    (root / "tmp").mkdir(parents=True)
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("TMPDIR", str(root / "tmp"))
    return root


def _big_jars() -> list[FsEntry]:
    # Jars above the 8 MiB spool threshold: cataloguing spools them to $TMPDIR.
    return [file("etc/os-release", OS_RELEASE)] + [
        file(f"app/lib{i}.jar", b"PK\x03\x04" + bytes(24 << 20)) for i in range(4)
    ]


def _terminate_when(proc: subprocess.Popen[bytes], tmpdir: Path, prefix: str) -> bool:
    """SIGTERM ``proc`` as soon as a ``prefix`` temporary appears in ``tmpdir``; False if
    the run ended first."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if any(name.startswith(prefix) for name in os.listdir(tmpdir)):
            proc.send_signal(signal.SIGTERM)
            return True
        time.sleep(0.002)
    return False


def test_sigterm_while_spooling_removes_the_spool(sandbox: Path) -> None:
    image = simple_image(sandbox / "blobs", _big_jars(), compression=Compression.NONE)
    write_oci_archive(image, sandbox / "big.tar")
    shutil.rmtree(sandbox / "blobs")
    tmpdir = sandbox / "tmp"
    proc = _start(["sbom", "big.tar", "-o", "sbom.json"], {}, sandbox)
    terminated = _terminate_when(proc, tmpdir, "distill-spool")
    _, err = proc.communicate(timeout=60)
    assert terminated, err.decode()
    assert proc.returncode == 143, err.decode()
    assert os.listdir(tmpdir) == []
    assert not (sandbox / "sbom.json").exists()


@pytest.fixture
def podman_big_image(sandbox: Path) -> Iterator[str]:
    if shutil.which("podman") is None:
        pytest.skip("needs podman")
    name = f"localhost/distill-kills-{uuid.uuid4().hex[:12]}:1"
    image = simple_image(sandbox / "blobs", _big_jars(), compression=Compression.NONE)
    archive = sandbox / "big-docker.tar"
    write_docker_archive(image, archive, tag=name)
    shutil.rmtree(sandbox / "blobs")
    subprocess.run(["podman", "load", "-q", "-i", str(archive)], check=True, capture_output=True)
    archive.unlink()
    try:
        yield name
    finally:
        subprocess.run(["podman", "rmi", "--force", name], capture_output=True, check=False)


@pytest.mark.container
def test_sigterm_during_podman_save_removes_the_saved_image(
    sandbox: Path, podman_big_image: str
) -> None:
    """The issue's 212 MB leftover: containers-storage: saves the image to a temporary
    directory, which SIGTERM while podman was writing left in $TMPDIR."""
    tmpdir = sandbox / "tmp"
    proc = _start(["sbom", f"containers-storage:{podman_big_image}"], {}, sandbox)
    terminated = _terminate_when(proc, tmpdir, "distill-inspect")
    _, err = proc.communicate(timeout=60)
    assert terminated, err.decode()
    assert proc.returncode == 143, err.decode()
    assert os.listdir(tmpdir) == []  # podman's own staging was inside ours


# --- SIGKILL: the acceptance test ----------------------------------------------------------


def _temporaries(root: Path) -> list[Path]:
    """Every temporary distill could have left under ``root`` (a cache or an output dir)."""
    found = []
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        in_tmp = parts[0] == "tmp" or parts[:2] == ("staging", "tmp")
        if (in_tmp and path.is_file()) or path.name.endswith((".tmp", ".part")):
            found.append(path)
    return found


def _check_cache(cache: Path) -> int:
    """Every content-addressed entry matches its name; returns how many were checked."""
    checked = 0
    for path in [*(cache / "blobs" / "sha256").iterdir(), *(cache / "staging").glob("??/*")]:
        if _HEX64.fullmatch(path.name):
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
            assert digest.hexdigest() == path.name, f"{path} does not match its name"
            checked += 1
    return checked


def _kill_at(
    rng: random.Random, args: list[str], env: Mapping[str, str], cwd: Path, span: float
) -> tuple[float, int | None, float]:
    """Start ``args`` and SIGKILL it after a random part of ``span`` seconds. Returns the
    delay drawn, the exit code, and the span to draw from next time: a run that finished
    before its kill point shows the machine is faster now than when ``span`` was measured
    (its speed drifts by the hour), so later kills are drawn from the shorter time."""
    delay = rng.uniform(0, span)
    start = time.monotonic()
    proc = _start(args, env, cwd)
    try:
        proc.wait(delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    if proc.returncode != -signal.SIGKILL:
        span = min(span, 0.9 * (time.monotonic() - start))
    return delay, proc.returncode, span


def _tags(reg: Registry, repo: str) -> list[str]:
    got = requests.get(f"http://{reg.host}/v2/{repo}/tags/list", timeout=30)
    if got.status_code == 404:
        return []
    got.raise_for_status()
    return list(got.json().get("tags") or [])


def _complete(reg: Registry, repo: str, tag: str) -> bool:
    accept = "application/vnd.oci.image.manifest.v1+json"
    got = requests.get(
        f"http://{reg.host}/v2/{repo}/manifests/{tag}", headers={"Accept": accept}, timeout=30
    )
    if got.status_code != 200:
        return False
    manifest = got.json()
    digests = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    return all(
        requests.head(f"http://{reg.host}/v2/{repo}/blobs/{d}", timeout=30).status_code == 200
        for d in digests
    )


@pytest.mark.network
@pytest.mark.container
def test_sigkill_at_random_points_then_the_next_run_recovers(
    tmp_path: Path,
    registry: Registry,  # noqa: F811
) -> None:
    print(f"kill seed: {SEED} (set DISTILL_KILL_SEED to replay)")
    rng = random.Random(SEED)
    cache, tmpdir, out = tmp_path / "cache", tmp_path / "tmp", tmp_path / "out"
    for directory in (tmpdir, out):
        directory.mkdir()
    env = {"DISTILL_CACHE_DIR": str(cache), "TMPDIR": str(tmp_path / "tmp")}
    # The cache warmed once: the lock and the .debs. Unpacking and layers are left to the
    # runs that get killed, so the kills land in every phase of a build.
    _run(["lock", "static", "-o", "static.lock"], env, tmp_path)
    _run(["fetch", "static.lock"], env, tmp_path)
    # An uninterrupted run (on a copy of that cache) measures the span to draw kills from.
    measure = tmp_path / "measure-cache"
    shutil.copytree(cache, measure)
    measure_env = {**env, "DISTILL_CACHE_DIR": str(measure)}
    build = ["build", "static", "--lock", "static.lock"]
    span, digest = _run([*build, "-o", "oci-archive:out/measure.tar"], measure_env, tmp_path)
    repo = f"kills-{uuid.uuid4().hex[:8]}"
    # Another repository: the killed pushes must upload their blobs, not find them there.
    measured = f"docker://{registry.host}/{repo}-measure:1"
    push_span, _ = _run([*build, "-o", measured], measure_env, tmp_path)
    (out / "measure.tar").unlink()
    print(f"uninterrupted: build {span:.2f}s, push {push_span:.2f}s")

    killed = seen = 0
    args = [*build, "-o", "oci-archive:out/image.tar"]
    for _ in range(6 * KILLS):  # a run that ends before its kill point does not count
        delay, code, span = _kill_at(rng, args, env, tmp_path, span)
        now = len(_temporaries(cache)) + sum(p.name.endswith(".tmp") for p in out.iterdir())
        seen += now
        print(f"build killed after {delay:.2f}s: exit {code}, {now} temporaries left")
        killed += code == -signal.SIGKILL
        if killed == KILLS:
            break
    left = _temporaries(cache) + [p for p in out.iterdir() if p.name.endswith(".tmp")]
    print(f"{killed} builds killed; {seen} temporaries seen after kills, {len(left)} at the end")
    _, again = _run([*build, "-o", "oci-archive:out/image.tar"], env, tmp_path)
    assert again == digest
    assert sorted(os.listdir(out)) == ["image.tar"]
    assert _temporaries(cache) == []

    pushes: dict[str, int | None] = {}
    for i in range(6 * KILLS):
        tag = f"k{i}"
        args = [*build, "-o", f"docker://{registry.host}/{repo}:{tag}"]
        delay, code, push_span = _kill_at(rng, args, env, tmp_path, push_span)
        pushes[tag] = code
        print(f"push killed after {delay:.2f}s: exit {code}")
        if sum(c == -signal.SIGKILL for c in pushes.values()) == KILLS:
            break
    killed += sum(c == -signal.SIGKILL for c in pushes.values())
    # A killed push leaves no tag, or (killed after its manifest was accepted, the last
    # step) a tag to a complete image: never one to a partial image.
    tags = set(_tags(registry, repo))
    for tag, code in pushes.items():
        if code != 0 and tag in tags:
            assert _complete(registry, repo, tag), f"killed push left a partial {tag}"
    assert all(_complete(registry, repo, tag) for tag in tags)
    left_tags = sorted(t for t, c in pushes.items() if c != 0 and t in tags)
    print(f"tags after the kills: {sorted(tags)}; of killed pushes: {left_tags}")
    _, pushed = _run([*build, "-o", f"docker://{registry.host}/{repo}:final"], env, tmp_path)
    assert pushed == digest
    assert _complete(registry, repo, "final")
    assert _temporaries(cache) == [] and os.listdir(tmpdir) == []
    checked = _check_cache(cache)
    print(f"{killed} runs killed; {checked} cache entries match their hashes")
    assert checked > 0 and killed == 2 * KILLS
