"""The simulator's ground truth, end to end through the streaming job on the emulators.

The simulator publishes shoppers' events with known duplicates, malformed and late
messages and writes a manifest; after the job has run, ``user_behavior`` holds
exactly the manifest's unique valid events (each once) and ``dead_letter`` exactly
its malformed messages: published = rows + dead letters + duplicates.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from google.cloud import pubsub_v1

from beam_pipelines import streaming
from tests.fixtures.streaming_harness import simulate, streaming_job_args, wait_for

pytestmark = pytest.mark.integration

MESSAGES = 240
DEADLINE_SECONDS = 180


def _stream_rows(bq) -> list[str]:
    sql = f"select event_id from `{bq.table_id('user_behavior')}` where source = 'stream'"
    return [row.event_id for row in bq.client.query(sql).result()]


def test_user_behavior_and_dead_letter_match_the_simulator_manifest(
    pubsub_emulator, bq_dataset, beam_bq_emulator, tmp_path
):
    bq = bq_dataset
    name = f"sim-{uuid.uuid4().hex[:8]}"
    topic = pubsub_emulator.topic(name)
    subscription = pubsub_emulator.subscription(name, f"{name}-sub")
    result = streaming.run(streaming_job_args(bq, subscription))
    try:
        manifest = simulate(
            pubsub_emulator.project,
            name,
            MESSAGES,
            21,
            tmp_path / "manifest.json",
            "--duplicate-fraction",
            "0.1",
            "--malformed-fraction",
            "0.05",
            "--late-fraction",
            "0.05",
            "--late-minutes",
            "3",
        )
        expected = manifest["valid_event_ids"]
        deadline = time.monotonic() + DEADLINE_SECONDS
        wait_for(
            lambda: len(_stream_rows(bq)) >= len(expected) and bq.count("dead_letter") >= manifest["malformed_sent"],
            "the manifest's rows and dead letters",
            deadline,
        )
        time.sleep(2)  # anything extra (a duplicate slipping through) would land now
        rows, dead_letters = _stream_rows(bq), bq.rows("dead_letter")
    finally:
        publisher = pubsub_v1.PublisherClient()
        publisher.publish(topic, b"{}", event_id="stop", event_ts="2026-01-01T00:00:00Z").result()
        result.cancel()

    assert manifest["duplicates_sent"] > 0 and manifest["malformed_sent"] > 0 and manifest["late_sent"] > 0
    assert Counter(rows) == Counter(dict.fromkeys(expected, 1))  # every unique valid event, exactly once
    assert len(dead_letters) == manifest["malformed_sent"]
    assert {d["pipeline"] for d in dead_letters} == {"streaming"}
    assert {d["stage"] for d in dead_letters} <= {"parse", "validate"}
    assert manifest["published_total"] == len(rows) + len(dead_letters) + manifest["duplicates_sent"]
