"""The hourly job's stream-event path in shards: lake files -> ``user_behavior`` row tables + dead letters.

The same result as ``ReadLakeFiles`` -> ``ParseEventsInWindow`` -> ``DeduplicateEvents`` ->
``EnrichWithDimensions`` (rows equal except ``ingest_ts``; dead letters equal except
``insert_ts``; the same counters), with Beam's per-element machinery paid per block
and per shard instead of per event (docs/benchmarks.md: ~60 µs/event per element):

1. ``ParseFileBlocks``: each file is read in blocks of lines (``lake.iter_raw_lines``,
   the lines ``ReadLakeFiles`` yields). Per block, the payloads the columnar fast path
   accepts (:mod:`beam_pipelines.event_batch`) become event columns at once; every
   other line is judged by :class:`~beam_pipelines.transforms.unify.ParseEventsInWindowFn`
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
import zlib
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_pipelines import event_archive, event_batch, events, lake
from beam_pipelines.transforms import METRICS_NAMESPACE
from beam_pipelines.transforms.dedupe import _winner_key
from beam_pipelines.transforms.parse import EVENTS
from beam_pipelines.transforms.unify import DEAD_LETTERS, ParseEventsInWindowFn

ROWS = "rows"
SHARD_BYTES = 64 * 2**20
BLOCK_LINES = 100_000


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def shard_of(event_id: str, n_shards: int) -> int:
    """Stable across processes and runs (``hash()`` is salted per process)."""
    return zlib.crc32(event_id.encode("utf-8", "surrogatepass")) % n_shards


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

    def parse(self, path: str, lines: list[bytes]) -> tuple[pa.Table, list[dict[str, Any]]]:
        """(events of the lines, dead-letter rows), exactly the element path's verdicts."""
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
            for out in self._slow.process((path, lines[i])):
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
    """path -> ``(shard, events as Arrow IPC)`` per block and shard (main), dead letters (``DEAD_LETTERS``)."""

    def __init__(self, start: datetime, end: datetime, pipeline: str, block_lines: int = BLOCK_LINES):
        self._parser = BlockParser(start, end, pipeline)
        self._block_lines = block_lines

    def start_bundle(self):
        self._parser.start()

    def finish_bundle(self):
        self._parser.finish()

    def process(self, path: str, n_shards: int):
        block: list[bytes] = []
        for line in lake.iter_raw_lines(path):
            block.append(line)
            if len(block) >= self._block_lines:
                yield from self._judge(path, block, n_shards)
                block = []
        if block:
            yield from self._judge(path, block, n_shards)

    def _judge(self, path, block, n_shards):
        table, dead = self._parser.parse(path, block)
        for row in dead:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, row)
        if table.num_rows == 0:
            return
        shards = np.fromiter((shard_of(i, n_shards) for i in table["event_id"].to_pylist()), np.int64, table.num_rows)
        order = np.argsort(shards, kind="stable")
        table, shards = table.take(pa.array(order)), shards[order]
        bounds = np.flatnonzero(np.diff(shards)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(shards)], strict=True):
            yield int(shards[lo]), to_ipc(table.slice(lo, hi - lo))


class DedupeAndEnrichShardFn(beam.DoFn):
    """(shard, [event IPC blocks]) + products/users -> one ``user_behavior`` row table."""

    def __init__(self, source: str):
        if source not in (events.SOURCE_STREAM, events.SOURCE_API):
            raise ValueError(f"source must be {events.SOURCE_STREAM!r} or {events.SOURCE_API!r}, got {source!r}")
        self._source = source
        self._duplicates = Metrics.counter(METRICS_NAMESPACE, "duplicates_removed")
        self._unknown_products = Metrics.counter(METRICS_NAMESPACE, "unknown_products")
        self._unknown_users = Metrics.counter(METRICS_NAMESPACE, "unknown_users")
        self._rows = Metrics.counter(METRICS_NAMESPACE, "enriched_rows")

    def setup(self):
        self._dims: dict[str, tuple[Any, event_batch.Dimension]] = {}

    def _dimension(self, name: str, rows: dict, columns: tuple[str, ...]) -> event_batch.Dimension:
        cached = self._dims.get(name)
        if cached is None or cached[0] is not rows:
            cached = self._dims[name] = (rows, event_batch.Dimension(rows, columns))
        return cached[1]

    def process(self, element, products: dict, users: dict):
        _, blocks = element
        table = pa.concat_tables([from_ipc(b) for b in blocks])
        winners, duplicates = event_batch.dedupe(table, _winner_key)
        rows, unknown_products, unknown_users = event_batch.user_behavior_table(
            winners,
            self._dimension("products", products, ("product_name", "category")),
            self._dimension("users", users, ("user_name",)),
            self._source,
            events.format_ts(datetime.now(UTC)),
        )
        self._duplicates.inc(duplicates)
        self._unknown_products.inc(unknown_products)
        self._unknown_users.inc(unknown_users)
        self._rows.inc(rows.num_rows)
        yield rows


def _file_bytes(path: str) -> int:
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes


class ShardedStreamRows(beam.PTransform):
    """Stream event files of the window -> ``user_behavior`` row tables (main) and dead letters.

    Args:
      patterns: lake file patterns (``*`` stops at ``/``), as for ``ReadLakeFiles``.
      start, end: the job window ``[start, end)``.
      pipeline: job name for ``dead_letter.pipeline``.
      products, users: ``(id, row)`` PCollections, applied with ``AsDict``.
      source: ``user_behavior.source``.
      shard_bytes: input bytes per shard (the shard count is sized at run time).

    Returns:
      A dict: ``[ROWS]`` ``pyarrow.Table`` s of ``user_behavior`` rows (one
      per shard, schema column order), ``[DEAD_LETTERS]`` dead-letter rows.
    """

    def __init__(self, patterns, start, end, pipeline, products, users, source, *, shard_bytes=SHARD_BYTES):
        super().__init__()
        self._patterns = list(patterns)
        self._start, self._end, self._pipeline = start, end, pipeline
        self._products, self._users, self._source = products, users, source
        self._shard_bytes = shard_bytes

    def expand(self, pbegin):
        shard_bytes = self._shard_bytes
        files = (
            pbegin
            | "CreatePatterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> beam.FlatMap(lake.list_files)
            | "SpreadFiles" >> beam.Reshuffle()
        )
        n_shards = (
            files
            | "FileSizes" >> beam.Map(_file_bytes)
            | "TotalBytes" >> beam.CombineGlobally(sum)
            | "ShardCount" >> beam.Map(lambda total: max(1, math.ceil(total / shard_bytes)))
        )
        parsed = files | "ParseFileBlocks" >> beam.ParDo(
            ParseFileBlocksFn(self._start, self._end, self._pipeline), beam.pvalue.AsSingleton(n_shards)
        ).with_outputs(DEAD_LETTERS, main=EVENTS)
        rows = (
            parsed[EVENTS]
            | "GroupByShard" >> beam.GroupByKey()
            | "DedupeAndEnrichShards"
            >> beam.ParDo(
                DedupeAndEnrichShardFn(self._source),
                products=beam.pvalue.AsDict(self._products),
                users=beam.pvalue.AsDict(self._users),
            )
        )
        return {ROWS: rows, DEAD_LETTERS: parsed[DEAD_LETTERS]}
