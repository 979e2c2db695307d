"""ELF programs compiled here with gcc: what they need (checked against readelf), where the
loader finds it in a base made of the host's own packages, and the plan the ELF planner
makes. Lookups in the Debian archive are in the ``network`` tests at the end."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from distill.cache import BlobCache
from distill.context import Access
from distill.debian.contents import LibraryIndex
from distill.errors import DistillError
from distill.package.elf import CC_BASE, STATIC_BASE, ElfPlanner
from distill.package.libraries import (
    ARCHES,
    ImageFiles,
    PackageFinder,
    choose_package,
    expected_package_names,
    needed_libraries,
    resolve_libraries,
)
from distill.package.plan import AppOptions, BaseFacts, PlanContext
from elf_fixtures import CURL, HELLO, HOST_ARCH, compile_c, host_base, needs_gcc, readelf

pytestmark = needs_gcc

LIB = "int distill_answer(void) { return 42; }\n"
USES_LIB = "int distill_answer(void);\nint main(void) { return distill_answer() == 42 ? 0 : 1; }\n"


def _ctx(tmp_path: Path) -> PlanContext:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    return PlanContext(BlobCache(tmp_path / "cache"), Access(), staging, 0)


def _with_lib(tmp_path: Path, *link: str) -> tuple[Path, Path]:
    """app/lib/libanswer.so.1 and app/bin/prog linked to it with ``link`` flags."""
    lib = compile_c(
        tmp_path / "app/lib/libanswer.so.1", LIB, "-shared", "-fPIC", "-Wl,-soname,libanswer.so.1"
    )
    os.symlink("libanswer.so.1", tmp_path / "app/lib/libanswer.so")
    prog = compile_c(tmp_path / "app/bin/prog", USES_LIB, f"-L{lib.parent}", "-lanswer", *link)
    return prog, lib


@pytest.mark.parametrize("flags", [("-static",), ("-static-pie",), ()])
def test_needed_libraries_agrees_with_readelf(tmp_path: Path, flags: tuple[str, ...]) -> None:
    prog = compile_c(tmp_path / "prog", HELLO, *flags)
    info = needed_libraries(prog)
    interp, needed, runpath, rpath = readelf(prog)
    assert info.interp == interp
    assert list(info.needed) == needed
    assert (list(info.runpath), list(info.rpath)) == (runpath, rpath)
    assert info.static == (interp is None and not needed)
    assert info.static == bool(flags)
    assert info.arch == HOST_ARCH
    assert needed_libraries(prog.read_bytes()) == info


@pytest.mark.parametrize("tags", ["-Wl,--enable-new-dtags", "-Wl,--disable-new-dtags"])
def test_runpath_and_rpath_origin_find_the_apps_own_library(tmp_path: Path, tags: str) -> None:
    prog, lib = _with_lib(tmp_path, "-Wl,-rpath,$ORIGIN/../lib", tags)
    info = needed_libraries(prog)
    _, needed, runpath, rpath = readelf(prog)
    assert (list(info.runpath), list(info.rpath)) == (runpath, rpath)
    assert (runpath or rpath) == ["$ORIGIN/../lib"]
    base = host_base("libc6")
    binaries = [("/app/bin/prog", prog), ("/app/lib/libanswer.so.1", lib)]
    # No network: everything is in the base or the app, so the archive is never asked.
    result = resolve_libraries(
        binaries, base, cache=BlobCache(tmp_path / "c"), suite="trixie", arch=HOST_ARCH
    )
    assert result.packages == () and result.missing == ()
    assert result.present["libanswer.so.1"] == "app/lib/libanswer.so.1"
    assert set(needed) <= set(result.present)


def test_the_loader_is_found_through_the_usr_merge_links(tmp_path: Path) -> None:
    prog = compile_c(tmp_path / "prog", HELLO)
    interp = needed_libraries(prog).interp
    assert interp is not None
    files = ImageFiles(host_base("libc6"))
    where = files.resolve(interp)
    # The oracle: the host resolves the same path the same way (its / is a merged-usr root).
    assert where == os.path.realpath(interp).lstrip("/")
    assert files.resolve("lib/no-such-library.so.1") is None


def test_a_library_for_another_directory_is_missing(tmp_path: Path) -> None:
    # Linked without a RUNPATH: the loader will not look in app/lib, so the app's own copy
    # does not count.
    prog, lib = _with_lib(tmp_path)
    finder_dir = tmp_path / "c"
    base = host_base("libc6")
    with pytest.raises(DistillError) as err:
        resolve_libraries(
            [("/app/bin/prog", prog), ("/app/lib/libanswer.so.1", lib)],
            base,
            cache=BlobCache(finder_dir),
            suite="trixie",
            arch=HOST_ARCH,
            index=_empty_index(),
        )
    assert "libanswer.so.1" in err.value.message and err.value.hint


def _empty_index() -> LibraryIndex:
    # An archive that ships nothing: what the error path does with it (the real index is
    # in the network tests below).
    return LibraryIndex("trixie", HOST_ARCH, {}, ())


def test_another_architecture_is_refused(tmp_path: Path) -> None:
    prog = compile_c(tmp_path / "prog", HELLO)
    data = bytearray(prog.read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # e_machine = EM_AARCH64
    other = tmp_path / "arm-prog"
    other.write_bytes(bytes(data))
    other.chmod(0o755)
    assert needed_libraries(other).arch == "arm64"
    base = host_base("libc6")
    with pytest.raises(DistillError) as err:
        ElfPlanner().plan(AppOptions(path=other), base, _ctx(tmp_path))
    assert "arm64" in err.value.message and HOST_ARCH in err.value.message


@pytest.mark.parametrize(
    "data", [b"\x7fELF", b"\x7fELF\x02\x01\x01" + b"\xff" * 80, b"#!/bin/sh\n"]
)
def test_damaged_or_foreign_files_are_one_line_errors(data: bytes) -> None:
    with pytest.raises(DistillError) as err:
        needed_libraries(data, "prog")
    assert "prog" in err.value.message and "\n" not in err.value.message


def test_static_program_goes_on_static(tmp_path: Path) -> None:
    prog = compile_c(tmp_path / "server", HELLO, "-static")
    plan = ElfPlanner().plan(AppOptions(path=prog), host_base("libc6"), _ctx(tmp_path))
    assert plan.base == STATIC_BASE and plan.debian_packages == ()
    assert plan.entrypoint == ("/app/server",)
    (layer,) = plan.layers
    files = {e.path: e for e in layer.entries}
    assert files["app/server"].mode & 0o111
    assert Path(str(files["app/server"].content)).read_bytes() == prog.read_bytes()


def test_dynamic_program_on_a_base_without_libc_is_refused(tmp_path: Path) -> None:
    prog = compile_c(tmp_path / "server", HELLO)
    no_libc = host_base("tzdata")
    assert "libc6" not in no_libc.packages
    with pytest.raises(DistillError) as err:
        ElfPlanner().plan(AppOptions(path=prog, base="static"), no_libc, _ctx(tmp_path))
    assert "no C library" in err.value.message and "static" in err.value.message
    assert "-static" in (err.value.hint or "")


def test_dynamic_program_with_only_libc_needs_no_package(tmp_path: Path) -> None:
    prog = compile_c(tmp_path / "server", HELLO)
    plan = ElfPlanner().plan(AppOptions(path=prog), host_base("libc6"), _ctx(tmp_path))
    assert plan.base is None and plan.debian_packages == ()
    assert any("in the base" in n for n in plan.notes)


def test_cxx_program_wants_cc_unless_the_base_has_the_runtime(tmp_path: Path) -> None:
    src = '#include <iostream>\nint main() { std::cout << "hi\\n"; }\n'
    prog = compile_c(tmp_path / "server", src, cxx=True)
    plan = ElfPlanner().plan(AppOptions(path=prog), host_base("libc6"), _ctx(tmp_path))
    assert plan.base == CC_BASE
    assert any("libstdc++.so.6" in n for n in plan.notes)
    runtime = [p for p in ("libstdc++6", "libgcc-s1") if _installed(p)]
    cc = host_base("libc6", *runtime)
    plan = ElfPlanner().plan(AppOptions(path=prog, base=CC_BASE), cc, _ctx(tmp_path))
    assert plan.base is None and plan.debian_packages == ()


def _installed(name: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", name], capture_output=True, check=False)
    return proc.returncode == 0


def test_directory_with_two_programs_asks_which(tmp_path: Path) -> None:
    compile_c(tmp_path / "app/one", HELLO, "-static")
    compile_c(tmp_path / "app/two", HELLO, "-static")
    with pytest.raises(DistillError) as err:
        ElfPlanner().plan(AppOptions(path=tmp_path / "app"), host_base("libc6"), _ctx(tmp_path))
    assert "--entrypoint" in (err.value.hint or "")
    plan = ElfPlanner().plan(
        AppOptions(path=tmp_path / "app", entrypoint=("/app/two",)),
        host_base("libc6"),
        _ctx(tmp_path),
    )
    assert plan.entrypoint == ("/app/two",)


def test_directory_with_runpath_library_is_self_contained(tmp_path: Path) -> None:
    _with_lib(tmp_path, "-Wl,-rpath,$ORIGIN/../lib")
    plan = ElfPlanner().plan(AppOptions(path=tmp_path / "app"), host_base("libc6"), _ctx(tmp_path))
    assert plan.entrypoint == ("/app/bin/prog",)
    assert plan.debian_packages == ()
    paths = {e.path for e in plan.layers[0].entries}
    assert {"app/bin/prog", "app/lib/libanswer.so.1", "app/lib/libanswer.so"} <= paths


def test_package_choice_follows_the_documented_order() -> None:
    assert expected_package_names("libcurl.so.4") == ("libcurl4", "libcurl4t64")
    assert expected_package_names("libdb-5.3.so") == ("libdb-5.3",)
    assert expected_package_names("libssl3.so.3") == ("libssl3-3", "libssl3-3t64")
    names = ["libqt5gui5-gles", "libqt5gui5t64"]
    assert choose_package("libQt5Gui.so.5", names) == "libqt5gui5t64"
    assert choose_package("libQt5Gui.so.5", list(reversed(names))) == "libqt5gui5t64"
    # A package already chosen for another library wins over a better-named one.
    assert choose_package("libQt5Gui.so.5", names, ["libqt5gui5-gles"]) == "libqt5gui5-gles"
    assert choose_package("libx.so.1", ["libx1-dbg", "libx-tools"]) == "libx1-dbg"
    assert choose_package("libx.so.1", ["zz-x", "aa-x-dev", "bb-x"]) == "bb-x"


# --- against the real Debian archive -------------------------------------------------------


@pytest.mark.network
def test_curl_program_gets_the_package_that_ships_libcurl(tmp_path: Path) -> None:
    if (
        not Path("/usr/include/x86_64-linux-gnu/curl/curl.h").exists()
        and not Path("/usr/include/curl/curl.h").exists()
    ):
        pytest.skip("libcurl4-openssl-dev is not installed (.ci/system-deps)")
    prog = compile_c(tmp_path / "server", CURL, "-lcurl")
    cache = BlobCache()
    plan = ElfPlanner().plan(
        AppOptions(path=prog), host_base("libc6"), PlanContext(cache, Access(), tmp_path, 0)
    )
    (package,) = plan.debian_packages
    # The oracle is the package's own .deb (verified against the signed Packages index).
    finder = PackageFinder("trixie", HOST_ARCH, cache)
    assert finder.ships(package, f"usr/lib/{ARCHES[HOST_ARCH].triplet}/libcurl.so.4")
    assert package in expected_package_names("libcurl.so.4")
    assert f"found in Debian: libcurl.so.4 → {package}" in plan.notes


@pytest.mark.network
def test_a_library_nothing_ships_is_an_error_naming_it(tmp_path: Path) -> None:
    prog, _ = _with_lib(tmp_path)
    with pytest.raises(DistillError) as err:
        resolve_libraries(
            [("/app/bin/prog", prog)],
            host_base("libc6"),
            cache=BlobCache(),
            suite="trixie",
            arch=HOST_ARCH,
        )
    assert "libanswer.so.1" in err.value.message and "no Debian package" in err.value.message
    assert "RUNPATH" in (err.value.hint or "")
    result = resolve_libraries(
        [("/app/bin/prog", prog)],
        host_base("libc6"),
        cache=BlobCache(),
        suite="trixie",
        arch=HOST_ARCH,
        strict=False,
    )
    assert result.missing == ("libanswer.so.1",)


def test_offline_a_missing_library_is_an_error_not_a_lookup(tmp_path: Path) -> None:
    prog, _ = _with_lib(tmp_path)  # libanswer.so.1, reached by no RUNPATH
    options = AppOptions(path=prog, offline=True)
    with pytest.raises(DistillError) as err:
        ElfPlanner().plan(options, host_base("libc6"), _ctx(tmp_path))
    assert "libanswer.so.1" in err.value.message and "--offline" in err.value.message
    assert "distill lock" in (err.value.hint or "")


def test_image_symlinks_loops_and_dotdot() -> None:
    base = BaseFacts(
        arch=HOST_ARCH,
        suite="trixie",
        files=frozenset({"usr/lib/x/libz.so.1.3", "opt/real/libq.so.1"}),
        symlinks={
            "lib": "usr/lib",
            "usr/lib/x/libz.so.1": "libz.so.1.3",
            "usr/lib/x/libq.so.1": "../../../opt/real/libq.so.1",
            "usr/lib/x/abs.so.1": "/usr/lib/x/libz.so.1",
            "loop/a": "b",
            "loop/b": "a",
            "usr/lib/x/dangling.so.1": "gone.so.1",
        },
        packages={},
    )
    files = ImageFiles(base)
    assert files.resolve("/lib/x/libz.so.1") == "usr/lib/x/libz.so.1.3"
    assert files.resolve("lib/x/libq.so.1") == "opt/real/libq.so.1"
    assert files.resolve("lib/x/abs.so.1") == "usr/lib/x/libz.so.1.3"
    assert files.resolve("loop/a") is None
    assert files.resolve("usr/lib/x/dangling.so.1") is None
    assert files.resolve("../../usr/lib/x/libz.so.1.3") == "usr/lib/x/libz.so.1.3"


def test_an_interpreter_offset_beyond_any_file_is_refused(tmp_path: Path) -> None:
    # Found by fuzzing: a PT_INTERP whose p_offset has its top byte set made pyelftools
    # raise OverflowError (a seek past 2**63) instead of its own error.
    prog = compile_c(tmp_path / "prog", HELLO)
    data = bytearray(prog.read_bytes())
    assert data[4] == 2 and data[5] == 1  # ELF64, little-endian: the layout below
    phoff = int.from_bytes(data[32:40], "little")
    size, count = int.from_bytes(data[54:56], "little"), int.from_bytes(data[56:58], "little")
    interp = next(
        phoff + i * size
        for i in range(count)
        if int.from_bytes(data[phoff + i * size : phoff + i * size + 4], "little") == 3
    )
    data[interp + 15] = 0xC2  # the most significant byte of p_offset
    with pytest.raises(DistillError) as err:
        needed_libraries(bytes(data), "prog")
    assert "damaged" in err.value.message
