"""The links ``update-alternatives --install`` would make, found by reading postinst scripts.

Scripts are read, never run. The reader understands what Debian's postinsts actually use:
backslash-continued lines, plain ``var=value`` assignments (quoted or not), ``$var`` and
``${var}`` expansion, and ``for i in WORDS; do ... done`` loops around the call; openjdk's
postinst installs ``java``, ``keytool``... exactly that way. A call whose link, name or path
still holds something unexpanded (a ``$(command)``, an unknown variable) is ignored rather
than guessed at.

As update-alternatives does in auto mode, an alternative is only made when its path exists
in the image, the highest priority wins a name, and each link goes through
``/etc/alternatives/<name>``. Slave links follow their master when their path exists.

As a safety net for JVMs, when no ``java`` alternative came out of the scripts but a
``usr/lib/jvm/<jvm>/bin/java`` exists, ``/usr/bin/java`` is linked to it (the newest JVM by
name wins).
"""

from __future__ import annotations

import itertools
import re
import shlex
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from distill.image.fsentry import EntryKind, FsEntry
from distill.rootfs.usrmerge import relocate

ALTERNATIVES_DIR = "etc/alternatives"
_ASSIGN = re.compile(r"^\s*(?:export\s+|local\s+|readonly\s+)?([A-Za-z_]\w*)=(.*)$")
_FOR = re.compile(r"^\s*for\s+([A-Za-z_]\w*)\s+in\s+(.*?)\s*(?:;\s*do\b.*)?$")
_VAR = re.compile(r"\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))")
_JVM_JAVA = re.compile(r"^usr/lib/jvm/([^/]+)/bin/java$")


@dataclass(frozen=True, slots=True)
class Alternative:
    name: str
    link: str  # absolute, e.g. /usr/bin/java
    path: str  # absolute, e.g. /usr/lib/jvm/java-21-openjdk-amd64/bin/java
    priority: int
    package: str | None = None
    slaves: tuple[tuple[str, str, str], ...] = ()  # (link, name, path)


def _join_continuations(script: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in script.splitlines():
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def _value(text: str) -> str | None:
    """The literal value of an assignment's right-hand side, or None if it runs anything."""
    text = text.strip()
    if "$(" in text or "`" in text:
        return None
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return None
    return " ".join(words) if len(words) <= 1 else None


def _expand(text: str, env: Mapping[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return env.get(name, match.group(0))

    # Values may hold references themselves (``slave="... $i ..."`` set before the loop).
    for _ in range(8):
        expanded = _VAR.sub(sub, text)
        if expanded == text:
            break
        text = expanded
    return text


def _parse_install(words: list[str], package: str | None) -> Alternative | None:
    try:
        start = words.index("--install")
        link, name, path, prio = words[start + 1 : start + 5]
        priority = int(prio)
    except ValueError:
        return None
    if any("$" in f for f in (link, name, path)):
        return None
    if not link.startswith("/") or not path.startswith("/"):
        return None
    slaves = []
    for i, word in enumerate(words):
        if word == "--slave" and len(words) >= i + 4:
            slave = (words[i + 1], words[i + 2], words[i + 3])
            if not any("$" in f for f in slave) and slave[0].startswith("/"):
                slaves.append(slave)
    return Alternative(name, link, path, priority, package, tuple(slaves))


def parse_alternatives(script: str, package: str | None = None) -> list[Alternative]:
    """Every ``update-alternatives --install`` call in a maintainer script, expanded."""
    env: dict[str, str] = {}
    loops: list[tuple[str, list[str]] | None] = []  # open do-blocks; None for while/until
    found: list[Alternative] = []
    for line in _join_continuations(script):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        loop = _FOR.match(stripped)
        if loop:
            try:
                values = shlex.split(_expand(loop.group(2), env), comments=True)
            except ValueError:
                values = []
            loops.append((loop.group(1), values))
            continue
        if re.match(r"^(while|until)\b", stripped):
            loops.append(None)
            continue
        if re.match(r"^done\b", stripped) and loops:
            loops.pop()
            continue
        assign = _ASSIGN.match(stripped)
        if assign and " " not in assign.group(1):
            value = _value(_expand(assign.group(2), env))
            if value is not None:
                env.setdefault(assign.group(1), value)
            continue
        if "update-alternatives" not in stripped or "--install" not in stripped:
            continue
        active = [lp for lp in loops if lp is not None]
        for combo in itertools.product(*[values for _, values in active]):
            scope = dict(env)
            scope.update({var: value for (var, _), value in zip(active, combo, strict=True)})
            try:
                words = shlex.split(_expand(stripped, scope), comments=True)
            except ValueError:
                continue
            alternative = _parse_install(words, package)
            if alternative is not None:
                found.append(alternative)
    return found


def _exists(present: Collection[str], path: str) -> bool:
    rel = path.strip("/")
    return rel in present or relocate(rel) in present


def _choose(candidates: Iterable[Alternative], present: Collection[str]) -> list[Alternative]:
    best: dict[str, Alternative] = {}
    for alt in candidates:
        if not _exists(present, alt.path):
            continue  # update-alternatives refuses a path that is not there
        current = best.get(alt.name)
        if current is None or (alt.priority, alt.path) > (current.priority, current.path):
            best[alt.name] = alt
    return [best[name] for name in sorted(best)]


def _jvm_fallback(present: Collection[str]) -> Alternative | None:
    jvms = sorted(
        (m.group(1) for p in present if (m := _JVM_JAVA.match(p))),
        key=lambda name: [int(n) if n.isdigit() else n for n in re.split(r"(\d+)", name)],
    )
    if not jvms:
        return None
    return Alternative("java", "/usr/bin/java", f"/usr/lib/jvm/{jvms[-1]}/bin/java", 0)


def _links(link: str, name: str, path: str, package: str | None) -> list[FsEntry]:
    via = f"/{ALTERNATIVES_DIR}/{name}"
    return [
        FsEntry(
            f"{ALTERNATIVES_DIR}/{name}", EntryKind.SYMLINK, 0o777, linkname=path, package=package
        ),
        # A link under /bin or /lib lands in /usr: those are links themselves in the image.
        FsEntry(relocate(link.strip("/")), EntryKind.SYMLINK, 0o777, linkname=via, package=package),
    ]


def alternatives_entries(postinsts: Mapping[str, str], present: Collection[str]) -> list[FsEntry]:
    """The alternative links for packages' postinst scripts (package → script text).

    ``present`` holds the paths in the image, relative (``usr/lib/jvm/.../bin/java``).
    """
    candidates = [
        alt
        for package, script in sorted(postinsts.items())
        for alt in parse_alternatives(script, package)
    ]
    chosen = _choose(candidates, present)
    if not any(a.name == "java" for a in chosen):
        fallback = _jvm_fallback(present)
        if fallback is not None:
            chosen.append(fallback)
    if not chosen:
        return []
    entries = [
        FsEntry("etc", EntryKind.DIR, 0o755),
        FsEntry(ALTERNATIVES_DIR, EntryKind.DIR, 0o755),
    ]
    made: set[str] = set()
    for alt in chosen:
        pairs = [(alt.link, alt.name, alt.path)]
        pairs += [s for s in alt.slaves if _exists(present, s[2])]
        for link, name, path in pairs:
            if relocate(link.strip("/")) in made or _exists(present, link):
                continue  # a package's own file is never replaced by a link
            made.add(relocate(link.strip("/")))
            entries += _links(link, name, path, alt.package)
    return entries
