"""Streaming job throughput and publish->row latency on the local emulators (a script, not a test).

Starts its own Pub/Sub and BigQuery emulators on free ports, then measures in one run:

1. bare:  ReadFromPubSub -> append to a local file (the runner's Pub/Sub read ceiling);
2. job:   the full streaming job (parse, dedupe, enrich, BigQuery streaming inserts), with
          the default per-bundle inserts and with --bq_triggering_frequency (auto-sharded batches);
3. latency of the job at a paced --rate: publish time -> row visible in BigQuery (polled
   every 0.1 s, so figures carry ~0.05 s of polling error).

Throughput = N pre-published messages / seconds from pipeline start until all N are out.

    NO_GCE_CHECK=true .venv/bin/python -m benchmarks.streaming_throughput --messages 3000 --rate 100 --seconds 20
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
from beam_pipelines.local.processes import stop_process
from beam_pipelines.local.pubsub_admin import ensure_subscription, ensure_topic
from beam_pipelines.local.services import start_bigquery, start_pubsub
from beam_pipelines.local.stack import DEFAULT_ROOT
from bigquery_schemas.client import make_client
from bigquery_schemas.tables import ensure_all

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
    def __init__(self, path: str):
        self._path = path

    def setup(self):
        self._f = open(self._path, "a")  # noqa: SIM115 - closed in teardown

    def process(self, msg):
        self._f.write(msg.attributes["event_id"] + "\n")

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
    while len(out.read_text().splitlines()) < n:
        time.sleep(0.05)
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
        *extra,
    ]


def _count(client, dataset) -> int:
    return next(iter(client.query(f"select count(*) n from `{PROJECT}.{dataset}.user_behavior`").result())).n


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
    parser.add_argument("--triggering-frequency", type=float, default=0.5)
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_GCE_CHECK", "true")
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

        rows = []
        bare = bench_bare(publisher, *fresh(), args.messages)
        rows.append(("bare ReadFromPubSub -> file", bare, 1.0))
        variants = [
            ("job, per-bundle inserts (default)", []),
            (
                f"job, auto-sharded batches every {args.triggering_frequency}s",
                [f"--bq_triggering_frequency={args.triggering_frequency}"],
            ),
        ]
        for label, extra in variants:
            rate = bench_job(publisher, *fresh(), client, args.messages, extra)
            rows.append((label, rate, rate / bare))
        print(f"\nThroughput ({args.messages} pre-published messages, BundleBasedDirectRunner, 2 cores)")
        print(f"{'pipeline':<48}{'events/s':>10}{'vs bare':>9}")
        for label, rate, ratio in rows:
            print(f"{label:<48}{rate:>10.0f}{ratio:>8.0%}")
        print(f"\nPublish -> row visible in BigQuery at {args.rate:.0f} events/s for {args.seconds:.0f} s")
        print(f"{'pipeline':<48}{'n':>6}{'p50':>8}{'p95':>8}{'p99':>8}")
        for label, extra in variants:
            lat = bench_latency(publisher, *fresh(), client, args.rate, args.seconds, extra)
            print(f"{label:<48}{len(lat):>6}{_pct(lat, 0.5):>7.2f}s{_pct(lat, 0.95):>7.2f}s{_pct(lat, 0.99):>7.2f}s")
    finally:
        stop_process(ps.pid)
        stop_process(bq.pid)


if __name__ == "__main__":
    main()
