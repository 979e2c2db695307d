"""Files the maintainer scripts would have written: CA bundle, Java keystore, alternative
links and the dpkg status.d database."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from distill.debian.control import parse_stanza
from distill.debian.deb import DebControl
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.rootfs.alternatives import alternatives_entries, parse_alternatives
from distill.rootfs.certs import (
    ca_bundle,
    ca_bundle_entries,
    java_cacerts_entries,
    java_keystore,
    not_before,
    pem_certificates,
)
from distill.rootfs.dpkg_status import status_entries

CONTROL = """\
Package: hello
Source: hello-src (2.0-1)
Version: 2.0-1+b2
Architecture: amd64
Maintainer: Test <test@example.invalid>
Description: test package
 Continued description.
"""
MD5SUMS = "0123456789abcdef0123456789abcdef  usr/bin/hello\n"


def by_path(entries: list[FsEntry]) -> dict[str, FsEntry]:
    return {e.path: e for e in entries}


def _file(path: str, data: bytes) -> FsEntry:
    return FsEntry(path, EntryKind.FILE, 0o644, size=len(data), content=data, package="p")


def _link(path: str, target: str) -> FsEntry:
    return FsEntry(path, EntryKind.SYMLINK, 0o777, linkname=target, package="p")


# --- certificates --------------------------------------------------------------------------

HOST_CERTS = Path("/usr/share/ca-certificates/mozilla")


def _host_cert_entries() -> list[FsEntry]:
    if not HOST_CERTS.is_dir():
        pytest.skip("needs the ca-certificates package on this machine")
    return [
        FsEntry(
            f"usr/share/ca-certificates/mozilla/{p.name}",
            EntryKind.FILE,
            0o644,
            size=p.stat().st_size,
            content=p,
        )
        for p in HOST_CERTS.iterdir()
        if p.suffix == ".crt"
    ]


def test_bundle_order_and_newlines() -> None:
    entries = [
        _file("usr/share/ca-certificates/mozilla/b_second.crt", b"B"),
        _file("usr/share/ca-certificates/mozilla/ACCV.crt", b"A1\n"),
        _file("usr/share/ca-certificates/mozilla/AC_RAIZ.crt", b"A2\n"),
        _file("usr/share/ca-certificates/mozilla/Actalis.crt", b"A3\n"),
        _file("usr/share/ca-certificates/mozilla/notes.txt", b"not a cert"),
    ]
    # C-locale order: "C" < "_" < "c"; a missing final newline is added.
    assert ca_bundle(entries, [("local.crt", b"L")]) == b"A1\nA2\nA3\nB\nL\n"
    assert ca_bundle_entries([]) == []


@pytest.mark.may_skip_in_ci
def test_bundle_matches_update_ca_certificates_on_this_machine() -> None:
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    local = Path("/usr/local/share/ca-certificates")
    entries = _host_cert_entries()
    conf = Path("/etc/ca-certificates.conf")
    if not bundle.is_file() or (conf.is_file() and "\n!" in conf.read_text()):
        pytest.skip("no bundle on this machine, or certificates disabled by the admin")
    extra = [(p.name, p.read_bytes()) for p in local.glob("*.crt")] if local.is_dir() else []
    assert ca_bundle(entries, extra) == bundle.read_bytes()


def _read_jks(data: bytes, password: str = "changeit") -> dict[str, tuple[int, bytes]]:
    """An independent JKS reader: checks the keyed digest and returns alias → (date, DER)."""
    body, digest = data[:-20], data[-20:]
    assert hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + body).digest() == (
        digest
    )
    magic, version, count = struct.unpack(">III", body[:12])
    assert (magic, version) == (0xFEEDFEED, 2)
    pos, found = 12, {}
    for _ in range(count):
        (tag,) = struct.unpack(">I", body[pos : pos + 4])
        assert tag == 2
        (n,) = struct.unpack(">H", body[pos + 4 : pos + 6])
        alias = body[pos + 6 : pos + 6 + n].decode()
        pos += 6 + n
        (date,) = struct.unpack(">q", body[pos : pos + 8])
        (n,) = struct.unpack(">H", body[pos + 8 : pos + 10])
        assert body[pos + 10 : pos + 10 + n] == b"X.509"
        pos += 10 + n
        (size,) = struct.unpack(">I", body[pos : pos + 4])
        found[alias] = (date, body[pos + 4 : pos + 4 + size])
        pos += 4 + size
    assert pos == len(body)
    return found


def test_java_keystore_format() -> None:
    certs = pem_certificates(b"".join(e.read_bytes() for e in _host_cert_entries()))
    assert len(certs) > 100
    store = java_keystore([("Zeta", certs[0]), ("alpha", certs[1])])
    parsed = _read_jks(store)
    assert list(parsed) == ["alpha", "zeta"]
    assert parsed["zeta"] == (not_before(certs[0]) * 1000, certs[0])
    assert store == java_keystore([("alpha", certs[1]), ("Zeta", certs[0])])  # reproducible
    with pytest.raises(DistillError, match="alias"):
        java_keystore([("a", certs[0]), ("A", certs[1])])


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


def test_java_cacerts_only_with_a_jre_and_keytool_reads_it(tmp_path: Path) -> None:
    certs = _host_cert_entries()
    assert java_cacerts_entries(certs) == []
    index = by_path(java_cacerts_entries([*certs, _jre_link()]))
    store = tmp_path / "cacerts"
    store.write_bytes(index["etc/ssl/certs/java/cacerts"].read_bytes())
    aliases = _read_jks(store.read_bytes())
    assert "debian:isrg_root_x1.pem" in aliases
    assert keytool_count(store) == len(certs) > 100


# --- alternatives --------------------------------------------------------------------------

JRE_POSTINST = """\
#!/bin/sh
set -e
priority=2111
basedir=/usr/lib/jvm/java-21-openjdk-amd64
mandir=$basedir/man
jre_tools='java jpackage keytool rmiregistry'
case "$1" in
configure)
    if [ -n "$multiarch" ] && [ "$DPKG_MAINTSCRIPT_ARCH" != $(dpkg --print-architecture) ]; then
        priority=$(expr $priority - 1)
    fi
    for i in $jre_tools; do
        unset slave1 slave2 || true
        if [ -e $mandir/man1/$i.1.gz ]; then
            slave1="--slave \\
                /usr/share/man/man1/$i.1.gz \\
                $i.1.gz \\
                $mandir/man1/$i.1.gz"
        fi
        update-alternatives \\
            --install \\
            /usr/bin/$i \\
            $i \\
            $basedir/bin/$i \\
            $priority \\
            $slave1
    done
    update-alternatives --install /usr/bin/jexec jexec $basedir/lib/jexec $priority \\
        --slave /usr/share/binfmts/jar jexec-binfmt $basedir/lib/jar.binfmt
    ;;
esac
"""
JVM = "usr/lib/jvm/java-21-openjdk-amd64"


def test_parse_openjdk_style_postinst() -> None:
    found = {a.name: a for a in parse_alternatives(JRE_POSTINST, "openjdk-21-jre-headless")}
    assert set(found) == {"java", "jpackage", "keytool", "rmiregistry", "jexec"}
    java = found["java"]
    assert (java.link, java.path, java.priority) == ("/usr/bin/java", f"/{JVM}/bin/java", 2111)
    assert java.slaves == (
        ("/usr/share/man/man1/java.1.gz", "java.1.gz", f"/{JVM}/man/man1/java.1.gz"),
    )
    assert found["jexec"].slaves[0][0] == "/usr/share/binfmts/jar"


def test_alternative_links_follow_update_alternatives_rules() -> None:
    present = {
        f"{JVM}/bin/java",
        f"{JVM}/bin/keytool",
        f"{JVM}/lib/jexec",
        "bin/ed",
        "usr/bin/vim.basic",
        "usr/bin/nano",
        "usr/bin/rmiregistry",
    }
    scripts = {
        "openjdk-21-jre-headless": JRE_POSTINST,
        "vim": "update-alternatives --install /usr/bin/editor editor /usr/bin/vim.basic 30\n",
        "nano": "update-alternatives --install /usr/bin/editor editor /usr/bin/nano 40\n",
        "ed": "update-alternatives --install /usr/bin/red red /bin/ed -100\n",
        "odd": "update-alternatives --install /usr/bin/x x $(which x) 10\n",
    }
    index = by_path(alternatives_entries(scripts, present))
    assert index["usr/bin/java"].linkname == "/etc/alternatives/java"
    assert index["etc/alternatives/java"].linkname == f"/{JVM}/bin/java"
    assert index["etc/alternatives/java"].package == "openjdk-21-jre-headless"
    assert index["etc/alternatives/editor"].linkname == "/usr/bin/nano"  # higher priority
    assert index["etc/alternatives/red"].linkname == "/bin/ed"  # found via merged /usr
    assert "usr/bin/jpackage" not in index  # its path is not in the image
    assert "usr/bin/rmiregistry" not in index  # a package's own file is never replaced
    assert "usr/share/binfmts/jar" not in index  # slave whose path is missing
    assert "usr/bin/x" not in index


def test_jvm_fallback_without_postinst() -> None:
    present = {
        "usr/lib/jvm/java-17-openjdk-amd64/bin/java",
        "usr/lib/jvm/java-21-openjdk-amd64/bin/java",
    }
    index = by_path(alternatives_entries({}, present))
    assert index["etc/alternatives/java"].linkname == f"/{JVM}/bin/java"
    assert alternatives_entries({}, {"usr/bin/true"}) == []


# --- status.d ------------------------------------------------------------------------------


def test_status_d_layout() -> None:
    hello = DebControl(CONTROL, MD5SUMS)
    plain = DebControl("Package: tzdata\nVersion: 2025b-4\nArchitecture: all\n")
    index = by_path(status_entries([hello, plain]))
    text = index["var/lib/dpkg/status.d/hello"].read_bytes().decode()
    assert text == CONTROL
    fields = parse_stanza(text)
    assert (fields["package"], fields["version"], fields["source"]) == (
        "hello",
        "2.0-1+b2",
        "hello-src (2.0-1)",
    )
    assert "status" not in fields
    md5 = index["var/lib/dpkg/status.d/hello.md5sums"].read_bytes().decode()
    assert md5 == MD5SUMS
    assert "var/lib/dpkg/status.d/tzdata" in index
    assert "var/lib/dpkg/status.d/tzdata.md5sums" not in index  # it had none
    assert index["var/lib/dpkg/status.d"].kind is EntryKind.DIR
    assert all(e.mode == 0o644 for e in index.values() if e.kind is EntryKind.FILE)


def test_status_d_multiarch_names_and_errors() -> None:
    amd = DebControl("Package: libc6\nVersion: 2.41-12\nArchitecture: amd64\n", "a  lib/x\n")
    i386 = DebControl("Package: libc6\nVersion: 2.41-12\nArchitecture: i386\n")
    index = by_path(status_entries([amd, i386]))
    assert {
        "var/lib/dpkg/status.d/libc6:amd64",
        "var/lib/dpkg/status.d/libc6:amd64.md5sums",
        "var/lib/dpkg/status.d/libc6:i386",
    } <= set(index)
    with pytest.raises(DistillError, match="twice"):
        status_entries([amd, amd])
    with pytest.raises(DistillError, match="Package"):
        status_entries([DebControl("Version: 1\n")])
