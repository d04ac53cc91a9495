"""Collapse repeated deliveries of the same event (same ``event_id``) to one.

Three flavours with one contract, one event per ``event_id`` and a
``duplicates_removed`` counter (so ``valid = written + duplicates_removed``). Which one
runs is fixed by the job and its runner, never by the caller's taste:

* :class:`DeduplicateEvents`, for bounded input: the hourly job's order events, on every
  runner, Dataflow and local alike. It groups by ``event_id`` and keeps a deterministic
  winner, so re-running a backfill writes identical rows. (The hourly job's stream events
  are deduplicated per shard by :mod:`.sharded` with the same winner rule, ``_winner_key``.)
* :class:`DeduplicateEventsStateful`, for unbounded input: the streaming job on Dataflow
  and on every runner other than the in-process ``BundleBasedDirectRunner``. The first
  delivery wins; a copy *published* up to the horizon after it is dropped, whatever its
  ``event_ts`` (per-key state with an expiry timer, see below).
* :class:`DeduplicateEventsInProcess`, the streaming contract for the in-process
  ``BundleBasedDirectRunner`` only, where per-key state is slow and grows without bound
  (see its docstring). The streaming job picks it through the one runner seam:
  ``streaming.deduplicator`` asks ``runners.allows(options, runners.LocalStep.IN_PROCESS_DEDUPE)``,
  and that ``LocalStep`` carries the measured reason. Any other runner gets the
  stateful flavour; tests run both flavours on the local runner
  (``tests/streaming/test_streaming_transforms.py``).

**The streaming horizon is measured from arrival.** The streaming job reads Pub/Sub with
no ``timestamp_attribute`` and no ``id_label`` (docs/streaming.md): every message enters
with its publish time as its timestamp, and the watermark follows publish time (on
Dataflow Pub/Sub's estimate of the oldest unacknowledged publish time; locally the wall
clock at each pull). ``ParseEvents(event_timestamps=False)`` keeps that timestamp, so
both streaming variants see each event's arrival, remember its id until
``max(event_ts, arrival) + horizon`` and emit the event stamped with its ``event_ts``
for the windows downstream. An expiry at ``event_ts + horizon`` alone (the code before
Dec 2026) is already due for any event older than the horizon when it arrives: a
2-hour-old event published twice a second apart came out twice, which hit offline
clients, publisher retries and ``replay`` without ``--retime`` (it re-sends the same
ids on purpose).
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
from apache_beam.utils.timestamp import Timestamp

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


def expiry_seconds(event_time: float, arrival: float, horizon_seconds: float) -> float:
    """When an ``event_id`` may be forgotten: ``max(event time, arrival) + horizon`` (epoch seconds).

    ``arrival`` is the element's timestamp as the reader gave it (the publish time). The
    later of the two: an old event (an offline client, a replay) is remembered for a
    horizon after it arrived; an event stamped ahead of its publish time (clock skew,
    at most ``events.MAX_FUTURE_SKEW``) until its own time plus the horizon.
    """
    return max(event_time, arrival) + horizon_seconds


class DeduplicateEventsStatefulFn(beam.DoFn):
    """Stateful DoFn on (event_id, event): emit the first delivery, drop the rest.

    State per key: one boolean (``seen``) plus one event-time timer that clears it when
    the watermark passes :func:`expiry_seconds` (the element's timestamp is its arrival).
    The event leaves stamped with its ``event_ts``.
    """

    def __init__(self, horizon_seconds: float):
        self._horizon = horizon_seconds
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
        arrival = timestamp.micros / 1e6
        expiry.set(Timestamp.of(expiry_seconds(event["event_time"], arrival, self._horizon)))
        yield TimestampedValue(event, event["event_time"])

    @on_timer(_EXPIRY)
    def expire(self, seen=_SEEN_PARAM):
        seen.clear()


class DeduplicateEventsStateful(beam.PTransform):
    """Streaming dedupe on ``event_id``: the first delivery wins within a horizon of its arrival.

    Input: events whose element timestamp is their arrival (the Pub/Sub publish time:
    ``ParseEvents(event_timestamps=False)``). An input already stamped with event time
    works too, but then the horizon runs from ``event_ts`` and an old event's copies
    are not caught (module docstring).

    Horizon: a key's state is kept until the watermark passes
    ``max(event_ts, arrival) + horizon`` (an event-time timer). A copy published up to
    ``horizon`` after the first delivery is dropped whatever its ``event_ts``; a copy
    published later is written again, and the ``user_behavior_dedup`` view removes it at
    query time. The watermark (publish time) and not the worker's clock, because it
    stops with the job: while a backlog drains after an outage, ids stay remembered for
    as long as the backlog needs, and tests are deterministic.

    Output: the first delivery of each id, stamped with its ``event_ts``.

    State cost: one entry per distinct ``event_id`` whose arrival (or event time, when
    later) is within the horizon of the watermark: the key (~36-byte UUID), a 1-byte
    flag and a timer, about 100-150 bytes on Dataflow Streaming Engine. At 1,000
    events/s and the default 60-minute horizon that is 3.6 M keys, roughly 0.4-0.6 GB;
    it scales linearly with rate x horizon. Bounds beyond that: an event stamped in the
    future (at most ``events.MAX_FUTURE_SKEW``, an hour) is kept that much longer, and
    while the watermark lags (a backlog draining) the ids read in the meantime wait for it.

    Why not ``apache_beam.transforms.deduplicate.DeduplicatePerKey``: it has no counter
    for the dropped duplicates, and the conservation check
    (``valid = written + duplicates_removed``) needs one; its event-time mode has the
    same ``event_ts + horizon`` flaw for old events.

    Args:
      horizon_seconds: how long after its arrival an ``event_id`` is remembered (> 0).
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

    def process(self, event, timestamp=beam.DoFn.TimestampParam):
        event_time = event["event_time"]
        expires_at = expiry_seconds(event_time, timestamp.micros / 1e6, self._horizon)
        if self._ids.first_sighting(event["event_id"], expires_at):
            yield TimestampedValue(event, event_time)
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

    Same contract: the first delivery of an ``event_id`` wins; a repeat published while
    its id is remembered is dropped and counted in ``duplicates_removed``; the winner
    leaves stamped with its ``event_ts``. An id is forgotten once the clock passes
    ``max(event_ts, arrival) + horizon`` (:func:`expiry_seconds`; arrival is the
    element's timestamp, the publish time), checked between bundles. The clock is wall
    time, which is what the watermark of a Pub/Sub read is on that runner, so the
    stateful variant's event-time timers would fire at the same moments there.

    Not for Dataflow or any multi-process runner (each worker would have its own map):
    the streaming job uses it only when the runner is ``BundleBasedDirectRunner``
    (``runners.LocalStep.IN_PROCESS_DEDUPE``).
    Like that runner's state, the ids do not survive a restart.

    Args:
      horizon_seconds: how long after its arrival an ``event_id`` is remembered (> 0).
      clock: epoch seconds now (for tests; default ``time.time``).
    """

    def __init__(self, horizon_seconds: float, clock: Callable[[], float] = time.time):
        super().__init__()
        if not horizon_seconds or horizon_seconds <= 0:
            raise ValueError(f"horizon_seconds must be a positive number of seconds, got {horizon_seconds!r}")
        self._fn = DeduplicateEventsInProcessFn(uuid.uuid4().hex, horizon_seconds, clock)

    def expand(self, events):
        return events | "DropRepeatedEventIds" >> beam.ParDo(self._fn)
