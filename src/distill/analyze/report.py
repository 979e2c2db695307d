"""``distill compare --html``: the comparison as one self-contained HTML page.

Everything is inline: the CSS in a ``<style>`` element, the bar charts as ``<svg>``
elements, no scripts, fonts, images or links to anything else; a Content-Security-Policy
says so to the browser too. The page can be mailed, attached to a CI run or opened from
disk years later. Every string that comes from an image (names, paths, users, OS names) is
escaped, in text and in attributes alike.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path

from distill import __version__
from distill.analyze.compare import Comparison, ExecutableDiff, ImageSummary
from distill.analyze.render import compare_rows, diff_title
from distill.fsutil import atomic_write_bytes
from distill.log import human

# One colour per image, in order; colour-blind safe (Okabe-Ito), repeating after eight.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000")
CHART_WIDTH = 640
LABEL_WIDTH = 200
VALUE_WIDTH = 130
BAR_HEIGHT = 24
BAR_GAP = 10
LABEL_CHARS = 30  # longer image names are cut in the chart (the table has them whole)

_CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  margin: 2rem auto; max-width: 1180px; padding: 0 1.25rem; color: #1b1f24; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .6rem; border-bottom: 1px solid #d0d7de; }
p.lead { color: #57606a; margin-top: 0; }
code { font: .9em ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 1rem; }
figure { margin: 0; padding: .75rem 1rem; border: 1px solid #d0d7de; border-radius: 6px; }
figcaption { font-weight: 600; margin-bottom: .4rem; }
svg { display: block; width: 100%; height: auto; }
svg text { font: 13px system-ui, sans-serif; fill: #1b1f24; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1rem; }
th, td { border: 1px solid #d0d7de; padding: .35rem .6rem; text-align: left;
  vertical-align: top; overflow-wrap: anywhere; }
thead th { background: #f6f8fa; }
tbody th { background: #f6f8fa; white-space: nowrap; }
td.bad { color: #b42318; font-weight: 600; }
td small, p small { display: block; color: #57606a; font-weight: normal; }
td.num { text-align: right; white-space: nowrap; }
th.size { width: 7rem; }
.swatch { display: inline-block; width: .8em; height: .8em; border-radius: 2px;
  margin-right: .4em; vertical-align: baseline; }
footer { color: #57606a; margin-top: 2rem; font-size: .9rem; }
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def esc(value: object) -> str:
    """``value`` as HTML text or attribute content."""
    return html.escape(str(value), quote=True)


def _cut(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def bar_chart(
    title: str,
    images: Sequence[ImageSummary],
    value: Callable[[ImageSummary], int],
    label: Callable[[int], str],
) -> str:
    """A horizontal bar per image, scaled to the largest value, as an inline ``<svg>``."""
    values = [value(image) for image in images]
    largest = max(values) or 1
    span = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    height = len(images) * (BAR_HEIGHT + BAR_GAP) + BAR_GAP
    parts = [
        f'<svg viewBox="0 0 {CHART_WIDTH} {height}" role="img" '
        f'aria-label="{esc(title)}"><title>{esc(title)}</title>'
    ]
    for i, (image, amount) in enumerate(zip(images, values, strict=True)):
        y = BAR_GAP + i * (BAR_HEIGHT + BAR_GAP)
        width = max(round(span * amount / largest), 1 if amount else 0)
        middle = y + BAR_HEIGHT / 2 + 4.5
        parts.append(
            f"<g><title>{esc(image.reference)}: {esc(label(amount))}</title>"
            f'<text x="{LABEL_WIDTH - 8}" y="{middle}" text-anchor="end">'
            f"{esc(_cut(image.reference))}</text>"
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{width}" height="{BAR_HEIGHT}" rx="3" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{LABEL_WIDTH + width + 6}" y="{middle}">{esc(label(amount))}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _figure(title: str, svg: str) -> str:
    return f"<figure><figcaption>{esc(title)}</figcaption>{svg}</figure>"


def _charts(comparison: Comparison) -> str:
    images = comparison.images

    def count(n: int) -> str:
        return f"{n:,}"

    charts = [
        ("Stored size", lambda m: m.compressed_size, human),
        ("Unpacked size", lambda m: m.uncompressed_size, human),
        ("OS packages", lambda m: m.os_packages, count),
        ("Executables (ELF and scripts)", lambda m: m.executables, count),
    ]
    if all(m.vulnerabilities.total is not None for m in images):
        charts.append(("Vulnerabilities", lambda m: m.vulnerabilities.total or 0, count))
    figures = [_figure(title, bar_chart(title, images, get, fmt)) for title, get, fmt in charts]
    return '<section class="charts">' + "".join(figures) + "</section>"


def _swatch(i: int) -> str:
    return f'<span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></span>'


def _table(comparison: Comparison) -> str:
    head = "".join(
        f"<th>{_swatch(i)}<code>{esc(image.reference)}</code></th>"
        for i, image in enumerate(comparison.images)
    )
    rows = []
    for label, cells in compare_rows(comparison):
        tds = []
        for cell in cells:
            exact = f"<small>{esc(cell.exact)}</small>" if cell.exact else ""
            klass = ' class="bad"' if cell.bad else ""
            tds.append(f"<td{klass}>{esc(cell.text)}{exact}</td>")
        rows.append(f'<tr><th scope="row">{esc(label)}</th>{"".join(tds)}</tr>')
    return (
        '<table><thead><tr><th scope="col"></th>'
        + head
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _diff(diff: ExecutableDiff, reverse: bool) -> str:
    found = diff.top_only_in_other if reverse else diff.top_only_in_base
    count = diff.only_in_other if reverse else diff.only_in_base
    heading = f"<h2>{esc(diff_title(diff, reverse))}</h2>"
    if not found:
        return heading + "<p>none</p>"
    rows = "".join(
        f'<tr><td class="num">{esc(human(e.size))}</td><td><code>{esc(e.path)}</code></td></tr>'
        for e in found
    )
    more = f"<p>… and {count - len(found):,} more.</p>" if count > len(found) else ""
    shown = f'<p class="lead">The {len(found)} largest.</p>'
    return (
        heading
        + shown
        + '<table><thead><tr><th scope="col" class="size">size</th><th scope="col">path</th>'
        + "</tr></thead>"
        + f"<tbody>{rows}</tbody></table>{more}"
    )


def html_report(comparison: Comparison) -> str:
    """The page, as text."""
    names = " vs ".join(image.reference for image in comparison.images)
    base = comparison.base.reference
    diffs = "".join(_diff(d, r) for d in comparison.diffs for r in (False, True))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>distill compare: {esc(names)}</title><style>{_CSS}</style></head><body>"
        "<header><h1>Image comparison</h1>"
        f'<p class="lead">{len(comparison.images)} images; ratios and differences are '
        f"against the first, <code>{esc(base)}</code>. Red marks what widens the attack "
        "surface.</p></header>"
        + _charts(comparison)
        + "<h2>Side by side</h2>"
        + _table(comparison)
        + diffs
        + "<footer>Stored size: the layers as the image holds them (a docker-archive's are "
        "usually uncompressed tars). Unpacked: the layers' tars. Files: what the final "
        "filesystem holds. Executables: regular files with an exec bit that are ELF binaries "
        "or #! scripts. Efficiency: the share of the file bytes the layers add that the final "
        f"filesystem still holds. Written by distill {esc(__version__)}.</footer>"
        "</body></html>\n"
    )


def write_html(comparison: Comparison, path: Path) -> None:
    """Write the page to ``path`` atomically (a reader never sees half a page)."""
    atomic_write_bytes(path, html_report(comparison).encode("utf-8"))
