"""Every media type distill reads or writes, OCI and docker schema 2, in one place."""

from __future__ import annotations

MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"  # +gzip, +zstd: see Compression

MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

INDEX_TYPES = frozenset({MEDIA_TYPE_INDEX, MEDIA_TYPE_DOCKER_LIST})
MANIFEST_TYPES = frozenset({MEDIA_TYPE_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({MEDIA_TYPE_CONFIG, MEDIA_TYPE_DOCKER_CONFIG})
