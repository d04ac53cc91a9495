"""Fill a per-run staging table with one BigQuery load job of Parquet files.

The hourly job stages its rows here before the MERGE (:mod:`.merge`)::

    rows (dicts, or Arrow tables in the rows' text form)
      -> Arrow tables typed by bigquery_schemas/<kind>.json     rows that cannot load -> dead letters
      -> Parquet files under <temp>/<run_id>/<kind>/ (Beam's WriteToParquetBatched, gs:// or local)
      -> create the staging table (schema, partitioning, expiry), one load job WRITE_TRUNCATE
      -> check the job's output rows against the rows written
    (after the MERGE) DeleteStagingFiles removes the run's files

Load jobs are free on BigQuery's shared slot pool, where streaming inserts are
billed per byte, and the local BigQuery emulator holds far less per row for them
(docs/benchmarks.md). A row BigQuery would refuse (a NULL in a REQUIRED column,
a value its column type cannot hold) never reaches the load: it is a
``bigquery_load`` dead letter with the column and the reason, the way a refused
streaming insert was. A load that still fails, or loads another number of rows
than were written, fails the run with the job id and BigQuery's error, before
any MERGE (the MERGE waits for this transform's output).

One load job per staging table with ``WRITE_TRUNCATE``: a retried load (a worker
retrying the bundle) replaces the table's rows instead of adding to them.
"""

from __future__ import annotations

import concurrent.futures
import logging
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

import bigquery_schemas
from beam_pipelines import events
from beam_pipelines.transforms import METRICS_NAMESPACE
from beam_pipelines.transforms.bigquery_sink import FailedRowToDeadLetterFn
from beam_pipelines.transforms.staging.targets import TableRef

STAGE_BIGQUERY_LOAD = "bigquery_load"
FAILED = "failed"
BATCH_ROWS = 50_000
# How long a load job may take before the run gives up on it (BigQuery queues loads
# on the shared pool; minutes are normal at busy times).
LOAD_TIMEOUT_SECONDS = 1800
MAX_SOURCE_URIS = 10_000  # BigQuery's limit of source URIs per load job
PARQUET_SUFFIX = ".parquet"

_LOG = logging.getLogger(__name__)

# BigQuery column type -> (type of the loaded Parquet column, type of the rows' own form).
# NUMERIC(38, 9), TIMESTAMP and DATE travel as text in the rows (events.format_ts,
# decimal strings) and are cast here, in one vectorised step per column.
_SCALARS: dict[str, tuple[pa.DataType, pa.DataType]] = {
    "STRING": (pa.string(), pa.string()),
    "INTEGER": (pa.int64(), pa.int64()),
    "INT64": (pa.int64(), pa.int64()),
    "FLOAT": (pa.float64(), pa.float64()),
    "FLOAT64": (pa.float64(), pa.float64()),
    "BOOLEAN": (pa.bool_(), pa.bool_()),
    "BOOL": (pa.bool_(), pa.bool_()),
    "NUMERIC": (pa.decimal128(38, 9), pa.string()),
    "TIMESTAMP": (pa.timestamp("us", tz="UTC"), pa.string()),
    "DATE": (pa.date32(), pa.string()),
}


class UnloadableRow(ValueError):
    """A row BigQuery would refuse: ``column`` and ``reason`` say why."""

    def __init__(self, column: str, reason: str):
        super().__init__(f"column {column}: {reason}")
        self.column = column
        self.reason = reason


class StagingLoadFailed(RuntimeError):
    """A load job failed or loaded another number of rows than were written."""


def _field(spec: dict[str, Any], typed: bool) -> pa.Field:
    kind = spec["type"].upper()
    if kind in ("RECORD", "STRUCT"):
        value: pa.DataType = pa.struct([_field(sub, typed) for sub in spec["fields"]])
    elif kind in _SCALARS:
        value = _SCALARS[kind][0 if typed else 1]
    else:
        raise ValueError(f"column {spec['name']}: BigQuery type {kind} has no Parquet mapping here")
    mode = spec.get("mode", "NULLABLE").upper()
    if mode == "REPEATED":
        # BigQuery loads list<element> as REPEATED with list inference; elements are never NULL.
        return pa.field(spec["name"], pa.list_(pa.field("element", value, nullable=False)), nullable=False)
    return pa.field(spec["name"], value, nullable=mode != "REQUIRED")


def arrow_schemas(table: str) -> tuple[pa.Schema, pa.Schema]:
    """``(typed, text)`` Arrow schemas of a ``tables.json`` table, columns in the table's order.

    ``typed`` is what the Parquet files carry; ``text`` is the rows' own form
    (timestamps, dates and NUMERIC as strings), what :func:`to_load_table` accepts.
    """
    fields = bigquery_schemas.load_fields(table)
    return pa.schema([_field(f, True) for f in fields]), pa.schema([_field(f, False) for f in fields])


def _required_nulls(values: pa.Array, field: pa.Field) -> np.ndarray:
    """Per element of ``values``: does it hold a NULL where ``field`` (or a nested field) is REQUIRED?"""
    bad = np.zeros(len(values), dtype=bool)
    if not field.nullable:
        bad |= values.is_null().to_numpy(zero_copy_only=False)
    kind = field.type
    if pa.types.is_struct(kind):
        present = values.is_valid().to_numpy(zero_copy_only=False)
        for i in range(kind.num_fields):
            bad |= _required_nulls(values.field(i), kind.field(i)) & present
    elif pa.types.is_list(kind) and len(values):
        inner = _required_nulls(values.flatten(), kind.value_field)
        if inner.any():
            parents = pc.list_parent_indices(values).to_numpy(zero_copy_only=False)
            bad[np.unique(parents[inner])] = True
    return bad


_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError)
# What building an Arrow value from a Python one raises for a value of the wrong kind
# (ArrowInvalid and ArrowTypeError are ValueError and TypeError; UnicodeEncodeError for a lone surrogate).
_ROW_ERRORS = (TypeError, ValueError, OverflowError)
_NUMERIC_SCALE = Decimal("1e-9")
_WIDE = Context(prec=80)


def _rounded_numeric(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | None:
    """Decimal text with more than 9 decimals, rounded half away from zero as BigQuery rounds NUMERIC.

    None when some value is not a number or does not fit NUMERIC(38, 9) even rounded.
    """
    rounded: list[str | None] = []
    for value in column.to_pylist():
        if value is None:
            rounded.append(None)
            continue
        try:
            number = _WIDE.create_decimal(value.strip())
            rounded.append(str(number.quantize(_NUMERIC_SCALE, rounding=ROUND_HALF_UP, context=_WIDE)))
        except (ArithmeticError, ValueError):
            return None
    try:
        return pa.chunked_array([pa.array(rounded, pa.string()).cast(target)])
    except _CAST_ERRORS:
        return None


def _typed_column(column: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    try:
        typed = column.cast(field.type)
    except _CAST_ERRORS as exc:
        is_numeric_text = pa.types.is_decimal(field.type) and pa.types.is_string(column.type)
        typed = _rounded_numeric(column, field.type) if is_numeric_text else None
        if typed is None:
            raise UnloadableRow(field.name, str(exc).split("\n")[0]) from exc
    if _required_nulls(typed.combine_chunks(), field).any():
        raise UnloadableRow(field.name, "NULL in a REQUIRED field")
    return typed


def to_load_table(table: pa.Table, typed: pa.Schema) -> pa.Table:
    """Rows in their text form -> the typed table a load job takes; UnloadableRow if any row cannot load."""
    missing = [name for name in typed.names if name not in table.column_names]
    if missing:
        raise ValueError(f"rows lack the column(s) {missing} of the staging table")
    return pa.Table.from_arrays([_typed_column(table[f.name], f) for f in typed], schema=typed)


class ToLoadTablesFn(beam.DoFn):
    """Row dicts (batched per bundle) or text-form Arrow tables -> typed tables; refused rows to ``FAILED``.

    Refused rows come out as ``(destination, row, errors)``, the shape of a refused
    streaming insert, so :class:`FailedRowToDeadLetterFn` turns them into dead letters.
    A batch with a refused row is converted row by row; only that batch pays for it.
    """

    def __init__(self, kind: str, destination: str, batch_rows: int = BATCH_ROWS):
        self._kind = kind
        self._destination = destination
        self._batch_rows = batch_rows
        self._rows_out = Metrics.counter(METRICS_NAMESPACE, f"bq_load_rows_{kind}")
        self._refused_rows = Metrics.counter(METRICS_NAMESPACE, f"bq_load_refused_{kind}")

    def setup(self):
        self._typed, self._text = arrow_schemas(self._kind)

    def start_bundle(self):
        self._buffer: list[dict[str, Any]] = []
        self._window: WindowedValue | None = None

    def process(self, element, timestamp=beam.DoFn.TimestampParam, win=beam.DoFn.WindowParam):
        if isinstance(element, pa.Table):
            yield from self._convert(element, None)
            return
        if not isinstance(win, GlobalWindow):
            raise ValueError(f"StageWithLoadJob stages bounded rows in the global window, got {win}")
        self._buffer.append(element)
        self._window = WindowedValue(None, timestamp, [win])
        if len(self._buffer) >= self._batch_rows:
            yield from self._flush()

    def finish_bundle(self):
        for out in self._flush():
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(out.tag, self._window.with_value(out.value))
            else:
                yield self._window.with_value(out)

    def _flush(self):
        rows, self._buffer = self._buffer, []
        if not rows:
            return
        try:
            table = pa.Table.from_pylist(rows, schema=self._text)
        except _ROW_ERRORS:
            table = None  # some row has a value of the wrong kind: find it row by row
        yield from self._convert(table, rows)

    def _convert(self, table: pa.Table | None, rows: list[dict[str, Any]] | None):
        if table is not None:
            try:
                typed = to_load_table(table, self._typed)
            except UnloadableRow:
                pass
            else:
                self._rows_out.inc(typed.num_rows)
                yield typed
                return
        good = []
        for row in rows if rows is not None else table.to_pylist():
            try:
                text_row = _text_values(row, self._text)
                good.append(to_load_table(pa.Table.from_pylist([text_row], schema=self._text), self._typed))
            except UnloadableRow as exc:
                yield self._refused(row, exc.column, exc.reason)
            except _ROW_ERRORS as exc:
                yield self._refused(row, _first_bad_column(row, self._text), str(exc).split("\n")[0])
        if good:
            typed = pa.concat_tables(good).combine_chunks()
            self._rows_out.inc(typed.num_rows)
            yield typed

    def _refused(self, row: dict[str, Any], column: str, reason: str):
        self._refused_rows.inc()
        errors = [{"reason": "invalid", "location": column, "message": reason}]
        return beam.pvalue.TaggedOutput(FAILED, (self._destination, row, errors))


def _text_values(row: dict[str, Any], text: pa.Schema) -> dict[str, Any]:
    """``row`` with numbers, dates and datetimes in text columns written as the text the cast reads.

    The jobs build rows with text already (events.format_ts, decimal strings); a row
    from elsewhere with a ``Decimal`` price or an aware ``datetime`` is loaded as that
    value, not refused for its Python type. A naive ``datetime`` stays refused (no zone
    offset: the contract's rule for every timestamp).
    """
    out = dict(row)
    for field in text:
        value = out.get(field.name)
        if value is None or isinstance(value, str) or not pa.types.is_string(field.type):
            continue
        if isinstance(value, datetime):
            out[field.name] = events.format_ts(value) if value.tzinfo else value.isoformat()
        elif isinstance(value, date | Decimal | int | float) and not isinstance(value, bool):
            out[field.name] = value.isoformat() if isinstance(value, date) else str(value)
    return out


def _first_bad_column(row: dict[str, Any], text: pa.Schema) -> str:
    for field in text:
        try:
            pa.array([row.get(field.name)], field.type)
        except _ROW_ERRORS:
            return field.name
    return "?"


class LoadStagingTableFn(beam.DoFn):
    """The written files -> the staging table, created and filled by one load job; outputs nothing.

    Its (empty) output is complete only once the load has finished: the MERGE's barrier.
    ``process`` returns an empty list rather than being a generator that yields nothing:
    a ``return`` and a ``yield`` in one ``process`` made Beam log "Using yield and return
    in the process method" 4 times per hourly run (one per staging table).
    """

    def __init__(self, staging: TableRef, kind: str, expires_at: datetime | None, prefix: str):
        self._staging = staging
        self._prefix = prefix
        self._kind = kind
        self._expires_at = expires_at
        self._loaded = Metrics.counter(METRICS_NAMESPACE, f"bq_loaded_{kind}")

    def process(self, files: list[str], expected_rows: int):
        from google.cloud import bigquery

        from bigquery_schemas.client import make_client
        from bigquery_schemas.ddl import build_table, to_schema_fields

        ref = self._staging
        spec = bigquery_schemas.table_spec(self._kind)
        table = build_table(ref.project, ref.dataset, spec, name=ref.table)
        table.expires = self._expires_at
        name = ref.table_id
        client = make_client(ref.project)
        try:
            client.create_table(table, exists_ok=True)
            if expected_rows == 0:
                return []  # the empty table is what the MERGE reads: nothing to load
            config = bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.PARQUET,
                write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
                create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
                # With WRITE_TRUNCATE BigQuery gives the table the job's schema: pass the
                # file's, so the staging table keeps its modes and descriptions.
                schema=to_schema_fields(spec.fields),
                parquet_options=_parquet_options(),
            )
            # BigQuery takes at most MAX_SOURCE_URIS URIs per load job; past that one wildcard
            # names them all (the run's own folder holds nothing else; the row count check
            # below would catch a stray file).
            files = sorted(files)
            sources = files if len(files) <= MAX_SOURCE_URIS else [f"{self._prefix}*{PARQUET_SUFFIX}"]
            job = None
            try:
                job = client.load_table_from_uri(
                    sources, table.reference, job_config=config, job_id_prefix=f"stage_{self._kind}_"
                )
                job.result(timeout=LOAD_TIMEOUT_SECONDS)
            except Exception as exc:
                if isinstance(exc, TimeoutError | concurrent.futures.TimeoutError) and job is not None:
                    job.cancel()  # a retry starts its own job; this one must not land later
                detail = f"; errors: {job.errors[:5]}" if job is not None and job.errors else ""
                raise StagingLoadFailed(
                    f"load job {job.job_id if job else '(not started)'} into {name} failed: {exc}{detail}; "
                    f"nothing was merged; its {len(files)} file(s) are kept, the first {files[0] if files else '-'}"
                ) from exc
        finally:
            client.close()
        if job.output_rows != expected_rows:
            raise StagingLoadFailed(
                f"load job {job.job_id} loaded {job.output_rows} rows into {name}, "
                f"{expected_rows} were written; nothing was merged"
            )
        self._loaded.inc(expected_rows)
        _LOG.info("staged %s rows into %s with load job %s", expected_rows, name, job.job_id)
        # The files stay until DeleteStagingFiles runs after the MERGE: a retry of this
        # step (a worker lost after the load) must find them to load again.
        return []  # the barrier's element count is 0


def _parquet_options():
    from google.cloud.bigquery.format_options import ParquetOptions

    options = ParquetOptions()
    options.enable_list_inference = True  # list<struct> -> REPEATED RECORD, not a wrapper record
    return options


class StageWithLoadJob(beam.PTransform):
    """Rows -> a per-run staging table through Parquet files and one load job.

    Args:
      staging: the staging table this creates.
      kind: the table's name in ``tables.json`` (schema, partitioning, clustering).
      temp_location: folder for the Parquet files (``gs://...``; the load job reads them there).
      pipeline: job name stored in dead-letter rows.
      expires_at: when BigQuery drops the staging table (None: never).

    Returns:
      PCollection of ``bigquery_load`` dead letters for rows that could not load;
      complete only after the load job succeeded (a barrier for the MERGE).
    """

    def __init__(
        self,
        staging: TableRef,
        kind: str,
        temp_location: str,
        *,
        pipeline: str,
        expires_at: datetime | None = None,
    ):
        super().__init__()
        self._staging = staging
        self._kind = kind
        self._prefix = f"{temp_location.rstrip('/')}/{staging.table}/part"
        self._pipeline = pipeline
        self._expires_at = expires_at
        self._typed, _ = arrow_schemas(kind)  # fails at construction on an unmapped type

    def expand(self, rows):
        tables = rows | "ToLoadTables" >> beam.ParDo(ToLoadTablesFn(self._kind, self._staging.beam)).with_outputs(
            FAILED, main="tables"
        )
        files = tables.tables | "WriteParquet" >> beam.io.WriteToParquetBatched(
            self._prefix, schema=self._typed, codec="snappy", file_name_suffix=PARQUET_SUFFIX
        )
        written = tables.tables | "CountRows" >> beam.Map(lambda t: t.num_rows) | "SumRows" >> beam.CombineGlobally(sum)
        loaded = (
            files
            | "ListFiles" >> beam.combiners.ToList()
            | "LoadJob"
            >> beam.ParDo(
                LoadStagingTableFn(self._staging, self._kind, self._expires_at, self._prefix),
                beam.pvalue.AsSingleton(written),
            )
        )
        refused = tables[FAILED] | "RefusedRowsToDeadLetters" >> beam.ParDo(
            FailedRowToDeadLetterFn(self._pipeline, stage=STAGE_BIGQUERY_LOAD)
        )
        return (refused, loaded) | "DeadLettersAfterLoad" >> beam.Flatten()


class DeleteStagingFilesFn(beam.DoFn):
    def process(self, folder: str, _after: list[Any]):
        from beam_pipelines import lake

        lake.delete_tree(folder)
        _LOG.info("deleted the staging files under %s", folder)


class DeleteStagingFiles(beam.PTransform):
    """Once ``after`` is complete (the MERGE's output), delete the run's staging files under ``folder``.

    Deleting twice (a retried step) is harmless; a run that dies before this leaves them
    to the temp bucket's lifecycle rule (docs/deploy.md).
    """

    def __init__(self, folder: str):
        super().__init__()
        self._folder = folder

    def expand(self, after):
        return (
            after.pipeline
            | "StagingFolder" >> beam.Create([self._folder])
            | "DeleteFiles" >> beam.ParDo(DeleteStagingFilesFn(), beam.pvalue.AsList(after))
        )
