"""``distill package`` on hostile projects: symlinks out of the project, wheels and jars that
climb out, lie or explode, lock files nested or huge, ELF headers that are garbage or ask
for ten thousand libraries, outputs that are devices or the project itself.

Every case packages onto a small hand-made base image (``hostile_apps.fake_base``) read
from an ``oci:`` layout, so no Debian mirror is needed: the planners get straight to the
hostile input. Each run ends in a clean error or a correct image, within the harness's
bounds, and nothing outside the project is read or written."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from hostile_apps import (
    TRIPLET,
    declare_size,
    elf_file,
    fake_base,
    jar_members,
    wheel_members,
    write_zip,
    zip_with_big_member,
)
from hostile_harness import Outcome, assert_bounded, assert_clean_error, run_distill

SECRET = b"hostile-secret-" + uuid.uuid4().hex.encode()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> str:
    layout = fake_base(tmp_path_factory.mktemp("base"))
    return f"oci:{layout.root}"


def package(sandbox: Path, project: Path, base: str, *args: str, out: str = "") -> Outcome:
    target = out or f"oci:{sandbox / 'out'}"
    return run_distill(["package", str(project), "--base", base, *args, "-o", target], cwd=sandbox)


def report(name: str, outcome: Outcome) -> None:
    said = " | ".join(outcome.stderr.strip().splitlines()[-2:])[:300]
    print(
        f"\n{name}: exit {outcome.returncode}, {outcome.seconds:.1f} s, "
        f"{outcome.max_rss >> 20} MiB: {said}"
    )


def all_blob_bytes(layout: Path) -> bytes:
    """Every blob of the layout, layers uncompressed (so a marker in a file shows)."""
    import gzip

    out = []
    for path in sorted((layout / "blobs").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return b"".join(out)


def layer_paths(layout: Path, skip: int = 0) -> dict[str, str]:
    """Every path in the image's layers (after the first ``skip``: the base's) → its link
    target ('' for a file or directory)."""
    import tarfile

    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    found: dict[str, str] = {}
    for layer in manifest["layers"][skip:]:
        with tarfile.open(blobs / layer["digest"][7:]) as tar:
            for member in tar:
                found[member.name] = member.linkname
    return found


def outside_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(SECRET)
    return secret


# --- what a project holds -------------------------------------------------------------------


def test_symlinks_out_of_a_python_project_stay_links(
    sandbox: Path, tmp_path: Path, base: str
) -> None:
    secret = outside_secret(tmp_path)
    project = sandbox / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "1.0"\n')
    (project / "app.py").write_text("print('hi')\n")
    (project / "shadow").symlink_to("/etc/shadow")
    (project / "secret").symlink_to(secret)
    (project / "up").symlink_to("../..")
    (project / "sub").mkdir()
    (project / "sub" / "climb").symlink_to("../../../outside/secret.txt")
    outcome = package(sandbox, project, base, "--entrypoint", '["/usr/bin/python3", "/app/app.py"]')
    report("package python, symlinks out of the project", outcome)
    assert_bounded(outcome)
    if outcome.returncode == 0:
        layout = sandbox / "out"
        assert SECRET not in all_blob_bytes(layout)
        paths = layer_paths(layout)
        for name in ("app/shadow", "app/secret", "app/up", "app/sub/climb"):
            assert paths.get(name), f"{name} is not a symlink in the image: {paths.get(name)!r}"
    else:
        assert_clean_error(outcome)


def test_symlinks_out_of_an_elf_project_are_not_followed(
    sandbox: Path, tmp_path: Path, base: str
) -> None:
    secret = outside_secret(tmp_path)
    project = sandbox / "proj"
    project.mkdir()
    program = project / "server"
    program.write_bytes(elf_file(interp=None))
    program.chmod(0o755)
    (project / "shadow").symlink_to("/etc/shadow")
    (project / "secret").symlink_to(secret)
    (project / "up").symlink_to("../..")
    outcome = package(sandbox, project, base, "--entrypoint", "/app/server")
    report("package elf, symlinks out of the project", outcome)
    assert_bounded(outcome)
    if outcome.returncode == 0:
        assert SECRET not in all_blob_bytes(sandbox / "out")
    else:
        assert_clean_error(outcome)


def test_symlinked_jar_out_of_a_java_directory_is_not_read(
    sandbox: Path, tmp_path: Path, base: str
) -> None:
    secret = outside_secret(tmp_path)
    outside_jar = write_zip(tmp_path / "outside" / "lib.jar", jar_members(extra={"s": SECRET}))
    project = sandbox / "proj"
    project.mkdir()
    write_zip(project / "app.jar", jar_members())
    (project / "lib.jar").symlink_to(outside_jar)
    (project / "shadow.jar").symlink_to("/etc/shadow")
    (project / "secret.jar").symlink_to(secret)
    outcome = package(sandbox, project, base)
    report("package java dir, jars symlinked from outside", outcome)
    assert_bounded(outcome)
    if outcome.returncode == 0:
        assert SECRET not in all_blob_bytes(sandbox / "out")
    else:
        assert_clean_error(outcome)


def test_a_1gb_requirements_txt_is_refused(sandbox: Path, base: str) -> None:
    project = sandbox / "proj"
    project.mkdir()
    with (project / "requirements.txt").open("wb") as fh:
        fh.write(b"flask==3.0.0 \\\n")
        fh.truncate(1 << 30)  # sparse: costs no disk
    outcome = package(sandbox, project, base)
    report("package, 1 GiB requirements.txt", outcome)
    assert_clean_error(outcome, "requirements.txt")


# --- wheels ----------------------------------------------------------------------------------


def wheel_project(sandbox: Path, members: dict[str, bytes] | list[tuple[str, bytes]]) -> Path:
    project = sandbox / "proj"
    project.mkdir()
    write_zip(project / "app-1.0-py3-none-any.whl", members)
    return project


@pytest.mark.parametrize(
    "name",
    [
        "../../../../../../../../../../../../../../../tmp/{marker}",
        "/tmp/{marker}",
        "app/../../{marker}",
    ],
    ids=["dotdot", "absolute", "inner-dotdot"],
)
def test_a_wheel_member_out_of_site_packages_is_refused(
    sandbox: Path, base: str, name: str
) -> None:
    marker = "hostile-" + uuid.uuid4().hex
    member = name.format(marker=marker)
    project = wheel_project(sandbox, wheel_members(files={member: b"pwned\n"}))
    outcome = package(sandbox, project, base)
    report(f"package, wheel member {member[:40]}", outcome)
    assert_clean_error(outcome)
    assert not Path("/tmp", marker).exists()
    assert not list(sandbox.parent.rglob(marker))


def test_a_wheel_whose_record_lies_is_refused(sandbox: Path, base: str) -> None:
    members = wheel_members()
    members["app/__init__.py"] = b"import os; os.system('echo pwned')\n"  # after RECORD
    project = wheel_project(sandbox, members)
    outcome = package(sandbox, project, base)
    report("package, wheel RECORD lying", outcome)
    assert_clean_error(outcome, "app")


def test_a_wheel_without_dist_info_is_refused(sandbox: Path, base: str) -> None:
    members = {k: v for k, v in wheel_members().items() if ".dist-info/" not in k}
    project = wheel_project(sandbox, members)
    outcome = package(sandbox, project, base)
    report("package, wheel without .dist-info", outcome)
    assert_clean_error(outcome, ".dist-info")


def test_a_wheel_declaring_a_huge_member_is_refused(sandbox: Path, base: str) -> None:
    project = wheel_project(sandbox, wheel_members(files={"app/big.bin": b"x" * 1000}))
    declare_size(project / "app-1.0-py3-none-any.whl", "app/big.bin", 0xFFFFFFF0)
    outcome = package(sandbox, project, base)
    report("package, wheel declaring 4 GiB", outcome)
    assert_clean_error(outcome)


def test_a_wheel_bomb_is_refused(sandbox: Path, base: str) -> None:
    project = sandbox / "proj"
    project.mkdir()
    members = wheel_members()
    record = members.pop("app-1.0.dist-info/RECORD")
    zip_with_big_member(
        project / "app-1.0-py3-none-any.whl",
        "app/bomb.bin",
        (2 << 30) + (1 << 20),  # over distill's 2 GiB cap for one wheel
        {**members, "app-1.0.dist-info/RECORD": record},
    )
    outcome = package(sandbox, project, base)
    report("package, 2 GiB wheel bomb", outcome)
    assert_clean_error(outcome)


# --- jars ------------------------------------------------------------------------------------


def test_a_jar_bomb_is_refused(sandbox: Path, base: str) -> None:
    jar = zip_with_big_member(
        sandbox / "app.jar", "BOOT-INF/lib/bomb.jar", (2 << 30) + (1 << 20), {}
    )
    members = jar_members(
        "org.springframework.boot.loader.launch.JarLauncher",
        extra={
            "BOOT-INF/layers.idx": b'- "dependencies":\n  - "BOOT-INF/lib/"\n',
            "org/springframework/boot/loader/launch/JarLauncher.class": b"\xca\xfe\xba\xbe",
        },
    )
    import zipfile

    with zipfile.ZipFile(jar, "a") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    outcome = package(sandbox, jar, base)
    report("package, 2 GiB jar bomb", outcome)
    assert_clean_error(outcome)


def test_a_jar_of_100k_members_is_refused(sandbox: Path, base: str) -> None:
    members = jar_members()
    items = list(members.items()) + [(f"c/{i}.class", b"") for i in range(100_001)]
    jar = write_zip(sandbox / "app.jar", items)
    outcome = package(sandbox, jar, base)
    report("package, jar of 100k members", outcome)
    assert_clean_error(outcome)


def test_a_jar_with_a_1gb_manifest_line_is_refused(sandbox: Path, base: str) -> None:
    jar = zip_with_big_member(sandbox / "app.jar", "META-INF/MANIFEST.MF", 1 << 30, {})
    outcome = package(sandbox, jar, base)
    report("package, 1 GiB manifest line", outcome)
    assert_clean_error(outcome, "MANIFEST")


@pytest.mark.parametrize(
    "entry",
    ["../../etc/", "/etc/passwd", "BOOT-INF/../../x", "x/../../y/"],
)
def test_a_layers_idx_naming_paths_outside_boot_inf(sandbox: Path, base: str, entry: str) -> None:
    index = (
        '- "dependencies":\n  - "BOOT-INF/lib/"\n- "evil":\n  - "' + entry + '"\n'
        '- "application":\n  - "BOOT-INF/classes/"\n  - "META-INF/"\n'
    ).encode()
    members = jar_members(
        "org.springframework.boot.loader.launch.JarLauncher",
        extra={
            "BOOT-INF/layers.idx": index,
            "BOOT-INF/classes/app/Main.class": b"\xca\xfe\xba\xbe",
            "org/springframework/boot/loader/launch/JarLauncher.class": b"\xca\xfe\xba\xbe",
            "BOOT-INF/lib/dep.jar": b"PK\x05\x06" + bytes(18),
        },
    )
    jar = write_zip(sandbox / "app.jar", members)
    outcome = package(sandbox, jar, base)
    report(f"package, layers.idx entry {entry}", outcome)
    assert_bounded(outcome)
    if outcome.returncode == 0:
        for path in layer_paths(sandbox / "out", skip=1):  # the fake base has one layer
            assert path.startswith("app/") or path in ("app",), path
    else:
        assert_clean_error(outcome)


# --- Node locks ------------------------------------------------------------------------------


def node_project(sandbox: Path) -> Path:
    project = sandbox / "proj"
    project.mkdir()
    (project / "package.json").write_text('{"name": "app", "version": "1.0.0", "main": "i.js"}')
    (project / "i.js").write_text("console.log(1)\n")
    return project


def test_a_package_lock_nested_100k_deep_is_refused(sandbox: Path, base: str) -> None:
    project = node_project(sandbox)
    deep = b'{"lockfileVersion": 3, "packages": {"": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    (project / "package-lock.json").write_bytes(deep)
    outcome = package(sandbox, project, base)
    report("package, package-lock.json 100k deep", outcome)
    assert_clean_error(outcome, "package-lock.json")


def test_a_500mb_package_lock_is_refused(sandbox: Path, base: str) -> None:
    project = node_project(sandbox)
    with (project / "package-lock.json").open("wb") as fh:
        fh.write(b'{"lockfileVersion": 3, "packages": {"": {}}, "x": "')
        fh.truncate(500 << 20)
    outcome = package(sandbox, project, base)
    report("package, 500 MiB package-lock.json", outcome)
    assert_clean_error(outcome, "package-lock.json")


# --- ELF -------------------------------------------------------------------------------------


def elf_project(sandbox: Path, data: bytes) -> Path:
    project = sandbox / "proj"
    project.mkdir()
    program = project / "server"
    program.write_bytes(data)
    program.chmod(0o755)
    return project


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda d: d[:20], id="cut-in-header"),
        pytest.param(lambda d: d[:100], id="cut-in-program-headers"),
        pytest.param(lambda d: d[:64] + os.urandom(4096), id="garbage-after-header"),
        pytest.param(lambda d: b"\x7fELF" + os.urandom(4096), id="garbage-header"),
        pytest.param(
            lambda d: d[:32] + (2**63).to_bytes(8, "little") + d[40:], id="phoff-beyond-file"
        ),
        pytest.param(lambda d: d[:60] + b"\xff\xff" + d[62:], id="65535-sections"),
    ],
)
def test_a_damaged_elf_header_is_refused(sandbox: Path, base: str, cut: object) -> None:
    assert callable(cut)
    project = elf_project(sandbox, cut(elf_file(needed=["libc.so.6"])))
    outcome = package(sandbox, project, base, "--kind", "elf")
    report(f"package, damaged ELF {os.environ.get('PYTEST_CURRENT_TEST', '')}", outcome)
    assert_bounded(outcome)
    if outcome.returncode != 0:
        assert_clean_error(outcome)


def test_an_elf_needing_10k_libraries_present_in_the_base(sandbox: Path, tmp_path: Path) -> None:
    names = [f"libhostile{i}.so.1" for i in range(10_000)]
    layout = fake_base(tmp_path / "base10k", [f"usr/lib/{TRIPLET}/{n}" for n in names])
    project = elf_project(sandbox, elf_file(needed=["libc.so.6", *names]))
    outcome = package(sandbox, project, f"oci:{layout.root}")
    report("package, ELF with 10k DT_NEEDED (all in the base)", outcome)
    assert_bounded(outcome)
    assert outcome.returncode == 0, outcome.describe()


def test_a_runpath_climbing_out_of_the_image_stays_in_it(sandbox: Path, base: str) -> None:
    # $ORIGIN/../../.. from /app climbs past / : the loader stops at the root, so must distill.
    project = elf_project(sandbox, elf_file(needed=["libc.so.6"], runpath="$ORIGIN/../../.."))
    outcome = package(sandbox, project, base)
    report("package, RUNPATH $ORIGIN/../../..", outcome)
    assert_bounded(outcome)
    assert outcome.returncode == 0, outcome.describe()


# --- outputs ---------------------------------------------------------------------------------


def test_an_output_onto_a_device_is_refused(sandbox: Path, base: str) -> None:
    project = elf_project(sandbox, elf_file(interp=None))
    outcome = package(sandbox, project, base, out="oci-archive:/dev/null")
    report("package, output /dev/null", outcome)
    assert_clean_error(outcome, "/dev/null")


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
def test_an_output_onto_the_project_itself_is_refused(
    sandbox: Path, base: str, transport: str
) -> None:
    project = elf_project(sandbox, elf_file(interp=None))
    (project / "README").write_text("keep me\n")
    outcome = package(sandbox, project, base, out=f"{transport}:{project}")
    report(f"package, output {transport}: the project", outcome)
    assert_clean_error(outcome)
    assert (project / "README").read_text() == "keep me\n"


def test_an_output_onto_the_program_itself_is_refused(sandbox: Path, base: str) -> None:
    project = elf_project(sandbox, elf_file(interp=None))
    program = project / "server"
    before = program.read_bytes()
    outcome = package(sandbox, program, base, out=f"oci-archive:{program}")
    report("package, output onto the program", outcome)
    assert_clean_error(outcome)
    assert program.read_bytes() == before


@pytest.mark.network
def test_an_elf_needing_10k_unknown_libraries_gets_a_one_line_error(
    sandbox: Path, base: str
) -> None:
    # Each name is looked up in the Debian archive's Contents index; none is there.
    names = [f"libhostile{i}.so.1" for i in range(10_000)]
    project = elf_project(sandbox, elf_file(needed=["libc.so.6", *names]))
    outcome = package(sandbox, project, base)
    report("package, ELF with 10k unknown DT_NEEDED", outcome)
    line = assert_clean_error(outcome, "libhostile0.so.1", "more")
    assert len(line) < 2000, line


def test_symlinks_out_of_a_node_project_stay_links(
    sandbox: Path, tmp_path: Path, base: str
) -> None:
    secret = outside_secret(tmp_path)
    project = node_project(sandbox)
    lock = {"name": "app", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
            "packages": {"": {"name": "app", "version": "1.0.0"}}}  # fmt: skip
    (project / "package-lock.json").write_text(json.dumps(lock))
    (project / "secret.js").symlink_to(secret)
    (project / "evil.node").symlink_to(secret)
    (project / "up").symlink_to("../..")
    (project / "shadow").symlink_to("/etc/shadow")
    outcome = package(sandbox, project, base)
    report("package node, symlinks out of the project", outcome)
    assert_bounded(outcome)
    if outcome.returncode == 0:
        layout = sandbox / "out"
        assert SECRET not in all_blob_bytes(layout)
        paths = layer_paths(layout)
        for name in ("app/secret.js", "app/evil.node", "app/up", "app/shadow"):
            assert paths.get(name), f"{name} is not a symlink in the image: {paths.get(name)!r}"
    else:
        assert_clean_error(outcome)


@pytest.mark.parametrize("kind", ["python", "elf", "node"])
def test_a_fifo_in_the_project_does_not_hang(sandbox: Path, base: str, kind: str) -> None:
    if kind == "node":
        project = node_project(sandbox)
        os.mkfifo(project / "package-lock.json")
    elif kind == "python":
        project = sandbox / "proj"
        project.mkdir()
        (project / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "1.0"\n')
        (project / "main.py").write_text("print(1)\n")
        os.mkfifo(project / "requirements.txt")
    else:
        project = elf_project(sandbox, elf_file(interp=None))
        os.mkfifo(project / "pipe")
    outcome = run_distill(
        ["package", str(project), "--base", base, "-o", f"oci:{sandbox / 'out'}"],
        cwd=sandbox,
        timeout=20,
    )
    report(f"package {kind}, a fifo in the project", outcome)
    # Refused: passing over a fifo named requirements.txt would drop the app's dependencies.
    assert_clean_error(outcome)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("python", "requirements.txt"),
        ("python", "pyproject.toml"),
        ("python", "app-1.0-py3-none-any.whl"),
        ("node", "package.json"),
        ("node", "package-lock.json"),
        ("java", "lib.jar"),
    ],
)
def test_a_project_file_symlinked_from_outside_is_never_read(
    sandbox: Path, tmp_path: Path, base: str, kind: str, name: str
) -> None:
    # The file the planner reads first is a link out of the project: its bytes (here a
    # marker; /etc/shadow in an attack) must appear neither in the image nor in a message.
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / name
    if name.endswith(".whl"):
        write_zip(secret, wheel_members(files={"app/s.py": SECRET}))
    elif name.endswith(".jar"):
        write_zip(secret, jar_members(extra={"s": SECRET}))
    elif name == "pyproject.toml":
        secret.write_bytes(b'[project]\nname = "' + SECRET + b'"\nversion = "1"\n')
    else:
        secret.write_bytes(SECRET + b"==1.0\n")
    if kind == "node":
        project = node_project(sandbox)
        lock = {"lockfileVersion": 3, "packages": {"": {"name": "app"}}}
        if name == "package.json":
            (project / "package-lock.json").write_text(json.dumps(lock))
            (project / "package.json").unlink()
    else:
        project = sandbox / "proj"
        project.mkdir()
        (project / "main.py").write_text("print(1)\n")
    (project / name).symlink_to(secret)
    outcome = package(sandbox, project, base, "--kind", kind)
    report(f"package {kind}, {name} linked from outside", outcome)
    assert_bounded(outcome)
    assert SECRET.decode() not in outcome.stderr + outcome.stdout, outcome.describe()
    if outcome.returncode == 0:
        assert SECRET not in all_blob_bytes(sandbox / "out")
    else:
        assert_clean_error(outcome)


@pytest.mark.parametrize("path", ["/etc", "../../..", "/etc/shadow", "link-out"])
def test_a_spec_app_path_out_of_the_context_is_refused(
    sandbox: Path, tmp_path: Path, base: str, path: str
) -> None:
    outside_secret(tmp_path)
    ctx = sandbox / "ctx"
    ctx.mkdir()
    (ctx / "link-out").symlink_to(tmp_path / "outside")
    (ctx / "spec.yaml").write_text(f"extends: static\napp:\n  path: {path}\n")
    outcome = run_distill(
        ["build", str(ctx / "spec.yaml"), "-o", f"oci:{sandbox / 'out'}"], cwd=sandbox
    )
    report(f"build, spec app path {path}", outcome)
    assert_clean_error(outcome, "outside")


def test_a_console_script_named_to_climb_out_is_refused(sandbox: Path, base: str) -> None:
    marker = "hostile-" + uuid.uuid4().hex
    entry_points = f"[console_scripts]\n../../../../../../../../tmp/{marker} = app:main\n"
    members = wheel_members(files={"app-1.0.dist-info/entry_points.txt": entry_points.encode()})
    project = wheel_project(sandbox, members)
    outcome = package(sandbox, project, base)
    report("package, console script named ../../tmp/x", outcome)
    assert_bounded(outcome)
    assert not Path("/tmp", marker).exists()
    assert not list(sandbox.parent.rglob(marker))
    if outcome.returncode == 0:
        assert not any(
            marker in p for p in layer_paths(sandbox / "out", skip=1) if "/bin/" not in p
        )
    else:
        assert_clean_error(outcome)


@pytest.mark.network  # the loader is looked up in the archive's Contents index
@pytest.mark.parametrize(
    "interp",
    ["/lib64/\x1b[2J\x1b[31mld.so\nerror: fake", "/lib64/" + "x" * 100_000, "../../../etc/ld.so"],
    ids=["escapes", "100k", "relative"],
)
def test_a_hostile_pt_interp_is_shown_safely(sandbox: Path, base: str, interp: str) -> None:
    project = elf_project(sandbox, elf_file(needed=["libc.so.6"], interp=interp))
    outcome = package(sandbox, project, base)
    report(f"package, PT_INTERP {interp[:20]!r}", outcome)
    assert_bounded(outcome)
    assert "\x1b[" not in outcome.stderr + outcome.stdout, outcome.describe()
    assert all(len(line) < 5000 for line in outcome.stderr.splitlines()), outcome.describe()
    if outcome.returncode != 0:
        assert_clean_error(outcome)


@pytest.mark.network  # a known suite would be looked up in the archive's Contents index
@pytest.mark.parametrize(
    "codename", ["../../../etc", "trixie/../../x", "hostile", "a" * 5000, "tri\\nxie"]
)
def test_a_base_whose_codename_is_hostile(sandbox: Path, tmp_path: Path, codename: str) -> None:
    # The base's os-release names the suite whose Contents index maps libraries to packages.
    os_release = f"ID=debian\nVERSION_CODENAME={codename}\n".encode()
    layout = fake_base(tmp_path / "b", os_release=os_release)
    project = elf_project(sandbox, elf_file(needed=["libc.so.6", "libhostile.so.1"]))
    outcome = package(sandbox, project, f"oci:{layout.root}")
    report(f"package, base codename {codename[:20]!r}", outcome)
    line = assert_clean_error(outcome)
    assert len(line) < 2000, line
    assert not list((sandbox / "cache").rglob("etc")) if (sandbox / "cache").exists() else True
