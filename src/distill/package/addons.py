"""Native Node addons (``*.node``, shared objects node loads with ``dlopen``) checked against
the image they are going to: built for its CPU and for glibc, for its Node.js ABI, and with
every library they need either in the image or in a Debian package that is then added.

Packages often ship prebuilt addons for several platforms side by side (``prebuilds/
linux-x64/…``, ``…/darwin-arm64/…``, a musl build next to the glibc one) and pick one at
run time, so an addon for another platform is not an error by itself: a package (or the
application's own files) is refused when it has addons and none of them is for the image.
A package that compiles its addon at install time (it has a ``binding.gyp``) but ended up
with no addon for the image is refused too, unless it is an optional dependency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from distill.bounded import one_line
from distill.errors import DistillError
from distill.image.fsentry import EntryKind, FsEntry
from distill.package.libraries import ElfInfo, needed_libraries, resolve_libraries
from distill.package.plan import BaseFacts, PlanContext

ELF_MAGIC = b"\x7fELF"
# e_machine → Debian architecture (for the little-endian ELF these architectures use).
_MACHINES = {62: "amd64", 183: "arm64", 3: "i386", 40: "armhf", 243: "riscv64", 22: "s390x"}
_MACHINES |= {21: "ppc64el"}
_MACHINE_NAMES = {62: "x86-64", 183: "AArch64", 3: "x86", 40: "ARM", 243: "RISC-V", 22: "s390x"}
_MACHINE_NAMES |= {21: "PowerPC64"}
# NODE_MODULE_VERSION of each Node.js major (process.versions.modules): an addon that is not
# built on N-API exports node_register_module_v<ABI> and loads only into that ABI.
NODE_ABI = {18: 108, 20: 115, 22: 127, 24: 137}
_ABI_SYMBOL = re.compile(rb"node_register_module_v([0-9]{2,4})\x00")
_MAX_HEADER = 64
APPLICATION = "the application"  # the owner of addons among the app's own files


@dataclass(frozen=True, slots=True)
class Addon:
    image_path: str  # "app/node_modules/x/build/Release/x.node"
    staged: Path
    owner: str  # the npm package it belongs to, or APPLICATION


@dataclass(frozen=True, slots=True)
class AddonCheck:
    debian_packages: tuple[str, ...]
    notes: tuple[str, ...]


def owner_of(path: str) -> str:
    """The npm package an image path belongs to (the innermost ``node_modules/<name>`` or
    ``node_modules/@scope/<name>``), or APPLICATION."""
    parts = path.split("/")
    owner = APPLICATION
    for i, part in enumerate(parts[:-1]):
        if part != "node_modules" or i + 1 >= len(parts) - 1:
            continue
        name = parts[i + 1]
        if name.startswith("@") and i + 2 < len(parts) - 1:
            name = f"{name}/{parts[i + 2]}"
        owner = name
    return owner


def find_addons(entries: Iterable[FsEntry]) -> list[Addon]:
    return [
        Addon(e.path, e.content, owner_of(e.path))
        for e in entries
        if e.kind is EntryKind.FILE and e.path.endswith(".node") and isinstance(e.content, Path)
    ]


def _header(staged: Path) -> bytes:
    with staged.open("rb") as fh:
        return fh.read(_MAX_HEADER)


def _machine(header: bytes) -> int | None:
    """e_machine of an ELF header, None if it is not ELF."""
    if len(header) < 20 or not header.startswith(ELF_MAGIC):
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def _what(header: bytes) -> str:
    machine = _machine(header)
    if machine is None:
        if header[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe"):
            return "a macOS (Mach-O) library"
        return "a Windows (PE) library" if header[:2] == b"MZ" else "not an ELF file"
    return f"an ELF file for {_MACHINE_NAMES.get(machine, f'machine {machine}')}"


def _is_musl(info: ElfInfo) -> bool:
    return "musl" in (info.interp or "") or any(n.startswith("libc.musl") for n in info.needed)


def _abi_error(addon: Addon, data: bytes, node: str | None) -> DistillError | None:
    found = _ABI_SYMBOL.search(data)
    if found is None or node is None or b"napi_register_module_v" in data:
        return None
    wanted = NODE_ABI.get(int(node.split(".")[0])) if node.split(".")[0].isdigit() else None
    built = int(found.group(1))
    if wanted is None or wanted == built:
        return None
    majors = [str(m) for m, abi in NODE_ABI.items() if abi == built]
    built_for = f"Node.js {majors[0]}" if majors else f"Node.js ABI {built}"
    return DistillError(
        f"{addon.owner}: the native addon /{addon.image_path} was built for {built_for}, "
        f"the image's node is {node}",
        hint="build it against the image's Node.js version, or use a base with the Node.js "
        "it was built for (nodejs22, nodejs24)",
    )


def check_addons(
    addons: Sequence[Addon],
    gyp_packages: Iterable[str],
    optional: Iterable[str],
    base: BaseFacts,
    app_entries: Sequence[FsEntry],
    ctx: PlanContext,
) -> AddonCheck:
    """Check every addon (see the module's docstring); the Debian packages the image needs
    for their libraries, and notes for the user."""
    usable: dict[str, list[Addon]] = {}
    rejected: dict[str, tuple[Addon, str]] = {}
    needs: dict[str, ElfInfo] = {}
    for addon in addons:
        header = _header(addon.staged)
        if _MACHINES.get(_machine(header) or -1) != base.arch:
            rejected.setdefault(addon.owner, (addon, _what(header)))
            continue
        info = needed_libraries(addon.staged, f"/{addon.image_path}")
        if _is_musl(info):
            rejected.setdefault(addon.owner, (addon, "built for musl libc"))
            continue
        usable.setdefault(addon.owner, []).append(addon)
        needs[addon.image_path] = info
    for owner, (addon, what) in sorted(rejected.items()):
        if owner not in usable:
            raise DistillError(
                f"{owner}: the native addon /{addon.image_path} is {what}; the image is "
                f"linux/{base.arch} with glibc",
                hint="rebuild the addon for the image's platform, or use a version of the "
                "package that ships a prebuilt addon for it",
            )
    optional = set(optional)
    unbuilt = sorted(set(gyp_packages) - set(usable) - optional)
    if unbuilt:
        raise DistillError(
            f"{unbuilt[0]} builds its native addon at install time, and no addon for linux/"
            f"{base.arch} came out of the install",
            hint="package on a machine of the image's architecture (install scripts are only "
            "run there), or use a package that ships a prebuilt addon for it",
        )
    chosen = [addon for group in usable.values() for addon in group]
    for addon in chosen:
        error = _abi_error(addon, addon.staged.read_bytes(), base.node)
        if error is not None:
            raise error
    if not chosen:
        return AddonCheck((), ())
    return _resolve(chosen, needs, base, app_entries, ctx)


def _resolve(
    addons: Sequence[Addon],
    needs: dict[str, ElfInfo],
    base: BaseFacts,
    app_entries: Sequence[FsEntry],
    ctx: PlanContext,
) -> AddonCheck:
    if base.suite is None:
        raise DistillError(
            "the base image names no Debian release (VERSION_CODENAME), so the libraries of "
            "native addons cannot be looked up",
            hint="use a Debian-based distill base (nodejs:nonroot, nodejs22:nonroot)",
        )
    # Libraries shipped inside node_modules (reached by an addon's $ORIGIN RUNPATH) are in
    # the image as much as the base's own.
    links = {e.path: e.linkname for e in app_entries if e.kind is EntryKind.SYMLINK}
    image = replace(
        base,
        files=base.files | frozenset(e.path for e in app_entries),
        symlinks={**base.symlinks, **links},
    )
    resolution = resolve_libraries(
        [(f"/{a.image_path}", a.staged) for a in addons],
        image,
        cache=ctx.cache,
        access=ctx.access,
        suite=base.suite,
        arch=base.arch,
        strict=False,
    )
    if resolution.missing:
        soname = resolution.missing[0]
        addon = next(a for a in addons if soname in needs[a.image_path].needed)
        others = f" (and {', '.join(resolution.missing[1:])})" if resolution.missing[1:] else ""
        raise DistillError(
            f"{addon.owner}: the native addon /{addon.image_path} needs {one_line(soname, 200)}"
            f"{one_line(others, 300)}, which neither the image nor any Debian package of "
            f"{base.suite}/{base.arch} ships",
            hint="ship the library with the app (next to the addon, found through RUNPATH "
            "$ORIGIN), or link the addon statically against it",
        )
    notes = [f"native addon /{a.image_path} ({a.owner})" for a in addons]
    if resolution.packages:
        added = ", ".join(
            f"{soname} ({package})"
            for soname, package in sorted(resolution.found.items())
            if package in resolution.packages
        )
        notes.append(f"Debian packages added for native addons: {added}")
    return AddonCheck(tuple(resolution.packages), tuple(notes))
