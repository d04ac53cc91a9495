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
import threading
import time
from typing import Any

import apache_beam as beam
from apache_beam.io.gcp import bigquery_tools
from apache_beam.io.gcp.bigquery_tools import RetryStrategy
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

import bigquery_schemas
from beam_pipelines import events
from beam_pipelines.transforms import METRICS_NAMESPACE

STAGE_BIGQUERY_INSERT = "bigquery_insert"
STREAMING_INSERTS = beam.io.WriteToBigQuery.Method.STREAMING_INSERTS
FILE_LOADS = beam.io.WriteToBigQuery.Method.FILE_LOADS

_LOG = logging.getLogger(__name__)
# Tables this process has already got-or-created (the DirectRunner calls setup() per bundle).
_KNOWN_TABLES: set[str] = set()
_KNOWN_TABLES_LOCK = threading.Lock()


def _check_table(table: str) -> None:
    if not isinstance(table, str) or ":" not in table or "." not in table.split(":", 1)[1]:
        raise ValueError(f"table must be 'project:dataset.table', got {table!r}")


class FailedRowToDeadLetterFn(beam.DoFn):
    """(destination, row, errors) from WriteToBigQuery (or a row a load would refuse) -> a ``dead_letter`` row."""

    def __init__(self, pipeline: str, stage: str = STAGE_BIGQUERY_INSERT):
        self._pipeline = pipeline
        self._stage = stage
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
            stage=self._stage,
            error=json.dumps(errors, default=str),
            payload=json.dumps(row, sort_keys=True, default=str),
            attributes={"destination": str(destination)},
            event_ts=event_ts,
        )


class InsertRowsPerBundleFn(beam.DoFn):
    """Rows -> streaming-insert requests of up to ``batch_size`` rows, flushed at the end of each bundle.

    ``WriteToBigQuery``'s streaming path without its reshuffle: no insert ids are
    committed first, so use it only where bundles are not retried (the local
    BundleBasedDirectRunner and FnApiRunner) or a row inserted twice does no harm (the
    hourly job's staging tables: every MERGE keeps one row per key). Yields
    ``(destination, row, errors)`` for every row BigQuery refused, the shape of
    ``WriteToBigQuery(...).failed_rows_with_errors``, so the same
    :class:`FailedRowToDeadLetterFn` turns them into dead letters. Errors whose reason is
    transient are retried with backoff (``RetryStrategy.RETRY_ON_TRANSIENT_ERROR``, like
    the ``WriteToBigQuery`` path) up to ``max_retries`` times, then dead-lettered rather
    than retried forever. No timers: rows never wait for a later bundle.
    """

    def __init__(
        self,
        table: str,
        schema_table_name: str,
        batch_size: int,
        max_retries: int = 5,
        create_parameters: dict[str, Any] | None = None,
        create_disposition: str = beam.io.BigQueryDisposition.CREATE_NEVER,
    ):
        self._table = table
        self._create_disposition = create_disposition
        self._name = schema_table_name
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._create_parameters = (
            create_parameters
            if create_parameters is not None
            else bigquery_schemas.beam_additional_bq_parameters(schema_table_name)
        )
        self._batches = Metrics.distribution(METRICS_NAMESPACE, "bigquery_insert_batch_rows")

    def setup(self):
        # The DirectRunner calls setup() for every bundle; where it reuses the DoFn object
        # (beam_pipelines.direct_runner_tuning) keep the client and its open connection:
        # a fresh one costs ~8 ms per insert against the emulator (23 vs 15 ms, 10 rows).
        if getattr(self, "_bq", None) is None:
            self._bq = bigquery_tools.BigQueryWrapper()
        self._ref = bigquery_tools.parse_table_reference(self._table)
        with _KNOWN_TABLES_LOCK:
            if self._table in _KNOWN_TABLES:
                return
            self._bq.get_or_create_table(
                self._ref.projectId,
                self._ref.datasetId,
                self._ref.tableId,
                bigquery_tools.get_bq_tableschema(bigquery_schemas.beam_schema(self._name)),
                self._create_disposition,
                beam.io.BigQueryDisposition.WRITE_APPEND,
                additional_create_parameters=self._create_parameters,
            )
            _KNOWN_TABLES.add(self._table)

    def start_bundle(self):
        self._buffer: list[WindowedValue] = []

    def process(self, row, timestamp=beam.DoFn.TimestampParam, win=beam.DoFn.WindowParam):
        self._buffer.append(WindowedValue(row, timestamp, [win]))
        if len(self._buffer) >= self._batch_size:
            for failed in self._flush():
                yield failed.value

    def finish_bundle(self):
        yield from self._flush()

    def _flush(self):
        pending, self._buffer = self._buffer, []
        if not pending:
            return
        self._batches.update(len(pending))
        for attempt in range(self._max_retries + 1):
            _, errors = self._bq.insert_rows(
                self._ref.projectId,
                self._ref.datasetId,
                self._ref.tableId,
                [wv.value for wv in pending],
                skip_invalid_rows=True,
            )
            retry = []
            for entry in errors:
                wv, errs = pending[entry["index"]], entry["errors"]
                if attempt < self._max_retries and RetryStrategy.should_retry(
                    RetryStrategy.RETRY_ON_TRANSIENT_ERROR, errs[0]["reason"]
                ):
                    retry.append(wv)
                else:
                    yield wv.with_value((self._table, wv.value, errs))
            if not retry:
                return
            _LOG.warning("retrying %d rows after transient BigQuery errors", len(retry))
            time.sleep(min(0.2 * 2**attempt, 10))
            pending = retry


class WriteRowsToTable(beam.PTransform):
    """Write dict rows to a BigQuery table declared in ``bigquery_schemas/tables.json``.

    Args:
      table: ``project:dataset.table``.
      schema_table_name: the table's name in ``tables.json`` (e.g. ``"user_behavior"``).
      method: ``STREAMING_INSERTS`` (default; reports failed rows) or ``FILE_LOADS``
        (batch; needs ``temp_gcs_location`` or ``--temp_location`` on GCS).
      pipeline: job name stored in the dead-letter rows (``dead_letter.pipeline``).
      The table must exist already (``python -m bigquery_schemas.tables``); the write
        never creates it (CREATE_NEVER), so a misspelt table name fails instead of making
        a new table. (The hourly job's per-run staging tables are made by
        :mod:`.staging.load`.)
      per_bundle_inserts: if true (STREAMING_INSERTS only), insert each bundle's rows
        directly with :class:`InsertRowsPerBundleFn` (one step) instead of
        ``beam.io.WriteToBigQuery`` (ten steps around a reshuffle). For local runners,
        which retry no bundle: on the BundleBasedDirectRunner every step costs a fixed
        few milliseconds per Pub/Sub bundle (docs/streaming.md), and the in-memory
        FnApiRunner holds the reshuffle's whole input (docs/benchmarks.md). On Dataflow
        leave it off: the reshuffle is what keeps retried inserts idempotent.
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
        per_bundle_inserts: bool = False,
        **write_kwargs: Any,
    ):
        super().__init__()
        _check_table(table)
        bigquery_schemas.load_fields(schema_table_name)  # raises ValueError on an unknown name
        if per_bundle_inserts and method != STREAMING_INSERTS:
            raise ValueError("per_bundle_inserts needs method=STREAMING_INSERTS")
        self._table = table
        self._name = schema_table_name
        self._method = method
        self._pipeline = pipeline
        self._per_bundle = per_bundle_inserts
        self._write_kwargs = write_kwargs
        self._create_parameters = bigquery_schemas.beam_additional_bq_parameters(schema_table_name)
        self._disposition = beam.io.BigQueryDisposition.CREATE_NEVER

    def expand(self, rows):
        if self._per_bundle:
            failed = rows | "InsertRows" >> beam.ParDo(
                InsertRowsPerBundleFn(
                    self._table,
                    self._name,
                    self._write_kwargs.get("batch_size") or 500,
                    create_parameters=self._create_parameters,
                    create_disposition=self._disposition,
                )
            )
            return failed | "FailedRowsToDeadLetters" >> beam.ParDo(FailedRowToDeadLetterFn(self._pipeline))
        kwargs = dict(self._write_kwargs)
        if self._method == STREAMING_INSERTS:
            # Retry only transient errors; permanent ones (bad value, schema mismatch)
            # come back as failed rows instead of being retried forever.
            kwargs.setdefault("insert_retry_strategy", RetryStrategy.RETRY_ON_TRANSIENT_ERROR)
        result = rows | "WriteToBigQuery" >> beam.io.WriteToBigQuery(
            self._table,
            schema=bigquery_schemas.beam_schema(self._name),
            additional_bq_parameters=self._create_parameters,
            create_disposition=self._disposition,
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


class LogUnwritableDeadLetterFn(beam.DoFn):
    """A dead letter BigQuery refused: nowhere left to route it, so it is counted and logged."""

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
        return failed | "CountUnwritableDeadLetters" >> beam.ParDo(LogUnwritableDeadLetterFn())
