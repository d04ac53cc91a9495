"""Every analytics query on the BigQuery emulator over tests/analytics/sample_data.py.

The expected answers are worked out by hand from the story in sample_data's docstring
(the comments next to each number show the arithmetic). Range: 2026-11-20 .. 2026-11-21.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from bigquery_schemas import analytics
from tests.analytics.sample_data import ROWS

pytestmark = pytest.mark.integration

START, END = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
NOV = {d: dt.date(2026, 11, d) for d in range(19, 24)}


def _load(bq_dataset, rows=ROWS):
    errors = bq_dataset.client.insert_rows_json(bq_dataset.table_id("user_behavior"), rows)
    assert errors == []
    assert analytics.create_views(bq_dataset.client, bq_dataset.dataset) == [bq_dataset.table_id("user_behavior_dedup")]
    return bq_dataset


@pytest.fixture
def loaded(bq_dataset):
    """The fixture's fresh dataset with the sample rows and the dedup view."""
    return _load(bq_dataset)


def _run(ds, name, start=START, end=END, limit=None):
    return analytics.run_query(ds.client, name, ds.dataset, start, end, limit)


def _ts(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ----------------------------------------------------------------------------- the view


@pytest.mark.parametrize("order", ["as_generated", "reversed"])
def test_dedup_view_one_row_per_event_id_with_documented_winners(bq_dataset, order):
    # Insertion order must not matter: the tie-break is on values, not storage order.
    ds = _load(bq_dataset, ROWS if order == "as_generated" else ROWS[::-1])
    assert ds.count("user_behavior") == 32
    rows = {r["event_id"]: r for r in ds.rows("user_behavior_dedup")}
    assert len(rows) == ds.count("user_behavior_dedup") == 26

    # order/return: the api row wins although the stream copy was ingested first
    assert (rows["o1:1"]["source"], rows["o1:1"]["price"]) == ("api", D("40.00"))
    assert rows["o1:2"]["source"] == "api"
    assert rows["o1:1:return"]["source"] == "api"
    # an order line only the stream delivered is kept
    assert rows["o3:1"]["source"] == "stream"
    # other events: the earliest ingest_ts wins
    assert rows["e-1v1"]["ingest_ts"] == _ts("2026-11-20T10:00:01Z")
    assert rows["e-3w1"]["ingest_ts"] == _ts("2026-11-21T09:01:01Z")
    # same ingest_ts: the enriched copy wins over the one with NULL product/user attributes
    assert (rows["e-3v1"]["product_name"], rows["e-3v1"]["user_name"], rows["e-3v1"]["category"]) == (
        "Lamp",
        "Cy",
        "Home",
    )


# ----------------------------------------------------------------------------- top products


def test_top_products_by_units(loaded):
    # in range, deduplicated order lines: o1:1 101x2 40.00 (api copy), o1:2 102x1 5.00,
    # o2:1 103x1 100.00, o4:1 102x4 20.00, o3:1 104x3 30.00, o3:2 105x1 7.50
    expected = [
        {"product_id": "102", "product_name": "Mug", "category": "Kitchen", "units_sold": 5, "orders": 2,
         "gross_revenue": D("25.00")},  # 1 + 4 units; o1, o4; 5.00 + 20.00
        {"product_id": "104", "product_name": "Pan", "category": "Kitchen", "units_sold": 3, "orders": 1,
         "gross_revenue": D("30.00")},
        {"product_id": "101", "product_name": "Lamp", "category": "Home", "units_sold": 2, "orders": 1,
         "gross_revenue": D("40.00")},  # not 38.00: the stale stream copy lost; o0 (11-19) out of range
        {"product_id": "103", "product_name": "Chair", "category": "Home", "units_sold": 1, "orders": 1,
         "gross_revenue": D("100.00")},  # S2's order after midnight counts on its own date, 11-21
        {"product_id": "105", "product_name": None, "category": None, "units_sold": 1, "orders": 1,
         "gross_revenue": D("7.50")},  # tie with 103 on units: product_id decides
    ]  # fmt: skip
    assert _run(loaded, "top_products_by_units") == expected
    assert _run(loaded, "top_products_by_units", limit=3) == expected[:3]


def test_top_products_by_wishlists(loaded):
    # in range: e-2w1 (104, user 2), e-3w1 (101, user 3, delivered twice), e-3w2 (102, user 3),
    # e-4w1 (101, user 1)
    assert _run(loaded, "top_products_by_wishlists") == [
        {"product_id": "101", "product_name": "Lamp", "category": "Home", "wishlists": 2, "users": 2},
        {"product_id": "102", "product_name": "Mug", "category": "Kitchen", "wishlists": 1, "users": 1},
        {"product_id": "104", "product_name": "Pan", "category": "Kitchen", "wishlists": 1, "users": 1},
    ]
    assert [r["product_id"] for r in _run(loaded, "top_products_by_wishlists", limit=1)] == ["101"]


def test_top_products_by_returns_nets_returns_on_their_own_date(loaded):
    # returns in range: o0:1:return (101 x1, 20.00, 11-20, its order was on 11-19),
    # o1:1:return (101 x2, 40.00, api copy), o3:1:return (104 x3, 30.00).
    # sold in range: 101 -> 2 units, 104 -> 3 units.
    assert _run(loaded, "top_products_by_returns") == [
        {"product_id": "101", "product_name": "Lamp", "category": "Home", "return_lines": 2, "units_returned": 3,
         "units_sold": 2, "return_rate": 1.5, "refunds": D("60.00")},  # 3 / 2: above 1, as documented
        {"product_id": "104", "product_name": "Pan", "category": "Kitchen", "return_lines": 1, "units_returned": 3,
         "units_sold": 3, "return_rate": 1.0, "refunds": D("30.00")},
    ]  # fmt: skip
    # only 11-21: o1:1 and o3:1 returns; 101 sold nothing that day -> rate NULL, listed last on rate
    assert _run(loaded, "top_products_by_returns", start=NOV[21], end=NOV[21]) == [
        {"product_id": "104", "product_name": "Pan", "category": "Kitchen", "return_lines": 1, "units_returned": 3,
         "units_sold": 3, "return_rate": 1.0, "refunds": D("30.00")},
        {"product_id": "101", "product_name": "Lamp", "category": "Home", "return_lines": 1, "units_returned": 2,
         "units_sold": 0, "return_rate": None, "refunds": D("40.00")},
    ]  # fmt: skip


# ----------------------------------------------------------------------------- sessions


def test_avg_spend_per_session_dates_spend_by_its_own_events(loaded):
    # events dated in range that carry a session: S0 (o0:1:return, 11-20), S1, S2 (its order on
    # 11-21 too), S3, S4, S6 (view 11-21 23:58) -> 6 sessions; S5 (11-22) out; o4 has no session.
    # sales in range: o1 45.00, o2 100.00, o4 20.00, o3 37.50 = 202.50 (orders_revenue_by_date's
    # 45.00 + 157.50); returns: o0:1 20.00, o1:1 40.00, o3:1 30.00 = 90.00; net 112.50, of which
    # 20.00 (o4) without session -> session net spend 92.50.
    # per user: 4 (S0) -20.00 / 1; 1 (S1, S4) 45 - 40 + 37.50 - 30 = 12.50 / 2; 2 (S2) 100 / 1; 3 (S3, S6) 0.
    rows = _run(loaded, "avg_spend_per_session")
    # BigQuery's AVG(NUMERIC) is NUMERIC; the emulator returns FLOAT64 (pinned in
    # test_emulator_divergences.py), so compare this one column by its decimal value.
    rows[0]["avg_user_spend_per_session"] = D(str(rows[0]["avg_user_spend_per_session"]))
    assert rows == [
        {
            "gross_revenue": D("202.50"),
            "refunds": D("90.00"),
            "net_revenue": D("112.50"),
            "net_revenue_without_session": D("20.00"),
            "sessions": 6,
            "buying_sessions": 3,  # S1, S2, S4
            "users": 4,
            "session_net_spend": D("92.50"),
            "avg_spend_per_session": D("15.42"),  # 92.50 / 6 = 15.4166...
            "avg_spend_per_buying_session": D("30.83"),  # 92.50 / 3
            "avg_spend_per_user": D("23.13"),  # 92.50 / 4 = 23.125, half away from zero
            "avg_user_spend_per_session": D("21.56"),  # (-20 + 6.25 + 100 + 0) / 4 = 21.5625
        }
    ]


def test_conversion_funnel_counts_a_midnight_session_on_its_first_day(loaded):
    # 11-20: S1 (view, cart, order), S2 (view 23:50, cart 23:55, order 00:05 next day) -> 2/2/2/2.
    # 11-21: S3 (view, no cart), S4 (view, cart, order), S6 (view 23:58, cart 00:02 on 11-22) -> 3/3/2/1.
    assert _run(loaded, "conversion_funnel_daily") == [
        {"date": NOV[20], "sessions": 2, "viewed": 2, "carted": 2, "ordered": 2,
         "view_to_cart": 1.0, "cart_to_order": 1.0, "funnel_conversion": 1.0, "buying_sessions": 2,
         "order_conversion": 1.0, "sessions_without_clickstream": 0},
        {"date": NOV[21], "sessions": 3, "viewed": 3, "carted": 2, "ordered": 1,
         "view_to_cart": 0.6667, "cart_to_order": 0.5, "funnel_conversion": 0.3333, "buying_sessions": 1,
         "order_conversion": 0.3333, "sessions_without_clickstream": 0},
    ]  # fmt: skip
    # a day without sessions is listed with zeros; 11-22 has S5 (view only)
    assert _run(loaded, "conversion_funnel_daily", start=NOV[22], end=NOV[23]) == [
        {"date": NOV[22], "sessions": 1, "viewed": 1, "carted": 0, "ordered": 0,
         "view_to_cart": 0.0, "cart_to_order": None, "funnel_conversion": 0.0, "buying_sessions": 0,
         "order_conversion": 0.0, "sessions_without_clickstream": 0},
        {"date": NOV[23], "sessions": 0, "viewed": 0, "carted": 0, "ordered": 0,
         "view_to_cart": None, "cart_to_order": None, "funnel_conversion": None, "buying_sessions": 0,
         "order_conversion": None, "sessions_without_clickstream": 0},
    ]  # fmt: skip


# ----------------------------------------------------------------------------- daily figures


def test_unique_visitors_exact_and_approximate(loaded):
    # 11-20: users 4 (o0 return), 1 (S1), 2 (S2) -> 3; 11-21: users 2, 3, 1 -> 3; range: 1, 2, 3, 4 -> 4.
    assert _run(loaded, "unique_visitors") == [
        {"scope": "day", "date": NOV[20], "visitors": 3, "visitors_approx": 3},
        {"scope": "day", "date": NOV[21], "visitors": 3, "visitors_approx": 3},
        {"scope": "range", "date": None, "visitors": 4, "visitors_approx": 4},
    ]


def test_orders_and_revenue_by_date(loaded):
    expected = [
        # 11-20: o1 = 40.00 + 5.00 (3 units); return of o0:1 (1 unit, 20.00)
        {"date": NOV[20], "orders": 1, "order_lines": 2, "units_sold": 3, "gross_revenue": D("45.00"),
         "return_lines": 1, "units_returned": 1, "refunds": D("20.00"), "net_revenue": D("25.00"),
         "avg_order_value": D("45.00"), "cancelled_orders": 0, "cancelled_revenue": D("0")},
        # 11-21: o2 100.00 (1), o4 20.00 (4), o3 30.00 + 7.50 (3 + 1); returns o1:1 (2, 40.00), o3:1 (3, 30.00)
        {"date": NOV[21], "orders": 3, "order_lines": 4, "units_sold": 9, "gross_revenue": D("157.50"),
         "return_lines": 2, "units_returned": 5, "refunds": D("70.00"), "net_revenue": D("87.50"),
         "avg_order_value": D("52.50"), "cancelled_orders": 0, "cancelled_revenue": D("0")},
    ]  # fmt: skip
    assert _run(loaded, "orders_revenue_by_date") == expected
    # days without orders are listed with zeros
    empty = {"orders": 0, "order_lines": 0, "units_sold": 0, "gross_revenue": D("0"), "return_lines": 0,
             "units_returned": 0, "refunds": D("0"), "net_revenue": D("0"), "avg_order_value": None,
             "cancelled_orders": 0, "cancelled_revenue": D("0")}  # fmt: skip
    assert _run(loaded, "orders_revenue_by_date", start=NOV[21], end=NOV[22]) == [
        expected[1],
        {"date": NOV[22], **empty},
    ]


def test_daily_traffic_by_event_type(loaded):
    def row(day, name, events, users, sessions):
        return {"date": NOV[day], "event_name": name, "events": events, "users": users, "sessions": sessions}

    assert _run(loaded, "daily_traffic_by_event") == [
        row(20, "view", 3, 2, 2),  # e-1v1 (once), e-1v2, e-2v1
        row(20, "wishlist", 1, 1, 1),  # e-2w1
        row(20, "add_to_cart", 2, 2, 2),  # e-1c1, e-2c1
        row(20, "order", 2, 1, 1),  # o1:1, o1:2 (one row each despite stream + api copies)
        row(20, "return", 1, 1, 1),  # o0:1:return
        row(21, "view", 3, 2, 3),  # e-3v1, e-4v1, e-6v1 (users 3, 1, 3)
        row(21, "wishlist", 3, 2, 2),  # e-3w1 (once), e-3w2, e-4w1
        row(21, "add_to_cart", 1, 1, 1),  # e-4c1 (e-6c1 is on 11-22)
        row(21, "order", 4, 2, 2),  # o2:1 (S2), o4:1 (no session), o3:1, o3:2 (S4)
        row(21, "return", 2, 1, 2),  # o1:1:return (S1), o3:1:return (S4)
    ]


def test_category_summary(loaded):
    # Home = 101, 103; Kitchen = 102, 104; 105 has no category.
    assert _run(loaded, "category_summary") == [
        # sold 101x2 (40.00) + 103x1 (100.00); returned 101: 1 (o0, 20.00) + 2 (o1, 40.00)
        {"category": "Home", "orders": 2, "units_sold": 3, "gross_revenue": D("140.00"), "units_returned": 3,
         "refunds": D("60.00"), "net_revenue": D("80.00"), "return_rate": 1.0},
        # sold 102x1 (5.00) + 102x4 (20.00) + 104x3 (30.00); returned 104x3 (30.00)
        {"category": "Kitchen", "orders": 3, "units_sold": 8, "gross_revenue": D("55.00"), "units_returned": 3,
         "refunds": D("30.00"), "net_revenue": D("25.00"), "return_rate": 0.375},
        {"category": "(unknown)", "orders": 1, "units_sold": 1, "gross_revenue": D("7.50"), "units_returned": 0,
         "refunds": D("0"), "net_revenue": D("7.50"), "return_rate": 0.0},
    ]  # fmt: skip


# ----------------------------------------------------------------------------- user_profile


PROFILE_COLUMNS = [
    "user_id", "user_name", "sessions", "events", "views", "wishlists", "add_to_carts", "orders", "units_bought",
    "units_returned", "gross_spend", "refunds", "net_spend", "first_seen", "last_seen", "refreshed_at",
]  # fmt: skip


def test_user_profile_refresh_is_complete_and_repeatable(loaded):
    table = analytics.refresh_profile(loaded.client, loaded.dataset)
    assert table == loaded.table_id("user_profile")
    first = loaded.rows("user_profile", order_by="user_id")
    assert [list(r) for r in first] == [PROFILE_COLUMNS] * 4
    profile = [{k: v for k, v in r.items() if k != "refreshed_at"} for r in first]
    assert profile == [
        # S1 + S4: views e-1v1, e-1v2, e-4v1; carts e-1c1, e-4c1; o1 (3 units, 45.00), o3 (4 units, 37.50);
        # returns o1:1 (2, 40.00), o3:1 (3, 30.00); 12 events
        {"user_id": "1", "user_name": "Ada", "sessions": 2, "events": 12, "views": 3, "wishlists": 1,
         "add_to_carts": 2, "orders": 2, "units_bought": 7, "units_returned": 5, "gross_spend": D("82.50"),
         "refunds": D("70.00"), "net_spend": D("12.50"), "first_seen": _ts("2026-11-20T10:00:00Z"),
         "last_seen": _ts("2026-11-21T20:00:00Z")},
        # S2 and o4 (no session: not a session, still an order)
        {"user_id": "2", "user_name": "Bob", "sessions": 1, "events": 5, "views": 1, "wishlists": 1,
         "add_to_carts": 1, "orders": 2, "units_bought": 5, "units_returned": 0, "gross_spend": D("120.00"),
         "refunds": D("0"), "net_spend": D("120.00"), "first_seen": _ts("2026-11-20T23:50:00Z"),
         "last_seen": _ts("2026-11-21T12:00:00Z")},
        # S3 + S6 (last seen after midnight)
        {"user_id": "3", "user_name": "Cy", "sessions": 2, "events": 5, "views": 2, "wishlists": 2,
         "add_to_carts": 1, "orders": 0, "units_bought": 0, "units_returned": 0, "gross_spend": D("0"),
         "refunds": D("0"), "net_spend": D("0"), "first_seen": _ts("2026-11-21T09:00:00Z"),
         "last_seen": _ts("2026-11-22T00:02:00Z")},
        # S0 (order o0 returned in full) + S5
        {"user_id": "4", "user_name": "Dee", "sessions": 2, "events": 4, "views": 2, "wishlists": 0,
         "add_to_carts": 0, "orders": 1, "units_bought": 1, "units_returned": 1, "gross_spend": D("20.00"),
         "refunds": D("20.00"), "net_spend": D("0"), "first_seen": _ts("2026-11-19T12:00:00Z"),
         "last_seen": _ts("2026-11-22T00:30:00Z")},
    ]  # fmt: skip
    # a re-run replaces the table: same rows, nothing appended, a newer refreshed_at
    analytics.refresh_profile(loaded.client, loaded.dataset)
    second = loaded.rows("user_profile", order_by="user_id")
    assert [{k: v for k, v in r.items() if k != "refreshed_at"} for r in second] == profile
    assert all(b["refreshed_at"] >= a["refreshed_at"] for a, b in zip(first, second, strict=True))
