"""How the hourly job writes: per-run staging tables, then one keyed statement per final table.

The job never appends to the final tables. A run's rows go, table by table:

* :mod:`.targets`: the final tables (``--*_table`` options, :class:`~.targets.TableRef`)
  and the run's staging table for each (``<table>_stg_<run_id>``, :class:`~.targets.MergeTarget`);
* :mod:`.load`: rows -> Parquet files -> the staging table, by one load job
  (``StageWithLoadJob``), and the files' deletion after the merge (``DeleteStagingFiles``);
* :mod:`.merge`: once every load has finished, one idempotent MERGE (or INSERT) per table
  (``MergeStagingTables``), then the staging tables' drop (``DropStagingTables``);
* :mod:`.sweep`: the staging tables of runs that died before their merge
  (``DropStaleStagingTables``).
"""
