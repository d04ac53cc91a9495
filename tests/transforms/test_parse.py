import json

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines.batch_run import counters as counters_of
from beam_pipelines.transforms.parse import DEAD_LETTERS, EVENTS, ParseEvents, ValidateRecords
from tests.transforms.samples import SAMPLE_ORDER, SAMPLE_VIEW, event, message, payload

BAD_JSON = b'{"event_id": "x", '
NOT_UTF8 = b"\xff\xfe\x00"
UNKNOWN_NAME = dict(SAMPLE_VIEW, event_id="bad-1", event_name="purchase")
MISSING_ORDER_ID = dict(SAMPLE_ORDER, event_id="bad-2", order_id=None)


def _stage_reason(row):
    return (row["stage"], row["pipeline"], row["payload"])


def test_parse_events_splits_valid_and_dead_letters():
    bad_attrs = {"event_id": "bad-1", "event_ts": "not a time"}
    inputs = [
        message(SAMPLE_VIEW),
        payload(SAMPLE_ORDER),  # bare bytes
        json.dumps(SAMPLE_VIEW | {"event_id": "e-2"}),  # str
        PubsubMessage(BAD_JSON, {"event_id": "x", "event_ts": SAMPLE_VIEW["event_ts"]}),
        NOT_UTF8,
        PubsubMessage(payload(UNKNOWN_NAME), bad_attrs),
        payload(MISSING_ORDER_ID),
        12345,  # not a message at all
    ]
    p = test_pipeline.TestPipeline(runner="FnApiRunner")
    result = p | beam.Create(inputs, reshuffle=False) | "ParseEvents" >> ParseEvents("streaming")
    expected_events = [event(SAMPLE_VIEW), event(SAMPLE_ORDER), event(SAMPLE_VIEW | {"event_id": "e-2"})]
    assert_that(result[EVENTS], equal_to(expected_events), label="CheckEvents")
    assert_that(
        result[DEAD_LETTERS] | beam.Map(_stage_reason),
        equal_to(
            [
                ("parse", "streaming", BAD_JSON.decode()),
                ("parse", "streaming", NOT_UTF8.decode("utf-8", errors="replace")),
                ("validate", "streaming", payload(UNKNOWN_NAME).decode()),
                ("validate", "streaming", payload(MISSING_ORDER_ID).decode()),
                ("parse", "streaming", "12345"),
            ]
        ),
        label="CheckDeadLetters",
    )
    # Attributes are kept as JSON, a malformed event_ts attribute is not copied.
    assert_that(
        result[DEAD_LETTERS]
        | beam.Filter(lambda r: r["payload"] == payload(UNKNOWN_NAME).decode())
        | beam.Map(lambda r: (json.loads(r["attributes"]), r["event_ts"], "event_name" in r["error"])),
        equal_to([(bad_attrs, None, True)]),
        label="CheckAttributes",
    )
    counters = counters_of(p.run())
    assert counters["records_in"] == 8
    assert counters["valid_events"] == 3
    assert counters["dead_letters_parse"] == 3
    assert counters["dead_letters_validate"] == 2


def test_parse_events_timestamps_with_event_ts():
    p = test_pipeline.TestPipeline(runner="FnApiRunner")
    result = p | beam.Create([message(SAMPLE_VIEW)]) | ParseEvents("streaming")
    stamps = result[EVENTS] | beam.Map(lambda e, ts=beam.DoFn.TimestampParam: float(ts))
    assert_that(stamps, equal_to([event(SAMPLE_VIEW)["event_time"]]))
    p.run().wait_until_finish()


def test_validate_records_dead_letters_keep_record_as_json():
    bad = {"event_id": "x", "event_name": "order", "event_ts": "2026-11-21T10:00:00Z", "price": "1"}
    p = test_pipeline.TestPipeline(runner="FnApiRunner")
    result = p | beam.Create([SAMPLE_ORDER, bad, "not a dict"]) | "ValidateRecords" >> ValidateRecords("hourly")
    assert_that(result[EVENTS], equal_to([event(SAMPLE_ORDER)]), label="CheckEvents")
    assert_that(
        result[DEAD_LETTERS] | beam.Map(lambda r: (r["stage"], r["pipeline"], r["payload"])),
        equal_to(
            [
                ("validate", "hourly", json.dumps(bad, sort_keys=True)),
                ("validate", "hourly", "not a dict"),
            ]
        ),
        label="CheckDeadLetters",
    )
    counters = counters_of(p.run())
    assert counters["records_in"] == 3
    assert counters["valid_events"] == 1
    assert counters["dead_letters_validate"] == 2


def test_pipeline_name_is_required():
    with pytest.raises(ValueError, match="pipeline"):
        ParseEvents("")
