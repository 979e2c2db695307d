"""A client for the OCI distribution API (docker's registry API v2).

Pulls check what they receive: a manifest pulled by digest must hash to it (by tag, its
digest is computed, and compared with the registry's ``Docker-Content-Digest``), and a
blob stream raises at its end unless its bytes hash to the digest they were asked for.
Pushes leave the checking to the registry, which refuses an upload whose bytes do not
match the ``digest`` it is completed with.

Blobs up to ``upload_chunk_size`` go up in one PUT; larger ones in PATCH requests of that
size (for proxies that limit request bodies), then a PUT to complete. A failed upload is
cancelled and, when the failure was transient, started over with a new session.

How the registry is reached and authenticated: :mod:`distill.registry.session` and
:mod:`distill.registry.auth`.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple, cast

import requests

from distill.bounded import parse_json_object, read_capped
from distill.context import Access, Credentials
from distill.errors import DistillError
from distill.image.digest import sha256_digest
from distill.image.mediatypes import (
    MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST,
)
from distill.net.deadline import Deadline, Limits, check_location
from distill.net.http import DEFAULT_RETRY, NETWORK_ERRORS, RetryPolicy, Transient, range_headers
from distill.registry.blobstream import BlobStream
from distill.registry.reference import check_digest, check_manifest_reference, check_repository
from distill.registry.session import (
    Body,
    RegistrySession,
    errors_text,
    pull_scope,
    push_scope,
)

DEFAULT_ACCEPT = (
    MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST,
)
# Content-Types that say nothing about the manifest; its mediaType field says more.
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})
MAX_MANIFEST_SIZE = 4 << 20  # containers/image's limit too
DEFAULT_UPLOAD_CHUNK = 32 << 20


@dataclass(slots=True)
class _Upload:
    """An upload session: its URL moves with every answer (distribution's carries state),
    and only the latest one completes or cancels it."""

    location: str


class BlobPushed(IntEnum):
    """What ``push_blob`` did; false only when nothing had to be done."""

    SKIPPED = 0
    UPLOADED = 1
    MOUNTED = 2


class Manifest(NamedTuple):
    """A pulled manifest: its media type, its bytes as served and their digest."""

    media_type: str
    data: bytes
    digest: str


def _content_type(resp: requests.Response) -> str:
    return resp.headers.get("Content-Type", "").partition(";")[0].strip().lower()


def _with_query(url: str, **params: str) -> str:
    # Upload URLs carry the registry's own state (distribution's "_state"): keep it.
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class RegistryClient:
    """Pull and push through one registry, ``host`` as ``name[:port]``. Thread-safe: one
    client may serve parallel transfers. Close it (or use ``with``) to free connections.

    ``credentials`` come first; without them, the environment and the auth files are
    searched (see :mod:`distill.registry.auth`)."""

    def __init__(
        self,
        host: str,
        *,
        tls_verify: bool = True,
        credentials: Credentials | None = None,
        session: requests.Session | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        upload_chunk_size: int = DEFAULT_UPLOAD_CHUNK,
        limits: Limits | None = None,
    ) -> None:
        self._http = RegistrySession(
            host,
            tls_verify=tls_verify,
            credentials=credentials,
            session=session,
            retry=retry,
            limits=limits,
        )
        self.host = self._http.host
        self.tls_verify = tls_verify
        self.retry = retry
        self.upload_chunk_size = max(upload_chunk_size, 1)

    @classmethod
    def for_access(cls, host: str, access: Access) -> RegistryClient:
        """A client for ``host`` with ``access``'s TLS, credentials and limits."""
        return cls(
            host,
            tls_verify=access.tls_verify,
            credentials=access.credentials,
            limits=access.limits,
        )

    @property
    def base_url(self) -> str:
        """``https://HOST`` or ``http://HOST``, decided by the first request."""
        return self._http.base_url

    def ping(self) -> None:
        """Check that ``host`` speaks the registry API (and learn how it authenticates)."""
        self._http.ping()

    def close(self) -> None:
        self._http.close()

    def abort_uploads(self, abort: bool = True) -> None:
        """Stop the blob uploads in flight in other threads (each then cancels its upload
        session) and refuse new ones, until called with ``abort=False``."""
        self._http.abort_uploads(abort)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- pull ----------------------------------------------------------------------------

    def get_manifest(
        self, repository: str, reference: str, accept: Sequence[str] = DEFAULT_ACCEPT
    ) -> Manifest:
        """The manifest (or index) ``repository:reference``; by digest it must match."""
        by_digest = ":" in check_manifest_reference(reference)
        label = f"{repository}@{reference}" if by_digest else f"{repository}:{reference}"
        resp = self._http.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            scopes=[pull_scope(repository)],
            action="pull",
            headers={"Accept": ", ".join(accept)},
            stream=True,
        )
        with resp:
            if resp.status_code == 404:
                detail = errors_text(resp)
                raise DistillError(
                    f"manifest unknown: {label} (on {self.host})",
                    hint="check the repository and tag"
                    + (f" (registry says {detail})" if detail else ""),
                )
            if resp.status_code != 200:
                raise self._http.fail(resp, repository, "pull")
            where = f"the manifest {label} from {self.host}"
            try:
                data = self._http.read_body(resp, MAX_MANIFEST_SIZE, where)
            except NETWORK_ERRORS as exc:
                raise DistillError(
                    f"the connection to {self.host} broke while reading the manifest {label}",
                    hint="try again; check the network",
                ) from exc
        doc = parse_json_object(data, where)  # before anything else reads it
        digest = sha256_digest(data)
        served = resp.headers.get("Docker-Content-Digest", "")
        if (by_digest and digest != reference) or (
            served.startswith("sha256:") and served != digest
        ):
            raise DistillError(
                f"the manifest {label} from {self.host} has digest {digest}, not "
                f"{reference if by_digest else served}",
                hint="the registry served damaged or different content; try again, or tell "
                "the registry's operator",
            )
        media_type = _content_type(resp)
        if media_type in _GENERIC_TYPES:
            media_type = _declared_media_type(doc) or media_type
        if media_type not in accept:
            raise DistillError(
                f"the manifest {label} is {media_type or 'of no declared type'}",
                hint="distill reads " + ", ".join(accept),
            )
        return Manifest(media_type, data, digest)

    def blob_exists(self, repository: str, digest: str, *, for_push: bool = False) -> bool:
        """True when ``repository`` has the blob (a HEAD request)."""
        check_digest(digest)
        scope = push_scope(repository) if for_push else pull_scope(repository)
        with self._http.request(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            repository=repository,
            scopes=[scope],
            action="push" if for_push else "pull",
        ) as resp:
            if resp.status_code == 200:
                return True
            if resp.status_code == 404:
                return False
            raise self._http.fail(resp, repository, "check for a blob in")

    def open_blob(self, repository: str, digest: str, *, size: int | None = None) -> BlobStream:
        """A stream of the blob's bytes. It raises DistillError when it reaches the end and
        the bytes do not hash to ``digest`` (or number other than ``size``): use the data
        only after reading to the end. Redirects are followed."""
        check_digest(digest)
        deadline = self._http.limits.transfer(
            self._http.describe("GET", f"/v2/{repository}/blobs/{digest}")
        )
        return BlobStream(
            lambda offset: self._open_blob(repository, digest, offset, deadline),
            f"{self.host}/{repository}",
            digest,
            size,
            self.retry,
            deadline,
        )

    def _open_blob(
        self, repository: str, digest: str, offset: int, deadline: Deadline
    ) -> requests.Response:
        # identity: the bytes must arrive as stored, or they would not hash to the digest.
        headers = {"Accept-Encoding": "identity", **range_headers(offset)}
        resp = self._http.request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            repository=repository,
            scopes=[pull_scope(repository)],
            action="pull",
            headers=headers,
            stream=True,
            deadline=deadline,
        )
        if resp.status_code in (200, 206):
            return resp
        with resp:
            if resp.status_code == 404:
                raise DistillError(
                    f"blob unknown: {repository}@{digest} (on {self.host})",
                    hint="the registry lacks a blob its manifest lists; the image is damaged",
                )
            raise self._http.fail(resp, repository, "pull")

    def fetch_blob(self, repository: str, digest: str, *, max_size: int = 64 << 20) -> bytes:
        """A small blob (an image config) in memory, verified."""
        with self.open_blob(repository, digest) as stream:
            data = read_capped(
                cast(IO[bytes], stream),
                max_size,
                f"the blob {repository}@{digest} from {self.host}",
                hint="this is not a blob distill reads into memory",
            )
            stream.read()  # to the end, so the digest is checked
        return data

    # --- push ----------------------------------------------------------------------------

    def push_blob(
        self,
        repository: str,
        source: Path | bytes | Body,
        digest: str,
        *,
        mount_from: str | None = None,
    ) -> BlobPushed:
        """Upload a blob unless the repository has it: ``SKIPPED`` (false) when it had it,
        else ``UPLOADED``, or ``MOUNTED`` from ``mount_from``, another repository of this
        registry. ``source`` is the bytes, a file, or a ``Body`` (a range of a file)."""
        check_digest(digest)
        if self.blob_exists(repository, digest, for_push=True):
            return BlobPushed.SKIPPED
        if isinstance(source, Body):
            body = source
        elif isinstance(source, bytes):
            body = Body(data=source)
        else:
            try:
                size = source.stat().st_size
            except OSError as exc:
                raise DistillError(
                    f"cannot read {source}: {exc.strerror or exc}",
                    hint="the blob to upload is missing; build the image again",
                ) from exc
            body = Body(path=source, length=size)
        last: Transient | None = None
        for attempt in range(max(self.retry.attempts, 1)):
            if last is not None:
                time.sleep(self.retry.pause(attempt - 1, None, self._http.limits.timeout))
            location = self._start_upload(repository, digest, mount_from)
            if location is None:
                return BlobPushed.MOUNTED
            upload = _Upload(location)
            try:
                self._upload(repository, upload, body, digest)
                return BlobPushed.UPLOADED
            except Transient as exc:
                last = exc
                self._cancel_upload(repository, upload.location)
            except BaseException:
                self._cancel_upload(repository, upload.location)
                raise
        assert last is not None
        raise DistillError(
            f"could not upload {digest} to {self.host}/{repository} after "
            f"{self.retry.attempts} attempts ({last.reason})",
            hint="the registry or the network is having trouble; try again later",
        )

    def try_mount(self, repository: str, digest: str, mount_from: str) -> bool:
        """Mount the blob from ``mount_from`` (a repository of this registry) without
        sending it; False when the registry would rather have it uploaded."""
        check_digest(digest)
        location = self._start_upload(repository, digest, mount_from)
        if location is None:
            return True
        self._cancel_upload(repository, location)
        return False

    def check_push(self, repository: str) -> None:
        """Raise DistillError unless ``repository`` takes uploads from us: the registry is
        reachable and the credentials may push. An upload is started, then cancelled."""
        location = self._start_upload(repository, "", None)
        if location is not None:
            self._cancel_upload(repository, location)

    def _start_upload(self, repository: str, digest: str, mount_from: str | None) -> str | None:
        """The upload URL, or None when the blob was mounted from another repository."""
        path = f"/v2/{repository}/blobs/uploads/"
        scopes = [push_scope(repository)]
        if mount_from:
            check_repository(mount_from)
            path = _with_query(path, mount=digest, **{"from": mount_from})
            scopes.append(pull_scope(mount_from))
        # The URL does not say which blob the upload is for; a failure must.
        what = f"the upload of {digest} to {repository} on the registry {self.host}"
        with self._http.request(
            "POST",
            path,
            repository=repository,
            scopes=scopes,
            action="push",
            what=what if digest else None,
        ) as resp:
            if resp.status_code == 201 and mount_from:
                return None
            location = resp.headers.get("Location")
            if resp.status_code != 202 or not location:
                raise self._http.fail(resp, repository, "push")
            return self._upload_location(resp, location)

    def _upload_location(self, resp: requests.Response, location: str) -> str:
        return check_location(
            resp.url,
            location,
            verify=self.tls_verify,
            what=self._http.describe(resp.request.method or "POST", resp.url),
        )

    def _upload(self, repository: str, upload: _Upload, body: Body, digest: str) -> None:
        size = body.size
        if size > self.upload_chunk_size:
            self._upload_chunks(repository, upload, body)
            body = Body(data=b"")
        resp = self._http.request(
            "PUT",
            _with_query(upload.location, digest=digest),
            repository=repository,
            scopes=[push_scope(repository)],
            action="push",
            headers={"Content-Type": "application/octet-stream"},
            body=body,
            retry_transient=False,
        )
        with resp:
            if resp.status_code not in (201, 204):
                if "DIGEST_INVALID" in errors_text(resp):
                    raise DistillError(
                        f"the registry {self.host} found that the uploaded blob is not {digest}",
                        hint="the local blob is damaged (its file no longer matches its "
                        "name); build the image again",
                    )
                raise self._http.fail(resp, repository, "push")
            served = resp.headers.get("Docker-Content-Digest", digest)
            if served.startswith("sha256:") and served != digest:
                raise DistillError(
                    f"the registry {self.host} stored {served} for the blob {digest}",
                    hint="the registry or something in between altered the upload",
                )

    def _upload_chunks(self, repository: str, upload: _Upload, body: Body) -> None:
        """Send every byte with PATCH requests; ``upload.location`` follows the registry's
        answers (the URL to complete, or cancel, the upload at)."""
        offset, size = 0, body.size
        refusals = 0
        while offset < size:
            length = min(self.upload_chunk_size, size - offset)
            chunk = (
                Body(data=body.data[offset : offset + length])
                if body.data is not None
                else Body(path=body.path, offset=body.offset + offset, length=length)
            )
            resp = self._http.request(
                "PATCH",
                upload.location,
                repository=repository,
                scopes=[push_scope(repository)],
                action="push",
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                body=chunk,
                retry_transient=False,
            )
            with resp:
                new_location = resp.headers.get("Location")
                if resp.status_code == 416:
                    # The registry has a different amount: carry on from there (a few
                    # times; a registry that keeps refusing gets a fresh upload instead).
                    refusals += 1
                    if refusals > 3:
                        raise Transient("the registry kept refusing upload chunks (HTTP 416)")
                    offset = _range_end(resp.headers.get("Range")) + 1
                elif resp.status_code == 202:
                    offset += length
                else:
                    raise self._http.fail(resp, repository, "push")
                if new_location:
                    upload.location = self._upload_location(resp, new_location)
            if not 0 <= offset <= size:
                raise Transient("the registry lost track of the upload")

    def _cancel_upload(self, repository: str, location: str) -> None:
        # Best effort: the registry expires abandoned uploads anyway.
        try:
            with self._http.request(
                "DELETE",
                location,
                repository=repository,
                scopes=[push_scope(repository)],
                action="push",
                retry_transient=False,
            ):
                pass
        except (DistillError, Transient):
            pass

    def push_manifest(self, repository: str, reference: str, media_type: str, data: bytes) -> str:
        """Store a manifest (or index) under a tag or its digest; returns its digest. The
        blobs (and, for an index, the manifests) it lists must be pushed first."""
        digest = sha256_digest(data)
        if ":" in check_manifest_reference(reference) and reference != digest:
            raise DistillError(
                f"cannot push a manifest with digest {digest} as {reference}",
                hint="a manifest can only be pushed by its own digest",
            )
        with self._http.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            scopes=[push_scope(repository)],
            action="push",
            headers={"Content-Type": media_type},
            body=Body(data=data),
        ) as resp:
            if resp.status_code not in (200, 201):
                raise self._http.fail(
                    resp, repository, f"push the manifest {repository}:{reference}"
                )
            served = resp.headers.get("Docker-Content-Digest", digest)
        if served.startswith("sha256:") and served != digest:
            raise DistillError(
                f"the registry {self.host} stored the manifest as {served}, not {digest}",
                hint="the registry rewrote the manifest; pull by the tag, not the digest",
            )
        return digest


def _range_end(value: str | None) -> int:
    # "0-1023" (or "bytes=0-1023"): the last byte the registry has.
    text = (value or "").removeprefix("bytes=")
    end = text.partition("-")[2]
    return int(end) if end.isascii() and end.isdigit() and len(end) < 19 else -1


def _declared_media_type(doc: dict[str, Any]) -> str | None:
    """The type a manifest served without a useful Content-Type says it has."""
    if doc.get("schemaVersion") != 2:
        return None
    declared = doc.get("mediaType")
    if isinstance(declared, str):
        return declared
    # The OCI spec lets mediaType be left out; an index is the one that lists manifests.
    return MEDIA_TYPE_INDEX if "manifests" in doc else MEDIA_TYPE_MANIFEST
