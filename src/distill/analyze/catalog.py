"""Which packages an image holds, read from the files package managers leave behind.

The image is never unpacked: the filesystem view streams the layers once and hands over only the
files ``wanted`` asks for (package databases, ``copyright`` files, language metadata, archives
under a size cap), each with the index of the layer that last wrote it. From those:

- Debian: ``var/lib/dpkg/status`` (only stanzas whose status says the files are on disk) and the
  distroless ``var/lib/dpkg/status.d/`` (one control stanza per file, no ``Status`` line, so
  installed), file lists from ``info/<pkg>.list`` or ``<pkg>.md5sums``, licences from the
  machine-readable ``usr/share/doc/<pkg>/copyright``.
- Alpine and Wolfi: ``lib/apk/db/installed``.
- Python ``*.dist-info/METADATA`` and ``*.egg-info/PKG-INFO``, npm ``node_modules/**/package.json``,
  Java archives (``pom.properties``, else the manifest; nested archives too, a few levels deep).

Language metadata that an OS package installed is left to that OS package, as trivy does: the
Debian ``python3-*`` packages would otherwise be listed twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from enum import StrEnum
from posixpath import dirname, join, normpath

from distill.analyze.components import (
    CapturedFile,
    Catalog,
    Component,
    OsRelease,
    PackageType,
    make_purl,
    text,
)
from distill.analyze.fsview import FsView, NodeKind
from distill.analyze.langpkgs import (
    ARCHIVE_SUFFIXES,
    MAX_ARCHIVE_BYTES,
    MAX_METADATA_BYTES,
    exploded_pom,
    is_archive,
    is_component_record,
    language_components,
    npm_package_dir,
)
from distill.debian.control import parse_stanzas
from distill.errors import DistillError
from distill.image.tarscan import TarEntry
from distill.rootfs.osrelease import MAX_OS_RELEASE, OS_RELEASE_PATHS, parse_os_release

__all__ = [
    "CapturedFile",
    "Catalog",
    "Component",
    "OsRelease",
    "PackageType",
    "build_catalog",
    "catalog_view",
    "dep5_licenses",
    "parse_os_release",
    "unaccounted_warning",
    "want",
    "wanted",
]

# Enough of an executable-bit file to tell an ELF binary or a script from anything else.
EXEC_HEAD = 4

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d"
DPKG_INFO = "var/lib/dpkg/info"
APK_INSTALLED = "lib/apk/db/installed"
_DOC = "usr/share/doc"
# dpkg states in which the package's files are all on disk; the rest (not-installed,
# config-files, half-installed, unpacked...) leave nothing or an unknown subset.
_INSTALLED_STATES = frozenset({"installed", "triggers-pending", "triggers-awaited"})


# --- what to capture -------------------------------------------------------------------------


_WHOLE = frozenset({DPKG_STATUS, APK_INSTALLED, *OS_RELEASE_PATHS})
# The file names (or endings) ``wanted`` can say yes to outside the dpkg directories: anything
# else is turned down on its name alone, which is most of an image.
_NAMES = frozenset({"copyright", "METADATA", "PKG-INFO", "package.json", "pom.properties"})
_ENDINGS = (".egg-info", *ARCHIVE_SUFFIXES)


# How much of each file the catalog reads (docs/analyze.md). Real ones are far smaller: a
# dpkg status of 3,000 packages is about 6 MiB, an os-release a few hundred bytes. What an
# image declares must not decide what reading it costs.
MAX_DATABASE = 64 << 20  # dpkg status, apk installed
MAX_CONTROL = 1 << 20  # one status.d stanza file
MAX_FILE_LIST = 16 << 20  # info/<pkg>.list, .md5sums
MAX_COPYRIGHT = 4 << 20
# Packages in one image, all kinds: a large real image holds a few thousand.
MAX_PACKAGES = 50_000
_WINDOW = 1 << 20


class Over(StrEnum):
    """What the catalog does with a file larger than its cap."""

    REFUSE = "refuse"  # an error: without the whole file the catalog would be wrong
    HEAD = "head"  # read the first cap bytes (whole lines), and warn
    SKIP = "skip"  # leave it out, and warn


def capture_cap(path: str) -> tuple[int, Over] | None:
    """The cap on a file the catalog reads, and what a larger one gets; None for a file the
    catalog does not read (path normalised, relative, no leading slash)."""
    if path in (DPKG_STATUS, APK_INSTALLED):
        return MAX_DATABASE, Over.REFUSE
    if path in OS_RELEASE_PATHS:
        return MAX_OS_RELEASE, Over.HEAD
    if is_component_record(path):
        return MAX_METADATA_BYTES, Over.SKIP
    parent, _, name = path.rpartition("/")
    if (
        name not in _NAMES
        and not parent.startswith("var/lib/dpkg/")
        and not name.lower().endswith(_ENDINGS)
    ):
        return None
    if parent == DPKG_STATUS_D:
        return (
            (MAX_FILE_LIST, Over.HEAD) if name.endswith(".md5sums") else (MAX_CONTROL, Over.REFUSE)
        )
    if parent == DPKG_INFO:
        return (MAX_FILE_LIST, Over.HEAD) if name.endswith((".list", ".md5sums")) else None
    if name == "copyright":
        return (MAX_COPYRIGHT, Over.HEAD) if dirname(parent) == _DOC else None
    if name == "METADATA":
        return (MAX_METADATA_BYTES, Over.SKIP) if parent.endswith(".dist-info") else None
    if path.endswith(".egg-info") or (name == "PKG-INFO" and parent.endswith(".egg-info")):
        return MAX_METADATA_BYTES, Over.SKIP  # old setuptools wrote .egg-info as a file
    if name == "package.json":
        return (MAX_METADATA_BYTES, Over.SKIP) if npm_package_dir(parent) else None
    if name == "pom.properties":
        return (MAX_METADATA_BYTES, Over.SKIP) if exploded_pom(path) else None
    return (MAX_ARCHIVE_BYTES, Over.SKIP) if is_archive(path) else None


def wanted(path: str, size: int) -> bool:
    """Whether the catalog needs this regular file's bytes (path normalised, relative, no
    leading slash). The filesystem view asks this of every regular file in the image."""
    cap = capture_cap(path)
    return cap is not None and (cap[1] is not Over.SKIP or size <= cap[0])


def want(path: str, member: TarEntry) -> int:
    """The filesystem view's hook: all of a wanted file, the head of an executable, or 0."""
    cap = capture_cap(path)
    if cap is not None and (cap[1] is not Over.SKIP or member.size <= cap[0]):
        return min(member.size, cap[0])
    return EXEC_HEAD if member.mode & 0o111 else 0


def is_executable(mode: int, head: bytes | None) -> bool:
    """An ELF binary or a ``#!`` script that someone may run: what a package must account for."""
    return bool(mode & 0o111) and head is not None and head.startswith((b"\x7fELF", b"#!"))


# --- the catalog -----------------------------------------------------------------------------


def build_catalog(
    files: Mapping[str, CapturedFile],
    *,
    symlinks: Mapping[str, str] | None = None,
    executables: int = 0,
) -> Catalog:
    """Every package in ``files`` (as captured with ``wanted``).

    ``symlinks`` maps symlink paths to their targets, to follow ``usr/share/doc/<pkg>`` links
    to another package's directory. ``executables`` is how many executables the image holds:
    with no OS package database they are unaccounted for, which is said loudly, never hidden
    behind an empty list.
    """
    links = symlinks or {}
    os_release = read_os_release(files)
    warnings: list[str] = []
    os_components: list[Component] = []
    databases: list[str] = []
    for path, reader in ((DPKG_STATUS, _dpkg_status), (APK_INSTALLED, _apk_installed)):
        if path in files:
            databases.append(path)
            _counted(reader(files, links, os_release), os_components)
    status_d = sorted(p for p in files if dirname(p) == DPKG_STATUS_D)
    if status_d:
        databases.append(DPKG_STATUS_D)
        _counted(_dpkg_status_d(files, status_d, links, os_release), os_components)

    owned = {f for c in os_components for f in c.files}
    lang: list[Component] = []
    for path in sorted(files):
        if path in owned:
            continue
        try:
            declared = language_components(path, files[path], warnings)
        except DistillError as exc:
            warnings.append(exc.message)
            continue
        _counted(declared, lang, len(os_components))
    if executables and not databases:
        warnings.insert(0, unaccounted_warning(executables))
    components = sorted(_dedupe(os_components + lang), key=_sort_key)
    return Catalog(tuple(components), os_release, tuple(databases), tuple(warnings))


def catalog_view(view: FsView) -> Catalog:
    """The catalog of an image's merged filesystem, read with ``want`` as its hook."""
    files: dict[str, CapturedFile] = {}
    links: dict[str, str] = {}
    notes: list[str] = []
    executables = 0
    for path, node in view.nodes.items():
        if node.kind is NodeKind.SYMLINK:
            links[path] = node.linkname
        elif node.kind is NodeKind.FILE:
            if node.content is not None and is_executable(node.mode, node.content[:EXEC_HEAD]):
                executables += 1
            cap = capture_cap(path)
            if cap is None:
                continue
            if node.size > cap[0]:
                notes.append(_over_cap(path, node.size, *cap))
                if cap[1] is not Over.HEAD:
                    continue
            if node.content is None or not wanted(path, node.size):
                continue
            if node.spool is not None and not is_archive(path):
                # text the parsers need whole (a big dpkg status): read it back, capped
                with node.spool.open("rb") as spooled:
                    data = spooled.read(cap[0])
                files[path] = CapturedFile(_whole_lines(data, node.size), node.layer, node.mode)
            elif node.spool is not None:  # an archive stays on disk: the zip reader seeks in it
                files[path] = CapturedFile(node.content, node.layer, node.mode, node.spool)
            else:
                data = _whole_lines(node.content[: cap[0]], node.size)
                files[path] = CapturedFile(data, node.layer, node.mode)
    catalog = build_catalog(files, symlinks=links, executables=executables)
    if not notes:
        return catalog
    return replace(catalog, warnings=(*sorted(notes), *catalog.warnings))


def _whole_lines(data: bytes, size: int) -> bytes:
    """The head of a file read up to its cap ends at its last whole line."""
    if len(data) >= size:
        return data
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


def _over_cap(path: str, size: int, cap: int, over: Over) -> str:
    """The warning for a file larger than its cap; the error where reading only part of it
    would make the catalog wrong."""
    what = f"/{path} is {size} bytes, more than the {_size(cap)} distill reads of it"
    if over is Over.REFUSE:
        raise DistillError(
            f"{what}; refusing to catalog an incomplete package database",
            hint="a real package database is a few MiB; the image is damaged or made to attack "
            "a reader",
        )
    if over is Over.HEAD:
        return f"{what}; only its first {_size(cap)} were read"
    return f"{what}; it was skipped and the packages it declares are missing"


def _size(size: int) -> str:
    return (
        f"{size >> 30} GiB"
        if size >= 1 << 30
        else f"{size >> 20} MiB"
        if size >= 1 << 20
        else f"{size >> 10} KiB"
    )


def unaccounted_warning(executables: int) -> str:
    noun = "executable is" if executables == 1 else "executables are"
    return f"no package database found: {executables} {noun} unaccounted for"


def _sort_key(c: Component) -> tuple[str, str, str, str, str]:
    return (c.type.value, c.name, c.version, c.arch, c.locations[0] if c.locations else "")


def _dedupe(components: Iterable[Component]) -> Iterator[Component]:
    """An OS package once (``status`` wins over a ``status.d`` copy); others once per place."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for c in components:
        key = (c.purl, () if c.type.is_os else c.locations)
        if key not in seen:
            seen.add(key)
            yield c


# --- os-release ------------------------------------------------------------------------------


def read_os_release(files: Mapping[str, CapturedFile]) -> OsRelease | None:
    for path in OS_RELEASE_PATHS:
        if path in files:
            values = parse_os_release(text(files[path].data))
            if values.get("ID"):
                return OsRelease(
                    id=values["ID"].lower(),
                    version_id=values.get("VERSION_ID", ""),
                    codename=values.get("VERSION_CODENAME", ""),
                    pretty_name=values.get("PRETTY_NAME", ""),
                )
    return None


# --- Debian ----------------------------------------------------------------------------------

_SOURCE = re.compile(r"^\s*(\S+)(?:\s*\(\s*([^)\s]+)\s*\))?\s*$")


def _first_line(value: str) -> str:
    return value.split("\n", 1)[0].strip()


def _stanzas(files: Mapping[str, CapturedFile], path: str) -> Iterator[dict[str, str]]:
    """The stanzas of a package database, parsed a window of about ``_WINDOW`` bytes at a
    time (cut between stanzas), so a big status is never held as text and dicts at once."""
    data = files[path].data
    start = 0
    while start < len(data):
        end = data.find(b"\n\n", start + _WINDOW)
        end = len(data) if end < 0 else end + 2
        origin = path if start == 0 else f"{path} (from byte {start})"
        try:
            stanzas = parse_stanzas(text(data[start:end]), origin=origin)
        except DistillError as exc:
            raise DistillError(
                f"cannot read the package database {path}: {exc.message}",
                hint="the image's dpkg database is damaged; the SBOM would be incomplete",
            ) from exc
        yield from stanzas
        start = end


def _counted(components: Iterable[Component], found: list[Component], before: int = 0) -> None:
    """Add ``components`` to ``found``, refusing an image that declares more packages than
    any real one holds (each costs memory here and in the SBOM written from it)."""
    for component in components:
        if before + len(found) >= MAX_PACKAGES:
            raise DistillError(
                f"the image declares more than {MAX_PACKAGES} packages; refusing to list them",
                hint="no real image holds that many; it is damaged or made to attack a reader",
            )
        found.append(component)


def _dpkg_status(
    files: Mapping[str, CapturedFile], links: Mapping[str, str], osr: OsRelease | None
) -> Iterator[Component]:
    status_layer = files[DPKG_STATUS].layer
    for stanza in _stanzas(files, DPKG_STATUS):
        words = stanza.get("status", "").split()
        if len(words) != 3 or words[2] not in _INSTALLED_STATES:
            continue
        info, layer = _dpkg_info(files, stanza)
        yield _deb_component(
            stanza,
            files,
            links,
            osr,
            DPKG_STATUS,
            layer if layer is not None else status_layer,
            info,
        )


def _dpkg_info(
    files: Mapping[str, CapturedFile], stanza: Mapping[str, str]
) -> tuple[tuple[str, ...], int | None]:
    """The package's file list from ``info/`` and the layer that wrote it.

    ``status`` is rewritten by every layer that installs anything, so its layer says little;
    the ``.list`` file is written once, by the layer that installed the package.
    """
    name, arch = _first_line(stanza.get("package", "")), _first_line(stanza.get("architecture", ""))
    for key in (f"{name}:{arch}", name):
        for suffix in (".list", ".md5sums"):
            captured = files.get(f"{DPKG_INFO}/{key}{suffix}")
            if captured is not None:
                return _file_list(captured.data, suffix), captured.layer
    return (), None


def _file_list(data: bytes, suffix: str) -> tuple[str, ...]:
    lines = text(data).splitlines()
    if suffix == ".md5sums":  # "<md5>  <path>"; .list lines are absolute paths, "/." included
        lines = [line.split(None, 1)[1] if " " in line else line for line in lines]
    paths = {path for line in lines if (path := line.strip().lstrip("/")) not in ("", ".")}
    # normpath is slow and dpkg writes normal paths: only the odd ones go through it.
    odd = [p for p in paths if "//" in p or "/." in p or p[0] == "." or p[-1] == "/"]
    if odd:
        paths.difference_update(odd)
        paths.update(normpath(p) for p in odd)
    return tuple(sorted(paths))


def _dpkg_status_d(
    files: Mapping[str, CapturedFile],
    paths: list[str],
    links: Mapping[str, str],
    osr: OsRelease | None,
) -> Iterator[Component]:
    for path in paths:
        if path.endswith(".md5sums"):
            continue
        for stanza in _stanzas(files, path):
            words = stanza.get("status", "").split()
            if words and (len(words) != 3 or words[2] not in _INSTALLED_STATES):
                continue  # distroless writes no Status; one that is there must say installed
            name = _first_line(stanza.get("package", ""))
            md5 = files.get(f"{path}.md5sums") or files.get(f"{DPKG_STATUS_D}/{name}.md5sums")
            listed = _file_list(md5.data, ".md5sums") if md5 else ()
            yield _deb_component(stanza, files, links, osr, path, files[path].layer, listed)


def _deb_component(
    stanza: Mapping[str, str],
    files: Mapping[str, CapturedFile],
    links: Mapping[str, str],
    osr: OsRelease | None,
    location: str,
    layer: int,
    listed: tuple[str, ...],
) -> Component:
    name = _first_line(stanza.get("package", ""))
    version = _first_line(stanza.get("version", ""))
    if not name or not version:
        raise DistillError(
            f"{location}: a package stanza has no Package or Version field",
            hint="the image's dpkg database is damaged; the SBOM would be incomplete",
        )
    arch = _first_line(stanza.get("architecture", ""))
    source_name, source_version = name, version
    match = _SOURCE.match(_first_line(stanza.get("source", "")))
    if match:
        source_name, source_version = match.group(1), match.group(2) or version
    upstream = ""
    if source_name != name or source_version != version:
        upstream = source_name if source_version == version else f"{source_name}@{source_version}"
    namespace = osr.id if osr else "debian"
    qualifiers = {"arch": arch, "distro": osr.distro if osr else "", "upstream": upstream}
    copyright_path = _resolve(f"{_DOC}/{name}/copyright", links)
    licenses: tuple[str, ...] = ()
    locations = [location]
    if copyright_path in files:
        licenses = dep5_licenses(text(files[copyright_path].data))
        locations.append(copyright_path)
    return Component(
        name=name,
        version=version,
        type=PackageType.DEB,
        purl=make_purl(PackageType.DEB, name, version, namespace, qualifiers),
        licenses=licenses,
        source_name=source_name,
        source_version=source_version,
        arch=arch,
        layer=layer,
        locations=tuple(locations),
        files=listed,
        supplier=_first_line(stanza.get("maintainer", "")),
    )


def _resolve(path: str, links: Mapping[str, str], hops: int = 8) -> str:
    """``path`` with the symlinks in ``links`` followed, a few hops deep: packages built from
    one source often link ``usr/share/doc/<pkg>`` (or just its ``copyright``) to a sibling's."""
    for _ in range(hops):
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            target = links.get(prefix)
            if target is not None:
                base = "" if target.startswith("/") else dirname(prefix)
                path = normpath(join(base, target.lstrip("/"), *parts[depth:]))
                break
        else:
            return path
    return path


_FORMAT = re.compile(r"\s*Format:", re.IGNORECASE)
# A License field's first line. deb822 field lines start at column 0 and continuation lines
# with a blank, so every line that opens "License:" is the field, one per stanza or not (the
# first line is "Format:", so each follows a newline).
_LICENSE_FIELD = re.compile(r"\n(?i:license):(.*)")  # "\n" first: found fast, not at every byte
_LICENSE_SPLIT = re.compile(r"\s*,\s*(?:and|or)?\s*|\s+(?:and|or)\s+", re.IGNORECASE)


def dep5_licenses(copyright_text: str) -> tuple[str, ...]:
    """The licence short names of a machine-readable (DEP-5) copyright file, in order.

    A ``License:`` line may combine names (``GPL-2+ or Artistic``, ``MIT, and BSD-3-clause``):
    each name is listed once. A free-form copyright file names no licence reliably, so it gives
    nothing rather than a guess.

    Only the ``License`` fields' first lines are read, straight from the text: what a deb822
    parse of the whole file would give (a copyright file can be 250 kB of licence texts), and
    what hand-written files that are not strict deb822 (stray indentation, blank lines inside a
    licence text) still hold where DEP-5 puts them.
    """
    if not _FORMAT.match(copyright_text):
        return ()
    if "\r" in copyright_text:
        copyright_text = copyright_text.replace("\r\n", "\n")
    names: dict[str, None] = {}
    for line in _LICENSE_FIELD.findall(copyright_text):
        for name in _LICENSE_SPLIT.split(line.strip()):
            name = name.strip().strip("()")
            if name:
                names.setdefault(name)
    return tuple(names)


# --- Alpine ----------------------------------------------------------------------------------


def _apk_installed(
    files: Mapping[str, CapturedFile], links: Mapping[str, str], osr: OsRelease | None
) -> Iterator[Component]:
    del links  # apk records licences in its database
    captured = files[APK_INSTALLED]
    for block in re.split(r"\n\s*\n", text(captured.data)):
        fields: dict[str, str] = {}
        paths: list[str] = []
        directory = ""
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if not sep or len(key) != 1:
                continue
            if key == "F":
                directory = value
            elif key == "R":
                paths.append(normpath(join(directory, value)))
            else:
                fields.setdefault(key, value)
        name, version = fields.get("P", ""), fields.get("V", "")
        if not name or not version:
            continue
        arch, origin = fields.get("A", ""), fields.get("o", name)
        qualifiers = {
            "arch": arch,
            "distro": osr.distro if osr else "",
            "upstream": origin if origin != name else "",
        }
        license_text = fields.get("L", "").strip()
        yield Component(
            name=name,
            version=version,
            type=PackageType.APK,
            purl=make_purl(PackageType.APK, name, version, osr.id if osr else "alpine", qualifiers),
            licenses=(license_text,) if license_text else (),
            source_name=origin,
            source_version=version,
            arch=arch,
            layer=captured.layer,
            locations=(APK_INSTALLED,),
            files=tuple(sorted(set(paths))),
            supplier=fields.get("m", ""),
        )
