"""Digests: computing, checking and shortening them, and the canonical JSON they are of."""

from __future__ import annotations

import hashlib
import json
import re

from distill.errors import DistillError

# Digests we can check. Anything else (sha512, or a path smuggled into a digest) is refused
# before it is used to name a file.
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def canonical_json(value: object) -> bytes:
    """Keys sorted, no insignificant whitespace, UTF-8 with non-ASCII kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def short(digest: str | None) -> str:
    """``sha256:0123456789ab`` — enough to tell layers apart in a message."""
    return digest[:19] if digest else "no digest"


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def check_digest(value: object, where: str) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise DistillError(
            f"{where}: {value!r} is not a sha256 digest",
            hint="distill reads images whose blobs are named sha256:<64 hex digits>",
        )
    return value
