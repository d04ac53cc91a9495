"""The user-event contract: parsing, validation and the unified row, in plain Python.

Every job and the publisher simulator share these functions, so "valid event"
means the same thing on the stream, in a batch backfill and in a test. The Beam
transforms in :mod:`beam_pipelines.transforms` wrap them; nothing here imports Beam.

Wire format (Pub/Sub message data, UTF-8 JSON object)::

    {"event_id": "6f1c...", "event_name": "add_to_cart", "event_ts": "2026-11-22T10:15:00.250Z",
     "user_id": "42", "session_id": "s-9a7e...", "product_id": "SKU-1017", "price": "19.99",
     "quantity": 2, "order_id": null}

Attributes: ``event_id`` and ``event_ts``, copies of the payload's, set by the
publisher for consumers that route on attributes. They are optional; the payload is
authoritative. When one is present it must agree with the payload (:func:`check_attributes`):
a message whose attributes contradict its payload is a dead letter, never a guess.

Rules (each broken rule is a :class:`InvalidEvent` with a stage and reason):
  * payload at most :data:`MAX_PAYLOAD_BYTES` bytes, strict UTF-8, a JSON object;
  * ids (``event_id``, ``user_id``, ``product_id``, ``session_id``, ``order_id``): text,
    whatever the source system uses (``"42"``, ``"57b2c0de..."``, a UUID, ``"SKU-1017"``).
    A string, or an integer stored as its decimal text (an integral JSON float below 2**53
    too: ``42.0`` is ``"42"``); surrounding whitespace trimmed, then non-empty, at most 128
    characters, no control characters (C0, DEL, C1) and no lone surrogates. Ids compare as
    text: ``"007"`` and ``"7"`` are two ids;
  * ``event_name``: one of :data:`EVENT_NAMES`;
  * ``event_ts``: ISO-8601 with a UTC offset (``Z``, ``+02:00`` or `` UTC``), not before
    2000-01-01 and at most :data:`MAX_FUTURE_SKEW` ahead of the time the message was
    received (its Pub/Sub publish time where known, else processing time);
  * ``user_id``, ``product_id``: required;
  * ``price``: a JSON number or an ASCII decimal string (``"7"``, ``"19.5"``, ``"1e2"``),
    >= 0, rounded half-even to cents, and < 1e9 after rounding; ``-0`` becomes ``0.00``;
  * ``quantity``: integer 1..10000, default 1;
  * ``order_id``: required for ``order`` and ``return``, dropped for other events;
  * ``session_id``: optional (null or blank means none).

Order lines have deterministic ids on every source: ``<order_id>:<line_number>`` for
the order and ``<order_id>:<line_number>:return`` for its return, so the same
real-world event from the stream and the orders API collapses to one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

EVENT_NAMES = ("view", "wishlist", "add_to_cart", "order", "return")
ORDER_EVENTS = frozenset({"order", "return"})
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_ID_LENGTH = 128
MAX_QUANTITY = 10_000
MAX_PRICE = Decimal("1e9")
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE_SKEW = timedelta(hours=1)
CENTS = Decimal("0.01")
# The streaming job's engagement windows by default (its --window_seconds and
# --allowed_lateness_minutes): an event published later than its window's end plus the
# lateness misses engagement_minutely (replay warns about it before publishing).
ENGAGEMENT_WINDOW_SECONDS = 60
ENGAGEMENT_ALLOWED_LATENESS_SECONDS = 600
# Inputs already in canonical form are returned as they are (each fast path below is
# only taken where the slow path would give the same string: tests/foundation/test_events.py).
_CANONICAL_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", re.ASCII)
_CANONICAL_PRICE = re.compile(r"(?:0|[1-9]\d{0,8})\.\d\d", re.ASCII)
# What a numeric string may look like: Decimal() alone would also take "1_000", "NaN",
# "Infinity" and non-ASCII digits ("\u0661\u0662"), which no other reader of the lake would.
_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)
_DIGITS = re.compile(r"\d{1,19}", re.ASCII)  # quantity: bounded, so no longer text is needed
_MAX_EXACT_FLOAT = 2**53  # every integer below it is exactly one float, and back
# Control characters (Unicode category Cc): C0, DEL and C1.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# Dead-letter stages, shared by every job.
STAGE_PARSE = "parse"
STAGE_VALIDATE = "validate"

SOURCE_STREAM = "stream"
SOURCE_API = "api"

# The keys of validate_record's result, in its order: the columns of an event, shared by
# every path that carries events as tuples or columns (dedupe's shuffle, the sharded path).
EVENT_FIELDS = (
    "event_id",
    "event_name",
    "event_ts",
    "event_time",
    "user_id",
    "session_id",
    "product_id",
    "price",
    "quantity",
    "order_id",
)

Event = dict[str, Any]
"""A valid event: event_id, event_name, event_ts (canonical string), event_time
(epoch seconds, float), user_id, session_id, product_id, price (unit price, decimal
string), quantity, order_id."""


class InvalidEvent(ValueError):
    """A record that breaks the contract; ``stage`` and ``reason`` go to the dead letter."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


def order_line_event_id(order_id: str, line_number: int, event_name: str = "order") -> str:
    """Deterministic id of an order line's event, identical on the stream and the API."""
    base = f"{order_id}:{line_number}"
    return base if event_name == "order" else f"{base}:{event_name}"


def format_ts(dt: datetime) -> str:
    """Canonical UTC timestamp string (``2026-11-22T10:15:00.250000Z``), accepted by BigQuery and Beam."""
    # isoformat is ~20% cheaper than strftime, and this runs twice per event.
    return dt.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_ts(value: Any) -> datetime:
    """Parse an ISO-8601 timestamp that carries a UTC offset; raise ``ValueError`` otherwise."""
    if not isinstance(value, str) or not value:
        raise ValueError("event_ts must be an ISO-8601 string")
    text = value.strip()
    if _CONTROL.search(text):
        # datetime.fromisoformat stops reading at a NUL: "...Z\x00garbage" would parse.
        raise ValueError(f"event_ts {value!r:.60} contains a control character")
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"event_ts {value!r:.60} has no UTC offset (use 'Z' or '+00:00')")
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 and 9999-12-31T23:59-01:00 leave datetime's range
        raise ValueError(f"event_ts {value!r:.60} is outside the years 1..9999 in UTC") from None


def _positive_int(record: dict[str, Any], key: str, *, default: int | None = None, maximum: int | None = None) -> int:
    value = record.get(key)
    if value is None:
        if default is not None:
            return default
        raise InvalidEvent(STAGE_VALIDATE, f"missing {key}")
    if isinstance(value, bool):
        raise InvalidEvent(STAGE_VALIDATE, f"{key} must be an integer, got a boolean")
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise InvalidEvent(STAGE_VALIDATE, f"{key} must be a positive integer, got {value!r:.40}")
    if value <= 0 or (maximum is not None and value > maximum):
        limit = f"1..{maximum}" if maximum else "> 0"
        raise InvalidEvent(STAGE_VALIDATE, f"{key} out of range ({limit}): {value}")
    return value


def id_text(value: Any, key: str, *, required: bool = True) -> str | None:
    """An id as the contract stores it (text), or ``None`` when optional and absent.

    The one rule for every id on every path (events, order lines, dimension rows, imported
    files): a string, or an integer as its decimal text (an integral float below 2**53
    too); trimmed, non-empty, at most :data:`MAX_ID_LENGTH` characters, no control
    characters, valid Unicode.

    Raises:
      InvalidEvent: ``stage='validate'`` naming ``key`` and the broken rule.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif isinstance(value, float):
        # A pandas export of an integer column with gaps writes 42.0; 1.5 or 1e300 is no id.
        if not (value.is_integer() and abs(value) < _MAX_EXACT_FLOAT):
            raise InvalidEvent(STAGE_VALIDATE, f"{key} must be a string or an integer, got {value!r:.40}")
        value = str(int(value))
    elif isinstance(value, str):
        value = value.strip()
    elif value is not None:
        raise InvalidEvent(STAGE_VALIDATE, f"{key} must be a string or an integer, got {type(value).__name__}")
    if not value:
        if required:
            raise InvalidEvent(STAGE_VALIDATE, f"missing {key}" if value is None else f"{key} is blank")
        return None
    if len(value) > MAX_ID_LENGTH:
        raise InvalidEvent(STAGE_VALIDATE, f"{key} longer than {MAX_ID_LENGTH} characters")
    if _CONTROL.search(value):
        raise InvalidEvent(STAGE_VALIDATE, f"{key} contains a control character: {value!r:.60}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # JSON allows lone surrogates ("\ud800"); no UTF-8 sink can store them.
            raise InvalidEvent(STAGE_VALIDATE, f"{key} is not valid Unicode (lone surrogate)") from None
    return value


def _short_string(record: dict[str, Any], key: str, *, required: bool) -> str | None:
    return id_text(record.get(key), key, required=required)


def _price(record: dict[str, Any]) -> str:
    value = record.get("price")
    if value is None:
        raise InvalidEvent(STAGE_VALIDATE, "missing price")
    if isinstance(value, str) and _CANONICAL_PRICE.fullmatch(value):
        return value  # "12.34": already what the Decimal path returns (~1 µs saved)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidEvent(STAGE_VALIDATE, f"price must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidEvent(STAGE_VALIDATE, f"price must be finite, got {value}")
    text = str(value).strip()
    if not _DECIMAL_TEXT.fullmatch(text):
        raise InvalidEvent(STAGE_VALIDATE, f"price is not numeric: {value!r:.40}")
    amount = Decimal(text)
    # The range is checked on the value that is stored: 999999999.999 rounds to 1e9.
    if amount < 0 or amount >= MAX_PRICE or (amount := amount.quantize(CENTS)) >= MAX_PRICE:
        raise InvalidEvent(STAGE_VALIDATE, f"price out of range [0, 1e9): {value!r:.40}")
    return str(amount.copy_abs())  # "-0" passes the range check as "-0.00": store "0.00"


def validate_record(record: Any, now: datetime | None = None) -> Event:
    """Validate a decoded JSON value and return the canonical event.

    Args:
      record: the decoded payload.
      now: processing time for the future-skew check (default: current UTC time).

    Raises:
      InvalidEvent: with ``stage='validate'`` and the first broken rule.
    """
    if not isinstance(record, dict):
        raise InvalidEvent(STAGE_VALIDATE, f"payload must be a JSON object, got {type(record).__name__}")
    event_id = _short_string(record, "event_id", required=True)
    event_name = record.get("event_name")
    if event_name not in EVENT_NAMES:
        raise InvalidEvent(STAGE_VALIDATE, f"unknown event_name {event_name!r:.40}; expected one of {EVENT_NAMES}")
    raw_ts = record.get("event_ts")
    try:
        ts = parse_ts(raw_ts)
    except (ValueError, TypeError) as exc:
        raise InvalidEvent(STAGE_VALIDATE, f"bad event_ts: {exc}") from None
    now = now or datetime.now(UTC)
    if ts < MIN_EVENT_TIME:
        raise InvalidEvent(STAGE_VALIDATE, f"event_ts {format_ts(ts)} is before {MIN_EVENT_TIME.date()}")
    if ts > now + MAX_FUTURE_SKEW:
        raise InvalidEvent(STAGE_VALIDATE, f"event_ts {format_ts(ts)} is in the future")
    order_id = _short_string(record, "order_id", required=event_name in ORDER_EVENTS)
    return {
        "event_id": event_id,
        "event_name": event_name,
        # format_ts costs ~2 µs; most producers already send the canonical form.
        "event_ts": raw_ts if _CANONICAL_TS.fullmatch(raw_ts) else format_ts(ts),
        "event_time": ts.timestamp(),
        "user_id": _short_string(record, "user_id", required=True),
        "session_id": _short_string(record, "session_id", required=False),
        "product_id": _short_string(record, "product_id", required=True),
        "price": _price(record),
        "quantity": _positive_int(record, "quantity", default=1, maximum=MAX_QUANTITY),
        "order_id": order_id if event_name in ORDER_EVENTS else None,
    }


def parse_payload(payload: bytes | str, now: datetime | None = None) -> Event:
    """Decode and validate one raw message.

    Raises:
      InvalidEvent: ``stage='parse'`` for oversized, non-UTF-8 or non-JSON payloads,
        ``stage='validate'`` for contract violations.
    """
    if isinstance(payload, str):
        # The size limit and the UTF-8 rule are about bytes, whoever decoded the text first.
        try:
            payload = payload.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEvent(STAGE_PARSE, "payload is not valid UTF-8 (lone surrogate)") from None
    size = len(payload)
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidEvent(STAGE_PARSE, f"payload of {size} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        # Decode explicitly: json.loads(bytes) would also accept UTF-16/32 payloads.
        record = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidEvent(STAGE_PARSE, "payload is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent(STAGE_PARSE, f"payload is not JSON: {exc}"[:300]) from None
    return validate_record(record, now)


def check_attributes(event: Event, attributes: Mapping[str, Any] | None) -> None:
    """Refuse a message whose ``event_id`` / ``event_ts`` attributes contradict its payload.

    Absent attributes are fine (the payload is authoritative); a present one must name
    the same id (after trimming) and the same instant (any ISO-8601 spelling).

    Raises:
      InvalidEvent: ``stage='validate'`` naming the attribute and both values.
    """
    if not attributes:
        return
    attr_ts = attributes.get("event_ts")
    if attr_ts is not None and attr_ts != event["event_ts"]:
        if not isinstance(attr_ts, str) or not attr_ts.strip():
            raise InvalidEvent(STAGE_VALIDATE, f"event_ts attribute is empty or not text: {attr_ts!r:.60}")
        try:
            same = format_ts(parse_ts(attr_ts)) == event["event_ts"]
        except (ValueError, TypeError):
            raise InvalidEvent(STAGE_VALIDATE, f"event_ts attribute is not a timestamp: {attr_ts!r:.60}") from None
        if not same:
            raise InvalidEvent(
                STAGE_VALIDATE,
                f"event_ts attribute {attr_ts!r:.60} disagrees with the payload's {event['event_ts']}",
            )
    attr_id = attributes.get("event_id")
    if attr_id is not None and (not isinstance(attr_id, str) or attr_id.strip() != event["event_id"]):
        raise InvalidEvent(
            STAGE_VALIDATE, f"event_id attribute {attr_id!r:.60} disagrees with the payload's {event['event_id']!r:.60}"
        )


def parse_message(
    payload: bytes | str, attributes: Mapping[str, Any] | None = None, now: datetime | None = None
) -> Event:
    """The verdict on one message, payload and attributes: the event, or :class:`InvalidEvent`.

    Every path that reads messages (the stream, the lake archive, a backfill file)
    calls this, so one message gets one verdict wherever it is read.

    Args:
      payload: the message data.
      attributes: its Pub/Sub attributes (None or empty when it had none).
      now: when the message was received (its publish time), for the future-skew check.
    """
    event = parse_payload(payload, now)
    check_attributes(event, attributes)
    return event


def line_amount(price: str, quantity: int) -> str:
    """Unit price x quantity, as a 2-decimal string (BigQuery NUMERIC accepts strings)."""
    if quantity == 1 and _CANONICAL_PRICE.fullmatch(price):
        return price
    return str((Decimal(price) * quantity).quantize(CENTS))


def user_behavior_row(
    event: Event,
    product: dict[str, Any] | None,
    user: dict[str, Any] | None,
    source: str,
    ingest_ts: str,
) -> dict[str, Any]:
    """The ``user_behavior`` row for an event, in schema column order.

    ``price`` in the row is the amount of the event (unit price x quantity), so an
    order line's row carries the line amount on both the stream and the API path.
    Unknown products or users keep the row with NULL attributes.
    """
    return {
        "date": event["event_ts"][:10],
        "event_id": event["event_id"],
        "event_name": event["event_name"],
        "price": line_amount(event["price"], event["quantity"]),
        "product_id": event["product_id"],
        "product_name": product.get("product_name") if product else None,
        "user_id": event["user_id"],
        "user_name": user.get("user_name") if user else None,
        "order_id": event["order_id"],
        "event_ts": event["event_ts"],
        "session_id": event["session_id"],
        "quantity": event["quantity"],
        "category": product.get("category") if product else None,
        "source": source,
        "ingest_ts": ingest_ts,
    }


def dead_letter_row(
    *,
    pipeline: str,
    stage: str,
    error: str,
    payload: bytes | str | None,
    attributes: dict[str, Any] | None = None,
    event_ts: str | None = None,
    job_name: str | None = None,
    insert_ts: str | None = None,
) -> dict[str, Any]:
    """A ``dead_letter`` row; the payload is kept as text (invalid UTF-8 replaced, 1 MB max)."""
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", errors="replace")
    if payload is not None and len(payload) > 1_000_000:
        payload = payload[:1_000_000]
    return {
        "stage": stage,
        "error": error[:2000],
        "payload": payload,
        "attributes": json.dumps(attributes, sort_keys=True, default=str) if attributes else None,
        "event_ts": event_ts,
        "pipeline": pipeline,
        "job_name": job_name,
        "insert_ts": insert_ts or format_ts(datetime.now(UTC)),
    }
