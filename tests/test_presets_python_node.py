"""What distroless users rely on in the python3 and nodejs presets, and in every preset's
time zones, built for real and run under podman (runc).

- python3: ``/usr/bin/python`` is python3 (distroless links it too).
- Old zone names (``US/Eastern``, ``Europe/Kiev``) resolve: Debian 13 moved them into
  tzdata-legacy, which ``static`` (and so every preset) installs; Debian 12's tzdata has them
  itself. The offsets are checked at two fixed instants, one in winter and one in summer.
- nodejs: Debian's node-corepack stays out, node still runs.
- Debian's own ``/etc/os-release`` is kept (scanners key on ``ID``/``VERSION_ID``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from test_lock import run_cli
from test_presets_run import _image_paths, podman

pytestmark = [pytest.mark.network, pytest.mark.container]

WINTER, SUMMER = 1700000000, 1690000000  # 2023-11-14 and 2023-07-22, UTC
OFFSETS = {  # zone → hours east of UTC at WINTER, SUMMER
    "US/Eastern": (-5, -4),
    "Europe/Kiev": (2, 3),
    "America/New_York": (-5, -4),
}
PY_OFFSETS = (
    "import json, time; "
    f"print(json.dumps([time.localtime(t).tm_gmtoff // 3600 for t in ({WINTER}, {SUMMER})]))"
)
PY_UTF8 = (
    "import sys; open('h\\xe9llo', 'w'); "
    "print(sys.getfilesystemencoding(), sys.stdout.encoding, 'h\\xe9llo')"
)
PY_RELEASE = (
    "import json, platform; "
    "r = platform.freedesktop_os_release(); "
    "print(json.dumps({k: r.get(k) for k in ('ID', 'VERSION_ID', 'VERSION_CODENAME')}))"
)


def _lock(ref: str, suite: str, tmp: Path) -> tuple[Path, dict[str, str], list[str]]:
    lock = tmp / f"{suite}.lock"
    proc = run_cli("-q", "lock", ref, "--suite", suite, "--arch", "amd64", "-o", str(lock))
    assert proc.returncode == 0, proc.stderr
    arch = json.loads(lock.read_text())["archs"]["amd64"]
    packages = {p["name"]: p["version"] for p in arch["packages"]}
    return lock, packages, [e["name"] for e in arch["excluded"]]


def _build(ref: str, suite: str, lock: Path, dest: str) -> None:
    args = ("-q", "build", ref, "--suite", suite, "--arch", "amd64", "--lock", str(lock))
    proc = run_cli(*args, "-o", dest)
    assert proc.returncode == 0, proc.stderr


@contextmanager
def _loaded(archive: Path) -> Iterator[str]:
    tag = f"localhost/distill-test-{uuid.uuid4().hex[:12]}:parity"
    loaded = podman("load", "-q", "-i", str(archive)).stdout.strip().split()[-1]
    podman("tag", loaded, tag)
    try:
        yield tag
    finally:
        podman("rmi", "-f", tag, check=False)


def _run(image: str, *args: str, env: dict[str, str] | None = None) -> str:
    flags = [f"--env={key}={value}" for key, value in (env or {}).items()]
    proc = podman("run", "--rm", "--network", "none", *flags, image, *args, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("suite", ["trixie", "bookworm"])
def test_python3_links_python_and_resolves_old_zone_names(suite: str, tmp_path: Path) -> None:
    lock, packages, _ = _lock("python3", suite, tmp_path)
    # tzdata-legacy exists only in Debian 13; Debian 12's tzdata carries the old names.
    assert ("tzdata-legacy" in packages) is (suite == "trixie")
    archive = tmp_path / "python3.tar"
    _build("python3", suite, lock, f"docker-archive:{archive}")
    oci = tmp_path / "python3.oci.tar"
    _build("python3", suite, lock, f"oci-archive:{oci}")
    paths = _image_paths(oci, tmp_path)
    assert "usr/share/zoneinfo/US/Eastern" in paths
    assert not any(p.startswith("usr/share/zoneinfo/right") for p in paths)  # keep: tz_right

    with _loaded(archive) as image:
        version = _run(image, "--version")
        assert version.startswith("Python 3.")
        entry = ["--entrypoint", "/usr/bin/python", image, "--version"]
        proc = podman("run", "--rm", "--network", "none", *entry, check=False)
        assert proc.returncode == 0 and proc.stdout.strip() == version, proc.stderr

        for zone, want in OFFSETS.items():
            got = json.loads(_run(image, "-c", PY_OFFSETS, env={"TZ": zone}))
            assert tuple(got) == want, zone
        # An unknown name falls back to UTC silently: the check above can fail.
        assert json.loads(_run(image, "-c", PY_OFFSETS, env={"TZ": "No/Such_Zone"})) == [0, 0]

        # distroless sets LANG=C.UTF-8 for this; Python's C-locale coercion gives the same.
        assert _run(image, "-c", PY_UTF8) == "utf-8 utf-8 h\u00e9llo"

        release = json.loads(_run(image, "-c", PY_RELEASE))
        number = {"trixie": "13", "bookworm": "12"}[suite]
        assert release == {"ID": "debian", "VERSION_ID": number, "VERSION_CODENAME": suite}


def test_nodejs_has_no_corepack(tmp_path: Path) -> None:
    lock, packages, excluded = _lock("nodejs", "trixie", tmp_path)
    assert "nodejs" in packages
    assert "node-corepack" not in packages and "node-corepack" in excluded
    oci = tmp_path / "nodejs.oci.tar"
    _build("nodejs", "trixie", lock, f"oci-archive:{oci}")
    paths = _image_paths(oci, tmp_path)
    assert "usr/bin/node" in paths
    assert not [p for p in paths if "corepack" in p]
    # distill's own reading of the image agrees: no corepack package, Debian's os-release kept.
    bom = tmp_path / "sbom.json"
    proc = run_cli("-q", "sbom", f"oci-archive:{oci}", "--format", "cyclonedx-json", "-o", str(bom))
    assert proc.returncode == 0, proc.stderr
    names = {c["name"] for c in json.loads(bom.read_text())["components"]}
    assert "nodejs" in names and not {n for n in names if "corepack" in n}
    proc = run_cli("-q", "inspect", "--json", f"oci-archive:{oci}")
    assert proc.returncode == 0, proc.stderr
    os_release = json.loads(proc.stdout)["os"]
    assert (os_release["id"], os_release["version_id"]) == ("debian", "13")
    assert os_release["source"] == "/etc/os-release"

    archive = tmp_path / "nodejs.tar"
    _build("nodejs", "trixie", lock, f"docker-archive:{archive}")
    with _loaded(archive) as image:
        js = "console.log(process.versions.node, require('zlib').gzipSync('x').length > 0)"
        out = _run(image, "-e", js)
        assert out.split() == [packages["nodejs"].split("+")[0].split("-")[0], "true"]
        proc = podman(
            "run", "--rm", "--network", "none", image, "-e", "require('corepack')", check=False
        )
        assert proc.returncode != 0 and "Cannot find module 'corepack'" in proc.stderr
