"""Local-only tuning of the BundleBasedDirectRunner's fixed cost per bundle.

The streaming job runs locally on Beam's ``BundleBasedDirectRunner``, which runs every
Pub/Sub pull as one bundle through every step, on one worker thread. Profiling the job
there (py-spy, ``benchmarks.streaming_throughput``, docs/streaming.md) showed most of
the runner thread's time in fixed costs per bundle that no production runner has:

1. for every bundle of every ParDo it pickles and unpickles the DoFn
   (``pickler.roundtrip``, a serialisation test);
2. on each fresh copy it inspects the DoFn's methods' signatures for state and timer
   parameters (``userstate.get_dofn_specs`` walks ``dir(dofn)`` and calls
   ``inspect.signature`` on ~30 methods), four to six times per bundle;
3. it pulls at most 10 messages per Pub/Sub request, so every step, and every
   BigQuery insert request (~15 ms against the emulator), is paid per 10 events, and
   on an idle subscription each pull waits 30 s, holding back every processing-time
   timer (the archive's flushes) and a cancel for that long.

And one defect: each worker thread keeps one ``StateSampler`` whose ``scoped_state``
caches the step's state, with the *first* bundle's ``MetricsContainer`` in it
(``statesampler.py``, ``_states_by_name``), so every later bundle of that step on that
thread counts into a container that was already committed: the job's counters stop
at the first bundle of each step (measured: ``records_in`` 100 after 390 messages).
:func:`tune_bundle_based_direct_runner` gives each bundle a fresh sampler (4), so the
counters a local run prints, and the clean stop that waits on them, are exact.

:func:`tune_bundle_based_direct_runner` turns 1 off (the runner then reuses the
transform's DoFn object across bundles, as Dataflow reuses DoFn instances; it still
calls ``setup``/``start_bundle``/``finish_bundle``/``teardown`` around every bundle),
memoises 2 per DoFn object (a property of the object, which no longer changes between
bundles), and raises 3 to :data:`PULL_MAX_MESSAGES` with a :data:`PULL_WAIT_SECONDS` wait
(a pull returns what is there, up to that, so a slow stream is not delayed). Pickling is still exercised when the
pipeline is built and on every other runner. Nothing else changes: same evaluators,
watermarks, state, timers and acknowledgement (at pull time, so a killed local job
loses up to one pull of in-flight messages, as before but per 100).

The same pull wrapper lets a clean local stop (``streaming.run_until_stopped``) pause
pulling: :func:`pause_pulls` makes every later pull return no messages, so nothing
more is acknowledged while what was pulled drains into BigQuery and the lake.

**Acknowledged once archived** (:func:`hold_acks_until_archived`, turned on by the
streaming job). The stock runner acknowledges a pull as soon as it has read it, so a
job killed with SIGKILL lost what it had pulled but not yet archived while BigQuery
already held it (measured before Dec 2026: 2,000 messages, a SIGKILL mid-stream and a
restart, 91 valid events in ``user_behavior`` and not in the lake). With the hold on,
the wrapper keeps each pulled message's ack id until the job's archive step reports the
message in a lake file (:class:`AcknowledgeArchivedFn`, after ``ArchiveMessages``), acks
it at the next pull, and extends the ack deadline of messages held longer than
:data:`EXTEND_AFTER_SECONDS`. A killed job's unarchived messages are redelivered to the
next run, as Dataflow redelivers what it had not committed. What the hold does not
cover: a message archived but not yet inserted into BigQuery when the process dies is
in the lake only (the archive flushes every 5 s locally, inserts happen per pull, so
this needs BigQuery to lag the archive); the hourly job over the lake inserts the
stream rows ``user_behavior`` lacks.

**A failed step stops the job.** The runner logs a step's exception as a warning
(``A task failed with exception``), drops that bundle and runs on, and the pipeline's
state stays RUNNING: a job whose archive could not write went on without the lake.
The tuning records the first failure (:func:`step_failure`); the streaming job's run loop
then stops with that error (exit 1). What the failed bundle held was not acknowledged,
so the next run reads it again.

**A deleted subscription stops the job.** A pull answered ``NotFound`` for
:data:`MISSING_SUBSCRIPTION_GRACE_SECONDS` in a row (the emulator restarted without it,
someone deleted it) marks the read as failed (:func:`missing_subscription`); the
streaming job's run loop then stops with one line and exit code 3 instead of staying
alive doing nothing. The grace covers ``local up`` restarting the emulator and
recreating the subscription.

It is applied, process-wide, by the streaming job's ``run()`` on that runner (unless
``--stock_direct_runner``) and by the streaming benchmark to the cases it measures
as the job runs. The streaming transform tests run each TestStream case on the stock
and the tuned runner and expect identical results; :func:`restore_stock_runner`
undoes the tuning.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import weakref
from typing import Any

import apache_beam as beam

_LOG = logging.getLogger(__name__)
# Ack deadlines of messages held for the archive are extended after this long (the
# archive flushes every 5 s locally; a subscription's deadline is 10 s at least).
EXTEND_AFTER_SECONDS = 5.0
EXTENDED_DEADLINE_SECONDS = 60
MISSING_SUBSCRIPTION_GRACE_SECONDS = 10.0
# Messages per Pub/Sub pull, hence per bundle (the stock runner asks for 10). Measured
# with benchmarks.streaming_throughput, 3,000 messages: the job drained 247 ev/s at 10,
# 936 at 100 and 793 at 500; publish -> row p95 at 100 ev/s stayed 0.23-0.26 s.
PULL_MAX_MESSAGES = 100
# The replaced originals while the tuning is applied, else empty.
_originals: dict[str, Any] = {}
_pulls_paused = threading.Event()
# How long a paused pull waits before answering "no messages" (the runner asks again at once).
PAUSED_PULL_SECONDS = 0.2
# How long a pull waits on an idle subscription (the stock runner: 30 s, which also held
# back every processing-time timer and a cancel for up to that long).
PULL_WAIT_SECONDS = 2.0


def _memoised_per_dofn(get_dofn_specs):
    cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @functools.wraps(get_dofn_specs)
    def cached(dofn: Any):
        try:
            specs = cache.get(dofn)
        except TypeError:  # an unhashable or non-weakrefable DoFn: no caching
            return get_dofn_specs(dofn)
        if specs is None:
            specs = get_dofn_specs(dofn)
            cache[dofn] = specs
        state_specs, timer_specs = specs
        # Callers get their own sets, as from the original.
        return set(state_specs), set(timer_specs)

    return cached


class _AckLedger:
    """Pulled messages whose acknowledgement waits until the archive holds them (module docstring)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.subscriptions: set[str] = set()  # the reads whose acks are held (the streaming job's)
        self._held: dict[str, list] = {}  # message id -> [ack id, subscription, monotonic time last extended]
        self._archived: set[str] = set()  # held message ids a lake file now holds
        self._retry: dict[str, list[str]] = {}  # ack ids whose acknowledgement failed, by subscription

    def hold(self, subscription: str, received_messages) -> None:
        now = time.monotonic()
        with self._lock:
            for rm in received_messages:
                self._held[rm.message.message_id] = [rm.ack_id, subscription, now]

    def mark_archived(self, message_ids) -> None:
        with self._lock:
            self._archived.update(m for m in message_ids if m in self._held)

    def take_due(self) -> dict[str, list[str]]:
        """Ack ids of archived messages by subscription, no longer held."""
        with self._lock:
            due, self._retry = self._retry, {}
            for message_id in self._archived:
                ack_id, subscription, _ = self._held.pop(message_id)
                due.setdefault(subscription, []).append(ack_id)
            self._archived.clear()
        return due

    def put_back(self, subscription: str, ack_ids: list[str]) -> None:
        """Ack ids whose acknowledgement failed: tried again at the next pull."""
        with self._lock:
            self._retry.setdefault(subscription, []).extend(ack_ids)

    def take_stale(self) -> dict[str, list[str]]:
        """Ack ids held longer than EXTEND_AFTER_SECONDS by subscription (their clocks restart)."""
        now, stale = time.monotonic(), {}
        with self._lock:
            for entry in self._held.values():
                if now - entry[2] >= EXTEND_AFTER_SECONDS:
                    entry[2] = now
                    stale.setdefault(entry[1], []).append(entry[0])
        return stale

    def unacknowledged(self) -> int:
        with self._lock:
            return len(self._held) + sum(len(ids) for ids in self._retry.values())

    def clear(self) -> None:
        with self._lock:
            self._held.clear()
            self._archived.clear()
            self._retry.clear()


_ledger = _AckLedger()
_step_failures: list[BaseException] = []  # the first step exception of this process's runs
# subscription -> monotonic time of the first NotFound of the current run of them
_not_found_since: dict[str, float] = {}
_missing: list[str] = []  # subscriptions past the grace


class _LargerPulls:
    """A Pub/Sub SubscriberClient whose ``pull`` asks for up to ``max_messages`` at once.

    It also holds acknowledgements for the archive and watches for a deleted
    subscription (module docstring).
    """

    def __init__(self, client: Any, max_messages: int):
        self._client = client
        self._max_messages = max_messages

    def _settle_acks(self) -> None:
        from google.api_core.exceptions import NotFound

        for subscription, ack_ids in _ledger.take_due().items():
            try:
                self._client.acknowledge(subscription=subscription, ack_ids=ack_ids)
            except NotFound:  # the subscription is gone, and its messages with it: nothing left to acknowledge
                continue
            except Exception as exc:  # the emulator may be down: keep them and try again at the next pull
                _LOG.warning("acknowledging %d archived messages failed (%s); retrying", len(ack_ids), exc)
                _ledger.put_back(subscription, ack_ids)
        for subscription, ack_ids in _ledger.take_stale().items():
            try:
                self._client.modify_ack_deadline(
                    subscription=subscription, ack_ids=ack_ids, ack_deadline_seconds=EXTENDED_DEADLINE_SECONDS
                )
            except Exception as exc:  # a lapsed deadline only means a redelivery, which the job handles
                _LOG.warning("extending the ack deadline of %d messages failed (%s)", len(ack_ids), exc)

    def pull(self, *args: Any, **kwargs: Any) -> Any:
        from google.api_core.exceptions import DeadlineExceeded, NotFound
        from google.pubsub_v1 import PullResponse

        if _ledger.subscriptions:
            self._settle_acks()
        if _pulls_paused.is_set():
            time.sleep(PAUSED_PULL_SECONDS)
            return PullResponse()
        kwargs["max_messages"] = self._max_messages
        # The runner's one worker thread waits in this call; processing-time timers
        # (the archive's flushes) and a clean stop can only act after it returns.
        kwargs["timeout"] = PULL_WAIT_SECONDS
        subscription = kwargs.get("subscription") or (args[0] if args else "")
        try:
            response = self._client.pull(*args, **kwargs)
        except DeadlineExceeded:  # an idle subscription: nothing to read in that time
            _not_found_since.pop(subscription, None)
            return PullResponse()
        except NotFound as exc:
            _subscription_not_found(subscription, exc)
            time.sleep(PULL_WAIT_SECONDS)  # no busy loop while the job winds down
            return PullResponse()
        _not_found_since.pop(subscription, None)
        if subscription in _ledger.subscriptions:
            _ledger.hold(subscription, response.received_messages)
        return response

    def acknowledge(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("subscription") in _ledger.subscriptions:
            return None  # held until archived (the runner acks every pull right after reading it)
        return self._client.acknowledge(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _subscription_not_found(subscription: str, exc: Exception) -> None:
    now = time.monotonic()
    first = _not_found_since.setdefault(subscription, now)
    if first == now:
        _LOG.warning("Pub/Sub says subscription %s does not exist (%s)", subscription, getattr(exc, "message", exc))
    if now - first >= MISSING_SUBSCRIPTION_GRACE_SECONDS and subscription not in _missing:
        _missing.append(subscription)


def step_failure() -> BaseException | None:
    """The first exception a step of a tuned run raised, else None (module docstring)."""
    return _step_failures[0] if _step_failures else None


def missing_subscription() -> str | None:
    """A subscription every pull of the last MISSING_SUBSCRIPTION_GRACE_SECONDS found missing, else None."""
    return _missing[0] if _missing else None


class AcknowledgeArchivedFn(beam.DoFn):
    """ArchivedFile -> nothing: its messages' acknowledgements are released (module docstring).

    Local only (``runners.LocalStep.ACK_AFTER_ARCHIVE``): the ledger lives in this
    process, where the runner's Pub/Sub read runs.
    """

    def process(self, archived):
        ids = []
        for line in archived.lines:
            message_id = json.loads(line).get("message_id")
            if message_id:
                ids.append(message_id)
        _ledger.mark_archived(ids)


def hold_acks_until_archived(subscription: str) -> None:
    """Hold the acknowledgements of this process's tuned reads of ``subscription`` until archived.

    The streaming job turns it on for its own subscription (with its ``AcknowledgeArchived``
    step in the graph); other reads in the process ack as the runner does.
    """
    _ledger.subscriptions.add(subscription)


def unacknowledged() -> int:
    """Messages pulled and not yet acknowledged because the archive does not hold them yet."""
    return _ledger.unacknowledged()


def tune_bundle_based_direct_runner() -> None:
    """Apply the changes above in this process (idempotent)."""
    if _originals:
        return
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.transforms import userstate

    _originals.update(get_dofn_specs=userstate.get_dofn_specs, par_do_init=transform_evaluator._ParDoEvaluator.__init__)
    memoised = _memoised_per_dofn(_originals["get_dofn_specs"])
    # userstate's own callers (is_stateful_dofn, validate_stateful_dofn), runners.common
    # and direct_userstate look the name up in userstate at call time;
    # transform_evaluator imported it by name.
    userstate.get_dofn_specs = memoised
    transform_evaluator.get_dofn_specs = memoised
    original_init = _originals["par_do_init"]

    @functools.wraps(original_init)
    def init_without_pickle_test(self, *args: Any, **kwargs: Any) -> None:
        kwargs["perform_dofn_pickle_test"] = False
        original_init(self, *args, **kwargs)

    transform_evaluator._ParDoEvaluator.__init__ = init_without_pickle_test

    from apache_beam.runners.direct import executor
    from apache_beam.runners.worker import statesampler
    from apache_beam.utils import counters

    _originals["executor_call"] = executor.TransformExecutor.call
    original_call = _originals["executor_call"]

    @functools.wraps(original_call)
    def call_with_fresh_sampler(self, state_sampler: Any) -> Any:
        fresh = statesampler.StateSampler("", counters.CounterFactory())
        statesampler.set_current_tracker(fresh)
        try:
            return original_call(self, fresh)
        finally:
            statesampler.set_current_tracker(state_sampler)

    executor.TransformExecutor.call = call_with_fresh_sampler

    _originals["handle_exception"] = executor._CompletionCallback.handle_exception
    original_handle = _originals["handle_exception"]

    @functools.wraps(original_handle)
    def handle_exception_and_record(self, transform_executor: Any, exception: BaseException) -> Any:
        if not _step_failures:
            _step_failures.append(exception)
        return original_handle(self, transform_executor, exception)

    executor._CompletionCallback.handle_exception = handle_exception_and_record

    reader = transform_evaluator._PubSubReadEvaluator
    _originals["subscriber_client"] = reader.__dict__["_get_subscriber_client"]
    original_client = _originals["subscriber_client"].__func__

    def larger_pulls(cls, transform):
        return _LargerPulls(original_client(cls, transform), PULL_MAX_MESSAGES)

    reader._get_subscriber_client = classmethod(larger_pulls)
    _LOG.info(
        "BundleBasedDirectRunner tuned: DoFn reused across bundles, state/timer specs memoised, "
        "up to %d messages per Pub/Sub pull, counters of every bundle kept",
        PULL_MAX_MESSAGES,
    )


def restore_stock_runner() -> None:
    """Undo :func:`tune_bundle_based_direct_runner` (for tests that compare both)."""
    if not _originals:
        return
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.transforms import userstate

    userstate.get_dofn_specs = transform_evaluator.get_dofn_specs = _originals["get_dofn_specs"]
    transform_evaluator._ParDoEvaluator.__init__ = _originals["par_do_init"]
    transform_evaluator._PubSubReadEvaluator._get_subscriber_client = _originals["subscriber_client"]
    from apache_beam.runners.direct import executor

    executor.TransformExecutor.call = _originals["executor_call"]
    executor._CompletionCallback.handle_exception = _originals["handle_exception"]
    _originals.clear()
    _step_failures.clear()
    resume_pulls()
    _ledger.subscriptions.clear()
    _ledger.clear()
    _not_found_since.clear()
    _missing.clear()


def is_tuned() -> bool:
    return bool(_originals)


def pause_pulls() -> bool:
    """Make every later Pub/Sub pull of a tuned runner return no messages; False when untuned."""
    if not _originals:
        return False
    _pulls_paused.set()
    return True


def resume_pulls() -> None:
    _pulls_paused.clear()
