"""BigQuery writes whose rejected rows come back as dead-letter rows.

Schemas come only from :func:`bigquery_schemas.beam_schema`, partitioning and
clustering from :func:`bigquery_schemas.beam_additional_bq_parameters`, so a table
Beam creates matches one ``bigquery_schemas.tables`` creates.

Each write transform returns a PCollection of ``dead_letter`` rows (stage
``bigquery_insert``, the BigQuery error, the row as JSON) for the rows BigQuery
refused, so the caller routes them to the dead-letter table::

    failed = rows | "WriteUserBehavior" >> WriteUserBehavior(options.output_table)
    (parse_dead, failed) | "FlattenDeadLetters" >> beam.Flatten() | "WriteDeadLetters" >> WriteDeadLetters(table)

Only STREAMING_INSERTS (and STORAGE_WRITE_API) report failed rows; with FILE_LOADS a
bad row fails the load job (the job fails loudly), and the returned PCollection is empty.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import apache_beam as beam
from apache_beam.io.gcp.bigquery_tools import RetryStrategy
from apache_beam.metrics import Metrics

import bigquery_schemas
from beam_pipelines import events
from beam_pipelines.transforms import METRICS_NAMESPACE

STAGE_BIGQUERY_INSERT = "bigquery_insert"
STREAMING_INSERTS = beam.io.WriteToBigQuery.Method.STREAMING_INSERTS
FILE_LOADS = beam.io.WriteToBigQuery.Method.FILE_LOADS

_LOG = logging.getLogger(__name__)


def _check_table(table: str) -> None:
    if not isinstance(table, str) or ":" not in table or "." not in table.split(":", 1)[1]:
        raise ValueError(f"table must be 'project:dataset.table', got {table!r}")


class FailedRowToDeadLetterFn(beam.DoFn):
    """(destination, row, errors) from WriteToBigQuery -> a ``dead_letter`` row."""

    def __init__(self, pipeline: str):
        self._pipeline = pipeline
        self._failed = Metrics.counter(METRICS_NAMESPACE, "bigquery_failed_rows")

    def process(self, failed):
        destination, row, errors = failed
        self._failed.inc()
        try:
            event_ts = events.format_ts(events.parse_ts(row.get("event_ts")))
        except (ValueError, TypeError, AttributeError):
            event_ts = None
        yield events.dead_letter_row(
            pipeline=self._pipeline,
            stage=STAGE_BIGQUERY_INSERT,
            error=json.dumps(errors, default=str),
            payload=json.dumps(row, sort_keys=True, default=str),
            attributes={"destination": str(destination)},
            event_ts=event_ts,
        )


class WriteRowsToTable(beam.PTransform):
    """Write dict rows to a BigQuery table declared in ``bigquery_schemas/tables.json``.

    Args:
      table: ``project:dataset.table``.
      schema_table_name: the table's name in ``tables.json`` (e.g. ``"user_behavior"``).
      method: ``STREAMING_INSERTS`` (default; reports failed rows) or ``FILE_LOADS``
        (batch; needs ``temp_gcs_location`` or ``--temp_location`` on GCS).
      pipeline: job name stored in the dead-letter rows (``dead_letter.pipeline``).
      **write_kwargs: passed to ``beam.io.WriteToBigQuery`` (``batch_size``,
        ``triggering_frequency``, ``with_auto_sharding``, ``custom_gcs_temp_location``...).

    Returns:
      PCollection of ``dead_letter`` rows for rows BigQuery rejected.
    """

    def __init__(
        self,
        table: str,
        schema_table_name: str,
        method: str = STREAMING_INSERTS,
        *,
        pipeline: str = "unspecified",
        **write_kwargs: Any,
    ):
        super().__init__()
        _check_table(table)
        bigquery_schemas.load_fields(schema_table_name)  # raises ValueError on an unknown name
        self._table = table
        self._name = schema_table_name
        self._method = method
        self._pipeline = pipeline
        self._write_kwargs = write_kwargs

    def expand(self, rows):
        kwargs = dict(self._write_kwargs)
        if self._method == STREAMING_INSERTS:
            # Retry only transient errors; permanent ones (bad value, schema mismatch)
            # come back as failed rows instead of being retried forever.
            kwargs.setdefault("insert_retry_strategy", RetryStrategy.RETRY_ON_TRANSIENT_ERROR)
        result = rows | "WriteToBigQuery" >> beam.io.WriteToBigQuery(
            self._table,
            schema=bigquery_schemas.beam_schema(self._name),
            additional_bq_parameters=bigquery_schemas.beam_additional_bq_parameters(self._name),
            create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
            write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
            method=self._method,
            **kwargs,
        )
        if self._method in (STREAMING_INSERTS, beam.io.WriteToBigQuery.Method.STORAGE_WRITE_API):
            failed = result.failed_rows_with_errors
        else:
            failed = rows.pipeline | "NoFailedRows" >> beam.Create([])
        return failed | "FailedRowsToDeadLetters" >> beam.ParDo(FailedRowToDeadLetterFn(self._pipeline))


class WriteUserBehavior(WriteRowsToTable):
    """Write ``user_behavior`` rows; returns dead-letter rows for rejected ones.

    Args:
      table: ``project:dataset.user_behavior``.
      method: ``STREAMING_INSERTS`` (default) or ``FILE_LOADS``.
      pipeline: job name for the dead-letter rows.
      **write_kwargs: passed to ``beam.io.WriteToBigQuery``.
    """

    def __init__(self, table: str, method: str = STREAMING_INSERTS, *, pipeline: str = "unspecified", **write_kwargs):
        super().__init__(table, bigquery_schemas.USER_BEHAVIOR, method, pipeline=pipeline, **write_kwargs)


class _LogFailedDeadLetterFn(beam.DoFn):
    def __init__(self):
        self._failed = Metrics.counter(METRICS_NAMESPACE, "dead_letter_insert_failures")

    def process(self, row):
        # Nowhere left to route it: count it and log it so an alert on the counter fires.
        self._failed.inc()
        _LOG.error("dead letter could not be written to BigQuery: %s", row.get("error"))
        yield row


class WriteDeadLetters(beam.PTransform):
    """Write ``dead_letter`` rows.

    A dead letter BigQuery refuses cannot be dead-lettered again; it is counted
    (``dead_letter_insert_failures``), logged and returned for the caller to inspect.

    Args:
      table: ``project:dataset.dead_letter``.
      method: ``STREAMING_INSERTS`` (default) or ``FILE_LOADS``.
      **write_kwargs: passed to ``beam.io.WriteToBigQuery``.
    """

    def __init__(self, table: str, method: str = STREAMING_INSERTS, **write_kwargs: Any):
        super().__init__()
        self._write = WriteRowsToTable(
            table, bigquery_schemas.DEAD_LETTER, method, pipeline="dead_letter", **write_kwargs
        )

    def expand(self, rows):
        failed = rows | "WriteDeadLetterRows" >> self._write
        return failed | "CountUnwritableDeadLetters" >> beam.ParDo(_LogFailedDeadLetterFn())
