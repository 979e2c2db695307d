"""Documents that come from an image, a server or a user: bounded in size and in nesting.

Every JSON or text document distill reads from something it does not control goes through
here, so that what the document *declares* (its size, its depth) can never cost more than
these caps: a 200 MB "os-release" or a JSON array nested 100,000 deep ends in one clean
``DistillError``, not in gigabytes of memory or a RecursionError traceback.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import IO, Any

from distill.errors import DistillError

# A JSON document nested deeper than this is not a manifest, index, config, token answer,
# package.json or lock: real ones are under 10 levels. Checked before json.loads so that
# neither the parser nor any code walking the result can run out of stack.
MAX_JSON_DEPTH = 200
DAMAGED_HINT = "the file is damaged or was made to attack a reader; get it again from its source"


def _too_deep(data: bytes | str) -> bool:
    """True when brackets nest deeper than MAX_JSON_DEPTH (strings skipped). Fast path: a
    document with fewer opening brackets than the cap cannot be too deep."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def parse_json(data: bytes | str, where: str, *, hint: str = DAMAGED_HINT) -> Any:
    """``json.loads`` that fails only with a DistillError naming ``where``."""
    if _too_deep(data):
        raise DistillError(
            f"{where} is nested more than {MAX_JSON_DEPTH} levels deep; refusing to read it",
            hint=hint,
        )
    try:
        value = json.loads(data)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise DistillError(f"{where} is nested too deeply", hint=hint) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DistillError(f"{where} is not valid JSON: {exc}", hint=hint) from None
    # "\ud800" alone is valid JSON but no text: it fails wherever it is encoded (a purl, a
    # DB, an SBOM). Only a document with such an escape (pairs use them too) is walked.
    pattern = _SURROGATE_ESCAPE if isinstance(data, bytes) else _SURROGATE_ESCAPE_TEXT
    if pattern.search(data) and _lone_surrogate(value):  # type: ignore[arg-type]
        raise DistillError(
            f"{where} holds a string that is not Unicode text (a lone surrogate escape)",
            hint=hint,
        )
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate(value: Any) -> bool:
    """Whether a string in ``value`` (at most MAX_JSON_DEPTH deep) cannot be UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


def parse_json_object(data: bytes | str, where: str, *, hint: str = DAMAGED_HINT) -> dict[str, Any]:
    value = parse_json(data, where, hint=hint)
    if not isinstance(value, dict):
        raise DistillError(f"{where} is not a JSON object", hint=hint)
    return value


def read_capped(fh: IO[bytes], limit: int, where: str, *, hint: str = DAMAGED_HINT) -> bytes:
    """Read a whole stream that must not be larger than ``limit`` bytes, reading at most
    ``limit + 1`` bytes whatever the stream would go on to give."""
    data = fh.read(limit + 1)
    if len(data) > limit:
        raise DistillError(f"{where} is larger than {limit} bytes; refusing to read it", hint=hint)
    return data


def read_regular_file(path: Path, limit: int, where: str, *, hint: str = DAMAGED_HINT) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``limit`` bytes: a
    fifo, a device or a directory named where a document belongs fails at once instead of
    blocking or reading forever. A missing file raises FileNotFoundError for the caller to
    word; any other failure is a DistillError naming ``where``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise DistillError(f"{where}: cannot read it: {reason}", hint=hint) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DistillError(f"{where} is not a regular file", hint=hint)
    with os.fdopen(fd, "rb") as fh:
        try:
            return read_capped(fh, limit, where, hint=hint)
        except OSError as exc:
            raise DistillError(f"{where}: cannot read it: {exc.strerror}", hint=hint) from None


def one_line(text: str, limit: int = 2000) -> str:
    """Text from outside (a server's error body, a file name in an image) made safe to show
    on one terminal line: control characters escaped, length capped."""
    out = "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text[: limit + 1]
    )
    return out if len(out) <= limit else out[:limit] + "…"
