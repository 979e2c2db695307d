"""Progress and messages on stderr, rendered with rich; quiet when asked."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_console: Console | None = None
_quiet = False


def console() -> Console:
    """The stderr console, made on first use: a quiet command that prints nothing does not
    wait for rich to load (~15 ms) before its real work starts."""
    global _console
    if _console is None:
        from rich.console import Console

        # soft_wrap: messages are never broken mid-path (pipes and logs get 80 columns).
        _console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _console


def human(size: float) -> str:
    """A byte count as people read it: 512 B, 1.5 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    """Whether only results and warnings are printed: a table nobody sees need not be made."""
    return _quiet


def info(message: str) -> None:
    if not _quiet:
        console().print(message)


def show(renderable: object) -> None:
    """Print a rich renderable (table, tree) unless quiet."""
    if not _quiet:
        console().print(renderable)


def warn(message: str) -> None:
    # Warnings are never silenced: they say something is missing from the result. They
    # quote names from images (a file called "x[/y]"): printed as text, on one line.
    from rich.markup import escape

    from distill.bounded import one_line

    console().print(f"[bold yellow]warning:[/] {escape(one_line(message))}")


def is_tty() -> bool:
    return sys.stderr.isatty()


@contextmanager
def complete_step(title: str) -> Iterator[None]:
    """Log a pipeline step and how long it took (mkosi's complete_step)."""
    start = time.monotonic()
    if not _quiet:
        from rich.markup import escape

        from distill.bounded import one_line

        # Titles quote image names and paths: never markup, never more than one line.
        console().print(f"[bold]‣[/] {escape(one_line(title))}")
    yield
    if not _quiet:
        console().print(f"  [dim]done in {time.monotonic() - start:.2f}s[/]")


class ByteBar:
    """A progress bar of the layer bytes copied, on a terminal only."""

    def __init__(self) -> None:
        self._progress: Any = None  # rich's Progress, loaded only on a terminal
        self._task: Any = None

    def start(self, total: int) -> None:
        if not is_tty():
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console()
        )
        self._task = self._progress.add_task("copy", total=total)
        self._progress.start()

    def advance(self, size: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, size)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextmanager
def byte_progress() -> Iterator[ByteBar]:
    bar = ByteBar()
    try:
        yield bar
    finally:
        bar.stop()
