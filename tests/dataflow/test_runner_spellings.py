"""Every spelling of a remote runner gets the graph Dataflow gets: no local-only step anywhere.

Beam resolves runner names loosely (``dataflow``, ``Dataflow``, ``dataflowrunner`` all mean
``DataflowRunner``); the runner seam (:mod:`beam_pipelines.runners`) compares resolved
classes, and allows local-only steps for the two in-process local runners only. Runners
that run workers in other processes and retry bundles (Prism, Flink, Spark, Portable)
get the Dataflow graph too.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.runner import create_runner

from beam_pipelines import runners
from tests.dataflow.offline import DATAFLOW_ARGS, LOCAL_ENDPOINT_ENVS, describe
from tests.dataflow.test_job_descriptions import JOBS, job_options_class

# Leaf labels only a local-only step has: per-bundle inserts (WriteRowsToTable) and the
# timer ticker (transforms/dimension_side_inputs.py). The in-process dedupe has no KeyByEventId step.
LOCAL_ONLY_STEPS = {"InsertRows", "LoopTimer"}
DATAFLOW_SPELLINGS = [
    "DataflowRunner",
    "dataflow",
    "Dataflow",
    "dataflowrunner",
    "DATAFLOWRUNNER",
    "apache_beam.runners.dataflow.dataflow_runner.DataflowRunner",
]
OTHER_REMOTE_RUNNERS = ["PrismRunner", "prism", "FlinkRunner", "flink", "SparkRunner", "spark", "PortableRunner"]


@pytest.fixture(autouse=True)
def _no_local_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LOCAL_ENDPOINT_ENVS:
        monkeypatch.delenv(name, raising=False)


def all_transform_names(proto: beam_runner_api_pb2.Pipeline) -> set[str]:
    """Every transform's full label (``Step/Sub/Leaf``) in a pipeline proto."""
    return {t.unique_name for t in proto.components.transforms.values()}


def _argv(job: str) -> list[str]:
    spec = JOBS[job]
    return [*spec.get("extra_args", []), *(f"--{k}={v}" for k, v in spec["options"].items())]


def _check(job: str, names: set[str]) -> None:
    local = {n for n in names if n.rsplit("/", 1)[-1] in LOCAL_ONLY_STEPS}
    assert not local, sorted(local)
    if job == "streaming":
        assert "DeduplicateEvents/KeyByEventId" in names  # the stateful, per-key dedupe
        assert any(n.endswith("/PeriodicImpulse") for n in names)
        assert any(n.startswith("WriteUserBehavior/WriteToBigQuery") for n in names)


@pytest.mark.parametrize("name", [*DATAFLOW_SPELLINGS, *OTHER_REMOTE_RUNNERS, "direct", "DirectRunner", "FnApiRunner"])
def test_runner_names_resolve_as_beam_resolves_them(name):
    assert runners.runner_class(name) is type(create_runner(name))


@pytest.mark.parametrize("name", [*DATAFLOW_SPELLINGS, *OTHER_REMOTE_RUNNERS, "TestDataflowRunner"])
def test_no_local_only_step_is_allowed_off_the_in_process_runners(name):
    options = PipelineOptions([f"--runner={name}", "--streaming"])
    assert not any(runners.allows(options, step) for step in runners.LocalStep)
    assert runners.resolve_runner(options) == name  # used as given


@pytest.mark.parametrize("name, pinned", [(None, "FnApiRunner"), ("direct", "FnApiRunner"), ("Direct", "FnApiRunner")])
def test_direct_runner_spellings_become_the_pinned_local_runner(name, pinned):
    options = PipelineOptions([f"--runner={name}"] if name else [])
    assert runners.resolve_runner(options) == pinned
    assert runners.allows(options, runners.LocalStep.PRINT_COUNTERS)


def test_a_runner_beam_does_not_know_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="DataflowRunner"):
        runners.runner_class("dataflw")


# Every spelling for the streaming job (most of the local-only steps are its own), one
# lower-case spelling for each batch job: the seam answers per options, not per job.
@pytest.mark.parametrize(
    "job, spelling",
    [("streaming", s) for s in DATAFLOW_SPELLINGS] + [(j, "dataflow") for j in sorted(JOBS) if j != "streaming"],
)
def test_every_dataflow_spelling_describes_the_dataflow_graph(job, spelling, tmp_path: Path):
    module = importlib.import_module(f"beam_pipelines.{job}")
    cls = job_options_class(module)
    description = describe(
        lambda p, options: module.build_pipeline(p, options.view_as(cls)),
        [f"--runner={spelling}", *_argv(job)],
        tmp_path,
    )
    assert description.options["runner"] == spelling
    _check(job, all_transform_names(description.pipeline()))


@pytest.mark.parametrize(
    "job, runner",
    [("streaming", r) for r in ("PrismRunner", "FlinkRunner", "SparkRunner", "PortableRunner")]
    + [(j, "PrismRunner") for j in sorted(JOBS) if j != "streaming"],
)
def test_other_remote_runners_build_the_dataflow_graph(job, runner):
    module = importlib.import_module(f"beam_pipelines.{job}")
    cls = job_options_class(module)
    options = PipelineOptions(
        [a for a in DATAFLOW_ARGS if not a.startswith("--runner")] + [f"--runner={runner}", *_argv(job)]
    )
    p = beam.Pipeline(options=options)
    module.build_pipeline(p, options.view_as(cls))
    _check(job, all_transform_names(p.to_runner_api()))
