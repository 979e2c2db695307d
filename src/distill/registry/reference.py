"""Image references in a registry: ``docker://HOST[:PORT]/REPO[:TAG][@sha256:HEX]``.

The ``docker://`` prefix (skopeo's transport name) is optional. The grammar is
docker/distribution's:

* The first ``/``-separated component is the registry host when it looks like one: it
  contains a ``.`` or a ``:`` (a port), or is ``localhost``, or is an IPv6 address in
  brackets. Otherwise the whole name is a repository on the *default registry*.
* Repository components are lower case letters and digits joined by ``.``, ``_``, ``__`` or
  runs of ``-``; the whole name is at most 255 characters.
* A tag is up to 128 of ``[A-Za-z0-9_.-]`` and does not start with ``.`` or ``-``.
* A digest must be ``sha256:`` and 64 lower-case hex digits (the only algorithm distill
  can verify). With a digest, the tag (if any) is informational: pulls go by digest.
* With neither tag nor digest, the tag is ``latest``.
* Credentials (``USER:PASS@HOST/…``) do not belong in a reference, where they would end
  up in logs and shell history: such a reference is refused (never repeating the
  password), pointing to ``--creds``.

The default registry is **not** built in: distill never talks to a registry the user did
not name. ``DISTILL_DEFAULT_REGISTRY`` supplies one (``HOST[:PORT]``); a reference without
a host is refused when it is unset. When the default registry is used, a one-component
name gets ``library/`` in front (``busybox`` means ``library/busybox``), as docker does for
its default registry, where official images live under ``library/``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from distill.bounded import one_line
from distill.errors import DistillError
from distill.image.digest import is_digest

TRANSPORT_PREFIX = "docker://"
DEFAULT_REGISTRY_ENV = "DISTILL_DEFAULT_REGISTRY"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = re.compile(
    rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{{1,5}}))?"
)
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_ANY_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")

_FORM_HINT = "write [docker://]HOST[:PORT]/REPO[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/app:1"


def check_digest(digest: str) -> str:
    """``digest`` when it is a sha256 digest; a DistillError otherwise."""
    if is_digest(digest):
        return digest
    if _ANY_DIGEST.fullmatch(digest):
        raise DistillError(
            f"unsupported digest {digest!r}",
            hint="distill verifies sha256 digests only (sha256: and 64 lower-case hex digits)",
        )
    raise DistillError(
        f"not a digest: {digest!r}", hint="write sha256: followed by 64 lower-case hex digits"
    )


def check_host(host: str) -> str:
    """``host`` when it is ``name[:port]`` (or ``[v6][:port]``); a DistillError otherwise."""
    match = _HOST.fullmatch(host)
    port = match.group("port") if match else None
    if match is None or (port is not None and not 0 < int(port) < 65536):
        raise DistillError(
            f"{host!r} is not a registry host",
            hint="write HOST or HOST:PORT, without a scheme or path, e.g. 127.0.0.1:5000",
        )
    return host


def check_repository(repository: str) -> str:
    """``repository`` when it is a valid repository name; a DistillError otherwise."""
    if len(repository) > MAX_NAME_LENGTH or not all(
        _PATH_COMPONENT.fullmatch(c) for c in repository.split("/")
    ):
        raise DistillError(
            f"{repository!r} is not a valid repository name",
            hint="repository names are lower case: letters, digits and '.', '_', '-' between "
            "them, components joined by '/'",
        )
    return repository


def check_manifest_reference(reference: str) -> str:
    """``reference`` when it is a tag or a sha256 digest; a DistillError otherwise."""
    if ":" in reference:
        return check_digest(reference)
    if not _TAG.fullmatch(reference):
        raise DistillError(
            f"{reference!r} is not a valid tag",
            hint="tags are up to 128 letters, digits, '_', '.' and '-', not starting "
            "with '.' or '-'",
        )
    return reference


def is_loopback(host: str) -> bool:
    """True when ``host`` (``name[:port]`` or ``[v6][:port]``) names this machine."""
    name = host
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed reference. ``tag`` is ``None`` only when a digest is given without one."""

    host: str  # "registry.example:5000", lower case
    repository: str  # "team/app"
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What the manifest is addressed by: the digest when there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def name(self) -> str:
        """``HOST/REPO``, without tag or digest."""
        return f"{self.host}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> ImageReference:
        return ImageReference(self.host, self.repository, self.tag, check_digest(digest))


def is_registry_reference(text: str) -> bool:
    """True when ``text`` names a registry destination (it starts with ``docker://``)."""
    return text.startswith(TRANSPORT_PREFIX)


def default_registry() -> str:
    """The registry for references without a host: ``$DISTILL_DEFAULT_REGISTRY``."""
    value = os.environ.get(DEFAULT_REGISTRY_ENV, "").strip()
    if not value:
        raise DistillError(
            "the reference names no registry host, and no default registry is set",
            hint=f"write the host (e.g. 127.0.0.1:5000/app:1), or set {DEFAULT_REGISTRY_ENV}"
            "=HOST[:PORT] to choose the registry for names without one",
        )
    value = value.removeprefix("https://").removeprefix("http://").rstrip("/")
    try:
        return check_host(value).lower()
    except DistillError:
        raise DistillError(
            f"{DEFAULT_REGISTRY_ENV}={value!r} is not a registry host",
            hint="set it to HOST or HOST:PORT, without a path",
        ) from None


def _looks_like_host(component: str) -> bool:
    # docker's rule: a first component is a host only if it could not be a repository.
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or (component.startswith("["))
    )


def _split_host(name: str, original: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and _looks_like_host(first):
        try:
            check_host(first)
        except DistillError:
            raise DistillError(
                f"{first!r} is not a registry host in {original!r}", hint=_FORM_HINT
            ) from None
        return first.lower(), rest
    host = default_registry()
    if "/" not in name:
        name = f"library/{name}"
    return host, name


def parse_reference(text: str) -> ImageReference:
    """Parse ``[docker://]HOST[:PORT]/REPO[:TAG][@sha256:HEX]`` (see the module docstring)."""
    body = text.strip().removeprefix(TRANSPORT_PREFIX)
    if not body:
        raise DistillError(f"empty image reference {text!r}", hint=_FORM_HINT)
    first, sep, path = body.partition("/")
    if sep and "@" in first:
        # "USER:PASS@HOST/REPO": an '@' can only start a digest after the last '/'.
        host = first.rpartition("@")[2]
        raise DistillError(
            f"the image reference {TRANSPORT_PREFIX}…@{one_line(host, 100)}/"
            f"{one_line(path, 200)} carries credentials; they do not belong in a reference",
            hint="write the reference without USER:PASS@ and pass the credentials with "
            "--creds USER:PASS (or DISTILL_REGISTRY_AUTH=USER:PASS, or 'podman login')",
        )
    name, at, digest = body.partition("@")
    if at:
        check_digest(digest)
    tag: str | None = None
    # A ':' after the last '/' starts the tag; one before it belongs to the host's port.
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise DistillError(
                f"{tag!r} is not a valid tag in {text!r}",
                hint="tags are up to 128 letters, digits, '_', '.' and '-', not starting "
                "with '.' or '-'",
            )
    host, repository = _split_host(name, text)
    components = repository.split("/")
    if not all(_PATH_COMPONENT.fullmatch(c) for c in components):
        raise DistillError(
            f"{repository!r} is not a valid repository name in {text!r}",
            hint="repository names are lower case: letters, digits and '.', '_', '-' between "
            "them, components joined by '/'",
        )
    if len(host) + 1 + len(repository) > MAX_NAME_LENGTH:
        raise DistillError(
            f"the image name in {text!r} is longer than {MAX_NAME_LENGTH} characters",
            hint="use a shorter repository name",
        )
    if tag is None and not at:
        tag = DEFAULT_TAG
    return ImageReference(host, repository, tag, digest if at else None)
