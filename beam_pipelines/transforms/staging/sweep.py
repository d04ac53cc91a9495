"""Drop the staging tables of runs that died before their merge.

A run killed before its merge (SIGKILL, a preempted launcher) cannot drop its staging
tables. Two things clean up after it: the staging tables are created with an
expiration (the run's start plus ``--staging_ttl_minutes``), which BigQuery enforces,
and every run's :class:`DropStaleStagingTables` drops the staging tables of other runs
that are no longer running. The liveness rule is age: no run lives longer than the TTL
(the Composer task times out long before), so a staging table whose expiration has
passed, or created more than one TTL ago, belongs to a dead run. bqemulator 1.4.0
ignores ``expirationTime`` (neither stored nor enforced, measured), so locally the
sweep does all the work, on each table's creation time.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_pipelines.transforms import METRICS_NAMESPACE
from beam_pipelines.transforms.staging.targets import MergeTarget

_LOG = logging.getLogger(__name__)


def is_stale_staging(item: Any, now: datetime, ttl: timedelta) -> bool:
    """Whether a listed staging table belongs to a run that can no longer be running.

    ``item`` is a ``bigquery.TableListItem`` (``created``/``expires`` may be None).
    """
    if item.expires is not None and item.expires <= now:
        return True  # BigQuery would already have deleted it; the emulator does not
    return item.created is not None and item.created <= now - ttl


class DropStaleStagingTablesFn(beam.DoFn):
    """Drops the staging tables of dead runs (see the module docstring), never this run's."""

    def __init__(self, targets: list[MergeTarget], project: str, ttl: timedelta):
        self._targets = targets
        self._project = project
        self._ttl = ttl
        self._dropped = Metrics.counter(METRICS_NAMESPACE, "bq_stale_staging_tables_dropped")

    def process(self, _trigger):
        from bigquery_schemas.client import make_client

        own = {t.staging.table_id for t in self._targets}
        prefixes = tuple(f"{t.final.table}_stg_" for t in self._targets)
        datasets = sorted({(t.final.project, t.final.dataset) for t in self._targets})
        now = datetime.now(UTC)
        client = make_client(self._project)
        try:
            for project, dataset in datasets:
                for item in client.list_tables(f"{project}.{dataset}"):
                    table_id = f"{project}.{dataset}.{item.table_id}"
                    if table_id in own or not item.table_id.startswith(prefixes):
                        continue
                    if not is_stale_staging(item, now, self._ttl):
                        continue  # a run that may still be going (or just got killed)
                    client.delete_table(table_id, not_found_ok=True)
                    self._dropped.inc()
                    _LOG.warning(
                        "dropped staging table %s of a run that is no longer running (created %s, expires %s)",
                        table_id,
                        item.created,
                        item.expires,
                    )
                    yield table_id
        finally:
            client.close()


class DropStaleStagingTables(beam.PTransform):
    """Drop the staging tables left by runs that died before their merge.

    Independent of this run's own writes (it never touches this run's tables), so it
    runs in parallel with them.

    Args:
      targets: this run's merge targets: their final tables name the staging tables
        to look for (``<table>_stg_*``), their staging tables are kept.
      project: project that runs the API calls.
      ttl: the staging tables' lifetime; older ones belong to dead runs.

    Returns:
      PCollection of the dropped table ids.
    """

    def __init__(self, targets: list[MergeTarget], project: str, ttl: timedelta):
        super().__init__()
        if ttl <= timedelta(0):
            raise ValueError(f"the staging TTL must be positive, got {ttl}")
        self._fn = DropStaleStagingTablesFn(list(targets), project, ttl)

    def expand(self, pbegin):
        return pbegin | "CreateSweepTrigger" >> beam.Create([None]) | "DropStaleTables" >> beam.ParDo(self._fn)
