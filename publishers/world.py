"""A generated shopping world: shopper sessions that produce both stream events and orders.

Each session follows a funnel over the catalog::

    view (x N) ──► wishlist / add_to_cart ──► order (one event per line) ──► return

and yields the Pub/Sub events of :mod:`beam_pipelines.events` AND the orders (with
lines) that the orders system records, with the same ids on both sides: an order
line's event id is ``events.order_line_event_id(order_id, line_number, "order")``,
a returned line's ``...(…, "return")``; the return event's ``event_ts`` is the
order's ``updated_at``, its order event's ``event_ts`` the ``order_ts``. That is
exactly what the hourly job rebuilds from the API, so stream and API collapse.

Two ways to run a world:

* :meth:`World.window` places ``n_orders`` orders in a time window ``[start, end)``
  (batch tests, ``publishers.catalog load --orders``, :func:`publishers.catalog.build_world`);
* :meth:`World.live` emits exactly ``n_events`` events whose timestamps come from a
  clock (the publisher simulator: ``event_ts`` ≈ publish time).

Everything is seeded: the same seed and window give the same orders and events.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from beam_pipelines import events
from beam_pipelines.events import format_ts, line_amount
from beam_pipelines.io import sql
from publishers.catalog_rows import product_prices

ORDER_COLUMNS = ("order_id", "user_id", "session_id", "status", "order_ts", "updated_at", "currency")
LINE_COLUMNS = ("order_id", "line_number", "product_id", "quantity", "unit_price")
CURRENCY = "USD"

# Final status of an order that is not returned, with weight and (min, max) seconds after order_ts
# of its last change. Live runs only use the quick ones (an order cannot ship while we watch).
WINDOW_STATUSES = {
    "placed": (10, (0, 0)),
    "paid": (20, (5, 600)),
    "shipped": (25, (1800, 6 * 3600)),
    "delivered": (35, (6 * 3600, 20 * 3600)),
    "cancelled": (10, (60, 3600)),
}
LIVE_STATUSES = {"placed": (50, (0, 0)), "paid": (50, (1, 5))}


@dataclass(frozen=True)
class Funnel:
    """Probabilities of the shopper funnel (per viewed product unless noted)."""

    mean_views: float = 6.0
    p_wishlist: float = 0.08
    p_add_to_cart: float = 0.25
    p_order: float = 0.45  # per session with a non-empty cart
    p_return: float = 0.08  # per order
    max_lines: int = 5
    popularity_skew: float = 2.0  # >1 favours low product ids (a long tail)

    def __post_init__(self) -> None:
        for name in ("p_wishlist", "p_add_to_cart", "p_order", "p_return"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.mean_views < 1:
            raise ValueError(f"mean_views must be >= 1, got {self.mean_views}")
        if self.max_lines < 1:
            raise ValueError(f"max_lines must be >= 1, got {self.max_lines}")


def api_line(line_number: int, product_id: str, quantity: int, unit_price: str) -> dict[str, Any]:
    """One order line as ``GET /v1/orders`` returns it (``unit_price`` already to the cent)."""
    return {
        "line_number": line_number,
        "product_id": product_id,
        "quantity": quantity,
        "unit_price": unit_price,
        "amount": line_amount(unit_price, quantity),
    }


def api_total(lines: Sequence[dict[str, Any]]) -> str:
    """An order's ``total_amount``: the sum of its line amounts."""
    return str(sum((Decimal(x["amount"]) for x in lines), Decimal("0.00")))


@dataclass
class OrderLine:
    line_number: int
    product_id: str
    quantity: int
    unit_price: str


@dataclass
class Order:
    """An order as the orders system (SQL source, REST API) holds it."""

    order_id: str
    user_id: str
    session_id: str
    status: str
    order_ts: datetime
    updated_at: datetime
    lines: list[OrderLine]
    currency: str = CURRENCY

    def order_row(self) -> tuple:
        return (
            self.order_id,
            self.user_id,
            self.session_id,
            self.status,
            self.order_ts,
            self.updated_at,
            self.currency,
        )

    def line_rows(self) -> list[tuple]:
        return [(self.order_id, ln.line_number, ln.product_id, ln.quantity, ln.unit_price) for ln in self.lines]

    def to_api(self) -> dict[str, Any]:
        """The order as ``GET /v1/orders`` returns it."""
        lines = [api_line(ln.line_number, ln.product_id, ln.quantity, ln.unit_price) for ln in self.lines]
        return {
            "order_id": self.order_id,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "status": self.status,
            "order_ts": format_ts(self.order_ts),
            "updated_at": format_ts(self.updated_at),
            "currency": self.currency,
            "total_amount": api_total(lines),
            "lines": lines,
        }


@dataclass
class CatalogView:
    """What a world draws from: product ids with their prices, and user ids (text, sorted).

    Both constructors sort by id text, so a world drawn from the database and one drawn
    from the generated catalog pick the same products and users.
    """

    product_ids: list[str]
    prices: list[str]
    user_ids: list[str]

    def __post_init__(self) -> None:
        if not self.product_ids or not self.user_ids:
            raise ValueError(
                "the catalog has no products or no users: load one first (python -m publishers.catalog load)"
            )
        if len(self.product_ids) != len(self.prices):
            raise ValueError("product_ids and prices differ in length")

    @classmethod
    def from_database(cls, db: sql.Database) -> CatalogView:
        # Sorted here, not by ORDER BY: text collation differs between engines.
        products = sorted(
            (str(p), sql.jsonable_value(v)) for p, v in db.query("select product_id, price from products")
        )
        users = sorted(str(u) for (u,) in db.query("select user_id from users"))
        return cls([p for p, _ in products], [v for _, v in products], users)

    @classmethod
    def generated(cls, seed: int, n_products: int, n_users: int, as_of: datetime) -> CatalogView:
        """The catalog :mod:`publishers.catalog` would load with the same arguments."""
        ids = [str(i) for i in range(1, n_products + 1)]
        products = sorted(zip(ids, product_prices(seed, n_products, as_of), strict=True))
        return cls([p for p, _ in products], [v for _, v in products], sorted(str(i) for i in range(1, n_users + 1)))


# One step of a session: ("view"|"wishlist", index) / ("add_to_cart", index, qty) / ("order", [(index, qty)]) /
# ("return",)
Step = tuple


@dataclass
class WorldResult:
    """Events (wire records, ``event_ts`` order within each session) and the orders they placed."""

    events: list[dict[str, Any]] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)

    def events_by_name(self) -> dict[str, int]:
        counts = dict.fromkeys(events.EVENT_NAMES, 0)
        for e in self.events:
            counts[e["event_name"]] += 1
        return counts


class World:
    """Seeded shopper sessions over a :class:`CatalogView`."""

    def __init__(self, catalog: CatalogView, seed: int, funnel: Funnel | None = None):
        self.catalog = catalog
        self.funnel = funnel or Funnel()
        self.rng = random.Random(f"{seed}:world")

    # ------------------------------------------------------------------ ids
    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _order_id(self) -> str:
        return f"o-{self.rng.getrandbits(64):016x}"

    # ------------------------------------------------------------------ sessions
    def _product(self) -> int:
        n = len(self.catalog.product_ids)
        return min(n - 1, int(n * self.rng.random() ** self.funnel.popularity_skew))

    def _session(self) -> list[Step]:
        f, rng = self.funnel, self.rng
        n_views = 1
        while rng.random() > 1.0 / f.mean_views:
            n_views += 1
        steps: list[Step] = []
        cart: dict[int, int] = {}
        for _ in range(n_views):
            idx = self._product()
            steps.append(("view", idx))
            if rng.random() < f.p_wishlist:
                steps.append(("wishlist", idx))
            if idx not in cart and rng.random() < f.p_add_to_cart:
                qty = rng.choices((1, 2, 3, 4), (70, 18, 8, 4))[0]
                cart[idx] = qty
                steps.append(("add_to_cart", idx, qty))
        if cart and rng.random() < f.p_order:
            steps.append(("order", list(cart.items())[: f.max_lines]))
            if rng.random() < f.p_return:
                steps.append(("return",))
        return steps

    def _event(self, name: str, idx: int, ts: str, user_id: int, session_id: str, qty: int = 1) -> dict[str, Any]:
        return {
            "event_id": self._uuid(),
            "event_name": name,
            "event_ts": ts,
            "user_id": user_id,
            "session_id": session_id,
            "product_id": self.catalog.product_ids[idx],
            "price": self.catalog.prices[idx],
            "quantity": qty,
            "order_id": None,
        }

    def _place_order(
        self, items: Sequence[tuple[int, int]], user_id: int, session_id: str, ts: datetime, statuses: dict
    ) -> Order:
        names = list(statuses)
        status = self.rng.choices(names, [statuses[s][0] for s in names])[0]
        lo, hi = statuses[status][1]
        updated = ts + timedelta(seconds=self.rng.randint(lo, hi))
        lines = [
            OrderLine(i + 1, self.catalog.product_ids[idx], qty, self.catalog.prices[idx])
            for i, (idx, qty) in enumerate(items)
        ]
        return Order(self._order_id(), user_id, session_id, status, ts, updated, lines)

    @staticmethod
    def line_events(order: Order, event_name: str) -> list[dict[str, Any]]:
        """The stream events of an order's lines (``order`` at order_ts, ``return`` at updated_at)."""
        ts = format_ts(order.order_ts if event_name == "order" else order.updated_at)
        return [
            {
                "event_id": events.order_line_event_id(order.order_id, ln.line_number, event_name),
                "event_name": event_name,
                "event_ts": ts,
                "user_id": order.user_id,
                "session_id": order.session_id,
                "product_id": ln.product_id,
                "price": ln.unit_price,
                "quantity": ln.quantity,
                "order_id": order.order_id,
            }
            for ln in order.lines
        ]

    # ------------------------------------------------------------------ window mode
    def window(
        self,
        start: datetime,
        end: datetime,
        n_orders: int,
        *,
        with_events: bool = True,
        max_sessions: int | None = None,
    ) -> WorldResult:
        """Sessions in ``[start, end)`` until ``n_orders`` orders are placed.

        Timestamps have whole-second resolution (so several orders share an
        ``updated_at``, as in real systems); every event and every ``updated_at`` lies
        inside the window (sessions are cut at ``end``; a return that would fall after
        ``end`` is not made).
        """
        if end <= start:
            raise ValueError(f"window end {format_ts(end)} must be after start {format_ts(start)}")
        span = int((end - start).total_seconds())
        result = WorldResult()
        rng = self.rng
        limit = max_sessions if max_sessions is not None else max(1000, n_orders * 50)
        sessions = 0
        while len(result.orders) < n_orders:
            sessions += 1
            if sessions > limit:
                raise RuntimeError(f"placed only {len(result.orders)} orders in {limit} sessions: raise p_order")
            user_id = self.catalog.user_ids[int(rng.random() * len(self.catalog.user_ids))]
            session_id = f"s-{self._uuid()}"
            t = start + timedelta(seconds=rng.randrange(span))
            order: Order | None = None
            for step in self._session():
                t += timedelta(seconds=rng.randint(2, 90))
                if t >= end:
                    break
                kind = step[0]
                if kind == "order":
                    order = self._place_order(step[1], user_id, session_id, t, WINDOW_STATUSES)
                    if order.updated_at >= end:
                        order.updated_at = end - timedelta(seconds=1) if end - timedelta(seconds=1) > t else t
                    result.orders.append(order)
                    if with_events:
                        result.events.extend(self.line_events(order, "order"))
                    if len(result.orders) >= n_orders:
                        break
                elif kind == "return":
                    returned_at = t + timedelta(seconds=rng.randint(600, 6 * 3600))
                    if order is not None and returned_at < end:
                        order.status = "returned"
                        order.updated_at = returned_at
                        if with_events:
                            result.events.extend(self.line_events(order, "return"))
                elif with_events:
                    qty = step[2] if kind == "add_to_cart" else 1
                    result.events.append(self._event(kind, step[1], format_ts(t), user_id, session_id, qty))
                else:
                    self._uuid()  # keep the random stream identical with and without events
        return result

    # ------------------------------------------------------------------ live mode
    def live(self, n_events: int, clock: Callable[[int], datetime], *, concurrent_sessions: int = 50) -> WorldResult:
        """Exactly ``n_events`` events from interleaved sessions; event ``i`` happens at ``clock(i)``.

        The lines of an order share the order's timestamp (the slot of its first
        line). An order that would overrun ``n_events`` keeps only the lines that fit;
        a return that does not fit is not made.
        """
        result = WorldResult()
        rng = self.rng
        active: list[dict[str, Any]] = []
        while len(result.events) < n_events:
            while len(active) < concurrent_sessions:
                active.append(
                    {
                        "user_id": self.catalog.user_ids[int(rng.random() * len(self.catalog.user_ids))],
                        "session_id": f"s-{self._uuid()}",
                        "steps": iter(self._session()),
                        "order": None,
                    }
                )
            pick = int(rng.random() * len(active))
            session = active[pick]
            step = next(session["steps"], None)
            if step is None:
                active[pick] = active[-1]
                active.pop()
                continue
            i = len(result.events)
            budget = n_events - i
            kind = step[0]
            if kind == "order":
                order = self._place_order(
                    step[1][:budget], session["user_id"], session["session_id"], clock(i), LIVE_STATUSES
                )
                session["order"] = order
                result.orders.append(order)
                result.events.extend(self.line_events(order, "order"))
            elif kind == "return":
                order = session["order"]
                if order is not None and len(order.lines) <= budget:
                    order.status = "returned"
                    order.updated_at = max(clock(i), order.updated_at)
                    result.events.extend(self.line_events(order, "return"))
            else:
                qty = step[2] if kind == "add_to_cart" else 1
                result.events.append(
                    self._event(kind, step[1], format_ts(clock(i)), session["user_id"], session["session_id"], qty)
                )
        return result


# ---------------------------------------------------------------------------- SQL


def write_orders(db: sql.Database, orders: Sequence[Order]) -> int:
    """Upsert orders and their lines in one transaction; return how many orders were written.

    Re-writing an order updates its status and ``updated_at`` (as the orders system
    would); lines are immutable once placed.
    """
    if not orders:
        return 0
    placeholders = ", ".join("?" for _ in ORDER_COLUMNS)
    with db.transaction():
        db.executemany(
            f"insert into orders ({', '.join(ORDER_COLUMNS)}) values ({placeholders}) "
            "on conflict (order_id) do update set status = excluded.status, updated_at = excluded.updated_at",
            [o.order_row() for o in orders],
        )
        db.executemany(
            f"insert into order_lines ({', '.join(LINE_COLUMNS)}) values (?, ?, ?, ?, ?) "
            "on conflict (order_id, line_number) do nothing",
            [row for o in orders for row in o.line_rows()],
        )
    return len(orders)


def iter_api_orders(orders: Sequence[Order]) -> Iterator[dict[str, Any]]:
    """Orders as the API returns them, in its (updated_at, order_id) order."""
    for order in sorted(orders, key=lambda o: (o.updated_at, o.order_id)):
        yield order.to_api()
