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
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import bq_local, runners
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
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE))
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        out[counter.key.metric.name] = out.get(counter.key.metric.name, 0) + int(value or 0)
    return dict(sorted(out.items()))


def run_and_report(pipeline: beam.Pipeline, job: str, out: TextIO | None = None) -> dict[str, int]:
    """Run ``pipeline`` to completion; print its counters when it ran locally; return them."""
    result = pipeline.run()
    result.wait_until_finish()
    values = counters(result)
    if runners.is_local(pipeline.options.view_as(beam.options.pipeline_options.StandardOptions).runner or ""):
        stream = out or sys.stdout
        print(f"{job}: metrics ({METRICS_NAMESPACE})", file=stream)
        for name, value in values.items():
            print(f"  {name:40s} {value}", file=stream)
    return values
