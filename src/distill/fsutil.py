"""Opening outputs: what ``-o`` may replace, and writing so that a failure leaves nothing behind.

Every file output (``oci-archive:``, ``docker-archive:``, ``sbom -o``, ``lock -o``,
``compare --html``) goes through ``output_file``; an ``oci:`` layout directory through
``output_layout``. Both are called once early, before any slow work, and again when the
output is written. They refuse to replace anything distill would not have written:

- a file output may replace a regular file, or a symlink that leads to one (then the file it
  leads to is replaced, in its own directory, and the symlink stays); never a directory, a
  device node, a fifo, a socket, or a symlink to any of those or to nothing;
- a layout may replace an empty directory or one that holds only what an OCI layout has
  (``oci-layout``, ``index.json``, ``blobs/<algorithm>/<files>``); never a symlink;
- nothing that is one of the command's own inputs.

Refusals are DistillErrors naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from distill import tempfiles
from distill.errors import DistillError

_SHOWN = 160  # characters of a path in a message; a 5,000-character one is cut in the middle
LAYOUT_FILES = frozenset({"oci-layout", "index.json"})


def shown(path: Path | str) -> str:
    text = str(path)
    if len(text) <= _SHOWN:
        return text
    half = _SHOWN // 2
    return f"{text[:half]}…{text[-half:]} ({len(text)} characters)"


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a fifo"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISREG, "a regular file"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def output_error(path: Path, exc: OSError) -> DistillError:
    if exc.errno == errno.ENAMETOOLONG:
        return DistillError(
            f"cannot write {shown(path)}: the file name or path is too long",
            hint="choose a shorter output path (at most 255 bytes per name, 4095 in all)",
        )
    if exc.errno == errno.ENOTDIR:
        return DistillError(
            f"cannot write {shown(path)}: a part of the path is not a directory",
            hint="choose an output path inside a directory",
        )
    if exc.errno == errno.ELOOP:
        return DistillError(
            f"cannot write {shown(path)}: too many levels of symbolic links",
            hint="name the output by a path without a symlink loop",
        )
    return DistillError(
        f"cannot write {shown(path)}: {exc.strerror or exc}",
        hint="check that the directory exists and is writable and the disk has space",
    )


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise output_error(path, exc) from exc


def _check_parent(path: Path) -> None:
    """The nearest existing ancestor of a new ``path`` is a writable directory."""
    probe = path.absolute().parent
    try:
        while not os.path.lexists(probe) and probe != probe.parent:
            probe = probe.parent
        st = os.stat(probe)
    except OSError as exc:
        raise output_error(path, exc) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise DistillError(
            f"cannot write {shown(path)}: {shown(probe)} is not a directory",
            hint="choose an output path inside a directory",
        )
    try:
        # A real probe: access() says yes to root on a read-only or immutable directory.
        os.unlink(tempfiles.make_file(probe, tempfiles.stem_for(path.name)))
    except OSError as exc:
        raise DistillError(
            f"cannot write {shown(path)}: {shown(probe)} is not writable ({exc.strerror})",
            hint="choose another output path, or fix the directory's permissions",
        ) from exc
    name_max = 255
    with contextlib.suppress(OSError, ValueError):
        name_max = os.pathconf(probe, "PC_NAME_MAX")
    for part in path.absolute().relative_to(probe).parts:
        if len(os.fsencode(part)) > name_max:
            raise output_error(path, OSError(errno.ENAMETOOLONG, "File name too long"))


def _refuse(path: Path, what: str, hint: str) -> DistillError:
    return DistillError(f"{shown(path)} is {what}; not replacing it", hint=hint)


def _not_an_input(path: Path, target: Path, inputs: Iterable[Path | str]) -> None:
    for source in inputs:
        with contextlib.suppress(OSError):
            if os.path.samefile(target, source):
                raise DistillError(
                    f"{shown(path)} is the input {shown(source)}; not overwriting it",
                    hint="write the output to another path",
                )


def check_input_path(path: Path) -> None:
    """A clean error for a local input that cannot even be looked up (a name too long, a
    symlink loop, no permission); a missing one is left to the caller to report."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        reason = "the name is too long" if exc.errno == errno.ENAMETOOLONG else exc.strerror
        raise DistillError(
            f"cannot read {shown(path)}: {reason or exc}",
            hint="check the path of the image",
        ) from exc


def output_file(path: Path, *, inputs: Iterable[Path | str] = ()) -> Path:
    """The regular file that writing ``path`` will create or replace: ``path`` itself, or the
    file a symlink there leads to. Raises DistillError for anything else (see the module)."""
    st = _lstat(path)
    if st is None:
        _check_parent(path)
        return path
    target = path
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise _refuse(
                path,
                "a symlink to nothing",
                "remove the dangling symlink or name the file it should lead to",
            ) from None
        except OSError as exc:
            raise output_error(path, exc) from exc
        target = Path(os.path.realpath(path))
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(
                path,
                f"a symlink to {_kind(st.st_mode)} ({shown(target)})",
                "a file output replaces only a regular file: choose another path",
            )
    elif not stat.S_ISREG(st.st_mode):
        raise _refuse(
            path,
            _kind(st.st_mode),
            "a file output replaces only a regular file: name a new or existing file"
            + (" (use oci: for a layout directory)" if stat.S_ISDIR(st.st_mode) else ""),
        )
    _not_an_input(path, target, inputs)
    _check_parent(target)
    return target


def _layout_like(path: Path) -> bool:
    """Empty, or only what an OCI layout written by distill holds."""
    try:
        with os.scandir(path) as top:
            entries = list(top)
        for entry in entries:
            if entry.name in LAYOUT_FILES:
                if not entry.is_file(follow_symlinks=False):
                    return False
            elif entry.name != "blobs" or not entry.is_dir(follow_symlinks=False):
                return False
            else:
                for algorithm in os.scandir(entry.path):
                    if not algorithm.is_dir(follow_symlinks=False):
                        return False
                    for blob in os.scandir(algorithm.path):
                        if not blob.is_file(follow_symlinks=False):
                            return False
    except OSError as exc:
        raise output_error(path, exc) from exc
    return True


def output_layout(path: Path) -> Path:
    """Check that ``path`` may become an OCI layout directory (see the module)."""
    st = _lstat(path)
    if st is None:
        _check_parent(path)
        return path
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(
            path,
            f"{_kind(st.st_mode)}, not a directory",
            "oci: writes a layout directory: name a new or empty directory, "
            "or use oci-archive: for a file",
        )
    if not _layout_like(path):
        raise _refuse(
            path,
            "a directory holding files that are not an OCI layout's",
            "choose a new or empty directory for oci:; distill deletes only what it wrote",
        )
    _check_parent(path)
    return path


@contextlib.contextmanager
def atomic_path(path: Path, *, inputs: Iterable[Path | str] = ()) -> Iterator[Path]:
    """Yield a temporary file next to the output ``path`` (checked with ``output_file``);
    on success it replaces that output at once, on failure it is removed. Stale temporaries
    of earlier runs writing the same output are swept first."""
    target = output_file(path, inputs=inputs)
    parent = target.parent if str(target.parent) else Path(".")
    stem = tempfiles.stem_for(target.name)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tempfiles.sweep(parent, [stem])
        tmp = tempfiles.make_file(parent, stem)
    except OSError as exc:
        raise output_error(path, exc) from exc
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        output_file(path)  # still a file (or nothing) just before it is replaced
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise output_error(path, exc) from exc
        raise


def atomic_write_bytes(path: Path, data: bytes, *, inputs: Iterable[Path | str] = ()) -> None:
    with atomic_path(path, inputs=inputs) as tmp:
        tmp.write_bytes(data)


def spool_dir() -> str | None:
    """Where large temporary files go: ``$TMPDIR`` if set, else ``/var/tmp`` (disk, where
    ``/tmp`` is often RAM), as containers/image does; None lets ``tempfile`` choose."""
    if os.environ.get("TMPDIR"):
        return None
    return "/var/tmp" if os.access("/var/tmp", os.W_OK | os.X_OK) else None
