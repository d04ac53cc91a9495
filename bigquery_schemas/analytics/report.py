"""A static, self-contained HTML report of the analytics queries, with inline SVG charts.

No JavaScript, stylesheet or font is fetched from anywhere: the file opens offline and
can be mailed or stored as a build artefact. Built by
``python -m bigquery_schemas.analytics report --output report.html`` from the rows of
:func:`bigquery_schemas.analytics.run_all`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from bigquery_schemas import analytics
from bigquery_schemas.analytics.formatting import cell_text

EVENT_ORDER = ("view", "wishlist", "add_to_cart", "order", "return")
# Colour-blind-safe palette (Okabe-Ito).
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #f3f3f3; } td.t { text-align: left; }
p.note { color: #555; font-size: 0.85rem; max-width: 60rem; }
svg text { font-size: 11px; fill: #222; }
"""


def _cell(value: Any) -> str:
    return escape(cell_text(value))


def _html_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p class='note'>(no rows)</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=t' if isinstance(r[c], str) else ''}>{_cell(r[c])}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def hbar_chart(labels: Sequence[str], values: Sequence[float], title: str, width: int = 640) -> str:
    """Horizontal bars, one per label, with the value written after each bar."""
    bar_h, gap, left, right = 20, 6, 190, 60
    height = len(labels) * (bar_h + gap) + 30
    top = max(values, default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 20 + i * (bar_h + gap)
        w = (width - left - right) * float(value) / float(top)
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{COLOURS[0]}"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 14}">{escape(_plain(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def grouped_bar_chart(
    categories: Sequence[str], series: Mapping[str, Sequence[float]], title: str, width: int = 720, height: int = 260
) -> str:
    """Vertical bars grouped by category (e.g. date), one colour per series, with a legend."""
    left, bottom, top_pad = 40, 40, 30
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    top = max((v for vals in series.values() for v in vals), default=0) or 1
    group_w = plot_w / max(len(categories), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{width - 10}" y2="{top_pad + plot_h}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{top_pad + 4}" text-anchor="end">{escape(_plain(top))}</text>',
        f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end">0</text>',
    ]
    for s, (name, vals) in enumerate(series.items()):
        colour = COLOURS[s % len(COLOURS)]
        parts.append(f'<rect x="{left + s * 110}" y="4" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{left + s * 110 + 14}" y="13">{escape(name)}</text>')
        for c, value in enumerate(vals):
            h = plot_h * float(value) / float(top)
            x = left + c * group_w + group_w * 0.1 + s * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{top_pad + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(f"{categories[c]} {name}: {_plain(value)}")}</title></rect>'
            )
    for c, label in enumerate(categories):
        x = left + c * group_w + group_w / 2
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _plain(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _traffic_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    dates = sorted({r["date"] for r in rows})
    counts = {(r["date"], r["event_name"]): r["events"] for r in rows}
    names = [n for n in EVENT_ORDER if any(r["event_name"] == n for r in rows)]
    series = {n: [counts.get((d, n), 0) for d in dates] for n in names}
    return grouped_bar_chart([d.isoformat() for d in dates], series, "Daily events by type")


def _funnel_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    steps = ("sessions", "viewed", "carted", "ordered")
    totals = [sum(r[s] for r in rows) for s in steps]
    return hbar_chart(steps, totals, "Sessions reaching each funnel step (whole range)")


def _top_products_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    labels = [f"{r['product_name'] or '(unknown)'} #{r['product_id']}" for r in rows]
    return hbar_chart(labels, [r["units_sold"] for r in rows], "Top products by units sold")


def build_report(results: Mapping[str, Sequence[Mapping[str, Any]]], start: dt.date, end: dt.date, target: str) -> str:
    """The HTML page: three charts, then every query's table under its description.

    Args:
      results: rows by query name, as returned by ``analytics.run_all``.
      start, end: the inclusive date range the rows were computed for.
      target: ``project.dataset`` shown in the heading.
    """
    charts = []
    if "daily_traffic_by_event" in results:
        charts.append(("Daily traffic", _traffic_chart(results["daily_traffic_by_event"])))
    if "conversion_funnel_daily" in results:
        charts.append(("Conversion funnel", _funnel_chart(results["conversion_funnel_daily"])))
    if "top_products_by_units" in results:
        charts.append(("Top products", _top_products_chart(results["top_products_by_units"])))
    sections = [f"<h2>{escape(title)}</h2>{svg}" for title, svg in charts]
    for name, rows in results.items():
        entry = analytics.get(name)
        sections.append(
            f"<h2 id='{escape(name)}'>{escape(entry.description)}</h2>"
            f"<p class='note'>{escape(name)}.sql</p>{_html_table(rows)}"
        )
    title = f"User behaviour analytics {start.isoformat()} to {end.isoformat()}"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class='note'>Source: {escape(target)}.{analytics.DEDUP_VIEW} "
        "(one row per event_id). Definitions are in each query's header comment.</p>"
        + "".join(sections)
        + "</body></html>\n"
    )
