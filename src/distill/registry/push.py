"""Push an image (any ``Image`` or ``Index``) to a registry: ``docker://HOST/REPO:TAG``.

Order matters to registries, which refuse a manifest listing blobs they do not have:
every blob (layers and configs) first, in parallel, each skipped when the repository
already has it (HEAD) and mounted when it is in another repository of the same registry;
then each platform's manifest (and nested index) by digest; then the top manifest (or
index) under the tag, last, and only when everything before it succeeded. Manifests,
configs and indexes go up as the exact bytes read or built, so digests are kept.

Blobs that are ranges of local files (a layout's blob, an archive's member, a built layer)
are sent straight from the file; the registry checks each upload against its digest, so a
damaged blob fails the push instead of publishing an image whose digests lie. Blobs from
elsewhere (another registry) are read through their checking reader into a temporary
file first, which also lets a failed upload be retried.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from distill import tempfiles
from distill.context import Access
from distill.errors import DistillError
from distill.image.descriptor import Descriptor
from distill.image.layer import Layer
from distill.image.model import Index, Top
from distill.registry.client import BlobPushed, RegistryClient
from distill.registry.reference import ImageReference, parse_reference
from distill.registry.session import Body

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class PushResult:
    """Where the image went, its top descriptor, and which blobs were sent, skipped (the
    repository had them) or mounted from another repository."""

    reference: ImageReference  # with the pushed digest filled in
    descriptor: Descriptor
    uploaded: tuple[str, ...]
    skipped: tuple[str, ...]
    mounted: tuple[str, ...] = ()


def _collect(top: Top, blobs: dict[str, bytes | Layer]) -> None:
    if isinstance(top, Index):
        for _, child in top.children():
            _collect(child, blobs)
        return
    blobs[top.config_descriptor.digest] = top.config_bytes
    for layer in top.layers:
        blobs.setdefault(layer.digest, layer)


def _mount_source(layer: Layer, host: str, repository: str) -> str | None:
    """The repository of this registry the layer was read from, if another."""
    if layer.origin is None:
        return None
    origin_host, _, origin_repo = layer.origin.partition("/")
    return origin_repo if origin_host == host and origin_repo != repository else None


def _send(
    client: RegistryClient,
    repository: str,
    digest: str,
    content: bytes | Layer,
    mount_from: str | None,
) -> BlobPushed:
    if isinstance(content, bytes):
        return client.push_blob(repository, content, digest, mount_from=mount_from)
    mount = mount_from or _mount_source(content, client.host, repository)
    file = content.file()
    if file is not None:
        with file:
            body = Body(path=file.path, offset=file.offset, length=file.size)
        return client.push_blob(repository, body, digest, mount_from=mount)
    if client.blob_exists(repository, digest, for_push=True):
        return BlobPushed.SKIPPED
    if mount is not None and client.try_mount(repository, digest, mount):
        return BlobPushed.MOUNTED
    with tempfiles.spool_tempdir("distill-blob") as spool_dir:
        spool = Path(spool_dir) / "blob"
        with content.open_compressed() as source, spool.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        return client.push_blob(repository, Body(path=spool, length=content.size), digest)


def _push_blobs(
    client: RegistryClient,
    repository: str,
    blobs: dict[str, bytes | Layer],
    jobs: int,
    mount_from: str | None,
    progress: Progress | None,
) -> dict[BlobPushed, list[str]]:
    outcome: dict[BlobPushed, list[str]] = {kind: [] for kind in BlobPushed}

    def one(digest: str, content: bytes | Layer) -> BlobPushed:
        done = _send(client, repository, digest, content, mount_from)
        if progress is not None and isinstance(content, Layer):
            progress(content.size)
        return done

    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(blobs))))
    try:
        futures = {pool.submit(one, digest, content): digest for digest, content in blobs.items()}
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            exc = future.exception()
            if exc is not None:
                raise exc
        for future, digest in futures.items():
            outcome[future.result()].append(digest)
    except BaseException:
        # A failed blob, SIGTERM or Ctrl-C: the uploads still running stop mid-body and
        # cancel their sessions rather than send what will not be tagged; queued ones are
        # dropped.
        client.abort_uploads()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        client.abort_uploads(False)
    return outcome


def _push_children(client: RegistryClient, repository: str, top: Top) -> None:
    """Every manifest and nested index under ``top``, by digest, bottom up."""
    if not isinstance(top, Index):
        return
    for _, child in top.children():
        _push_children(client, repository, child)
        data = child.index_bytes if isinstance(child, Index) else child.manifest_bytes
        client.push_manifest(repository, child.digest, child.media_type, data)


def check_push_access(destination: ImageReference | str, access: Access) -> ImageReference:
    """Fail early (before a build, say) when ``destination`` could not be pushed to: the
    registry is unreachable, or the credentials are missing, wrong or may only pull. Costs
    two requests, plus the login; returns the parsed reference."""
    ref = parse_reference(destination) if isinstance(destination, str) else destination
    with RegistryClient.for_access(ref.host, access) as client:
        client.check_push(ref.repository)
    return ref


def push_image(
    target: Top,
    destination: ImageReference | str,
    *,
    access: Access | None = None,
    client: RegistryClient | None = None,
    mount_from: str | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Push ``target`` (one image or a multi-platform index) to ``destination``.

    ``destination`` is ``[docker://]HOST/REPO[:TAG][@sha256:…]``: with a tag (``latest``
    if none is written) the image is tagged; with only a digest it must be the image's
    digest. A ``client`` for the same host may be passed to reuse its connections and
    tokens; otherwise one is made from ``access``. ``mount_from`` names a repository on the
    same registry to mount blobs from (blobs read from this registry are mounted from where
    they were read without it).
    """
    access = access or Access()
    ref = parse_reference(destination) if isinstance(destination, str) else destination
    if isinstance(target, Index):
        top, top_bytes = target.descriptor, target.index_bytes
    else:
        # The top manifest has no platform in a registry; the descriptor describes bytes.
        top, top_bytes = target.descriptor.bare(), target.manifest_bytes
    if ref.digest is not None and ref.digest != top.digest:
        raise DistillError(
            f"cannot push the image {top.digest} as {ref}",
            hint="leave out the @digest (it is computed), or push by a tag",
        )
    blobs: dict[str, bytes | Layer] = {}
    _collect(target, blobs)
    if client is not None and client.host != ref.host:
        raise DistillError(
            f"a client for {client.host} cannot push to {ref.host}",
            hint="this is a bug in distill: make a client for the destination's host",
        )
    own = client is None
    active = client or RegistryClient.for_access(ref.host, access)
    try:
        outcome = _push_blobs(active, ref.repository, blobs, access.jobs, mount_from, progress)
        _push_children(active, ref.repository, target)
        active.push_manifest(ref.repository, ref.tag or top.digest, top.media_type, top_bytes)
    finally:
        if own:
            active.close()
    return PushResult(
        ref.with_digest(top.digest),
        top,
        tuple(sorted(outcome[BlobPushed.UPLOADED])),
        tuple(sorted(outcome[BlobPushed.SKIPPED])),
        tuple(sorted(outcome[BlobPushed.MOUNTED])),
    )
