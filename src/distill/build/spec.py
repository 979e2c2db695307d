"""The image spec: YAML (or a shipped preset) → a frozen ``Spec``.

One table, ``FIELDS``, names every key with its parser, its merge rule for ``extends`` and its
help, so the parser, the error messages and ``docs/spec.md`` cannot drift apart. Errors carry
the file and line (of the list item, for ``files:`` and ``paths:``).

A reference may carry a variant, ``PRESET:VARIANT`` (or ``spec.yaml:VARIANT``), as the
distroless tags do: ``nonroot``, ``debug`` and ``debug-nonroot``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from distill.build.spec_app import APP_EXAMPLE, APP_HELP, AppSpec, parse_app
from distill.build.spec_text import Document, read_spec_text, remember, remembered
from distill.build.spec_values import Accounts as Accounts
from distill.build.spec_values import FileSpec as FileSpec
from distill.build.spec_values import PathSpec as PathSpec
from distill.build.spec_values import PathType as PathType
from distill.build.spec_values import (
    Where,
    confine,
    parse_accounts,
    parse_bool,
    parse_command,
    parse_files,
    parse_keep,
    parse_mapping,
    parse_node,
    parse_paths,
    parse_ports,
    parse_str,
    parse_str_list,
    parse_user,
    parse_volumes,
    parse_workdir,
    show,
)
from distill.cache import BlobCache
from distill.errors import DistillError
from distill.rootfs.prune import Keep

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


def pockets_of(suite: str) -> tuple[str, ...]:
    return (suite, f"{suite}-updates", f"{suite}-security")


def host_arch() -> str:
    machine = os.uname().machine.lower()
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
    debug_packages: tuple[str, ...] = ()
    suites: tuple[str, ...] = ()  # empty: every suite
    version_env: tuple[tuple[str, str], ...] = ()  # variable → package
    node: int | None = None  # a Node.js major version from the npm registry (build/nodejs.py)
    # The extends chain, bottom first, each with the packages it adds (empty ones left out).
    levels: tuple[Level, ...] = field(default=())
    pockets: tuple[str, ...] = ()  # empty: every pocket of the suite
    # The nearest preset below this spec in its `extends` chain (``python3:nonroot``): the
    # image ``distill build`` records as its base when that image's layers are its bottom.
    base: str | None = None
    app: AppSpec | None = None  # an application packaged on the image (build/spec_app.py)

    def suite_pockets(self) -> tuple[str, ...]:
        """The pockets a lock may take packages from (checked against the suite)."""
        return self.pockets or pockets_of(self.suite)

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


def _suites(where: Where, key: str, value: Any) -> tuple[str, ...]:
    return tuple(_suite(where, key, item) for item in parse_str_list(where, key, value))


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
        "a preset (e.g. `base`, `python3:nonroot`) or a spec file (relative to this one, "
        "inside the build context) this spec builds on",
        "extends: python3:nonroot",
    ),
    "suite": Field(_suite, Merge.REPLACE, "Debian release: `trixie` (default) or `bookworm`"),
    "suites": Field(
        _suites,
        Merge.REPLACE,
        "the Debian releases this spec is for (default: all); any other is refused at once",
        "suites: [bookworm]",
    ),
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
    "pockets": Field(
        parse_str_list,
        Merge.REPLACE,
        "the pockets of the suite a lock may take packages from (default: all three, "
        "`<suite>`, `<suite>-updates`, `<suite>-security`); the suite itself must be one",
        "pockets: [bookworm, bookworm-updates]",
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
        "local files or directories to copy in: `src` (relative to this spec file, inside "
        "the build context), `dest` "
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
    "version_env": Field(
        parse_mapping,
        Merge.UPDATE,
        "environment variables set to a locked package's version (variable: package): the "
        "upstream version without epoch, revision and anything from the first `+` or `~` "
        "(`21.0.9+10-1~deb13u1` gives `21.0.9`), so it follows the lock; a package the "
        "lock lacks is an error",
        "version_env: {JAVA_VERSION: openjdk-21-jre-headless}",
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
        "update-ca-certificates), `tz_right` (the leap-second time zones, "
        "`/usr/share/zoneinfo/right`); see docs/build.md",
        "keep: {locale: true, gconv: true}",
    ),
    "debug": Field(
        parse_bool,
        Merge.REPLACE,
        "add busybox in /busybox with a shell, as the distroless `:debug` images do; it "
        "becomes the entrypoint only if the spec has none (the `:debug` variant always "
        "makes `/busybox/sh` the entrypoint)",
    ),
    "debug_packages": Field(
        parse_str_list,
        Merge.EXTEND,
        "more Debian packages a debug image carries besides busybox, in its top (*app*) layer",
        "debug_packages: [openjdk-21-jdk-headless]",
    ),
    "node": Field(
        parse_node,
        Merge.REPLACE,
        "Node.js from the official Linux builds the npm registry publishes: the newest "
        "release of `major`, locked with its integrity, at `/nodejs/bin/node` in a layer of "
        "its own (`null` removes it); see docs/archive-and-lock.md",
        "node: {major: 22}",
    ),
    "app": Field(parse_app, Merge.REPLACE, APP_HELP, APP_EXAMPLE),
}


MAX_EXTENDS = 32  # specs in one `extends` chain


def _document(text: str, source: str, preset: bool) -> Document:
    if not preset:
        from distill.build.spec_yaml import load_yaml

        return load_yaml(text, source)
    cache = BlobCache()
    document = remembered(text, cache)
    if document is None:
        from distill.build.spec_yaml import load_yaml

        document = load_yaml(text, source)
        remember(text, document, cache)
    return document


def _parse_mapping(
    text: str, source: str, here: Path, context: Path, *, preset: bool = False
) -> tuple[dict[str, Any], Where]:
    document = _document(text, source, preset)
    where = Where(source, document.lines, document.items, here, context)
    parsed: dict[str, Any] = {}
    for key, value in document.data.items():
        if key not in FIELDS:
            import difflib  # only for a wrong key: kept off the import of every run

            close = difflib.get_close_matches(key[:100], FIELDS, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(FIELDS)}"
            name = key if _KEY.fullmatch(key) else "a key that is not a name"
            raise DistillError(f"{where.at(key)}: {name}: unknown key", hint=hint)
        parsed[key] = FIELDS[key].parser(where, key, value)
    return parsed, where


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


@functools.cache
def _preset_texts() -> dict[str, str]:
    # The package's own directory where it is one (importlib.resources would import zipfile).
    folder: Any = Path(__file__).with_name("presets")
    if not folder.is_dir():
        from importlib import resources

        folder = resources.files("distill.build") / "presets"
    return {
        p.name.removesuffix(".yaml"): p.read_text()
        for p in folder.iterdir()
        if p.name.endswith(".yaml")
    }


def presets() -> dict[str, str]:
    """Preset name → YAML text, from the package data (read once per process: resolving
    a preset's ``extends:`` chain asks for them at every step)."""
    return dict(_preset_texts())


# --- merging ---------------------------------------------------------------------------------


def _by_name(base: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
    replaced = {item.name: item for item in new}
    kept = tuple(replaced.pop(item.name, item) for item in base)
    return kept + tuple(item for item in new if item.name in replaced)


def _merged(key: str, old: Any, new: Any) -> Any:
    rule = FIELDS[key].merge
    if rule is Merge.EXTEND:
        have = set(old)  # a set: a spec may list 100,000 items
        return old + tuple(item for item in new if item not in have)
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
    had = set(base.packages)
    added = tuple(p for p in values.get("packages", ()) if p not in had)
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
    have = set(spec.roots)
    added = tuple(dict.fromkeys(p for p in (DEBUG_PACKAGE, *spec.debug_packages) if p not in have))
    if not spec.debug or not added:
        return spec
    # `debug: true` in a spec adds the shell; it becomes the program only if there is none.
    return replace(
        spec,
        packages=(*spec.packages, *added),
        levels=(*spec.levels, Level(DEBUG_LEVEL, added)),
        entrypoint=spec.entrypoint if spec.entrypoint is not None else DEBUG_ENTRYPOINT,
    )


# --- loading ---------------------------------------------------------------------------------


def _no_such(target: str, known: Mapping[str, str]) -> DistillError:
    import difflib  # only for a wrong name

    close = difflib.get_close_matches(target, known, n=3)
    hint = (
        f"did you mean {', '.join(close)}?"
        if close
        else f"presets: {', '.join(sorted(known))} (see `distill presets`); "
        f"variants: {', '.join(Variant)}"
    )
    return DistillError(f"no spec file or preset named {show(target)}", hint=hint)


@dataclass(frozen=True, slots=True)
class _Source:
    text: str
    source: str  # for messages: the file, or preset:NAME
    name: str
    key: str  # the resolved file, or preset:NAME, to find loops
    here: Path | None  # where its relative paths start; None for a preset
    variant: Variant | None


def _resolve(ref: str, seen: tuple[str, ...], here: Path | None, context: Path) -> _Source:
    """The spec ``ref`` names, read: from a spec in ``here`` (None: from a preset, which
    extends only presets; ``seen`` empty: from the command line, read wherever it is)."""
    if len(seen) > MAX_EXTENDS:
        raise DistillError(f"`extends` goes more than {MAX_EXTENDS} specs deep")
    target, variant = _split_variant(ref)
    known = presets()
    path: Path | None = None
    if here is not None:
        path = here / target
        if seen and not (target in known and not os.path.lexists(path)):
            path = confine(path, context, target)
    if path is not None and path.is_file():
        source, key = str(path), str(path.resolve())
        text = read_spec_text(path, source)
        found = _Source(text, source, path.stem, key, path.parent, variant)
    elif target in known:
        found = _Source(
            known[target], f"preset:{target}", target, f"preset:{target}", None, variant
        )
    else:
        raise _no_such(target, known)
    if found.key in seen:
        raise DistillError(f"`extends` loops: {' → '.join((*seen, found.key))}")
    return found


def _load(spec_source: _Source, seen: tuple[str, ...], context: Path) -> Spec:
    found = spec_source
    parsed, where = _parse_mapping(
        found.text, found.source, found.here or context, context, preset=found.here is None
    )
    base = Spec(name=found.name, source=found.source)
    if "extends" in parsed:
        chain = (*seen, found.key)
        try:
            parent = _resolve(parsed["extends"], chain, found.here, context)
        except DistillError as exc:
            raise where.fail("extends", exc.message, exc.hint) from None
        # Errors inside the parent name its own file and line.
        base = _load(parent, chain, context)
        below = f"{parent.name}:{parent.variant}" if parent.variant else parent.name
        base = replace(base, base=below if parent.here is None else base.base)
    spec = _merge(base, parsed, found.name, found.source)
    return _apply_variant(spec, found.variant) if found.variant is not None else spec


def load_spec(
    ref: str,
    *,
    suite: str | None = None,
    archs: tuple[str, ...] = (),
    context: Path | None = None,
) -> Spec:
    """Load a spec file or a preset, optionally ``:variant``; command-line ``--suite`` and
    ``--arch`` override the file. Every path the spec (or a spec it extends) names must lie
    inside ``context``: by default the directory of the spec file (for a preset: the current
    directory)."""
    target, _ = _split_variant(ref)
    named = Path(target)
    if context is None:
        context = named.parent if named.is_file() else Path.cwd()
    if not context.is_dir():
        raise DistillError(f"the build context {context} is not a directory")
    context = context.resolve()
    spec = _finish(_load(_resolve(ref, (), Path.cwd(), context), (), context))
    if suite is not None:
        spec = replace(spec, suite=_suite(Where("--suite"), "suite", suite))
    if archs:
        spec = replace(spec, archs=_archs(Where("--arch"), "arch", list(archs)))
    _check_suite(spec)
    return spec


def load_preset(ref: str, *, suite: str, archs: tuple[str, ...] = ()) -> Spec:
    """The preset ``ref`` (``python3:nonroot``) for ``suite``: never a file of that name."""
    spec = _finish(_load(_resolve(ref, (), None, Path.cwd()), (), Path.cwd()))
    return replace(spec, suite=suite, archs=archs or spec.archs)


def _check_suite(spec: Spec) -> None:
    """The suite is one the spec is for, and its pockets are the suite's."""
    if spec.suites and spec.suite not in spec.suites:
        flags = " or ".join(f"--suite {s}" for s in spec.suites)
        raise DistillError(
            f"{spec.name} is built for {' and '.join(spec.suites)} only, not {spec.suite}",
            hint=f"leave --suite out or pass {flags} (its packages are not in {spec.suite})",
        )
    known = pockets_of(spec.suite)
    for pocket in spec.pockets:
        if pocket not in known:
            raise DistillError(
                f"{spec.source}: pockets: {show(pocket)} is not a pocket of {spec.suite}",
                hint=f"choose among {', '.join(known)}",
            )
    if spec.pockets and spec.suite not in spec.pockets:
        raise DistillError(
            f"{spec.source}: pockets: {spec.suite} itself is missing",
            hint=f"list {spec.suite} first; -updates and -security only add newer versions",
        )
