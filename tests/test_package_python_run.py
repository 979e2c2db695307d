"""A Python web app end to end: a Flask server (Flask from PyPI; MarkupSafe's compiled C
speedups) written here, locked with ``distill lock``, packaged with ``distill package`` on
python3:nonroot (trixie, Python 3.13) and on bookworm (Python 3.11), pushed to a loopback
registry, pulled and run with ``podman run -p``; an HTTP request gets the expected body.

The body's expectations come from the test's own input: the name sent is escaped by the
server with MarkupSafe and compared with the standard library's ``html.escape`` of it; the
server reports which Python runs it and that MarkupSafe's C extension is loaded.
"""

# ruff: noqa: F811  (fixtures are imported, then named as test parameters)
from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostile.hostile_harness import assert_clean_error, run_distill
from package_checks import assert_no_tools, layer_digests
from registry_fixtures import Registry, free_port, registry  # noqa: F401
from test_presets_run import podman
from wheel_fixtures import make_sdist, make_wheel

pytestmark = [pytest.mark.network, pytest.mark.container]

SERVER = """\
import sys

import markupsafe
from flask import Flask, request
from markupsafe import _speedups  # the C extension: only in a compiled wheel

app = Flask(__name__)


@app.get("/greet")
def greet():
    v = sys.version_info
    name = markupsafe.escape(request.args["name"])
    return f"hello {name} from Python {v.major}.{v.minor}, {_speedups.__name__}\\n"


def main():
    app.run(host="0.0.0.0", port=8080)
"""
PYPROJECT = """\
[project]
name = "hello"
version = "0.1"
dependencies = ["flask>=3"]

[project.scripts]
hello = "hello.server:main"
"""
NAME = "<b>Tom & Jerry</b>"
PYTHONS = {"trixie": "3.13", "bookworm": "3.11"}  # the facts about the two bases


def make_flask_app(root: Path) -> Path:
    app = root / "hello-app"
    (app / "hello").mkdir(parents=True)
    (app / "hello" / "__init__.py").write_text("")
    (app / "hello" / "server.py").write_text(SERVER)
    (app / "pyproject.toml").write_text(PYPROJECT)
    return app


def distill(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "distill", "-q", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def pulled() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        podman("rmi", "-f", name, check=False)


def _get(url: str, wait: float = 60.0) -> str:
    """The body at ``url``, retrying while the server starts."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body: bytes = response.read()
                return body.decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _serve_and_ask(image: str) -> str:
    port = free_port()
    name = f"distill-py-{uuid.uuid4().hex[:12]}"
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", image)
    try:
        query = urllib.parse.urlencode({"name": NAME})
        return _get(f"http://127.0.0.1:{port}/greet?{query}")
    finally:
        logs = podman("logs", name, check=False)
        podman("rm", "-f", name, check=False)
        print(logs.stdout, logs.stderr)


@pytest.mark.parametrize("suite", ["trixie", "bookworm"])
def test_flask_app_runs_from_a_registry(
    suite: str, tmp_path: Path, registry: Registry, pulled: list[str]
) -> None:
    app = make_flask_app(tmp_path)
    distill("lock", str(app), "--suite", suite)
    lock = json.loads((app / "distill.lock").read_text())
    pypi = {p["name"].lower(): p for p in lock["languagePackages"] if p["ecosystem"] == "pypi"}
    assert {"flask", "werkzeug", "markupsafe", "jinja2"} <= set(pypi)
    cp = f"cp{PYTHONS[suite].replace('.', '')}"
    assert f"-{cp}-{cp}-manylinux" in pypi["markupsafe"]["source"]  # the compiled wheel

    ref = f"docker://{registry.host}/python/hello-{suite}:1"
    distill("package", str(app), "--suite", suite, "--port", "8080", "-o", ref)
    image = podman("pull", "-q", "--tls-verify=false", ref).stdout.strip()
    pulled.append(image)
    body = _serve_and_ask(image)
    expected = f"hello {html.escape(NAME)} from Python {PYTHONS[suite]}, markupsafe._speedups\n"
    assert body == expected
    assert_no_tools(ref)

    # The SBOM names exactly the locked wheels as pypi purls.
    sbom = json.loads(distill("sbom", ref, "--format", "cyclonedx-json").stdout)
    purls = {c["purl"] for c in sbom["components"] if c.get("purl", "").startswith("pkg:pypi/")}
    assert {p.split("@")[0].lower() for p in purls} == {f"pkg:pypi/{n}" for n in pypi}


def test_app_change_rebuilds_only_the_app_layer(tmp_path: Path) -> None:
    app = make_flask_app(tmp_path)
    distill("lock", str(app))
    first, second = tmp_path / "one", tmp_path / "two"
    distill("package", str(app), "-o", f"oci:{first}")
    server = app / "hello" / "server.py"
    server.write_text(server.read_text().replace("hello {name}", "hi {name}"))
    distill("package", str(app), "-o", f"oci:{second}")
    before, after = layer_digests(first), layer_digests(second)
    assert len(before) == len(after) >= 3
    assert before[:-1] == after[:-1] and before[-1] != after[-1]


def test_bad_projects_are_one_clean_error(tmp_path: Path) -> None:
    """No lockfile; a dependency that has only an sdist (a find-links directory made here,
    pip told to read no configuration); a wheel for another Python. Each: exit 1, one
    error line and a hint, nothing written."""
    no_lock = make_flask_app(tmp_path)
    sdist_only = tmp_path / "sdist-app"
    sdist_only.mkdir()
    (sdist_only / "requirements.txt").write_text("slowlib==1.0\n")
    (sdist_only / "main.py").write_text("import slowlib\n")
    links = tmp_path / "links"
    make_sdist(links, "slowlib", "1.0")
    wrong = tmp_path / "wheels"
    make_wheel(wrong, "fastlib", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64")
    pip_env = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links)}
    cases = [
        (no_lock, {}, ("hello-app: no lockfile", "distill lock")),
        (sdist_only, pip_env, ("no wheel of slowlib==1.0", "cp313-cp313-manylinux_2_41_x86_64")),
        (wrong, {}, ("fastlib-1.0-cp312-cp312-manylinux_2_17_x86_64.whl does not run",)),
    ]
    for app, env, says in cases:
        out = f"oci-archive:{tmp_path / 'out.tar'}"
        outcome = run_distill(["package", str(app), "-o", out], cwd=tmp_path, env=env, timeout=600)
        assert_clean_error(outcome, *says)
