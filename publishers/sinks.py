"""Open where a run's messages go: a Pub/Sub topic (checked to exist first) or a JSONL file.

:func:`open_sink` turns the destination options shared by ``python -m publishers.simulator
publish`` and ``... replay`` (:class:`SinkOptions`) into a sink of
:mod:`publishers.publishing` and a description for the progress line and the manifest.
It raises :class:`SinkError`, with what to change, before any message is sent: a missing
or malformed topic, or a topic that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from beam_pipelines import preflight
from publishers.publishing import BatchConfig, JsonlSink, PubSubSink, make_publisher, target_description, topic_path


class SinkError(RuntimeError):
    """The destination cannot be opened as asked; the message says what to change."""


@dataclass
class SinkOptions:
    """The destination options of a run, as the simulator's command line gives them."""

    project: str | None = None
    topic: str | None = None
    output_jsonl: Path | None = None
    batch: BatchConfig = field(default_factory=BatchConfig)
    create_topic: bool = False
    progress: bool = True


def open_sink(opts: SinkOptions):
    """A :class:`PubSubSink` or :class:`JsonlSink` and its description."""
    if opts.output_jsonl:
        return JsonlSink(Path(opts.output_jsonl)), f"file {opts.output_jsonl}"
    if not opts.topic:
        raise SinkError("pass --topic (and --project), or --output-jsonl PATH to write a file instead")
    try:
        path = topic_path(opts.project, opts.topic)
    except ValueError as exc:
        raise SinkError(str(exc)) from None
    if opts.create_topic:
        from beam_pipelines.local.pubsub_admin import ensure_topic

        project, topic = path.split("/")[1], path.split("/")[3]
        ensure_topic(project, topic)
    client = make_publisher(opts.batch)
    preflight.require_topic(path, client)  # did you mean --topic user-events?
    return PubSubSink(client, path), target_description(path)
