"""Malformed messages for the publisher simulator, each one guaranteed to fail the event contract.

Every generated payload is checked against :func:`beam_pipelines.events.parse_payload`
at generation time, so the simulator's ground truth ("malformed_sent") is exact: the
pipelines must dead-letter every one of them.
"""

from __future__ import annotations

import json
import random
from typing import Any

from beam_pipelines import events

REASONS = (
    "non_json",
    "truncated_json",
    "wrong_type",
    "unknown_event_name",
    "missing_id",
    "negative_price",
    "bad_timestamp",
)

_NON_JSON = (
    "view,42,1017,19.99",
    "<event name='view' user='42'/>",
    "event_name=view&user_id=42",
    "undefined",
    "{event_name: 'view', user_id: 42}",
    "\u00ff\u00fe garbage",
)
_WRONG_TYPES = (
    ("user_id", {"id": "42"}),
    ("product_id", [1017]),
    ("product_id", 10.5),
    ("quantity", "two"),
    ("price", {"amount": "19.99"}),
    ("user_id", True),
    ("session_id", {"id": "s-1"}),
)
_UNKNOWN_NAMES = ("click", "purchase", "VIEW", "add-to-cart", "checkout", "")
_MISSING = ("event_id", "user_id", "product_id")
_NEGATIVE_PRICES = ("-19.99", -5, "-0.01", -1e3)
_BAD_TIMESTAMPS = (
    "yesterday",
    "2026-13-45T25:61:00Z",
    "2026-11-22 10:00:00",  # no UTC offset
    1764000000,  # epoch seconds, not ISO-8601
    "1999-12-31T23:59:59Z",  # before 2000
    "2999-01-01T00:00:00Z",  # far in the future
    "",
)


class NotMalformed(AssertionError):
    """A payload meant to be malformed passed validation: a bug in this module."""


def make_malformed(rng: random.Random, template: dict[str, Any], reason: str) -> bytes:
    """A payload derived from a valid ``template`` event that breaks the contract for ``reason``.

    Raises:
      ValueError: unknown ``reason``.
      NotMalformed: the payload would be accepted (never expected).
    """
    record = dict(template)
    if reason == "non_json":
        data = rng.choice(_NON_JSON).encode()
    elif reason == "truncated_json":
        text = json.dumps(record, separators=(",", ":"))
        # Any proper prefix of a JSON object is invalid JSON: the object only closes at the end.
        data = text[: rng.randint(1, len(text) - 1)].encode()
    else:
        if reason == "wrong_type":
            key, value = rng.choice(_WRONG_TYPES)
            record[key] = value
        elif reason == "unknown_event_name":
            record["event_name"] = rng.choice(_UNKNOWN_NAMES)
        elif reason == "missing_id":
            key = rng.choice(_MISSING)
            if rng.random() < 0.5:
                record.pop(key)
            else:
                record[key] = None
        elif reason == "negative_price":
            record["price"] = rng.choice(_NEGATIVE_PRICES)
        elif reason == "bad_timestamp":
            record["event_ts"] = rng.choice(_BAD_TIMESTAMPS)
        else:
            raise ValueError(f"unknown malformed reason {reason!r}; expected one of {REASONS}")
        data = json.dumps(record, separators=(",", ":")).encode()
    assert_rejected(data, reason)
    return data


def assert_rejected(data: bytes, reason: str) -> events.InvalidEvent:
    """Return the :class:`InvalidEvent` that ``data`` raises; raise :class:`NotMalformed` if it is valid."""
    try:
        events.parse_payload(data)
    except events.InvalidEvent as exc:
        return exc
    raise NotMalformed(f"malformed payload ({reason}) passed events.parse_payload: {data[:200]!r}")
