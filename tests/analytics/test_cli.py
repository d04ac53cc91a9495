"""``python -m bigquery_schemas.analytics`` against the emulator: exact numbers in the output."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from bigquery_schemas import analytics
from bigquery_schemas.analytics.__main__ import main
from tests.analytics.sample_data import ROWS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RANGE = ["--start", "2026-11-20", "--end", "2026-11-21"]


@pytest.fixture
def target(bq_dataset, bigquery_emulator, monkeypatch):
    """Sample rows loaded; the CLI finds the emulator through BIGQUERY_EMULATOR_HOST only."""
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.rest)
    assert bq_dataset.client.insert_rows_json(bq_dataset.table_id("user_behavior"), ROWS) == []
    return bq_dataset


def _cli(*argv):
    out = io.StringIO()
    rc = main(list(argv), out=out)
    return rc, out.getvalue()


def _where(ds):
    return ["--project", ds.project, "--dataset", ds.dataset]


def test_create_views_then_run_prints_a_readable_table(target):
    rc, out = _cli("create-views", *_where(target))
    assert (rc, out) == (0, f"created or replaced view {target.table_id('user_behavior_dedup')}\n")

    rc, out = _cli("run", "orders_revenue_by_date", *_where(target), *RANGE)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "date", "orders", "order_lines", "units_sold", "gross_revenue", "return_lines", "units_returned", "refunds",
        "net_revenue", "avg_order_value", "cancelled_orders", "cancelled_revenue",
    ]  # fmt: skip
    assert [line.split() for line in lines[2:]] == [
        ["2026-11-20", "1", "2", "3", "45.00", "1", "1", "20.00", "25.00", "45.00", "0", "0.00"],
        ["2026-11-21", "3", "4", "9", "157.50", "2", "5", "70.00", "87.50", "52.50", "0", "0.00"],
    ]


def test_run_csv_and_json_formats(target, tmp_path):
    _cli("create-views", *_where(target))
    rc, out = _cli("run", "top_products_by_returns", *_where(target), *RANGE, "--format", "csv")
    assert rc == 0
    assert out == (
        "product_id,product_name,category,return_lines,units_returned,units_sold,return_rate,refunds\n"
        "101,Lamp,Home,2,3,2,1.5000,60.00\n"
        "104,Pan,Kitchen,1,3,3,1.0000,30.00\n\n"
    )
    path = tmp_path / "all.json"
    _cli("refresh-profile", *_where(target))  # retention_cohorts reads user_profile
    rc, out = _cli("run", "all", *_where(target), *RANGE, "--limit", "2", "--format", "json", "--output", str(path))
    assert (rc, out) == (0, f"wrote {path}\n")
    doc = json.loads(path.read_text())
    assert doc["top_products_by_units"] == [
        {"product_id": "102", "product_name": "Mug", "category": "Kitchen", "units_sold": 5, "orders": 2,
         "gross_revenue": "25.00"},
        {"product_id": "104", "product_name": "Pan", "category": "Kitchen", "units_sold": 3, "orders": 1,
         "gross_revenue": "30.00"},
    ]  # fmt: skip
    assert doc["conversion_funnel_daily"][1] == {
        "date": "2026-11-21", "sessions": 3, "viewed": 3, "carted": 2, "ordered": 1,
        "view_to_cart": 0.6667, "cart_to_order": 0.5, "funnel_conversion": 0.3333,
        "buying_sessions": 1, "order_conversion": 0.3333, "sessions_without_clickstream": 0,
    }  # fmt: skip
    assert len(doc) == len(analytics.queries()) == 15


def test_run_all_as_csv_writes_one_file_per_query(target, tmp_path):
    _cli("create-views", *_where(target))
    _cli("refresh-profile", *_where(target))
    rc, _ = _cli("run", "all", *_where(target), *RANGE, "--format", "csv", "--output", str(tmp_path / "out"))
    assert rc == 0
    assert len(list((tmp_path / "out").glob("*.csv"))) == 15
    assert (tmp_path / "out" / "unique_visitors.csv").read_text() == (
        "scope,date,visitors,visitors_approx\nday,2026-11-20,3,3\nday,2026-11-21,3,3\nrange,,4,4\n"
    )


def test_refresh_profile_and_report(target, tmp_path):
    _cli("create-views", *_where(target))
    rc, out = _cli("refresh-profile", *_where(target))
    assert (rc, out) == (0, f"rebuilt table {target.table_id('user_profile')}\n")
    assert [(r["user_id"], r["net_spend"]) for r in target.rows("user_profile", order_by="user_id")] == [
        ("1", Decimal("12.50")),
        ("2", Decimal("120.00")),
        ("3", Decimal("0")),
        ("4", Decimal("0")),
    ]
    report = tmp_path / "report.html"
    rc, _ = _cli("report", *_where(target), *RANGE, "--output", str(report))
    assert rc == 0
    html = report.read_text()
    # revenue, orders, top products, funnel (each wide and compact); no dead letters or
    # engagement rows: no chart for them
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="wide"') == 4 and html.count("<svg") == 8
    assert "<script" not in html
    assert "data-kpi='revenue' data-current='202.50'" in html  # 45.00 + 157.50
    assert 'data-key="Mug #102"' in html and ">157.50<" in html  # top product label; revenue table cell


def test_report_before_refresh_profile_says_how_to_build_it(target, tmp_path):
    _cli("create-views", *_where(target))
    report = tmp_path / "report.html"
    rc, _ = _cli("report", *_where(target), *RANGE, "--output", str(report))
    assert rc == 0
    assert (
        f"{target.table_id('user_profile')} has not been built yet: run python -m bigquery_schemas.analytics "
        f"refresh-profile --project {target.project} --dataset {target.dataset}"
    ) in report.read_text()


def test_missing_view_is_a_clear_error(target, capsys):
    rc, _ = _cli("run", "unique_visitors", *_where(target), *RANGE)
    assert rc == 3  # the environment is not ready: a step was skipped, and the line names it
    assert capsys.readouterr().err == (
        f"error: unique_visitors reads {target.table_id('user_behavior_dedup')}, which does not exist yet: run "
        f"'python -m bigquery_schemas.analytics create-views --project {target.project} --dataset "
        f"{target.dataset}' first\n"
    )


def test_missing_user_profile_names_the_command_that_builds_it(target, capsys):
    _cli("create-views", *_where(target))
    rc, _ = _cli("run", "retention_cohorts", *_where(target), *RANGE)
    assert rc == 3
    assert capsys.readouterr().err == (
        f"error: retention_cohorts reads {target.table_id('user_profile')}, which does not exist yet: run "
        f"'python -m bigquery_schemas.analytics refresh-profile --project {target.project} --dataset "
        f"{target.dataset}' first\n"
    )


def test_module_entry_point_in_a_subprocess(target):
    _cli("create-views", *_where(target))
    env = {**os.environ, "NO_GCE_CHECK": "true"}
    listed = subprocess.run(
        [sys.executable, "-m", "bigquery_schemas.analytics", "list"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "unique_visitors            query  @start_date @end_date" in listed.stdout
    run = subprocess.run(
        [sys.executable, "-m", "bigquery_schemas.analytics", "run", "top_products_by_units", *_where(target), *RANGE,
         "--limit", "3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert [line.split() for line in run.stdout.splitlines()[2:]] == [
        ["102", "Mug", "Kitchen", "5", "2", "25.00"],
        ["104", "Pan", "Kitchen", "3", "1", "30.00"],
        ["101", "Lamp", "Home", "2", "1", "40.00"],
    ]
