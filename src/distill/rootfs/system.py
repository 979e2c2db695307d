"""What the maintainer scripts would have done, done declaratively, in one call.

``finish_rootfs`` takes the entries of every extracted package and their control archives and
returns the image's entries: merged-/usr applied, then accounts, os-release, the CA bundle,
the Java keystore, alternative links and the ``status.d`` database added. Each step lives in
its own module and can be used alone; this module only fixes their order and how clashes
between a package's entry and a generated one are settled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from distill.debian.deb import DebControl
from distill.image.fsentry import EntryKind, FsEntry
from distill.rootfs.accounts import DEFAULT_ACCOUNTS, Account, Group, account_entries
from distill.rootfs.alternatives import alternatives_entries
from distill.rootfs.certs import ca_bundle_entries, java_cacerts_entries
from distill.rootfs.dpkg_status import status_entries
from distill.rootfs.osrelease import os_release_entries
from distill.rootfs.usrmerge import merge_usr


@dataclass(frozen=True, slots=True)
class SystemOptions:
    suite: str  # e.g. "trixie": os-release when base-files is not in the image
    arch: str  # Debian architecture, e.g. "amd64": whether /lib64 is needed
    accounts: tuple[Account, ...] = DEFAULT_ACCOUNTS
    groups: tuple[Group, ...] | None = None  # None: distroless's groups
    # Extra CA certificates (name, PEM), added as /usr/local/share/ca-certificates ones are.
    extra_certs: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class FinishedRootfs:
    entries: list[FsEntry]
    notes: list[str] = field(default_factory=list)  # what was skipped or overridden, and why


def _is_plain_dir(entry: FsEntry) -> bool:
    return entry.kind is EntryKind.DIR and entry.mode == 0o755 and entry.uid == entry.gid == 0


def _combine(
    packaged: Sequence[FsEntry], generated: Sequence[FsEntry], notes: list[str]
) -> list[FsEntry]:
    """One entry per path, in first-seen order (the layer writer refuses two that differ).

    Between packages the later one wins, as the later unpack would with dpkg, and a note
    says so when they disagree about a file. A generated entry replaces a packaged one
    (distill owns /etc/passwd and friends), except that a generated plain 0755 directory,
    emitted only as somebody's parent, leaves a packaged directory as it is."""
    result: dict[str, FsEntry] = {}
    for entry in packaged:
        seen = result.get(entry.path)
        if seen is not None and entry.kind is not EntryKind.DIR and _differs(seen, entry):
            notes.append(
                f"/{entry.path} is shipped by {seen.package} and {entry.package};"
                f" kept {entry.package}'s"
            )
        result[entry.path] = entry
    for entry in generated:
        existing = result.get(entry.path)
        if existing is not None and existing.kind is EntryKind.DIR and _is_plain_dir(entry):
            continue
        result[entry.path] = entry
    return list(result.values())


def _differs(a: FsEntry, b: FsEntry) -> bool:
    return (a.kind, a.mode, a.uid, a.gid, a.linkname, a.content) != (
        b.kind,
        b.mode,
        b.uid,
        b.gid,
        b.linkname,
        b.content,
    )


def finish_rootfs(
    packaged: Sequence[FsEntry],
    controls: Mapping[str, DebControl],
    options: SystemOptions,
) -> FinishedRootfs:
    """The complete entry list of an image from its packages' entries and control archives
    (keyed by package name)."""
    notes: list[str] = []
    merged = merge_usr(packaged, options.arch, skipped=notes)
    present = {e.path for e in merged}
    generated: list[FsEntry] = []
    generated += account_entries(options.accounts, options.groups)
    generated += os_release_entries(options.suite, present)
    generated += ca_bundle_entries(merged, options.extra_certs)
    generated += java_cacerts_entries(merged, options.extra_certs)
    postinsts = {name: c.postinst for name, c in controls.items() if c.postinst}
    generated += alternatives_entries(postinsts, present)
    generated += status_entries(controls[name] for name in sorted(controls))
    return FinishedRootfs(_combine(merged, generated, notes), notes)
