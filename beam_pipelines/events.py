"""The user-event contract: parsing, validation and the unified row, in plain Python.

Every job and the publisher simulator share these functions, so "valid event"
means the same thing on the stream, in a batch backfill and in a test. The Beam
transforms in :mod:`beam_pipelines.transforms` wrap them; nothing here imports Beam.

Wire format (Pub/Sub message data, UTF-8 JSON object)::

    {"event_id": "6f1c...", "event_name": "add_to_cart", "event_ts": "2026-11-22T10:15:00.250Z",
     "user_id": 42, "session_id": "s-9a7e...", "product_id": 1017, "price": "19.99",
     "quantity": 2, "order_id": null}

Attributes: ``event_id`` and ``event_ts`` (same values) so Dataflow can deduplicate
(``id_label``) and use event time (``timestamp_attribute``).

Rules (each broken rule is a :class:`InvalidEvent` with a stage and reason):
  * payload at most :data:`MAX_PAYLOAD_BYTES`, UTF-8, a JSON object;
  * ``event_id``: non-empty string, at most 128 characters;
  * ``event_name``: one of :data:`EVENT_NAMES`;
  * ``event_ts``: ISO-8601 with a UTC offset (``Z``, ``+02:00`` or `` UTC``), not before
    2000-01-01 and at most :data:`MAX_FUTURE_SKEW` ahead of processing time;
  * ``user_id``, ``product_id``: positive integers (digit strings accepted);
  * ``price``: finite number >= 0 and < 1e9 (the unit price; numeric strings accepted);
  * ``quantity``: integer 1..10000, default 1;
  * ``order_id``: required for ``order`` and ``return``, dropped for other events;
  * ``session_id``: optional string, at most 128 characters.

Order lines have deterministic ids on every source: ``<order_id>:<line_number>`` for
the order and ``<order_id>:<line_number>:return`` for its return, so the same
real-world event from the stream and the orders API collapses to one.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
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
# Inputs already in canonical form are returned as they are (each fast path below is
# only taken where the slow path would give the same string: tests/foundation/test_events.py).
_CANONICAL_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", re.ASCII)
_CANONICAL_PRICE = re.compile(r"(?:0|[1-9]\d{0,8})\.\d\d", re.ASCII)

# Dead-letter stages, shared by every job.
STAGE_PARSE = "parse"
STAGE_VALIDATE = "validate"

SOURCE_STREAM = "stream"
SOURCE_API = "api"

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
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"event_ts {value!r} has no UTC offset (use 'Z' or '+00:00')")
    return dt.astimezone(UTC)


def _positive_int(record: dict[str, Any], key: str, *, default: int | None = None, maximum: int | None = None) -> int:
    value = record.get(key)
    if value is None:
        if default is not None:
            return default
        raise InvalidEvent(STAGE_VALIDATE, f"missing {key}")
    if isinstance(value, bool):
        raise InvalidEvent(STAGE_VALIDATE, f"{key} must be an integer, got a boolean")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise InvalidEvent(STAGE_VALIDATE, f"{key} must be a positive integer, got {value!r:.40}")
    if value <= 0 or (maximum is not None and value > maximum):
        limit = f"1..{maximum}" if maximum else "> 0"
        raise InvalidEvent(STAGE_VALIDATE, f"{key} out of range ({limit}): {value}")
    if value >= 2**63:
        raise InvalidEvent(STAGE_VALIDATE, f"{key} does not fit INT64: {value}")
    return value


def _short_string(record: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        if required:
            raise InvalidEvent(STAGE_VALIDATE, f"missing {key}")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidEvent(STAGE_VALIDATE, f"{key} must be a string, got {type(value).__name__}")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidEvent(STAGE_VALIDATE, f"{key} longer than {MAX_ID_LENGTH} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # JSON allows lone surrogates ("\ud800"); no UTF-8 sink can store them.
            raise InvalidEvent(STAGE_VALIDATE, f"{key} is not valid Unicode (lone surrogate)") from None
    return value


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
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidEvent(STAGE_VALIDATE, f"price is not numeric: {value!r:.40}") from None
    if not amount.is_finite() or amount < 0 or amount >= MAX_PRICE:
        raise InvalidEvent(STAGE_VALIDATE, f"price out of range [0, 1e9): {value!r:.40}")
    return str(amount.quantize(CENTS))


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
        "user_id": _positive_int(record, "user_id"),
        "session_id": _short_string(record, "session_id", required=False),
        "product_id": _positive_int(record, "product_id"),
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
    size = len(payload)
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidEvent(STAGE_PARSE, f"payload of {size} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        # Decode explicitly: json.loads(bytes) would also accept UTF-16/32 payloads.
        record = json.loads(payload.decode("utf-8") if isinstance(payload, bytes) else payload)
    except UnicodeDecodeError:
        raise InvalidEvent(STAGE_PARSE, "payload is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent(STAGE_PARSE, f"payload is not JSON: {exc}"[:300]) from None
    return validate_record(record, now)


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
