"""Fuzz Debian version parsing and comparison: clean errors, and a total order.

tests/test_version.py checks the order against dpkg itself; here the properties every sort
key must have are checked on far more (and far odder) versions than dpkg could judge.
"""

from __future__ import annotations

import itertools

import pytest
from fuzzing import FUZZ, clean, nasty_text
from hypothesis import given
from hypothesis import strategies as st

from distill.debian.binary import RelOp
from distill.debian.version import DebVersion, compare_versions, parse_version, version_satisfies
from distill.errors import DistillError

_TOKENS = ["0", "1", "9", "00", "10", "a", "Z", "~", "~~", "+", ".", "-", ":", "b1", "deb12u4"]
_digits = st.integers(1, 6000).map(lambda n: "9" * n)  # past int()'s 4300-digit limit too
_token = st.sampled_from(_TOKENS) | _digits | nasty_text


@st.composite
def version_text(draw: st.DrawFn) -> str:
    """Mostly version-shaped strings: an optional epoch, tokens, an optional revision, and
    now and then a character or a digit run that has no business being there."""
    epoch = draw(
        st.sampled_from(["", "", "0:", "1:", "01:", "2147483647:", "2147483648:"])
        | _digits.map(lambda d: d + ":")
    )
    upstream = "".join(draw(st.lists(_token, max_size=6)))
    revision = draw(st.sampled_from(["", "", "-1", "-0", "-1~bpo12+1", "-", "-a-b"]))
    return epoch + upstream + revision


@FUZZ
@given(version_text() | st.text())
def test_parse_returns_or_refuses(text: str) -> None:
    result = clean(lambda: parse_version(text))
    if isinstance(result, DebVersion):
        again = parse_version(str(result))  # what we print reads back as the same version
        assert again == result and again.key == result.key
        assert hash(again) == hash(result)


# Valid versions only: short tokens so that triples often tie or differ in one place.
_VALID = ["0", "1", "9", "00", "01", "10", "99999999999999999999", "a", "z", "A", "~", "+", "."]


@st.composite
def valid_versions(draw: st.DrawFn) -> str:
    epoch = draw(st.sampled_from(["", "", "0:", "1:", "10:"]))
    upstream = draw(st.sampled_from("0123456789")) + "".join(
        draw(st.lists(st.sampled_from(_VALID), max_size=5))
    )
    revision = "".join(draw(st.lists(st.sampled_from(_VALID), max_size=3)))
    if revision and draw(st.booleans()):
        upstream += "-" + draw(st.sampled_from(_VALID))  # a hyphen inside the upstream part
    if epoch and draw(st.booleans()):
        upstream += ":" + draw(st.sampled_from(_VALID))
    return f"{epoch}{upstream}-{revision}" if revision else f"{epoch}{upstream}"


@FUZZ
@given(valid_versions(), valid_versions(), valid_versions())
def test_compare_is_a_total_order(a: str, b: str, c: str) -> None:
    ab, bc, ac = compare_versions(a, b), compare_versions(b, c), compare_versions(a, c)
    assert compare_versions(a, a) == 0
    assert compare_versions(b, a) == -ab  # antisymmetry
    if ab <= 0 and bc <= 0:
        assert ac <= 0  # transitivity
    if ab == 0 and bc == 0:
        assert ac == 0
    assert (ab == 0) == (parse_version(a) == parse_version(b))
    if ab == 0:
        assert hash(parse_version(a)) == hash(parse_version(b))
    ordered = sorted([a, b, c], key=parse_version)  # sorting agrees with compare
    assert all(compare_versions(x, y) <= 0 for x, y in itertools.pairwise(ordered))


@FUZZ
@given(version_text(), st.sampled_from([None, *RelOp]), version_text() | st.none())
def test_version_satisfies_returns_or_refuses(a: str, op: RelOp | None, b: str | None) -> None:
    result = clean(lambda: version_satisfies(a, op, b))
    assert isinstance(result, bool | DistillError)


# Found by the targets above: a digit run past 4,300 digits made int() raise ValueError, and
# a long version was echoed whole in the message.
@pytest.mark.parametrize("text", ["9" * 4301, "1:" + "9" * 5000, "9" * 5000 + ":1", "1." * 600])
def test_absurdly_long_versions_are_refused_in_one_short_line(text: str) -> None:
    with pytest.raises(DistillError, match="longer than 1000 characters") as info:
        parse_version(text)
    assert len(info.value.message) < 200
    with pytest.raises(DistillError):
        DebVersion(0, text.replace(":", ""))
