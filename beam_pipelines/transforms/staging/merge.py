"""The idempotent BigQuery merge of a run's staging tables into the final tables, then their drop.

The hourly job never appends to the final tables. It writes the run's rows to per-run
staging tables (``<table>_stg_<run_id>``, same schema) and then, once every staging
write has finished, :class:`MergeStagingTables` applies one keyed statement per table,
and :class:`DropStagingTables`, a separate step, drops the staging tables:

* ``user_behavior``: keyed on ``(event_id, source)``, restricted to the staging rows'
  ``date`` range (partition pruning; an order line's event_ts never moves outside it,
  see :func:`user_behavior_merge_sql`). Matched ``api`` rows are replaced (enriched
  attributes never go from known to NULL), matched ``stream`` rows are left alone (the
  streaming job may have streamed them minutes ago: BigQuery's streaming buffer),
  new rows are inserted.
* ``orders``: keyed on ``order_id``; a row is replaced only by a version with the same
  or a newer ``updated_at``.
* ``products`` / ``users``: keyed on the primary key, and rows missing from the
  (always complete) snapshot are deleted: the table equals the snapshot. An empty or
  missing snapshot never empties the table, it is skipped and counted; a snapshot
  with less than half the table's rows is refused (``--allow_dims_shrink`` takes it).
* ``dead_letter``: the run's dead letters are appended by one INSERT, once per run id
  (:func:`dead_letter_insert_sql`).

Every statement is keyed, so running it twice leaves the table as one run did, and a
run that dies half-way is repaired by re-running it.

The staging tables of a run killed before its merge are dropped by :mod:`.sweep`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

import bigquery_schemas
from beam_pipelines import events
from beam_pipelines.transforms import METRICS_NAMESPACE
from beam_pipelines.transforms.dimension_tables import dim_table, shrink_refusal
from beam_pipelines.transforms.staging.targets import MergeTarget

_LOG = logging.getLogger(__name__)


def _set_clause(cols: Sequence[str], keys: Sequence[str], keep_known: Sequence[str] = ()) -> str:
    return ", ".join(
        f"{c} = coalesce(s.{c}, t.{c})" if c in keep_known else f"{c} = s.{c}" for c in cols if c not in keys
    )


def _insert_clause(cols: Sequence[str]) -> str:
    return f"insert ({', '.join(cols)}) values ({', '.join('s.' + c for c in cols)})"


# Columns of user_behavior filled from the products/users snapshots: an update never turns
# a known value into NULL (a product gone from the catalog keeps its name on old rows).
ENRICHED_COLUMNS = ("product_name", "category", "user_name")


def user_behavior_merge_sql(target: MergeTarget) -> str:
    """MERGE of the staging rows into ``user_behavior`` on ``(event_id, source)``.

    Parameters ``@min_date`` / ``@max_date`` (the staging rows' date range) prune the
    target's partitions. A previous version of a staged event_id lies inside that range:
    order events keep their order_ts, and a return's earlier event_ts lies between the
    order_ts and its new updated_at, both of which are staged with it.

    Only rows with ``source = 'api'`` are ever updated. A ``stream`` row may have been
    written by the streaming job's streaming inserts minutes ago, and BigQuery refuses
    UPDATE, DELETE or MERGE that modifies rows written by ``tabledata.insertAll`` in the
    last 30 minutes (up to 90), while "all other rows in the table remain modifiable"
    (BigQuery docs, DML limitations). So a stream row the table already holds is left
    exactly as it is, whoever wrote it; a stream row it lacks (a backfill from the
    lake) is inserted. API rows are only ever written by this MERGE, never streamed.
    """
    cols = bigquery_schemas.table_spec("user_behavior").column_names
    keys = ("event_id", "source")
    return f"""merge {target.final.sql} t
using (
  select * from {target.staging.sql}
  where true
  qualify row_number() over (partition by event_id, source order by event_ts, ingest_ts desc) = 1
) s
on t.event_id = s.event_id and t.source = s.source and t.date between @min_date and @max_date
when matched and t.source = '{events.SOURCE_API}' then update set {_set_clause(cols, keys, ENRICHED_COLUMNS)}
when not matched then {_insert_clause(cols)}"""


def orders_merge_sql(target: MergeTarget) -> str:
    cols = bigquery_schemas.table_spec("orders").column_names
    return f"""merge {target.final.sql} t
using (
  select * from {target.staging.sql}
  where true
  qualify row_number() over (partition by order_id order by updated_at desc) = 1
) s
on t.order_id = s.order_id
when matched and s.updated_at >= t.updated_at then update set {_set_clause(cols, ("order_id",))}
when not matched then {_insert_clause(cols)}"""


def dead_letter_insert_sql(target: MergeTarget) -> str:
    """Append the run's staged dead letters to ``dead_letter``, once per run.

    One INSERT statement is atomic, and every dead letter of a run carries the run id
    (``@job_name``), so "the run has rows in dead_letter" means "this statement already
    ran": a retried or overlapping attempt inserts nothing. An INSERT modifies no
    existing row, so the streaming job's recent streaming inserts into the same table
    do not block it.
    """
    cols = ", ".join(bigquery_schemas.table_spec("dead_letter").column_names)
    return f"""insert into {target.final.sql} ({cols})
select {cols} from {target.staging.sql}
where not exists (select 1 from {target.final.sql} where job_name = @job_name)"""


def dimension_merge_sql(target: MergeTarget, key: str) -> str:
    """The final dimension table becomes exactly the staged snapshot."""
    cols = bigquery_schemas.table_spec(target.kind).column_names
    return f"""merge {target.final.sql} t
using (
  select * from {target.staging.sql}
  where true
  qualify row_number() over (partition by {key} order by updated_at desc) = 1
) s
on t.{key} = s.{key}
when matched then update set {_set_clause(cols, (key,))}
when not matched then {_insert_clause(cols)}
when not matched by source then delete"""


class TagDeadLetters(beam.PTransform):
    """Stamp the run's id as ``job_name`` on every dead-letter row it writes.

    Every row, forwarded ones included: one run's rejections can be counted, and the
    run-level INSERT (:func:`dead_letter_insert_sql`) knows whether it already ran.
    """

    def __init__(self, job_name: str):
        super().__init__()
        self._job_name = job_name

    def expand(self, rows):
        job_name = self._job_name
        return rows | "SetJobName" >> beam.Map(lambda r: {**r, "job_name": job_name})


# BigQuery aborts one of two mutating DML statements that touch the same partitions at
# once ("Could not serialize access to table ... due to concurrent update"): an
# overlapping attempt of this step, or another run's MERGE. Every statement here is
# idempotent, so it is simply run again.
CONFLICT_RETRIES = 5
CONFLICT_BACKOFF_SECONDS = 2.0


def _is_conflict(exc: BaseException) -> bool:
    return "concurrent update" in str(exc).lower()


def run_dml(client, sql: str, params: list[Any], *, sleep=time.sleep):
    """Run one DML statement to completion, again after a concurrent-update conflict; return its job."""
    from google.cloud import bigquery

    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params))
            job.result()
            return job
        except Exception as exc:
            if not _is_conflict(exc) or attempt == CONFLICT_RETRIES:
                raise
            wait = CONFLICT_BACKOFF_SECONDS * 2**attempt
            _LOG.warning("DML conflicted with a concurrent update (%s); running it again in %.0f s", exc, wait)
            sleep(wait)
    raise AssertionError("unreachable")


class MergeStagingTablesFn(beam.DoFn):
    """Runs one keyed statement per staging table (one element per run); yields ``(kind, staged rows)``.

    ``barrier`` is a side input fed by every staging write's output: Beam only
    materialises it once those writes have finished, so the statements see all rows.
    It drops nothing: a retried attempt (a lost worker, a zombie attempt beside the
    retry) runs the same idempotent statements on the same staging tables. The
    staging tables are dropped by a later step (:class:`DropStagingTables`).
    """

    def __init__(self, targets: list[MergeTarget], project: str, run_id: str, allow_dims_shrink: bool = False):
        self._targets = targets
        self._project = project
        self._run_id = run_id
        self._allow_dims_shrink = allow_dims_shrink
        self._merged = {t.kind: Metrics.counter(METRICS_NAMESPACE, f"bq_merged_{t.kind}") for t in targets}
        self._skipped = Metrics.counter(METRICS_NAMESPACE, "bq_merge_skipped_empty_staging")

    def _staged(self, client, target: MergeTarget):
        from google.api_core.exceptions import NotFound

        extra = ", min(date) as lo, max(date) as hi" if target.kind == "user_behavior" else ""
        try:
            return next(iter(client.query(f"select count(*) as n{extra} from {target.staging.sql}").result()))
        except NotFound as exc:
            # Every staging load creates its table, empty or not: a missing one was
            # dropped or expired, and merging "nothing" would lose the window's rows.
            raise RuntimeError(
                f"staging table {target.staging.table_id} is missing (expired, or dropped by another "
                "attempt): nothing more was merged; run the window again"
            ) from exc

    def _statement(self, client, target: MergeTarget, stats) -> tuple[str, list[Any]]:
        from google.cloud import bigquery

        if target.kind == "user_behavior":
            return user_behavior_merge_sql(target), [
                bigquery.ScalarQueryParameter("min_date", "DATE", stats["lo"]),
                bigquery.ScalarQueryParameter("max_date", "DATE", stats["hi"]),
            ]
        if target.kind == "orders":
            return orders_merge_sql(target), []
        if target.kind == "dead_letter":
            return dead_letter_insert_sql(target), [bigquery.ScalarQueryParameter("job_name", "STRING", self._run_id)]
        return dimension_merge_sql(target, dim_table(target.kind).key), []

    def _refuse_shrinking_dimensions(self, client, staged: dict[str, Any]) -> None:
        # Before any statement runs: a refused dimension must leave every table as it was.
        for target in self._targets:
            if self._allow_dims_shrink or target.kind not in ("products", "users") or not staged[target.kind]["n"]:
                continue
            before = next(iter(client.query(f"select count(*) as n from {target.final.sql}").result()))["n"]
            where = f"table {target.final.table_id}"
            refusal = shrink_refusal(target.kind, int(before), int(staged[target.kind]["n"]), where)
            if refusal:
                raise ValueError(refusal)

    def process(self, _trigger, barrier):
        from bigquery_schemas.client import make_client

        client = make_client(self._project)
        try:
            staged_stats = {target.kind: self._staged(client, target) for target in self._targets}
            self._refuse_shrinking_dimensions(client, staged_stats)
            for target in self._targets:
                stats = staged_stats[target.kind]
                staged = int(stats["n"])
                if staged == 0:
                    self._skipped.inc()
                    _LOG.info("merge %s: nothing staged, table left as it is", target.final.table_id)
                    yield target.kind, 0
                    continue
                sql, params = self._statement(client, target, stats)
                job = run_dml(client, sql, params)
                self._merged[target.kind].inc(staged)
                _LOG.info(
                    "merge %s: %s staged rows, %s affected", target.final.table_id, staged, job.num_dml_affected_rows
                )
                yield target.kind, staged
        finally:
            client.close()


class MergeStagingTables(beam.PTransform):
    """After ``barrier`` is complete, apply every staging table to its final table.

    Args:
      targets: the tables to merge, in order (dimensions and orders before user_behavior,
        dead letters last).
      project: project that runs the query jobs.
      run_id: the run's id (every staged dead letter's ``job_name``).
      allow_dims_shrink: let a dimension lose more than half its rows (``--allow_dims_shrink``).

    Returns:
      PCollection of ``(kind, staged row count)``.
    """

    def __init__(self, targets: list[MergeTarget], project: str, run_id: str, allow_dims_shrink: bool = False):
        super().__init__()
        self._fn = MergeStagingTablesFn(targets, project, run_id, allow_dims_shrink)

    def expand(self, barrier):
        return (
            barrier.pipeline
            | "CreateMergeTrigger" >> beam.Create([None])
            | "RunMergeStatements" >> beam.ParDo(self._fn, beam.pvalue.AsList(barrier))
        )


class DropStagingTablesFn(beam.DoFn):
    """Drops the run's staging tables once every statement succeeded; a table already gone is fine."""

    def __init__(self, targets: list[MergeTarget], project: str):
        self._targets = targets
        self._project = project

    def process(self, _trigger, merged):
        from bigquery_schemas.client import make_client

        client = make_client(self._project)
        try:
            for target in self._targets:
                client.delete_table(target.staging.table_id, not_found_ok=True)
                yield target.staging.table_id
        finally:
            client.close()


class DropStagingTables(beam.PTransform):
    """After ``merged`` (the MERGE step's output) is complete, drop the run's staging tables.

    A separate step behind a fusion break: were it fused with the MERGE step, a retry of
    that work item after the drop (a worker lost before it reported success) would find
    the staging tables gone. A run that fails for good leaves them to their expiry and
    :class:`~.sweep.DropStaleStagingTables`.
    """

    def __init__(self, targets: list[MergeTarget], project: str):
        super().__init__()
        self._fn = DropStagingTablesFn(list(targets), project)

    def expand(self, merged):
        done = merged | "CommitMerges" >> beam.Reshuffle()
        return (
            merged.pipeline
            | "CreateDropTrigger" >> beam.Create([None])
            | "DropTables" >> beam.ParDo(self._fn, beam.pvalue.AsList(done))
        )
