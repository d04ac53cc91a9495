"""Batch job: the lake's extracts for ``[window_start, window_end)`` -> ``user_behavior`` and dims.

Inputs, for every hour H of the window (whole hours, any number of them):
  * ``raw/orders/dt=../hour=H/orders_*.jsonl``: API orders updated in H. Each order
    line becomes an ``order`` event (id ``<order_id>:<line>``, event_ts = order_ts,
    price = unit price; the row's price is the line amount), and each line of a
    ``returned`` order also a ``return`` event (event_ts = updated_at). Rows have
    ``source = 'api'``.
  * ``raw/events/dt=../hour=H/*.jsonl``: the streaming job's archive of every message
    it read (``*.pubsub.jsonl``, envelopes with attributes and publish time:
    :mod:`beam_pipelines.event_archive`) and plain payload files dropped there for
    backfills (Pub/Sub wire format, one per line). Both are read as bytes and judged
    by ``events.parse_message`` exactly as the stream judges them. Rows have
    ``source = 'stream'``; events outside the window are dead letters.
  * ``dead_letter/orders/dt=../hour=H/*.jsonl``: the extract's dead letters, forwarded.
  * the latest ``products`` / ``users`` lake snapshots, as side inputs and to refresh
    the ``products`` / ``users`` tables.

Steps: parse -> explode -> ``ValidateRecords`` -> ``DeduplicateEvents`` (one event per
event_id and source) -> ``EnrichWithDimensions``; stream event files go through
``ShardedStreamRows`` (:mod:`beam_pipelines.transforms.sharded`: the same verdicts,
dedupe winner and rows as ``ParseEventsInWindow`` -> ``DeduplicateEvents`` ->
``EnrichWithDimensions``, computed per block and per event_id shard over columns). An unknown product or user keeps
its row with NULL attributes and is counted (``unknown_products`` / ``unknown_users``):
dropping a real order because the dimension extract lags would lose revenue, and the
next run after the dims extract repairs the attributes (the MERGE replaces the row).

Absence is proven, not assumed: the run fails with one line when nothing is under
``--lake_root`` (taken literally), when no completion record of ``extract_orders`` covers
a part of the window, or when products/users have no snapshot; ``--allow_missing_extracts``
loads what the lake holds anyway. A snapshot with less than half the rows of the table it
would replace is refused before any statement (``--allow_dims_shrink``).

Idempotency: rows are written to per-run staging tables and then merged with one
``MERGE`` per table (:mod:`beam_pipelines.transforms.staging`), keyed on
``(event_id, source)`` for ``user_behavior``. Why not DELETE+INSERT by window: the job
window is on the orders' ``updated_at``, while the rows' partitioning column is
``event_ts`` (= order_ts), so no column of ``user_behavior`` identifies "the rows of
hour H"; event ids are deterministic, so keying on them is exact, and it also
collapses an order seen in several hours (placed in H, paid in H+1) into one row.
Re-running a window leaves exactly the rows of one run. MERGE works on BigQuery and
on bqemulator. Staging tables are filled by one BigQuery load job each, of Parquet
files under ``--temp_gcs_location`` (:mod:`beam_pipelines.transforms.staging.load`; the
local GCS emulator's files are what the BigQuery emulator loads): free on BigQuery,
where streaming inserts are billed per byte, and a failed load fails the run before
any MERGE. The MERGE updates only ``api`` rows: a ``stream`` row may sit in BigQuery's
streaming buffer, where DML may not touch it (docs/batch.md), so it is only ever
inserted. Dead letters are staged the same way and appended to ``dead_letter`` once per
run id, an audit log of every run stamped with ``job_name`` = the run id, so a re-run's
rejections can be told apart. Every step with a side effect gives the same data when
Dataflow runs its work item twice or overlapping. Staging tables expire
``--staging_ttl_minutes`` after the run starts, and each run drops the staging tables
older than that of runs killed before their merge (``DropStaleStagingTables``; the
emulator ignores expirations, so locally this sweep is what removes them).

Conservation (Beam counters, printed at the end of a local run):
``lake_order_records_read = orders_exploded + dead_letters_order_parse + dead_letters_explode``;
``records_in = valid_events + dead_letters_parse + dead_letters_validate``;
``valid_events = rows staged (bq_merged_user_behavior) + duplicates_removed + dead_letters_window``
(+ ``bq_load_refused_user_behavior``: rows a load would refuse, dead letters of stage ``bigquery_load``).

Run locally (after ``python -m beam_pipelines.local up`` and ``eval $(... env)``)::

    python -m beam_pipelines.hourly --lake_root .local/lake --project local-ecommerce \\
        --window_start 2026-11-22T10:00:00Z --window_end 2026-11-22T12:00:00Z \\
        --output_table local-ecommerce:ecommerce.user_behavior \\
        --dead_letter_table local-ecommerce:ecommerce.dead_letter \\
        --products_table local-ecommerce:ecommerce.products --users_table local-ecommerce:ecommerce.users \\
        --orders_table local-ecommerce:ecommerce.orders
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime, timedelta

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from beam_pipelines import backfill, events, lake, launch, runners
from beam_pipelines.batch_run import add_argument_once, parse_job_options, prepare_options, require, run_and_report
from beam_pipelines.local.services import TEMP_LOCATION_ENV
from beam_pipelines.transforms import parse
from beam_pipelines.transforms.bigquery_sink import LogUnwritableDeadLetterFn
from beam_pipelines.transforms.dedupe import DeduplicateEvents
from beam_pipelines.transforms.dimension_tables import dim_table
from beam_pipelines.transforms.enrich import EnrichWithDimensions
from beam_pipelines.transforms.lake_io import CheckExtracted, ForwardLakeDeadLetterFn, ReadDimension, ReadLakeFiles
from beam_pipelines.transforms.orders import (
    ORDER_RECORDS,
    ORDERS,
    ExplodeOrderLines,
    LatestOrderVersions,
    ParseOrders,
    ToOrderRows,
)
from beam_pipelines.transforms.parse import DEAD_LETTERS
from beam_pipelines.transforms.sharded import ROWS, ShardedStreamRows, spill_dir_for
from beam_pipelines.transforms.staging.load import DeleteStagingFiles, StageWithLoadJob
from beam_pipelines.transforms.staging.merge import DropStagingTables, MergeStagingTables, TagDeadLetters
from beam_pipelines.transforms.staging.sweep import DropStaleStagingTables
from beam_pipelines.transforms.staging.targets import MergeTarget, TableRef

JOB = "hourly"


class HourlyOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        backfill.add_backfill_args(parser, add_argument_once)
        add_argument_once(
            parser,
            "--window_start",
            default=None,
            help="Required. First hour to process, ISO-8601 UTC on the hour (inclusive).",
        )
        add_argument_once(
            parser,
            "--window_end",
            default=None,
            help="Required. End of the window, ISO-8601 UTC on the hour (exclusive).",
        )
        add_argument_once(
            parser, "--lake_root", default=None, help="Required. Lake root: a local folder or gs://bucket/prefix."
        )
        add_argument_once(
            parser, "--output_table", default=None, help="Required. user_behavior table, project:dataset.table."
        )
        add_argument_once(
            parser, "--dead_letter_table", default=None, help="Required. dead_letter table, project:dataset.table."
        )
        add_argument_once(
            parser,
            "--products_table",
            default=None,
            help="Required. products table refreshed from the snapshot, project:dataset.table.",
        )
        add_argument_once(
            parser,
            "--users_table",
            default=None,
            help="Required. users table refreshed from the snapshot, project:dataset.table.",
        )
        add_argument_once(
            parser,
            "--orders_table",
            default=None,
            help="Required. orders table upserted from the extracts, project:dataset.table.",
        )
        add_argument_once(
            parser,
            "--temp_gcs_location",
            default=None,
            help="gs:// folder for the staging tables' Parquet files, which BigQuery load jobs read "
            f"(default: --temp_location; on a local runner ${TEMP_LOCATION_ENV}, which "
            "'python -m beam_pipelines.local env' sets to a bucket of the local GCS emulator). "
            "Each run deletes its files after its MERGE; give the folder a lifecycle rule for killed runs.",
        )
        add_argument_once(
            parser,
            "--skip_dims_refresh",
            action="store_true",
            default=False,
            help="Do not refresh the products and users tables (they are still used for enrichment).",
        )
        add_argument_once(
            parser,
            "--allow_missing_extracts",
            action="store_true",
            default=False,
            help="Load the window even where the lake cannot prove the extracts ran (no orders completion "
            "record for a part of it, no products/users snapshot): for backfills of dropped event files. "
            "Without it such a window fails the run and names what is missing.",
        )
        add_argument_once(
            parser,
            "--allow_dims_shrink",
            action="store_true",
            default=False,
            help="Let products/users lose more than half their rows in one refresh (refused by default: a "
            "source read that failed quietly looks the same).",
        )
        add_argument_once(
            parser,
            "--keep_staging_tables",
            action="store_true",
            default=False,
            help="Keep the per-run staging tables and their load files after the merge (debugging).",
        )
        add_argument_once(
            parser,
            "--staging_ttl_minutes",
            type=float,
            default=360.0,
            help="Lifetime of the per-run staging tables, in minutes (default 360): they expire then, and "
            "each run drops other runs' staging tables older than this. Must exceed the longest run.",
        )
        add_argument_once(
            parser,
            "--run_id",
            default=None,
            help="Identifier of this run: staging table suffix and dead_letter.job_name (default: time + random).",
        )


def _patterns(lake_root: str, hours, zone: str, table: str, glob: str) -> list[str]:
    # The lake root is literal: only ``glob`` matches more than itself.
    return [lake.join(lake.literal(lake.partition_path(lake_root, table, h, zone=zone)), glob) for h, _ in hours]


def staging_files_location(options: PipelineOptions) -> str:
    """The ``gs://`` folder for the staging load files; ValueError saying what to pass when there is none."""
    hourly = options.view_as(HourlyOptions)
    location = hourly.temp_gcs_location or options.view_as(GoogleCloudOptions).temp_location
    if not location and runners.allows(options, runners.LocalStep.LOCAL_TEMP_LOCATION):
        location = os.environ.get(TEMP_LOCATION_ENV)
    if not location or not location.startswith("gs://"):
        where = f"got {location!r}" if location else "none given"
        raise ValueError(
            "--temp_gcs_location must be a gs:// folder for the staging load files (BigQuery loads read only "
            f"Cloud Storage), {where}: on Dataflow e.g. gs://my-bucket/tmp; locally start the stack "
            "('python -m beam_pipelines.local up') and eval \"$(python -m beam_pipelines.local env)\", "
            f"which sets {TEMP_LOCATION_ENV}"
        )
    return location.rstrip("/")


def build_pipeline(p: beam.Pipeline, options: HourlyOptions) -> str:
    """Wire the hourly job; return the run id (staging suffix, dead-letter job_name)."""
    require(
        options,
        "window_start",
        "window_end",
        "lake_root",
        "output_table",
        "dead_letter_table",
        "products_table",
        "users_table",
        "orders_table",
    )
    start, end = lake.parse_window(options.window_start, options.window_end, whole_hours=True)
    run_id = options.run_id or lake.new_run_id()
    hours = lake.hour_pieces(start, end)
    tables = {
        "user_behavior": TableRef.parse(options.output_table, "output_table"),
        "orders": TableRef.parse(options.orders_table, "orders_table"),
        "products": TableRef.parse(options.products_table, "products_table"),
        "users": TableRef.parse(options.users_table, "users_table"),
        "dead_letter": TableRef.parse(options.dead_letter_table, "dead_letter_table"),
    }
    targets = {kind: MergeTarget(kind, ref, ref.staging(run_id)) for kind, ref in tables.items()}
    project = tables["user_behavior"].project
    if not options.staging_ttl_minutes or options.staging_ttl_minutes <= 0:
        raise ValueError(f"--staging_ttl_minutes must be a positive number, got {options.staging_ttl_minutes}")
    staging_ttl = timedelta(minutes=options.staging_ttl_minutes)
    # Fixed when the job is built: a killed run's tables expire one TTL after its start.
    staging_expires = datetime.now(UTC) + staging_ttl
    staging_files = f"{staging_files_location(options)}/{run_id}"
    # Absence is proven, not assumed: a window the extracts never covered, or a lake with
    # no dimension snapshot, fails the run instead of merging nothing (docs/batch.md).
    required = not options.allow_missing_extracts
    hint = "run the extracts for it first (or pass --allow_missing_extracts to load only what the lake holds)"

    def stage(kind: str) -> StageWithLoadJob:
        return StageWithLoadJob(targets[kind].staging, kind, staging_files, pipeline=JOB, expires_at=staging_expires)

    _ = p | "DropStaleStagingTables" >> DropStaleStagingTables(list(targets.values()), project, staging_ttl)
    checked = p | "CheckOrdersExtracted" >> CheckExtracted(
        options.lake_root, lake.ORDERS, start, end, required=required, hint=hint
    )

    products = p | "ReadProductsSnapshot" >> ReadDimension(
        options.lake_root, "products", dim_table("products").key, required=required, hint=hint
    )
    users = p | "ReadUsersSnapshot" >> ReadDimension(
        options.lake_root, "users", dim_table("users").key, required=required, hint=hint
    )

    # API orders -> order/return events.
    order_lines = p | "ReadOrderFiles" >> ReadLakeFiles(
        _patterns(options.lake_root, hours, lake.RAW, lake.ORDERS, "orders_*.jsonl")
    )
    orders = order_lines | "ParseOrders" >> ParseOrders(JOB)
    exploded = orders[ORDERS] | "ExplodeOrderLines" >> ExplodeOrderLines(JOB)
    order_events = exploded[ORDER_RECORDS] | "ValidateOrderRecords" >> parse.ValidateRecords(JOB)
    api_rows = (
        order_events[parse.EVENTS]
        | "DeduplicateOrderEvents" >> DeduplicateEvents()
        | "EnrichOrderEvents" >> EnrichWithDimensions(products, users, events.SOURCE_API)
    )

    # Stream events dropped into the lake for a backfill.
    # In shards over columns (transforms.sharded): the element path's rows and dead
    # letters (tests/transforms/test_sharded_events.py) at a third of its CPU per event.
    stream = p | "ShardedStreamRows" >> ShardedStreamRows(
        _patterns(options.lake_root, hours, lake.RAW, lake.EVENTS, "*.jsonl"),
        *backfill.event_range(options, start, end),
        JOB,
        products,
        users,
        events.SOURCE_STREAM,
        spill_dir=spill_dir_for(options, run_id),
        # API rows are dicts, stream rows Arrow tables in the same text form: staging takes
        # both, from one step (a Flatten of the two would hold every row table in memory locally).
        pass_through=api_rows,
    )
    rows = stream[ROWS]
    order_rows = orders[ORDERS] | "KeepLatestOrderVersions" >> LatestOrderVersions() | "ToOrderRows" >> ToOrderRows(JOB)
    # Each staging write returns its refused rows as dead letters; together they are
    # also the barrier that holds the MERGE back until every write has finished.
    staged = [
        rows | "StageUserBehavior" >> stage("user_behavior"),
        order_rows[ORDERS] | "StageOrders" >> stage("orders"),
    ]
    merge_targets = [targets["orders"]]
    if not options.skip_dims_refresh:
        for kind, dim in (("products", products), ("users", users)):
            label = kind.capitalize()
            staged.append(dim | f"Drop{label}Keys" >> beam.Values() | f"Stage{label}" >> stage(kind))
            merge_targets.append(targets[kind])
    merge_targets += [targets["user_behavior"], targets["dead_letter"]]
    refused = staged | "FlattenStagingFailures" >> beam.Flatten()

    forwarded = (
        p
        | "ReadExtractDeadLetters"
        >> ReadLakeFiles(_patterns(options.lake_root, hours, lake.DEAD_LETTER, lake.ORDERS, "*.jsonl"))
        | "ForwardExtractDeadLetters" >> beam.ParDo(ForwardLakeDeadLetterFn(JOB))
    )
    dead_letters = (
        orders[DEAD_LETTERS],
        exploded[DEAD_LETTERS],
        order_events[DEAD_LETTERS],
        stream[DEAD_LETTERS],
        order_rows[DEAD_LETTERS],
        refused,
        forwarded,
    ) | "FlattenDeadLetters" >> beam.Flatten()
    # Dead letters are staged and loaded like the rows (no per-row streaming insert) and
    # appended once per run id by the MERGE step; one BigQuery would refuse has nowhere
    # left to go: counted and logged.
    unwritable = (
        dead_letters
        | "TagDeadLettersWithRun" >> TagDeadLetters(run_id)
        | "StageDeadLetters" >> stage("dead_letter")
        | "CountUnwritableDeadLetters" >> beam.ParDo(LogUnwritableDeadLetterFn())
    )

    barrier = (refused, unwritable, checked) | "FlattenMergeBarrier" >> beam.Flatten()
    merged = barrier | "MergeStagingTables" >> MergeStagingTables(
        merge_targets, project, run_id, options.allow_dims_shrink
    )
    if not options.keep_staging_tables:
        _ = merged | "DropStagingTables" >> DropStagingTables(merge_targets, project)
        _ = merged | "DeleteStagingFiles" >> DeleteStagingFiles(staging_files)
    return run_id


def run(argv: list[str] | None = None) -> dict[str, int]:
    """Parse options, run the window, print and return its counters."""
    options = parse_job_options(argv, HourlyOptions, __spec__.name if __spec__ else "beam_pipelines.hourly", __doc__)
    prepare_options(options)
    # A long local window runs as windows this machine can hold, each an ordinary run (backfill.py).
    split = (
        backfill.plan(options.view_as(HourlyOptions))
        if runners.allows(options, runners.LocalStep.BACKFILL_SPLIT)
        else None
    )
    if split is not None:
        return backfill.run(split, sys.argv[1:] if argv is None else argv, run)
    p = beam.Pipeline(options=options)
    run_id = build_pipeline(p, options.view_as(HourlyOptions))
    logging.info("hourly run %s", run_id)
    return run_and_report(p, JOB)


if __name__ == "__main__":
    sys.exit(launch.main(run, HourlyOptions, "beam_pipelines.hourly", __doc__))
