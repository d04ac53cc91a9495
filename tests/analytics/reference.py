"""An independent Python reading of the analytics definitions, to check the SQL against.

Each function takes the raw ``user_behavior`` rows and ``orders`` rows (as inserted) and
returns what the query file of the same name must answer, column for column, following
the definitions in the file headers, not the SQL. Nothing here is shared with the SQL or
the jobs: ids are compared as strings and never ordered as numbers.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CANCELLED_STATUSES = {"cancelled", "unavailable"}
CENT = Decimal("0.01")
RATE = Decimal("0.0001")


def _ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _avg(total: Decimal, n: int) -> Decimal | None:
    return None if n == 0 else money(Decimal(total) / n)


def _rate(a: int, b: int) -> float | None:
    return None if b == 0 else float((Decimal(a) / Decimal(b)).quantize(RATE, rounding=ROUND_HALF_UP))


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


class Events:
    """The deduplicated events with their order status: user_behavior_dedup, in Python.

    ``zone`` is the business time zone: an event's day is the calendar date of its
    event_ts there (Python's own zone database, not the SQL's ``date(ts, zone)``).
    """

    def __init__(self, rows: Iterable[dict], orders: Iterable[dict] = (), zone: dt.tzinfo = dt.UTC):
        self.zone = zone
        by_id: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            by_id[row["event_id"]].append(row)
        self.rows = [min(copies, key=self._rank) for copies in by_id.values()]
        latest: dict[str, dict] = {}
        for order in orders:
            known = latest.get(order["order_id"])
            if known is None or _ts(order["updated_at"]) > _ts(known["updated_at"]):
                latest[order["order_id"]] = order
        self.status = {oid: o["status"] for oid, o in latest.items()}

    @staticmethod
    def _rank(row: dict) -> tuple:
        authoritative = row["event_name"] in ("order", "return") and row["source"] == "api"
        return (
            0 if authoritative else 1,
            _ts(row["ingest_ts"]),
            row["source"],
            row["product_name"] is None,
            row["user_name"] is None,
            row["category"] is None,
        )

    def cancelled(self, row: dict) -> bool:
        return row["event_name"] in ("order", "return") and self.status.get(row["order_id"]) in CANCELLED_STATUSES

    def _money(self, name: str, start: dt.date, end: dt.date) -> list[dict]:
        return [
            r for r in self.rows if r["event_name"] == name and not self.cancelled(r) and start <= self.day(r) <= end
        ]

    def sales(self, start: dt.date, end: dt.date) -> list[dict]:
        return self._money("order", start, end)

    def refunds(self, start: dt.date, end: dt.date) -> list[dict]:
        return self._money("return", start, end)

    def in_range(self, start: dt.date, end: dt.date) -> list[dict]:
        return [r for r in self.rows if start <= self.day(r) <= end]

    def day(self, row: dict) -> dt.date:
        return _ts(row["event_ts"]).astimezone(self.zone).date()

    def clickstream_sessions(self) -> dict[str, dict]:
        """session_id -> {date, view, cart, sale} for session ids with a stream event."""
        events: dict[str, list[dict]] = defaultdict(list)
        for r in self.rows:
            if r["session_id"] is not None:
                events[r["session_id"]].append(r)
        out = {}
        for sid, rows in events.items():
            names = {r["event_name"] for r in rows}
            out[sid] = {
                "date": min(_ts(r["event_ts"]) for r in rows).astimezone(self.zone).date(),
                "clickstream": any(r["source"] == "stream" for r in rows),
                "view": "view" in names,
                "cart": "add_to_cart" in names,
                "sale": any(r["event_name"] == "order" and not self.cancelled(r) for r in rows),
            }
        return out


def _price_sum(rows: Iterable[dict]) -> Decimal:
    return sum((Decimal(str(r["price"])) for r in rows), Decimal(0))


def orders_revenue_by_date(ev: Events, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    out = []
    for day in _days(start, end):
        sales, refunds = ev.sales(day, day), ev.refunds(day, day)
        cancelled = [r for r in ev.in_range(day, day) if r["event_name"] == "order" and ev.cancelled(r)]
        orders = len({r["order_id"] for r in sales})
        gross = _price_sum(sales)
        out.append(
            {
                "date": day,
                "orders": orders,
                "order_lines": len(sales),
                "units_sold": sum(r["quantity"] for r in sales),
                "gross_revenue": gross,
                "return_lines": len(refunds),
                "units_returned": sum(r["quantity"] for r in refunds),
                "refunds": _price_sum(refunds),
                "net_revenue": gross - _price_sum(refunds),
                "avg_order_value": _avg(gross, orders),
                "cancelled_orders": len({r["order_id"] for r in cancelled}),
                "cancelled_revenue": _price_sum(cancelled),
            }
        )
    return out


def avg_spend_per_session(ev: Events, start: dt.date, end: dt.date) -> dict[str, Any]:
    sales, refunds = ev.sales(start, end), ev.refunds(start, end)
    money_rows = [(r, Decimal(str(r["price"]))) for r in sales] + [(r, -Decimal(str(r["price"]))) for r in refunds]
    in_range = ev.in_range(start, end)
    sessions = {r["session_id"] for r in in_range if r["session_id"] is not None}
    buying = {r["session_id"] for r in sales if r["session_id"] is not None}
    user_sessions: dict[str, set[str]] = defaultdict(set)
    for r in in_range:
        if r["session_id"] is not None:
            user_sessions[r["user_id"]].add(r["session_id"])
    user_net: dict[str, Decimal] = defaultdict(Decimal)
    session_net = Decimal(0)
    without_session = Decimal(0)
    for r, amount in money_rows:
        if r["session_id"] is None:
            without_session += amount
        else:
            session_net += amount
            user_net[r["user_id"]] += amount
    per_user = [user_net[u] / len(s) for u, s in user_sessions.items()]
    gross, refund_total = _price_sum(sales), _price_sum(refunds)
    return {
        "gross_revenue": gross,
        "refunds": refund_total,
        "net_revenue": gross - refund_total,
        "net_revenue_without_session": without_session,
        "sessions": len(sessions),
        "buying_sessions": len(buying),
        "users": len(user_sessions),
        "session_net_spend": session_net,
        "avg_spend_per_session": _avg(session_net, len(sessions)),
        "avg_spend_per_buying_session": _avg(session_net, len(buying)),
        "avg_spend_per_user": _avg(session_net, len(user_sessions)),
        "avg_user_spend_per_session": money(sum(per_user, Decimal(0)) / len(per_user)) if per_user else None,
    }


def avg_spend_per_customer(ev: Events, start: dt.date, end: dt.date) -> dict[str, Any]:
    sales, refunds = ev.sales(start, end), ev.refunds(start, end)
    gross, refund_total = _price_sum(sales), _price_sum(refunds)
    customers = {r["user_id"] for r in sales + refunds}
    buyers = {r["user_id"] for r in sales}
    orders = {r["order_id"] for r in sales}
    net = gross - refund_total
    return {
        "gross_revenue": gross,
        "refunds": refund_total,
        "net_revenue": net,
        "customers": len(customers),
        "buying_customers": len(buyers),
        "orders": len(orders),
        "avg_spend_per_customer": _avg(net, len(customers)),
        "avg_purchase_per_buyer": _avg(gross, len(buyers)),
        "avg_order_value": _avg(gross, len(orders)),
        "avg_net_revenue_per_order": _avg(net, len(orders)),
    }


def conversion_funnel_daily(ev: Events, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    sessions = ev.clickstream_sessions()
    out = []
    for day in _days(start, end):
        today = [s for s in sessions.values() if s["date"] == day]
        click = [s for s in today if s["clickstream"]]
        viewed = [s for s in click if s["view"]]
        carted = [s for s in viewed if s["cart"]]
        ordered = [s for s in carted if s["sale"]]
        buying = [s for s in click if s["sale"]]
        out.append(
            {
                "date": day,
                "sessions": len(click),
                "viewed": len(viewed),
                "carted": len(carted),
                "ordered": len(ordered),
                "view_to_cart": _rate(len(carted), len(viewed)),
                "cart_to_order": _rate(len(ordered), len(carted)),
                "funnel_conversion": _rate(len(ordered), len(click)),
                "buying_sessions": len(buying),
                "order_conversion": _rate(len(buying), len(click)),
                "sessions_without_clickstream": len(today) - len(click),
            }
        )
    return out


def kpi_summary(ev: Events, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    length = (end - start).days + 1
    periods = [("current", start, end), ("previous", start - dt.timedelta(days=length), start - dt.timedelta(days=1))]
    sessions = ev.clickstream_sessions()
    out = []
    for name, first, last in periods:
        sales, refunds = ev.sales(first, last), ev.refunds(first, last)
        cancelled = [r for r in ev.in_range(first, last) if r["event_name"] == "order" and ev.cancelled(r)]
        orders = len({r["order_id"] for r in sales})
        click = [s for s in sessions.values() if s["clickstream"] and first <= s["date"] <= last]
        buying = [s for s in click if s["sale"]]
        gross, refund_total = _price_sum(sales), _price_sum(refunds)
        out.append(
            {
                "period": name,
                "first_day": first,
                "last_day": last,
                "revenue": gross,
                "refunds": refund_total,
                "net_revenue": gross - refund_total,
                "cancelled_revenue": _price_sum(cancelled),
                "orders": orders,
                "avg_order_value": _avg(gross, orders),
                "visitors": len({r["user_id"] for r in ev.in_range(first, last)}),
                "sessions": len(click),
                "buying_sessions": len(buying),
                "order_conversion": _rate(len(buying), len(click)),
            }
        )
    return out


def category_summary(ev: Events, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    per: dict[str, dict[str, Any]] = {}
    for kind, rows in (("order", ev.sales(start, end)), ("return", ev.refunds(start, end))):
        for r in rows:
            c = per.setdefault(
                r["category"] or "(unknown)",
                {"orders": set(), "units_sold": 0, "gross": Decimal(0), "units_returned": 0, "refunds": Decimal(0)},
            )
            if kind == "order":
                c["orders"].add(r["order_id"])
                c["units_sold"] += r["quantity"]
                c["gross"] += Decimal(str(r["price"]))
            else:
                c["units_returned"] += r["quantity"]
                c["refunds"] += Decimal(str(r["price"]))
    out = [
        {
            "category": name,
            "orders": len(c["orders"]),
            "units_sold": c["units_sold"],
            "gross_revenue": c["gross"],
            "units_returned": c["units_returned"],
            "refunds": c["refunds"],
            "net_revenue": c["gross"] - c["refunds"],
            "return_rate": _rate(c["units_returned"], c["units_sold"]),
        }
        for name, c in per.items()
    ]
    return sorted(out, key=lambda r: (-r["net_revenue"], r["category"]))


def top_products_by_units(ev: Events, start: dt.date, end: dt.date, limit: int) -> list[dict[str, Any]]:
    per: dict[str, dict[str, Any]] = {}
    for r in ev.sales(start, end):
        p = per.setdefault(r["product_id"], {"units": 0, "orders": set(), "gross": Decimal(0), "latest": r})
        p["units"] += r["quantity"]
        p["orders"].add(r["order_id"])
        p["gross"] += Decimal(str(r["price"]))
        if _ts(r["event_ts"]) > _ts(p["latest"]["event_ts"]):
            p["latest"] = r
    out = [
        {
            "product_id": pid,
            "product_name": p["latest"]["product_name"],
            "category": p["latest"]["category"],
            "units_sold": p["units"],
            "orders": len(p["orders"]),
            "gross_revenue": p["gross"],
        }
        for pid, p in per.items()
    ]
    return sorted(out, key=lambda r: (-r["units_sold"], r["product_id"]))[:limit]
