"""The BundleBasedDirectRunner tuning changes the runner's cost, not its answers.

The TestStream cases in tests/streaming/test_streaming_transforms.py run on both the
stock and the tuned runner; these check the memoised DoFn inspection directly.
"""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.runners.direct import transform_evaluator
from apache_beam.transforms import userstate

from beam_pipelines.direct_runner_tuning import (
    PULL_MAX_MESSAGES,
    PULL_WAIT_SECONDS,
    is_tuned,
    restore_stock_runner,
    tune_bundle_based_direct_runner,
)
from beam_pipelines.transforms.dedupe import DeduplicateEventsStatefulFn
from beam_pipelines.transforms.enrich import EnrichEventFn

_STATE = userstate.ReadModifyWriteStateSpec("n", beam.coders.VarIntCoder())


class _Holder:
    def stateful(self, element, n=beam.DoFn.StateParam(_STATE)):  # noqa: B008 - Beam's declaration idiom
        yield element


def _dofns():
    return {
        "stateful DoFn": DeduplicateEventsStatefulFn(60),
        "plain DoFn": EnrichEventFn("stream"),
        "Map(lambda)": beam.Map(lambda x: x).dofn,
        "Map(bound method with state)": beam.ParDo(_Holder().stateful).dofn,
    }


@pytest.fixture
def tuned():
    was_tuned = is_tuned()
    tune_bundle_based_direct_runner()
    yield
    restore_stock_runner()
    if was_tuned:
        tune_bundle_based_direct_runner()


def test_memoised_state_and_timer_specs_equal_the_runners_own(tuned):
    restore_stock_runner()
    expected = {name: userstate.get_dofn_specs(dofn) for name, dofn in _dofns().items()}
    tune_bundle_based_direct_runner()
    for name, dofn in _dofns().items():
        for _ in range(2):  # a miss, then a hit
            assert userstate.get_dofn_specs(dofn) == expected[name], name
            assert transform_evaluator.get_dofn_specs(dofn) == expected[name], name
    assert userstate.is_stateful_dofn(_dofns()["stateful DoFn"])
    assert not userstate.is_stateful_dofn(_dofns()["plain DoFn"])


def test_a_caller_cannot_corrupt_the_memo(tuned):
    dofn = DeduplicateEventsStatefulFn(60)
    states, timers = userstate.get_dofn_specs(dofn)
    states.clear()
    timers.clear()
    assert userstate.get_dofn_specs(dofn) != (set(), set())


def test_restore_gives_back_the_stock_runner(tuned):
    restore_stock_runner()
    assert not is_tuned()
    assert transform_evaluator.get_dofn_specs is userstate.get_dofn_specs
    assert not hasattr(userstate.get_dofn_specs, "__wrapped__")  # functools.wraps marks the tuned ones
    assert not hasattr(transform_evaluator._ParDoEvaluator.__init__, "__wrapped__")
    reader = transform_evaluator._PubSubReadEvaluator
    assert reader.__dict__["_get_subscriber_client"].__func__.__name__ == "_get_subscriber_client"


class _RecordingSubscriber:
    def __init__(self):
        self.calls = []

    def pull(self, **kwargs):
        self.calls.append(kwargs)
        return "response"

    def acknowledge(self, **kwargs):
        return "acked"


def test_tuned_pubsub_reads_ask_for_larger_pulls(tuned):
    # The runner's own evaluator calls pull(subscription=..., max_messages=10, timeout=30);
    # here the client it gets back is called the same way.
    reader = transform_evaluator._PubSubReadEvaluator
    real, transform = _RecordingSubscriber(), _RecordingSubscriber()  # any weak-referenceable key
    reader._subscriber_client_cache[transform] = type("State", (), {"client": real})()
    try:
        client = reader._get_subscriber_client(transform)
        assert client.pull(subscription="projects/p/subscriptions/s", max_messages=10, timeout=30) == "response"
        assert client.acknowledge(subscription="s", ack_ids=[]) == "acked"  # everything else passes through
    finally:
        del reader._subscriber_client_cache[transform]
    assert real.calls == [
        {"subscription": "projects/p/subscriptions/s", "max_messages": PULL_MAX_MESSAGES, "timeout": PULL_WAIT_SECONDS}
    ]


class _IdleSubscriber(_RecordingSubscriber):
    def pull(self, **kwargs):
        from google.api_core.exceptions import DeadlineExceeded

        self.calls.append(kwargs)
        raise DeadlineExceeded("no message in time")


def _client_over(real):
    reader = transform_evaluator._PubSubReadEvaluator
    transform = _RecordingSubscriber()
    reader._subscriber_client_cache[transform] = type("State", (), {"client": real})()
    try:
        return reader._get_subscriber_client(transform)
    finally:
        del reader._subscriber_client_cache[transform]


def test_an_idle_pull_answers_no_messages_and_a_paused_one_never_reaches_pubsub(tuned):
    from beam_pipelines.direct_runner_tuning import pause_pulls, resume_pulls

    idle = _IdleSubscriber()
    client = _client_over(idle)
    assert list(client.pull(subscription="s", max_messages=10, timeout=30).received_messages) == []
    assert len(idle.calls) == 1
    assert pause_pulls()
    try:
        assert list(client.pull(subscription="s", max_messages=10, timeout=30).received_messages) == []
        assert len(idle.calls) == 1  # nothing asked of Pub/Sub, nothing acknowledged
    finally:
        resume_pulls()


def test_counters_of_every_bundle_are_kept(tuned):
    """The stock runner counts only each step's first bundle per worker thread (measured)."""
    from apache_beam.io.gcp.pubsub import PubsubMessage
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.test_stream import TestStream

    from beam_pipelines.batch_run import counters
    from beam_pipelines.transforms.parse import ParseEvents

    stream = TestStream()
    for i in range(5):  # five bundles of three messages
        stream = stream.add_elements([PubsubMessage(b"{}", None) for _ in range(3)]).advance_watermark_to(i + 1)
    p = beam.Pipeline(runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True))
    _ = p | stream.advance_watermark_to_infinity() | ParseEvents("p")
    result = p.run()
    result.wait_until_finish()
    assert counters(result)["records_in"] == 15
