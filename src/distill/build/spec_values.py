"""Parsers for the values of spec keys, and the typed values they produce.

Each parser takes ``(where, key, value)`` and returns an immutable value or raises a
DistillError that names the spec file and line. ``spec.FIELDS`` says which key uses which.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from distill.bounded import one_line
from distill.errors import DistillError
from distill.rootfs.accounts import DEFAULT_ACCOUNTS, DEFAULT_GROUPS, NOLOGIN, Account, Group
from distill.rootfs.prune import KEEP_KINDS

CONTEXT_HINT = (
    "a spec reads files only from its build context (the directory of the spec file named "
    "on the command line); widen it with --context DIR"
)


def confine(path: Path, context: Path, label: str, *, hint: str = CONTEXT_HINT) -> Path:
    """``path`` with every symlink resolved, provided that lies inside ``context`` (a resolved
    directory). The one check for every path a spec names (``files:`` sources, ``extends:``),
    as a Dockerfile's COPY is held to its build context; ``label`` is the path as written."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
        raise DistillError(f"{show(label)} cannot be resolved: {exc}", hint=hint) from None
    if not real.is_relative_to(context):
        leads = "" if real == Path(os.path.normpath(path)) else f" (it leads to {show(str(real))})"
        raise DistillError(
            f"{show(label)} is outside the build context {context}{leads}", hint=hint
        )
    return real


def show(value: Any) -> str:
    """A value from a spec, for an error message: scalars quoted and capped, anything else
    by its type only, so that a message never walks (or prints) a nested or aliased value."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return "a very large number"
    if isinstance(value, str | int | float | bool) or value is None:
        return one_line(repr(value), 200)
    return f"a {type(value).__name__}"


class Where:
    """Where a spec's keys (and list items) are, for error messages; ``here`` is the
    directory relative paths in the spec start from, ``context`` the resolved directory
    they must stay inside."""

    def __init__(
        self,
        source: str,
        lines: Mapping[str, int] | None = None,
        items: Mapping[str, Sequence[int]] | None = None,
        here: Path | None = None,
        context: Path | None = None,
    ) -> None:
        self.source = source
        self.lines = lines or {}
        self.items = items or {}
        self.here = here if here is not None else Path.cwd()
        self.context = context if context is not None else self.here.resolve()

    def at(self, key: str, item: int | None = None) -> str:
        lines = self.items.get(key, ())
        line = lines[item] if item is not None and item < len(lines) else self.lines.get(key)
        return f"{self.source}:{line}" if line else self.source

    def fail(
        self, key: str, message: str, hint: str | None = None, item: int | None = None
    ) -> DistillError:
        name = key if item is None else f"{key}[{item}]"
        return DistillError(f"{self.at(key, item)}: {name}: {message}", hint=hint)


@dataclass(frozen=True, slots=True)
class Accounts:
    """Users and groups written to /etc/passwd and /etc/group (distroless's by default)."""

    users: tuple[Account, ...] = DEFAULT_ACCOUNTS
    groups: tuple[Group, ...] = DEFAULT_GROUPS


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A local file or directory copied into the image."""

    src: Path  # absolute: joined to the directory of the spec file that names it
    context: Path  # the build context src must stay inside, symlinks resolved
    dest: str  # absolute image path, normalised
    mode: int | None = None  # None: 0755 if the local file is executable, else 0644
    owner: str | None = None  # "uid:gid", "uid", or user/group names; None: 0:0
    into: bool = False  # dest ended in "/": copy into that directory under src's name
    origin: str = ""  # "spec.yaml:12", for errors found at build time


class PathType(StrEnum):
    DIRECTORY = "directory"
    SYMLINK = "symlink"


@dataclass(frozen=True, slots=True)
class PathSpec:
    """A directory or symlink created in the image."""

    path: str
    type: PathType
    target: str = ""
    mode: int | None = None
    owner: str | None = None
    origin: str = ""


# --- scalars ---------------------------------------------------------------------------------


def parse_str(where: Where, key: str, value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise where.fail(key, f"expected a string, got {_type(value)}")
    return str(value)


def _type(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def parse_str_list(where: Where, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise where.fail(key, f"expected a list of strings, got {_type(value)}")
    return tuple(parse_str(where, key, v) for v in value)


def parse_bool(where: Where, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise where.fail(key, f"expected true or false, got {show(value)}")
    return value


def parse_mapping(where: Where, key: str, value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise where.fail(key, f"expected a mapping (NAME: value), got {_type(value)}")
    pairs = []
    for name, item in value.items():
        if isinstance(item, bool) or item is None:
            # YAML turns yes/no/on/off into booleans: the image would get "True".
            raise where.fail(
                key, f"{name}: write the value as a quoted string", hint=f"{name}: '{item}'"
            )
        pairs.append((parse_str(where, key, name), parse_str(where, key, item)))
    return tuple(pairs)


def parse_command(where: Where, key: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise where.fail(
            key,
            "a string would need a shell to split it, and the image has none",
            hint=f"write a list: {key}: {value.split()!r}",
        )
    return parse_str_list(where, key, value)


_PORT = re.compile(r"(\d{1,5})(?:/(tcp|udp|sctp))?")


def parse_ports(where: Where, key: str, value: Any) -> tuple[str, ...]:
    ports = []
    for text in parse_str_list(where, key, value if isinstance(value, list) else [value]):
        match = _PORT.fullmatch(text.strip().lower())
        if match is None or not 1 <= int(match.group(1)) <= 65535:
            raise where.fail(
                key, f"not a port: {text!r}", hint="write 8080, 8080/tcp, 53/udp or 9/sctp"
            )
        ports.append(f"{int(match.group(1))}/{match.group(2) or 'tcp'}")
    return tuple(dict.fromkeys(ports))


def image_path(where: Where, key: str, value: Any, item: int | None = None) -> str:
    """An absolute path in the image, normalised (``/a//b/`` → ``/a/b``)."""
    text = parse_str(where, key, value)
    if not text.startswith("/"):
        raise where.fail(key, f"{text!r} is not an absolute path", hint=f"write /{text}", item=item)
    if ".." in text.split("/"):
        raise where.fail(
            key, f"{text!r} climbs with '..'", hint="write the path plainly", item=item
        )
    return posixpath.normpath(text).replace("//", "/")


def parse_volumes(where: Where, key: str, value: Any) -> tuple[str, ...]:
    return tuple(image_path(where, key, v) for v in parse_str_list(where, key, value))


def parse_workdir(where: Where, key: str, value: Any) -> str:
    return image_path(where, key, value)


MAX_ID = 2**32 - 2  # uid_t is 32 bits and (uid_t)-1 means "no change" to chown
_NAME = r"[A-Za-z0-9_.][A-Za-z0-9_.-]*"
_USER = re.compile(rf"{_NAME}(?::{_NAME})?")


def _is_user(text: str) -> bool:
    """``uid``, ``uid:gid`` or names, with numbers a uid_t can hold."""
    if len(text) > 256 or not _USER.fullmatch(text):
        return False
    return all(not part.isdigit() or int(part) <= MAX_ID for part in text.split(":"))


def parse_user(where: Where, key: str, value: Any) -> str:
    text = parse_str(where, key, value)
    if not _is_user(text):
        raise where.fail(key, f"not a user: {text!r}", hint="write uid, uid:gid or a user name")
    return text


def parse_keep(where: Where, key: str, value: Any) -> dict[str, bool]:
    if not isinstance(value, dict):
        raise where.fail(key, f"expected a mapping like {{doc: true}}, got {_type(value)}")
    known = KEEP_KINDS
    result = {}
    for name, flag in value.items():
        if name not in known:
            raise where.fail(key, f"unknown kind {show(name)}", hint=f"one of: {', '.join(known)}")
        result[str(name)] = parse_bool(where, f"{key}.{name}", flag)
    return result


# --- modes and owners ------------------------------------------------------------------------


def parse_mode(where: Where, key: str, value: Any, item: int | None = None) -> int:
    """An octal mode as chmod reads it: ``'0755'``, ``755`` or ``0o755``."""
    text = str(value).lower().removeprefix("0o") if isinstance(value, str | int) else ""
    text = "" if isinstance(value, bool) else text
    if not re.fullmatch(r"[0-7]{1,4}", text):
        raise where.fail(
            key, f"not an octal mode: {show(value)}", hint="write it like chmod: '0755'", item=item
        )
    return int(text, 8)


def parse_owner(where: Where, key: str, value: Any, item: int | None = None) -> str:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not _is_user(text):
        raise where.fail(
            key, f"not an owner: {show(value)}", hint="write uid:gid, uid or user:group", item=item
        )
    return text


def resolve_owner(owner: str | None, accounts: Accounts, origin: str) -> tuple[int, int]:
    """``uid:gid`` (numbers or names of the spec's accounts) → numbers; a user alone brings
    its primary group."""
    if owner is None:
        return 0, 0
    user, sep, group = owner.partition(":")
    users = {a.name: a for a in accounts.users}
    groups = {g.name: g.gid for g in accounts.groups} | {a.name: a.gid for a in accounts.users}
    if user.isdigit():
        uid = int(user)
        primary = next((a.gid for a in accounts.users if a.uid == uid), uid)
    elif user in users:
        uid, primary = users[user].uid, users[user].gid
    else:
        raise DistillError(
            f"{origin}: owner {owner!r}: no user {user!r} in the image",
            hint=f"use a number, or one of: {', '.join(users)} (see `accounts:`)",
        )
    if not sep:
        return uid, primary
    if group.isdigit():
        return uid, int(group)
    if group in groups:
        return uid, groups[group]
    raise DistillError(
        f"{origin}: owner {owner!r}: no group {group!r} in the image",
        hint=f"use a number, or one of: {', '.join(sorted(groups))}",
    )


# --- lists of mappings -----------------------------------------------------------------------


def _entries(
    where: Where, key: str, value: Any, required: tuple[str, ...], optional: tuple[str, ...]
) -> list[tuple[int, dict[str, Any]]]:
    if not isinstance(value, list):
        raise where.fail(key, f"expected a list of mappings, got {_type(value)}")
    result = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise where.fail(key, f"expected a mapping, got {_type(item)}", item=index)
        for name in item:
            if name not in required + optional:
                raise where.fail(
                    key,
                    f"unknown field {show(name)}",
                    hint=f"fields: {', '.join(required + optional)}",
                    item=index,
                )
        for name in required:
            if item.get(name) is None:
                raise where.fail(key, f"`{name}` is required", item=index)
        result.append((index, item))
    return result


def parse_files(where: Where, key: str, value: Any) -> tuple[FileSpec, ...]:
    files = []
    for index, item in _entries(where, key, value, ("src", "dest"), ("mode", "owner")):
        src_text = parse_str(where, key, item["src"])
        src = where.here / src_text  # an absolute src stays itself
        try:
            confine(src, where.context, src_text)
        except DistillError as exc:
            raise where.fail(key, f"src {exc.message}", exc.hint, index) from None
        dest_text = parse_str(where, key, item["dest"])
        mode = item.get("mode")
        owner = item.get("owner")
        files.append(
            FileSpec(
                src=src,
                context=where.context,
                dest=image_path(where, key, dest_text, index),
                mode=parse_mode(where, key, mode, index) if mode is not None else None,
                owner=parse_owner(where, key, owner, index) if owner is not None else None,
                into=dest_text.endswith("/"),
                origin=where.at(key, index),
            )
        )
    return tuple(files)


def parse_paths(where: Where, key: str, value: Any) -> tuple[PathSpec, ...]:
    paths = []
    for index, item in _entries(where, key, value, ("path", "type"), ("target", "mode", "owner")):
        try:
            # Checked as a string first: Enum's own error would repr any value it is given.
            kind = PathType(item["type"] if isinstance(item["type"], str) else "")
        except ValueError:
            raise where.fail(
                key,
                f"unknown type {show(item['type'])}",
                hint=f"one of: {', '.join(PathType)}",
                item=index,
            ) from None
        target = item.get("target")
        if (kind is PathType.SYMLINK) != (target is not None):
            need = "needs a `target`" if target is None else "takes no `target`"
            raise where.fail(key, f"a {kind} {need}", item=index)
        mode, owner = item.get("mode"), item.get("owner")
        if kind is PathType.SYMLINK and mode is not None:
            raise where.fail(key, "a symlink has no mode of its own", item=index)
        paths.append(
            PathSpec(
                path=image_path(where, key, item["path"], index),
                type=kind,
                target=parse_str(where, key, target) if target is not None else "",
                mode=parse_mode(where, key, mode, index) if mode is not None else None,
                owner=parse_owner(where, key, owner, index) if owner is not None else None,
                origin=where.at(key, index),
            )
        )
    return tuple(paths)


def _int(where: Where, key: str, value: Any, item: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise where.fail(key, f"expected a number from 0 to {MAX_ID}, got {show(value)}", item=item)
    return value


def parse_accounts(
    where: Where, key: str, value: Any
) -> tuple[tuple[Account, ...], tuple[Group, ...]]:
    if not isinstance(value, dict) or not set(value) <= {"users", "groups"}:
        raise where.fail(key, "expected a mapping with `users:` and/or `groups:` lists")
    users = []
    for index, item in _entries(
        where, key, value.get("users") or [], ("name", "uid"), ("gid", "home", "shell", "gecos")
    ):
        name = parse_str(where, key, item["name"])
        uid = _int(where, key, item["uid"], index)
        users.append(
            Account(
                name=name,
                uid=uid,
                gid=_int(where, key, item.get("gid", uid), index),
                home=image_path(where, key, item.get("home", f"/home/{name}"), index),
                shell=parse_str(where, key, item.get("shell", NOLOGIN)),
                gecos=parse_str(where, key, item.get("gecos", "")),
            )
        )
    groups = []
    for index, item in _entries(
        where, key, value.get("groups") or [], ("name", "gid"), ("members",)
    ):
        groups.append(
            Group(
                name=parse_str(where, key, item["name"]),
                gid=_int(where, key, item["gid"], index),
                members=parse_str_list(where, key, item.get("members", [])),
            )
        )
    return tuple(users), tuple(groups)


def parse_node(where: Where, key: str, value: Any) -> int | None:
    if value is None:
        return None
    major = value.get("major") if isinstance(value, dict) else None
    if not isinstance(value, dict) or set(value) != {"major"}:
        raise where.fail(key, "expected a mapping `{major: N}`", hint="e.g. `node: {major: 22}`")
    if not isinstance(major, int) or isinstance(major, bool) or not 18 <= major < 100:
        raise where.fail(
            key, f"major: {show(major)} is not a Node.js major version", hint="e.g. 22"
        )
    return major
