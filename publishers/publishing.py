"""Fast, paced publishing of pre-built messages to Pub/Sub (emulator or real) or a JSONL file.

One :class:`google.cloud.pubsub_v1.PublisherClient` with explicit batch settings is
reused for the whole run; the hot loop only calls ``publish`` and appends the
future, and futures are resolved in bulk at the end, so the simulator runs at the
speed of the raw client (see ``benchmarks/publisher_throughput.py``).

Whether messages go to the emulator or to Google Cloud is decided by the
environment only: with ``PUBSUB_EMULATOR_HOST`` set, the client library talks to
the emulator without credentials; otherwise it uses Application Default Credentials.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

TOPIC_PATH = re.compile(r"^projects/(?P<project>[^/]+)/topics/(?P<topic>[^/]+)$")
PROGRESS_INTERVAL = 1.0  # seconds; never print more often


@dataclass(frozen=True)
class Message:
    """One Pub/Sub message: the data bytes and its string attributes."""

    data: bytes
    attributes: dict[str, str]


def topic_path(project: str | None, topic: str) -> str:
    """``projects/<p>/topics/<t>`` from a full path, or from ``project`` and a topic id.

    Raises:
      ValueError: naming the expected formats.
    """
    if TOPIC_PATH.match(topic or ""):
        return topic
    if not topic or "/" in topic:
        raise ValueError(f"topic {topic!r} must be a topic id (with --project) or projects/<project>/topics/<topic>")
    if not project:
        raise ValueError(f"topic id {topic!r} needs --project (or pass projects/<project>/topics/<topic>)")
    if len(topic) < 3:
        raise ValueError(f"topic id {topic!r} is too short: Pub/Sub topic ids have at least 3 characters")
    return f"projects/{project}/topics/{topic}"


def target_description(path: str) -> str:
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    return f"{path} on the Pub/Sub emulator at {host}" if host else f"{path} on Google Cloud Pub/Sub"


class Progress:
    """Live progress on stderr (``sent``, rate, errors) at most once per :data:`PROGRESS_INTERVAL`."""

    def __init__(self, total: int, label: str = "published", stream: IO[str] | None = None, enabled: bool = True):
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.start = time.monotonic()
        self._next = self.start + PROGRESS_INTERVAL
        self.base = 0  # messages sent by earlier chunks of the same run
        self.errors = 0  # errors of earlier chunks

    def due(self, now: float) -> bool:
        return self.enabled and now >= self._next

    def report(self, sent: int, errors: int, now: float | None = None, final: bool = False) -> None:
        now = time.monotonic() if now is None else now
        if not self.enabled or (not final and now < self._next):
            return
        self._next = now + PROGRESS_INTERVAL
        elapsed = max(now - self.start, 1e-9)
        pct = f" ({100.0 * sent / self.total:5.1f}%)" if self.total else ""
        self.stream.write(
            f"{'done: ' if final else ''}{self.label} {sent:,}/{self.total:,}{pct}  "
            f"{sent / elapsed:,.0f} msg/s  errors {errors:,}  {elapsed:,.1f} s\n"
        )
        self.stream.flush()


@dataclass
class PublishStats:
    sent: int = 0  # acknowledged by the server (or written to the file)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchConfig:
    max_messages: int = 1000
    max_latency: float = 0.05
    max_bytes: int = 5 * 1024 * 1024

    def settings(self):
        from google.cloud import pubsub_v1

        return pubsub_v1.types.BatchSettings(
            max_messages=self.max_messages, max_latency=self.max_latency, max_bytes=self.max_bytes
        )


def make_publisher(batch: BatchConfig):
    """One publisher client for the whole run (emulator or real Pub/Sub, decided by the environment)."""
    # Lazy (here and in BatchConfig.settings): google.cloud.pubsub_v1 takes ~1.4 s to import
    # (python -X importtime) and a JSONL run needs none of it; the simulator loads it anyway
    # today, through apache_beam, so this saves time only for other importers of this module.
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient(batch_settings=batch.settings())


class PubSubSink:
    """Publishes messages with one reused client; ``schedule(i)`` paces message ``i`` (seconds from start)."""

    def __init__(self, client, path: str):
        self.client = client
        self.path = path

    def send(
        self,
        messages: Sequence[Message],
        schedule: Callable[[int], float] | None = None,
        progress: Progress | None = None,
        offset: int = 0,
        start: float | None = None,
    ) -> PublishStats:
        """Publish ``messages`` (numbered from ``offset`` for the schedule); wait for all futures."""
        stats = PublishStats()
        publish = self.client.publish
        path = self.path
        futures: list = []
        append = futures.append
        monotonic = time.monotonic
        t_start = monotonic() if start is None else start
        for i, msg in enumerate(messages):
            if schedule is not None:
                delay = t_start + schedule(offset + i) - monotonic()
                if delay > 0:
                    time.sleep(delay)
            append(publish(path, msg.data, **msg.attributes))
            if progress is not None and (i & 1023) == 0:
                now = monotonic()
                if progress.due(now):
                    # Handed to the client; acks are only counted at the end (polling futures costs throughput).
                    progress.report(progress.base + i, progress.errors, now)
        concurrent.futures.wait(futures)
        for fut in futures:
            exc = fut.exception()
            if exc is None:
                stats.sent += 1
            else:
                stats.errors += 1
                if len(stats.error_samples) < 5:
                    stats.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
        return stats


class JsonlSink:
    """Writes each message's data as one line (what Pub/Sub would carry) instead of publishing."""

    def __init__(self, path: Path):
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "wb")  # noqa: SIM115 - closed by close()

    def send(
        self, messages: Sequence[Message], schedule=None, progress=None, offset: int = 0, start: float | None = None
    ) -> PublishStats:
        t_start = time.monotonic() if start is None else start
        for i, msg in enumerate(messages):
            if schedule is not None:
                delay = t_start + schedule(offset + i) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if b"\n" in msg.data:
                raise ValueError("a message contains a newline and cannot be written as one JSONL line")
            self._fh.write(msg.data + b"\n")
            if progress is not None and (i & 255) == 0 and progress.due(time.monotonic()):
                progress.report(progress.base + i, progress.errors)
        self._fh.flush()
        return PublishStats(sent=len(messages))

    def close(self) -> None:
        self._fh.close()
