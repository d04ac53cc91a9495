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
from typing import Any

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

PRODUCTS = [("10", {"product_id": "10", "product_name": "Kettle", "category": "home"})]
USERS = [("1", {"user_id": "1", "user_name": "ada"})]


def _event(event_id: str, /, **changes) -> bytes:
    record = {**BASE, "event_id": event_id, **changes}
    for key, value in list(record.items()):
        if value is _DROP:
            del record[key]
    return json.dumps(record, allow_nan=True).encode()


_DROP = object()


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


_HAND_MADE: list[tuple[str, bytes, str]] = [
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
    ("user_id_negative_is_text", _event("neg-user", user_id=-5), VALID),
    ("user_id_beyond_int64_is_text", _event("big-user", user_id=2**70), VALID),
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
    ("nul_byte_in_id", _event("nul\u0000byte"), DEAD),
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


# --- one field at a time: (label, value, outcome); _DROP removes the field.
_FIELD_VARIANTS: dict[str, list[tuple[str, Any, str]]] = {
    "event_id": [
        ("int", 12345, VALID),
        ("int_huge", 2**70, VALID),
        ("padded", "  padded-id  ", VALID),
        ("inner_space", "a b c", VALID),
        ("slashes", "a/b\\c", VALID),
        ("uuid", "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f", VALID),
        ("zero_width_space", "zw\u200bid", VALID),
        ("rtl_override", "rtl\u202eid", VALID),
        ("combining_marks", "e\u0301\u0301", VALID),
        ("cjk", "\u6ce8\u6587-1", VALID),
        ("emoji_zwj", "\U0001f468\u200d\U0001f469", VALID),
        ("max_multibyte", "\u00e9" * 128, VALID),
        ("percent_encoded", "%00%0a", VALID),
        ("backslash_u_text", "\\u0000", VALID),
        ("empty", "", DEAD),
        ("spaces", "   ", DEAD),
        ("tab_only", "\t", DEAD),
        ("nbsp_only", "\u00a0", DEAD),
        ("ideographic_space_only", "\u3000", DEAD),
        ("newline_inside", "a\nb", DEAD),
        ("cr_inside", "a\rb", DEAD),
        ("tab_inside", "a\tb", DEAD),
        ("bell", "a\u0007", DEAD),
        ("escape", "\u001b[31mred", DEAD),
        ("del", "a\u007f", DEAD),
        ("c1_nel_inside", "a\u0085b", DEAD),
        ("c1_csi", "a\u009bb", DEAD),
        ("too_long_multibyte", "\u00e9" * 129, DEAD),
        ("max_length_after_trim", " " + "j" * 128 + " ", VALID),
        ("bool", True, DEAD),
        ("float", 1.5, DEAD),
        ("float_integral_is_its_integer_text", 2.0, VALID),
        ("list", ["a"], DEAD),
        ("missing", _DROP, DEAD),
    ],
    "event_name": [
        ("wishlist", "wishlist", VALID),
        ("add_to_cart", "add_to_cart", VALID),
        ("capitalised", "View", DEAD),
        ("padded", " view", DEAD),
        ("purchase", "purchase", DEAD),
        ("empty", "", DEAD),
        ("null", None, DEAD),
        ("number", 1, DEAD),
        ("nul_suffix", "view\u0000", DEAD),
        ("fullwidth", "\uff56iew", DEAD),
        ("missing", _DROP, DEAD),
    ],
    "event_ts": [
        ("z_no_fraction", (HOUR + timedelta(minutes=8)).strftime("%Y-%m-%dT%H:%M:%SZ"), VALID),
        ("millis", (HOUR + timedelta(minutes=8)).strftime("%Y-%m-%dT%H:%M:%S.123Z"), VALID),
        ("nanos", (HOUR + timedelta(minutes=8)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z"), VALID),
        (
            "plus_five_thirty",
            (HOUR + timedelta(minutes=8, hours=5, seconds=1800)).strftime("%Y-%m-%dT%H:%M:%S+05:30"),
            VALID,
        ),
        ("minus_eight", (HOUR + timedelta(minutes=8) - timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S-08:00"), VALID),
        ("utc_suffix", (HOUR + timedelta(minutes=8)).strftime("%Y-%m-%dT%H:%M:%S UTC"), VALID),
        ("space_separator", (HOUR + timedelta(minutes=8)).strftime("%Y-%m-%d %H:%M:%S+00:00"), VALID),
        ("padded", " " + TS + " ", VALID),
        ("date_only", HOUR.strftime("%Y-%m-%d"), DEAD),
        ("naive_space", HOUR.strftime("%Y-%m-%d %H:%M:%S"), DEAD),
        ("epoch_string", "1700000000", DEAD),
        ("epoch_millis_number", 1_700_000_000_000, DEAD),
        ("empty", "", DEAD),
        ("null", None, DEAD),
        ("missing", _DROP, DEAD),
        ("year_0001_plus_offset", "0001-01-01T00:00:00+01:00", DEAD),
        ("year_9999_minus_offset", "9999-12-31T23:59:59-01:00", DEAD),
        ("year_9999_z", "9999-12-31T23:59:59Z", DEAD),
        ("before_2000", "1999-12-31T23:59:59Z", DEAD),
        ("feb_30", "2026-02-30T00:00:00Z", DEAD),
        ("leap_second", "2016-12-31T23:59:60Z", DEAD),
        ("hour_24", "2026-11-22T24:00:00Z", DEAD),
        ("offset_too_big", "2026-11-22T10:00:00+25:00", DEAD),
        ("two_days_ahead", events.format_ts(datetime.now(UTC) + timedelta(days=2)), DEAD),
        ("rfc2822", "Sun, 22 Nov 2026 10:00:00 GMT", DEAD),
        ("list", [TS], DEAD),
        ("object", {"ts": TS}, DEAD),
        ("arabic_digits", "\u0662\u0660\u0662\u0666-11-22T10:00:00Z", DEAD),
    ],
    # Ids are text, whatever the source system uses; integers are stored as decimal text.
    "user_id": [
        ("string_digits", "42", VALID),
        ("padded_digits", " 42 ", VALID),
        ("leading_zeros", "007", VALID),
        ("int64_max", 2**63 - 1, VALID),
        ("beyond_int64", 2**70, VALID),
        ("float_integral", 42.0, VALID),
        ("zero", 0, VALID),
        ("negative", -1, VALID),
        ("hex_string", "57b2c0de9f", VALID),
        ("uuid", "0b0e6a52-6b7b-4b8e-9a3f-2d0c6f1d9e11", VALID),
        ("email_like", "ada@example.com", VALID),
        ("unicode_letters", "K\u00e4the-\u4e2d", VALID),
        ("superscript_two", "\u00b2", VALID),
        ("max_length", "u" * events.MAX_ID_LENGTH, VALID),
        ("over_max_length", "u" * (events.MAX_ID_LENGTH + 1), DEAD),
        ("decimal_float", 1.5, DEAD),
        ("float_beyond_2_53", 2.0**60, DEAD),
        ("infinity_float", float("inf"), DEAD),
        ("nan_float", float("nan"), DEAD),
        ("empty", "", DEAD),
        ("blank", "  \t ", DEAD),
        ("null", None, DEAD),
        ("missing", _DROP, DEAD),
        ("bool", False, DEAD),
        ("thousands_digits", "9" * 5000, DEAD),
        ("nul_inside", "42\x00", DEAD),
        ("newline_inside", "4\n2", DEAD),
        ("c1_control", "4\x852", DEAD),
        ("nel_around_is_trimmed", "\x8542\x85", VALID),
        ("lone_surrogate", "\ud800", DEAD),
        ("list", [1], DEAD),
        ("object", {"id": 1}, DEAD),
    ],
    "product_id": [
        ("string_digits", "10", VALID),
        ("sku", "SKU-10/blue", VALID),
        ("zero", 0, VALID),
        ("negative_string", "-10", VALID),
        ("superscript_three", "\u00b3", VALID),
        ("decimal_float", 10.5, DEAD),
        ("blank", " ", DEAD),
        ("tab_inside", "10\t1", DEAD),
        ("missing", _DROP, DEAD),
        ("object", {"id": 10}, DEAD),
    ],
    "price": [
        ("zero_int", 0, VALID),
        ("zero_string", "0", VALID),
        ("minus_zero_string", "-0", VALID),
        ("minus_zero_float", -0.0, VALID),
        ("minus_zero_cents", "-0.00", VALID),
        ("three_decimals_round_up", "19.999", VALID),
        ("half_even_down", "0.125", VALID),
        ("exponent", "1e2", VALID),
        ("leading_dot", ".5", VALID),
        ("trailing_dot", "5.", VALID),
        ("plus_sign", "+5", VALID),
        ("max", "999999999.99", VALID),
        ("rounds_to_max", "999999999.994", VALID),
        ("tiny_exponent", "1e-400", VALID),
        ("padded", " 7.5 ", VALID),
        ("float_binary", 0.1, VALID),
        ("rounds_to_1e9_half_even", "999999999.995", DEAD),
        ("rounds_to_1e9", "999999999.999", DEAD),
        ("exactly_1e9", 1e9, DEAD),
        ("negative_cent", "-0.01", DEAD),
        ("negative_tiny", "-0.001", DEAD),
        ("nan_string", "NaN", DEAD),
        ("infinity_string", "Infinity", DEAD),
        ("snan_string", "sNaN", DEAD),
        ("underscores", "1_000", DEAD),
        ("arabic_indic", "\u0665", DEAD),
        ("currency", "$5", DEAD),
        ("comma_decimal", "5,00", DEAD),
        ("empty", "", DEAD),
        ("spaces", "  ", DEAD),
        ("missing", _DROP, DEAD),
        ("huge_exponent_string", "1e99999", DEAD),
        ("list", [5], DEAD),
    ],
    "quantity": [
        ("missing_defaults_to_one", _DROP, VALID),
        ("null_defaults_to_one", None, VALID),
        ("string", "2", VALID),
        ("max", 10_000, VALID),
        ("float_integral", 3.0, VALID),
        ("zero", 0, DEAD),
        ("negative", -1, DEAD),
        ("over_max", 10_001, DEAD),
        ("float", 1.5, DEAD),
        ("superscript", "\u00b9", DEAD),
        ("bool", True, DEAD),
    ],
    "session_id": [
        ("missing", _DROP, VALID),
        ("null", None, VALID),
        ("empty", "", VALID),
        ("blank", "   ", VALID),
        ("int", 77, VALID),
        ("padded", " s-2 ", VALID),
        ("nul_inside", "s\u0000x", DEAD),
        ("newline_inside", "s\nx", DEAD),
        ("too_long", "s" * 129, DEAD),
        ("list", ["s"], DEAD),
        ("object", {"s": 1}, DEAD),
    ],
}

# Order and return events: order_id rules (required there, dropped elsewhere).
_ORDER_ID_VARIANTS: list[tuple[str, Any, str]] = [
    ("string", "o-1", VALID),
    ("int", 981, VALID),
    ("hex", "57b2e4c1a9f0", VALID),
    ("padded", " o-2 ", VALID),
    ("missing", _DROP, DEAD),
    ("null", None, DEAD),
    ("empty", "", DEAD),
    ("blank", "  ", DEAD),
    ("nul_inside", "o\u0000", DEAD),
    ("too_long", "o" * 129, DEAD),
    ("bool", True, DEAD),
]


def _padded(event_id: str, total_bytes: int, unit: bytes) -> bytes:
    """A valid event padded with ``unit`` in an extra field to exactly ``total_bytes`` (or one more)."""
    empty = _event(event_id, pad="")
    room = total_bytes - len(empty)
    pad = unit * (room // len(unit)) + b"x" * (room % len(unit))
    out = empty.replace(b'"pad": ""', b'"pad": "' + pad + b'"')
    assert len(out) == total_bytes, (len(out), total_bytes)
    return out


# Whole payloads built byte by byte.
_BYTE_LEVEL: list[tuple[str, bytes, str]] = [
    ("utf8_bom", b"\xef\xbb\xbf" + _event("bom"), DEAD),
    ("utf16_le", _event("utf16").decode().encode("utf-16-le"), DEAD),
    ("utf16_with_bom", _event("utf16bom").decode().encode("utf-16"), DEAD),
    ("overlong_slash", _event("overlong").replace(b"overlong", b"over\xc0\xaflong"), DEAD),
    ("utf8_encoded_surrogate", _event("surr").replace(b"surr", b"s\xed\xa0\x80r"), DEAD),
    ("truncated_multibyte", _event("trunc-mb").replace(b"trunc-mb", b"trunc\xe2\x82"), DEAD),
    ("invalid_byte_only_in_unused_field", _event("unused", note="@").replace(b'"@"', b'"\xff"'), DEAD),
    ("nul_byte_outside_strings", _event("nul-outside") + b"\x00", DEAD),
    ("pretty_printed", json.dumps(json.loads(_event("pretty")), indent=2).encode(), VALID),
    ("crlf_pretty", json.dumps(json.loads(_event("crlf")), indent=1).replace("\n", "\r\n").encode(), VALID),
    ("surrounding_whitespace", b" \t" + _event("ws") + b" \r\n", VALID),
    ("ascii_escapes_for_unicode", json.dumps(json.loads(_event("esc\u00e9")), ensure_ascii=True).encode(), VALID),
    ("raw_utf8_4_byte", _event("raw-\U0001f680"), VALID),
    ("exactly_max_bytes", _padded("max-bytes", events.MAX_PAYLOAD_BYTES, b"x"), VALID),
    ("one_byte_over_max", _padded("over-bytes", events.MAX_PAYLOAD_BYTES + 1, b"x"), DEAD),
    # Fewer characters than the limit, more bytes: the limit is in bytes on every path.
    ("max_chars_but_more_bytes", _padded("mb-bytes", events.MAX_PAYLOAD_BYTES + 2, "\u00e9".encode()), DEAD),
    ("max_bytes_multibyte", _padded("mb-fit", events.MAX_PAYLOAD_BYTES, "\u00e9".encode()), VALID),
    ("huge_int_literal", _event("hugeint", extra="@").replace(b'"@"', b"9" * 5000), DEAD),
    ("nan_literal_in_extra", _event("nanlit", extra=float("nan")), VALID),
    ("single_quotes", _event("sq").replace(b'"', b"'"), DEAD),
    ("trailing_comma", _event("tc")[:-1] + b",}", DEAD),
    ("comment", b"// c\n" + _event("comment"), DEAD),
    ("two_objects_one_line", _event("two-a") + _event("two-b"), DEAD),
    ("two_objects_two_lines", _event("lines-a") + b"\n" + _event("lines-b"), DEAD),
]


def _generated() -> list[tuple[str, bytes, str]]:
    out = []
    for field, variants in _FIELD_VARIANTS.items():
        for label, value, outcome in variants:
            event_id = f"{field}-{label}" if field != "event_id" else value
            changes = {field: value} if field != "event_id" else {}
            out.append((f"{field}.{label}", _event(event_id, **changes), outcome))
    for event_name in ("order", "return"):
        for label, value, outcome in _ORDER_ID_VARIANTS:
            out.append(
                (
                    f"{event_name}.order_id.{label}",
                    _event(f"{event_name}-{label}", event_name=event_name, order_id=value),
                    outcome,
                )
            )
    out.append(("view_with_order_id_dropped", _event("view-order-id", order_id="o-9"), VALID))
    out.append(("view_with_bad_order_id_ignored", _event("view-bad-order-id", order_id="o\u0000"), DEAD))
    return out


CORPUS: list[tuple[str, bytes, str]] = _HAND_MADE + _BYTE_LEVEL + _generated()


# --- attributes: (label, attributes given the payload's event_id, outcome). The payload
# is authoritative; absent attributes are fine, present ones must agree with it.
_ATTRIBUTE_VARIANTS: list[tuple[str, Any, str]] = [
    ("none", lambda eid: None, VALID),
    ("empty_map", lambda eid: {}, VALID),
    ("both_agree", lambda eid: {"event_id": eid, "event_ts": TS}, VALID),
    ("ts_other_spelling", lambda eid: {"event_ts": TS.replace(".000000Z", "+00:00")}, VALID),
    (
        "ts_other_offset",
        lambda eid: {"event_ts": (HOUR + timedelta(minutes=7, hours=1)).strftime("%Y-%m-%dT%H:%M:%S+01:00")},
        VALID,
    ),
    ("id_padded", lambda eid: {"event_id": f" {eid} "}, VALID),
    ("unrelated_attributes", lambda eid: {"source": "app", "x": "", "event_time": "garbage"}, VALID),
    ("ts_empty", lambda eid: {"event_ts": ""}, DEAD),
    ("ts_blank", lambda eid: {"event_ts": "   "}, DEAD),
    ("ts_not_a_time", lambda eid: {"event_ts": "not-a-time"}, DEAD),
    ("ts_epoch_millis", lambda eid: {"event_ts": "1700000000000"}, DEAD),
    ("ts_one_second_later", lambda eid: {"event_ts": events.format_ts(HOUR + timedelta(minutes=7, seconds=1))}, DEAD),
    (
        "ts_one_microsecond_later",
        lambda eid: {"event_ts": events.format_ts(HOUR + timedelta(minutes=7, microseconds=1))},
        DEAD,
    ),
    ("ts_naive", lambda eid: {"event_ts": TS.rstrip("Z")}, DEAD),
    ("ts_date_only", lambda eid: {"event_ts": TS[:10]}, DEAD),
    ("ts_year_overflow", lambda eid: {"event_ts": "0001-01-01T00:00:00+01:00"}, DEAD),
    ("ts_nul", lambda eid: {"event_ts": TS + "\u0000"}, DEAD),
    ("id_empty", lambda eid: {"event_id": ""}, DEAD),
    ("id_other", lambda eid: {"event_id": "someone-else"}, DEAD),
    ("id_case_differs", lambda eid: {"event_id": eid.upper()}, DEAD),
    ("both_wrong", lambda eid: {"event_id": "x", "event_ts": "not-a-time"}, DEAD),
    ("id_agrees_ts_wrong", lambda eid: {"event_id": eid, "event_ts": "2026-01-01T00:00:00Z"}, DEAD),
]

ATTRIBUTE_CASES: list[tuple[str, bytes, dict[str, str] | None, str]] = []
for _kind, _changes in (("view", {}), ("order", {"event_name": "order", "order_id": "o-attr"})):
    for _label, _attrs, _outcome in _ATTRIBUTE_VARIANTS:
        _eid = f"attr-{_kind}-{_label}"
        ATTRIBUTE_CASES.append((f"attributes.{_kind}.{_label}", _event(_eid, **_changes), _attrs(_eid), _outcome))
# A payload that fails on its own keeps its own reason, whatever the attributes say.
ATTRIBUTE_CASES += [
    ("attributes.bad_payload.bad_ts", b"{oops", {"event_ts": "not-a-time"}, DEAD),
    (
        "attributes.bad_payload.agreeing",
        _event("attr-bad", price="NaN"),
        {"event_id": "attr-bad", "event_ts": TS},
        DEAD,
    ),
]


def message_cases() -> list[tuple[str, bytes, dict[str, str] | None, str]]:
    """Every kind in the corpus as a message: payload cases without attributes, then attribute cases."""
    return [(name, payload, None, outcome) for name, payload, outcome in CORPUS] + ATTRIBUTE_CASES


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
