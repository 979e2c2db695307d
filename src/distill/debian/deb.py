"""Read .deb files without dpkg: the ar container, the control archive, the data archive.

A .deb is an ar archive holding ``debian-binary``, ``control.tar[.gz|.xz|.zst]`` and
``data.tar[.gz|.xz|.zst|.bz2]``, in that order (deb(5)). The data archive is streamed member
by member, so a 200 MB JRE never sits in memory; the control archive is small and read whole.
Every way a file can be broken (truncated, not an ar, a codec error, a bad tar) surfaces as a
``DistillError`` that names the .deb.
"""

from __future__ import annotations

import bz2
import io
import lzma
import sys
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from isal import igzip

from distill.errors import DistillError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60
# Control archives hold a few small text files; a limit keeps a hostile one from filling memory.
MAX_CONTROL_BYTES = 64 << 20
_SCRIPTS = ("preinst", "postinst", "prerm", "postrm", "config", "triggers")
_CODEC_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    tarfile.TarError,
    lzma.LZMAError,
    zlib.error,
    zstd.ZstdError,
    ValueError,
)


@dataclass(frozen=True, slots=True)
class DebControl:
    """The control archive of a .deb, as text.

    ``control`` is the binary package stanza exactly as shipped (dpkg-deb writes a ``Source:``
    field whenever the source name or version differs from the binary's); ``md5sums`` is the
    ``md5sums`` file (``<md5>  <path>`` lines, paths without a leading slash), empty if the
    package has none.
    """

    control: str
    md5sums: str = ""
    conffiles: tuple[str, ...] = ()
    scripts: dict[str, str] = field(default_factory=dict)  # maintainer scripts by name

    @property
    def postinst(self) -> str:
        return self.scripts.get("postinst", "")


@dataclass(frozen=True, slots=True)
class _Member:
    name: str
    offset: int  # of the member's data in the file
    size: int


def _bad(deb: Path, what: str) -> DistillError:
    return DistillError(
        f"{deb.name} is not a valid .deb: {what}",
        hint=f"the file may be truncated or damaged; delete {deb} so it is downloaded again",
    )


def _members(deb: Path, fh: BinaryIO) -> Iterator[_Member]:
    """Walk the ar headers, checking each member fits in the file before anyone reads it."""
    total = deb.stat().st_size
    if fh.read(len(AR_MAGIC)) != AR_MAGIC:
        raise _bad(deb, "no ar archive signature")
    pos = len(AR_MAGIC)
    while pos < total:
        fh.seek(pos)
        header = fh.read(_AR_HEADER)
        if len(header) < _AR_HEADER:
            raise _bad(deb, f"ar header cut short at byte {pos}")
        if header[58:60] != b"`\n":
            raise _bad(deb, f"bad ar header at byte {pos}")
        # GNU ar ends names with "/"; dpkg-deb writes none, other tools do.
        name = header[0:16].decode("ascii", errors="replace").rstrip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise _bad(deb, f"bad ar member size at byte {pos}") from None
        start = pos + _AR_HEADER
        if start + size > total:
            raise _bad(deb, f"member {name} needs {size} bytes, the file ends first (truncated)")
        yield _Member(name, start, size)
        pos = start + size + (size & 1)  # members are padded to an even offset


class _Slice(io.RawIOBase):
    """A read-only window on one ar member; decoders read it as if it were a file."""

    def __init__(self, fh: BinaryIO, member: _Member) -> None:
        self._fh = fh
        self._left = member.size
        fh.seek(member.offset)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._left)
        if want <= 0:
            return 0
        data = self._fh.read(want)
        if not data:
            raise EOFError("unexpected end of file")
        view[: len(data)] = data
        self._left -= len(data)
        return len(data)


def _decoder(deb: Path, fh: BinaryIO, member: _Member) -> IO[bytes]:
    raw = io.BufferedReader(_Slice(fh, member), buffer_size=1 << 16)
    suffix = member.name.rsplit(".tar", 1)[1] if ".tar" in member.name else None
    if suffix == "":
        return raw
    if suffix == ".gz":
        gz = igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call]
        return cast(IO[bytes], gz)
    if suffix == ".xz":
        return lzma.LZMAFile(raw)
    if suffix == ".zst":
        return cast(IO[bytes], zstd.ZstdFile(raw))
    if suffix == ".bz2":
        return bz2.BZ2File(raw)
    raise _bad(deb, f"unsupported compression of {member.name}")


def _find(deb: Path, fh: BinaryIO, prefix: str) -> _Member:
    names: list[str] = []
    for index, member in enumerate(_members(deb, fh)):
        names.append(member.name)
        if index == 0:
            if member.name != "debian-binary":
                raise _bad(deb, f"first member is {member.name!r}, not debian-binary")
            fh.seek(member.offset)
            version = fh.read(member.size).decode("ascii", errors="replace").strip()
            if not version.startswith("2."):
                raise _bad(deb, f"unsupported format version {version!r}")
            continue
        if member.name == prefix or member.name.startswith(prefix + "."):
            return member
    raise _bad(deb, f"no {prefix} member (found: {', '.join(names) or 'nothing'})")


def _wrap(deb: Path, what: str, exc: BaseException) -> DistillError:
    err = _bad(deb, f"{what}: {exc}")
    err.__cause__ = exc
    return err


def read_control(deb: Path) -> DebControl:
    """The control archive's stanza, md5sums, conffiles and maintainer scripts."""
    _check_exists(deb)
    files: dict[str, bytes] = {}
    try:
        with deb.open("rb") as fh:
            member = _find(deb, fh, "control.tar")
            budget = MAX_CONTROL_BYTES
            with tarfile.open(fileobj=_decoder(deb, fh, member), mode="r|") as tar:
                for info in tar:
                    if not info.isfile():
                        continue
                    budget -= info.size
                    if budget < 0:
                        raise _bad(deb, f"control archive over {MAX_CONTROL_BYTES} bytes")
                    stream = tar.extractfile(info)
                    if stream is not None:
                        files[_normalise_name(info.name)] = stream.read()
    except DistillError:
        raise
    except _CODEC_ERRORS as exc:
        raise _wrap(deb, "control archive unreadable", exc) from exc
    if "control" not in files:
        raise _bad(deb, "control archive has no control file")

    def text(name: str) -> str:
        return files.get(name, b"").decode("utf-8", errors="replace")

    conffiles = tuple(ln.strip() for ln in text("conffiles").splitlines() if ln.strip())
    scripts = {name: text(name) for name in _SCRIPTS if name in files}
    return DebControl(text("control"), text("md5sums"), conffiles, scripts)


def _check_exists(deb: Path) -> None:
    if not deb.is_file():
        raise DistillError(f"{deb} not found", hint="fetch the packages again")


def _normalise_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


class _Guarded(io.RawIOBase):
    """A member's content stream whose decode errors name the .deb, not the codec."""

    def __init__(self, deb: Path, inner: IO[bytes], name: str) -> None:
        self._deb = deb
        self._inner = inner
        self._name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._inner.read(len(view))
        except _CODEC_ERRORS as exc:
            raise _wrap(self._deb, f"reading {self._name}", exc) from exc
        view[: len(data)] = data
        return len(data)


def iter_data(deb: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    """Stream the data archive: each member with a reader for its content (regular files only).

    The archive is read front to back once, so a reader is only valid until the next member
    is requested; read it (or ignore it) before moving on.
    """
    _check_exists(deb)
    try:
        with deb.open("rb") as fh:
            member = _find(deb, fh, "data.tar")
            with tarfile.open(fileobj=_decoder(deb, fh, member), mode="r|") as tar:
                for info in tar:
                    stream = tar.extractfile(info) if info.isreg() else None
                    reader = (
                        io.BufferedReader(_Guarded(deb, stream, info.name), 1 << 16)
                        if stream is not None
                        else None
                    )
                    yield info, reader
    except DistillError:
        raise
    except _CODEC_ERRORS as exc:
        raise _wrap(deb, "data archive unreadable", exc) from exc
