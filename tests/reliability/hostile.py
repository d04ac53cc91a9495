"""A corpus of hostile payloads with the outcome each one must have.

Every entry is ``(name, payload_bytes, outcome)`` with outcome ``VALID`` (becomes a row)
or ``DEAD`` (becomes exactly one dead letter). Duplicates are made by the tests from
the valid entries, so the expected split in = rows + dead letters + duplicates is
known exactly before a pipeline runs.

Valid payloads carry event times inside the hour :data:`HOUR` (the batch chain keeps
only its window), which is yesterday so the contract's future-skew check passes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from beam_pipelines import events

VALID = "valid"
DEAD = "dead"

HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
TS = events.format_ts(HOUR + timedelta(minutes=7))

BASE = {
    "event_id": "base",
    "event_name": "view",
    "event_ts": TS,
    "user_id": 1,
    "session_id": "s-1",
    "product_id": 10,
    "price": "19.99",
    "quantity": 1,
    "order_id": None,
}

PRODUCTS = [(10, {"product_id": 10, "product_name": "Kettle", "category": "home"})]
USERS = [(1, {"user_id": 1, "user_name": "ada"})]


def _event(event_id: str, /, **changes) -> bytes:
    record = {**BASE, "event_id": event_id, **changes}
    for key, value in list(record.items()):
        if value is _DROP:
            del record[key]
    return json.dumps(record, allow_nan=True).encode()


_DROP = object()


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


CORPUS: list[tuple[str, bytes, str]] = [
    # --- not JSON at all / not a JSON object
    ("empty", b"", DEAD),
    ("whitespace", b"   \n\t", DEAD),
    ("truncated", _event("trunc")[:37], DEAD),
    ("trailing_garbage", _event("garbage") + b"}}", DEAD),
    ("json_array_of_event", b"[" + _event("in-array") + b"]", DEAD),
    ("json_empty_array", b"[]", DEAD),
    ("json_number", b"42", DEAD),
    ("json_string", b'"view"', DEAD),
    ("json_null", b"null", DEAD),
    ("json_true", b"true", DEAD),
    ("invalid_utf8", b'{"event_id": "\xff\xfe", "event_name": "view"}', DEAD),
    ("latin1_bytes", _event("caf\u00e9").replace(b"caf\\u00e9", "café".encode("latin-1")), DEAD),
    ("deep_nesting_array", _deep(30_000), DEAD),
    ("deep_nesting_in_field", _event("deep-field", extra="@").replace(b'"@"', _deep(25_000)), DEAD),
    ("oversized_payload", _event("big", session_id="x" * (events.MAX_PAYLOAD_BYTES + 1)), DEAD),
    ("sql_in_json_key_only", b'{"1; DROP TABLE products; --": 1}', DEAD),
    # --- wrong types / missing fields
    ("all_nulls", json.dumps(dict.fromkeys(BASE)).encode(), DEAD),
    ("event_id_null", _event("x", event_id=None), DEAD),
    ("event_id_object", _event("x", event_id={"a": 1}), DEAD),
    ("event_id_too_long", _event("x" * 129), DEAD),
    ("event_name_unknown", _event("bad-name", event_name="teleport"), DEAD),
    ("event_name_list", _event("bad-name2", event_name=["view"]), DEAD),
    ("user_id_missing", _event("no-user", user_id=_DROP), DEAD),
    ("user_id_bool", _event("bool-user", user_id=True), DEAD),
    ("user_id_negative", _event("neg-user", user_id=-5), DEAD),
    ("user_id_too_big", _event("big-user", user_id=2**70), DEAD),
    ("user_id_list", _event("list-user", user_id=[1]), DEAD),
    ("product_id_float", _event("float-product", product_id=1.5), DEAD),
    ("price_nan", _event("nan", price=float("nan")), DEAD),
    ("price_infinity", _event("inf", price=float("inf")), DEAD),
    ("price_minus_infinity", _event("minf", price=float("-inf")), DEAD),
    ("price_nan_string", _event("nan-str", price="NaN"), DEAD),
    ("price_huge_exponent", _event("exp", price="1e400"), DEAD),
    ("price_negative", _event("neg-price", price=-1), DEAD),
    ("price_bool", _event("bool-price", price=False), DEAD),
    ("price_object", _event("obj-price", price={"amount": 1}), DEAD),
    ("price_words", _event("word-price", price="ten dollars"), DEAD),
    ("quantity_zero", _event("q0", quantity=0), DEAD),
    ("quantity_huge_float", _event("qhuge", quantity=1e308), DEAD),
    ("quantity_string", _event("qstr", quantity="three"), DEAD),
    ("order_without_order_id", _event("order-no-id", event_name="order"), DEAD),
    ("session_id_too_long", _event("long-session", session_id="s" * 129), DEAD),
    # --- timestamps
    ("ts_future", _event("future", event_ts="2999-01-01T00:00:00Z"), DEAD),
    ("ts_ancient", _event("ancient", event_ts="1970-01-01T00:00:00Z"), DEAD),
    ("ts_year_one", _event("year-one", event_ts="0001-01-01T00:00:00Z"), DEAD),
    ("ts_no_offset", _event("naive", event_ts=TS.rstrip("Z")), DEAD),
    ("ts_garbage", _event("ts-garbage", event_ts="yesterday at noon"), DEAD),
    ("ts_epoch_number", _event("ts-epoch", event_ts=1_700_000_000), DEAD),
    ("ts_impossible_date", _event("ts-impossible", event_ts="2026-13-45T25:61:00Z"), DEAD),
    # --- hostile but valid: must be written exactly once, unchanged
    ("unicode_everywhere", _event("ünïcødé-🚀", session_id="セッション-😀"), VALID),
    ("sql_injection_strings", _event("1; DROP TABLE products; --", session_id="' OR '1'='1"), VALID),
    ("html_and_quotes", _event("<script>alert('x')</script>", session_id='"; --'), VALID),
    ("nul_byte_in_string", _event("nul\u0000byte"), VALID),
    ("numeric_strings", _event("numeric-strings", user_id="1", product_id="10", price="7", quantity="2"), VALID),
    ("duplicate_json_keys", b'{"event_id": "first", ' + _event("dup-keys")[1:], VALID),
    ("unknown_extra_fields", _event("extra-fields", extra={"nested": [1, 2, {"a": None}]}, admin=True), VALID),
    ("moderate_nesting", _event("moderate", extra="@").replace(b'"@"', _deep(200)), VALID),
    ("max_length_id", _event("i" * 128), VALID),
    (
        "ts_other_offset",
        _event("offset", event_ts=(HOUR + timedelta(minutes=9)).strftime("%Y-%m-%dT%H:%M:%S+00:00")),
        VALID,
    ),
    ("order_event", _event("o-77:1", event_name="order", order_id="o-77", quantity=3), VALID),
    ("price_zero", _event("free", price=0), VALID),
    ("price_float", _event("float-price", price=19.5), VALID),
]

# Different payloads that share an event_id with a valid entry (a publisher retry
# with a changed field); each must count as a duplicate, not as a second row.
SAME_ID_DIFFERENT_PAYLOAD: list[bytes] = [
    _event("unicode_everywhere-twin", price="1.00").replace(b"unicode_everywhere-twin", "ünïcødé-🚀".encode()),
    _event("free", price=5),
]


def names(outcome: str) -> list[str]:
    return [name for name, _, o in CORPUS if o == outcome]


def payloads(outcome: str | None = None) -> list[bytes]:
    return [p for _, p, o in CORPUS if outcome is None or o == outcome]


def stream_input() -> tuple[list[bytes], dict[str, int]]:
    """The corpus plus exact redeliveries and same-id twins, and the expected split."""
    valid = payloads(VALID)
    redelivered = valid[:5]  # byte-for-byte Pub/Sub redeliveries
    data = payloads() + redelivered + SAME_ID_DIFFERENT_PAYLOAD
    expected = {
        "in": len(data),
        "rows": len(valid),
        "dead": len(payloads(DEAD)),
        "duplicates": len(redelivered) + len(SAME_ID_DIFFERENT_PAYLOAD),
    }
    assert expected["in"] == expected["rows"] + expected["dead"] + expected["duplicates"]
    return data, expected
