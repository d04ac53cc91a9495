"""Beam transforms over the lake layout of :mod:`beam_pipelines.lake`.

* :class:`WriteWindowPartitions`: ``(window_key, json_line)`` pairs -> window files in
  hour partitions, replacing the files of the same window on a re-run.
* :class:`WriteSnapshot`: rows -> ``raw/<table>/snapshot=.../part-*.jsonl`` and then the
  ``_LATEST`` pointer (only after every part is in place).
* :class:`ReadDimension`: the latest snapshot of a table as ``(key, row)`` pairs.
* :class:`ReadLakeFiles`: every line of the files matching some patterns, with its path.
* :class:`ForwardLakeDeadLetterFn`: a ``dead_letter`` row an extract stored in the lake -> the
  same row for BigQuery.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_pipelines import events, lake
from beam_pipelines.transforms import METRICS_NAMESPACE
from beam_pipelines.transforms.dimension_tables import shrink_refusal

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


class _RecordExtractFn(beam.DoFn):
    """piece_key -> its completion record, once every swap of the run is done (``swaps``)."""

    def __init__(self, lake_root: str, table: str):
        self._lake_root = lake_root
        self._table = table

    def process(self, piece, swaps):
        start, end = parse_window_key(piece)
        files = {zone: len(paths) for zone, key, paths in swaps if key == piece}
        yield lake.write_extract_record(self._lake_root, self._table, start, end, **files)


class WriteExtractRecords(beam.PTransform):
    """After ``swaps`` is complete, write the completion record of every piece (``lake.extract_record_path``).

    Written last, so a record proves that the piece's files are all in place; an
    extract that failed half-way leaves none, and the hourly job and the Composer
    sensor wait for it or say what is missing. Writing a record twice (a retried
    step) writes the same path.

    Args:
      lake_root: lake root folder or ``gs://`` prefix.
      table: the extracted table, e.g. ``orders``.
      pieces: every piece key of the run's window.

    Input: PCollection of ``(zone, piece_key, [final paths])`` from the swaps.
    Returns: PCollection of the record paths.
    """

    def __init__(self, lake_root: str, table: str, pieces: list[str]):
        super().__init__()
        self._fn = _RecordExtractFn(lake_root, table)
        self._pieces = list(pieces)

    def expand(self, swaps):
        return (
            swaps.pipeline
            | "CreateExtractedPieces" >> beam.Create(self._pieces)
            | "WriteCompletionRecords" >> beam.ParDo(self._fn, beam.pvalue.AsList(swaps))
        )


class _PointLatestFn(beam.DoFn):
    def __init__(self, lake_root: str, table: str, snapshot_dir: str, allow_shrink: bool):
        self._lake_root = lake_root
        self._table = table
        self._dir = snapshot_dir
        self._allow_shrink = allow_shrink

    def process(self, _, written):
        written = set(written)
        # A re-run with the same snapshot_ts may have produced fewer shards: drop strays
        # before publishing, so the snapshot is exactly this run's rows (a retried step
        # finds them gone: fine).
        lake.delete_quietly([p for p in lake.files_in(self._dir, "part-*.jsonl") if p not in written])
        folder = self._dir.rstrip("/").rsplit("/", 1)[-1]
        previous = lake.latest_snapshot_dir(self._lake_root, self._table)
        if not self._allow_shrink and previous is not None and previous != self._dir:
            before = sum(lake.count_lines(p) for p in lake.files_in(previous, "part-*.jsonl"))
            after = sum(lake.count_lines(p) for p in written)
            refusal = shrink_refusal(self._table, before, after, f"the snapshot {folder} (was {previous})")
            if refusal:
                raise ValueError(refusal)
        yield lake.write_latest_pointer(self._lake_root, self._table, folder)


class WriteSnapshot(beam.PTransform):
    """Write dict rows as a full snapshot of ``table`` and then move ``_LATEST`` to it.

    The pointer does not move when the new snapshot holds less than half the rows of
    the one it would replace (:func:`~beam_pipelines.transforms.dimension_tables.shrink_refusal`):
    the job fails, readers keep the previous snapshot.

    Args:
      lake_root: lake root folder or ``gs://`` prefix.
      table: ``products`` or ``users``.
      snapshot_ts: the snapshot's instant (its folder name).
      allow_shrink: publish it whatever its size (``--allow_dims_shrink``).

    Returns:
      PCollection with the pointer path, once written.
    """

    def __init__(self, lake_root: str, table: str, snapshot_ts: datetime, allow_shrink: bool = False):
        super().__init__()
        self._lake_root = lake_root
        self._table = table
        self._dir = lake.snapshot_dir(lake_root, table, snapshot_ts)
        self._allow_shrink = allow_shrink

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
            >> beam.ParDo(
                _PointLatestFn(self._lake_root, self._table, self._dir, self._allow_shrink),
                beam.pvalue.AsList(written),
            )
        )


class MissingExtract(RuntimeError):
    """An extract the job needs never ran (no completion record, no snapshot)."""


class _ReadLatestSnapshotFn(beam.DoFn):
    def __init__(self, lake_root: str, required: bool, hint: str):
        self._lake_root = lake_root
        self._required = required
        self._hint = hint
        self._missing = Metrics.counter(METRICS_NAMESPACE, "dimension_snapshots_missing")

    def process(self, table):
        rows = lake.read_latest_snapshot_rows(self._lake_root, table)
        if rows is None:
            where = lake.join(self._lake_root, lake.RAW, table, lake.LATEST_POINTER)
            if self._required:
                raise MissingExtract(f"no {table} snapshot in the lake ({where} does not exist): {self._hint}")
            self._missing.inc()
            _LOG.warning("no %s snapshot in the lake (%s does not exist): no %s attributes", table, where, table)
            return
        yield from rows


class ReadDimension(beam.PTransform):
    """The latest lake snapshot of a dimension as ``(key, row)`` pairs.

    Read on one worker at run time: dimensions are side-input sized by construction.
    A missing snapshot (no ``_LATEST``, proven absent) fails the step unless
    ``required`` is false; a pointer or part file that cannot be read always fails it.

    Args:
      lake_root: lake root folder or ``gs://`` prefix.
      table: ``products`` or ``users``.
      key: the primary key column, e.g. ``product_id``.
      required: a missing snapshot is an error (default) instead of no rows.
      hint: what the error tells the user to do, e.g. "run extract_dims first".
    """

    def __init__(self, lake_root: str, table: str, key: str, *, required: bool = True, hint: str = ""):
        super().__init__()
        self._lake_root = lake_root
        self._table = table
        self._key = key
        self._fn = _ReadLatestSnapshotFn(lake_root, required, hint or "run extract_dims first")

    def expand(self, pbegin):
        key = self._key
        return (
            pbegin
            | "CreateTableName" >> beam.Create([self._table])
            | "ReadLatestSnapshot" >> beam.ParDo(self._fn)
            | "KeyByPrimaryKey" >> beam.Map(lambda row: (str(row[key]), row))
        )


class _CheckExtractedFn(beam.DoFn):
    def __init__(self, lake_root: str, table: str, start: datetime, end: datetime, required: bool, hint: str):
        self._lake_root = lake_root
        self._table = table
        self._start, self._end = start, end
        self._required = required
        self._hint = hint
        self._unproven = Metrics.counter(METRICS_NAMESPACE, f"{table}_extract_gaps")

    def process(self, _trigger):
        if not lake.has_files_under(self._lake_root):
            raise MissingExtract(
                f"nothing is under --lake_root {self._lake_root} (it is taken literally, glob characters "
                "included): check the path; a lake that was never written has nothing to load"
            )
        gaps = lake.extract_gaps(self._lake_root, self._table, self._start, self._end)
        if not gaps:
            return
        where = lake.join(self._lake_root, lake.EXTRACTS, self._table)
        message = (
            f"{len(gaps)} part(s) of the window have no {self._table} extract completion record in {where}: "
            f"{lake.describe_gaps(gaps)}"
        )
        if self._required:
            raise MissingExtract(f"{message}; {self._hint}")
        self._unproven.inc(len(gaps))
        _LOG.warning("%s; loading what the lake holds (--allow_missing_extracts)", message)
        yield from ()


class CheckExtracted(beam.PTransform):
    """Prove at run time that ``table`` was extracted for all of ``[start, end)``.

    Fails the step (one line naming the gaps) when the lake root holds nothing or a
    part of the window has no completion record (:func:`beam_pipelines.lake.extract_gaps`),
    unless ``required`` is false, in which case the gaps are counted
    (``<table>_extract_gaps``) and logged. A listing that fails always fails the step.

    Returns:
      An empty PCollection, complete once the check passed: a barrier for side effects.
    """

    def __init__(self, lake_root: str, table: str, start: datetime, end: datetime, *, required: bool, hint: str):
        super().__init__()
        self._fn = _CheckExtractedFn(lake_root, table, start, end, required, hint)

    def expand(self, pbegin):
        return pbegin | "CreateCheckTrigger" >> beam.Create([None]) | "CheckCompletionRecords" >> beam.ParDo(self._fn)


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


class ForwardLakeDeadLetterFn(beam.DoFn):
    """A ``dead_letter`` row stored in the lake by an extract -> the same row for BigQuery."""

    def __init__(self, pipeline: str):
        self._pipeline = pipeline
        self._forwarded = Metrics.counter(METRICS_NAMESPACE, "extract_dead_letters_forwarded")

    def process(self, element):
        path, line = element
        self._forwarded.inc()
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not row.get("stage") or not row.get("pipeline"):
                raise ValueError("not a dead_letter row")
        except ValueError as exc:
            # A corrupt dead-letter file must not be lost either: wrap it as-is.
            row = events.dead_letter_row(
                pipeline=self._pipeline, stage="forward", error=str(exc), payload=line, attributes={"file": path}
            )
        yield row
