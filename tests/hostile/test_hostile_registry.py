"""A misbehaving registry (misbehaving_registry.py): every case is a real ``distill inspect``
or ``distill build -o docker://…`` against it, with the deadline set short through
``DISTILL_TIMEOUT``, and must end in distill's own one-line error (or a correct result)
within the harness's bounds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_harness import assert_bounded, assert_clean_error, changed, run_distill, snapshot
from misbehaving_registry import Image, MisbehavingRegistry, load_image, misbehaving_registry

from distill.net.deadline import DEFAULT_TIMEOUT, MIN_RATE_ENV, TIMEOUT_ENV

TIMEOUT = 3  # seconds: DISTILL_TIMEOUT for every case
ENV = {TIMEOUT_ENV: str(TIMEOUT), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return load_image(tmp_path_factory.mktemp("blobs"))


@pytest.fixture
def registry(request: pytest.FixtureRequest, image: Image) -> Iterator[MisbehavingRegistry]:
    with misbehaving_registry(request.param, image) as reg:
        yield reg


# (mode, what the one error line or its hint must mention besides the host)
PULL_FAILURES = [
    ("trickle-manifest", ["the manifest app:1", f"after {TIMEOUT} s", TIMEOUT_ENV]),
    ("trickle-headers", ["the manifest app:1", f"after {TIMEOUT} s"]),
    ("trickle-blob", ["the blob app@sha256:", "below the minimum", MIN_RATE_ENV]),
    ("never-answer", ["the manifest app:1", f"after {TIMEOUT} s"]),
    ("stall-after-headers", ["the manifest app:1", f"after {TIMEOUT} s"]),
    ("stall-blob", ["the blob app@sha256:", f"nothing moved for {TIMEOUT} s"]),
    ("redirect-loop", ["the manifest app:1", "redirected more than 10 times"]),
    ("redirect-file", ["the blob app@sha256:", "file:///etc/passwd", "not an http(s) URL"]),
    ("token-never", ["a token from http://", f"after {TIMEOUT} s"]),
    ("token-nested", ["token server", "nested more than"]),
    ("token-huge", ["token server", "larger than"]),
    ("token-redirect-file", ["a token from", "file:///etc/shadow", "not an http(s) URL"]),
    ("manifest-nested", ["the manifest app:1", "nested more than"]),
    ("manifest-huge", ["the manifest app:1", "larger than"]),
    ("manifest-gzip-bomb", ["the manifest app:1", "larger than"]),
    ("error-nested", ["manifest unknown: app:1"]),
    ("error-huge", ["refused to pull (HTTP 400)"]),
    ("error-controls", ["refused to pull (HTTP 400): DENIED"]),
    ("500-forever", ["the blob app@sha256:", "HTTP 500", "4 attempts"]),
    ("length-short", ["app@sha256:", "broke 4 times"]),
    ("header-flood", ["the manifest app:1", "4 attempts"]),
    ("length-less", ["app:1"]),
]


@pytest.mark.parametrize(
    ("registry", "mentions"),
    PULL_FAILURES,
    indirect=["registry"],
    ids=[mode for mode, _ in PULL_FAILURES],
)
def test_a_misbehaving_registry_ends_in_a_clean_error(
    registry: MisbehavingRegistry, mentions: list[str], sandbox: Path
) -> None:
    before = snapshot(sandbox)
    outcome = run_distill(["inspect", f"docker://{registry.host}/app:1"], cwd=sandbox, env=ENV)
    line = assert_clean_error(outcome, registry.host, *mentions)
    assert not changed(before, snapshot(sandbox)), "a pull wrote files"
    assert len(line) < 600, line
    assert "\x1b" not in outcome.stderr
    # Nothing a server sends keeps distill much past the deadline it was given (the first
    # request, a retry pause or a second phase may each add one).
    assert outcome.seconds < 4 * TIMEOUT + 10, outcome.describe()


@pytest.mark.parametrize("registry", ["trickle-manifest", "trickle-blob"], indirect=True)
def test_a_registry_trickling_a_byte_a_second_fails_within_the_deadline(
    registry: MisbehavingRegistry, sandbox: Path
) -> None:
    """The acceptance case: one byte a second fails once the configured deadline passes
    (not after the 180 s it used to take), with a one-line error."""
    outcome = run_distill(["inspect", f"docker://{registry.host}/app:1"], cwd=sandbox, env=ENV)
    assert_clean_error(outcome, registry.host, TIMEOUT_ENV)
    trickled = sum(
        n for path, n in registry.sent.items() if "/manifests/" in path or "/blobs/" in path
    )
    assert trickled > 0
    # Python's start, the API check and the image's other requests take a few seconds here.
    assert TIMEOUT <= outcome.seconds < TIMEOUT + 8, outcome.describe()


@pytest.mark.parametrize(
    "registry", ["500-once", "429-retry-after", "503-odd-retry-after", "length-more"], indirect=True
)
def test_a_registry_that_recovers_or_overpromises_still_gives_the_image(
    registry: MisbehavingRegistry, sandbox: Path
) -> None:
    outcome = run_distill(
        ["inspect", "--json", f"docker://{registry.host}/app:1"], cwd=sandbox, env=ENV
    )
    assert_bounded(outcome)
    assert outcome.returncode == 0, outcome.describe()
    assert registry.image.manifest_digest in outcome.stdout
    # length-more: the whole layer came before the lie about its length was found out,
    # and its digest decides.
    assert registry.counts.get("manifest", 2) == 2
    # Retry-After: 999999999 is capped (at the deadline, here), not obeyed.
    assert outcome.seconds < 4 * TIMEOUT + 10, outcome.describe()


@pytest.mark.parametrize(
    ("registry", "mentions"),
    [
        ("upload-location-file", ["an upload to app", "file:///tmp/pwned", "not an http(s)"]),
        ("upload-never", ["an upload to app", f"after {TIMEOUT} s"]),
    ],
    indirect=["registry"],
    ids=["upload-location-file", "upload-never"],
)
def test_a_push_to_a_misbehaving_registry_fails_before_building(
    registry: MisbehavingRegistry, mentions: list[str], sandbox: Path
) -> None:
    """``build -o docker://`` checks that the registry takes uploads before it resolves or
    downloads anything: these fail there, without the Debian mirror."""
    outcome = run_distill(
        ["build", "static", "-o", f"docker://{registry.host}/app:1"], cwd=sandbox, env=ENV
    )
    assert_clean_error(outcome, registry.host, *mentions)


@pytest.mark.parametrize("verb", ["inspect", "build"])
def test_credentials_in_a_reference_are_refused_without_echoing_them(
    verb: str, sandbox: Path
) -> None:
    reference = "docker://someone:hunter2secret@127.0.0.1:5999/x:1"
    args = ["inspect", reference] if verb == "inspect" else ["build", "static", "-o", reference]
    outcome = run_distill(args, cwd=sandbox, env=ENV)
    assert_clean_error(outcome, "credentials", "--creds", "127.0.0.1:5999")
    assert "hunter2secret" not in outcome.stderr + outcome.stdout
    assert "someone" not in outcome.stderr


def test_the_default_deadline_is_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "analyze.md").read_text()
    assert f"{TIMEOUT_ENV}" in docs and f"{DEFAULT_TIMEOUT:g} s" in docs


@pytest.mark.network
@pytest.mark.parametrize("registry", ["upload-stall"], indirect=True)
def test_an_upload_that_is_never_read_fails_within_the_deadline(
    registry: MisbehavingRegistry, sandbox: Path, warm_cache: Path
) -> None:
    outcome = run_distill(
        ["build", "static", "-o", f"docker://{registry.host}/app:1"],
        cwd=sandbox,
        env={**ENV, "DISTILL_CACHE_DIR": str(warm_cache)},
    )
    assert_clean_error(outcome, registry.host, "an upload to app")


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding what ``build static`` downloads, so that the push case spends its
    time on the push (the first build is not a hostile case and has no time limit)."""
    cache = tmp_path_factory.mktemp("cache")
    work = tmp_path_factory.mktemp("warm")
    outcome = run_distill(
        ["build", "static", "-o", f"oci:{work / 'out'}"],
        cwd=work,
        env={"DISTILL_CACHE_DIR": str(cache)},
        timeout=600,
    )
    assert outcome.returncode == 0, outcome.describe()
    return cache
