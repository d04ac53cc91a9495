"""``user_behavior`` and ``orders`` rows shaped like real data, for the definition tests.

Two inputs, both returned as ``(user_behavior rows, orders rows)``:

* :func:`story`: a few named sessions, each one edge the definitions must survive:
  a session shared by two users (one of them only views: ``min(user_id)`` would lose
  them), a session spanning midnight whose order lands on the next day, a cancelled and
  an ``unavailable`` order (the first was ``placed`` before: the latest version counts),
  an API-only order session (no clickstream), a session id reused by a replay months
  later, an order without session, a returned order, a stream-only order the orders
  table does not know, Pub/Sub duplicates and a stale stream copy of an API line.
* :func:`generated`: many random sessions mixing all of the above, seeded.

Ids are strings of mixed shapes (hex, UUID-like, SKUs, digits whose string order differs
from their numeric order, non-ASCII), as a stranger's data would have them.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from beam_pipelines.events import SOURCE_API, SOURCE_STREAM, order_line_event_id, user_behavior_row

DAY0 = datetime(2026, 3, 8, tzinfo=UTC)  # the day before the range
RANGE_DAYS = 3  # the range under test: DAY0 + 1 .. DAY0 + 3

PRODUCTS = {
    "9": {"product_name": "Nine", "category": "Toys"},
    "10": {"product_name": "Ten", "category": "Toys"},
    "SKU-ä-77": {"product_name": "Umlaut Lamp", "category": "Home"},
    "5f0c2a9e": {"product_name": "Hex Mug", "category": None},  # a product without category
    # "ghost-1" is unknown to the products dimension: name and category stay NULL
}
PRODUCT_IDS = [*PRODUCTS, "ghost-1"]
USERS = {
    "9": "Nia",
    "10": "Teo",
    "0b7f5e2c9d4a4f0e8a1b3c6d7e8f9a0b": "Hex",
    "user-ß": "Esszett",
    "zz-tail": "Zed",
}
USER_IDS = list(USERS)
PRICES = {"9": "9.99", "10": "10.50", "SKU-ä-77": "120.00", "5f0c2a9e": "4.25", "ghost-1": "1.05"}
STATUSES = ("placed", "paid", "shipped", "delivered", "returned", "cancelled", "unavailable")


def _fmt(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Builder:
    """Collects rows; every event gets a distinct event_ts and ingest_ts (no ties to break)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.orders: list[dict] = []
        self._tick = 0

    def _unique(self, ts: datetime) -> datetime:
        self._tick += 1
        return ts + timedelta(microseconds=self._tick)

    def event(self, name, ts, user, session, product, *, quantity=1, order_id=None, event_id=None,
              source=SOURCE_STREAM, ingest_delay=timedelta(seconds=2), price=None):  # fmt: skip
        ts = self._unique(ts)
        event = {
            "event_id": event_id or f"ev-{self._tick:06x}",
            "event_name": name,
            "event_ts": _fmt(ts),
            "user_id": user,
            "session_id": session,
            "product_id": product,
            "price": price or PRICES[product],
            "quantity": quantity,
            "order_id": order_id,
        }
        user_attrs = {"user_name": USERS[user]} if user in USERS else None
        row = user_behavior_row(event, PRODUCTS.get(product), user_attrs, source, _fmt(self._unique(ts + ingest_delay)))
        self.rows.append(row)
        return row

    def duplicate(self, row: dict, delay: timedelta = timedelta(minutes=3)) -> None:
        copy = dict(row)
        copy["ingest_ts"] = _fmt(self._unique(datetime.fromisoformat(row["ingest_ts"].replace("Z", "+00:00")) + delay))
        self.rows.append(copy)

    def order(self, order_id, ts, user, session, lines, *, status="delivered", via=("api",), returned_at=None,
              versions=(), stale_stream_price=None):  # fmt: skip
        """An order: its line events (stream and/or api copies), returns, and orders rows.

        ``versions``: earlier (status, updated_at) versions written to the orders table too.
        """
        ts = self._unique(ts)
        order_lines = []
        for number, (product, quantity) in enumerate(lines, start=1):
            eid = order_line_event_id(order_id, number, "order")
            if "stream" in via:
                self.event("order", ts, user, session, product, quantity=quantity, order_id=order_id, event_id=eid,
                           ingest_delay=timedelta(seconds=1), price=stale_stream_price)  # fmt: skip
            if "api" in via:
                self.event("order", ts, user, session, product, quantity=quantity, order_id=order_id, event_id=eid,
                           source=SOURCE_API, ingest_delay=timedelta(minutes=20))  # fmt: skip
                if status == "returned":
                    self.event("return", returned_at, user, session, product, quantity=quantity, order_id=order_id,
                               event_id=order_line_event_id(order_id, number, "return"), source=SOURCE_API)  # fmt: skip
            unit = Decimal(PRICES[product])
            order_lines.append({"line_number": number, "product_id": product, "quantity": quantity,
                                "unit_price": str(unit), "amount": str(unit * quantity)})  # fmt: skip
        if "api" not in via:
            return  # the orders table never heard of it
        updated = returned_at or ts + timedelta(hours=1)
        for version_status, version_ts in [*versions, (status, updated)]:
            self.orders.append(
                {
                    "order_id": order_id,
                    "user_id": user,
                    "session_id": session,
                    "status": version_status,
                    "order_ts": _fmt(ts),
                    "updated_at": _fmt(version_ts),
                    "currency": "EUR",
                    "total_amount": str(sum(Decimal(line["amount"]) for line in order_lines)),
                    "lines": order_lines,
                }
            )


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hour, minutes=minute)


def story() -> tuple[list[dict], list[dict]]:
    b = _Builder()
    hex_user, sz, nine, ten, tail = "0b7f5e2c9d4a4f0e8a1b3c6d7e8f9a0b", "user-ß", "9", "10", "zz-tail"
    # shared session: "10" and "9" view (string order puts "10" first), "9" orders; "zz-tail" only views
    b.event("view", _at(1, 9), ten, "S-shared", "9")
    b.event("view", _at(1, 9, 2), nine, "S-shared", "10")
    b.event("view", _at(1, 9, 3), tail, "S-shared", "10")
    b.event("add_to_cart", _at(1, 9, 4), nine, "S-shared", "10", quantity=2)
    b.order("ORD-a1", _at(1, 9, 5), nine, "S-shared", [("10", 2)], via=("stream", "api"), stale_stream_price="9.00")
    # spans midnight: viewed on day 1, ordered after 00:00 on day 2
    b.duplicate(b.event("view", _at(1, 23, 50), hex_user, "S-midnight", "SKU-ä-77"))
    b.event("add_to_cart", _at(1, 23, 55), hex_user, "S-midnight", "SKU-ä-77")
    b.order("ORD-b2", _at(2, 0, 10), hex_user, "S-midnight", [("SKU-ä-77", 1), ("5f0c2a9e", 3)], via=("stream", "api"))
    # cancelled (placed first, then cancelled) and unavailable orders, both with clickstream
    b.event("view", _at(2, 11), sz, "S-cancel", "9")
    b.event("add_to_cart", _at(2, 11, 1), sz, "S-cancel", "9")
    b.order("ORD-c3", _at(2, 11, 2), sz, "S-cancel", [("9", 1)], status="cancelled", via=("stream", "api"),
            versions=[("placed", _at(2, 11, 3))])  # fmt: skip
    b.event("view", _at(3, 8), ten, "S-unavail", "ghost-1")
    b.order("ORD-d4", _at(3, 8, 1), ten, "S-unavail", [("ghost-1", 4)], status="unavailable")
    # API-only order session: no clickstream at all
    b.order("ORD-e5", _at(2, 14), tail, "S-api-only", [("5f0c2a9e", 2)])
    # a replay reused a session id: first seen on day 0, again (with an order) on day 3
    b.event("view", _at(0, 12), hex_user, "S-reused", "9")
    b.event("view", _at(3, 16), hex_user, "S-reused", "9")
    b.order("ORD-f6", _at(3, 16, 5), hex_user, "S-reused", [("9", 1)], via=("stream", "api"))
    # order without session, a returned order (return on day 3), a stream-only order
    b.order("ORD-g7", _at(2, 18), sz, None, [("10", 1)])
    b.event("view", _at(1, 15), ten, "S-return", "SKU-ä-77")
    b.order("ORD-h8", _at(1, 15, 5), ten, "S-return", [("SKU-ä-77", 1)], status="returned", returned_at=_at(3, 10))
    b.event("view", _at(3, 20), nine, "S-stream", "ghost-1")
    b.order("ORD-i9", _at(3, 20, 1), nine, "S-stream", [("ghost-1", 1)], via=("stream",))
    return b.rows, b.orders


def generated(seed: int, sessions: int = 80) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    b = _Builder()
    session_ids: list[str] = []
    for n in range(sessions):
        reuse = session_ids and rng.random() < 0.1
        sid = rng.choice(session_ids) if reuse else f"{rng.getrandbits(64):016x}"
        session_ids.append(sid)
        users = rng.sample(USER_IDS, 2 if rng.random() < 0.25 else 1)
        day = rng.randrange(0, RANGE_DAYS + 2)
        # a quarter of the sessions start in the last minutes of a day
        start = _at(day, 23, rng.randrange(40, 58)) if rng.random() < 0.25 else _at(day, rng.randrange(0, 23))
        ts = start
        api_only = rng.random() < 0.1
        if not api_only:
            for _ in range(rng.randrange(0, 4)):
                ts += timedelta(minutes=rng.randrange(1, 9))
                row = b.event(rng.choice(["view", "view", "wishlist"]), ts, rng.choice(users), sid,
                              rng.choice(PRODUCT_IDS))  # fmt: skip
                if rng.random() < 0.2:
                    b.duplicate(row)
            if rng.random() < 0.6:
                ts += timedelta(minutes=rng.randrange(1, 9))
                quantity = rng.randrange(1, 4)
                b.event("add_to_cart", ts, rng.choice(users), sid, rng.choice(PRODUCT_IDS), quantity=quantity)
        if api_only or rng.random() < 0.55:
            ts += timedelta(minutes=rng.randrange(1, 15))
            status = rng.choice(STATUSES)
            lines = [(rng.choice(PRODUCT_IDS), rng.randrange(1, 5)) for _ in range(rng.randrange(1, 4))]
            via = ("api",) if api_only else rng.choice([("stream", "api"), ("api",), ("stream",)])
            session = None if (not api_only and rng.random() < 0.1) else sid
            versions = [("placed", ts + timedelta(minutes=5))] if status in ("cancelled", "unavailable") else []
            b.order(f"O-{seed}-{n}-{rng.getrandbits(16):04x}", ts, rng.choice(users), session, lines, status=status,
                    via=via, returned_at=ts + timedelta(hours=rng.randrange(2, 40)), versions=versions,
                    stale_stream_price="0.01" if rng.random() < 0.3 else None)  # fmt: skip
    return b.rows, b.orders
