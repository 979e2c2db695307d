"""``docker://HOST/REPO:TAG`` and ``docker://HOST/REPO@DIGEST``: a registry as the
``BlobStore`` behind :class:`~distill.analyze.source.ManifestImage`.

What comes from where, and what checks it:

* the top manifest or index: ``GET /v2/REPO/manifests/TAG|DIGEST`` through
  :class:`~distill.registry.client.RegistryClient`, which checks it against the digest it
  was asked by (by tag: against the registry's ``Docker-Content-Digest``). It is fetched
  once, when the image is opened, so a missing tag or wrong credentials fail right away.
* the manifests an index lists: the manifests endpoint again, by digest.
* configs and layers: ``GET /v2/REPO/blobs/DIGEST`` as a
  :class:`~distill.registry.stream.BlobStream`, read as the caller reads (never held in
  memory), resumed with ``Range`` when the connection drops, and checked against the
  digest and size at its end.

``ManifestImage`` then does for a registry what it does for a layout: platform choice,
config parsing, and ``LayerStream``'s checks of each layer's digest, size and diff_id (of
the decompressed tar) when it is read to the end. The blob digest is thus checked twice,
once by each side; the registry's message (naming ``HOST/REPO@DIGEST``) comes first.

Credentials and TLS are the registry client's: ``credentials`` first, then
``DISTILL_REGISTRY_AUTH`` and the podman/docker auth files; https, with plain http allowed
for hosts on this machine, or for any host with ``tls_verify=False``. So are the limits
(:mod:`distill.deadline`): every request has ``DISTILL_TIMEOUT`` seconds, and a blob read
from here fails when it stalls or moves slower than ``DISTILL_MIN_RATE`` (measured as it
is read: the readers above read each layer straight through, as it arrives).
"""

from __future__ import annotations

import io
from typing import BinaryIO, cast

from distill.analyze.source import INDEX_TYPES, MANIFEST_TYPES, ManifestImage
from distill.oci.image import Descriptor, Platform
from distill.registry.auth import Credentials
from distill.registry.client import Manifest, RegistryClient
from distill.registry.reference import ImageReference, parse_reference


class RegistryStore:
    """The blobs of one repository in a registry. It owns ``client`` and closes it."""

    def __init__(self, client: RegistryClient, ref: ImageReference, top: Manifest) -> None:
        self.client = client
        self.ref = ref
        self.top = top

    @property
    def descriptor(self) -> Descriptor:
        """The top manifest or index, as ``ManifestImage`` starts from it."""
        return Descriptor(self.top.media_type, self.top.digest, len(self.top.data))

    def open_blob(self, descriptor: Descriptor) -> BinaryIO:
        if descriptor.digest == self.top.digest:
            return io.BytesIO(self.top.data)
        if descriptor.media_type in INDEX_TYPES | MANIFEST_TYPES:
            manifest = self.client.get_manifest(self.ref.repository, descriptor.digest)
            return io.BytesIO(manifest.data)
        stream = self.client.open_blob(self.ref.repository, descriptor.digest, size=descriptor.size)
        return cast(BinaryIO, stream)

    def open_file(self, descriptor: Descriptor) -> None:
        return None  # blobs stream from the network

    def where(self, digest: str) -> str:
        # The blob's address: what `skopeo inspect` or a GET on the registry would take.
        return f"{self.ref.name}@{digest}"

    def close(self) -> None:
        self.client.close()


def open_registry(
    reference: str | ImageReference,
    *,
    tls_verify: bool = True,
    credentials: Credentials | None = None,
) -> RegistryStore:
    """Connect to the registry ``reference`` (``[docker://]HOST/REPO:TAG`` or ``@DIGEST``)
    names and fetch its manifest or index. The caller closes the store."""
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    client = RegistryClient(ref.host, tls_verify=tls_verify, credentials=credentials)
    try:
        top = client.get_manifest(ref.repository, ref.reference)
    except BaseException:
        client.close()
        raise
    return RegistryStore(client, ref, top)


def open_registry_image(
    reference: str | ImageReference,
    *,
    name: str | None = None,
    platform: Platform | None = None,
    tls_verify: bool = True,
    credentials: Credentials | None = None,
) -> ManifestImage:
    """The image ``reference`` names, for ``platform`` (default: this host's, or the only
    one there is): an ``ImageSource``. ``name`` is how messages call it (default: the
    reference as ``docker://HOST/REPO:TAG``). The caller closes it."""
    store = open_registry(reference, tls_verify=tls_verify, credentials=credentials)
    label = name or f"docker://{store.ref}"
    return ManifestImage(store, store.descriptor, name=label, platform=platform)
