"""Conservation under hostile input: in = rows written + dead letters + duplicates, exactly.

The corpus (``hostile.py``) goes through the contract functions, the streaming chain
(ParseEvents -> DeduplicateEventsStateful -> EnrichWithDimensions) and the hourly
job's stream-event chain (ParseEvents -> KeepEventsInWindow -> DeduplicateEvents ->
EnrichWithDimensions), the production transforms in both cases. No payload may
raise, and every payload ends in exactly one of the three buckets.
"""

from __future__ import annotations

import json
from datetime import timedelta

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines import events
from beam_pipelines.batch_run import counters
from beam_pipelines.transforms.dedupe import DeduplicateEvents, DeduplicateEventsStateful
from beam_pipelines.transforms.enrich import EnrichWithDimensions
from beam_pipelines.transforms.parse import DEAD_LETTERS, EVENTS, ParseEvents
from beam_pipelines.transforms.unify import KeepEventsInWindow
from tests.reliability import hostile
from tests.reliability.hostile import DEAD, VALID


def _expected_row_ids() -> list[str]:
    return sorted(events.parse_payload(p)["event_id"] for p in hostile.payloads(VALID))


def test_every_hostile_payload_has_its_outcome_and_none_raises():
    outcomes = {}
    for name, payload, _ in hostile.CORPUS:
        try:
            events.parse_payload(payload)
            outcomes[name] = VALID
        except events.InvalidEvent as exc:
            assert exc.stage in (events.STAGE_PARSE, events.STAGE_VALIDATE)
            assert exc.reason
            outcomes[name] = DEAD
    assert outcomes == {name: outcome for name, _, outcome in hostile.CORPUS}


def test_dead_letter_rows_of_hostile_payloads_are_storable():
    """Every dead letter is valid UTF-8 JSON within the payload/error limits of the table."""
    for name, payload, outcome in hostile.CORPUS:
        if outcome != DEAD:
            continue
        try:
            events.parse_payload(payload)
        except events.InvalidEvent as exc:
            row = events.dead_letter_row(pipeline="streaming", stage=exc.stage, error=exc.reason, payload=payload)
        else:
            pytest.fail(f"{name} is marked DEAD but parsed")
        text = json.dumps(row, ensure_ascii=False)
        text.encode("utf-8")  # raises on lone surrogates
        assert len(row["error"]) <= 2000, name
        assert len(row["payload"]) <= 1_000_000, name


def _run(p: beam.Pipeline) -> dict[str, int]:
    result = p.run()
    result.wait_until_finish()
    return counters(result)


def _dims(p):
    products = p | "CreateProducts" >> beam.Create(hostile.PRODUCTS)
    users = p | "CreateUsers" >> beam.Create(hostile.USERS)
    return products, users


def test_streaming_chain_conserves_the_hostile_corpus():
    data, expected = hostile.stream_input()
    # Hostile attributes too: a garbage event_ts attribute must not change the outcome.
    messages = [
        PubsubMessage(payload, {"event_id": "x", "event_ts": "not-a-time"} if i % 3 == 0 else {})
        for i, payload in enumerate(data)
    ]
    p = beam.Pipeline(runner="FnApiRunner")
    parsed = p | beam.Create(messages) | "ParseEvents" >> ParseEvents("streaming")
    products, users = _dims(p)
    rows = (
        parsed[EVENTS]
        | "DeduplicateEvents" >> DeduplicateEventsStateful(3600)
        | "EnrichWithDimensions" >> EnrichWithDimensions(products, users, events.SOURCE_STREAM)
    )
    assert_that(rows | "RowIds" >> beam.Map(lambda r: r["event_id"]), equal_to(_expected_row_ids()), label="Rows")
    assert_that(
        parsed[DEAD_LETTERS] | "DeadCount" >> beam.combiners.Count.Globally(),
        equal_to([expected["dead"]]),
        label="DeadLetters",
    )
    metrics = _run(p)
    assert metrics["records_in"] == expected["in"]
    assert metrics["duplicates_removed"] == expected["duplicates"]
    assert metrics["valid_events"] == expected["rows"] + expected["duplicates"]
    dead = metrics.get("dead_letters_parse", 0) + metrics.get("dead_letters_validate", 0)
    assert dead == expected["dead"]
    assert metrics["enriched_rows"] == expected["rows"]
    assert expected["in"] == metrics["enriched_rows"] + dead + metrics["duplicates_removed"]


def test_hourly_stream_chain_conserves_the_hostile_corpus_and_keeps_its_window():
    data, expected = hostile.stream_input()
    outside = [hostile._event("outside-window", event_ts=events.format_ts(hostile.HOUR - timedelta(minutes=1)))]
    start = hostile.HOUR
    end = start + timedelta(hours=1)
    p = beam.Pipeline(runner="FnApiRunner")
    parsed = p | beam.Create(data + outside) | "ParseEvents" >> ParseEvents("hourly")
    in_window = parsed[EVENTS] | "KeepEventsInWindow" >> KeepEventsInWindow(start, end, "hourly")
    products, users = _dims(p)
    rows = (
        in_window["events"]
        | "DeduplicateEvents" >> DeduplicateEvents()
        | "EnrichWithDimensions" >> EnrichWithDimensions(products, users, events.SOURCE_STREAM)
    )
    assert_that(rows | "RowIds" >> beam.Map(lambda r: r["event_id"]), equal_to(_expected_row_ids()), label="Rows")
    dead_letters = (parsed[DEAD_LETTERS], in_window["dead_letters"]) | beam.Flatten()
    assert_that(
        dead_letters | "DeadStages" >> beam.Map(lambda r: r["stage"]) | beam.combiners.Count.PerElement(),
        equal_to(
            [
                (events.STAGE_PARSE, sum(1 for n, p, o in hostile.CORPUS if o == DEAD and _stage(p) == "parse")),
                (events.STAGE_VALIDATE, sum(1 for n, p, o in hostile.CORPUS if o == DEAD and _stage(p) == "validate")),
                ("window", 1),
            ]
        ),
        label="DeadLetters",
    )
    metrics = _run(p)
    total_in = expected["in"] + len(outside)
    assert metrics["records_in"] == total_in
    assert metrics["duplicates_removed"] == expected["duplicates"]
    dead = metrics["dead_letters_parse"] + metrics["dead_letters_validate"] + metrics["dead_letters_window"]
    assert dead == expected["dead"] + len(outside)
    assert total_in == metrics["enriched_rows"] + dead + metrics["duplicates_removed"]


def _stage(payload: bytes) -> str | None:
    try:
        events.parse_payload(payload)
    except events.InvalidEvent as exc:
        return exc.stage
    return None


def test_a_duplicate_keeps_the_same_winner_whatever_the_arrival_order():
    """Same event_id, different payloads: the batch winner does not depend on input order."""
    twins = [hostile._event("twin", price="1.00"), hostile._event("twin", price="2.00")]
    for order in (twins, list(reversed(twins))):
        p = beam.Pipeline(runner="FnApiRunner")
        parsed = p | beam.Create(order) | ParseEvents("hourly")
        prices = parsed[EVENTS] | DeduplicateEvents() | beam.Map(lambda e: e["price"])
        assert_that(prices, equal_to(["1.00"]))
        assert _run(p)["duplicates_removed"] == 1


def test_lone_surrogate_in_an_id_is_a_dead_letter():
    payload = hostile._event("placeholder").replace(b'"placeholder"', b'"\\ud800"')
    with pytest.raises(events.InvalidEvent, match="lone surrogate") as exc:
        events.parse_payload(payload)
    assert exc.value.stage == events.STAGE_VALIDATE
