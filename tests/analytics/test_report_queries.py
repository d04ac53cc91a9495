"""The report's own queries on the BigQuery emulator: KPIs, retention, data quality, pipeline health.

Inputs are tests/analytics/sample_data.py (ROWS, API_ONLY_SESSION_ROWS, DEAD_LETTERS,
ENGAGEMENT); each expected number is worked out by hand from the stories there, the
arithmetic in the comment beside it. Range: 2026-11-20 .. 2026-11-21.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from beam_pipelines.events import dead_letter_row
from bigquery_schemas import analytics
from bigquery_schemas.analytics import report
from tests.analytics.sample_data import API_ONLY_SESSION_ROWS, DEAD_LETTERS, ENGAGEMENT, ROWS

pytestmark = pytest.mark.integration

START, END = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
NOV = {d: dt.date(2026, 11, d) for d in range(17, 24)}


def _ts(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _insert(ds, table, rows):
    assert ds.client.insert_rows_json(ds.table_id(table), rows) == []


@pytest.fixture
def loaded(bq_dataset):
    """Sample events, dead letters and engagement rows, with the dedup view."""
    _insert(bq_dataset, "user_behavior", ROWS)
    _insert(bq_dataset, "dead_letter", DEAD_LETTERS)
    _insert(bq_dataset, "engagement_minutely", ENGAGEMENT)
    analytics.create_views(bq_dataset.client, bq_dataset.dataset)
    return bq_dataset


def _run(ds, name, start=START, end=END):
    return analytics.run_query(ds.client, name, ds.dataset, start, end)


def test_kpi_summary_current_and_previous_period(loaded):
    assert _run(loaded, "kpi_summary") == [
        # orders o1 (45.00), o2 (100.00), o4 (20.00), o3 (37.50); returns o0:1 20.00 + o1:1 40.00 + o3:1 30.00;
        # users 1-4; clickstream sessions S1, S2, S3, S4, S6, with orders S1, S2, S4
        {"period": "current", "first_day": NOV[20], "last_day": NOV[21], "revenue": D("202.50"),
         "refunds": D("90.00"), "net_revenue": D("112.50"), "cancelled_revenue": D("0"), "orders": 4,
         "avg_order_value": D("50.63"),
         "visitors": 4, "sessions": 5, "buying_sessions": 3, "order_conversion": 0.6},
        # two days before: S0 on 11-19 (view, order o0 20.00)
        {"period": "previous", "first_day": NOV[18], "last_day": NOV[19], "revenue": D("20.00"),
         "refunds": D("0"), "net_revenue": D("20.00"), "cancelled_revenue": D("0"), "orders": 1,
         "avg_order_value": D("20.00"),
         "visitors": 1, "sessions": 1, "buying_sessions": 1, "order_conversion": 1.0},
    ]  # fmt: skip
    # one day: the previous period is the one day before; an empty period has zeros and NULL ratios
    rows = _run(loaded, "kpi_summary", start=NOV[18], end=NOV[18])
    assert [(r["period"], r["first_day"], r["orders"], r["avg_order_value"], r["order_conversion"]) for r in rows] == [
        ("current", NOV[18], 0, None, None),
        ("previous", NOV[17], 0, None, None),
    ]


def test_api_only_session_is_counted_apart_from_the_funnel(loaded):
    _insert(loaded, "user_behavior", API_ONLY_SESSION_ROWS)
    funnel = _run(loaded, "conversion_funnel_daily")
    # S7 has only an API order: not a session without a view, but a session without clickstream
    assert [(r["sessions"], r["viewed"], r["ordered"], r["sessions_without_clickstream"]) for r in funnel] == [
        (2, 2, 2, 0),
        (3, 3, 1, 1),
    ]
    current = _run(loaded, "kpi_summary")[0]
    # o7 is revenue and an order (207.50 / 5), but S7 is no session: conversion stays 3 / 5
    assert (current["revenue"], current["orders"], current["avg_order_value"]) == (D("207.50"), 5, D("41.50"))
    assert (current["sessions"], current["buying_sessions"], current["order_conversion"]) == (5, 3, 0.6)


def test_retention_cohorts_from_user_profile(loaded):
    with pytest.raises(analytics.MissingTableError, match="refresh-profile --project local-ecommerce"):
        _run(loaded, "retention_cohorts")
    analytics.refresh_profile(loaded.client, loaded.dataset)
    # user 4 was first seen on 11-19 (outside); data through 11-22 (user 4's last view), so
    # day 7 and day 30 of both cohorts are still in the future (NULL rates)
    assert _run(loaded, "retention_cohorts") == [
        # users 1 (last 11-21) and 2 (last 11-21), both with 2 orders
        {"cohort_date": NOV[20], "new_users": 2, "retained_d1": 2, "retained_d7": 0, "retained_d30": 0,
         "rate_d1": 1.0, "rate_d7": None, "rate_d30": None, "buyers": 2, "repeat_buyers": 2, "data_through": NOV[22]},
        # user 3 (last seen 11-22 00:02), no orders
        {"cohort_date": NOV[21], "new_users": 1, "retained_d1": 1, "retained_d7": 0, "retained_d30": 0,
         "rate_d1": 1.0, "rate_d7": None, "rate_d30": None, "buyers": 0, "repeat_buyers": 0, "data_through": NOV[22]},
    ]  # fmt: skip


def test_dead_letters_grouped_by_stage_and_normalised_reason(loaded):
    # Values masked as "…" (quoted values, and every word holding a digit: numbers, times,
    # dates, ids): a pattern a reader can read, with one real error of the group beside it.
    assert _run(loaded, "dead_letters_by_stage") == [
        {"pipeline": "streaming", "stage": "parse", "reason": "invalid JSON at char …", "dead_letters": 2,
         "data_dead_letters": 2, "example_error": "invalid JSON at char 0",
         "first_insert_ts": _ts("2026-11-20T10:00:05Z"), "last_insert_ts": _ts("2026-11-21T09:00:05Z")},
        {"pipeline": "streaming", "stage": "validate", "reason": "event_ts … is before …", "dead_letters": 2,
         "data_dead_letters": 2, "example_error": "event_ts 1970-01-01T00:00:00.000000Z is before 2000-01-01",
         "first_insert_ts": _ts("2026-11-20T11:00:00Z"), "last_insert_ts": _ts("2026-11-21T11:00:00Z")},
        {"pipeline": "streaming", "stage": "validate", "reason": "price must be a number, got '…'",
         "dead_letters": 2, "data_dead_letters": 2, "example_error": "price must be a number, got 'abc'",
         "first_insert_ts": _ts("2026-11-21T09:30:00Z"), "last_insert_ts": _ts("2026-11-21T10:30:00Z")},
        {"pipeline": "hourly", "stage": "explode", "reason": "order … has no lines", "dead_letters": 1,
         "data_dead_letters": 1, "example_error": "order o9 has no lines",
         "first_insert_ts": _ts("2026-11-21T13:00:00Z"), "last_insert_ts": _ts("2026-11-21T13:00:00Z")},
    ]  # fmt: skip
    # "missing user_id" was written on 11-22; nothing before the range
    assert _run(loaded, "dead_letters_by_stage", start=NOV[17], end=NOV[19]) == []


def _backfill_dead_letters():
    """A backfill run on 12-05 of last month's hours, and one dead letter the stream wrote in the range."""
    order = '{"order_id": "o77", "order_ts": "2026-11-20T23:30:00.000000Z", "lines": []}'
    lake_file = '{"file": "gs://lake/raw/orders/dt=2026-11-21/hour=22/orders_x.jsonl"}'
    return [
        # data 11-20 23:30 UTC = 11-21 00:30 in Berlin (CET)
        dead_letter_row(pipeline="hourly", stage="explode", error="order o77 has no lines", payload=order,
                        job_name="backfill-1", insert_ts="2026-12-05T08:00:00Z"),
        # no time of its own: the lake hour of its file, 11-21 22:00 UTC = 23:00 in Berlin
        {**dead_letter_row(pipeline="hourly", stage="parse", error="lake order line is not JSON: x",
                           payload="{oops", job_name="backfill-1", insert_ts="2026-12-05T08:00:01Z"),
         "attributes": lake_file},
        # event_ts known: 11-19, outside both ranges below
        dead_letter_row(pipeline="hourly", stage="window", error="event_ts outside the window", payload="{}",
                        event_ts="2026-11-19T12:00:00Z", job_name="backfill-1", insert_ts="2026-12-05T08:00:02Z"),
        # written in the range, no time of its own: its write time
        dead_letter_row(pipeline="streaming", stage="parse", error="invalid JSON at char 3", payload="{",
                        insert_ts="2026-11-21T12:00:00Z"),
    ]  # fmt: skip


def test_dead_letters_of_the_data_in_the_range_include_a_later_backfills(bq_dataset):
    _insert(bq_dataset, "dead_letter", _backfill_dead_letters())
    summary = lambda rows: {(r["stage"], r["dead_letters"], r["data_dead_letters"]) for r in rows}  # noqa: E731
    # Written in 11-20..21: only the stream's; of the data in it: the backfill's order and lake line too.
    assert summary(_run(bq_dataset, "dead_letters_by_stage")) == {("parse", 1, 1), ("explode", 0, 1), ("parse", 0, 1)}
    # In Berlin, 11-21 alone holds all three (00:30 and 23:00 local; the stream's 13:00).
    berlin = analytics.run_query(
        bq_dataset.client, "dead_letters_by_stage", bq_dataset.dataset, NOV[21], NOV[21], time_zone="Europe/Berlin"
    )
    assert summary(berlin) == {("parse", 1, 1), ("explode", 0, 1), ("parse", 0, 1)}
    assert summary(_run(bq_dataset, "dead_letters_by_stage", start=NOV[20], end=NOV[20])) == {("explode", 0, 1)}
    # The report says it: nothing written for the backfilled days, and what their runs rejected.
    analytics.create_views(bq_dataset.client, bq_dataset.dataset)
    page = report.generate_report(bq_dataset.client, bq_dataset.dataset, NOV[20], NOV[20])
    assert "No dead letters were written in this range." in page
    assert "Dead letters of the data in this range" in page
    assert "data-data-dead-letters='1'" in page and "order … has no lines" in page


def test_pipeline_freshness_per_feed(loaded):
    in_range = {s: sum(1 for r in ROWS if r["source"] == s and r["date"] in ("2026-11-20", "2026-11-21"))
                for s in ("stream", "api")}  # fmt: skip
    assert in_range == {"stream": 22, "api": 6}
    assert _run(loaded, "pipeline_freshness") == [
        # newest stream row: e-5v1 (11-22 00:30, ingested a second later)
        {"feed": "stream", "latest_event_ts": _ts("2026-11-22T00:30:00Z"),
         "latest_ingest_ts": _ts("2026-11-22T00:30:01Z"), "rows_in_range": 22},
        # newest API row: the return o1:1 (18:00, loaded at 19:00)
        {"feed": "api", "latest_event_ts": _ts("2026-11-21T18:00:00Z"),
         "latest_ingest_ts": _ts("2026-11-21T19:00:00Z"), "rows_in_range": 6},
        # window 11-22 00:02 ends 00:03, emitted 5 s later; 8 of 9 windows start in range
        {"feed": "engagement", "latest_event_ts": _ts("2026-11-22T00:03:00Z"),
         "latest_ingest_ts": _ts("2026-11-22T00:03:05Z"), "rows_in_range": 8},
        # dead letters carry no event time here; 7 of 8 written in range
        {"feed": "dead_letter", "latest_event_ts": None, "latest_ingest_ts": _ts("2026-11-22T01:00:00Z"),
         "rows_in_range": 7},
    ]  # fmt: skip


def test_pipeline_freshness_lists_empty_feeds(bq_dataset):
    analytics.create_views(bq_dataset.client, bq_dataset.dataset)
    rows = _run(bq_dataset, "pipeline_freshness")
    assert [(r["feed"], r["latest_ingest_ts"], r["rows_in_range"]) for r in rows] == [
        ("stream", None, 0),
        ("api", None, 0),
        ("engagement", None, 0),
        ("dead_letter", None, 0),
    ]


def test_engagement_coverage_per_day(loaded):
    assert _run(loaded, "engagement_coverage", end=NOV[22]) == [
        # stream minutes 10:00 10:02 10:05 10:10 23:50 23:52 23:55; windows for the first four
        {"date": NOV[20], "event_minutes": 7, "covered_minutes": 4, "coverage": 0.5714, "engagement_minutes": 4},
        # 09:00 09:01 09:02 15:00 15:01 15:05 18:00 20:00 23:58; windows 09:00 09:01 (+ 11:00 without events)
        {"date": NOV[21], "event_minutes": 9, "covered_minutes": 2, "coverage": 0.2222, "engagement_minutes": 3},
        # e-6c1 00:02 (window), e-5v1 00:30 (none)
        {"date": NOV[22], "event_minutes": 2, "covered_minutes": 1, "coverage": 0.5, "engagement_minutes": 1},
    ]  # fmt: skip
