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

It is applied, process-wide, by the streaming job's ``run()`` on that runner (unless
``--stock_direct_runner``) and by the streaming benchmark to the cases it measures
as the job runs. The streaming transform tests run each TestStream case on the stock
and the tuned runner and expect identical results; :func:`restore_stock_runner`
undoes the tuning.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from typing import Any

_LOG = logging.getLogger(__name__)
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


class _LargerPulls:
    """A Pub/Sub SubscriberClient whose ``pull`` asks for up to ``max_messages`` at once."""

    def __init__(self, client: Any, max_messages: int):
        self._client = client
        self._max_messages = max_messages

    def pull(self, *args: Any, **kwargs: Any) -> Any:
        from google.api_core.exceptions import DeadlineExceeded
        from google.pubsub_v1 import PullResponse

        if _pulls_paused.is_set():
            time.sleep(PAUSED_PULL_SECONDS)
            return PullResponse()
        kwargs["max_messages"] = self._max_messages
        # The runner's one worker thread waits in this call; processing-time timers
        # (the archive's flushes) and a clean stop can only act after it returns.
        kwargs["timeout"] = PULL_WAIT_SECONDS
        try:
            return self._client.pull(*args, **kwargs)
        except DeadlineExceeded:  # an idle subscription: nothing to read in that time
            return PullResponse()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def tune_bundle_based_direct_runner() -> None:
    """Apply the four changes above in this process (idempotent)."""
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
    _originals.clear()
    resume_pulls()


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
