"""TestStream tests of the streaming job's event-time behaviour (BundleBasedDirectRunner)."""

import json
import uuid

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to, equal_to_per_window
from apache_beam.transforms.window import IntervalWindow, TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines import events
from beam_pipelines.direct_runner_tuning import is_tuned, restore_stock_runner, tune_bundle_based_direct_runner
from beam_pipelines.transforms.dedupe import (
    DeduplicateEventsInProcess,
    DeduplicateEventsInProcessFn,
    DeduplicateEventsStateful,
)
from beam_pipelines.transforms.dimension_side_inputs import DimensionSnapshot
from beam_pipelines.transforms.enrich import EnrichWithDimensions
from beam_pipelines.transforms.parse import DEAD_LETTERS, EVENTS, ParseEvents
from beam_pipelines.transforms.windows import EngagementMetrics

T0 = 1_795_000_000  # 2026-11-18T... UTC, on a minute boundary
W0 = T0 - T0 % 60  # start of the first window


@pytest.fixture(autouse=True, params=["stock", "tuned"])
def direct_runner(request):
    """Every case on the stock runner and on the job's tuned one: the tuning must not change a result."""
    was_tuned = is_tuned()
    restore_stock_runner()
    if request.param == "tuned":
        tune_bundle_based_direct_runner()
    yield request.param
    restore_stock_runner()
    if was_tuned:
        tune_bundle_based_direct_runner()


# The in-process dedupe's clock in these tests: a module-level function, so it survives
# the stock runner's per-bundle pickling of the DoFn.
_NOW = [0.0]


def _test_clock() -> float:
    return _NOW[0]


DEDUPLICATORS = {
    "stateful": lambda horizon: DeduplicateEventsStateful(horizon_seconds=horizon),
    "in_process": lambda horizon: DeduplicateEventsInProcess(horizon_seconds=horizon, clock=_test_clock),
}


def _streaming_pipeline() -> beam.Pipeline:
    options = PipelineOptions(["--runner=BundleBasedDirectRunner"])
    options.view_as(StandardOptions).streaming = True
    return beam.Pipeline(options=options)


def _event(event_id, name, second, *, user=1, session="s1", price="2.50", quantity=1):
    ts = events.format_ts(Timestamp(W0 + second).to_utc_datetime(has_tz=True))
    record = {
        "event_id": event_id,
        "event_name": name,
        "event_ts": ts,
        "user_id": user,
        "session_id": session,
        "product_id": "10",
        "price": price,
        "quantity": quantity,
        "order_id": "o-1" if name in ("order", "return") else None,
    }
    return events.validate_record(record)


def _tv(event):
    return TimestampedValue(event, event["event_time"])


def _metrics(row):
    return (
        row["event_name"],
        row["events"],
        row["unique_users"],
        row["unique_sessions"],
        row["revenue"],
        row["pane_timing"],
        row["pane_index"],
    )


def test_engagement_on_time_late_and_too_late_panes():
    lateness = 120
    stream = (
        TestStream()
        .advance_watermark_to(W0)
        .add_elements(
            [
                _tv(_event("a", "view", 5, user=1, session="s1")),
                _tv(_event("b", "view", 20, user=2, session="s2")),
                _tv(_event("c", "order", 30, user=1, session="s1", price="10.00", quantity=3)),
                _tv(_event("d", "view", 65, user=3, session="s3")),
            ]
        )
        .advance_watermark_to(W0 + 61)  # window 0 is complete: ON_TIME pane
        # Late but within the lateness: window 0 fires again (accumulating, LATE).
        .add_elements([_tv(_event("e", "view", 40, user=2, session="s9"))])
        .advance_watermark_to(W0 + 60 + lateness + 61)  # window 0 expired, window 1 complete
        # Later than window end + allowed lateness: dropped from the aggregate.
        .add_elements([_tv(_event("f", "view", 50, user=9, session="s8"))])
        .advance_watermark_to_infinity()
    )
    p = _streaming_pipeline()
    rows = p | stream | EngagementMetrics(window_seconds=60, allowed_lateness_seconds=lateness)
    window0 = IntervalWindow(W0, W0 + 60)
    window1 = IntervalWindow(W0 + 60, W0 + 120)
    assert_that(
        rows | beam.Map(_metrics),
        equal_to_per_window(
            {
                window0: [
                    ("view", 2, 2, 2, "0.00", "ON_TIME", 0),
                    ("order", 1, 1, 1, "30.00", "ON_TIME", 0),
                    ("view", 3, 2, 3, "0.00", "LATE", 1),
                ],
                window1: [("view", 1, 1, 1, "0.00", "ON_TIME", 0)],
            }
        ),
        use_global_window=False,
    )
    # Each row's window columns are the bounds of the window that produced it.
    assert_that(
        rows
        | "Bounds"
        >> beam.Map(
            lambda r, w=beam.DoFn.WindowParam: (r["window_start"], r["window_end"]) == (_iso(w.start), _iso(w.end))
        ),
        equal_to([True, True, True, True]),
        label="CheckBounds",
    )
    p.run().wait_until_finish()


def _iso(seconds):
    return events.format_ts(Timestamp.of(seconds).to_utc_datetime(has_tz=True))


@pytest.mark.parametrize("dedupe", sorted(DEDUPLICATORS))
def test_duplicates_collapse_and_malformed_messages_reach_dead_letters(dedupe):
    good = _event("a", "view", 5)
    raw = json.dumps({k: v for k, v in good.items() if k != "event_time"}).encode()
    attrs = {"event_id": "a", "event_ts": good["event_ts"]}
    stream = (
        TestStream()
        .advance_watermark_to(W0)
        .add_elements([PubsubMessage(raw, attrs), PubsubMessage(b"{oops", {"event_ts": good["event_ts"]})])
        .advance_watermark_to(W0 + 30)
        .add_elements([PubsubMessage(raw, attrs)])  # redelivery of "a"
        .add_elements([PubsubMessage(raw.replace(b'"a"', b'"b"'), {**attrs, "event_id": "b"})])
        # Attributes that contradict the payload: a dead letter, not a guess.
        .add_elements([PubsubMessage(raw.replace(b'"a"', b'"c"'), attrs)])
        .advance_watermark_to_infinity()
    )
    _NOW[0] = W0 + 30
    p = _streaming_pipeline()
    parsed = p | stream | ParseEvents("streaming")
    unique = parsed[EVENTS] | DEDUPLICATORS[dedupe](3600)
    assert_that(
        unique | beam.Map(lambda e, t=beam.DoFn.TimestampParam: (e["event_id"], t.micros // 1_000_000)),
        equal_to([("a", W0 + 5), ("b", W0 + 5)]),  # event time kept
        label="CheckUnique",
    )
    assert_that(
        parsed[DEAD_LETTERS] | beam.Map(lambda r: (r["stage"], r["payload"], r["event_ts"])),
        equal_to(
            [("parse", "{oops", good["event_ts"]), ("validate", raw.replace(b'"a"', b'"c"').decode(), good["event_ts"])]
        ),
        label="CheckDeadLetters",
    )
    # Not asserted here: the BundleBasedDirectRunner reports only the first bundle's counters
    # with TestStream input (and none reliably for a cancelled streaming job); the batch
    # dedupe's counter is checked in tests/reliability/test_conservation.py.
    p.run().wait_until_finish()


def test_dedup_state_expires_after_the_horizon():
    first = _event("a", "view", 5)
    stream = (
        TestStream()
        .advance_watermark_to(W0)
        .add_elements([_tv(first)])
        .advance_watermark_to(W0 + 5 + 30)  # within the 60 s horizon: still remembered
        .add_elements([_tv(first)])
        .advance_watermark_to(W0 + 5 + 61)  # horizon passed: state cleared by the timer
        .add_elements([_tv(first)])
        .advance_watermark_to_infinity()
    )
    p = _streaming_pipeline()
    out = p | stream | DeduplicateEventsStateful(horizon_seconds=60)
    assert_that(out | beam.Map(lambda e: e["event_id"]), equal_to(["a", "a"]))
    p.run().wait_until_finish()


def test_in_process_dedupe_forgets_an_id_once_the_clock_passes_its_horizon():
    fn = DeduplicateEventsInProcessFn(uuid.uuid4().hex, horizon_seconds=60, clock=_test_clock)
    first, late = _event("a", "view", 5), _event("b", "view", 0)
    # Published two hours after it happened: remembered for the horizon after its arrival.
    old = _event("old", "view", -7200)

    def bundle(*batch, arrival=W0 + 5):
        fn.start_bundle()
        out = [e.value["event_id"] for event in batch for e in fn.process(event, Timestamp.of(arrival))]
        fn.finish_bundle()
        return out

    _NOW[0] = W0 + 5 + 30  # within the horizon of "a" (arrival + 60 s): remembered
    assert bundle(first, late, first, old) == ["a", "b", "old"]
    assert bundle(first, old) == []
    _NOW[0] = W0 + 5 + 60  # all three expired: checked between bundles, like timers
    assert bundle(first, first, arrival=W0 + 65) == ["a"]
    assert bundle(late, old, arrival=W0 + 65) == ["b", "old"]


P0 = T0 + 7 * 86400  # publish time of the first deliveries below (the watermark follows it)
AGES = {"fresh": 1, "two-hours-old": 2 * 3600, "day-old": 86400}  # event_ts = publish time - age


def _published(event_id: str, age: float, publish_at: float) -> TimestampedValue:
    """A Pub/Sub message as the reader emits it: timestamped with its publish time, which it carries."""
    ts = events.format_ts(Timestamp.of(P0 - age).to_utc_datetime(has_tz=True))
    payload = {"event_id": event_id, "event_name": "view", "event_ts": ts, "user_id": "1", "product_id": "10"}
    payload |= {"session_id": "s1", "price": "1.00"}
    published = Timestamp.of(publish_at).to_utc_datetime(has_tz=True)
    message = PubsubMessage(json.dumps(payload).encode(), {"event_id": event_id}, publish_time=published)
    return TimestampedValue(message, publish_at)


def _copies(publish_at: float) -> list[TimestampedValue]:
    return [_published(name, age, publish_at) for name, age in AGES.items()]


@pytest.mark.parametrize("dedupe", sorted(DEDUPLICATORS))
def test_copies_published_seconds_apart_come_out_once_whatever_the_events_age(dedupe):
    """The watermark at publish time, as on Dataflow: a 2-hour-old or a day-old event's copies
    are as much duplicates as a fresh one's (the horizon runs from arrival, not from event_ts)."""
    horizon = 3600
    stream = TestStream().advance_watermark_to(P0).add_elements(_copies(P0))
    for second in (1, 2, 30):  # publisher retries and redeliveries, seconds apart
        stream = stream.advance_watermark_to(P0 + second).add_elements(_copies(P0 + second))
    if dedupe == "stateful":
        # A copy published more than a horizon after the first delivery is written again:
        # that is what keeps the state bounded (the user_behavior_dedup view removes it).
        stream = stream.advance_watermark_to(P0 + horizon + 60).add_elements(_copies(P0 + horizon + 60))
    _NOW[0] = P0 + 30  # the in-process variant's clock: every id still within its horizon
    p = _streaming_pipeline()
    parsed = p | stream.advance_watermark_to_infinity() | ParseEvents("streaming", event_timestamps=False)
    unique = parsed[EVENTS] | DEDUPLICATORS[dedupe](horizon)
    expected = [(name, P0 - age) for name, age in AGES.items()]  # stamped with event time again
    assert_that(
        unique | beam.Map(lambda e, t=beam.DoFn.TimestampParam: (e["event_id"], t.micros // 1_000_000)),
        equal_to(expected * (2 if dedupe == "stateful" else 1)),
    )
    p.run().wait_until_finish()


def test_in_process_dedupe_keeps_one_set_of_ids_per_applied_transform():
    _NOW[0] = W0
    p = _streaming_pipeline()
    stream = TestStream().add_elements([_tv(_event("a", "view", 5))]).advance_watermark_to_infinity()
    events_ = p | stream
    left = events_ | "Left" >> DEDUPLICATORS["in_process"](3600)
    right = events_ | "Right" >> DEDUPLICATORS["in_process"](3600)
    assert_that(left | "IdsLeft" >> beam.Map(lambda e: e["event_id"]), equal_to(["a"]), label="CheckLeft")
    assert_that(right | "IdsRight" >> beam.Map(lambda e: e["event_id"]), equal_to(["a"]), label="CheckRight")
    p.run().wait_until_finish()


def test_enrichment_uses_the_newest_dimension_snapshot():
    old = DimensionSnapshot("products", 100.0, {"10": {"product_name": "Old name", "category": "A"}})
    new = DimensionSnapshot("products", 200.0, {"10": {"product_name": "New name", "category": "B"}})
    users = DimensionSnapshot("users", 100.0, {"1": {"user_name": "Ada"}})
    p = beam.Pipeline(runner="FnApiRunner")
    rows = (
        p
        | "Events" >> beam.Create([_event("a", "view", 5)])
        | EnrichWithDimensions(
            p | "Products" >> beam.Create([new, old]),
            p | "Users" >> beam.Create([users]),
            source="stream",
            snapshots=True,
        )
    )
    assert_that(
        rows | beam.Map(lambda r: (r["product_name"], r["category"], r["user_name"])),
        equal_to([("New name", "B", "Ada")]),
    )
    p.run().wait_until_finish()
