"""The Python planner: tags for the image's interpreter, requirement and marker checks, the
lock read from a project, wheels fetched through a package index and installed as layers.

Every index here is made by the test (tests/wheel_fixtures.py): wheels and sdists written in
the test, served from a loopback HTTP server or a find-links directory, pip told to read no
configuration, so these run offline. The end-to-end run on real PyPI wheels is in
tests/test_package_python_run.py.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name

from distill.cache import BlobCache
from distill.context import Access
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.package.plan import AppOptions, AppPlan, BaseFacts, LangPackage, PlanContext
from distill.package.pyproject import read_requirements
from distill.package.python import PythonPlanner
from distill.package.wheels import (
    Target,
    WheelInfo,
    applies,
    check_complete,
    target_for,
    wheel_rank,
)
from wheel_fixtures import (
    BOOKWORM,
    TRIXIE,
    isolate_pip,
    make_sdist,
    make_wheel,
    sha256_of,
    simple_index,
)

T313 = target_for(TRIXIE)
T311 = target_for(BOOKWORM)


# --- tags -------------------------------------------------------------------------------


def _host_glibc() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # type: ignore[union-attr]
    except (ValueError, OSError, AttributeError):
        return None
    major, minor = version.split(".")[:2]
    return (int(major), int(minor)) if name == "glibc" else None


def test_tags_equal_packaging_for_this_host() -> None:
    """Oracle: for the host's own interpreter and glibc, the tags distill computes from facts
    are exactly packaging's ``sys_tags()`` (which probes the running host), manylinux and
    pure ones, in the same order."""
    glibc = _host_glibc()
    if (
        glibc is None
        or platform.machine() != "x86_64"
        or platform.python_implementation() != "CPython"
    ):
        pytest.skip("needs CPython on glibc x86_64")
    version = platform.python_version_tuple()
    target = Target(f"{version[0]}.{version[1]}", platform.python_version(), "x86_64", glibc)
    expected = [
        t
        for t in sys_tags()
        if ("manylinux" in t.platform or t.platform == "any") and not t.abi.endswith("t")
    ]
    assert list(target.tags) == expected


def test_platforms_per_architecture() -> None:
    arm = target_for(BaseFacts("arm64", "trixie", frozenset(), {}, {}, python="3.13", glibc="2.41"))
    # manylinux2014 (glibc 2.17) is the oldest aarch64 tag; x86_64 goes back to manylinux1.
    assert arm.platforms[0] == "manylinux_2_41_aarch64"
    assert arm.platforms[-2:] == ("manylinux_2_17_aarch64", "manylinux2014_aarch64")
    assert T313.platforms[-2:] == ("manylinux_2_5_x86_64", "manylinux1_x86_64")
    assert T311.platforms[0] == "manylinux_2_36_x86_64"
    assert T313.wanted == "cp313-cp313-manylinux_2_41_x86_64"


@pytest.mark.parametrize(
    ("filename", "on_313", "on_311"),
    [
        ("markupsafe-3.0.4-cp313-cp313-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", 1, 0),
        ("markupsafe-3.0.4-cp311-cp311-manylinux_2_17_x86_64.whl", 0, 1),
        ("cryptography-46.0.0-cp311-abi3-manylinux_2_34_x86_64.whl", 1, 1),
        ("x-1.0-cp313-cp313-manylinux_2_39_x86_64.whl", 1, 0),  # glibc 2.39 > bookworm's 2.36
        ("x-1.0-cp313-cp313-manylinux_2_42_x86_64.whl", 0, 0),  # newer than trixie's glibc
        ("x-1.0-cp313-cp313-musllinux_1_2_x86_64.whl", 0, 0),
        ("x-1.0-cp313-cp313-linux_x86_64.whl", 0, 0),  # built on some host: not portable
        ("x-1.0-cp313-cp313-manylinux_2_17_aarch64.whl", 0, 0),
        ("x-1.0-py3-none-any.whl", 1, 1),
        ("x-1.0-py2.py3-none-any.whl", 1, 1),
    ],
)
def test_wheel_fits_the_image_python(filename: str, on_313: int, on_311: int) -> None:
    assert (wheel_rank(filename, T313) is not None) == bool(on_313)
    assert (wheel_rank(filename, T311) is not None) == bool(on_311)


def test_compiled_wheel_ranks_before_pure_one() -> None:
    compiled = wheel_rank("x-1.0-cp313-cp313-manylinux_2_17_x86_64.whl", T313)
    pure = wheel_rank("x-1.0-py3-none-any.whl", T313)
    assert compiled is not None and pure is not None and compiled < pure


def test_no_python_in_base_is_refused() -> None:
    static = BaseFacts("amd64", "trixie", frozenset(), {}, {})
    with pytest.raises(DistillError, match="no python3"):
        target_for(static)


# --- markers and requirements -----------------------------------------------------------


def test_markers_are_evaluated_for_the_image_not_the_host() -> None:
    old = Requirement('tomli>=1; python_version < "3.12"')
    assert not applies(old, T313)
    assert applies(old, T311)
    arm = target_for(BaseFacts("arm64", "trixie", frozenset(), {}, {}, python="3.13", glibc="2.41"))
    on_arm = Requirement('x; platform_machine == "aarch64"')
    assert applies(on_arm, arm) and not applies(on_arm, T313)
    socks = Requirement('pysocks; extra == "socks"')
    assert not applies(socks, T313) and applies(socks, T313, ["socks"])


def _info(name: str, version: str, *requires: str) -> WheelInfo:
    return WheelInfo(name, version, requires, (), compiled=False)


def _installed(*infos: WheelInfo) -> dict[str, WheelInfo]:
    return {canonicalize_name(i.name): i for i in infos}


def test_complete_set_passes() -> None:
    installed = _installed(
        _info(
            "web", "1.0", "speed>=2", 'tomli; python_version < "3.11"', 'extra-dep; extra == "x"'
        ),
        _info("speed", "2.5"),
    )
    check_complete([(Requirement("web"), "pyproject")], installed, T313, "the lock")


def test_missing_dependency_is_named() -> None:
    installed = _installed(_info("web", "1.0", "speed>=2"))
    with pytest.raises(DistillError) as err:
        check_complete([(Requirement("web"), "pyproject")], installed, T313, "requirements.txt")
    assert err.value.message == (
        "web 1.0 requires speed>=2 (on Python 3.13), but speed is not in requirements.txt"
    )


def test_wrong_version_is_named() -> None:
    installed = _installed(_info("web", "1.0", "speed>=2"), _info("speed", "1.9"))
    with pytest.raises(DistillError, match=r"web 1.0 requires speed>=2 .* has speed 1.9"):
        check_complete([(Requirement("web"), "pyproject")], installed, T313, "the lock")


def test_marker_dependency_only_needed_on_older_python() -> None:
    installed = _installed(_info("web", "1.0", 'tomli; python_version < "3.12"'))
    roots = [(Requirement("web"), "pyproject")]
    check_complete(roots, installed, T313, "the lock")
    with pytest.raises(DistillError, match="requires tomli"):
        check_complete(roots, installed, T311, "the lock")


def test_root_with_a_marker_counts_only_where_it_applies() -> None:
    roots = [
        (Requirement('tomli>=2; python_version < "3.11"'), "pyproject"),
        (Requirement("web"), "p"),
    ]
    installed = _installed(_info("web", "1.0"))
    check_complete(roots, installed, T313, "the lock")
    bullseye = Target("3.9", "3.9.2", "x86_64", (2, 31))
    with pytest.raises(DistillError, match="pyproject requires tomli"):
        check_complete(roots, installed, bullseye, "the lock")


def test_extras_are_followed() -> None:
    installed = _installed(_info("requests", "2.0", 'pysocks; extra == "socks"'))
    check_complete([(Requirement("requests"), "p")], installed, T313, "the lock")
    with pytest.raises(DistillError, match="requires pysocks"):
        check_complete([(Requirement("requests[socks]"), "p")], installed, T313, "the lock")


PIP_COMPILE = """\
#
# This file is autogenerated by pip-compile
#
--index-url https://index.example/simple
flask==3.1.3 \\
    --hash=sha256:{a} \\
    --hash=sha256:{b}
    # via -r requirements.in
tomli==2.0.1 ; python_version < "3.11" \\
    --hash=sha256:{a}
markupsafe==3.0.4    # a comment
"""


def test_requirements_txt_pip_compile_format(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(PIP_COMPILE.format(a="a" * 64, b="B" * 64))
    pins, options = read_requirements(path, T313)
    assert pins is not None
    assert [(p.name, p.version, p.hashes) for p in pins] == [
        ("flask", "3.1.3", ("a" * 64, "b" * 64)),
        ("markupsafe", "3.0.4", ()),
    ]
    assert options == ("--index-url https://index.example/simple",)


def test_requirements_txt_partly_pinned_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("flask==3.1.3\n\nwerkzeug>=3\n")
    with pytest.raises(DistillError) as err:
        read_requirements(path, T313)
    assert err.value.message.startswith("requirements.txt:3: werkzeug>=3 is not pinned with ==")


def test_requirements_txt_unpinned_is_not_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("flask\nwerkzeug>=3\n")
    assert read_requirements(path, T313) == (None, ())


# --- planning against a package index made here -----------------------------------------


def _ctx(tmp_path: Path, locked: tuple[LangPackage, ...] | None = None) -> PlanContext:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    cache = BlobCache(tmp_path / "cache")
    return PlanContext(cache, Access(), staging, 0, locked)


def _plan(path: Path, ctx: PlanContext, base: BaseFacts = TRIXIE, **kw: object) -> AppPlan:
    return PythonPlanner().plan(AppOptions(path=path, **kw), base, ctx)  # type: ignore[arg-type]


def _error(path: Path, ctx: PlanContext, base: BaseFacts = TRIXIE) -> DistillError:
    with pytest.raises(DistillError) as err:
        _plan(path, ctx, base)
    assert "\n" not in err.value.message and err.value.hint
    return err.value


def _by_path(plan: AppPlan, layer: int) -> dict[str, FsEntry]:
    return {e.path: e for e in plan.layers[layer].entries}


SITE = "usr/local/lib/python3.13/dist-packages"


@pytest.fixture
def web_index(
    tmp_path: Path, local_mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    """An index with a pure-Python framework that needs a compiled helper (a wheel for
    CPython 3.13 on manylinux 2.17, and one for 3.11), and a namespace package."""
    url, root = local_mirror
    made = tmp_path / "made"
    wheels = {
        "web": make_wheel(
            made,
            "web",
            "1.0",
            requires=["speedup>=2", 'oldcompat; python_version < "3.12"'],
            console_scripts={"web-admin": "web:main"},
            files={"web/__init__.py": "def main():\n    return 0\n"},
        ),
        "speedup": make_wheel(made, "speedup", "2.1", tag="cp313-cp313-manylinux_2_17_x86_64"),
        "speedup311": make_wheel(made, "speedup", "2.1", tag="cp311-cp311-manylinux_2_17_x86_64"),
        "oldcompat": make_wheel(made, "oldcompat", "1.0"),
        "ns": make_wheel(made, "ns-part", "1.0", files={"ns/part/__init__.py": "X = 1\n"}),
    }
    simple_index(root, list(wheels.values()))
    isolate_pip(monkeypatch, index_url=f"{url}/simple")
    return wheels


def _project(tmp_path: Path, requirements: str, **pyproject: str) -> Path:
    app = tmp_path / "app"
    (app / "hello").mkdir(parents=True)
    (app / "hello" / "__init__.py").write_text("")
    (app / "hello" / "server.py").write_text("def main():\n    print('hello')\n")
    (app / ".git").mkdir()
    (app / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    deps = pyproject.get("deps", '"web>=1"')
    (app / "pyproject.toml").write_text(
        f'[project]\nname = "hello"\nversion = "0.1"\ndependencies = [{deps}]\n'
        + pyproject.get("extra", '[project.scripts]\nhello = "hello.server:main"\n')
    )
    if requirements:
        (app / "requirements.txt").write_text(requirements)
    return app


def test_plan_from_pinned_requirements(tmp_path: Path, web_index: dict[str, Path]) -> None:
    web, speedup = web_index["web"], web_index["speedup"]
    reqs = f"web==1.0 --hash=sha256:{sha256_of(web)}\nspeedup==2.1\nns-part==1.0\n"
    app = _project(tmp_path, reqs)
    ctx = _ctx(tmp_path)
    plan = _plan(app, ctx)

    assert [layer.name for layer in plan.layers] == ["python dependencies", "application"]
    deps, own = _by_path(plan, 0), _by_path(plan, 1)
    assert f"{SITE}/web/__init__.py" in deps and f"{SITE}/ns/part/__init__.py" in deps
    assert f"{SITE}/speedup-2.1.dist-info/METADATA" in deps
    assert deps[f"{SITE}/speedup-2.1.dist-info/INSTALLER"].read_bytes() == b"distill\n"
    assert not any(p.endswith(".pyc") for p in deps), "nothing is byte-compiled"
    admin = deps["usr/local/bin/web-admin"]
    assert admin.mode == 0o755 and admin.read_bytes().startswith(b"#!/usr/bin/python3\n")
    # The app: its files under /app (VCS data left out), its console script, on sys.path.
    assert own["app/hello/server.py"].read_bytes() == (app / "hello" / "server.py").read_bytes()
    assert "app/.git/HEAD" not in own and "app/.git" not in own
    script = own["usr/local/bin/hello"].read_bytes()
    assert script.startswith(b"#!/usr/bin/python3\n") and b"from hello.server import main" in script
    assert own[f"{SITE}/distill-app.pth"].read_bytes() == b"/app\n"
    assert plan.entrypoint == ("/usr/local/bin/hello",)
    assert plan.env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert {(p.name, p.version, p.digest, p.source) for p in plan.lang_packages} == {
        ("web", "1.0", f"sha256:{sha256_of(web)}", web.name),
        ("speedup", "2.1", f"sha256:{sha256_of(speedup)}", speedup.name),
        ("ns-part", "1.0", f"sha256:{sha256_of(web_index['ns'])}", web_index["ns"].name),
    }
    assert all(e.kind != EntryKind.DIR or e.mode == 0o755 for e in plan.layers[0].entries)


def test_rebuild_offline_from_cache(tmp_path: Path, web_index: dict[str, Path]) -> None:
    app = _project(tmp_path, "web==1.0\nspeedup==2.1\n")
    ctx = _ctx(tmp_path)
    first = _plan(app, ctx)
    for path in web_index.values():  # the index is gone: the cache must be enough
        (path.parent.parent / "mirror" / "files" / path.name).unlink(missing_ok=True)
    again = _plan(app, ctx, offline=True)
    assert again.lang_packages == first.lang_packages
    files = lambda plan: {e.path: e.read_bytes() for e in plan.layers[0].entries}  # noqa: E731
    assert files(again) == files(first)


def test_bookworm_gets_the_cp311_wheel(tmp_path: Path, web_index: dict[str, Path]) -> None:
    app = _project(tmp_path, "web==1.0\nspeedup==2.1\noldcompat==1.0\n")
    plan = _plan(app, _ctx(tmp_path), BOOKWORM)
    sources = {p.name: p.source for p in plan.lang_packages}
    assert sources["speedup"] == web_index["speedup311"].name
    assert "usr/local/lib/python3.11/dist-packages/speedup/__init__.py" in _by_path(plan, 0)


def test_incomplete_lock_names_what_is_missing(tmp_path: Path, web_index: dict[str, Path]) -> None:
    app = _project(tmp_path, "web==1.0\n")
    err = _error(app, _ctx(tmp_path))
    assert err.message == (
        "web 1.0 requires speedup>=2 (on Python 3.13), but speedup is not in requirements.txt"
    )


def test_bookworm_needs_the_marker_dependency(tmp_path: Path, web_index: dict[str, Path]) -> None:
    app = _project(tmp_path, "web==1.0\nspeedup==2.1\n")
    err = _error(app, _ctx(tmp_path), BOOKWORM)
    assert "requires oldcompat" in err.message and "Python 3.11" in err.message


def test_hash_mismatch_is_refused(tmp_path: Path, web_index: dict[str, Path]) -> None:
    app = _project(tmp_path, f"web==1.0 --hash=sha256:{'0' * 64}\nspeedup==2.1\n")
    err = _error(app, _ctx(tmp_path))
    assert "hashes" in err.message
    assert not list((tmp_path / "cache").glob("blobs/*")), "nothing cached for a bad hash"


def test_no_lockfile(tmp_path: Path, web_index: dict[str, Path]) -> None:
    app = _project(tmp_path, "")
    err = _error(app, _ctx(tmp_path))
    assert err.message.startswith("app: no lockfile")
    assert "distill lock" in (err.hint or "") and "pip-compile" in (err.hint or "")


def test_dependency_with_only_an_sdist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    links = tmp_path / "links"
    make_sdist(links, "slowlib", "1.0")
    isolate_pip(monkeypatch, find_links=links)
    app = _project(tmp_path, "slowlib==1.0\n", deps='"slowlib"')
    err = _error(app, _ctx(tmp_path))
    assert err.message.startswith("no wheel of slowlib==1.0 for the image's Python")
    assert "wanted cp313-cp313-manylinux_2_41_x86_64" in err.message


def test_index_has_only_a_wheel_for_another_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    links = tmp_path / "links"
    make_wheel(links, "fastlib", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64")
    isolate_pip(monkeypatch, find_links=links)
    app = _project(tmp_path, "fastlib==1.0\n", deps='"fastlib"')
    err = _error(app, _ctx(tmp_path))
    assert "no wheel of fastlib==1.0" in err.message and "cp313-cp313-manylinux" in err.message


def test_wheel_for_the_wrong_python_in_a_wheels_dir(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    bad = make_wheel(wheels, "fastlib", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64")
    err = _error(wheels, _ctx(tmp_path))
    assert err.message.startswith(f"{bad.name} does not run on the image's Python")
    assert "wanted cp313-cp313-manylinux_2_41_x86_64" in err.message


def test_wheels_dir_is_the_app(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tool", "2.0", requires=["helper"], console_scripts={"tool": "tool:run"})
    make_wheel(wheels, "helper", "1.0")
    plan = _plan(wheels, _ctx(tmp_path))
    deps, own = _by_path(plan, 0), _by_path(plan, 1)
    assert f"{SITE}/helper/__init__.py" in deps and f"{SITE}/tool/__init__.py" in own
    assert plan.entrypoint == ("/usr/local/bin/tool",)
    assert not any(p.startswith("app/") for p in own)


def test_entrypoint_main_module_and_main_py(tmp_path: Path) -> None:
    app = tmp_path / "proj"
    (app / "src" / "svc").mkdir(parents=True)
    (app / "src" / "svc" / "__main__.py").write_text("print('hi')\n")
    (app / "pyproject.toml").write_text('[project]\nname = "svc"\nversion = "1"\n')
    plan = _plan(app, _ctx(tmp_path))
    assert plan.entrypoint == ("/usr/bin/python3", "-m", "svc")
    assert _by_path(plan, 1)[f"{SITE}/distill-app.pth"].read_bytes() == b"/app\n/app/src\n"
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "requirements.txt").write_text("# nothing yet\n")
    (flat / "main.py").write_text("print('hi')\n")
    assert _plan(flat, _ctx(tmp_path)).entrypoint == ("/usr/bin/python3", "/app/main.py")
    assert _plan(flat, _ctx(tmp_path), entrypoint=("/x",)).entrypoint == ("/x",)


def test_distill_lock_is_installed_exactly(tmp_path: Path, web_index: dict[str, Path]) -> None:
    app = _project(tmp_path, "")  # pyproject with `web>=1`, no lock of its own
    ctx = _ctx(tmp_path)
    locked = PythonPlanner().lock(AppOptions(path=app), TRIXIE, ctx)
    assert {(p.name, p.digest) for p in locked} == {
        ("web", f"sha256:{sha256_of(web_index['web'])}"),
        ("speedup", f"sha256:{sha256_of(web_index['speedup'])}"),
    }
    plan = _plan(app, _ctx(tmp_path, locked))
    assert plan.lang_packages == locked
    # requirements.txt now pins more than the lock has: stale, so resolved afresh and said
    # (as the driver does for .debs), or refused with --offline.
    (app / "requirements.txt").write_text("web==1.0\nspeedup==2.1\nns-part==1.0\n")
    fresh = _plan(app, _ctx(tmp_path, locked))
    assert {p.name for p in fresh.lang_packages} == {"web", "speedup", "ns-part"}
    assert any("distill's lock is stale (requirements.txt pins" in n for n in fresh.notes)
    with pytest.raises(DistillError, match=r"^distill.s lock is stale: requirements\.txt pins"):
        _plan(app, _ctx(tmp_path, locked), offline=True)


def test_a_single_wheel_is_an_app(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "w", "tool", "1.0", console_scripts={"tool": "tool:run"})
    plan = _plan(wheel, _ctx(tmp_path))
    assert plan.entrypoint == ("/usr/local/bin/tool",)
    assert [p.name for p in plan.lang_packages] == ["tool"]


def test_relock_plans_a_pyproject_without_pins(tmp_path: Path, web_index: dict[str, Path]) -> None:
    """`distill lock` plans with ``relock``: the pyproject is resolved by pip for the image
    (its host-only marker dependency dropped), the same set ``lock`` returns."""
    app = _project(tmp_path, "")
    ctx = _ctx(tmp_path)
    relocked = PythonPlanner().plan(
        AppOptions(path=app),
        TRIXIE,
        PlanContext(ctx.cache, ctx.access, ctx.staging, 0, relock=True),
    )
    assert relocked.lang_packages == PythonPlanner().lock(AppOptions(path=app), TRIXIE, ctx)
    assert {p.name for p in relocked.lang_packages} == {"web", "speedup"}
    on_bookworm = PythonPlanner().lock(AppOptions(path=app), BOOKWORM, ctx)
    assert {p.name: p.source for p in on_bookworm} == {
        "web": web_index["web"].name,
        "speedup": web_index["speedup311"].name,
        "oldcompat": web_index["oldcompat"].name,
    }


def test_lock_adds_what_only_the_image_python_needs(
    tmp_path: Path, local_mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip runs on this machine's Python (3.11 here) and skips a dependency marked for
    3.12+; the lock for a 3.13 image must still have it."""
    if sys.version_info >= (3, 12):
        pytest.skip("needs a host Python older than the image's")
    url, root = local_mirror
    made = tmp_path / "made"
    files = [
        make_wheel(made, "modern", "1.0", requires=['newdep; python_version >= "3.12"']),
        make_wheel(made, "newdep", "1.0"),
    ]
    simple_index(root, files)
    isolate_pip(monkeypatch, index_url=f"{url}/simple")
    app = _project(tmp_path, "", deps='"modern"')
    ctx = _ctx(tmp_path)
    assert {p.name for p in PythonPlanner().lock(AppOptions(path=app), TRIXIE, ctx)} == {
        "modern",
        "newdep",
    }
    assert {p.name for p in PythonPlanner().lock(AppOptions(path=app), BOOKWORM, ctx)} == {"modern"}


def test_damaged_wheel_is_one_clean_error(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip at all")
    err = _error(wheels, _ctx(tmp_path))
    assert err.message.startswith("broken-1.0-py3-none-any.whl is not a readable wheel")


def test_wheel_whose_files_do_not_match_its_record(tmp_path: Path) -> None:
    import zipfile

    wheels = tmp_path / "wheels"
    good = make_wheel(wheels, "tampered", "1.0")
    with zipfile.ZipFile(good) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    members["tampered/__init__.py"] = b"import os; os.system('evil')\n"
    with zipfile.ZipFile(good, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    err = _error(wheels, _ctx(tmp_path))
    assert err.message.startswith("could not install tampered 1.0:")


def test_installs_are_kept_content_addressed(tmp_path: Path) -> None:
    """Installed files are staged by content (as .deb files are): nothing is left per run,
    and a second plan lists the same entries without installing again."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tool", "2.0", requires=["helper"], console_scripts={"tool": "tool:run"})
    make_wheel(wheels, "helper", "1.0")
    ctx = _ctx(tmp_path)
    first = _plan(wheels, ctx)
    second = _plan(wheels, ctx)
    assert first.layers == second.layers
    leftovers = [p.name for p in ctx.staging.iterdir() if len(p.name) != 2 and p.name != "tmp"]
    assert leftovers == [] and list((ctx.staging / "tmp").iterdir()) == []
    for entry in first.layers[0].entries:
        if entry.kind is EntryKind.FILE:
            assert isinstance(entry.content, Path)
            assert entry.content.name == sha256_of(entry.content)


def test_two_wheels_installing_one_file_are_refused(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "one", "1.0", files={"shared/mod.py": "A = 1\n"})
    make_wheel(wheels, "two", "1.0", files={"shared/mod.py": "A = 2\n"})
    err = _error(wheels, _ctx(tmp_path))
    assert (
        err.message
        == "one and two both install /usr/local/lib/python3.13/dist-packages/shared/mod.py"
    )


def test_hashes_for_another_python(tmp_path: Path, web_index: dict[str, Path]) -> None:
    """A requirements.txt with hashes made for 3.13 (pip-compile on trixie), on bookworm."""
    web, fast = web_index["web"], web_index["speedup"]
    app = _project(
        tmp_path,
        f"web==1.0 --hash=sha256:{sha256_of(web)}\nspeedup==2.1 --hash=sha256:{sha256_of(fast)}\n"
        f"oldcompat==1.0 --hash=sha256:{sha256_of(web_index['oldcompat'])}\n",
    )
    err = _error(app, _ctx(tmp_path), BOOKWORM)
    assert err.message.startswith("no wheel of speedup==2.1 with the hashes the lock gives fits")
    assert web_index["speedup311"].name in err.message


def test_a_foreign_lock_gets_an_export_hint(tmp_path: Path) -> None:
    app = tmp_path / "poetry-app"
    app.mkdir()
    (app / "pyproject.toml").write_text('[tool.poetry]\nname = "x"\n')
    (app / "poetry.lock").write_text("# poetry's own format\n")
    (app / "main.py").write_text("")
    err = _error(app, _ctx(tmp_path))
    assert err.message == (
        "poetry-app: no lockfile: only poetry.lock, which distill does not read (it reads a "
        "pinned requirements.txt)"
    )
    assert (err.hint or "").startswith("export it: poetry export -f requirements.txt")


def test_wheel_writing_outside_its_scheme_is_refused(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "sly", "1.0", files={"../../../../etc/evil.py": "X = 1\n"})
    err = _error(wheels, _ctx(tmp_path))
    assert err.message.startswith("could not install sly 1.0:") and "outside" in err.message
    assert not any(tmp_path.rglob("evil.py"))


def test_remembered_checks_do_not_hide_a_change(tmp_path: Path, web_index: dict[str, Path]) -> None:
    # Remembered: the requirements parsed and were met (package.pymemo); not for others.
    app = _project(tmp_path, "web==1.0\nspeedup==2.1\n")
    ctx = _ctx(tmp_path)
    assert _plan(app, ctx).lang_packages == _plan(app, ctx).lang_packages
    assert "requires oldcompat" in _error(app, ctx, BOOKWORM).message
    pyproject = app / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"web>=1"', '"web>=1", "absent>=1"'))
    assert "absent" in _error(app, ctx).message
    pyproject.write_text(pyproject.read_text().replace('"absent>=1"', '"web >>= 1"'))
    with pytest.raises(DistillError, match="is not a requirement"):
        _plan(app, ctx)
