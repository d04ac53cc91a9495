"""A small hand-made ``user_behavior`` table whose every answer is worked out by hand.

Rows are built with :func:`beam_pipelines.events.user_behavior_row`, so they follow the
same contract as the jobs' rows (``price`` of a row = unit price x quantity).

The story (all times UTC; range under test: 2026-11-20 .. 2026-11-21):

  S0  user 4, 2026-11-19: view 101, order o0 (101 x1 @20.00, api).
      2026-11-20 08:00: return of o0:1 (api), so a return in range of an order before it.
  S1  user 1, 2026-11-20 10:00: view 101 (delivered twice), view 102, cart 101 x2,
      order o1 = line 1 (101 x2 @20.00) + line 2 (102 x1 @5.00), each line both from the
      stream and from the API; the stream copy of line 1 carries a stale 38.00 amount,
      so revenue shows which copy won. 2026-11-21 18:00: return of o1:1 (stream + api).
  S2  user 2, spans midnight: 2026-11-20 23:50 view 103, 23:52 wishlist 104, 23:55 cart
      103, 2026-11-21 00:05 order o2 (103 x1 @100.00, api only).
  S3  user 3, 2026-11-21 09:00: view 101 (two copies with the same ingest_ts, one not
      enriched: the enriched one must win), wishlist 101 (delivered twice), wishlist 102.
  o4  user 2, 2026-11-21 12:00: order o4 (102 x4 @5.00, api) with no session_id.
  S4  user 1, 2026-11-21 15:00: view 104, wishlist 101, cart 104 x3, order o3 = line 1
      (104 x3 @10.00) + line 2 (product 105, unknown to the products dimension, x1 @7.50),
      stream only. 20:00: return of o3:1 (stream only).
  S6  user 3, spans the end of the range: 2026-11-21 23:58 view 103, 2026-11-22 00:02 cart 103.
  S5  user 4, 2026-11-22 00:30: view 102 (after the range).

32 rows, 26 distinct event_id (6 event_ids arrive twice).

For the funnel and the report: API_ONLY_SESSION_ROWS (an order whose session has no
clickstream), DEAD_LETTERS and ENGAGEMENT (engagement_minutely rows), described where
they are defined.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from beam_pipelines.events import SOURCE_API, SOURCE_STREAM, dead_letter_row, order_line_event_id, user_behavior_row

PRODUCTS = {
    101: {"product_name": "Lamp", "category": "Home"},
    102: {"product_name": "Mug", "category": "Kitchen"},
    103: {"product_name": "Chair", "category": "Home"},
    104: {"product_name": "Pan", "category": "Kitchen"},
    # 105 is not in the dimension: product_name and category stay NULL.
}
USERS = {1: {"user_name": "Ada"}, 2: {"user_name": "Bob"}, 3: {"user_name": "Cy"}, 4: {"user_name": "Dee"}}


def _row(
    event_id: str,
    event_name: str,
    event_ts: str,
    user_id: int,
    session_id: str | None,
    product_id: int,
    unit_price: str,
    *,
    quantity: int = 1,
    order_id: str | None = None,
    source: str = SOURCE_STREAM,
    ingest_ts: str,
    enriched: bool = True,
) -> dict:
    event = {
        "event_id": event_id,
        "event_name": event_name,
        "event_ts": event_ts,
        "user_id": user_id,
        "session_id": session_id,
        "product_id": product_id,
        "price": unit_price,
        "quantity": quantity,
        "order_id": order_id,
    }
    product = PRODUCTS.get(product_id) if enriched else None
    user = USERS.get(user_id) if enriched else None
    return user_behavior_row(event, product, user, source, ingest_ts)


def _oid(order_id: str, line: int, name: str = "order") -> str:
    return order_line_event_id(order_id, line, name)


ROWS = [
    # --- S0, user 4 (before the range) and its return inside the range
    _row("e-0v1", "view", "2026-11-19T12:00:00Z", 4, "S0", 101, "20.00", ingest_ts="2026-11-19T12:00:01Z"),
    _row(
        _oid("o0", 1),
        "order",
        "2026-11-19T12:10:00Z",
        4,
        "S0",
        101,
        "20.00",
        order_id="o0",
        source=SOURCE_API,
        ingest_ts="2026-11-19T13:00:00Z",
    ),
    _row(
        _oid("o0", 1, "return"),
        "return",
        "2026-11-20T08:00:00Z",
        4,
        "S0",
        101,
        "20.00",
        order_id="o0",
        source=SOURCE_API,
        ingest_ts="2026-11-20T09:00:00Z",
    ),
    # --- S1, user 1
    _row("e-1v1", "view", "2026-11-20T10:00:00Z", 1, "S1", 101, "20.00", ingest_ts="2026-11-20T10:00:01Z"),
    _row("e-1v1", "view", "2026-11-20T10:00:00Z", 1, "S1", 101, "20.00", ingest_ts="2026-11-20T10:00:09Z"),
    _row("e-1v2", "view", "2026-11-20T10:02:00Z", 1, "S1", 102, "5.00", ingest_ts="2026-11-20T10:02:01Z"),
    _row(
        "e-1c1",
        "add_to_cart",
        "2026-11-20T10:05:00Z",
        1,
        "S1",
        101,
        "20.00",
        quantity=2,
        ingest_ts="2026-11-20T10:05:01Z",
    ),
    # stream copy first (stale amount 2 x 19.00), the API copy later: the API copy must win
    _row(
        _oid("o1", 1),
        "order",
        "2026-11-20T10:10:00Z",
        1,
        "S1",
        101,
        "19.00",
        quantity=2,
        order_id="o1",
        ingest_ts="2026-11-20T10:10:01Z",
    ),
    _row(
        _oid("o1", 1),
        "order",
        "2026-11-20T10:10:00Z",
        1,
        "S1",
        101,
        "20.00",
        quantity=2,
        order_id="o1",
        source=SOURCE_API,
        ingest_ts="2026-11-20T11:00:00Z",
    ),
    _row(
        _oid("o1", 2),
        "order",
        "2026-11-20T10:10:00Z",
        1,
        "S1",
        102,
        "5.00",
        order_id="o1",
        ingest_ts="2026-11-20T10:10:01Z",
    ),
    _row(
        _oid("o1", 2),
        "order",
        "2026-11-20T10:10:00Z",
        1,
        "S1",
        102,
        "5.00",
        order_id="o1",
        source=SOURCE_API,
        ingest_ts="2026-11-20T11:00:00Z",
    ),
    _row(
        _oid("o1", 1, "return"),
        "return",
        "2026-11-21T18:00:00Z",
        1,
        "S1",
        101,
        "20.00",
        quantity=2,
        order_id="o1",
        ingest_ts="2026-11-21T18:00:01Z",
    ),
    _row(
        _oid("o1", 1, "return"),
        "return",
        "2026-11-21T18:00:00Z",
        1,
        "S1",
        101,
        "20.00",
        quantity=2,
        order_id="o1",
        source=SOURCE_API,
        ingest_ts="2026-11-21T19:00:00Z",
    ),
    # --- S2, user 2, spanning midnight 2026-11-20 -> 21
    _row("e-2v1", "view", "2026-11-20T23:50:00Z", 2, "S2", 103, "100.00", ingest_ts="2026-11-20T23:50:01Z"),
    _row("e-2w1", "wishlist", "2026-11-20T23:52:00Z", 2, "S2", 104, "10.00", ingest_ts="2026-11-20T23:52:01Z"),
    _row("e-2c1", "add_to_cart", "2026-11-20T23:55:00Z", 2, "S2", 103, "100.00", ingest_ts="2026-11-20T23:55:01Z"),
    _row(
        _oid("o2", 1),
        "order",
        "2026-11-21T00:05:00Z",
        2,
        "S2",
        103,
        "100.00",
        order_id="o2",
        source=SOURCE_API,
        ingest_ts="2026-11-21T01:00:00Z",
    ),
    # --- S3, user 3: a tie on ingest_ts (the enriched copy wins) and a duplicate wishlist
    _row(
        "e-3v1", "view", "2026-11-21T09:00:00Z", 3, "S3", 101, "20.00", ingest_ts="2026-11-21T09:00:01Z", enriched=False
    ),
    _row("e-3v1", "view", "2026-11-21T09:00:00Z", 3, "S3", 101, "20.00", ingest_ts="2026-11-21T09:00:01Z"),
    _row("e-3w1", "wishlist", "2026-11-21T09:01:00Z", 3, "S3", 101, "20.00", ingest_ts="2026-11-21T09:01:01Z"),
    _row("e-3w1", "wishlist", "2026-11-21T09:01:00Z", 3, "S3", 101, "20.00", ingest_ts="2026-11-21T09:01:30Z"),
    _row("e-3w2", "wishlist", "2026-11-21T09:02:00Z", 3, "S3", 102, "5.00", ingest_ts="2026-11-21T09:02:01Z"),
    # --- o4, user 2, API order without a session
    _row(
        _oid("o4", 1),
        "order",
        "2026-11-21T12:00:00Z",
        2,
        None,
        102,
        "5.00",
        quantity=4,
        order_id="o4",
        source=SOURCE_API,
        ingest_ts="2026-11-21T13:00:00Z",
    ),
    # --- S4, user 1: stream-only order (the API has not delivered it yet), unknown product 105
    _row("e-4v1", "view", "2026-11-21T15:00:00Z", 1, "S4", 104, "10.00", ingest_ts="2026-11-21T15:00:01Z"),
    _row("e-4w1", "wishlist", "2026-11-21T15:00:30Z", 1, "S4", 101, "20.00", ingest_ts="2026-11-21T15:00:31Z"),
    _row(
        "e-4c1",
        "add_to_cart",
        "2026-11-21T15:01:00Z",
        1,
        "S4",
        104,
        "10.00",
        quantity=3,
        ingest_ts="2026-11-21T15:01:01Z",
    ),
    _row(
        _oid("o3", 1),
        "order",
        "2026-11-21T15:05:00Z",
        1,
        "S4",
        104,
        "10.00",
        quantity=3,
        order_id="o3",
        ingest_ts="2026-11-21T15:05:01Z",
    ),
    _row(
        _oid("o3", 2),
        "order",
        "2026-11-21T15:05:00Z",
        1,
        "S4",
        105,
        "7.50",
        order_id="o3",
        ingest_ts="2026-11-21T15:05:01Z",
    ),
    _row(
        _oid("o3", 1, "return"),
        "return",
        "2026-11-21T20:00:00Z",
        1,
        "S4",
        104,
        "10.00",
        quantity=3,
        order_id="o3",
        ingest_ts="2026-11-21T20:00:01Z",
    ),
    # --- S6, user 3, spanning the end of the range
    _row("e-6v1", "view", "2026-11-21T23:58:00Z", 3, "S6", 103, "100.00", ingest_ts="2026-11-21T23:58:01Z"),
    _row("e-6c1", "add_to_cart", "2026-11-22T00:02:00Z", 3, "S6", 103, "100.00", ingest_ts="2026-11-22T00:02:01Z"),
    # --- S5, user 4, after the range
    _row("e-5v1", "view", "2026-11-22T00:30:00Z", 4, "S5", 102, "5.00", ingest_ts="2026-11-22T00:30:01Z"),
]

# --- Extra rows for the funnel and the report (not part of ROWS: the hand-made answers above
# stay valid). S7, user 4, 2026-11-21 14:00: an order the API booked whose clickstream never
# arrived. The funnel must list it as a session without clickstream, not as a session that
# ordered without a view.
API_ONLY_SESSION_ROWS = [
    _row(
        _oid("o7", 1),
        "order",
        "2026-11-21T14:00:00Z",
        4,
        "S7",
        102,
        "5.00",
        order_id="o7",
        source=SOURCE_API,
        ingest_ts="2026-11-21T15:00:00Z",
    ),
]


def _dead_letter(pipeline: str, stage: str, error: str, insert_ts: str) -> dict:
    return dead_letter_row(pipeline=pipeline, stage=stage, error=error, payload="{}", insert_ts=insert_ts)


# Dead letters: three groups of two that differ only in a quoted value, a number or a time
# (the validator's own message: events.validate_event), one single, and one written after
# the range.
DEAD_LETTERS = [
    _dead_letter("streaming", "parse", "invalid JSON at char 0", "2026-11-20T10:00:05Z"),
    _dead_letter("streaming", "parse", "invalid JSON at char 17", "2026-11-21T09:00:05Z"),
    _dead_letter(
        "streaming", "validate", "event_ts 1999-12-31T23:59:59.000000Z is before 2000-01-01", "2026-11-20T11:00:00Z"
    ),
    _dead_letter(
        "streaming", "validate", "event_ts 1970-01-01T00:00:00.000000Z is before 2000-01-01", "2026-11-21T11:00:00Z"
    ),
    _dead_letter("streaming", "validate", "price must be a number, got 'abc'", "2026-11-21T09:30:00Z"),
    _dead_letter("streaming", "validate", "price must be a number, got 'x1'", "2026-11-21T10:30:00Z"),
    _dead_letter("hourly", "explode", "order o9 has no lines", "2026-11-21T13:00:00Z"),
    _dead_letter("streaming", "validate", "missing user_id", "2026-11-22T01:00:00Z"),
]


def _engagement(window_start: str, event_name: str, events: int, pane_index: int = 0) -> dict:
    start = datetime.fromisoformat(window_start.replace("Z", "+00:00"))
    end = start + timedelta(minutes=1)
    return {
        "window_start": window_start,
        "window_end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "event_name": event_name,
        "events": events,
        "unique_users": 1,
        "unique_sessions": 1,
        "revenue": "0",
        "pane_timing": "ON_TIME" if pane_index else "EARLY",
        "pane_index": pane_index,
        "emitted_ts": (end + timedelta(seconds=5 + pane_index)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# engagement_minutely: 4 of the 7 stream-event minutes of 2026-11-20 and 2 of the 9 of
# 2026-11-21 have rows; 11:00 on the 21st has a window but no stream event; one window
# lies after the range.
ENGAGEMENT = [
    _engagement("2026-11-20T10:00:00Z", "view", 1),
    _engagement("2026-11-20T10:00:00Z", "view", 2, pane_index=1),
    _engagement("2026-11-20T10:02:00Z", "view", 1),
    _engagement("2026-11-20T10:05:00Z", "add_to_cart", 1),
    _engagement("2026-11-20T10:10:00Z", "order", 2),
    _engagement("2026-11-21T09:00:00Z", "view", 1),
    _engagement("2026-11-21T09:01:00Z", "wishlist", 1),
    _engagement("2026-11-21T11:00:00Z", "view", 1),
    _engagement("2026-11-22T00:02:00Z", "add_to_cart", 1),
]


# --- A busy month for the report's layout (generated, not hand-checked: tests compare the
# page with the queries' answers). Long product names, 30 days, a few hundred events.
LONG_PRODUCTS = {
    201: ("Ergonomic Stainless-Steel Espresso Machine with Dual Milk Frother", "Kitchen", "249.00"),
    202: ("Linen Duvet Cover", "Home", "59.90"),
    203: ("Noise-Cancelling Over-Ear Wireless Headphones (2026 Edition, Midnight Blue)", "Audio", "179.00"),
    204: ("Mug", "Kitchen", "7.50"),
    205: ("Hand-Thrown Stoneware Serving Bowl, Extra Large, Speckled Oat Glaze", "Kitchen", "42.00"),
    206: ("Desk Lamp", "Home", "35.00"),
    207: ("Trail Running Shoes", "Sport", "119.00"),
    208: ("Organic Cotton Bath Towel Set of Six in Assorted Coastal Colours", "Home", "64.00"),
    209: ("Yoga Mat", "Sport", "25.00"),
    210: ("Cast-Iron Dutch Oven", "Kitchen", "89.00"),
    211: ("USB-C Charger", "Audio", "19.99"),
    212: ("Bamboo Cutting Board", "Kitchen", "22.00"),
}


def month_rows(year: int = 2026, month: int = 11, seed: int = 15) -> list[dict]:
    """Sessions every day of the month: views, carts, orders (stream + API copies), some API-only."""
    rng = random.Random(seed)
    ids = list(LONG_PRODUCTS)
    rows: list[dict] = []

    def row(event_id, name, ts, user, session, pid, quantity=1, order_id=None, source=SOURCE_STREAM):
        product_name, category, price = LONG_PRODUCTS[pid]
        event = {"event_id": event_id, "event_name": name, "event_ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "user_id": user, "session_id": session, "product_id": pid, "price": price,
                 "quantity": quantity, "order_id": order_id}  # fmt: skip
        ingest = (ts + timedelta(seconds=2 if source == SOURCE_STREAM else 1800)).strftime("%Y-%m-%dT%H:%M:%SZ")
        product = {"product_name": product_name, "category": category}
        rows.append(user_behavior_row(event, product, {"user_name": f"user {user}"}, source, ingest))

    for day in range(1, 31):
        for s in range(rng.randint(3, 9)):
            user, session = rng.randint(1, 60), f"M{day:02d}-{s}"
            ts = datetime(year, month, day, rng.randint(0, 22), rng.randint(0, 59), tzinfo=UTC)
            pid = rng.choice(ids)
            order_id = f"m{day:02d}{s}"
            api_only = rng.random() < 0.1
            if not api_only:
                row(f"{session}-v", "view", ts, user, session, pid)
                if rng.random() < 0.6:
                    row(f"{session}-c", "add_to_cart", ts + timedelta(minutes=2), user, session, pid)
            if api_only or rng.random() < 0.5:
                qty = rng.randint(1, 3)
                oid = order_line_event_id(order_id, 1, "order")
                order_ts = ts + timedelta(minutes=5)
                if not api_only:
                    row(oid, "order", order_ts, user, session, pid, qty, order_id)
                row(oid, "order", order_ts, user, session, pid, qty, order_id, SOURCE_API)
    return rows
