"""The streaming job through its real doors: poison messages, the lake archive, clean stops.

Everything goes through the official Pub/Sub emulator and ``python -m beam_pipelines.streaming``
as a process, as a user runs it:

1. the whole hostile corpus (payloads and attributes, >= 300 kinds: bad, empty, missing
   and contradicting ``event_ts`` / ``event_id`` attributes among them) is published
   interleaved with fresh valid events; every valid event reaches ``user_behavior``
   once and every poison message ``dead_letter`` with its reason, and the job keeps
   draining: a second batch published afterwards lands within one pull cycle;
2. SIGTERM stops the job within seconds; it says so and prints its counters, and
   ``published = rows + dead letters + duplicates`` holds on those counters;
3. messages published while the job is down are drained by a restarted job, which
   SIGINT (the signal a backgrounded job used to ignore) stops the same way;
4. the hourly job, run on the lake archive alone (nothing else in the lake), rebuilds
   exactly the rows the streaming jobs wrote (same event ids and values) although the
   archive holds the replayed messages twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import pubsub_v1

from beam_pipelines import event_archive, events, lake
from beam_pipelines.local.processes import stop_process
from bigquery_schemas.ddl import ensure_all
from tests.fixtures.jobs import hourly_job_args
from tests.fixtures.streaming_harness import job_death, start_job, stop_job, wait_for
from tests.reliability import hostile

pytestmark = pytest.mark.integration

DEADLINE_SECONDS = 240
# One pull cycle of the local runner plus the BigQuery emulator's insert: the time a
# message may take from publish to its row once the job is running.
PULL_CYCLE_SECONDS = 30
CONTRACT_COLUMNS = ("event_id", "event_name", "price", "product_id", "user_id", "order_id", "event_ts")
CONTRACT_COLUMNS += ("session_id", "quantity", "source")


def _fresh_events(prefix: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        record = {
            "event_id": f"{prefix}-{i}",
            "event_name": "view",
            "event_ts": events.format_ts(now - timedelta(seconds=i)),
            "user_id": "1",
            "session_id": f"s-{prefix}",
            "product_id": "10",
            "price": "1.50",
        }
        out.append((json.dumps(record).encode(), {"event_id": record["event_id"], "event_ts": record["event_ts"]}))
    return out


def _publish(topic: str, messages: list[tuple[bytes, dict[str, str] | None]]) -> int:
    publisher = pubsub_v1.PublisherClient()
    futures = [publisher.publish(topic, payload, **(attrs or {})) for payload, attrs in messages]
    for future in futures:
        future.result(timeout=30)
    return len(futures)


def _corpus_messages() -> list[tuple[bytes, dict[str, str] | None]]:
    out = []
    for _, payload, attrs, _ in hostile.message_cases():
        # Pub/Sub refuses a message with neither data nor attributes: give it one that
        # the contract ignores, so the empty payload still reaches the job.
        out.append((payload, attrs if payload or attrs else {"note": "empty payload"}))
    return out


def _expected(messages) -> tuple[set[str], list[tuple[str, str]]]:
    """(valid event ids, sorted (stage, reason) of the dead letters) as the contract says."""
    ids, dead = set(), []
    for payload, attrs in messages:
        try:
            ids.add(events.parse_message(payload, attrs)["event_id"])
        except events.InvalidEvent as exc:
            dead.append((exc.stage, exc.reason))
    return ids, sorted(dead)


def _rows(client, table_id: str) -> list[tuple]:
    sql = f"select {', '.join(CONTRACT_COLUMNS)} from `{table_id}`"
    return sorted(tuple(str(r[c]) for c in CONTRACT_COLUMNS) for r in client.query(sql).result())


def test_poison_messages_lake_archive_and_clean_stops(pubsub_emulator, bq_dataset, tmp_path):
    bq = bq_dataset
    name = f"poison-{uuid.uuid4().hex[:8]}"
    topic = pubsub_emulator.topic(name)
    subscription = pubsub_emulator.subscription(name, f"{name}-sub", ack_deadline_seconds=10)
    lake_root = tmp_path / "lake"
    log = tmp_path / "job.log"
    deadline = time.monotonic() + DEADLINE_SECONDS

    # Poison interleaved with valid events, as a real topic would carry them.
    corpus = _corpus_messages()
    fresh = _fresh_events("fresh", 40)
    first_batch = [m for pair in zip(corpus, fresh + [None] * len(corpus), strict=False) for m in pair if m]
    want_ids, want_dead = _expected(first_batch)
    assert len(corpus) >= 300 and len(want_dead) > 150

    def ids() -> set[str]:
        return {r.event_id for r in bq.client.query(f"select event_id from `{bq.table_id('user_behavior')}`")}

    def dead() -> list[tuple[str, str]]:
        sql = f"select stage, error from `{bq.table_id('dead_letter')}` where pipeline = 'streaming'"
        return sorted((r.stage, r.error) for r in bq.client.query(sql).result())

    job = start_job(bq, subscription, lake_root, log)
    alive = job_death(job, log)
    try:
        _publish(topic, first_batch)
        wait_for(lambda: ids() >= want_ids and len(dead()) >= len(want_dead), "the first batch", deadline, alive)
        assert ids() == want_ids
        assert dead() == want_dead  # every poison message, each with its reason
        # Still draining after the poison: a new batch lands within one pull cycle.
        second = _fresh_events("after-poison", 20)
        _publish(topic, second)
        wait_for(
            lambda: ids() >= want_ids | {f"after-poison-{i}" for i in range(20)},
            "events published after the poison",
            time.monotonic() + PULL_CYCLE_SECONDS,
            alive,
        )
        first_counters = stop_job(job, signal.SIGTERM, log)
    finally:
        stop_process(job.pid)
    published_first = len(first_batch) + len(second)
    assert first_counters["records_in"] == published_first
    assert first_counters["archive_messages_written"] == published_first

    # While the job is down: a retry of the first fresh events (same ids) and new ones.
    replayed = fresh[:10]
    during = _fresh_events("during-outage", 30)
    _publish(topic, replayed + during)
    job = start_job(bq, subscription, lake_root, log)
    alive = job_death(job, log)
    try:
        everything = want_ids | {f"after-poison-{i}" for i in range(20)} | {f"during-outage-{i}" for i in range(30)}
        wait_for(lambda: ids() >= everything, "the outage's messages after the restart", deadline, alive)
        second_counters = stop_job(job, signal.SIGINT, log)
    finally:
        stop_process(job.pid)
    assert second_counters["records_in"] == len(replayed) + len(during)
    assert second_counters["archive_messages_written"] == len(replayed) + len(during)
    # The restarted job has no dedup state: the replayed ten are written a second time.
    assert second_counters["enriched_rows"] == len(replayed) + len(during)

    # Every message read is in the archive, once per time it was read.
    archive = lake.list_files(lake.join(str(lake_root), "raw/events/*/*/*" + event_archive.SUFFIX))
    archived = sum(1 for path in archive for _ in lake.iter_raw_lines(path))
    assert archived == published_first + len(replayed) + len(during)

    # The hourly job on the lake archive alone rebuilds the streamed rows exactly.
    rebuilt = f"rebuild_{uuid.uuid4().hex[:8]}"
    ensure_all(bq.client, rebuilt)
    try:
        hours = sorted({p.rsplit("/", 3)[-3][3:] + "T" + p.rsplit("/", 3)[-2][5:] for p in archive})
        start = datetime.fromisoformat(hours[0] + ":00:00+00:00")
        end = datetime.fromisoformat(hours[-1] + ":00:00+00:00") + timedelta(hours=1)
        argv = [
            sys.executable,
            "-m",
            "beam_pipelines.hourly",
            # The stream's archive alone: no orders extract ever ran over this lake.
            *hourly_job_args(bq.project, rebuilt, lake_root, start, end, "--allow_missing_extracts"),
        ]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=300,
            env=os.environ,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        streamed = _rows(bq.client, bq.table_id("user_behavior"))
        from_lake = _rows(bq.client, f"{bq.project}.{rebuilt}.user_behavior")
        assert from_lake == sorted(set(streamed))  # the stream wrote the replayed ten twice
        assert len(streamed) == len(from_lake) + len(replayed)
        # The rebuild's dead letters are the stream's, reason for reason.
        sql = f"select stage, error from `{bq.project}.{rebuilt}.dead_letter` where stage != 'window'"
        assert sorted((r.stage, r.error) for r in bq.client.query(sql).result()) == want_dead
    finally:
        bq.client.delete_dataset(rebuilt, delete_contents=True, not_found_ok=True)
