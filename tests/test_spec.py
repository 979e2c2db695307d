from __future__ import annotations

from pathlib import Path

import pytest

from distill.errors import DistillError
from distill.spec import FIELDS, Level, PathType, load_spec, presets, reference_markdown


def test_presets_chain() -> None:
    assert {"static", "base-nossl", "base", "cc", "python3", "java21", "nodejs"} <= set(presets())
    spec = load_spec("python3")
    assert spec.packages[:1] == ("base-files",)
    assert "libc6" in spec.packages and "python3" in spec.packages
    assert "openssl" in spec.exclude
    assert spec.suite == "trixie"


def test_extends_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text("extends: base\nsuite: bookworm\npackages: [zlib1g]\n")
    (tmp_path / "child.yaml").write_text(
        "extends: parent.yaml\npackages: [libzstd1=1.5.4+dfsg2-5]\nexclude: ['tzdata*']\n"
        "archs: [arm64]\n"
    )
    spec = load_spec(str(tmp_path / "child.yaml"))
    assert spec.suite == "bookworm" and spec.archs == ("arm64",)
    assert spec.packages[-2:] == ("zlib1g", "libzstd1=1.5.4+dfsg2-5")
    assert spec.pins == {"libzstd1": "1.5.4+dfsg2-5"}
    assert "libzstd1" in spec.roots
    assert spec.exclude[-1] == "tzdata*" and "openssl" in spec.exclude
    assert load_spec(str(tmp_path / "child.yaml"), suite="trixie").suite == "trixie"


def test_unknown_key_has_line_and_suggestion(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("suite: trixie\n\npakages: [libc6]\n")
    with pytest.raises(DistillError) as err:
        load_spec(str(tmp_path / "s.yaml"))
    assert f"{tmp_path / 's.yaml'}:3: pakages: unknown key" in err.value.message
    assert err.value.hint == "did you mean `packages`?"


def test_bad_yaml_has_line(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("suite: trixie\npackages: [libc6\nexclude: []\n")
    with pytest.raises(DistillError, match=r"s\.yaml:\d+: invalid YAML"):
        load_spec(str(tmp_path / "s.yaml"))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("suite: sid\n", "unknown suite 'sid'"),
        ("archs: [mips]\n", "unsupported architecture 'mips'"),
        ("packages: {a: 1}\n", "expected a list of strings"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("extends: nosuchpreset\n", "no spec file or preset named 'nosuchpreset'"),
    ],
)
def test_invalid_values(tmp_path: Path, body: str, match: str) -> None:
    (tmp_path / "s.yaml").write_text(body)
    with pytest.raises(DistillError, match=match):
        load_spec(str(tmp_path / "s.yaml"))


def test_extends_loop(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(DistillError, match="loops"):
        load_spec(str(tmp_path / "a.yaml"))


def test_cli_overrides_validated() -> None:
    with pytest.raises(DistillError, match="unknown suite"):
        load_spec("base", suite="buster")
    assert load_spec("base", archs=("arm64", "amd64")).archs == ("arm64", "amd64")


def test_variants() -> None:
    nonroot = load_spec("python3:nonroot")
    assert (nonroot.user, nonroot.workdir) == ("65532", "/home/nonroot")
    assert nonroot.entrypoint == ("/usr/bin/python3",) and not nonroot.debug
    debug = load_spec("base:debug")
    assert debug.debug and debug.entrypoint == ("/busybox/sh",) and debug.user is None
    assert debug.packages[-1] == "busybox-static"
    assert debug.levels[-1] == Level(":debug", ("busybox-static",))
    both = load_spec("java21:debug-nonroot")
    assert both.entrypoint == ("/busybox/sh",) and both.user == "65532"
    assert both.name == "java21:debug-nonroot"
    with pytest.raises(DistillError, match="no spec file or preset named 'base:root'"):
        load_spec("base:root")


def test_levels_follow_the_extends_chain(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("extends: python3:nonroot\npackages: [libpq5]\n")
    spec = load_spec(str(tmp_path / "app.yaml"))
    assert [lv.name for lv in spec.levels] == [
        "static",
        "base-nossl",
        "base",
        "cc",
        "python3",
        "app",
    ]
    assert spec.levels[-1].packages == ("libpq5",) and spec.user == "65532"


def test_debug_key_keeps_the_program_and_variant_can_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: python3\ndebug: true\n")
    (tmp_path / "b.yaml").write_text("extends: python3:debug\nentrypoint: [/usr/bin/python3]\n")
    a, b = load_spec(str(tmp_path / "a.yaml")), load_spec(str(tmp_path / "b.yaml"))
    assert a.debug and a.entrypoint == ("/usr/bin/python3",) and "busybox-static" in a.roots
    assert b.debug and b.entrypoint == ("/usr/bin/python3",) and "busybox-static" in b.roots


def test_entrypoint_resets_inherited_cmd(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: static\nentrypoint: [/app]\ncmd: [--serve]\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nentrypoint: [/other]\n")
    (tmp_path / "c.yaml").write_text("extends: a.yaml\nenv: {A: '1'}\n")
    (tmp_path / "d.yaml").write_text("extends: python3\nentrypoint: null\ncmd: [/app]\n")
    assert load_spec(str(tmp_path / "b.yaml")).cmd is None
    assert load_spec(str(tmp_path / "c.yaml")).cmd == ("--serve",)
    d = load_spec(str(tmp_path / "d.yaml"))
    assert d.entrypoint is None and d.cmd == ("/app",)


def test_files_and_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/base.yaml").write_text(
        "extends: static\nfiles:\n  - {src: conf, dest: /etc/app/}\n"
    )
    (tmp_path / "app.yaml").write_text(
        "extends: sub/base.yaml\n"
        "files:\n"
        "  - src: app.jar\n"
        "    dest: /app//app.jar\n"
        "    mode: 0640\n"
        "    owner: nonroot:nonroot\n"
        "  - {src: /abs/x, dest: /x, mode: 755}\n"
        "paths:\n"
        "  - {path: /data, type: directory, mode: '0o700', owner: 65532}\n"
        "  - {path: /usr/bin/python, type: symlink, target: python3}\n"
    )
    spec = load_spec(str(tmp_path / "app.yaml"))
    conf, jar, absolute = spec.files
    assert conf.src == tmp_path / "sub/conf" and conf.into and conf.dest == "/etc/app"
    assert conf.origin == f"{tmp_path / 'sub/base.yaml'}:3"
    assert jar.src == tmp_path / "app.jar" and jar.dest == "/app/app.jar" and not jar.into
    assert (jar.mode, jar.owner, jar.origin) == (
        0o640,
        "nonroot:nonroot",
        f"{tmp_path / 'app.yaml'}:3",
    )
    assert absolute.mode == 0o755 and absolute.src == Path("/abs/x")
    data, link = spec.paths
    assert (data.type, data.mode, data.owner) == (PathType.DIRECTORY, 0o700, "65532")
    assert (link.type, link.target) == (PathType.SYMLINK, "python3")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            "files:\n  - {src: a, dest: /a}\n  - {src: b, dest: /b, mode: rwx}\n",
            r"s\.yaml:3: files\[1\]: not an octal mode: 'rwx'",
        ),
        ("files:\n  - {src: a}\n", r"s\.yaml:2: files\[0\]: `dest` is required"),
        ("files:\n  - {src: a, dest: rel}\n", "'rel' is not an absolute path"),
        ("files:\n  - {src: a, dest: /a, mod: '0644'}\n", "unknown field 'mod'"),
        ("paths:\n  - {path: /l, type: symlink}\n", "a symlink needs a `target`"),
        ("paths:\n  - {path: /l, type: fifo}\n", "unknown type 'fifo'"),
        ("entrypoint: /app --serve\n", "would need a shell"),
        ("env:\n  DEBUG: yes\n", r"s\.yaml:1: env: DEBUG: write the value as a quoted string"),
        ("ports: [80, 'http']\n", "not a port: 'http'"),
        ("volumes: [data]\n", "'data' is not an absolute path"),
        ("keep: {docs: true}\n", "unknown kind 'docs'"),
        ("user: 'a b'\n", "not a user"),
        ("accounts: {users: [{name: app}]}\n", "`uid` is required"),
    ],
)
def test_invalid_build_values(tmp_path: Path, body: str, match: str) -> None:
    (tmp_path / "s.yaml").write_text(body)
    with pytest.raises(DistillError, match=match):
        load_spec(str(tmp_path / "s.yaml"))


def test_config_values_and_merging(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "extends: base\n"
        "env: {A: '1', B: 2}\n"
        "ports: [8080, 53/udp, 8080/TCP]\n"
        "labels: {team: x}\n"
        "keep: {man: true}\n"
        "accounts:\n"
        "  users: [{name: app, uid: 1000}]\n"
        "  groups: [{name: staff, gid: 51}]\n"
    )
    (tmp_path / "b.yaml").write_text(
        "extends: a.yaml\n"
        "env: {B: '3', C: ''}\n"
        "ports: [9090]\n"
        "keep: {locale: true}\n"
        "accounts: {users: [{name: app, uid: 1001, home: /srv}]}\n"
        "volumes: [/data/]\n"
    )
    spec = load_spec(str(tmp_path / "b.yaml"))
    assert spec.env == (("A", "1"), ("B", "3"), ("C", ""))
    assert spec.ports == ("8080/tcp", "53/udp", "9090/tcp")
    assert spec.labels == (("team", "x"),) and spec.volumes == ("/data",)
    assert (spec.keep.doc, spec.keep.man, spec.keep.locale) == (False, True, True)
    users = {a.name: a for a in spec.accounts.users}
    assert set(users) == {"root", "nobody", "nonroot", "app"}
    assert (users["app"].uid, users["app"].gid, users["app"].home) == (1001, 1001, "/srv")
    assert {g.name: g.gid for g in spec.accounts.groups}["staff"] == 51


def test_every_key_is_documented() -> None:
    docs = (Path(__file__).parents[1] / "docs/spec.md").read_text()
    assert [key for key in FIELDS if f"### `{key}`" not in docs] == []
    # The key reference is generated from FIELDS; regenerate it as docs/spec.md says.
    assert reference_markdown() in docs
