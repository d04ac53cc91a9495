"""Streaming job: Pub/Sub user events -> ``user_behavior``, ``engagement_minutely``, ``dead_letter``.

Pipeline::

    ReadEvents (Pub/Sub, event time from the event_ts attribute)
      -> ParseEvents -> DeduplicateEvents (first delivery per event_id within --dedup_horizon_minutes)
      -> EnrichWithDimensions (products/users side inputs reloaded every --dims_refresh_seconds)
      -> WriteUserBehavior
    deduplicated events -> ComputeEngagement (1-minute windows, late panes) -> WriteEngagement
    parse/validate rejects + BigQuery failed rows -> WriteDeadLetters

Run locally (emulators from ``python -m beam_pipelines.local up``; ``env`` prints the variables)::

    python -m beam_pipelines.streaming \\
      --project local-ecommerce \\
      --input_subscription projects/local-ecommerce/subscriptions/user-events-sub \\
      --output_table local-ecommerce:ecommerce.user_behavior \\
      --dead_letter_table local-ecommerce:ecommerce.dead_letter \\
      --engagement_table local-ecommerce:ecommerce.engagement_minutely \\
      --products_table local-ecommerce:ecommerce.products --users_table local-ecommerce:ecommerce.users

On Dataflow add ``--runner DataflowRunner --region ... --temp_location gs://... --setup_file ./setup.py``
(see docs/streaming.md for ``--update`` and drain). Step labels are stable: renaming one
breaks ``--update`` compatibility.
"""

from __future__ import annotations

import re
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms import window

from beam_pipelines import bq_local, cli, events, runners
from beam_pipelines.direct_runner_tuning import tune_bundle_based_direct_runner
from beam_pipelines.transforms.bigquery_sink import WriteDeadLetters, WriteRowsToTable, WriteUserBehavior
from beam_pipelines.transforms.dedupe import DeduplicateEventsInProcess, DeduplicateEventsStateful
from beam_pipelines.transforms.dimensions import (
    TICKER_PERIODIC_IMPULSE,
    TICKER_TIMER,
    BigQueryTableLoader,
    LakeSnapshotLoader,
    RefreshedDimension,
)
from beam_pipelines.transforms.enrich import EnrichWithDimensions
from beam_pipelines.transforms.parse import DEAD_LETTERS, EVENTS, ParseEvents
from beam_pipelines.transforms.windows import EngagementMetrics

PIPELINE = "streaming"
_SUBSCRIPTION = re.compile(r"^projects/[^/]+/subscriptions/[^/]+$")
_TABLE = re.compile(r"^[^:.]+:[^:.]+\.[^:.]+$")


class StreamingOptions(PipelineOptions):
    """Options of the streaming job (no defaults that name real resources)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input_subscription", help="Required. projects/<p>/subscriptions/<s> carrying user events"
        )
        parser.add_argument("--output_table", help="Required. user_behavior table, project:dataset.table (must exist)")
        parser.add_argument(
            "--dead_letter_table", help="Required. dead_letter table, project:dataset.table (must exist)"
        )
        parser.add_argument(
            "--engagement_table", help="Required. engagement_minutely table, project:dataset.table (must exist)"
        )
        parser.add_argument(
            "--products_table",
            help="products table, project:dataset.table (side input, reloaded); required unless --dims_lake_root",
        )
        parser.add_argument(
            "--users_table",
            help="users table, project:dataset.table (side input, reloaded); required unless --dims_lake_root",
        )
        parser.add_argument(
            "--dims_lake_root", help="read products/users from the lake's newest snapshots instead of BigQuery"
        )
        parser.add_argument(
            "--dims_refresh_seconds", type=float, default=300, help="side-input reload interval, seconds"
        )
        parser.add_argument("--dedup_horizon_minutes", type=float, default=60, help="how long event_ids are kept")
        parser.add_argument(
            "--allowed_lateness_minutes",
            type=float,
            default=10,
            help="how late an event may be and still count in its engagement window",
        )
        parser.add_argument("--window_seconds", type=int, default=60, help="engagement window size, seconds")
        parser.add_argument(
            "--early_firing_seconds", type=int, default=None, help="optional EARLY engagement panes (processing time)"
        )
        parser.add_argument(
            "--bq_batch_size", type=int, default=500, help="rows per BigQuery streaming-insert request (max)"
        )
        parser.add_argument(
            "--bq_triggering_frequency",
            type=float,
            default=None,
            help="Dataflow only: seconds between auto-sharded batch inserts (GroupIntoBatches); local runs "
            "always insert per bundle (see docs/streaming.md)",
        )
        parser.add_argument(
            "--stock_direct_runner",
            action="store_true",
            help="local only: run the BundleBasedDirectRunner without beam_pipelines.direct_runner_tuning "
            "(for comparison; slower)",
        )

    def validate_job(self) -> None:
        """Raise ValueError naming the expected format of each missing or malformed option."""
        if not _SUBSCRIPTION.match(self.input_subscription or ""):
            raise ValueError(
                f"--input_subscription must be projects/<p>/subscriptions/<s>, got {self.input_subscription!r}"
            )
        for name in ("output_table", "dead_letter_table", "engagement_table"):
            if not _TABLE.match(getattr(self, name) or ""):
                raise ValueError(f"--{name} must be project:dataset.table, got {getattr(self, name)!r}")
        if not self.dims_lake_root:
            for name in ("products_table", "users_table"):
                if not _TABLE.match(getattr(self, name) or ""):
                    raise ValueError(
                        f"--{name} must be project:dataset.table (or use --dims_lake_root), got {getattr(self, name)!r}"
                    )
        if self.dims_refresh_seconds <= 0 or self.dedup_horizon_minutes <= 0 or self.window_seconds <= 0:
            raise ValueError("--dims_refresh_seconds, --dedup_horizon_minutes and --window_seconds must be > 0")
        if self.allowed_lateness_minutes < 0:
            raise ValueError("--allowed_lateness_minutes must be >= 0")


def _dimension_loaders(opts: StreamingOptions):
    if opts.dims_lake_root:
        return LakeSnapshotLoader(opts.dims_lake_root, "products"), LakeSnapshotLoader(opts.dims_lake_root, "users")
    return BigQueryTableLoader(opts.products_table), BigQueryTableLoader(opts.users_table)


def _write_kwargs(options: PipelineOptions) -> dict:
    """Keyword arguments for the job's BigQuery sinks, by runner.

    Dataflow: Beam's ``WriteToBigQuery`` (its reshuffle commits insert ids so a retried
    bundle does not duplicate rows; ``--bq_triggering_frequency`` turns on its
    auto-sharded batches). BundleBasedDirectRunner: each bundle's rows are inserted
    by one DoFn, because that runner runs each 10-message Pub/Sub pull as its own
    bundle through every step (empty outputs included), with a fixed cost per step,
    and ``WriteToBigQuery``'s ten steps cost about 190 ms per pull there (measured:
    41 vs 175 events/s with and without the sink, ``benchmarks.streaming_throughput
    --stages``); it retries no bundles, so there are no insert ids to protect.
    Batching across bundles (``GroupIntoBatches``, or ``--bq_triggering_frequency``)
    is worse there: its processing-time timer only fires after the runner's blocking
    Pub/Sub pull returns, so on a quiet subscription the last rows wait up to 30 s.
    """
    opts = options.view_as(StreamingOptions)
    kwargs = {"batch_size": opts.bq_batch_size}
    if runners.is_local(options.view_as(StandardOptions).runner or ""):
        kwargs["per_bundle_inserts"] = True
    elif opts.bq_triggering_frequency:
        kwargs.update(triggering_frequency=opts.bq_triggering_frequency, with_auto_sharding=True)
    return kwargs


def user_behavior_sink(options: PipelineOptions) -> WriteUserBehavior:
    """The job's ``WriteUserBehavior`` transform (also used by the stage benchmark)."""
    opts = options.view_as(StreamingOptions)
    return WriteUserBehavior(opts.output_table, pipeline=PIPELINE, **_write_kwargs(options))


def deduplicator(options: PipelineOptions) -> beam.PTransform:
    """The job's ``DeduplicateEvents`` transform for its runner (also used by the stage benchmark).

    Dataflow and every other runner: per-``event_id`` state with an event-time expiry
    timer. The in-process BundleBasedDirectRunner: the same contract over one in-memory
    map, because that runner keeps every key's state forever and scans all of it
    between bundles (see ``DeduplicateEventsInProcess``).
    """
    horizon_seconds = options.view_as(StreamingOptions).dedup_horizon_minutes * 60
    if runners.runs_in_one_process(options.view_as(StandardOptions).runner or ""):
        return DeduplicateEventsInProcess(horizon_seconds)
    return DeduplicateEventsStateful(horizon_seconds)


def build_pipeline(p: beam.Pipeline, options: PipelineOptions) -> None:
    """Wire the streaming job onto ``p``."""
    opts = options.view_as(StreamingOptions)
    opts.validate_job()
    runner = options.view_as(StandardOptions).runner or ""
    local = runners.is_local(runner)
    write_kwargs = _write_kwargs(options)
    # Engagement rows are few (one per event_name and pane) and windowed: they keep Beam's
    # WriteToBigQuery on every runner. Inserting them per bundle locally measured ~13% more
    # job throughput (243 vs 211 events/s, 10-message pulls), but the end-to-end test then
    # waited 14-44 s (3 runs each) for its ON_TIME pane instead of a steady ~16 s: not
    # worth it. Dead letters are inserted per bundle locally too: the BundleBasedDirectRunner
    # runs every step downstream of ParseEvents on each pull, even for an empty bundle.
    engagement_kwargs = {k: v for k, v in write_kwargs.items() if k != "per_bundle_inserts"}
    dead_letter_kwargs = {k: v for k, v in write_kwargs.items() if k == "per_bundle_inserts"}

    messages = p | "ReadEvents" >> beam.io.ReadFromPubSub(
        subscription=opts.input_subscription,
        with_attributes=True,
        timestamp_attribute="event_ts",
        # Dataflow drops Pub/Sub redeliveries by this attribute; the DirectRunner raises
        # NotImplementedError for id_label, and DeduplicateEvents covers it there.
        id_label=None if local else "event_id",
    )
    parsed = messages | "ParseEvents" >> ParseEvents(PIPELINE)
    unique = parsed[EVENTS] | "DeduplicateEvents" >> deduplicator(options)

    # PeriodicImpulse does not expand on the BundleBasedDirectRunner (see transforms/dimensions.py).
    ticker = TICKER_TIMER if local else TICKER_PERIODIC_IMPULSE
    products_loader, users_loader = _dimension_loaders(opts)
    products = p | "RefreshProducts" >> RefreshedDimension(
        "products", products_loader, opts.dims_refresh_seconds, ticker
    )
    users = p | "RefreshUsers" >> RefreshedDimension("users", users_loader, opts.dims_refresh_seconds, ticker)
    rows = unique | "EnrichWithDimensions" >> EnrichWithDimensions(
        products, users, events.SOURCE_STREAM, snapshots=True
    )
    failed_rows = rows | "WriteUserBehavior" >> user_behavior_sink(options)

    engagement = unique | "ComputeEngagement" >> EngagementMetrics(
        window_seconds=opts.window_seconds,
        allowed_lateness_seconds=int(opts.allowed_lateness_minutes * 60),
        early_firing_seconds=opts.early_firing_seconds,
    )
    failed_engagement = engagement | "WriteEngagement" >> WriteRowsToTable(
        opts.engagement_table, "engagement_minutely", pipeline=PIPELINE, **engagement_kwargs
    )

    # Failed engagement rows are still in their 1-minute windows; Flatten needs one windowing.
    failed_engagement = failed_engagement | "RewindowEngagementFailures" >> beam.WindowInto(window.GlobalWindows())
    (
        (parsed[DEAD_LETTERS], failed_rows, failed_engagement)
        | "FlattenDeadLetters" >> beam.Flatten()
        | "WriteDeadLetters" >> WriteDeadLetters(opts.dead_letter_table, **dead_letter_kwargs)
    )


def make_options(argv=None) -> PipelineOptions:
    """Parse ``argv`` into options with streaming on and a pinned local runner."""
    options = cli.parse_job_options(argv, StreamingOptions, "beam_pipelines.streaming", __doc__)
    options.view_as(StandardOptions).streaming = True
    runners.resolve_runner(options)
    options.view_as(StreamingOptions).validate_job()
    return options


def run(argv=None) -> beam.runners.runner.PipelineResult:
    """Start the job and return its result (the caller waits or cancels)."""
    options = make_options(argv)
    bq_local.configure_for_environment(options)
    in_process = runners.runs_in_one_process(options.view_as(StandardOptions).runner)
    if in_process and not options.view_as(StreamingOptions).stock_direct_runner:
        tune_bundle_based_direct_runner()
    p = beam.Pipeline(options=options)
    build_pipeline(p, options)
    return p.run()


if __name__ == "__main__":
    sys.exit(
        cli.main(lambda argv: run(argv).wait_until_finish(), StreamingOptions, "beam_pipelines.streaming", __doc__)
    )
