"""Per-minute engagement metrics in event time, with late data and pane timing.

For each fixed event-time window (default 1 minute) and ``event_name``: events,
distinct users, distinct sessions and revenue (sum of order amounts, i.e. unit price
x quantity of ``order`` events). The window fires when the watermark passes its end
(ON_TIME), optionally early every ``early_firing_seconds`` of processing time (EARLY),
and once per late element within the allowed lateness (LATE). Panes ACCUMULATE: each
row restates the window's totals so far, and readers keep the highest ``pane_index``
per ``(window_start, event_name)``. Data later than the allowed lateness is dropped
by the runner (it is still in ``user_behavior``; only this aggregate misses it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.utils.windowed_value import PaneInfoTiming

from beam_pipelines import events as ev

_TIMING_NAMES = {
    PaneInfoTiming.EARLY: "EARLY",
    PaneInfoTiming.ON_TIME: "ON_TIME",
    PaneInfoTiming.LATE: "LATE",
    PaneInfoTiming.UNKNOWN: "UNKNOWN",
}


class EngagementCombineFn(beam.CombineFn):
    """Events -> (events, user ids, session ids, revenue)."""

    def create_accumulator(self):
        return (0, set(), set(), Decimal(0))

    def add_input(self, acc, event):
        n, users, sessions, revenue = acc
        users.add(event["user_id"])
        if event.get("session_id"):
            sessions.add(event["session_id"])
        if event["event_name"] == "order":
            revenue += Decimal(ev.line_amount(event["price"], event["quantity"]))
        return (n + 1, users, sessions, revenue)

    def merge_accumulators(self, accumulators):
        n, users, sessions, revenue = 0, set(), set(), Decimal(0)
        for a_n, a_users, a_sessions, a_revenue in accumulators:
            n += a_n
            users |= a_users
            sessions |= a_sessions
            revenue += a_revenue
        return (n, users, sessions, revenue)

    def extract_output(self, acc):
        n, users, sessions, revenue = acc
        return {"events": n, "unique_users": len(users), "unique_sessions": len(sessions), "revenue": revenue}


class FormatEngagementRowFn(beam.DoFn):
    """(event_name, metrics) in a window pane -> an ``engagement_minutely`` row."""

    def process(self, keyed, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        event_name, metrics = keyed
        yield {
            "window_start": ev.format_ts(win.start.to_utc_datetime(has_tz=True)),
            "window_end": ev.format_ts(win.end.to_utc_datetime(has_tz=True)),
            "event_name": event_name,
            "events": metrics["events"],
            "unique_users": metrics["unique_users"],
            "unique_sessions": metrics["unique_sessions"],
            "revenue": str(metrics["revenue"].quantize(ev.CENTS)),
            "pane_timing": _TIMING_NAMES[pane.timing],
            "pane_index": pane.index,
            "emitted_ts": ev.format_ts(datetime.now(UTC)),
        }


class EngagementMetrics(beam.PTransform):
    """Windowed engagement metrics per event_name as ``engagement_minutely`` rows.

    Args:
      window_seconds: fixed window size in event time (default 60).
      allowed_lateness_seconds: how long after the watermark passes a window late
        events still update it (default 600).
      early_firing_seconds: if set, also emit EARLY panes this often (processing time)
        while a window is open; default only ON_TIME and LATE panes.
    """

    def __init__(
        self,
        window_seconds: int = ev.ENGAGEMENT_WINDOW_SECONDS,
        allowed_lateness_seconds: int = ev.ENGAGEMENT_ALLOWED_LATENESS_SECONDS,
        early_firing_seconds: int | None = None,
    ):
        super().__init__()
        if window_seconds <= 0 or allowed_lateness_seconds < 0:
            raise ValueError("window_seconds must be > 0 and allowed_lateness_seconds >= 0")
        self._window = window_seconds
        self._lateness = allowed_lateness_seconds
        self._early = early_firing_seconds

    def expand(self, events):
        early = trigger.AfterProcessingTime(self._early) if self._early else None
        return (
            events
            | "WindowByMinute"
            >> beam.WindowInto(
                window.FixedWindows(self._window),
                trigger=trigger.AfterWatermark(early=early, late=trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=self._lateness,
            )
            | "KeyByEventName" >> beam.Map(lambda e: (e["event_name"], e))
            | "CombineEngagement" >> beam.CombinePerKey(EngagementCombineFn())
            | "FormatEngagementRow" >> beam.ParDo(FormatEngagementRowFn())
        )
