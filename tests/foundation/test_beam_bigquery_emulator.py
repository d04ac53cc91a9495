"""Beam's own BigQuery IO, unchanged, writes to and reads from the emulator."""

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from bigquery_schemas import beam_additional_bq_parameters, beam_schema

ROWS = [
    {
        "date": "2026-11-20",
        "event_id": "e-1",
        "event_name": "view",
        "price": "19.99",
        "product_id": "11",
        "product_name": "Lamp",
        "user_id": "7",
        "user_name": "Ada",
        "order_id": None,
        "event_ts": "2026-11-20T10:00:00.000000Z",
        "session_id": "s-1",
        "quantity": 1,
        "category": "Home",
        "source": "stream",
        "ingest_ts": "2026-11-20T10:00:01.000000Z",
    },
    {
        "date": "2026-11-21",
        "event_id": "o-1:1",
        "event_name": "order",
        "price": "59.97",
        "product_id": "12",
        "product_name": None,
        "user_id": "8",
        "user_name": None,
        "order_id": "o-1",
        "event_ts": "2026-11-21T23:59:59.500000Z",
        "session_id": None,
        "quantity": 3,
        "category": None,
        "source": "api",
        "ingest_ts": "2026-11-22T00:10:00.000000Z",
    },
]

pytestmark = pytest.mark.integration


def _normalise(row):
    """Emulator rows -> the JSON form we wrote (types as BigQuery returns them)."""
    out = dict(row)
    out["date"] = str(out["date"])
    out["price"] = f"{out['price']:.2f}"
    for key in ("event_ts", "ingest_ts"):
        out[key] = out[key].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return out


def test_write_to_bigquery_then_read_back_exact_rows(bq_dataset, beam_bq_emulator):
    table = bq_dataset.table("user_behavior")
    options = PipelineOptions(runner="FnApiRunner", project=bq_dataset.project)
    with beam.Pipeline(options=options) as p:
        result = (
            p
            | "CreateRows" >> beam.Create(ROWS)
            | "WriteUserBehavior"
            >> beam.io.WriteToBigQuery(
                table,
                schema=beam_schema("user_behavior"),
                additional_bq_parameters=beam_additional_bq_parameters("user_behavior"),
                method=beam.io.WriteToBigQuery.Method.STREAMING_INSERTS,
                create_disposition=beam.io.BigQueryDisposition.CREATE_NEVER,
                write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
            )
        )
        assert_that(result.failed_rows, equal_to([]), label="NoFailedRows")

    stored = [_normalise(r) for r in bq_dataset.rows("user_behavior", order_by="event_id")]
    assert stored == sorted(ROWS, key=lambda r: r["event_id"])

    # And Beam's DIRECT_READ (Storage Read API over gRPC) sees the same rows.
    with beam.Pipeline(options=options) as p:
        read = (
            p
            | "ReadUserBehavior"
            >> beam.io.ReadFromBigQuery(table=table, method=beam.io.ReadFromBigQuery.Method.DIRECT_READ)
            | "KeyById" >> beam.Map(lambda r: (r["event_id"], r["event_name"], r["product_id"], r["quantity"]))
        )
        assert_that(read, equal_to([("e-1", "view", "11", 1), ("o-1:1", "order", "12", 3)]))


def test_create_if_needed_lays_out_table_from_the_schema_file(bq_dataset, beam_bq_emulator):
    bq_dataset.client.delete_table(bq_dataset.table_id("user_behavior"))
    with beam.Pipeline(options=PipelineOptions(runner="FnApiRunner", project=bq_dataset.project)) as p:
        _ = (
            p
            | beam.Create(ROWS[:1])
            | beam.io.WriteToBigQuery(
                bq_dataset.table("user_behavior"),
                schema=beam_schema("user_behavior"),
                additional_bq_parameters=beam_additional_bq_parameters("user_behavior"),
                method=beam.io.WriteToBigQuery.Method.STREAMING_INSERTS,
                create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
            )
        )
    table = bq_dataset.client.get_table(bq_dataset.table_id("user_behavior"))
    assert [f.name for f in table.schema] == [f["name"] for f in beam_schema("user_behavior")["fields"]]
    assert table.time_partitioning.field == "event_ts"
    assert table.clustering_fields == ["event_name", "product_id", "user_id"]
    assert bq_dataset.count("user_behavior") == 1


@pytest.mark.parametrize("per_bundle_inserts", [True, False], ids=["per_bundle", "write_to_bigquery"])
def test_the_jobs_sinks_never_create_a_table(bq_dataset, beam_bq_emulator, per_bundle_inserts):
    """A misspelt table name fails the write instead of creating a new table."""
    from google.api_core.exceptions import NotFound

    from beam_pipelines.transforms.bigquery_sink import WriteUserBehavior

    typo = bq_dataset.table("user_behaviour")
    p = beam.Pipeline(runner="FnApiRunner")
    refused = p | beam.Create(ROWS) | WriteUserBehavior(typo, per_bundle_inserts=per_bundle_inserts)
    if per_bundle_inserts:  # the write's setup fails the run
        with pytest.raises(Exception, match=r"(?i)not found|CREATE_NEVER|does not exist|404"):
            p.run().wait_until_finish()
    else:  # WriteToBigQuery: every row comes back refused (a dead letter), none is written
        assert_that(refused | beam.combiners.Count.Globally(), equal_to([len(ROWS)]))
        p.run().wait_until_finish()
    with pytest.raises(NotFound):
        bq_dataset.client.get_table(bq_dataset.table_id("user_behaviour"))
