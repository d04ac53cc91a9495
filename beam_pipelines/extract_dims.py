"""Batch job: products and users from the SQL source -> lake snapshots.

For each table (``--tables``): read the rows by ``--num_partitions`` parallel
primary-key ranges (min/max bounds, then equal-width ranges, each read by one worker,
parameterised SQL only), write
``<lake_root>/raw/<table>/snapshot=YYYYMMDDTHHMMSSZ/part-*.jsonl`` and, last, the
pointer ``<lake_root>/raw/<table>/_LATEST`` holding that folder name. Readers follow
the pointer, so they never see a half-written snapshot.

Every snapshot is complete. With ``--updated_since`` only rows changed since then are
read from the database and merged into the previous snapshot (newest ``updated_at``
wins); rows deleted in the source need a full extract (no ``--updated_since``), and a
lake with no snapshot yet refuses an incremental read (it would publish only the
changed rows as the whole table). A snapshot with less than half the rows of the one
it replaces is not published (``_LATEST`` stays) unless ``--allow_dims_shrink``.
Source rows are typed and constrained by the database, so this job has no dead letters.

``--source_mapping mapping.toml`` reads the user's own tables or views (their names,
column names, time zone and defaults: :mod:`beam_pipelines.io.source_mapping`,
docs/bring-your-own-data.md); without it the project's own DDL is read. The file is
read and checked at launch (against the live database too when ``--database_url`` is
given) and shipped to the workers inside the job, so they need no copy of it.

Run locally::

    python -m beam_pipelines.extract_dims --database_url sqlite:///.local/source.db \\
        --lake_root .local/lake
    python -m beam_pipelines.extract_dims --cloud_sql_instance my-project:europe-west1:shop \\
        --database_user df-extract-dims@my-project.iam --database_name shop \\
        --lake_root gs://my-lake/ecommerce --updated_since 2026-11-22T09:30:00Z --runner DataflowRunner ...

On Google Cloud the workers log in to Cloud SQL with IAM database authentication through
Google's Cloud SQL Python Connector, or with a password they read from Secret Manager
(``--database_password_secret``); nothing secret is a pipeline option
(:mod:`beam_pipelines.io.sql_login`).
"""

from __future__ import annotations

import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import events, launch, runners
from beam_pipelines.batch_run import add_argument_once, parse_job_options, prepare_options, require, run_and_report
from beam_pipelines.io import source_mapping, sql_login
from beam_pipelines.transforms.dimension_extract import MergeIntoSnapshot, ReadTableByKeyRanges, snapshot_now
from beam_pipelines.transforms.dimension_tables import dim_table
from beam_pipelines.transforms.lake_io import ReadDimension, WriteSnapshot

JOB = "extract_dims"


class ExtractDimsOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        for flag, kwargs in sql_login.OPTIONS:  # how to reach and log in to the source
            add_argument_once(parser, flag, **kwargs)
        add_argument_once(
            parser, "--lake_root", default=None, help="Required. Lake root: a local folder or gs://bucket/prefix."
        )
        add_argument_once(
            parser,
            "--tables",
            default="products,users",
            help="Comma-separated tables to extract (default products,users).",
        )
        add_argument_once(
            parser,
            "--num_partitions",
            type=int,
            default=4,
            help="Parallel primary-key ranges per table, each read by one worker (default 4).",
        )
        add_argument_once(
            parser,
            "--updated_since",
            default=None,
            help="ISO-8601 UTC: read only rows with updated_at >= this and merge them into the latest snapshot.",
        )
        add_argument_once(
            parser,
            "--source_mapping",
            default=None,
            help="Mapping file (.toml or .json) of the source's table and column names, time zone and "
            "defaults (default: the project's own DDL). See docs/bring-your-own-data.md.",
        )
        add_argument_once(
            parser,
            "--allow_dims_shrink",
            action="store_true",
            default=False,
            help="Publish a snapshot even when it holds less than half the rows of the previous one (refused "
            "by default: a read that failed quietly, a wrong source or mapping looks the same).",
        )
        add_argument_once(
            parser,
            "--snapshot_ts",
            default=None,
            help="Snapshot instant, ISO-8601 UTC (default: now); names the snapshot folder.",
        )

    def validate_job(self) -> None:
        """The SQL login's checks, before any service is probed (:func:`beam_pipelines.launch.check_inputs`)."""
        sql_login.SqlLogin.from_options(self).check(local=runners.allows(self, runners.LocalStep.LAUNCH_SOURCE_CHECK))


def build_pipeline(p: beam.Pipeline, options: ExtractDimsOptions) -> None:
    """Wire one read -> (merge) -> snapshot branch per table."""
    require(options, "lake_root")
    login = sql_login.SqlLogin.from_options(options)
    login.check(local=runners.allows(p.options, runners.LocalStep.LAUNCH_SOURCE_CHECK))
    tables = [t.strip() for t in options.tables.split(",") if t.strip()]
    if not tables:
        raise ValueError("--tables must name at least one of products,users")
    snapshot_ts = events.parse_ts(options.snapshot_ts) if options.snapshot_ts else snapshot_now()
    for name in tables:
        dim_table(name)
    mapping = source_mapping.load(options.source_mapping)
    if runners.allows(p.options, runners.LocalStep.LAUNCH_SOURCE_CHECK):
        # At launch, in one line, rather than as a worker's traceback. Not for Dataflow: its
        # launcher (a Composer worker) need not reach the database the workers read.
        with source_mapping.connect(login, mapping) as db:
            for name in tables:
                source_mapping.check_live(db, mapping, name)
    for name in tables:
        table = dim_table(name)
        label = name.capitalize()
        rows = p | f"Read{label}" >> ReadTableByKeyRanges(
            name,
            login=login,
            num_partitions=options.num_partitions,
            updated_since=options.updated_since,
            mapping=mapping,
        )
        if options.updated_since:
            # Changed rows merged into nothing would be published as a complete snapshot.
            previous = p | f"ReadPrevious{label}" >> ReadDimension(
                options.lake_root, name, table.key, hint="run a full extract first (without --updated_since)"
            )
            rows = rows | f"Merge{label}IntoSnapshot" >> MergeIntoSnapshot(previous, table.key)
        _ = rows | f"Write{label}Snapshot" >> WriteSnapshot(
            options.lake_root, name, snapshot_ts, allow_shrink=options.allow_dims_shrink
        )


def run(argv: list[str] | None = None) -> dict[str, int]:
    """Parse options, run the extract, print and return its counters."""
    options = parse_job_options(
        argv, ExtractDimsOptions, __spec__.name if __spec__ else "beam_pipelines.extract_dims", __doc__
    )
    prepare_options(options)
    p = beam.Pipeline(options=options)
    build_pipeline(p, options.view_as(ExtractDimsOptions))
    return run_and_report(p, JOB)


if __name__ == "__main__":
    sys.exit(launch.main(run, ExtractDimsOptions, "beam_pipelines.extract_dims", __doc__))
