"""The archive's Contents index, narrowed to the files a loader can be asked for.

The parser is checked on lines written here; lookups on the real trixie index, with each
answer checked against the package's own verified .deb (the oracle); a Contents file the
InRelease does not name can only propose candidates, never smuggle a package in."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest

from distill.cache import BlobCache
from distill.debian.contents import library_index, parse_contents, usr_merged
from distill.debian.mirror import Mirrors, discover_mirrors
from distill.net.download import fetch_bytes
from distill.package.libraries import ARCHES, PackageFinder

TRIPLET = ARCHES["amd64"].triplet


def test_parse_keeps_loader_visible_shared_objects() -> None:
    lines = [
        f"usr/lib/{TRIPLET}/libz.so.1                libs/zlib1g\n",
        f"lib/{TRIPLET}/libold.so.2    libs/libold2,oldlibs/libold2-compat\n",
        f"usr/lib/{TRIPLET}/with space/libodd.so.1   non-free/libs/libodd1\n",
        f"usr/lib/{TRIPLET}/blas/libblas.so.3   libs/libblas3\n",
        f"usr/lib/{TRIPLET}/perl5/5.40/auto/POSIX/POSIX.so  perl/perl-base\n",
        "usr/lib/python3/dist-packages/_cffi.cpython-313.so   python/python3-cffi\n",
        "usr/lib64/ld-linux-x86-64.so.2    libs/libc6\n",
        "usr/share/doc/zlib1g/copyright    libs/zlib1g\n",
        f"usr/lib/{TRIPLET}/libz.so.1.3    libs/zlib1g\n",
        "usr/bin/libfake.so.1   utils/fake\n",
    ]
    table = parse_contents(line.encode() for line in lines)
    assert table == {
        f"usr/lib/{TRIPLET}/libz.so.1": ("zlib1g",),
        f"usr/lib/{TRIPLET}/libold.so.2": ("libold2", "libold2-compat"),
        f"usr/lib/{TRIPLET}/blas/libblas.so.3": ("libblas3",),
        f"usr/lib/{TRIPLET}/with space/libodd.so.1": ("libodd1",),
        "usr/lib64/ld-linux-x86-64.so.2": ("libc6",),
        f"usr/lib/{TRIPLET}/libz.so.1.3": ("zlib1g",),
    }


def test_usr_merge() -> None:
    assert usr_merged("/lib/x/libz.so.1") == "usr/lib/x/libz.so.1"
    assert usr_merged("lib64/ld.so") == "usr/lib64/ld.so"
    assert usr_merged("usr/lib/x") == "usr/lib/x"
    assert usr_merged("library/x") == "library/x"


@pytest.mark.network
def test_real_trixie_lookups_agree_with_the_debs() -> None:
    cache = BlobCache()
    index = library_index("trixie", "amd64", cache=cache)
    finder = PackageFinder("trixie", "amd64", cache, index)
    for soname in ("libcurl.so.4", "libz.so.1"):
        path = f"usr/lib/{TRIPLET}/{soname}"
        packages = index.packages_at(path)
        assert packages, soname
        assert index.packages_at(f"/lib/{TRIPLET}/{soname}") == packages
        picked = finder.find(soname, [f"lib/{TRIPLET}", f"usr/lib/{TRIPLET}"], [])
        assert picked in packages
        assert finder.ships(picked, path)
    assert index.packages_at(f"usr/lib/{TRIPLET}/libdistill-no-such.so.1") == ()
    assert finder.find("libdistill-no-such.so.1", [f"usr/lib/{TRIPLET}"], []) is None
    assert len(index.sources) == 3  # suite, -updates, -security


@pytest.mark.network
def test_ambiguous_sonames_resolve_to_one_shipping_package() -> None:
    cache = BlobCache()
    index = library_index("trixie", "amd64", cache=cache)
    finder = PackageFinder("trixie", "amd64", cache, index)
    shared = sorted(
        (p, pkgs)
        for p, pkgs in index.paths.items()
        if len(pkgs) > 1 and p.startswith(f"usr/lib/{TRIPLET}/lib") and ".so." in p
    )
    assert shared, "trixie has sonames shipped by several packages"
    path, candidates = shared[0]
    name = path.rpartition("/")[2]
    first = finder.find(name, [f"usr/lib/{TRIPLET}"], [])
    assert first in candidates and finder.ships(first, path)
    assert finder.find(name, [f"usr/lib/{TRIPLET}"], []) == first  # deterministic


@pytest.mark.network
def test_derived_table_is_cached_by_the_contents_hash(private_cache: Path) -> None:
    cache = BlobCache(private_cache)
    first = library_index("trixie", "amd64", cache=cache, pockets=("trixie",))
    derived = sorted((private_cache / "derived" / "contents").iterdir())
    assert len(derived) == 1
    stamp = derived[0].stat().st_mtime_ns
    again = library_index("trixie", "amd64", cache=cache, pockets=("trixie",))
    assert again.paths == first.paths
    assert derived[0].stat().st_mtime_ns == stamp  # read, not written again


@pytest.mark.network
def test_an_unlisted_contents_file_cannot_smuggle_a_package(
    local_mirror: tuple[str, Path], private_cache: Path
) -> None:
    # The real, signed InRelease, next to a Contents file it does not name: one that says
    # libcurl's package ships zlib.
    url, root = local_mirror
    real = discover_mirrors()
    dists = root / "dists" / "trixie"
    (dists / "main").mkdir(parents=True)
    (dists / "InRelease").write_bytes(fetch_bytes(f"{real.main}/dists/trixie/InRelease"))
    lie = f"usr/lib/{TRIPLET}/libz.so.1   libs/libcurl4t64\n".encode()
    (dists / "main" / "Contents-amd64.gz").write_bytes(gzip.compress(lie))
    cache = BlobCache(private_cache)
    index = library_index(
        "trixie", "amd64", cache=cache, mirrors=Mirrors(url, None), pockets=("trixie",)
    )
    assert not index.verified
    assert index.packages_at(f"usr/lib/{TRIPLET}/libz.so.1") == ("libcurl4t64",)
    finder = PackageFinder("trixie", "amd64", BlobCache(), index, mirrors=real)
    assert finder.find("libz.so.1", [f"usr/lib/{TRIPLET}"], []) is None


@pytest.mark.network
@pytest.mark.may_skip_in_ci
def test_a_listed_contents_file_is_verified_and_fetched_by_hash(
    local_mirror: tuple[str, Path], private_cache: Path
) -> None:
    # The real bookworm InRelease and the Contents file it names, served by hash only.
    url, root = local_mirror
    real = discover_mirrors()
    inrelease = fetch_bytes(f"{real.main}/dists/bookworm/InRelease")
    listed = re.search(rb"^ ([0-9a-f]{64}) +\d+ main/Contents-amd64\.gz$", inrelease, re.M)
    assert listed is not None
    data = fetch_bytes(f"{real.main}/dists/bookworm/main/Contents-amd64.gz", max_size=256 << 20)
    if hashlib.sha256(data).hexdigest() != listed.group(1).decode():
        pytest.skip("this mirror's bookworm Contents file is out of step with its InRelease")
    dists = root / "dists" / "bookworm"
    (dists / "main" / "by-hash" / "SHA256").mkdir(parents=True)
    (dists / "InRelease").write_bytes(inrelease)
    (dists / "main" / "by-hash" / "SHA256" / listed.group(1).decode()).write_bytes(data)
    index = library_index(
        "bookworm",
        "amd64",
        cache=BlobCache(private_cache),
        mirrors=Mirrors(url, None),
        pockets=("bookworm",),
    )
    assert index.verified
    assert index.sources == (f"bookworm/main/Contents-amd64.gz sha256:{listed.group(1).decode()}",)
    packages = index.packages_at(f"usr/lib/{TRIPLET}/libcurl.so.4")
    finder = PackageFinder("bookworm", "amd64", BlobCache(), mirrors=real)
    assert packages and all(finder.ships(p, f"usr/lib/{TRIPLET}/libcurl.so.4") for p in packages)
