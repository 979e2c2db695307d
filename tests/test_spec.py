from __future__ import annotations

from pathlib import Path

import pytest

from distill.errors import DistillError
from distill.spec import load_spec, presets


def test_presets_chain() -> None:
    assert {"static", "base-nossl", "base", "cc", "python3", "java21", "nodejs"} <= set(presets())
    spec = load_spec("python3")
    assert spec.packages[:1] == ("base-files",)
    assert "libc6" in spec.packages and "python3" in spec.packages
    assert "openssl" in spec.exclude
    assert spec.suite == "trixie"


def test_extends_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text("extends: base\nsuite: bookworm\npackages: [zlib1g]\n")
    (tmp_path / "child.yaml").write_text(
        "extends: parent.yaml\npackages: [libzstd1=1.5.4+dfsg2-5]\nexclude: ['tzdata*']\n"
        "archs: [arm64]\n"
    )
    spec = load_spec(str(tmp_path / "child.yaml"))
    assert spec.suite == "bookworm" and spec.archs == ("arm64",)
    assert spec.packages[-2:] == ("zlib1g", "libzstd1=1.5.4+dfsg2-5")
    assert spec.pins == {"libzstd1": "1.5.4+dfsg2-5"}
    assert "libzstd1" in spec.roots
    assert spec.exclude[-1] == "tzdata*" and "openssl" in spec.exclude
    assert load_spec(str(tmp_path / "child.yaml"), suite="trixie").suite == "trixie"


def test_unknown_key_has_line_and_suggestion(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("suite: trixie\n\npakages: [libc6]\n")
    with pytest.raises(DistillError) as err:
        load_spec(str(tmp_path / "s.yaml"))
    assert f"{tmp_path / 's.yaml'}:3: pakages: unknown key" in err.value.message
    assert err.value.hint == "did you mean `packages`?"


def test_bad_yaml_has_line(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("suite: trixie\npackages: [libc6\nexclude: []\n")
    with pytest.raises(DistillError, match=r"s\.yaml:\d+: invalid YAML"):
        load_spec(str(tmp_path / "s.yaml"))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("suite: sid\n", "unknown suite 'sid'"),
        ("archs: [mips]\n", "unsupported architecture 'mips'"),
        ("packages: {a: 1}\n", "expected a list of strings"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("extends: nosuchpreset\n", "no spec file or preset named 'nosuchpreset'"),
    ],
)
def test_invalid_values(tmp_path: Path, body: str, match: str) -> None:
    (tmp_path / "s.yaml").write_text(body)
    with pytest.raises(DistillError, match=match):
        load_spec(str(tmp_path / "s.yaml"))


def test_extends_loop(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(DistillError, match="loops"):
        load_spec(str(tmp_path / "a.yaml"))


def test_cli_overrides_validated() -> None:
    with pytest.raises(DistillError, match="unknown suite"):
        load_spec("base", suite="buster")
    assert load_spec("base", archs=("arm64", "amd64")).archs == ("arm64", "amd64")
