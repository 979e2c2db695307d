"""Registry credentials and the two authentication schemes registries use.

Where credentials come from, first match wins:

1. the ``credentials`` given to the client (the CLI's ``--creds USER:PASS``);
2. ``DISTILL_REGISTRY_AUTH=USER:PASS`` (for whichever registry distill talks to);
3. the auth files ``podman login`` and ``docker login`` write, in the order
   containers/image reads them:

   a. ``$REGISTRY_AUTH_FILE``,
   b. ``$XDG_RUNTIME_DIR/containers/auth.json``,
   c. ``$XDG_CONFIG_HOME/containers/auth.json`` (``~/.config`` by default),
   d. ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``.

   In a file, a credential helper named for the host in ``credHelpers`` is asked first;
   then ``auths`` keys are tried from the most specific: ``HOST/team/app``, then
   ``HOST/team``, then ``HOST`` (also written as a URL, as old docker versions did), whose
   ``auth`` is base64 of ``USER:PASS``; then the ``credsStore`` helper. A helper is
   ``docker-credential-NAME get``, given ``HOST`` on stdin and answering JSON with
   ``Username`` and ``Secret`` (docker's protocol; the user name ``<token>`` marks an
   identity token). A helper that is not installed is warned about and skipped; one that
   fails is an error.
   With both an ``auths`` entry and ``credsStore``, the entry is used (podman ignores
   ``credsStore``; docker would use only the store).

Schemes (RFC 7235 challenges in ``WWW-Authenticate``):

``Basic``
    The credentials go with every request.
``Bearer realm=…,service=…,scope=…``
    docker's token authentication: a GET to ``realm`` with ``service`` and one ``scope``
    parameter per scope (``repository:team/app:pull,push``), with the credentials as Basic
    auth when there are any (anonymous otherwise), returns JSON with ``token`` (or
    ``access_token``) and ``expires_in`` (60 seconds when absent). An identity token (an
    OAuth2 refresh token, from ``docker login`` with some registries) is POSTed instead as
    a form (``grant_type=refresh_token``, ``refresh_token``, ``client_id``, ``service``,
    ``scope``), docker's OAuth2 flow. Credentials are only
    sent to a realm over https, on this machine, or when TLS checks are off. The token
    server is held to the same deadline as any request (:mod:`distill.net.deadline`), and its
    answer to the same caps as any document from a server (:mod:`distill.bounded`).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from distill.bounded import one_line, parse_json
from distill.context import Credentials as Credentials  # where the CLI looks for it
from distill.errors import DistillError
from distill.net.deadline import Limits, read_body, send
from distill.registry.reference import is_loopback

AUTH_ENV = "DISTILL_REGISTRY_AUTH"
DEFAULT_TOKEN_LIFETIME = 60.0  # seconds; the token spec's value when expires_in is absent
# Refresh a little early: a token that expires in flight costs a 401 and a retry.
TOKEN_MARGIN = 5.0
MAX_TOKEN_RESPONSE = 1 << 20
HELPER_TIMEOUT = 60  # seconds: a helper may wait for a keychain to unlock
CLIENT_ID = "distill"  # the OAuth2 client_id sent with a refresh token

CREDENTIALS_HINT = (
    "pass --creds USER:PASS, set DISTILL_REGISTRY_AUTH=USER:PASS, or log in with "
    "'podman login HOST' or 'docker login HOST' (distill reads their auth files)"
)


def auth_file_candidates(env: Mapping[str, str] | None = None) -> list[Path]:
    """The auth files distill reads, in order (existing or not)."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    paths: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        paths.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    config_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    paths.append(config_home / "containers" / "auth.json")
    docker_dir = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else home / ".docker"
    paths.append(docker_dir / "config.json")
    return paths


def _auth_keys(host: str, repository: str | None) -> list[str]:
    keys: list[str] = []
    if repository:
        parts = repository.split("/")
        keys += [f"{host}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)]
    keys.append(host)
    return keys


def _normalize_key(key: str) -> str:
    # docker once wrote "https://HOST/v1/"; containers/image matches those by host.
    if "://" in key:
        return urllib.parse.urlsplit(key).netloc.lower()
    return key.lower()


def _read_auth_file(path: Path) -> dict[str, object] | None:
    hint = "fix or remove the file, or log in again to rewrite it"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DistillError(
            f"cannot read the registry auth file {path}: {exc.strerror or exc}", hint=hint
        ) from exc
    data = parse_json(raw, f"the registry auth file {path}", hint=hint)
    return data if isinstance(data, dict) else {}


def _decode_entry(entry: object, path: Path, key: str) -> Credentials | None:
    auth = entry.get("auth") if isinstance(entry, dict) else None
    if not auth:
        return None  # e.g. left by a credential helper
    try:
        text = base64.b64decode(str(auth), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    if ":" not in text:
        raise DistillError(
            f"the entry for {key!r} in {path} is not base64 of USER:PASS",
            hint="log in again to rewrite it",
        )
    return Credentials.parse(text, source=f"from {path}")


def credential_helper(helper: str, host: str, path: Path) -> Credentials | None:
    """Ask ``docker-credential-<helper>`` for ``host``'s credentials (None: it has none)."""
    import shutil
    import subprocess

    if not helper or "/" in helper or os.sep in helper or helper.startswith("."):
        raise DistillError(
            f"{path} names the credential helper {helper!r}, which is not a plain name",
            hint="a helper is named as in docker-credential-NAME, e.g. 'pass'",
        )
    name = f"docker-credential-{helper}"
    program = shutil.which(name)
    if program is None:
        _warn_once(f"{path} names the credential helper {helper!r}, but {name} is not installed")
        return None
    try:
        done = subprocess.run(
            [program, "get"], input=host, capture_output=True, text=True, timeout=HELPER_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DistillError(f"{name} could not be run for {host}: {exc}") from None
    check = f"check it with: echo {host} | {name} get"
    if done.returncode != 0:
        if "credentials not found" in (done.stdout + done.stderr).lower():
            return None
        # stderr only: stdout may hold a secret the helper printed before it failed
        said = done.stderr.strip().splitlines()
        raise DistillError(
            f"{name} failed for {host}: {said[-1] if said else f'exit code {done.returncode}'}",
            hint=check,
        )
    try:
        answer = parse_json(done.stdout, f"the answer of {name}", hint=check)
        user, secret = answer["Username"], answer["Secret"]
    except (DistillError, KeyError, TypeError):
        raise DistillError(f"{name} gave no Username and Secret for {host}", hint=check) from None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise DistillError(f"{name} gave a Username or Secret that is not text", hint=check)
    if not user and not secret:
        return None  # as docker reads an empty answer: nothing stored
    return Credentials(user, secret, f"from {name}")


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    # Credentials are looked up per repository: one missing helper is said once.
    if message not in _warned:
        _warned.add(message)
        from distill import log

        log.warn(message)


def credentials_from_files(
    host: str, repository: str | None = None, paths: Sequence[Path] | None = None
) -> Credentials | None:
    """Credentials for ``host`` (and ``repository``) from the auth files, or None."""
    host = host.lower()
    wanted = _auth_keys(host, repository)
    for path in auth_file_candidates() if paths is None else paths:
        data = _read_auth_file(path)
        if not data:
            continue
        helpers = data.get("credHelpers")
        if isinstance(helpers, dict):
            named = {_normalize_key(k): v for k, v in helpers.items()}
            if isinstance(named.get(host), str) and named[host]:
                found = credential_helper(named[host], host, path)
                if found is not None:
                    return found
        auths = data.get("auths")
        if isinstance(auths, dict) and auths:
            by_key = {_normalize_key(k): (k, v) for k, v in auths.items()}
            # A full key wins over one normalised from a URL ("HOST" over "https://HOST/v1/").
            by_key.update({k.lower(): (k, v) for k, v in auths.items() if "://" not in k})
            for key in wanted:
                if key in by_key:
                    original, entry = by_key[key]
                    found = _decode_entry(entry, path, original)
                    if found is not None:
                        return found
        store = data.get("credsStore")
        if isinstance(store, str) and store:
            found = credential_helper(store, host, path)
            if found is not None:
                return found
    return None


def find_credentials(
    host: str, repository: str | None = None, explicit: Credentials | None = None
) -> Credentials | None:
    """The credentials for ``host`` by the order in the module docstring, or None."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(AUTH_ENV)
    if from_env:
        return Credentials.parse(from_env, source=f"from {AUTH_ENV}")
    return credentials_from_files(host, repository)


# --- challenges ------------------------------------------------------------------------------

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: the scheme (lower case) and its parameters
    (names lower case)."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes a Bearer challenge asks for (space separated in one parameter)."""
        return tuple(self.params.get("scope", "").split())


def _quoted(header: str, start: int) -> tuple[str, int]:
    """The quoted-string starting at ``header[start] == '"'`` and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(header):
        char = header[i]
        if char == "\\" and i + 1 < len(header):
            out.append(header[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    return "".join(out), i  # unterminated: take what is there


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in a ``WWW-Authenticate`` value, in order. Parameters may be quoted
    and quoted values may contain commas (``scope="repository:a:pull,push"``); anything
    unparseable ends the parse (what came before is kept)."""
    found: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(header)
    while i < n:
        while i < n and header[i] in " \t,":
            i += 1
        match = _TOKEN.match(header, i)
        if match is None:
            break
        word, i = match.group(), match.end()
        j = i
        while j < n and header[j] in " \t":
            j += 1
        if j < n and header[j] == "=" and found:
            # name=value: a parameter of the current challenge.
            j += 1
            while j < n and header[j] in " \t":
                j += 1
            if j < n and header[j] == '"':
                value, i = _quoted(header, j)
            else:
                token = _TOKEN.match(header, j)
                value, i = (token.group(), token.end()) if token else ("", j)
            found[-1][1][word.lower()] = value
        else:
            found.append((word.lower(), {}))
    return [Challenge(scheme, params) for scheme, params in found]


def pick_challenge(header: str | None) -> Challenge | None:
    """The challenge distill answers: Bearer if offered, else Basic, else None."""
    challenges = parse_challenges(header or "")
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


# --- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    value: str = field(repr=False)
    expires_at: float  # time.monotonic() seconds

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at - TOKEN_MARGIN


def _may_send_credentials(realm: str, tls_verify: bool) -> bool:
    parts = urllib.parse.urlsplit(realm)
    return parts.scheme == "https" or not tls_verify or is_loopback(parts.netloc)


def fetch_token(
    session: requests.Session,
    challenge: Challenge,
    scopes: Sequence[str],
    credentials: Credentials | None,
    *,
    tls_verify: bool = True,
    limits: Limits | None = None,
    proxies: Mapping[str, str] | None = None,
) -> Token:
    """A token for ``scopes`` from the challenge's realm (see the module docstring)."""
    realm = challenge.params.get("realm", "")
    if urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
        raise DistillError(
            f"the registry asks for a token from {one_line(realm, 120)!r}, which is not an "
            "http(s) URL",
            hint="the registry's token authentication is misconfigured; tell its operator",
        )
    params: list[tuple[str, str]] = []
    if "service" in challenge.params:
        params.append(("service", challenge.params["service"]))
    params += [("scope", scope) for scope in scopes]
    headers: dict[str, str] = {}
    if credentials is not None and not _may_send_credentials(realm, tls_verify):
        raise DistillError(
            f"the registry sends credentials to {one_line(realm, 120)}, which is plain http",
            hint="refusing to send a password unencrypted; use --no-tls-verify "
            "only if you accept that",
        )
    label = one_line(realm, 120)
    deadline = (limits or Limits.from_env()).request(f"a token from {label}")
    method, extra = "GET", dict[str, Any](params=params)
    if credentials is not None and credentials.identity_token:
        # docker's OAuth2 flow: the refresh token in a POSTed form, scopes in one field
        form = {
            "grant_type": "refresh_token",
            "refresh_token": credentials.password,
            "client_id": CLIENT_ID,
            "service": challenge.params.get("service", ""),
            "scope": " ".join(scopes),
        }
        method, extra = "POST", dict[str, Any](data=form)
    elif credentials is not None:
        headers["Authorization"] = credentials.basic_header()
    try:
        resp = send(
            session,
            method,
            realm,
            deadline=deadline,
            verify=tls_verify,
            follow_redirects=method == "GET",
            headers=headers,
            proxies=dict(proxies) if proxies else None,
            **extra,
        )
    except requests.exceptions.SSLError as exc:
        raise DistillError(
            f"TLS error fetching a registry token from {label}: {one_line(str(exc), 300)}",
            hint="check the system's CA certificates, or pass --no-tls-verify for a "
            "registry with a self-signed certificate",
        ) from exc
    except requests.RequestException as exc:
        raise DistillError(
            f"cannot fetch a registry token from {label}: {one_line(str(exc), 300)}",
            hint="the registry's token server is unreachable; check the network and proxy",
        ) from exc
    refused = (401, 403, 400) if credentials and credentials.identity_token else (401, 403)
    with resp:
        if resp.status_code in refused:  # OAuth2 says 400 invalid_grant for a bad token
            if credentials is None:
                raise DistillError(
                    f"the token server {label} wants credentials for {' '.join(scopes)}",
                    hint=CREDENTIALS_HINT,
                )
            raise DistillError(
                f"the token server {label} rejected the credentials {credentials.source} "
                f"(HTTP {resp.status_code})",
                hint="check the user name and password; " + CREDENTIALS_HINT,
            )
        if resp.status_code != 200:
            raise DistillError(
                f"the token server {label} answered HTTP {resp.status_code}",
                hint="the registry's token server is having trouble; try again later",
            )
        body = read_body(
            resp,
            MAX_TOKEN_RESPONSE,
            deadline,
            f"the answer of the token server {label}",
            hint="the registry's token server is misconfigured; tell its operator",
        )
    return _parse_token(body, label)


def _parse_token(body: bytes, realm: str) -> Token:
    data = parse_json(
        body,
        f"the answer of the token server {realm}",
        hint="the registry's token server is misconfigured; tell its operator",
    )
    value = None
    if isinstance(data, dict):
        value = data.get("token") or data.get("access_token")
    if not isinstance(data, dict) or not isinstance(value, str) or not value:
        raise DistillError(
            f"the token server {realm} sent no token",
            hint="the registry's token server is misconfigured; tell its operator",
        )
    lifetime = data.get("expires_in")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    return Token(value, time.monotonic() + float(lifetime))
