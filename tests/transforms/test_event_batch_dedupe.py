"""``event_batch.dedupe`` over columns picks the winner ``dedupe._winner_key`` picks, row for row.

The columnar dedupe takes shortcuts (byte-identical copies are one candidate, only the
earliest instant of an id competes) and calls the tie rule only for the rest; this test
draws tables with few ids and few instants, so repeated ids, identical copies and
different events at one instant are common, and compares with the rule applied to
every delivery.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipelines import event_batch, events
from beam_pipelines.transforms.dedupe import _winner_key

_event = st.fixed_dictionaries(
    {
        "event_id": st.sampled_from(["a", "b", "c", "d"]),
        "event_name": st.sampled_from(events.EVENT_NAMES),
        "event_ts": st.sampled_from(["2026-01-01T10:00:00.000000Z", "2026-01-01T10:00:01.000000Z"]),
        "user_id": st.sampled_from(["1", "2"]),
        "session_id": st.sampled_from([None, "s", "t"]),
        "product_id": st.sampled_from(["p", "q"]),
        "price": st.sampled_from(["1.00", "2.50"]),
        "quantity": st.integers(1, 3),
        "order_id": st.sampled_from([None, "o-1"]),
    }
).map(lambda e: {**e, "event_time": events.parse_ts(e["event_ts"]).timestamp()})


def _reference(rows: list[dict]) -> tuple[list[str], int]:
    best: dict[str, dict] = {}
    for event in rows:
        current = best.get(event["event_id"])
        if current is None or _winner_key(event) < _winner_key(current):
            best[event["event_id"]] = event
    return sorted(json.dumps(e, sort_keys=True) for e in best.values()), len(rows) - len(best)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(_event, max_size=12).flatmap(lambda rows: st.permutations(rows + rows[: len(rows) // 3])))
def test_columnar_dedupe_keeps_the_winner_key_minimum(rows):
    rows = [{name: row[name] for name in events.EVENT_FIELDS} for row in rows]
    winners, removed = event_batch.dedupe(event_batch.events_table(rows), _winner_key)
    assert (sorted(json.dumps(e, sort_keys=True) for e in winners.to_pylist()), removed) == _reference(rows)
    assert winners.schema == event_batch.EVENT_SCHEMA
