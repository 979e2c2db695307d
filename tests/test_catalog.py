"""The package catalog: what ``distill sbom`` finds in an image, from the files it captures.

Fixtures (``sbom_fixtures.py``) are written as images hold them: a dpkg status with packages in
every state, distroless ``status.d`` files, an apk database, Python, npm and Java metadata.
"""

from __future__ import annotations

import tarfile

import pytest

from distill.analyze.catalog import (
    PackageType,
    build_catalog,
    dep5_licenses,
    parse_os_release,
    want,
    wanted,
)
from distill.debian.control import parse_stanzas
from distill.errors import DistillError
from sbom_fixtures import (
    APK_INSTALLED,
    BASE_FILES_CONTROL,
    DEBIAN_LINKS,
    DEBIAN_OS_RELEASE,
    SSL_CONTROL,
    STATUS,
    TZDATA_COPYRIGHT,
    UTIL_LINUX_COPYRIGHT,
    by_name,
    debian_files,
    f,
    java_files,
)

# --- dpkg ------------------------------------------------------------------------------------


def test_dpkg_status_lists_only_packages_whose_files_are_on_disk() -> None:
    catalog = build_catalog(debian_files(), symlinks=DEBIAN_LINKS)
    debs = sorted(c.name for c in catalog.components if c.type is PackageType.DEB)
    # nano left only config files behind, vim-tiny was only unpacked; "hold" is installed.
    assert debs == ["bsdutils", "libc6", "python3-six", "tzdata"]
    assert catalog.databases == ("var/lib/dpkg/status",)
    assert catalog.warnings == ()
    assert catalog.os is not None and catalog.os.distro == "debian-13"


def test_dpkg_source_package_and_purl_follow_syft_conventions() -> None:
    packages = by_name(build_catalog(debian_files(), symlinks=DEBIAN_LINKS))
    libc, bsdutils, tzdata = packages["libc6"], packages["bsdutils"], packages["tzdata"]
    assert (libc.source_name, libc.source_version) == ("glibc", "2.41-12")
    assert libc.purl == "pkg:deb/debian/libc6@2.41-12?arch=amd64&distro=debian-13&upstream=glibc"
    assert (bsdutils.source_name, bsdutils.source_version) == ("util-linux", "2.41-5")
    assert bsdutils.version == "1:2.41-5"
    assert bsdutils.purl == (
        "pkg:deb/debian/bsdutils@1:2.41-5?arch=amd64&distro=debian-13&upstream=util-linux%402.41-5"
    )
    assert (tzdata.source_name, tzdata.source_version, tzdata.arch) == ("tzdata", "2025b-4", "all")
    assert "upstream" not in tzdata.purl
    assert libc.supplier == "GNU Libc Maintainers <debian-glibc@lists.debian.org>"


def test_dpkg_layer_of_origin_is_the_info_file_not_the_rewritten_status() -> None:
    packages = by_name(build_catalog(debian_files(), symlinks=DEBIAN_LINKS))
    assert packages["libc6"].layer == 0  # libc6:amd64.list, the Multi-Arch: same name
    assert packages["bsdutils"].layer == 1  # from its md5sums
    assert packages["tzdata"].layer == 2  # no info file captured: the status file's layer
    assert packages["libc6"].files == ("usr", "usr/lib/x86_64-linux-gnu/libc.so.6")
    assert packages["bsdutils"].files == ("usr/bin/logger",)


def test_dep5_licences_are_collected_and_plain_copyright_claims_none() -> None:
    packages = by_name(build_catalog(debian_files(), symlinks=DEBIAN_LINKS))
    assert packages["libc6"].licenses == ("LGPL-2.1+", "GPL-2+", "Artistic", "BSD-3-clause")
    # bsdutils' doc directory is a symlink to util-linux's.
    assert packages["bsdutils"].licenses == ("GPL-2+", "public-domain")
    assert "usr/share/doc/util-linux/copyright" in packages["bsdutils"].locations
    assert packages["tzdata"].licenses == ()
    assert dep5_licenses(TZDATA_COPYRIGHT.decode()) == ()


def test_copyright_is_found_through_symlinked_directories_and_files() -> None:
    files = debian_files()
    del files["usr/share/doc/util-linux/copyright"]
    files["usr/share/common/copyright"] = f(UTIL_LINUX_COPYRIGHT)
    links = {
        "usr/share/doc/bsdutils": "/usr/share/doc/util-linux",  # absolute, to a directory
        "usr/share/doc/util-linux/copyright": "../../common/copyright",  # relative, to a file
        "usr/share/doc/tzdata": "tzdata",  # a loop: must end, not hang
    }
    packages = by_name(build_catalog(files, symlinks=links))
    assert packages["bsdutils"].licenses == ("GPL-2+", "public-domain")
    assert packages["bsdutils"].locations[-1] == "usr/share/common/copyright"
    assert packages["tzdata"].licenses == ()


def test_dep5_licences_survive_a_copyright_file_that_is_not_strict_deb822() -> None:
    text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nLicense: MIT, and Zlib\n text of both\nLicense: MIT\n\nFiles: x\nLicense: ISC\n"
    )
    with pytest.raises(DistillError):
        parse_stanzas(text)  # a field repeated in one stanza
    assert dep5_licenses(text) == ("MIT", "Zlib", "ISC")


def test_a_damaged_dpkg_status_is_an_error_not_a_short_list() -> None:
    files = debian_files()
    files["var/lib/dpkg/status"] = f(STATUS + b"\nthis is not a field\n")
    with pytest.raises(DistillError, match="cannot read the package database"):
        build_catalog(files)
    files["var/lib/dpkg/status"] = f(b"Package: x\nStatus: install ok installed\n")
    with pytest.raises(DistillError, match="no Package or Version"):
        build_catalog(files)


def test_distroless_status_d_has_no_status_line_and_md5sums_are_not_packages() -> None:
    files = {
        "usr/lib/os-release": f(DEBIAN_OS_RELEASE),
        "var/lib/dpkg/status.d/libssl3t64": f(SSL_CONTROL, layer=1),
        "var/lib/dpkg/status.d/libssl3t64.md5sums": f(
            b"d41d8cd98f00b204e9800998ecf8427e  usr/lib/x86_64-linux-gnu/libssl.so.3\n", 1
        ),
        "var/lib/dpkg/status.d/base-files": f(BASE_FILES_CONTROL),
    }
    catalog = build_catalog(files, executables=12)
    assert catalog.databases == ("var/lib/dpkg/status.d",)
    assert catalog.warnings == ()  # a database accounts for the executables
    packages = by_name(catalog)
    assert sorted(packages) == ["base-files", "libssl3t64"]
    ssl = packages["libssl3t64"]
    assert (ssl.layer, ssl.source_name, ssl.locations) == (
        1,
        "openssl",
        ("var/lib/dpkg/status.d/libssl3t64",),
    )
    assert ssl.files == ("usr/lib/x86_64-linux-gnu/libssl.so.3",)
    assert ssl.purl.endswith("?arch=amd64&distro=debian-13&upstream=openssl")


# --- apk -------------------------------------------------------------------------------------


def test_apk_installed_database() -> None:
    files = {
        "etc/os-release": f(b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.22.0\n'),
        "lib/apk/db/installed": f(APK_INSTALLED, layer=0),
    }
    catalog = build_catalog(files)
    crypto, musl = catalog.components
    assert (musl.name, musl.version, musl.type, musl.licenses) == (
        "musl",
        "1.2.5-r10",
        PackageType.APK,
        ("MIT",),
    )
    assert musl.purl == "pkg:apk/alpine/musl@1.2.5-r10?arch=x86_64&distro=alpine-3.22.0"
    assert musl.files == ("lib/ld-musl-x86_64.so.1", "lib/libc.musl-x86_64.so.1")
    assert crypto.source_name == "openssl"
    assert crypto.purl.endswith("&upstream=openssl")
    assert crypto.files == ("usr/lib/libcrypto.so.3",)
    assert musl.supplier == "Natanael Copa <ncopa@alpinelinux.org>"


# --- language packages -----------------------------------------------------------------------


def test_python_metadata_and_packages_an_os_package_owns_are_left_to_it() -> None:
    catalog = build_catalog(debian_files(), symlinks=DEBIAN_LINKS)
    python = [c for c in catalog.components if c.type is PackageType.PYTHON]
    # six's METADATA is in python3-six's file list: listed once, as the deb.
    assert [(c.name, c.version, c.licenses, c.layer) for c in python] == [
        ("Legacy_Tool", "0.9", (), 3),
        ("requests", "2.32.3", ("Apache-2.0",), 3),
    ]
    assert python[0].purl == "pkg:pypi/legacy-tool@0.9"
    assert python[1].locations == (
        "usr/local/lib/python3.13/dist-packages/requests-2.32.3.dist-info/METADATA",
    )


def test_npm_packages_are_read_only_at_package_roots_inside_node_modules() -> None:
    files = {
        "app/node_modules/@types/node/package.json": f(
            b'{"name": "@types/node", "version": "22.15.3", "license": "MIT"}'
        ),
        "app/node_modules/left-pad/package.json": f(
            b'{"name": "left-pad", "version": "1.3.0", "licenses": [{"type": "WTFPL"}]}'
        ),
        "app/node_modules/left-pad/lib/package.json": f(b'{"name": "inner", "version": "0.1"}'),
        "app/package.json": f(b'{"name": "my-app", "version": "1.0.0"}'),
        "app/node_modules/nameless/package.json": f(b'{"version": "1.0.0"}'),
    }
    npm = build_catalog(files).components
    assert [(c.name, c.version, c.purl, c.licenses) for c in npm] == [
        ("@types/node", "22.15.3", "pkg:npm/%40types/node@22.15.3", ("MIT",)),
        ("left-pad", "1.3.0", "pkg:npm/left-pad@1.3.0", ("WTFPL",)),
    ]
    assert not wanted("app/node_modules/left-pad/lib/package.json", 50)
    assert not wanted("app/package.json", 50)


def test_java_archives_pom_properties_manifest_and_nested_jars() -> None:
    catalog = build_catalog(java_files())
    maven = [(c.name, c.version, c.purl, c.locations[0]) for c in catalog.components]
    assert maven == [
        ("com.example:app", "1.0.0", "pkg:maven/com.example/app@1.0.0", "app/app.jar"),
        (
            "com.google.guava:guava",
            "33.4.0-jre",
            "pkg:maven/com.google.guava/guava@33.4.0-jre",
            "app/app.jar!/BOOT-INF/lib/guava-33.4.0-jre.jar",
        ),
        (
            "org.example.osgi.thing",
            "2.0.1",
            "pkg:maven/org.example.osgi.thing@2.0.1",
            "app/app.jar!/BOOT-INF/lib/guava-33.4.0-jre.jar!/lib/osgi.jar",
        ),
    ]
    assert all(c.layer == 4 for c in catalog.components)
    # A damaged top-level archive is said; a damaged nested one does not hide its parent.
    assert catalog.warnings == (
        "opt/tools/bad.war: not a readable Java archive (File is not a zip file); skipped",
    )


def test_archives_are_captured_only_under_the_size_cap() -> None:
    assert wanted("app/app.jar", 10 << 20)
    assert wanted("srv/ROOT.WAR", 10 << 20)
    assert wanted("app/fat.jar", 256 << 20)  # read from a temporary file, not memory
    assert not wanted("app/huge.jar", (1 << 30) + 1)
    assert not wanted("app/app.jar.sha1", 40)


# --- what is captured, os-release -------------------------------------------------------------


def test_capture_predicate_takes_metadata_and_only_the_head_of_executables() -> None:
    for path in (
        "var/lib/dpkg/status",
        "var/lib/dpkg/status.d/libc6",
        "var/lib/dpkg/status.d/libc6.md5sums",
        "var/lib/dpkg/info/libc6:amd64.list",
        "lib/apk/db/installed",
        "usr/lib/os-release",
        "usr/share/doc/libc6/copyright",
        "usr/lib/python3/site-packages/rich-14.0.0.dist-info/METADATA",
        "usr/lib/python3/site-packages/old.egg-info",
    ):
        assert wanted(path, 1000), path
    for path in (
        "var/lib/dpkg/info/libc6.postinst",
        "usr/share/doc/libc6/changelog.gz",
        "usr/share/doc/libc6/examples/copyright",
        "usr/bin/python3",
        "etc/passwd",
    ):
        assert not wanted(path, 1000), path
    binary = tarfile.TarInfo("usr/bin/ls")
    binary.size, binary.mode = 150_000, 0o755
    assert want("usr/bin/ls", binary) == 4
    binary.mode = 0o644
    assert want("usr/bin/ls", binary) == 0
    status = tarfile.TarInfo("var/lib/dpkg/status")
    status.size = 2_000_000
    assert want("var/lib/dpkg/status", status) == 2_000_000


def test_os_release_quoting_and_the_usr_lib_fallback() -> None:
    values = parse_os_release(
        'ID="debian"\nNAME=\'Debian GNU/Linux\'\nVARIANT="say \\"hi\\" \\$HOME"\n# c\nBAD LINE\n'
    )
    assert values == {"ID": "debian", "NAME": "Debian GNU/Linux", "VARIANT": 'say "hi" $HOME'}
    only_usr = build_catalog({"usr/lib/os-release": f(b"ID=Wolfi\nVERSION_ID=20230201\n")})
    assert only_usr.os is not None
    assert (only_usr.os.id, only_usr.os.distro) == ("wolfi", "wolfi-20230201")
    assert build_catalog({"etc/os-release": f(b"NAME=nothing\n")}).os is None
