"""The spec's ``app:`` key: an application ``distill build`` packages on the spec's image,
with the options of ``distill package`` (docs/package.md). The spec itself is the base:
its ``extends``, packages, files and config, with the app's layers on top.

Only parsing lives here (``build`` sits below ``package``); ``package.core`` turns an
``AppSpec`` into the planners' ``AppOptions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.build.spec_values import (
    Where,
    confine,
    parse_bool,
    parse_command,
    parse_mapping,
    parse_ports,
    parse_str,
    show,
)

# The kinds ``package.plan.AppKind`` names (a test keeps the two equal).
APP_KINDS = ("python", "node", "java", "elf")
APP_KEYS = ("path", "kind", "entrypoint", "cmd", "ports", "env", "jlink")


@dataclass(frozen=True, slots=True)
class AppSpec:
    path: Path  # resolved, inside the build context
    kind: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    ports: tuple[str, ...] = ()  # normalised: "8080/tcp"
    env: tuple[tuple[str, str], ...] = ()
    jlink: bool = False


def parse_app(where: Where, key: str, value: Any) -> AppSpec | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise where.fail(key, "expected a mapping with at least `path:`", hint="app: {path: .}")
    for name in value:
        if name not in APP_KEYS:
            raise where.fail(
                key, f"{show(name)}: unknown key", hint=f"known keys: {', '.join(APP_KEYS)}"
            )
    if "path" not in value:
        raise where.fail(key, "`path:` is missing", hint="the app's directory, e.g. `path: .`")
    label = parse_str(where, key, value["path"])
    path = confine(where.here / label, where.context, label)
    if not path.exists():
        raise where.fail(key, f"path: {show(label)} does not exist")
    kind = None
    if value.get("kind") is not None:
        kind = parse_str(where, key, value["kind"])
        if kind not in APP_KINDS:
            raise where.fail(key, f"kind: {show(kind)} is unknown", hint=" or ".join(APP_KINDS))
    ports = parse_ports(where, key, value["ports"]) if value.get("ports") is not None else ()
    return AppSpec(
        path=path,
        kind=kind,
        entrypoint=parse_command(where, key, value.get("entrypoint")),
        cmd=parse_command(where, key, value.get("cmd")),
        ports=ports,
        env=parse_mapping(where, key, value.get("env")),
        jlink=parse_bool(where, key, value.get("jlink", False)),
    )


APP_HELP = (
    "an application to package on this spec's image, as `distill package` does "
    "(docs/package.md): `path` (its directory, jar, wheel or binary, relative to this spec), "
    "optional `kind` (python, node, java, elf; default: detected), `entrypoint` and `cmd` "
    "(default: inferred), `ports`, `env` and `jlink` (Java: a runtime of only the modules "
    "the app needs); the language packages it installs are locked with the spec"
)
APP_EXAMPLE = "app:\n  path: .\n  ports: [8080]\n  env: {APP_ENV: production}"
