"""Summarise a py-spy ``--format raw`` profile: where the samples go, self and inclusive.

Usage (profile one case of a benchmark, then summarise)::

    .venv/bin/py-spy record -r 250 --format raw -o /tmp/chain.txt -- \\
        .venv/bin/python -m benchmarks.batch_hourly_chain --worker chain --dataset_json <dataset.json>
    .venv/bin/python -m benchmarks.profile_summary /tmp/chain.txt --top 30 --match beam_pipelines
    .venv/bin/python -m benchmarks.profile_summary /tmp/chain.txt --groups   # the sharded chain's steps
    .venv/bin/python -m benchmarks.profile_summary /tmp/hourly.txt --hourly_groups  # a whole hourly job

``--match`` restricts the inclusive table to frames whose file contains the text
(e.g. ``beam_pipelines`` for our code, ``apache_beam/runners`` for the runner).
``--groups`` splits the samples inside ``Pipeline.run`` (the timed part) by step of the
sharded chain (:data:`SHARDED_GROUPS`; the first group with a matching frame wins).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path


def _line_of(path: Path, text: str) -> int:
    """The line of ``path`` holding ``text`` (profiles name frames by line)."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


_EVENT_BATCH = Path(__file__).resolve().parents[1] / "beam_pipelines" / "event_batch.py"
_FAST = "fast_events (beam_pipelines/event_batch.py"
# (group, frame substrings): the first group with a frame containing one of them wins.
SHARDED_GROUPS = (
    ("sink: pyarrow.parquet.write_table (the benchmark's row writer)", ("write_table",)),
    ("side inputs: materialisation + state-cache sizing", ("StateBackedSideInputMap", "statecache", "objsize")),
    (
        "dimensions: read + key (json.loads per row), to columns",
        ("_keyed_dimension", "_DimensionPartsFn", "_merge_dimension_parts"),
    ),
    (
        "fast path: RE2 DFA accept over the block",
        (f"{_FAST}:{_line_of(_EVENT_BATCH, 'pc.match_substring_regex(payloads, FAST_ACCEPT)')})",),
    ),
    ("fast path: Arrow JSON reader (typed columns)", ("_json_columns",)),
    ("fast path: RE2 extraction (blocks the JSON reader cannot type)", ("_regex_columns",)),
    ("fast path: ids, hours, event table", (_FAST,)),
    ("slow path: ParseEventsInWindowFn on the other lines", ("BlockParser.parse",)),
    ("read: line_blocks (numpy newlines)", ("line_blocks", "_split_lines")),
    ("shard split: vectorised hash, take, IPC to spill files", ("_split_by_shard", "shards_of", "_Spills", "to_ipc")),
    ("shard read: spill files (mapped)", ("read_shard_events",)),
    ("dedupe: repeated ids, dedupe._winner_key", ("dedupe (beam_pipelines/event_batch.py", "_winner_key")),
    ("enrich: joins, line amounts, row table", ("user_behavior_table", "Dimension", "DedupeAndEnrichShardFn")),
    ("dead letters: JSON + WriteToText", ("textio", "FormatDeadLetters", "json/encoder")),
    ("pipeline translation (to_runner_api, DoFn signatures, pickling)", ("to_runner_api", "BundleProcessor.__init__")),
)


# The whole hourly job (``python -m beam_pipelines.hourly``, every thread, start-up included).
HOURLY_GROUPS = (
    ("imports", ("_find_and_load",)),
    (
        "stream path: ShardedStreamRows (parse, spill, dedupe, enrich, dimension columns)",
        ("ParseFileBlocksFn", "DedupeAndEnrichShardFn", "_DimensionPartsFn", "_merge_dimension_parts"),
    ),
    (
        "staging files: rows -> typed Arrow -> Parquet",
        ("ToLoadTablesFn", "WriteToParquet", "parquet", "_WriteBundleDoFn", "filebasedsink"),
    ),
    ("staging files: uploads to Cloud Storage (the GCS emulator, HTTP)", ("gcsio", "resumable_media", "storage/")),
    (
        "BigQuery: load jobs, MERGE, staging tables (client calls, polling)",
        ("LoadStagingTableFn", "MergeStagingTablesFn", "DropStaleStagingTables", "DropStagingTables", "bigquery"),
    ),
    (
        "dimensions as dicts: snapshot rows, API-path side inputs, dims staging",
        ("ReadDimension", "read_latest_snapshot_rows", "EnrichEventFn", "StateBackedSideInputMap", "objsize"),
    ),
    (
        "pipeline construction and translation",
        ("build_pipeline", "to_runner_api", "BundleProcessor.__init__", "create_stages", "PipelineOptions"),
    ),
)


def group(stacks, groups=SHARDED_GROUPS, inside_run: bool = True) -> str:
    """Samples per group (inside ``Pipeline.run`` only, unless not ``inside_run``), the rest as Beam's runner."""
    counts: Counter[str] = Counter()
    for frames, count in stacks:
        if inside_run and not any(f.startswith("Pipeline.run ") for f in frames):
            continue
        label = next(
            (name for name, parts in groups if any(p in f for f in frames for p in parts)),
            "Beam runner/worker machinery (bundles, data plane, coders, GroupByKey)",
        )
        counts[label] += count
    total = sum(counts.values())
    out = [f"{total} samples" + (" inside Pipeline.run" if inside_run else "")]
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in counts.most_common()]
    return "\n".join(out)


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def load(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            frames, _, count = line.rpartition(" ")
            stacks.append((frames.split(";"), int(count)))
    return stacks


def _name(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('func')} ({file})"


def summarise(stacks, top: int, match: str | None) -> str:
    total = sum(c for _, c in stacks)
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        names = [_name(f) for f in frames]
        if names:
            self_time[names[-1]] += count
        for name in set(names):
            if match is None or match in name:
                inclusive[name] += count
    out = [f"{total} samples", "", "self time:"]
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in self_time.most_common(top)]
    out += ["", f"inclusive time{' (frames matching ' + repr(match) + ')' if match else ''}:"]
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_summary", description=__doc__.split("\n")[0])
    parser.add_argument("profile", help="py-spy --format raw output")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", help="only frames whose name contains this, in the inclusive table")
    parser.add_argument("--groups", action="store_true", help="samples of Pipeline.run by step of the sharded chain")
    parser.add_argument(
        "--hourly_groups", action="store_true", help="samples of a whole hourly job process by part of the job"
    )
    args = parser.parse_args(argv)
    stacks = load(args.profile)
    if args.hourly_groups:
        print(group(stacks, HOURLY_GROUPS, inside_run=False))
    else:
        print(group(stacks) if args.groups else summarise(stacks, args.top, args.match))


if __name__ == "__main__":
    main()
