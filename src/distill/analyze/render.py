"""The inspect report and the comparison as rich tables, for people; ``to_json()`` is for
tools."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from distill.analyze.inspect import InspectReport, Program, TreeEntry
from distill.log import human
from distill.scan.findings import ScanStatus

if TYPE_CHECKING:  # compare loads the catalog and SBOM writers, which inspect does not need
    from distill.analyze.compare import Comparison, ExecutableDiff, ImageSummary

_LIST_LIMIT = 12  # paths listed per finding; the rest are counted


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _short(digest: str | None) -> str:
    return digest.removeprefix("sha256:")[:12] if digest else "—"


def _argv(value: tuple[str, ...] | None) -> str:
    return "—" if value is None else escape(" ".join(value)) or "\\[]"


def _paths(paths: tuple[str, ...]) -> str:
    shown = ", ".join(paths[:_LIST_LIMIT])
    return shown + (f" … and {len(paths) - _LIST_LIMIT} more" if len(paths) > _LIST_LIMIT else "")


def _programs(programs: tuple[Program, ...]) -> str:
    parts = []
    for p in programs:
        via = " (busybox)" if p.busybox else (f" → {p.target}" if p.target != p.path else "")
        parts.append(f"{p.path}{via}")
    return ", ".join(parts)


def _flag(bad: bool, text: str) -> Text:
    """``text`` as it is (a Text is not read as markup), red when ``bad``."""
    return Text(text, style="bold red" if bad else "green")


def _overview(report: InspectReport) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("image", escape(report.reference))
    others = [p for p in report.platforms if p != report.platform]
    table.add_row(
        "platform",
        escape(report.platform + (f"  (also: {', '.join(others)})" if others else "")),
    )
    table.add_row("manifest", report.manifest_digest or "— (docker archive)")
    table.add_row("config", report.config_digest)
    if report.os is not None:
        os_text = report.os.pretty_name or f"{report.os.id} {report.os.version_id}"
        table.add_row("os", f"{escape(os_text)}  [dim]({report.os.source})[/]")
    else:
        table.add_row("os", "[dim]unknown (no os-release)[/]")
    table.add_row(
        "size",
        f"{human(report.compressed_size)} stored, {human(report.uncompressed_size)} "
        f"unpacked, {human(report.content_size)} of files",
    )
    config = report.config
    table.add_row("entrypoint", _argv(config.entrypoint))
    table.add_row("cmd", _argv(config.cmd))
    table.add_row("user", escape(config.user) or "[dim](empty: root)[/]")
    table.add_row("workdir", escape(config.workdir) or "—")
    table.add_row("ports", escape(", ".join(config.ports)) or "—")
    for i, env in enumerate(config.env):
        table.add_row("env" if i == 0 else "", escape(env))
    return table


def _layers(report: InspectReport) -> Table:
    table = Table(title="layers", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("digest")
    table.add_column("stored", justify="right")
    table.add_column("unpacked", justify="right")
    table.add_column("files", justify="right")
    table.add_column("deleted", justify="right")
    table.add_column("created by", overflow="fold", max_width=60)
    for row in report.layers:
        table.add_row(
            str(row.index + 1),
            _short(row.digest or row.diff_id),
            human(row.size),
            human(row.tar_size),
            str(row.files),
            str(row.removed) if row.removed else "",
            escape((row.created_by or "").strip()) or "[dim]—[/]",
        )
    return table


def _surface(report: InspectReport) -> Table:
    s = report.surface
    table = Table(title="attack surface", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("shells", _flag(bool(s.shells), _programs(s.shells) or "none"))
    table.add_row(
        "package managers",
        _flag(bool(s.package_managers), _programs(s.package_managers) or "none"),
    )
    if s.busybox:
        table.add_row(
            "busybox", _flag(True, f"{', '.join(s.busybox)} with {len(s.busybox_applets)} applets")
        )
    table.add_row(
        "executables",
        f"{s.executables} ({s.elf} ELF, {plural(s.scripts, 'script')})"
        + (f"; {s.other_exec_bit} other files with an exec bit" if s.other_exec_bit else ""),
    )
    table.add_row("setuid", _flag(bool(s.setuid), _paths(s.setuid) or "none"))
    table.add_row("setgid", _flag(bool(s.setgid), _paths(s.setgid) or "none"))
    table.add_row(
        "world-writable", _flag(bool(s.world_writable), _paths(s.world_writable) or "none")
    )
    user = s.user or "(empty)"
    uid = "unknown uid" if s.uid is None else f"uid {s.uid}"
    table.add_row("runs as", _flag(s.runs_as_root, f"{user}: {uid}"))
    return table


def _efficiency(report: InspectReport) -> list[Text | Table]:
    e = report.efficiency
    summary = Text.assemble(
        ("efficiency ", "bold"),
        _flag(e.score < 0.95, f"{e.score:.1%}"),
        f": {human(e.wasted_bytes)} of the {human(e.added_bytes)} of files the layers add "
        f"are overwritten or deleted by a later layer (dive's score: {e.dive_score:.1%}, "
        f"its wasted bytes: {human(e.dive_wasted_bytes)})",
    )
    if not e.top:
        return [summary]
    table = Table(title="most wasted paths", title_justify="left")
    table.add_column("wasted", justify="right")
    table.add_column("path", overflow="fold")
    table.add_column("layers")
    for item in e.top:
        table.add_row(
            human(item.wasted), escape(item.path), ", ".join(str(i + 1) for i in item.layers)
        )
    return [summary, table]


def _tree(entry: TreeEntry, tree: Tree | None = None) -> Tree:
    name = entry.path if tree is None else entry.path.rsplit("/", 1)[-1]
    label = f"{human(entry.size):>10}  {escape(name)}"
    if entry.kind == "dir" and not name.endswith("/"):
        label += "/"
    elif entry.link:
        label += f" → {escape(entry.link)}"
    node = Tree(label) if tree is None else tree.add(label)
    for child in entry.children:
        _tree(child, node)
    if entry.omitted:
        node.add(f"[dim]{human(entry.omitted_size):>10}  … {entry.omitted} more[/]")
    return node


def render_inspect(report: InspectReport, console: Console) -> None:
    console.print(_overview(report))
    console.print(_layers(report))
    console.print(_surface(report))
    for part in _efficiency(report):
        console.print(part)
    if report.files is not None:
        console.print(_tree(report.files))


# --- compare -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    """One value of the comparison table: ``text`` as shown (image-derived, never markup),
    ``bad`` when it widens the attack surface, ``exact`` the number behind a rounded one."""

    text: str
    bad: bool = False
    exact: str = ""


def ratio_text(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 1 and value > 0:
        return f"{value:.2f}× ({1 / value:.1f}× smaller)"
    return f"{value:.2f}×"


def _names_cell(names: tuple[str, ...]) -> Cell:
    return Cell(", ".join(names) or "none", bool(names))


def compare_rows(comparison: Comparison) -> list[tuple[str, list[Cell]]]:
    """The comparison as labelled rows of cells, one per image: what the terminal table and
    the HTML page both show."""
    images = comparison.images

    def row(label: str, make: Callable[[int, ImageSummary], Cell]) -> tuple[str, list[Cell]]:
        return label, [make(i, image) for i, image in enumerate(images)]

    def sized(value: int, key: str, i: int, image: ImageSummary) -> Cell:
        shown = human(value)
        if i > 0:
            shown += f" · {ratio_text(comparison.ratios(image)[key])}"
        return Cell(shown, exact=f"{value:,} bytes")

    def packages(image: ImageSummary) -> Cell:
        if not image.package_databases:
            return Cell("none (no package database)", image.executables > 0)
        return Cell(str(image.os_packages), exact=", ".join(image.package_databases))

    def executables(i: int, image: ImageSummary) -> Cell:
        text = f"{image.executables} ({image.elf} ELF, {plural(image.scripts, 'script')})"
        if i > 0:
            text += f" · {ratio_text(comparison.ratios(image)['executables'])}"
        return Cell(text)

    def user(image: ImageSummary) -> Cell:
        name = image.user or "(empty)"
        return Cell(
            f"{name}: root" if image.runs_as_root else f"{name}: not root", image.runs_as_root
        )

    def vulns(image: ImageSummary) -> Cell:
        v = image.vulnerabilities
        bad = any(v.by_severity.get(s, 0) for s in ("CRITICAL", "HIGH"))
        return Cell(v.describe(), bad, f"{v.unique_ids} distinct ids" if v.total else "")

    def vuln_source(image: ImageSummary) -> Cell:
        v = image.vulnerabilities
        return Cell(v.note if v.status is ScanStatus.SCANNED and v.note else "-")

    rows = [
        row("os", lambda i, m: Cell(m.os or "unknown")),
        row("platform", lambda i, m: Cell(m.platform)),
        row("stored size", lambda i, m: sized(m.compressed_size, "compressed_size", i, m)),
        row("unpacked size", lambda i, m: sized(m.uncompressed_size, "uncompressed_size", i, m)),
        row("files", lambda i, m: Cell(human(m.content_size), exact=f"{m.content_size:,} bytes")),
        row("layers", lambda i, m: Cell(str(m.layers))),
        row("OS packages", lambda i, m: packages(m)),
        row("language packages", lambda i, m: Cell(str(m.language_packages))),
        row("executables", executables),
    ]
    for pattern in comparison.patterns:
        counts = [Cell(str(image.matches.get(pattern, 0))) for image in images]
        rows.append((f"executables in {pattern}", counts))
    rows += [
        row("shells", lambda i, m: _names_cell(m.shells)),
        row("package managers", lambda i, m: _names_cell(m.package_managers)),
        row("busybox", lambda i, m: Cell("yes" if m.busybox else "no", m.busybox)),
        row("setuid / setgid", lambda i, m: Cell(f"{m.setuid} / {m.setgid}", bool(m.setuid))),
        row("world-writable", lambda i, m: Cell(str(m.world_writable), bool(m.world_writable))),
        row("user", lambda i, m: user(m)),
        row(
            "efficiency",
            lambda i, m: Cell(f"{m.efficiency:.1%} (dive {m.dive_score:.1%})", m.efficiency < 0.95),
        ),
        row("vulnerabilities", lambda i, m: vulns(m)),
        row("vulnerabilities from", lambda i, m: vuln_source(m)),
    ]
    return rows


def diff_title(diff: ExecutableDiff, reverse: bool = False) -> str:
    a, b = (diff.other, diff.base) if reverse else (diff.base, diff.other)
    count = diff.only_in_other if reverse else diff.only_in_base
    return f"executables in {a} but not in {b}: {count} ({diff.common} in both)"


def _diff_table(diff: ExecutableDiff, reverse: bool) -> Table | None:
    found = diff.top_only_in_other if reverse else diff.top_only_in_base
    count = diff.only_in_other if reverse else diff.only_in_base
    if not found:
        return None
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("size", justify="right")
    table.add_column("path", overflow="fold")
    for item in found:
        table.add_row(human(item.size), Text(item.path))
    if count > len(found):
        table.add_row("", Text(f"… and {count - len(found)} more", style="dim"))
    return table


def render_compare(comparison: Comparison, console: Console) -> None:
    table = Table(title="compare (ratios against the first image)", title_justify="left")
    table.add_column("", style="bold")
    for image in comparison.images:
        table.add_column(Text(image.reference), overflow="fold")
    for label, cells in compare_rows(comparison):
        table.add_row(
            Text(label), *(Text(c.text, style="bold red" if c.bad else "") for c in cells)
        )
    console.print(table)
    for diff in comparison.diffs:
        for reverse in (False, True):
            console.print()
            console.print(Text(diff_title(diff, reverse), style="bold"))
            listing = _diff_table(diff, reverse)
            if listing is not None:
                console.print(listing)
