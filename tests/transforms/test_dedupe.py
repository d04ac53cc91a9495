import apache_beam as beam
import pytest
from apache_beam.metrics import MetricsFilter
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines.transforms import METRICS_NAMESPACE
from beam_pipelines.transforms.dedupe import DeduplicateEvents, DeduplicateEventsStateful
from tests.transforms.samples import SAMPLE_ORDER, SAMPLE_VIEW, event

VIEW = event(SAMPLE_VIEW)
ORDER = event(SAMPLE_ORDER)
# Same event_id as VIEW, later event time and a different price: must lose.
VIEW_LATER_COPY = event(SAMPLE_VIEW | {"event_ts": "2026-11-21T10:00:09Z", "price": "5"})


def _duplicates_removed(result) -> int:
    metrics = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name("duplicates_removed"))[
        "counters"
    ]
    return sum(m.committed for m in metrics)


@pytest.mark.parametrize("order", [0, 1])
def test_deduplicate_events_keeps_earliest_regardless_of_input_order(order):
    inputs = [VIEW_LATER_COPY, VIEW, ORDER, VIEW, ORDER]
    if order:
        inputs.reverse()
    p = test_pipeline.TestPipeline(runner="FnApiRunner")
    out = p | beam.Create(inputs) | "DeduplicateEvents" >> DeduplicateEvents()
    assert_that(out, equal_to([VIEW, ORDER]), label="CheckWinners")
    stamps = out | beam.Map(lambda e, ts=beam.DoFn.TimestampParam: (e["event_id"], float(ts)))
    assert_that(
        stamps, equal_to([("e-1", VIEW["event_time"]), ("o-1:1", ORDER["event_time"])]), label="CheckTimestamps"
    )
    assert _duplicates_removed(p.run()) == 3


def test_stateful_dedupe_on_bounded_input_keeps_first_of_each_id():
    p = test_pipeline.TestPipeline(runner="FnApiRunner")
    out = p | beam.Create([VIEW, ORDER, VIEW, VIEW]) | DeduplicateEventsStateful(horizon_seconds=3600)
    assert_that(out | beam.Map(lambda e: e["event_id"]), equal_to(["e-1", "o-1:1"]))
    assert _duplicates_removed(p.run()) == 2


def test_stateful_dedupe_rejects_bad_horizon():
    with pytest.raises(ValueError, match="horizon_seconds"):
        DeduplicateEventsStateful(horizon_seconds=0)
