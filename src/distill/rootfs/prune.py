"""What distill leaves out of the packages it installs, and the ``keep:`` keys that stop it.

Two stages drop files. Extraction (``rootfs.extract``) leaves out documentation, man pages and
message catalogues as it unpacks (``doc``, ``man``, ``locale``). ``prune`` then runs on each
finished rootfs, after the CA bundle, the Java keystore and the alternative links have been
made from the packages' files, and drops what nothing in a container reads at run time:

- ``gconv``: glibc's extra charset converters. glibc lists its modules in two files:
  ``gconv-modules`` names the basic set (UTF-16, UTF-32, UTF-7, UCS-2, ISO-8859-1 and -15,
  CP1252, ANSI_X3.110), ``gconv-modules.d/gconv-modules-extra.conf`` the ~240 others
  (EBCDIC, CJK, legacy code pages; 8 MB). The extra ones, their helper libraries, their
  configuration file and ``gconv-modules.cache`` (which would still name them) are dropped.
  ``iconv_open(3)`` then refuses those charsets as if unknown; UTF-8, ASCII, UCS-4 and
  Latin-1 are built into libc anyway. Only C programs that call iconv with such a charset
  notice; Python, Node.js and Java convert charsets themselves. Fedora splits the same set
  into ``glibc-gconv-extra``, which its minimal and UBI micro images leave out.
- ``cds``: a JVM's extra class-data-sharing archives, ``lib/server/classes_*.jsa`` (15 MB
  each), and ``lib/classlist``, the input for making them again (``java -Xshare:dump``). The
  JVM maps ``classes.jsa``, kept, under the default options; the others serve
  ``-XX:-UseCompressedOops`` (heaps of 32 GB and more) and compact object headers. Such a JVM
  starts without CDS, a little slower (SapMachine ships only the default archive too).
- ``debugging``: what only a debugger or a tracing preload uses: gdb's auto-load scripts
  (``usr/share/gdb``), libstdc++'s pretty printers (``usr/share/gcc/python``), and glibc's
  ``libthread_db`` (loaded by gdb), ``libc_malloc_debug``, ``libmemusage`` and
  ``libpcprofile`` (``LD_PRELOAD`` helpers of mtrace, memusage and pcprofile, whose front
  ends are in libc-devtools). No program links them; there is no debugger in an image.
- ``ca_sources``: ca-certificates' single certificates under ``usr/share/ca-certificates``,
  its ``update-ca-certificates`` script and ``etc/ca-certificates/update.d``. distill builds
  ``/etc/ssl/certs/ca-certificates.crt`` (and the Java keystore) from the certificates before
  this runs, and nothing reads them afterwards; the script needs a shell and the openssl
  program, neither of which is in an image. distroless's images carry only the bundle, too.
- ``tz_right``: ``usr/share/zoneinfo/right``, the zones counted with leap seconds (TAI-10s,
  0.7 MB; in Debian 13 they come with the old zone names in ``tzdata-legacy``, which every
  preset installs for those names). Only ``TZ=right/...`` reads them; POSIX time has no leap
  seconds, so no ordinary zone points there.
- ``man`` (also an extraction option): the JVM's own ``man`` directory and the alternative
  links into it, which extraction alone does not reach.

Symlinks left pointing at a dropped file, hardlinks to one and directories emptied by the
rules (unless a kept symlink points at them) go too. Package metadata (``status.d``, with the
md5sums as shipped) is untouched, so scanners still see every package.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from distill.image.fsentry import EntryKind, FsEntry
from distill.rootfs.extract import KeepOptions
from distill.rootfs.usrmerge import relocate


@dataclass(frozen=True, slots=True)
class Keep:
    """The spec's ``keep:``: what to keep that distill leaves out by default."""

    doc: bool = False
    man: bool = False
    locale: bool = False
    gconv: bool = False
    cds: bool = False
    debugging: bool = False
    ca_sources: bool = False
    tz_right: bool = False

    @property
    def extract(self) -> KeepOptions:
        """The options that act while unpacking (and key the unpack cache)."""
        return KeepOptions(doc=self.doc, man=self.man, locale=self.locale)


KEEP_KINDS = tuple(f.name for f in fields(Keep))

# Whole subtrees each rule drops, as path patterns matched one component at a time.
SUBTREES: dict[str, tuple[str, ...]] = {
    "man": ("usr/share/man", "usr/lib/jvm/*/man"),
    "cds": ("usr/lib/jvm/*/lib/*/classes_*.jsa", "usr/lib/jvm/*/lib/classlist"),
    "debugging": (
        "usr/share/gdb",
        "usr/share/gcc/python",
        "usr/lib/*/libthread_db.so*",
        "usr/lib/*/libc_malloc_debug.so*",
        "usr/lib/*/libmemusage.so",
        "usr/lib/*/libpcprofile.so",
    ),
    "ca_sources": (
        "usr/share/ca-certificates",
        "usr/sbin/update-ca-certificates",
        "etc/ca-certificates/update.d",
    ),
    "tz_right": ("usr/share/zoneinfo/right",),
}
GCONV_DIRS = ("usr/lib/*/gconv", "usr/lib/gconv", "usr/lib64/gconv")
GCONV_BASIC = "gconv-modules"
GCONV_EXTRA = "gconv-modules.d/gconv-modules-extra.conf"
GCONV_CACHE = "gconv-modules.cache"


@dataclass(frozen=True, slots=True)
class Dropped:
    kind: str  # the keep: key that would have kept it
    files: int  # entries of any type
    size: int  # bytes of regular files


def subtree_regex(patterns: Iterable[str]) -> re.Pattern[str]:
    """A regex matching a path that is one of ``patterns`` or inside one; ``*`` matches
    within one path component."""
    alternatives = (re.escape(p).replace(r"\*", "[^/]*") for p in patterns)
    return re.compile(f"(?:{'|'.join(alternatives)})(?:/|$)")


_SUBTREE_RES = {kind: subtree_regex(patterns) for kind, patterns in SUBTREES.items()}
_GCONV_DIRS_RE = subtree_regex(GCONV_DIRS)


def gconv_modules(text: str) -> set[str]:
    """The module files (without ``.so``) a gconv configuration file names."""
    names = set()
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 4 and words[0] == "module":
            names.add(words[3])
    return names


def _gconv_extras(entries: Mapping[str, FsEntry]) -> set[str]:
    """Paths of the extra gconv set: modules named only in gconv-modules-extra.conf, the
    other shared objects of the package that ships it (the modules' helper libraries), the
    file itself and the cache. Nothing when a directory lacks either configuration file."""
    dirs = {
        posixpath.dirname(posixpath.dirname(path))
        for path in entries
        if path.endswith("/" + GCONV_EXTRA) and _GCONV_DIRS_RE.match(path)
    }
    found: set[str] = set()
    for folder in sorted(dirs):
        basic, extra = entries.get(f"{folder}/{GCONV_BASIC}"), entries[f"{folder}/{GCONV_EXTRA}"]
        if basic is None or basic.kind is not EntryKind.FILE or extra.kind is not EntryKind.FILE:
            continue
        keep = {f"{folder}/{name}.so" for name in gconv_modules(basic.read_bytes().decode())}
        found |= {f"{folder}/{GCONV_EXTRA}", f"{folder}/{GCONV_CACHE}"} & entries.keys()
        for path, entry in entries.items():
            if (
                posixpath.dirname(path) == folder
                and path.endswith(".so")
                and path not in keep
                and entry.package == extra.package
            ):
                found.add(path)
    return found


def _target(entry: FsEntry) -> str:
    """The image path a symlink or hardlink points at (merged /usr applied)."""
    if entry.kind is EntryKind.HARDLINK:
        return entry.linkname
    start = "" if entry.linkname.startswith("/") else posixpath.dirname(entry.path)
    path = posixpath.normpath(posixpath.join("/", start, entry.linkname)).lstrip("/")
    return relocate(path)


def prune(entries: Mapping[str, FsEntry], keep: Keep) -> tuple[dict[str, FsEntry], list[Dropped]]:
    """``entries`` (path → entry, a finished rootfs) without what ``keep`` does not keep,
    and how much each rule dropped."""
    drop: dict[str, str] = {}
    for kind, regex in _SUBTREE_RES.items():
        if not getattr(keep, kind):
            drop.update({path: kind for path in entries if path not in drop and regex.match(path)})
    if not keep.gconv:
        for path in _gconv_extras(entries):
            drop.setdefault(path, "gconv")
    if not drop:
        return dict(entries), []
    _follow_links(entries, drop)
    _emptied_dirs(entries, drop)
    kept = {path: e for path, e in entries.items() if path not in drop}
    return kept, _summary(entries, drop)


def _follow_links(entries: Mapping[str, FsEntry], drop: dict[str, str]) -> None:
    links = [e for e in entries.values() if e.kind in (EntryKind.SYMLINK, EntryKind.HARDLINK)]
    changed = True
    while changed:  # a link to a link to a dropped file
        changed = False
        for link in links:
            if link.path not in drop:
                kind = next((drop[p] for p in _ancestors(_target(link)) if p in drop), None)
                if kind is not None:
                    drop[link.path] = kind
                    changed = True


def _ancestors(path: str) -> Iterable[str]:
    parts = path.split("/")
    return ("/".join(parts[:i]) for i in range(len(parts), 0, -1))


def _emptied_dirs(entries: Mapping[str, FsEntry], drop: dict[str, str]) -> None:
    """Drop directories whose every child was dropped (deepest first, so parents follow),
    except those a kept symlink points at (``/sbin`` → ``usr/sbin``)."""
    children: dict[str, list[str]] = {}
    for path in entries:
        children.setdefault(posixpath.dirname(path), []).append(path)
    linked = {
        _target(e) for e in entries.values() if e.kind is EntryKind.SYMLINK and e.path not in drop
    }
    dirs = [
        e.path
        for e in entries.values()
        if e.kind is EntryKind.DIR and e.path not in drop and e.path not in linked
    ]
    for folder in sorted(dirs, key=lambda p: -p.count("/")):
        inside = children.get(folder, [])
        if inside and all(child in drop for child in inside):
            drop[folder] = drop[inside[0]]


def _summary(entries: Mapping[str, FsEntry], drop: Mapping[str, str]) -> list[Dropped]:
    counts: dict[str, list[int]] = {}
    for path, kind in drop.items():
        count = counts.setdefault(kind, [0, 0])
        count[0] += 1
        entry = entries[path]
        count[1] += entry.size if entry.kind is EntryKind.FILE else 0
    return [Dropped(kind, files, size) for kind, (files, size) in sorted(counts.items())]


def describe(dropped: Iterable[Dropped]) -> str:
    """One line for the build's notes: ``left out (keep: to restore): cds 2 files 14.4 MiB``."""
    parts = []
    for d in dropped:
        plural = "" if d.files == 1 else "s"
        parts.append(f"{d.kind} {d.files} file{plural} {d.size / 1048576:.1f} MiB")
    return f"left out (keep: to restore): {', '.join(parts)}" if parts else ""
