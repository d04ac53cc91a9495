"""Local-only tuning of the BundleBasedDirectRunner's fixed cost per bundle.

The streaming job runs locally on Beam's ``BundleBasedDirectRunner``, which runs every
10-message Pub/Sub pull as one bundle through every step. Profiling the job there
(py-spy, ``benchmarks.streaming_throughput``, docs/streaming.md) showed about a quarter
of the runner thread's time in two things it does for *every bundle of every ParDo*,
neither of which any production runner does:

1. it pickles and unpickles the DoFn (``pickler.roundtrip``), a serialisation test;
2. it inspects the DoFn's methods' signatures to find state and timer parameters
   (``userstate.get_dofn_specs`` walks ``dir(dofn)`` and calls ``inspect.signature``
   on each of ~30 methods), four to six times per bundle, on each fresh copy.

:func:`tune_bundle_based_direct_runner` turns the first off (the runner then reuses the
transform's DoFn object across bundles, as Dataflow reuses DoFn instances; it still
calls ``setup``/``start_bundle``/``finish_bundle``/``teardown`` around every bundle) and
memoises the second per DoFn object (the answer is a property of the object, which no
longer changes between bundles). Pickling is still exercised when the pipeline is
built and on every non-local runner. Nothing else changes: same evaluators, same
watermarks, same state and timers.

It is applied, process-wide, by the streaming job's ``run()`` on that runner (unless
``--stock_direct_runner``) and by the streaming benchmark to every case it measures.
The streaming transform tests run each TestStream case on the stock and the tuned
runner and expect identical results; :func:`restore_stock_runner` undoes the tuning.
"""

from __future__ import annotations

import functools
import logging
import weakref
from typing import Any

_LOG = logging.getLogger(__name__)
# The replaced originals while the tuning is applied, else empty.
_originals: dict[str, Any] = {}


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


def tune_bundle_based_direct_runner() -> None:
    """Apply the two changes above in this process (idempotent)."""
    if _originals:
        return
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.transforms import userstate

    _originals.update(
        get_dofn_specs=userstate.get_dofn_specs, par_do_init=transform_evaluator._ParDoEvaluator.__init__
    )
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
    _LOG.info("BundleBasedDirectRunner tuned: DoFn reused across bundles, state/timer specs memoised")


def restore_stock_runner() -> None:
    """Undo :func:`tune_bundle_based_direct_runner` (for tests that compare both)."""
    if not _originals:
        return
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.transforms import userstate

    userstate.get_dofn_specs = transform_evaluator.get_dofn_specs = _originals["get_dofn_specs"]
    transform_evaluator._ParDoEvaluator.__init__ = _originals["par_do_init"]
    _originals.clear()


def is_tuned() -> bool:
    return bool(_originals)
