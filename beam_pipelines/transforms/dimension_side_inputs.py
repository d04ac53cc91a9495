"""Periodically refreshed products/users dimensions for the streaming job's side inputs.

The slowly-updating side input pattern: a ticker emits one element every
``refresh_seconds``; each tick loads the whole dimension table (BigQuery or the
lake's newest snapshot) into one :class:`DimensionSnapshot` element, in the global
window with a trigger that fires per element. ``EnrichWithDimensions(...,
snapshots=True)`` reads it with ``AsList`` and uses the newest snapshot, so a product
added after the job started is picked up at the next refresh without a restart.

One snapshot per element, not ``(id, row)`` pairs: with a repeatedly firing trigger a
runner may expose only the latest pane, and a pane of pairs can hold part of a refresh;
a single element is always a whole table.

Two tickers, because ``PeriodicImpulse`` (a splittable DoFn) fails to expand on the
BundleBasedDirectRunner in streaming mode ("...ProcessKeyedElements/GroupByKey was not
replaced as expected", Beam 2.77, measured):

* ``"periodic_impulse"`` (Dataflow and other portable runners): Beam's ``PeriodicImpulse``.
* ``"timer"`` (the local BundleBasedDirectRunner): ``Impulse`` followed by a
  stateful DoFn whose processing-time timer re-arms itself every ``refresh_seconds``.

Loading: ``ReadFromBigQuery`` is a root transform that runs once, so it cannot be
re-run per tick; a DoFn calling ``google.cloud.bigquery.Client.list_rows(table)``
can, works on Dataflow (default credentials) and on the emulator
(``bigquery_schemas.client.make_client`` honours ``BIGQUERY_EMULATOR_HOST``), and reads
the table without a query job (cheap: no bytes-scanned billing for ``tabledata.list``).

**Never a stall, never a good snapshot thrown away** (:class:`LoadSnapshotFn`). On a
distributed runner a main input waits for the first pane of a global-window side input
(Dataflow; the local runners do not wait), so a first load that fails must still give
the side input a pane, and a load that hangs must be given up:

* every load runs for at most ``load_timeout_seconds`` (a worker thread; a load still
  running at the next tick is not started twice);
* until one load has succeeded, each failed or timed-out load emits an empty
  *placeholder* snapshot (``loaded=False``) and logs a warning: events flow with NULL
  attributes of that dimension, counted in ``enriched_without_<table>_snapshot``, instead
  of waiting without bound. The first good load replaces it at once (``loaded <n> <table>:
  the first snapshot, after <k> failed attempts``). On Dataflow the main input therefore
  waits at most the first load's timeout;
* after a good load, a failed load emits nothing (the previous snapshot stays, counted in
  ``<table>_refresh_failures`` and logged), and a load with less than half the rows of
  the snapshot it would replace is refused the same way (``transforms/dimension_tables.shrink_refusal``,
  the hourly job's rule; ``<table>_refresh_shrink_refused``) unless ``allow_shrink``.

Which snapshot is "previous" is the per-table state of :class:`LoadSnapshotFn` (a
stateful DoFn keyed by table name), not a worker's memory: on Dataflow any worker may
run the next tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.transforms.periodicsequence import PeriodicImpulse, RebaseMode
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration, Timestamp

from beam_pipelines.transforms import METRICS_NAMESPACE
from beam_pipelines.transforms.dimension_tables import DIM_TABLES, shrink_refusal

TICKER_PERIODIC_IMPULSE = "periodic_impulse"
TICKER_TIMER = "timer"
# How long one load may take before it counts as failed. Generous for a big table on
# BigQuery (tabledata.list pages of ~10k rows); it is also the longest a Dataflow main
# input waits for a first snapshot that cannot be loaded.
DEFAULT_LOAD_TIMEOUT_SECONDS = 120.0

_LOG = logging.getLogger(__name__)


class DimensionSnapshot(NamedTuple):
    """A whole dimension table as loaded at ``loaded_at`` (epoch seconds).

    ``loaded=False``: a placeholder with no rows, emitted while no load has succeeded yet
    (module docstring).
    """

    table: str
    loaded_at: float
    rows: dict[str, dict[str, Any]]
    loaded: bool = True


def newest_snapshot(snapshots: Iterable[DimensionSnapshot]) -> DimensionSnapshot | None:
    """The most recent snapshot (None before any pane arrived)."""
    best = None
    for snap in snapshots:
        if best is None or snap.loaded_at > best.loaded_at:
            best = snap
    return best


# ----------------------------------------------------------------------------- loaders


class BigQueryTableLoader:
    """Load all rows of a BigQuery table with ``list_rows`` (picklable; client built lazily).

    Args:
      table: ``project:dataset.table`` (Beam style) or ``project.dataset.table``.
    """

    def __init__(self, table: str):
        if ":" in table:
            project, rest = table.split(":", 1)
            table = f"{project}.{rest}"
        if table.count(".") != 2:
            raise ValueError(f"dimension table must be 'project:dataset.table', got {table!r}")
        self.table_id = table
        self.project = table.split(".", 1)[0]
        self._client = None

    def __call__(self) -> list[dict[str, Any]]:
        if self._client is None:
            from bigquery_schemas.client import make_client

            self._client = make_client(self.project)
        return [dict(row.items()) for row in self._client.list_rows(self.table_id)]

    def __getstate__(self):
        return {"table_id": self.table_id, "project": self.project, "_client": None}


class LakeSnapshotLoader:
    """Load the newest lake snapshot of a dimension (``<lake_root>/raw/<table>/_LATEST``)."""

    def __init__(self, lake_root: str, table: str):
        self.lake_root = lake_root
        self.table = table

    def __call__(self) -> list[dict[str, Any]]:
        from beam_pipelines import lake

        rows = lake.read_latest_snapshot_rows(self.lake_root, self.table)
        if rows is None:
            raise LookupError(f"no {self.table} snapshot under {self.lake_root} yet: run extract_dims")
        return rows


# ----------------------------------------------------------------------------- tickers

_TICK = TimerSpec("tick", TimeDomain.REAL_TIME)
_TICK_PARAM = beam.DoFn.TimerParam(_TICK)


class LoopingTickFn(beam.DoFn):
    """On its one keyed input, emit a tick now and then every ``interval_seconds`` (processing time)."""

    def __init__(self, interval_seconds: float):
        self._interval = Duration(seconds=interval_seconds)

    def process(self, _keyed, tick=_TICK_PARAM):
        tick.set(Timestamp.now())

    @on_timer(_TICK)
    def on_tick(self, tick=_TICK_PARAM):
        now = Timestamp.now()
        tick.set(now + self._interval)
        yield window.TimestampedValue(float(now), now)


class Ticker(beam.PTransform):
    """One element every ``interval_seconds`` of processing time, starting now."""

    def __init__(self, interval_seconds: float, kind: str = TICKER_PERIODIC_IMPULSE):
        super().__init__()
        if kind not in (TICKER_PERIODIC_IMPULSE, TICKER_TIMER):
            raise ValueError(f"ticker must be {TICKER_PERIODIC_IMPULSE!r} or {TICKER_TIMER!r}, got {kind!r}")
        self._interval = interval_seconds
        self._kind = kind

    def expand(self, pbegin):
        if self._kind == TICKER_PERIODIC_IMPULSE:
            return pbegin | "PeriodicImpulse" >> PeriodicImpulse(
                start_timestamp=Timestamp.now(),
                fire_interval=self._interval,
                # Start at job start, not at graph construction: a Dataflow job starts
                # minutes after submission and would otherwise burst catch-up ticks.
                rebase=RebaseMode.REBASE_START,
            )
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "KeyTicker" >> beam.Map(lambda _: ("tick", None))
            | "LoopTimer" >> beam.ParDo(LoopingTickFn(self._interval))
        )


_LOADED_ROWS = ReadModifyWriteStateSpec("loaded_rows", VarIntCoder())
_LOADED_ROWS_PARAM = beam.DoFn.StateParam(_LOADED_ROWS)
_FAILED_LOADS = ReadModifyWriteStateSpec("failed_loads", VarIntCoder())
_FAILED_LOADS_PARAM = beam.DoFn.StateParam(_FAILED_LOADS)


class LoadSnapshotFn(beam.DoFn):
    """(table, tick) -> a DimensionSnapshot, a placeholder, or nothing (module docstring).

    State per table: the row count of the last snapshot emitted (absent until a load
    succeeds) and the failed loads since the last success.
    """

    def __init__(
        self,
        table: str,
        loader: Callable[[], list[dict[str, Any]]],
        key: str,
        timeout_seconds: float = DEFAULT_LOAD_TIMEOUT_SECONDS,
        allow_shrink: bool = False,
    ):
        self._table = table
        self._loader = loader
        self._key = key
        self._timeout = timeout_seconds
        self._allow_shrink = allow_shrink
        self._loads = Metrics.counter(METRICS_NAMESPACE, f"{table}_refreshes")
        self._failures = Metrics.counter(METRICS_NAMESPACE, f"{table}_refresh_failures")
        self._refused = Metrics.counter(METRICS_NAMESPACE, f"{table}_refresh_shrink_refused")
        self._placeholders = Metrics.counter(METRICS_NAMESPACE, f"{table}_placeholder_snapshots")
        self._size = Metrics.gauge(METRICS_NAMESPACE, f"{table}_rows")
        self._pool: ThreadPoolExecutor | None = None
        self._running: Future | None = None

    def __getstate__(self):
        return {**self.__dict__, "_pool": None, "_running": None}

    def setup(self):
        # The tuned local runner calls setup() for every bundle on the same object.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"load-{self._table}")

    def teardown(self):
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._running = None

    def _load(self) -> tuple[list[dict[str, Any]] | None, str | None]:
        """``(rows, None)``, or ``(None, why not)`` within ``timeout_seconds``."""
        if self._running is not None and not self._running.done():
            return None, f"the load started {self._timeout:g}+ s ago has not answered yet"
        self.setup()
        self._running = self._pool.submit(self._loader)
        try:
            return self._running.result(timeout=self._timeout), None
        except TimeoutError:
            return None, f"no answer within {self._timeout:g} s"
        except Exception as exc:  # any failure of the source: reported below, never raised (module docstring)
            return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"

    def process(self, _keyed_tick, loaded_rows=_LOADED_ROWS_PARAM, failed_loads=_FAILED_LOADS_PARAM):
        started = time.time()
        before = loaded_rows.read()
        rows, error = self._load()
        if error is not None:
            failed = (failed_loads.read() or 0) + 1
            failed_loads.write(failed)
            self._failures.inc()
            if before is not None:
                _LOG.warning(
                    "refreshing %s failed (%s); keeping the previous snapshot of %d rows", self._table, error, before
                )
                return
            self._placeholders.inc()
            _LOG.warning(
                "no %s snapshot has loaded yet (%d failed attempts; this one: %s): events are written with NULL %s "
                "attributes, counted in enriched_without_%s_snapshot, until a load succeeds",
                self._table,
                failed,
                error,
                self._table,
                self._table,
            )
            yield DimensionSnapshot(self._table, started, {}, loaded=False)
            return
        by_id = {str(r[self._key]): r for r in rows if r.get(self._key) is not None}
        refusal = (
            None
            if before is None or self._allow_shrink
            else shrink_refusal(self._table, before, len(by_id), "the streaming job's side input")
        )
        if refusal:
            self._refused.inc()
            _LOG.warning("%s; keeping the previous snapshot", refusal)
            return
        failed = failed_loads.read() or 0
        loaded_rows.write(len(by_id))
        failed_loads.clear()
        self._loads.inc()
        self._size.set(len(by_id))
        after_failures = f" after {failed} failed attempts" if failed else ""
        (_LOG.warning if failed else _LOG.info)(
            "loaded %d %s in %.2f s%s", len(by_id), self._table, time.time() - started, after_failures
        )
        yield DimensionSnapshot(self._table, started, by_id)


class LoadSnapshots(beam.PTransform):
    """Ticks -> :class:`DimensionSnapshot` elements of one table (module docstring for the rules).

    Args:
      table: ``products`` or ``users`` (selects the key column).
      loader: zero-argument callable returning the table's rows as dicts.
      timeout_seconds: the longest one load may take before it counts as failed.
      allow_shrink: accept a load that drops more than half the rows of the previous one.
    """

    def __init__(
        self,
        table: str,
        loader,
        timeout_seconds: float = DEFAULT_LOAD_TIMEOUT_SECONDS,
        allow_shrink: bool = False,
    ):
        super().__init__()
        if table not in DIM_TABLES:
            raise ValueError(f"table must be one of {sorted(DIM_TABLES)}, got {table!r}")
        if not timeout_seconds or timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds!r}")
        self._fn = LoadSnapshotFn(table, loader, DIM_TABLES[table].key, timeout_seconds, allow_shrink)
        self._table = table

    def expand(self, ticks):
        table = self._table
        return (
            ticks
            # One key per table: the state that says which snapshot is the previous one.
            | "KeyByTable" >> beam.Map(lambda tick: (table, tick)).with_output_types(tuple[str, Any])
            | "LoadTable" >> beam.ParDo(self._fn)
        )


class RefreshedDimension(beam.PTransform):
    """A dimension table as a PCollection of DimensionSnapshot, reloaded every ``refresh_seconds``.

    Args:
      table: ``products`` or ``users`` (selects the key column).
      loader: zero-argument callable returning the table's rows as dicts
        (:class:`BigQueryTableLoader` or :class:`LakeSnapshotLoader`).
      refresh_seconds: seconds between reloads (> 0).
      ticker: ``"periodic_impulse"`` (Dataflow) or ``"timer"`` (BundleBasedDirectRunner).
      load_timeout_seconds: the longest one load may take before it counts as failed.
      allow_shrink: accept a reload with less than half the rows of the snapshot it replaces.
    """

    def __init__(
        self,
        table: str,
        loader,
        refresh_seconds: float,
        ticker: str = TICKER_PERIODIC_IMPULSE,
        load_timeout_seconds: float = DEFAULT_LOAD_TIMEOUT_SECONDS,
        allow_shrink: bool = False,
    ):
        super().__init__()
        if not refresh_seconds or refresh_seconds <= 0:
            raise ValueError(f"refresh_seconds must be > 0, got {refresh_seconds!r}")
        self._load = LoadSnapshots(table, loader, load_timeout_seconds, allow_shrink)  # checks the rest
        self._refresh = refresh_seconds
        self._ticker = ticker

    def expand(self, pbegin):
        return (
            pbegin
            | "Tick" >> Ticker(self._refresh, self._ticker)
            | "LoadSnapshot" >> self._load
            | "GlobalWindowPerLoad"
            >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=trigger.Repeatedly(trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
        )
