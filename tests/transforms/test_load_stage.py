"""Staging by load jobs: Parquet files on gs:// (the GCS emulator) loaded by the BigQuery emulator.

Rows come in both forms the hourly job stages (dicts and Arrow tables in the rows'
text form); rows BigQuery would refuse are ``bigquery_load`` dead letters naming the
column; a load that fails fails the run, and the hourly job then merges nothing.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that, equal_to
from google.cloud import bigquery

from beam_pipelines import hourly, lake
from beam_pipelines.transforms.staging import load as load_stage
from beam_pipelines.transforms.staging.load import STAGE_BIGQUERY_LOAD, StageWithLoadJob, arrow_schemas
from beam_pipelines.transforms.staging.merge import MergeStagingTablesFn
from beam_pipelines.transforms.staging.targets import MergeTarget, TableRef
from tests.fixtures.jobs import hourly_job_args

pytestmark = pytest.mark.integration


def _row(event_id: str, **changes) -> dict:
    row = {
        "date": "2026-11-20",
        "event_id": event_id,
        "event_name": "order",
        "price": "59.97",
        "product_id": "SKU-12",
        "product_name": "Lamp",
        "user_id": "8",
        "user_name": None,
        "order_id": "o-1",
        "event_ts": "2026-11-20T23:59:59.500000Z",
        "session_id": None,
        "quantity": 3,
        "category": "Home",
        "source": "stream",
        "ingest_ts": "2026-11-21T00:00:01.000000Z",
    }
    return {**row, **changes}


GOOD_DICTS = [
    _row("d-1"),
    _row("d-2", price="0.00", quantity=None, product_name="Ünïcode ☃"),
    _row("d-round", price="19.9899999999"),  # more decimals than NUMERIC: rounded as BigQuery rounds
]
GOOD_TABLE_ROWS = [_row("t-1", event_name="view", order_id=None), _row("t-2", date="2026-11-21")]
TYPED_TS = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
# (row, column the dead letter must name)
BAD = [
    (_row("bad-null", user_id=None), "user_id"),
    (_row("bad-ts", event_ts="not-a-time"), "event_ts"),
    (_row("bad-date", date="2026-13-01"), "date"),
    (_row("bad-numeric", price="1e40"), "price"),
    (_row("bad-kind", quantity="three"), "quantity"),
]


def _stage(p, dataset, table: str, kind: str, temp: str, elements):
    return (
        p
        | f"Create{table}" >> beam.Create(elements, reshuffle=False)
        | f"Stage{table}"
        >> StageWithLoadJob(TableRef(dataset.project, dataset.dataset, table), kind, temp, pipeline="test")
    )


def test_dicts_and_arrow_tables_load_typed_and_refused_rows_are_dead_letters(
    bq_dataset, beam_bq_emulator, gcs_emulator
):
    _, text = arrow_schemas("user_behavior")
    temp = f"gs://{gcs_emulator.bucket}/load-test-{uuid.uuid4().hex[:8]}"
    table_rows = pa.Table.from_pylist([*GOOD_TABLE_ROWS, BAD[1][0]], schema=text)
    typed = _row("d-typed", price=Decimal("5.50"), date=date(2026, 11, 20), event_ts=TYPED_TS)
    elements = [*GOOD_DICTS, typed, table_rows, *(row for row, _ in BAD if row["event_id"] != "bad-ts")]

    p = beam.Pipeline(runner="FnApiRunner")
    dead = _stage(p, bq_dataset, "user_behavior_stg_load1", "user_behavior", temp, elements)
    assert_that(
        dead
        | beam.Map(lambda r: (r["stage"], json.loads(r["payload"])["event_id"], json.loads(r["error"])[0]["location"])),
        equal_to([(STAGE_BIGQUERY_LOAD, row["event_id"], column) for row, column in BAD]),
    )
    p.run().wait_until_finish()

    loaded = {r["event_id"]: r for r in bq_dataset.rows("user_behavior_stg_load1")}
    good = GOOD_DICTS + GOOD_TABLE_ROWS
    assert sorted(loaded) == sorted([*(r["event_id"] for r in good), "d-typed"])
    typed = loaded["d-typed"]  # Python values instead of text load as those values
    assert (typed["price"], typed["date"], typed["event_ts"]) == (Decimal("5.5"), date(2026, 11, 20), TYPED_TS)
    rows_in = len(elements) - 1 + table_rows.num_rows  # the table element holds several rows
    assert rows_in == len(loaded) + len(BAD)
    assert loaded["d-round"]["price"] == Decimal("19.99")
    for row in good:
        if row["event_id"] == "d-round":
            continue
        got = loaded[row["event_id"]]
        assert got["event_ts"] == datetime.fromisoformat(row["event_ts"])
        assert got["date"] == date.fromisoformat(row["date"])
        assert got["price"] == Decimal(row["price"])
        assert got["quantity"] == row["quantity"]
        assert got["product_name"] == row["product_name"]
        assert got["order_id"] == row["order_id"]
    table = bq_dataset.client.get_table(bq_dataset.table_id("user_behavior_stg_load1"))
    assert table.time_partitioning.field == "event_ts"
    assert lake.list_files(f"{temp}/*/*.parquet")  # kept for a retried load; the hourly job deletes them


def test_nested_order_lines_load_as_repeated_records(bq_dataset, beam_bq_emulator, gcs_emulator, monkeypatch):
    """Also through the wildcard URI a load uses past BigQuery's 10,000 URIs per job (limit set to 0 here)."""
    monkeypatch.setattr(load_stage, "MAX_SOURCE_URIS", 0)
    line = {"line_number": 1, "product_id": "SKU-1", "quantity": 2, "unit_price": "9.99", "amount": "19.98"}
    order = {
        "order_id": "o-9",
        "user_id": "u-1",
        "session_id": None,
        "status": "paid",
        "order_ts": "2026-11-20T10:00:00.000000Z",
        "updated_at": "2026-11-20T10:05:00.000000Z",
        "currency": "EUR",
        "total_amount": "29.97",
        "lines": [line, {**line, "line_number": 2, "quantity": 1, "amount": "9.99"}],
    }
    empty = {**order, "order_id": "o-10", "lines": []}
    bad = {**order, "order_id": "o-bad", "lines": [{**line, "product_id": None}]}
    temp = f"gs://{gcs_emulator.bucket}/load-test-{uuid.uuid4().hex[:8]}"

    p = beam.Pipeline(runner="FnApiRunner")
    dead = _stage(p, bq_dataset, "orders_stg_load2", "orders", temp, [order, empty, bad])
    assert_that(dead | beam.Map(lambda r: json.loads(r["payload"])["order_id"]), equal_to(["o-bad"]))
    p.run().wait_until_finish()

    rows = {r["order_id"]: r for r in bq_dataset.rows("orders_stg_load2")}
    assert sorted(rows) == ["o-10", "o-9"]
    assert rows["o-10"]["lines"] == []
    lines = [(ln["line_number"], ln["amount"]) for ln in rows["o-9"]["lines"]]
    assert lines == [(1, Decimal("19.98")), (2, Decimal("9.99"))]


def test_a_failed_load_fails_the_hourly_run_before_any_merge(bq_dataset, beam_bq_emulator, gcs_emulator, tmp_path):
    """A staging table BigQuery cannot load into (here: one of another shape, made beforehand)
    fails the run with the load job's error, and user_behavior stays as it was; the re-run
    repairs it."""
    hour = datetime(2026, 11, 20, 10, tzinfo=UTC)
    folder = lake.partition_path(str(tmp_path), lake.EVENTS, hour, zone=lake.RAW)
    lake.write_text(
        lake.join(folder, "backfill.jsonl"),
        json.dumps(
            {
                "event_id": "e-1",
                "event_name": "view",
                "event_ts": "2026-11-20T10:15:00.000000Z",
                "user_id": "1",
                "product_id": "2",
                "price": "3.50",
            }
        )
        + "\n",
    )
    run_id = f"fail{uuid.uuid4().hex[:6]}"
    clash = bigquery.Table(
        bq_dataset.table_id(f"user_behavior_stg_{run_id}"), schema=[bigquery.SchemaField("x", "STRING")]
    )
    clash.expires = datetime.now(UTC) + timedelta(hours=1)
    bq_dataset.client.create_table(clash)

    argv = hourly_job_args(
        bq_dataset.project,
        bq_dataset.dataset,
        tmp_path,
        hour,
        hour + timedelta(hours=1),
        f"--run_id={run_id}",
        f"--temp_gcs_location=gs://{gcs_emulator.bucket}/fail-{run_id}",
        "--allow_missing_extracts",  # a backfill of one event file: no extract ran
    )
    with pytest.raises(Exception, match=r"load job \S+ into .*user_behavior_stg_.* failed"):
        hourly.run(argv)
    assert bq_dataset.count("user_behavior") == 0

    # Its re-run (a new run id, the clash gone) merges the row and deletes its load files.
    temp = f"gs://{gcs_emulator.bucket}/rerun-{run_id}"
    argv = [a for a in argv if not a.startswith(("--run_id", "--temp_gcs_location"))]
    counters = hourly.run([*argv, f"--run_id=re{run_id}", f"--temp_gcs_location={temp}"])
    assert bq_dataset.count("user_behavior") == 1
    assert counters["bq_loaded_user_behavior"] == 1
    assert lake.list_files(f"{temp}/*/*/*.parquet") == []  # <temp>/<run id>/<staging table>/part-*


def test_hourly_refuses_a_temp_location_that_is_not_gcs(tmp_path, monkeypatch):
    monkeypatch.delenv("LOCAL_TEMP_GCS_LOCATION", raising=False)
    hour = datetime(2026, 11, 20, 10, tzinfo=UTC)
    argv = hourly_job_args("local-ecommerce", "ecommerce", tmp_path, hour, hour + timedelta(hours=1))
    with pytest.raises(ValueError, match=r"--temp_gcs_location must be a gs:// folder.*none given"):
        hourly.run(argv)
    with pytest.raises(ValueError, match=r"got '/tmp/x'"):
        hourly.run([*argv, "--temp_gcs_location=/tmp/x"])


def test_no_rows_still_make_an_empty_staging_table(bq_dataset, beam_bq_emulator, gcs_emulator):
    """An hour without orders: the MERGE reads an empty staging table (no load job runs)."""
    temp = f"gs://{gcs_emulator.bucket}/load-test-{uuid.uuid4().hex[:8]}"
    p = beam.Pipeline(runner="FnApiRunner")
    dead = _stage(p, bq_dataset, "orders_stg_empty", "orders", temp, [])
    assert_that(dead, equal_to([]))
    p.run().wait_until_finish()
    assert bq_dataset.count("orders_stg_empty") == 0
    assert [f.name for f in bq_dataset.client.get_table(bq_dataset.table_id("orders_stg_empty")).schema][-1] == "lines"


def test_a_missing_staging_table_fails_the_merge_and_the_others_are_kept_for_its_retry(bq_dataset, beam_bq_emulator):
    """Staging tables are dropped only after every MERGE succeeded; a missing one (expired, or
    dropped by an earlier attempt) fails the step instead of merging "nothing"."""
    from bigquery_schemas import table_spec
    from bigquery_schemas.ddl import build_table

    targets = []
    for kind in ("orders", "user_behavior"):
        ref = TableRef.parse(bq_dataset.table(kind))
        targets.append(MergeTarget(kind, ref, ref.staging("mergeretry")))
    orders_staging = targets[0].staging
    bq_dataset.client.create_table(
        build_table(bq_dataset.project, bq_dataset.dataset, table_spec("orders"), name=orders_staging.table)
    )
    fn = MergeStagingTablesFn(targets, bq_dataset.project, "mergeretry")
    with pytest.raises(RuntimeError, match=r"staging table \S+user_behavior_stg_mergeretry is missing"):
        list(fn.process(None, []))
    assert bq_dataset.client.get_table(orders_staging.table_id)  # kept: a retry merges it again
