"""Progress and messages on stderr, rendered with rich; quiet when asked."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

# soft_wrap: messages are never broken mid-path (pipes and logs get 80 columns otherwise).
console = Console(stderr=True, highlight=False, soft_wrap=True)
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def info(message: str) -> None:
    if not _quiet:
        console.print(message)


def show(renderable: object) -> None:
    """Print a rich renderable (table, tree) unless quiet."""
    if not _quiet:
        console.print(renderable)


def warn(message: str) -> None:
    # Warnings are never silenced: they say something is missing from the result.
    console.print(f"[bold yellow]warning:[/] {message}")


def is_tty() -> bool:
    return sys.stderr.isatty()


@contextmanager
def complete_step(title: str) -> Iterator[None]:
    """Log a pipeline step and how long it took (mkosi's complete_step)."""
    start = time.monotonic()
    info(f"[bold]‣[/] {title}")
    yield
    if not _quiet:
        console.print(f"  [dim]done in {time.monotonic() - start:.2f}s[/]")
