"""Backfill: an hourly run over a long range, split into windows the machine can hold, resumable.

``python -m beam_pipelines.hourly --window_start A --window_end B`` on the in-process
runner (a local run) first sizes ``[A, B)`` from the lake: the bytes of the event and
order files of each hour. When they exceed what one run holds within
``--backfill_memory_mib`` (the job process's peak grows with its input: measured
slope and fixed part below), the range is cut into consecutive windows of whole hours,
each at most that size, and each window is an ordinary hourly run (staging tables,
MERGE, dead letters) with its own run id, one after the other in this process. On
Dataflow the range stays one job: its workers scale with the input.

``--window_start/--window_end`` keep their meaning: the windows' runs accept events
anywhere in ``[A, B)`` (``--backfill_range_start/_end``), so an event stored in one
window's hour but timed in another's is a row, as in one run over the range, not a
``window`` dead letter.

The record of the backfill lives beside the data it reads, in the lake
(``<lake_root>/_backfill/<id>/`` or ``--backfill_state``; on Google Cloud a
``gs://`` folder, so a backfill interrupted on one machine resumes from another):

* ``plan.json``: the windows, written once before the first window runs. A re-run of the
  same command reads it back instead of sizing the lake again, so every window keeps its
  bounds and its run id even if the lake changed in between.
* ``done/<window>.json``: written after a window's run returned, i.e. after its MERGE
  committed; never before. A window without it is run again on resume, with the same run
  id: its MERGEs are keyed (the rows of one run), and its dead letters are appended once
  per run id, so a window killed after its MERGE and re-run is not counted twice.

Each file is written whole or not at all (``lake.write_text``: a Cloud Storage object
appears when its upload ends, a local file is renamed over its name), so a kill never
leaves a half-written record; one that does not parse or names another window counts as
absent (the window runs again, which is harmless). The id is derived from ``A``, ``B``
and the output table, so running the same command again resumes it; ``--run_id`` names
it explicitly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from beam_pipelines import events, lake

_LOG = logging.getLogger(__name__)

# Peak RSS of the hourly job's process = fixed + slope x lake bytes of its window, measured
# with benchmarks.job_memory (docs/benchmarks.md): 637 MiB at 1M events (230 MB of event
# files), 686 MiB at 4M. The fixed part is the interpreter, Beam and the side inputs.
JOB_FIXED_MIB = 620
MIB_PER_INPUT_MIB = 0.075
DEFAULT_MEMORY_MIB = 2048
# No window larger than the largest run measured (4M events, 0.9 GiB of files): past it
# the slope is an extrapolation, and a window's spilled shards and staging files (about
# its own size again on the local disk and in the storage emulator) wait until its end.
DEFAULT_WINDOW_MIB = 1024
STATE_FOLDER = "_backfill"
_FLAG = re.compile(r"^--(window_start|window_end|run_id|backfill_range_start|backfill_range_end)(=.*)?$")


def add_backfill_args(parser, add_argument_once) -> None:
    """The hourly job's backfill options (``add_argument_once`` from batch_run)."""
    add_argument_once(
        parser,
        "--backfill_memory_mib",
        type=int,
        default=DEFAULT_MEMORY_MIB,
        help="Local runs: the peak memory one hourly run may use, in MiB (default "
        f"{DEFAULT_MEMORY_MIB}). A window whose lake files need more is split into windows of whole hours "
        "that fit, each an ordinary run with its own run id, recorded so that the same command resumes.",
    )
    add_argument_once(
        parser,
        "--backfill_window_mib",
        type=float,
        default=DEFAULT_WINDOW_MIB,
        help=f"Local runs: at most this many MiB of lake files per window (default {DEFAULT_WINDOW_MIB}, the "
        "largest run measured); the smaller of this and what --backfill_memory_mib allows wins.",
    )
    add_argument_once(
        parser,
        "--backfill_state",
        default=None,
        help=f"Folder of the backfill's plan and finished windows (default: <lake_root>/{STATE_FOLDER}/<id>).",
    )
    add_argument_once(
        parser,
        "--backfill_range_start",
        default=None,
        help="Set by a split backfill on each of its windows: events are accepted from here "
        "(the backfill's --window_start) to --backfill_range_end, as one run over the range would.",
    )
    add_argument_once(parser, "--backfill_range_end", default=None, help="See --backfill_range_start.")


@dataclass(frozen=True)
class Window:
    start: str  # canonical UTC timestamps (events.format_ts)
    end: str
    input_bytes: int
    run_id: str

    @property
    def name(self) -> str:
        return f"{self.start[:13]}_{self.end[:13]}"


def hour_bytes(lake_root: str, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """Bytes of the event and order files of every hour of ``[start, end)`` (what a run reads)."""
    sizes = []
    for hour, _ in lake.hour_pieces(start, end):
        total = 0
        for table, glob in ((lake.EVENTS, "*.jsonl"), (lake.ORDERS, "orders_*.jsonl")):
            folder = lake.literal(lake.partition_path(lake_root, table, hour, zone=lake.RAW))
            total += sum(size for _, size in lake.sized_files(lake.join(folder, glob)))
        sizes.append((hour, total))
    return sizes


def window_bytes(memory_mib: int, window_mib: float) -> int:
    """Lake bytes one run may read: what ``memory_mib`` holds by the measured model, at most ``window_mib``."""
    if memory_mib <= JOB_FIXED_MIB:
        raise ValueError(f"--backfill_memory_mib must exceed the job's fixed {JOB_FIXED_MIB} MiB, got {memory_mib}")
    if window_mib <= 0:
        raise ValueError(f"--backfill_window_mib must be a positive number of MiB, got {window_mib}")
    return int(min((memory_mib - JOB_FIXED_MIB) / MIB_PER_INPUT_MIB, window_mib) * 2**20)


def split(sizes: Sequence[tuple[datetime, int]], limit: int, run_id: str) -> list[Window]:
    """Consecutive whole hours, each window's bytes at most ``limit`` (an hour above it runs alone)."""
    windows: list[Window] = []
    first, total = None, 0
    for i, (hour, size) in enumerate(sizes):
        if first is not None and total + size > limit:
            windows.append(_window(sizes[first][0], hour, total, run_id))
            first, total = None, 0
        if first is None:
            first = i
        total += size
    if first is not None:
        windows.append(_window(sizes[first][0], sizes[-1][0] + lake.HOUR, total, run_id))
    return windows


def _window(start: datetime, end: datetime, size: int, run_id: str) -> Window:
    return Window(events.format_ts(start), events.format_ts(end), size, f"{run_id}-{start:%Y%m%dT%H}")


def backfill_id(start: datetime, end: datetime, output_table: str) -> str:
    digest = hashlib.sha256(output_table.encode()).hexdigest()[:8]
    return f"backfill-{start:%Y%m%dT%H}-{end:%Y%m%dT%H}-{digest}"


class State:
    """The plan and the finished windows of one backfill, in a folder (local or ``gs://``)."""

    def __init__(self, folder: str):
        self.folder = folder.rstrip("/")

    def _write(self, path: str, value: dict) -> None:
        # Whole or not at all (lake.write_text): a kill never leaves half a record.
        lake.write_text(path, json.dumps(value, indent=1))

    def _read(self, path: str) -> dict | None:
        """The record, None when proven absent or not a record; LakeReadError when it cannot be read."""
        text = lake.read_text_if_exists(path)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def plan(self) -> list[Window] | None:
        saved = self._read(f"{self.folder}/plan.json")
        try:
            return None if saved is None else [Window(**w) for w in saved["windows"]]
        except (KeyError, TypeError):
            return None

    def save_plan(self, windows: list[Window], start: str, end: str) -> None:
        self._write(f"{self.folder}/plan.json", {"start": start, "end": end, "windows": [asdict(w) for w in windows]})

    def done(self, window: Window) -> dict | None:
        """The window's record if it names this very window and run id, else None (run it again)."""
        record = self._read(f"{self.folder}/done/{window.name}.json")
        if record is None:
            return None
        same = (record.get("start"), record.get("end"), record.get("run_id"))
        return record if same == (window.start, window.end, window.run_id) else None

    def mark_done(self, window: Window, counters: dict[str, int], seconds: float) -> None:
        record = {**asdict(window), "counters": counters, "seconds": round(seconds, 1)}
        record["finished"] = events.format_ts(datetime.now(UTC))
        self._write(f"{self.folder}/done/{window.name}.json", record)


@dataclass
class Backfill:
    """A split backfill: its windows, where it is recorded, and the command line each window reruns."""

    windows: list[Window]
    state: State
    range_start: str
    range_end: str


def plan(options) -> Backfill | None:
    """The backfill of an hourly run whose window is more than one run can hold; None for one run.

    ``options``: the hourly job's (``HourlyOptions`` view) on the in-process runner (the
    caller checks). Never splits a window of a backfill (``--backfill_range_start`` set).
    A saved plan for the same range is used as it is (a resume).
    """
    if options.backfill_range_start or not options.window_start or not options.window_end:
        return None
    start, end = lake.parse_window(options.window_start, options.window_end, whole_hours=True)
    if end - start <= lake.HOUR:
        return None
    base = options.run_id or backfill_id(start, end, options.output_table or "")
    state = State(options.backfill_state or lake.join(options.lake_root, STATE_FOLDER, base))
    range_start, range_end = events.format_ts(start), events.format_ts(end)
    windows = state.plan()
    if windows is None or (windows[0].start, windows[-1].end) != (range_start, range_end):
        limit = window_bytes(options.backfill_memory_mib, options.backfill_window_mib)
        windows = split(hour_bytes(options.lake_root, start, end), limit, base)
        if len(windows) == 1:
            return None
        state.save_plan(windows, range_start, range_end)
    return Backfill(windows, state, range_start, range_end)


def event_range(options, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The event times a run accepts: its window, or for a backfill's window the backfill's range."""
    if not options.backfill_range_start:
        return start, end
    return lake.parse_window(options.backfill_range_start, options.backfill_range_end, whole_hours=True)


def window_argv(argv: Sequence[str], backfill: Backfill, window: Window) -> list[str]:
    """The command line of one window: the backfill's, with its window, run id and range."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        m = _FLAG.match(arg)
        if m:
            skip = m.group(2) is None
            continue
        kept.append(arg)
    return [
        *kept,
        f"--window_start={window.start}",
        f"--window_end={window.end}",
        f"--run_id={window.run_id}",
        f"--backfill_range_start={backfill.range_start}",
        f"--backfill_range_end={backfill.range_end}",
    ]


def run(backfill: Backfill, argv: Sequence[str], run_window: Callable[[list[str]], dict[str, int]], out=None) -> dict:
    """Run every window not yet done, in order; record each; print progress. Returns the summed counters.

    A window that fails stops the backfill (its error propagates): the same command
    resumes from that window.
    """
    out = out or sys.stderr
    total_bytes = sum(w.input_bytes for w in backfill.windows)
    n = len(backfill.windows)
    say = lambda text: print(f"backfill: {text}", file=out, flush=True)  # noqa: E731
    say(
        f"[{backfill.range_start}, {backfill.range_end}) in {n} windows of at most "
        f"{max(w.input_bytes for w in backfill.windows) / 2**20:,.0f} MiB of lake files "
        f"({total_bytes / 2**20:,.0f} MiB in all); record: {backfill.state.folder}"
    )
    summed: dict[str, int] = {}
    done_bytes = ran_bytes = 0
    t0 = time.monotonic()
    for i, window in enumerate(backfill.windows, 1):
        label = f"window {i}/{n} [{window.start}, {window.end})"
        record = backfill.state.done(window)
        if record is None:
            say(f"{label}: running ({window.input_bytes / 2**20:,.0f} MiB), run id {window.run_id}")
            started = time.monotonic()
            counters = run_window(window_argv(argv, backfill, window))
            backfill.state.mark_done(window, counters, time.monotonic() - started)
            seconds = time.monotonic() - started
        else:
            counters, seconds = record.get("counters", {}), 0.0
            say(f"{label}: already done ({record.get('finished')}), skipped")
        for name, value in counters.items():
            summed[name] = summed.get(name, 0) + value
        done_bytes += window.input_bytes
        if record is None:
            ran_bytes += window.input_bytes
            rate = ran_bytes / max(time.monotonic() - t0, 1e-9)
            left = (total_bytes - done_bytes) / rate if rate else 0
            share = 100 * done_bytes / max(total_bytes, 1)
            say(f"{label}: done in {seconds:,.0f} s; {share:.0f} % of the range's bytes, ~{left:,.0f} s left")
    say(f"all {n} windows done")
    return summed
