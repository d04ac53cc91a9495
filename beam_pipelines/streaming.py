"""Streaming job: Pub/Sub user events -> ``user_behavior``, ``engagement_minutely``, ``dead_letter``.

Pipeline::

    ReadEvents (Pub/Sub, no attribute parsed by the reader: one bad message cannot fail a pull)
      -> ParseEvents (event time from the payload's event_ts; attributes must agree with it)
           -> every message, valid or not -> ArchiveMessages (lake raw/events/dt=/hour=)
      -> DeduplicateEvents (first delivery per event_id within --dedup_horizon_minutes of its
           arrival; events leave stamped with their event_ts)
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
      --products_table local-ecommerce:ecommerce.products --users_table local-ecommerce:ecommerce.users \\
      --lake_root .local/lake

Ctrl-C or SIGTERM stops a local run cleanly: it stops pulling, lets what it pulled reach
BigQuery and the lake, and prints the job's counters (docs/streaming.md).

On Dataflow add ``--runner DataflowRunner --region ... --temp_location gs://...
--setup_file ./setup.py`` (see docs/streaming.md for ``--update`` and drain). Step labels are stable: renaming one
breaks ``--update`` compatibility.
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading
import time
from typing import TextIO

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms import window

from beam_pipelines import (
    batch_run,
    bq_local,
    cli,
    direct_runner_tuning,
    events,
    lake,
    launch,
    preflight,
    runners,
    service_watch,
)
from beam_pipelines.direct_runner_tuning import tune_bundle_based_direct_runner
from beam_pipelines.transforms.archive import ARCHIVED_MESSAGES, WriteMessageArchive
from beam_pipelines.transforms.bigquery_sink import WriteDeadLetters, WriteRowsToTable, WriteUserBehavior
from beam_pipelines.transforms.dedupe import DeduplicateEventsInProcess, DeduplicateEventsStateful
from beam_pipelines.transforms.dimension_side_inputs import (
    DEFAULT_LOAD_TIMEOUT_SECONDS,
    TICKER_PERIODIC_IMPULSE,
    TICKER_TIMER,
    BigQueryTableLoader,
    LakeSnapshotLoader,
    RefreshedDimension,
)
from beam_pipelines.transforms.enrich import EnrichWithDimensions
from beam_pipelines.transforms.parse import ARCHIVE, DEAD_LETTERS, EVENTS, ParseEvents
from beam_pipelines.transforms.windows import EngagementMetrics

PIPELINE = "streaming"
_SUBSCRIPTION = re.compile(r"^projects/[^/]+/subscriptions/[^/]+$")
_TABLE = re.compile(r"^[^:.]+:[^:.]+\.[^:.]+$")
# Locally a clean stop waits for the archive's next firing (the runner has no drain).
LOCAL_ARCHIVE_FLUSH_SECONDS = 5
# What a clean local stop allows beyond one archive flush for the last rows to land.
STOP_GRACE_SECONDS = 15


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
            "--lake_root",
            help="lake root (/path or gs://bucket/prefix): every message read is archived under raw/events/",
        )
        parser.add_argument(
            "--archive_flush_seconds",
            type=float,
            default=None,
            help="processing time from an archive batch's first message to its file (default 60 on Dataflow, "
            "5 locally, where it also bounds how long a clean stop waits)",
        )
        parser.add_argument(
            "--archive_shards",
            type=int,
            default=None,
            help="fixed number of archive files per hour folder and flush (default: scales with traffic, "
            "see docs/streaming.md)",
        )
        parser.add_argument(
            "--dims_refresh_seconds", type=float, default=300, help="side-input reload interval, seconds"
        )
        parser.add_argument(
            "--dims_load_timeout_seconds",
            type=float,
            default=DEFAULT_LOAD_TIMEOUT_SECONDS,
            help="the longest one products/users load may take before it counts as failed; until a first load "
            "succeeds, events are written with NULL attributes instead of waiting (docs/streaming.md)",
        )
        parser.add_argument(
            "--allow_dims_shrink",
            action="store_true",
            help="accept a products/users reload with less than half the rows of the snapshot it replaces "
            "(refused by default: kept the previous snapshot and counted)",
        )
        parser.add_argument(
            "--dedup_horizon_minutes",
            type=float,
            default=60,
            help="how long after its arrival (publish time) an event_id is remembered; a copy published later "
            "is written again and the user_behavior_dedup view removes it",
        )
        parser.add_argument(
            "--allowed_lateness_minutes",
            type=float,
            default=events.ENGAGEMENT_ALLOWED_LATENESS_SECONDS / 60,
            help="how late an event may be and still count in its engagement window",
        )
        parser.add_argument(
            "--window_seconds",
            type=int,
            default=events.ENGAGEMENT_WINDOW_SECONDS,
            help="engagement window size, seconds",
        )
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
        if not self.lake_root:
            raise ValueError("--lake_root is required (e.g. .local/lake or gs://my-lake): every message is archived")
        if (self.archive_flush_seconds is not None and self.archive_flush_seconds <= 0) or (
            self.archive_shards is not None and self.archive_shards <= 0
        ):
            raise ValueError("--archive_flush_seconds and --archive_shards must be > 0")
        for name in ("output_table", "dead_letter_table", "engagement_table"):
            if not _TABLE.match(getattr(self, name) or ""):
                raise ValueError(f"--{name} must be project:dataset.table, got {getattr(self, name)!r}")
        if not self.dims_lake_root:
            for name in ("products_table", "users_table"):
                if not _TABLE.match(getattr(self, name) or ""):
                    raise ValueError(
                        f"--{name} must be project:dataset.table (or use --dims_lake_root), got {getattr(self, name)!r}"
                    )
        if min(self.dims_refresh_seconds, self.dims_load_timeout_seconds, self.dedup_horizon_minutes) <= 0 or (
            self.window_seconds <= 0
        ):
            raise ValueError(
                "--dims_refresh_seconds, --dims_load_timeout_seconds, --dedup_horizon_minutes and --window_seconds "
                "must be > 0"
            )
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
    if runners.allows(options, runners.LocalStep.PER_BUNDLE_INSERTS):
        kwargs["per_bundle_inserts"] = True
    elif opts.bq_triggering_frequency:
        kwargs.update(triggering_frequency=opts.bq_triggering_frequency, with_auto_sharding=True)
    return kwargs


def archive_flush_seconds(options: PipelineOptions) -> float:
    """``--archive_flush_seconds``, else 60 on Dataflow and :data:`LOCAL_ARCHIVE_FLUSH_SECONDS` locally."""
    local = runners.allows(options, runners.LocalStep.SHORT_ARCHIVE_FLUSH)
    return options.view_as(StreamingOptions).archive_flush_seconds or (LOCAL_ARCHIVE_FLUSH_SECONDS if local else 60)


def user_behavior_sink(options: PipelineOptions) -> WriteUserBehavior:
    """The job's ``WriteUserBehavior`` transform (also used by the stage benchmark)."""
    opts = options.view_as(StreamingOptions)
    return WriteUserBehavior(opts.output_table, pipeline=PIPELINE, **_write_kwargs(options))


def deduplicator(options: PipelineOptions) -> beam.PTransform:
    """The job's ``DeduplicateEvents`` transform for its runner (also used by the stage benchmark).

    Dataflow and every other runner: per-``event_id`` state with an event-time expiry
    timer at ``max(event_ts, publish time) + horizon``. The in-process
    BundleBasedDirectRunner: the same contract over one in-memory map, because that
    runner keeps every key's state forever and scans all of it between bundles (see
    ``DeduplicateEventsInProcess``). Both expect ``ParseEvents(event_timestamps=False)``
    upstream (arrival as the element timestamp).
    """
    horizon_seconds = options.view_as(StreamingOptions).dedup_horizon_minutes * 60
    if runners.allows(options, runners.LocalStep.IN_PROCESS_DEDUPE):
        return DeduplicateEventsInProcess(horizon_seconds)
    return DeduplicateEventsStateful(horizon_seconds)


def build_pipeline(p: beam.Pipeline, options: PipelineOptions) -> None:
    """Wire the streaming job onto ``p``."""
    opts = options.view_as(StreamingOptions)
    opts.validate_job()
    write_kwargs = _write_kwargs(options)
    # Engagement rows are few (one per event_name and pane) and windowed: they keep Beam's
    # WriteToBigQuery on every runner. Inserting them per bundle locally measured ~13% more
    # job throughput (243 vs 211 events/s, 10-message pulls), but the end-to-end test then
    # waited 14-44 s (3 runs each) for its ON_TIME pane instead of a steady ~16 s: not
    # worth it. Dead letters are inserted per bundle locally too: the BundleBasedDirectRunner
    # runs every step downstream of ParseEvents on each pull, even for an empty bundle.
    engagement_kwargs = {k: v for k, v in write_kwargs.items() if k != "per_bundle_inserts"}
    dead_letter_kwargs = {k: v for k, v in write_kwargs.items() if k == "per_bundle_inserts"}

    # No timestamp_attribute: the reader would parse it before any DoFn, and one bad
    # value fails the whole pull, which is never acknowledged and fails again at every
    # ack deadline, with every good message pulled with it. Element times start as the
    # publish time (also the watermark's basis) and stay so through ParseEvents:
    # DeduplicateEvents measures its horizon from that arrival and stamps events with
    # their payload's event_ts (transforms/dedupe.py). No id_label either: Dataflow
    # would drop messages by an attribute the contract does not trust, uncounted;
    # DeduplicateEvents removes redeliveries on every runner, keyed on the payload's
    # event_id, and counts them.
    messages = p | "ReadEvents" >> beam.io.ReadFromPubSub(subscription=opts.input_subscription, with_attributes=True)
    parsed = messages | "ParseEvents" >> ParseEvents(PIPELINE, archive=True, event_timestamps=False)
    archived = parsed[ARCHIVE] | "ArchiveMessages" >> WriteMessageArchive(
        opts.lake_root, lake.new_run_id(), flush_seconds=archive_flush_seconds(options), shards=opts.archive_shards
    )
    if runners.allows(options, runners.LocalStep.ACK_AFTER_ARCHIVE):
        # Dataflow acknowledges a message once its bundle is committed; the local runner at
        # once, so locally the ack waits for the lake (direct_runner_tuning, LocalStep reason).
        _ = archived | "AcknowledgeArchived" >> beam.ParDo(direct_runner_tuning.AcknowledgeArchivedFn())
    unique = parsed[EVENTS] | "DeduplicateEvents" >> deduplicator(options)

    # PeriodicImpulse does not expand on the BundleBasedDirectRunner (see transforms/dimension_side_inputs.py).
    ticker = TICKER_TIMER if runners.allows(options, runners.LocalStep.TIMER_TICKER) else TICKER_PERIODIC_IMPULSE
    products_loader, users_loader = _dimension_loaders(opts)
    refresh = {
        "refresh_seconds": opts.dims_refresh_seconds,
        "ticker": ticker,
        "load_timeout_seconds": opts.dims_load_timeout_seconds,
        "allow_shrink": opts.allow_dims_shrink,
    }
    products = p | "RefreshProducts" >> RefreshedDimension("products", products_loader, **refresh)
    users = p | "RefreshUsers" >> RefreshedDimension("users", users_loader, **refresh)
    rows = unique | "EnrichWithDimensions" >> EnrichWithDimensions(
        products, users, events.SOURCE_STREAM, snapshots=True
    )
    failed_rows = rows | "WriteUserBehavior" >> user_behavior_sink(options)

    engagement = unique | "ComputeEngagement" >> EngagementMetrics(
        window_seconds=opts.window_seconds,
        allowed_lateness_seconds=int(opts.allowed_lateness_minutes * 60),
        early_firing_seconds=opts.early_firing_seconds,
    )
    # Rows leave their minute windows before the sink: each row already names its window,
    # and the sink's own grouping must never see a LATE pane's row as late data (in the
    # local runner LATE panes' rows never reached the table: `make demo`, Dec 2026).
    failed_engagement = (
        engagement
        | "RewindowEngagementRows" >> beam.WindowInto(window.GlobalWindows())
        | "WriteEngagement"
        >> WriteRowsToTable(opts.engagement_table, "engagement_minutely", pipeline=PIPELINE, **engagement_kwargs)
    )
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
    return start(make_options(argv))


def start(options: PipelineOptions) -> beam.runners.runner.PipelineResult:
    """Start the job with options from :func:`make_options`; return its result."""
    bq_local.configure_for_environment(options)
    opts = options.view_as(StreamingOptions)
    if runners.allows(options, runners.LocalStep.RUNNER_TUNING) and not opts.stock_direct_runner:
        tune_bundle_based_direct_runner()
        if runners.allows(options, runners.LocalStep.ACK_AFTER_ARCHIVE):
            direct_runner_tuning.hold_acks_until_archived(opts.input_subscription)
    p = beam.Pipeline(options=options)
    build_pipeline(p, options)
    # Warns while Pub/Sub, BigQuery or a gs:// lake stop answering, and says when they are back.
    return service_watch.watch_while_running(p.run(), options, opts.lake_root)


def conservation(values: dict[str, int]) -> tuple[dict[str, int], bool]:
    """The counters' own account of every message read: ``records_in = rows + dead letters + duplicates``.

    ``rows`` are the enriched rows BigQuery accepted (its refusals are dead letters too).
    """
    parsed_dead = sum(v for k, v in values.items() if k.startswith("dead_letters_"))
    refused = values.get("bigquery_failed_rows", 0)
    enriched = values.get("enriched_rows", 0)
    account = {
        "records_in": values.get("records_in", 0),
        "rows_written": enriched - refused,
        "dead_letters": parsed_dead + refused,
        "duplicates_removed": values.get("duplicates_removed", 0),
        "archived": values.get(ARCHIVED_MESSAGES, 0),
    }
    holds = account["records_in"] == enriched + parsed_dead + account["duplicates_removed"]
    return account, holds


def _drained(result, previous: dict[str, int] | None) -> tuple[bool, dict[str, int]]:
    values = batch_run.counters(result)
    archived_all = values.get(ARCHIVED_MESSAGES, 0) >= values.get("records_in", 0)
    # With acks held for the archive, a stop before they are sent would leave archived
    # messages to be read (and archived, and written) again by the next run.
    acked_all = direct_runner_tuning.unacknowledged() == 0
    return archived_all and acked_all and values == previous, values


def run_until_stopped(
    result, stop: threading.Event, flush_seconds: float = LOCAL_ARCHIVE_FLUSH_SECONDS, out: TextIO = sys.stdout
) -> dict[str, int]:
    """Wait for ``stop`` (set by SIGINT/SIGTERM), stop a local run cleanly, print its counters.

    The stop pauses Pub/Sub pulls (nothing more is acknowledged), waits until every
    message read is in the lake, acknowledged, and the counters stand still (at most the
    archive's flush interval plus :data:`STOP_GRACE_SECONDS`), then cancels the pipeline.
    A subscription that stopped existing (``direct_runner_tuning.missing_subscription``)
    stops the run the same way; the caller reports it.
    """
    while not stop.wait(0.5):
        if result.state in (PipelineState.FAILED, PipelineState.DONE, PipelineState.CANCELLED):
            print(f"streaming: the pipeline ended on its own ({result.state})", file=out, flush=True)
            return _report(result, out)
        failure = direct_runner_tuning.step_failure()
        if failure is not None:
            # The failed bundle is gone from this run and its messages were not acknowledged:
            # nothing left to wait for, the next run reads them again.
            print(f"streaming: a step failed ({type(failure).__name__}); stopping", file=out, flush=True)
            result.cancel()
            return _report(result, out)
        missing = direct_runner_tuning.missing_subscription()
        if missing:
            print(f"streaming: subscription {missing} does not exist any more", file=out, flush=True)
            break
    paused = direct_runner_tuning.pause_pulls()
    limit = flush_seconds + STOP_GRACE_SECONDS
    print(
        "streaming: stopping: "
        + (
            f"pulls paused; waiting up to {limit:.0f} s for pulled messages to reach BigQuery and the lake"
            if paused
            else "--stock_direct_runner cannot pause its pulls; cancelling now"
        ),
        file=out,
        flush=True,
    )
    deadline = time.monotonic() + limit
    values = None
    while paused and time.monotonic() < deadline:
        done, values = _drained(result, values)
        if done:
            break
        time.sleep(1.0)
    else:
        if paused:
            print(
                "streaming: warning: the run did not drain in time; counters below may miss in-flight work "
                f"({direct_runner_tuning.unacknowledged()} messages not archived are left to the next run)",
                file=out,
            )
    result.cancel()
    direct_runner_tuning.resume_pulls()
    print("streaming: stopped", file=out, flush=True)
    return _report(result, out)


def _report(result, out: TextIO) -> dict[str, int]:
    values = batch_run.counters(result)
    batch_run.print_counters(PIPELINE, values, out)
    account, holds = conservation(values)
    print(
        f"streaming: records_in {account['records_in']} = rows {account['rows_written']} + dead letters "
        f"{account['dead_letters']} + duplicates {account['duplicates_removed']}: "
        f"{'holds' if holds else 'DOES NOT HOLD'}; archived {account['archived']}",
        file=out,
        flush=True,
    )
    return values


def _remember_subscription() -> None:
    """Against the local stack's Pub/Sub emulator: record its subscriptions, so ``local up`` restores them."""
    from beam_pipelines.local import stack

    try:
        stack.remember_subscriptions()
    except Exception as exc:  # a record for later convenience: never a reason not to run
        logging.getLogger(__name__).warning("could not record the emulator's subscriptions in the stack: %s", exc)


def run_from_command_line(argv: list[str]) -> dict[str, int]:
    """The command line's job: run; locally until SIGINT/SIGTERM, then stop cleanly.

    Raises:
      RuntimeError: the stopped run's counters do not add up (exit code 1 through ``launch.main``).
    """
    options = make_options(argv)
    if not runners.allows(options, runners.LocalStep.CLEAN_LOCAL_STOP):
        result = start(options)
        if not batch_run.wrote_template(options, PIPELINE):  # the Flex launcher's run writes a template
            result.wait_until_finish()  # Ctrl-C leaves the Dataflow job running: drain it there
        return {}
    _remember_subscription()
    stop = threading.Event()
    # Set explicitly: a job started in the background of a non-interactive shell
    # inherits SIGINT as ignored, and Python would leave it so.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    result = start(options)
    values = run_until_stopped(result, stop, archive_flush_seconds(options))
    failure = direct_runner_tuning.step_failure()
    if failure is not None:
        raise failure  # its first line is the job's one-line error
    missing = direct_runner_tuning.missing_subscription()
    if missing:
        raise preflight.PreflightError(
            f"subscription {missing} does not exist (deleted while the job ran, or the Pub/Sub emulator restarted "
            f"without it): the job stopped after draining what it had read; recreate it ({preflight.UP_FIX} "
            "restores every subscription the local stack knows) and start the job again"
        )
    if result.state == PipelineState.FAILED:
        # The runner keeps the step's exception: raised here, it becomes the one-line error.
        result.wait_until_finish()
        raise RuntimeError("the pipeline failed (its error is logged above)")
    if not conservation(values)[1]:
        raise RuntimeError("the counters do not add up: records_in != rows + dead letters + duplicates (see above)")
    return values


if __name__ == "__main__":
    sys.exit(launch.main(run_from_command_line, StreamingOptions, "beam_pipelines.streaming", __doc__))
