"""Small SAMPLE_* events shared by the transform tests."""

import json

from apache_beam.io.gcp.pubsub import PubsubMessage

from beam_pipelines import events

SAMPLE_VIEW = {
    "event_id": "e-1",
    "event_name": "view",
    "event_ts": "2026-11-21T10:00:05Z",
    "user_id": "42",
    "session_id": "s-1",
    "product_id": "1017",
    "price": "19.99",
    "quantity": 1,
}
SAMPLE_ORDER = {
    "event_id": "o-1:1",
    "event_name": "order",
    "event_ts": "2026-11-21T10:00:30Z",
    "user_id": "42",
    "session_id": "s-1",
    "product_id": "1017",
    "price": "19.99",
    "quantity": 3,
    "order_id": "o-1",
}
SAMPLE_PRODUCTS = [("1017", {"product_id": "1017", "product_name": "Mug", "category": "Kitchen", "price": "19.99"})]
SAMPLE_USERS = [("42", {"user_id": "42", "user_name": "Ada", "country": "GB"})]


def payload(record: dict) -> bytes:
    return json.dumps(record).encode()


def message(record: dict) -> PubsubMessage:
    return PubsubMessage(payload(record), {"event_id": record["event_id"], "event_ts": record["event_ts"]})


def event(record: dict) -> events.Event:
    """The event ParseEvents emits for ``record``."""
    return events.validate_record(record)
