"""Where images live, as references with one grammar: ``TRANSPORT:REST``.

``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``, ``docker-archive:FILE[:NAME:TAG]``,
``docker://HOST/REPO[:TAG|@DIGEST]``, ``containers-storage:NAME``. A name is split at its
first ``:`` (``docker://`` at its ``//``) and the part before it is looked up among the
transports: each is one module of this package (``oci-archive`` is ``oci_archive.py``),
imported only when named, whose ``Reference`` subclass registers itself by subclassing
(``class OciReference(Reference, transport="oci")``). Adding a transport is adding a
module. Every reference is both a source (``open``) and a destination (``write``).

For reading, a name without a transport is a path recognised by its contents: a directory
holding an OCI layout, or an image archive of either kind.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar

from distill.errors import DistillError

if TYPE_CHECKING:
    from distill.context import Access
    from distill.image.descriptor import Descriptor
    from distill.image.model import Top
    from distill.image.partial import ImageSource

_NAME = re.compile(r"[a-z][a-z-]*")
Progress = Callable[[int], None]  # told the bytes of each blob as it is done


@dataclass
class Opened:
    """An opened source: the image or index it names, and what frees it (temporary files,
    connections). Use it in a ``with`` block, or call ``close``."""

    top: Top
    close: Callable[[], None] = field(default=lambda: None)

    def __enter__(self) -> Opened:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a destination now holds (its top descriptor: the manifest's or the index's,
    for docker-archive and containers-storage the config's, the image ID), and which blobs
    were sent, found there already, or mounted from another repository."""

    descriptor: Descriptor
    written: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    mounted: tuple[str, ...] = ()


class Reference(ABC):
    """A place for an image, in one transport. Subclasses register with
    ``class X(Reference, transport="name")``."""

    transport: ClassVar[str]
    holds_index: ClassVar[bool] = True  # False: one platform's image only
    _registry: ClassVar[dict[str, type[Reference]]] = {}

    def __init_subclass__(cls, *, transport: str | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if transport is not None:
            cls.transport = transport
            Reference._registry[transport] = cls

    @classmethod
    @abstractmethod
    def parse(cls, rest: str) -> Reference:
        """The reference ``TRANSPORT:rest`` names."""

    @classmethod
    def at_path(cls, path: Path) -> Reference:
        """The image at ``path``, for transports whose references are paths."""
        raise DistillError(f"{cls.transport}: references do not name paths")

    @abstractmethod
    def open(self, access: Access) -> Opened:
        """The image or index here, read lazily: blobs are read (and checked) when used."""

    def open_source(self, access: Access, name: str) -> ImageSource:
        """One platform's image (``access.platform``, default this host's) for analysis."""
        from distill.image.partial import ImageReader

        opened = self.open(access)
        try:
            return ImageReader(
                opened.top, name=name, platform=access.platform, on_close=opened.close
            )
        except BaseException:
            opened.close()
            raise

    @abstractmethod
    def check_writable(self, access: Access, *, inputs: Sequence[Path | str] = ()) -> None:
        """Fail before any work when an image could not be written here, or writing it
        would replace one of ``inputs`` (what the command reads)."""

    @abstractmethod
    def write(
        self, top: Top, access: Access, *, mtime: int = 0, progress: Progress | None = None
    ) -> WriteResult:
        """Write ``top`` here; ``mtime`` is the timestamp of archive members."""

    def refuse_index(self, top: Top) -> None:
        from distill.image.model import Index

        if isinstance(top, Index) and not self.holds_index:
            platforms = ", ".join(str(p) for p in top.platforms())
            raise DistillError(
                f"{self.transport} holds one platform's image, but this is an index of {platforms}",
                hint="pick one with --platform, or write oci:, oci-archive: or docker://, "
                "which hold them all",
            )


def transport_names() -> list[str]:
    """Every transport there is (this imports them all: for messages only)."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    return sorted(Reference._registry)


def _hint() -> str:
    return (
        "write oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], "
        "docker://HOST/REPO[:TAG] or containers-storage:NAME (transports: "
        + ", ".join(transport_names())
        + ")"
    )


def lookup(name: str) -> type[Reference] | None:
    """The transport called ``name``, its module imported now; None if there is none."""
    if name in Reference._registry:
        return Reference._registry[name]
    if not _NAME.fullmatch(name):
        return None
    try:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name.replace('-', '_')}":
            raise
        return None
    return Reference._registry.get(name)


def _split(text: str) -> tuple[str, str] | None:
    if text.startswith("docker://"):
        return "docker", text.removeprefix("docker://")
    prefix, sep, rest = text.partition(":")
    if prefix == "docker":  # the registry transport is written with its //, as in skopeo
        raise DistillError(
            f"not an image reference: {text!r}", hint="write docker://HOST/REPO[:TAG]"
        )
    return (prefix, rest) if sep else None


def parse_reference(text: str) -> Reference:
    """The reference ``TRANSPORT:REST`` names (a destination, or a source)."""
    split = _split(text)
    transport = lookup(split[0]) if split is not None else None
    if split is None or transport is None:
        raise DistillError(f"not an image reference: {text!r}", hint=_hint())
    return transport.parse(split[1])


def parse_source(text: str) -> Reference:
    """``parse_reference``, and a bare path recognised by what it is."""
    split = _split(text)
    if split is not None and lookup(split[0]) is not None:
        return parse_reference(text)
    return detect_path(text)


def detect_path(text: str) -> Reference:
    """A path without a transport: a layout directory, or an archive (either kind)."""
    from distill.fsutil import check_input_path

    path = Path(text)
    check_input_path(path)
    if path.is_dir():
        if (path / "index.json").is_file() or (path / "oci-layout").is_file():
            return _transport("oci").at_path(path)
        raise DistillError(
            f"{path} is a directory but not an OCI image layout (it has no index.json)",
            hint="give oci:DIR for a layout, or an image archive",
        )
    if path.is_file():
        return _transport("docker-archive").at_path(path)  # which reads OCI archives too
    raise DistillError(
        f"{text!r} is neither a file, a directory nor an image reference",
        hint="write oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE, "
        "containers-storage:NAME or docker://HOST/REPO:TAG",
    )


def _transport(name: str) -> type[Reference]:
    found = lookup(name)
    assert found is not None, f"the {name} transport is missing"
    return found


def input_paths(references: Iterable[str]) -> list[Path]:
    """The local files and directories that image references read: what an output must
    not replace. A reference that does not parse reads nothing (its error comes later)."""
    paths = []
    for text in references:
        try:
            reference = parse_source(text)
        except DistillError:
            continue
        path = getattr(reference, "path", None)
        if isinstance(path, Path):
            paths.append(path)
    return paths


def open_source(text: str, access: Access) -> ImageSource:
    """One platform's image of ``text`` for analysis; the caller closes it."""
    return parse_source(text).open_source(access, text)


@contextmanager
def opened(text: str, access: Access) -> Iterator[ImageSource]:
    """``open_source`` for a ``with`` block: temporary files go when it ends."""
    source = open_source(text, access)
    try:
        yield source
    finally:
        source.close()
