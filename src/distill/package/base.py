"""What a planner may rely on about a base image, read from the image itself.

One streaming pass over the base's layers (``analyze.fsview``) gives the merged tree; the
catalog (``analyze.catalog``) reads its package databases and os-release from that same
pass. Versions come from what is installed, never from the base's name: the Python minor
from ``usr/lib/python3.X`` (the directory ``sys.path`` holds), glibc from ``libc6``, Java
from the ``openjdk-NN-jre*`` package, Node.js from the ``nodejs`` package or the component
distill installs from the npm registry.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

from distill.analyze.catalog import PackageType, catalog_view, want
from distill.analyze.fsview import FsView, NodeKind, analyse_fsview
from distill.bounded import parse_json
from distill.build.pipeline import release_version
from distill.cache import BlobCache
from distill.errors import DistillError
from distill.image.model import Image
from distill.image.partial import ImageReader
from distill.image.platform import Platform
from distill.package.plan import BaseFacts

_PYTHON_DIR = re.compile(r"usr/lib/python(3\.\d+)")
_JRE = re.compile(r"openjdk-(\d+)-(?:jre|jdk)(?:-headless)?")
_ARCHS = {"amd64": "amd64", "arm64": "arm64", "arm": "armhf", "386": "i386", "ppc64le": "ppc64el"}
NODE_NAMES = ("nodejs", "node")  # Debian's package, distill's npm-registry component


FACTS_NAMESPACE = "base-facts"
FACTS_VERSION = 1  # bump when what BaseFacts holds, or how it is read, changes


def base_facts(image: Image, name: str, cache: BlobCache | None = None) -> BaseFacts:
    """The facts of ``image`` (``name`` is for messages). With ``cache``, remembered by the
    image's config digest: the config names every layer's content (its diff_ids), so the
    same digest is the same filesystem, and a warm rebuild does not read the base again."""
    key = hashlib.sha256(f"{FACTS_VERSION}:{image.config_descriptor.digest}".encode()).hexdigest()
    if cache is not None:
        remembered = cache.get_derived(FACTS_NAMESPACE, key)
        if remembered is not None:
            facts = _from_json(remembered)
            if facts is not None:
                return facts
    source = ImageReader(image, name=name)
    try:
        facts = analyse_fsview(source, want, lambda view: _facts(view, image))
    finally:
        source.close()
    if cache is not None:
        cache.put_derived(FACTS_NAMESPACE, key, _to_json(facts))
    return facts


def _to_json(facts: BaseFacts) -> bytes:
    data = {
        "arch": facts.arch,
        "suite": facts.suite,
        "files": sorted(facts.files),
        "symlinks": dict(sorted(facts.symlinks.items())),
        "packages": dict(sorted(facts.packages.items())),
        "python": facts.python,
        "glibc": facts.glibc,
        "node": facts.node,
        "java": facts.java,
    }
    return json.dumps(data, separators=(",", ":")).encode()


def _from_json(raw: bytes) -> BaseFacts | None:
    """Facts written by ``_to_json``; None when the entry is not that (then they are read
    from the image again)."""
    try:
        data = parse_json(raw, "remembered base facts")
        optional = {k: data[k] for k in ("suite", "python", "glibc", "node", "java")}
        if not all(v is None or isinstance(v, str) for v in optional.values()):
            return None
        files, links, debs = data["files"], data["symlinks"], data["packages"]
        if not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
            return None
        for mapping in (links, debs):
            if not isinstance(mapping, dict) or not all(
                isinstance(v, str) for v in mapping.values()
            ):
                return None
        if not isinstance(data["arch"], str):
            return None
        return BaseFacts(arch=data["arch"], files=frozenset(files), symlinks=links, packages=debs,
                         **optional)  # fmt: skip
    except (DistillError, KeyError, TypeError):
        return None


def _facts(view: FsView, image: Image) -> BaseFacts:
    catalog = catalog_view(view)
    files = frozenset(view.nodes)
    symlinks = {p: n.linkname for p, n in view.nodes.items() if n.kind is NodeKind.SYMLINK}
    debs = {c.name: c.version for c in catalog.components if c.type is PackageType.DEB}
    others = {c.name: c.version for c in catalog.components if c.type is not PackageType.DEB}
    platform = image.platform
    return BaseFacts(
        arch=debian_arch(platform),
        suite=(catalog.os.codename or None) if catalog.os is not None else None,
        files=files,
        symlinks=symlinks,
        packages=debs,
        python=python_minor(files, debs),
        glibc=_glibc(debs),
        node=_node(debs, others),
        java=_java(debs),
    )


def debian_arch(platform: Platform) -> str:
    """The Debian architecture of an OCI platform (``arm64/v8`` → ``arm64``)."""
    return _ARCHS.get(platform.architecture, platform.architecture)


def python_minor(files: frozenset[str], debs: Mapping[str, str]) -> str | None:
    """``3.13`` when the image has ``/usr/bin/python3`` and its standard library; of several
    minors, the one Debian's ``python3`` package depends on (its version's first two parts)."""
    if "usr/bin/python3" not in files:
        return None
    found = sorted(
        {m.group(1) for path in files if (m := _PYTHON_DIR.fullmatch(path))},
        key=lambda v: int(v.split(".")[1]),
    )
    if "python3" in debs:
        wanted = ".".join(release_version(debs["python3"]).split(".")[:2])
        if wanted in found or not found:
            return wanted
    return found[-1] if found else None


def _glibc(debs: Mapping[str, str]) -> str | None:
    for name in ("libc6", "libc6.1"):
        if name in debs:
            return ".".join(release_version(debs[name]).split(".")[:2])
    return None


def _node(debs: Mapping[str, str], others: Mapping[str, str]) -> str | None:
    if "nodejs" in debs:
        return release_version(debs["nodejs"])
    return next((others[n] for n in NODE_NAMES if n in others), None)


def _java(debs: Mapping[str, str]) -> str | None:
    features = [int(m.group(1)) for name in debs if (m := _JRE.fullmatch(name))]
    return str(max(features)) if features else None
