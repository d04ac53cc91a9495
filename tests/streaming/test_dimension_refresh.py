"""Refreshed dimensions never stall the stream and never throw a good snapshot away.

The rules of ``transforms/dimension_side_inputs.py``: until a first load succeeds, a failed or
timed-out load emits an empty placeholder (so a Dataflow main input, which waits for
its side input's first pane, does not wait without bound) and rows are counted as
enriched without that dimension; after a good load, a failed load or one that would
drop more than half the rows emits nothing (the previous snapshot stays).
"""

from __future__ import annotations

import logging
import threading
import time

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines import events
from beam_pipelines.transforms import dimension_side_inputs as dimensions
from beam_pipelines.transforms.dimension_side_inputs import DimensionSnapshot, LoadSnapshotFn, LoadSnapshots
from beam_pipelines.transforms.enrich import EnrichWithDimensions


class _State:
    """A ReadModifyWriteState stand-in for calling the DoFn directly."""

    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value

    def clear(self):
        self.value = None


def _rows(n: int) -> list[dict]:
    return [{"product_id": str(i), "product_name": f"P{i}", "category": "C"} for i in range(n)]


def test_first_failures_give_placeholders_and_later_ones_keep_the_good_snapshot(caplog):
    release = threading.Event()
    script = []

    def loader():
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        if step == "hang":
            release.wait(10)
            return _rows(9)
        return step

    fn = LoadSnapshotFn("products", loader, "product_id", timeout_seconds=0.3)
    loaded, failed = _State(), _State()

    def tick(step):
        script.append(step)
        started = time.monotonic()
        out = list(fn.process(("products", 0.0), loaded_rows=loaded, failed_loads=failed))
        return [(s.loaded, len(s.rows)) for s in out], time.monotonic() - started

    with caplog.at_level(logging.INFO, logger=dimensions.__name__):
        assert tick(LookupError("no products snapshot under gs://lake yet: run extract_dims"))[0] == [(False, 0)]
        out, took = tick("hang")  # the source does not answer: given up after the timeout
        assert out == [(False, 0)] and took < 2
        # The hung load still runs: not started twice, and the next tick is not held either.
        out, took = tick(_rows(1))
        assert out == [(False, 0)] and took < 0.2
        release.set()
        time.sleep(0.2)
        script.clear()
        assert tick(_rows(4))[0] == [(True, 4)]  # the first good load
        assert tick(OSError("503 backend error"))[0] == []  # previous snapshot stays
        assert tick([])[0] == []  # an empty read never replaces a good snapshot
        assert tick(_rows(1))[0] == []  # nor one with less than half its rows
        assert tick(_rows(3))[0] == [(True, 3)]
    fn.teardown()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("no products snapshot has loaded yet (1 failed attempts; this one: LookupError")
    assert "this one: no answer within 0.3 s)" in messages[1]
    assert "has not answered yet" in messages[2]
    assert any(m.startswith("loaded 4 products in") and m.endswith("after 3 failed attempts") for m in messages)
    assert any("keeping the previous snapshot of 4 rows" in m and "503 backend error" in m for m in messages)
    assert sum("would shrink from 4 to" in m for m in messages) == 2

    allowed = LoadSnapshotFn("products", lambda: [], "product_id", allow_shrink=True)
    shrunk = list(allowed.process(("products", 0.0), loaded_rows=loaded, failed_loads=failed))
    assert [(s.loaded, len(s.rows)) for s in shrunk] == [(True, 0)]
    allowed.teardown()


# Scripted loads for the pipeline test: module level, so the stock runner's per-bundle
# pickling of the DoFn keeps referring to the same script.
_SCRIPT: list = []


def _scripted_loader():
    step = _SCRIPT.pop(0)
    if isinstance(step, Exception):
        raise step
    return step


@pytest.mark.parametrize("tuned", [False, True], ids=["stock", "tuned"])
def test_the_load_step_keeps_its_state_per_table_on_the_runner(tuned):
    from beam_pipelines.direct_runner_tuning import restore_stock_runner, tune_bundle_based_direct_runner

    (tune_bundle_based_direct_runner if tuned else restore_stock_runner)()
    try:
        _SCRIPT[:] = [LookupError("no snapshot yet"), _rows(2), [], _rows(2)]
        stream = TestStream()
        for i in range(4):
            stream = stream.add_elements([float(i)])
        options = PipelineOptions(["--runner=BundleBasedDirectRunner"])
        options.view_as(StandardOptions).streaming = True
        p = beam.Pipeline(options=options)
        out = p | stream.advance_watermark_to_infinity() | LoadSnapshots("products", _scripted_loader)
        assert_that(out | beam.Map(lambda s: (s.loaded, len(s.rows))), equal_to([(False, 0), (True, 2), (True, 2)]))
        p.run().wait_until_finish()
    finally:
        restore_stock_runner()


def test_rows_enriched_before_any_snapshot_are_counted_and_kept_with_nulls():
    record = {"event_id": "e1", "event_name": "view", "event_ts": "2026-11-22T10:00:00Z", "user_id": "1"}
    event = events.validate_record({**record, "session_id": "s", "product_id": "10", "price": "1.00"})
    placeholder = DimensionSnapshot("products", 100.0, {}, loaded=False)
    users = DimensionSnapshot("users", 100.0, {"1": {"user_name": "Ada"}})
    p = beam.Pipeline(runner="FnApiRunner")
    rows = (
        p
        | "Events" >> beam.Create([event, {**event, "event_id": "e2"}])
        | EnrichWithDimensions(
            p | "Products" >> beam.Create([placeholder]), p | "Users" >> beam.Create([users]), "stream", snapshots=True
        )
    )
    assert_that(rows | beam.Map(lambda r: (r["product_name"], r["user_name"])), equal_to([(None, "Ada")] * 2))
    result = p.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("ecommerce"))["counters"]
    }
    assert counters["enriched_without_products_snapshot"] == 2
    assert counters.get("enriched_without_users_snapshot", 0) == 0
    assert counters["enriched_rows"] == 2
