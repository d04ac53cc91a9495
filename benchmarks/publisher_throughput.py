"""Publish throughput into the Pub/Sub emulator: the simulator vs the raw PublisherClient.

Both publish the very same pre-generated payloads with the same batch settings, in
alternating rounds, into a topic of a Pub/Sub emulator this script starts (and
stops) itself. The simulator's figure includes its pacing and progress checks;
the raw figure is a bare ``publish`` loop plus one bulk wait on the futures.

    python -m benchmarks.publisher_throughput [--messages 50000] [--rounds 3]

Prints a table with the median msg/s of each and the ratio (target >= 0.9).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_GCE_CHECK", "true")

PROJECT = "local-ecommerce"
TOPIC = "bench-publisher"


def raw_publish(path: str, messages, batch) -> tuple[float, int]:
    """The reference: google-cloud-pubsub's PublisherClient, nothing else."""
    from google.cloud import pubsub_v1

    client = pubsub_v1.PublisherClient(batch_settings=batch.settings())
    t0 = time.perf_counter()
    futures = [client.publish(path, m.data, **m.attributes) for m in messages]
    concurrent.futures.wait(futures)
    seconds = time.perf_counter() - t0
    errors = sum(1 for f in futures if f.exception() is not None)
    client.stop()
    return len(messages) / seconds, errors


def simulator_publish(path: str, messages, batch) -> tuple[float, int]:
    """The simulator's publishing path (one client, pacing check, progress every second)."""
    from publishers.publishing import Progress, PubSubSink, make_publisher

    client = make_publisher(batch)
    sink = PubSubSink(client, path)
    progress = Progress(len(messages), stream=io.StringIO())  # progress on, output discarded
    t0 = time.perf_counter()
    stats = sink.send(messages, schedule=None, progress=progress)
    seconds = time.perf_counter() - t0
    client.stop()
    return stats.sent / seconds, stats.errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.publisher_throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=50_000, help="messages per round (default 50000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each, alternating (default 5)")
    parser.add_argument("--batch-max-messages", type=int, default=1000)
    parser.add_argument("--batch-max-latency", type=float, default=0.05)
    args = parser.parse_args(argv)

    from datetime import UTC, datetime

    from beam_pipelines.local.processes import stop_process
    from beam_pipelines.local.pubsub_admin import ensure_topic
    from beam_pipelines.local.services import start_pubsub
    from publishers.publishing import BatchConfig
    from publishers.simulator import PlanConfig, Planner
    from publishers.world import CatalogView

    t0 = time.perf_counter()
    catalog = CatalogView.generated(1, 1000, 1000, datetime.now(UTC))
    planner = Planner(catalog, 1, PlanConfig(count=args.messages, duplicate_fraction=0.01, malformed_fraction=0.01))
    messages = [m for _, chunk, _ in planner.chunks(chunk_size=args.messages) for m in chunk]
    gen_rate = len(messages) / (time.perf_counter() - t0)
    size = sum(len(m.data) for m in messages) / len(messages)
    batch = BatchConfig(max_messages=args.batch_max_messages, max_latency=args.batch_max_latency)

    with tempfile.TemporaryDirectory(prefix="bench-pubsub-") as state:
        info = start_pubsub(Path(state), PROJECT)
        try:
            os.environ.update(info.env)
            path = ensure_topic(PROJECT, TOPIC)
            # The emulator (a JVM) speeds up by ~2x over its first ~100k messages: warm it up untimed.
            for _ in range(2):
                raw_publish(path, messages, batch)
                simulator_publish(path, messages, batch)
            raw_rates, sim_rates, errors = [], [], 0
            runs = ((raw_publish, raw_rates), (simulator_publish, sim_rates))
            for r in range(args.rounds):
                # Alternate who goes first: the emulator warms up and slows down over a run.
                for publish, rates in runs if r % 2 == 0 else runs[::-1]:
                    gc.collect()
                    rate, err = publish(path, messages, batch)
                    rates.append(rate)
                    errors += err
        finally:
            stop_process(info.pid)

    raw, sim = statistics.median(raw_rates), statistics.median(sim_rates)
    ratio = sim / raw
    print(
        f"publisher throughput into the Pub/Sub emulator: {args.messages:,} msgs/round x {args.rounds} rounds, "
        f"{size:.0f} B avg, batch {batch.max_messages} msgs / {batch.max_latency * 1000:.0f} ms"
    )
    print(f"{'publisher':<34}{'median msg/s':>14}{'all rounds':>40}")
    print(f"{'raw google-cloud-pubsub client':<34}{raw:>14,.0f}{', '.join(f'{r:,.0f}' for r in raw_rates):>40}")
    print(f"{'publishers.simulator':<34}{sim:>14,.0f}{', '.join(f'{r:,.0f}' for r in sim_rates):>40}")
    print(f"{'ratio simulator / raw':<34}{ratio:>14.2f}{'target >= 0.90':>40}")
    print(f"(payload generation, not timed above: {gen_rate:,.0f} msgs/s; publish errors: {errors})")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
