"""Batch job: orders updated in ``[window_start, window_end)`` from the REST API -> lake.

Writes one JSON order per line, as the API returned it, to
``<lake_root>/raw/orders/dt=YYYY-MM-DD/hour=HH/orders_<start>_<end>-NNNNN.jsonl`` (one
partition per hour the window touches). A re-run of the same window replaces its
own files and leaves other windows of the hour alone (see :mod:`beam_pipelines.lake`).
Last, it writes a completion record per hour piece under ``<lake_root>/_extracts/orders/``:
the proof the hourly job and the Composer sensor need that the piece was extracted,
also when it held no orders.

Records the API returns that are not JSON objects are dead letters. They are written
to the lake, not BigQuery, under ``<lake_root>/dead_letter/orders/dt=../hour=../`` as
``dead_letter`` rows (so ``bq load`` takes them as they are), replaced on a re-run like
the data; the hourly job forwards them to the ``dead_letter`` table. Keeping this job
free of BigQuery means an extract never depends on the warehouse being reachable.

The window is cut into at most ``--read_pieces`` ranges (default 8) of at least
``--split_minutes`` (default 15) read in parallel, each keyset-paged with the API's
cursor, with retries (429/5xx, transport errors, ``Retry-After``, exponential backoff +
jitter); every order lands in the hour partition of its ``updated_at``. Requests grow
with the orders, not with the window: at most ``floor(orders / page_size)`` plus one per
range (a two-year backfill of 8,135 orders: 21 requests, was 70,080; docs/batch.md).
A page that breaks the API's contract (no ``next_page_token`` key,
not JSON, a cursor that does not move) fails the job after its retries, before any
lake file of the window is replaced: the job never exits 0 on a page it did not
understand (:mod:`beam_pipelines.io.orders_api`).

Run locally::

    ORDERS_API_TOKEN=... python -m beam_pipelines.extract_orders \\
        --api_base_url http://127.0.0.1:8080 --lake_root .local/lake \\
        --window_start 2026-11-22T10:00:00Z --window_end 2026-11-22T11:00:00Z

On Dataflow add ``--runner DataflowRunner --project ... --region ... --temp_location gs://...``
and ``--api_token_secret projects/<p>/secrets/<s>/versions/latest``.
"""

from __future__ import annotations

import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import lake, launch
from beam_pipelines.batch_run import add_argument_once, parse_job_options, prepare_options, require, run_and_report
from beam_pipelines.io.orders_api import DEFAULT_TOKEN_ENV, MAX_PAGE_SIZE, RetryPolicy
from beam_pipelines.transforms.lake_io import WriteExtractRecords, WriteWindowPartitions
from beam_pipelines.transforms.orders import DEAD_LETTERS, ORDERS, ReadOrdersFromApi

JOB = "extract_orders"


class ExtractOrdersOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        add_argument_once(
            parser, "--api_base_url", default=None, help="Required. Orders API base URL, e.g. http://127.0.0.1:8080."
        )
        add_argument_once(
            parser,
            "--api_token_env",
            default=DEFAULT_TOKEN_ENV,
            help=f"Name of the environment variable holding the API bearer token (default {DEFAULT_TOKEN_ENV}); "
            "read on the workers.",
        )
        add_argument_once(
            parser,
            "--api_token_secret",
            default=None,
            help="Secret Manager version holding the token, projects/<p>/secrets/<s>/versions/<v>; "
            "takes precedence over --api_token_env (use it on Dataflow).",
        )
        add_argument_once(
            parser,
            "--window_start",
            default=None,
            help="Required. Start of the extract window, ISO-8601 UTC (inclusive).",
        )
        add_argument_once(
            parser, "--window_end", default=None, help="Required. End of the extract window, ISO-8601 UTC (exclusive)."
        )
        add_argument_once(
            parser, "--lake_root", default=None, help="Required. Lake root: a local folder or gs://bucket/prefix."
        )
        add_argument_once(
            parser, "--page_size", type=int, default=500, help=f"Orders per API page, 1..{MAX_PAGE_SIZE} (default 500)."
        )
        add_argument_once(
            parser,
            "--split_minutes",
            type=int,
            default=15,
            help="Shortest time range read by one worker, in minutes (default 15): a window is cut into "
            "at most --read_pieces ranges of at least this length.",
        )
        add_argument_once(
            parser,
            "--read_pieces",
            type=int,
            default=8,
            help="Most time ranges read in parallel (default 8); each pages through its orders with the "
            "API's cursor, so requests are at most floor(orders / page_size) + read_pieces.",
        )
        add_argument_once(
            parser,
            "--max_attempts",
            type=int,
            default=6,
            help="Attempts per API request before the job fails (default 6).",
        )
        add_argument_once(
            parser,
            "--max_backoff_seconds",
            type=float,
            default=30.0,
            help="Longest wait between attempts, Retry-After included (default 30).",
        )


def build_pipeline(p: beam.Pipeline, options: ExtractOrdersOptions, run_id: str | None = None) -> str:
    """Wire the extract: API sub-ranges -> window files in the raw and dead-letter zones.

    Returns:
      The run's temp folder under ``<lake_root>/_tmp/`` (deleted by the job's last step).
    """
    require(options, "api_base_url", "window_start", "window_end", "lake_root")
    start, end = lake.parse_window(options.window_start, options.window_end)
    if not 1 <= options.page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"--page_size must be 1..{MAX_PAGE_SIZE}, got {options.page_size}")
    if options.split_minutes <= 0:
        raise ValueError(f"--split_minutes must be a positive number of minutes, got {options.split_minutes}")
    if options.read_pieces < 1:
        raise ValueError(f"--read_pieces must be at least 1, got {options.read_pieces}")
    read = ReadOrdersFromApi(
        start,
        end,
        base_url=options.api_base_url,
        token_env=options.api_token_env,
        token_secret=options.api_token_secret,
        page_size=options.page_size,
        split_minutes=options.split_minutes,
        read_pieces=options.read_pieces,
        retry=RetryPolicy(max_attempts=options.max_attempts, max_backoff_seconds=options.max_backoff_seconds),
    )
    run_id = run_id or lake.new_run_id()
    tmp = lake.tmp_dir(options.lake_root, run_id)
    result = p | "ReadOrdersFromApi" >> read
    replaced_orders = result[ORDERS] | "WriteOrderPartitions" >> WriteWindowPartitions(
        options.lake_root, lake.RAW, lake.ORDERS, read.piece_keys, tmp
    )
    replaced_dead = result[DEAD_LETTERS] | "WriteDeadLetterPartitions" >> WriteWindowPartitions(
        options.lake_root, lake.DEAD_LETTER, lake.ORDERS, read.piece_keys, tmp
    )
    # Completion records once both swaps are done, then the temp folder goes (the swaps
    # copy out of it, so a retried swap still finds its files), inside the job, so the
    # launcher never needs access to the lake.
    swaps = (
        replaced_orders | "TagOrderSwaps" >> beam.MapTuple(lambda piece, paths: (lake.RAW, piece, paths)),
        replaced_dead | "TagDeadLetterSwaps" >> beam.MapTuple(lambda piece, paths: (lake.DEAD_LETTER, piece, paths)),
    ) | "FlattenReplacedPartitions" >> beam.Flatten()
    records = swaps | "RecordExtractedWindow" >> WriteExtractRecords(options.lake_root, lake.ORDERS, read.piece_keys)
    _ = (
        p
        | "CreateTempFolder" >> beam.Create([tmp])
        | "DeleteTempFolder" >> beam.Map(lambda path, _done: lake.delete_tree(path), beam.pvalue.AsList(records))
    )
    return tmp


def run(argv: list[str] | None = None) -> dict[str, int]:
    """Parse options, run the extract, print and return its counters."""
    options = parse_job_options(
        argv, ExtractOrdersOptions, __spec__.name if __spec__ else "beam_pipelines.extract_orders", __doc__
    )
    job = options.view_as(ExtractOrdersOptions)
    prepare_options(options)
    p = beam.Pipeline(options=options)
    build_pipeline(p, job)
    return run_and_report(p, JOB)


if __name__ == "__main__":
    sys.exit(launch.main(run, ExtractOrdersOptions, "beam_pipelines.extract_orders", __doc__))
