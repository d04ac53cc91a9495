"""The lake archive of Pub/Sub messages: one JSON envelope per message, read back exactly.

The streaming job writes every message it reads, valid or not, to
``raw/events/dt=YYYY-MM-DD/hour=HH/*`` + :data:`SUFFIX` (see
:mod:`beam_pipelines.transforms.archive`); the hourly job reads those files back and
gives each message the verdict the stream gave it (:func:`beam_pipelines.events.parse_message`
on the same bytes, attributes and receive time). One line per message::

    {"data": "<payload as text>", "attributes": {...}, "publish_time": "...Z", "message_id": "..."}

``data`` holds the payload when it is valid UTF-8 (most are: readable in the lake);
otherwise ``data_base64`` holds its exact bytes, so a payload the stream refused as
"not valid UTF-8" is refused again, not repaired. JSON escapes newlines, so a
multi-line payload is still one line.

Which hour folder: the hour of the payload's ``event_ts`` for a message that yields an
event (so the hourly job of that hour finds every event of it), else the hour of its
publish time. Plain ``*.jsonl`` files in the same folders (backfills, replay output)
hold one payload per line and no attributes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from beam_pipelines import events

SUFFIX = ".pubsub.jsonl"


def is_archive_file(path: str) -> bool:
    """True for a file of message envelopes (the streaming job's archive)."""
    return path.endswith(SUFFIX)


def encode(
    payload: bytes | str,
    attributes: Mapping[str, Any] | None,
    publish_time: datetime | None,
    message_id: str | None = None,
) -> str:
    """The envelope line of one message (no newline)."""
    envelope: dict[str, Any] = {}
    data = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
    try:
        envelope["data"] = data.decode("utf-8")
    except UnicodeDecodeError:
        envelope["data_base64"] = base64.b64encode(data).decode("ascii")
    if attributes:
        envelope["attributes"] = dict(attributes)
    if publish_time is not None:
        envelope["publish_time"] = events.format_ts(publish_time)
    if message_id:
        envelope["message_id"] = message_id
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def decode(line: bytes | str) -> tuple[bytes, dict[str, Any] | None, datetime | None]:
    """``(payload bytes, attributes, publish time)`` of an envelope line.

    Raises:
      ValueError: the line is not an envelope written by :func:`encode`.
    """
    try:
        envelope = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"archive line is not JSON: {exc}"[:200]) from None
    if not isinstance(envelope, dict) or ("data" in envelope) == ("data_base64" in envelope):
        raise ValueError("archive line is not a message envelope (needs exactly one of data, data_base64)")
    try:
        if "data" in envelope:
            payload = envelope["data"].encode("utf-8")
        else:
            payload = base64.b64decode(envelope["data_base64"], validate=True)
        attributes = envelope.get("attributes") or None
        if attributes is not None and not isinstance(attributes, dict):
            raise ValueError("attributes must be an object")
        published = envelope.get("publish_time")
        publish_time = events.parse_ts(published) if published is not None else None
    except (AttributeError, TypeError, UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise ValueError(f"archive envelope is malformed: {exc}"[:200]) from None
    return payload, attributes, publish_time


def partition_hour(event: events.Event | None, publish_time: datetime | None, now: datetime) -> datetime:
    """The instant whose hour folder holds the message (see the module docstring)."""
    if event is not None:
        return datetime.fromtimestamp(event["event_time"], UTC)
    return publish_time or now
