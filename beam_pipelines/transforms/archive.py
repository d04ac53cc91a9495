"""The streaming job's lake archive: every message it read, in hour folders, as files.

``(hour folder, envelope line)`` pairs from ``ParseEvents(archive=True)`` become::

    <lake_root>/raw/events/dt=YYYY-MM-DD/hour=HH/stream_<run_id>_<content hash>.pubsub.jsonl

**Batching.** Lines are grouped per hour folder with ``GroupIntoBatches.WithShardedKey``:
a batch becomes a file when it holds :data:`MAX_LINES_PER_FILE` lines or
``flush_seconds`` of processing time after its first line, and once more when the job
drains (the end of the global window). Processing time, not event-time windows, because
an archive must never drop a message as late. The sharded key makes the number of files
scale with traffic: each thread that runs the step fills its own batches, and on
Dataflow the runner re-shards the key by throughput (the sharding ``WriteToBigQuery``
uses for auto-sharded inserts). ``--archive_shards N`` fixes N shards per folder instead.
The line cap bounds one file and one Streaming Engine commit: 2,000 lines of at most
64 KiB (the largest payload the event contract takes) are 128 MiB, under the ~180 MB a
work item may commit; typical lines (~1 KB) make ~2 MB files.

**Atomic, retry-safe files.** Dataflow may run a work item twice, even overlapping (a
zombie attempt beside its retry). Every attempt writes its own temp file
(``<lake_root>/_tmp/<run_id>/archive/<random>-<name>``), and the final name is a hash of
the batch's sorted lines, so every attempt of the same batch has the same name and the
same bytes, and different batches never share a name. An attempt finds the final file
already there (a committed attempt wrote it) and leaves it, or renames its temp file into
place; nothing ever deletes or truncates a final file, and readers (which match
``*.jsonl`` in the hour folders) never see half a file. Two attempts racing past the
check both rename complete files with identical bytes (a local rename and a Cloud
Storage copy both replace an object whole). The run id in the name says which launch
wrote a file; a restarted job never overwrites its predecessor's files.

**Failures.** A file that cannot be written (storage down, permission denied) raises:
Dataflow retries the bundle until it succeeds (the messages stay in the pipeline), the
local runner stops the job (its messages are not acknowledged before they are archived,
see ``beam_pipelines.direct_runner_tuning``, so the next run reads them again).

Why not ``fileio.WriteToFiles``: it names files by window and shard only (a second
firing of the same window reuses the name) and, on a local folder, its final rename
into a sub-folder that does not exist yet fails with only a debug log line: the
archive would lose files silently (Beam 2.77, ``_MoveTempFilesIntoFinalDestinationFn``).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
import zlib
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.utils.sharded_key import ShardedKey

from beam_pipelines import event_archive, lake
from beam_pipelines.transforms import METRICS_NAMESPACE

ARCHIVED_MESSAGES = "archive_messages_written"
# Lines per archive file at most (module docstring: one commit stays under Streaming
# Engine's limit even with 64 KiB lines).
MAX_LINES_PER_FILE = 2_000
_LOG = logging.getLogger(__name__)


class ArchiveWriteError(OSError):
    """An archive file could not be written or moved into place (its messages are not archived)."""


class ArchivedFile(NamedTuple):
    """An archive file in its final place and the envelope lines it holds."""

    path: str
    lines: list[str]


def archive_file_name(run_id: str, lines: list[str]) -> str:
    """``stream_<run_id>_<hash of the sorted lines>.pubsub.jsonl``: the same for every attempt at a batch."""
    digest = hashlib.sha256("\n".join(lines).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"stream_{run_id}_{digest}{event_archive.SUFFIX}"


def _folder(key) -> str:
    return key.key if isinstance(key, ShardedKey) else key[0]


def _move_into_place(temp: str, final: str) -> None:
    """Give ``final`` the bytes of this attempt's own ``temp`` file, whole.

    A local rename replaces a file atomically. On Cloud Storage one copy request makes
    the object appear whole (``FileSystems.rename`` would batch a copy and a delete into
    one multipart request); the temp object is then deleted, and one left behind (a
    failed delete) sits in ``_tmp/``, where no reader looks.
    """
    if "://" not in final:
        lake.ensure_dir(final.rsplit("/", 1)[0])
        FileSystems.rename([temp], [final])
        return
    lake.copy_into_place([temp], [final])
    try:
        lake.delete_quietly([temp])
    except lake.LakeReadError as exc:
        _LOG.warning("archive temp file left behind (readers never match _tmp/): %s", exc)


class WriteArchiveFileFn(beam.DoFn):
    """(folder key, [lines]) -> one archive file, written once (module docstring); yields an ArchivedFile."""

    def __init__(self, lake_root: str, run_id: str):
        self._lake_root = lake_root
        self._run_id = run_id
        self._messages = Metrics.counter(METRICS_NAMESPACE, ARCHIVED_MESSAGES)
        self._files = Metrics.counter(METRICS_NAMESPACE, "archive_files_written")
        self._present = Metrics.counter(METRICS_NAMESPACE, "archive_files_already_in_place")

    def process(self, element):
        key, lines = element
        lines = sorted(lines)  # the same bytes on every attempt, whatever order the batch came in
        folder = _folder(key)
        name = archive_file_name(self._run_id, lines)
        final_dir = lake.join(self._lake_root, lake.RAW, lake.EVENTS, folder)
        final = lake.join(final_dir, name)
        if lake.files_in(final_dir, lake.literal(name)):  # raises when the folder cannot be listed
            self._present.inc()  # an earlier attempt at this batch committed it: leave it
        else:
            temp = lake.join(
                lake.tmp_dir(self._lake_root, self._run_id), "archive", folder, f"{uuid.uuid4().hex}-{name}"
            )
            try:
                lake.write_jsonl(temp, lines)
                _move_into_place(temp, final)
            except Exception as exc:  # re-raised with what was not archived; the runner retries or stops
                # The cause first (a one-line error report keeps ~400 characters), then where;
                # "from None": the message carries the cause, and one-line error reports show
                # the innermost exception of a chain.
                inner = exc.__cause__ if isinstance(exc, lake.LakeReadError) and exc.__cause__ else exc
                raise ArchiveWriteError(
                    f"{lake.error_cause(inner)} (writing the archive file {final}, {len(lines)} messages)"
                ) from None
            self._files.inc()
            _LOG.info("archived %d messages to %s", len(lines), final)
        self._messages.inc(len(lines))
        yield ArchivedFile(final, lines)


class WriteMessageArchive(beam.PTransform):
    """Write ``(hour folder, envelope line)`` pairs as archive files (module docstring).

    Args:
      lake_root: ``/path/lake`` or ``gs://bucket/prefix``.
      run_id: unique per launch of the job (which launch wrote a file).
      flush_seconds: processing time from a batch's first line to its file.
      shards: ``None`` (default): shards scale with traffic (``GroupIntoBatches.WithShardedKey``);
        N: exactly N shards per hour folder.
      max_lines: lines per file at most.

    Returns:
      PCollection of :class:`ArchivedFile`, one per file written (or found in place).
    """

    def __init__(
        self,
        lake_root: str,
        run_id: str,
        flush_seconds: float = 60,
        shards: int | None = None,
        max_lines: int = MAX_LINES_PER_FILE,
    ):
        super().__init__()
        if not lake_root or not run_id:
            raise ValueError("lake_root and run_id are required, e.g. gs://my-lake and 20261122T100000-1a2b3c4d")
        if flush_seconds <= 0 or (shards is not None and shards <= 0) or max_lines <= 0:
            raise ValueError("flush_seconds, shards (when given) and max_lines must be > 0")
        self._lake_root = lake_root
        self._run_id = run_id
        self._flush = flush_seconds
        self._shards = shards
        self._max_lines = max_lines

    def expand(self, records):
        shards = self._shards
        if shards is None:
            batches = (
                records
                | "KeyByArchiveFolder" >> beam.Map(tuple).with_output_types(tuple[str, str])
                | "BatchArchiveLines" >> beam.GroupIntoBatches.WithShardedKey(self._max_lines, self._flush)
            )
        else:
            batches = (
                records
                | "KeyByArchiveShard"
                >> beam.Map(lambda r: ((r[0], zlib.crc32(r[1].encode("utf-8", "surrogatepass")) % shards), r[1]))
                | "BatchArchiveLines" >> beam.GroupIntoBatches(self._max_lines, self._flush)
            )
        return batches | "WriteArchiveFiles" >> beam.ParDo(WriteArchiveFileFn(self._lake_root, self._run_id))
