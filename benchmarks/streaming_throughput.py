"""Streaming job throughput and publish->row latency on the local emulators (a script, not a test).

Starts its own Pub/Sub and BigQuery emulators on free ports, then measures in one run:

1. bare:  ReadFromPubSub -> append to a local file (the runner's Pub/Sub read ceiling), on
   the stock BundleBasedDirectRunner and on the one tuned by
   ``beam_pipelines.direct_runner_tuning``, which the job and every later case use
   (``--stock-runner``: all cases on the stock runner);
2. with ``--stages``: the job cut after each stage (read -> parse -> file, + dedupe,
   + enrich with the refreshed side inputs, + the user_behavior BigQuery sink), so
   the cost of each stage shows side by side with the bare read;
3. job:   the full streaming job (parse, dedupe, enrich, BigQuery streaming inserts, engagement);
4. latency of the job at a paced --rate: publish time -> row visible in BigQuery (polled
   every 0.1 s, so figures carry ~0.05 s of polling error).

Throughput = N pre-published messages / seconds from pipeline start until all N are out.

    NO_GCE_CHECK=true .venv/bin/python -m benchmarks.streaming_throughput \
        --messages 2000 --rate 100 --seconds 15 --stages

Profile one stage: ``.venv/bin/py-spy record --idle -o /tmp/p.txt --format raw -- .venv/bin/python -m
benchmarks.streaming_throughput --stages bigquery --skip-job --skip-latency`` then
``python -m benchmarks.profile_summary /tmp/p.txt`` (``--idle`` shows the blocking Pub/Sub pull).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import events, streaming
from beam_pipelines.bq_local import use_bigquery_emulator
from beam_pipelines.direct_runner_tuning import restore_stock_runner, tune_bundle_based_direct_runner
from beam_pipelines.local.processes import stop_process
from beam_pipelines.local.pubsub_admin import ensure_subscription, ensure_topic
from beam_pipelines.local.services import start_bigquery, start_pubsub
from beam_pipelines.local.stack import DEFAULT_ROOT
from bigquery_schemas.client import make_client, query_scalar
from bigquery_schemas.ddl import ensure_all

PROJECT = "local-ecommerce"


def _record(i: int) -> dict:
    name = ("view", "add_to_cart", "wishlist", "order")[i % 4]
    return {
        "event_id": str(uuid.uuid4()),
        "event_name": name,
        "event_ts": events.format_ts(datetime.now(UTC)),
        "user_id": 1 + i % 50,
        "session_id": f"s-{i % 200}",
        "product_id": 1 + i % 100,
        "price": "9.99",
        "quantity": 1,
        "order_id": f"o-{i}" if name == "order" else None,
    }


def _publish(publisher, topic: str, n: int, rate: float | None = None) -> dict[str, float]:
    sent: dict[str, float] = {}
    futures = []
    start = time.monotonic()
    for i in range(n):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        rec = _record(i)
        sent[rec["event_id"]] = time.time()
        futures.append(
            publisher.publish(topic, json.dumps(rec).encode(), event_id=rec["event_id"], event_ts=rec["event_ts"])
        )
    for f in futures:
        f.result(timeout=60)
    return sent


class _AppendFn(beam.DoFn):
    """Append each element's event_id (Pub/Sub attribute or dict key) to a file."""

    def __init__(self, path: str):
        self._path = path

    def setup(self):
        self._f = open(self._path, "a")  # noqa: SIM115 - closed in teardown

    def process(self, element):
        event_id = element["event_id"] if isinstance(element, dict) else element.attributes["event_id"]
        self._f.write(event_id + "\n")

    def finish_bundle(self):
        self._f.flush()

    def teardown(self):
        self._f.close()


def _stop(result, publisher, topic):
    publisher.publish(topic, b"stop").result(timeout=10)  # makes the DirectRunner's cancel immediate
    result.cancel()


def bench_bare(publisher, topic, subscription, n) -> float:
    out = Path(tempfile.mkdtemp()) / "bare.txt"
    out.touch()
    _publish(publisher, topic, n)
    options = PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming"])
    p = beam.Pipeline(options=options)
    (
        p
        | "ReadEvents"
        >> beam.io.ReadFromPubSub(subscription=subscription, with_attributes=True, timestamp_attribute="event_ts")
        | "AppendToFile" >> beam.ParDo(_AppendFn(str(out)))
    )
    start = time.monotonic()
    result = p.run()
    _wait_lines(out, n)
    elapsed = time.monotonic() - start
    _stop(result, publisher, topic)
    return n / elapsed


STAGES = ("parse", "dedupe", "enrich", "bigquery")
STAGE_LABELS = {
    "parse": "read -> parse -> file",
    "dedupe": "+ dedupe -> file",
    "enrich": "+ enrich (refreshed side inputs) -> file",
    "bigquery": "+ WriteUserBehavior (no engagement)",
}


def build_stage(p: beam.Pipeline, options: PipelineOptions, stage: str, out_path: str | None) -> None:
    """The streaming job cut after ``stage``, with the job's own transforms and labels.

    Stages before ``bigquery`` end in a local file (one event_id per line); ``bigquery``
    writes ``user_behavior`` exactly as the job does, without engagement and dead letters.
    """
    from beam_pipelines.transforms.dimension_side_inputs import TICKER_TIMER, RefreshedDimension
    from beam_pipelines.transforms.enrich import EnrichWithDimensions
    from beam_pipelines.transforms.parse import EVENTS, ParseEvents

    opts = options.view_as(streaming.StreamingOptions)
    depth = STAGES.index(stage)
    messages = p | "ReadEvents" >> beam.io.ReadFromPubSub(
        subscription=opts.input_subscription, with_attributes=True, timestamp_attribute="event_ts"
    )
    data = (messages | "ParseEvents" >> ParseEvents(streaming.PIPELINE, event_timestamps=False))[EVENTS]
    if depth >= STAGES.index("dedupe"):
        data = data | "DeduplicateEvents" >> streaming.deduplicator(options)
    if depth >= STAGES.index("enrich"):
        products_loader, users_loader = streaming._dimension_loaders(opts)
        refresh = opts.dims_refresh_seconds
        products = p | "RefreshProducts" >> RefreshedDimension("products", products_loader, refresh, TICKER_TIMER)
        users = p | "RefreshUsers" >> RefreshedDimension("users", users_loader, refresh, TICKER_TIMER)
        data = data | "EnrichWithDimensions" >> EnrichWithDimensions(
            products, users, events.SOURCE_STREAM, snapshots=True
        )
    if stage == "bigquery":
        _ = data | "WriteUserBehavior" >> streaming.user_behavior_sink(options)
        return
    _ = data | "AppendToFile" >> beam.ParDo(_AppendFn(out_path))


def _wait_lines(path: Path, n: int) -> None:
    while len(path.read_text().splitlines()) < n:
        time.sleep(0.05)


def bench_stage(publisher, topic, subscription, client, n, stage, extra) -> float:
    dataset = f"bench_{uuid.uuid4().hex[:8]}"
    ensure_all(client, dataset)
    out = Path(tempfile.mkdtemp()) / f"{stage}.txt"
    out.touch()
    _publish(publisher, topic, n)
    options = streaming.make_options(_job_args(subscription, dataset, extra))
    p = beam.Pipeline(options=options)
    build_stage(p, options, stage, str(out))
    start = time.monotonic()
    result = p.run()
    if stage == "bigquery":
        while _count(client, dataset) < n:
            time.sleep(0.2)
    else:
        _wait_lines(out, n)
    elapsed = time.monotonic() - start
    _stop(result, publisher, topic)
    return n / elapsed


def _job_args(subscription, dataset, extra):
    t = lambda name: f"{PROJECT}:{dataset}.{name}"  # noqa: E731
    return [
        "--runner=BundleBasedDirectRunner",
        f"--project={PROJECT}",
        f"--input_subscription={subscription}",
        f"--output_table={t('user_behavior')}",
        f"--dead_letter_table={t('dead_letter')}",
        f"--engagement_table={t('engagement_minutely')}",
        f"--products_table={t('products')}",
        f"--users_table={t('users')}",
        f"--lake_root={tempfile.mkdtemp(prefix='stream-bench-lake-')}",
        *extra,
    ]


def _count(client, dataset) -> int:
    return query_scalar(client, f"select count(*) from `{PROJECT}.{dataset}.user_behavior`")


def bench_job(publisher, topic, subscription, client, n, extra) -> float:
    dataset = f"bench_{uuid.uuid4().hex[:8]}"
    ensure_all(client, dataset)
    _publish(publisher, topic, n)
    start = time.monotonic()
    result = streaming.run(_job_args(subscription, dataset, extra))
    while _count(client, dataset) < n:
        time.sleep(0.2)
    elapsed = time.monotonic() - start
    _stop(result, publisher, topic)
    return n / elapsed


def bench_latency(publisher, topic, subscription, client, rate, seconds, extra) -> list[float]:
    dataset = f"bench_{uuid.uuid4().hex[:8]}"
    ensure_all(client, dataset)
    result = streaming.run(_job_args(subscription, dataset, extra))
    time.sleep(3)  # let the job start and load its dimensions
    sent: dict[str, float] = {}
    pub = threading.Thread(target=lambda: sent.update(_publish(publisher, topic, int(rate * seconds), rate)))
    pub.start()
    seen: dict[str, float] = {}
    deadline = time.monotonic() + seconds + 30
    table = f"{PROJECT}.{dataset}.user_behavior"
    while time.monotonic() < deadline:
        now = time.time()
        for row in client.query(f"select event_id from `{table}`").result():
            seen.setdefault(row.event_id, now)
        if not pub.is_alive() and len(seen) >= len(sent):
            break
        time.sleep(0.1)
    pub.join()
    _stop(result, publisher, topic)
    return sorted(seen[k] - sent[k] for k in sent if k in seen)


def _pct(values, q):
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--stages",
        nargs="?",
        const=",".join(STAGES),
        default="",
        help="also measure the job cut after each stage in the same run; optionally a comma list of "
        f"{', '.join(STAGES)}",
    )
    parser.add_argument("--skip-job", action="store_true", help="do not run the full-job variants")
    parser.add_argument(
        "--stock-runner",
        action="store_true",
        help="measure every case on the stock BundleBasedDirectRunner (default: every case, bare included, "
        "with beam_pipelines.direct_runner_tuning, as the job runs locally)",
    )
    parser.add_argument("--skip-latency", action="store_true", help="throughput only")
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_GCE_CHECK", "true")
    extra = ["--stock_direct_runner"] if args.stock_runner else []
    state = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    ps = start_pubsub(state / "pubsub", PROJECT)
    bq = start_bigquery(state / "bigquery", PROJECT, DEFAULT_ROOT)
    try:
        os.environ.update(ps.env)
        os.environ.update(bq.env)
        use_bigquery_emulator(bq.endpoints["rest"], bq.endpoints["grpc"], PROJECT)
        client = make_client(PROJECT, bq.endpoints["rest"])
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        host = ps.env["PUBSUB_EMULATOR_HOST"]

        def fresh():
            name = f"bench-{uuid.uuid4().hex[:8]}"
            return ensure_topic(PROJECT, name, host), ensure_subscription(PROJECT, name, f"{name}-sub", host, 60)

        # The bare read on the stock runner first, then (unless --stock-runner) every case
        # on the tuned runner the job uses locally, the bare read included: "vs bare" compares
        # like with like, "vs stock bare" says what the tuning buys over the runner as shipped.
        restore_stock_runner()
        stock_bare = bench_bare(publisher, *fresh(), args.messages)
        rows = [("bare ReadFromPubSub -> file, stock runner", stock_bare)]
        bare = stock_bare
        if not args.stock_runner:
            tune_bundle_based_direct_runner()
            bare = bench_bare(publisher, *fresh(), args.messages)
            rows.append(("bare ReadFromPubSub -> file", bare))
        for stage in [s for s in args.stages.split(",") if s]:
            if stage not in STAGES:
                parser.error(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
            rows.append((STAGE_LABELS[stage], bench_stage(publisher, *fresh(), client, args.messages, stage, extra)))
        # Locally the job inserts per bundle whatever --bq_triggering_frequency says (Dataflow-only).
        variants = [("full job (+ engagement, dead letters)", extra)]
        for label, job_extra in [] if args.skip_job else variants:
            rows.append((label, bench_job(publisher, *fresh(), client, args.messages, job_extra)))
        runner = "stock BundleBasedDirectRunner" if args.stock_runner else "tuned BundleBasedDirectRunner"
        print(f"\nThroughput ({args.messages} pre-published messages, {runner}, {os.cpu_count()} cores)")
        print(f"{'pipeline':<48}{'events/s':>10}{'vs bare':>9}{'vs stock bare':>15}")
        for label, rate in rows:
            print(f"{label:<48}{rate:>10.0f}{rate / bare:>8.0%}{rate / stock_bare:>14.0%}")
        if args.skip_latency:
            return
        print(f"\nPublish -> row visible in BigQuery at {args.rate:.0f} events/s for {args.seconds:.0f} s")
        print(f"{'pipeline':<48}{'n':>6}{'p50':>8}{'p95':>8}{'p99':>8}")
        for label, job_extra in variants:
            lat = bench_latency(publisher, *fresh(), client, args.rate, args.seconds, job_extra)
            print(f"{label:<48}{len(lat):>6}{_pct(lat, 0.5):>7.2f}s{_pct(lat, 0.95):>7.2f}s{_pct(lat, 0.99):>7.2f}s")
    finally:
        stop_process(ps.pid)
        stop_process(bq.pid)


if __name__ == "__main__":
    main()
