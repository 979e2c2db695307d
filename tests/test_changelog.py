"""Debian changelogs: the parser's quirks, reading them out of real .debs (binNMUs, doc
directories that are symlinks), and the advisories derived from a signed local mirror.

Every expected id and version comes from the changelog text the test itself writes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tracemalloc
from pathlib import Path

import pytest

from changelog_mirror import Deb, entry, gz, make_key, publish
from distill.cache import BlobCache
from distill.debian.changelog import (
    cve_ids,
    parse_changelog,
    read_deb_changelog,
    read_gzip_capped,
)
from distill.debian.mirror import Mirrors
from distill.errors import DistillError
from distill.scan.changelog import ChangelogAdvisories, changelog_advisories
from distill.scan.model import ImagePackage, Origin

MiB = 1 << 20

# --- the parser ---------------------------------------------------------------------------

QUIRKY = (
    "foo (1:2.0~rc1-1+deb12u1) bookworm-security; urgency=high\n"
    "\n"
    "  * Fix CVE-2024-1111 and cve-2024-22222 (lower case).\n"
    "  * CVE-2024-1111 again, and CVE-2024-123456 (six digits).\n"
    "  * Not ids: CVE-2024-123, XCVE-2024-5555, CVE-24-1234, CVE-2024-12345678901234.\n"
    "\n"
    " -- Jane Doe <jane@example.invalid>  Tue, 02 Jan 2024 10:00:00 +0100\n"
    "\n"
    "foo (1:2.0~rc1-1+b2) bookworm; urgency=low, binary-only=yes\n"
    "\n"
    "  * Binary-only non-maintainer upload for amd64; no source changes.\n"
    "  * Rebuild against libbar (CVE-2023-7777).\n"
    "\n"
    " -- amd64 Build Daemon <buildd@example.invalid>  Wed, 03 Jan 2024 00:00:00 +0000\n"
    "\n"
    "foo (bad version!) unstable; urgency=low\n"
    "\n"
    "  * CVE-2020-0001 under a heading whose version dpkg refuses.\n"
    "\n"
    " -- Jane Doe <jane@example.invalid>  Mon, 01 Jan 2024 00:00:00 +0000\n"
    "\n"
    "foo (2.0~rc1-1) unstable experimental; urgency=medium*, closes=1234\n"
    "\n"
    "  * Initial release. Mentions CVE-2019-9999 across\n"
    "    a continuation line.\n"
    "\n"
    " -- Jane Doe <jane@example.invalid>  Sun, 31 Dec 2023 00:00:00 +0000\n"
    "\n"
    "Old Changelog:\n"
    "foo (0.1) unstable; urgency=low\n"
    "  * CVE-2000-0001 in the free-form tail.\n"
    "\n"
    "Local variables:\n"
    "mode: debian-changelog\n"
)


def test_parser_reads_headings_trailers_and_ids() -> None:
    log = parse_changelog(QUIRKY)
    versions = [e.version for e in log.entries]
    assert versions == ["1:2.0~rc1-1+deb12u1", "1:2.0~rc1-1+b2", "2.0~rc1-1"]
    first, binnmu, initial = log.entries
    assert first.source == "foo" and first.distributions == ("bookworm-security",)
    assert first.urgency == "high" and not first.binary_only
    assert first.cves == ("CVE-2024-1111", "CVE-2024-22222", "CVE-2024-123456")
    assert first.maintainer == "Jane Doe <jane@example.invalid>"
    assert first.date == "Tue, 02 Jan 2024 10:00:00 +0100"
    assert binnmu.binary_only and binnmu.cves == ("CVE-2023-7777",)
    assert initial.distributions == ("unstable", "experimental")
    assert initial.urgency == "medium*" and initial.cves == ("CVE-2019-9999",)
    assert log.skipped == ("foo (bad version!)",)
    assert not log.cut


def test_binnmu_changelog_marks_every_entry_binary_only() -> None:
    text = entry("bar", "3.0-1+b1", "bookworm", "Rebuild (CVE-2024-4444).")
    [only] = parse_changelog(text, binary_only=True).entries
    assert only.binary_only and only.cves == ("CVE-2024-4444",)


def test_cve_ids_are_deduplicated_in_order() -> None:
    assert cve_ids("CVE-2024-2 cve-2024-0002 CVE-2024-0001 CVE-2024-0002") == (
        "CVE-2024-0002",
        "CVE-2024-0001",
    )


def test_text_before_the_first_heading_and_crlf_are_harmless() -> None:
    text = "garbage line\r\n" + entry("x", "1.0-1", "bookworm", "CVE-2024-1000").replace(
        "\n", "\r\n"
    )
    [only] = parse_changelog(text).entries
    assert (only.version, only.cves) == ("1.0-1", ("CVE-2024-1000",))


# --- bounded decompression -------------------------------------------------------------------


def test_gzip_members_are_all_read() -> None:
    data, cut = read_gzip_capped(io.BytesIO(gz("one\n") + gz("two\n")))
    assert (data, cut) == (b"one\ntwo\n", False)


def test_trailing_garbage_after_a_member_is_ignored_but_damage_is_refused() -> None:
    assert read_gzip_capped(io.BytesIO(gz("one\n") + b"\0\0\0\0")) == (b"one\n", False)
    with pytest.raises(DistillError, match="does not decompress"):
        read_gzip_capped(io.BytesIO(b"\x1f\x8b\x08\x00garbage" * 10))


def test_a_stream_cut_mid_member_counts_as_cut() -> None:
    whole = gz(b"x" * 100_000 + b"".join(b"%d\n" % i for i in range(50_000)))
    data, cut = read_gzip_capped(io.BytesIO(whole[: len(whole) // 2]))
    assert cut and 0 < len(data) < 400_000


def test_a_1_gib_changelog_is_cut_at_the_cap_in_bounded_memory() -> None:
    """A hostile changelog that expands to 1 GiB: 1024 gzip members of 1 MiB each."""
    head = entry("big", "2.0-1", "bookworm", "CVE-2024-0042").encode()
    member = gz(b"  * padding\n" * (MiB // 12))
    stream = io.BytesIO(gz(head) + member * 1024)
    tracemalloc.start()
    try:
        data, cut = read_gzip_capped(stream, 4 * MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert cut and len(data) == 4 * MiB
    assert peak < 16 * MiB
    assert stream.tell() < len(stream.getvalue())  # it stopped reading
    [top] = parse_changelog(data.decode()).entries
    assert top.cves == ("CVE-2024-0042",)


# --- reading .debs ---------------------------------------------------------------------------

DOC = "usr/share/doc"


def test_changelog_and_binnmu_changelog_from_a_deb(tmp_path: Path) -> None:
    source_log = entry("bar", "3.0-1", "bookworm", "CVE-2023-5555")
    binnmu_log = entry("bar", "3.0-1+b1", "bookworm", "Rebuild (CVE-2024-4444).")
    deb = Deb(
        "bar",
        "3.0-1+b1",
        source="bar (3.0-1)",
        files={
            f"{DOC}/bar/changelog.Debian.gz": gz(source_log),
            f"{DOC}/bar/changelog.Debian.amd64.gz": gz(binnmu_log),
            f"{DOC}/bar/copyright": b"x\n",
            "usr/share/zzz/after": b"after the doc dir\n",
        },
    ).build(tmp_path)
    read = read_deb_changelog(deb, "bar", "amd64")
    assert read.link is None and read.changelog is not None and read.binnmu is not None
    assert [(e.version, e.cves) for e in read.changelog.entries] == [("3.0-1", ("CVE-2023-5555",))]
    assert [(e.version, e.binary_only) for e in read.binnmu.entries] == [("3.0-1+b1", True)]
    # Another architecture's binNMU changelog is not this one's.
    assert read_deb_changelog(deb, "bar", "arm64").binnmu is None


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        ({f"{DOC}/libfoo1": "foo-common"}, "foo-common"),
        ({f"{DOC}/libfoo1": f"/{DOC}/foo-common"}, "foo-common"),
        ({f"{DOC}/libfoo1/changelog.Debian.gz": "../foo-common/changelog.Debian.gz"}, "foo-common"),
        ({f"{DOC}/libfoo1": "../../lib/elsewhere"}, None),
    ],
)
def test_doc_symlinks_name_the_package_to_read(
    tmp_path: Path, links: dict[str, str], expected: str | None
) -> None:
    deb = Deb("libfoo1", "1.0-1", links=links, files={"usr/lib/libfoo.so.1": b"\x7fELF"})
    read = read_deb_changelog(deb.build(tmp_path), "libfoo1", "amd64")
    assert read.changelog is None and read.link == expected


def test_native_packages_keep_their_changelog_in_changelog_gz(tmp_path: Path) -> None:
    log = entry("nat", "1.5", "bookworm", "CVE-2024-1500")
    deb = Deb("nat", "1.5", arch="all", files={f"{DOC}/nat/changelog.gz": gz(log)})
    path = deb.build(tmp_path)
    assert read_deb_changelog(path, "nat", "amd64").changelog is None  # not native: not read
    read = read_deb_changelog(path, "nat", "amd64", native=True)
    assert read.changelog is not None and read.changelog.entries[0].cves == ("CVE-2024-1500",)


def test_a_damaged_changelog_names_the_deb(tmp_path: Path) -> None:
    bad = b"\x1f\x8b\x08\x00" + b"\xff" * 200
    deb = Deb("dmg", "1.0-1", files={f"{DOC}/dmg/changelog.Debian.gz": bad}).build(tmp_path)
    with pytest.raises(DistillError, match=r"dmg_1\.0-1_amd64\.deb: changelog does not"):
        read_deb_changelog(deb, "dmg", "amd64")


# --- advisories from a signed local mirror -------------------------------------------------

FOO_OLD = "1:2.0~rc1-1"
FOO_U1 = "1:2.0~rc1-1+deb12u1"
FOO_U2 = "1:2.0~rc1-1+deb12u2"
FOO_LOG = (
    entry("foo", FOO_U2, "bookworm-security", "Regression fix for CVE-2024-1111.", "CVE-2024-33333")
    + entry("foo", FOO_U1, "bookworm-security", "CVE-2024-1111", "Fix cve-2024-22222.")
    + entry("foo", FOO_OLD, "bookworm", "CVE-2022-0001 (already fixed before the image).")
)
BAR_LOG = entry("bar", "3.0-1", "bookworm", "CVE-2023-5555")
BAR_BINNMU = entry("bar", "3.0-1+b1", "bookworm", "Rebuild for CVE-2024-44444.")
HUGE_HEAD = entry("huge", "5.0-2", "bookworm-security", "CVE-2024-55555")


def _foo(version: str, log: str) -> list[Deb]:
    # libfoo1's doc directory is a symlink to foo-common's, which holds the changelog.
    return [
        Deb(
            "libfoo1",
            version,
            source="foo",
            links={f"{DOC}/libfoo1": "foo-common"},
            files={"usr/lib/libfoo.so.1": b"\x7fELF" + b"\0" * 4000},
        ),
        Deb(
            "foo-common",
            version,
            arch="all",
            source="foo",
            files={f"{DOC}/foo-common/changelog.Debian.gz": gz(log)},
        ),
    ]


def _bar(version: str, binnmu: bool) -> Deb:
    files = {f"{DOC}/bar/changelog.Debian.gz": gz(BAR_LOG)}
    if binnmu:
        files[f"{DOC}/bar/changelog.Debian.amd64.gz"] = gz(BAR_BINNMU)
    return Deb("bar", version, source="bar (3.0-1)" if binnmu else "", files=files)


def _huge() -> Deb:
    padding = gz(b"  * padding\n" * (MiB // 12))
    log = gz(HUGE_HEAD) + padding * 40  # 40 MiB of text: past the 16 MiB cap
    return Deb("huge", "5.0-2", files={f"{DOC}/huge/changelog.Debian.gz": log})


def _loop(version: str) -> list[Deb]:
    # Two doc directories that point at each other: followed a few hops, then given up.
    return [
        Deb("loop-a", version, source="loop", links={f"{DOC}/loop-a": "loop-b"}),
        Deb("loop-b", version, source="loop", links={f"{DOC}/loop-b": "loop-a"}),
    ]


@pytest.fixture(scope="module")
def mirror_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(mirror root, keyring): bookworm, bookworm-updates and bookworm-security."""
    home = tmp_path_factory.mktemp("gnupg")
    keyring = make_key(home)
    debs = tmp_path_factory.mktemp("debs")
    root = tmp_path_factory.mktemp("mirror")

    def build(items: list[Deb]) -> list[Path]:
        return [d.build(debs) for d in items]

    publish(
        root,
        home,
        {
            "bookworm": build(
                [
                    *_foo(FOO_OLD, entry("foo", FOO_OLD, "bookworm", "CVE-2022-0001")),
                    _bar("3.0-1", binnmu=False),
                    Deb("baz", "1.0-1", files={f"{DOC}/baz/changelog.Debian.gz": gz("")}),
                    Deb("huge", "5.0-1"),
                    *_loop("1.0-1"),
                ]
            ),
            "bookworm-updates": build([_bar("3.0-1+b1", binnmu=True)]),
            "bookworm-security": build([*_foo(FOO_U2, FOO_LOG), _huge(), *_loop("1.0-2")]),
        },
    )
    return root, keyring


@pytest.fixture
def served(
    mirror_tree: tuple[Path, Path], local_mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Path]:
    import shutil

    root, keyring = mirror_tree
    url, served_root = local_mirror
    shutil.copytree(root, served_root, dirs_exist_ok=True)
    monkeypatch.setenv("DISTILL_KEYRING", str(keyring))
    return url, served_root


def _pkg(name: str, version: str, source: str = "", source_version: str = "") -> ImagePackage:
    return ImagePackage(
        "deb", name, version, f"pkg:deb/debian/{name}@{version}", source, source_version
    )


IMAGE = [
    _pkg("libfoo1", FOO_OLD, "foo"),
    _pkg("foo-common", FOO_OLD, "foo"),
    _pkg("bar", "3.0-1"),
    _pkg("baz", "1.0-1"),
    _pkg("huge", "5.0-1"),
    _pkg("mine", "1.0-1"),  # not in the archive at all
    _pkg("loop-a", "1.0-1", "loop"),
    ImagePackage("pypi", "requests", "2.0.0", "pkg:pypi/requests@2.0.0"),
]
EXPECTED = {
    ("foo", "CVE-2024-1111", FOO_U1),  # first fixed in u1; named again in u2
    ("foo", "CVE-2024-22222", FOO_U1),
    ("foo", "CVE-2024-33333", FOO_U2),
    ("bar", "CVE-2024-44444", "3.0-1+b1"),  # from the binNMU changelog
    ("huge", "CVE-2024-55555", "5.0-2"),
}


def _scan(url: str, cache: BlobCache, offline: bool = False) -> ChangelogAdvisories:
    def mirrors() -> Mirrors:
        if offline:
            raise AssertionError("an offline scan asked for the mirror")
        return Mirrors(url, url)

    return changelog_advisories(
        IMAGE, "bookworm", "amd64", cache=cache, mirrors=mirrors, offline=offline
    )


def _found(result: ChangelogAdvisories) -> set[tuple[str, str, str | None]]:
    return {(a.source_package, a.vuln_id, a.fixed_version) for a in result.advisories}


def test_advisories_from_newer_candidates(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    cache = BlobCache(tmp_path / "cache")
    result = _scan(url, cache)
    assert _found(result) == EXPECTED
    for advisory in result.advisories:
        assert advisory.origin is Origin.CHANGELOG and advisory.status == "resolved"
        assert advisory.release == "bookworm" and advisory.urgency == "not yet assigned"
    # huge's changelog was cut at the cap before reaching the installed version: said so.
    cut, loop = result.unchecked
    assert cut.startswith("huge 5.0-1:") and "cut short" in cut
    assert loop == "loop-a 1.0-1 (newer: 1.0-2): no binary of its source ships a changelog"
    assert result.outdated == 5 and result.checked == 6
    assert result.opened >= 4  # libfoo1 → foo-common, bar, huge


def test_second_scan_opens_no_deb_and_offline_reuses_the_cache(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = served
    cache = BlobCache(tmp_path / "cache")
    first = _scan(url, cache)
    second = _scan(url, cache)
    assert second.opened == 0 and second.advisories == first.advisories
    offline = _scan(url, cache, offline=True)
    assert offline.advisories == first.advisories and offline.unchecked == first.unchecked
    # Without the derived results, the cached .debs are enough offline.
    for path in (cache.root / "derived" / "changelog").iterdir():
        path.unlink()
    again = _scan(url, cache, offline=True)
    assert again.opened > 0 and _found(again) == EXPECTED


def test_offline_with_an_empty_cache_checks_nothing_and_says_so(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = served
    result = _scan(url, BlobCache(tmp_path / "empty"), offline=True)
    assert result.advisories == () and result.checked == 0
    [note] = result.unchecked
    assert note.startswith("7 Debian packages: no cached index of bookworm")


def test_offline_names_the_packages_whose_deb_is_not_cached(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = served
    cache = BlobCache(tmp_path / "cache")
    _scan(url, cache)
    for path in (cache.root / "derived" / "changelog").iterdir():
        path.unlink()
    _, root = served
    bar_debs = [_sha256(p) for p in root.glob("pool/main/*/bar_*.deb")]
    assert len(bar_debs) == 2
    for sha in bar_debs:
        cache.path(sha).unlink(missing_ok=True)
    result = _scan(url, cache, offline=True)
    assert _found(result) == {e for e in EXPECTED if e[0] != "bar"}
    missing = [u for u in result.unchecked if u.startswith("bar ")]
    assert missing == [
        "bar 3.0-1 (newer: 3.0-1+b1): its .deb is not in the cache (scan without --offline)"
    ]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_altered_deb_is_refused_and_nothing_derived_from_it(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = served
    [deb] = (root / "pool/main/bookworm-security").glob("huge_*.deb")
    original = _sha256(deb)
    data = bytearray(deb.read_bytes())
    data[-10] ^= 0xFF
    deb.write_bytes(bytes(data))
    cache = BlobCache(tmp_path / "cache")
    result = _scan(url, cache)
    assert _found(result) == {e for e in EXPECTED if e[0] != "huge"}
    [note] = [u for u in result.unchecked if u.startswith("huge ")]
    assert "hash mismatch" in note
    # Results for foo, bar and loop (none) were kept; nothing for huge, nor its .deb.
    derived = [p.read_bytes() for p in (cache.root / "derived" / "changelog").iterdir()]
    assert len(derived) == 3 and not any(b"huge" in d for d in derived)
    assert cache.get(original) is None and cache.get(_sha256(deb)) is None


def test_no_debian_packages_needs_no_mirror(tmp_path: Path) -> None:
    def mirrors() -> Mirrors:
        raise AssertionError("asked for the mirror")

    pypi = [ImagePackage("pypi", "requests", "2.0.0", "pkg:pypi/requests@2.0.0")]
    result = changelog_advisories(
        pypi, "bookworm", "amd64", cache=BlobCache(tmp_path), mirrors=mirrors
    )
    assert result == ChangelogAdvisories()


def test_a_release_that_is_not_a_codename_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="not a Debian release codename"):
        changelog_advisories(
            IMAGE, "../etc", "amd64", cache=BlobCache(tmp_path), mirrors=lambda: Mirrors("", None)
        )


def test_a_version_from_the_image_that_is_not_one_is_named_not_trusted(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = served
    bad = _pkg("libfoo1", "2.0 \x1b[31mred")
    result = changelog_advisories(
        [bad], "bookworm", "amd64", cache=BlobCache(tmp_path), mirrors=lambda: Mirrors(url, url)
    )
    assert result.advisories == () and result.checked == 0
    assert result.unchecked == ("libfoo1 2.0 \\x1b[31mred: version not understood",)


def _status(name: str, version: str, source: str = "", arch: str = "amd64") -> str:
    lines = [f"Package: {name}", "Status: install ok installed", f"Version: {version}"]
    lines += [f"Architecture: {arch}"] + ([f"Source: {source}"] if source else [])
    return "\n".join(lines) + "\n"


def test_distill_scan_with_the_local_mirror_names_what_it_could_not_check(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    """The whole path through the CLI: an image's dpkg status → the local mirror's
    changelogs → findings; the altered .deb of one candidate is a note, not a traceback."""
    from analyze_images import file, simple_image
    from distill.transports._write import write_oci_dir
    from test_lock import run_cli

    url, root = served
    [deb] = (root / "pool/main/bookworm-security").glob("huge_*.deb")
    deb.write_bytes(deb.read_bytes()[:-100] + b"\0" * 100)
    status = "\n".join(
        [
            _status("libfoo1", FOO_OLD, "foo"),
            _status("foo-common", FOO_OLD, "foo", "all"),
            _status("bar", "3.0-1"),
            _status("huge", "5.0-1"),
        ]
    )
    os_release = 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
    entries = [
        file("var/lib/dpkg/status", status.encode()),
        file("usr/lib/os-release", os_release.encode()),
    ]
    write_oci_dir(simple_image(tmp_path / "blobs", entries), tmp_path / "layout")
    env = {
        "DISTILL_MIRROR": url,
        "DISTILL_SECURITY_MIRROR": url,
        "DISTILL_CACHE_DIR": str(tmp_path / "cache"),
    }
    argv = ["scan", f"oci:{tmp_path / 'layout'}", "--format", "json", "--db", str(tmp_path / "x")]
    proc = run_cli(*argv, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    found = {
        (f["package"]["name"], f["id"], f["fixed_version"], f["status"]) for f in report["findings"]
    }
    expected = {
        (name, vuln_id, fixed, "fixed")
        for source, vuln_id, fixed in EXPECTED
        for name in {"foo": ("libfoo1", "foo-common"), "bar": ("bar",)}.get(source, ())
    }
    assert found == expected
    # No DB: the report says that only what newer packages fixed can be known.
    [open_issues] = [n for n in report["notes"] if n.startswith("only issues fixed in newer")]
    assert "issues still open are not" in open_issues
    [note] = [n for n in report["notes"] if n is not open_issues]
    assert note.startswith("not checked against the mirror's changelogs: huge 5.0-1 (newer: 5.0-2)")
    assert "hash mismatch" in note
