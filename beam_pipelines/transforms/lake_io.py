"""Beam transforms over the lake layout of :mod:`beam_pipelines.lake`.

* :class:`WriteWindowPartitions`: ``(window_key, json_line)`` pairs -> window files in
  hour partitions, replacing the files of the same window on a re-run.
* :class:`WriteSnapshot`: rows -> ``raw/<table>/snapshot=.../part-*.jsonl`` and then the
  ``_LATEST`` pointer (only after every part is in place).
* :class:`ReadDimension`: the latest snapshot of a table as ``(key, row)`` pairs.
* :class:`ReadLakeFiles`: every line of the files matching some patterns, with its path.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_pipelines import lake
from beam_pipelines.transforms import METRICS_NAMESPACE

_LOG = logging.getLogger(__name__)


def window_key(start: datetime, end: datetime) -> str:
    """Key of one window piece (inside one hour): ``<start>_<end>`` in compact form."""
    return f"{lake.compact_ts(start)}_{lake.compact_ts(end)}"


def parse_window_key(key: str) -> tuple[datetime, datetime]:
    start, end = key.split("_")
    return lake.parse_compact_ts(start), lake.parse_compact_ts(end)


class _WriteTempFileFn(beam.DoFn):
    """((piece_key, group), [lines]) -> (piece_key, temp file path)."""

    def __init__(self, tmp_root: str, zone: str, prefix: str):
        self._tmp_root = tmp_root
        self._prefix = prefix
        self._files = Metrics.counter(METRICS_NAMESPACE, f"lake_{zone}_{prefix}_files_written")
        self._lines = Metrics.counter(METRICS_NAMESPACE, f"lake_{zone}_{prefix}_lines_written")

    def process(self, element):
        (piece, group), lines = element
        # Deterministic name: a retried bundle overwrites its own file instead of adding one.
        path = lake.join(self._tmp_root, self._prefix, piece, f"{group}.jsonl")
        self._lines.inc(lake.write_jsonl(path, sorted(lines)))
        self._files.inc()
        yield piece, path


class _ReplacePartitionFn(beam.DoFn):
    """piece_key -> the partition's files for that window replaced by the new temp files.

    A re-run that writes fewer records for a window than the files it replaces held
    is never silent: it is counted (``lake_<zone>_<table>_windows_shrunk``, and the
    records gone in ``..._shrunk_records``) and logged with both counts. Shrinking can
    be legitimate (an order updated again has moved to the window of its new
    ``updated_at``), but it is also what a source that silently ended a read early
    looks like, so an operator has to be able to see it.
    """

    def __init__(self, lake_root: str, zone: str, table: str, prefix: str):
        self._lake_root = lake_root
        self._zone = zone
        self._table = table
        self._prefix = prefix
        self._shrunk = Metrics.counter(METRICS_NAMESPACE, f"lake_{zone}_{table}_windows_shrunk")
        self._shrunk_records = Metrics.counter(METRICS_NAMESPACE, f"lake_{zone}_{table}_shrunk_records")

    def process(self, piece, temp_files):
        start, end = parse_window_key(piece)
        partition = lake.partition_path(self._lake_root, self._table, start, zone=self._zone)
        replaced = lake.files_inside(lake.window_files(partition, self._prefix), start, end)
        before = sum(lake.count_lines(wf.path) for wf in replaced)
        new_files = sorted(temp_files[piece])
        after = sum(lake.count_lines(path) for path in new_files)
        final = lake.replace_window_files(partition, self._prefix, start, end, new_files)
        if after < before:
            self._shrunk.inc()
            self._shrunk_records.inc(before - after)
            _LOG.warning(
                "%s/%s window %s..%s in %s shrank on re-run: %d records now, %d in the files it replaced "
                "(legitimate only for records that moved to a later window, e.g. orders updated again)",
                self._zone,
                self._table,
                lake.compact_ts(start),
                lake.compact_ts(end),
                partition,
                after,
                before,
            )
        yield piece, final


class WriteWindowPartitions(beam.PTransform):
    """Write ``(piece_key, group, json_line)`` triples as window files, one partition per hour.

    Every piece in ``pieces`` is replaced, also when it received no lines: a re-run of
    a window that is now empty leaves the partition empty for that window.

    Args:
      lake_root: ``/path/lake`` or ``gs://bucket/prefix``.
      zone: ``lake.RAW`` or ``lake.DEAD_LETTER``.
      table: folder under the zone, e.g. ``orders``.
      pieces: every piece key of the window (``window_key`` of each hour piece).
      tmp_root: the run's temp folder (``lake.tmp_dir``).

    Returns:
      PCollection of ``(piece_key, [final paths])``, one per piece, once the swap is done.
    """

    def __init__(self, lake_root: str, zone: str, table: str, pieces: list[str], tmp_root: str):
        super().__init__()
        self._lake_root = lake_root
        self._zone = zone
        self._table = table
        self._pieces = list(pieces)
        self._tmp = tmp_root

    def expand(self, triples):
        temp_files = (
            triples
            | "KeyByFile" >> beam.Map(lambda t: ((t[0], t[1]), t[2]))
            | "GroupLinesByFile" >> beam.GroupByKey()
            | "WriteTempFiles"
            >> beam.ParDo(_WriteTempFileFn(lake.join(self._tmp, self._zone), self._zone, self._table))
        )
        return (
            triples.pipeline
            | "CreatePieces" >> beam.Create(self._pieces)
            | "ReplacePartitions"
            >> beam.ParDo(
                _ReplacePartitionFn(self._lake_root, self._zone, self._table, self._table),
                temp_files=beam.pvalue.AsMultiMap(temp_files),
            )
        )


class _PointLatestFn(beam.DoFn):
    def __init__(self, lake_root: str, table: str, snapshot_dir: str):
        self._lake_root = lake_root
        self._table = table
        self._dir = snapshot_dir

    def process(self, _, written):
        written = set(written)
        # A re-run with the same snapshot_ts may have produced fewer shards: drop strays
        # before publishing, so the snapshot is exactly this run's rows.
        stale = [p for p in lake.list_files(lake.join(self._dir, "part-*.jsonl")) if p not in written]
        if stale:
            from apache_beam.io.filesystems import FileSystems

            FileSystems.delete(stale)
        folder = self._dir.rstrip("/").rsplit("/", 1)[-1]
        yield lake.write_latest_pointer(self._lake_root, self._table, folder)


class WriteSnapshot(beam.PTransform):
    """Write dict rows as a full snapshot of ``table`` and then move ``_LATEST`` to it.

    Args:
      lake_root: lake root folder or ``gs://`` prefix.
      table: ``products`` or ``users``.
      snapshot_ts: the snapshot's instant (its folder name).

    Returns:
      PCollection with the pointer path, once written.
    """

    def __init__(self, lake_root: str, table: str, snapshot_ts: datetime):
        super().__init__()
        self._lake_root = lake_root
        self._table = table
        self._dir = lake.snapshot_dir(lake_root, table, snapshot_ts)

    def expand(self, rows):
        written = (
            rows
            | "SerializeRows" >> beam.Map(lambda r: json.dumps(r, sort_keys=True, separators=(",", ":")))
            | "WriteParts" >> beam.io.WriteToText(lake.join(self._dir, "part"), file_name_suffix=".jsonl")
        )
        return (
            rows.pipeline
            | "CreatePointerTrigger" >> beam.Create([None])
            | "WriteLatestPointer"
            >> beam.ParDo(_PointLatestFn(self._lake_root, self._table, self._dir), beam.pvalue.AsList(written))
        )


class ReadDimension(beam.PTransform):
    """The latest lake snapshot of a dimension as ``(key, row)`` pairs (empty when none).

    Read on one worker at run time: dimensions are side-input sized by construction.

    Args:
      lake_root: lake root folder or ``gs://`` prefix.
      table: ``products`` or ``users``.
      key: the primary key column, e.g. ``product_id``.
    """

    def __init__(self, lake_root: str, table: str, key: str):
        super().__init__()
        self._lake_root = lake_root
        self._table = table
        self._key = key

    def expand(self, pbegin):
        lake_root, table, key = self._lake_root, self._table, self._key
        return (
            pbegin
            | "CreateTableName" >> beam.Create([table])
            | "ReadLatestSnapshot" >> beam.FlatMap(lambda t: lake.read_latest_snapshot_rows(lake_root, t))
            | "KeyByPrimaryKey" >> beam.Map(lambda row: (str(row[key]), row))
        )


class ReadLakeFiles(beam.PTransform):
    """Every non-blank line of the files matching ``patterns``, as ``(path, line)``.

    Patterns are expanded at run time, so no pattern may fail the job for lack of
    files (an hour without event files is normal).

    Args:
      patterns: file patterns (``*`` stops at ``/``).
      binary: lines as ``bytes``, exactly as stored (event files, which the contract
        judges byte for byte); default ``str`` for the files this project writes.
    """

    def __init__(self, patterns: list[str], binary: bool = False):
        super().__init__()
        self._patterns = list(patterns)
        self._iter = lake.iter_raw_lines if binary else lake.iter_lines

    def expand(self, pbegin):
        iter_lines = self._iter
        return (
            pbegin
            | "CreatePatterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> beam.FlatMap(lake.list_files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadLines" >> beam.FlatMap(lambda path: ((path, line) for line in iter_lines(path)))
        )
