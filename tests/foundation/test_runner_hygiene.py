"""Local runs pick a pinned local runner and never reach beyond 127.0.0.1."""

import os
import socket
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines.bq_local import configure_for_environment
from beam_pipelines.runners import BATCH_RUNNER, STREAMING_RUNNER, resolve_runner
from bigquery_schemas import beam_schema
from tests.fixtures.network import ExternalNetworkAttempt


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], BATCH_RUNNER),
        (["--runner=DirectRunner"], BATCH_RUNNER),
        (["--streaming"], STREAMING_RUNNER),
        (["--runner=DirectRunner", "--streaming"], STREAMING_RUNNER),
        (["--runner=DataflowRunner"], "DataflowRunner"),
        (["--runner=PrismRunner"], "PrismRunner"),  # an explicit choice is respected
    ],
)
def test_local_runs_never_ask_for_direct_runner_by_name(argv, expected):
    options = PipelineOptions(argv)
    assert resolve_runner(options) == expected
    assert options.view_as(StandardOptions).runner == expected


@pytest.mark.parametrize(
    "mode, why", [("multi_threading", "loses elements"), ("multi_processing", "miss the local emulator switch")]
)
@pytest.mark.parametrize("job", ["hourly", "extract_dims", "streaming"])
def test_running_modes_that_lose_or_hang_are_refused_by_every_job(tmp_path, job, mode, why):
    """Through the job's real entry point, before any pipeline is built."""
    argv = [sys.executable, "-m", f"beam_pipelines.{job}", f"--direct_running_mode={mode}", "--direct_num_workers=2"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, "NO_GCE_CHECK": "true"})
    assert done.returncode != 0
    assert f"--direct_running_mode={mode} is refused" in done.stderr and why in done.stderr


def test_in_memory_mode_is_still_accepted():
    options = PipelineOptions(["--direct_running_mode=in_memory"])
    assert resolve_runner(options) == BATCH_RUNNER


def test_the_guard_itself_blocks_external_addresses(no_external_network):
    with pytest.raises(ExternalNetworkAttempt):
        socket.create_connection(("203.0.113.7", 443), timeout=1)
    assert no_external_network == ["203.0.113.7"]


@pytest.mark.integration
def test_local_batch_run_with_bigquery_opens_no_external_connection(bq_dataset, no_external_network):
    """A full local run (runner pick, credentials, BigQuery writes) stays on loopback."""
    options = PipelineOptions(["--project", bq_dataset.project])
    assert resolve_runner(options) == BATCH_RUNNER
    assert configure_for_environment(options) is True  # BIGQUERY_EMULATOR_HOST is set by the fixture
    row = {
        "stage": "parse",
        "error": "payload is not JSON",
        "payload": "{",
        "attributes": None,
        "event_ts": None,
        "pipeline": "hygiene-test",
        "job_name": None,
        "insert_ts": "2026-11-22T00:00:00Z",
    }
    with beam.Pipeline(options=options) as p:
        written = (
            p
            | beam.Create([row])
            | beam.io.WriteToBigQuery(
                bq_dataset.table("dead_letter"),
                schema=beam_schema("dead_letter"),
                method=beam.io.WriteToBigQuery.Method.STREAMING_INSERTS,
                create_disposition=beam.io.BigQueryDisposition.CREATE_NEVER,
            )
        )
        assert_that(written.failed_rows, equal_to([]))
    assert bq_dataset.count("dead_letter") == 1
    assert no_external_network == []


@pytest.mark.parametrize("runner", ["DataflowRunner", "dataflow", "Dataflow", "dataflowrunner", "PrismRunner", "flink"])
def test_emulator_switch_refuses_runners_whose_workers_it_cannot_reach(monkeypatch, runner):
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "http://127.0.0.1:9050")
    with pytest.raises(ValueError, match="runs its workers outside this process"):
        configure_for_environment(PipelineOptions([f"--runner={runner}", "--project=my-analytics-prod"]))


def test_emulator_switch_is_off_without_the_variable(monkeypatch):
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    assert configure_for_environment(PipelineOptions([])) is False


def _project_dofns() -> list[type]:
    import importlib
    import inspect
    import pkgutil

    import beam_pipelines

    found = []
    for module in pkgutil.walk_packages(beam_pipelines.__path__, "beam_pipelines."):
        if module.name.endswith("__main__"):
            continue
        members = inspect.getmembers(importlib.import_module(module.name), inspect.isclass)
        found += [cls for _, cls in members if issubclass(cls, beam.DoFn) and cls.__module__ == module.name]
    return found


def test_no_dofn_of_the_project_makes_beam_warn_about_yield_and_return():
    """Every hourly run logged 4x "Using yield and return in the process method of ...LoadStagingTableFn".

    Beam runs this very check (``_check_fn_use_yield_and_return``) when a ParDo is built, and
    logs a warning for each hit; asked of every DoFn of the project it must find none.
    """
    from apache_beam.transforms.core import _check_fn_use_yield_and_return

    dofns = _project_dofns()
    assert len(dofns) >= 20  # the walk found the project's DoFns
    assert [cls.__qualname__ for cls in dofns if _check_fn_use_yield_and_return(cls.process)] == []
