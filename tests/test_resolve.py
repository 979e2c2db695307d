"""The resolver: apt's choices on hand-built universes, and apt itself as the oracle."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from distill.debian.archive import PocketIndex, keyring_path, load_indices
from distill.debian.binary import BinaryPackage
from distill.debian.mirror import discover_mirrors
from distill.debian.resolve import (
    DEFAULT_EXCLUDES,
    ExclusionReason,
    Resolution,
    Universe,
    build_universe,
    resolve_closure,
)
from distill.debian.stanzas import other_relation_names, parse_packages_index
from distill.errors import DistillError

DATE = datetime(2025, 8, 9, tzinfo=UTC)


def pkg(
    name: str,
    version: str = "1.0",
    *,
    depends: str = "",
    pre: str = "",
    provides: str = "",
    arch: str = "amd64",
    pocket: str = "trixie",
    multi_arch: str = "no",
    essential: bool = False,
    priority: str = "optional",
    conflicts: str = "",
    recommends: str = "",
) -> BinaryPackage:
    return BinaryPackage(
        name=name,
        version=version,
        architecture=arch,
        pocket=pocket,
        filename=f"pool/main/{name[0]}/{name}/{name}_{version.split(':')[-1]}_{arch}.deb",
        size=1000,
        sha256="0" * 64,
        source=name,
        source_version=version,
        multi_arch=multi_arch,
        essential=essential,
        priority=priority,
        depends_field=depends,
        pre_depends_field=pre,
        provides_field=provides,
        other_relation_names=other_relation_names(
            {"conflicts": conflicts, "recommends": recommends}
        ),
    )


def universe(*packages: BinaryPackage, pins: dict[str, str] | None = None) -> Universe:
    return build_universe([PocketIndex("trixie", DATE, packages)], "amd64", pins)


def closure(resolution: Resolution) -> dict[str, str]:
    return {p.name: p.version for p in resolution.packages}


# --- choices ------------------------------------------------------------------------------


def test_first_installable_alternative_wins() -> None:
    u = universe(
        pkg("app", depends="missing | broken | good | better"),
        pkg("broken", depends="also-missing"),
        pkg("good"),
        pkg("better"),
    )
    assert closure(resolve_closure(u, ["app"])) == {"app": "1.0", "good": "1.0"}


def test_failed_alternative_leaves_nothing_behind() -> None:
    # deep-a is installable on its face, but its dependency is not: apt moves on to deep-b.
    u = universe(
        pkg("app", depends="deep-a | deep-b"),
        pkg("deep-a", depends="shared, mid"),
        pkg("mid", depends="missing"),
        pkg("shared"),
        pkg("deep-b"),
    )
    assert sorted(closure(resolve_closure(u, ["app"]))) == ["app", "deep-b"]


def test_dependency_already_satisfied_is_skipped() -> None:
    u = universe(pkg("app", depends="b, a | b"), pkg("a"), pkg("b"))
    assert sorted(closure(resolve_closure(u, ["app"]))) == ["app", "b"]
    # In the other order the alternative is decided first, and b comes anyway.
    u = universe(pkg("app", depends="a | b, b"), pkg("a"), pkg("b"))
    assert sorted(closure(resolve_closure(u, ["app"]))) == ["a", "app", "b"]


def test_pre_depends_are_visited_before_depends() -> None:
    u = universe(pkg("app", depends="a | b", pre="b"), pkg("a"), pkg("b"))
    assert sorted(closure(resolve_closure(u, ["app"]))) == ["app", "b"]


def test_roots_are_marked_before_any_dependency() -> None:
    u = universe(pkg("app", depends="a | b"), pkg("a"), pkg("b"))
    assert sorted(closure(resolve_closure(u, ["app", "b"]))) == ["app", "b"]


def test_versioned_dependency_needs_a_versioned_provide() -> None:
    u = universe(
        pkg("app", depends="virt (>= 1.5)"),
        pkg("plain", provides="virt", priority="required"),
        pkg("versioned", provides="virt (= 2.0)"),
        pkg("old", provides="virt (= 1.0)"),
    )
    assert sorted(closure(resolve_closure(u, ["app"]))) == ["app", "versioned"]
    too_new = universe(pkg("app", depends="virt (>= 3)"), pkg("versioned", provides="virt (= 2)"))
    with pytest.raises(DistillError, match=r"app → virt \(>= 3\): provided by versioned \(= 2\)"):
        resolve_closure(too_new, ["app"])


def test_virtual_package_with_one_provider() -> None:
    u = universe(
        pkg("app", depends="mail-transport-agent"), pkg("mta", provides="mail-transport-agent")
    )
    result = resolve_closure(u, ["app"])
    assert sorted(closure(result)) == ["app", "mta"]
    assert result.why["mta"] == "mta ← app Depends"
    # Asked for by its virtual name, apt-get picks the only provider too.
    assert closure(resolve_closure(u, ["mail-transport-agent"])) == {"mta": "1.0"}


def test_provider_order_follows_apt() -> None:
    # The real package first, then Essential, then Priority, then the one apt's cache met last.
    u = universe(
        pkg("app", depends="awk, shell, virt, tool"),
        pkg("gawk", provides="awk", priority="required"),
        pkg("mawk", provides="awk", essential=True),
        pkg("dash", provides="shell", priority="required"),
        pkg("zsh", provides="shell", priority="optional"),
        pkg("first", provides="virt"),
        pkg("second", provides="virt"),
        pkg("tool"),
        pkg("tool-ng", provides="tool", priority="required"),
    )
    assert sorted(closure(resolve_closure(u, ["app"]))) == ["app", "dash", "mawk", "second", "tool"]


def test_any_qualifier_needs_multi_arch_allowed() -> None:
    u = universe(
        pkg("app", depends="python3:any, perl:native"),
        pkg("python3", multi_arch="allowed"),
        pkg("perl", multi_arch="allowed"),
        pkg("bad", depends="tool:any"),
        pkg("tool", multi_arch="foreign"),
    )
    assert sorted(closure(resolve_closure(u, ["app"]))) == ["app", "perl", "python3"]
    with pytest.raises(DistillError, match="Multi-Arch: foreign, not allowed"):
        resolve_closure(u, ["bad"])


def test_single_architecture_with_arch_all() -> None:
    u = universe(
        pkg("app", depends="data, lib:amd64"),
        pkg("data", arch="all"),
        pkg("lib"),
        pkg("lib", "9.0", arch="arm64"),
        pkg("other", depends="lib:arm64"),
    )
    assert closure(resolve_closure(u, ["app"])) == {"app": "1.0", "data": "1.0", "lib": "1.0"}
    with pytest.raises(DistillError, match="only amd64 is resolved"):
        resolve_closure(u, ["other"])


def test_cycles_and_essential_packages() -> None:
    u = universe(
        pkg("a", depends="b"),
        pkg("b", depends="a"),
        pkg("base-files", essential=True, priority="required"),
    )
    # Essential packages only come in when something depends on them.
    assert sorted(closure(resolve_closure(u, ["a"]))) == ["a", "b"]


def test_resolution_is_deterministic() -> None:
    u = universe(
        pkg("app", depends="x | y, virt, z"),
        pkg("x", depends="virt"),
        pkg("p1", provides="virt"),
        pkg("p2", provides="virt"),
        pkg("z", depends="dpkg"),
        pkg("dpkg", depends="tar"),
        pkg("tar"),
    )
    first, second = resolve_closure(u, ["app"]), resolve_closure(u, ["app"])
    assert first == second
    assert [p.name for p in first.packages] == ["app", "p2", "x", "z"]


# --- the universe -------------------------------------------------------------------------


def test_pockets_merge_to_the_highest_version() -> None:
    indices = [
        PocketIndex(
            "trixie", DATE, (pkg("libx", "1.0-1"), pkg("liby", "2.0"), pkg("libz", "1:0.9"))
        ),
        PocketIndex("trixie-updates", DATE, (pkg("libz", "5.0", pocket="trixie-updates"),)),
        PocketIndex(
            "trixie-security",
            DATE,
            (
                pkg("libx", "1.0-1+deb13u1", pocket="trixie-security"),
                pkg("liby", "2.0", pocket="trixie-security"),
            ),
        ),
    ]
    u = build_universe(indices, "amd64")
    assert (u.suite, u.arch) == ("trixie", "amd64")
    chosen = {name: (p.version, p.pocket) for name, p in u.packages.items()}
    assert chosen == {
        "libx": ("1.0-1+deb13u1", "trixie-security"),
        "liby": ("2.0", "trixie"),  # the same version twice: the suite's own copy
        "libz": ("1:0.9", "trixie"),  # an epoch outweighs any upstream version
    }
    assert [p.version for p in u.available["libx"]] == ["1.0-1+deb13u1", "1.0-1"]


def test_pins_choose_an_exact_version() -> None:
    indices = [
        PocketIndex("trixie", DATE, (pkg("libx", "1.0-1"), pkg("app", depends="libx (>= 1.0)"))),
        PocketIndex("trixie-security", DATE, (pkg("libx", "1.0-2", pocket="trixie-security"),)),
    ]
    u = build_universe(indices, "amd64", {"libx": "1.0-1"})
    assert closure(resolve_closure(u, ["app"])) == {"app": "1.0", "libx": "1.0-1"}
    with pytest.raises(DistillError) as error:
        build_universe(indices, "amd64", {"libx": "3.0"})
    assert "libx=3.0" in error.value.message
    assert error.value.hint == "available: 1.0-2 (trixie-security), 1.0-1 (trixie)"
    with pytest.raises(DistillError, match="did you mean: libx"):
        build_universe(indices, "amd64", {"libxx": "1.0"})


# --- errors -------------------------------------------------------------------------------


def test_unknown_root_suggests_close_names() -> None:
    u = universe(pkg("libssl3t64"), pkg("libssl-dev"), pkg("zlib1g"))
    with pytest.raises(DistillError) as error:
        resolve_closure(u, ["libsssl3t64"])
    assert error.value.message == "unknown package 'libsssl3t64': not in trixie/main amd64"
    assert error.value.hint is not None and "libssl3t64" in error.value.hint


def test_virtual_root_with_several_providers_is_refused() -> None:
    u = universe(pkg("a", provides="virt"), pkg("b", provides="virt"))
    with pytest.raises(
        DistillError, match="virtual package in trixie/main amd64, provided by a, b"
    ):
        resolve_closure(u, ["virt"])


def test_unresolvable_dependency_names_the_chain() -> None:
    u = universe(
        pkg("nodejs", depends="libnode115"),
        pkg("libnode115", depends="libc6, libuv1t64 (>= 1.44)"),
        pkg("libc6"),
    )
    with pytest.raises(DistillError) as error:
        resolve_closure(u, ["nodejs"])
    assert (
        error.value.message == "nodejs → libnode115 → libuv1t64 (>= 1.44): not in trixie/main amd64"
    )
    # The name exists, the version does not: say what there is.
    old = universe(
        pkg("nodejs", depends="libnode115"),
        pkg("libnode115", depends="libuv1t64 (>= 1.44)"),
        pkg("libuv1t64", "1.40-1"),
    )
    with pytest.raises(DistillError, match=r"libuv1t64 \(>= 1.44\): trixie/main amd64 has 1.40-1"):
        resolve_closure(old, ["nodejs"])


# --- the distroless policy ----------------------------------------------------------------


def python_like() -> Universe:
    return universe(
        pkg("python3", pre="python3-minimal", depends="libpython3-stdlib, tzdata"),
        pkg("python3-minimal", depends="dpkg (>= 1.13.20), libc6"),
        pkg("dpkg", "1.22.21", pre="libc6, libmd0", depends="tar (>= 1.28-1)", essential=True),
        pkg("tar", "1.35+dfsg-3.1", pre="libc6, libacl1", essential=True),
        pkg("libacl1", depends="libc6"),
        pkg("libmd0", depends="libc6"),
        pkg("libpython3-stdlib", depends="libmd0, libc6"),
        pkg("tzdata", depends="debconf (>= 0.5) | debconf-2.0", arch="all"),
        pkg("debconf", pre="perl-base", provides="debconf-2.0", arch="all"),
        pkg("perl-base", essential=True),
        pkg("libc6"),
    )


def test_policy_cuts_install_time_packages_and_what_only_they_need() -> None:
    u = python_like()
    full = resolve_closure(u, ["python3"], policy=False)
    assert full.excluded == ()
    assert {"dpkg", "tar", "libacl1", "debconf", "perl-base"} <= set(closure(full))
    result = resolve_closure(u, ["python3"])
    assert result.names() == [
        "libc6", "libmd0", "libpython3-stdlib", "python3", "python3-minimal", "tzdata",
    ]  # fmt: skip
    assert [str(e) for e in result.excluded] == [
        "tzdata Depends debconf → excluded: install-time only",
        "python3-minimal Depends dpkg → excluded: install-time only",
    ]
    dpkg = result.excluded[1]
    assert (dpkg.name, dpkg.reason) == ("dpkg", ExclusionReason.INSTALL_TIME)
    assert dpkg.edges[0].relation == "dpkg (>= 1.13.20)"
    # libmd0 came in through dpkg first, but libpython3-stdlib needs it too.
    assert result.why["libmd0"] == "libmd0 ← libpython3-stdlib Depends"
    assert result.why["python3"] == "python3 ← requested"
    assert all(e.child in result.names() for e in result.edges)


def test_spec_excludes_add_and_includes_win() -> None:
    u = python_like()
    result = resolve_closure(u, ["python3"], exclude=["tz*"], include=["dpkg"])
    names = result.names()
    assert "tzdata" not in names and "debconf" not in names
    assert {"dpkg", "libmd0"} <= set(names)
    # dpkg came back, but tar is still install-time only, and so is what only tar needs.
    assert "tar" not in names and "libacl1" not in names
    reasons = {e.name: e.reason for e in result.excluded}
    assert reasons == {"tzdata": ExclusionReason.SPEC, "tar": ExclusionReason.INSTALL_TIME}
    # A requested package is never excluded, whatever the patterns say.
    assert "dpkg" in resolve_closure(u, ["dpkg"]).names()


def test_every_wanting_edge_is_reported() -> None:
    u = universe(
        pkg("app", depends="ca-certificates, tzdata"),
        pkg("ca-certificates", depends="debconf"),
        pkg("tzdata", depends="debconf"),
        pkg("debconf"),
    )
    (exclusion,) = resolve_closure(u, ["app"]).excluded
    assert exclusion.wanted_by == "ca-certificates Depends debconf, tzdata Depends debconf"


def test_default_excludes_cover_the_install_time_tools() -> None:
    install_time = (
        "dpkg debconf cdebconf tar perl-base util-linux login passwd adduser libpam0g "
        "libpam-modules init-system-helpers sensible-utils readline-common install-info "
        "ca-certificates-java"
    )
    for name in install_time.split():
        u = universe(pkg("app", depends=name), pkg(name))
        assert resolve_closure(u, ["app"]).names() == ["app"], name
    assert len(set(DEFAULT_EXCLUDES)) == len(DEFAULT_EXCLUDES)


def test_what_an_excluded_package_needs_cannot_break_the_resolution() -> None:
    u = universe(pkg("app", depends="tool"), pkg("tool", depends="gone (>= 2)"))
    with pytest.raises(DistillError, match=r"app → tool → gone \(>= 2\): not in"):
        resolve_closure(u, ["app"])
    result = resolve_closure(u, ["app"], exclude=["tool"])
    assert result.names() == ["app"]
    assert [str(e) for e in result.excluded] == ["app Depends tool → excluded: excluded by spec"]


# --- apt as the oracle --------------------------------------------------------------------

_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) ", re.MULTILINE)
needs_apt = pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")


class AptRoot:
    """A private apt configuration with an empty dpkg status: apt's resolver on its own.

    APT_CONFIG is read before any other configuration and moves every directory apt looks
    at into the root, so the host's /etc/apt (sources, preferences, apt.conf.d) has no say.
    """

    def __init__(self, root: Path, sources: Sequence[str]) -> None:
        self.root = root
        for sub in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
                    "etc/apt/trusted.gpg.d", "var/lib/dpkg", "var/lib/apt/lists/partial",
                    "var/cache/apt/archives/partial"):  # fmt: skip
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "var/lib/dpkg/status").write_text("")
        (root / "etc/apt/sources.list").write_text("".join(f"{s}\n" for s in sources))
        etc = root / "etc/apt"
        self.config = etc / "apt.conf"
        self.config.write_text(
            f'Dir "{root}/";\n'
            f'Dir::State::status "{root}/var/lib/dpkg/status";\n'
            f'Dir::Etc "{etc}/";\n'
            f'Dir::Etc::Parts "{etc}/apt.conf.d";\n'
            f'Dir::Etc::SourceParts "{etc}/sources.list.d";\n'
            f'Dir::Etc::Preferences "{etc}/preferences";\n'
            f'Dir::Etc::PreferencesParts "{etc}/preferences.d";\n'
            f'Dir::Etc::TrustedParts "{etc}/trusted.gpg.d";\n'
            'APT::Architecture "amd64";\nAPT::Architectures { "amd64"; };\n'
            'Debug::NoLocking "true";\nAcquire::Languages "none";\n'
            'APT::Sandbox::User "root";\n'
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        options = [
            f"Dir={self.root}/", f"Dir::State::status={self.root}/var/lib/dpkg/status",
            "APT::Architecture=amd64", "Debug::NoLocking=1",
            f"Dir::Etc::SourceParts={self.root}/etc/apt/sources.list.d",
        ]  # fmt: skip
        command = ["apt-get", *(a for o in options for a in ("-o", o)), *args]
        env = {**os.environ, "APT_CONFIG": str(self.config), "LC_ALL": "C"}
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    def update(self) -> None:
        proc = self.run("update")
        assert proc.returncode == 0 and "W: " not in proc.stderr, proc.stdout + proc.stderr

    def install(self, roots: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return self.run("install", "--simulate", "--no-install-recommends",
                        "-o", "APT::Install-Suggests=0", *roots)  # fmt: skip

    def closure(self, roots: Sequence[str]) -> dict[str, str]:
        """What ``apt-get install`` would unpack: name → version."""
        proc = self.install(roots)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return {name.split(":")[0]: version for name, version in _INST.findall(proc.stdout)}

    def release_dates(self) -> dict[str, datetime]:
        dates = {}
        for path in (self.root / "var/lib/apt/lists").glob("*_InRelease"):
            pocket = re.search(r"_dists_(.+)_InRelease$", path.name)
            date = re.search(r"^Date: (.+)$", path.read_text(errors="replace"), re.MULTILINE)
            assert pocket and date, path
            dates[pocket.group(1)] = parsedate_to_datetime(date.group(1))
        return dates


def reachable(full: Resolution, cut: set[str]) -> set[str]:
    """What the roots reach in an unpruned resolution's graph without passing through ``cut``."""
    children: dict[str, list[str]] = {}
    for edge in full.edges:
        children.setdefault(edge.parent, []).append(edge.child)
    seen = set(full.roots)
    queue = deque(full.roots)
    while queue:
        for child in children.get(queue.popleft(), ()):
            if child not in cut and child not in seen:
                seen.add(child)
                queue.append(child)
    return seen


def _stanza(p: BinaryPackage) -> str:
    def field(groups: Sequence[Sequence[object]]) -> str:
        return ", ".join(" | ".join(map(str, group)) for group in groups)

    fields = {
        "Package": p.name, "Version": p.version, "Architecture": p.architecture,
        "Multi-Arch": p.multi_arch, "Essential": "yes" if p.essential else "",
        "Priority": p.priority, "Pre-Depends": field(p.pre_depends), "Depends": field(p.depends),
        "Provides": ", ".join(map(str, p.provides)), "Filename": p.filename,
        "Size": str(p.size), "SHA256": p.sha256, "Description": "a test package",
    }  # fmt: skip
    return "".join(f"{key}: {value}\n" for key, value in fields.items() if value) + "\n"


# Every corner of apt's choice in one small archive: alternatives, failed alternatives,
# satisfied-by-marked, Pre-Depends order, versioned and tied Provides, :any, Architecture: all.
LOCAL = (
    pkg("libc", priority="required"),
    pkg("alt-app", depends="missing | broken | good | better"),
    pkg("broken", depends="also-missing"),
    pkg("good"),
    pkg("better"),
    pkg("deep-app", depends="deep-a | deep-b"),
    pkg("deep-a", depends="shared, mid"),
    pkg("mid", depends="missing"),
    pkg("shared"),
    pkg("deep-b", depends="libc"),
    pkg("skip-app", depends="b1, a1 | b1"),
    pkg("a1"),
    pkg("b1"),
    pkg("pre-app", depends="a2 | b2", pre="b2"),
    pkg("a2"),
    pkg("b2"),
    pkg("vprov-app", depends="virt (>= 1.5)"),
    pkg("plain", provides="virt", priority="required"),
    pkg("versioned", provides="virt (= 2.0)"),
    pkg("old", provides="virt (= 1.0)"),
    pkg("order-app", depends="awk, shell, virt2, tool"),
    pkg("gawk", provides="awk", priority="required"),
    pkg("mawk", provides="awk", essential=True),
    pkg("dash", provides="shell", priority="required"),
    pkg("zsh", provides="shell"),
    pkg("first", provides="virt2"),
    pkg("second", provides="virt2"),
    pkg("tool"),
    pkg("tool-ng", provides="tool", priority="required"),
    pkg("any-app", depends="python:any, perl:native"),
    pkg("python", multi_arch="allowed"),
    pkg("perl", multi_arch="allowed"),
    pkg("bad-any", depends="tool2:any"),
    pkg("tool2", multi_arch="foreign"),
    pkg("pa", multi_arch="allowed", provides="va"),
    pkg("pf", multi_arch="foreign", provides="vf"),
    pkg("pn", provides="vn"),
    pkg("want-va", depends="va:any"),
    pkg("want-vf", depends="vf:any"),
    pkg("want-vn", depends="vn:any"),
    pkg("want-arch", depends="vn:amd64, pf:amd64"),
    pkg("cyc-a", depends="cyc-b, libc"),
    pkg("cyc-b", depends="cyc-a"),
    pkg("data", arch="all", depends="libc (>= 0.5)"),
    pkg("all-app", depends="data, libc:amd64, libc (>= 2.0) | good"),
    pkg("ess-unused", essential=True, priority="required"),
    pkg("root-alt", depends="alt-b | alt-c"),
    pkg("alt-b"),
    pkg("alt-c"),
)
LOCAL_SETS = ("alt-app", "deep-app", "skip-app", "pre-app", "vprov-app", "order-app", "any-app",
              "cyc-a", "all-app", "root-alt alt-c", "alt-c root-alt", "want-va",
              "want-arch")  # fmt: skip
BROKEN_SETS = ("bad-any", "want-vf", "want-vn")


@needs_apt
def test_apt_agrees_on_a_local_archive(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Packages").write_text("".join(map(_stanza, LOCAL)))
    apt = AptRoot(tmp_path / "apt", [f"deb [trusted=yes] file:{repo} ./"])
    apt.update()
    u = universe(*LOCAL)
    for roots in LOCAL_SETS:
        names = roots.split()
        assert closure(resolve_closure(u, names, policy=False)) == apt.closure(names), roots
    # Where apt finds no solution, distill refuses too.
    for root in BROKEN_SETS:
        assert apt.install([root]).returncode != 0
        with pytest.raises(DistillError, match=f"^{root} → .*:any"):
            resolve_closure(u, [root])


def _tie_index() -> str:
    """Pairs of providers that tie on all but apt's cache order, as Packages text.

    Each pair's second provider comes later in the file, but an earlier stanza may name it
    first, in one of its relation fields: apt's cache then creates it first, and prefers the
    other provider (the one it created later).
    """
    early: dict[str, str] = {}  # field → its value in the early stanza
    pairs: list[str] = []
    cases = [
        (field.lower(), field, "{}") for field in ("Pre-Depends", "Depends", "Conflicts",
                                                   "Breaks", "Recommends", "Suggests",
                                                   "Replaces", "Enhances", "Provides")
    ] + [
        ("any", "Suggests", "{}:any"),  # a name:any pseudo package, not the real one
        ("native", "Suggests", "{}:native"),
        ("amd64", "Recommends", "{}:amd64"),
        ("i386", "Recommends", "{}:i386"),  # a foreign package, not the native one
        ("alt", "Depends", "tie-alt-x | {}"),  # every alternative counts, not only the first
    ]  # fmt: skip
    for tag, field, written in cases:
        pairs.append(tag)
        name = written.format(f"tie-{tag}-b")
        early[field] = f"{early[field]}, {name}" if field in early else name
    # apt reads the fields in its own order: Conflicts before Recommends, though the stanza
    # (written in reverse) lists Recommends first.
    early["Recommends"] += ", order-a"
    early["Conflicts"] += ", order-b"
    pairs.append("order")

    def stanza(name: str, **fields: str) -> str:
        body = {
            "Package": name, "Version": "1.0", "Architecture": "amd64", "Priority": "optional",
            **{key.replace("_", "-"): value for key, value in fields.items()},
            "Filename": f"pool/{name}.deb", "Size": "1000", "SHA256": "0" * 64,
            "Description": "a test package",
        }  # fmt: skip
        return "".join(f"{key}: {value}\n" for key, value in body.items()) + "\n"

    text = stanza("early", **{key.replace("-", "_"): early[key] for key in reversed(early)})
    for tag in pairs:
        virtual = f"virt-{tag}"
        text += stanza(f"want-{tag}", Depends=virtual)
        for side in "ab":
            name = f"order-{side}" if tag == "order" else f"tie-{tag}-{side}"
            text += stanza(name, Provides=virtual)
    return text


def test_provider_tie_follows_the_cache_order_of_every_field() -> None:
    index = PocketIndex("trixie", DATE, tuple(parse_packages_index(_tie_index(), "trixie")))
    u = build_universe([index], "amd64")
    chosen = {
        tag: [n for n in closure(resolve_closure(u, [f"want-{tag}"])) if n != f"want-{tag}"]
        for tag in ("conflicts", "enhances", "provides", "any", "native", "i386", "alt", "order")
    }
    assert chosen == {
        "conflicts": ["tie-conflicts-a"],
        "enhances": ["tie-enhances-a"],
        "provides": ["tie-provides-a"],
        "any": ["tie-any-b"],
        "native": ["tie-native-a"],
        "i386": ["tie-i386-b"],
        "alt": ["tie-alt-a"],
        "order": ["order-a"],
    }


@needs_apt
def test_apt_agrees_on_provider_ties(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    text = _tie_index()
    (repo / "Packages").write_text(text)
    apt = AptRoot(tmp_path / "apt", [f"deb [trusted=yes] file:{repo} ./"])
    apt.update()
    u = build_universe([PocketIndex("trixie", DATE, tuple(parse_packages_index(text, "x")))],
                       "amd64")  # fmt: skip
    roots = re.findall(r"^Package: (want-\S+)$", text, re.MULTILINE)
    assert len(roots) == 15
    for root in roots:
        assert closure(resolve_closure(u, [root], policy=False)) == apt.closure([root]), root


# The distroless presets' roots, checked against apt's closure of the real archive.
ORACLE_SETS = (
    ("trixie", "libc6"),
    ("trixie", "libssl3t64 zlib1g libzstd1"),
    ("trixie", "libstdc++6 libgomp1"),
    ("trixie", "python3"),
    ("trixie", "openjdk-21-jre-headless"),
    ("trixie", "nodejs"),
    ("trixie", "ca-certificates"),
    ("bookworm", "python3"),
    # Providers that tie until apt's cache order, set by fields distill does not follow:
    # exim4-daemon-light wins over -heavy (chkrootkit's Enhances names heavy first), and
    # libcurl4-openssl-dev over libcurl4-gnutls-dev (cimg-dev's Recommends names it first).
    ("trixie", "sa-exim"),
    ("trixie", "libostree-dev"),
    ("trixie", "libfalcosecurity0-dev"),
)


@pytest.fixture(scope="session")
def archive_oracle(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], tuple[AptRoot, Universe]]]:
    """Per suite: apt updated from the machine's mirror, and distill's universe of the same."""
    mirrors = discover_mirrors()
    made: dict[str, tuple[AptRoot, Universe]] = {}

    def oracle(suite: str) -> tuple[AptRoot, Universe]:
        if suite in made:
            return made[suite]
        if shutil.which("apt-get") is None:
            pytest.skip("needs apt-get")
        assert mirrors.security is not None, "the oracle needs a security mirror"
        opts = f"[signed-by={keyring_path()} arch=amd64]"
        apt = AptRoot(
            tmp_path_factory.mktemp(f"apt-{suite}"),
            [
                f"deb {opts} {mirrors.main} {suite} main",
                f"deb {opts} {mirrors.main} {suite}-updates main",
                f"deb {opts} {mirrors.security} {suite}-security main",
            ],
        )
        # Both sides must read the same snapshot: a mirror push in between is retried once.
        for _ in range(2):
            apt.update()
            indices = load_indices(suite, "amd64", mirrors)
            if apt.release_dates() == {index.pocket: index.date for index in indices}:
                break
        else:
            pytest.fail(f"apt and distill kept seeing different {suite} indices")
        made[suite] = apt, build_universe(indices, "amd64")
        return made[suite]

    yield oracle


@pytest.mark.network
@pytest.mark.parametrize(("suite", "roots"), ORACLE_SETS)
def test_apt_agrees_on_the_archive(
    archive_oracle: Callable[[str], tuple[AptRoot, Universe]], suite: str, roots: str
) -> None:
    apt, u = archive_oracle(suite)
    names = roots.split()
    expected = apt.closure(names)
    full = resolve_closure(u, names, policy=False)
    assert closure(full) == expected  # names and versions
    distroless = resolve_closure(u, names)
    cut = {exclusion.name for exclusion in distroless.excluded}
    assert cut <= set(expected)
    kept = reachable(full, cut)
    assert closure(distroless) == {name: expected[name] for name in kept}
    if suite == "bookworm":
        assert "libssl3" in expected and "libssl3t64" not in expected
