"""Deterministic synthetic inputs for the benchmarks: wire-format events and dimensions.

The events look like the simulator's (same contract, ``beam_pipelines.events``), with
a known share of duplicates and malformed records, so a benchmark can check
conservation (``in = rows + dead letters + duplicates``) on the figures it times.
Files are cached under ``.local/bench/`` keyed on every parameter, because writing
1M events costs ~10 s of CPU that would otherwise be paid on every run.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from beam_pipelines import events

DEFAULT_CACHE = Path(".local/bench")
EVENT_MIX = (("view", 60), ("wishlist", 10), ("add_to_cart", 20), ("order", 8), ("return", 2))
CATEGORIES = ("books", "electronics", "garden", "toys", "fashion", "grocery", "sports", "home")
_BAD_TEMPLATES = (
    b'{"event_id": "truncated", "event_name": "vie',
    b'{"event_id": "x", "event_name": "teleport", "event_ts": "2026-01-01T00:00:00Z"}',
    b"not json at all",
    b"[1, 2, 3]",
    b'{"event_id": "y", "event_name": "view", "event_ts": "yesterday", "user_id": 1, "product_id": 1, "price": 1}',
)


@dataclass(frozen=True)
class Dataset:
    """Paths and expected counts of one generated input."""

    events_path: str
    products_path: str
    users_path: str
    n_events: int
    n_unique_valid: int
    n_duplicates: int
    n_bad: int
    hour_start: str


def default_hour() -> datetime:
    """10:00 UTC yesterday: in the past (the contract rejects future events) yet recent."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=1) + timedelta(hours=10)


def _weighted_names(rng: random.Random, n: int) -> list[str]:
    names = [name for name, _ in EVENT_MIX]
    weights = [w for _, w in EVENT_MIX]
    return rng.choices(names, weights=weights, k=n)


def generate(
    n_events: int,
    *,
    cache_dir: Path = DEFAULT_CACHE,
    duplicate_rate: float = 0.02,
    bad_rate: float = 0.005,
    n_products: int = 5_000,
    n_users: int = 50_000,
    seed: int = 7,
    hour: datetime | None = None,
    order_prefix: str = "",
) -> Dataset:
    """Write (or reuse) ``n_events`` wire-format lines plus products/users JSONL files.

    Of the ``n_events`` lines, ``round(n_events * bad_rate)`` are malformed (each a dead
    letter), ``round(n_events * duplicate_rate)`` repeat an earlier valid line byte for
    byte (a Pub/Sub redelivery), the rest are distinct valid events. ``order_prefix``
    keeps the order ids of several generated hours apart (``o-<prefix><n>``).
    """
    hour = hour or default_hour()
    n_bad = round(n_events * bad_rate)
    n_dup = round(n_events * duplicate_rate)
    n_unique = n_events - n_bad - n_dup
    if n_unique <= 0:
        raise ValueError(f"n_events={n_events} too small for the requested duplicate/bad rates")
    key = f"n{n_events}_d{duplicate_rate}_b{bad_rate}_p{n_products}_u{n_users}_s{seed}_{hour:%Y%m%dT%H}"
    key += f"_o{order_prefix}" if order_prefix else ""
    folder = cache_dir / key
    meta_path = folder / "dataset.json"
    if meta_path.exists():
        return Dataset(**json.loads(meta_path.read_text()))

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    products_path = folder / "products.jsonl"
    users_path = folder / "users.jsonl"
    with open(products_path, "w") as f:
        for pid in range(1, n_products + 1):
            row = {
                "product_id": pid,
                "product_name": f"Product {pid}",
                "category": CATEGORIES[pid % len(CATEGORIES)],
                "price": f"{rng.randint(100, 99_999) / 100:.2f}",
            }
            f.write(json.dumps(row) + "\n")
    with open(users_path, "w") as f:
        for uid in range(1, n_users + 1):
            f.write(json.dumps({"user_id": uid, "user_name": f"user{uid}", "country": "US"}) + "\n")

    # Valid events never run out: a duplicate drawn before any valid line exists
    # becomes a valid event, so there are at most n_events - n_bad of them.
    names = _weighted_names(rng, n_events - n_bad)
    # Positions of duplicates and bad lines, chosen up front so the file interleaves
    # them with the valid events as a real stream would.
    extra = ["dup"] * n_dup + ["bad"] * n_bad
    rng.shuffle(extra)
    kinds = dict(zip(sorted(rng.sample(range(n_events), len(extra))), extra, strict=True))
    start_us = int(hour.timestamp() * 1_000_000)
    sample: list[bytes] = []  # bounded pool of earlier valid lines to duplicate
    tmp = folder / "events.jsonl.tmp"
    next_valid = 0
    with open(tmp, "wb") as f:
        for i in range(n_events):
            kind = kinds.get(i)
            if kind == "bad":
                line = _BAD_TEMPLATES[i % len(_BAD_TEMPLATES)]
            elif kind == "dup" and sample:
                line = sample[rng.randrange(len(sample))]
            else:
                name = names[next_valid]
                next_valid += 1
                ts = datetime.fromtimestamp((start_us + rng.randrange(3_600_000_000)) / 1e6, UTC)
                # Sequential order ids: random ones could collide and turn into duplicates.
                order_id = f"o-{order_prefix}{next_valid:09d}" if name in events.ORDER_EVENTS else None
                event_id = (
                    events.order_line_event_id(order_id, 1, name)
                    if order_id
                    else str(uuid.UUID(int=rng.getrandbits(128), version=4))
                )
                record = {
                    "event_id": event_id,
                    "event_name": name,
                    "event_ts": events.format_ts(ts),
                    "user_id": rng.randint(1, n_users + n_users // 100),  # ~1% unknown users
                    "session_id": f"s-{rng.getrandbits(48):012x}",
                    "product_id": rng.randint(1, n_products),
                    "price": f"{rng.randint(100, 99_999) / 100:.2f}",
                    "quantity": rng.randint(1, 4),
                    "order_id": order_id,
                }
                line = json.dumps(record, separators=(",", ":")).encode()
                if len(sample) < 100_000:
                    sample.append(line)
                else:
                    sample[rng.randrange(100_000)] = line
            f.write(line + b"\n")
    os.replace(tmp, folder / "events.jsonl")
    dataset = Dataset(
        events_path=str(folder / "events.jsonl"),
        products_path=str(products_path),
        users_path=str(users_path),
        n_events=n_events,
        n_unique_valid=next_valid,
        n_duplicates=n_events - n_bad - next_valid,
        n_bad=n_bad,
        hour_start=events.format_ts(hour),
    )
    meta_path.write_text(json.dumps(asdict(dataset), indent=2))
    return dataset
