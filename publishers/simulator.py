"""Publisher simulator: shopper events into Pub/Sub, with duplicates, late and malformed messages.

Generate a live stream from the world of :mod:`publishers.world` (orders are also
written to the SQL source, so the orders API serves them)::

    python -m publishers.simulator publish --project local-ecommerce --topic user-events \\
        --rate 200 --duration 60 --seed 7 --database-url sqlite:///.local/source.db \\
        --duplicate-fraction 0.02 --late-fraction 0.01 --malformed-fraction 0.01 \\
        --manifest .local/manifest.json

Replay a real clickstream file (CSV or JSONL), e.g. the public "eCommerce behavior
data from multi category store" export (event_time, event_type, product_id, price,
user_id, user_session)::

    python -m publishers.simulator replay --project local-ecommerce --topic user-events \\
        --file 2019-Oct-sample.csv --speed 60 --retime

Every message carries the attributes ``event_id`` and ``event_ts`` (a valid
timestamp even on malformed messages, so ``timestamp_attribute`` never fails).
The manifest (``--manifest``) is the ground truth a test or a demo checks the
pipelines against. The emulator is used when ``PUBSUB_EMULATOR_HOST`` is set,
real Pub/Sub otherwise; nothing else changes.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import secrets
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from beam_pipelines import cli, events, preflight
from beam_pipelines.events import format_ts
from beam_pipelines.io import sql
from publishers import malformed, replay
from publishers.cli_types import fraction, non_negative
from publishers.import_files import ImportFailed
from publishers.manifest import Manifest
from publishers.publishing import BatchConfig, JsonlSink, Message, Progress, topic_path
from publishers.sinks import SinkError, SinkOptions, open_sink
from publishers.world import CatalogView, Funnel, Order, World, write_orders

CHUNK_SIZE = 100_000  # messages generated ahead of publishing at a time (bounds memory)
NOMINAL_SPACING = 1e-4  # seconds between event times when publishing as fast as possible
LATE_ELIGIBLE = frozenset({"view", "wishlist", "add_to_cart"})  # order events keep order_ts == event_ts


class SimulatorError(RuntimeError):
    """The run cannot start as asked; the message says what to change."""


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def _share(total: int, part_end: int, whole: int) -> int:
    """How many of ``total`` fall into the first ``part_end`` of ``whole`` (exact over all parts)."""
    return total * part_end // whole if whole else 0


@dataclass
class PlanConfig:
    count: int
    rate: float = 0.0
    duplicate_fraction: float = 0.0
    late_fraction: float = 0.0
    late_minutes: float = 15.0
    malformed_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("duplicate_fraction", "late_fraction", "malformed_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SimulatorError(f"--{name.replace('_', '-')} must be within [0, 1], got {value}")
        if self.count < 0:
            raise SimulatorError(f"--count must be >= 0, got {self.count}")
        if self.rate < 0:
            raise SimulatorError(f"--rate must be >= 0 (0 = as fast as possible), got {self.rate}")
        if self.count and self.n_valid < 1:
            raise SimulatorError(
                "--duplicate-fraction plus --malformed-fraction leave no valid events: keep their sum below 1"
            )
        if self.late_fraction and self.late_minutes <= 0:
            raise SimulatorError(f"--late-minutes must be > 0, got {self.late_minutes}")

    @property
    def n_malformed(self) -> int:
        return round(self.count * self.malformed_fraction)

    @property
    def n_duplicates(self) -> int:
        return round(self.count * self.duplicate_fraction)

    @property
    def n_valid(self) -> int:
        return self.count - self.n_malformed - self.n_duplicates

    @property
    def n_late(self) -> int:
        return round(self.count * self.late_fraction)


class Planner:
    """Builds the messages of a run chunk by chunk, keeping the manifest exact."""

    def __init__(self, catalog: CatalogView, seed: int, config: PlanConfig, funnel: Funnel | None = None):
        self.catalog = catalog
        self.config = config
        self.world = World(catalog, seed, funnel)
        self.rng = random.Random(f"{seed}:simulator")
        self.manifest = Manifest(seed=seed, late_minutes=config.late_minutes)
        self._malformed_index = 0

    def chunks(self, chunk_size: int = CHUNK_SIZE):
        """Yield ``(first_index, messages, orders)`` covering ``config.count`` messages."""
        cfg = self.config
        t0 = datetime.now(UTC)
        for a in range(0, cfg.count, chunk_size):
            b = min(cfg.count, a + chunk_size)
            n_mal = _share(cfg.n_malformed, b, cfg.count) - _share(cfg.n_malformed, a, cfg.count)
            n_dup = _share(cfg.n_duplicates, b, cfg.count) - _share(cfg.n_duplicates, a, cfg.count)
            n_late = _share(cfg.n_late, b, cfg.count) - _share(cfg.n_late, a, cfg.count)
            base = t0 if cfg.rate > 0 else datetime.now(UTC)
            messages, orders = self.plan_chunk(a, b - a, n_mal, n_dup, n_late, base)
            yield a, messages, orders

    def plan_chunk(self, first: int, n: int, n_mal: int, n_dup: int, n_late: int, base: datetime):
        cfg, rng, m = self.config, self.rng, self.manifest
        n_valid = n - n_mal - n_dup
        stretch = n / n_valid  # valid event j is roughly message first + j * stretch
        if cfg.rate > 0:

            def clock(j: int) -> datetime:
                return base + timedelta(seconds=(first + j * stretch) / cfg.rate)
        else:

            def clock(j: int) -> datetime:
                return base + timedelta(seconds=j * stretch * NOMINAL_SPACING)

        result = self.world.live(n_valid, clock)
        evts = result.events
        # Late events: real ones that arrive late, so only those whose time is not an order's time.
        eligible = [j for j, e in enumerate(evts) if e["event_name"] in LATE_ELIGIBLE]
        late = rng.sample(eligible, min(n_late, len(eligible)))
        shift = timedelta(minutes=cfg.late_minutes)
        for j in late:
            evts[j]["event_ts"] = format_ts(events.parse_ts(evts[j]["event_ts"]) - shift)
        m.late_sent += len(late)
        keyed: list[tuple[float, Message]] = []
        for j, e in enumerate(evts):
            m.add_valid(e["event_id"], e["event_name"], e["event_ts"])
            keyed.append((float(j), Message(_encode(e), {"event_id": e["event_id"], "event_ts": e["event_ts"]})))
        # Duplicates: the very same message (data and attributes) again, a little later.
        originals = rng.sample(range(n_valid), n_dup) if n_dup <= n_valid else rng.choices(range(n_valid), k=n_dup)
        for j in originals:
            keyed.append((j + rng.uniform(0.5, 30.0), keyed[j][1]))
        m.duplicates_sent += n_dup
        for _ in range(n_mal):
            pos = rng.uniform(0, n_valid)
            ts = format_ts(clock(int(pos)))
            template = {
                "event_id": str(events_uuid(rng)),
                "event_name": rng.choice(events.EVENT_NAMES),
                "event_ts": ts,
                "user_id": rng.choice(self.catalog.user_ids),
                "session_id": f"s-{events_uuid(rng)}",
                "product_id": rng.choice(self.catalog.product_ids),
                "price": "19.99",
                "quantity": 1,
                "order_id": None,
            }
            reason = malformed.REASONS[self._malformed_index % len(malformed.REASONS)]
            self._malformed_index += 1
            data = malformed.make_malformed(rng, template, reason)
            m.add_malformed(reason)
            keyed.append((pos, Message(data, {"event_id": template["event_id"], "event_ts": ts})))
        keyed.sort(key=lambda kv: kv[0])
        return [msg for _, msg in keyed], result.orders


def events_uuid(rng: random.Random):
    return uuid.UUID(int=rng.getrandbits(128), version=4)


# ---------------------------------------------------------------------------- running


def run_publish(
    planner: Planner, sink_opts: SinkOptions, db: sql.Database | None = None, manifest_path: Path | None = None
) -> Manifest:
    """Generate, write orders (when ``db``), publish; return the manifest (also written to ``manifest_path``)."""
    cfg, m = planner.config, planner.manifest
    sink, target = open_sink(sink_opts)
    m.target, m.planned_total = target, cfg.count
    m.started_at = format_ts(datetime.now(UTC))
    if sink_opts.progress:
        print(
            f"publishing {cfg.count:,} messages to {target}"
            + (f" at {cfg.rate:g} msg/s" if cfg.rate else " as fast as possible"),
            file=sys.stderr,
        )
    progress = Progress(cfg.count, enabled=sink_opts.progress)
    schedule = (lambda i: i / cfg.rate) if cfg.rate > 0 else None
    t0 = time.monotonic()
    try:
        for first, messages, orders in planner.chunks():
            if db is not None and orders:
                m.orders_written += write_orders(db, orders)
            stats = sink.send(messages, schedule=schedule, progress=progress, offset=first, start=t0)
            m.published_total += stats.sent
            m.publish_errors += stats.errors
            progress.base, progress.errors = m.published_total, m.publish_errors
            for sample in stats.error_samples:
                print(f"publish error: {sample}", file=sys.stderr)
    finally:
        m.seconds = round(time.monotonic() - t0, 3)
        m.publish_rate = round(m.published_total / m.seconds, 1) if m.seconds else 0.0
        m.finished_at = format_ts(datetime.now(UTC))
        progress.report(m.published_total, m.publish_errors, final=True)
        if isinstance(sink, JsonlSink):
            sink.close()
        if manifest_path:
            m.write(manifest_path)
    return m


# ---------------------------------------------------------------------------- CLI


def _add_sink_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("destination (Pub/Sub emulator when PUBSUB_EMULATOR_HOST is set, else Google Cloud)")
    g.add_argument("--project", help="Google Cloud project id of the topic (local stack: local-ecommerce)")
    g.add_argument("--topic", help="topic id (local stack: user-events) or projects/<project>/topics/<topic>")
    g.add_argument("--create-topic", action="store_true", help="create the topic if it does not exist")
    g.add_argument(
        "--output-jsonl",
        type=Path,
        metavar="PATH",
        help="write each message's data as one line of PATH instead of publishing",
    )
    g.add_argument(
        "--batch-max-messages",
        type=non_negative(int),
        default=1000,
        help="client batch size in messages (default 1000)",
    )
    g.add_argument(
        "--batch-max-latency",
        type=non_negative(float),
        default=0.05,
        help="seconds the client waits to fill a batch (default 0.05)",
    )
    g.add_argument("--manifest", type=Path, metavar="PATH", help="write the run's ground-truth JSON here")
    g.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m publishers.simulator",
        description="Publish simulated or replayed e-commerce events to Pub/Sub (or a JSONL file), "
        "with exact ground truth in a manifest.",
    )
    parser.add_argument(cli.VERBOSE_FLAG, action="store_true", help="print the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pub = sub.add_parser(
        "publish",
        help="generate shopper sessions and publish their events",
        description="Generate shopper sessions (view -> wishlist/add_to_cart -> order -> return) over the "
        "catalog and publish their events; orders are written to --database-url so the orders API "
        "serves them. --count is the total number of messages, including duplicates and malformed ones.",
    )
    amount = pub.add_mutually_exclusive_group(required=True)
    amount.add_argument("--count", type=non_negative(int), help="messages to publish in total")
    amount.add_argument("--duration", type=non_negative(float), help="seconds to publish for (needs --rate > 0)")
    pub.add_argument(
        "--rate", type=non_negative(float), default=100.0, help="messages per second; 0 = as fast as possible"
    )
    pub.add_argument("--seed", type=int, help="random seed (default: random; recorded in the manifest)")
    pub.add_argument(
        "--duplicate-fraction",
        type=fraction,
        default=0.0,
        help="fraction of messages that re-send an earlier message unchanged",
    )
    pub.add_argument(
        "--late-fraction",
        type=fraction,
        default=0.0,
        help="fraction of messages that are valid events with event_ts --late-minutes in the past",
    )
    pub.add_argument("--late-minutes", type=non_negative(float), default=15.0, help="how late a late event is")
    pub.add_argument(
        "--malformed-fraction",
        type=fraction,
        default=0.0,
        help="fraction of messages that break the event contract (each checked to fail parsing)",
    )
    src = pub.add_argument_group("catalog")
    src.add_argument(
        "--database-url",
        help=f"SQL source to draw products/users from and write orders to "
        f"({sql.URL_FORMATS}); without it a synthetic catalog is used and no orders are stored",
    )
    src.add_argument(
        "--products", type=non_negative(int), default=1000, help="synthetic catalog size when no --database-url"
    )
    src.add_argument(
        "--users", type=non_negative(int), default=1000, help="synthetic user count when no --database-url"
    )
    fun = pub.add_argument_group("funnel probabilities")
    default = Funnel()
    fun.add_argument("--mean-views", type=float, default=default.mean_views, help="mean views per session")
    fun.add_argument("--p-wishlist", type=fraction, default=default.p_wishlist, help="per viewed product")
    fun.add_argument("--p-add-to-cart", type=fraction, default=default.p_add_to_cart, help="per viewed product")
    fun.add_argument("--p-order", type=fraction, default=default.p_order, help="per session with a cart")
    fun.add_argument("--p-return", type=fraction, default=default.p_return, help="per order")
    _add_sink_args(pub)

    rep = sub.add_parser(
        "replay",
        help="publish the rows of a real clickstream file (CSV or JSONL)",
        description=replay.DESCRIPTION,
    )
    replay.add_arguments(rep)
    _add_sink_args(rep)
    return parser


def _sink_options(args: argparse.Namespace) -> SinkOptions:
    if args.batch_max_messages < 1:
        raise SimulatorError("--batch-max-messages must be >= 1")
    return SinkOptions(
        project=args.project,
        topic=args.topic,
        output_jsonl=args.output_jsonl,
        create_topic=args.create_topic,
        batch=BatchConfig(max_messages=args.batch_max_messages, max_latency=args.batch_max_latency),
        progress=not args.quiet,
    )


def main_publish(args: argparse.Namespace) -> int:
    if args.duration is not None:
        if args.rate <= 0:
            raise SimulatorError("--duration needs a --rate above 0 (or use --count with --rate 0)")
        count = math.ceil(args.duration * args.rate)
    else:
        count = args.count
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    config = PlanConfig(
        count=count,
        rate=args.rate,
        duplicate_fraction=args.duplicate_fraction,
        late_fraction=args.late_fraction,
        late_minutes=args.late_minutes,
        malformed_fraction=args.malformed_fraction,
    )
    funnel = Funnel(
        mean_views=args.mean_views,
        p_wishlist=args.p_wishlist,
        p_add_to_cart=args.p_add_to_cart,
        p_order=args.p_order,
        p_return=args.p_return,
    )
    sink_opts = _sink_options(args)
    db = None
    try:
        if args.database_url:
            db = sql.connect(args.database_url)
            catalog = CatalogView.from_database(db)
        else:
            catalog = CatalogView.generated(seed, max(1, args.products), max(1, args.users), datetime.now(UTC))
        manifest = run_publish(Planner(catalog, seed, config, funnel), sink_opts, db, args.manifest)
    finally:
        if db is not None:
            db.close()
    summary = {k: v for k, v in manifest.to_json().items() if k != "valid_event_ids"}
    print(json.dumps(summary))
    return 1 if manifest.publish_errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.topic and not args.output_jsonl and not getattr(args, "lake_root", None):
            # Before the catalog and any client: with the stack down the client would retry
            # for minutes, and with neither emulator nor credentials print a 34-line traceback.
            path = topic_path(args.project, args.topic)
            preflight.require_service(preflight.PUBSUB_ENV, f"publishing to {path}")
        if args.command == "publish":
            return main_publish(args)
        return replay.main_replay(args, _sink_options(args))
    except ImportFailed as failed:
        for error in failed.errors[:20]:
            print(f"error: {error.line()}", file=sys.stderr)
        print(f"import of the file's products and users failed: {failed}", file=sys.stderr)
        return 2
    except (SimulatorError, SinkError, sql.DatabaseURLError, ConnectionError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except preflight.PreflightError as exc:
        cli.report_error(str(exc), None, args.verbose, "publishers.simulator")
        return cli.EXIT_NOT_READY
    except Exception as exc:
        resources = [args.topic, getattr(args, "database_url", None), getattr(args, "file", None)]
        summary = cli.failure_summary("simulator", exc, [str(r) for r in resources if r])
        cli.report_error(summary, exc, args.verbose, "publishers.simulator")
        return cli.EXIT_FAILED


__all__ = ["Manifest", "Order", "PlanConfig", "Planner", "run_publish"]

if __name__ == "__main__":
    sys.exit(main())
