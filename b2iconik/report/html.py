"""The report as one self-contained HTML page: inline CSS and SVG charts, no script, no download.

Two charts (bytes by category; bytes by age, stacked by category), the totals,
the reasons for what stays (grouped by kind, with examples), and every row
(what stays first, then by size; an asset's id is in its name's tooltip).
Storages are named by their names in iconik (the id is in the tooltip). Sizes,
dates, counts and categories never wrap; names and reasons may. Every text from
iconik is escaped.
"""

from __future__ import annotations

from html import escape

from b2iconik.report.command import overlap_note
from b2iconik.units import human_bytes
from b2iconik.workflows.inventory import CATEGORIES

COLORS = {"safe": "#2e7d32", "only_on_lucidlink": "#f9a825", "unverified": "#c62828",
          "incomplete": "#6a1b9a", "unknown": "#757575", "refused": "#4e342e", "gone": "#bdbdbd"}
SHOWN = [c for c in CATEGORIES if c != "gone"]
MAX_ROWS = 20000
"""Rows shown in the page's table; the CSV and JSON hold all of them."""

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #212121; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; border-bottom: 1px solid #e0e0e0; text-align: left; }
td, th { vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.n, td.t, th { white-space: nowrap; }
td.w { overflow-wrap: anywhere; min-width: 14em; }
ul.examples { margin: 0; padding-left: 1.2em; }
.legend { white-space: nowrap; margin-right: 1em; }
p.note { color: #616161; }
.key { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; vertical-align: -0.1em; }
svg text { font: 12px system-ui, sans-serif; fill: #212121; }
"""


def _key(category: str) -> str:
    return f'<span class="key" style="background:{COLORS[category]}"></span>'


def category_chart(summary, width: int = 760, bar: int = 26) -> str:
    """Horizontal bars: bytes per category, scaled to the largest."""
    figures = [(c, summary.by_category[c]["bytes"]) for c in SHOWN]
    top = max([size for _, size in figures] + [1])
    label_w, height = 12 + 7 * max(len(CATEGORIES[c]) for c in SHOWN), len(figures) * (bar + 8) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="bytes on LucidLink by category">']
    for n, (category, size) in enumerate(figures):
        y = 8 + n * (bar + 8)
        length = 0 if not size else max(1, round((width - label_w - 90) * size / top))
        parts.append(f'<text x="0" y="{y + bar * 0.7:.0f}">{escape(CATEGORIES[category])}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{length}" height="{bar}" fill="{COLORS[category]}">'
                     f'<title>{escape(CATEGORIES[category])}: {size} bytes</title></rect>'
                     f'<text x="{label_w + length + 6}" y="{y + bar * 0.7:.0f}">{human_bytes(size)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def age_chart(summary, width: int = 640, height: int = 260) -> str:
    """Vertical bars per age bucket, stacked by category."""
    buckets = [(label, cats) for label, cats in summary.by_age.items() if sum(cats.values()) or "unknown" not in label]
    top = max([sum(cats.values()) for _, cats in buckets] + [1])
    plot_h, base = height - 50, height - 30
    slot = (width - 20) / max(1, len(buckets))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="bytes on LucidLink by age">']
    for n, (label, cats) in enumerate(buckets):
        x, y = 10 + n * slot + slot * 0.15, base
        for category in SHOWN:
            size = cats.get(category, 0)
            if not size:
                continue
            h = plot_h * size / top
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS[category]}"><title>{escape(label)}, {escape(CATEGORIES[category])}: '
                         f'{size} bytes</title></rect>')
        total = sum(cats.values())
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{y - 4:.1f}" text-anchor="middle">{human_bytes(total)}</text>'
                     f'<text x="{x + slot * 0.35:.1f}" y="{height - 10}" text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<line x1="0" y1="{base}" x2="{width}" y2="{base}" stroke="#9e9e9e"/></svg>')
    return "".join(parts)


def _storage(name: str, storage_id: str) -> str:
    """A storage by its name, its id in the tooltip; the id itself only when iconik gives no name."""
    if not name:
        return f"<code>{escape(storage_id)}</code>"
    return f'<b title="{escape(storage_id)}">{escape(name)}</b>'


def _totals_table(summary) -> str:
    formats = sum(summary.by_category[c]["rows"] for c in SHOWN)
    rows = [f'<tr><th>on LucidLink</th><td class="n">{formats}</td><td class="n">{summary.assets}</td>'
            f'<td class="n">{human_bytes(summary.bytes)}</td><td class="n">{summary.bytes}</td></tr>']
    for category in SHOWN:
        figures = summary.by_category[category]
        rows.append(f'<tr><td class="t">{_key(category)}{escape(CATEGORIES[category])}</td>'
                    f'<td class="n">{figures["rows"]}</td><td class="n">{figures["assets"]}</td>'
                    f'<td class="n">{human_bytes(figures["bytes"])}</td><td class="n">{figures["bytes"]}</td></tr>')
    if summary.gone:
        rows.append(f'<tr><td class="t">{_key("gone")}{escape(CATEGORIES["gone"])} (the listing lags)</td>'
                    f'<td></td><td class="n">{summary.gone}</td><td></td><td></td></tr>')
    note = overlap_note(summary)
    return ("<table><tr><th></th><th>format copies</th><th>assets</th><th>size</th><th>bytes</th></tr>"
            + "".join(rows) + "</table>" + (f'<p class="note">{escape(note[0].upper() + note[1:])}.</p>'
                                             if note else ""))


def _example(row) -> str:
    size = human_bytes(row.bytes).replace(" ", "&nbsp;")
    return (f"<li>{escape(row.name)} ({escape(row.format or 'no format')}, {size}): "
            f"{escape(row.reason.removeprefix('would keep: '))}</li>")


def _reasons_table(summary) -> str:
    if not summary.reason_groups:
        return "<p>Nothing is kept for a reason: every copy is safe to remove or only on LucidLink.</p>"
    rows = "".join(f'<tr><td>{_key(g.category)}{escape(g.kind)}</td><td class="n">{g.format_copies}</td>'
                   f'<td class="n">{g.assets}</td><td class="n">{human_bytes(g.bytes)}</td>'
                   f'<td class="w"><ul class="examples">{"".join(_example(r) for r in g.examples)}'
                   + (f"<li>and {g.format_copies - len(g.examples)} more</li>"
                      if g.format_copies > len(g.examples) else "") + "</ul></td></tr>"
                   for g in summary.reason_groups)
    return ("<table><tr><th>kind of reason</th><th>format copies</th><th>assets</th><th>size</th>"
            f"<th>examples (the largest)</th></tr>{rows}</table>")


def _rows_table(summary) -> str:
    shown = summary.rows[:MAX_ROWS]
    cells = []
    for row in shown:
        when = row.last_modified.strftime("%Y-%m-%d %H:%M") if row.last_modified else ""
        cells.append(f'<tr><td class="t">{_key(row.category)}{escape(row.category)}</td>'
                     f'<td class="w" title="asset {escape(row.asset_id)}">{escape(row.name)}</td>'
                     f'<td class="t">{escape(row.format)}</td><td class="n">{human_bytes(row.bytes)}</td>'
                     f'<td class="t">{when}</td>'
                     f'<td class="w">{escape(row.reason.removeprefix("would keep: "))}</td></tr>')
    more = (f"<p>The first {MAX_ROWS} of {len(summary.rows)} rows; the CSV and JSON outputs hold all.</p>"
            if len(summary.rows) > MAX_ROWS else "")
    return (more + "<table><tr><th>category</th><th>name</th><th>format</th><th>size</th><th>last modified</th>"
            "<th>reason</th></tr>" + "".join(cells) + "</table>")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:].rstrip(".")


def render_html(summary) -> str:
    stamp = f"{summary.generated_at:%Y-%m-%d %H:%M} UTC"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LucidLink report, {escape(stamp)}</title>
<style>{STYLE}</style></head>
<body>
<h1>What is on LucidLink</h1>
<p>LucidLink storage {_storage(summary.ll_storage_name, summary.ll_storage_id)},
B2 storage {_storage(summary.b2_storage_name, summary.b2_storage_id)}, read {escape(stamp)}:
{summary.assets} asset(s), {human_bytes(summary.bytes)}. Each asset was judged with the rules of
Remove from LucidLink; nothing was changed. {escape(_sentence(summary.source["text"]))}.</p>
{_totals_table(summary)}
<h2>Bytes by category</h2>
{category_chart(summary)}
<h2>Bytes by age (last modified on LucidLink)</h2>
{age_chart(summary)}
<p>{" ".join(f'<span class="legend">{_key(c)}{escape(CATEGORIES[c])}</span>' for c in SHOWN)}</p>
<h2>Why the rest cannot be removed now, by kind of reason</h2>
{_reasons_table(summary)}
<h2>Every format copy on LucidLink (what stays first, the largest first)</h2>
{_rows_table(summary)}
</body></html>
"""
