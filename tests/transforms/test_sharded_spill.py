"""The sharded stream path with its shards spilled to files gives the shuffled path's output.

``tests/transforms/test_sharded_events.py`` proves the shuffled path (``spill_dir=None``)
equal to the per-element path; here the same files go through ``ShardedStreamRows``
with and without ``spill_dir`` (as the hourly job on the in-memory runner), and the
spill files are checked to hold exactly the events they name, and to be gone at the end.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import events
from beam_pipelines.batch_run import counters as counters_of
from beam_pipelines.transforms.sharded import (
    DEAD_LETTERS,
    ROWS,
    SPILL_SUFFIX,
    ParseFileBlocksFn,
    ShardedStreamRows,
    read_shard_events,
    spill_dir_for,
)
from publishers.world import CatalogView, World
from tests.reliability import hostile

START = hostile.HOUR
END = START + timedelta(hours=1)


CATALOG = CatalogView.generated(7, 40, 30, START)
PRODUCTS = [(p, {"product_id": p, "product_name": f"P{p}", "category": "c"}) for p in CATALOG.product_ids[:-3]]
USERS = [(u, {"user_id": u, "user_name": f"u{u}"}) for u in CATALOG.user_ids[:-2]]


def _lake(tmp_path) -> str:
    """A generated hour with redeliveries, and the hostile corpus with blank and \\r-ended lines."""
    world = World(CATALOG, 7).window(START, END, 25)
    data, _ = hostile.stream_input()
    lines = [json.dumps(e, separators=(",", ":")).encode() for e in world.events]
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "world.jsonl").write_bytes(b"\n".join(lines + lines[:10]) + b"\n")
    (lake / "hostile.jsonl").write_bytes(b"\n".join(data) + b"\n\n  \n" + data[0] + b"\r\n" + data[1])
    return str(lake / "*.jsonl")


def _run(tmp_path, label, spill_dir):
    patterns = [str(tmp_path / "lake" / "*.jsonl")]
    products, users = PRODUCTS + list(hostile.PRODUCTS), USERS + list(hostile.USERS)
    p = beam.Pipeline(options=PipelineOptions(runner="FnApiRunner"))
    dims = [p | f"Create{n}" >> beam.Create(d) for n, d in (("Products", products), ("Users", users))]
    out = p | ShardedStreamRows(
        patterns, START, END, "hourly", dims[0], dims[1], events.SOURCE_STREAM, shard_bytes=4096, spill_dir=spill_dir
    )
    rows = out[ROWS] | beam.FlatMap(pa.Table.to_pylist) | "Rows" >> beam.Map(json.dumps, sort_keys=True)
    dead = out[DEAD_LETTERS] | "Dead" >> beam.Map(lambda r: json.dumps({**r, "insert_ts": None}, sort_keys=True))
    _ = rows | "WriteRows" >> beam.io.WriteToText(str(tmp_path / label / "rows"))
    _ = dead | "WriteDead" >> beam.io.WriteToText(str(tmp_path / label / "dead"))
    result = p.run()
    result.wait_until_finish()

    def read(name):
        return sorted(
            json.dumps({k: v for k, v in json.loads(line).items() if k != "ingest_ts"}, sort_keys=True)
            for f in (tmp_path / label).glob(f"{name}-*")
            for line in f.read_text().splitlines()
        )

    return read("rows"), read("dead"), counters_of(result)


def test_spilled_shards_give_the_shuffled_output_and_are_deleted(tmp_path):
    _lake(tmp_path)
    spill = tmp_path / "spill"
    shuffled = _run(tmp_path, "shuffled", None)
    spilled = _run(tmp_path, "spilled", str(spill))
    assert spilled[0] == shuffled[0] and len(shuffled[0]) > 900
    assert spilled[1] == shuffled[1] and len(shuffled[1]) > 100
    for name in ("records_in", "valid_events", "duplicates_removed", "enriched_rows", "fast_path_events"):
        assert spilled[2][name] == shuffled[2][name], name
    assert not spill.exists()  # deleted once every shard's rows existed


def test_spill_files_hold_the_events_they_name(tmp_path):
    _lake(tmp_path)
    fn = ParseFileBlocksFn(START, END, "hourly", spill_dir=str(tmp_path / "spill"))
    fn.start_bundle()
    out = list(fn.process((str(tmp_path / "lake" / "world.jsonl"), 3)))
    fn.finish_bundle()
    parts = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    assert sorted(shard for shard, _ in parts) == [0, 1, 2]  # one file per shard, each named once
    assert all(path.endswith(SPILL_SUFFIX) for _, path in parts)
    spilled = [e for _, path in parts for e in read_shard_events(path).to_pylist()]
    world = (tmp_path / "lake" / "world.jsonl").read_bytes().splitlines()
    assert sorted(e["event_id"] for e in spilled) == sorted(json.loads(line)["event_id"] for line in world)


def test_only_the_in_memory_runner_spills():
    local = PipelineOptions(["--runner=FnApiRunner"])
    assert spill_dir_for(local, "2026-01-01T10 x/y").endswith("ecommerce-hourly-shards-2026-01-01T10_x_y")
    for runner in ("DataflowRunner", "dataflow", "PrismRunner"):
        assert spill_dir_for(PipelineOptions([f"--runner={runner}"]), "r") is None
    assert datetime.now(UTC) > START  # the world's hour is in the past: its events are valid
