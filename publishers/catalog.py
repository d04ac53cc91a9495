"""The product and user catalog of the SQL source: seeded, reproducible, fast to load.

Load a catalog (and optionally a window of generated orders) into SQLite or PostgreSQL::

    python -m publishers.catalog load --database-url sqlite:///.local/source.db \\
        --products 10000 --users 5000 --orders 2000 --seed 42 \\
        --start 2026-11-22T00:00:00Z --end 2026-11-23T00:00:00Z

The same seed and window give identical rows on SQLite and PostgreSQL. Faker only
fills small word pools once; each row is then composed from those pools with one
seeded ``random.Random``, so a million products take seconds, not minutes.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from faker import Faker

from beam_pipelines import cli
from beam_pipelines.events import format_ts
from beam_pipelines.io import sql
from publishers.cli_types import iso_utc, non_negative

PRODUCT_COLUMNS = ("product_id", "product_name", "category", "price", "updated_at")
USER_COLUMNS = ("user_id", "user_name", "email", "signup_date", "country", "updated_at")

# category -> (weight, price range in USD, nouns); adjectives are shared.
CATEGORIES: dict[str, tuple[int, tuple[float, float], tuple[str, ...]]] = {
    "electronics": (
        14,
        (9.0, 1800.0),
        (
            "Headphones",
            "Smartphone",
            "Laptop",
            "Tablet",
            "Smartwatch",
            "Speaker",
            "Monitor",
            "Keyboard",
            "Mouse",
            "Camera",
            "Charger",
            "Earbuds",
        ),
    ),
    "home": (
        12,
        (5.0, 900.0),
        (
            "Lamp",
            "Blender",
            "Kettle",
            "Vacuum",
            "Pillow",
            "Blanket",
            "Toaster",
            "Rug",
            "Mirror",
            "Clock",
            "Coffee Maker",
            "Fan",
        ),
    ),
    "apparel": (
        16,
        (6.0, 350.0),
        (
            "T-Shirt",
            "Jeans",
            "Jacket",
            "Dress",
            "Sneakers",
            "Hoodie",
            "Scarf",
            "Boots",
            "Cap",
            "Sweater",
            "Shorts",
            "Coat",
        ),
    ),
    "beauty": (
        8,
        (3.0, 180.0),
        ("Shampoo", "Face Cream", "Lipstick", "Perfume", "Serum", "Hair Dryer", "Nail Polish", "Sunscreen", "Cleanser"),
    ),
    "sports": (
        8,
        (5.0, 1200.0),
        (
            "Yoga Mat",
            "Dumbbell",
            "Bicycle",
            "Tennis Racket",
            "Running Shoes",
            "Football",
            "Backpack",
            "Tent",
            "Water Bottle",
            "Helmet",
        ),
    ),
    "toys": (
        6,
        (3.0, 250.0),
        ("Puzzle", "Building Set", "Doll", "Board Game", "RC Car", "Plush Bear", "Action Figure", "Kite"),
    ),
    "books": (7, (4.0, 90.0), ("Novel", "Cookbook", "Biography", "Atlas", "Guide", "Notebook", "Comic", "Dictionary")),
    "grocery": (
        9,
        (1.0, 60.0),
        ("Coffee Beans", "Olive Oil", "Green Tea", "Pasta", "Honey", "Chocolate", "Granola", "Spice Mix"),
    ),
    "garden": (5, (4.0, 700.0), ("Hose", "Planter", "Shovel", "Lawn Mower", "Seeds", "Grill", "Hammock", "Pruner")),
    "automotive": (
        4,
        (5.0, 600.0),
        ("Car Charger", "Floor Mats", "Dash Cam", "Tire Inflator", "Wiper Blades", "Seat Cover", "Jump Starter"),
    ),
    "pet": (5, (2.0, 250.0), ("Dog Bed", "Cat Tree", "Leash", "Pet Food", "Aquarium", "Chew Toy", "Litter Box")),
    "office": (
        6,
        (1.0, 500.0),
        ("Desk Chair", "Stapler", "Pen Set", "Desk", "Organizer", "Printer Paper", "Whiteboard"),
    ),
}
ADJECTIVES = (
    "Classic",
    "Premium",
    "Compact",
    "Wireless",
    "Organic",
    "Ergonomic",
    "Deluxe",
    "Eco",
    "Smart",
    "Portable",
    "Vintage",
    "Ultra",
    "Essential",
    "Pro",
    "Lightweight",
    "Handcrafted",
    "Modern",
    "Rugged",
    "Soft",
    "Mini",
)
COLORS = ("Black", "White", "Red", "Blue", "Green", "Grey", "Navy", "Beige", "Pink", "Silver", "Gold", "Olive")

# ISO 3166-1 alpha-2 with rough shares of an international shop's customers.
COUNTRIES = {
    "US": 34,
    "GB": 9,
    "DE": 9,
    "FR": 7,
    "CA": 5,
    "IN": 6,
    "BR": 5,
    "ES": 4,
    "IT": 4,
    "NL": 3,
    "AU": 3,
    "JP": 3,
    "MX": 2,
    "PL": 2,
    "SE": 1,
    "IE": 1,
    "PT": 1,
    "BE": 1,
}
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "shop.example")

POOL_SIZE = 400


def _sub_rng(seed: int, purpose: str) -> random.Random:
    # String seeds are hashed with SHA-512: stable across processes and platforms.
    return random.Random(f"{seed}:{purpose}")


def _faker(seed: int) -> Faker:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    return fake


def _ts_strings(rng: random.Random, start: datetime, end: datetime, n: int) -> Iterator[str]:
    """``n`` random canonical timestamps in ``[start, end)`` (microsecond resolution)."""
    base = int(start.timestamp() * 1_000_000)
    span = max(1, int((end - start).total_seconds() * 1_000_000))
    gmtime = time.gmtime
    strftime = time.strftime
    for _ in range(n):
        us = base + int(rng.random() * span)
        sec, frac = divmod(us, 1_000_000)
        yield f"{strftime('%Y-%m-%dT%H:%M:%S', gmtime(sec))}.{frac:06d}Z"


@dataclass(frozen=True)
class CatalogWindow:
    """When catalog rows were last updated: the 30 days before ``as_of``."""

    as_of: datetime

    @property
    def start(self) -> datetime:
        return self.as_of - timedelta(days=30)


def generate_products(seed: int, n: int, as_of: datetime) -> Iterator[tuple]:
    """Rows ``(product_id, product_name, category, price, updated_at)`` for ids ``"1"``..``"n"``.

    ``price`` is a 2-decimal string, ``updated_at`` a canonical UTC string before ``as_of``.
    """
    rng = _sub_rng(seed, "products")
    fake = _faker(seed)
    brands = sorted({fake.last_name() for _ in range(POOL_SIZE)})
    names = list(CATEGORIES)
    weights = [CATEGORIES[c][0] for c in names]
    cum = [sum(weights[: i + 1]) for i in range(len(weights))]
    total = cum[-1]
    log_ranges = {c: (math.log(CATEGORIES[c][1][0]), math.log(CATEGORIES[c][1][1])) for c in names}
    nouns = {c: CATEGORIES[c][2] for c in names}
    stamps = _ts_strings(rng, CatalogWindow(as_of).start, as_of, n)
    rand = rng.random
    endings = ("99", "49", "95", "00", "99", "99")
    for product_id in range(1, n + 1):
        r = rand() * total
        ci = 0
        while cum[ci] <= r:
            ci += 1
        category = names[ci]
        lo, hi = log_ranges[category]
        whole = int(math.exp(lo + (hi - lo) * rand()))
        price = f"{whole}.{endings[int(rand() * 6)]}"
        noun = nouns[category]
        name = (
            f"{brands[int(rand() * len(brands))]} {ADJECTIVES[int(rand() * len(ADJECTIVES))]} "
            f"{COLORS[int(rand() * len(COLORS))]} {noun[int(rand() * len(noun))]}"
        )
        yield (str(product_id), name, category, price, next(stamps))


def generate_users(seed: int, n: int, as_of: datetime) -> Iterator[tuple]:
    """Rows ``(user_id, user_name, email, signup_date, country, updated_at)`` for ids ``"1"``..``"n"``.

    E-mails embed the user id, so they are unique however many users there are.
    """
    rng = _sub_rng(seed, "users")
    fake = _faker(seed + 1)
    firsts = sorted({fake.first_name() for _ in range(POOL_SIZE)})
    lasts = sorted({fake.last_name() for _ in range(POOL_SIZE)})
    countries = list(COUNTRIES)
    cweights = list(COUNTRIES.values())
    country_draws = rng.choices(countries, cweights, k=n)
    first_day = (as_of - timedelta(days=3 * 365)).date()
    days = (as_of.date() - first_day).days
    stamps = _ts_strings(rng, CatalogWindow(as_of).start, as_of, n)
    rand = rng.random
    for user_id in range(1, n + 1):
        first = firsts[int(rand() * len(firsts))]
        last = lasts[int(rand() * len(lasts))]
        domain = EMAIL_DOMAINS[int(rand() * len(EMAIL_DOMAINS))]
        email = f"{first}.{last}.{user_id}@{domain}".lower().replace(" ", "").replace("'", "")
        signup = (first_day + timedelta(days=int(rand() * days))).isoformat()
        yield (str(user_id), f"{first} {last}", email, signup, country_draws[user_id - 1], next(stamps))


def product_prices(seed: int, n: int, as_of: datetime) -> list[str]:
    """Just the prices of :func:`generate_products`, in its order (ids ``"1"``..``"n"``)."""
    return [row[3] for row in generate_products(seed, n, as_of)]


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
    from publishers.world import CatalogView, World

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
    from publishers.world import LINE_COLUMNS, ORDER_COLUMNS

    n_o = db.bulk_load("orders", ORDER_COLUMNS, (o.order_row() for o in orders))
    n_l = db.bulk_load("order_lines", LINE_COLUMNS, (line for o in orders for line in o.line_rows()))
    return n_o, n_l


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
    import json

    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
