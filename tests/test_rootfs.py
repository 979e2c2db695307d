"""From .deb files to rootfs entries, and what the maintainer scripts would have added."""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from distill.cache import BlobCache
from distill.debian.archive import load_indices
from distill.debian.control import parse_stanza
from distill.debian.deb import DebControl, read_control
from distill.debian.mirror import discover_mirrors
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.net.download import DownloadRequest, fetch_blob
from distill.rootfs.accounts import DEFAULT_ACCOUNTS, Account, account_entries
from distill.rootfs.extract import KeepOptions, extract_package
from distill.rootfs.osrelease import os_release_entries
from distill.rootfs.system import SystemOptions, finish_rootfs
from distill.rootfs.usrmerge import merge_usr, resolve

# --- building test packages ----------------------------------------------------------------

CONTROL = """\
Package: hello
Source: hello-src (2.0-1)
Version: 2.0-1+b2
Architecture: amd64
Maintainer: Test <test@example.invalid>
Description: test package
"""
PAYLOAD = b"\x7fELF" + bytes(range(256)) * 40


def build_hello(tmp: Path, compression: str = "xz") -> Path:
    root = tmp / "hello-root"
    files = {
        "usr/bin/hello": PAYLOAD,
        "usr/bin/su-ish": b"#!setuid\n",
        "etc/hello.conf": b"x=1\n",
        "usr/share/doc/hello/copyright": b"Format: machine-readable\nLicense: MIT\n",
        "usr/share/doc/hello/README": b"read me\n",
        "usr/share/doc/hello/examples/ex.txt": b"example\n",
        "usr/share/man/man1/hello.1.gz": b"man page",
        "usr/share/info/hello.info.gz": b"info page",
        "usr/share/locale/de/LC_MESSAGES/hello.mo": b"catalogue",
        "usr/share/locale/locale.alias": b"german de_DE.UTF-8\n",
        "usr/share/lintian/overrides/hello": b"hello: some-tag\n",
        "usr/share/hello/one.txt": b"same bytes\n",
        "usr/share/hello/two.txt": b"same bytes\n",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "usr/bin/hello").chmod(0o755)
    (root / "usr/bin/su-ish").chmod(0o4755)
    (root / "usr/bin/hi").symlink_to("hello")
    os.link(root / "usr/bin/hello", root / "usr/bin/hello-hard")
    (root / "usr/share/doc/hello-data").symlink_to("hello")
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(CONTROL)
    (root / "DEBIAN/md5sums").write_text(f"{hashlib.md5(PAYLOAD).hexdigest()}  usr/bin/hello\n")
    out = tmp / "hello_2.0-1+b2_amd64.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(root), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def ar_archive(members: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def handmade_deb(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    """A .deb with exactly the tar members given, for what dpkg-deb cannot build unprivileged."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info in members:
            content = data.get(info.name)
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    ctl = io.BytesIO()
    with tarfile.open(fileobj=ctl, mode="w:gz") as tar:
        body = b"Package: odd\nVersion: 1\nArchitecture: amd64\n"
        info = tarfile.TarInfo("./control")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    path.write_bytes(
        ar_archive(
            [
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", ctl.getvalue()),
                ("data.tar.xz", lzma.compress(buf.getvalue())),
            ]
        )
    )
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def by_path(entries: list[FsEntry]) -> dict[str, FsEntry]:
    return {e.path: e for e in entries}


# --- extraction ----------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["xz", "zstd", "gzip"])
def test_extract_keeps_metadata_and_stages_content(tmp_path: Path, compression: str) -> None:
    deb = build_hello(tmp_path, compression)
    staging = tmp_path / "staging"
    entries = by_path(extract_package(deb, "hello", staging, KeepOptions()))

    hello = entries["usr/bin/hello"]
    assert (hello.kind, hello.mode, hello.uid, hello.gid) == (EntryKind.FILE, 0o755, 0, 0)
    assert hello.size == len(PAYLOAD) and hello.read_bytes() == PAYLOAD
    assert hello.package == "hello"
    assert isinstance(hello.content, Path) and hello.content.is_relative_to(staging)
    assert hello.content.name == hashlib.sha256(PAYLOAD).hexdigest()
    assert entries["usr/bin/su-ish"].mode == 0o4755
    assert entries["usr/bin/hi"].kind is EntryKind.SYMLINK
    assert entries["usr/bin/hi"].linkname == "hello"
    hard = entries["usr/bin/hello-hard"]
    assert (hard.kind, hard.linkname) == (EntryKind.HARDLINK, "usr/bin/hello")
    assert entries["usr/bin"].kind is EntryKind.DIR and entries["usr/bin"].mode == 0o755
    assert not any(p.startswith("./") or p.startswith("/") or p.endswith("/") for p in entries)
    assert "" not in entries and "." not in entries
    # identical files are staged once
    assert entries["usr/share/hello/one.txt"].content == entries["usr/share/hello/two.txt"].content
    assert not list((staging / "tmp").iterdir())


def test_extract_filters_docs_but_keeps_copyright(tmp_path: Path) -> None:
    deb = build_hello(tmp_path)
    paths = set(by_path(extract_package(deb, "hello", tmp_path / "s", KeepOptions())))
    assert "usr/share/doc/hello/copyright" in paths
    assert {"usr/share/doc", "usr/share/doc/hello", "usr/share/doc/hello-data"} <= paths
    assert "usr/share/locale/locale.alias" in paths
    for dropped in (
        "usr/share/doc/hello/README",
        "usr/share/doc/hello/examples",
        "usr/share/doc/hello/examples/ex.txt",
        "usr/share/man",
        "usr/share/man/man1/hello.1.gz",
        "usr/share/info/hello.info.gz",
        "usr/share/locale/de/LC_MESSAGES/hello.mo",
        "usr/share/lintian",
        "usr/share/lintian/overrides/hello",
    ):
        assert dropped not in paths, dropped


def test_keep_options_keep_what_they_name(tmp_path: Path) -> None:
    deb = build_hello(tmp_path)
    keep = KeepOptions(doc=True, man=True, locale=True)
    paths = set(by_path(extract_package(deb, "hello", tmp_path / "s", keep)))
    assert {
        "usr/share/doc/hello/README",
        "usr/share/doc/hello/examples/ex.txt",
        "usr/share/man/man1/hello.1.gz",
        "usr/share/info/hello.info.gz",
        "usr/share/locale/de/LC_MESSAGES/hello.mo",
    } <= paths
    assert "usr/share/lintian/overrides/hello" not in paths
    only_man = set(by_path(extract_package(deb, "hello", tmp_path / "s", KeepOptions(man=True))))
    assert "usr/share/man/man1/hello.1.gz" in only_man
    assert "usr/share/doc/hello/README" not in only_man


def test_numeric_owners_devices_and_fifos(tmp_path: Path) -> None:
    deb = handmade_deb(
        tmp_path / "odd.deb",
        [
            member("./", tarfile.DIRTYPE, mode=0o755),
            member("./etc/", tarfile.DIRTYPE, mode=0o755),
            member("./etc/shadowish", mode=0o640, uid=0, gid=42, uname="root", gname="shadow"),
            member("./srv/data", mode=0o2770, uid=1234, gid=5678),
            member("./dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
            member("./run/fifo", tarfile.FIFOTYPE, mode=0o600),
            member("./usr/lib/x.so", tarfile.LNKTYPE, linkname="./usr/lib/gone.so"),
        ],
        {"./etc/shadowish": b"secret\n", "./srv/data": b"data"},
    )
    skipped: list[str] = []
    entries = by_path(extract_package(deb, "odd", tmp_path / "s", KeepOptions(), skipped=skipped))
    assert (entries["etc/shadowish"].uid, entries["etc/shadowish"].gid) == (0, 42)
    assert entries["etc/shadowish"].mode == 0o640
    assert (entries["srv/data"].uid, entries["srv/data"].gid, entries["srv/data"].mode) == (
        1234,
        5678,
        0o2770,
    )
    assert "dev/null" not in entries and "run/fifo" not in entries
    assert "usr/lib/x.so" not in entries
    assert any("/dev/null" in s and "character device" in s for s in skipped)
    assert any("/run/fifo" in s and "fifo" in s for s in skipped)
    assert any("/usr/lib/x.so" in s and "hardlink" in s for s in skipped)


def test_path_escaping_the_root_is_refused(tmp_path: Path) -> None:
    deb = handmade_deb(
        tmp_path / "evil.deb",
        [member("./usr/../../etc/passwd")],
        {"./usr/../../etc/passwd": b"root::0:0::/:/bin/sh\n"},
    )
    with pytest.raises(DistillError, match=r"evil\.deb points outside the root"):
        extract_package(deb, "evil", tmp_path / "s", KeepOptions())


def test_truncated_deb_fails_extraction(tmp_path: Path) -> None:
    whole = build_hello(tmp_path).read_bytes()
    deb = tmp_path / "short.deb"
    deb.write_bytes(whole[: len(whole) - 300])
    with pytest.raises(DistillError, match=r"short\.deb"):
        extract_package(deb, "hello", tmp_path / "s", KeepOptions())


# --- merged /usr ---------------------------------------------------------------------------


def _file(path: str, data: bytes = b"x", package: str = "p") -> FsEntry:
    return FsEntry(path, EntryKind.FILE, 0o755, size=len(data), content=data, package=package)


def _dir(path: str) -> FsEntry:
    return FsEntry(path, EntryKind.DIR, 0o755, package="p")


def _link(path: str, target: str) -> FsEntry:
    return FsEntry(path, EntryKind.SYMLINK, 0o777, linkname=target, package="p")


def test_merge_usr_bookworm_layout() -> None:
    # libc6 in bookworm: the loader under /lib, /lib64's link to it absolute.
    entries = [
        _dir("lib"),
        _dir("lib/x86_64-linux-gnu"),
        _dir("lib64"),
        _dir("bin"),
        _dir("usr"),
        _dir("usr/lib"),
        _dir("usr/lib/x86_64-linux-gnu"),
        _file("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        _file("lib/x86_64-linux-gnu/libc.so.6"),
        _link("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        _file("bin/sh"),
        _file("usr/bin/sh", b"usr"),
        FsEntry("bin/sh2", EntryKind.HARDLINK, 0o755, linkname="bin/sh", package="p"),
    ]
    skipped: list[str] = []
    merged = merge_usr(entries, "amd64", skipped=skipped)
    index = by_path(merged)
    for top in ("bin", "sbin", "lib", "lib64"):
        assert index[top].kind is EntryKind.SYMLINK and index[top].linkname == f"usr/{top}"
        assert index[f"usr/{top}"].kind is EntryKind.DIR
    assert not any(p.startswith(("bin/", "lib/", "lib64/", "sbin/")) for p in index)
    assert index["usr/lib/x86_64-linux-gnu/libc.so.6"].package == "p"
    assert resolve(index, "/lib64/ld-linux-x86-64.so.2") == (
        "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    )
    assert resolve(index, "/lib/x86_64-linux-gnu/libc.so.6") == "usr/lib/x86_64-linux-gnu/libc.so.6"
    assert index["usr/bin/sh"].read_bytes() == b"usr"  # /usr wins a clash
    assert any("/bin/sh also exists" in s for s in skipped)
    assert index["usr/bin/sh2"].linkname == "usr/bin/sh"
    assert len(merged) == len(index)  # no path twice


def test_merge_usr_keeps_shipped_links_and_arch_rules() -> None:
    trixie = [
        _link("bin", "usr/bin"),
        _link("lib64", "usr/lib64"),
        _dir("usr"),
        _dir("usr/bin"),
        _dir("usr/lib64"),
    ]
    index = by_path(merge_usr(trixie, "arm64"))
    assert index["bin"].package == "p"  # base-files' own link is kept
    assert index["lib64"].linkname == "usr/lib64"  # shipped, so kept even on arm64
    assert index["lib"].linkname == "usr/lib" and index["usr/lib"].kind is EntryKind.DIR
    assert "lib64" not in by_path(merge_usr([_file("usr/bin/x")], "arm64"))
    assert "lib64" in by_path(merge_usr([_file("usr/bin/x")], "amd64"))


def test_resolve_handles_loops_and_missing() -> None:
    index = by_path([_link("a", "b"), _link("b", "a"), _link("c", "../../etc/x"), _dir("etc")])
    assert resolve(index, "a") is None
    assert resolve(index, "c") is None
    index["etc/x"] = _file("etc/x")
    assert resolve(index, "c") == "etc/x"


# --- accounts and os-release ---------------------------------------------------------------


def test_default_accounts_match_distroless() -> None:
    index = by_path(account_entries())
    assert index["etc/passwd"].read_bytes().decode() == (
        "root:x:0:0:root:/root:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
    )
    group = index["etc/group"].read_bytes().decode()
    assert "root:x:0:\n" in group and "nonroot:x:65532:\n" in group and "tty:x:5:\n" in group
    assert b"passwd:         files" in index["etc/nsswitch.conf"].read_bytes()
    assert index["tmp"].mode == 0o1777
    home = index["home/nonroot"]
    assert (home.kind, home.mode, home.uid, home.gid) == (EntryKind.DIR, 0o700, 65532, 65532)
    assert index["home"].mode == 0o755
    assert index["root"].mode == 0o700 and index["root"].uid == 0
    assert "nonexistent" not in index
    assert all(index[p].mode == 0o644 for p in ("etc/passwd", "etc/group"))


def test_custom_accounts_get_groups_and_duplicates_fail() -> None:
    app = Account("app", 1000, 1000, "/srv/app", shell="/usr/sbin/nologin")
    index = by_path(account_entries((*DEFAULT_ACCOUNTS, app)))
    assert "app:x:1000:1000:app:/srv/app:/usr/sbin/nologin\n" in (
        index["etc/passwd"].read_bytes().decode()
    )
    assert "app:x:1000:\n" in index["etc/group"].read_bytes().decode()
    assert index["srv/app"].uid == 1000 and index["srv"].mode == 0o755
    with pytest.raises(DistillError, match="duplicate user id"):
        account_entries((*DEFAULT_ACCOUNTS, Account("other", 0, 0, "/root")))


def test_os_release_generated_only_when_missing() -> None:
    index = by_path(os_release_entries("trixie-security", set()))
    fields = dict(
        line.split("=", 1)
        for line in index["usr/lib/os-release"].read_bytes().decode().split()
        if "=" in line
    )
    assert fields["ID"] == "debian" and fields["VERSION_ID"] == '"13"'
    assert fields["VERSION_CODENAME"] == "trixie"
    assert index["etc/os-release"].linkname == "../usr/lib/os-release"
    assert index["etc/debian_version"].read_bytes() == b"13\n"
    assert (
        b'VERSION_ID="12"'
        in by_path(os_release_entries("bookworm", set()))["usr/lib/os-release"].read_bytes()
    )
    present = {"usr/lib/os-release", "etc/os-release", "etc/debian_version"}
    assert os_release_entries("trixie", present) == []
    with pytest.raises(DistillError, match="base-files"):
        os_release_entries("sid", set())


def _jre_link() -> FsEntry:
    return _link(
        "usr/lib/jvm/java-21-openjdk-amd64/lib/security/cacerts", "/etc/ssl/certs/java/cacerts"
    )


def keytool_count(path: Path) -> int:
    if shutil.which("keytool") is None:
        pytest.skip("needs keytool")
    out = subprocess.run(
        ["keytool", "-list", "-keystore", str(path), "-storepass", "changeit"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.count("trustedCertEntry")


# --- all together --------------------------------------------------------------------------


def test_finish_rootfs_offline(tmp_path: Path) -> None:
    deb = build_hello(tmp_path)
    entries = extract_package(deb, "hello", tmp_path / "s", KeepOptions())
    entries.append(_dir("tmp"))  # as base-files ships it, 0755 here to see distill's win
    finished = finish_rootfs(
        entries, {"hello": read_control(deb)}, SystemOptions(suite="bookworm", arch="amd64")
    )
    index = by_path(finished.entries)
    assert len(index) == len(finished.entries)
    assert index["tmp"].mode == 0o1777
    assert index["lib64"].linkname == "usr/lib64"
    assert b'VERSION_ID="12"' in index["usr/lib/os-release"].read_bytes()
    assert "var/lib/dpkg/status.d/hello" in index
    assert "etc/ssl/certs/ca-certificates.crt" not in index  # no ca-certificates package
    assert index["usr/bin/su-ish"].mode == 0o4755
    assert finished.notes == []


def test_finish_rootfs_settles_clashes_between_packages() -> None:
    first = [_dir("etc"), _file("etc/shared.conf", b"one", package="a")]
    second = [_dir("etc"), _file("etc/shared.conf", b"two", package="b")]
    finished = finish_rootfs([*first, *second], {}, SystemOptions(suite="trixie", arch="amd64"))
    index = by_path(finished.entries)
    assert index["etc/shared.conf"].read_bytes() == b"two"
    assert any("/etc/shared.conf is shipped by a and b" in n for n in finished.notes)


# --- real Debian packages ------------------------------------------------------------------


def _fetch(suite: str, names: set[str]) -> dict[str, Path]:
    """Download packages of a suite's main pocket into the shared blob cache."""
    mirror = discover_mirrors().main
    pool = {
        p.name: (p.filename, p.sha256, p.size)
        for index in load_indices(suite, "amd64", pockets=(suite,))
        for p in index.packages
        if p.name in names
    }
    assert set(pool) == names
    cache = BlobCache()
    return {
        name: fetch_blob(
            DownloadRequest(f"{mirror}/{file}", sha, size, file.rsplit("/")[-1]), cache
        )
        for name, (file, sha, size) in pool.items()
    }


@pytest.fixture(scope="module")
def trixie_debs() -> dict[str, Path]:
    return _fetch("trixie", {"base-files", "ca-certificates", "libc6"})


@pytest.mark.network
def test_real_trixie_rootfs(trixie_debs: dict[str, Path], tmp_path: Path) -> None:
    packaged: list[FsEntry] = []
    controls: dict[str, DebControl] = {}
    for name, deb in sorted(trixie_debs.items()):
        packaged += extract_package(deb, name, tmp_path / "staging", KeepOptions())
        controls[name] = read_control(deb)
    packaged.append(_jre_link())
    finished = finish_rootfs(packaged, controls, SystemOptions(suite="trixie", arch="amd64"))
    index = by_path(finished.entries)

    assert len(index) == len(finished.entries)
    os_release = index["usr/lib/os-release"]
    assert os_release.package == "base-files"  # the package's file, not a generated one
    assert b"ID=debian" in os_release.read_bytes() and b'VERSION_ID="13"' in (
        os_release.read_bytes()
    )
    assert index["etc/debian_version"].package == "base-files"
    assert index["bin"].package == "base-files"  # trixie's base-files ships the links
    loader = resolve(index, "/lib64/ld-linux-x86-64.so.2")
    assert loader is not None and index[loader].kind is EntryKind.FILE
    assert index[loader].read_bytes()[:4] == b"\x7fELF"

    bundle = index["etc/ssl/certs/ca-certificates.crt"].read_bytes()
    assert bundle.count(b"-----BEGIN CERTIFICATE-----") > 100
    store = tmp_path / "cacerts"
    store.write_bytes(index["etc/ssl/certs/java/cacerts"].read_bytes())
    assert keytool_count(store) == bundle.count(b"-----BEGIN CERTIFICATE-----")

    for name in trixie_debs:
        stanza = parse_stanza(index[f"var/lib/dpkg/status.d/{name}"].read_bytes().decode())
        assert stanza["package"] == name and stanza["version"]
        assert f"var/lib/dpkg/status.d/{name}.md5sums" in index
    libc = parse_stanza(index["var/lib/dpkg/status.d/libc6"].read_bytes().decode())
    assert libc["source"].split()[0] == "glibc" and libc["architecture"] == "amd64"
    assert "usr/share/doc/libc6/copyright" in index
    assert not any(p.startswith("usr/share/man/") for p in index)


@pytest.mark.network
def test_real_bookworm_libc_moves_into_usr(tmp_path: Path) -> None:
    deb = _fetch("bookworm", {"libc6"})["libc6"]
    packaged = extract_package(deb, "libc6", tmp_path / "staging", KeepOptions())
    assert any(e.path.startswith("lib/") for e in packaged)  # bookworm still ships /lib
    index = by_path(merge_usr(packaged, "amd64"))
    assert not any(p.startswith(("lib/", "lib64/")) for p in index)
    loader = resolve(index, "/lib64/ld-linux-x86-64.so.2")
    assert loader is not None and index[loader].read_bytes()[:4] == b"\x7fELF"
