"""The seeded rows of the product and user catalog: reproducible, fast to generate.

:func:`generate_products` and :func:`generate_users` yield the rows that
:mod:`publishers.catalog` loads into the SQL source; :func:`product_prices` gives the
prices alone, which :meth:`publishers.world.CatalogView.generated` draws from without a
database. The same seed and ``as_of`` give identical rows in every process and on every
platform. Faker only fills small word pools once; each row is then composed from those
pools with one seeded ``random.Random``, so a million products take seconds, not minutes.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faker import Faker

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
    # Lazy: Faker takes ~110 ms to import (python -X importtime), and publishers.world imports this
    # module for every simulator run and the orders API, which need it only for a generated catalog.
    from faker import Faker

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
