"""The one runner seam: which runner a job gets, and which local-only steps it may use.

**Which runner.** ``DirectRunner`` in Beam 2.77 first tries ``PrismRunner``, which
downloads a binary from GitHub: offline it fails and falls back, online it silently
switches runners. Local runs therefore never ask for ``DirectRunner`` by that name:

* no ``--runner``, or any spelling Beam resolves to ``DirectRunner`` /
  ``SwitchingDirectRunner`` (``direct``, ``Direct``, ``directrunner``) -> ``FnApiRunner``
  for batch (fastest here: in-memory, ~47k ev/s vs ~33k for multi_processing on 2
  cores) and ``BundleBasedDirectRunner`` for streaming (the only local runner with
  Pub/Sub reads and TestStream that needs no network);
* any other runner (``DataflowRunner``, ``PrismRunner``, ...) is used as given.

Runner names are resolved the way Beam resolves them (:func:`runner_class`: case does
not matter and ``Runner`` may be left out, so ``dataflow``, ``Dataflow`` and
``dataflowrunner`` all mean ``DataflowRunner``): decisions compare resolved classes,
never spellings. A test pins this resolution to Beam's own ``create_runner``.

**Which local-only steps.** A few steps differ on the two in-process local runners,
each for a measured reason (:class:`LocalStep`). They are chosen positively: a step is
allowed only when the resolved runner class is one that :data:`_ALLOWED` names. Every
other runner (Dataflow under any spelling, Prism, Flink, Spark, Portable: runners that
retry bundles and run workers in other processes) gets the graph Dataflow gets.

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

import enum
import importlib

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

BATCH_RUNNER = "FnApiRunner"
STREAMING_RUNNER = "BundleBasedDirectRunner"
# Beam's default when --runner is not given.
_BEAM_DEFAULT = StandardOptions.DEFAULT_RUNNER
# Runners a local run replaces with a pinned one (both may fetch Prism).
_REPLACED = {"DirectRunner", "SwitchingDirectRunner"}
REFUSED_RUNNING_MODES = {
    "multi_threading": "it loses elements out of a GroupByKey in Beam 2.77 (299,755 of 300,000 delivered)",
    "multi_processing": "its worker processes miss the local emulator switch (beam_pipelines.bq_local patches "
    "the launching process only), so Beam's BigQuery writes there retry for Google credentials and real "
    "endpoints (the hourly job at 20k events: unfinished after 240 s, 11 s in_memory)",
}


class LocalStep(enum.Enum):
    """A step that differs on an in-process local runner; the value says why."""

    EMULATOR_SWITCH = (
        "beam_pipelines.bq_local patches Beam's BigQuery IO in this process only; workers in other "
        "processes would talk to Google"
    )
    PRINT_COUNTERS = "the run's counters are read back and printed when the run ends in this process"
    LOCAL_TEMP_LOCATION = "the staging files may default to the local GCS emulator's bucket"
    LAUNCH_SOURCE_CHECK = "the launching machine is the machine that reads the SQL source"
    LAUNCHER_CHECKS = (
        "the job's workers are this process: the URLs it calls are probed from here, and a run on the "
        "emulators needs no Google credential (a Dataflow run checks credentials instead, and not the URLs "
        "its workers may reach and its launcher may not)"
    )
    BACKFILL_SPLIT = (
        "one process holds the whole run and its peak memory grows with the input: a long window runs as "
        "windows this machine can hold, one after the other (beam_pipelines.backfill); Dataflow's workers "
        "scale with the input, so there the range stays one job"
    )
    PER_BUNDLE_INSERTS = (
        "the runner retries no bundle, and WriteToBigQuery's ten steps cost ~190 ms per 10-message "
        "pull there (41 vs 175 events/s): one DoFn inserts each bundle's rows, with no insert ids"
    )
    TIMER_TICKER = "PeriodicImpulse does not expand on the BundleBasedDirectRunner (Beam 2.77)"
    IN_PROCESS_DEDUPE = (
        "the runner keeps every key's state forever and scans it between bundles (31 % of the "
        "thread after 3,000 events): one in-memory map with the same contract"
    )
    SHORT_ARCHIVE_FLUSH = "the runner has no drain: a clean stop waits for the archive's next firing"
    CLEAN_LOCAL_STOP = "Ctrl-C pauses pulls, waits for BigQuery and the lake, then cancels this process's run"
    RUNNER_TUNING = (
        "beam_pipelines.direct_runner_tuning cuts the runner's fixed cost per bundle in this process "
        "(about 14x the local drain rate, docs/streaming.md)"
    )
    SERVICE_WATCH = "the job's Pub/Sub and BigQuery are the local emulators, watched from this process"
    SPILLED_SHARDS = (
        "the in-memory runner holds a shuffle's whole input in the process two to three times over (2.4 GiB "
        "at 4M events): the hourly stream path's shards wait in files on the local disk instead"
    )
    ACK_AFTER_ARCHIVE = (
        "the runner acknowledges each Pub/Sub pull as soon as it has read it, so a SIGKILL lost what was "
        "pulled and not yet archived (91 of 2,000 events in user_behavior and not in the lake); the job's "
        "AcknowledgeArchived step releases each message's ack once a lake file holds it"
    )


# The only runners that may use a local-only step, by resolved class name.
_ALLOWED: dict[str, frozenset[LocalStep]] = {
    BATCH_RUNNER: frozenset(
        {
            LocalStep.EMULATOR_SWITCH,
            LocalStep.PRINT_COUNTERS,
            LocalStep.LOCAL_TEMP_LOCATION,
            LocalStep.LAUNCH_SOURCE_CHECK,
            LocalStep.LAUNCHER_CHECKS,
            LocalStep.BACKFILL_SPLIT,
            LocalStep.SPILLED_SHARDS,
        }
    ),
    STREAMING_RUNNER: frozenset(LocalStep),
}


def runner_class(name: str | None) -> type:
    """The runner class Beam creates for ``--runner=name`` (not instantiated).

    Beam's rule (``apache_beam.runners.runner.create_runner``): the lower-cased name,
    then the lower-cased name plus ``runner``, among ``StandardOptions.ALL_KNOWN_RUNNERS``;
    otherwise a dotted ``module.Class`` path. ``None`` or ``""`` is Beam's default.

    Raises:
      ValueError: a name Beam would not accept, listing the known ones.
    """
    name = name or _BEAM_DEFAULT
    known = {path.rsplit(".", 1)[-1].lower(): path for path in StandardOptions.ALL_KNOWN_RUNNERS}
    path = known.get(name.lower()) or known.get(name.lower() + "runner") or name
    if "." not in path:
        raise ValueError(
            f"--runner={name} is not a runner Beam knows: use one of {', '.join(StandardOptions.KNOWN_RUNNER_NAMES)} "
            "(case does not matter, 'Runner' may be left out) or a module.Class path"
        )
    module, cls = path.rsplit(".", 1)
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--runner={name}: cannot load {path} ({exc})") from None


def runner_name(options: PipelineOptions) -> str:
    """The class name of the runner the options will run on, e.g. ``DataflowRunner`` for ``--runner=dataflow``.

    A runner :func:`resolve_runner` replaces (none given, ``DirectRunner``) is reported as
    the pinned local runner it becomes, so the answer is the same before and after.
    """
    std = options.view_as(StandardOptions)
    name = runner_class(std.runner).__name__
    return default_local_runner(bool(std.streaming)) if name in _REPLACED else name


def default_local_runner(streaming: bool) -> str:
    return STREAMING_RUNNER if streaming else BATCH_RUNNER


def resolve_runner(options: PipelineOptions) -> str:
    """Set and return the runner for ``options``, replacing DirectRunner with a pinned local one."""
    refuse_unsafe_running_mode(options)
    std = options.view_as(StandardOptions)
    if runner_class(std.runner).__name__ in _REPLACED:
        std.runner = runner_name(options)
    return std.runner


def allows(options: PipelineOptions, step: LocalStep) -> bool:
    """Whether the options' runner may use the local-only ``step`` (see :class:`LocalStep`)."""
    return step in _ALLOWED.get(runner_name(options), frozenset())


def refuse_unsafe_running_mode(options: PipelineOptions) -> None:
    """Raise ValueError for a local ``--direct_running_mode`` in :data:`REFUSED_RUNNING_MODES`."""
    mode = options.view_as(DirectOptions).direct_running_mode
    if mode not in REFUSED_RUNNING_MODES:
        return
    # The mode only applies to the local runners (DirectRunner becomes one of them).
    if runner_name(options) in {BATCH_RUNNER, STREAMING_RUNNER}:
        raise ValueError(
            f"--direct_running_mode={mode} is refused: {REFUSED_RUNNING_MODES[mode]}; "
            "leave it out (in_memory, the default) or run on Dataflow for parallelism"
        )
