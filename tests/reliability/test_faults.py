"""Faults: a flaky API, a SQL connection killed mid-read, BigQuery refusing rows.

* The orders API answers 500 and 429 (with ``Retry-After``) on a share of requests:
  ``extract_orders`` still writes every order of the window exactly once.
* PostgreSQL terminates the extract's backend (``pg_terminate_backend``) while
  ``extract_dims`` streams a table: the job fails loudly and ``_LATEST`` keeps
  pointing at the previous complete snapshot, never at the partial one.
* BigQuery refuses rows that break the schema: they come back from
  ``WriteUserBehavior`` as dead letters carrying BigQuery's error, the valid rows of
  the same request are retried and written. The emulator does not enforce types,
  REQUIRED or unknown fields (docs: DESIGN.md), so a shim in front of its insertAll
  call answers as BigQuery does: with ``skipInvalidRows`` (Beam always sets it) the
  valid rows are inserted and the bad ones come back with ``invalid`` errors.

The streaming job's kill-and-restart test lives with the streaming job's own
integration tests (``tests/streaming``).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apache_beam as beam
import pytest

from beam_pipelines import events, extract_dims, extract_orders, lake
from beam_pipelines.io import sql
from beam_pipelines.transforms.bigquery_sink import STAGE_BIGQUERY_INSERT, WriteDeadLetters, WriteUserBehavior
from publishers.catalog import load as load_catalog

pytestmark = pytest.mark.integration


def _lake_orders(lake_root: str) -> list[dict]:
    files = lake.list_files(lake.join(lake_root, lake.RAW, lake.ORDERS, "dt=*", "hour=*", "*.jsonl"))
    return [json.loads(line) for path in files for line in lake.iter_lines(path)]


def test_extract_orders_gets_every_order_exactly_once_through_500s_and_429s(
    orders_api, orders_api_server, tmp_path, monkeypatch
):
    flaky = orders_api_server(orders_api.database_url, fault_rate_5xx=0.25, fault_rate_429=0.15, fault_seed=8)
    monkeypatch.setenv("RELIABILITY_API_TOKEN", flaky.token)
    start, end = orders_api.window
    lake_root = str(tmp_path / "lake")
    metrics = extract_orders.run(
        [
            "--runner=FnApiRunner",
            f"--api_base_url={flaky.base_url}",
            "--api_token_env=RELIABILITY_API_TOKEN",
            f"--window_start={events.format_ts(start)}",
            f"--window_end={events.format_ts(end)}",
            f"--lake_root={lake_root}",
            "--page_size=100",
            "--split_minutes=30",
            "--max_attempts=12",
            "--max_backoff_seconds=1",
        ]
    )
    expected = sorted(o.order_id for o in orders_api.orders if start <= o.updated_at < end)
    got = sorted(o["order_id"] for o in _lake_orders(lake_root))
    assert len(expected) > 1000
    assert got == expected  # every order, none twice
    assert metrics["api_retries"] > 0  # the faults really happened
    assert metrics["api_orders_read"] == len(expected)


def _terminate_reader(admin_url: str, dbname: str, stop: threading.Event, killed: list[int]) -> None:
    """Kill every backend of ``dbname`` that is streaming the users table, once seen."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute(
                "select pid from pg_stat_activity where datname = %s and pid <> pg_backend_pid() "
                "and (query ilike %s or query ilike %s)",
                (dbname, "%from users%", "%fetch%iter_query%"),
            ).fetchall()
            for (pid,) in rows:
                conn.execute("select pg_terminate_backend(%s)", (pid,))
                killed.append(pid)
            if killed:
                return
            time.sleep(0.02)


def test_extract_dims_fails_loudly_and_keeps_the_last_complete_snapshot_when_postgres_drops(postgres_url, tmp_path):
    n_users = 50_000
    with sql.connect(postgres_url) as db:
        load_catalog(
            db,
            seed=5,
            n_products=50,
            n_users=n_users,
            start=datetime(2026, 1, 1, tzinfo=UTC),
            end=datetime(2026, 1, 1, tzinfo=UTC),
            replace=True,
        )
    lake_root = str(tmp_path / "lake")
    base = ["--runner=FnApiRunner", f"--database_url={postgres_url}", f"--lake_root={lake_root}", "--tables=users"]
    extract_dims.run([*base, "--snapshot_ts=2026-11-22T10:00:00Z"])
    first = lake.latest_snapshot_dir(lake_root, "users")
    assert first is not None and first.rstrip("/").endswith("snapshot=20261122T100000Z")
    assert len(lake.read_latest_snapshot_rows(lake_root, "users")) == n_users

    stop, killed = threading.Event(), []
    dbname = postgres_url.rsplit("/", 1)[1]
    killer = threading.Thread(target=_terminate_reader, args=(postgres_url, dbname, stop, killed), daemon=True)
    killer.start()
    try:
        with pytest.raises(Exception) as failure:
            extract_dims.run([*base, "--snapshot_ts=2026-11-22T10:30:00Z", "--num_partitions=1"])
    finally:
        stop.set()
        killer.join(timeout=10)
    assert killed, "the reader's backend was never seen, so nothing was terminated"
    assert "terminat" in str(failure.value).lower() or "connection" in str(failure.value).lower()
    # The pointer still names the first, complete snapshot; the partial one is never read.
    assert lake.latest_snapshot_dir(lake_root, "users") == first
    assert len(lake.read_latest_snapshot_rows(lake_root, "users")) == n_users

    # Once the database is back, a re-run completes and moves the pointer.
    extract_dims.run([*base, "--snapshot_ts=2026-11-22T10:30:00Z"])
    assert lake.latest_snapshot_dir(lake_root, "users").rstrip("/").endswith("snapshot=20261122T103000Z")
    assert len(lake.read_latest_snapshot_rows(lake_root, "users")) == n_users


# ----------------------------------------------------------------------------- BigQuery refusals

_FIELDS = {f["name"]: f for f in json.loads(Path("bigquery_schemas/user_behavior.json").read_text())}


def _bigquery_row_errors(row: dict) -> list[dict]:
    """What BigQuery's insertAll says about one user_behavior row (the checks the emulator skips)."""
    errors = []
    for name in row:
        if name not in _FIELDS:
            errors.append({"reason": "invalid", "location": name, "message": f"no such field: {name}."})
    for name, field in _FIELDS.items():
        value = row.get(name)
        if value is None:
            if field["mode"] == "REQUIRED":
                errors.append({"reason": "invalid", "location": name, "message": f"Missing required field: {name}."})
            continue
        if field["type"] == "INTEGER" and not (isinstance(value, int) or str(value).lstrip("-").isdigit()):
            errors.append(
                {"reason": "invalid", "location": name, "message": f"Cannot convert value to integer: {value}"}
            )
    return errors


@pytest.fixture
def bigquery_enforces_schema(monkeypatch):
    from apache_beam.io.gcp import bigquery_tools

    real = bigquery_tools.BigQueryWrapper._insert_all_rows

    def insert_all(self, project_id, dataset_id, table_id, rows, insert_ids, **kwargs):
        if table_id != "user_behavior":
            return real(self, project_id, dataset_id, table_id, rows, insert_ids, **kwargs)
        per_row = [_bigquery_row_errors(r) for r in rows]
        if not kwargs.get("skip_invalid_rows"):
            raise AssertionError("Beam's streaming inserts always pass skip_invalid_rows=True")
        # skipInvalidRows=true (what Beam sends): the valid rows are inserted, the invalid
        # ones come back with their index and BigQuery's 'invalid' errors.
        keep = [i for i, errs in enumerate(per_row) if not errs]
        if keep:
            ok, errors = real(
                self,
                project_id,
                dataset_id,
                table_id,
                [rows[i] for i in keep],
                [insert_ids[i] for i in keep],
                **kwargs,
            )
            assert ok, errors
        errors = [{"index": i, "errors": errs} for i, errs in enumerate(per_row) if errs]
        return not errors, errors

    monkeypatch.setattr(bigquery_tools.BigQueryWrapper, "_insert_all_rows", insert_all)


def test_rows_bigquery_refuses_become_dead_letters_with_its_error(
    beam_bq_emulator, bq_dataset, bigquery_enforces_schema
):
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    good = []
    for i in range(5):
        event = events.validate_record(
            {
                "event_id": f"ok-{i}",
                "event_name": "view",
                "event_ts": events.format_ts(ts),
                "user_id": "1",
                "product_id": "2",
                "price": "3.50",
            }
        )
        good.append(events.user_behavior_row(event, None, None, events.SOURCE_STREAM, events.format_ts(ts)))
    bad = [
        {**good[0], "event_id": "bad-field", "colour": "red"},
        {**good[0], "event_id": "bad-type", "quantity": "abc"},
        {**good[0], "event_id": None},
    ]
    p = beam.Pipeline(runner="FnApiRunner")
    failed = (
        p
        | beam.Create(good + bad)
        | "WriteUserBehavior" >> WriteUserBehavior(bq_dataset.table("user_behavior"), pipeline="reliability")
    )
    _ = failed | "WriteDeadLetters" >> WriteDeadLetters(bq_dataset.table("dead_letter"))
    p.run().wait_until_finish()

    assert sorted(r["event_id"] for r in bq_dataset.rows("user_behavior")) == [f"ok-{i}" for i in range(5)]
    dead = bq_dataset.rows("dead_letter")
    assert len(good) + len(bad) == bq_dataset.count("user_behavior") + len(dead)
    assert {r["stage"] for r in dead} == {STAGE_BIGQUERY_INSERT}
    by_id = {json.loads(r["payload"])["event_id"]: r["error"] for r in dead}
    assert set(by_id) == {"bad-field", "bad-type", None}
    assert "no such field: colour" in by_id["bad-field"]
    assert "Cannot convert value to integer: abc" in by_id["bad-type"]
    assert "Missing required field: event_id" in by_id[None]
