from __future__ import annotations

from pathlib import Path

import pytest

from distill.debian.mirror import Mirrors, discover_mirrors, read_apt_sources
from distill.errors import DistillError


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.example/archive/debian-security/20250520T000000Z
URIs: http://security.example/debian-security/
Suites: bookworm-security
Components: main
"""


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISTILL_MIRROR", raising=False)
    monkeypatch.delenv("DISTILL_SECURITY_MIRROR", raising=False)


def test_deb822_uris_only_comments_ignored(tmp_path: Path) -> None:
    _write(tmp_path, "etc/apt/sources.list.d/debian.sources", DEB822)
    mirrors = discover_mirrors(apt_root=tmp_path)
    assert mirrors == Mirrors(
        "http://mirror.example/debian", "http://security.example/debian-security"
    )


def test_one_line_sources_list(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "etc/apt/sources.list",
        "# deb http://old.example/debian sid main\n"
        "deb-src http://src.example/debian trixie main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian trixie main\n"
        "deb http://one.example/debian-security trixie-security main\n",
    )
    mirrors = discover_mirrors(apt_root=tmp_path)
    assert mirrors.main == "http://one.example/debian"
    assert mirrors.security == "http://one.example/debian-security"


def test_disabled_and_non_deb_stanzas_skipped(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "etc/apt/sources.list.d/a.sources",
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: trixie\n\n"
        "Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: trixie\n\n"
        "Types: deb\nURIs: cdrom:/media/\nSuites: trixie\n\n"
        "Types: deb deb-src\nURIs: https://on.example/debian\nSuites: trixie\n",
    )
    assert [s.uri for s in read_apt_sources(tmp_path)] == ["https://on.example/debian"]


def test_env_and_spec_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "etc/apt/sources.list.d/debian.sources", DEB822)
    monkeypatch.setenv("DISTILL_MIRROR", "http://env.example/debian/")
    assert discover_mirrors(apt_root=tmp_path).main == "http://env.example/debian"
    assert (
        discover_mirrors("http://spec.example/d", apt_root=tmp_path).main == "http://spec.example/d"
    )


def test_no_mirror_found_hints_how_to_set_one(tmp_path: Path) -> None:
    with pytest.raises(DistillError) as err:
        discover_mirrors(apt_root=tmp_path)
    assert "no Debian mirror" in err.value.message
    assert err.value.hint is not None and "DISTILL_MIRROR" in err.value.hint


def test_security_pocket_without_security_mirror(tmp_path: Path) -> None:
    mirrors = Mirrors("http://m.example/debian", None)
    assert mirrors.for_pocket("trixie-updates") == "http://m.example/debian"
    with pytest.raises(DistillError, match="no security mirror"):
        mirrors.for_pocket("trixie-security")


def test_bad_scheme_refused(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="unsupported mirror URL"):
        discover_mirrors("ftp://x.example/debian", apt_root=tmp_path)
