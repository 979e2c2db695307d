"""Real registries on 127.0.0.1 for tests: Debian's ``docker-registry`` (distribution 2.8).

Import the fixtures a test module needs; they are session-scoped, so each kind of
registry starts once per pytest process (once per xdist worker) and is always stopped::

    # ruff: noqa: F811  (fixtures are imported, then named as test parameters)
    from registry_fixtures import Registry, registry  # noqa: F401

``registry``
    anonymous, plain http.
``auth_registry``
    htpasswd (Basic) auth; ``.username``/``.password`` (``.creds``) are valid.
``token_registry``
    docker token (Bearer) auth: ``(Registry, TokenServer)``. The :class:`TokenServer` on
    another loopback port signs JWTs with a throwaway key (via ``openssl``): valid users
    get every action they ask for (``READER_USER`` only ``pull``), anonymous clients only
    ``pull`` on ``public/…``; ``IDENTITY_TOKEN`` is a refresh token for ``TEST_USER`` in
    docker's OAuth2 flow (a POSTed form).
``tls_registry``
    https with a self-signed certificate for 127.0.0.1 (``.cert``).

Every wait is bounded; a registry that does not come up fails the fixture with its log.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REGISTRY_BIN = "docker-registry"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
TEST_USER = "distill"
TEST_PASSWORD = "s3cret:pass"  # a colon in a password must survive USER:PASS parsing
READER_USER, READER_PASSWORD = "reader", "read-only"  # token_registry: pull rights only
IDENTITY_TOKEN = "refresh-0f3c9a"  # token_registry: an OAuth2 refresh token for TEST_USER


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may take it: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed(directory: Path, name: str, *, ip: str | None = None) -> tuple[Path, Path]:
    """(certificate, key) PEM files: RSA 2048, valid for two days."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    args = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2"]
    args += ["-subj", f"/CN={ip or name}", "-keyout", str(key), "-out", str(cert)]
    if ip:
        args += ["-addext", f"subjectAltName=IP:{ip}"]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass(frozen=True)
class Registry:
    host: str  # "127.0.0.1:PORT"
    root: Path  # storage root directory
    log: Path
    username: str | None = None
    password: str | None = None
    scheme: str = "http"
    cert: Path | None = None

    @property
    def creds(self) -> str:
        """``USER:PASS`` for skopeo's ``--creds``."""
        assert self.username is not None and self.password is not None
        return f"{self.username}:{self.password}"

    def blob_file(self, digest: str) -> Path:
        """Where distribution's filesystem driver keeps a blob's bytes."""
        hex_digest = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"


def _wait_listening(proc: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def run_registry(
    workdir: Path,
    *,
    htpasswd: tuple[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
    token: dict[str, str] | None = None,
) -> Iterator[Registry]:
    """Run ``docker-registry`` with its storage in ``workdir`` until the block ends.

    ``htpasswd`` is (user, password); ``tls`` is (certificate, key); ``token`` is the
    ``auth.token`` section (realm, service, issuer, rootcertbundle)."""
    assert shutil.which(REGISTRY_BIN), f"{REGISTRY_BIN} is needed (apt install docker-registry)"
    workdir.mkdir(parents=True, exist_ok=True)
    root, log = workdir / "storage", workdir / "registry.log"
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root)}},
        "http": {"secret": "distill-test-secret"},
    }
    if htpasswd is not None:
        line = subprocess.run(
            ["htpasswd", "-Bbn", *htpasswd], check=True, capture_output=True, text=True, timeout=60
        ).stdout
        (workdir / "htpasswd").write_text(line)
        config["auth"] = {"htpasswd": {"realm": "basic-realm", "path": str(workdir / "htpasswd")}}
    if token is not None:
        config["auth"] = {"token": token}
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    for _ in range(3):  # another process may take the free port before the registry does
        port = free_port()
        config["http"]["addr"] = f"127.0.0.1:{port}"
        (workdir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        with log.open("wb") as log_fh:
            proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(workdir / "config.yml")],
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            if _wait_listening(proc, port, time.monotonic() + START_TIMEOUT):
                yield Registry(
                    f"127.0.0.1:{port}",
                    root,
                    log,
                    username=htpasswd[0] if htpasswd else None,
                    password=htpasswd[1] if htpasswd else None,
                    scheme="https" if tls else "http",
                    cert=tls[0] if tls else None,
                )
                return
        finally:
            _stop(proc)
        if "address already in use" not in log.read_text(errors="replace"):
            break
    raise RuntimeError(f"{REGISTRY_BIN} did not start:\n{log.read_text(errors='replace')[-3000:]}")


# --- a token server for docker's Bearer auth -------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _pem_to_der(pem: Path) -> bytes:
    lines = pem.read_text().splitlines()
    return base64.b64decode("".join(line for line in lines if not line.startswith("-----")))


@dataclass
class TokenServer:
    """Issues RS256 JWTs as distribution's token auth expects them (``x5c`` header with the
    signing certificate, which the registry trusts as its ``rootcertbundle``).

    ``requests`` records (user or None, scopes) of every token issued; ``token_field`` and
    ``expires_in`` shape the JSON answer (``expires_in=None`` leaves it out)."""

    cert: Path
    key: Path
    service: str = "distill-test-registry"
    issuer: str = "distill-test-issuer"
    users: dict[str, str] = field(
        default_factory=lambda: {TEST_USER: TEST_PASSWORD, READER_USER: READER_PASSWORD}
    )
    readers: frozenset[str] = frozenset({READER_USER})
    refresh_tokens: dict[str, str] = field(
        default_factory=lambda: {IDENTITY_TOKEN: TEST_USER}  # refresh token -> user
    )
    token_field: str = "token"
    expires_in: int | None = 300
    requests: list[tuple[str | None, tuple[str, ...]]] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def auth_config(self) -> dict[str, str]:
        """The registry's ``auth.token`` section for this server."""
        return {
            "realm": self.realm,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.cert),
        }

    def sign(self, claims: dict[str, Any]) -> str:
        chain = [base64.b64encode(_pem_to_der(self.cert)).decode("ascii")]
        header = {"typ": "JWT", "alg": "RS256", "x5c": chain}
        signing_input = ".".join(_b64url(json.dumps(part).encode()) for part in (header, claims))
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def grant(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            if user is None:
                wanted = [a for a in wanted if a == "pull" and name.startswith("public/")]
            elif user in self.readers:
                wanted = [a for a in wanted if a == "pull"]
            access.append({"type": kind, "name": name, "actions": wanted})
        return access

    def check_user(self, header: str | None) -> str | bool | None:
        """The user name for valid Basic credentials, None without any, False if wrong."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        if scheme.lower() != "basic" or self.users.get(user) != password:
            return False
        return user

    def answer(self, path: str, authorization: str | None) -> tuple[int, bytes]:
        url = urllib.parse.urlsplit(path)
        if url.path != "/token":
            return 404, b""
        user = self.check_user(authorization)
        if user is False:
            return 401, b'{"details": "wrong credentials"}'
        name = user if isinstance(user, str) else None
        query = urllib.parse.parse_qs(url.query)
        return self.issue(name, query.get("scope", []), query.get("service", [""])[0])

    def answer_oauth(self, path: str, form: str) -> tuple[int, bytes]:
        """docker's OAuth2 flow: a refresh token (an identity token) POSTed as a form."""
        if urllib.parse.urlsplit(path).path != "/token":
            return 404, b""
        fields = {k: v[0] for k, v in urllib.parse.parse_qs(form).items()}
        user = self.refresh_tokens.get(fields.get("refresh_token", ""))
        if fields.get("grant_type") != "refresh_token" or not fields.get("client_id"):
            return 400, b'{"error": "unsupported_grant_type"}'
        if user is None:
            return 400, b'{"error": "invalid_grant"}'
        scopes = fields.get("scope", "").split()
        return self.issue(user, scopes, fields.get("service", ""), key="access_token")

    def issue(
        self, name: str | None, scopes: list[str], service: str, key: str | None = None
    ) -> tuple[int, bytes]:
        self.requests.append((name, tuple(scopes)))
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": name or "",
            "aud": service,
            "exp": now + 600,
            "nbf": now - 60,
            "iat": now - 60,
            "jti": uuid.uuid4().hex,
            "access": self.grant(name, scopes),
        }
        reply: dict[str, Any] = {key or self.token_field: self.sign(claims)}
        if self.expires_in is not None:
            reply["expires_in"] = self.expires_in
        return 200, json.dumps(reply).encode()

    def start(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.reply(*owner.answer(self.path, self.headers.get("Authorization")))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = self.rfile.read(length).decode()
                self.reply(*owner.answer_oauth(self.path, form))

            def reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextlib.contextmanager
def running_token_server(directory: Path, **options: Any) -> Iterator[TokenServer]:
    """A started :class:`TokenServer` with a fresh signing key; stopped on exit."""
    cert, key = self_signed(directory, "token-signer")
    server = TokenServer(cert, key, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    workdir = tmp_path_factory.mktemp("auth-registry")
    with run_registry(workdir, htpasswd=(TEST_USER, TEST_PASSWORD)) as reg:
        yield reg


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Registry, TokenServer]]:
    workdir = tmp_path_factory.mktemp("token-registry")
    with (
        running_token_server(workdir / "keys") as tokens,
        run_registry(workdir, token=tokens.auth_config()) as reg,
    ):
        yield Registry(reg.host, reg.root, reg.log, TEST_USER, TEST_PASSWORD), tokens


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    workdir = tmp_path_factory.mktemp("tls-registry")
    tls = self_signed(workdir / "keys", "registry", ip="127.0.0.1")
    with run_registry(workdir, tls=tls) as reg:
        yield reg


# --- credentials -----------------------------------------------------------------------------


@pytest.fixture
def no_ambient_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No auth files and no DISTILL_REGISTRY_AUTH, here and in subprocesses started with
    ``os.environ``: a fresh HOME, which it returns."""
    from distill.registry.auth import AUTH_ENV

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "DOCKER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(AUTH_ENV, raising=False)
    return home


_HELPER = """#!{python}
# A docker credential helper (docker-credential-NAME get), speaking the real protocol:
# the server on stdin, JSON on stdout, "credentials not found" and exit 1 when it has none.
import json, sys
store = json.load(open({store!r}))
if sys.argv[1:] != ["get"]:
    sys.exit("only get is implemented")
server = sys.stdin.read().strip()
if "fail" in store:
    print(store["fail"], file=sys.stderr)
    sys.exit(2)
if server not in store:
    print("credentials not found in native keychain")
    sys.exit(1)
answer = store[server]
if isinstance(answer, list):
    print(json.dumps({{"ServerURL": server, "Username": answer[0], "Secret": answer[1]}}))
else:
    print(answer)  # whatever a broken helper might say
"""


def install_credential_helper(
    bin_dir: Path, name: str, store: dict[str, Any], python: str | None = None
) -> Path:
    """Write ``docker-credential-<name>`` into ``bin_dir``, answering from ``store``
    (server -> [user, secret], or text it prints as it is; a ``"fail"`` key makes it fail
    with that message)."""
    import sys

    bin_dir.mkdir(parents=True, exist_ok=True)
    store_file = bin_dir / f"{name}.json"
    store_file.write_text(json.dumps(store))
    program = bin_dir / f"docker-credential-{name}"
    program.write_text(_HELPER.format(python=python or sys.executable, store=str(store_file)))
    program.chmod(0o755)
    return program
