"""The registry client: references, auth, and push/pull against real registries.

Registries are Debian's docker-registry (distribution 2.8) on 127.0.0.1, started by the
fixtures in registry_fixtures.py; skopeo is the independent witness. A few tests use a
loopback http.server where distribution cannot misbehave on demand (dropped connections).
"""

# ruff: noqa: F811  (pytest fixtures are imported, then named as test parameters)

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from distill.context import Access, Credentials
from distill.errors import DistillError
from distill.image.compose import compose_image, compose_index
from distill.image.config import ImageConfigSpec
from distill.image.digest import sha256_digest
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, write_layer
from distill.image.mediatypes import MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST
from distill.image.model import Image as BuiltImage
from distill.image.platform import Platform
from distill.net.deadline import Limits, check_location
from distill.net.http import RetryPolicy
from distill.registry.auth import (
    AUTH_ENV,
    Challenge,
    auth_file_candidates,
    credentials_from_files,
    fetch_token,
    find_credentials,
    parse_challenges,
    pick_challenge,
)
from distill.registry.client import (
    MEDIA_TYPE_DOCKER_MANIFEST,
    RegistryClient,
)
from distill.registry.push import push_image
from distill.registry.reference import (
    DEFAULT_REGISTRY_ENV,
    ImageReference,
    is_loopback,
    parse_reference,
)
from distill.transports import parse_reference as parse_transport_reference
from registry_fixtures import (  # noqa: F401  (the fixtures are used by name)
    IDENTITY_TOKEN,
    READER_PASSWORD,
    READER_USER,
    TEST_PASSWORD,
    TEST_USER,
    Registry,
    TokenServer,
    auth_registry,
    free_port,
    install_credential_helper,
    no_ambient_credentials,
    registry,
    running_token_server,
    tls_registry,
    token_registry,
)

SDE = 1_700_000_000
HEX = "a" * 64
QUICK_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_image(blob_dir: Path, text: bytes, platform: str = "linux/amd64") -> BuiltImage:
    entries = [
        FsEntry("etc/greeting", EntryKind.FILE, 0o644, content=text),
        FsEntry("tmp", EntryKind.DIR, 0o1777),
    ]
    layer = write_layer(entries, blob_dir, compression=Compression.GZIP, source_date_epoch=SDE)
    spec = ImageConfigSpec(entrypoint=("/bin/true",), title="registry test")
    return compose_image(spec, Platform.parse(platform), [layer], source_date_epoch=SDE)


def run(*args: str | Path, timeout: float = 120) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


def skopeo_inspect(reg: Registry, name: str, *extra: str) -> str:
    creds = ["--creds", reg.creds] if reg.username else []
    return run(
        "skopeo", "inspect", "--tls-verify=false", *creds, *extra, f"docker://{reg.host}/{name}"
    )


def creds(reg: Registry) -> Credentials:
    assert reg.username is not None and reg.password is not None
    return Credentials(reg.username, reg.password)


def write_auths(path: Path, auths: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = {k: {"auth": base64.b64encode(v.encode()).decode()} for k, v in auths.items()}
    path.write_text(json.dumps({"auths": entries}))
    return path


# --- references ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docker://127.0.0.1:5000/x:1", ImageReference("127.0.0.1:5000", "x", "1")),
        ("127.0.0.1:5000/x:1", ImageReference("127.0.0.1:5000", "x", "1")),
        ("localhost/team/app", ImageReference("localhost", "team/app", "latest")),
        (
            "Registry.Example:443/a/b/c:v1.2-rc_3",
            ImageReference("registry.example:443", "a/b/c", "v1.2-rc_3"),
        ),
        (
            f"docker://reg.example/app@sha256:{HEX}",
            ImageReference("reg.example", "app", None, f"sha256:{HEX}"),
        ),
        (
            f"reg.example/app:1@sha256:{HEX}",
            ImageReference("reg.example", "app", "1", f"sha256:{HEX}"),
        ),
        ("[::1]:5000/app:2", ImageReference("[::1]:5000", "app", "2")),
        ("reg.example/a__b/c-d.e---f", ImageReference("reg.example", "a__b/c-d.e---f", "latest")),
    ],
)
def test_parse_reference(text: str, expected: ImageReference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("docker://", "empty"),
        ("reg.example/App:1", "repository name"),
        ("reg.example/app:", "tag"),
        ("reg.example/app:-x", "tag"),
        ("reg.example/app:" + "t" * 129, "tag"),
        ("reg.example/app@sha256:abc", "not a digest"),
        (f"reg.example/app@sha512:{HEX}{HEX}", "unsupported digest"),
        ("reg.example:99999/app", "registry host"),
        ("reg.example/a//b", "repository name"),
        ("reg.example/" + "a" * 260, "longer than 255"),
        ("docker://user:pa55@reg.example/app:1", "carries credentials"),
        ("user@reg.example:5000/team/app@sha256:" + HEX, "carries credentials"),
    ],
)
def test_parse_reference_rejects(text: str, complaint: str) -> None:
    with pytest.raises(DistillError) as err:
        parse_reference(text)
    assert complaint in err.value.message
    assert err.value.hint
    assert "pa55" not in str(err.value)
    if "credentials" in complaint:
        assert "--creds" in (err.value.hint or "")
        assert "reg.example" in err.value.message


def test_a_digest_reference_without_a_host_is_not_mistaken_for_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISTILL_DEFAULT_REGISTRY", "reg.example")
    assert parse_reference(f"busybox@sha256:{HEX}").digest == f"sha256:{HEX}"


@pytest.mark.parametrize(
    ("current", "location", "verify", "result"),
    [
        ("https://r.example/v2/a", "/storage/x", True, "https://r.example/storage/x"),
        ("https://r.example/v2/a", "https://cdn.example/x", True, "https://cdn.example/x"),
        ("http://r.example/v2/a", "https://cdn.example/x", True, "https://cdn.example/x"),
        ("https://r.example/v2/a", "http://cdn.example/x", False, "http://cdn.example/x"),
        ("https://r.example/v2/a", "http://cdn.example/x", True, "from https to plain http"),
        ("http://r.example/v2/a", "file:///etc/passwd", False, "not an http(s) URL"),
        ("http://r.example/v2/a", "gopher://r.example/x", False, "not an http(s) URL"),
    ],
)
def test_where_a_location_may_lead(current: str, location: str, verify: bool, result: str) -> None:
    if "://" in result:
        assert check_location(current, location, verify=verify, what="w") == result
    else:
        with pytest.raises(DistillError, match=re.escape(result)):
            check_location(current, location, verify=verify, what="w")


def test_a_deadline_gives_up_on_a_call_that_does_not_return() -> None:
    release = threading.Event()
    discarded: list[str] = []
    started = time.monotonic()
    with pytest.raises(DistillError, match=r"gave up on the test call after 0\.3 s"):
        Limits(timeout=0.3).request("the test call").call(
            lambda: "late" if release.wait(5) else "never", discarded.append
        )
    assert time.monotonic() - started < 3
    release.set()
    for _ in range(100):
        if discarded:
            break
        time.sleep(0.02)
    assert discarded == ["late"]  # what the abandoned call returned is handed back to close
    assert Limits(timeout=5).request("quick").call(lambda: 42, discarded.append) == 42


def test_a_transfer_that_keeps_moving_may_outlast_its_window() -> None:
    deadline = Limits(timeout=0.2, min_rate=10).transfer("the blob")
    for _ in range(4):
        deadline.moved(100)
        time.sleep(0.1)
        deadline.check()  # 100 bytes every 0.1 s is well above 10 bytes/s
    time.sleep(0.45)
    with pytest.raises(DistillError, match=r"nothing moved for 0\.2 s"):
        deadline.check()


def test_reference_without_a_host_needs_the_default_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DEFAULT_REGISTRY_ENV, raising=False)
    with pytest.raises(DistillError) as err:
        parse_reference("busybox:1")
    assert DEFAULT_REGISTRY_ENV in (err.value.hint or "")
    monkeypatch.setenv(DEFAULT_REGISTRY_ENV, "Mirror.Example:5000")
    assert parse_reference("busybox:1") == ImageReference(
        "mirror.example:5000", "library/busybox", "1"
    )
    assert parse_reference("team/app") == ImageReference(
        "mirror.example:5000", "team/app", "latest"
    )
    monkeypatch.setenv(DEFAULT_REGISTRY_ENV, "not a host")
    with pytest.raises(DistillError, match="not a registry host"):
        parse_reference("busybox")


def test_reference_prints_back_to_what_was_parsed() -> None:
    for text in (
        "127.0.0.1:5000/a/b:1",
        f"reg.example/app:1@sha256:{HEX}",
        f"reg.example/app@sha256:{HEX}",
    ):
        assert str(parse_reference(text)) == text
    assert parse_reference(f"reg.example/app:1@sha256:{HEX}").reference == f"sha256:{HEX}"
    assert parse_reference("reg.example/app").reference == "latest"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("127.8.9.1", True),
        ("localhost:5000", True),
        ("LOCALHOST", True),
        ("[::1]:5000", True),
        ("10.0.0.1:5000", False),
        ("reg.example", False),
        ("localhost.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# --- challenges and credentials --------------------------------------------------------------


def test_parse_challenges() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="reg.example",'
        'scope="repository:team/app:pull,push repository:other:pull",error="insufficient_scope"'
    )
    [bearer] = parse_challenges(header)
    assert bearer.scheme == "bearer"
    assert bearer.params["realm"] == "https://auth.example/token"
    assert bearer.params["service"] == "reg.example"
    assert bearer.scopes == ("repository:team/app:pull,push", "repository:other:pull")
    assert bearer.params["error"] == "insufficient_scope"
    many = parse_challenges('Basic realm="a, \\"quoted\\" b", Bearer Realm=tok.en , NTLM')
    assert [c.scheme for c in many] == ["basic", "bearer", "ntlm"]
    assert many[0].params == {"realm": 'a, "quoted" b'}
    assert many[1].params == {"realm": "tok.en"}
    assert parse_challenges("") == []


def test_pick_challenge_prefers_bearer() -> None:
    header = 'Basic realm="r", Bearer realm="https://t.example/token"'
    assert pick_challenge(header) == Challenge("bearer", {"realm": "https://t.example/token"})
    assert pick_challenge('Basic realm="basic-realm"') == Challenge(
        "basic", {"realm": "basic-realm"}
    )
    assert pick_challenge("Negotiate abc") is None
    assert pick_challenge(None) is None


def test_credentials_parse_keeps_colons_in_the_password() -> None:
    parsed = Credentials.parse("user:pa:ss")
    assert (parsed.username, parsed.password) == ("user", "pa:ss")
    assert "pa:ss" not in repr(parsed)
    with pytest.raises(DistillError, match="USER:PASS"):
        Credentials.parse("no-colon")


def test_credentials_come_in_the_documented_order(
    no_ambient_credentials: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = no_ambient_credentials
    host = "reg.example:5000"
    assert find_credentials(host, "app") is None
    docker = write_auths(home / ".docker/config.json", {f"https://{host}/v1/": "docker:d"})
    assert find_credentials(host, "app") == Credentials("docker", "d", f"from {docker}")
    config = write_auths(home / ".config/containers/auth.json", {host: "config:c"})
    assert find_credentials(host, "app") == Credentials("config", "c", f"from {config}")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    runtime = write_auths(tmp_path / "run/containers/auth.json", {host: "runtime:r"})
    assert find_credentials(host, "app") == Credentials("runtime", "r", f"from {runtime}")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "explicit.json"))
    named = write_auths(tmp_path / "explicit.json", {host: "named:n"})
    assert find_credentials(host, "app") == Credentials("named", "n", f"from {named}")
    monkeypatch.setenv(AUTH_ENV, "env:e")
    assert find_credentials(host, "app") == Credentials("env", "e", f"from {AUTH_ENV}")
    given = Credentials("given", "g")
    assert find_credentials(host, "app", given) is given
    assert auth_file_candidates() == [
        named,
        runtime,
        config,
        docker,
    ]


def test_auth_file_keys_most_specific_first(tmp_path: Path) -> None:
    file = write_auths(
        tmp_path / "auth.json",
        {"reg.example": "host:h", "reg.example/team": "team:t", "reg.example/team/app": "app:a"},
    )
    assert credentials_from_files("reg.example", "team/app", [file]) == Credentials(
        "app", "a", f"from {file}"
    )
    assert credentials_from_files("reg.example", "team/other", [file]) == Credentials(
        "team", "t", f"from {file}"
    )
    assert credentials_from_files("REG.example", "solo", [file]) == Credentials(
        "host", "h", f"from {file}"
    )
    assert credentials_from_files("other.example", "team/app", [file]) is None


def test_damaged_auth_files_are_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DistillError, match=str(broken)):
        credentials_from_files("reg.example", None, [broken])
    bad_entry = tmp_path / "bad.json"
    bad_entry.write_text(json.dumps({"auths": {"reg.example": {"auth": "!!!not base64"}}}))
    with pytest.raises(DistillError, match="not base64 of USER:PASS"):
        credentials_from_files("reg.example", None, [bad_entry])


def helper_config(path: Path, **config: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker's protocol, run for real: credHelpers for the host first, then the file's own
    entries, then credsStore; a helper without the host's credentials is passed over."""
    bin_dir = tmp_path / "bin"
    install_credential_helper(bin_dir, "store", {"reg.example": ["stored", "s:1"]})
    install_credential_helper(bin_dir, "special", {"reg.example:5000": ["special", "x"]})
    install_credential_helper(bin_dir, "broken", {"fail": "the keychain is locked"})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    auth = base64.b64encode(b"inline:i").decode()
    config = helper_config(
        tmp_path / "config.json",
        auths={"reg.example": {}, "other.example": {"auth": auth}},
        credsStore="store",
        credHelpers={"reg.example:5000": "special", "https://bad.example": "broken"},
    )
    found = credentials_from_files("reg.example", "team/app", [config])
    assert found == Credentials("stored", "s:1", "from docker-credential-store")
    found = credentials_from_files("REG.example:5000", "app", [config])
    assert found == Credentials("special", "x", "from docker-credential-special")
    found = credentials_from_files("other.example", None, [config])
    assert found == Credentials("inline", "i", f"from {config}")  # an entry beats the store
    assert credentials_from_files("nobody.example", None, [config]) is None
    failed = r"docker-credential-broken failed for bad\.example: the keychain is locked"
    with pytest.raises(DistillError, match=failed):
        credentials_from_files("bad.example", None, [config])


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("not a pair", "gave no Username and Secret"),
        ('{"Username": null, "Secret": "s"}', "not text"),
    ],
)
def test_credential_helper_answers_distill_cannot_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: object, message: str
) -> None:
    bin_dir = tmp_path / "bin"
    install_credential_helper(bin_dir, "odd", {"reg.example": answer})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = helper_config(tmp_path / "config.json", credsStore="odd")
    with pytest.raises(DistillError, match=message):
        credentials_from_files("reg.example", None, [config])


def test_helper_answers_that_mean_nothing_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty answer is no credentials (docker reads it so) and the next source is tried;
    "<token>" as the user name marks an identity token, kept as such."""
    bin_dir = tmp_path / "bin"
    install_credential_helper(
        bin_dir, "odd", {"empty.example": ["", ""], "token.example": ["<token>", "refresh"]}
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = helper_config(tmp_path / "config.json", credsStore="odd")
    later = write_auths(tmp_path / "later.json", {"empty.example": "later:l"})
    found = credentials_from_files("empty.example", None, [config, later])
    assert found == Credentials("later", "l", f"from {later}")
    token = credentials_from_files("token.example", None, [config])
    assert token == Credentials("<token>", "refresh", "from docker-credential-odd")
    assert token is not None and token.identity_token
    with pytest.raises(DistillError, match="identity token, and this registry wants"):
        token.basic_header()


def test_helper_names_are_plain_names(tmp_path: Path) -> None:
    for name in ("x/evil", "../evil", ""):
        config = helper_config(tmp_path / "config.json", credHelpers={"reg.example": name})
        if name:
            with pytest.raises(DistillError, match="not a plain name"):
                credentials_from_files("reg.example", None, [config])
        else:
            assert credentials_from_files("reg.example", None, [config]) is None


def test_a_failing_helper_does_not_show_what_it_printed_on_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    program = bin_dir / "docker-credential-leaky"
    bin_dir.mkdir()
    program.write_text(
        f"#!{sys.executable}\nimport sys\n"
        'print(\'{"Username": "u", "Secret": "s3cr3t-token"}\')\n'
        "sys.exit(3)\n"  # and nothing on stderr: the last thing it said is the secret
    )
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = helper_config(tmp_path / "config.json", credsStore="leaky")
    with pytest.raises(DistillError, match=r"failed for reg\.example: exit code 3") as caught:
        credentials_from_files("reg.example", None, [config])
    assert "s3cr3t" not in caught.value.message + (caught.value.hint or "")


def test_a_missing_helper_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    config = helper_config(
        tmp_path / "config.json", auths={"reg.example": {}}, credsStore="nowhere"
    )
    assert credentials_from_files("reg.example", None, [config]) is None
    assert "docker-credential-nowhere is not installed" in " ".join(capsys.readouterr().err.split())


def challenge_for(server: TokenServer) -> Challenge:
    return Challenge("bearer", {"realm": server.realm, "service": server.service})


def test_fetch_token_reads_either_field_and_defaults_the_lifetime(tmp_path: Path) -> None:
    session = requests.Session()
    with running_token_server(tmp_path, token_field="access_token", expires_in=None) as server:
        token = fetch_token(session, challenge_for(server), ["repository:a:pull"], None)
        assert token.value.count(".") == 2 and token.fresh
        assert 50 < token.expires_at - time.monotonic() <= 60
        assert server.requests == [(None, ("repository:a:pull",))]
        good = Credentials(TEST_USER, TEST_PASSWORD)
        fetch_token(
            session, challenge_for(server), ["repository:a:push", "repository:b:pull"], good
        )
        assert server.requests[-1] == (TEST_USER, ("repository:a:push", "repository:b:pull"))
        with pytest.raises(DistillError, match="rejected the credentials"):
            fetch_token(
                session, challenge_for(server), ["repository:a:pull"], Credentials(TEST_USER, "x")
            )
    # Never a password in clear text to another machine (TEST-NET address: nothing is sent).
    remote = Challenge("bearer", {"realm": "http://192.0.2.1/token"})
    with pytest.raises(DistillError, match="plain http"):
        fetch_token(session, remote, ["repository:a:pull"], Credentials("u", "p"))


def test_an_address_without_a_registry_is_reported() -> None:
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(DistillError) as err, RegistryClient(host) as client:
        client.ping()
    assert host in err.value.message
    assert "address and port" in (err.value.hint or "")
    with pytest.raises(DistillError, match="not a registry host"):
        RegistryClient(f"http://{host}")


# --- a loopback server for what distribution will not do on demand ---------------------------


class FlakyBlobServer:
    """``/v2/``; a blob that redirects to ``/storage/``, whose first answer breaks off
    halfway; later answers honour ``Range`` (or not, with ``honour_range=False``); and a
    manifest ``r:busy`` that answers 503 the first time."""

    def __init__(self, blob: bytes, *, honour_range: bool) -> None:
        self.blob = blob
        self.digest = sha256_digest(blob)
        self.honour_range = honour_range
        self.requests: list[tuple[str, str | None]] = []
        # Served without a mediaType field or a useful Content-Type: an OCI index by shape.
        self.manifest = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
        self.busy = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append((self.path, self.headers.get("Range")))
                if self.path == "/v2/":
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/v2/r/manifests/busy":
                    owner.busy += 1
                    busy = owner.busy == 1
                    body = b"" if busy else owner.manifest
                    self.send_response(503 if busy else 200)
                    if busy:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path == f"/v2/r/blobs/{owner.digest}":
                    self.send_response(307)
                    self.send_header("Location", f"/storage/{owner.digest}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    owner.serve_blob(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.served = 0

    def serve_blob(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        self.served += 1
        blob, wanted = self.blob, handler.headers.get("Range")
        if self.served == 1:
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(blob)))
            handler.end_headers()
            handler.wfile.write(blob[: len(blob) // 2])
            handler.close_connection = True
            return
        if wanted and self.honour_range:
            start = int(wanted.removeprefix("bytes=").partition("-")[0])
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(blob) - 1}/{len(blob)}")
            blob = blob[start:]
        else:
            handler.send_response(200)
        handler.send_header("Content-Length", str(len(blob)))
        handler.end_headers()
        handler.wfile.write(blob)


@pytest.fixture(params=[True, False], ids=["range", "no-range"])
def flaky_server(request: pytest.FixtureRequest) -> Iterator[FlakyBlobServer]:
    server = FlakyBlobServer(os.urandom(300_000), honour_range=request.param)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def test_a_blob_stream_follows_redirects_and_resumes(flaky_server: FlakyBlobServer) -> None:
    with (
        RegistryClient(flaky_server.host, retry=QUICK_RETRY) as client,
        client.open_blob("r", flaky_server.digest, size=len(flaky_server.blob)) as stream,
    ):
        assert stream.read() == flaky_server.blob
    storage = [rng for path, rng in flaky_server.requests if path.startswith("/storage/")]
    assert storage[0] is None
    assert storage[1] is not None and storage[1].startswith("bytes=")
    assert int(storage[1][6:].rstrip("-")) > 0


def test_a_busy_registry_is_asked_again(flaky_server: FlakyBlobServer) -> None:
    with RegistryClient(flaky_server.host, retry=QUICK_RETRY) as client:
        manifest = client.get_manifest("r", "busy")
    assert manifest == (
        MEDIA_TYPE_INDEX,
        flaky_server.manifest,
        sha256_digest(flaky_server.manifest),
    )
    assert flaky_server.busy == 2


# --- against distribution --------------------------------------------------------------------


@pytest.mark.container
def test_push_agrees_with_skopeo_and_pulls_back(tmp_path: Path, registry: Registry) -> None:
    image = make_image(tmp_path / "blobs", b"pushed by distill\n")
    name = unique()
    result = push_image(image, f"docker://{registry.host}/{name}:1")
    assert result.descriptor.digest == image.descriptor.digest
    assert str(result.reference) == f"{registry.host}/{name}:1@{image.descriptor.digest}"
    assert set(result.uploaded) == {image.layers[0].digest, image.config_descriptor.digest}
    info = json.loads(skopeo_inspect(registry, f"{name}:1"))
    assert info["Digest"] == image.descriptor.digest
    assert info["Layers"] == [image.layers[0].digest]
    assert skopeo_inspect(registry, f"{name}:1", "--raw").encode() == image.manifest_bytes
    with RegistryClient(registry.host) as client:
        by_tag = client.get_manifest(name, "1")
        assert by_tag == (MEDIA_TYPE_MANIFEST, image.manifest_bytes, image.descriptor.digest)
        assert client.get_manifest(name, image.descriptor.digest) == by_tag
        assert client.fetch_blob(name, image.config_descriptor.digest) == image.config_bytes
        layer = image.layers[0]
        with client.open_blob(name, layer.digest, size=layer.size) as stream:
            assert stream.read() == Path(layer.where).read_bytes()
        assert client.blob_exists(name, layer.digest)
        assert not client.blob_exists(name, sha256_digest(b"never pushed"))
    again = push_image(image, f"docker://{registry.host}/{name}:2")
    assert again.uploaded == () and len(again.skipped) == 2
    assert json.loads(skopeo_inspect(registry, f"{name}:2"))["Digest"] == image.descriptor.digest


@pytest.mark.container
def test_push_a_multi_platform_index(tmp_path: Path, registry: Registry) -> None:
    amd = make_image(tmp_path / "a", b"amd64\n", "linux/amd64")
    arm = make_image(tmp_path / "b", b"arm64\n", "linux/arm64")
    index = compose_index([amd, arm])
    name = unique()
    result = push_image(index, f"{registry.host}/{name}:multi", access=Access(jobs=2))
    assert result.descriptor.digest == index.descriptor.digest
    assert len(result.uploaded) == 4
    assert skopeo_inspect(registry, f"{name}:multi", "--raw").encode() == index.index_bytes
    for image, arch in ((amd, "amd64"), (arm, "arm64")):
        info = json.loads(
            run(
                "skopeo",
                "--override-arch",
                arch,
                "inspect",
                "--tls-verify=false",
                f"docker://{registry.host}/{name}:multi",
            )
        )
        # skopeo names the index's digest, and describes the platform's image.
        assert info["Digest"] == index.descriptor.digest
        assert (info["Architecture"], info["Layers"]) == (arch, [image.layers[0].digest])
    with RegistryClient(registry.host) as client:
        pulled = client.get_manifest(name, "multi")
        assert pulled.media_type == MEDIA_TYPE_INDEX and pulled.data == index.index_bytes
        child = client.get_manifest(name, arm.descriptor.digest)
        assert child.data == arm.manifest_bytes


@pytest.mark.container
def test_large_blobs_go_up_in_chunks(tmp_path: Path, registry: Registry) -> None:
    name = unique()
    data = os.urandom(4500)
    path = tmp_path / "blob"
    path.write_bytes(data)
    in_memory = os.urandom(2500)
    with RegistryClient(registry.host, upload_chunk_size=1000) as client:
        assert client.push_blob(name, path, sha256_digest(data))
        assert client.push_blob(name, in_memory, sha256_digest(in_memory))
        assert not client.push_blob(name, path, sha256_digest(data))  # already there
        assert client.fetch_blob(name, sha256_digest(data)) == data
        assert client.fetch_blob(name, sha256_digest(in_memory)) == in_memory
        # A file that does not match its digest is refused by the registry.
        with pytest.raises(DistillError, match="not sha256:"):
            client.push_blob(name, path, sha256_digest(b"something else"))
        other = unique()
        assert client.push_blob(other, path, sha256_digest(data), mount_from=name)
        assert client.fetch_blob(other, sha256_digest(data)) == data


@pytest.mark.container
@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_pull_what_skopeo_pushed(tmp_path: Path, registry: Registry, transport: str) -> None:
    image = make_image(tmp_path / "blobs", f"copied from {transport}\n".encode())
    archive = tmp_path / "image.tar"
    parse_transport_reference(f"{transport}:{archive}:example/copied:1").write(
        image, Access(), mtime=SDE
    )
    name = unique()
    source = f"{transport}:{archive}" + (":example/copied:1" if transport == "oci-archive" else "")
    run("skopeo", "copy", "--dest-tls-verify=false", source, f"docker://{registry.host}/{name}:1")
    info = json.loads(skopeo_inspect(registry, f"{name}:1"))
    with RegistryClient(registry.host) as client:
        manifest = client.get_manifest(name, "1")
        assert manifest.digest == info["Digest"]
        doc = json.loads(manifest.data)
        if transport == "oci-archive":
            assert (
                manifest.media_type == MEDIA_TYPE_MANIFEST and manifest.data == image.manifest_bytes
            )
        else:
            assert manifest.media_type == MEDIA_TYPE_DOCKER_MANIFEST
        config = client.fetch_blob(name, doc["config"]["digest"])
        assert json.loads(config)["rootfs"] == json.loads(image.config_bytes)["rootfs"]
        assert [layer["digest"] for layer in doc["layers"]] == info["Layers"]
        for layer in doc["layers"]:
            with client.open_blob(name, layer["digest"], size=layer["size"]) as stream:
                assert hashlib.sha256(stream.read()).hexdigest() == layer["digest"][7:]


@pytest.mark.container
def test_unknown_manifests_are_named(registry: Registry) -> None:
    name = unique()
    with RegistryClient(registry.host) as client:
        with pytest.raises(DistillError, match=f"manifest unknown: {name}:nope"):
            client.get_manifest(name, "nope")
        with pytest.raises(DistillError, match=f"manifest unknown: {name}@sha256:{HEX}"):
            client.get_manifest(name, f"sha256:{HEX}")
        with pytest.raises(DistillError, match=f"blob unknown: {name}@sha256:{HEX}"):
            client.open_blob(name, f"sha256:{HEX}")


@pytest.mark.container
def test_a_tampered_blob_is_caught(registry: Registry) -> None:
    name = unique()
    data = os.urandom(5000)
    digest = sha256_digest(data)
    with RegistryClient(registry.host) as client:
        client.push_blob(name, data, digest)
        stored = registry.blob_file(digest)
        assert stored.read_bytes() == data
        stored.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
        with client.open_blob(name, digest) as stream:
            assert len(stream.read(100)) == 100  # no verdict before the end
            with pytest.raises(DistillError) as err:
                stream.read()
        assert digest in err.value.message and "digest sha256:" in err.value.message
        with pytest.raises(DistillError, match=digest):
            client.fetch_blob(name, digest)
        stored.write_bytes(data + b"extra")
        with pytest.raises(DistillError, match="more than 5000 bytes"):
            client.open_blob(name, digest, size=5000).read()


@pytest.mark.container
def test_a_tampered_manifest_is_caught(tmp_path: Path, registry: Registry) -> None:
    image = make_image(tmp_path / "blobs", b"manifest tamper\n")
    name = unique()
    push_image(image, f"{registry.host}/{name}:1")
    stored = registry.blob_file(image.descriptor.digest)
    assert stored.read_bytes() == image.manifest_bytes
    stored.write_bytes(image.manifest_bytes.replace(b"registry test", b"registry TEST"))
    with RegistryClient(registry.host) as client:
        for reference in ("1", image.descriptor.digest):
            with pytest.raises(DistillError) as err:
                client.get_manifest(name, reference)
            assert image.descriptor.digest in err.value.message
            assert "has digest sha256:" in err.value.message


@pytest.mark.container
def test_pushing_under_a_foreign_digest_is_refused(tmp_path: Path, registry: Registry) -> None:
    image = make_image(tmp_path / "blobs", b"digest check\n")
    name = unique()
    with pytest.raises(DistillError, match="cannot push the image"):
        push_image(image, f"{registry.host}/{name}@sha256:{HEX}")
    with RegistryClient(registry.host) as client:
        assert not client.blob_exists(name, image.layers[0].digest)
    result = push_image(image, f"{registry.host}/{name}@{image.descriptor.digest}")
    assert result.reference.tag is None
    assert json.loads(skopeo_inspect(registry, f"{name}@{image.descriptor.digest}", "--no-tags"))[
        "Digest"
    ] == (image.descriptor.digest)


@pytest.mark.container
def test_basic_auth(tmp_path: Path, auth_registry: Registry, no_ambient_credentials: Path) -> None:
    image = make_image(tmp_path / "blobs", b"behind htpasswd\n")
    name = unique()
    with pytest.raises(DistillError) as err:
        push_image(image, f"{auth_registry.host}/{name}:1")
    assert "requires credentials" in err.value.message
    assert "--creds" in (err.value.hint or "")
    with pytest.raises(DistillError) as err:
        push_image(
            image,
            f"{auth_registry.host}/{name}:1",
            access=Access(credentials=Credentials(TEST_USER, "wrong")),
        )
    assert "rejected the credentials" in err.value.message
    push_image(
        image, f"{auth_registry.host}/{name}:1", access=Access(credentials=creds(auth_registry))
    )
    assert (
        json.loads(skopeo_inspect(auth_registry, f"{name}:1"))["Digest"] == image.descriptor.digest
    )
    with RegistryClient(auth_registry.host, credentials=creds(auth_registry)) as client:
        assert client.get_manifest(name, "1").data == image.manifest_bytes


@pytest.mark.container
def test_basic_auth_from_the_environment_and_auth_files(
    tmp_path: Path,
    auth_registry: Registry,
    no_ambient_credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = make_image(tmp_path / "blobs", b"credentials found\n")
    name = unique()
    push_image(
        image, f"{auth_registry.host}/{name}:1", access=Access(credentials=creds(auth_registry))
    )
    write_auths(tmp_path / "auth.json", {auth_registry.host: auth_registry.creds})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    with RegistryClient(auth_registry.host) as client:
        assert client.get_manifest(name, "1").digest == image.descriptor.digest
    monkeypatch.setenv(AUTH_ENV, f"{TEST_USER}:wrong")  # the environment comes first
    with RegistryClient(auth_registry.host) as client, pytest.raises(DistillError) as err:
        client.get_manifest(name, "1")
    assert AUTH_ENV in err.value.message
    monkeypatch.setenv(AUTH_ENV, auth_registry.creds)
    with RegistryClient(auth_registry.host) as client:
        assert client.get_manifest(name, "1").digest == image.descriptor.digest


@pytest.mark.container
def test_token_auth(
    tmp_path: Path,
    token_registry: tuple[Registry, TokenServer],
    no_ambient_credentials: Path,
) -> None:
    reg, tokens = token_registry
    image = make_image(tmp_path / "blobs", b"behind a token server\n")
    name, public = unique(), f"public/{unique()}"
    with RegistryClient(reg.host, credentials=creds(reg)) as client:
        before = len(tokens.requests)
        push_image(image, f"{reg.host}/{name}:1", client=client)
        # One token for every upload and manifest of the push: cached per scope.
        assert tokens.requests[before:] == [(TEST_USER, (f"repository:{name}:pull,push",))]
        assert client.get_manifest(name, "1").data == image.manifest_bytes
        with client.open_blob(name, image.layers[0].digest) as stream:
            assert stream.read() == Path(image.layers[0].where).read_bytes()
        assert tokens.requests[before + 1 :] == [(TEST_USER, (f"repository:{name}:pull",))]
        push_image(image, f"{reg.host}/{public}:1", client=client)
    assert json.loads(skopeo_inspect(reg, f"{name}:1"))["Digest"] == image.descriptor.digest
    with RegistryClient(reg.host) as anonymous:
        assert anonymous.get_manifest(public, "1").digest == image.descriptor.digest
        with pytest.raises(DistillError) as err:
            anonymous.get_manifest(name, "1")
        assert "requires credentials" in err.value.message
    reader = Credentials(READER_USER, READER_PASSWORD)
    with RegistryClient(reg.host, credentials=reader) as client:
        assert client.get_manifest(name, "1").digest == image.descriptor.digest
        with pytest.raises(DistillError) as err:
            push_image(image, f"{reg.host}/{name}:2", client=client)
        assert "rejected the credentials" in err.value.message and "to push" in err.value.message
        assert "rights" in (err.value.hint or "")
    wrong = Credentials(TEST_USER, "wrong")
    with (
        RegistryClient(reg.host, credentials=wrong) as client,
        pytest.raises(DistillError, match="rejected the credentials"),
    ):
        client.get_manifest(name, "1")


@pytest.mark.container
def test_identity_token_from_a_credential_helper(
    tmp_path: Path,
    token_registry: tuple[Registry, TokenServer],
    no_ambient_credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`docker login` with some registries stores an OAuth2 refresh token in the helper
    ("<token>" as the user): it goes to the token server in docker's OAuth2 form."""
    reg, tokens = token_registry
    image = make_image(tmp_path / "blobs", b"behind an identity token\n")
    name = unique()
    with RegistryClient(reg.host, credentials=creds(reg)) as client:
        push_image(image, f"{reg.host}/{name}:1", client=client)
    bin_dir = tmp_path / "bin"
    install_credential_helper(bin_dir, "oauth", {reg.host: ["<token>", IDENTITY_TOKEN]})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = Path(os.environ["HOME"]) / ".docker" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"credHelpers": {reg.host: "oauth"}}))
    before = len(tokens.requests)
    with RegistryClient(reg.host) as client:
        assert client.get_manifest(name, "1").digest == image.descriptor.digest
    assert tokens.requests[before:] == [(TEST_USER, (f"repository:{name}:pull",))]
    install_credential_helper(bin_dir, "oauth", {reg.host: ["<token>", "revoked"]})
    with (
        RegistryClient(reg.host) as client,
        pytest.raises(DistillError, match="rejected the credentials from docker-credential-oauth"),
    ):
        client.get_manifest(name, "1")


@pytest.mark.container
def test_tls_with_a_self_signed_certificate(tmp_path: Path, tls_registry: Registry) -> None:
    image = make_image(tmp_path / "blobs", b"over https\n")
    name = unique()
    with pytest.raises(DistillError) as err:
        push_image(image, f"{tls_registry.host}/{name}:1")
    assert "TLS" in err.value.message and "--no-tls-verify" in (err.value.hint or "")
    push_image(image, f"{tls_registry.host}/{name}:1", access=Access(tls_verify=False))
    with RegistryClient(tls_registry.host, tls_verify=False) as client:
        assert client.base_url == f"https://{tls_registry.host}"
        assert client.get_manifest(name, "1").data == image.manifest_bytes
    assert (
        json.loads(skopeo_inspect(tls_registry, f"{name}:1"))["Digest"] == image.descriptor.digest
    )
