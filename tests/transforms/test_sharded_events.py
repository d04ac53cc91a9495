"""Differential tests: the sharded columnar path gives the per-element path's rows and dead letters.

The per-element path (``ReadLakeFiles`` -> ``ParseEventsInWindow`` -> ``DeduplicateEvents`` ->
``EnrichWithDimensions``) is the reference: the same files go through both, and the
outputs must be equal as multisets (rows without ``ingest_ts``, dead letters without
``insert_ts``). Inputs: the hostile corpus as plain payload files and as archive
envelopes with attributes and publish times, the generated world, and a
property-based fuzz of near-canonical payloads around every edge of the fast path.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipelines import event_archive, event_batch, events
from beam_pipelines.batch_run import counters as counters_of
from beam_pipelines.transforms.dedupe import DeduplicateEvents
from beam_pipelines.transforms.enrich import EnrichWithDimensions
from beam_pipelines.transforms.job_window import ParseEventsInWindow, ParseEventsInWindowFn
from beam_pipelines.transforms.lake_io import ReadLakeFiles
from beam_pipelines.transforms.parse import EVENTS
from beam_pipelines.transforms.sharded import DEAD_LETTERS, ROWS, BlockParser, ShardedStreamRows
from publishers.world import CatalogView, World
from tests.reliability import hostile

START = hostile.HOUR
END = START + timedelta(hours=1)


def _write_lines(path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _run(build, out) -> dict[str, int]:
    p = beam.Pipeline(options=PipelineOptions(runner="FnApiRunner"))
    rows, dead = build(p)
    _ = rows | "FormatRows" >> beam.Map(json.dumps, sort_keys=True) | "WriteRows" >> beam.io.WriteToText(f"{out}/rows")
    _ = dead | "FormatDead" >> beam.Map(json.dumps, sort_keys=True) | "WriteDead" >> beam.io.WriteToText(f"{out}/dead")
    result = p.run()
    result.wait_until_finish()
    return counters_of(result)


def _read(pattern_dir, name: str, drop: str) -> list[str]:
    out = []
    for f in sorted(pattern_dir.glob(f"{name}-*")):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            row.pop(drop)
            out.append(json.dumps(row, sort_keys=True))
    return sorted(out)


def _both_paths(tmp_path, patterns, products, users):
    def element(p):
        dims = [p | f"Create{n}" >> beam.Create(d) for n, d in (("Products", products), ("Users", users))]
        parsed = p | ReadLakeFiles(patterns, binary=True) | ParseEventsInWindow(START, END, "hourly")
        rows = parsed[EVENTS] | DeduplicateEvents() | EnrichWithDimensions(dims[0], dims[1], events.SOURCE_STREAM)
        return rows, parsed[DEAD_LETTERS]

    def sharded(p):
        dims = [p | f"Create{n}" >> beam.Create(d) for n, d in (("Products", products), ("Users", users))]
        # Tiny shards: many shards, so duplicates must find each other across blocks and files.
        out = p | ShardedStreamRows(
            patterns, START, END, "hourly", dims[0], dims[1], events.SOURCE_STREAM, shard_bytes=2048
        )
        return out[ROWS] | "TableRows" >> beam.FlatMap(pa.Table.to_pylist), out[DEAD_LETTERS]

    counts = {}
    for label, build in (("element", element), ("sharded", sharded)):
        counts[label] = _run(build, tmp_path / label)
    rows = {label: _read(tmp_path / label, "rows", "ingest_ts") for label in counts}
    dead = {label: _read(tmp_path / label, "dead", "insert_ts") for label in counts}
    return rows, dead, counts


CONSERVED = ("records_in", "valid_events", "duplicates_removed", "unknown_products", "unknown_users", "enriched_rows")


def _assert_same(rows, dead, counts):
    assert rows["sharded"] == rows["element"]
    assert dead["sharded"] == dead["element"]
    for name in CONSERVED:
        assert counts["sharded"].get(name, 0) == counts["element"].get(name, 0), name
    stages = {k for k in counts["element"] if k.startswith("dead_letters_")}
    for name in stages | {k for k in counts["sharded"] if k.startswith("dead_letters_")}:
        assert counts["sharded"].get(name, 0) == counts["element"].get(name, 0), name


def test_hostile_corpus_plain_files_and_archive_envelopes_give_identical_output(tmp_path):
    data, expected = hostile.stream_input()
    outside = [hostile._event("outside", event_ts=events.format_ts(START - timedelta(minutes=1)))]
    lake = tmp_path / "lake"
    _write_lines(lake / "a.jsonl", data[: len(data) // 2] + outside)
    _write_lines(lake / "b.jsonl", [*data[len(data) // 2 :], b"", b"   ", data[0] + b"\r"])
    publish = [None, datetime.now(UTC), START + timedelta(minutes=10), START - timedelta(hours=2)]
    envelopes = [
        event_archive.encode(payload, attributes, publish[i % len(publish)], f"m{i}").encode()
        for i, (_, payload, attributes, _) in enumerate(hostile.message_cases())
    ]
    _write_lines(lake / f"c{event_archive.SUFFIX}", envelopes)
    _write_lines(lake / f"d{event_archive.SUFFIX}", [b"{not an envelope", envelopes[0]])
    rows, dead, counts = _both_paths(tmp_path, [str(lake / "*")], hostile.PRODUCTS, hostile.USERS)
    _assert_same(rows, dead, counts)
    assert len(rows["element"]) >= expected["rows"]
    assert counts["sharded"]["fast_path_events"] > 0  # the fast path was exercised, not bypassed


def test_generated_world_gives_identical_output(tmp_path):
    catalog = CatalogView.generated(7, 40, 30, START)
    world = World(catalog, 7).window(START, END, 25)
    lines = [json.dumps(e, separators=(",", ":")).encode() for e in world.events]
    lake = tmp_path / "lake"
    _write_lines(lake / "world.jsonl", lines + lines[:10])  # redeliveries
    products = [(p, {"product_id": p, "product_name": f"P{p}", "category": "c"}) for p in catalog.product_ids[:-3]]
    users = [(u, {"user_id": u, "user_name": f"u{u}"}) for u in catalog.user_ids[:-2]]
    rows, dead, counts = _both_paths(tmp_path, [str(lake / "*.jsonl")], products, users)
    _assert_same(rows, dead, counts)
    assert counts["sharded"]["fast_path_events"] == len(world.events) + 10


# ----------------------------------------------------------------------------- fuzz

_ids = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=130),
    st.sampled_from(["", " ", " a", "a ", "x" * 128, "x" * 129, "\u00e9", "a\\u0000", "\x7f"]),
    st.integers(min_value=-(10**130), max_value=10**130),
    st.sampled_from([0, -0, 1.0, 42.0, 1.5, 2.0**53, True, None]),
)
_hour = START.strftime("%Y-%m-%dT%H")
_ts = st.one_of(
    st.builds(
        lambda h, m, s, us: f"{h}:{m:02d}:{s:02d}.{us:06d}Z",
        st.sampled_from(
            [_hour, (START - timedelta(hours=1)).strftime("%Y-%m-%dT%H"), "2026-02-30T10", "1999-12-31T23"]
        ),
        st.integers(0, 61),
        st.integers(0, 61),
        st.integers(0, 999_999),
    ),
    st.sampled_from([hostile.TS, hostile.TS[:-1] + "+00:00", hostile.TS.replace("T", " "), "x", ""]),
)
_price = st.one_of(
    st.sampled_from(["0.00", "19.99", "00.10", "1.5", "999999999.99", "1000000000.00", "-0.00", "1e2", " 1.00"]),
    st.decimals(min_value=0, max_value=10**10, places=2).map(str),
    st.integers(-5, 10**10),
)
_quantity = st.one_of(st.integers(-2, 10_002), st.sampled_from(["3", "1.0", None, 2.0, True]))
_plain_id = st.one_of(st.from_regex(r"[!-~]([ -~]{0,20}[!-~])?", fullmatch=True), st.integers(-(10**6), 10**20))
_valid = st.fixed_dictionaries(
    {
        "event_id": _plain_id,
        "event_name": st.sampled_from(events.EVENT_NAMES),
        "event_ts": st.builds(
            lambda m, s, us: f"{_hour}:{m:02d}:{s:02d}.{us:06d}Z",
            st.integers(0, 59),
            st.integers(0, 59),
            st.integers(0, 999_999),
        ),
        "user_id": _plain_id,
        "session_id": st.one_of(st.none(), st.just(""), _plain_id),
        "product_id": _plain_id,
        "price": st.decimals(min_value=0, max_value=10**9 - 1, places=2).map(str),
        "quantity": st.integers(1, 10_000),
        "order_id": st.one_of(st.none(), st.just(""), _plain_id),
    }
)
# One strategy per field for values at or past the edges of the fast path.
_edges = {
    "event_id": _ids,
    "event_name": st.sampled_from(["purchase", "View", "order", "return"]),
    "event_ts": _ts,
    "user_id": _ids,
    "session_id": _ids,
    "product_id": _ids,
    "price": _price,
    "quantity": _quantity,
    "order_id": _ids,
}


@st.composite
def _record(draw):
    """A valid wire record with 0-2 of its fields replaced by edge values."""
    record = draw(_valid)
    for key in draw(st.lists(st.sampled_from(list(_edges)), max_size=2)):
        record[key] = draw(_edges[key])
    return record


@st.composite
def _payloads(draw):
    record = draw(_record())
    keys = list(_edges)  # the wire order (fixed_dictionaries does not keep it)
    if draw(st.integers(0, 4)) == 0:
        keys = draw(st.permutations(keys))
    if draw(st.integers(0, 9)) == 0:
        keys.remove(draw(st.sampled_from(keys)))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (",", ": "), (" ,", ":")]))
    text = json.dumps({k: record[k] for k in keys}, separators=separators)
    if draw(st.integers(0, 9)) == 0:
        text = text.replace(":", ":" + draw(st.sampled_from(["\t", "  ", "\u00a0"])), 1)
    return text.encode("utf-8", "surrogatepass")


def _element_verdicts(path, lines, now):
    fn = ParseEventsInWindowFn(START, END, "hourly")
    fn.start_bundle()
    fn._now = now
    good, bad = [], []
    for line in lines:
        for out in fn.process((path, line)):
            (bad if isinstance(out, beam.pvalue.TaggedOutput) else good).append(out.value)
    return good, bad


def _without(rows, key):
    return sorted(json.dumps({k: v for k, v in r.items() if k != key}, sort_keys=True) for r in rows)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_payloads(), min_size=1, max_size=20), st.sampled_from([None, 0, 30, -150]))
def test_fuzz_block_verdicts_equal_the_element_path(payloads, publish_offset_min):
    """Plain files and envelopes (with a publish time where drawn): same events, same dead letters."""
    parser = BlockParser(START, END, "hourly")
    parser.start()
    if publish_offset_min is None:
        path, lines = "lake/x.jsonl", payloads
    else:
        published = START + timedelta(minutes=publish_offset_min)
        path = f"lake/x{event_archive.SUFFIX}"
        lines = [event_archive.encode(p, None, published).encode() for p in payloads]
    table, dead = parser.parse(path, lines)
    good, bad = _element_verdicts(path, lines, parser._now)
    assert _without(table.to_pylist(), "") == _without(good, "")
    assert _without(dead, "insert_ts") == _without(bad, "insert_ts")


def test_fast_path_takes_the_canonical_wire_format():
    line = hostile._event("fast-1").replace(b": ", b":").replace(b", ", b",")
    hours = event_batch.accepted_hours(START, END, datetime.now(UTC))
    table, mask = event_batch.fast_events([line, hostile._event("fast-2")], hours)
    assert mask.tolist() == [True, True]
    assert table.to_pylist() == [
        events.parse_payload(line),
        events.parse_payload(hostile._event("fast-2")),
    ]


@pytest.mark.parametrize(
    "changes",
    [{"event_id": " padded"}, {"price": "1.5"}, {"quantity": 10_001}, {"event_name": "order"}, {"user_id": 1.0}],
)
def test_fast_path_leaves_anything_non_canonical_to_the_contract(changes):
    hours = event_batch.accepted_hours(START, END, datetime.now(UTC))
    _, mask = event_batch.fast_events([hostile._event("slow", **changes)], hours)
    assert mask.tolist() == [False]
