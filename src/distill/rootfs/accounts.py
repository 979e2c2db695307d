"""Users, groups and the directories they need, written instead of adduser/base-passwd.

The defaults are distroless's: root (0), nobody (65534) and nonroot (65532, home
``/home/nonroot``), all with ``/sbin/nologin`` since there is no shell to log in to; groups
root, tty (5), staff (50), nobody and nonroot. ``/etc/nsswitch.conf`` says "files" so glibc
looks names up in these files and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry

NOLOGIN = "/sbin/nologin"
# Homes that must not be created: the conventional "no home" markers.
_NO_HOME = frozenset({"/nonexistent", "/", ""})


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str = NOLOGIN
    gecos: str = ""  # defaults to the name, as distroless writes it


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    gid: int
    members: tuple[str, ...] = ()


ROOT = Account("root", 0, 0, "/root")
NOBODY = Account("nobody", 65534, 65534, "/nonexistent")
NONROOT = Account("nonroot", 65532, 65532, "/home/nonroot")
DEFAULT_ACCOUNTS: tuple[Account, ...] = (ROOT, NOBODY, NONROOT)
DEFAULT_GROUPS: tuple[Group, ...] = (
    Group("root", 0),
    Group("nobody", 65534),
    Group("tty", 5),
    Group("staff", 50),
    Group("nonroot", 65532),
)

NSSWITCH_CONF = """\
# Written by distill: names resolve from the files in /etc only.
passwd:         files
group:          files
shadow:         files
gshadow:        files

hosts:          files dns
networks:       files

protocols:      files
services:       files
ethers:         files
rpc:            files
"""


def _dupes(values: Sequence[str | int]) -> list[str]:
    return sorted({str(v) for v in values if values.count(v) > 1})


def _check(accounts: Sequence[Account], groups: Sequence[Group]) -> None:
    for kind, names, ids in (
        ("user", [a.name for a in accounts], [a.uid for a in accounts]),
        ("group", [g.name for g in groups], [g.gid for g in groups]),
    ):
        for name in names:
            if not name or any(c in name for c in ":\n,") or name != name.strip():
                raise DistillError(
                    f"invalid {kind} name {name!r}", hint="use letters, digits, '-', '_' and '.'"
                )
        for what, dupes in (("name", _dupes(names)), ("id", _dupes(ids))):
            if dupes:
                raise DistillError(
                    f"duplicate {kind} {what}: {', '.join(dupes)}",
                    hint=f"each {kind} needs its own {what}",
                )
    for account in accounts:
        if account.uid < 0 or account.gid < 0:
            raise DistillError(f"user {account.name} has a negative id")
        if not account.home.startswith("/"):
            raise DistillError(f"home of {account.name} must be absolute, not {account.home!r}")


def groups_for(
    accounts: Iterable[Account], groups: Sequence[Group] = DEFAULT_GROUPS
) -> list[Group]:
    """``groups`` plus a group named after each account whose primary gid has none."""
    result = list(groups)
    known = {g.gid for g in result}
    names = {g.name for g in result}
    for account in accounts:
        if account.gid not in known:
            name = account.name if account.name not in names else f"{account.name}-{account.gid}"
            result.append(Group(name, account.gid))
            known.add(account.gid)
            names.add(name)
    return result


def passwd_text(accounts: Iterable[Account]) -> str:
    return "".join(
        f"{a.name}:x:{a.uid}:{a.gid}:{a.gecos or a.name}:{a.home}:{a.shell}\n" for a in accounts
    )


def group_text(groups: Iterable[Group]) -> str:
    return "".join(f"{g.name}:x:{g.gid}:{','.join(g.members)}\n" for g in groups)


def _text_file(path: str, text: str, mode: int = 0o644) -> FsEntry:
    data = text.encode()
    return FsEntry(path, EntryKind.FILE, mode, size=len(data), content=data)


def account_entries(
    accounts: Sequence[Account] = DEFAULT_ACCOUNTS,
    groups: Sequence[Group] | None = None,
) -> list[FsEntry]:
    """``etc/passwd``, ``etc/group``, ``etc/nsswitch.conf``, ``tmp`` (1777) and each account's
    home (0700, owned by it; ``/home`` and other parents 0755 root)."""
    all_groups = groups_for(accounts, DEFAULT_GROUPS if groups is None else groups)
    _check(accounts, all_groups)
    entries = [
        FsEntry("etc", EntryKind.DIR, 0o755),
        _text_file("etc/passwd", passwd_text(accounts)),
        _text_file("etc/group", group_text(all_groups)),
        _text_file("etc/nsswitch.conf", NSSWITCH_CONF),
        FsEntry("tmp", EntryKind.DIR, 0o1777),
    ]
    parents: set[str] = set()
    for account in accounts:
        home = account.home.strip("/")
        if account.home in _NO_HOME:
            continue
        *ups, _ = home.split("/")
        for depth in range(1, len(ups) + 1):
            parent = "/".join(ups[:depth])
            if parent not in parents:
                parents.add(parent)
                entries.append(FsEntry(parent, EntryKind.DIR, 0o755))
        entries.append(FsEntry(home, EntryKind.DIR, 0o700, uid=account.uid, gid=account.gid))
    return entries
