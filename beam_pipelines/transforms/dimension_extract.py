"""Partitioned reads of the dimension tables from the SQL source, and incremental merges.

Like JdbcIO's partitioned read, but for text keys (ids are text: ``"42"``, a UUID, a
SKU): one step counts the rows to read and asks the database for ``num_partitions - 1``
split keys at equal row offsets in key order (``order by key limit 1 offset k``, an
index walk), so the ranges hold equal numbers of rows whatever the ids look like. After
a Reshuffle each half-open range ``[lo, hi)`` (``None`` = unbounded) is read by one
worker with its own connection. Split keys and range predicates use the same column
collation, so the ranges cover every row exactly once on either engine. All SQL is
fixed text over the identifiers of a validated
:class:`~beam_pipelines.io.source_mapping.SourceMapping` (the user's table, view and
column names, quoted; the identity onto the project's DDL by default); values (split
keys, offsets, ``updated_since``) are always bound parameters. Each row read is turned
into the project's columns and canonical values by the mapping (ids by
``events.id_text``, naive timestamps read in the mapping's time zone, defaults for
columns the source lacks); a row the mapping cannot read fails the job with one line
naming the table, the key and the column, since a dimension row has no dead-letter
path (the fix is the mapping or the source).
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_pipelines import events
from beam_pipelines.io import source_mapping, sql
from beam_pipelines.io.source_mapping import EntityMapping, SourceMapping, check_live
from beam_pipelines.io.sql_login import SqlLogin
from beam_pipelines.transforms import METRICS_NAMESPACE
from beam_pipelines.transforms.dimension_tables import dim_table

KeyRange = tuple[Any, Any]  # split keys keep the key column's type; None = unbounded


def key_ranges(split_keys: list[Any]) -> list[KeyRange]:
    """Half-open ranges ``[lo, hi)`` around sorted, distinct ``split_keys``; ``None`` is unbounded."""
    if any(a >= b for a, b in itertools.pairwise(split_keys)):
        raise ValueError(f"split keys must be sorted and distinct, got {split_keys[:5]!r}...")
    bounds: list[str | None] = [None, *split_keys, None]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def _range_clause(lo: Any, hi: Any, key: str) -> str:
    return (f" and {key} >= :lo" if lo is not None else "") + (f" and {key} < :hi" if hi is not None else "")


def _since_clause(since: str | None, mapping: EntityMapping) -> str:
    return f" and {mapping.qcol('updated_at')} >= :since" if since else ""


def _since_param(since: str | None) -> dict[str, Any]:
    return {"since": events.parse_ts(since)} if since else {}


def snapshot_row(mapping: SourceMapping, table: str, source_row: dict[str, Any]) -> dict[str, Any]:
    """A source row as the snapshot row of ``table``; ValueError naming key and column when unreadable."""
    row, errors, _defaulted = mapping.row(table, source_row)
    if errors:
        entity = mapping[table]
        key = entity.entity.key[0]
        key_value = source_row.get(entity.columns.get(key, key))
        detail = "; ".join(f"{col}: {reason}" for col, reason in errors)
        raise ValueError(f"{mapping.origin}: {table} row {key}={key_value!r:.60} (table {entity.table!r}): {detail}")
    return row


class PlanKeyRangesFn(beam.DoFn):
    """table name -> ``(table, lo, hi)`` ranges covering every key to read, with equal row counts."""

    def __init__(
        self, login: SqlLogin, num_partitions: int, updated_since: str | None, mapping: SourceMapping | None = None
    ):
        self._login = login
        self._n = num_partitions
        self._since = updated_since
        self._mapping = mapping or SourceMapping.default()

    def process(self, table_name):
        mapped = self._mapping[dim_table(table_name).name]
        key = mapped.qcol(dim_table(table_name).key)
        where = f"from {mapped.qtable} where 1 = 1{_since_clause(self._since, mapped)}"
        params = _since_param(self._since)
        with source_mapping.connect(self._login, self._mapping) as db:
            check_live(db, self._mapping, table_name)
            count = int(db.scalar(f"select count(*) {where}", params))
            if count == 0:
                return
            n = min(self._n, count)
            # Split keys keep the column's own type (text, integer, uuid), so they compare
            # in Python as the database orders them.
            pick = f"select {key} {where} order by {key} limit 1 offset :offset"
            split_keys = [db.scalar(pick, {**params, "offset": count * i // n}) for i in range(1, n)]
        for lo, hi in key_ranges(split_keys):
            yield table_name, lo, hi


class ReadKeyRangeFn(beam.DoFn):
    """``(table, lo, hi)`` -> the table's rows with ``lo <= key < hi`` (``None``: unbounded) as snapshot rows."""

    def __init__(self, login: SqlLogin, updated_since: str | None, mapping: SourceMapping | None = None):
        self._login = login
        self._since = updated_since
        self._mapping = mapping or SourceMapping.default()
        self._db: sql.Database | None = None
        self._rows = Metrics.counter(METRICS_NAMESPACE, "sql_rows_read")
        self._ranges = Metrics.counter(METRICS_NAMESPACE, "sql_key_ranges_read")

    def setup(self):
        # The password (if any) is read from Secret Manager here, on the worker, and never stored.
        self._db = source_mapping.connect(self._login, self._mapping)

    def teardown(self):
        if self._db is not None:
            self._db.close()

    def process(self, key_range):
        name, lo, hi = key_range
        mapped = self._mapping[dim_table(name).name]
        key = mapped.qcol(dim_table(name).key)
        query = (
            f"select {mapped.select_list()} from {mapped.qtable} "
            f"where 1 = 1{_range_clause(lo, hi, key)}{_since_clause(self._since, mapped)} order by {key}"
        )
        bounds = {name: value for name, value in (("lo", lo), ("hi", hi)) if value is not None}
        self._ranges.inc()
        for row in self._db.iter_query(query, {**bounds, **_since_param(self._since)}):
            self._rows.inc()
            yield snapshot_row(self._mapping, name, row)


class ReadTableByKeyRanges(beam.PTransform):
    """Read one dimension table in ``num_partitions`` parallel primary-key ranges.

    Args:
      table: ``products`` or ``users``.
      login: where the source is and how to log in (:class:`~beam_pipelines.io.sql_login.SqlLogin`:
        names only; a password or token is fetched on the workers, never put in the job graph).
      num_partitions: number of key ranges (>= 1).
      updated_since: ISO timestamp: only rows with ``updated_at >= updated_since``.
      mapping: how the source names the table and its columns (default: the project's DDL).

    Returns:
      PCollection of row dicts (columns of ``bigquery_schemas/<table>.json``).
    """

    def __init__(
        self,
        table: str,
        *,
        login: SqlLogin,
        num_partitions: int = 4,
        updated_since: str | None = None,
        mapping: SourceMapping | None = None,
    ):
        super().__init__()
        dim_table(table)
        self._mapping = mapping or SourceMapping.default()
        if updated_since:
            self._mapping[table].qcol("updated_at")  # an incremental read needs a real updated_at column
        if num_partitions < 1:
            raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
        if updated_since:
            events.parse_ts(updated_since)
        self._table = table
        self._login = login
        self._n = num_partitions
        self._since = updated_since

    def expand(self, pbegin):
        return (
            pbegin
            | "CreateTableName" >> beam.Create([self._table])
            | "PlanKeyRanges" >> beam.ParDo(PlanKeyRangesFn(self._login, self._n, self._since, self._mapping))
            | "SpreadKeyRanges" >> beam.Reshuffle()
            | "ReadKeyRange" >> beam.ParDo(ReadKeyRangeFn(self._login, self._since, self._mapping))
        )


def _newest(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def order(tagged):
        rank, row = tagged
        try:
            ts = events.parse_ts(row.get("updated_at")).timestamp()
        except (ValueError, TypeError):
            ts = float("-inf")
        return ts, rank

    return max(rows, key=order)[1]


class MergeIntoSnapshot(beam.PTransform):
    """Previous snapshot rows + changed rows -> a full snapshot (newest ``updated_at`` wins).

    On a tie the changed row wins (it was read from the source just now). Rows deleted
    in the source are not seen by an incremental read: run a full extract to drop them.

    Args:
      previous: PCollection of ``(key, row)`` pairs of the latest snapshot.
      key: the primary key column.
    """

    def __init__(self, previous, key: str):
        super().__init__()
        self._previous = previous
        self._key = key

    def expand(self, changed):
        key = self._key
        # A snapshot written before ids were text holds integer keys: compare and store as text.
        old = self._previous | "TagPreviousRows" >> beam.Map(lambda kv: (str(kv[0]), (0, {**kv[1], key: str(kv[0])})))
        new = changed | "TagChangedRows" >> beam.Map(lambda r: (str(r[key]), (1, r)))
        return (
            (old, new)
            | "FlattenVersions" >> beam.Flatten()
            | "GroupVersions" >> beam.GroupByKey()
            | "PickNewestVersion" >> beam.MapTuple(lambda _k, versions: _newest(list(versions)))
        )


def snapshot_now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC).replace(microsecond=0)
