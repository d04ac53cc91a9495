"""Collapse repeated deliveries of the same event (same ``event_id``) to one.

Two flavours with the same contract, one event per ``event_id`` and a
``duplicates_removed`` counter (so ``valid = written + duplicates_removed``):

* :class:`DeduplicateEvents` for bounded input (batch): group by ``event_id`` and keep a
  deterministic winner, so re-running a backfill writes identical rows.
* :class:`DeduplicateEventsStateful` for unbounded input (streaming): the first
  delivery wins; later ones within the horizon are dropped using per-key state.
* :class:`DeduplicateEventsInProcess`, the same streaming contract for the in-process
  ``BundleBasedDirectRunner`` only, where per-key state is slow and grows without bound
  (see its docstring); the streaming job picks it for that runner.
"""

from __future__ import annotations

import heapq
import json
import operator
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from beam_pipelines import events
from beam_pipelines.transforms import METRICS_NAMESPACE

# DeduplicateEvents shuffles an event as a tuple of its values in this order (the
# fields of events.validate_record) rather than as the dict: no field names on the
# wire, so fewer bytes to encode, hold and decode (measured in docs/benchmarks.md).
_EVENT_FIELD_SET = frozenset(events.EVENT_FIELDS)
_event_values = operator.itemgetter(*events.EVENT_FIELDS)


def _pack(event: dict[str, Any]) -> tuple | dict[str, Any]:
    """The compact shuffle form of an event; a dict with other fields travels as it is."""
    return _event_values(event) if event.keys() == _EVENT_FIELD_SET else event


def _unpack(value: tuple | dict[str, Any]) -> dict[str, Any]:
    return dict(zip(events.EVENT_FIELDS, value, strict=True)) if isinstance(value, tuple) else value


def _winner_key(event: dict[str, Any]) -> tuple[float, str]:
    # Earliest event time first, then the canonical JSON: a total order that does not
    # depend on arrival order, so every run picks the same winner.
    return (event["event_time"], json.dumps(event, sort_keys=True, default=str))


class _PickWinnerFn(beam.DoFn):
    """(event_id, packed deliveries) -> the winning event, stamped with its event time."""

    def __init__(self):
        self._duplicates = Metrics.counter(METRICS_NAMESPACE, "duplicates_removed")

    def process(self, keyed):
        _, deliveries = keyed
        deliveries = iter(deliveries)
        best = _unpack(next(deliveries))
        count = 1
        # Only a repeated event_id pays for the comparison (~2 % of a typical hour).
        for packed in deliveries:
            count += 1
            candidate = _unpack(packed)
            if _winner_key(candidate) < _winner_key(best):
                best = candidate
        if count > 1:
            self._duplicates.inc(count - 1)
        # The grouping stamps its output at the end of the window; restore event time so
        # any windowing downstream behaves as it would without the dedupe step.
        yield TimestampedValue(best, best["event_time"])


class DeduplicateEvents(beam.PTransform):
    """One event per ``event_id`` in a bounded PCollection.

    The winner is the event with the earliest ``event_ts``; ties are broken by the
    event's canonical JSON, so the result does not depend on input order.
    Counter: ``duplicates_removed``.

    Cost: a GroupByKey of ``(event_id, tuple of values)`` and one DoFn. A CombineFn
    would let the runner pre-combine before the shuffle, but with ~2 % duplicates
    almost nothing combines, and the lifted combine's four calls per element measured
    slower than the grouping (docs/benchmarks.md).
    """

    def expand(self, events):
        return (
            events
            | "KeyByEventId" >> beam.Map(lambda e: (e["event_id"], _pack(e))).with_output_types(tuple[str, Any])
            | "GroupByEventId" >> beam.GroupByKey()
            | "PickWinner" >> beam.ParDo(_PickWinnerFn())
        )


_SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
_EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)
# Beam declares state/timer parameters as argument defaults; module-level singletons
# keep that idiom without calls in the signature.
_SEEN_PARAM = beam.DoFn.StateParam(_SEEN)
_EXPIRY_PARAM = beam.DoFn.TimerParam(_EXPIRY)


class DeduplicateEventsStatefulFn(beam.DoFn):
    """Stateful DoFn on (event_id, event): emit the first delivery, drop the rest.

    State per key: one boolean (``seen``) plus one event-time timer that clears it at
    ``event_ts + horizon``.
    """

    def __init__(self, horizon_seconds: float):
        self._horizon = Duration(seconds=horizon_seconds)
        self._duplicates = Metrics.counter(METRICS_NAMESPACE, "duplicates_removed")

    def process(
        self,
        keyed,
        timestamp=beam.DoFn.TimestampParam,
        seen=_SEEN_PARAM,
        expiry=_EXPIRY_PARAM,
    ):
        _, event = keyed
        if seen.read():
            self._duplicates.inc()
            return
        seen.write(True)
        expiry.set(Timestamp.of(event["event_time"]) + self._horizon)
        yield TimestampedValue(event, timestamp)

    @on_timer(_EXPIRY)
    def expire(self, seen=_SEEN_PARAM):
        seen.clear()


class DeduplicateEventsStateful(beam.PTransform):
    """Streaming dedupe on ``event_id``: the first delivery wins within a horizon.

    Horizon: a key's state is kept until the watermark passes ``event_ts + horizon``
    (an event-time timer). Event time rather than processing time, because it is what
    the rest of the job reasons in: when the job replays a backlog the watermark lags
    and state is kept for as long as the backlog needs, and tests are deterministic.
    A duplicate whose first delivery is older than the horizon is emitted again; the
    ``user_behavior_dedup`` view removes those at query time. On Dataflow the
    ``id_label="event_id"`` read already drops Pub/Sub redeliveries for ~10 minutes,
    this transform covers publisher retries and longer gaps.

    State cost: one entry per distinct ``event_id`` seen in the last ``horizon``:
    the key (~36-byte UUID), a 1-byte flag and a timer, about 100-150 bytes on
    Dataflow Streaming Engine. At 1,000 events/s and the default 60-minute horizon
    that is 3.6 M keys, roughly 0.4-0.6 GB of state; it scales linearly with rate
    x horizon.

    Why not ``apache_beam.transforms.deduplicate.DeduplicatePerKey``: it works on the
    BundleBasedDirectRunner, but it has no counter for the dropped duplicates, and the
    conservation check (``valid = written + duplicates_removed``) needs one.

    Args:
      horizon_seconds: how long after its event time an ``event_id`` is remembered (> 0).
    """

    def __init__(self, horizon_seconds: float):
        super().__init__()
        if not horizon_seconds or horizon_seconds <= 0:
            raise ValueError(f"horizon_seconds must be a positive number of seconds, got {horizon_seconds!r}")
        self._horizon_seconds = horizon_seconds

    def expand(self, events):
        return (
            events
            # A str key hint gives the state a deterministic key coder.
            | "KeyByEventId" >> beam.Map(lambda e: (e["event_id"], e)).with_output_types(tuple[str, dict])
            | "DropRepeatedEventIds" >> beam.ParDo(DeduplicateEventsStatefulFn(self._horizon_seconds))
        )


class _RecentIds:
    """The event ids seen within the horizon: id -> expiry, forgotten in expiry order."""

    def __init__(self):
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def forget_expired(self, now: float) -> None:
        with self._lock:
            heap, expiry = self._heap, self._expiry
            while heap and heap[0][0] <= now:
                when, event_id = heapq.heappop(heap)
                if expiry.get(event_id) == when:
                    del expiry[event_id]

    def first_sighting(self, event_id: str, expires_at: float) -> bool:
        with self._lock:
            if event_id in self._expiry:
                return False
            self._expiry[event_id] = expires_at
            heapq.heappush(self._heap, (expires_at, event_id))
            return True


# One _RecentIds per applied DeduplicateEventsInProcess, by its token. Module-level
# because the stock DirectRunner unpickles a fresh DoFn for every bundle.
_RECENT_IDS: dict[str, _RecentIds] = {}
_RECENT_IDS_LOCK = threading.Lock()


def _recent_ids(token: str) -> _RecentIds:
    with _RECENT_IDS_LOCK:
        return _RECENT_IDS.setdefault(token, _RecentIds())


class DeduplicateEventsInProcessFn(beam.DoFn):
    """Event -> the event on its first sighting within the horizon; repeats are counted and dropped."""

    def __init__(self, token: str, horizon_seconds: float, clock: Callable[[], float]):
        self._token = token
        self._horizon = horizon_seconds
        self._clock = clock
        self._duplicates = Metrics.counter(METRICS_NAMESPACE, "duplicates_removed")

    def start_bundle(self):
        self._ids = _recent_ids(self._token)
        # Between bundles, like the stateful variant's timers on that runner.
        self._ids.forget_expired(self._clock())
        self._dropped = 0

    def process(self, event):
        if self._ids.first_sighting(event["event_id"], event["event_time"] + self._horizon):
            yield event
        else:
            self._dropped += 1

    def finish_bundle(self):
        if self._dropped:
            self._duplicates.inc(self._dropped)


class DeduplicateEventsInProcess(beam.PTransform):
    """:class:`DeduplicateEventsStateful`'s contract for the in-process BundleBasedDirectRunner.

    Why a second implementation: on that runner every ``event_id`` key gets its own
    keyed state that is never removed, and between bundles the runner scans every
    keyed state of the step for due timers. The scan costs O(ids ever seen) per pull:
    31 % of the runner thread in the streaming benchmark after 3,000 events, and a
    local run keeps slowing down for as long as it runs. Here the ids live in one
    in-memory map per applied transform (the runner is one process with one worker
    thread), so the cost per event is constant and memory is bounded by the horizon.

    Same contract: the first delivery of an ``event_id`` wins; a repeat whose first
    delivery is still within the horizon is dropped and counted in
    ``duplicates_removed``; elements keep their timestamps. An id is forgotten once the
    clock passes ``event_ts + horizon``, checked between bundles. The clock is wall
    time, which is what the watermark of a Pub/Sub read is on that runner, so the
    stateful variant's event-time timers would fire at the same moments there.

    Not for Dataflow or any multi-process runner (each worker would have its own map):
    the streaming job uses it only when the runner is ``BundleBasedDirectRunner``.
    Like that runner's state, the ids do not survive a restart.

    Args:
      horizon_seconds: how long after its event time an ``event_id`` is remembered (> 0).
      clock: epoch seconds now (for tests; default ``time.time``).
    """

    def __init__(self, horizon_seconds: float, clock: Callable[[], float] = time.time):
        super().__init__()
        if not horizon_seconds or horizon_seconds <= 0:
            raise ValueError(f"horizon_seconds must be a positive number of seconds, got {horizon_seconds!r}")
        self._fn = DeduplicateEventsInProcessFn(uuid.uuid4().hex, horizon_seconds, clock)

    def expand(self, events):
        return events | "DropRepeatedEventIds" >> beam.ParDo(self._fn)
