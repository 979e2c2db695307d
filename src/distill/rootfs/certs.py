"""The CA bundle and the Java ``cacerts`` keystore, built the way Debian's scripts would.

``update-ca-certificates`` (run by ca-certificates' postinst) concatenates every certificate
enabled in ``/etc/ca-certificates.conf`` into ``/etc/ssl/certs/ca-certificates.crt``. On a fresh
install every ``*.crt`` under ``/usr/share/ca-certificates`` is enabled, listed in C-locale
``sort`` order of its path relative to that directory, and each file is appended with a newline
added when it lacks one; local certificates follow in sorted order. ``ca_bundle`` reproduces
that byte for byte.

ca-certificates-java would then build ``/etc/ssl/certs/java/cacerts`` with a JVM. A JKS keystore
is a simple format, so it is written here: magic 0xFEEDFEED, version 2, one trusted-certificate
entry per certificate (alias, date, type, DER bytes) and a SHA-1 digest keyed with the store
password. Aliases follow ca-certificates-java (``debian:<name>.pem``) and each entry's date is
its certificate's notBefore, so the keystore is reproducible.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from calendar import timegm
from collections.abc import Iterable, Sequence

from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry

CERTS_DIR = "usr/share/ca-certificates/"
BUNDLE = "etc/ssl/certs/ca-certificates.crt"
JAVA_CACERTS = "etc/ssl/certs/java/cacerts"
JKS_PASSWORD = "changeit"
_JKS_MAGIC = 0xFEEDFEED
_JKS_VERSION = 2
_TRUSTED_CERT = 2
# The JDK's keystore integrity check: SHA-1 over password (UTF-16BE), this phrase, the store.
_JKS_SALT = b"Mighty Aphrodite"
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL)


def ca_certificate_files(entries: Iterable[FsEntry]) -> list[FsEntry]:
    """The ``*.crt`` files under ``usr/share/ca-certificates``, in update-ca-certificates order."""
    found = [
        e
        for e in entries
        if e.kind is EntryKind.FILE and e.path.startswith(CERTS_DIR) and e.path.endswith(".crt")
    ]
    return sorted(found, key=lambda e: e.path.encode())


def _with_newline(data: bytes) -> bytes:
    return data if not data or data.endswith(b"\n") else data + b"\n"


def ca_bundle(entries: Iterable[FsEntry], extra: Sequence[tuple[str, bytes]] = ()) -> bytes:
    """``ca-certificates.crt``: every packaged certificate, then ``extra`` (name, PEM) ones
    sorted by name, as local certificates in ``/usr/local/share/ca-certificates`` would be."""
    parts = [_with_newline(e.read_bytes()) for e in ca_certificate_files(entries)]
    parts += [_with_newline(data) for _, data in sorted(extra, key=lambda x: x[0].encode())]
    return b"".join(parts)


def ca_bundle_entries(
    entries: Iterable[FsEntry], extra: Sequence[tuple[str, bytes]] = ()
) -> list[FsEntry]:
    """The bundle file (with its directories) when there are certificates, else nothing."""
    data = ca_bundle(entries, extra)
    if not data:
        return []
    return [
        *_dirs("etc/ssl/certs"),
        FsEntry(BUNDLE, EntryKind.FILE, 0o644, size=len(data), content=data),
    ]


def _dirs(path: str) -> list[FsEntry]:
    parts = path.split("/")
    return [FsEntry("/".join(parts[:i]), EntryKind.DIR, 0o755) for i in range(1, len(parts) + 1)]


def pem_certificates(text: bytes) -> list[bytes]:
    """The DER bytes of each ``CERTIFICATE`` block in PEM text."""
    certs = []
    for match in _PEM.finditer(text):
        try:
            certs.append(base64.b64decode(b"".join(match.group(1).split()), validate=True))
        except binascii.Error as exc:
            raise DistillError(f"a PEM certificate does not decode: {exc}") from exc
    return certs


def _der(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated")
    return tag, pos, pos + length


def not_before(der: bytes) -> int:
    """A certificate's notBefore, in seconds since the epoch (RFC 5280 TBSCertificate)."""
    try:
        _, cert, _ = _der(der, 0)
        _, tbs, _ = _der(der, cert)
        tag, start, end = _der(der, tbs)
        pos = end if tag == 0xA0 else tbs  # skip the explicit [0] version
        for _ in range(3):  # serialNumber, signature, issuer
            _, _, pos = _der(der, pos)
        _, validity, _ = _der(der, pos)
        tag, start, end = _der(der, validity)
        text = der[start:end].decode("ascii").rstrip("Z")
        if tag == 0x17:  # UTCTime: two-digit years, 50-99 meaning 19xx
            year = int(text[:2])
            text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
        elif tag != 0x18:  # GeneralizedTime
            raise ValueError(f"unexpected time tag {tag:#x}")
        fields = [int(text[i : i + n]) for i, n in ((0, 4), (4, 2), (6, 2), (8, 2), (10, 2))]
        seconds = int(text[12:14]) if len(text) >= 14 else 0
        return timegm((*fields, seconds, 0, 0, 0))
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise DistillError(f"a CA certificate is not valid X.509 DER: {exc}") from exc


def _utf(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > 0xFFFF:
        raise DistillError(f"keystore alias too long: {text[:40]}...")
    return struct.pack(">H", len(data)) + data


def java_keystore(certs: Sequence[tuple[str, bytes]], password: str = JKS_PASSWORD) -> bytes:
    """A JKS keystore with one trusted-certificate entry per (alias, DER) pair.

    Aliases are lowercased (the JDK's JKS does that on load) and entries sorted by alias, so
    the same certificates always give the same bytes.
    """
    by_alias: dict[str, bytes] = {}
    for alias, der in certs:
        key = alias.lower()
        if key in by_alias:
            raise DistillError(f"two certificates share the keystore alias {key!r}")
        by_alias[key] = der
    body = bytearray(struct.pack(">III", _JKS_MAGIC, _JKS_VERSION, len(by_alias)))
    for alias in sorted(by_alias):
        der = by_alias[alias]
        body += struct.pack(">I", _TRUSTED_CERT) + _utf(alias)
        body += struct.pack(">q", not_before(der) * 1000)
        body += _utf("X.509") + struct.pack(">I", len(der)) + der
    digest = hashlib.sha1(password.encode("utf-16-be") + _JKS_SALT + bytes(body))
    return bytes(body) + digest.digest()


def debian_alias(path: str) -> str:
    """ca-certificates-java's alias for a certificate file: its ``/etc/ssl/certs`` link name."""
    name = path.rsplit("/", 1)[-1].removesuffix(".crt")
    for old, new in ((" ", "_"), ("(", "="), (")", "="), (",", "_")):
        name = name.replace(old, new)
    return f"debian:{name}.pem".lower()


def needs_java_cacerts(entries: Iterable[FsEntry]) -> bool:
    """Whether a JRE in the image looks for ``/etc/ssl/certs/java/cacerts`` (Debian's JREs
    ship ``lib/security/cacerts`` as a link there)."""
    target = "/" + JAVA_CACERTS
    return any(e.kind is EntryKind.SYMLINK and e.linkname == target for e in entries)


def java_cacerts_entries(
    entries: Iterable[FsEntry], extra: Sequence[tuple[str, bytes]] = ()
) -> list[FsEntry]:
    """``etc/ssl/certs/java/cacerts`` from the packaged (and ``extra``) certificates, when a
    JRE wants it and there are certificates to put in it; else nothing."""
    items = list(entries)
    if not needs_java_cacerts(items):
        return []
    pairs: list[tuple[str, bytes]] = []
    sources = [(e.path, e.read_bytes()) for e in ca_certificate_files(items)]
    for path, pem in [*sources, *sorted(extra, key=lambda x: x[0].encode())]:
        for index, der in enumerate(pem_certificates(pem)):
            alias = debian_alias(path)
            pairs.append((alias if index == 0 else f"{alias}.{index}", der))
    if not pairs:
        return []
    data = java_keystore(pairs)
    return [
        *_dirs("etc/ssl/certs/java"),
        FsEntry(JAVA_CACERTS, EntryKind.FILE, 0o644, size=len(data), content=data),
    ]
