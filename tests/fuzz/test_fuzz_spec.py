"""Fuzz the spec loader through ``load_spec`` on files: generated specs gone wrong in a few
places (values of the wrong kind, odd characters, an ``extends`` chain), YAML text edited
at random, and raw bytes. Only a DistillError may come out."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fuzzing import FUZZ, clean, mutated_bytes, mutated_json, mutated_text
from hypothesis import example, given
from hypothesis import strategies as st

from distill.build.spec import FIELDS, Spec, load_spec

# A plausible value for every key (from the documented examples where there is one).
_PLAUSIBLE: dict[str, object] = {
    key: yaml.safe_load(field.example)[key] for key, field in FIELDS.items() if field.example
}
_PLAUSIBLE.update(
    suite="bookworm",
    mirror="http://mirror.invalid/debian",
    workdir="/app",
    cmd=["--serve"],
    exclude=["*-doc"],
    include=["tzdata"],
    volumes=["/data"],
    labels={"a": "b"},
    debug=True,
    security_mirror="http://mirror.invalid/debian-security",
    extends="other.yaml",
)
_EXTENDS = [
    "other.yaml",
    "base",
    "python3:nonroot",
    "static:debug",
    "nope",
    "spec.yaml",
    "other.yaml:nonroot",
    "",
    ":debug",
]


@st.composite
def spec_documents(draw: st.DrawFn) -> object:
    keys = draw(st.lists(st.sampled_from(sorted(_PLAUSIBLE)), max_size=6, unique=True))
    doc = {key: _PLAUSIBLE[key] for key in keys}
    if "extends" in doc:
        doc["extends"] = draw(st.sampled_from(_EXTENDS))
    return draw(mutated_json(doc))


@pytest.fixture(scope="module")
def spec_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="distill-fuzz-spec-") as tmp:
        (Path(tmp) / "app.jar").write_bytes(b"PK")
        yield Path(tmp)


def _load(folder: Path, spec: bytes, other: bytes = b"packages: [libc6]\n") -> None:
    (folder / "spec.yaml").write_bytes(spec)
    (folder / "other.yaml").write_bytes(other)
    result = clean(lambda: load_spec(str(folder / "spec.yaml")))
    assert isinstance(result, Spec) or result.message


def _yaml(doc: object) -> str:
    return yaml.safe_dump(doc, allow_unicode=True)


@FUZZ
@given(spec_documents(), spec_documents())
def test_generated_specs(spec_dir: Path, spec: object, other: object) -> None:
    _load(spec_dir, _yaml(spec).encode(), _yaml(other).encode())


@FUZZ
@example(text="? [a]\n: b\n")
@given(spec_documents().flatmap(lambda doc: mutated_text(_yaml(doc))))
def test_edited_yaml_text(spec_dir: Path, text: str) -> None:
    _load(spec_dir, text.encode("utf-8", "surrogatepass"))


_YAML_SNIPPETS = [
    b"!!python/object/apply:os.system ['true']\n",
    b"&a [*a]\n",
    b"{",
    b"\xff\xfe",
    b"packages: *x\n",
    b"? [a]\n: b\n",
    b"%YAML 1.1\n---\n",
    b"\xef\xbb\xbfa: 1\n",
    b"packages: [" * 600,
    b"<<: {a: 1}\n",
    b"1: 2\n",
    b"null: 1\n",
]


@FUZZ
@example(data=b"\x80")
@example(data=b"packages: " + b"[" * 600)
@given(st.binary(max_size=300) | st.sampled_from(_YAML_SNIPPETS).flatmap(mutated_bytes))
def test_raw_bytes(spec_dir: Path, data: bytes) -> None:
    _load(spec_dir, data)
