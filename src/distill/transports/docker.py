"""``docker://HOST/REPO[:TAG|@DIGEST]``: a repository in a registry, read as a ``BlobStore``
(``image.partial.load_top``) and written with ``registry.push``.

What comes from where, and what checks it:

* the top manifest or index: ``GET /v2/REPO/manifests/TAG|DIGEST`` through
  :class:`~distill.registry.client.RegistryClient`, which checks it against the digest it
  was asked by (by tag: against the registry's ``Docker-Content-Digest``). It is fetched
  once, when the image is opened, so a missing tag or wrong credentials fail right away.
* the manifests an index lists: the manifests endpoint again, by digest.
* configs and layers: ``GET /v2/REPO/blobs/DIGEST`` as a
  :class:`~distill.registry.blobstream.BlobStream`, read as the caller reads (never held in
  memory), resumed with ``Range`` when the connection drops, and checked against the
  digest and size at its end.

``load_top`` then does for a registry what it does for a layout: platform choice, config
parsing, and each layer's checks of its digest, size and diff_id (of the decompressed tar)
when it is read to the end. The blob digest is thus checked twice, once by each side; the
registry's message (naming ``HOST/REPO@DIGEST``) comes first.

Credentials and TLS come from ``Access``: its ``credentials`` first, then
``DISTILL_REGISTRY_AUTH`` and the podman/docker auth files; https, with plain http allowed
for hosts on this machine, or for any host with ``tls_verify=False``. So are the limits
(:mod:`distill.net.deadline`): every request has ``DISTILL_TIMEOUT`` seconds, and a blob read
from here fails when it stalls or moves slower than ``DISTILL_MIN_RATE`` (measured as it
is read: the readers above read each layer straight through, as it arrives).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from distill.context import Access
from distill.errors import DistillError
from distill.image.descriptor import Descriptor
from distill.image.mediatypes import INDEX_TYPES, MANIFEST_TYPES
from distill.image.model import Top
from distill.image.partial import load_top
from distill.registry.client import Manifest, RegistryClient
from distill.registry.push import check_push_access, push_image
from distill.registry.reference import ImageReference, parse_reference
from distill.transports import Opened, Progress, Reference, WriteResult


class RegistryStore:
    """The blobs of one repository in a registry. It owns ``client`` and closes it."""

    def __init__(self, client: RegistryClient, ref: ImageReference, top: Manifest) -> None:
        self.client = client
        self.ref = ref
        self.top = top
        self.origin = f"{client.host}/{ref.repository}"  # where a cross-repo mount takes it

    @property
    def descriptor(self) -> Descriptor:
        """The top manifest or index, as ``load_top`` starts from it."""
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


def open_registry(reference: str | ImageReference, access: Access) -> RegistryStore:
    """Connect to the registry ``reference`` (``[docker://]HOST/REPO:TAG`` or ``@DIGEST``)
    names and fetch its manifest or index. The caller closes the store."""
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    client = RegistryClient.for_access(ref.host, access)
    try:
        top = client.get_manifest(ref.repository, ref.reference)
    except BaseException:
        client.close()
        raise
    return RegistryStore(client, ref, top)


@dataclass(frozen=True)
class DockerReference(Reference, transport="docker"):
    ref: ImageReference

    @classmethod
    def parse(cls, rest: str) -> DockerReference:
        if not rest.strip("/"):
            raise DistillError(
                "docker:// names no repository", hint="write docker://HOST/REPO[:TAG]"
            )
        return cls(parse_reference(rest))

    def __str__(self) -> str:
        return f"docker://{self.ref}"

    def open(self, access: Access) -> Opened:
        store = open_registry(self.ref, access)
        try:
            return Opened(load_top(store, store.descriptor, str(self)), store.close)
        except BaseException:
            store.close()
            raise

    def check_writable(self, access: Access, *, inputs: Sequence[Path | str] = ()) -> None:
        check_push_access(self.ref, access)

    def write(
        self, top: Top, access: Access, *, mtime: int = 0, progress: Progress | None = None
    ) -> WriteResult:
        result = push_image(top, self.ref, access=access, progress=progress)
        return WriteResult(result.descriptor, result.uploaded, result.skipped, result.mounted)
