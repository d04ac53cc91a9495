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
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines import events, lake
from beam_pipelines.batch_run import counters
from beam_pipelines.transforms.archive import WriteMessageArchive
from beam_pipelines.transforms.dedupe import DeduplicateEvents, DeduplicateEventsStateful
from beam_pipelines.transforms.enrich import EnrichWithDimensions
from beam_pipelines.transforms.job_window import KeepEventsInWindow, ParseEventsInWindow
from beam_pipelines.transforms.lake_io import ReadLakeFiles
from beam_pipelines.transforms.parse import ARCHIVE, DEAD_LETTERS, EVENTS, ParseEvents
from tests.reliability import hostile
from tests.reliability.hostile import DEAD, VALID


def _expected_row_ids() -> list[str]:
    return sorted(events.parse_payload(p)["event_id"] for p in hostile.payloads(VALID))


def test_every_hostile_message_has_its_outcome_and_none_raises():
    assert len(hostile.message_cases()) >= 300
    outcomes = {}
    for name, payload, attributes, _ in hostile.message_cases():
        try:
            events.parse_message(payload, attributes)
            outcomes[name] = VALID
        except events.InvalidEvent as exc:
            assert exc.stage in (events.STAGE_PARSE, events.STAGE_VALIDATE)
            assert exc.reason
            outcomes[name] = DEAD
    assert outcomes == {name: outcome for name, _, _, outcome in hostile.message_cases()}


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
    # Attributes that agree with the payload (as the simulator sets them) on every third
    # message: they must not change any outcome. Contradicting ones are their own cases.
    messages = []
    for i, payload in enumerate(data):
        try:
            event = events.parse_payload(payload)
        except events.InvalidEvent:
            event = None
        attrs = {"event_id": event["event_id"], "event_ts": event["event_ts"]} if event and i % 3 == 0 else {}
        messages.append(PubsubMessage(payload, attrs))
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


def _verdict(element) -> tuple:
    """A row or a dead letter, as comparable data (insert_ts, the wall clock, left out)."""
    if "stage" in element:
        return ("dead", element["stage"], element["error"], element["payload"], element["attributes"])
    return ("row", json.dumps(element, sort_keys=True))


def _expected_verdicts(cases) -> list[tuple]:
    out = []
    for _, payload, attributes, _ in cases:
        try:
            event = events.parse_message(payload, attributes)
        except events.InvalidEvent as exc:
            row = events.dead_letter_row(
                pipeline="p", stage=exc.stage, error=exc.reason, payload=payload, attributes=attributes
            )
            out.append(_verdict(row))
        else:
            out.append(_verdict(event))
    return out


def test_one_verdict_per_message_on_the_stream_and_from_the_lake(tmp_path):
    """Every kind of message: the stream's verdict, then the lake archive the stream wrote,
    read back by the hourly job's reader, gives the same rows and the same dead letters
    (stage, reason, payload, attributes), and nothing is left out of the archive."""
    cases = hostile.message_cases()
    expected = _expected_verdicts(cases)
    assert sum(v[0] == "dead" for v in expected) > 100 and sum(v[0] == "row" for v in expected) > 100
    lake_root = str(tmp_path / "lake")

    # The archive's processing-time trigger needs a runner with a clock: the streaming job's.
    p = beam.Pipeline(runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True))
    messages = p | beam.Create([PubsubMessage(payload, attrs) for _, payload, attrs, _ in cases])
    parsed = messages | "ParseEvents" >> ParseEvents("p", archive=True)
    _ = parsed[ARCHIVE] | "Archive" >> WriteMessageArchive(lake_root, "test-run", flush_seconds=1)
    stream = (parsed[EVENTS], parsed[DEAD_LETTERS]) | "FlattenStream" >> beam.Flatten()
    assert_that(stream | "StreamVerdicts" >> beam.Map(_verdict), equal_to(expected), label="Stream")
    assert "dead_letters_parse_internal" not in _run(p)

    # Every message is in the archive once (the files, not the counters: this runner may
    # return from wait_until_finish before the last bundle's counters are committed).
    archive_files = lake.list_files(lake.join(lake_root, "raw/events/*/*/*.pubsub.jsonl"))
    assert sum(1 for f in archive_files for _ in lake.iter_raw_lines(f)) == len(cases)
    assert {f.rsplit("/", 3)[-3] + "/" + f.rsplit("/", 3)[-2] for f in archive_files} >= {
        lake.partition_folder(hostile.HOUR)
    }
    # Plain backfill files hold one payload per line: every case that fits on one line.
    plain = [pl for _, pl, attrs, _ in cases if not attrs and pl.strip() and b"\n" not in pl and b"\r" not in pl]
    plain_dir = tmp_path / "lake/raw/events" / lake.partition_folder(hostile.HOUR)
    (plain_dir / "backfill.jsonl").write_bytes(b"\n".join(plain) + b"\n")

    start, end = hostile.HOUR, hostile.HOUR + timedelta(hours=1)
    folders = sorted({f.rsplit("/", 1)[0] for f in archive_files})
    q = beam.Pipeline(runner="FnApiRunner")
    lines = q | ReadLakeFiles([lake.join(d, "*.jsonl") for d in folders], binary=True)
    read_back = lines | ParseEventsInWindow(start, end, "p")
    from_lake = (read_back[EVENTS], read_back[DEAD_LETTERS]) | "FlattenLake" >> beam.Flatten()
    plain_expected = _expected_verdicts([(None, pl, None, None) for pl in plain])
    assert_that(from_lake | "LakeVerdicts" >> beam.Map(_verdict), equal_to(expected + plain_expected), label="Lake")
    lake_counters = _run(q)
    assert lake_counters["records_in"] == len(cases) + len(plain)
    assert "dead_letters_window" not in lake_counters and "dead_letters_parse_internal" not in lake_counters


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
