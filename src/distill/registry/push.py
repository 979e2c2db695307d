"""Push an image built by :mod:`distill.image` to a registry: ``docker://HOST/REPO:TAG``.

Order matters to registries, which refuse a manifest listing blobs they do not have:
every blob (layers and configs) first, in parallel, each skipped when the repository
already has it; then each platform's manifest by digest; then the top manifest (or index)
under the tag. The registry checks every upload against its digest, so a damaged layer
file fails the push instead of publishing an image whose digests lie.
"""

from __future__ import annotations

from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from distill.errors import DistillError
from distill.image.build import MEDIA_TYPE_MANIFEST, BuiltImage, Descriptor, ImageIndex
from distill.registry.auth import Credentials
from distill.registry.client import RegistryClient
from distill.registry.reference import ImageReference, parse_reference
from distill.transports.write import Target

DEFAULT_PUSH_JOBS = 4


@dataclass(frozen=True, slots=True)
class PushResult:
    """Where the image went, its top descriptor, and which blobs were sent or skipped."""

    reference: ImageReference  # with the pushed digest filled in
    descriptor: Descriptor
    uploaded: tuple[str, ...]
    skipped: tuple[str, ...]


def _images(target: Target) -> tuple[BuiltImage, ...]:
    return target.images if isinstance(target, ImageIndex) else (target,)


def _blobs(target: Target) -> dict[str, Path | bytes]:
    """Every blob by digest, each once (platforms share layers and sometimes configs)."""
    blobs: dict[str, Path | bytes] = {}
    for image in _images(target):
        for layer in image.layers:
            try:
                size = layer.path.stat().st_size
            except OSError as exc:
                raise DistillError(
                    f"cannot read the layer {layer.digest} at {layer.path}: {exc.strerror or exc}",
                    hint="the layer cache changed since the build; build the image again",
                ) from exc
            if size != layer.size:
                raise DistillError(
                    f"the layer file {layer.path} has {size} bytes, not {layer.size}",
                    hint="the layer cache is damaged; build the image again",
                )
            blobs[layer.digest] = layer.path
        blobs[image.config_descriptor.digest] = image.config
    return blobs


def _top(target: Target) -> tuple[Descriptor, bytes]:
    if isinstance(target, ImageIndex):
        return target.descriptor, target.index
    descriptor = target.descriptor
    # The top manifest has no platform in a registry; the descriptor describes bytes only.
    return Descriptor(descriptor.media_type, descriptor.digest, descriptor.size), target.manifest


def _push_blobs(
    client: RegistryClient,
    repository: str,
    blobs: dict[str, Path | bytes],
    jobs: int,
    mount_from: str | None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    uploaded: list[str] = []
    skipped: list[str] = []
    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(blobs))))
    try:
        futures = {
            pool.submit(client.push_blob, repository, source, digest, mount_from=mount_from): (
                digest
            )
            for digest, source in blobs.items()
        }
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            exc = future.exception()
            if exc is not None:
                raise exc
        for future, digest in futures.items():
            (uploaded if future.result() else skipped).append(digest)
    finally:
        # After a failure, queued uploads are dropped; running ones finish (they cannot be
        # interrupted mid-request), which is harmless: blobs alone are not an image.
        pool.shutdown(wait=True, cancel_futures=True)
    return tuple(sorted(uploaded)), tuple(sorted(skipped))


def check_push_access(
    destination: ImageReference | str,
    *,
    tls_verify: bool = True,
    credentials: Credentials | None = None,
) -> ImageReference:
    """Fail early (before a build, say) when ``destination`` could not be pushed to: the
    registry is unreachable, or the credentials are missing, wrong or may only pull. Costs
    two requests, plus the login; returns the parsed reference."""
    ref = parse_reference(destination) if isinstance(destination, str) else destination
    with RegistryClient(ref.host, tls_verify=tls_verify, credentials=credentials) as client:
        client.check_push(ref.repository)
    return ref


def push_image(
    target: Target,
    destination: ImageReference | str,
    *,
    client: RegistryClient | None = None,
    tls_verify: bool = True,
    credentials: Credentials | None = None,
    jobs: int = DEFAULT_PUSH_JOBS,
    mount_from: str | None = None,
) -> PushResult:
    """Push ``target`` (one image or a multi-platform index) to ``destination``.

    ``destination`` is ``[docker://]HOST/REPO[:TAG][@sha256:…]``: with a tag (``latest``
    if none is written) the image is tagged; with only a digest it must be the image's
    digest. A ``client`` for the same host may be passed to reuse its connections and
    tokens; otherwise one is made from ``tls_verify`` and ``credentials``. ``mount_from``
    names a repository on the same registry to mount shared blobs from instead of
    uploading them.
    """
    ref = parse_reference(destination) if isinstance(destination, str) else destination
    top, top_bytes = _top(target)
    if ref.digest is not None and ref.digest != top.digest:
        raise DistillError(
            f"cannot push the image {top.digest} as {ref}",
            hint="leave out the @digest (it is computed), or push by a tag",
        )
    blobs = _blobs(target)
    if client is not None and client.host != ref.host:
        raise DistillError(
            f"a client for {client.host} cannot push to {ref.host}",
            hint="this is a bug in distill: make a client for the destination's host",
        )
    own = client is None
    active = client or RegistryClient(ref.host, tls_verify=tls_verify, credentials=credentials)
    try:
        uploaded, skipped = _push_blobs(active, ref.repository, blobs, jobs, mount_from)
        if isinstance(target, ImageIndex):
            for image in target.images:
                active.push_manifest(
                    ref.repository, image.descriptor.digest, MEDIA_TYPE_MANIFEST, image.manifest
                )
        active.push_manifest(ref.repository, ref.tag or top.digest, top.media_type, top_bytes)
    finally:
        if own:
            active.close()
    return PushResult(ref.with_digest(top.digest), top, uploaded, skipped)
