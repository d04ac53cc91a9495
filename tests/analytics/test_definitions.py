"""The analytics SQL against an independent Python computation, on data shaped like real data.

Every figure of the revenue, session and funnel queries is compared with
:mod:`tests.analytics.reference` (the header definitions, written again in Python) over
the same rows: the named edge cases of :func:`shaped_data.story` and seeded random
worlds. Then the cross-query promises: one day's revenue is the same in every query and
in the HTML report, and the funnel's sessions and buying sessions add up to the KPIs'.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from bigquery_schemas import analytics
from bigquery_schemas.analytics import report
from tests.analytics import reference, shaped_data

pytestmark = pytest.mark.integration

FIRST = shaped_data.DAY0.date() + dt.timedelta(days=1)
LAST = FIRST + dt.timedelta(days=shaped_data.RANGE_DAYS - 1)
DAYS = [FIRST + dt.timedelta(days=i) for i in range(shaped_data.RANGE_DAYS)]
RANGES = [(FIRST, LAST), *((d, d) for d in DAYS)]
# The emulator computes AVG(NUMERIC) in FLOAT64 (test_emulator_divergences.py): a cent.
FLOAT_AVERAGES = {"avg_user_spend_per_session"}


def _load(ds, rows, orders):
    client = ds.client
    assert client.insert_rows_json(ds.table_id("user_behavior"), rows) == []
    if orders:
        assert client.insert_rows_json(ds.table_id("orders"), orders) == []
    analytics.create_views(client, ds.dataset)
    return ds


def _run(ds, name, start, end, limit=None, time_zone="UTC"):
    return analytics.run_query(ds.client, name, ds.dataset, start, end, limit, time_zone=time_zone)


def _same(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for column, want in expected.items():
        got = actual[column]
        if column in FLOAT_AVERAGES and got is not None and want is not None:
            assert abs(Decimal(str(got)) - want) <= Decimal("0.01"), (column, got, want)
        else:
            assert got == want, (column, got, want)


def _compare(ds, ev, start, end, time_zone):
    for name, expected in (
        ("orders_revenue_by_date", reference.orders_revenue_by_date(ev, start, end)),
        ("conversion_funnel_daily", reference.conversion_funnel_daily(ev, start, end)),
        ("kpi_summary", reference.kpi_summary(ev, start, end)),
        ("category_summary", reference.category_summary(ev, start, end)),
        ("top_products_by_units", reference.top_products_by_units(ev, start, end, 100)),
        ("avg_spend_per_session", [reference.avg_spend_per_session(ev, start, end)]),
        ("avg_spend_per_customer", [reference.avg_spend_per_customer(ev, start, end)]),
    ):
        rows = _run(ds, name, start, end, limit=100, time_zone=time_zone)
        assert len(rows) == len(expected), name
        for got, want in zip(rows, expected, strict=True):
            _same(got, want)


WORLDS = {"story": shaped_data.story, "random-7": lambda: shaped_data.generated(7),
          "random-2026": lambda: shaped_data.generated(2026)}  # fmt: skip


# America/New_York moved to summer time on 2026-03-08 (the data's first day), 07:00 UTC:
# its days then start at 04:00 UTC, not 05:00, so a fixed offset would date events wrongly.
TIME_ZONES = ["UTC", "America/New_York"]


@pytest.mark.parametrize("time_zone", TIME_ZONES)
@pytest.mark.parametrize("world", list(WORLDS))
def test_every_figure_matches_an_independent_computation(bq_dataset, world, time_zone):
    rows, orders = WORLDS[world]()
    ds = _load(bq_dataset, rows, orders)
    ev = reference.Events(rows, orders, ZoneInfo(time_zone))
    assert ds.count("user_behavior_dedup") == len(ev.rows)
    for start, end in RANGES:
        _compare(ds, ev, start, end, time_zone)


def test_local_days_differ_from_utc_days_in_the_data():
    """The zone test means something: some events fall on another date in New York than in UTC."""
    rows, orders = shaped_data.generated(7)
    utc, local = reference.Events(rows, orders), reference.Events(rows, orders, ZoneInfo("America/New_York"))
    moved = [r for r in utc.rows if utc.day(r) != local.day(r) and FIRST <= local.day(r) <= LAST]
    assert len(moved) >= 10
    assert any(r["event_name"] == "order" for r in moved)


@pytest.mark.parametrize("world", list(WORLDS))
def test_a_days_revenue_is_the_same_in_every_query_and_the_report(bq_dataset, world):
    ds = _load(bq_dataset, *WORLDS[world]())
    by_date = {r["date"]: r for r in _run(ds, "orders_revenue_by_date", FIRST, LAST)}
    for day in DAYS:
        spend = _run(ds, "avg_spend_per_session", day, day)[0]
        current = _run(ds, "kpi_summary", day, day)[0]
        assert by_date[day]["gross_revenue"] == spend["gross_revenue"] == current["revenue"]
        assert by_date[day]["refunds"] == spend["refunds"] == current["refunds"]
        assert by_date[day]["cancelled_revenue"] == current["cancelled_revenue"]
        assert spend["net_revenue"] == spend["session_net_spend"] + spend["net_revenue_without_session"]
    # the range is the sum of its days, in every query
    spend = _run(ds, "avg_spend_per_session", FIRST, LAST)[0]
    kpis = _run(ds, "kpi_summary", FIRST, LAST)
    total = sum((r["gross_revenue"] for r in by_date.values()), Decimal(0))
    assert total == spend["gross_revenue"] == kpis[0]["revenue"]
    # the funnel adds up to the key figures, under the same name and definition
    funnel = _run(ds, "conversion_funnel_daily", FIRST, LAST)
    assert sum(r["sessions"] for r in funnel) == kpis[0]["sessions"]
    assert sum(r["buying_sessions"] for r in funnel) == kpis[0]["buying_sessions"]
    # the report shows the same figures
    page = report.generate_report(ds.client, ds.dataset, FIRST, LAST)
    tile = re.search(r"data-kpi='revenue' data-current='([^']*)'", page).group(1)
    assert Decimal(tile) == total
    buying = re.search(r"data-buying-sessions='(\d+)'", page).group(1)
    assert int(buying) == kpis[0]["buying_sessions"]


def test_the_named_edge_cases(bq_dataset):
    """The story's edges, spelled out (the reference agrees: see the test above)."""
    ds = _load(bq_dataset, *shaped_data.story())
    day1, day2, day3 = DAYS
    # shared session: all three users of S-shared count, also "zz-tail" who only viewed
    # there and "10", the smallest id as a string, who did not buy
    assert _run(ds, "avg_spend_per_session", day1, day1)[0]["users"] == 4  # 10, 9, zz-tail, hex (S-midnight)
    # the midnight session's order counts on day 2 (its own date), in the spend too
    spend2 = _run(ds, "avg_spend_per_session", day2, day2)[0]
    assert spend2["gross_revenue"] == Decimal("120.00") + 3 * Decimal("4.25") + 2 * Decimal("4.25") + Decimal("10.50")
    # the cancelled order (placed, then cancelled) is out of revenue and in its own column
    revenue2 = next(r for r in _run(ds, "orders_revenue_by_date", day2, day2))
    assert (revenue2["cancelled_orders"], revenue2["cancelled_revenue"]) == (1, Decimal("9.99"))
    assert revenue2["gross_revenue"] == spend2["gross_revenue"]
    # the API-only session is no funnel session, but it is a session that spent money
    funnel2 = _run(ds, "conversion_funnel_daily", day2, day2)[0]
    assert (funnel2["sessions"], funnel2["sessions_without_clickstream"]) == (1, 1)  # S-cancel; S-api-only
    assert spend2["sessions"] == 3  # S-midnight (its order), S-cancel, S-api-only
    assert spend2["buying_sessions"] == 2  # the cancelled order buys nothing
    # the reused session id: first seen on day 0, its order still counts on day 3
    assert _run(ds, "orders_revenue_by_date", day3, day3)[0]["orders"] == 2  # ORD-f6, ORD-i9 (stream only)
