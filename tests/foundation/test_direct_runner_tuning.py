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


class _Subscriber(_RecordingSubscriber):
    """Answers each pull with the next response (or raises it); records acks and deadline changes."""

    def __init__(self, *responses):
        super().__init__()
        self.responses = list(responses)
        self.acked: list[tuple[str, list[str]]] = []
        self.extended: list[list[str]] = []

    def pull(self, **kwargs):
        self.calls.append(kwargs)
        answer = self.responses.pop(0) if self.responses else _response()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def acknowledge(self, subscription, ack_ids):
        self.acked.append((subscription, list(ack_ids)))

    def modify_ack_deadline(self, subscription, ack_ids, ack_deadline_seconds):
        self.extended.append(list(ack_ids))


def _response(*message_ids):
    from google.pubsub_v1 import PubsubMessage, PullResponse, ReceivedMessage

    return PullResponse(
        received_messages=[
            ReceivedMessage(ack_id=f"ack-{m}", message=PubsubMessage(message_id=m, data=b"{}")) for m in message_ids
        ]
    )


def _archived(*message_ids):
    from beam_pipelines import event_archive
    from beam_pipelines.transforms.archive import ArchivedFile

    return ArchivedFile("/lake/f.pubsub.jsonl", [event_archive.encode(b"{}", None, None, m) for m in message_ids])


def test_a_pull_is_acknowledged_only_once_the_archive_holds_it(tuned, monkeypatch):
    from beam_pipelines import direct_runner_tuning as tuning

    real = _Subscriber(_response("m1", "m2"))
    client = _client_over(real)
    tuning.hold_acks_until_archived("projects/p/subscriptions/held")
    pulled = client.pull(subscription="projects/p/subscriptions/held", max_messages=10, timeout=30)
    assert len(pulled.received_messages) == 2
    # The runner acknowledges every pull right after reading it: held instead.
    client.acknowledge(subscription="projects/p/subscriptions/held", ack_ids=["ack-m1", "ack-m2"])
    assert real.acked == [] and tuning.unacknowledged() == 2
    tuning.AcknowledgeArchivedFn().process(_archived("m1", "other-run"))
    client.pull(subscription="projects/p/subscriptions/held")  # acks are sent before the next pull
    assert real.acked == [("projects/p/subscriptions/held", ["ack-m1"])] and tuning.unacknowledged() == 1
    monkeypatch.setattr(tuning, "EXTEND_AFTER_SECONDS", 0.0)
    client.pull(subscription="projects/p/subscriptions/held")  # m2 still waits: its deadline is extended
    assert real.extended[-1] == ["ack-m2"]
    # Another read in the same process (no archive step) acknowledges as the runner does.
    client.acknowledge(subscription="projects/p/subscriptions/other", ack_ids=["x"])
    assert real.acked[-1] == ("projects/p/subscriptions/other", ["x"])


def test_a_subscription_missing_past_the_grace_is_reported_and_its_acks_dropped(tuned, monkeypatch):
    from google.api_core.exceptions import NotFound

    from beam_pipelines import direct_runner_tuning as tuning

    monkeypatch.setattr(tuning, "PULL_WAIT_SECONDS", 0.01)
    gone = NotFound("Resource not found (resource=gone)")
    real = _Subscriber(_response("m1"), gone, _response(), gone, gone)
    client = _client_over(real)
    tuning.hold_acks_until_archived("s")
    client.pull(subscription="s")
    assert tuning.missing_subscription() is None
    assert list(client.pull(subscription="s").received_messages) == []  # NotFound: no messages, no exception
    client.pull(subscription="s")  # found again (an emulator restart with `local up`): the grace starts over
    monkeypatch.setattr(tuning, "MISSING_SUBSCRIPTION_GRACE_SECONDS", 0.0)
    client.pull(subscription="s")
    assert tuning.missing_subscription() == "s"
    tuning.AcknowledgeArchivedFn().process(_archived("m1"))
    real.acknowledge = lambda **kw: (_ for _ in ()).throw(gone)
    client.pull(subscription="s")
    assert tuning.unacknowledged() == 0  # nothing to acknowledge on a subscription that is gone


def test_a_failed_step_is_recorded(tuned):
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.test_stream import TestStream

    from beam_pipelines import direct_runner_tuning as tuning

    def fail(element):
        raise OSError(f"storage said 403 for {element}")

    p = beam.Pipeline(runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True))
    _ = p | TestStream().add_elements(["a"]).advance_watermark_to_infinity() | beam.Map(fail)
    with pytest.raises(OSError, match="403"):
        p.run().wait_until_finish()
    assert "storage said 403 for a" in str(tuning.step_failure())
