"""The job window ``[start, end)``: events inside it pass, the others become dead letters.

The hourly job owns the window's events only: an event from another hour in a stream
event file of a backfill is rejected visibly (a ``dead_letter`` row of stage
``window``) instead of quietly changing a partition outside the window.

* :class:`KeepEventsInWindow`: parsed events -> the window's events and dead letters.
* :class:`ParseEventsInWindow`: event lines (lake files, the streaming job's archive)
  -> the same result as ``ParseEvents`` followed by ``KeepEventsInWindow``, in one step.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_pipelines import event_archive, events
from beam_pipelines.transforms import METRICS_NAMESPACE, parse
from beam_pipelines.transforms.parse import DEAD_LETTERS

STAGE_WINDOW = "window"


def _window_label(start: datetime, end: datetime) -> str:
    return f"[{events.format_ts(start)}, {events.format_ts(end)})"


def _outside_window_row(event: events.Event, window: str, pipeline: str) -> dict[str, Any]:
    """The ``dead_letter`` row of a valid event whose event_ts lies outside the job window."""
    payload = {k: v for k, v in event.items() if k != "event_time"}
    return events.dead_letter_row(
        pipeline=pipeline,
        stage=STAGE_WINDOW,
        error=f"event_ts {event['event_ts']} is outside the job window {window}",
        payload=json.dumps(payload, sort_keys=True),
        event_ts=event["event_ts"],
    )


class KeepEventsInWindowFn(beam.DoFn):
    """Events with ``start <= event_ts < end`` pass; others become dead letters (stage ``window``)."""

    def __init__(self, start: datetime, end: datetime, pipeline: str):
        self._start = start.timestamp()
        self._end = end.timestamp()
        self._window = _window_label(start, end)
        self._pipeline = pipeline
        self._outside = Metrics.counter(METRICS_NAMESPACE, "dead_letters_window")

    def process(self, event):
        if self._start <= event["event_time"] < self._end:
            yield event
            return
        self._outside.inc()
        yield beam.pvalue.TaggedOutput(DEAD_LETTERS, _outside_window_row(event, self._window, self._pipeline))


class KeepEventsInWindow(beam.PTransform):
    """Split events into those inside ``[start, end)`` (main) and dead letters (``[DEAD_LETTERS]``).

    Used for stream event files of a backfill: the job owns the window's events only,
    so an event from another hour in a file is rejected visibly instead of quietly
    changing a partition outside the window.
    """

    def __init__(self, start: datetime, end: datetime, pipeline: str):
        super().__init__()
        self._fn = KeepEventsInWindowFn(start, end, pipeline)

    def expand(self, evs):
        return evs | "FilterEventTime" >> beam.ParDo(self._fn).with_outputs(DEAD_LETTERS, main="events")


class ParseEventsInWindowFn(parse.ParseEventFn):
    """``(path, line)`` or a raw line -> event inside the window, or a dead letter.

    :class:`~beam_pipelines.transforms.parse.ParseEventFn` and
    :class:`KeepEventsInWindowFn` in one step, with the same outputs and counters
    (``records_in``, ``valid_events`` and ``dead_letters_{parse,validate,window}``):
    each step of a Beam pipeline costs ~3-5 µs per element on the Python SDK, about
    as much as validating the event (docs/benchmarks.md).
    """

    def __init__(self, start: datetime, end: datetime, pipeline: str):
        super().__init__(pipeline)
        self._start = start.timestamp()
        self._end = end.timestamp()
        self._window = _window_label(start, end)
        self._outside = Metrics.counter(METRICS_NAMESPACE, "dead_letters_window")

    def _message(self, element):
        # ReadLakeFiles yields (path, line). A line of the streaming job's archive is a
        # message envelope (payload, attributes, publish time): judged as the stream
        # judged it. Any other line is one payload without attributes.
        if not isinstance(element, tuple):
            return super()._message(element)
        path, line = element
        if not event_archive.is_archive_file(path):
            return line, None, None
        try:
            return event_archive.decode(line)
        except ValueError as exc:
            raise events.InvalidEvent(events.STAGE_PARSE, f"{exc} ({path})") from None

    def _raw(self, element):
        return element[1] if isinstance(element, tuple) else element

    def _valid_event(self, event: events.Event):
        if self._start <= event["event_time"] < self._end:
            return super()._valid_event(event)
        # Valid by the contract (counted as such), but not this job's to write.
        self._valid_in_bundle += 1
        self._outside.inc()
        return beam.pvalue.TaggedOutput(DEAD_LETTERS, _outside_window_row(event, self._window, self._pipeline))


class ParseEventsInWindow(beam.PTransform):
    """Stream event lines of a backfill -> the window's events and dead letters.

    The same result as ``ParseEvents`` followed by ``KeepEventsInWindow`` (events
    timestamped with their ``event_ts``; parse, validate and window dead letters),
    in one step.

    Args:
      start, end: the job window ``[start, end)`` (aware datetimes).
      pipeline: job name written to ``dead_letter.pipeline``.

    Returns:
      A ``DoOutputsTuple``: ``[parse.EVENTS]`` event dicts, ``[DEAD_LETTERS]`` dead-letter rows.
    """

    def __init__(self, start: datetime, end: datetime, pipeline: str):
        super().__init__()
        self._fn = ParseEventsInWindowFn(start, end, pipeline)

    def expand(self, lines):
        return lines | "ParseEventLines" >> beam.ParDo(self._fn).with_outputs(DEAD_LETTERS, main=parse.EVENTS)
