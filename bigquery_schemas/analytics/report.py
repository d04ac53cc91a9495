"""A static, self-contained HTML report of the analytics queries, with inline SVG charts.

Contract:
  * one HTML file, no JavaScript, no stylesheet, image or font fetched from anywhere: it
    opens offline and can be mailed or kept as a build artefact;
  * every number on the page comes from a query file of this package (no arithmetic on
    the page except sums over a query's own rows and period-over-period deltas);
  * each chart is an ``<svg data-chart=NAME>`` whose marks carry ``data-key`` and
    ``data-value`` (the exact query value), so a test can compare them with the query;
  * a section with nothing to show says "No data in this range." instead of drawing an
    empty chart; money has 2 decimals and thousands separators, rates are percentages;
  * the layout fits a phone (390 px) and a desktop window (1280 px): KPI tiles wrap into
    a grid, each chart is drawn twice, wide and compact (``svg.wide`` / ``svg.compact``,
    one shown by a CSS media query, both with the same marks), a table too wide for its
    card scrolls inside it, and no number is broken across lines;
  * text that comes from the data (product and category names, error texts) is isolated
    (``<bdi>``, ``unicode-bidi: isolate``), so bidirectional control characters in it
    cannot reorder the page around it (an id beside a name stays ``#15``).

Built by ``python -m bigquery_schemas.analytics report`` (default output
``reports/report-<start>-<end>.html``)
(:func:`generate_report` runs the queries, :func:`build_report` only renders rows).
Tested in headless Chromium by ``tests/analytics/test_report_browser.py``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from typing import Any

from google.cloud import bigquery

from bigquery_schemas import analytics
from bigquery_schemas.analytics.formatting import RATE_COLUMNS

# Colour-blind-safe palette (Okabe-Ito).
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9")
NO_DATA = "No data in this range."
# Typographic dash for a NULL value and minus sign for a fall: written as escapes for ruff.
DASH, MINUS = "\u2013", "\u2212"

_PRODUCT_LABEL_CHARS = 34  # a third of a half-width chart; longer names end in "…"

# Width of one character of 11-12 px DejaVu Sans / Liberation Sans, rounded up: SVG text
# cannot be measured in Python, so label space is reserved from this and the browser test
# checks that every label stays inside its chart.
_CHAR_PX = 7.2

# The compact form of every chart, shown below PHONE_MAX_PX: drawn at its own size
# instead of the wide one scaled down (a 580-px chart in a 350-px card had 6-px labels).
# 390 px window - 2 x 8 px page margin - 2 x (1 px border + 12 px padding) = 348 px.
COMPACT_WIDTH = 340
PHONE_MAX_PX = 620

# Bidirectional formatting characters (embeddings, overrides, isolates). In attribute
# text (tooltips), which no element can isolate, they are dropped (the data-* attributes
# keep the exact value).
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
_FSI, _PDI = "\u2068", "\u2069"

_STYLE = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 0; color: #1f2328;
       background: #f6f7f9; font-size: 14px; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 17px; margin: 0 0 10px; }
h3 { font-size: 14px; margin: 12px 0 6px; }
p { margin: 4px 0; } .note { color: #57606a; font-size: 12.5px; overflow-wrap: anywhere; }
section { background: #fff; border: 1px solid #d8dee4; border-radius: 6px; padding: 14px 16px;
          margin: 14px 0; min-width: 0; }
.grid2 { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 14px; }
.grid2 > div { min-width: 0; }
.kpis { display: flex; flex-wrap: wrap; gap: 12px; }
.kpi { flex: 1 1 10.5em; background: #fff; border: 1px solid #d8dee4; border-radius: 6px; padding: 10px 12px; }
.kpi .label { color: #57606a; font-size: 12.5px; }
.kpi .value { font-size: 24px; font-weight: bold; margin: 2px 0; white-space: nowrap; }
.kpi .prev { font-size: 12px; color: #57606a; }
.num { white-space: nowrap; }
.up { color: #1a7f37; } .down { color: #cf222e; }
.empty { color: #57606a; font-style: italic; padding: 8px 0; }
/* A table wider than its card scrolls in it; a shadow on the right edge says there is more
   (covered by the white "local" layer once scrolled to the end). */
.scroll { overflow-x: auto; max-width: 100%;
  background: linear-gradient(to left, #fff 40%, rgba(255, 255, 255, 0)) right / 24px 100% no-repeat local,
              linear-gradient(to left, rgba(0, 0, 0, .14), rgba(0, 0, 0, 0)) right / 10px 100% no-repeat scroll; }
table { border-collapse: collapse; font-size: 12.5px; margin: 4px 0 8px; }
th, td { border: 1px solid #d8dee4; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td { white-space: nowrap; }
td.t { text-align: left; white-space: normal; overflow-wrap: break-word; }
td.wide { min-width: 16em; }
table.kv th { text-align: left; }
.reasons { list-style: none; padding: 0; margin: 4px 0 8px; }
.reasons li { border-top: 1px solid #eaeef2; padding: 6px 0; }
.reasons .count { font-weight: bold; }
.reasons .example { color: #57606a; font-size: 12.5px; overflow-wrap: anywhere; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font-size: 11px; fill: #1f2328; }
svg .axis { stroke: #8c959f; } svg .grid { stroke: #eaeef2; }
svg.compact { display: none; }
@media (max-width: 1000px) { .grid2 { grid-template-columns: minmax(0, 1fr); } }
@media (max-width: {phone}px) {
  main { padding: 8px 8px 24px; } section { padding: 10px 12px; margin: 10px 0; }
  h1 { font-size: 19px; } .kpi .value { font-size: 21px; }
  svg.wide { display: none; } svg.compact { display: block; }
}
""".replace("{phone}", str(PHONE_MAX_PX))


# ----------------------------------------------------------------------------- formatting


def money(value: Any) -> str:
    """An amount with 2 decimals and thousands separators (NUMERIC is always money here)."""
    if isinstance(value, float):
        value = repr(value)  # Decimal(220.71) would carry the float's binary error into the rounding
    return f"{Decimal(value):,.2f}"


def count(value: Any) -> str:
    return f"{int(value):,}"


def percent(value: Any) -> str:
    """A FLOAT64 fraction as a percentage with one decimal; NULL (no denominator) as a dash."""
    return DASH if value is None else f"{float(value) * 100:.1f}%"


def timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _num(text: str) -> str:
    """A number, date or time inside prose, kept on one line (a phone broke "2026-11-20" at its hyphen)."""
    return f"<span class='num'>{escape(text)}</span>"


def user_text(text: str) -> str:
    """Text from the data, escaped and isolated: its bidi controls cannot reach past it."""
    return f"<bdi>{escape(text)}</bdi>"


def _attr_text(text: str) -> str:
    """Text from the data for a tooltip: bidi controls dropped, then isolated as plain text."""
    return escape(_FSI + text.translate(_BIDI_CONTROLS) + _PDI)


def cell(column: str, value: Any) -> str:
    """One table cell as text: rates as %, money with 2 decimals, UTC times, a dash for NULL."""
    if value is None:
        return DASH
    if column in RATE_COLUMNS:
        return percent(value)
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, dt.datetime):
        return timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value) if column.endswith("_id") else count(value)  # no "1,024" for an id
    if isinstance(value, float):
        # Not a rate: an average of money the emulator returns as FLOAT64 (docs/analytics.md).
        return money(value)
    return str(value)


def _data_value(value: Any) -> str:
    """The exact query value for a ``data-value`` attribute (what the browser test compares)."""
    if isinstance(value, Decimal):
        return str(value.quantize(Decimal("0.01")))
    return "" if value is None else str(value)


def _fit(label: str, max_chars: int) -> str:
    return label if len(label) <= max_chars else label[: max_chars - 1].rstrip() + "…"


def _text_px(text: str) -> float:
    return len(text) * _CHAR_PX


# ----------------------------------------------------------------------------- charts


def _svg_open(chart: str, width: int, height: int, title: str, form: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{form}" data-chart="{escape(chart)}" data-form="{form}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
    )


def _isolated(text: str) -> str:
    """SVG text from the data in its own bidi isolate (SVG has no ``<bdi>``)."""
    return f'<tspan style="unicode-bidi: isolate">{escape(text)}</tspan>'


@dataclass(frozen=True)
class Bar:
    """One bar of :func:`hbar_chart`."""

    name: str  # from the data: isolated on the page, shortened with "…" when too long
    value: Any  # the query's exact value (``data-value``)
    shown: str  # the value as people read it, after the bar
    id: str | None = None  # from the data too, shown whole after the name: "Mug #102"

    @property
    def label(self) -> str:
        return self.name + self._id_suffix

    @property
    def _id_suffix(self) -> str:
        return f" #{self.id}" if self.id is not None else ""

    def fitted(self, max_chars: int) -> str:
        """The label in at most ``max_chars`` (the id kept whole, the name cut before it)."""
        return _fit(self.name, max(max_chars - len(self._id_suffix), 4)) + self._id_suffix

    def svg_label(self, max_chars: int) -> str:
        """:meth:`fitted` as SVG text, the name and the id each in its own bidi isolate."""
        name = _fit(self.name, max(max_chars - len(self._id_suffix), 4))
        return _isolated(name) + ("" if self.id is None else " #" + _isolated(self.id))

    def tooltip(self) -> str:
        return (
            _attr_text(self.name) + ("" if self.id is None else " #" + _attr_text(self.id)) + f": {escape(self.shown)}"
        )


def hbar_chart(chart: str, bars: Sequence[Bar], title: str, width: int = 580, max_label_chars: int = 34) -> str:
    """Horizontal bars, wide and compact.

    Wide: label left, bar, shown text after the bar. The label column is as wide as the
    longest label needs (up to ``max_label_chars``; a longer name ends in "…" before its
    suffix), so no label runs off the left edge. Compact (:data:`COMPACT_WIDTH`): each
    label on its own line above its bar. Both keep the full label in the bar's tooltip
    and ``data-label``, and isolate the name and the id (``Mug`` | ``#`` | ``102``).
    """
    top = max((float(b.value) for b in bars), default=0) or 1.0

    def mark(x: float, y: float, w: float, h: int, bar: Bar) -> str:
        return (
            f'<rect x="{x}" y="{y}" width="{w:.1f}" height="{h}" fill="{COLOURS[0]}" '
            f'data-key="{escape(bar.label)}" data-value="{escape(_data_value(bar.value))}">'
            f"<title>{bar.tooltip()}</title></rect>"
        )

    # wide: label | bar | value
    bar_h, gap, top_pad = 20, 8, 6
    left = int(max((_text_px(b.fitted(max_label_chars)) for b in bars), default=0)) + 14
    right = int(max((_text_px(b.shown) for b in bars), default=0)) + 12
    plot_w = max(width - left - right, 40)
    height = top_pad * 2 + len(bars) * (bar_h + gap)
    wide = [_svg_open(chart, width, height, title, "wide")]
    for i, bar in enumerate(bars):
        y = top_pad + i * (bar_h + gap)
        w = plot_w * float(bar.value) / top
        wide.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" data-label="{escape(bar.label)}">'
            f"{bar.svg_label(max_label_chars)}</text>{mark(left, y, w, bar_h, bar)}"
            f'<text x="{left + w + 4:.1f}" y="{y + 14}" data-shown="{escape(bar.label)}">{escape(bar.shown)}</text>'
        )
    wide.append("</svg>")

    # compact: the label on its own line, then bar | value
    compact_chars = int(COMPACT_WIDTH / _CHAR_PX) - 1
    line_h, bar_h, gap = 15, 14, 9
    right = int(max((_text_px(b.shown) for b in bars), default=0)) + 8
    plot_w = max(COMPACT_WIDTH - 1 - right, 40)
    step = line_h + bar_h + gap
    compact = [_svg_open(chart, COMPACT_WIDTH, top_pad + len(bars) * step, title, "compact")]
    for i, bar in enumerate(bars):
        y = top_pad + i * step
        w = plot_w * float(bar.value) / top
        compact.append(
            f'<text x="1" y="{y + 11}" data-label="{escape(bar.label)}">{bar.svg_label(compact_chars)}</text>'
            f"{mark(1, y + line_h, w, bar_h, bar)}"
            f'<text x="{w + 5:.1f}" y="{y + line_h + 11}" data-shown="{escape(bar.label)}">{escape(bar.shown)}</text>'
        )
    compact.append("</svg>")
    return "".join(wide) + "".join(compact)


def _nice_step(value: float) -> float:
    """The smallest 1/2/5 x 10^n at or above ``value``: gridlines at round numbers."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    return next(m * exp for m in (1, 2, 5, 10) if m * exp >= value * (1 - 1e-9))


def column_chart(
    chart: str,
    points: Sequence[tuple[str, Any]],
    title: str,
    fmt: Callable[[Any], str],
    colour: str = COLOURS[0],
    width: int = 580,
    height: int = 230,
    integer: bool = False,
) -> str:
    """Vertical bars over time, wide and compact: ``(ISO date, value)`` each; y-axis and labels through ``fmt``.

    The compact form is the same chart drawn at :data:`COMPACT_WIDTH` (not the wide one
    scaled down), so its text keeps its size. Values are written above the bars when there
    is room for them; x labels are thinned to every n-th day so they never overlap; every
    bar's tooltip has its date and value.
    """
    return _columns(chart, points, title, fmt, colour, width, height, integer, "wide") + _columns(
        chart, points, title, fmt, colour, COMPACT_WIDTH, height, integer, "compact"
    )


def _columns(
    chart: str,
    points: Sequence[tuple[str, Any]],
    title: str,
    fmt: Callable[[Any], str],
    colour: str,
    width: int,
    height: int,
    integer: bool,
    form: str,
) -> str:
    highest = max((float(v or 0) for _, v in points), default=0)
    step = _nice_step(highest / 4)
    if integer:
        step = max(step, 1.0)  # counts: no gridline at 0.25 orders
    top = step * max(math.ceil(highest / step - 1e-9), 1)
    ticks = [step * i for i in range(round(top / step) + 1)]
    tick_labels = [fmt(Decimal(str(t)) if fmt is money else t) for t in ticks]
    left = int(max(_text_px(t) for t in tick_labels)) + 10
    bottom, top_pad, right = 30, 18, 8  # x labels clear of the y-axis "0"
    plot_w, plot_h = width - left - right, height - bottom - top_pad
    slot = plot_w / max(len(points), 1)
    shown = [fmt(v) for _, v in points]
    label_values = all(_text_px(s) + 4 <= slot for s in shown)
    every = max(1, math.ceil(_text_px("11-20") * 1.6 / slot))
    parts = [_svg_open(chart, width, height, title, form)]
    for t, text in zip(ticks, tick_labels, strict=True):
        y = top_pad + plot_h - plot_h * t / top
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(text)}</text>'
        )
    for i, ((key, value), text) in enumerate(zip(points, shown, strict=True)):
        h = plot_h * float(value or 0) / top
        x = left + i * slot + slot * 0.15
        y = top_pad + plot_h - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{colour}" '
            f'data-key="{escape(key)}" data-value="{escape(_data_value(value))}">'
            f"<title>{escape(f'{key}: {text}')}</title></rect>"
        )
        cx = left + i * slot + slot / 2
        if label_values:
            parts.append(f'<text x="{cx:.1f}" y="{y - 3:.1f}" text-anchor="middle">{escape(text)}</text>')
        if i % every == 0:
            parts.append(
                f'<text x="{cx:.1f}" y="{height - 6}" text-anchor="middle">{escape(key[5:])}</text>'
            )  # MM-DD: the year is in the heading
    parts.append(
        f'<line class="axis" x1="{left}" y1="{top_pad + plot_h}" x2="{width - right}" y2="{top_pad + plot_h}"/></svg>'
    )
    return "".join(parts)


# ----------------------------------------------------------------------------- sections


def _empty(text: str = NO_DATA) -> str:
    return f"<p class='empty'>{escape(text)}</p>"


def html_table(
    rows: Sequence[Mapping[str, Any]],
    wide: Sequence[str] = (),
    formats: Mapping[str, Callable[[Any], str]] | None = None,
) -> str:
    """Rows as a table in a box that scrolls sideways when the table is wider than its card.

    Text from the data (string cells) is isolated (:func:`user_text`) and may wrap; numbers,
    dates and times never wrap. ``formats`` gives a column's own cell text (e.g. rates
    shown as %); ``wide`` columns get room for sentences. A single row of many columns is
    shown as name / value lines, which fit a phone without scrolling.
    """
    if not rows:
        return _empty()
    formats = formats or {}
    cols = list(rows[0])

    def td(column: str, value: Any) -> str:
        text = formats[column](value) if column in formats else cell(column, value)
        classes = " ".join(k for k, on in (("t", isinstance(value, str)), ("wide", column in wide)) if on)
        body = user_text(text) if isinstance(value, str) else escape(text)
        return f"<td{f' class={classes!r}' if classes else ''}>{body}</td>"

    if len(rows) == 1 and len(cols) > 4:
        lines = "".join(f"<tr><th scope='row'>{escape(c.replace('_', ' '))}</th>{td(c, rows[0][c])}</tr>" for c in cols)
        return f"<div class='scroll'><table class='kv'><tbody>{lines}</tbody></table></div>"
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(td(c, r[c]) for c in cols) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _delta(current: Any, previous: Any, is_rate: bool) -> str:
    if current is None or previous is None:
        return ""
    if is_rate:
        diff = (float(current) - float(previous)) * 100
        text, sign = f"{diff:+.1f} pp", diff
    elif float(previous) == 0:
        return ""
    else:
        sign = (float(current) - float(previous)) / float(previous) * 100
        text = f"{sign:+.1f}%"
    cls = "up" if sign > 0 else "down" if sign < 0 else ""
    return f" <span class='num {cls}'>{escape(text.replace('-', MINUS))}</span>"


KPIS = (
    ("revenue", "Revenue (gross)", money),
    ("orders", "Orders", count),
    ("avg_order_value", "Average order value", lambda v: DASH if v is None else money(v)),
    ("visitors", "Visitors", count),
    ("order_conversion", "Sessions with an order", percent),
)


def _range_has_data(kpi_rows: Sequence[Mapping[str, Any]]) -> bool:
    current = next((r for r in kpi_rows if r["period"] == "current"), None)
    return current is not None and bool(current["visitors"] or current["orders"])


def _newest_event_hint(fresh: Sequence[Mapping[str, Any]]) -> str:
    """Where the data is, for a range without any: an empty report was issue 15's first surprise."""
    newest = max((r["latest_event_ts"] for r in fresh if r["feed"] in ("stream", "api") and r["latest_event_ts"]),
                 default=None)  # fmt: skip
    if newest is None:
        return " user_behavior has no rows yet."
    return f" The newest event in user_behavior is from {_num(timestamp(newest))}."


def _kpi_section(rows: Sequence[Mapping[str, Any]], fresh: Sequence[Mapping[str, Any]]) -> str:
    by_period = {r["period"]: r for r in rows}
    current, previous = by_period.get("current"), by_period.get("previous")
    if current is None or not _range_has_data(rows):
        hint = f"<p class='empty'>{escape(NO_DATA)}{_newest_event_hint(fresh)}</p>"
        return f"<section id='kpis'><h2>Key figures</h2>{hint}</section>"
    prev_range = f"{_num(previous['first_day'].isoformat())} to {_num(previous['last_day'].isoformat())}"
    tiles = []
    for key, label, fmt in KPIS:
        cur, prev = current[key], previous[key] if previous else None
        tiles.append(
            f"<div class='kpi' data-kpi='{key}' data-current='{escape(_data_value(cur))}' "
            f"data-previous='{escape(_data_value(prev))}'><div class='label'>{escape(label)}</div>"
            f"<div class='value'>{escape(fmt(cur))}</div>"
            f"<div class='prev'>previous: <span class='num'>{escape(fmt(prev))}</span>"
            f"{_delta(cur, prev, key == 'order_conversion')}</div></div>"
        )
    return (
        "<section id='kpis'><h2>Key figures</h2>"
        f"<div class='kpis'>{''.join(tiles)}</div>"
        f"<p class='note'>Previous period: {prev_range} (same number of days). Net revenue after "
        f"refunds: {_num(money(current['net_revenue']))} (previous {_num(money(previous['net_revenue']))}). "
        "Sessions with an order: clickstream sessions started in the period with at least one sale, over "
        "all of them (the funnel's order conversion; its last step also needs a view and a cart event). "
        f"Cancelled orders are not in revenue: {_num(money(current['cancelled_revenue']))} this period.</p>"
        "</section>"
    )


SESSION_SPEND = (
    ("avg_spend_per_session", "Net spend per session"),
    ("avg_spend_per_buying_session", "Net spend per buying session"),
)
CUSTOMER_SPEND = (
    ("avg_spend_per_customer", "Net spend per customer"),
    ("avg_purchase_per_buyer", "Purchases per buyer (gross)"),
    ("avg_net_revenue_per_order", "Net revenue per order"),
)


def _spend_section(sessions: Mapping[str, Any] | None, customers: Mapping[str, Any] | None) -> str:
    """Average spend as far as the data supports it.

    Per session only when the range has sessions (clickstream or API session ids); per
    customer and per order whenever it has sales or refunds: a shop with order data only
    (a line-level export) has no sessions, and its per-session figures would be empty.
    """
    tiles, notes = [], []
    if sessions and sessions["sessions"]:
        tiles += [(key, label, sessions[key]) for key, label in SESSION_SPEND]
        notes.append(
            f"{_num(count(sessions['sessions']))} sessions, {_num(count(sessions['buying_sessions']))} with a sale "
            "(avg_spend_per_session)."
        )
    if customers and customers["customers"]:
        tiles += [(key, label, customers[key]) for key, label in CUSTOMER_SPEND]
        notes.append(
            f"{_num(count(customers['customers']))} customers with a sale or a refund, "
            f"{_num(count(customers['buying_customers']))} with a sale, {_num(count(customers['orders']))} orders; "
            "each guest order counts as one customer (avg_spend_per_customer)."
        )
    if not tiles:
        return f"<section id='spend'><h2>Average spend</h2>{_empty()}</section>"
    if not (sessions and sessions["sessions"]):
        notes.insert(0, "No sessions in this range (order data only): spend per customer and per order.")
    html = "".join(
        f"<div class='kpi' data-spend='{key}' data-value='{escape(_data_value(value))}'>"
        f"<div class='label'>{escape(label)}</div><div class='value'>{escape(DASH if value is None else money(value))}"
        "</div></div>"
        for key, label, value in tiles
    )
    return (
        f"<section id='spend'><h2>Average spend</h2><div class='kpis'>{html}</div>"
        f"<p class='note'>Net of refunds, dated by each sale and refund. {' '.join(notes)}</p></section>"
    )


def _trend_section(rows: Sequence[Mapping[str, Any]], zone: str) -> str:
    if not any(r["orders"] or r["gross_revenue"] for r in rows):
        return f"<section id='trend'><h2>Revenue and orders over time</h2>{_empty()}</section>"
    days = [r["date"].isoformat() for r in rows]
    revenue = column_chart(
        "revenue_by_date", list(zip(days, [r["gross_revenue"] for r in rows], strict=True)), "Gross revenue per day",
        money,
    )  # fmt: skip
    orders = column_chart(
        "orders_by_date", list(zip(days, [r["orders"] for r in rows], strict=True)), "Orders per day", count,
        COLOURS[1], integer=True,
    )  # fmt: skip
    return (
        "<section id='trend'><h2>Revenue and orders over time</h2><div class='grid2'>"
        f"<div><h3>Gross revenue per day</h3>{revenue}</div><div><h3>Orders per day</h3>{orders}</div>"
        f"</div><p class='note'>Days in {escape(zone)}; returns are netted on the day they happen (see the "
        "table orders_revenue_by_date below).</p></section>"
    )


def _top_products_section(rows: Sequence[Mapping[str, Any]], width: int) -> str:
    if not rows:
        return f"<section id='top-products'><h2>Top products by units sold</h2>{_empty()}</section>"
    # Long names are shortened before the id, so the id stays readable: "Linen Duvet… #202".
    bars = [
        Bar(
            r["product_name"] or "(unknown product)",
            r["units_sold"],
            f"{count(r['units_sold'])} unit{'s' if r['units_sold'] != 1 else ''} · {money(r['gross_revenue'])}",
            str(r["product_id"]),
        )
        for r in rows
    ]
    chart = hbar_chart("top_products", bars, "Top products by units sold", width, _PRODUCT_LABEL_CHARS)
    return (
        f"<section id='top-products'><h2>Top products by units sold</h2>{chart}"
        "<p class='note'>Units of order lines in the range (returns not subtracted) and their gross "
        "revenue.</p></section>"
    )


FUNNEL_STEPS = (("sessions", "Sessions"), ("viewed", "Viewed a product"), ("carted", "Added to cart"),
                ("ordered", "Ordered"))  # fmt: skip


def _funnel_section(rows: Sequence[Mapping[str, Any]]) -> str:
    totals = {key: sum(r[key] for r in rows) for key, _ in FUNNEL_STEPS}
    without = sum(r.get("sessions_without_clickstream") or 0 for r in rows)
    buying = sum(r.get("buying_sessions") or 0 for r in rows)
    note = (
        f"<p class='note' data-sessions-without-clickstream='{without}'>{count(without)} "
        f"{'session' if without == 1 else 'sessions'} without clickstream (only orders from the orders API) "
        f"{'is' if without == 1 else 'are'} not counted in the funnel.</p>"
    )
    if not totals["sessions"]:
        return f"<section id='funnel'><h2>Conversion funnel</h2>{_empty()}{note if without else ''}</section>"
    bars = [
        Bar(label, totals[key], f"{count(totals[key])} ({percent(totals[key] / totals['sessions'])})")
        for key, label in FUNNEL_STEPS
    ]
    chart = hbar_chart("funnel", bars, "Sessions reaching each funnel step")
    return (
        f"<section id='funnel'><h2>Conversion funnel</h2>{chart}"
        "<p class='note'>Clickstream sessions started in the range; each step is a subset of the one above "
        f"(percentages of all sessions). Sessions with an order, whatever their steps: "
        f"<span data-buying-sessions='{buying}'>{count(buying)} ({percent(buying / totals['sessions'])})</span>, "
        f"the key figure's conversion.</p>{note}</section>"
    )


def _retention_section(rows: Sequence[Mapping[str, Any]] | None, missing: str | None) -> str:
    head = "<section id='retention'><h2>Retention of new users</h2>"
    if missing:
        return f"{head}{_empty(missing)}</section>"
    if not rows:
        return f"{head}{_empty()}</section>"
    shown = [
        {
            "first_seen": r["cohort_date"],
            "new_users": r["new_users"],
            "active_after_1_day": r["rate_d1"],
            "active_after_7_days": r["rate_d7"],
            "active_after_30_days": r["rate_d30"],
            "buyers": r["buyers"],
            "repeat_buyers": r["repeat_buyers"],
        }
        for r in rows
    ]
    return (
        f"{head}{html_table(shown, formats=dict.fromkeys(list(shown[0])[2:5], percent))}"
        "<p class='note'>From user_profile (refresh-profile), data through "
        f"{_num(rows[0]['data_through'].isoformat())}: users first seen on the day, and the share still "
        "active N or more days later; a dash where day N has not come yet.</p></section>"
    )


def _health_section(
    dead: Sequence[Mapping[str, Any]],
    fresh: Sequence[Mapping[str, Any]],
    coverage: Sequence[Mapping[str, Any]],
) -> str:
    written = [r for r in dead if r["dead_letters"]]
    by_stage: dict[str, int] = {}
    for r in written:
        key = f"{r['pipeline']} / {r['stage']}"
        by_stage[key] = by_stage.get(key, 0) + r["dead_letters"]
    if written:
        bars = [Bar(k, v, count(v)) for k, v in by_stage.items()]
        dead_chart = hbar_chart("dead_letters_by_stage", bars, "Dead letters by stage", 560)
        dead_reasons = f"<h3>Dead letters by reason</h3>{_reasons_list(written)}"
    elif dead:
        dead_chart, dead_reasons = _empty("No dead letters were written in this range."), ""
    else:
        dead_chart, dead_reasons = _empty("No dead letters in this range."), ""
    if any(r["data_dead_letters"] != r["dead_letters"] for r in dead):
        # A backfill loads old days today: its rejections are dated by the data they carry.
        of_data = [r for r in dead if r["data_dead_letters"]]
        dead_reasons += (
            "<h3 id='dead-letters-of-data'>Dead letters of the data in this range</h3>"
            "<p class='note'>Rejected records whose own time (event, order, lake hour) is in this range, "
            "whenever they were written: the runs that loaded these days, a backfill's included.</p>"
            + (_reasons_list(of_data, "data_dead_letters") if of_data else _empty("None."))
        )
    fresh_html = html_table(fresh)
    event_minutes = sum(r["event_minutes"] for r in coverage)
    covered = sum(r["covered_minutes"] for r in coverage)
    if event_minutes:
        # All-zero bars would be an empty chart: with nothing covered, the sentence says it all.
        chart = (
            column_chart(
                "engagement_coverage",
                [(r["date"].isoformat(), r["coverage"]) for r in coverage if r["event_minutes"]],
                "Engagement coverage per day",
                percent,
                COLOURS[2],
                width=560,
                height=190,
            )
            if covered
            else "<p class='empty'>No engagement rows for these minutes: is the streaming job running?</p>"
        )
        coverage_html = (
            f"<p data-coverage='{covered}/{event_minutes}'><b>{escape(percent(covered / event_minutes))}</b> of "
            f"{count(event_minutes)} minutes with clickstream events have engagement rows "
            f"({count(covered)} covered).</p>{chart}"
        )
    else:
        coverage_html = _empty()
    return (
        "<section id='health'><h2>Data quality and pipeline health</h2><div class='grid2'>"
        f"<div><h3>Dead letters by stage</h3>{dead_chart}</div>"
        f"<div><h3>Engagement coverage</h3>{coverage_html}</div></div>"
        f"{dead_reasons}<h3>Freshness (all history)</h3>{fresh_html}"
        "<p class='note'>Latest event time and latest write time of each feed; rows in range by the "
        "feed's own date.</p></section>"
    )


def _reasons_list(dead: Sequence[Mapping[str, Any]], counted: str = "dead_letters") -> str:
    """One line per group of like errors: its count, its pattern in words, and one real error of it.

    The query groups errors whose texts differ only in values (masked as "…"); the
    pattern alone reads like a template, so the group's example shows a real one.
    """
    items = []
    for r in dead:
        n = r[counted]
        items.append(
            f"<li data-reason='{escape(r['reason'])}' data-{counted.replace('_', '-')}='{n}'>"
            f"<span class='count'>{_num(count(n))}</span> {'dead letter' if n == 1 else 'dead letters'}: "
            f"{user_text(r['reason'])} <span class='note'>({escape(r['pipeline'])} / {escape(r['stage'])}, "
            f"last {_num(timestamp(r['last_insert_ts']))})</span>"
            f"<div class='example'>{'Example' if n > 1 else 'Error'}: {user_text(r['example_error'])}</div></li>"
        )
    return f"<ul class='reasons'>{''.join(items)}</ul>"


# The queries the sections above read, in the order they are run.
REPORT_QUERIES = (
    "kpi_summary",
    "orders_revenue_by_date",
    "top_products_by_units",
    "conversion_funnel_daily",
    "retention_cohorts",
    "dead_letters_by_stage",
    "pipeline_freshness",
    "engagement_coverage",
    "avg_spend_per_session",
    "avg_spend_per_customer",
)
# Shown again as plain tables at the end, for the numbers behind the charts and the rest.
DETAIL_TABLES = (
    "orders_revenue_by_date",
    "category_summary",
    "top_products_by_returns",
    "top_products_by_wishlists",
    "avg_spend_per_session",
    "avg_spend_per_customer",
    "unique_visitors",
    "conversion_funnel_daily",
    "daily_traffic_by_event",
)

# An order event is one order line (its id is <order_id>:<line>), so a day's "order" events
# outnumber its orders (605 events of 285 orders in issue 25's demo): say what is counted.
EVENT_LABELS = {"order": "order (line)", "return": "return (line)"}
DETAIL_FORMATS: dict[str, dict[str, Callable[[Any], str]]] = {
    "daily_traffic_by_event": {"event_name": lambda name: EVENT_LABELS.get(name, name)},
}
DETAIL_NOTES = {
    "daily_traffic_by_event": (
        "<p class='note'>Events, not orders: an order event is one order line (an order of three products "
        "is three order events) and a return event one returned line. Orders per day are in "
        "orders_revenue_by_date (orders, and order_lines).</p>"
    ),
}


def build_report(
    results: Mapping[str, Sequence[Mapping[str, Any]]],
    start: dt.date,
    end: dt.date,
    target: str,
    missing: Mapping[str, str] | None = None,
    time_zone: str = analytics.DEFAULT_TIME_ZONE,
) -> str:
    """The HTML page from query rows.

    Args:
      results: rows by query name (``analytics.run_query``); every name of
        :data:`REPORT_QUERIES` except those in ``missing``; detail tables where present.
      start, end: the inclusive date range the rows were computed for.
      target: ``project.dataset`` shown in the heading.
      missing: query name -> message shown in its section instead of rows (e.g. the
        user_profile table was not built yet).
      time_zone: the business time zone the rows' dates are in (said on the page).
    """
    missing = missing or {}
    spend = {name: (results.get(name) or [None])[0] for name in ("avg_spend_per_session", "avg_spend_per_customer")}
    sections = [
        _kpi_section(results["kpi_summary"], results["pipeline_freshness"]),
        _spend_section(spend["avg_spend_per_session"], spend["avg_spend_per_customer"]),
        _trend_section(results["orders_revenue_by_date"], time_zone),
        "<div class='grid2'>",
        _top_products_section(results["top_products_by_units"], width=560),
        _funnel_section(results["conversion_funnel_daily"]),
        "</div>",
        _retention_section(results.get("retention_cohorts"), missing.get("retention_cohorts")),
        _health_section(results["dead_letters_by_stage"], results["pipeline_freshness"],
                        results["engagement_coverage"]),
    ]  # fmt: skip
    details = [
        f"<h3 id='{escape(name)}'>{escape(analytics.get(name).description)} "
        f"<span class='note'>({escape(name)}.sql)</span></h3>"
        f"{html_table(results[name], formats=DETAIL_FORMATS.get(name))}{DETAIL_NOTES.get(name, '')}"
        for name in DETAIL_TABLES
        if name in results
    ]
    if not _range_has_data(results["kpi_summary"]):
        details = [_empty()]  # the tables would only repeat zeros for each day
    if details:
        sections.append(f"<section id='details'><h2>All query results</h2>{''.join(details)}</section>")
    title = f"User behaviour analytics {start.isoformat()} to {end.isoformat()}"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body><main>"
        f"<h1>User behaviour analytics {_num(start.isoformat())} to {_num(end.isoformat())}</h1>"
        f"<p class='note'>Source: {escape(target)}.{analytics.DEDUP_VIEW} "
        f"(one row per event_id). Dates are {_zone_words(time_zone)} and inclusive. Definitions are in each "
        "query's header comment (bigquery_schemas/analytics/*.sql).</p>" + "".join(sections) + "</main></body></html>\n"
    )


def _zone_words(time_zone: str) -> str:
    if time_zone == "UTC":
        return "UTC"
    return f"local to {escape(time_zone)} (the business time zone: days run from local midnight)"


def generate_report(
    client: bigquery.Client,
    dataset: str,
    start: dt.date,
    end: dt.date,
    limit: int | None = None,
    project: str | None = None,
    time_zone: str = analytics.DEFAULT_TIME_ZONE,
) -> str:
    """Run the report's queries and the detail tables, and render the page.

    A missing ``user_profile`` (refresh-profile not run yet) does not stop the report:
    the retention section says which command builds it. Any other error propagates
    (a missing view or table as :class:`analytics.MissingTableError`, naming its fix).
    """
    project = project or client.project
    results: dict[str, list[dict[str, Any]]] = {}
    missing: dict[str, str] = {}
    for name in dict.fromkeys((*REPORT_QUERIES, *DETAIL_TABLES)):
        try:
            results[name] = analytics.run_query(
                client, name, dataset, start, end, limit, project=project, time_zone=time_zone
            )
        except analytics.MissingTableError as exc:
            if not exc.table.endswith(f".{analytics.USER_PROFILE}"):
                raise  # no section can stand without the dedup view or the jobs' tables
            missing[name] = f"{exc.table} has not been built yet: run {exc.fix}"
    return build_report(results, start, end, f"{project}.{dataset}", missing, time_zone)
