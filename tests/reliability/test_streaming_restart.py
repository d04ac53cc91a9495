"""The streaming job killed mid-stream (SIGKILL) and restarted loses nothing and counts nothing twice.

Pub/Sub redelivers what the killed job had not acknowledged; rows it had written
but not acknowledged arrive again after the restart. The raw table may then hold
a redelivered event twice, but the dedup view counts every published event once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from beam_pipelines.local.processes import stop_process
from bigquery_schemas import analytics

pytestmark = pytest.mark.integration

EVENTS = 90
DEADLINE_SECONDS = 240


def _start_job(bq, subscription: str, log: Path) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-m",
        "beam_pipelines.streaming",
        f"--project={bq.project}",
        f"--input_subscription={subscription}",
        f"--output_table={bq.table('user_behavior')}",
        f"--dead_letter_table={bq.table('dead_letter')}",
        f"--engagement_table={bq.table('engagement_minutely')}",
        f"--products_table={bq.table('products')}",
        f"--users_table={bq.table('users')}",
        "--dims_refresh_seconds=30",
    ]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ)


def _ids(bq, relation: str) -> list[str]:
    sql = f"select event_id from `{bq.table_id(relation)}` where source = 'stream'"
    return [row.event_id for row in bq.client.query(sql).result()]


def _wait(predicate, what: str, deadline: float, job: subprocess.Popen, log: Path) -> None:
    while not predicate():
        if job.poll() is not None:
            pytest.fail(
                f"the streaming job exited with {job.returncode} while waiting for {what}:\n{log.read_text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1)


def test_kill_and_restart_loses_nothing_and_the_dedup_view_counts_each_event_once(
    pubsub_emulator, bq_dataset, tmp_path
):
    bq = bq_dataset
    analytics.create_views(bq.client, bq.dataset, project=bq.project)
    name = f"restart-{uuid.uuid4().hex[:8]}"
    pubsub_emulator.topic(name)
    # A short ack deadline so the killed job's unacknowledged messages come back quickly.
    subscription = pubsub_emulator.subscription(name, f"{name}-sub", ack_deadline_seconds=10)
    log = tmp_path / "job.log"
    deadline = time.monotonic() + DEADLINE_SECONDS

    first = _start_job(bq, subscription, log)
    try:
        manifest_path = tmp_path / "manifest.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "publishers.simulator",
                "publish",
                "--project",
                pubsub_emulator.project,
                "--topic",
                name,
                "--count",
                str(EVENTS),
                "--rate",
                "0",
                "--seed",
                "3",
                "--duplicate-fraction",
                "0.1",
                "--manifest",
                str(manifest_path),
                "--quiet",
            ],
            check=True,
            env=os.environ,
            timeout=120,
        )
        manifest = json.loads(manifest_path.read_text())
        expected = set(manifest["valid_event_ids"])
        assert len(expected) == manifest["unique_valid_events"] > 0

        # Kill the job hard once it has written some, but not all, of the events.
        _wait(lambda: len(_ids(bq, "user_behavior")) >= 5, "the first rows", deadline, first, log)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        written_before_kill = set(_ids(bq, "user_behavior"))
    finally:
        stop_process(first.pid)

    second = _start_job(bq, subscription, log)
    try:
        _wait(
            lambda: set(_ids(bq, "user_behavior")) >= expected, "every event after the restart", deadline, second, log
        )
        # Give redeliveries that are still in flight a moment to land, then compare.
        time.sleep(3)
        raw = _ids(bq, "user_behavior")
        deduplicated = _ids(bq, "user_behavior_dedup")
    finally:
        stop_process(second.pid)

    assert written_before_kill < expected, "the kill should land mid-stream"
    assert set(raw) == expected  # nothing lost, nothing invented
    assert sorted(deduplicated) == sorted(expected)  # each published event counted exactly once
    assert bq.count("dead_letter") == 0
