"""Fault drills on the streaming job, through its real doors: the official Pub/Sub emulator,
the BigQuery emulator and ``python -m beam_pipelines.streaming`` as a process.

1. ``replay`` without ``--retime`` re-sends a file the job already streamed (fresh,
   2-hour-old and day-old events): no row is added; the copies are counted as duplicates.
2. No dimension snapshot exists when the job starts: events still reach
   ``user_behavior`` (with NULL names, counted), and the first good load enriches again.
3. SIGKILL mid-stream, then a restart: every row in ``user_behavior`` and every dead
   letter is also in the lake, every message published is in the lake, and the hourly
   job over the lake (the documented repair) leaves no valid event out of ``user_behavior``.
4. The subscription is deleted while the job runs: it stops with one line and exit 3.
5. BigQuery stops answering (SIGSTOP): a warning within the documented bound, a line
   when it answers again, and nothing lost.
6. The lake on ``gs://`` behind a Cloud Storage that fails: transient errors are
   retried, a denied write stops the job loudly (exit 1) with its messages not
   acknowledged, and the next run archives them: the lake is never short.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import pubsub_v1

from beam_pipelines import events, lake, service_watch
from beam_pipelines.local.processes import stop_process
from beam_pipelines.local.services import start_bigquery
from beam_pipelines.local.stack import DEFAULT_ROOT
from bigquery_schemas.ddl import ensure_all
from tests.fixtures.faulty_storage import FaultyStorage
from tests.fixtures.jobs import hourly_job_args
from tests.fixtures.stack import BigQueryDataset
from tests.fixtures.streaming_harness import (
    archived_messages,
    job_death,
    printed_counters,
    start_job,
    stop_job,
    wait_for,
)

pytestmark = pytest.mark.integration

DEADLINE_SECONDS = 240
# Publish -> row once the job runs: one pull cycle plus the BigQuery emulator's insert.
PULL_CYCLE_SECONDS = 30


def _record(event_id: str, event_ts: datetime, product_id: str = "p-1", user_id: str = "u-1") -> dict:
    return {
        "event_id": event_id,
        "event_name": "view",
        "event_ts": events.format_ts(event_ts),
        "user_id": user_id,
        "session_id": f"s-{event_id}",
        "product_id": product_id,
        "price": "1.50",
    }


def _publish(topic: str, records: list[dict]) -> None:
    publisher = pubsub_v1.PublisherClient()
    futures = [publisher.publish(topic, json.dumps(r).encode(), event_id=r["event_id"]) for r in records]
    for future in futures:
        future.result(timeout=30)


def _stream_ids(bq: BigQueryDataset) -> list[str]:
    sql = f"select event_id from `{bq.table_id('user_behavior')}` where source = 'stream'"
    return [r.event_id for r in bq.client.query(sql).result()]


def _archived_verdicts(lake_root) -> tuple[list[str], list[bytes]]:
    """(event ids of the valid messages, payloads of the others) in the stream's archive."""
    ids, dead = [], []
    for payload, attributes in archived_messages(lake_root):
        try:
            ids.append(events.parse_message(payload, attributes)["event_id"])
        except events.InvalidEvent:
            dead.append(payload)
    return ids, dead


def _topic_and_subscription(pubsub_emulator, prefix: str) -> tuple[str, str]:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    topic = pubsub_emulator.topic(name)
    return topic, pubsub_emulator.subscription(name, f"{name}-sub", ack_deadline_seconds=10)


# ----------------------------------------------------------------------------- 1. replay


def test_replay_without_retime_of_a_streamed_file_adds_no_row(pubsub_emulator, bq_dataset, tmp_path):
    bq = bq_dataset
    topic, subscription = _topic_and_subscription(pubsub_emulator, "replay")
    now = datetime.now(UTC).replace(microsecond=0)
    ages = {"fresh": timedelta(minutes=1), "two-hours-old": timedelta(hours=2), "day-old": timedelta(days=1)}
    rows = [_record(f"{kind}-{i}", now - age) for kind, age in ages.items() for i in range(10)]
    path = tmp_path / "clickstream.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    replay = [sys.executable, "-m", "publishers.simulator", "replay", "--file", str(path), "--speed", "0"]
    replay += ["--project", pubsub_emulator.project, "--topic", topic.rsplit("/", 1)[-1], "--quiet"]
    lake_root, log = tmp_path / "lake", tmp_path / "job.log"
    deadline = time.monotonic() + DEADLINE_SECONDS

    job = start_job(bq, subscription, lake_root, log)
    alive = job_death(job, log)
    try:
        subprocess.run(replay, check=True, timeout=120, env=os.environ, stdout=subprocess.DEVNULL)
        wait_for(lambda: len(_stream_ids(bq)) >= len(rows), "the first replay's rows", deadline, alive)
        # The same file again, ids and times unchanged (no --retime): every event is a copy.
        subprocess.run(replay, check=True, timeout=120, env=os.environ, stdout=subprocess.DEVNULL)
        wait_for(lambda: len(archived_messages(lake_root)) >= 2 * len(rows), "the second replay read", deadline, alive)
        counters = stop_job(job, signal.SIGTERM, log)
    finally:
        stop_process(job.pid)
    assert sorted(_stream_ids(bq)) == sorted(r["event_id"] for r in rows)  # each once: no row added
    assert counters["records_in"] == 2 * len(rows)
    assert counters["duplicates_removed"] == len(rows)


# ----------------------------------------------------------------------------- 2. dimensions


def test_a_failed_first_dimension_load_does_not_hold_events_and_a_later_load_enriches(
    pubsub_emulator, bq_dataset, tmp_path
):
    bq = bq_dataset
    topic, subscription = _topic_and_subscription(pubsub_emulator, "dims")
    dims_root, log = tmp_path / "dims-lake", tmp_path / "job.log"
    dims_root.mkdir()
    deadline = time.monotonic() + DEADLINE_SECONDS
    now = datetime.now(UTC)
    before = [_record(f"before-{i}", now) for i in range(10)]

    job = start_job(
        bq, subscription, tmp_path / "lake", log, f"--dims_lake_root={dims_root}", "--dims_refresh_seconds=3"
    )
    alive = job_death(job, log)
    try:
        # No snapshot in the dimensions lake: the first load fails, and events flow anyway.
        _publish(topic, before)
        wait_for(lambda: len(_stream_ids(bq)) >= len(before), "rows before any snapshot", deadline, alive)
        assert "no products snapshot has loaded yet" in log.read_text()
        # The dimensions arrive the way production makes them: catalog -> extract_dims -> lake.
        source = f"sqlite:///{tmp_path / 'source.db'}"
        catalog = [sys.executable, "-m", "publishers.catalog", "load", "--database-url", source]
        subprocess.run([*catalog, "--products", "5", "--users", "5", "--seed", "3", "--replace"], check=True)
        extract = [sys.executable, "-m", "beam_pipelines.extract_dims", "--runner=FnApiRunner"]
        subprocess.run([*extract, f"--database_url={source}", f"--lake_root={dims_root}"], check=True, timeout=180)
        product = lake.read_latest_snapshot_rows(str(dims_root), "products")[0]
        user = lake.read_latest_snapshot_rows(str(dims_root), "users")[0]
        probes: list[dict] = []

        def enriched():
            probe = _record(f"probe-{len(probes)}", datetime.now(UTC), str(product["product_id"]), str(user["user_id"]))
            probes.append(probe)
            _publish(topic, [probe])
            time.sleep(1)
            sql = f"select product_name from `{bq.table_id('user_behavior')}` where product_name is not null"
            return list(bq.client.query(sql).result())

        named = wait_for(enriched, "a row enriched by the first good load", deadline, alive)
        assert named[0].product_name == product["product_name"]
        wait_for(lambda: len(_stream_ids(bq)) >= len(before) + len(probes), "the probes' rows", deadline, alive)
        counters = stop_job(job, signal.SIGTERM, log)
    finally:
        stop_process(job.pid)
    nulls = bq.client.query(
        f"select count(*) as n from `{bq.table_id('user_behavior')}` where product_name is null"
    ).result()
    without = next(iter(nulls)).n
    assert without >= len(before)  # the events before the load, and probes published before it landed
    assert counters["enriched_without_products_snapshot"] == without  # the counter says how many
    assert counters["products_placeholder_snapshots"] >= 1 and counters["products_refreshes"] >= 1
    assert re.search(r"loaded \d+ products in [\d.]+ s after \d+ failed attempts", log.read_text())


# ----------------------------------------------------------------------------- 3. SIGKILL


def test_sigkill_and_restart_leave_every_row_and_dead_letter_in_the_lake(pubsub_emulator, bq_dataset, tmp_path):
    bq = bq_dataset
    topic, subscription = _topic_and_subscription(pubsub_emulator, "kill")
    name = topic.rsplit("/", 1)[-1]
    lake_root, log = tmp_path / "lake", tmp_path / "job.log"
    deadline = time.monotonic() + DEADLINE_SECONDS

    first = start_job(bq, subscription, lake_root, log)
    try:
        # 2,000 messages at 200/s with duplicates and malformed ones; the kill lands mid-stream.
        publisher = subprocess.Popen(
            [
                sys.executable,
                *("-m", "publishers.simulator", "publish", "--project", pubsub_emulator.project, "--topic", name),
                *("--count", "2000", "--rate", "200", "--seed", "11", "--manifest", str(tmp_path / "m.json")),
                *("--duplicate-fraction", "0.05", "--malformed-fraction", "0.03", "--quiet"),
            ],
            env=os.environ,
            stdout=subprocess.DEVNULL,
        )
        # Killed once the first archive files are in (so some messages were acknowledged)
        # while later ones are pulled, written to BigQuery and not yet archived.
        wait_for(
            lambda: len(_stream_ids(bq)) >= 1000 and archived_messages(lake_root),
            "rows and archive files before the kill",
            deadline,
            job_death(first, log),
        )
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        rows_at_kill = len(_stream_ids(bq))
        assert publisher.wait(timeout=120) == 0
    finally:
        stop_process(first.pid)
    manifest = json.loads((tmp_path / "m.json").read_text())
    valid = set(manifest["valid_event_ids"])
    assert rows_at_kill < len(valid)  # a real mid-stream kill

    second = start_job(bq, subscription, lake_root, log)
    alive = job_death(second, log)
    try:
        # Everything published reaches the lake: what the first run had not archived was
        # never acknowledged, so Pub/Sub delivered it again to this one.
        def archived_all():
            ids, dead = _archived_verdicts(lake_root)
            return set(ids) >= valid and len(dead) >= manifest["malformed_sent"]

        wait_for(archived_all, "every published message in the lake", deadline, alive)
        counters = stop_job(second, signal.SIGTERM, log)
    finally:
        stop_process(second.pid)
    archived_ids, archived_dead = _archived_verdicts(lake_root)
    streamed = _stream_ids(bq)
    assert set(streamed) <= set(archived_ids)  # every row in user_behavior is in the lake
    dead_payloads = [r["payload"] for r in bq.rows("dead_letter") if r["pipeline"] == "streaming"]
    archived_payloads = {p.decode("utf-8", "replace") for p in archived_dead}
    assert len(dead_payloads) >= manifest["malformed_sent"]
    assert set(dead_payloads) <= archived_payloads  # and every dead letter
    archived_twice = len(archived_ids) + len(archived_dead) - manifest["published_total"]
    print(
        f"rows at the kill {rows_at_kill}; archived twice {archived_twice}; "
        f"read by the second run {counters['records_in']} of {manifest['published_total']}"
    )
    # The first run acknowledged what it had archived, and only that: the second read the rest.
    assert counters["records_in"] < manifest["published_total"]

    # The documented repair for the other direction (a message archived but not yet
    # inserted when the process died): the hourly job over the lake inserts the stream
    # rows user_behavior lacks, and leaves the rows it has alone.
    hours = _archive_hours(lake_root)
    repair = [sys.executable, "-m", "beam_pipelines.hourly", "--allow_missing_extracts"]
    repair += hourly_job_args(bq.project, bq.dataset, lake_root, hours[0], hours[-1] + timedelta(hours=1))
    done = subprocess.run(repair, capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(_stream_ids(bq)) == valid  # every valid event, nothing invented


def _archive_hours(lake_root) -> list[datetime]:
    """The hours whose folders hold archive files, in order."""
    files = lake.list_files(lake.join(str(lake_root), "raw/events/*/*/*.jsonl"))
    folders = {tuple(p.rsplit("/", 3)[1:3]) for p in files}  # ("dt=YYYY-MM-DD", "hour=HH")
    return sorted(datetime.fromisoformat(f"{d[3:]}T{h[5:]}:00:00+00:00") for d, h in folders)


# ----------------------------------------------------------------------------- 4. deleted subscription


def test_a_deleted_subscription_stops_the_job_with_one_line_and_exit_3(pubsub_emulator, bq_dataset, tmp_path):
    bq = bq_dataset
    topic, subscription = _topic_and_subscription(pubsub_emulator, "gone")
    log = tmp_path / "job.log"
    records = [_record(f"gone-{i}", datetime.now(UTC)) for i in range(5)]
    job = start_job(bq, subscription, tmp_path / "lake", log)
    try:
        _publish(topic, records)
        wait_for(lambda: len(_stream_ids(bq)) >= len(records), "rows", time.monotonic() + 120, job_death(job, log))
        client = pubsub_v1.SubscriberClient()
        client.delete_subscription(subscription=subscription)
        client.close()
        deleted = time.monotonic()
        code = job.wait(timeout=120)
        took = time.monotonic() - deleted
    finally:
        stop_process(job.pid)
    text = log.read_text()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert code == 3, text[-3000:]
    assert len(errors) == 1 and errors[0].startswith(f"error: subscription {subscription} does not exist"), errors
    assert "beam_pipelines.local up" in errors[0]
    assert text.count("does not exist (") <= 2  # one warning when it went, then the error line
    assert "Traceback" not in text
    # It drained what it had read before stopping: counted, archived, conservation holds.
    assert re.search(r"records_in 5 = rows 5 \+ dead letters 0 \+ duplicates 0: holds; archived 5", text)
    print(f"exit 3 {took:.1f} s after the deletion")


# ----------------------------------------------------------------------------- 5. stopped BigQuery


def test_a_stopped_bigquery_is_reported_within_seconds_and_nothing_is_lost(pubsub_emulator, tmp_path):
    topic, subscription = _topic_and_subscription(pubsub_emulator, "frozen")
    info = start_bigquery(tmp_path / "bq", pubsub_emulator.project, DEFAULT_ROOT)
    log = tmp_path / "job.log"
    address = info.endpoints["rest"].split("://", 1)[1]
    try:
        from bigquery_schemas.client import make_client

        client = make_client(pubsub_emulator.project, info.endpoints["rest"])
        ensure_all(client, "frozen")
        bq = BigQueryDataset(client, pubsub_emulator.project, "frozen")
        env = {**os.environ, **info.env}
        job = start_job(bq, subscription, tmp_path / "lake", log, env=env)
        alive = job_death(job, log)
        try:
            before = [_record(f"before-{i}", datetime.now(UTC)) for i in range(3)]
            _publish(topic, before)
            wait_for(lambda: len(_stream_ids(bq)) >= 3, "rows", time.monotonic() + 120, alive)
            os.killpg(info.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            warning = f"BigQuery at {address} is unreachable (no answer within"
            wait_for(lambda: warning in log.read_text(), "the warning", stopped + 60, alive)
            warned_after = time.monotonic() - stopped
            during = [_record(f"during-{i}", datetime.now(UTC)) for i in range(5)]
            _publish(topic, during)
            time.sleep(max(0.0, 15 - (time.monotonic() - stopped)))
            os.killpg(info.pid, signal.SIGCONT)
            back = f"BigQuery at {address} is reachable again after"
            wait_for(lambda: back in log.read_text(), "the line when it is back", time.monotonic() + 30, alive)
            wait_for(
                lambda: len(_stream_ids(bq)) >= 8,
                "the rows published while it was stopped",
                time.monotonic() + 60,
                alive,
            )
            counters = stop_job(job, signal.SIGTERM, log)
            streamed = _stream_ids(bq)
        finally:
            os.killpg(info.pid, signal.SIGCONT)
            stop_process(job.pid)
    finally:
        stop_process(info.pid)
    print(f"warned {warned_after:.1f} s after BigQuery stopped")
    assert warned_after <= service_watch.WARN_WITHIN_SECONDS  # the documented bound
    assert sorted(streamed) == sorted(r["event_id"] for r in before + during)
    assert counters["records_in"] == 8 and counters["archive_messages_written"] == 8


# ----------------------------------------------------------------------------- 6. gs:// lake, faults


def test_the_archive_on_gcs_retries_transient_faults_and_stops_loudly_on_a_denied_write(
    pubsub_emulator, bq_dataset, gcs_emulator, tmp_path
):
    bq = bq_dataset
    topic, subscription = _topic_and_subscription(pubsub_emulator, "gcs")
    lake_root = f"gs://{gcs_emulator.bucket}/stream-lake-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "job.log"
    deadline = time.monotonic() + DEADLINE_SECONDS
    first = [_record(f"gcs-a-{i}", datetime.now(UTC)) for i in range(20)]
    second = [_record(f"gcs-b-{i}", datetime.now(UTC)) for i in range(10)]
    with FaultyStorage(gcs_emulator.url) as storage:
        env = {**os.environ, "STORAGE_EMULATOR_HOST": storage.url}
        job = start_job(bq, subscription, lake_root, log, env=env)
        alive = job_death(job, log)
        try:
            storage.fail(503, op="write", times=2)  # a bad moment: retried by the storage client
            _publish(topic, first)
            wait_for(lambda: len(archived_messages(lake_root)) >= 20, "the first archive files", deadline, alive)
            assert storage.rules[0].hits == 2
            storage.fail(403, op="write")  # the job's service account loses storage.objects.create
            _publish(topic, second)
            code = job.wait(timeout=120)
        finally:
            stop_process(job.pid)
        text = log.read_text()
        assert code == 1, text[-3000:]  # failed loudly, never "done" with a short lake
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "403" in errors[0], errors
        assert len(archived_messages(lake_root)) == 20
        storage.heal()
        # The next run gets the unarchived messages again (never acknowledged) and archives them.
        job = start_job(bq, subscription, lake_root, log, env=env)
        alive = job_death(job, log)
        try:
            wait_for(lambda: len(archived_messages(lake_root)) >= 30, "the second batch archived", deadline, alive)
            stop_job(job, signal.SIGTERM, log)
        finally:
            stop_process(job.pid)
    ids = [payload_id for payload_id, _ in ((json.loads(p)["event_id"], a) for p, a in archived_messages(lake_root))]
    assert sorted(set(ids)) == sorted(r["event_id"] for r in first + second)
    assert set(_stream_ids(bq)) == {r["event_id"] for r in first + second}
    assert printed_counters(log.read_text())["records_in"] >= len(second)
