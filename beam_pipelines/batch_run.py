"""What the three batch jobs (extract_orders, extract_dims, hourly) share at run time.

* :func:`prepare_options`: pin the local runner, point BigQuery IO at the emulator
  when configured (``beam_pipelines.bq_local``), and keep ``save_main_session`` off.
* :func:`run_and_report`: run, wait, and print the job's Beam counters on a local run.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from beam_pipelines import bq_local, runners
from beam_pipelines.cli import parse_job_options  # noqa: F401  (the jobs import it from here)
from beam_pipelines.transforms import METRICS_NAMESPACE

_LOG = logging.getLogger(__name__)


def prepare_options(options: PipelineOptions) -> str:
    """Resolve the runner (never DirectRunner's Prism download) and apply the emulator switch."""
    runner = runners.resolve_runner(options)
    bq_local.configure_for_environment(options)
    return runner


def counters(result) -> dict[str, int]:
    """Committed (or attempted, where the runner has no committed values) counters of a run."""
    out: dict[str, int] = {}
    try:
        query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except NotImplementedError:  # e.g. the stub result of a Dataflow --dry_run
        return out
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        out[counter.key.metric.name] = out.get(counter.key.metric.name, 0) + int(value or 0)
    return dict(sorted(out.items()))


def run_and_report(pipeline: beam.Pipeline, job: str, out: TextIO | None = None) -> dict[str, int]:
    """Run ``pipeline`` to completion; print its counters when it ran in this process; return them.

    With ``--template_location`` (how the Flex Template launcher runs a job file) the
    runner only writes the job description there: no job exists yet, so there is
    nothing to wait for and no counter to read (Dataflow's result raises
    ``ValueError('Can not query metrics. Job id is unknown.')``). It returns ``{}``.
    """
    result = pipeline.run()
    if wrote_template(pipeline.options, job, out):
        return {}
    result.wait_until_finish()
    values = counters(result)
    if runners.allows(pipeline.options, runners.LocalStep.PRINT_COUNTERS):
        print_counters(job, values, out)
    return values


def wrote_template(options: PipelineOptions, job: str, out: TextIO | None = None) -> bool:
    """Say where the job description went when the run only wrote one (``--template_location``)."""
    template = options.view_as(GoogleCloudOptions).template_location
    if template:
        print(f"{job}: job description written to {template}", file=out or sys.stdout, flush=True)
    return bool(template)


def print_counters(job: str, values: dict[str, int], out: TextIO | None = None) -> None:
    """The counters of a run as the jobs print them at the end of a local run."""
    stream = out or sys.stdout
    print(f"{job}: metrics ({METRICS_NAMESPACE})", file=stream)
    for name, value in values.items():
        print(f"  {name:40s} {value}", file=stream)


def add_argument_once(parser, flag: str, **kwargs) -> None:
    """``parser.add_argument(flag, **kwargs)`` unless another options class already added ``flag``.

    Beam builds one parser from *every* ``PipelineOptions`` subclass imported in the
    process, so two jobs that both declare ``--lake_root`` or ``--output_table`` (a
    test session importing several jobs, a demo script) would otherwise fail with
    "conflicting option string". The parser is also switched to argparse's
    ``resolve`` conflict handling, so an options class registered *after* ours that
    re-declares one of these flags with a plain ``add_argument`` does not break
    every pipeline in the process either (the flags mean the same in every job).
    """
    _resolve_conflicts(parser)
    if flag in getattr(parser, "_option_string_actions", {}):
        return
    parser.add_argument(flag, **kwargs)


def _resolve_conflicts(parser) -> None:
    # argparse copies conflict_handler into each action group when the group is made,
    # and checks conflicts on the group: set it on both.
    parser.conflict_handler = "resolve"
    for group in getattr(parser, "_action_groups", ()):
        group.conflict_handler = "resolve"


def require(options, *names: str) -> None:
    """Raise ``ValueError`` naming every missing option.

    Options are not declared ``required=True``: Beam parses every imported options
    class for every view, so a required flag of one job would break all the others.
    """
    missing = [f"--{n}" for n in names if not getattr(options, n, None)]
    if missing:
        raise ValueError(f"missing required option(s): {', '.join(missing)} (see --help)")
