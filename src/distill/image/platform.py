"""Platforms: ``os/arch[/variant]``, Debian's architecture names, and this host's."""

from __future__ import annotations

import platform as host
from dataclasses import dataclass

from distill.errors import DistillError

# Debian architecture -> (OCI architecture, variant): the names container runtimes match.
_DEBIAN_ARCHES: dict[str, tuple[str, str | None]] = {
    "amd64": ("amd64", None),
    "arm64": ("arm64", "v8"),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v5"),
    "i386": ("386", None),
    "ppc64el": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64el": ("mips64le", None),
    "loong64": ("loong64", None),
}
# The variant a platform string means when it names none (as containerd normalises them).
_DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7"}
# uname's machine -> OCI architecture.
_HOST_ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "i386": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True, slots=True)
class Platform:
    architecture: str
    os: str = "linux"
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]`` or ``arch``; arm64 means arm64/v8 and arm means arm/v7."""
        parts = text.strip().split("/")
        if len(parts) == 1:
            parts = ["linux", *parts]
        if not 2 <= len(parts) <= 3 or not all(parts):
            raise DistillError(
                f"not a platform: {text!r}", hint="write it as os/arch[/variant], e.g. linux/arm64"
            )
        variant = parts[2] if len(parts) == 3 else _DEFAULT_VARIANTS.get(parts[1])
        return cls(architecture=parts[1], os=parts[0], variant=variant)

    @classmethod
    def from_debian(cls, arch: str) -> Platform:
        try:
            architecture, variant = _DEBIAN_ARCHES[arch]
        except KeyError:
            raise DistillError(
                f"no OCI platform for Debian architecture {arch!r}",
                hint="supported: " + ", ".join(sorted(_DEBIAN_ARCHES)),
            ) from None
        return cls(architecture=architecture, variant=variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out


def host_platform() -> Platform:
    machine = host.machine().lower()
    return Platform.parse(f"linux/{_HOST_ARCHES.get(machine, machine)}")


def normal_platform(arch: str, os_name: str, variant: str | None) -> Platform:
    """A platform as ``Platform.parse`` would spell it, so ``arm64`` equals ``arm64/v8``."""
    if variant:
        return Platform(architecture=arch, os=os_name, variant=variant)
    return Platform.parse(f"{os_name}/{arch}") if arch and os_name else Platform(arch, os_name)


def platform_matches(wanted: Platform, offered: Platform) -> bool:
    if (wanted.os, wanted.architecture) != (offered.os, offered.architecture):
        return False
    return wanted.variant is None or offered.variant in (None, wanted.variant)
