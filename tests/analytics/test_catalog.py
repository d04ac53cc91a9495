"""The SQL files' contract, without a BigQuery: headers, parameters, style, name safety, output."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from decimal import Decimal

import pytest

from bigquery_schemas import analytics
from bigquery_schemas.analytics.__main__ import main
from bigquery_schemas.analytics.formatting import format_rows
from bigquery_schemas.analytics.report import build_report

EXPECTED_QUERIES = [
    "avg_spend_per_customer",
    "avg_spend_per_session",
    "category_summary",
    "conversion_funnel_daily",
    "daily_traffic_by_event",
    "dead_letters_by_stage",
    "engagement_coverage",
    "kpi_summary",
    "orders_revenue_by_date",
    "pipeline_freshness",
    "retention_cohorts",
    "top_products_by_returns",
    "top_products_by_units",
    "top_products_by_wishlists",
    "unique_visitors",
]
# Business questions count real-world events, so they read the dedup view only; the
# report's health and retention queries read what the jobs and refresh-profile wrote.
OTHER_INPUTS = {
    "dead_letters_by_stage": ("dead_letter",),
    "engagement_coverage": ("engagement_minutely", "user_behavior"),
    "pipeline_freshness": ("dead_letter", "engagement_minutely", "user_behavior"),
    "retention_cohorts": ("user_profile",),
}
KEYWORDS = [
    "select", "from", "where", "with", "as", "group", "by", "order", "limit", "join", "left", "cross", "on",
    "and", "or", "not", "in", "is", "null", "between", "case", "when", "then", "else", "end", "union", "all",
    "distinct", "create", "replace", "view", "table", "options", "cluster", "partition", "over", "having",
    "desc", "except", "unnest", "cast", "if", "count", "sum", "min", "max", "avg", "round", "coalesce",
]  # fmt: skip
_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'")


def _code(entry: analytics.AnalyticsSql) -> str:
    return _STRINGS.sub("''", entry.body)


def test_catalog_kinds_and_names():
    kinds = {e.name: e.kind for e in analytics.catalog().values()}
    assert kinds == {
        **dict.fromkeys(EXPECTED_QUERIES, "query"),
        "user_behavior_dedup": "view",
        "user_profile": "table",
    }
    assert [q.name for q in analytics.queries()] == EXPECTED_QUERIES


@pytest.mark.parametrize("name", sorted(analytics.catalog()))
def test_header_documents_question_parameters_definitions(name):
    entry = analytics.get(name)
    assert entry.description.endswith(".")
    for section in ("Question:", "Parameters:", "Definitions:"):
        assert section in entry.header, f"{name}.sql header lacks {section}"
    # what the header declares is exactly what the statement uses, with the right types
    assert dict(entry.declared_parameters) == {p: analytics.PARAMETER_TYPES[p] for p in entry.parameters}


@pytest.mark.parametrize("name", EXPECTED_QUERIES)
def test_queries_are_date_ranged_and_read_only_the_dedup_view(name):
    entry = analytics.get(name)
    assert entry.parameters[:2] == ("start_date", "end_date")
    assert ("limit" in entry.parameters) == name.startswith("top_products")
    assert set(re.findall(r"`([^`]+)`", entry.body)) == {
        f"{{project}}.{{dataset}}.{t}" for t in OTHER_INPUTS.get(name, ("user_behavior_dedup",))
    }
    assert entry.inputs == OTHER_INPUTS.get(name, ("user_behavior_dedup",))


@pytest.mark.parametrize("name", sorted(analytics.catalog()))
def test_style_lower_case_keywords_ctes_and_final(name):
    entry = analytics.get(name)
    code = _code(entry)
    for kw in KEYWORDS:
        assert not re.search(rf"\b{kw.upper()}\b", code), f"{name}.sql: upper-case {kw.upper()}"
    assert "--" not in code, "comments belong in the header (the emulator miscounts @names in comments)"
    assert re.search(r"^with \w+ as \($", code, re.M), "starts its query with a CTE per input"
    assert re.search(r"^final as \($", code, re.M), "has a final CTE"
    assert re.search(r"^select \*\s+from final\b", code, re.M), "selects from final"


def test_render_substitutes_names_only_after_validation():
    sql = analytics.get("top_products_by_units").render("my-analytics-prod", "ecommerce_eu")
    assert "`my-analytics-prod.ecommerce_eu.user_behavior_dedup`" in sql
    assert "{project}" not in sql and "{dataset}" not in sql
    assert "@start_date" in sql  # values stay query parameters
    assert analytics.render("`{project}.{dataset}.t`", "example.com:my-proj", "d") == "`example.com:my-proj.d.t`"
    for project, dataset in [
        ("my-proj`; drop table x; --", "ecommerce"),
        ("my-analytics-prod", "ecommerce.user_behavior`"),
        ("My_Project", "ecommerce"),
        ("", "ecommerce"),
        ("my-analytics-prod", ""),
    ]:
        with pytest.raises(ValueError, match="invalid"):
            analytics.render("select 1", project, dataset)


def test_query_parameters_are_typed_and_checked():
    entry = analytics.get("top_products_by_units")
    params = analytics.query_parameters(entry, dt.date(2026, 11, 20), dt.date(2026, 11, 21))
    assert [(p.name, p.type_, p.value) for p in params] == [
        ("start_date", "DATE", dt.date(2026, 11, 20)),
        ("end_date", "DATE", dt.date(2026, 11, 21)),
        ("limit", "INT64", analytics.DEFAULT_LIMIT),
        ("time_zone", "STRING", "UTC"),
    ]
    no_limit = analytics.query_parameters(
        analytics.get("unique_visitors"), dt.date(2026, 1, 1), dt.date(2026, 1, 2), time_zone=" Europe/Berlin "
    )
    assert [(p.name, p.value) for p in no_limit][2:] == [("time_zone", "Europe/Berlin")]
    with pytest.raises(ValueError, match="time zone 'CET-ish' is not an IANA time zone name"):
        analytics.query_parameters(entry, dt.date(2026, 11, 20), dt.date(2026, 11, 21), time_zone="CET-ish")
    with pytest.raises(ValueError, match="after end date"):
        analytics.query_parameters(entry, dt.date(2026, 11, 22), dt.date(2026, 11, 21))
    with pytest.raises(ValueError, match="needs @end_date"):
        analytics.query_parameters(entry, dt.date(2026, 11, 22), None)
    with pytest.raises(ValueError, match="unknown analytics SQL"):
        analytics.get("top_products")


def test_cli_list_prints_each_file_with_its_description():
    out = io.StringIO()
    assert main(["list"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["name", "kind", "parameters", "description"]
    by_name = {line.split()[0]: line for line in lines[2:]}
    assert set(by_name) == set(analytics.catalog())
    assert by_name["top_products_by_units"].split() == [
        *("top_products_by_units", "query", "@start_date", "@end_date", "@limit", "@time_zone"),
        *["Top", "products", "by", "units", "sold."],
    ]
    assert "view" in by_name["user_behavior_dedup"].split()
    assert "Table user_profile: one behaviour profile per user" in by_name["user_profile"]


def test_cli_rejects_bad_dates_and_unknown_queries(capsys):
    with pytest.raises(SystemExit):
        main(["run", "all", "--project", "p-12345", "--dataset", "d", "--start", "2026-13-01", "--end", "2026-11-21"])
    assert "expected a date YYYY-MM-DD" in capsys.readouterr().err
    rc = main(
        [
            "run",
            "nope",
            "--project",
            "local-ecommerce",
            "--dataset",
            "d",
            "--start",
            "2026-11-20",
            "--end",
            "2026-11-21",
        ]
    )
    assert rc == 2
    assert capsys.readouterr().err == (
        "error: unknown query 'nope'; 'python -m bigquery_schemas.analytics list' shows them all\n"
    )


ROWS = [
    {"date": dt.date(2026, 11, 20), "category": "Home", "units": 3, "revenue": Decimal("140.000000000"),
     "return_rate": 1.0, "avg_spend": 220.71},
    {"date": dt.date(2026, 11, 21), "category": None, "units": 1, "revenue": Decimal("7.5"),
     "return_rate": 0.3333, "avg_spend": 0.1 + 0.2},
]  # fmt: skip


def test_format_rows_table_csv_json():
    # Rates (named in RATE_COLUMNS) keep 4 decimals; any other FLOAT64 is money the emulator
    # returns as FLOAT64 (AVG(NUMERIC)): 2 decimals like NUMERIC, never "220.7100".
    assert format_rows(ROWS, "table").splitlines() == [
        "date        category  units  revenue  return_rate  avg_spend",
        "----------  --------  -----  -------  -----------  ---------",
        "2026-11-20  Home      3      140.00   1.0000       220.71   ",
        "2026-11-21            1      7.50     0.3333       0.30     ",
    ]
    assert format_rows(ROWS, "csv") == (
        "date,category,units,revenue,return_rate,avg_spend\n"
        "2026-11-20,Home,3,140.00,1.0000,220.71\n2026-11-21,,1,7.50,0.3333,0.30\n"
    )
    assert json.loads(format_rows(ROWS, "json")) == [
        {"date": "2026-11-20", "category": "Home", "units": 3, "revenue": "140.00", "return_rate": 1.0,
         "avg_spend": "220.71"},
        {"date": "2026-11-21", "category": None, "units": 1, "revenue": "7.50", "return_rate": 0.3333,
         "avg_spend": "0.30"},
    ]  # fmt: skip
    assert format_rows([], "table") == "(no rows)"


def _report_results(**overrides):
    """Rows for every report query: one day, one product, nothing else."""
    day = dt.date(2026, 11, 20)
    kpi = {"revenue": Decimal("1234.5"), "refunds": Decimal("0"), "net_revenue": Decimal("1234.5"),
           "cancelled_revenue": Decimal("12.5"), "orders": 2,
           "avg_order_value": Decimal("617.25"), "visitors": 3, "sessions": 4, "buying_sessions": 1,
           "order_conversion": 0.25}  # fmt: skip
    results = {
        "kpi_summary": [
            {"period": "current", "first_day": day, "last_day": day, **kpi},
            {
                "period": "previous",
                "first_day": day - dt.timedelta(days=1),
                "last_day": day - dt.timedelta(days=1),
                **kpi,
                "revenue": Decimal("987.60"),
                "order_conversion": 0.5,
            },
        ],
        "orders_revenue_by_date": [{"date": day, "orders": 2, "gross_revenue": Decimal("1234.5")}],
        "top_products_by_units": [
            {"product_id": "102", "product_name": "Mug <b>", "units_sold": 5, "gross_revenue": Decimal("25")},
            {"product_id": "105", "product_name": None, "units_sold": 1, "gross_revenue": Decimal("7.5")},
        ],
        "conversion_funnel_daily": [
            {
                "date": day,
                "sessions": 4,
                "viewed": 4,
                "carted": 2,
                "ordered": 1,
                "buying_sessions": 1,
                "sessions_without_clickstream": 2,
            }
        ],
        "retention_cohorts": [],
        "dead_letters_by_stage": [],
        "pipeline_freshness": [
            {"feed": "stream", "latest_event_ts": None, "latest_ingest_ts": None, "rows_in_range": 0}
        ],
        "engagement_coverage": [
            {"date": day, "event_minutes": 0, "covered_minutes": 0, "coverage": None, "engagement_minutes": 0}
        ],
        "category_summary": [{"category": "Home", "return_rate": 0.375, "net_revenue": Decimal("80")}],
    }
    results.update(overrides)
    return results


ISO = '<tspan style="unicode-bidi: isolate">'  # a bidi isolate in SVG text


def test_report_is_self_contained_html_with_formatted_numbers():
    html = build_report(_report_results(), dt.date(2026, 11, 20), dt.date(2026, 11, 20), "local-ecommerce.ecommerce")
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html and "<link" not in html and "src=" not in html and "@import" not in html
    assert set(re.findall(r"https?://[^\"' ]+", html)) == {"http://www.w3.org/2000/svg"}  # namespace only
    # KPI tiles: money with separators, rates as %, deltas against the previous period
    assert "data-kpi='revenue' data-current='1234.50' data-previous='987.60'" in html
    assert "<div class='value'>1,234.50</div>" in html and "+25.0%" in html
    assert "<div class='value'>25.0%</div>" in html and "\u221225.0 pp" in html
    # labels escaped, isolated from the id after them, readable; the unknown product named as such
    assert (
        '<tspan style="unicode-bidi: isolate">Mug &lt;b&gt;</tspan> #<tspan style="unicode-bidi: isolate">102</tspan>'
        in html
    )
    assert f"{ISO}(unknown product)</tspan> #{ISO}105</tspan>" in html
    assert "5 units · 25.00" in html and "1 unit · 7.50" in html
    # the funnel leaves API-only sessions out and says so
    assert "data-sessions-without-clickstream='2'>2 sessions without clickstream" in html
    # rates in tables as %, empty sections in words (no chart for them)
    assert ">37.5%<" in html and ">0.375<" not in html
    assert html.count("No data in this range.") == 3  # retention, engagement coverage, spend (no spend rows here)
    assert "No dead letters in this range." in html
    # revenue, orders, top products, funnel: each drawn wide and compact, with the same marks
    assert html.count('class="wide"') == 4 and html.count('class="compact"') == 4
    marks = re.findall(r'<svg [^>]*class="(\w+)" data-chart="(\w+)".*?</svg>', html)
    assert sorted(marks) == sorted({(f, c) for f, c in marks})  # one of each form per chart
    for chart in ("revenue_by_date", "orders_by_date", "top_products", "funnel"):
        wide, compact = (
            re.findall(
                r'data-key="([^"]*)" data-value="([^"]*)"',
                re.search(f'class="{form}" data-chart="{chart}".*?</svg>', html).group(0),
            )
            for form in ("wide", "compact")
        )
        assert wide == compact and wide, chart


def test_report_names_the_command_for_a_missing_user_profile():
    results = _report_results()
    del results["retention_cohorts"]
    missing = {"retention_cohorts": "p.d.user_profile has not been built yet: run python -m ... refresh-profile"}
    html = build_report(results, dt.date(2026, 11, 20), dt.date(2026, 11, 20), "p.d", missing)
    section = html[html.index("<section id='retention'>") :]
    assert section.startswith(
        "<section id='retention'><h2>Retention of new users</h2><p class='empty'>p.d.user_profile has not been "
        "built yet: run python -m ... refresh-profile</p></section>"
    )


def test_long_labels_are_shortened_to_fit_and_kept_whole_in_the_tooltip():
    name = "Noise-Cancelling Over-Ear Wireless Headphones (2026 Edition, Midnight Blue)"
    results = _report_results(
        top_products_by_units=[{"product_id": "203", "product_name": name, "units_sold": 3, "gross_revenue": 537}]
    )
    html = build_report(results, dt.date(2026, 11, 20), dt.date(2026, 11, 20), "p.d")
    labels = re.findall(r'data-label="Noise[^"]*">(.*?)</text>', html)
    wide, compact = (re.sub("<[^>]+>", "", label) for label in labels)
    assert wide == "Noise-Cancelling Over-Ear Wi\u2026 #203" and len(wide) == 34
    assert compact == "Noise-Cancelling Over-Ear Wireless Headp\u2026 #203"  # a phone line holds 46 characters
    assert f"<title>\u2068{name}\u2069 #\u2068203\u2069: 3 units · 537.00</title>" in html


def test_text_from_the_data_is_isolated_and_its_bidi_controls_stay_inside():
    """A name with U+202E (right-to-left override) must not turn the "#15" after it into "51#"."""
    spoof = "Lamp\u202e\u2067evil"
    results = _report_results(
        top_products_by_units=[{"product_id": "15", "product_name": spoof, "units_sold": 1, "gross_revenue": 5}],
        category_summary=[{"category": spoof, "return_rate": 0.5, "net_revenue": Decimal("1")}],
    )
    html = build_report(results, dt.date(2026, 11, 20), dt.date(2026, 11, 20), "p.d")
    assert html.count(f"{ISO}{spoof}</tspan> #{ISO}15</tspan></text>") == 2  # wide, compact
    assert f"<td class='t'><bdi>{spoof}</bdi></td>" in html
    assert "<title>\u2068Lampevil\u2069 #\u206815\u2069: 1 unit · 5.00</title>" in html  # no element in a tooltip
    assert f'data-key="{spoof} #15"' in html  # the exact value stays in the data attribute
