"""The HTML report in real headless Chromium on a phone (390 px) and a desktop (1280 px).

What is proven at both widths, through the real command (``main(["report", ...])``):
  * nothing on the page is clipped or overflows: no sideways page scroll, no HTML text
    wider than its box, no SVG label outside its chart or on top of another label, no
    chart shrunk below 90 % of its drawn size (its labels stay readable), and no number
    broken across lines (the checker itself is shown to catch each of these on a
    deliberately broken page);
  * on a phone the KPI tiles wrap into a grid, each chart shows its compact form, and a
    table wider than its card scrolls inside it;
  * every chart's marks and every KPI tile carry exactly the numbers the queries return
    (the test runs the queries itself) and show them formatted (money, %);
  * the page loads nothing but itself; an empty range says "No data in this range."
    instead of drawing charts;
  * names holding bidi controls (U+202E, U+2067) cannot reorder the text beside them:
    the id after a product name is displayed in its DOM order, ``#102``.

Screenshots and the HTML are kept as artefacts in ``$REPORT_ARTIFACTS_DIR`` (default
``tests/artifacts/``, ignored by git; the session's summary lists them).
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import os
from decimal import Decimal
from pathlib import Path

import pytest

from bigquery_schemas import analytics
from bigquery_schemas.analytics import report
from bigquery_schemas.analytics.__main__ import main
from tests.analytics.sample_data import (
    API_ONLY_SESSION_ROWS,
    DEAD_LETTERS,
    ENGAGEMENT,
    LONG_PRODUCTS,
    ROWS,
    month_rows,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("REPORT_ARTIFACTS_DIR", ROOT / "tests" / "artifacts"))
START, END = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
PHONE, DESKTOP = 390, 1280
WIDTHS = pytest.mark.parametrize("width", [PHONE, DESKTOP], ids=["390px", "1280px"])

# Layout problems as a list of sentences (empty = fine). Text inside a box that scrolls
# sideways (overflow-x auto) is reachable, so only the box itself must fit.
LAYOUT_JS = r"""
(() => {
  const problems = [];
  const vw = document.documentElement.clientWidth;
  const doc = document.documentElement;
  if (doc.scrollWidth > vw) problems.push(`page scrolls sideways: ${doc.scrollWidth} > ${vw}`);
  const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  const inScrollBox = el => { for (let a = el.parentElement; a; a = a.parentElement) if (scrolls(a)) return true;
                              return false; };
  const name = el => `<${el.tagName.toLowerCase()}> "${(el.textContent || '').trim().slice(0, 50)}"`;
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('svg')) continue;
    const hasText = [...el.childNodes].some(n => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    const cs = getComputedStyle(el);
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      if (!scrolls(el)) problems.push(`overflows its box: ${name(el)} ${el.scrollWidth} > ${el.clientWidth}`);
    }
    const clipsY = !['visible', 'auto', 'scroll'].includes(cs.overflowY);
    if (clipsY && el.clientHeight > 0 && el.scrollHeight > el.clientHeight + 1)
      problems.push(`clipped at the bottom: ${name(el)} ${el.scrollHeight} > ${el.clientHeight}`);
    if (!hasText) continue;
    const r = el.getBoundingClientRect();
    if (!inScrollBox(el) && (r.left < -0.5 || r.right > vw + 0.5))
      problems.push(`outside the window: ${name(el)} ${r.left}..${r.right}`);
    if (cs.textOverflow === 'ellipsis' && el.scrollWidth > el.clientWidth) problems.push(`cut: ${name(el)}`);
  }
  for (const svg of document.querySelectorAll('svg')) {
    const s = svg.getBoundingClientRect();
    if (s.left < -0.5 || s.right > vw + 0.5) problems.push(`chart ${svg.dataset.chart} outside the window`);
    const texts = [...svg.querySelectorAll('text')].map(t => [t, t.getBoundingClientRect()]);
    for (const [t, r] of texts)
      if (r.left < s.left - 0.5 || r.right > s.right + 0.5 || r.top < s.top - 0.5 || r.bottom > s.bottom + 0.5)
        problems.push(`label cut off in ${svg.dataset.chart}: "${t.textContent}" ${r.left}..${r.right}`
                      + ` of ${s.left}..${s.right}`);
    for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++) {
      const [a, b] = [texts[i][1], texts[j][1]];
      if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5)
        problems.push(`labels overlap in ${svg.dataset.chart}: "${texts[i][0].textContent}"`
                      + ` / "${texts[j][0].textContent}"`);
    }
  }
  // Charts drawn at one size and shown at another: a 580-px chart in a 350-px card had 6-px labels.
  for (const svg of document.querySelectorAll('svg[viewBox]')) {
    const shown = svg.getBoundingClientRect().width, drawn = svg.viewBox.baseVal.width;
    if (shown > 0 && shown < drawn * 0.9)
      problems.push(`chart ${svg.dataset.chart} shrunk to ${Math.round(shown)} of ${drawn} px: labels too small`);
  }
  // A number (digits with , . : - / inside, a sign before, % after) must sit on one line.
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n; (n = walker.nextNode());) {
    if (n.parentElement.closest('svg')) continue;
    for (const m of n.textContent.matchAll(/[+\-\u2212]?\d(?:[\d,.:\/-]*\d)?%?/g)) {
      if (m[0].length < 2) continue;
      const r = document.createRange();
      r.setStart(n, m.index);
      r.setEnd(n, m.index + m[0].length);
      const lines = new Set([...r.getClientRects()].filter(b => b.width > 0).map(b => Math.round(b.top)));
      if (lines.size > 1) problems.push(`number broken across lines: "${m[0]}" in ${name(n.parentElement)}`);
    }
  }
  return problems;
})()
"""

# Every shown chart's marks as [key, value] pairs, by chart name (each chart is drawn wide and
# compact and a media query shows one: a hidden form has no client rects).
CHARTS_JS = """
Object.fromEntries([...document.querySelectorAll('svg[data-chart]')].filter(svg => svg.getClientRects().length)
  .map(svg => [svg.dataset.chart,
               [...svg.querySelectorAll('[data-value]')].map(m => [m.dataset.key, m.dataset.value])]))
"""
SHOWN_FORMS_JS = """
[...document.querySelectorAll('svg[data-chart]')].filter(svg => svg.getClientRects().length)
  .map(svg => svg.dataset.form)
"""
KPIS_JS = """
Object.fromEntries([...document.querySelectorAll('[data-kpi]')].map(k => [k.dataset.kpi,
  [k.dataset.current, k.dataset.previous, k.querySelector('.value').textContent,
   k.querySelector('.prev').textContent]]))
"""


def _section_text(page, section: str) -> str:
    return page.evaluate(f"document.getElementById({section!r}).innerText")


def _table(page, css: str) -> list[list[str]]:
    return page.evaluate(
        f"[...document.querySelectorAll({css!r} + ' tr')].map(tr => [...tr.cells].map(c => c.innerText))"
    )


def _exact(value) -> str:
    """A query value as the page's data attributes must carry it (NULL as "")."""
    if value is None:
        return ""
    return str(value.quantize(Decimal("0.01"))) if isinstance(value, Decimal) else str(value)


@pytest.fixture
def loaded(bq_dataset, bigquery_emulator, monkeypatch):
    """Sample events (plus an API-only session), dead letters, engagement rows; views and profile built."""
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.rest)
    for table, rows in (
        ("user_behavior", ROWS + API_ONLY_SESSION_ROWS),
        ("dead_letter", DEAD_LETTERS),
        ("engagement_minutely", ENGAGEMENT),
    ):
        assert bq_dataset.client.insert_rows_json(bq_dataset.table_id(table), rows) == []
    analytics.create_views(bq_dataset.client, bq_dataset.dataset)
    analytics.refresh_profile(bq_dataset.client, bq_dataset.dataset)
    return bq_dataset


def _render(ds, start: dt.date, end: dt.date, name: str) -> Path:
    path = ARTIFACTS / f"{name}.html"
    argv = ["report", "--project", ds.project, "--dataset", ds.dataset, "--start", start.isoformat(),
            "--end", end.isoformat(), "--output", str(path)]  # fmt: skip
    assert main(argv, out=io.StringIO()) == 0
    return path


def _open(chromium, path: Path, name: str, width: int):
    page = chromium.open(path.resolve().as_uri(), width=width, height=900)
    page.screenshot(ARTIFACTS / f"{name}-{width}.png")
    return page


def _queries(ds, start=START, end=END):
    return {n: analytics.run_query(ds.client, n, ds.dataset, start, end) for n in report.REPORT_QUERIES}


def _assert_charts_equal_queries(page, q) -> dict:
    """KPI tiles and every chart's marks carry the query rows' exact values, in the query's order.

    A section whose query has nothing to show must have no chart at all.
    """
    current, previous = q["kpi_summary"]
    kpis = page.evaluate(KPIS_JS)
    for key, _, fmt in report.KPIS:
        assert kpis[key][:3] == [_exact(current[key]), _exact(previous[key]), fmt(current[key])], key
    revenue = q["orders_revenue_by_date"]
    funnel = q["conversion_funnel_daily"]
    stages: dict[str, int] = {}
    for r in q["dead_letters_by_stage"]:
        key = f"{r['pipeline']} / {r['stage']}"
        stages[key] = stages.get(key, 0) + r["dead_letters"]
    expected = {
        "revenue_by_date": [[r["date"].isoformat(), _exact(r["gross_revenue"])] for r in revenue],
        "orders_by_date": [[r["date"].isoformat(), str(r["orders"])] for r in revenue],
        "top_products": [
            [f"{r['product_name'] or '(unknown product)'} #{r['product_id']}", str(r["units_sold"])]
            for r in q["top_products_by_units"]
        ],
        "funnel": [[label, str(sum(r[key] for r in funnel))] for key, label in report.FUNNEL_STEPS],
        "dead_letters_by_stage": [[k, str(v)] for k, v in stages.items()],
        "engagement_coverage": [
            [r["date"].isoformat(), str(r["coverage"])] for r in q["engagement_coverage"] if r["event_minutes"]
        ]
        if any(r["covered_minutes"] for r in q["engagement_coverage"])
        else [],
    }
    charts = page.evaluate(CHARTS_JS)
    assert charts == {name: marks for name, marks in expected.items() if marks}
    # one form of each chart is shown: the compact one on a phone
    width = page.evaluate("document.documentElement.clientWidth")
    assert set(page.evaluate(SHOWN_FORMS_JS)) <= {"compact" if width <= report.PHONE_MAX_PX else "wide"}
    assert len(page.evaluate(SHOWN_FORMS_JS)) == len(charts)
    return charts


def _tile_rows(page) -> int:
    """How many rows the KPI tiles are laid out in."""
    return page.evaluate(
        "new Set([...document.querySelectorAll('#kpis .kpi')].map(k => k.getBoundingClientRect().top)).size"
    )


@WIDTHS
def test_report_in_chromium_fits_and_charts_equal_the_queries(loaded, chromium, width):
    path = _render(loaded, START, END, "report")
    page = _open(chromium, path, "report", width)
    q = _queries(loaded)

    assert page.evaluate(LAYOUT_JS) == []
    # retention, freshness + 9 details, two of which (avg_spend_per_session, avg_spend_per_customer: one row)
    # are name / value lines
    assert page.evaluate("document.querySelectorAll('.scroll').length") == 11
    assert page.evaluate("document.querySelectorAll('.scroll > table.kv').length") == 2
    too_wide = page.evaluate(
        "[...document.querySelectorAll('.scroll')].filter(b => b.scrollWidth > b.clientWidth).map(b => b.scrollWidth)"
    )
    if width == DESKTOP:
        assert too_wide == []  # wide tables wrap at 1280 px: none of their boxes has to scroll
        assert _tile_rows(page) == 1
    else:
        # a phone: the KPI tiles form a grid, and the tables too wide for a card scroll inside it
        # (LAYOUT_JS: the page itself never scrolls sideways), the one-row table does not
        assert 2 <= _tile_rows(page) <= 3
        assert too_wide, "expected some tables wider than a phone"
        spend = page.evaluate("document.querySelector('#avg_spend_per_session + .scroll').scrollWidth")
        assert spend <= page.evaluate("document.querySelector('#avg_spend_per_session + .scroll').clientWidth")
    assert page.requests == [path.resolve().as_uri()]  # self-contained: nothing else is loaded

    charts = _assert_charts_equal_queries(page, q)
    kpis = page.evaluate(KPIS_JS)
    # by hand: o1 45.00 + o2 100.00 + o4 20.00 + o3 37.50 + o7 5.00; previous o0 20.00
    assert kpis["revenue"][2:] == ["207.50", "previous: 20.00 +937.5%"]
    assert kpis["order_conversion"][2:] == ["60.0%", "previous: 100.0% \u221240.0 pp"]  # 3 of 5 sessions; S0 1 of 1
    assert charts["top_products"][0] == ["Mug #102", "6"]  # o1:2 1 + o4:1 4 + o7:1 1
    assert [v for _, v in charts["funnel"]] == ["5", "5", "4", "3"]  # S7 (API only) is not a session
    assert "1 session without clickstream" in _section_text(page, "funnel")
    # the labels people read: full product names, values as units and money
    shown = page.evaluate(
        "[...document.querySelectorAll('[data-chart=top_products] text[data-shown]')]"
        ".filter(t => t.getClientRects().length).map(t => t.textContent)"
    )
    assert shown[0] == "6 units · 30.00"
    health = _section_text(page, "health")
    assert "37.5% of 16 minutes with clickstream events have engagement rows (6 covered)" in health
    assert "2026-11-22 00:30 UTC" in health  # freshness: the newest stream event
    # dead letters: a readable pattern per group and one real error of it
    reasons = page.evaluate(
        "[...document.querySelectorAll('.reasons li')].map(li => [li.dataset.deadLetters, li.innerText])"
    )
    assert reasons[1] == [
        "2",
        "2 dead letters: event_ts \u2026 is before \u2026 (streaming / validate, last 2026-11-21 11:00 UTC)\n"
        "Example: event_ts 1970-01-01T00:00:00.000000Z is before 2000-01-01",
    ]
    assert reasons[3] == [
        "1",
        "1 dead letter: order \u2026 has no lines (hourly / explode, last 2026-11-21 13:00 UTC)\n"
        "Error: order o9 has no lines",
    ]
    retention = _table(page, "#retention")
    assert retention[1:] == [
        ["2026-11-20", "2", "100.0%", "\u2013", "\u2013", "2", "2"],
        ["2026-11-21", "1", "100.0%", "\u2013", "\u2013", "0", "0"],
    ]
    assert [row[1] for row in _table(page, "#details #orders_revenue_by_date + .scroll")[1:]] == ["1", "4"]
    # what an "order" event counts is said where the counts are
    traffic = _table(page, "#details #daily_traffic_by_event + .scroll")
    assert {row[1] for row in traffic[1:]} >= {"order (line)", "return (line)", "view"}
    assert "an order event is one order line" in page.evaluate(
        "document.querySelector('#daily_traffic_by_event + .scroll + .note').innerText"
    )


@WIDTHS
def test_empty_range_says_so_instead_of_drawing_charts(loaded, chromium, width):
    path = _render(loaded, dt.date(2026, 10, 1), dt.date(2026, 10, 7), "report-empty-range")
    page = _open(chromium, path, "report-empty-range", width)
    assert page.evaluate(LAYOUT_JS) == []
    assert page.evaluate("document.querySelectorAll('svg').length") == 0
    for section in ("kpis", "trend", "top-products", "funnel", "retention", "details"):
        assert "No data in this range." in _section_text(page, section), section
    assert page.evaluate("document.querySelectorAll('table').length") == 1  # freshness only
    # the user is told where the data is
    assert "The newest event in user_behavior is from 2026-11-22 00:30 UTC." in _section_text(page, "kpis")
    health = _section_text(page, "health")
    assert "No dead letters in this range." in health and "No data in this range." in health
    # freshness is about all history, so it still shows the feeds' latest times
    assert "2026-11-22 00:30 UTC" in health


@WIDTHS
def test_a_month_of_long_product_names_still_fits(bq_dataset, bigquery_emulator, monkeypatch, chromium, width):
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.rest)
    assert bq_dataset.client.insert_rows_json(bq_dataset.table_id("user_behavior"), month_rows()) == []
    analytics.create_views(bq_dataset.client, bq_dataset.dataset)
    analytics.refresh_profile(bq_dataset.client, bq_dataset.dataset)
    start, end = dt.date(2026, 11, 1), dt.date(2026, 11, 30)
    page = _open(chromium, _render(bq_dataset, start, end, "report-month"), "report-month", width)

    assert page.evaluate(LAYOUT_JS) == []
    q = _queries(bq_dataset, start, end)
    assert len(q["orders_revenue_by_date"]) == 30 and len(q["top_products_by_units"]) == 10
    charts = _assert_charts_equal_queries(page, q)
    assert len(charts["revenue_by_date"]) == 30
    # a long name is shortened on the chart, and kept whole in the bar's tooltip
    labels = page.evaluate(
        "[...document.querySelectorAll('[data-chart=top_products] text[data-label]')]"
        ".filter(t => t.getClientRects().length).map(t => [t.dataset.label, t.textContent])"
    )
    long_names = {f"{name} #{pid}": pid for pid, (name, _, _) in LONG_PRODUCTS.items() if len(name) > 50}
    shortened = [(full, text) for full, text in labels if full in long_names]
    assert len(shortened) >= 2
    for full, text in shortened:  # "Organic Cotton Bath Towel Set of… #208": cut before the id
        name, _, pid = text.rpartition(" #")
        assert name.endswith("\u2026") and full.startswith(name[:-1]) and pid == str(long_names[full]), text
    tooltips = page.evaluate(
        "[...document.querySelectorAll('[data-chart=top_products] rect > title')].map(t => t.textContent)"
    )
    assert all(any(t.startswith(f"\u2068{full}".replace(" #", "\u2069 #\u2068", 1)) for t in tooltips)
               for full, _ in shortened)  # fmt: skip
    # no dead letters or engagement rows were written: said in words, no empty chart
    health = _section_text(page, "health")
    assert "No dead letters in this range." in health
    assert "0.0% of " in health and "No engagement rows for these minutes" in health
    assert "engagement_coverage" not in charts and "dead_letters_by_stage" not in charts


# Where each character of a text is drawn, in DOM order: [left x of char 0, of char 1, ...]
# for every visible element matching the selector whose text contains `needle`.
CHAR_POSITIONS_JS = r"""
((selector, needle) => [...document.querySelectorAll(selector)].filter(el => el.getClientRects().length)
  .filter(el => el.textContent.includes(needle)).map(el => {
    const at = el.textContent.indexOf(needle);
    if (el instanceof SVGTextContentElement)
      return [...needle].map((_, k) => el.getStartPositionOfChar(at + k).x * el.getScreenCTM().a + el.getScreenCTM().e);
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n, seen = 0; (n = walker.nextNode()); seen += n.textContent.length) {
      const i = el.textContent.indexOf(needle) - seen;
      if (i < 0 || i >= n.textContent.length) continue;
      return [...needle].map((_, k) => {
        const r = document.createRange(); r.setStart(n, i + k); r.setEnd(n, i + k + 1);
        return r.getBoundingClientRect().left;
      });
    }
    return null;
  }))
"""


def _in_reading_order(positions) -> bool:
    return positions is not None and all(a < b for a, b in itertools.pairwise(positions))


@WIDTHS
def test_bidi_controls_in_names_cannot_reorder_the_text_beside_them(
    bq_dataset, bigquery_emulator, monkeypatch, chromium, width
):
    """A product name with U+202E (right-to-left override) made the page show "51#" for "#15"."""
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.rest)
    rlo, rli = "\u202e", "\u2067"
    hostile = {"102": f"Mug{rlo} evil", "101": f"Lamp{rli} evil"}
    rows = [{**r, "product_name": hostile.get(str(r["product_id"]), r["product_name"])} for r in ROWS]
    dead = [{**DEAD_LETTERS[0], "error": f"invalid JSON at char 0 {rlo}near 'x'"}]
    for table, table_rows in (("user_behavior", rows), ("dead_letter", dead)):
        assert bq_dataset.client.insert_rows_json(bq_dataset.table_id(table), table_rows) == []
    analytics.create_views(bq_dataset.client, bq_dataset.dataset)
    analytics.refresh_profile(bq_dataset.client, bq_dataset.dataset)
    page = _open(chromium, _render(bq_dataset, START, END, "report-bidi"), "report-bidi", width)
    assert page.evaluate(LAYOUT_JS) == []

    for pid, name in hostile.items():
        # the chart label "<name> #<id>": the id is drawn after the name, its characters left to right
        labels = page.evaluate(f"({CHAR_POSITIONS_JS})('[data-chart=top_products] text[data-label]', {' #' + pid!r})")
        assert len(labels) == 1, (pid, labels)
        assert _in_reading_order(labels[0]), f"#{pid} displayed out of order: {labels[0]}"
        assert page.evaluate(
            f"[...document.querySelectorAll('[data-chart=top_products] text[data-label]')]"
            f".some(t => t.getClientRects().length && t.dataset.label === {name + ' #' + pid!r})"
        )
    # the same in HTML: the text after a hostile error pattern keeps its order
    after = page.evaluate(f"({CHAR_POSITIONS_JS})('.reasons li', '(streaming / parse')")
    assert after and all(_in_reading_order(p) for p in after), after
    # and the control characters are still there, inside their isolates (nothing was stripped)
    assert page.evaluate("[...document.querySelectorAll('.reasons bdi')].some(b => b.textContent.includes('\u202e'))")


BROKEN_PAGE = """<!DOCTYPE html><html><body style="margin:0">
<svg width="300" height="40" data-chart="old_top_products"><text x="40" y="20" text-anchor="end">
A product name far too long for its label column #102</text></svg>
<div style="width:200px; white-space:nowrap">a sentence that cannot wrap and runs out of its box</div>
<div style="height:12px; overflow:hidden">a note<br>whose second line is hidden</div>
<table style="width:1500px"><tr><td>a table wider than the window</td></tr></table>
<svg width="300" height="40" data-chart="crowded"><text x="10" y="20">11-20</text><text x="20" y="20">11-21</text></svg>
<div style="width:40px; overflow-wrap:anywhere">16,892.95</div>
<svg width="580" height="40" viewBox="0 0 580 40" style="width:300px" data-chart="shrunk"><text y="20">x</text></svg>
</body></html>"""


def test_layout_checker_catches_clipped_overflowing_and_overlapping_text(chromium, tmp_path):
    path = tmp_path / "broken.html"
    path.write_text(BROKEN_PAGE)
    problems = chromium.open(path.as_uri(), width=DESKTOP, height=600).evaluate(LAYOUT_JS)
    assert any(p.startswith("page scrolls sideways: 1500") for p in problems)
    assert any(p.startswith("label cut off in old_top_products") for p in problems)  # the bug of issue 15
    assert any(p.startswith('overflows its box: <div> "a sentence that cannot wrap') for p in problems)
    assert any(p.startswith('outside the window: <td> "a table wider') for p in problems)
    assert any(p.startswith("labels overlap in crowded") for p in problems)
    assert any(p.startswith('clipped at the bottom: <div> "a note') for p in problems)
    assert any(p.startswith('number broken across lines: "16,892.95"') for p in problems)
    assert any(p.startswith("chart shrunk shrunk to 300 of 580 px") for p in problems)
