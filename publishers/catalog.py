"""Fill the SQL source: a seeded catalog and, optionally, a window of generated orders.

Load a catalog (and optionally a window of generated orders) into SQLite or PostgreSQL::

    python -m publishers.catalog load --database-url sqlite:///.local/source.db \\
        --products 10000 --users 5000 --orders 2000 --seed 42 \\
        --start 2026-11-22T00:00:00Z --end 2026-11-23T00:00:00Z

The same seed and window give identical rows on SQLite and PostgreSQL: the products
and users are those of :mod:`publishers.catalog_rows`, the orders those that
:mod:`publishers.world` sessions place over them. :func:`build_world` does the same
for tests and benchmarks and returns the world's orders and events as ground truth.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from beam_pipelines import cli
from beam_pipelines.events import format_ts
from beam_pipelines.io import sql
from publishers.catalog_rows import PRODUCT_COLUMNS, USER_COLUMNS, generate_products, generate_users
from publishers.cli_types import iso_utc, non_negative
from publishers.world import LINE_COLUMNS, ORDER_COLUMNS, CatalogView, Funnel, World, WorldResult, write_orders

# ---------------------------------------------------------------------------- load


class CatalogError(RuntimeError):
    """The catalog cannot be loaded as asked; the message says what to do."""


def load(
    db: sql.Database,
    *,
    seed: int,
    n_products: int,
    n_users: int,
    n_orders: int = 0,
    start: datetime,
    end: datetime,
    replace: bool = False,
    log=None,
) -> dict:
    """Create the schema and load products, users and (optionally) a window of orders.

    Catalog rows are updated in the 30 days before ``start``; orders are placed in
    ``[start, end)`` by :mod:`publishers.world` sessions over this catalog.

    Returns:
      ``{"products": n, "users": n, "orders": n, "order_lines": n, "seconds": {...}}``.
    """
    if n_products < 1 or n_users < 1:
        raise CatalogError("need at least 1 product and 1 user (--products, --users)")
    if n_orders and end <= start:
        raise CatalogError(f"--end ({format_ts(end)}) must be after --start ({format_ts(start)})")
    say = log or (lambda _msg: None)
    sql.create_schema(db, drop_existing=replace)
    counts = sql.table_counts(db)
    if any(counts.values()):
        raise CatalogError(
            f"{db!r} already holds data ({counts}); pass --replace to drop and reload it, "
            "or load into an empty database"
        )
    timings: dict[str, float] = {}
    prices: list[str] = []

    def tap_prices(rows: Iterator[tuple]) -> Iterator[tuple]:
        for row in rows:
            prices.append(row[3])
            yield row

    t0 = time.perf_counter()
    n_p = db.bulk_load("products", PRODUCT_COLUMNS, tap_prices(generate_products(seed, n_products, start)))
    timings["products"] = round(time.perf_counter() - t0, 3)
    say(f"loaded {n_p:,} products in {timings['products']:.2f} s")
    t0 = time.perf_counter()
    n_u = db.bulk_load("users", USER_COLUMNS, generate_users(seed, n_users, start))
    timings["users"] = round(time.perf_counter() - t0, 3)
    say(f"loaded {n_u:,} users in {timings['users']:.2f} s")
    n_o = n_l = 0
    if n_orders:
        t0 = time.perf_counter()
        world = World(CatalogView(list(range(1, n_products + 1)), prices, list(range(1, n_users + 1))), seed)
        result = world.window(start, end, n_orders, with_events=False)
        n_o, n_l = world_write_new(db, result.orders)
        timings["orders"] = round(time.perf_counter() - t0, 3)
        say(f"generated and loaded {n_o:,} orders ({n_l:,} lines) in {timings['orders']:.2f} s")
    return {"products": n_p, "users": n_u, "orders": n_o, "order_lines": n_l, "seconds": timings}


def world_write_new(db: sql.Database, orders) -> tuple[int, int]:
    """Bulk-load orders into empty order tables (fast path of :func:`publishers.world.write_orders`)."""
    n_o = db.bulk_load("orders", ORDER_COLUMNS, (o.order_row() for o in orders))
    n_l = db.bulk_load("order_lines", LINE_COLUMNS, (line for o in orders for line in o.line_rows()))
    return n_o, n_l


def build_world(
    database_url: str,
    seed: int,
    n_products: int,
    n_users: int,
    n_orders: int,
    window: tuple[datetime, datetime],
    *,
    funnel: Funnel | None = None,
    replace: bool = True,
    with_events: bool = True,
) -> WorldResult:
    """Load a catalog and place ``n_orders`` orders in ``window`` into ``database_url``.

    Returns the world's events and orders (ground truth for tests): the database
    then holds exactly ``result.orders``, and ``result.events`` are the stream
    events of the same sessions (order/return events share ids with the API lines;
    ``with_events=False`` skips them, same orders, faster).
    """
    start, end = window
    with sql.connect(database_url) as db:
        load(db, seed=seed, n_products=n_products, n_users=n_users, n_orders=0, start=start, end=end, replace=replace)
        world = World(CatalogView.from_database(db), seed, funnel)
        result = world.window(start, end, n_orders, with_events=with_events)
        write_orders(db, result.orders)
    return result


# ---------------------------------------------------------------------------- CLI


def default_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last 24 whole hours before now."""
    end = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(days=1), end


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m publishers.catalog",
        description="Create and fill the SQL source (products, users, orders, order_lines) with a "
        "seeded, reproducible catalog. The same seed and window give identical rows on SQLite and PostgreSQL.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    load_p = sub.add_parser(
        "load",
        help="create the schema and load products, users and optionally orders",
        description="Create the schema and bulk-load a generated catalog (PostgreSQL: COPY; SQLite: one "
        "transaction). Catalog rows get updated_at in the 30 days before --start; --orders orders are "
        "placed by simulated shopper sessions in [--start, --end).",
    )
    load_p.add_argument("--database-url", required=True, help=f"target database: {sql.URL_FORMATS}")
    load_p.add_argument("--products", type=non_negative(int), default=1000, help="number of products (default 1000)")
    load_p.add_argument("--users", type=non_negative(int), default=1000, help="number of users (default 1000)")
    load_p.add_argument("--orders", type=non_negative(int), default=0, help="number of orders to place (default 0)")
    load_p.add_argument("--seed", type=int, default=42, help="random seed; same seed -> same rows (default 42)")
    load_p.add_argument(
        "--start",
        type=iso_utc,
        help="orders window start, ISO-8601 UTC (default: 24 h before "
        "the current hour; pass it explicitly for reproducible timestamps)",
    )
    load_p.add_argument("--end", type=iso_utc, help="orders window end, exclusive (default: the current hour)")
    load_p.add_argument("--replace", action="store_true", help="drop the four tables first (all their data is lost)")
    schema_p = sub.add_parser(
        "schema",
        help="create the tables and indexes only (idempotent)",
        description="Create products, users, orders and order_lines if missing.",
    )
    schema_p.add_argument("--database-url", required=True, help=f"target database: {sql.URL_FORMATS}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sql.connect(args.database_url) as db:
            if args.command == "schema":
                sql.create_schema(db)
                print(f"schema ready in {db!r}", file=sys.stderr)
                return 0
            start, end = default_window()
            start = args.start or (args.end - timedelta(days=1) if args.end else start)
            end = args.end or (args.start + timedelta(days=1) if args.start else end)
            summary = load(
                db,
                seed=args.seed,
                n_products=args.products,
                n_users=args.users,
                n_orders=args.orders,
                start=start,
                end=end,
                replace=args.replace,
                log=lambda m: print(m, file=sys.stderr),
            )
    except (sql.DatabaseURLError, ConnectionError, CatalogError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
