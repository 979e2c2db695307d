"""Hostile text in what distill prints: errors stay one line whatever they quote."""

from __future__ import annotations

from pathlib import Path

from hostile_harness import assert_clean_error, run_distill


def test_markup_and_escapes_in_a_reference_are_printed_not_interpreted(sandbox: Path) -> None:
    outcome = run_distill(["inspect", "oci:[/x]\x1b[31m[bold]nope"], cwd=sandbox)
    line = assert_clean_error(outcome)
    assert "[/x]" in line and "\x1b" not in outcome.stderr


def test_newlines_in_a_reference_stay_on_one_line(sandbox: Path) -> None:
    outcome = run_distill(["inspect", "oci:a\nerror: forged\nb"], cwd=sandbox)
    assert_clean_error(outcome)
