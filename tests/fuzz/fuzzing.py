"""What every fuzz target shares: the hypothesis profile, the one contract, and mutations.

The contract of a parser fed hostile input: it returns, or it raises ``DistillError``.
Anything else (KeyError, RecursionError, UnicodeError, ValueError from ``int()``...) would
reach the user as a traceback.

``DISTILL_FUZZ_EXAMPLES`` sets the examples per target: small in ``make test``, 10,000 in
``make fuzz``. ``DISTILL_FUZZ_DEADLINE_MS`` sets hypothesis' per-example deadline, off unless
set: this machine's speed drifts by the hour, and a test must not fail on wall-clock time.
Boundedness is checked by what the parsers are allowed to do (caps), not by a clock.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from distill.errors import DistillError

T = TypeVar("T")

EXAMPLES = int(os.environ.get("DISTILL_FUZZ_EXAMPLES", "300"))
_DEADLINE = os.environ.get("DISTILL_FUZZ_DEADLINE_MS", "off")

settings.register_profile(
    "distill-fuzz",
    max_examples=EXAMPLES,
    deadline=None if _DEADLINE in ("", "off", "none") else timedelta(milliseconds=int(_DEADLINE)),
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
    print_blob=True,  # a failure prints the blob that replays it with @reproduce_failure
)
FUZZ = settings.get_profile("distill-fuzz")


def clean(call: Callable[[], T]) -> T | DistillError:
    """Run ``call``: its result, or the DistillError it raised. Any other exception
    propagates and fails the target. (Messages may quote a name holding a newline: the CLI
    prints every error through ``bounded.one_line``, so that is not checked here.)"""
    try:
        return call()
    except DistillError as error:
        return error


# --- byte and text mutations ---------------------------------------------------------------

# Characters that break parsers: unicode line breaks and blanks, NUL, surrogates (as text),
# non-ASCII digits, quotes and separators.
NASTY_CHARS = "\0\r\n\t\x0b\x0c\x1c\x1d\x1e\x85\xa0\u2028\u2029\ufeff١٢³:-#=/ \"'\\{}[]"
nasty_text = st.text(st.sampled_from(NASTY_CHARS) | st.characters(), max_size=12)


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes, max_ops: int = 4) -> bytes:
    """``data`` with a few edits: flips, overwrites, inserts, deletes, duplicated runs, a cut."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, max_ops))):
        pos = draw(st.integers(0, len(buf)))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "dup", "cut"]))
        if op == "flip" and pos < len(buf):
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and pos < len(buf):
            buf[pos] = draw(st.sampled_from([0, 0x20, 0x30, 0x37, 0x39, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(max_size=16))
        elif op == "delete":
            del buf[pos : pos + draw(st.integers(1, 64))]
        elif op == "dup":
            buf[pos:pos] = buf[pos : pos + draw(st.integers(1, 64))] * draw(st.integers(1, 4))
        elif op == "cut":
            del buf[pos:]
    return bytes(buf)


@st.composite
def mutated_text(draw: st.DrawFn, text: str, max_ops: int = 4) -> str:
    """``text`` with a few edits, inserting characters parsers trip on."""
    for _ in range(draw(st.integers(0, max_ops))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "dup", "cut", "replace"]))
        if op == "insert":
            text = text[:pos] + draw(nasty_text) + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 32)) :]
        elif op == "dup":
            text = text[:pos] + text[pos : pos + draw(st.integers(1, 64))] * 3 + text[pos:]
        elif op == "cut":
            text = text[:pos]
        else:
            text = text[:pos] + draw(nasty_text) + text[pos + 1 :]
    return text


# --- JSON documents ------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 2**63, 1e308, -0.0])
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "sha256:", "sha256:" + "0" * 64, "../../etc/passwd", "linux/amd64"])
)


def _json_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


json_values = st.recursive(json_scalars, _json_containers, max_leaves=12)


def _paths(doc: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*here, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*here, i))
    return out


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@st.composite
def mutated_json(draw: st.DrawFn, doc: Any, max_ops: int = 3) -> Any:
    """A deep copy of ``doc`` with values replaced by other JSON, keys deleted or added, lists
    emptied or repeated: a document of the right shape gone wrong in a few places."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(0, max_ops))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            if draw(st.integers(0, 9)) == 0:
                doc = draw(json_values)
            continue
        parent, last = _at(doc, path[:-1]), path[-1]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "grow", "nest"]))
        if op == "replace":
            parent[last] = draw(json_values)
        elif op == "delete":
            del parent[last]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
        elif op == "grow" and isinstance(parent, list):
            parent.extend([parent[last]] * draw(st.integers(1, 5)))
        elif op == "nest":
            # A placeholder that ``dumps`` expands: json.dumps cannot nest this deep.
            depth = draw(st.sampled_from([2, 50, 199, 201, 1000, 50_000]))
            parent[last] = f"@@deep:{depth}:{json.dumps(parent[last])}@@"
    return doc


_DEEP = re.compile(r'"@@deep:(\d+):((?:[^"\\]|\\.)*)@@"')


def dumps(doc: Any) -> bytes:
    """The document as JSON text, ``mutated_json``'s deep nests expanded."""

    def expand(match: re.Match[str]) -> str:
        depth = int(match[1])
        inner: str = json.loads(f'"{match[2]}"')
        return "[" * depth + inner + "]" * depth

    return _DEEP.sub(expand, json.dumps(doc)).encode()
