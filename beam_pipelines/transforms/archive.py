"""The streaming job's lake archive: every message it read, in hour folders, as files.

``(hour folder, envelope line)`` pairs from ``ParseEvents(archive=True)`` become::

    <lake_root>/raw/events/dt=YYYY-MM-DD/hour=HH/stream_<run_id>_<pane>-<shard>.pubsub.jsonl

Windowing: one global window per (hour folder, shard), fired every ``flush_seconds``
of processing time after its first unwritten message, and once more when the job
drains (the window's final pane). Processing-time panes, not event-time windows,
because an archive must never drop a message as late: a replayed or backlogged
message is as much part of the record as a fresh one. (``AfterAny(AfterCount(n),
AfterProcessingTime(s))`` would also bound a file's size, but on the local runner it
fired once and never again: measured, Beam 2.77.)

Names are unique per firing (``pane`` is the firing's index for that folder and
shard) and per run (``run_id``), and deterministic within a run: a retried bundle
rewrites its own file instead of adding a second one, and a restarted job never
overwrites the files of the run before it. Each file is written under
``<lake_root>/_tmp/`` and then renamed into its folder, so readers (which match
``*.jsonl`` in the hour folders) never see half a file.

Why not ``fileio.WriteToFiles``: it names files by window and shard only (a second
firing of the same window reuses the name) and, on a local folder, its final rename
into a sub-folder that does not exist yet fails with only a debug log line: the
archive would lose files silently (Beam 2.77, ``_MoveTempFilesIntoFinalDestinationFn``).
"""

from __future__ import annotations

import logging
import zlib

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window

from beam_pipelines import event_archive, lake
from beam_pipelines.transforms import METRICS_NAMESPACE

ARCHIVED_MESSAGES = "archive_messages_written"
_LOG = logging.getLogger(__name__)


class _WriteArchiveFileFn(beam.DoFn):
    """((hour folder, shard), [lines]) in one pane -> one archive file; yields its path."""

    def __init__(self, lake_root: str, run_id: str):
        self._lake_root = lake_root
        self._run_id = run_id
        self._messages = Metrics.counter(METRICS_NAMESPACE, ARCHIVED_MESSAGES)
        self._files = Metrics.counter(METRICS_NAMESPACE, "archive_files_written")

    def process(self, element, pane=beam.DoFn.PaneInfoParam):
        (folder, shard), lines = element
        lines = list(lines)
        name = f"stream_{self._run_id}_{pane.index:06d}-{shard:03d}{event_archive.SUFFIX}"
        final_dir = lake.join(self._lake_root, lake.RAW, lake.EVENTS, folder)
        temp = lake.join(lake.tmp_dir(self._lake_root, self._run_id), "archive", folder, name)
        lake.write_jsonl(temp, lines)
        lake.ensure_dir(final_dir)
        final = lake.join(final_dir, name)
        if lake.list_files(final):
            FileSystems.delete([final])  # a retried firing: its earlier copy of the same lines
        FileSystems.rename([temp], [final])
        self._messages.inc(len(lines))
        self._files.inc()
        _LOG.info("archived %d messages to %s", len(lines), final)
        yield final


class WriteMessageArchive(beam.PTransform):
    """Write ``(hour folder, envelope line)`` pairs as archive files (module docstring).

    Args:
      lake_root: ``/path/lake`` or ``gs://bucket/prefix``.
      run_id: unique per launch of the job (file names never collide across runs).
      flush_seconds: processing time between firings per folder and shard.
      shards: files per folder and firing (spreads a busy hour over workers).

    Returns:
      PCollection of the final file paths.
    """

    def __init__(self, lake_root: str, run_id: str, flush_seconds: float = 60, shards: int = 1):
        super().__init__()
        if not lake_root or not run_id:
            raise ValueError("lake_root and run_id are required, e.g. gs://my-lake and 20261122T100000-1a2b3c4d")
        if flush_seconds <= 0 or shards <= 0:
            raise ValueError("flush_seconds and shards must be > 0")
        self._lake_root = lake_root
        self._run_id = run_id
        self._flush = flush_seconds
        self._shards = shards

    def expand(self, records):
        shards = self._shards
        return (
            records
            | "KeyByArchiveFile" >> beam.Map(lambda r: ((r[0], zlib.crc32(r[1].encode()) % shards), r[1]))
            | "WindowArchive"
            >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=trigger.Repeatedly(trigger.AfterProcessingTime(self._flush)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
            | "GroupArchiveLines" >> beam.GroupByKey()
            | "WriteArchiveFiles" >> beam.ParDo(_WriteArchiveFileFn(self._lake_root, self._run_id))
        )
