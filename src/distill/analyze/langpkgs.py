"""Language packages: Python distributions, npm packages, Java archives.

Each reader takes one captured file and returns what it declares. Archives are read with
``zipfile``, from memory when small and from a temporary file when large; nested archives
(a Spring Boot jar's ``BOOT-INF/lib``, a war's ``WEB-INF/lib``) are opened in turn, a few
levels deep, and named ``outer.jar!/inner.jar``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from posixpath import basename, dirname
from typing import IO, TYPE_CHECKING

from distill.analyze.components import CapturedFile, Component, PackageType, make_purl, text
from distill.bounded import parse_json
from distill.errors import DistillError
from distill.fsutil import spool_dir

if TYPE_CHECKING:
    import zipfile  # imported once there is an archive to read, as email is for METADATA

# Large archives are read from temporary files, not memory; the caps bound disk and time.
MAX_ARCHIVE_BYTES = 1 << 30
MAX_EXTRACTED = 1 << 30  # nested archives extracted from one top-level archive, in all
NESTED_IN_MEMORY = 8 << 20  # a nested archive larger than this is extracted to a file
ZIP_MAGIC = b"PK\x03\x04"
MAX_NESTED_DEPTH = 3
# Text metadata (pom.properties, MANIFEST.MF, PKG-INFO) is tiny; a bigger file is not metadata.
MAX_METADATA_BYTES = 1 << 20
ARCHIVE_SUFFIXES = (".jar", ".war", ".ear")
# Where ``distill build`` records a component that is not a .deb (Node.js from the npm
# registry, build/nodejs.py): one JSON object per component.
COMPONENT_RECORDS = "var/lib/distill/components"


def is_component_record(path: str) -> bool:
    return dirname(path) == COMPONENT_RECORDS and path.endswith(".json")


def is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def exploded_pom(path: str) -> bool:
    """``…/META-INF/maven/<group>/<artifact>/pom.properties`` outside an archive: a jar
    unpacked into the image (a Spring Boot jar split into layers keeps the app's own)."""
    parts = path.split("/")
    return (
        len(parts) >= 5
        and parts[-1] == "pom.properties"
        and parts[-5:-3]
        == [
            "META-INF",
            "maven",
        ]
    )


def npm_package_dir(directory: str) -> bool:
    """``.../node_modules/<name>`` or ``.../node_modules/@scope/<name>``: a package root."""
    parts = directory.split("/")
    if len(parts) >= 2 and parts[-2] == "node_modules":
        return not parts[-1].startswith("@")
    return len(parts) >= 3 and parts[-3] == "node_modules" and parts[-2].startswith("@")


def language_components(
    path: str, captured: CapturedFile, warnings: list[str] | None = None
) -> list[Component]:
    """What ``captured`` declares; problems that leave the list incomplete but not wrong go
    to ``warnings``."""
    name = basename(path)
    parent = dirname(path)
    if name == "METADATA" and parent.endswith(".dist-info"):
        return _python(path, captured)
    if (name == "PKG-INFO" and parent.endswith(".egg-info")) or path.endswith(".egg-info"):
        return _python(path, captured)
    if name == "package.json" and npm_package_dir(parent):
        return _npm(path, captured)
    if is_component_record(path):
        return _component_record(path, captured)
    if exploded_pom(path):
        return _exploded_pom(path, captured)
    if is_archive(path):
        source = captured.file if captured.file is not None else captured.data
        budget = _Budget(MAX_EXTRACTED, path, [] if warnings is None else warnings)
        return list(java_archive(path, source, captured.layer, budget=budget))
    return []


def _python(path: str, captured: CapturedFile) -> list[Component]:
    from email.parser import HeaderParser

    headers = HeaderParser().parsestr(text(captured.data))
    name, version = (headers.get("Name") or "").strip(), (headers.get("Version") or "").strip()
    if not name or not version:
        return []
    expression = (headers.get("License-Expression") or "").strip()
    free_text = (headers.get("License") or "").strip()
    # License is free text, sometimes the whole licence: only a short one-liner names it.
    license_name = expression or (
        free_text if "\n" not in free_text and len(free_text) < 80 else ""
    )
    if license_name.upper() == "UNKNOWN":
        license_name = ""
    return [
        Component(
            name=name,
            version=version,
            type=PackageType.PYTHON,
            purl=make_purl(PackageType.PYTHON, name, version),
            licenses=(license_name,) if license_name else (),
            layer=captured.layer,
            locations=(path,),
            supplier=(headers.get("Author") or "").strip(),
        )
    ]


def _component_record(path: str, captured: CapturedFile) -> list[Component]:
    record = parse_json(captured.data, path)  # a DistillError here is a warning
    if not isinstance(record, dict):
        return []
    name, version = record.get("name"), record.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return []
    license_name, program = record.get("license"), record.get("path")
    locations = (path, program.lstrip("/")) if isinstance(program, str) and program else (path,)
    return [
        Component(
            name=name,
            version=version,
            type=PackageType.GENERIC,
            purl=make_purl(PackageType.GENERIC, name, version),
            licenses=(license_name,) if isinstance(license_name, str) and license_name else (),
            layer=captured.layer,
            locations=locations,
        )
    ]


def _exploded_pom(path: str, captured: CapturedFile) -> list[Component]:
    props = _properties(text(captured.data))
    group, artifact = props.get("groupId", ""), props.get("artifactId", "")
    version = props.get("version", "")
    if not (group and artifact and version):
        return []
    return [_maven(path, captured.layer, group, artifact, version)]


def _npm(path: str, captured: CapturedFile) -> list[Component]:
    manifest = parse_json(captured.data, path)  # a DistillError here is a warning
    if not isinstance(manifest, dict):
        return []
    name, version = manifest.get("name"), manifest.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return []
    namespace, _, short = name.rpartition("/")
    return [
        Component(
            name=name,
            version=version,
            type=PackageType.NPM,
            purl=make_purl(PackageType.NPM, short, version, namespace or None),
            licenses=_npm_licenses(manifest),
            layer=captured.layer,
            locations=(path,),
        )
    ]


def _npm_licenses(manifest: Mapping[str, object]) -> tuple[str, ...]:
    # "license": "MIT" is the norm; {"type": "MIT"} and "licenses": [...] are older spellings.
    raw = manifest.get("license")
    entries: list[object] = [raw] if raw is not None else []
    old = manifest.get("licenses")
    if isinstance(old, list):
        entries.extend(old)
    names: dict[str, None] = {}
    for entry in entries:
        value = entry.get("type") if isinstance(entry, dict) else entry
        if isinstance(value, str) and value.strip():
            names.setdefault(value.strip())
    return tuple(names)


# --- Java ------------------------------------------------------------------------------------


@dataclass
class _Budget:
    """How many bytes of nested archives one top-level archive may still have extracted: a
    small jar of huge nested ones (a zip bomb) must not fill the disk."""

    left: int
    top: str
    warnings: list[str]


def java_archive(
    path: str,
    source: bytes | Path | IO[bytes],
    layer: int,
    depth: int = 0,
    budget: _Budget | None = None,
) -> Iterator[Component]:
    """The packages of a jar/war/ear and of the archives nested in it (``outer!/inner``),
    from its bytes or a file holding them (large ones are not read into memory).

    Every ``pom.properties`` names one Maven artifact (a fat jar holds many); an archive with
    none falls back to its manifest's Implementation or Bundle fields. A nested archive that
    is damaged or not a zip is passed over; one that cannot be extracted, or would take the
    extracted total past ``MAX_EXTRACTED``, is named in ``budget.warnings``.
    """
    import io
    import zipfile

    budget = budget or _Budget(MAX_EXTRACTED, path, [])
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DistillError(f"{path}: not a readable Java archive ({exc}); skipped") from exc
    with archive:
        infos = archive.infolist()
        found = False
        for info in infos:
            if info.filename.startswith("META-INF/maven/") and info.filename.endswith(
                "/pom.properties"
            ):
                props = _properties(_zip_text(archive, info, path, budget))
                group, artifact = props.get("groupId", ""), props.get("artifactId", "")
                version = props.get("version", "")
                if group and artifact and version:
                    found = True
                    yield _maven(path, layer, group, artifact, version)
        if not found:
            manifest = next((i for i in infos if i.filename == "META-INF/MANIFEST.MF"), None)
            if manifest is not None:
                yield from _from_manifest(path, layer, _zip_text(archive, manifest, path, budget))
        if depth >= MAX_NESTED_DEPTH:
            return
        for info in infos:
            if not (is_archive(info.filename) and info.file_size > 0):
                continue
            inner = f"{path}!/{info.filename}"
            if info.file_size > budget.left:
                budget.warnings.append(
                    f"{inner} was not read: the archives nested in {budget.top} take more "
                    f"than {MAX_EXTRACTED >> 20} MiB extracted; their packages may be missing"
                )
                continue
            try:
                nested = _extract(archive, info, inner)
            except _damaged_zip():
                continue  # a damaged inner archive does not hide the outer one's packages
            except DistillError as exc:
                budget.warnings.append(exc.message)
                continue
            if nested is None:
                continue
            budget.left -= info.file_size
            try:
                yield from java_archive(inner, nested, layer, depth + 1, budget)
            except DistillError:
                continue
            finally:
                if not isinstance(nested, bytes):
                    nested.close()


def _extract(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, inner: str
) -> bytes | IO[bytes] | None:
    """A nested archive: its bytes, or a temporary file (gone when closed) if it is large;
    None if it is not a zip at all."""
    import tempfile

    with archive.open(info) as member:
        head = member.read(4)
        if head != ZIP_MAGIC:
            return None
        if info.file_size <= NESTED_IN_MEMORY:
            return head + member.read()
        try:
            spool = tempfile.TemporaryFile(prefix="distill-jar-", dir=spool_dir())  # noqa: SIM115
        except OSError as exc:
            raise _not_extracted(inner, exc) from exc
        try:
            chunk = head
            while chunk:
                try:
                    spool.write(chunk)
                except OSError as exc:
                    raise _not_extracted(inner, exc) from exc
                chunk = member.read(1 << 20)  # reading errors: a damaged member
            try:
                spool.flush()
                spool.seek(0)
            except OSError as exc:
                raise _not_extracted(inner, exc) from exc
        except BaseException:
            with contextlib.suppress(OSError):  # its flush fails as the write did
                spool.close()
            raise
        return spool  # the caller closes it


def _not_extracted(inner: str, exc: OSError) -> DistillError:
    """Writing a nested archive out failed (a full disk): its packages are missing, and
    the SBOM must say so rather than pass over it as a damaged archive."""
    return DistillError(
        f"{inner} could not be extracted to a temporary file ({exc.strerror or exc}); "
        "its packages are missing"
    )


def _zip_text(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, budget: _Budget) -> str:
    if info.file_size > MAX_METADATA_BYTES:
        budget.warnings.append(
            f"{path}!/{info.filename} is {info.file_size} bytes, more than the "
            f"{MAX_METADATA_BYTES >> 20} MiB distill reads of it; it was skipped"
        )
        return ""
    try:
        return text(archive.read(info))
    except _damaged_zip():
        return ""


def _damaged_zip() -> tuple[type[Exception], ...]:
    """What reading a damaged zip member raises (evaluated only when something was)."""
    import zipfile
    import zlib

    return (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError)


def _properties(text: str) -> dict[str, str]:
    """Java ``.properties``: ``key=value`` or ``key: value``, ``#``/``!`` comments."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2).strip()
    return values


def _manifest(text: str) -> dict[str, str]:
    """MANIFEST.MF main section; continuation lines start with one space."""
    values: dict[str, str] = {}
    key = ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            break  # the main section ends at the first blank line
        if line.startswith(" ") and key:
            values[key] += line[1:]
            continue
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _from_manifest(path: str, layer: int, text: str) -> Iterator[Component]:
    fields = _manifest(text)
    name = fields.get("Implementation-Title", "")
    version = fields.get("Implementation-Version", "")
    if not (name and version):
        name = fields.get("Bundle-SymbolicName", "").split(";", 1)[0].strip()
        version = fields.get("Bundle-Version", "")
    if name and version:
        group = fields.get("Implementation-Vendor-Id", "")
        yield _maven(path, layer, group, name, version)


def _maven(path: str, layer: int, group: str, artifact: str, version: str) -> Component:
    return Component(
        name=f"{group}:{artifact}" if group else artifact,
        version=version,
        type=PackageType.MAVEN,
        purl=make_purl(PackageType.MAVEN, artifact, version, group or None),
        layer=layer,
        locations=(path,),
        group=group,
    )


def manifest_main_section(text: str) -> dict[str, str]:
    """A ``MANIFEST.MF``'s main section (``distill package`` reads Main-Class from it)."""
    return _manifest(text)
