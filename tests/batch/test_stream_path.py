"""The hourly job's stream-event path: ParseEventsInWindow and the batch dedupe's shuffle form."""

import json
import re
from datetime import timedelta

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines import events
from beam_pipelines.batch_run import counters
from beam_pipelines.transforms.dedupe import DeduplicateEvents
from beam_pipelines.transforms.job_window import KeepEventsInWindow, ParseEventsInWindow
from beam_pipelines.transforms.parse import DEAD_LETTERS, EVENTS, ParseEvents
from tests.reliability import hostile

START = hostile.HOUR
END = START + timedelta(hours=1)
OUTSIDE = [
    hostile._event("before-window", event_ts=events.format_ts(START - timedelta(microseconds=1))),
    hostile._event("at-window-end", event_ts=events.format_ts(END)),
]
AT_START = hostile._event("at-window-start", event_ts=events.format_ts(START))


def _dead_letter_fields(row):
    # insert_ts is the wall clock; everything else must match exactly.
    return tuple(row[k] for k in ("stage", "error", "payload", "event_ts", "pipeline", "attributes"))


def _run(build, data):
    p = beam.Pipeline(runner="FnApiRunner")
    result = build(p | beam.Create(data, reshuffle=False))
    return p, result


def test_parse_events_in_window_equals_parse_then_window_filter():
    """Same events, timestamps, dead letters and counters as the two-step path it replaces."""
    data, _ = hostile.stream_input()
    data = data + OUTSIDE + [AT_START]

    def two_steps(lines):
        parsed = lines | "ParseEvents" >> ParseEvents("hourly")
        kept = parsed[EVENTS] | "KeepEventsInWindow" >> KeepEventsInWindow(START, END, "hourly")
        return kept["events"], (parsed[DEAD_LETTERS], kept[DEAD_LETTERS]) | "Flatten" >> beam.Flatten()

    def fused(lines):
        # ReadLakeFiles yields (path, line): the fused step takes those directly.
        out = (
            lines
            | "AddPaths" >> beam.Map(lambda line: ("raw/events/part-0.jsonl", line))
            | "ParseEventsInWindow" >> ParseEventsInWindow(START, END, "hourly")
        )
        return out[EVENTS], out[DEAD_LETTERS]

    expected_events = []
    expected_dead = []
    for payload in data:
        try:
            event = events.parse_payload(payload)
        except events.InvalidEvent as exc:
            expected_dead.append((exc.stage, exc.reason, payload.decode("utf-8", "replace"), None, "hourly", None))
            continue
        if START.timestamp() <= event["event_time"] < END.timestamp():
            expected_events.append(event)
        else:
            kept = {k: v for k, v in event.items() if k != "event_time"}
            window = f"[{events.format_ts(START)}, {events.format_ts(END)})"
            error = f"event_ts {event['event_ts']} is outside the job window {window}"
            expected_dead.append(("window", error, json.dumps(kept, sort_keys=True), event["event_ts"], "hourly", None))
    assert len(expected_dead) > len(OUTSIDE) and any(e["event_id"] == "at-window-start" for e in expected_events)

    results = {}
    for name, build in (("two_steps", two_steps), ("fused", fused)):
        p, (evs, dead) = _run(build, data)
        stamped = evs | "Stamp" >> beam.Map(lambda e, ts=beam.DoFn.TimestampParam: (e["event_id"], float(ts)))
        assert_that(evs, equal_to(expected_events), label="Events")
        assert_that(stamped, equal_to([(e["event_id"], e["event_time"]) for e in expected_events]), label="Timestamps")
        assert_that(dead | "Fields" >> beam.Map(_dead_letter_fields), equal_to(expected_dead), label="DeadLetters")
        results[name] = counters(p.run())
    assert results["fused"] == results["two_steps"]
    assert results["fused"]["records_in"] == len(data)
    assert results["fused"]["dead_letters_window"] == len(OUTSIDE)
    assert results["fused"]["valid_events"] == len(expected_events) + len(OUTSIDE)


def test_deduplicate_events_keeps_fields_beyond_the_contract_and_breaks_ties_by_canonical_json():
    """Events with the contract's fields travel as tuples; any other dict travels as it is."""
    base = events.parse_payload(hostile._event("dup-1"))
    cheaper = base | {"price": "1.00"}  # same event time: the canonical JSON decides ("1.00" < base price)
    assert json.dumps(cheaper, sort_keys=True) < json.dumps(base, sort_keys=True)
    extended = base | {"event_id": "ext-1", "note": "kept"}
    p = beam.Pipeline(runner="FnApiRunner")
    out = p | beam.Create([base, extended, cheaper, extended, base]) | DeduplicateEvents()
    assert_that(out, equal_to([cheaper, extended]))
    assert counters(p.run())["duplicates_removed"] == 3


def test_archive_envelopes_round_trip_exact_bytes_and_corrupt_lines_become_dead_letters(tmp_path):
    """The lake archive keeps a payload's exact bytes (invalid UTF-8 included); a line of an
    archive file that is not an envelope is a parse dead letter that keeps the line."""
    from beam_pipelines import event_archive
    from beam_pipelines.transforms.lake_io import ReadLakeFiles

    good = hostile._event("archived-ok")
    invalid = b'{"event_id": "\xff"}'
    published = START + timedelta(minutes=5)
    for payload in (good, invalid, b"", b"line\nbreak"):
        line = event_archive.encode(payload, {"event_id": "x"}, published, "m-1")
        assert "\n" not in line
        assert event_archive.decode(line.encode()) == (payload, {"event_id": "x"}, published)
    folder = tmp_path / "raw/events/dt=x/hour=y"
    folder.mkdir(parents=True)
    corrupt = [b"not json", b'{"data": "a", "data_base64": "YQ=="}', b'{"data_base64": "***"}', b'{"attributes": []}']
    lines = [
        event_archive.encode(good, None, published).encode(),
        event_archive.encode(invalid, None, published).encode(),
    ]
    (folder / f"stream_run_000000-000{event_archive.SUFFIX}").write_bytes(b"\n".join(lines + corrupt) + b"\n")

    p = beam.Pipeline(runner="FnApiRunner")
    out = p | ReadLakeFiles([str(folder / "*.jsonl")], binary=True) | ParseEventsInWindow(START, END, "hourly")
    assert_that(out[EVENTS] | beam.Map(lambda e: e["event_id"]), equal_to(["archived-ok"]), label="Events")
    assert_that(
        out[DEAD_LETTERS] | beam.Map(lambda r: (r["stage"], re.split(r": | \(/", r["error"])[0], r["payload"])),
        equal_to(
            [("parse", "payload is not valid UTF-8", invalid.decode("utf-8", "replace"))]
            + [("parse", "archive line is not JSON", corrupt[0].decode())]
            + [
                ("parse", "archive line is not a message envelope (needs exactly one of data, data_base64)", c.decode())
                for c in (corrupt[1], corrupt[3])
            ]
            + [("parse", "archive envelope is malformed", corrupt[2].decode())]
        ),
        label="DeadLetters",
    )
    p.run().wait_until_finish()
