"""Hostile specs and locks: each case is one real `distill lock`, `build` or `fetch` run that
must end in one clean error (naming the spec entry where there is one) before any network
access, without reading outside the build context and without writing anything."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_harness import assert_clean_error, changed, run_distill, snapshot

SECRET = "TOPSECRET-7f3a: this line must never be printed"


def _write(root: Path, name: str, body: str | bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body)
    return path


def _outside(root: Path) -> None:
    """Files outside the context (``ctx/``): a secret, and a valid spec that copies it."""
    _write(root, "secret.txt", SECRET + "\n")
    _write(root, "secret.yaml", "extends: static\nfiles:\n  - {src: secret.txt, dest: /s}\n")


def _spec(body: str | bytes, name: str = "s.yaml") -> Callable[[Path], None]:
    def make(root: Path) -> None:
        _write(root, name, body)

    return make


def _with(setup: Callable[[Path], None], body: str) -> Callable[[Path], None]:
    def make(ctx: Path) -> None:
        setup(ctx)
        _write(ctx, "s.yaml", body)

    return make


def _symlink(name: str, target: str) -> Callable[[Path], None]:
    return lambda ctx: os.symlink(target, ctx / name)


def _deep_flow(depth: int) -> str:
    return "packages: " + "[" * depth + "]" * depth + "\n"


def _alias_bomb() -> str:
    # Nine times nine ... nineteen levels deep: 9**19 strings if anything expanded it.
    anchors = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    anchors += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 19)]
    return f"paths:\n  - {{path: /x, type: [{', '.join(anchors)}]}}\n"


def _chain(depth: int) -> Callable[[Path], None]:
    def make(ctx: Path) -> None:
        for i in range(depth):
            _write(ctx, f"c{i}.yaml", f"extends: c{i + 1}.yaml\n")
        _write(ctx, f"c{depth}.yaml", "extends: static\n")
        _write(ctx, "s.yaml", "extends: c0.yaml\n")

    return make


def _big_pair(ctx: Path) -> None:
    _write(ctx, "a.yaml", "packages:\n" + "".join(f"  - a{i}\n" for i in range(60_000)))
    _write(
        ctx,
        "s.yaml",
        "extends: a.yaml\npackages:\n" + "".join(f"  - b{i}\n" for i in range(60_000)),
    )


def _fifo(name: str) -> Callable[[Path], None]:
    return lambda ctx: os.mkfifo(ctx / name)


FILES = "extends: static\nfiles:\n  - {src: ok.txt, dest: /ok}\n  - {src: %s, dest: /x}\n"


def _files(src: str, setup: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    def make(ctx: Path) -> None:
        _write(ctx, "ok.txt", "fine\n")
        if setup is not None:
            setup(ctx)
        _write(ctx, "s.yaml", FILES % src)

    return make


# name → (make the context, command (s.yaml is the spec), what the error must mention)
SPEC_CASES: dict[str, tuple[Callable[[Path], None], str, tuple[str, ...]]] = {
    "java17-extended-onto-trixie": (
        _spec("extends: java17\nsuite: trixie\n"),
        "lock",
        ("s is built for bookworm only, not trixie", "--suite bookworm"),
    ),
    "java17-with-suite-trixie": (
        _spec("extends: java17\n"),
        "lock --suite trixie",
        ("bookworm only", "--suite bookworm"),
    ),
    "java21-with-suite-bookworm": (
        _spec("extends: java21:debug\n"),
        "lock --suite bookworm",
        ("trixie only", "--suite trixie"),
    ),
    "suites-unknown": (_spec("suites: [trixie, sid]\n"), "lock", ("s.yaml:1", "'sid'")),
    "debug-packages-mapping": (
        _spec("debug_packages: {a: b}\n"),
        "lock",
        ("s.yaml:1", "debug_packages"),
    ),
    "version-env-boolean": (
        _spec("version_env: {JAVA_VERSION: yes}\n"),
        "lock",
        ("s.yaml:1", "version_env", "quoted string"),
    ),
    "files-absolute-etc-shadow": (_files("/etc/shadow"), "lock", ("s.yaml:4", "files[1]")),
    "files-dotdot-etc-shadow": (
        _files("../../../../../../etc/shadow"),
        "build",
        ("s.yaml:4", "files[1]", "../../../../../../etc/shadow", "build context"),
    ),
    "files-proc-self-environ": (
        _files("/proc/self/environ"),
        "lock",
        ("s.yaml:4", "files[1]", "/proc/self/environ"),
    ),
    "files-outside-secret": (_files("../secret.txt"), "build", ("s.yaml:4", "../secret.txt")),
    "files-symlink-to-outside": (
        _files("link", _symlink("link", "/etc/shadow")),
        "build",
        ("s.yaml:4", "files[1]", "'link'", "/etc/shadow"),
    ),
    "files-through-symlinked-dir": (
        _files("etc/shadow", _symlink("etc", "/etc")),
        "lock",
        ("s.yaml:4", "files[1]", "etc/shadow"),
    ),
    "files-symlink-loop": (
        _files(
            "loop/x", lambda ctx: (_symlink("loop", "loop2")(ctx), _symlink("loop2", "loop")(ctx))
        ),
        "lock",
        ("s.yaml:4", "files[1]"),
    ),
    "files-nul-byte": (_files('"a\\0b"'), "lock", ("s.yaml:4", "files[1]")),
    "extends-dotdot-etc-shadow": (
        _spec("extends: ../../../../../../etc/shadow\n"),
        "lock",
        ("s.yaml:1", "extends", "build context"),
    ),
    "extends-outside-secret": (_spec("extends: ../secret.txt\n"), "build", ("s.yaml:1",)),
    "extends-absolute-etc-passwd": (
        _spec("extends: /etc/passwd\n"),
        "lock",
        ("s.yaml:1", "extends", "'/etc/passwd'"),
    ),
    # Two specs of 60,000 packages each: merging them must not cost 60,000² comparisons.
    # (--suite is checked after loading: the run ends there, before any network access.)
    "two-big-specs-merged": (_big_pair, "lock --suite sid", ("unknown suite 'sid'",)),
    "extends-symlink-to-outside-spec": (
        _with(_symlink("base.yaml", "../secret.yaml"), "extends: base.yaml\n"),
        "lock",
        ("s.yaml:1", "extends", "base.yaml"),
    ),
    "extended-spec-files-escape": (
        _with(
            lambda ctx: _write(
                ctx, "sub/base.yaml", "files:\n  - {src: ../../secret.txt, dest: /s}\n"
            ),
            "extends: sub/base.yaml\n",
        ),
        "lock",
        ("base.yaml:2", "files[0]", "../../secret.txt"),
    ),
    "extends-a-fifo": (_with(_fifo("pipe"), "extends: pipe\n"), "lock", ("s.yaml:1", "pipe")),
    "extends-chain-too-deep": (_chain(40), "lock", ("extends", "deep")),
    "extends-self-loop": (_spec("extends: ./s.yaml\n"), "lock", ("loops",)),
    "python-object-tag": (
        _spec('extends: static\nenv: !!python/object/apply:os.system ["echo pwned"]\n'),
        "lock",
        ("s.yaml:2", "python/object/apply"),
    ),
    "binary-spec": (_spec(bytes(range(256)) * 8), "lock", ("not UTF-8",)),
    "nul-in-spec": (_spec("extends: static\n\0\n"), "lock", ("not allowed",)),
    "list-nested-60k": (_spec(_deep_flow(60_000)), "lock", ("s.yaml:1", "nested")),
    "mapping-nested-60k": (
        _spec("env: " + "{a: " * 60_000 + "b" + "}" * 60_000 + "\n"),
        "build",
        ("nested",),
    ),
    "block-nested-500": (
        _spec("".join(f"{'  ' * i}a{i}:\n" for i in range(500))),
        "lock",
        ("nested",),
    ),
    "alias-bomb": (_spec(_alias_bomb()), "lock", ("s.yaml:2", "paths[0]", "a list")),
    "too-many-aliases": (
        _spec("a: &a x\npackages: [" + ", ".join(["*a"] * 1000) + "]\n"),
        "lock",
        ("aliases",),
    ),
    "spec-over-1-mib": (
        _spec("packages:\n" + "  - libc6\n" * 150_000),
        "lock",
        ("larger than",),
    ),
    "top-level-list": (_spec("- a\n- b\n"), "lock", ("must be a YAML mapping",)),
    "non-string-key": (_spec("extends: static\n1: x\n"), "lock", ("s.yaml:2", "not a string")),
    "unhashable-key": (_spec("? [a, b]\n: x\n"), "lock", ("invalid YAML",)),
    "int-of-5000-digits": (
        _spec("accounts: {users: [{name: a, uid: 1" + "0" * 5000 + "}]}\n"),
        "lock",
        ("invalid YAML",),
    ),
    "uid-too-large": (
        _spec("accounts: {users: [{name: a, uid: 99999999999}]}\n"),
        "lock",
        ("s.yaml:1", "accounts[0]"),
    ),
    "bad-date": (_spec("labels: {a: 2024-13-45}\n"), "lock", ("invalid YAML",)),
    # Inside the context but leading nowhere: refused before anything is resolved or fetched.
    "files-dangling-link": (
        _with(
            lambda ctx: os.symlink("nothere", ctx / "dangling"),
            "files: [{src: dangling, dest: /x}]\n",
        ),
        "build",
        ("s.yaml", "dangling"),
    ),
}


@pytest.mark.parametrize("case", SPEC_CASES, ids=list(SPEC_CASES))
def test_hostile_spec(case: str, sandbox: Path) -> None:
    make, command, mentions = SPEC_CASES[case]
    _outside(sandbox)
    ctx = sandbox / "ctx"
    ctx.mkdir()
    make(ctx)
    before = snapshot(sandbox)
    args = ["lock", "ctx/s.yaml", "-o", "ctx/out.lock"]
    if command == "build":
        args = ["build", "ctx/s.yaml", "-o", "oci:ctx/out"]
    elif command != "lock":
        args += command.split()[1:]
    outcome = run_distill(args, cwd=sandbox)
    assert_clean_error(outcome, *mentions)
    assert SECRET not in outcome.stderr + outcome.stdout
    assert "pwned" not in outcome.stdout
    assert changed(before, snapshot(sandbox)) == set(), outcome.describe()


def _lock_json(**fields: object) -> str:
    import json

    package = {
        "name": "hello",
        "version": "1.0-1",
        "architecture": "amd64",
        "filename": "pool/main/h/hello/hello_1.0-1_amd64.deb",
        "sha256": "a" * 64,
        "size": 10,
        "source": "hello",
        "source_version": "1.0-1",
        "pocket": "trixie",
    }
    lock: dict[str, object] = {
        "lockVersion": 1,
        "suite": "trixie",
        "pockets": [{"name": "trixie", "date": "2026-11-21T09:15:44+00:00"}],
        "request": {"packages": ["hello"], "exclude": [], "include": []},
        "archs": {"amd64": {"packages": [package], "excluded": []}},
    }
    for key, value in fields.items():
        if key.startswith("pkg_"):
            package[key.removeprefix("pkg_")] = value
        else:
            lock[key] = value
    return json.dumps(lock)


LOCK_CASES: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "lock-nested-60k": (_spec("[" * 60_000 + "]" * 60_000, "l.lock"), ("nested",)),
    "lock-object-nested-60k": (
        _spec('{"a":' * 60_000 + "1" + "}" * 60_000, "l.lock"),
        ("nested",),
    ),
    "lock-binary": (_spec(bytes(range(256)) * 64, "l.lock"), ("not valid JSON",)),
    "lock-over-16-mib": (
        _spec(b" " * (17 << 20), "l.lock"),
        ("larger than",),
    ),
    "lock-a-fifo": (lambda d: os.mkfifo(d / "l.lock"), ("not a regular file",)),
    "lock-a-directory": (lambda d: (d / "l.lock").mkdir(), ("not a regular file",)),
    "lock-size-a-string": (
        _spec(_lock_json(pkg_size="10"), "l.lock"),
        ("archs.amd64.packages[0].size",),
    ),
    "lock-sha256-not-hex": (
        _spec(_lock_json(pkg_sha256="../../x"), "l.lock"),
        ("packages[0].sha256",),
    ),
    "lock-name-a-list": (
        _spec(_lock_json(pkg_name=["a"]), "l.lock"),
        ("packages[0].name",),
    ),
    "lock-archs-a-list": (
        _spec(_lock_json(archs=[1, 2]), "l.lock"),
        ("archs",),
    ),
    "lock-bad-date": (
        _spec(_lock_json(pockets=[{"name": "x", "date": "soon"}]), "l.lock"),
        ("pockets[0].date",),
    ),
    "lock-top-level-array": (_spec("[1, 2]", "l.lock"), ("not an object",)),
}


@pytest.mark.parametrize("case", LOCK_CASES, ids=list(LOCK_CASES))
@pytest.mark.parametrize("command", ["build", "fetch"])
def test_hostile_lock(case: str, command: str, sandbox: Path) -> None:
    make, mentions = LOCK_CASES[case]
    make(sandbox)
    before = snapshot(sandbox)
    args = ["fetch", "l.lock"]
    if command == "build":
        args = ["build", "static", "--lock", "l.lock", "-o", "oci:out"]
    outcome = run_distill(args, cwd=sandbox)
    assert_clean_error(outcome, "l.lock", *mentions)
    assert changed(before, snapshot(sandbox)) == set(), outcome.describe()


def test_fetch_refuses_a_lock_with_an_unsafe_path(sandbox: Path) -> None:
    _write(sandbox, "l.lock", _lock_json(pkg_filename="../../../etc/shadow"))
    before = snapshot(sandbox)
    outcome = run_distill(["fetch", "l.lock"], cwd=sandbox)
    assert_clean_error(outcome, "unsafe path")
    assert changed(before, snapshot(sandbox)) == set(), outcome.describe()


def test_context_option_widens_the_context_visibly(sandbox: Path) -> None:
    _write(sandbox, "common.yaml", "extends: static\nfiles:\n  - {src: ok.txt, dest: /ok}\n")
    _write(sandbox, "ok.txt", "fine\n")
    _write(sandbox, "app/s.yaml", "extends: ../common.yaml\n")
    refused = run_distill(["lock", "app/s.yaml", "-o", "x.lock"], cwd=sandbox)
    assert_clean_error(refused, "s.yaml:1", "extends", "build context", "--context")
    # With the wider context the spec loads; --suite is checked after loading, so the run
    # proves that without touching the network.
    widened = run_distill(
        ["lock", "app/s.yaml", "--context", ".", "--suite", "sid", "-o", "x.lock"], cwd=sandbox
    )
    assert_clean_error(widened, "unknown suite 'sid'")
    assert not (sandbox / "x.lock").exists()


@pytest.mark.network
def test_a_built_image_holds_links_never_what_they_point_to(sandbox: Path) -> None:
    """A real build: a link inside a copied tree stays a link (its outside target unread),
    a link to a file inside the context brings that file's content."""
    import gzip
    import io
    import tarfile

    _outside(sandbox)
    ctx = sandbox / "ctx"
    _write(ctx, "tree/real.txt", "inside\n")
    os.symlink(str(sandbox / "secret.txt"), ctx / "tree/secret")
    os.symlink("tree/real.txt", ctx / "alias.txt")
    _write(
        ctx,
        "s.yaml",
        "extends: static\nfiles:\n  - {src: tree, dest: /t}\n  - {src: alias.txt, dest: /a.txt}\n",
    )
    outcome = run_distill(["build", "ctx/s.yaml", "-o", "oci:out"], cwd=sandbox, timeout=300)
    assert outcome.returncode == 0, outcome.describe()
    members: dict[str, tarfile.TarInfo] = {}
    contents: dict[str, bytes] = {}
    for blob in (sandbox / "out/blobs/sha256").iterdir():
        data = blob.read_bytes()
        assert SECRET.encode() not in data
        if data[:2] != b"\x1f\x8b":
            continue
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
            for member in tar:
                members[member.name] = member
                if member.isfile() and member.name in ("t/real.txt", "a.txt"):
                    handle = tar.extractfile(member)
                    assert handle is not None
                    contents[member.name] = handle.read()
    assert members["t/secret"].issym() and members["t/secret"].linkname == str(
        sandbox / "secret.txt"
    )
    assert contents == {"t/real.txt": b"inside\n", "a.txt": b"inside\n"}
