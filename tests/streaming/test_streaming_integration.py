"""The streaming job end to end on the BundleBasedDirectRunner, Pub/Sub and BigQuery emulators.

A hand-made message set with known duplicates and malformed messages is published,
the job runs in the background, and BigQuery is polled until the expected counts
arrive (or a deadline); then the job is cancelled. The published set is the ground
truth: records in = rows written + dead letters + duplicates removed.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import bigquery, pubsub_v1

from beam_pipelines import events, streaming
from tests.fixtures.streaming_harness import streaming_job_args, wait_for

pytestmark = pytest.mark.integration

PRODUCTS = [
    {"product_id": pid, "product_name": f"Product {pid}", "category": "Kitchen", "price": "9.99"} for pid in (1, 2, 3)
]
USERS = [{"user_id": uid, "user_name": f"User {uid}", "country": "GB"} for uid in (1, 2)]
NEW_PRODUCT = {"product_id": "99", "product_name": "Launched later", "category": "Garden", "price": "5.00"}
N_VALID = 30
DUPLICATE_EVERY = 6  # events 0, 6, 12, ... are published twice
DEADLINE_SECONDS = 180  # a safety net, not a timing check: ~15 s alone; missed 60 s once with both cores busy


def _record(i: int, now: datetime, product_id: int | None = None) -> dict:
    name = ("view", "add_to_cart", "wishlist", "order")[i % 4]
    return {
        "event_id": str(uuid.uuid4()),
        "event_name": name,
        "event_ts": events.format_ts(now - timedelta(seconds=i % 5)),
        "user_id": str(1 + i % 2),
        "session_id": f"s-{i % 3}",
        "product_id": str(product_id or 1 + i % 3),
        "price": "2.50",
        "quantity": 1 + i % 2,
        "order_id": f"o-{i}" if name == "order" else None,
    }


def _publish(publisher, topic: str, data: bytes, attributes: dict[str, str]) -> None:
    publisher.publish(topic, data, **attributes).result(timeout=10)


def _publish_event(publisher, topic: str, record: dict) -> None:
    attrs = {"event_id": record["event_id"], "event_ts": record["event_ts"]}
    _publish(publisher, topic, json.dumps(record).encode(), attrs)


def _ids(bq, table: str) -> list[str]:
    return [r["event_id"] for r in bq.client.query(f"select event_id from `{bq.table_id(table)}`").result()]


def test_streaming_job_end_to_end(pubsub_emulator, bq_dataset, beam_bq_emulator):
    bq = bq_dataset
    assert not bq.client.insert_rows_json(bq.table_id("products"), PRODUCTS)
    assert not bq.client.insert_rows_json(bq.table_id("users"), USERS)
    name = f"events-{uuid.uuid4().hex[:8]}"
    topic = pubsub_emulator.topic(name)
    subscription = pubsub_emulator.subscription(name, f"{name}-sub")
    publisher = pubsub_v1.PublisherClient()

    result = streaming.run(
        streaming_job_args(
            bq, subscription, "--runner=BundleBasedDirectRunner", "--dims_refresh_seconds=2", "--window_seconds=5"
        )
    )
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        probes = []

        def probe_enriched(product_id: int):
            """Publish one probe event for product_id; return its enriched rows once they exist."""
            probe = _record(len(probes), datetime.now(UTC), product_id=product_id)
            probes.append(probe)
            _publish_event(publisher, topic, probe)
            time.sleep(1)
            sql = (
                f"select product_name from `{bq.table_id('user_behavior')}` "
                "where product_id = @product_id and product_name is not null"
            )
            config = bigquery.QueryJobConfig(
                query_parameters=[bigquery.ScalarQueryParameter("product_id", "STRING", str(product_id))]
            )
            return list(bq.client.query(sql, job_config=config).result())

        # Events processed before the first dimension load are kept with NULL attributes;
        # probe until the job is up and enriching, so the checks below are exact.
        wait_for(lambda: probe_enriched(3), "the first dimension load", deadline)
        now = datetime.now(UTC)
        valid = [_record(i, now) for i in range(N_VALID)]
        duplicates = valid[::DUPLICATE_EVERY]
        malformed = [
            (b'{"event_id": "broken', {"event_ts": events.format_ts(now)}),
            (json.dumps(_record(100, now) | {"event_name": "purchase"}).encode(), {"event_ts": events.format_ts(now)}),
            (json.dumps(_record(101, now) | {"price": "-1"}).encode(), {}),  # no attributes at all
        ]
        for record in valid + duplicates:
            _publish_event(publisher, topic, record)
        for data, attrs in malformed:
            _publish(publisher, topic, data, attrs)

        wait_for(lambda: bq.count("user_behavior") >= N_VALID + len(probes), "user_behavior rows", deadline)
        wait_for(lambda: bq.count("dead_letter") >= len(malformed), "dead letters", deadline)

        # A product added after the start is picked up at the next refresh, no restart:
        # publish probes for it until one row carries its name.
        assert not bq.client.insert_rows_json(bq.table_id("products"), [NEW_PRODUCT])
        enriched = wait_for(lambda: probe_enriched(99), "the new product in the side input", deadline)
        assert enriched[0]["product_name"] == "Launched later"
        wait_for(lambda: bq.count("user_behavior") >= N_VALID + len(probes), "probe rows", deadline)

        written = _ids(bq, "user_behavior")
        # Exactly the unique valid events, each once.
        expected_ids = [r["event_id"] for r in valid + probes]
        assert sorted(written) == sorted(expected_ids)
        rows = {r["event_id"]: r for r in bq.rows("user_behavior")}
        first = rows[valid[0]["event_id"]]
        assert (first["product_name"], first["user_name"], first["source"]) == ("Product 1", "User 1", "stream")
        assert all(rows[r["event_id"]]["product_name"] == f"Product {r['product_id']}" for r in valid)
        # Probes for product 99 published before the refresh kept their row with NULLs.
        new_names = [rows[p["event_id"]]["product_name"] for p in probes if p["product_id"] == "99"]
        assert new_names[-1] == "Launched later"
        assert set(new_names[:-1]) <= {None}

        dead = bq.rows("dead_letter")
        assert sorted((d["stage"], d["pipeline"]) for d in dead) == [
            ("parse", "streaming"),
            ("validate", "streaming"),
            ("validate", "streaming"),
        ]
        assert sorted(d["payload"] for d in dead) == sorted(data.decode() for data, _ in malformed)

        # Conservation: records in = rows written + dead letters + duplicates removed.
        records_in = len(valid) + len(duplicates) + len(malformed) + len(probes)
        assert records_in == len(written) + len(dead) + len(duplicates)

        # Engagement: latest panes never over-count, and windows do fire with ON_TIME panes.
        # KNOWN GAP (DirectRunner, to investigate): a window whose first event arrives after
        # the wall-clock watermark passed its end emits no pane, so the total can be lower
        # than the unique events; the TestStream tests cover late panes exactly.
        def engagement_latest():
            sql = (
                "select sum(events) as n, countif(pane_timing = 'ON_TIME') as on_time from ("
                "select window_start, event_name, max_by(events, pane_index) as events, "
                "max_by(pane_timing, pane_index) as pane_timing "
                f"from `{bq.table_id('engagement_minutely')}` group by window_start, event_name)"
            )
            # No row at all is a bqemulator divergence seen while inserts land: ask again.
            rows = list(bq.client.query(sql).result())
            return rows[0] if rows and rows[0].on_time else None

        latest = wait_for(engagement_latest, "an ON_TIME engagement pane", deadline)
        assert 0 < latest.n <= len(expected_ids)
    finally:
        # The DirectRunner's cancel waits for the current pull; one message makes it return at once.
        _publish(publisher, topic, b"stop", {})
        result.cancel()
