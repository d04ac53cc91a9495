"""The event contract: each rule, the canonical forms, and the unified row."""

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from beam_pipelines import events

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SAMPLE_RECORD = {
    "event_id": "e-1",
    "event_name": "add_to_cart",
    "event_ts": "2026-11-22T10:15:00.25+01:00",
    "user_id": "42",
    "session_id": "s-1",
    "product_id": 1017,
    "price": 19.995,
    "quantity": 2,
    "order_id": "ignored-for-carts",
}


def _payload(**changes):
    record = {**SAMPLE_RECORD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def _record(**changes):
    return {**SAMPLE_RECORD, **changes}


def test_valid_record_becomes_the_canonical_event():
    event = events.parse_payload(_payload(), now=NOW)
    assert event == {
        "event_id": "e-1",
        "event_name": "add_to_cart",
        "event_ts": "2026-11-22T09:15:00.250000Z",  # converted to UTC, microseconds
        "event_time": datetime(2026, 11, 22, 9, 15, 0, 250000, tzinfo=UTC).timestamp(),
        "user_id": "42",  # ids are text, trimmed
        "session_id": "s-1",
        "product_id": "1017",  # an integer id is stored as its decimal text
        "price": "20.00",  # unit price, 2 decimals, half-even
        "quantity": 2,
        "order_id": None,  # only order/return events keep an order id
    }


@pytest.mark.parametrize(
    "payload, stage, reason",
    [
        (b"x" * (events.MAX_PAYLOAD_BYTES + 1), "parse", "exceeds"),
        (b"\xff\xfe{}", "parse", "UTF-8"),
        ("{}".encode("utf-16"), "parse", "UTF-8"),
        (b'{"event_id": "\xc3"}', "parse", "UTF-8"),
        (b'{"event_id": "e-1"', "parse", "not JSON"),
        (b"[1, 2]", "validate", "JSON object"),
        (_payload(event_id=...), "validate", "missing event_id"),
        (_payload(event_id="x" * 129), "validate", "longer than 128"),
        (_payload(event_name="purchase"), "validate", "unknown event_name"),
        (_payload(event_ts="2026-11-22 10:15:00"), "validate", "no UTC offset"),
        (_payload(event_ts="yesterday"), "validate", "bad event_ts"),
        (_payload(event_ts="1999-12-31T23:59:59Z"), "validate", "before 2000-01-01"),
        (_payload(event_ts="2026-11-22T13:00:01Z"), "validate", "in the future"),
        (_payload(user_id=...), "validate", "missing user_id"),
        (_payload(user_id=" "), "validate", "user_id is blank"),
        (_payload(user_id=True), "validate", "user_id must be a string or an integer, got bool"),
        (_payload(user_id="u\x07"), "validate", "user_id contains a control character"),
        (_payload(product_id=12.5), "validate", "product_id must be a string or an integer, got 12.5"),
        (_payload(product_id="p" * 129), "validate", "product_id longer than 128"),
        (_payload(price=-0.01), "validate", "price out of range"),
        (_payload(price="NaN"), "validate", "price is not numeric"),
        (_payload(price="ten"), "validate", "not numeric"),
        (_payload(price=...), "validate", "missing price"),
        (_payload(quantity=10_001), "validate", "quantity out of range"),
        (_payload(event_name="order", order_id=None), "validate", "missing order_id"),
        (_payload(session_id=["s"]), "validate", "session_id must be a string or an integer, got list"),
    ],
)
def test_each_broken_rule_names_its_stage_and_reason(payload, stage, reason):
    with pytest.raises(events.InvalidEvent) as exc:
        events.parse_payload(payload, now=NOW)
    assert exc.value.stage == stage
    assert reason in exc.value.reason


def test_small_future_skew_is_tolerated():
    event = events.parse_payload(_payload(event_ts="2026-11-22T12:59:59Z"), now=NOW)
    assert event["event_ts"] == "2026-11-22T12:59:59.000000Z"


def test_utc_suffix_and_defaults():
    event = events.parse_payload(
        _payload(event_ts="2026-11-22 10:00:00 UTC", quantity=..., session_id=..., event_name="view"), now=NOW
    )
    assert (event["event_ts"], event["quantity"], event["session_id"]) == ("2026-11-22T10:00:00.000000Z", 1, None)


def test_order_line_ids_are_the_same_on_every_source():
    assert events.order_line_event_id("o-9", 2) == "o-9:2"
    assert events.order_line_event_id("o-9", 2, "return") == "o-9:2:return"


def test_user_behavior_row_carries_the_event_amount_and_dimensions_in_schema_order():
    from bigquery_schemas import table_spec

    event = events.parse_payload(_payload(event_name="order", order_id="o-9"), now=NOW)
    row = events.user_behavior_row(
        event, {"product_name": "Lamp", "category": "home"}, None, events.SOURCE_STREAM, "2026-11-22T12:00:00Z"
    )
    assert list(row) == table_spec("user_behavior").column_names
    assert row["price"] == "40.00"  # unit price 20.00 x quantity 2
    assert (row["date"], row["order_id"], row["product_name"], row["user_name"]) == (
        "2026-11-22",
        "o-9",
        "Lamp",
        None,  # unknown user: the row is kept with NULL attributes
    )


def test_dead_letter_row_keeps_invalid_bytes_readable_and_matches_the_schema():
    from bigquery_schemas import table_spec

    row = events.dead_letter_row(
        pipeline="streaming", stage="parse", error="x" * 5000, payload=b"\xff{", attributes={"event_id": "e"}
    )
    assert list(row) == table_spec("dead_letter").column_names
    assert row["payload"] == "\ufffd{"
    assert len(row["error"]) == 2000
    assert json.loads(row["attributes"]) == {"event_id": "e"}
    assert row["insert_ts"].endswith("Z")


def _slow_event_ts(text: str) -> str:
    return events.format_ts(events.parse_ts(text))


def _slow_price(text: str) -> str:
    return str(Decimal(text).quantize(events.CENTS))


def test_canonical_fast_paths_return_what_the_slow_paths_would():
    rng = random.Random(11)
    for _ in range(2000):
        ts = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(27 * 365 * 86400 * 10**6))
        text = ts.isoformat(timespec="microseconds")[:-6] + "Z"
        event = events.validate_record(_record(event_ts=text), now=ts + timedelta(minutes=1))
        assert event["event_ts"] == text == _slow_event_ts(text)
        price = f"{rng.randrange(10 ** rng.randrange(1, 10))}.{rng.randrange(100):02d}"
        assert events.validate_record(_record(price=price), now=NOW)["price"] == price == _slow_price(price)
        assert events.line_amount(price, 1) == price


@pytest.mark.parametrize(
    ("event_ts", "expected"),
    [
        ("2026-11-22T10:15:00Z", "2026-11-22T10:15:00.000000Z"),
        ("2026-11-22 10:15:00.250000Z", "2026-11-22T10:15:00.250000Z"),  # same length, space separator
        ("2026-11-22T11:15:00.250000+01:00", "2026-11-22T10:15:00.250000Z"),
        ("2026-W47-7T10:15:00.250000Z", "2026-11-22T10:15:00.250000Z"),  # ISO week date, 27 characters too
    ],
)
def test_non_canonical_timestamps_are_still_normalised(event_ts, expected):
    assert events.validate_record(_record(event_ts=event_ts), now=NOW)["event_ts"] == expected


@pytest.mark.parametrize(
    ("price", "expected"),
    [("12.5", "12.50"), ("012.50", "12.50"), ("7", "7.00"), (" 3.10", "3.10"), ("0.005", "0.00"), ("1e2", "100.00")],
)
def test_non_canonical_prices_are_still_normalised(price, expected):
    assert events.validate_record(_record(price=price), now=NOW)["price"] == expected
    assert events.line_amount(expected, 3) == str(Decimal(expected) * 3)


def test_non_ascii_digits_never_take_the_fast_path():
    # 2026-11-22T10:15:00.000000Z in ARABIC-INDIC digits (U+0660..U+0669)
    digits = str.maketrans("0123456789", "".join(chr(0x660 + d) for d in range(10)))
    arabic_indic = "2026-11-22T10:15:00.000000".translate(digits) + "Z"
    try:
        event = events.validate_record(_record(event_ts=arabic_indic), now=NOW)
    except events.InvalidEvent:
        return  # rejected outright: fine
    assert event["event_ts"].isascii()


def test_event_fields_are_the_keys_of_a_valid_event_in_order():
    assert tuple(events.parse_payload(_payload(), now=NOW)) == events.EVENT_FIELDS
