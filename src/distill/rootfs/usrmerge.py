"""Merged ``/usr``: ``/bin``, ``/sbin`` and ``/lib*`` are symlinks into ``/usr`` (DEP 17).

Debian made merged-/usr mandatory with bookworm, but bookworm's packages still ship files
under ``/lib`` and ``/bin`` (debootstrap and the usrmerge package move them at install time),
and libc6 puts the ELF interpreter at ``/lib64/ld-linux-x86-64.so.2``. Trixie's packages ship
everything under ``/usr`` and base-files ships the links itself. ``merge_usr`` covers both:
it moves what packages placed in the top-level directories into ``usr/`` and adds the links
(keeping base-files' own when it ships them).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import replace

from distill.image.fsentry import EntryKind, FsEntry

# Top-level directories that become links, and the /usr directory each points into.
MERGED_DIRS: dict[str, str] = {
    "bin": "usr/bin",
    "sbin": "usr/sbin",
    "lib": "usr/lib",
    "lib32": "usr/lib32",
    "lib64": "usr/lib64",
    "libx32": "usr/libx32",
    "libo32": "usr/libo32",
}
_ALWAYS = ("bin", "sbin", "lib")
# Architectures whose ELF interpreter lives in /lib64 (the psABI says so); others get the
# link only when a package ships something there.
LIB64_ARCHES = frozenset({"amd64", "ppc64el", "ppc64", "loong64", "mips64el", "sparc64"})


def relocate(path: str) -> str:
    """Where a relative path lands in a merged-/usr tree: ``lib/x`` → ``usr/lib/x``."""
    top, _, rest = path.partition("/")
    if rest and top in MERGED_DIRS:
        return f"{MERGED_DIRS[top]}/{rest}"
    return path


def merge_usr(
    entries: Iterable[FsEntry], arch: str, *, skipped: list[str] | None = None
) -> list[FsEntry]:
    """``entries`` rewritten for a merged-/usr tree, plus the top-level links.

    An entry under ``bin/``, ``lib/``... moves to ``usr/bin/``, ``usr/lib/``... (hardlink
    targets too). Should a package ship both ``/bin/x`` and ``/usr/bin/x``, the ``/usr`` one
    stays and the other is dropped with a line in ``skipped``. Symlink targets are left alone:
    absolute ones resolve through the new links and relative ones move with their link.
    """
    items = list(entries)
    under_usr = {e.path for e in items if e.path.startswith("usr/")}
    shipped_links: dict[str, FsEntry] = {}
    used: set[str] = set()
    result: list[FsEntry] = []
    for entry in items:
        top = entry.path.split("/", 1)[0]
        if top in MERGED_DIRS and "/" not in entry.path:
            if entry.kind is EntryKind.SYMLINK:
                shipped_links.setdefault(top, entry)  # base-files' own usr-merge link
            used.add(top)
            continue  # a directory: the link replaces it
        path = relocate(entry.path)
        if path != entry.path:
            used.add(top)
            if path in under_usr:
                if skipped is not None and entry.kind is not EntryKind.DIR:
                    skipped.append(
                        f"{entry.package or 'generated'}: /{entry.path} also exists as /{path};"
                        f" kept /{path}"
                    )
                continue
        linkname = entry.linkname
        if entry.kind is EntryKind.HARDLINK:
            linkname = relocate(linkname)
        if path != entry.path or linkname != entry.linkname:
            entry = replace(entry, path=path, linkname=linkname)
        result.append(entry)
        if entry.path.startswith("usr/lib64/"):
            used.add("lib64")

    present = {e.path for e in result}
    wanted = [d for d in MERGED_DIRS if d in _ALWAYS or d in used or d in shipped_links]
    if arch in LIB64_ARCHES and "lib64" not in wanted:
        wanted.append("lib64")
    links: list[FsEntry] = []
    if "usr" not in present:
        links.append(FsEntry("usr", EntryKind.DIR, 0o755))
    for top in sorted(wanted):
        target = MERGED_DIRS[top]
        if target not in present:
            links.append(FsEntry(target, EntryKind.DIR, 0o755))
        links.append(
            shipped_links.get(top) or FsEntry(top, EntryKind.SYMLINK, 0o777, linkname=target)
        )
    return links + result


def resolve(entries: Mapping[str, FsEntry], path: str, *, max_links: int = 40) -> str | None:
    """Follow symlinks like the kernel does, within the image: the final non-link path, or
    None when a component is missing or the links loop."""
    parts = [p for p in path.strip("/").split("/") if p]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        current = "/".join([*done, part])
        entry = entries.get(current)
        if entry is None:
            return None
        if entry.kind is EntryKind.SYMLINK:
            hops += 1
            if hops > max_links:
                return None
            target = entry.linkname
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        if entry.kind is EntryKind.HARDLINK:
            current = entry.linkname
        done = current.split("/")
    return posixpath.join(*done) if done else ""
