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
    ]
    no_limit = analytics.query_parameters(analytics.get("unique_visitors"), dt.date(2026, 1, 1), dt.date(2026, 1, 2))
    assert [p.name for p in no_limit] == ["start_date", "end_date"]
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
        *("top_products_by_units", "query", "@start_date", "@end_date", "@limit"),
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
    assert "unknown analytics SQL 'nope'" in capsys.readouterr().err


ROWS = [
    {"date": dt.date(2026, 11, 20), "category": "Home", "units": 3, "revenue": Decimal("140.000000000"), "rate": 1.0},
    {"date": dt.date(2026, 11, 21), "category": None, "units": 1, "revenue": Decimal("7.5"), "rate": 0.3333},
]


def test_format_rows_table_csv_json():
    assert format_rows(ROWS, "table").splitlines() == [
        "date        category  units  revenue  rate  ",
        "----------  --------  -----  -------  ------",
        "2026-11-20  Home      3      140.00   1.0000",
        "2026-11-21            1      7.50     0.3333",
    ]
    assert format_rows(ROWS, "csv") == (
        "date,category,units,revenue,rate\n2026-11-20,Home,3,140.00,1.0000\n2026-11-21,,1,7.50,0.3333\n"
    )
    assert json.loads(format_rows(ROWS, "json")) == [
        {"date": "2026-11-20", "category": "Home", "units": 3, "revenue": "140.00", "rate": 1.0},
        {"date": "2026-11-21", "category": None, "units": 1, "revenue": "7.50", "rate": 0.3333},
    ]
    assert format_rows([], "table") == "(no rows)"


def test_report_is_self_contained_html_with_svg_charts():
    results = {
        "daily_traffic_by_event": [
            {"date": dt.date(2026, 11, 20), "event_name": "view", "events": 3, "users": 2, "sessions": 2},
            {"date": dt.date(2026, 11, 20), "event_name": "order", "events": 2, "users": 1, "sessions": 1},
        ],
        "conversion_funnel_daily": [
            {"date": dt.date(2026, 11, 20), "sessions": 2, "viewed": 2, "carted": 1, "ordered": 1},
        ],
        "top_products_by_units": [
            {"product_id": 102, "product_name": "Mug <b>", "units_sold": 5},
            {"product_id": 105, "product_name": None, "units_sold": 1},
        ],
    }
    html = build_report(results, dt.date(2026, 11, 20), dt.date(2026, 11, 21), "local-ecommerce.ecommerce")
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") == 3
    assert "<script" not in html and "<link" not in html and "src=" not in html
    assert set(re.findall(r"https?://[^\"' ]+", html)) == {"http://www.w3.org/2000/svg"}  # namespace only
    assert "Mug &lt;b&gt; #102" in html and "(unknown) #105" in html  # labels escaped
    assert "<title>2026-11-20 view: 3</title>" in html  # bar tooltips carry the exact numbers
