"""The image spec: YAML (or a shipped preset) → a frozen ``Spec``.

One table, ``FIELDS``, names every key with its parser, its merge rule for ``extends`` and its
help, so the parser, the error messages and ``docs/spec.md`` cannot drift apart. Errors carry
the file and line (of the list item, for ``files:`` and ``paths:``).

A reference may carry a variant, ``PRESET:VARIANT`` (or ``spec.yaml:VARIANT``), as the
distroless tags do: ``nonroot``, ``debug`` and ``debug-nonroot``.
"""

from __future__ import annotations

import difflib
import platform
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from distill.errors import DistillError
from distill.rootfs.prune import Keep
from distill.spec_values import Accounts as Accounts
from distill.spec_values import FileSpec as FileSpec
from distill.spec_values import PathSpec as PathSpec
from distill.spec_values import PathType as PathType
from distill.spec_values import (
    Where,
    parse_accounts,
    parse_bool,
    parse_command,
    parse_files,
    parse_keep,
    parse_mapping,
    parse_paths,
    parse_ports,
    parse_str,
    parse_str_list,
    parse_user,
    parse_volumes,
    parse_workdir,
)

DEFAULT_SUITE = "trixie"
SUITES = {"trixie": "13", "bookworm": "12"}
ARCHS = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

# The debug variant's shell: Debian's statically linked busybox, installed as distroless does
# (the binary and one link per applet in /busybox, outside PATH's usual directories).
DEBUG_PACKAGE = "busybox-static"
DEBUG_LEVEL = ":debug"
DEBUG_ENTRYPOINT = ("/busybox/sh",)
NONROOT_USER = "65532"
NONROOT_HOME = "/home/nonroot"


def host_arch() -> str:
    machine = platform.machine().lower()
    if machine not in ARCHS:
        raise DistillError(
            f"unsupported host architecture {machine!r}", hint="pass --arch amd64 or --arch arm64"
        )
    return ARCHS[machine]


@dataclass(frozen=True, slots=True)
class Level:
    """One spec of the ``extends`` chain and the packages it adds; layers follow levels."""

    name: str
    packages: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    name: str
    source: str  # the file or preset it came from, for messages
    suite: str = DEFAULT_SUITE
    archs: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    mirror: str | None = None
    security_mirror: str | None = None
    files: tuple[FileSpec, ...] = ()
    paths: tuple[PathSpec, ...] = ()
    accounts: Accounts = field(default_factory=Accounts)
    user: str | None = None
    workdir: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[str, ...] = ()  # normalised: "8080/tcp"
    volumes: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    keep: Keep = field(default_factory=Keep)
    debug: bool = False
    # The extends chain, bottom first, each with the packages it adds (empty ones left out).
    levels: tuple[Level, ...] = field(default=())

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(p.split("=", 1)[0] for p in self.packages)

    @property
    def pins(self) -> dict[str, str]:
        return dict(p.split("=", 1) for p in self.packages if "=" in p)

    def target_archs(self) -> tuple[str, ...]:
        return self.archs or (host_arch(),)


class Merge(StrEnum):
    """How a key of a spec combines with the same key of the spec it ``extends``."""

    REPLACE = "replace"  # the child's value wins
    EXTEND = "extend"  # lists: the base's items, then the child's (repeats dropped)
    UPDATE = "update"  # mappings: the base's keys, overridden or added to by the child's
    BY_NAME = "by name"  # accounts: users and groups replace the base's of the same name


Parser = Callable[[Where, str, Any], Any]


@dataclass(frozen=True, slots=True)
class Field:
    parser: Parser
    merge: Merge
    help: str
    example: str = ""


def _suite(where: Where, key: str, value: Any) -> str:
    suite = parse_str(where, key, value)
    if suite not in SUITES:
        raise where.fail(key, f"unknown suite {suite!r}", hint=f"one of: {', '.join(SUITES)}")
    return suite


def _archs(where: Where, key: str, value: Any) -> tuple[str, ...]:
    archs = parse_str_list(where, key, value)
    for arch in archs:
        if arch not in ("amd64", "arm64"):
            raise where.fail(key, f"unsupported architecture {arch!r}", hint="amd64 or arm64")
    return archs


FIELDS: dict[str, Field] = {
    "extends": Field(
        parse_str,
        Merge.REPLACE,
        "a preset (e.g. `base`, `python3:nonroot`) or a spec file (relative to this one) "
        "this spec builds on",
        "extends: python3:nonroot",
    ),
    "suite": Field(_suite, Merge.REPLACE, "Debian release: `trixie` (default) or `bookworm`"),
    "archs": Field(
        _archs,
        Merge.REPLACE,
        "architectures to build: `amd64`, `arm64` (default: the host's); several make an "
        "OCI image index",
        "archs: [amd64, arm64]",
    ),
    "packages": Field(
        parse_str_list,
        Merge.EXTEND,
        "Debian packages to install; `name=version` pins one, `a | b` takes the first the "
        "suite has",
        "packages: [libpq5, 'libssl3t64 | libssl3']",
    ),
    "exclude": Field(parse_str_list, Merge.EXTEND, "more packages (fnmatch patterns) to keep out"),
    "include": Field(
        parse_str_list,
        Merge.EXTEND,
        "packages to keep even if the distroless policy excludes them",
    ),
    "mirror": Field(
        parse_str, Merge.REPLACE, "Debian mirror URL (default: the machine's apt sources)"
    ),
    "security_mirror": Field(parse_str, Merge.REPLACE, "Debian security mirror URL"),
    "files": Field(
        parse_files,
        Merge.EXTEND,
        "local files or directories to copy in: `src` (relative to this spec file), `dest` "
        "(image path; a trailing `/` means into that directory), optional `mode` (octal) and "
        "`owner` (`uid:gid` or names)",
        "files:\n  - {src: app.jar, dest: /app/app.jar, owner: 'nonroot:nonroot'}",
    ),
    "paths": Field(
        parse_paths,
        Merge.EXTEND,
        "directories and symlinks to create: `path`, `type` (`directory` or `symlink`), "
        "`target` (symlinks), optional `mode` and `owner`",
        "paths:\n  - {path: /data, type: directory, mode: '0750', owner: '65532:65532'}",
    ),
    "accounts": Field(
        parse_accounts,
        Merge.BY_NAME,
        "extra `users` (name, uid, gid, home, shell) and `groups` (name, gid, members); "
        "root (0), nobody (65534) and nonroot (65532) always exist unless redefined",
        "accounts:\n  users: [{name: app, uid: 1000, gid: 1000, home: /home/app}]",
    ),
    "user": Field(
        parse_user,
        Merge.REPLACE,
        "who the container runs as: `uid`, `uid:gid` or a user name (default: root)",
        "user: '65532'",
    ),
    "workdir": Field(
        parse_workdir,
        Merge.REPLACE,
        "the working directory (absolute; created if the image lacks it)",
    ),
    "entrypoint": Field(
        parse_command,
        Merge.REPLACE,
        "the program to run, as a list (there is no shell to run a string); setting it "
        "clears an inherited `cmd`, as a Dockerfile ENTRYPOINT does; `null` clears it",
        "entrypoint: [/usr/bin/python3, -m, app]",
    ),
    "cmd": Field(
        parse_command,
        Merge.REPLACE,
        "default arguments (or the program, without an entrypoint), as a list",
    ),
    "env": Field(
        parse_mapping,
        Merge.UPDATE,
        "environment variables (a mapping); PATH and SSL_CERT_FILE have defaults",
        "env: {PYTHONUNBUFFERED: '1'}",
    ),
    "ports": Field(
        parse_ports,
        Merge.EXTEND,
        "ports the image listens on: `8080`, `8080/tcp`, `53/udp`",
        "ports: [8080, 53/udp]",
    ),
    "volumes": Field(parse_volumes, Merge.EXTEND, "absolute paths to declare as volumes"),
    "labels": Field(parse_mapping, Merge.UPDATE, "image config labels (a mapping)"),
    "annotations": Field(
        parse_mapping,
        Merge.UPDATE,
        "manifest annotations (a mapping); a key without a `.` is short for "
        "`org.opencontainers.image.<key>`",
        "annotations: {source: 'https://example.org/app.git', licenses: Apache-2.0}",
    ),
    "keep": Field(
        parse_keep,
        Merge.UPDATE,
        "what to keep of the files distill leaves out by default (all false): `doc`, `man`, "
        "`locale` (documentation; copyright files are always kept), `gconv` (glibc's extra "
        "iconv charsets), `cds` (a JVM's non-default CDS archives), `debugging` (debugger "
        "scripts, glibc's debugging libraries), `ca_sources` (the single CA certificates, "
        "update-ca-certificates); see docs/build.md",
        "keep: {locale: true, gconv: true}",
    ),
    "debug": Field(
        parse_bool,
        Merge.REPLACE,
        "add busybox in /busybox with a shell, as the distroless `:debug` images do; it "
        "becomes the entrypoint only if the spec has none (the `:debug` variant always "
        "makes `/busybox/sh` the entrypoint)",
    ),
}


# --- YAML ------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.1 without its surprises for image specs: ``0755`` stays the text "0755" (modes
    are octal, like chmod's) and ``22:22`` is not a sexagesimal number."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_INT_RE = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_RE, list("-+0123456789"))


def _compose(text: str, source: str) -> yaml.MappingNode:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise DistillError(
            f"{at}: invalid YAML: {problem}", hint="check indentation and quoting near that line"
        ) from exc
    if node is None or not isinstance(node, yaml.MappingNode):
        raise DistillError(f"{source}: a spec must be a YAML mapping (key: value)")
    return node


def _where(node: yaml.MappingNode, source: str, here: Path) -> Where:
    lines: dict[str, int] = {}
    items: dict[str, list[int]] = {}
    for key, value in node.value:
        if isinstance(key.value, str):
            lines[key.value] = key.start_mark.line + 1
            if isinstance(value, yaml.SequenceNode):
                items[key.value] = [v.start_mark.line + 1 for v in value.value]
    return Where(source, lines, items, here)


def _parse_mapping(text: str, source: str, here: Path) -> tuple[dict[str, Any], Where]:
    where = _where(_compose(text, source), source, here)
    data = yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only
    parsed: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(FIELDS)}"
            raise where.fail(key, "unknown key", hint=hint)
        parsed[key] = FIELDS[key].parser(where, key, value)
    return parsed, where


def presets() -> dict[str, str]:
    """Preset name → YAML text, from the package data."""
    folder = resources.files("distill") / "presets"
    return {
        p.name.removesuffix(".yaml"): p.read_text()
        for p in folder.iterdir()
        if p.name.endswith(".yaml")
    }


# --- merging ---------------------------------------------------------------------------------


def _by_name(base: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
    replaced = {item.name: item for item in new}
    kept = tuple(replaced.pop(item.name, item) for item in base)
    return kept + tuple(item for item in new if item.name in replaced)


def _merged(key: str, old: Any, new: Any) -> Any:
    rule = FIELDS[key].merge
    if rule is Merge.EXTEND:
        return old + tuple(item for item in new if item not in old)
    if rule is Merge.UPDATE:
        if isinstance(old, Keep):
            return replace(old, **new)
        return tuple({**dict(old), **dict(new)}.items())
    if rule is Merge.BY_NAME:
        users, groups = new
        return Accounts(_by_name(old.users, users), _by_name(old.groups, groups))
    return new


def _merge(base: Spec, parsed: Mapping[str, Any], name: str, source: str) -> Spec:
    values: dict[str, Any] = {"name": name, "source": source}
    for key, value in parsed.items():
        if key != "extends":
            values[key] = _merged(key, getattr(base, key), value)
    if "entrypoint" in parsed and "cmd" not in parsed:
        values["cmd"] = None  # a new program: the old one's default arguments do not apply
    added = tuple(p for p in values.get("packages", ()) if p not in base.packages)
    if added:
        values["levels"] = (*base.levels, Level(name, added))
    return replace(base, **values)


# --- variants --------------------------------------------------------------------------------


class Variant(StrEnum):
    NONROOT = "nonroot"
    DEBUG = "debug"
    DEBUG_NONROOT = "debug-nonroot"


def _split_variant(ref: str) -> tuple[str, Variant | None]:
    stem, sep, suffix = ref.rpartition(":")
    if sep and suffix in Variant.__members__.values():
        return stem, Variant(suffix)
    return ref, None


def _apply_variant(spec: Spec, variant: Variant) -> Spec:
    values: dict[str, Any] = {"name": f"{spec.name}:{variant}"}
    if variant in (Variant.DEBUG, Variant.DEBUG_NONROOT):
        # The shell is the program, whatever the image runs otherwise; a spec extending
        # `python3:debug` can still set its own entrypoint.
        values.update(debug=True, entrypoint=DEBUG_ENTRYPOINT, cmd=None)
    if variant in (Variant.NONROOT, Variant.DEBUG_NONROOT):
        values.update(user=NONROOT_USER, workdir=NONROOT_HOME)
    return replace(spec, **values)


def _finish(spec: Spec) -> Spec:
    """What ``debug`` implies, applied once to the complete spec."""
    if not spec.debug or DEBUG_PACKAGE in spec.roots:
        return spec
    # `debug: true` in a spec adds the shell; it becomes the program only if there is none.
    return replace(
        spec,
        packages=(*spec.packages, DEBUG_PACKAGE),
        levels=(*spec.levels, Level(DEBUG_LEVEL, (DEBUG_PACKAGE,))),
        entrypoint=spec.entrypoint if spec.entrypoint is not None else DEBUG_ENTRYPOINT,
    )


# --- loading ---------------------------------------------------------------------------------


def _load(ref: str, seen: tuple[str, ...], base_dir: Path) -> Spec:
    if ref in seen:
        raise DistillError(f"`extends` loops: {' → '.join((*seen, ref))}")
    target, variant = _split_variant(ref)
    path = (base_dir / target) if not Path(target).is_absolute() else Path(target)
    known = presets()
    if path.is_file():
        text, source, name, here = path.read_text(), str(path), path.stem, path.parent
    elif target in known:
        text, source, name, here = known[target], f"preset:{target}", target, base_dir
    else:
        close = difflib.get_close_matches(target, known, n=3)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else f"presets: {', '.join(sorted(known))} (see `distill presets`); "
            f"variants: {', '.join(Variant)}"
        )
        raise DistillError(f"no spec file or preset named {target!r}", hint=hint)
    parsed, where = _parse_mapping(text, source, here)
    base = Spec(name=name, source=source)
    if "extends" in parsed:
        try:
            base = _load(parsed["extends"], (*seen, ref), here)
        except DistillError as exc:
            raise where.fail("extends", exc.message, exc.hint) from exc
    spec = _merge(base, parsed, name, source)
    return _apply_variant(spec, variant) if variant is not None else spec


def load_spec(ref: str, *, suite: str | None = None, archs: tuple[str, ...] = ()) -> Spec:
    """Load a spec file or a preset, optionally ``:variant``; command-line ``--suite`` and
    ``--arch`` override the file."""
    spec = _finish(_load(ref, (), Path.cwd()))
    if suite is not None:
        spec = replace(spec, suite=_suite(Where("--suite"), "suite", suite))
    if archs:
        spec = replace(spec, archs=_archs(Where("--arch"), "arch", list(archs)))
    return spec


def spec_keys() -> list[str]:
    """Every key a spec may hold, in documentation order."""
    return list(FIELDS)


def reference_markdown() -> str:
    """The key reference of docs/spec.md, from FIELDS (a test keeps the two equal)."""
    parts = []
    for key, spec_field in FIELDS.items():
        text = f"### `{key}`\n\n{spec_field.help[0].upper()}{spec_field.help[1:]}.\n"
        if key != "extends":
            text += f"\n*With `extends`:* {_MERGE_TEXT[spec_field.merge]}.\n"
        if spec_field.example:
            text += f"\n```yaml\n{spec_field.example}\n```\n"
        parts.append(text)
    return "\n".join(parts)


_MERGE_TEXT = {
    Merge.REPLACE: "this spec's value replaces the base's",
    Merge.EXTEND: "the base's items come first, then this spec's (repeats dropped)",
    Merge.UPDATE: "keys are merged; this spec's value wins for a key both set",
    Merge.BY_NAME: "a user or group replaces the base's of the same name; others are added",
}
