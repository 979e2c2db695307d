"""Inputs for ``distill package`` written by hand so that every byte can be wrong on purpose:
a small base image that has what each planner looks for (python3, node, java, glibc) so the
planners get as far as the hostile project, wheels and jars as raw zips, ELF files built
field by field."""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from hostile_images import Layer, Layout, info, write_layout

TRIPLET = "x86_64-linux-gnu"
BASE_OS_RELEASE = (
    b'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'
    b"VERSION_CODENAME=trixie\n"
)
BASE_PACKAGES = {
    "libc6": "2.41-12",
    "python3": "3.13.5-1",
    "python3.13": "3.13.5-2",
    "nodejs": "20.19.2+dfsg-1",
    "openjdk-21-jre-headless": "21.0.8+9-1~deb13u1",
}
BASE_FILES = (
    "usr/bin/python3",
    "usr/lib/python3.13/os.py",
    "usr/bin/node",
    "usr/lib/jvm/java-21-openjdk-amd64/bin/java",
    "usr/lib64/ld-linux-x86-64.so.2",
    f"usr/lib/{TRIPLET}/libc.so.6",
)


def dpkg_status(packages: dict[str, str]) -> bytes:
    return b"".join(
        f"Package: {name}\nStatus: install ok installed\nVersion: {version}\n"
        f"Architecture: amd64\n\n".encode()
        for name, version in packages.items()
    )


def fake_base(
    tmp: Path, extra_files: Iterable[str] = (), os_release: bytes = BASE_OS_RELEASE
) -> Layout:
    """A one-layer image with a trixie os-release, a dpkg status naming libc6, python3,
    nodejs and a JRE, and the files the planners look for (empty: nothing runs them)."""
    tmp.mkdir(parents=True, exist_ok=True)
    layer = Layer(tmp / "base.tar")
    layer.file("etc/os-release", os_release)
    layer.file("var/lib/dpkg/status", dpkg_status(BASE_PACKAGES))
    for name in (*BASE_FILES, *extra_files):
        layer.file(name, b"", mode=0o755)
    layer.add(info("lib64", tarfile.SYMTYPE, mode=0o777, link="usr/lib64"))
    return write_layout(tmp / "base", [layer.close()])


# --- zips ------------------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def wheel_members(
    name: str = "app", version: str = "1.0", files: dict[str, bytes] | None = None
) -> dict[str, bytes]:
    """The members of a valid pure-Python wheel (RECORD hashes right), ``files`` added."""
    info = f"{name}-{version}.dist-info"
    members = {f"{name}/__init__.py": b"print('hello')\n", **(files or {})}
    members[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    members[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: hostile\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    lines = [f"{path},{_record_hash(data)},{len(data)}" for path, data in members.items()]
    members[f"{info}/RECORD"] = ("\n".join([*lines, f"{info}/RECORD,,"]) + "\n").encode()
    return members


def write_zip(path: Path, members: dict[str, bytes] | Sequence[tuple[str, bytes]]) -> Path:
    """A zip of ``members`` stored under exactly the names given (``..``, ``/`` and all)."""
    items = members.items() if isinstance(members, dict) else members
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in items:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return path


def zip_with_big_member(path: Path, name: str, size: int, extra: dict[str, bytes]) -> Path:
    """A zip whose member ``name`` is ``size`` zero bytes, deflated (a bomb: ~1000:1)."""
    block = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for member, data in extra.items():
            zf.writestr(member, data)
        info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as out:
            left = size
            while left > 0:
                out.write(block[: min(left, len(block))])
                left -= len(block)
    return path


def declare_size(path: Path, name: str, size: int) -> None:
    """Rewrite the central directory entry of ``name`` to declare ``size`` bytes unpacked
    (a zip32 field: at most 4 GiB - 1), leaving the data as it is."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) != -1:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46 : pos + 46 + name_len]) == encoded:
            struct.pack_into("<I", data, pos + 24, size)
            path.write_bytes(bytes(data))
            return
        pos += 4
    raise AssertionError(f"{name} not in {path}")


def jar_members(main: str = "app.Main", extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    manifest = f"Manifest-Version: 1.0\r\nMain-Class: {main}\r\n\r\n".encode()
    return {
        "META-INF/MANIFEST.MF": manifest,
        "app/Main.class": b"\xca\xfe\xba\xbe",
        **(extra or {}),
    }


# --- ELF -------------------------------------------------------------------------------------


def elf_file(
    *,
    needed: Sequence[str] = (),
    runpath: str | None = None,
    interp: str | None = "/lib64/ld-linux-x86-64.so.2",
) -> bytes:
    """A 64-bit little-endian x86-64 executable with a PT_INTERP, a PT_DYNAMIC and the
    section headers pyelftools reads the dynamic section through. It does not run."""
    strtab = io.BytesIO(b"\x00")
    offsets = []
    for name in needed:
        offsets.append(strtab.tell())
        strtab.write(name.encode() + b"\x00")
    runpath_at = strtab.tell()
    if runpath is not None:
        strtab.write(runpath.encode() + b"\x00")
    dynstr = strtab.getvalue()
    tags = [(1, off) for off in offsets]  # DT_NEEDED
    if runpath is not None:
        tags.append((29, runpath_at))  # DT_RUNPATH
    interp_bytes = (interp or "").encode() + b"\x00"
    ehdr, phent, shent = 64, 56, 64
    phnum = 3 if interp else 2
    interp_off = ehdr + phent * phnum
    dynstr_off = interp_off + len(interp_bytes)
    dynamic_off = (dynstr_off + len(dynstr) + 7) & ~7
    tags += [(5, dynstr_off), (10, len(dynstr)), (0, 0)]  # DT_STRTAB, DT_STRSZ, DT_NULL
    dynamic = b"".join(struct.pack("<qQ", tag, value) for tag, value in tags)
    shstrtab = b"\x00.dynstr\x00.dynamic\x00.shstrtab\x00"
    shstr_off = dynamic_off + len(dynamic)
    shoff = (shstr_off + len(shstrtab) + 7) & ~7
    total = shoff + shent * 4
    phdrs = [struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, total, total, 0x1000)]  # PT_LOAD
    if interp:
        size = len(interp_bytes)
        phdrs.append(struct.pack("<IIQQQQQQ", 3, 4, *[interp_off] * 3, size, size, 1))
    phdrs.append(
        struct.pack(
            "<IIQQQQQQ", 2, 6, dynamic_off, dynamic_off, dynamic_off, len(dynamic), len(dynamic), 8
        )
    )
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header += struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, 0x1000, ehdr, shoff, 0, ehdr, phent, phnum, shent, 4, 3
    )
    sections = [
        bytes(shent),
        struct.pack("<IIQQQQIIQQ", 1, 3, 2, dynstr_off, dynstr_off, len(dynstr), 0, 0, 1, 0),
        struct.pack("<IIQQQQIIQQ", 9, 6, 3, dynamic_off, dynamic_off, len(dynamic), 1, 0, 8, 16),
        struct.pack("<IIQQQQIIQQ", 18, 3, 0, 0, shstr_off, len(shstrtab), 0, 0, 1, 0),
    ]
    out = bytearray(total)
    out[:ehdr] = header
    out[ehdr : ehdr + phent * phnum] = b"".join(phdrs)
    out[interp_off : interp_off + len(interp_bytes)] = interp_bytes
    out[dynstr_off : dynstr_off + len(dynstr)] = dynstr
    out[dynamic_off : dynamic_off + len(dynamic)] = dynamic
    out[shstr_off : shstr_off + len(shstrtab)] = shstrtab
    out[shoff:total] = b"".join(sections)
    return bytes(out)
