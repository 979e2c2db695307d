"""The one way distill fails: a message saying what happened, and a hint saying what to do."""

from __future__ import annotations


class DistillError(Exception):
    """An error the user can act on. The CLI prints it without a traceback (unless --debug)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


def die(message: str, hint: str | None = None) -> DistillError:
    """Build an error to raise: ``raise die("...", hint="...")`` reads like mkosi's die()."""
    return DistillError(message, hint)
