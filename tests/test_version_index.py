"""Our version order over every distinct version in a real index, checked pair by pair by dpkg."""

from __future__ import annotations

import itertools
import subprocess
from concurrent.futures import ThreadPoolExecutor
from functools import cmp_to_key

import pytest

from distill.debian.archive import load_indices
from distill.debian.version import compare_versions

pytestmark = pytest.mark.network

# dpkg reads each pair; prints the pairs where our order and dpkg's disagree.
CHECK = """
while read -r rel a b; do
    dpkg --compare-versions "$a" "$rel" "$b" || echo "$rel $a $b"
done
"""


def test_adjacent_pairs_of_a_real_index_agree_with_dpkg() -> None:
    versions: set[str] = set()
    for index in load_indices("trixie", "amd64"):
        versions.update(p.version for p in index.packages)
        versions.update(p.source_version for p in index.packages)
    ordered = sorted(versions, key=cmp_to_key(compare_versions))
    assert len(ordered) > 20000
    lines = []
    for a, b in itertools.pairwise(ordered):
        rel = "eq" if compare_versions(a, b) == 0 else "lt"
        lines.append(f"{rel} {a} {b}\n")
    # Two shells, one per core: ~30k dpkg runs take ~20 s this way.
    half = len(lines) // 2
    procs = [
        subprocess.Popen(
            ["sh", "-c", CHECK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    with ThreadPoolExecutor(2) as pool:
        outs = list(
            pool.map(
                lambda pc: pc[0].communicate("".join(pc[1]))[0],
                zip(procs, (lines[:half], lines[half:]), strict=True),
            )
        )
    disagreements = "".join(outs).splitlines()
    assert disagreements == [], disagreements[:20]
