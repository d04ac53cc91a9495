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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.transforms.periodicsequence import PeriodicImpulse, RebaseMode
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration, Timestamp

from beam_pipelines.transforms import METRICS_NAMESPACE
from beam_pipelines.transforms.dims import DIM_TABLES

TICKER_PERIODIC_IMPULSE = "periodic_impulse"
TICKER_TIMER = "timer"

_LOG = logging.getLogger(__name__)


class DimensionSnapshot(NamedTuple):
    """A whole dimension table as loaded at ``loaded_at`` (epoch seconds)."""

    table: str
    loaded_at: float
    rows: dict[str, dict[str, Any]]


def newest_snapshot(snapshots: Iterable[DimensionSnapshot]) -> dict[str, dict[str, Any]]:
    """Rows of the most recent snapshot (``{}`` before the first load)."""
    best = None
    for snap in snapshots:
        if best is None or snap.loaded_at > best.loaded_at:
            best = snap
    return best.rows if best is not None else {}


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


class LoadSnapshotFn(beam.DoFn):
    """Tick -> one DimensionSnapshot; a failed load is logged and skipped (the previous one stays)."""

    def __init__(self, table: str, loader: Callable[[], list[dict[str, Any]]], key: str):
        self._table = table
        self._loader = loader
        self._key = key
        self._loads = Metrics.counter(METRICS_NAMESPACE, f"{table}_refreshes")
        self._failures = Metrics.counter(METRICS_NAMESPACE, f"{table}_refresh_failures")
        self._size = Metrics.gauge(METRICS_NAMESPACE, f"{table}_rows")

    def process(self, _tick):
        started = time.time()
        try:
            rows = self._loader()
        except Exception:  # keep enriching with the previous snapshot; the counter alerts
            self._failures.inc()
            _LOG.exception("refreshing %s failed; keeping the previous snapshot", self._table)
            return
        by_id = {str(r[self._key]): r for r in rows if r.get(self._key) is not None}
        self._loads.inc()
        self._size.set(len(by_id))
        _LOG.info("loaded %d %s in %.2f s", len(by_id), self._table, time.time() - started)
        yield DimensionSnapshot(self._table, started, by_id)


class RefreshedDimension(beam.PTransform):
    """A dimension table as a PCollection of DimensionSnapshot, reloaded every ``refresh_seconds``.

    Args:
      table: ``products`` or ``users`` (selects the key column).
      loader: zero-argument callable returning the table's rows as dicts
        (:class:`BigQueryTableLoader` or :class:`LakeSnapshotLoader`).
      refresh_seconds: seconds between reloads (> 0).
      ticker: ``"periodic_impulse"`` (Dataflow) or ``"timer"`` (BundleBasedDirectRunner).
    """

    def __init__(self, table: str, loader, refresh_seconds: float, ticker: str = TICKER_PERIODIC_IMPULSE):
        super().__init__()
        if table not in DIM_TABLES:
            raise ValueError(f"table must be one of {sorted(DIM_TABLES)}, got {table!r}")
        if not refresh_seconds or refresh_seconds <= 0:
            raise ValueError(f"refresh_seconds must be > 0, got {refresh_seconds!r}")
        self._table = table
        self._loader = loader
        self._refresh = refresh_seconds
        self._ticker = ticker

    def expand(self, pbegin):
        return (
            pbegin
            | "Tick" >> Ticker(self._refresh, self._ticker)
            | "LoadSnapshot" >> beam.ParDo(LoadSnapshotFn(self._table, self._loader, DIM_TABLES[self._table].key))
            | "GlobalWindowPerLoad"
            >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=trigger.Repeatedly(trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
        )
