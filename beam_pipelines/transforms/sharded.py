"""The hourly job's stream-event path in shards: lake files -> ``user_behavior`` row tables + dead letters.

The same result as ``ReadLakeFiles`` -> ``ParseEventsInWindow`` -> ``DeduplicateEvents`` ->
``EnrichWithDimensions`` (rows equal except ``ingest_ts``; dead letters equal except
``insert_ts``; the same counters), with Beam's per-element machinery paid per block
and per shard instead of per event (docs/benchmarks.md: ~60 µs/event per element):

1. ``ParseFileBlocks``: each file is read in blocks of lines (``lake.iter_raw_lines``,
   the lines ``ReadLakeFiles`` yields). Per block, the payloads the columnar fast path
   accepts (:mod:`beam_pipelines.event_batch`) become event columns at once; every
   other line is judged by :class:`~beam_pipelines.transforms.job_window.ParseEventsInWindowFn`
   itself, the per-element step, so dead letters (stage, reason, payload, attributes)
   and the window rule come from one place. Archive files (``*.pubsub.jsonl``) are
   unwrapped with ``event_archive.decode`` first and their publish time is the
   receive time, as on the element path. Events are split by a stable hash of
   ``event_id`` into shards and travel as Arrow IPC bytes.
2. ``GroupByShard`` brings every copy of an ``event_id`` to one shard.
3. ``DedupeAndEnrichShards``: per shard, :func:`event_batch.dedupe` (the element
   path's tie rule on the repeated ids only) and :func:`event_batch.user_behavior_table`
   against the products/users side inputs (``AsDict``, as ``EnrichWithDimensions``).

The shard count is sized to the input: one shard per :data:`SHARD_BYTES` of matched
files (at least one), computed at run time from the file sizes, so Beam spreads
large hours over workers and a small hour does not pay for empty shards.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows
from numpy.lib.stride_tricks import as_strided

from beam_pipelines import event_archive, event_batch, events, lake, runners
from beam_pipelines.transforms import METRICS_NAMESPACE
from beam_pipelines.transforms.dedupe import _winner_key
from beam_pipelines.transforms.job_window import ParseEventsInWindowFn
from beam_pipelines.transforms.parse import DEAD_LETTERS, EVENTS

ROWS = "rows"
SHARD_BYTES = 64 * 2**20
# Bytes of a file judged at once: ~70k lines of ~230 bytes, so Arrow and RE2 work on
# large arrays while a block's columns stay a few tens of MiB.
BLOCK_BYTES = 16 * 2**20
SPILL_SUFFIX = ".arrows"
PASS_THROUGH = -1  # the grouping key of ShardedStreamRows' pass_through rows (shards are >= 0)


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing's multiplier (2**64 / golden ratio)


def shards_of(ids: pa.Array, n_shards: int) -> np.ndarray:
    """The shard of each id: a function of its bytes only, so stable across processes and runs.

    Vectorised (``crc32`` per id in Python cost ~0.4 µs an event): the id's first, middle
    and last 8 bytes and its length, mixed by multiplication. Equal ids land in one shard;
    ids that share those bytes share a shard, which only skews the balance.
    """
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    n = len(ids)
    if n == 0:
        return np.zeros(0, np.int64)
    offsets = np.frombuffer(ids.buffers()[1], np.int32, n + 1, ids.offset * 4).astype(np.int64)
    raw = np.frombuffer(ids.buffers()[2], np.uint8) if ids.buffers()[2] is not None else np.zeros(0, np.uint8)
    data = np.concatenate([np.zeros(8, np.uint8), raw, np.zeros(8, np.uint8)])
    # Every 8-byte window of the data, as rows of a strided view: one gather per id and end.
    windows = as_strided(data, shape=(len(data) - 7, 8), strides=(1, 1), writeable=False)
    start, length = offsets[:-1], np.diff(offsets).astype(np.uint64)
    head = np.ascontiguousarray(windows[start + 8]).view(np.uint64)[:, 0]
    tail = np.ascontiguousarray(windows[offsets[1:]]).view(np.uint64)[:, 0]
    # Little endian: an id shorter than 8 bytes keeps its own bytes only (the next id's
    # bytes are the head's high ones, the previous id's the tail's low ones).
    short = np.minimum(length, np.uint64(8))
    keep_bits = np.uint64(8) * short
    head = np.where(short < 8, head & ((np.uint64(1) << keep_bits) - np.uint64(1)), head)
    tail = np.where(short < 8, tail >> (np.uint64(64) - keep_bits) % np.uint64(64), tail)
    tail = np.where(short == 0, np.uint64(0), tail)
    # The middle 8 bytes too: ids that differ only inside ("o-000000123:1:return") spread.
    middle = np.ascontiguousarray(windows[start + 8 + (length.astype(np.int64) - 8) // 2]).view(np.uint64)[:, 0]
    middle = np.where(length >= 8, middle, np.uint64(0))
    h = head * _MIX
    h ^= (tail + length) * _MIX
    h = (h ^ (h >> np.uint64(31))) + middle * _MIX
    h ^= h >> np.uint64(29)
    return ((h * _MIX) >> np.uint64(33)).astype(np.int64) % n_shards


def line_blocks(path: str, block_bytes: int = BLOCK_BYTES) -> Iterator[pa.Array]:
    """The file's lines, split on ``\\n`` without it, as binary arrays of ~``block_bytes``.

    The lines of ``lake.iter_raw_lines`` before its two per-line steps: a line may still
    end in ``\\r`` or be blank (:meth:`BlockParser.parse` applies those rules to the lines
    the fast path does not take, which are the only ones that can need them). The file is
    read into one reused buffer and newlines are found with numpy: ~0.1 µs a line against
    ~0.4 for Python's line iteration, and no block allocated per read.
    """
    buffer = bytearray(block_bytes)
    view = memoryview(buffer)
    held = 0  # bytes of an unfinished line kept at the front of the buffer
    with FileSystems.open(path) as f:
        while True:
            if held == len(buffer):  # a line longer than the buffer: grow it
                view.release()
                buffer.extend(bytes(len(buffer)))
                view = memoryview(buffer)
            read = f.readinto(view[held:])
            if not read:
                break
            size = held + read
            ends = _newlines(buffer, size)
            if len(ends) == 0:
                held = size
                continue
            cut = int(ends[-1]) + 1
            yield _split_lines(buffer, ends)
            held = size - cut
            view[:held] = view[cut:size]
    view.release()
    if held:  # the last line has no newline
        yield _split_lines(buffer[:held] + b"\n", np.array([held], np.int64))


def _newlines(buffer: bytearray, size: int, step: int = 2**20) -> np.ndarray:
    # In 1 MiB steps, so numpy's temporary mask stays in cache (~25 % faster than one pass).
    data = np.frombuffer(buffer, np.uint8, size)
    found = [np.flatnonzero(data[lo : lo + step] == 10) + lo for lo in range(0, size, step)]
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def _split_lines(buffer: bytearray, ends: np.ndarray) -> pa.Array:
    """The lines of ``buffer`` ending at the newlines ``ends``, newline excluded, copied out of it."""
    offsets = np.empty(len(ends) + 1, np.int32)
    offsets[0] = 0
    offsets[1:] = ends + 1
    data = pa.py_buffer(memoryview(buffer)[: int(ends[-1]) + 1])
    with_newlines = pa.Array.from_buffers(pa.binary(), len(ends), [None, pa.py_buffer(offsets), data])
    # A copy: the caller reuses the buffer for the next block.
    return pc.binary_slice(with_newlines, 0, -1)


class BlockParser:
    """Judge blocks of lake lines: the columnar fast path, then the element path for the rest.

    Usable without a pipeline (the differential tests call it directly); inside a DoFn
    its element-path counters land on the calling step.
    """

    def __init__(self, start: datetime, end: datetime, pipeline: str):
        self._start, self._end = start, end
        self._slow = ParseEventsInWindowFn(start, end, pipeline)
        self._fast_in = Metrics.counter(METRICS_NAMESPACE, "records_in")
        self._fast_valid = Metrics.counter(METRICS_NAMESPACE, "valid_events")
        self._fast_rows = Metrics.counter(METRICS_NAMESPACE, "fast_path_events")

    def start(self) -> None:
        self._slow.start_bundle()
        self._now = self._slow._now
        self._hours = event_batch.accepted_hours(self._start, self._end, self._now)
        # Without a receive time the hours already end before now + skew; archive lines
        # carry their publish time, and may accept any window hour that it allows.
        self._window_hours = event_batch.accepted_hours(self._start, self._end, datetime.max.replace(tzinfo=UTC))

    def finish(self) -> None:
        self._slow.finish_bundle()

    def parse(self, path: str, lines: list[bytes] | pa.Array) -> tuple[pa.Table, list[dict[str, Any]]]:
        """(events of the lines, dead-letter rows), exactly the element path's verdicts.

        ``lines``: ``lake.iter_raw_lines``' lines as a list, or :func:`line_blocks`' array
        (whose lines may still end in ``\\r`` or be blank: stripped or skipped here, as
        ``iter_raw_lines`` does, for the lines the fast path does not take).
        """
        if isinstance(lines, pa.Array) and event_archive.is_archive_file(path):
            lines = [line for line in (raw.rstrip(b"\r\n") for raw in lines.to_pylist()) if line.strip()]
        if event_archive.is_archive_file(path):
            fast, mask = self._fast_archive(lines)
        else:
            fast, mask = event_batch.fast_events(lines, self._hours)
        n_fast = int(mask.sum())
        self._fast_in.inc(n_fast)
        self._fast_valid.inc(n_fast)
        self._fast_rows.inc(n_fast)
        slow_events, dead = [], []
        for i in np.flatnonzero(~mask):
            line = lines[i]
            if isinstance(line, pa.Scalar):
                line = line.as_py().rstrip(b"\r\n")
                if not line.strip():
                    continue
            for out in self._slow.process((path, line)):
                if isinstance(out, beam.pvalue.TaggedOutput):
                    dead.append(out.value)
                else:
                    slow_events.append(out.value)
        if slow_events:
            fast = pa.concat_tables([fast, event_batch.events_table(slow_events)])
        return fast, dead

    def _fast_archive(self, lines: list[bytes]) -> tuple[pa.Table, np.ndarray]:
        """The fast path over envelope lines: payloads judged against their publish times.

        A line whose envelope does not decode, or whose attributes are not literally the
        payload's ``event_id``/``event_ts`` (``events.check_attributes`` accepts those
        without a question), is left to the element path.
        """
        payloads, received, attrs = [], [], []
        for line in lines:
            try:
                payload, attributes, publish_time = event_archive.decode(line)
            except ValueError:
                # b"" never matches the fast path: the element path writes the dead letter.
                payload, attributes, publish_time = b"", None, None
            payloads.append(payload)
            received.append(None if publish_time is None else event_batch.epoch_us(publish_time))
            attrs.append(attributes)
        fast, mask = event_batch.fast_events(
            payloads, self._window_hours, received, default_receive_us=event_batch.epoch_us(self._now)
        )
        rows = np.flatnonzero(mask)
        ids, stamps = fast["event_id"].to_pylist(), fast["event_ts"].to_pylist()
        agree = np.ones(len(rows), dtype=bool)
        for j, i in enumerate(rows):
            a = attrs[i]
            if a and (a.get("event_ts", stamps[j]) != stamps[j] or a.get("event_id", ids[j]) != ids[j]):
                agree[j] = False
        if not agree.all():
            mask[rows[~agree]] = False
            fast = fast.filter(pa.array(agree))
        return fast, mask


class ParseFileBlocksFn(beam.DoFn):
    """(path, shard count) -> ``(shard, events)`` (main), dead letters (``DEAD_LETTERS``).

    The events of a shard travel as Arrow IPC: in the element (bytes, one per block and
    shard) or, with ``spill_dir``, in one IPC stream file per input file and shard under
    it, the element then holding only its path (:func:`read_shard_events` reads both).
    """

    def __init__(self, start: datetime, end: datetime, pipeline: str, spill_dir: str | None = None):
        self._parser = BlockParser(start, end, pipeline)
        self._spill_dir = spill_dir

    def start_bundle(self):
        self._parser.start()

    def finish_bundle(self):
        self._parser.finish()

    def process(self, element: tuple[str, int]):
        path, n_shards = element
        spills = _Spills(self._spill_dir) if self._spill_dir else None
        try:
            for block in line_blocks(path):
                table, dead = self._parser.parse(path, block)
                for row in dead:
                    yield beam.pvalue.TaggedOutput(DEAD_LETTERS, row)
                del block
                for shard, part in _split_by_shard(table, n_shards):
                    if spills is None:
                        yield shard, to_ipc(part)
                    else:
                        spills.write(shard, part)
            if spills is not None:
                yield from spills.close()
        finally:
            if spills is not None:
                spills.abort()


def _split_by_shard(table: pa.Table, n_shards: int) -> Iterator[tuple[int, pa.Table]]:
    if table.num_rows == 0:
        return
    if n_shards == 1:
        yield 0, table
        return
    shards = shards_of(table["event_id"], n_shards)
    order = np.argsort(shards, kind="stable")
    table, shards = table.take(pa.array(order)), shards[order]
    bounds = np.flatnonzero(np.diff(shards)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(shards)], strict=True):
        yield int(shards[lo]), table.slice(lo, hi - lo)


class _Spills:
    """One Arrow IPC stream file per shard under ``folder``, each named uniquely (a retried
    bundle writes new files; only the paths it emits are read, and the folder is deleted
    once every shard is done)."""

    def __init__(self, folder: str):
        self._folder = folder.rstrip("/")
        self._open: dict[int, tuple[str, Any, pa.ipc.RecordBatchStreamWriter]] = {}

    def write(self, shard: int, table: pa.Table) -> None:
        if shard not in self._open:
            path = f"{self._folder}/{uuid.uuid4().hex}-{shard}{SPILL_SUFFIX}"
            handle = FileSystems.create(path)
            self._open[shard] = (path, handle, pa.ipc.new_stream(pa.PythonFile(handle, mode="w"), table.schema))
        self._open[shard][2].write_table(table)

    def close(self) -> Iterator[tuple[int, str]]:
        opened, self._open = self._open, {}
        for shard, (path, handle, writer) in sorted(opened.items()):
            writer.close()
            handle.close()
            yield shard, path

    def abort(self) -> None:
        for _, handle, _ in self._open.values():
            handle.close()
        self._open = {}


def read_shard_events(part: bytes | str) -> pa.Table:
    """A shard's events from one :class:`ParseFileBlocksFn` output: IPC bytes, or the path of a spill file."""
    if isinstance(part, bytes):
        return from_ipc(part)
    if "://" not in part:
        # Mapped, not read: the pages are the file's, and the OS drops them when the table goes.
        with pa.memory_map(part) as source:
            return pa.ipc.open_stream(source).read_all()
    with FileSystems.open(part) as f:
        return from_ipc(f.read())


class DedupeAndEnrichShardFn(beam.DoFn):
    """(shard, [event parts]) + products/users -> one ``user_behavior`` row table."""

    def __init__(self, source: str):
        if source not in (events.SOURCE_STREAM, events.SOURCE_API):
            raise ValueError(f"source must be {events.SOURCE_STREAM!r} or {events.SOURCE_API!r}, got {source!r}")
        self._source = source
        self._duplicates = Metrics.counter(METRICS_NAMESPACE, "duplicates_removed")
        self._unknown_products = Metrics.counter(METRICS_NAMESPACE, "unknown_products")
        self._unknown_users = Metrics.counter(METRICS_NAMESPACE, "unknown_users")
        self._rows = Metrics.counter(METRICS_NAMESPACE, "enriched_rows")

    def process(self, element, products: event_batch.Dimension, users: event_batch.Dimension):
        shard, parts = element
        if shard == PASS_THROUGH:
            yield from parts
            return
        table = pa.concat_tables([read_shard_events(part) for part in parts])
        del parts, element
        winners, duplicates = event_batch.dedupe(table, _winner_key)
        del table
        rows, unknown_products, unknown_users = event_batch.user_behavior_table(
            winners, products, users, self._source, events.format_ts(datetime.now(UTC))
        )
        self._duplicates.inc(duplicates)
        self._unknown_products.inc(unknown_products)
        self._unknown_users.inc(unknown_users)
        self._rows.inc(rows.num_rows)
        yield rows


class _DimensionPartsFn(beam.DoFn):
    """``(id, row)`` pairs -> one ``{id: values}`` part per bundle (the columns' values of each row)."""

    def __init__(self, columns: tuple[str, ...]):
        self._columns = columns

    def start_bundle(self):
        self._part: dict[str, tuple] = {}

    def process(self, element):
        key, row = element
        # `product.get(...) if product else None`, as the element path: an empty row gives NULLs.
        self._part[key] = tuple(map(row.get, self._columns)) if row else (None,) * len(self._columns)

    def finish_bundle(self):
        if self._part:
            yield GlobalWindows.windowed_value((None, self._part))
        self._part = {}


def _merge_dimension_parts(element, columns: tuple[str, ...]) -> event_batch.Dimension:
    _, parts = element
    merged: dict[str, tuple] = {}
    for part in parts:
        merged.update(part)
    return event_batch.Dimension.from_values(merged, columns)


class DimensionColumns(beam.PTransform):
    """``(id, row)`` pairs -> one :class:`event_batch.Dimension` (a side input of a few Arrow arrays).

    As ``AsDict`` gives the element path (the last row of a repeated id wins), but
    materialised once per run as columns: ``AsDict`` of 55k rows cost ~0.65 s of CPU per
    run here, most of it Beam's state cache walking the dicts to size them (``objsize``),
    plus building the columns in every worker. A part per bundle and one grouping, not
    ``CombineGlobally``: its expansion alone (a lifted combine, a default for empty input)
    is eight steps, each paid at pipeline translation and per bundle.
    """

    def __init__(self, columns: tuple[str, ...]):
        super().__init__()
        self._columns = columns

    def expand(self, pairs):
        columns = self._columns
        return (
            pairs
            | "PartPerBundle" >> beam.ParDo(_DimensionPartsFn(columns))
            | "GroupParts" >> beam.GroupByKey()
            | "MergeParts" >> beam.Map(_merge_dimension_parts, columns)
        )

    def side_input(self, pcoll) -> beam.pvalue.AsSingleton:
        """``pcoll`` (this transform's output) as a side input; no dimension rows give an empty one."""
        return beam.pvalue.AsSingleton(pcoll, default_value=event_batch.Dimension.from_values({}, self._columns))


class DeleteSpillsFn(beam.DoFn):
    def process(self, folder: str, _after):
        lake.delete_tree(folder)


class ShardedStreamRows(beam.PTransform):
    """Stream event files of the window -> ``user_behavior`` row tables (main) and dead letters.

    Args:
      patterns: lake file patterns (``*`` stops at ``/``), as for ``ReadLakeFiles``.
      start, end: the job window ``[start, end)``.
      pipeline: job name for ``dead_letter.pipeline``.
      products, users: ``(id, row)`` PCollections (as for ``AsDict``).
      source: ``user_behavior.source``.
      shard_bytes: input bytes per shard (the shard count is sized at run time).
      spill_dir: a folder of this run's own (local, or ``gs://``) for the shards' events,
        deleted when every shard is done; None sends them through the shuffle. The
        in-memory local runner holds a shuffle's whole input two to three times over
        (encoded, grouped, re-encoded per key: 2.4 GiB at 4M events), a file on disk once.
      pass_through: rows (any element) to emit with the row tables, unchanged: a caller's
        other rows for the same sink join here, through the shard grouping, instead of
        a ``Flatten`` after this step, which the local runner executes by holding every
        input element in memory (the whole hour's row tables: ~250 bytes an event).

    Returns:
      A dict: ``[ROWS]`` ``pyarrow.Table`` s of ``user_behavior`` rows (one
      per shard, schema column order) and the pass_through rows, ``[DEAD_LETTERS]``
      dead-letter rows.
    """

    def __init__(
        self,
        patterns,
        start,
        end,
        pipeline,
        products,
        users,
        source,
        *,
        shard_bytes=SHARD_BYTES,
        spill_dir=None,
        pass_through=None,
    ):
        super().__init__()
        self._patterns = list(patterns)
        self._start, self._end, self._pipeline = start, end, pipeline
        self._products, self._users, self._source = products, users, source
        self._shard_bytes = shard_bytes
        self._spill_dir = spill_dir
        self._pass_through = pass_through

    def expand(self, pbegin):
        shard_bytes = self._shard_bytes
        files = (
            pbegin
            | "CreatePatterns" >> beam.Create([self._patterns])
            # One step lists every file and sizes the shard count from their bytes.
            | "MatchFilesAndShards" >> beam.FlatMap(_files_and_shard_count, shard_bytes)
            | "SpreadFiles" >> beam.Reshuffle()
        )
        parsed = files | "ParseFileBlocks" >> beam.ParDo(
            ParseFileBlocksFn(self._start, self._end, self._pipeline, self._spill_dir)
        ).with_outputs(DEAD_LETTERS, main=EVENTS)
        product_columns = DimensionColumns(("product_name", "category"))
        user_columns = DimensionColumns(("user_name",))
        products = self._products | "ProductColumns" >> product_columns
        users = self._users | "UserColumns" >> user_columns
        shards = parsed[EVENTS]
        if self._pass_through is not None:
            # Small (the caller's other rows) or, spilled, file paths: this Flatten is cheap to hold.
            passed = self._pass_through | "KeyPassThrough" >> beam.Map(lambda row: (PASS_THROUGH, row))
            shards = (shards, passed) | "AddPassThrough" >> beam.Flatten()
        rows = (
            shards
            | "GroupByShard" >> beam.GroupByKey()
            | "DedupeAndEnrichShards"
            >> beam.ParDo(
                DedupeAndEnrichShardFn(self._source),
                products=product_columns.side_input(products),
                users=user_columns.side_input(users),
            )
        )
        if self._spill_dir:
            # Deleted once every shard's rows exist (a side input is complete only then).
            done = rows | "ShardDone" >> beam.Map(lambda _: 1)
            _ = (
                pbegin
                | "SpillFolder" >> beam.Create([self._spill_dir])
                | "DeleteSpills" >> beam.ParDo(DeleteSpillsFn(), beam.pvalue.AsList(done))
            )
        return {ROWS: rows, DEAD_LETTERS: parsed[DEAD_LETTERS]}


def spill_dir_for(options, run_id: str) -> str | None:
    """``spill_dir`` for a run: a folder of the local disk on the in-memory runner, else None (the shuffle).

    ``runners.LocalStep.SPILLED_SHARDS`` says why; on Dataflow the shuffle service holds
    the shards, off the workers. A run killed before its end leaves the folder in the
    system's temporary directory.
    """
    if not runners.allows(options, runners.LocalStep.SPILLED_SHARDS):
        return None
    safe = re.sub(r"[^0-9A-Za-z_.-]", "_", run_id)
    return os.path.join(tempfile.gettempdir(), f"ecommerce-hourly-shards-{safe}")


def _files_and_shard_count(patterns: list[str], shard_bytes: int) -> list[tuple[str, int]]:
    files = [sized for pattern in patterns for sized in lake.sized_files(pattern)]
    n_shards = max(1, math.ceil(sum(size for _, size in files) / shard_bytes))
    return [(path, n_shards) for path, _ in files]
