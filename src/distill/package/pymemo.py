"""What a warm Python package run remembers in the cache instead of recomputing, keyed by
every input (and distill's version): a console script's launcher, a cached wheel's
metadata, and that a set of requirements parsed or was met. A run that changed only the
app's code then imports neither installer, the email parser nor packaging (together about
a tenth of such a run). Each entry is checked when read; a damaged one is computed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

from distill import __version__
from distill.cache import BlobCache
from distill.errors import DistillError
from distill.package.wheels import INTERPRETER, WheelInfo, read_wheel

LAUNCHERS_NAMESPACE = "console-scripts"
WHEEL_INFO_NAMESPACE = "wheel-info"
CHECKED_NAMESPACE = "python-checked"
LISTS = ("requires", "scripts")  # WheelInfo's tuples, lists in JSON
_OK = b"ok"


def _key(inputs: object) -> str:
    return hashlib.sha256(json.dumps([__version__, inputs], sort_keys=True).encode()).hexdigest()


def checked(cache: BlobCache | None, what: str, inputs: object) -> bool:
    """Whether an earlier run found the check ``what`` passed for exactly these inputs."""
    if cache is None:
        return False
    try:
        return cache.get_derived(CHECKED_NAMESPACE, _key([what, inputs])) == _OK
    except DistillError:
        return False


def note_checked(cache: BlobCache | None, what: str, inputs: object) -> None:
    """Remember that the check ``what`` passed for these inputs (a cache that cannot be
    written only makes the next run slower)."""
    if cache is not None:
        with contextlib.suppress(DistillError):
            cache.put_derived(CHECKED_NAMESPACE, _key([what, inputs]), _OK)


def launcher(name: str, module: str, attr: str, cache: BlobCache) -> bytes:
    """installer's console-script launcher, remembered by its inputs: importing installer
    (email, csv, configparser) was a tenth of a warm run that only changed app code. The
    entry holds the script's sha256 first, so a damaged one is made again."""
    inputs = json.dumps([__version__, name, module, attr, INTERPRETER]).encode()
    key = hashlib.sha256(inputs).hexdigest()
    entry = cache.get_derived(LAUNCHERS_NAMESPACE, key)
    if entry is not None:
        digest, _, data = entry.partition(b"\n")
        if digest.decode("ascii", "replace") == hashlib.sha256(data).hexdigest():
            return data
    from installer.scripts import Script

    _, data = Script(name, module, attr, "console").generate(INTERPRETER, "posix")
    cache.put_derived(
        LAUNCHERS_NAMESPACE, key, hashlib.sha256(data).hexdigest().encode() + b"\n" + data
    )
    return data


def wheel_info(path: Path, sha: str, filename: str, cache: BlobCache) -> WheelInfo:
    """``read_wheel`` of a cached wheel, remembered by the wheel's sha256: a warm run then
    opens no wheel and imports no email parser. A damaged entry is read again."""
    key = hashlib.sha256(json.dumps([__version__, sha, filename]).encode()).hexdigest()
    raw = cache.get_derived(WHEEL_INFO_NAMESPACE, key)
    try:
        value = json.loads(raw) if raw is not None else None
    except ValueError:
        value = None
    if isinstance(value, dict) and all(isinstance(value.get(k), list) for k in LISTS):
        with contextlib.suppress(TypeError):
            info = WheelInfo(**value)
            text = (info.name, info.version, *info.requires, *info.scripts)
            if all(isinstance(v, str) for v in text) and isinstance(info.compiled, bool):
                return replace(info, requires=tuple(info.requires), scripts=tuple(info.scripts))
    info = read_wheel(path, filename)
    cache.put_derived(WHEEL_INFO_NAMESPACE, key, json.dumps(asdict(info)).encode())
    return info
