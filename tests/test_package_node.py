# ruff: noqa: F811  (fixtures are imported, then named as test parameters)
"""The Node planner: a project with package.json and package-lock.json → layers, entrypoint,
npm packages, Debian packages for native addons; and bad projects → one-line errors.

Lockfiles are written by the host's npm (`npm install --package-lock-only`), addons are
compiled in the test with the host's gcc against the host's Node.js headers: the expected
values come from those tools, never typed in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from distill.cache import BlobCache
from distill.context import Access
from distill.errors import DistillError
from distill.image.fsentry import EntryKind
from distill.package.node import NodePlanner, infer_entrypoint
from distill.package.plan import AppKind, AppOptions, BaseFacts, PlanContext
from package_checks import assert_no_tools, http_get, inspect_json, layer_digests
from registry_fixtures import Registry, free_port, registry  # noqa: F401

NODE_HEADERS = Path("/usr/include/node/node_api.h")
needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
needs_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None or not NODE_HEADERS.exists(),
    reason="gcc and the Node.js headers (/usr/include/node) are needed to build an addon",
)

# An N-API addon (so it loads into any Node.js version) whose one function calls into a
# library; which library is chosen at link time.
ADDON_C = r"""
#include <node_api.h>
DECLARATION;
static napi_value call(napi_env env, napi_callback_info info) {
    napi_value out;
    napi_create_string_utf8(env, CALL, NAPI_AUTO_LENGTH, &out);
    return out;
}
NAPI_MODULE_INIT() {
    napi_value fn;
    napi_create_function(env, "call", NAPI_AUTO_LENGTH, call, NULL, &fn);
    napi_set_named_property(env, exports, "call", fn);
    return exports;
}
"""


def base_facts(arch: str = "amd64", node: str = "/usr/bin/node") -> BaseFacts:
    """A Node.js base as the driver describes it (only what the planner reads)."""
    files = frozenset({node.lstrip("/"), "usr/lib/x86_64-linux-gnu/libc.so.6"})
    return BaseFacts(arch, "trixie", files, {}, {"libc6": "2.41-12"}, glibc="2.41", node="20.19.2")


def context(tmp_path: Path) -> PlanContext:
    return PlanContext(BlobCache(tmp_path / "cache"), Access(), tmp_path / "staging", 0)


def write_project(root: Path, manifest: dict[str, object], files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(json.dumps(manifest))
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def npm_lock(root: Path) -> None:
    subprocess.run(
        ["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"],
        cwd=root,
        check=True,
        capture_output=True,
        timeout=300,
    )


LIBC_CALL = ("extern const char *gnu_get_libc_version(void)", "gnu_get_libc_version()")


def build_addon(out: Path, call: tuple[str, str], *link: str) -> Path:
    """An N-API addon whose ``call()`` returns the string the C expression ``call[1]``
    (declared by ``call[0]``) gives; ``link``: what to link it against."""
    out.parent.mkdir(parents=True, exist_ok=True)
    source = out.parent / f"{out.stem}.c"
    source.write_text(ADDON_C.replace("DECLARATION", call[0]).replace("CALL", call[1]))
    args = ["gcc", "-shared", "-fPIC", "-O1", f"-I{NODE_HEADERS.parent}", "-o", str(out)]
    subprocess.run([*args, str(source), *link], check=True, capture_output=True, timeout=120)
    source.unlink()
    return out


def plan_error(root: Path, base: BaseFacts, tmp_path: Path) -> DistillError:
    with pytest.raises(DistillError) as caught:
        NodePlanner().plan(AppOptions(root), base, context(tmp_path))
    error = caught.value
    assert "\n" not in error.message and error.hint
    return error


# --- entrypoint -------------------------------------------------------------------------


def test_entrypoint_from_a_node_start_script() -> None:
    files = {"app/src/server.js", "app/index.js"}
    manifest = {"main": "index.js", "scripts": {"start": "node -r ./x src/server --port 1"}}
    command, why = infer_entrypoint(manifest, "/nodejs/bin/node", files)
    assert command == ["/nodejs/bin/node", "-r", "./x", "/app/src/server.js", "--port", "1"]
    assert "start" in why


def test_entrypoint_falls_back_to_main_then_npm_defaults() -> None:
    shell = {"scripts": {"start": "node a.js && node b.js"}, "main": "lib/"}
    assert infer_entrypoint(shell, "/usr/bin/node", {"app/lib/index.js", "app/a.js"})[0] == [
        "/usr/bin/node",
        "/app/lib/index.js",
    ]
    assert infer_entrypoint({}, "/usr/bin/node", {"app/server.js"})[0][1] == "/app/server.js"
    dot = {"main": "lib/app.js", "scripts": {"start": "node --max-old-space-size=64 ."}}
    assert infer_entrypoint(dot, "/usr/bin/node", {"app/lib/app.js"})[0] == [
        "/usr/bin/node",
        "--max-old-space-size=64",
        "/app/lib/app.js",
    ]
    with pytest.raises(DistillError, match="cannot tell how to start"):
        infer_entrypoint({"main": "../../etc/passwd"}, "/usr/bin/node", {"app/x.js"})


# --- bad projects -----------------------------------------------------------------------


def test_no_lockfile(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"name": "p", "version": "1.0.0"}, {"index.js": ""})
    error = plan_error(root, base_facts(), tmp_path)
    assert "no lockfile" in error.message
    assert error.hint and "npm install --package-lock-only" in error.hint
    assert not (tmp_path / "staging").exists() or not any((tmp_path / "staging").iterdir())


@pytest.mark.parametrize(
    ("lockfile", "expected"),
    [
        ("{not json", "is not valid JSON"),
        ("[" * 5000 + "]" * 5000, "nested more than"),
        ('{"lockfileVersion": 1, "dependencies": {}}', "lockfileVersion 1"),
        (
            '{"lockfileVersion": 3, "packages": {"": {}, "node_modules/x": '
            '{"resolved": "file:../x", "link": true}}}',
            "local link",
        ),
    ],
)
def test_bad_lockfiles(tmp_path: Path, lockfile: str, expected: str) -> None:
    root = write_project(tmp_path / "p", {"name": "p", "version": "1.0.0"}, {"index.js": ""})
    (root / "package-lock.json").write_text(lockfile)
    error = plan_error(root, base_facts(), tmp_path)
    assert expected in error.message and len(error.message) < 400


def test_base_without_node(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"name": "p", "version": "1.0.0"}, {"index.js": ""})
    (root / "package-lock.json").write_text(
        json.dumps({"lockfileVersion": 3, "packages": {"": {"name": "p"}}})
    )
    base = BaseFacts("amd64", "trixie", frozenset({"usr/bin/python3"}), {}, {})
    assert "has no node" in plan_error(root, base, tmp_path).message


@pytest.mark.network  # npm ci asks the registry about the dependency the lock lacks
@needs_npm
def test_lockfile_out_of_sync(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"name": "p", "version": "1.0.0"}, {"index.js": ""})
    npm_lock(root)  # no dependencies
    manifest = json.loads((root / "package.json").read_text())
    manifest["dependencies"] = {"ms": "2.1.3"}  # added after the lock was written
    (root / "package.json").write_text(json.dumps(manifest))
    error = plan_error(root, base_facts(), tmp_path)
    assert "out of sync" in error.message and "ms@2.1.3" in error.message
    assert not (root / "node_modules").exists()


@needs_npm
@needs_gcc
def test_addon_for_another_cpu(tmp_path: Path) -> None:
    """An addon built here (x86-64) in an app packaged for arm64."""
    root = write_project(
        tmp_path / "p", {"name": "p", "version": "1.0.0", "main": "index.js"}, {"index.js": ""}
    )
    npm_lock(root)
    build_addon(root / "build" / "native.node", LIBC_CALL)
    error = plan_error(root, base_facts("arm64"), tmp_path)
    assert "/app/build/native.node" in error.message
    assert "x86-64" in error.message and "arm64" in error.message


# --- a project with a dependency --------------------------------------------------------


@pytest.mark.network
@needs_npm
def test_plan_layers_and_packages(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "p",
        {"name": "p", "version": "1.0.0", "scripts": {"start": "node server.js"}},
        {"server.js": "require('ms')\n", ".npmrc": "//x/:_authToken=secret\n"},
    )
    (root / "package.json").write_text(
        json.dumps(
            {**json.loads((root / "package.json").read_text()), "dependencies": {"ms": "2.1.3"}}
        )
    )
    npm_lock(root)
    lock = json.loads((root / "package-lock.json").read_text())
    plan = NodePlanner().plan(AppOptions(root), base_facts(), context(tmp_path))

    assert plan.kind is AppKind.NODE
    assert [layer.name for layer in plan.layers] == ["node dependencies", "application"]
    deps, app = ({e.path: e for e in layer.entries} for layer in plan.layers)
    assert deps["app/node_modules/ms/package.json"].kind is EntryKind.FILE
    assert "app/server.js" in app and "app/package.json" in app
    assert not any(p.startswith("app/node_modules") for p in app)
    assert "app/.npmrc" not in app  # it may hold registry tokens
    assert plan.entrypoint == ("/usr/bin/node", "/app/server.js")
    entry = lock["packages"]["node_modules/ms"]
    assert [(p.ecosystem, p.name, p.version, p.digest) for p in plan.lang_packages] == [
        ("npm", "ms", entry["version"], entry["integrity"])
    ]
    assert plan.lang_packages[0].source.endswith(f"/ms-{entry['version']}.tgz")
    assert plan.debian_packages == ()
    assert not (root / "node_modules").exists()  # the user's directory was not touched

    # Offline, from npm's cache only (the first plan filled it), PATH naming package.json:
    # the same packages.
    offline = AppOptions(root / "package.json", offline=True)
    again = NodePlanner().plan(offline, base_facts(), context(tmp_path / "offline"))
    assert again.lang_packages == plan.lang_packages


@pytest.mark.network
@needs_npm
def test_same_inputs_same_entries(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "p",
        {"name": "p", "version": "1.0.0", "main": "a.js", "dependencies": {"ms": "2.1.3"}},
        {"a.js": "1\n"},
    )
    npm_lock(root)
    first = NodePlanner().plan(AppOptions(root), base_facts(), context(tmp_path / "1"))
    second = NodePlanner().plan(AppOptions(root), base_facts(), context(tmp_path / "2"))

    def shape(plan: object) -> list[list[tuple[str, str, int, int]]]:
        return [
            [(e.path, e.kind, e.mode, e.size) for e in layer.entries]
            for layer in plan.layers  # type: ignore[attr-defined]
        ]

    assert shape(first) == shape(second)


@pytest.mark.network  # the archive's Contents index
@needs_npm
@needs_gcc
def test_addon_needing_a_library_no_package_ships(tmp_path: Path) -> None:
    soname = "libdistill-test-nowhere.so.1"
    library = tmp_path / "lib" / soname
    library.parent.mkdir()
    (tmp_path / "nowhere.c").write_text('const char *nowhere(void) { return "x"; }\n')
    gcc = ["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(library)]
    subprocess.run(
        [*gcc, str(tmp_path / "nowhere.c")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    root = write_project(
        tmp_path / "p", {"name": "p", "version": "1.0.0", "main": "index.js"}, {"index.js": ""}
    )
    npm_lock(root)
    call = ("extern const char *nowhere(void)", "nowhere()")
    build_addon(root / "native" / "nowhere.node", call, str(library))
    error = plan_error(root, base_facts(), tmp_path)
    assert soname in error.message


@needs_npm
@needs_gcc
def test_addon_for_another_node_abi(tmp_path: Path) -> None:
    """A classic (not N-API) addon built against this machine's Node.js headers is tied to
    this machine's Node.js major; a base with another major refuses it."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed")
    versions = subprocess.run(
        ["node", "-p", "process.versions.node + ' ' + process.versions.modules"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    host_major = int(versions[0].split(".")[0])
    other = "24.11.0" if host_major != 24 else "22.12.0"
    root = write_project(
        tmp_path / "p", {"name": "p", "version": "1.0.0", "main": "index.js"}, {"index.js": ""}
    )
    npm_lock(root)
    (tmp_path / "classic.cc").write_text("#include <node.h>\nNODE_MODULE_INIT() {}\n")
    (root / "build").mkdir()
    gxx = ["g++", "-std=c++17", "-shared", "-fPIC", f"-I{NODE_HEADERS.parent}", "-o"]
    subprocess.run(
        [*gxx, str(root / "build" / "classic.node"), str(tmp_path / "classic.cc")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    base = BaseFacts("amd64", "trixie", frozenset({"usr/bin/node"}), {}, {}, node=other)
    error = plan_error(root, base, tmp_path)
    assert "/app/build/classic.node" in error.message and other in error.message
    assert f"Node.js {host_major}" in error.message or f"ABI {versions[1]}" in error.message


# --- end to end: packaged, pushed, pulled, run --------------------------------------------

SERVER_JS = """\
const http = require('http');
const ms = require('ms');
const { crc32 } = require('@node-rs/crc32');  // a prebuilt addon from npm
const native = require('./build/Release/escape.node');  // one compiled in the test
process.on('SIGTERM', () => process.exit(0));  // node as PID 1 has no default handler
http.createServer((req, res) => {
  const body = `${ms(90000)} ${crc32('distill')} ${native.call()} ${process.env.NODE_ENV}`;
  res.end(body + '\\n');
}).listen(Number(process.env.PORT || 8080), '0.0.0.0');
"""
# libcurl is not in nodejs:nonroot: the planner must add the package that ships it.
CURL_CALL = (
    "extern char *curl_easy_escape(void *, const char *, int)",
    'curl_easy_escape(NULL, "distill addon/ok", 0)',
)


def host_library(soname: str) -> Path | None:
    for directory in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"):
        if (Path(directory) / soname).exists():
            return Path(directory) / soname
    return None


def distill(*args: str) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "distill", *args], capture_output=True, text=True, timeout=1800
    )


@pytest.mark.network
@pytest.mark.container
@needs_npm
@needs_gcc
def test_node_app_packaged_pushed_pulled_and_run(tmp_path: Path, registry: Registry) -> None:
    curl = host_library("libcurl.so.4")
    if curl is None or shutil.which("podman") is None:
        pytest.skip("libcurl.so.4 (to link the addon) and podman are needed")
    root = write_project(
        tmp_path / "app",
        {
            "name": "hello-node",
            "version": "1.0.0",
            "scripts": {"start": "node server.js"},
            "dependencies": {"ms": "2.1.3", "@node-rs/crc32": "1.10.8"},
        },
        {"server.js": SERVER_JS},
    )
    npm_lock(root)
    build_addon(root / "build" / "Release" / "escape.node", CURL_CALL, str(curl))

    # The oracle: the same app run by this machine's node, dependencies from `npm ci`.
    host = tmp_path / "host"
    shutil.copytree(root, host)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=host, check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    port = free_port()
    env = {**os.environ, "PORT": str(port), "NODE_ENV": "production"}
    server = subprocess.Popen(["node", "server.js"], cwd=host, env=env)
    try:
        expected = http_get(f"http://127.0.0.1:{port}/", server)
    finally:
        server.terminate()
        server.wait(30)
    assert "distill%20addon%2Fok" in expected  # the addon really ran

    image = f"{registry.host}/node-app:1"
    done = distill("package", str(root), "--port", "8080", "-o", f"docker://{image}")
    assert done.returncode == 0, done.stderr
    shown = done.stdout + done.stderr
    assert "/usr/bin/node /app/server.js" in shown
    added = re.search(r"libcurl\.so\.4 \(([a-z0-9.+-]+)\)", shown)
    assert added, shown
    assert not (root / "node_modules").exists()

    sbom = distill("sbom", "--format", "cyclonedx-json", f"docker://{image}")
    assert sbom.returncode == 0, sbom.stderr
    purls = {c.get("purl", "") for c in json.loads(sbom.stdout)["components"]}
    locked = json.loads((root / "package-lock.json").read_text())["packages"]
    assert f"pkg:npm/ms@{locked['node_modules/ms']['version']}" in purls
    # The platform packages npm picked for linux/x64/glibc, and only those.
    prebuilt = {
        p.split("@")[0].rpartition("/")[2]
        for p in purls
        if p.startswith("pkg:npm/%40node-rs/crc32-")
    }
    assert prebuilt == {"crc32-linux-x64-gnu"}, prebuilt
    assert any(p.startswith(f"pkg:deb/debian/{added.group(1)}@") for p in purls), purls

    assert_no_tools(f"docker://{image}")  # no shell, npm or compiler
    assert not inspect_json(f"docker://{image}")["surface"]["runs_as_root"]

    env_conf = {**os.environ, "CONTAINERS_CONF": str(Path(__file__).parent / "containers.conf")}
    pull = ["podman", "pull", "-q", "--tls-verify=false", f"docker://{image}"]
    image_id = subprocess.run(pull, env=env_conf, check=True, capture_output=True, text=True,
                              timeout=600).stdout.strip()  # fmt: skip
    port = free_port()
    run = ["podman", "run", "-d", "-p", f"127.0.0.1:{port}:8080", image_id]
    container = subprocess.run(run, env=env_conf, check=True, capture_output=True, text=True,
                               timeout=300).stdout.strip()  # fmt: skip
    try:
        assert http_get(f"http://127.0.0.1:{port}/") == expected
    finally:
        subprocess.run(["podman", "rm", "-f", container], env=env_conf, capture_output=True,
                       timeout=120, check=False)  # fmt: skip
        subprocess.run(["podman", "rmi", "-f", image_id], env=env_conf, capture_output=True,
                       timeout=120, check=False)  # fmt: skip


@pytest.mark.network
@needs_npm
def test_changing_app_code_recreates_only_the_app_layer(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "app",
        {"name": "a", "version": "1.0.0", "main": "main.js", "dependencies": {"ms": "2.1.3"}},
        {"main.js": "console.log(require('ms')(1000))\n"},
    )
    npm_lock(root)
    first = distill("-q", "package", str(root), "-o", f"oci:{tmp_path / 'one'}")
    assert first.returncode == 0, first.stderr
    again = distill("-q", "package", str(root), "-o", f"oci:{tmp_path / 'two'}")
    assert again.returncode == 0, again.stderr
    with (root / "main.js").open("a") as fh:
        fh.write("// a change\n")
    changed = distill("-q", "package", str(root), "-o", f"oci:{tmp_path / 'three'}")
    assert changed.returncode == 0, changed.stderr

    one, two, three = (layer_digests(tmp_path / n) for n in ("one", "two", "three"))
    assert one == two  # same inputs, same layers
    assert one[:-1] == three[:-1] and one[-1] != three[-1]


@pytest.mark.network
@needs_npm
def test_prebuilt_addon_for_arm64(tmp_path: Path) -> None:
    """Packaged for arm64 on this machine: npm picks the arm64 glibc build of a package's
    prebuilt addon, and that AArch64 ELF passes the check (its libraries are in the arm64
    base)."""
    root = write_project(
        tmp_path / "app",
        {"name": "a", "version": "1.0.0", "main": "main.js"}
        | {"dependencies": {"@node-rs/crc32": "1.10.8"}},
        {"main.js": "console.log(require('@node-rs/crc32').crc32('distill'))\n"},
    )
    npm_lock(root)
    layout = tmp_path / "image"
    done = distill("package", str(root), "--arch", "arm64", "-o", f"oci:{layout}")
    assert done.returncode == 0, done.stderr
    assert (
        "native addon /app/node_modules/@node-rs/crc32-linux-arm64-gnu/"
        in done.stdout + done.stderr
    )
    sbom = distill("sbom", "--platform", "linux/arm64", "--format", "cyclonedx-json", str(layout))
    assert sbom.returncode == 0, sbom.stderr
    purls = {c.get("purl", "") for c in json.loads(sbom.stdout)["components"]}
    prebuilt = {p for p in purls if p.startswith("pkg:npm/%40node-rs/crc32-")}
    locked = json.loads((root / "package-lock.json").read_text())["packages"]
    version = locked["node_modules/@node-rs/crc32-linux-arm64-gnu"]["version"]
    assert prebuilt == {f"pkg:npm/%40node-rs/crc32-linux-arm64-gnu@{version}"}, prebuilt


@pytest.mark.network  # the base is built (from the cache when warm)
@needs_npm
@needs_gcc
def test_bad_projects_on_the_command_line(tmp_path: Path) -> None:
    """`distill package` itself: one error line and a hint, exit 1, nothing written."""
    from hostile.hostile_harness import assert_clean_error, run_distill

    def package(root: Path, *more: str) -> str:
        args = ["package", str(root.relative_to(tmp_path)), *more, "-o", "oci-archive:out.tar"]
        return assert_clean_error(run_distill(args, cwd=tmp_path, timeout=600))

    bare = write_project(tmp_path / "bare", {"name": "b", "version": "1.0.0"}, {"index.js": ""})
    assert "no lockfile" in package(bare)

    stale = write_project(tmp_path / "stale", {"name": "s", "version": "1.0.0"}, {"index.js": ""})
    npm_lock(stale)
    (stale / "package.json").write_text(
        json.dumps({"name": "s", "version": "1.0.0", "dependencies": {"ms": "2.1.3"}})
    )
    assert "out of sync" in package(stale)

    native = write_project(
        tmp_path / "native", {"name": "n", "version": "1.0.0", "main": "index.js"}, {"index.js": ""}
    )
    npm_lock(native)
    build_addon(native / "build" / "n.node", LIBC_CALL)
    assert "/app/build/n.node" in package(native, "--arch", "arm64")
