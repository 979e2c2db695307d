from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distill.debian.binary import RelOp
from distill.debian.version import (
    DebVersion,
    compare_versions,
    parse_version,
    version_satisfies,
)
from distill.errors import DistillError

# (a, b, expected compare_versions(a, b)); each line pins one dpkg rule.
TRICKY = [
    ("1.0", "1.0", 0),
    ("1.0", "1.0-0", 0),  # a missing revision equals revision "0"
    ("0:1.0", "1.0", 0),  # the default epoch is 0
    ("1.0-1", "1.0-01", 0),  # leading zeros are not significant
    ("1.00", "1.0", 0),
    ("1.0~rc1", "1.0", -1),  # '~' sorts before the end of the string
    ("1.0~~", "1.0~", -1),
    ("1.0~~a", "1.0~~", 1),
    ("1.0~", "1.0~0", 0),  # a trailing zero run is no run at all
    ("1.0", "1.0a", -1),  # the end of the string sorts before letters
    ("1.0a", "1.0+", -1),  # letters sort before non-letters
    ("1.0+", "1.0.", -1),  # non-letters compare by ASCII
    ("1.0Z", "1.0a", -1),  # uppercase before lowercase (ASCII)
    ("1.9", "1.10", -1),  # digit runs compare as numbers
    ("1.10", "1.9", 1),
    ("2", "10", -1),
    ("1:0", "2", 1),  # epoch dominates
    ("1:1.0", "2:0.1", -1),
    ("10:1", "9:2", 1),
    ("1.0-1", "1.0-2", -1),
    ("1.0-1-2", "1.0-1-10", -1),  # the revision is after the last hyphen
    ("1.0-2", "1.0-1-2", -1),  # ...so "1.0-1" is the upstream of the right one
    ("2.36-9+deb12u4", "2.36-9+deb12u10", -1),
    ("1.2.3+dfsg-1~bpo12+1", "1.2.3+dfsg-1", -1),
    ("1.0+b1", "1.0", 1),
    ("7.5p1-1", "7.5-1", 1),
    ("99999999999999999999998", "99999999999999999999999", -1),  # arbitrary length
    ("1:2:3", "1:2:2", 1),  # colons after the epoch belong to the upstream part
    ("a", "b", -1),  # dpkg only warns about a non-digit start, and compares
    ("1.0", "1.0.0", -1),
    ("1.0.", "1.0", 1),
]


@pytest.mark.parametrize(("a", "b", "expected"), TRICKY)
def test_tricky_cases(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected
    assert (parse_version(a) < parse_version(b)) == (expected < 0)
    assert (parse_version(a) == parse_version(b)) == (expected == 0)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        ":1.0",  # empty epoch
        "a:1.0",  # non-digit epoch
        "-1:1.0",
        "1:",  # nothing after the colon
        "1.0-",  # empty revision
        "-1",  # empty upstream
        "1:-1",
        "1.0 1",  # embedded whitespace
        "1.0_1",  # '_' is not allowed
        "1.0-1:2",  # ':' is not allowed in the revision
        "1.0é",
        "99999999999:1.0",  # epoch beyond dpkg's int
    ],
)
def test_invalid_versions_raise(bad: str) -> None:
    with pytest.raises(DistillError) as info:
        parse_version(bad)
    assert info.value.hint


def test_parse_splits_epoch_upstream_revision() -> None:
    version = parse_version(" 2:1.2-3-4 ")
    assert (version.epoch, version.upstream, version.revision) == (2, "1.2-3", "4")
    assert str(version) == "2:1.2-3-4"
    assert str(parse_version("0:1.0")) == "1.0"
    assert str(parse_version("0:1:2")) == "0:1:2"  # the colon needs its epoch to read back


def test_debversion_is_ordered_hashable_and_validated() -> None:
    versions = ["1.0", "1.0~rc1", "1:0.1", "1.0-1", "1.0+b1", "0.9", "1.0-0"]
    ordered = sorted(versions, key=parse_version)
    assert ordered == ["0.9", "1.0~rc1", "1.0", "1.0-0", "1.0-1", "1.0+b1", "1:0.1"]
    assert len({parse_version(v) for v in versions}) == 6  # 1.0 and 1.0-0 are one version
    assert max(map(parse_version, versions)) == DebVersion(1, "0.1")
    assert DebVersion(0, "1.0", "2") >= parse_version("1.0-1")
    with pytest.raises(DistillError):
        DebVersion(0, "1-2")  # a hyphenated upstream needs a revision to read back
    with pytest.raises(DistillError):
        DebVersion(-1, "1.0")


@pytest.mark.parametrize(
    ("candidate", "op", "wanted", "expected"),
    [
        ("1.0", None, None, True),
        ("1.0", RelOp.LT, "1.0", False),
        ("1.0~", RelOp.LT, "1.0", True),
        ("1.0", RelOp.LE, "1.0-0", True),
        ("1.0", RelOp.LE, "0.9", False),
        ("1:1", RelOp.EQ, "1:1-0", True),
        ("1.0", RelOp.EQ, "1.0+b1", False),
        ("1.0", RelOp.GE, "1.0", True),
        ("1.0", RelOp.GE, "1.0.1", False),
        ("1.0", RelOp.GT, "1.0~", True),
        ("1.0", RelOp.GT, "1.0", False),
    ],
)
def test_version_satisfies(
    candidate: str, op: RelOp | None, wanted: str | None, expected: bool
) -> None:
    assert version_satisfies(candidate, op, wanted) is expected


def test_version_satisfies_needs_a_version_for_an_operator() -> None:
    with pytest.raises(DistillError):
        version_satisfies("1.0", RelOp.GE, None)


# --- property test against the real dpkg ------------------------------------------------------

# Few, short tokens so that generated pairs often tie or differ in just one place.
_UPSTREAM_TOKENS = ["0", "1", "9", "00", "01", "10", "a", "b", "z", "A", "~", "~~", "+", "."]
_REVISION_TOKENS = ["0", "1", "2", "00", "a", "b", "~", "+", "."]
_SUFFIXES = ["~", "0", "1", "a", "Z", ".0", "+b1", "~rc1", "-1", "-0", "+", "."]


@st.composite
def versions(draw: st.DrawFn) -> str:
    epoch = draw(st.sampled_from(["", "", "", "0:", "1:", "2:", "01:", "10:"]))
    upstream = draw(st.sampled_from("0123456789"))
    upstream += "".join(draw(st.lists(st.sampled_from(_UPSTREAM_TOKENS), max_size=6)))
    revision = "".join(draw(st.lists(st.sampled_from(_REVISION_TOKENS), max_size=4)))
    if revision:
        # Hyphens and colons may only sit in the upstream part when a revision/epoch follows.
        upstream += draw(st.sampled_from(["", "", "-1", "-a~"]))
    if epoch:
        upstream += draw(st.sampled_from(["", "", ":1", ":a"]))
    return f"{epoch}{upstream}-{revision}" if revision else f"{epoch}{upstream}"


@st.composite
def version_pairs(draw: st.DrawFn) -> tuple[str, str]:
    first = draw(versions())
    if draw(st.booleans()):
        return first, draw(versions())
    return first, first + "".join(draw(st.lists(st.sampled_from(_SUFFIXES), max_size=2)))


# One shell runs dpkg for a whole batch, so ~300 comparisons cost a few dozen process starts.
_ORACLE = """
while [ $# -gt 0 ]; do
  dpkg --compare-versions "$1" lt "$2"; lt=$?
  dpkg --compare-versions "$1" eq "$2"; eq=$?
  echo "$lt $eq"
  shift 2
done
"""


def _dpkg_compare(pairs: list[tuple[str, str]]) -> list[int]:
    args = [version for pair in pairs for version in pair]
    done = subprocess.run(
        ["sh", "-c", _ORACLE, "oracle", *args], capture_output=True, text=True, check=True
    )
    assert done.stderr == "", done.stderr  # dpkg warns on versions it finds dubious
    results = []
    for line in done.stdout.splitlines():
        lt, eq = line.split()
        assert {lt, eq} <= {"0", "1"}, line  # 2 would mean dpkg refused the version
        results.append(-1 if lt == "0" else 0 if eq == "0" else 1)
    return results


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg as the oracle")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(version_pairs(), min_size=10, max_size=10))
def test_matches_dpkg(pairs: list[tuple[str, str]]) -> None:
    expected = _dpkg_compare(pairs)
    actual = [compare_versions(a, b) for a, b in pairs]
    assert actual == expected, [
        p for p, x, y in zip(pairs, actual, expected, strict=True) if x != y
    ]
