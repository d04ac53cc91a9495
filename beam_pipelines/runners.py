"""How local runs pick their runner.

``DirectRunner`` in Beam 2.77 first tries ``PrismRunner``, which downloads a
binary from GitHub: offline it fails and falls back, online it silently switches
runners. Local runs therefore never ask for ``DirectRunner`` by that name:

* no ``--runner`` or ``--runner=DirectRunner`` -> ``FnApiRunner`` for batch (fastest
  here: in-memory, ~47k ev/s vs ~33k for multi_processing on 2 cores) and
  ``BundleBasedDirectRunner`` for streaming (the only local runner with
  Pub/Sub reads and TestStream that needs no network);
* any other runner (``DataflowRunner``, ``PrismRunner``, ...) is used as given.

``--direct_running_mode`` other than ``in_memory`` is refused (:data:`REFUSED_RUNNING_MODES`):
measured with Beam 2.77, ``multi_threading`` loses elements out of a GroupByKey
(ReadFromText -> Map -> GroupByKey delivered 299,755 of 300,000 values; the hourly
chain 292,145 of 292,500), and ``multi_processing`` with 2 workers made no progress
on the hourly job at 50k events (37 s with 1 worker). Why, measured again after the job
moved to load jobs (20k events: unfinished after 240 s, 11 s in_memory): the SDK worker
processes are fresh interpreters without the emulator switch of
:mod:`beam_pipelines.bq_local`, so Beam's BigQuery IO in them retries for Google
credentials (the worker log shows ``DefaultCredentialsError`` retries) and then talks
to the real endpoints. Parallel runs belong on Dataflow; the benchmark's chain (no
BigQuery) ran 1.46x faster with 2 workers, which the job cannot use locally.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

BATCH_RUNNER = "FnApiRunner"
STREAMING_RUNNER = "BundleBasedDirectRunner"
_PICK_FOR_ME = {None, "", "DirectRunner", "direct", "Direct"}
REFUSED_RUNNING_MODES = {
    "multi_threading": "it loses elements out of a GroupByKey in Beam 2.77 (299,755 of 300,000 delivered)",
    "multi_processing": "its worker processes miss the local emulator switch (beam_pipelines.bq_local patches "
    "the launching process only), so Beam's BigQuery writes there retry for Google credentials and real "
    "endpoints (the hourly job at 20k events: unfinished after 240 s, 11 s in_memory)",
}


def default_local_runner(streaming: bool) -> str:
    return STREAMING_RUNNER if streaming else BATCH_RUNNER


def resolve_runner(options: PipelineOptions) -> str:
    """Set and return the runner for ``options``, replacing DirectRunner with a pinned local one."""
    refuse_unsafe_running_mode(options)
    std = options.view_as(StandardOptions)
    if std.runner in _PICK_FOR_ME:
        std.runner = default_local_runner(bool(std.streaming))
    return std.runner


def refuse_unsafe_running_mode(options: PipelineOptions) -> None:
    """Raise ValueError for a local ``--direct_running_mode`` in :data:`REFUSED_RUNNING_MODES`."""
    mode = options.view_as(DirectOptions).direct_running_mode
    if mode in REFUSED_RUNNING_MODES and is_local(options.view_as(StandardOptions).runner or ""):
        raise ValueError(
            f"--direct_running_mode={mode} is refused: {REFUSED_RUNNING_MODES[mode]}; "
            "leave it out (in_memory, the default) or run on Dataflow for parallelism"
        )


def is_local(runner: str) -> bool:
    return runner.split(".")[-1] not in {"DataflowRunner", "TestDataflowRunner"}


def runs_in_one_process(runner: str) -> bool:
    """True for the BundleBasedDirectRunner: one process, one worker thread, state in memory."""
    return runner.split(".")[-1] == STREAMING_RUNNER
