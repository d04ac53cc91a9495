"""`make demo`: the whole system end to end on the local stack, no cloud account.

Each step says what it does and how long it took. The stack stays up afterwards
so the tables can be queried; `make stack-down` stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from beam_pipelines.local.processes import StackError
from beam_pipelines.local.stack import LocalStack, StackConfig
from bigquery_schemas.client import make_client, query_scalar
from bigquery_schemas.tables import describe_tables, format_table


@dataclass
class DemoContext:
    stack: LocalStack
    args: argparse.Namespace
    window_end: datetime = field(default_factory=lambda: datetime.now(UTC).replace(minute=0, second=0, microsecond=0))

    @property
    def window_start(self) -> datetime:
        return self.window_end - timedelta(hours=self.args.hours)

    @property
    def config(self) -> StackConfig:
        return self.stack.config

    def table(self, name: str) -> str:
        return f"{self.config.project}:{self.config.dataset}.{name}"

    def date_range(self) -> tuple[str, str]:
        """The days (UTC, both inclusive) the demo wrote: its order hours up to the stream's events, now."""
        return self.window_start.date().isoformat(), datetime.now(UTC).date().isoformat()


def explore_commands(ctx: DemoContext) -> list[str]:
    """The analytics and report commands, as a user types them, for exactly the range the demo wrote."""
    start, end = ctx.date_range()
    where = f"--project {ctx.config.project} --dataset {ctx.config.dataset} --start {start} --end {end}"
    analytics = ".venv/bin/python -m bigquery_schemas.analytics"
    return [
        'eval "$(.venv/bin/python -m beam_pipelines.local env)"',
        f"{analytics} run top_products_by_units {where}",
        f"{analytics} run conversion_funnel_daily {where}",
        f"{analytics} report {where} --output report.html",
    ]


def step_stack(ctx: DemoContext) -> None:
    """Bring up the emulators and the orders API; create the topic, subscription, dataset and tables."""
    ctx.stack.up(progress=lambda line: print(line, flush=True))
    os.environ.update(ctx.stack.env())


def _run(ctx: DemoContext, module: str, *args: str) -> None:
    """Run ``python -m module args`` as a user would, with the stack's environment."""
    argv = [sys.executable, "-m", module, *args]
    print("      $ " + " ".join(shlex.quote(a) for a in [Path(argv[0]).name, *argv[1:]]), flush=True)
    subprocess.run(argv, check=True, env={**os.environ, **ctx.stack.env()})


def step_world(ctx: DemoContext) -> None:
    """Generate a catalog and the orders of the demo hours into the SQL source (SQLite)."""
    _run(
        ctx,
        "publishers.catalog",
        "load",
        "--database-url",
        ctx.config.source_url,
        "--products",
        "500",
        "--users",
        "300",
        "--orders",
        str(ctx.args.orders),
        "--seed",
        "7",
        "--start",
        iso(ctx.window_start),
        "--end",
        iso(ctx.window_end),
        "--replace",
    )


def step_extract_dims(ctx: DemoContext) -> None:
    """extract_dims: products and users from SQL into lake snapshots (parallel key ranges)."""
    _run(
        ctx,
        "beam_pipelines.extract_dims",
        "--database_url",
        ctx.config.source_url,
        "--lake_root",
        str(ctx.config.lake_dir),
        "--snapshot_ts",
        iso(ctx.window_end),
    )


def step_extract_orders(ctx: DemoContext) -> None:
    """extract_orders: orders of the demo hours from the REST API into the lake."""
    env = ctx.stack.env()
    _run(
        ctx,
        "beam_pipelines.extract_orders",
        "--api_base_url",
        env["ORDERS_API_URL"],
        "--window_start",
        iso(ctx.window_start),
        "--window_end",
        iso(ctx.window_end),
        "--lake_root",
        str(ctx.config.lake_dir),
    )


def step_hourly(ctx: DemoContext) -> None:
    """hourly: lake extracts + dims -> user_behavior (idempotent per hour), products, users, orders."""
    _run(
        ctx,
        "beam_pipelines.hourly",
        "--window_start",
        iso(ctx.window_start),
        "--window_end",
        iso(ctx.window_end),
        "--lake_root",
        str(ctx.config.lake_dir),
        "--project",
        ctx.config.project,
        "--output_table",
        ctx.table("user_behavior"),
        "--dead_letter_table",
        ctx.table("dead_letter"),
        "--products_table",
        ctx.table("products"),
        "--users_table",
        ctx.table("users"),
        "--orders_table",
        ctx.table("orders"),
    )


def _count(client, ctx: DemoContext, table: str, where: str = "true") -> int:
    sql = f"select count(*) as n from `{ctx.config.project}.{ctx.config.dataset}.{table}` where {where}"
    return query_scalar(client, sql)


def step_streaming(ctx: DemoContext) -> None:
    """streaming: the simulator publishes shoppers (with duplicates and malformed events) to Pub/Sub;
    the streaming job dedupes, enriches and writes them; the counts are checked against the manifest."""
    from beam_pipelines import streaming

    client = make_client(ctx.config.project)
    before_rows = _count(client, ctx, "user_behavior", "source = 'stream'")
    before_dead = _count(client, ctx, "dead_letter", "pipeline = 'streaming'")
    subscription = f"projects/{ctx.config.project}/subscriptions/{ctx.config.subscription}"
    result = streaming.run(
        [
            "--project",
            ctx.config.project,
            "--input_subscription",
            subscription,
            "--output_table",
            ctx.table("user_behavior"),
            "--dead_letter_table",
            ctx.table("dead_letter"),
            "--engagement_table",
            ctx.table("engagement_minutely"),
            "--products_table",
            ctx.table("products"),
            "--users_table",
            ctx.table("users"),
            "--dims_refresh_seconds",
            "30",
        ]
    )
    try:
        manifest_path = ctx.config.root / "demo-manifest.json"
        _run(
            ctx,
            "publishers.simulator",
            "publish",
            "--project",
            ctx.config.project,
            "--topic",
            ctx.config.topic,
            "--count",
            str(ctx.args.events),
            "--rate",
            "100",
            "--seed",
            "11",
            "--duplicate-fraction",
            "0.05",
            "--malformed-fraction",
            "0.03",
            "--late-fraction",
            "0.02",
            "--late-minutes",
            "3",
            "--database-url",
            ctx.config.source_url,
            "--manifest",
            str(manifest_path),
            "--quiet",
        )
        manifest = json.loads(manifest_path.read_text())
        want_rows, want_dead = manifest["unique_valid_events"], manifest["malformed_sent"]
        deadline = time.monotonic() + 180
        while True:
            rows = _count(client, ctx, "user_behavior", "source = 'stream'") - before_rows
            dead = _count(client, ctx, "dead_letter", "pipeline = 'streaming'") - before_dead
            print(f"      rows {rows}/{want_rows}, dead letters {dead}/{want_dead}", flush=True)
            if (rows >= want_rows and dead >= want_dead) or time.monotonic() > deadline:
                break
            time.sleep(3)
    finally:
        # The DirectRunner's cancel waits for its current pull: one message ends that at once.
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        publisher.publish(publisher.topic_path(ctx.config.project, ctx.config.topic), b"{}").result()
        result.cancel()
    print(
        f"      published {manifest['published_total']} messages: {want_rows} unique valid events, "
        f"{manifest['duplicates_sent']} duplicates, {want_dead} malformed, {manifest['late_sent']} late"
    )
    verdict = "match" if (rows, dead) == (want_rows, want_dead) else "DO NOT match"
    print(f"      user_behavior got {rows} stream rows and dead_letter {dead} rows: {verdict} the manifest")
    if verdict != "match":
        raise DemoError("the streaming counts do not match the simulator's manifest")


def step_analytics(ctx: DemoContext) -> None:
    """Create the dedup view, refresh user_profile, print the main business queries, write the report."""
    from bigquery_schemas import analytics

    client = make_client(ctx.config.project)
    analytics.create_views(client, ctx.config.dataset, project=ctx.config.project)
    analytics.refresh_profile(client, ctx.config.dataset, project=ctx.config.project)
    start, end = ctx.date_range()
    for name in (
        "daily_traffic_by_event",
        "orders_revenue_by_date",
        "top_products_by_units",
        "conversion_funnel_daily",
        "avg_spend_per_session",
    ):
        print(f"\n      -- {name} ({start} .. {end})", flush=True)
        _run(
            ctx,
            "bigquery_schemas.analytics",
            "run",
            name,
            "--project",
            ctx.config.project,
            "--dataset",
            ctx.config.dataset,
            "--start",
            start,
            "--end",
            end,
        )
    # The report command the demo prints at its end, run once here so it is known to work.
    report = ctx.config.root / "demo-report.html"
    where = ["--project", ctx.config.project, "--dataset", ctx.config.dataset, "--start", start, "--end", end]
    print(f"\n      -- report ({start} .. {end}) -> {report}", flush=True)
    _run(ctx, "bigquery_schemas.analytics", "report", *where, "--output", str(report))


def step_show_tables(ctx: DemoContext) -> None:
    """List the BigQuery tables with partitioning, clustering and row counts."""
    client = make_client(ctx.config.project)
    print(format_table(describe_tables(client, ctx.config.dataset)))


STEPS: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("Start the local stack", step_stack),
    ("Generate the world", step_world),
    ("Extract dimensions", step_extract_dims),
    ("Extract orders", step_extract_orders),
    ("Hourly batch job", step_hourly),
    ("Streaming job", step_streaming),
    ("Analytics", step_analytics),
    ("Show the BigQuery tables", step_show_tables),
]


class DemoError(RuntimeError):
    """A demo step found a result that is not what it should be."""


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beam_pipelines.demo",
        description="Run every job end to end on the local stack (emulators, SQLite, local lake).",
    )
    parser.add_argument("--down", action="store_true", help="stop the stack at the end (default: leave it up)")
    parser.add_argument("--hours", type=int, default=2, help="demo hours of orders, ending at the current hour")
    parser.add_argument("--orders", type=int, default=300, help="orders to generate in those hours")
    parser.add_argument("--events", type=int, default=600, help="messages the simulator publishes")
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_GCE_CHECK", "true")
    ctx = DemoContext(LocalStack(StackConfig()), args)
    started = time.monotonic()
    try:
        for number, (title, step) in enumerate(STEPS, start=1):
            print(f"\n[{number}/{len(STEPS)}] {title}: {step.__doc__.strip()}", flush=True)
            t0 = time.monotonic()
            step(ctx)
            print(f"      done in {time.monotonic() - t0:.1f} s", flush=True)
    except (StackError, DemoError, subprocess.CalledProcessError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.down:
            ctx.stack.down()
    print(f"\nDemo finished in {time.monotonic() - started:.0f} s.")
    if not args.down:
        print("The stack is still running (make stack-down stops it). Explore what the demo wrote with:")
        for command in explore_commands(ctx):
            print(f"  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
