from __future__ import annotations

from pathlib import Path

import pytest

from distill.build.pipeline import release_version, version_env
from distill.build.spec import FIELDS, Level, PathType, load_spec, presets
from distill.build.spec_doc import reference_markdown
from distill.errors import DistillError


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
        f"  - {{src: {tmp_path}/abs/x, dest: /x, mode: 755}}\n"
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
    assert absolute.mode == 0o755 and absolute.src == tmp_path / "abs/x"
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


# --- the build context ----------------------------------------------------------------------


def test_a_spec_in_a_subdirectory_extends_a_sibling(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/conf").write_text("x\n")
    (tmp_path / "sub/b.yaml").write_text("extends: static\nfiles: [{src: conf, dest: /c}]\n")
    (tmp_path / "sub/a.yaml").write_text("extends: b.yaml\npackages: [libc6]\n")
    spec = load_spec(str(tmp_path / "sub/a.yaml"))
    assert spec.files[0].src == tmp_path / "sub/conf"
    assert spec.files[0].context == (tmp_path / "sub").resolve()


def test_context_widens_what_a_spec_may_name(tmp_path: Path) -> None:
    (tmp_path / "common.yaml").write_text("files: [{src: shared, dest: /s}]\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app/s.yaml").write_text("extends: ../common.yaml\n")
    with pytest.raises(DistillError, match=r"s\.yaml:1: extends: '\.\./common\.yaml' is outside"):
        load_spec(str(tmp_path / "app/s.yaml"))
    spec = load_spec(str(tmp_path / "app/s.yaml"), context=tmp_path)
    assert spec.files[0].src == tmp_path / "shared"


@pytest.mark.parametrize(
    ("src", "match"),
    [
        ("/etc/shadow", r"s\.yaml:2: files\[0\]: src '/etc/shadow' is outside the build context"),
        ("../../../../../../etc/shadow", r"s\.yaml:2: files\[0\]: src '\.\./\.\./"),
        ("/proc/self/environ", "leads to '/proc/"),
        ("out", r"src 'out' is outside the build context .* \(it leads to '/etc'\)"),
    ],
)
def test_files_outside_the_context_are_refused(tmp_path: Path, src: str, match: str) -> None:
    (tmp_path / "out").symlink_to("/etc")
    (tmp_path / "s.yaml").write_text(f"files:\n  - {{src: '{src}', dest: /x}}\n")
    with pytest.raises(DistillError, match=match) as err:
        load_spec(str(tmp_path / "s.yaml"))
    assert err.value.hint is not None and "--context" in err.value.hint


def test_presets_extend_only_presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cc").write_text("not: a spec\n")  # python3 extends the preset cc, not this
    assert "python3" in load_spec("python3").roots


def _staging(tmp_path: Path) -> Path:
    return tmp_path / "staging"


def test_a_symlink_inside_the_context_is_followed(tmp_path: Path) -> None:
    from distill.build.userfiles import file_entries

    (tmp_path / "real.txt").write_text("inside\n")
    (tmp_path / "link.txt").symlink_to("real.txt")
    (tmp_path / "s.yaml").write_text("files: [{src: link.txt, dest: /app/}]\n")
    spec = load_spec(str(tmp_path / "s.yaml"))
    (entry,) = file_entries(spec.files, spec.accounts, _staging(tmp_path))
    assert entry.path == "app/link.txt" and entry.content is not None
    assert entry.content.read_text() == "inside\n"


def test_links_inside_a_copied_tree_stay_links(tmp_path: Path) -> None:
    from distill.build.userfiles import file_entries
    from distill.image.fsentry import EntryKind

    (tmp_path / "tree/sub").mkdir(parents=True)
    (tmp_path / "tree/sub/a").write_text("a\n")
    (tmp_path / "tree/shadow").symlink_to("/etc/shadow")
    (tmp_path / "tree/up").symlink_to("..")
    (tmp_path / "s.yaml").write_text("files: [{src: tree, dest: /t}]\n")
    spec = load_spec(str(tmp_path / "s.yaml"))
    entries = {e.path: e for e in file_entries(spec.files, spec.accounts, _staging(tmp_path))}
    assert sorted(entries) == ["t", "t/shadow", "t/sub", "t/sub/a", "t/up"]
    assert entries["t/shadow"].kind is EntryKind.SYMLINK
    assert entries["t/shadow"].linkname == "/etc/shadow" and entries["t/shadow"].content is None
    assert entries["t/up"].kind is EntryKind.SYMLINK


def test_copying_checks_the_context_again(tmp_path: Path) -> None:
    from distill.build.userfiles import file_entries

    (tmp_path / "conf").write_text("x\n")
    (tmp_path / "s.yaml").write_text("files: [{src: conf, dest: /c}]\n")
    spec = load_spec(str(tmp_path / "s.yaml"))
    (tmp_path / "conf").unlink()
    (tmp_path / "conf").symlink_to("/etc/passwd")  # swapped after the spec was read
    with pytest.raises(DistillError, match=r"s\.yaml:1: files: src .* is outside the build"):
        file_entries(spec.files, spec.accounts, _staging(tmp_path))
    assert not (_staging(tmp_path)).exists() or not any(_staging(tmp_path).rglob("*"))


def test_a_fifo_in_a_copied_tree_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    from distill.build.userfiles import file_entries

    (tmp_path / "tree").mkdir()
    os.mkfifo(tmp_path / "tree/pipe")
    (tmp_path / "s.yaml").write_text("files: [{src: tree, dest: /t}]\n")
    spec = load_spec(str(tmp_path / "s.yaml"))
    with pytest.raises(DistillError, match="'pipe' is neither a file, a directory nor a symlink"):
        file_entries(spec.files, spec.accounts, _staging(tmp_path))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("env: !!python/object/apply:os.system [id]\n", r"s\.yaml:1: invalid YAML: .*python"),
        ("? [a]\n: b\n", "invalid YAML"),
        ("1: x\n", r"s\.yaml:1: a key is not a string"),
        ("root:$y$j9T$secret: x\n", r"s\.yaml:1: a key that is not a name: unknown key"),
        ("packages: " + "[" * 100 + "]" * 100 + "\n", "nested more than 64 levels"),
        ("a: &a x\nb: [" + ", ".join(["*a"] * 300) + "]\n", "more than 256 aliases"),
        ("labels: {a: 2024-13-01}\n", "a value it cannot convert"),
        ("paths: [{path: /x, type: &t [[a, b], [c]]}]\n", r"unknown type a list"),
        ("accounts: {users: [{name: a, uid: 4294967295}]}\n", "expected a number from 0"),
        ("user: 4294967296\n", "not a user"),
    ],
)
def test_hostile_yaml_ends_in_one_line(tmp_path: Path, body: str, match: str) -> None:
    (tmp_path / "s.yaml").write_text(body)
    with pytest.raises(DistillError, match=match) as err:
        load_spec(str(tmp_path / "s.yaml"))
    assert "\n" not in err.value.message and "secret" not in err.value.message


def test_spec_files_are_capped_and_must_be_text(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text("packages:\n" + "  - libc6\n" * 110_000)
    with pytest.raises(DistillError, match="larger than 1048576 bytes"):
        load_spec(str(tmp_path / "big.yaml"))
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DistillError, match="not UTF-8"):
        load_spec(str(tmp_path / "bin.yaml"))


def test_a_dotdot_source_name_never_reaches_an_image_path(tmp_path: Path) -> None:
    from distill.build.userfiles import file_entries

    (tmp_path / "ctx/conf").mkdir(parents=True)
    (tmp_path / "ctx/conf/a").write_text("a\n")
    (tmp_path / "ctx/s.yaml").write_text("files: [{src: conf/a/.., dest: /etc/}]\n")
    spec = load_spec(str(tmp_path / "ctx/s.yaml"))
    paths = [e.path for e in file_entries(spec.files, spec.accounts, _staging(tmp_path))]
    assert paths == ["etc/conf", "etc/conf/a"]


# --- Java presets: suites, debug packages, version_env -----------------------------------------


@pytest.mark.parametrize(
    ("preset", "suite", "feature"),
    [("java17", "bookworm", "17"), ("java21", "trixie", "21"), ("java25", "trixie", "25")],
)
def test_java_presets(preset: str, suite: str, feature: str) -> None:
    spec = load_spec(preset)
    assert spec.suite == suite and spec.suites == (suite,)
    assert f"openjdk-{feature}-jre-headless" in spec.roots and "libc-bin" in spec.roots
    assert dict(spec.env)["LANG"] == "C.UTF-8"
    assert dict(spec.version_env) == {"JAVA_VERSION": f"openjdk-{feature}-jre-headless"}
    assert f"openjdk-{feature}-jdk-headless" not in spec.roots
    debug = load_spec(f"{preset}:debug-nonroot")
    assert debug.levels[-1] == Level(
        ":debug", ("busybox-static", f"openjdk-{feature}-jdk-headless")
    )
    assert debug.entrypoint == ("/busybox/sh",) and debug.user == "65532"


def test_a_spec_on_a_suite_it_is_not_for_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="java17 is built for bookworm only, not trixie") as e:
        load_spec("java17", suite="trixie")
    assert "--suite bookworm" in (e.value.hint or "")
    (tmp_path / "app.yaml").write_text("extends: java17\nsuite: trixie\n")
    with pytest.raises(DistillError, match="app is built for bookworm only"):
        load_spec(str(tmp_path / "app.yaml"))
    (tmp_path / "bad.yaml").write_text("suites: [sid]\n")
    with pytest.raises(DistillError, match="unknown suite 'sid'"):
        load_spec(str(tmp_path / "bad.yaml"))


def test_debug_packages_only_in_debug_images(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: cc\ndebug_packages: [strace]\n")
    (tmp_path / "b.yaml").write_text("extends: cc\ndebug: true\ndebug_packages: [strace]\n")
    assert "strace" not in load_spec(str(tmp_path / "a.yaml")).roots
    assert load_spec(str(tmp_path / "a.yaml:debug")).levels[-1].packages == (
        "busybox-static",
        "strace",
    )
    b = load_spec(str(tmp_path / "b.yaml"))
    assert b.roots[-2:] == ("busybox-static", "strace") and b.entrypoint == ("/busybox/sh",)


def test_version_env_takes_the_release_from_the_lock() -> None:
    spec = load_spec("java21")
    versions = {"openjdk-21-jre-headless": "21.0.9+10-1~deb13u1"}
    assert version_env(spec, versions) == {"JAVA_VERSION": "21.0.9"}
    assert release_version("1:2.3~rc1-4") == "2.3"
    assert release_version("25.0.1+8-1") == "25.0.1"
    with pytest.raises(DistillError, match="JAVA_VERSION names openjdk-21-jre-headless"):
        version_env(spec, {})
