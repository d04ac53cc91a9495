"""Create, list and restore Pub/Sub topics and subscriptions idempotently (emulator or real Pub/Sub)."""

from __future__ import annotations

import os
from contextlib import contextmanager, suppress

from google.api_core.exceptions import AlreadyExists


@contextmanager
def emulator_env(host: str | None):
    """Point google-cloud-pubsub clients created inside the block at ``host``."""
    if not host:
        yield
        return
    old = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = old


def ensure_topic(project: str, topic: str, host: str | None = None) -> str:
    from google.cloud import pubsub_v1

    if len(topic) < 3:
        raise ValueError(f"topic id {topic!r} is too short: Pub/Sub needs at least 3 characters")
    with emulator_env(host):
        publisher = pubsub_v1.PublisherClient()
        path = publisher.topic_path(project, topic)
        with suppress(AlreadyExists):
            publisher.create_topic(name=path)
    return path


def ensure_subscription(
    project: str, topic: str, subscription: str, host: str | None = None, ack_deadline_seconds: int = 60
) -> str:
    from google.cloud import pubsub_v1

    topic_path = ensure_topic(project, topic, host)
    with emulator_env(host):
        subscriber = pubsub_v1.SubscriberClient()
        path = subscriber.subscription_path(project, subscription)
        try:
            subscriber.create_subscription(name=path, topic=topic_path, ack_deadline_seconds=ack_deadline_seconds)
        except AlreadyExists:
            pass
        finally:
            subscriber.close()
    return path


def list_subscriptions(project: str, host: str | None = None) -> list[dict[str, object]]:
    """Every subscription of ``project`` with its topic and ack deadline (topics deleted since are left out)."""
    from google.cloud import pubsub_v1

    with emulator_env(host):
        subscriber = pubsub_v1.SubscriberClient()
        try:
            found = [
                {"subscription": s.name, "topic": s.topic, "ack_deadline_seconds": s.ack_deadline_seconds}
                for s in subscriber.list_subscriptions(request={"project": f"projects/{project}"}, timeout=10)
            ]
        finally:
            subscriber.close()
    return [s for s in found if s["topic"] and not str(s["topic"]).startswith("_deleted")]


def restore_subscription(record: dict[str, object], host: str | None = None) -> bool:
    """Create a recorded subscription (and its topic) unless it exists; True when it had to be created."""
    from google.cloud import pubsub_v1

    sub_project, _, sub_name = str(record["subscription"]).split("/", 3)[1:]
    topic_project, _, topic_name = str(record["topic"]).split("/", 3)[1:]
    ensure_topic(topic_project, topic_name, host)
    with emulator_env(host):
        subscriber = pubsub_v1.SubscriberClient()
        try:
            subscriber.create_subscription(
                name=subscriber.subscription_path(sub_project, sub_name),
                topic=str(record["topic"]),
                ack_deadline_seconds=int(record.get("ack_deadline_seconds") or 60),
            )
            return True
        except AlreadyExists:
            return False
        finally:
            subscriber.close()
