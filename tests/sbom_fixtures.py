"""Files as images hold them, for the catalog and SBOM tests: a dpkg status with packages in
every state, distroless ``status.d`` files, an apk database, Python, npm and Java metadata."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import Any

from distill.analyze.catalog import CapturedFile, Catalog, Component, build_catalog
from distill.analyze.sbom import ImageInfo

SDE = 1_700_000_000

DEBIAN_OS_RELEASE = b"""PRETTY_NAME="Debian GNU/Linux 13 (trixie)"
NAME="Debian GNU/Linux"
VERSION_ID="13"
VERSION="13 (trixie)"
VERSION_CODENAME=trixie
ID=debian
HOME_URL="https://www.debian.org/"
"""

STATUS = b"""Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12999
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.41-12
Depends: libgcc-s1
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: bsdutils
Essential: yes
Status: install ok installed
Priority: required
Section: utils
Maintainer: Chris Hofstaedtler <zeha@debian.org>
Architecture: amd64
Multi-Arch: foreign
Source: util-linux (2.41-5)
Version: 1:2.41-5
Description: basic utilities from 4.4BSD-Lite

Package: nano
Status: deinstall ok config-files
Priority: optional
Section: editors
Maintainer: Jordi Mallach <jordi@debian.org>
Architecture: amd64
Version: 8.4-1
Conffiles:
 /etc/nano/nanorc 1e2a1c2f0a9e4b0b8f7b0b8f7b0b8f7b
Description: small, friendly text editor

Package: vim-tiny
Status: install ok unpacked
Architecture: amd64
Version: 2:9.1.1230-2
Description: Vi IMproved - enhanced vi editor - compact version

Package: tzdata
Status: hold ok installed
Architecture: all
Version: 2025b-4
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Description: time zone and daylight-saving time data

Package: python3-six
Status: install ok installed
Architecture: all
Source: six
Version: 1.17.0-1
Description: Python 2 and 3 compatibility library
"""

LIBC_COPYRIGHT = b"""Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: GNU C Library
Source: https://www.gnu.org/software/libc/libc.html

Files: *
Copyright: 1991-2025 Free Software Foundation, Inc.
License: LGPL-2.1+

Files: debian/*
Copyright: 1998-2025 Debian glibc team
License: GPL-2+ or Artistic

Files: sunrpc/*
Copyright: 2010, Oracle America, Inc.
License: BSD-3-clause

License: LGPL-2.1+
 This library is free software; you can redistribute it and/or
 modify it under the terms of the GNU Lesser General Public License.
 .
 On Debian systems, the complete text is in /usr/share/common-licenses/LGPL-2.1.
"""

UTIL_LINUX_COPYRIGHT = b"""Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: util-linux

Files: *
Copyright: 1990-2025 Karel Zak
License: GPL-2+

Files: lib/md5.c
Copyright: none
License: public-domain
  This code is in the public domain.
"""

TZDATA_COPYRIGHT = b"""This is the Debian prepackaged version of the Time Zone and Daylight
Saving Time Data. It was downloaded from https://www.iana.org/time-zones

This database is in the public domain.
"""

SIX_METADATA = b"""Metadata-Version: 2.1
Name: six
Version: 1.17.0
License: MIT
"""

REQUESTS_METADATA = b"""Metadata-Version: 2.4
Name: requests
Version: 2.32.3
Summary: Python HTTP for Humans.
Author: Kenneth Reitz
License-Expression: Apache-2.0
Classifier: Programming Language :: Python :: 3

Requests is an elegant and simple HTTP library for Python.
License: this line is in the body, not a header
"""

OLD_EGG = b"""Metadata-Version: 1.1
Name: Legacy_Tool
Version: 0.9
License: UNKNOWN
"""

SSL_CONTROL = b"""Package: libssl3t64
Version: 3.5.1-1
Architecture: amd64
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Installed-Size: 7000
Source: openssl
Section: libs
Priority: optional
Multi-Arch: same
Description: Secure Sockets Layer toolkit - shared libraries
"""

BASE_FILES_CONTROL = b"""Package: base-files
Version: 13.8
Architecture: amd64
Maintainer: Santiago Vila <sanvila@debian.org>
Essential: yes
Description: Debian base system miscellaneous files
"""

APK_INSTALLED = b"""C:Q1m0mLfJ1PBVtZ/Y6AnDtbdlY3uVY=
P:musl
V:1.2.5-r10
A:x86_64
S:383152
I:622592
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1745400000
c:5a0a1a1a7a4b1f1e
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1ZEIkxw0pyRlCplI3S3pBN8kJx7s=
R:libc.musl-x86_64.so.1

C:Q1r2b9Q3s2Yw8s6mV5b2Q2ZrW0aD4=
P:libcrypto3
V:3.5.0-r0
A:x86_64
L:Apache-2.0
o:openssl
m:Natanael Copa <ncopa@alpinelinux.org>
F:usr
F:usr/lib
R:libcrypto.so.3
"""


def f(data: bytes, layer: int = 0, mode: int = 0o644) -> CapturedFile:
    return CapturedFile(data, layer, mode)


def debian_files() -> dict[str, CapturedFile]:
    """A Debian image: status rewritten by layer 2, packages installed in layers 0 and 1."""
    return {
        "etc/os-release": f(DEBIAN_OS_RELEASE),
        "var/lib/dpkg/status": f(STATUS, layer=2),
        "var/lib/dpkg/info/libc6:amd64.list": f(
            b"/.\n/usr\n/usr/lib/x86_64-linux-gnu/libc.so.6\n", layer=0
        ),
        "var/lib/dpkg/info/bsdutils.md5sums": f(
            b"0123456789abcdef0123456789abcdef  usr/bin/logger\n", layer=1
        ),
        "var/lib/dpkg/info/python3-six.list": f(
            b"/usr/lib/python3/dist-packages/six-1.17.0.dist-info/METADATA\n", layer=1
        ),
        "usr/share/doc/libc6/copyright": f(LIBC_COPYRIGHT),
        "usr/share/doc/util-linux/copyright": f(UTIL_LINUX_COPYRIGHT, layer=1),
        "usr/share/doc/tzdata/copyright": f(TZDATA_COPYRIGHT),
        "usr/lib/python3/dist-packages/six-1.17.0.dist-info/METADATA": f(SIX_METADATA, 1),
        "usr/local/lib/python3.13/dist-packages/requests-2.32.3.dist-info/METADATA": f(
            REQUESTS_METADATA, layer=3
        ),
        "opt/legacy/Legacy_Tool-0.9-py3.13.egg-info/PKG-INFO": f(OLD_EGG, layer=3),
    }


DEBIAN_LINKS = {"usr/share/doc/bsdutils": "util-linux", "etc/os-release": "../usr/lib/os-release"}


def by_name(catalog: Catalog) -> dict[str, Component]:
    return {c.name: c for c in catalog.components}


def jar(entries: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def java_files() -> dict[str, CapturedFile]:
    osgi = jar(
        {
            "META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\r\n"
            b"Bundle-SymbolicName: org.example.osgi.thin\r\n g;singleton:=true\r\n"
            b"Bundle-Version: 2.0.1\r\n\r\nName: ignored/section\r\nBundle-Version: 9\r\n"
        }
    )
    guava = jar(
        {
            "META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\r\n",
            "META-INF/maven/com.google.guava/guava/pom.properties": b"#Generated by Maven\n"
            b"groupId=com.google.guava\nartifactId=guava\nversion=33.4.0-jre\n",
            "lib/osgi.jar": osgi,
        }
    )
    app = jar(
        {
            "META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\nImplementation-Title: app\n"
            b"Implementation-Version: 1.0.0\n",
            "META-INF/maven/com.example/app/pom.properties": b"groupId=com.example\n"
            b"artifactId=app\nversion=1.0.0\n",
            "BOOT-INF/lib/guava-33.4.0-jre.jar": guava,
            "BOOT-INF/lib/broken.jar": b"this is not a zip file",
        }
    )
    return {
        "app/app.jar": f(app, layer=4),
        "opt/tools/bad.war": f(b"PK\x03\x04 truncated", layer=4),
    }


def image_info(**changes: Any) -> ImageInfo:
    values: dict[str, Any] = {
        "name": "docker://registry.example/team/app:1.2",
        "digest": "sha256:" + "a" * 64,
        "config_digest": "sha256:" + "b" * 64,
        "created": "2025-03-04T05:06:07.891011Z",
        "architecture": "amd64",
        "layers": tuple(f"sha256:{c * 64}" for c in "cdef0"),
        "repository": "registry.example/team/app",
        "tag": "1.2",
    }
    values.update(changes)
    return ImageInfo(**values)


def everything() -> Catalog:
    """Every kind of component at once (and a warning), to exercise every writer path."""
    files = {**debian_files(), **java_files()}
    files["var/lib/dpkg/status.d/libssl3t64"] = f(SSL_CONTROL, layer=1)
    files["lib/apk/db/installed"] = f(APK_INSTALLED)
    files["srv/node_modules/dual/package.json"] = f(
        b'{"name": "dual", "version": "2.0.0", "license": "(MIT OR Apache-2.0)"}'
    )
    files["srv/node_modules/mixed/package.json"] = f(
        b'{"name": "mixed", "version": "2.0.0", "licenses": ["ISC", "Custom Thing"]}'
    )
    # The same jar twice: one purl, two places.
    files["srv/copy/app.jar"] = files["app/app.jar"]
    return build_catalog(files, symlinks=DEBIAN_LINKS)
