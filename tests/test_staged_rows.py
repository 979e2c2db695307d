"""The rows the unpacked-package, installed-wheel and jlink caches remember entries as."""

from __future__ import annotations

import io
import json
from pathlib import Path

from distill.image.fsentry import EntryKind, FsEntry
from distill.rootfs.extract import entries_from_rows, stage_stream, staged_row


def _entries(staging: Path) -> list[FsEntry]:
    staged, size = stage_stream(io.BytesIO(b"hello\n"), staging)
    return [
        FsEntry("usr", EntryKind.DIR, 0o755),
        FsEntry("usr/bin/tool", EntryKind.FILE, 0o4755, 0, 50, size, content=staged),
        FsEntry("usr/bin/alias", EntryKind.SYMLINK, 0o777, linkname="tool"),
    ]


def test_rows_round_trip_through_json(tmp_path: Path) -> None:
    entries = _entries(tmp_path)
    rows = json.loads(json.dumps([staged_row(e) for e in entries]))
    assert entries_from_rows(rows, tmp_path) == entries
    named = entries_from_rows(rows, tmp_path, "pkg")
    assert named is not None and {e.package for e in named} == {"pkg"}


def test_damaged_rows_or_a_missing_staged_file_are_a_miss(tmp_path: Path) -> None:
    entries = _entries(tmp_path)
    rows = [staged_row(e) for e in entries]
    assert entries_from_rows({"not": "a list"}, tmp_path) is None
    assert entries_from_rows([rows[0][:6]], tmp_path) is None  # an older, shorter row
    assert entries_from_rows([[*rows[1][:7], "../../etc/passwd"]], tmp_path) is None
    assert entries_from_rows([[*rows[0][:1], "socket", *rows[0][2:]]], tmp_path) is None
    staged = entries[1].content
    assert isinstance(staged, Path)
    staged.unlink()
    assert entries_from_rows(rows, tmp_path) is None
