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

from beam_pipelines import cli
from beam_pipelines.local.processes import StackError
from beam_pipelines.local.stack import LocalStack, StackConfig
from bigquery_schemas.client import make_client, query_scalar
from bigquery_schemas.tables import describe_tables


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
        f"{analytics} report {where}",  # writes reports/report-<start>-<end>.html (ignored by git)
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


ENGAGEMENT_CHECK_SQL = """
with stream_rows as (
    select * from `{dedup}` where source = 'stream' and ingest_ts >= @since
),

expected as (
    select
        timestamp_trunc(event_ts, minute) as window_start,
        event_name,
        count(*) as events,
        count(distinct user_id) as unique_users,
        count(distinct session_id) as unique_sessions,
        sum(if(event_name = 'order', price, 0)) as revenue
    from stream_rows
    group by 1, 2
),

final_panes as (
    select window_start, event_name, events, unique_users, unique_sessions, revenue
    from `{engagement}`
    where emitted_ts >= @since
    qualify row_number() over (partition by window_start, event_name order by pane_index desc) = 1
)

select
    e.window_start,
    e.event_name,
    e.events,
    e.unique_users,
    e.unique_sessions,
    e.revenue,
    f.events as pane_events,
    f.unique_users as pane_users,
    f.unique_sessions as pane_sessions,
    f.revenue as pane_revenue
from expected as e
left join final_panes as f using (window_start, event_name)
order by 1, 2
"""


def engagement_mismatches(client, ctx: DemoContext, since: datetime) -> tuple[int, int, list[str]]:
    """(windows checked, pane rows, mismatches) of engagement_minutely's final panes against the dedup view."""
    from google.cloud import bigquery

    from bigquery_schemas.client import query_rows

    sql = ENGAGEMENT_CHECK_SQL.format(
        dedup=f"{ctx.config.project}.{ctx.config.dataset}.user_behavior_dedup",
        engagement=f"{ctx.config.project}.{ctx.config.dataset}.engagement_minutely",
    )
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("since", "TIMESTAMP", since)])
    rows = list(client.query(sql, job_config=config).result())
    engagement = f"{ctx.config.project}.{ctx.config.dataset}.engagement_minutely"
    count_sql = f"select count(*) as n from `{engagement}` where emitted_ts >= @since"
    pane_rows = query_rows(client, count_sql, config)[0]["n"]
    bad = []
    for r in rows:
        want = (r["events"], r["unique_users"], r["unique_sessions"], float(r["revenue"]))
        got = (r["pane_events"], r["pane_users"], r["pane_sessions"], float(r["pane_revenue"] or 0))
        if want != got:
            bad.append(f"{r['window_start']:%H:%M} {r['event_name']}: view {want}, final pane {got}")
    return len(rows), pane_rows, bad


def step_streaming(ctx: DemoContext) -> None:
    """streaming: the simulator publishes shoppers (with duplicates and malformed events) to Pub/Sub;
    the streaming job dedupes, enriches and writes them and archives every message in the lake;
    the counts are checked against the manifest and the engagement panes against the dedup view."""
    import threading

    from beam_pipelines import streaming
    from bigquery_schemas import analytics

    client = make_client(ctx.config.project)
    analytics.create_views(client, ctx.config.dataset, project=ctx.config.project)
    since = datetime.now(UTC)
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
            "--lake_root",
            str(ctx.config.lake_dir),
            "--dims_refresh_seconds",
            "30",
        ]
    )
    stop = threading.Event()
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
            # A new seed per run: the same seed makes the same event ids, and a second
            # demo's events would hide behind the first's in user_behavior_dedup.
            str(int(since.timestamp())),
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
        # Engagement panes fire ON_TIME when the watermark (the wall clock at each pull,
        # locally) passes a minute's end: wait for the last minute of the demo's events.
        last_minute_end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        wait = (last_minute_end - datetime.now(UTC)).total_seconds() + 5
        print(f"      waiting {wait:.0f} s for the last engagement minute to close", flush=True)
        time.sleep(max(wait, 0))
        deadline = time.monotonic() + 60
        while True:
            windows, pane_rows, mismatches = engagement_mismatches(client, ctx, since)
            if (windows and not mismatches) or time.monotonic() > deadline:
                break
            time.sleep(3)
    finally:
        stop.set()
        values = streaming.run_until_stopped(result, stop)
    print(
        f"      published {manifest['published_total']} messages: {want_rows} unique valid events, "
        f"{manifest['duplicates_sent']} duplicates, {want_dead} malformed, {manifest['late_sent']} late"
    )
    verdict = "match" if (rows, dead) == (want_rows, want_dead) else "DO NOT match"
    print(f"      user_behavior got {rows} stream rows and dead_letter {dead} rows: {verdict} the manifest")
    if verdict != "match":
        raise DemoError("the streaming counts do not match the simulator's manifest")
    if values.get("records_in") != manifest["published_total"]:
        raise DemoError(
            f"the job read {values.get('records_in')} messages; the simulator published {manifest['published_total']}"
        )
    print(
        f"      engagement_minutely got {pane_rows} pane rows for {windows} (minute, event_name) windows; "
        + ("every final pane equals the dedup view" if not mismatches else f"{len(mismatches)} DO NOT match")
    )
    for line in mismatches[:10]:
        print(f"        {line}")
    if not windows or mismatches:
        raise DemoError("engagement_minutely's final panes do not match user_behavior_dedup")


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
    print(cli.format_table(describe_tables(client, ctx.config.dataset)))


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
    parser = cli.ArgumentParser(
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
