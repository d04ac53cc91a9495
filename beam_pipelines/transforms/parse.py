"""Parse and validate raw events, routing every rejected record to a dead-letter output.

Both transforms return a tagged result::

    result = messages | "ParseEvents" >> ParseEvents(pipeline="streaming")
    result[EVENTS]        # event dicts (beam_pipelines.events.Event), timestamped with event_ts
                          # (with event_timestamps=False: keeping the message's publish time)
    result[DEAD_LETTERS]  # dead_letter rows (stage parse/validate, reason, raw payload, attributes)
    result[ARCHIVE]       # with archive=True: (hour folder, envelope line) for every message

Nothing raises on bad input: a record that cannot be parsed for any reason becomes a
dead letter and is counted, so ``records_in = valid_events + dead letters`` holds.
Event time is taken here, from the payload's ``event_ts``, not by the Pub/Sub reader:
a reader that parses a timestamp attribute fails the whole pull on one bad value
(docs/streaming.md).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines import event_archive, events, lake
from beam_pipelines.transforms import METRICS_NAMESPACE

EVENTS = "events"
DEAD_LETTERS = "dead_letters"
ARCHIVE = "archive"

# Stage used when an unexpected exception escapes the contract functions: the record
# is still dead-lettered rather than failing the bundle (and retrying it forever).
STAGE_INTERNAL = "parse_internal"

_LOG = logging.getLogger(__name__)


Message = tuple[bytes | str, dict[str, Any] | None, datetime | None]
"""(payload, attributes, publish time) of one message."""


def _split_message(element: Any) -> Message:
    """(payload, attributes, publish time) of a PubsubMessage, bytes or str element."""
    if isinstance(element, PubsubMessage):
        return element.data, dict(element.attributes or {}), element.publish_time
    if isinstance(element, (bytes, str)):
        return element, None, None
    raise events.InvalidEvent(events.STAGE_PARSE, f"unsupported element type {type(element).__name__}")


def _attribute_ts(attributes: dict[str, str] | None) -> str | None:
    """The ``event_ts`` attribute in canonical form, or None when absent or malformed."""
    try:
        return events.format_ts(events.parse_ts((attributes or {}).get("event_ts")))
    except (ValueError, TypeError):
        return None


class _CountingFn(beam.DoFn):
    """Shared counters: records in, valid events and one counter per dead-letter stage."""

    def __init__(self, pipeline: str, event_timestamps: bool = True):
        if not pipeline:
            raise ValueError("pipeline must name the job, e.g. 'streaming' or 'hourly'")
        self._pipeline = pipeline
        self._event_timestamps = event_timestamps
        self._records_in = Metrics.counter(METRICS_NAMESPACE, "records_in")
        self._valid = Metrics.counter(METRICS_NAMESPACE, "valid_events")
        self._stage_counters: dict[str, Any] = {}

    def start_bundle(self):
        # Per bundle, not per record: each Counter.inc costs ~0.7 µs on the Python SDK and
        # datetime.now() ~0.5 µs (benchmarks/batch_hourly_chain). "now" only feeds the
        # future-skew check, which allows MAX_FUTURE_SKEW (an hour) of clock difference.
        self._now = datetime.now(UTC)
        self._in_bundle = 0
        self._valid_in_bundle = 0

    def finish_bundle(self):
        self._records_in.inc(self._in_bundle)
        self._valid.inc(self._valid_in_bundle)

    def _dead_letter(self, stage: str, reason: str, payload: Any, attributes: dict | None, event_ts: str | None):
        counter = self._stage_counters.get(stage)
        if counter is None:
            counter = self._stage_counters[stage] = Metrics.counter(METRICS_NAMESPACE, f"dead_letters_{stage}")
        counter.inc()
        if not isinstance(payload, (bytes, str)) and payload is not None:
            payload = json.dumps(payload, sort_keys=True, default=str)
        return beam.pvalue.TaggedOutput(
            DEAD_LETTERS,
            events.dead_letter_row(
                pipeline=self._pipeline,
                stage=stage,
                error=reason,
                payload=payload,
                attributes=attributes,
                event_ts=event_ts,
            ),
        )

    def _valid_event(self, event: events.Event):
        self._valid_in_bundle += 1
        if not self._event_timestamps:
            return event  # keeps the element's timestamp: the publish time, for the dedupe's horizon
        # The payload's event_ts is authoritative for event time (the Pub/Sub attribute
        # is only a copy), so windows downstream see the same time on every source.
        return TimestampedValue(event, event["event_time"])


class ParseEventFn(_CountingFn):
    """PubsubMessage | bytes | str -> event (main) or dead-letter row (DEAD_LETTERS).

    With ``archive=True`` every message is also emitted to ``ARCHIVE`` as
    ``(hour folder, envelope line)`` (:mod:`beam_pipelines.event_archive`), whatever
    its verdict, so the lake holds everything the job read.
    """

    def __init__(self, pipeline: str, archive: bool = False, event_timestamps: bool = True):
        super().__init__(pipeline, event_timestamps)
        self._archive = archive

    def _message(self, element: Any) -> Message:
        return _split_message(element)

    def _raw(self, element: Any) -> Any:
        """What a dead letter keeps of an element whose message could not be read."""
        return element

    def process(self, element):
        self._in_bundle += 1
        attributes = publish_time = event = None
        payload: Any = self._raw(element)
        try:
            payload, attributes, publish_time = self._message(element)
            # The future-skew check is against the time the message was received, so
            # the stream and a later read of the archive give the same verdict.
            event = events.parse_message(payload, attributes, publish_time or self._now)
        except events.InvalidEvent as exc:
            yield self._dead_letter(exc.stage, exc.reason, payload, attributes, _attribute_ts(attributes))
        except Exception as exc:  # never fail the bundle on one record: dead-letter it instead
            _LOG.warning("unexpected parse failure: %r", exc)
            payload = payload if isinstance(payload, (bytes, str)) else repr(payload)
            yield self._dead_letter(STAGE_INTERNAL, f"{type(exc).__name__}: {exc}", payload, attributes, None)
        else:
            yield self._valid_event(event)
        if self._archive:
            hour = event_archive.partition_hour(event, publish_time, self._now)
            message_id = getattr(element, "message_id", None)
            line = event_archive.encode(payload, attributes, publish_time, message_id)
            yield beam.pvalue.TaggedOutput(ARCHIVE, (lake.partition_folder(hour), line))


class ValidateRecordFn(_CountingFn):
    """Decoded dict record -> event (main) or dead-letter row (DEAD_LETTERS)."""

    def process(self, record):
        self._in_bundle += 1
        try:
            event = events.validate_record(record, self._now)
        except events.InvalidEvent as exc:
            yield self._dead_letter(exc.stage, exc.reason, record, None, None)
            return
        except Exception as exc:  # same reasoning as ParseEventFn
            _LOG.warning("unexpected validation failure: %r", exc)
            yield self._dead_letter(STAGE_INTERNAL, f"{type(exc).__name__}: {exc}", repr(record), None, None)
            return
        yield self._valid_event(event)


class ParseEvents(beam.PTransform):
    """Decode Pub/Sub messages into events; bad ones become dead-letter rows.

    Args:
      pipeline: job name written to ``dead_letter.pipeline`` (e.g. ``"streaming"``).
      archive: also emit every message to ``[ARCHIVE]`` for the lake.
      event_timestamps: stamp each event with its ``event_ts`` (default). ``False``
        leaves the element's own timestamp, which for a Pub/Sub read is the publish
        time: the streaming job's dedupe measures its horizon from that arrival and
        stamps event time itself (``transforms/dedupe.py``).

    Returns:
      A ``DoOutputsTuple``: ``[EVENTS]`` event dicts timestamped with their ``event_ts``
      (see ``event_timestamps``), ``[DEAD_LETTERS]`` dead-letter rows, ``[ARCHIVE]``
      (empty unless ``archive``).
    """

    def __init__(self, pipeline: str, archive: bool = False, event_timestamps: bool = True):
        super().__init__()
        self._fn = ParseEventFn(pipeline, archive, event_timestamps)

    def expand(self, messages):
        return messages | "ParseMessages" >> beam.ParDo(self._fn).with_outputs(DEAD_LETTERS, ARCHIVE, main=EVENTS)


class ValidateRecords(beam.PTransform):
    """Validate already-decoded records (e.g. the batch job's order lines).

    Args:
      pipeline: job name written to ``dead_letter.pipeline`` (e.g. ``"hourly"``).

    Returns:
      A ``DoOutputsTuple``: ``[EVENTS]`` event dicts, ``[DEAD_LETTERS]`` dead-letter rows
      whose payload is the record as JSON.
    """

    def __init__(self, pipeline: str):
        super().__init__()
        self._fn = ValidateRecordFn(pipeline)

    def expand(self, records):
        return records | "ValidateRecord" >> beam.ParDo(self._fn).with_outputs(DEAD_LETTERS, main=EVENTS)
