"""Benchmark: the hourly chain's transforms on the in-memory FnApiRunner, beside a floor and two peers.

What is timed, each case in its own process (so peak RSS is its own), side by side
in the same run and alternated between repeats so that noise from other processes
on the machine hits every case alike:

* ``floor``: ``ReadFromText`` -> ``WriteToText`` of the same JSONL, nothing else.
* ``chain``: ``transforms.sharded.ShardedStreamRows``, the hourly job's stream-event path
  (blocks of lines -> fast path / contract -> shards spilled to files -> per shard dedupe
  and join with the products/users side inputs) -> one Parquet file of rows per shard,
  dead letters as JSONL. BigQuery is left out, so the figure is the transforms' cost.
* ``duckdb``, ``polars``: the same work as one DuckDB script / one Polars program on one
  thread (``benchmarks/duckdb_peer.py``, ``benchmarks/polars_peer.py``); each peer's rows
  and dead letters are checked equal to the chain's in the run (rows ``EXCEPT ALL`` both
  ways, dead letters by stage and payload).
* ``element``, ``parse_only``, ``parse_dedupe``: the per-element chain before issue 14, whole
  or cut after a stage; ``python``: the contract functions in a plain loop, no Beam.

Every case checks conservation on the figures it times:
``events in = rows written + dead letters + duplicates removed``.

Run::

    .venv/bin/python -m benchmarks.batch_hourly_chain                  # 1M events, 3 repeats
    .venv/bin/python -m benchmarks.batch_hourly_chain --events 200000 --modes chain,polars,duckdb
    .venv/bin/python -m benchmarks.batch_hourly_chain --bad_rate 0.05  # 5 % malformed lines

Targets: issue 8 (>= 25,000 events/s, <= 40 µs CPU per event, peak RSS <= 2 GiB at 1M),
issue 14 (<= 2x the DuckDB peer, >= 60,000 events/s per core), issue 27 (<= 1.0x the
Polars peer's CPU at 1M events, <= 1.3x at 200k).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks import measure
from benchmarks.datagen import DEFAULT_CACHE, Dataset, generate

TARGET_EVENTS_PER_S = 25_000
TARGET_CPU_US_PER_EVENT = 40.0
TARGET_RATIO_TO_FLOOR = 1.5
TARGET_PEAK_RSS_MIB = 2048
TARGET_EVENTS_PER_CORE = 60_000  # issue 14
TARGET_RATIO_TO_PEER = 2.0  # issue 14


def target_to_polars(n_events: int) -> float:
    """Issue 27: the chain <= 1.0x the Polars peer's CPU at 1M events, <= 1.3x at 200k (its fixed cost)."""
    return 1.0 if n_events >= 1_000_000 else 1.3


MODES = ("floor", "chain", "element", "duckdb", "polars", "python", "parse_only", "parse_dedupe")
PEERS = ("duckdb", "polars")  # each checked equal to the chain's output in the run
# Ablations: the chain cut after a stage, so the marginal cost of each stage shows up
# as the difference between neighbours measured in the same run.
ABLATIONS = {"parse_only": "parse", "parse_dedupe": "dedupe", "element": "enrich"}

ROW_PARQUET_FIELDS = (
    ("date", "string"),
    ("event_id", "string"),
    ("event_name", "string"),
    ("price", "string"),
    ("product_id", "string"),
    ("product_name", "string"),
    ("user_id", "string"),
    ("user_name", "string"),
    ("order_id", "string"),
    ("event_ts", "string"),
    ("session_id", "string"),
    ("quantity", "int64"),
    ("category", "string"),
    ("source", "string"),
    ("ingest_ts", "string"),
)


# ----------------------------------------------------------------------------- child side


def _pipeline_options():
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(
        runner="FnApiRunner", direct_num_workers=1, direct_running_mode="in_memory", save_main_session=False
    )


def _parquet_schema(fields):
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in fields])


def _write(pcoll, label: str, prefix: str, output_format: str, fields=None):
    import apache_beam as beam

    if output_format == "parquet":
        return pcoll | label >> beam.io.WriteToParquet(
            prefix, _parquet_schema(fields), file_name_suffix=".parquet", codec="snappy"
        )
    return pcoll | label >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl")


def _keyed_dimension(p, label: str, path: str, key: str):
    """As the hourly job's ``lake_io.ReadDimension``: the file read in one step, rows keyed in the next."""
    import apache_beam as beam

    from beam_pipelines import lake

    return (
        p
        | f"Create{label}Path" >> beam.Create([path])
        | f"Read{label}" >> beam.FlatMap(lambda f: [json.loads(line) for line in lake.iter_lines(f)])
        # Text keys, as ReadDimension gives the hourly job (ids are text in the contract).
        | f"Key{label}" >> beam.Map(lambda row: (str(row[key]), row))
    )


def build_floor(p, dataset: Dataset, out_dir: str, output_format: str) -> None:
    import apache_beam as beam

    lines = p | "ReadEvents" >> beam.io.ReadFromText(dataset.events_path)
    if output_format == "parquet":
        # The floor's Parquet output is the raw line in one column: still no parsing.
        lines = lines | "WrapLines" >> beam.Map(lambda line: {"payload": line})
    _write(lines, "WriteEvents", os.path.join(out_dir, "rows"), output_format, (("payload", "string"),))


def build_chain(p, dataset: Dataset, out_dir: str, output_format: str, upto: str = "enrich") -> None:
    import apache_beam as beam

    from beam_pipelines import events
    from beam_pipelines.events import SOURCE_STREAM
    from beam_pipelines.transforms.dedupe import DeduplicateEvents
    from beam_pipelines.transforms.enrich import EnrichWithDimensions
    from beam_pipelines.transforms.job_window import ParseEventsInWindow
    from beam_pipelines.transforms.parse import DEAD_LETTERS, EVENTS

    # The same transforms, in the same order, as the stream-event path of beam_pipelines.hourly.
    products = _keyed_dimension(p, "Products", dataset.products_path, "product_id")
    users = _keyed_dimension(p, "Users", dataset.users_path, "user_id")
    start = events.parse_ts(dataset.hour_start)
    parsed = (
        p
        | "ReadEvents" >> beam.io.ReadFromText(dataset.events_path)
        | "ParseEventsInWindow" >> ParseEventsInWindow(start, start + timedelta(hours=1), "hourly")
    )
    rows = parsed[EVENTS]
    if upto in ("dedupe", "enrich"):
        rows = rows | "DeduplicateEvents" >> DeduplicateEvents()
    if upto == "enrich":
        rows = rows | "EnrichWithDimensions" >> EnrichWithDimensions(products, users, SOURCE_STREAM)
    else:  # an ablation: write the event dicts (JSON only, Parquet needs the row schema)
        output_format = "jsonl"
    if output_format == "jsonl":
        rows = rows | "FormatRows" >> beam.Map(json.dumps)
    _write(rows, "WriteRows", os.path.join(out_dir, "rows"), output_format, ROW_PARQUET_FIELDS)
    (
        parsed[DEAD_LETTERS]
        | "FormatDeadLetters" >> beam.Map(json.dumps)
        | "WriteDeadLetters" >> beam.io.WriteToText(os.path.join(out_dir, "dead"), file_name_suffix=".jsonl")
    )


def build_sharded(p, dataset: Dataset, out_dir: str) -> None:
    import apache_beam as beam
    import pyarrow.parquet as pq

    from beam_pipelines import events
    from beam_pipelines.events import SOURCE_STREAM
    from beam_pipelines.transforms.sharded import DEAD_LETTERS, ROWS, ShardedStreamRows

    products = _keyed_dimension(p, "Products", dataset.products_path, "product_id")
    users = _keyed_dimension(p, "Users", dataset.users_path, "user_id")
    start = events.parse_ts(dataset.hour_start)
    # The shards' events spill to files, as the hourly job's on a local runner.
    spill_dir = os.path.join(out_dir, "shuffle")
    out = p | "ShardedStreamRows" >> ShardedStreamRows(
        [dataset.events_path],
        start,
        start + timedelta(hours=1),
        "hourly",
        products,
        users,
        SOURCE_STREAM,
        spill_dir=spill_dir,
    )

    def write(table):
        import uuid

        pq.write_table(table, os.path.join(out_dir, f"rows-{uuid.uuid4().hex}.parquet"), compression="snappy")
        return table.num_rows

    _ = out[ROWS] | "WriteRowTables" >> beam.Map(write)
    (
        out[DEAD_LETTERS]
        | "FormatDeadLetters" >> beam.Map(json.dumps)
        | "WriteDeadLetters" >> beam.io.WriteToText(os.path.join(out_dir, "dead"), file_name_suffix=".jsonl")
    )


def run_peer_case(mode: str, dataset: Dataset, out_dir: str) -> dict[str, Any]:
    """A peer (``duckdb``: benchmarks/duckdb_peer.sql; ``polars``: benchmarks/polars_peer.py) on one thread."""
    if mode == "polars":
        # Read by Polars when it is imported: one thread, as the chain's one worker.
        os.environ["POLARS_MAX_THREADS"] = "1"
        import polars  # noqa: F401  (imported before the clock starts, as Beam is for the other cases)

        from benchmarks import polars_peer as peer
    else:
        from benchmarks import duckdb_peer as peer
    import duckdb

    from beam_pipelines import events

    start = events.parse_ts(dataset.hour_start)
    result: dict[str, Any] = {"mode": mode}
    rows_out, dead_out = os.path.join(out_dir, "rows.parquet"), os.path.join(out_dir, "dead.parquet")
    with measure.measured(result):
        peer.run(dataset, start, start + timedelta(hours=1), rows_out, dead_out)
    result["rows_out"] = duckdb.sql(f"select count(*) from read_parquet('{rows_out}')").fetchone()[0]
    result["dead_out"] = duckdb.sql(f"select count(*) from read_parquet('{dead_out}')").fetchone()[0]
    result["counters"] = {"duplicates_removed": dataset.n_events - result["rows_out"] - result["dead_out"]}
    return result


def compare_outputs(chain_dir: str, peer_dir: str) -> str:
    """Rows: EXCEPT ALL both ways (all columns but ingest_ts); dead letters: (stage, payload) multisets."""
    import duckdb

    cols = ", ".join(name for name, _ in ROW_PARQUET_FIELDS if name != "ingest_ts")
    chain_rows = f"select {cols} from read_parquet('{chain_dir}/rows*.parquet')"
    peer_rows = f"select {cols} from read_parquet('{peer_dir}/rows.parquet')"
    only_chain = duckdb.sql(f"select count(*) from ({chain_rows} except all {peer_rows})").fetchone()[0]
    only_peer = duckdb.sql(f"select count(*) from ({peer_rows} except all {chain_rows})").fetchone()[0]
    chain_dead = (
        f"select stage, payload from read_json('{chain_dir}/dead*.jsonl', format='newline_delimited', "
        "columns={stage: 'VARCHAR', payload: 'VARCHAR'})"
    )
    peer_dead = f"select stage, payload from read_parquet('{peer_dir}/dead.parquet')"
    dead_chain = duckdb.sql(f"select count(*) from ({chain_dead} except all {peer_dead})").fetchone()[0]
    dead_peer = duckdb.sql(f"select count(*) from ({peer_dead} except all {chain_dead})").fetchone()[0]
    ok = only_chain == only_peer == dead_chain == dead_peer == 0
    verdict = "equal" if ok else "DIFFERENT"
    return (
        f"{verdict}: rows only in chain {only_chain}, only in peer {only_peer}; "
        f"dead letters only in chain {dead_chain}, only in peer {dead_peer}"
    )


def _count_output(pattern: str, output_format: str) -> int:
    files = glob.glob(pattern)
    if output_format == "parquet" and pattern.endswith(".parquet"):
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            total += sum(1 for _ in fh)
    return total


def run_beam_case(mode: str, dataset: Dataset, out_dir: str, output_format: str) -> dict[str, Any]:
    import apache_beam as beam

    p = beam.Pipeline(options=_pipeline_options())
    if mode == "floor":
        build_floor(p, dataset, out_dir, output_format)
    elif mode == "chain":
        build_sharded(p, dataset, out_dir)
    else:
        build_chain(p, dataset, out_dir, output_format, ABLATIONS[mode])
    result: dict[str, Any] = {"mode": mode}
    with measure.measured(result):
        pipeline_result = p.run()
        pipeline_result.wait_until_finish()
    from beam_pipelines.batch_run import counters

    result["counters"] = counters(pipeline_result) if mode != "floor" else {}
    suffix = "parquet" if (output_format == "parquet" and mode in ("floor", "element")) or mode == "chain" else "jsonl"
    result["rows_out"] = _count_output(
        os.path.join(out_dir, f"rows*.{suffix}"), "parquet" if suffix == "parquet" else output_format
    )
    result["dead_out"] = _count_output(os.path.join(out_dir, "dead*.jsonl"), "jsonl")
    return result


def run_python_case(dataset: Dataset, out_dir: str) -> dict[str, Any]:
    """The chain's contract work in a plain loop: parse, dedupe (dict), enrich, JSON out."""
    from datetime import UTC, datetime

    from beam_pipelines import events

    result: dict[str, Any] = {"mode": "python"}
    with measure.measured(result):
        products = {}
        with open(dataset.products_path) as f:
            for line in f:
                row = json.loads(line)
                products[row["product_id"]] = row
        users = {}
        with open(dataset.users_path) as f:
            for line in f:
                row = json.loads(line)
                users[row["user_id"]] = row
        winners: dict[str, dict] = {}
        dead = duplicates = 0
        with open(dataset.events_path, "rb") as f, open(os.path.join(out_dir, "dead.jsonl"), "w") as dl:
            for line in f:
                try:
                    event = events.parse_payload(line.rstrip(b"\n"))
                except events.InvalidEvent as exc:
                    dead += 1
                    dl.write(
                        json.dumps(
                            events.dead_letter_row(pipeline="hourly", stage=exc.stage, error=exc.reason, payload=line)
                        )
                        + "\n"
                    )
                    continue
                best = winners.get(event["event_id"])
                if best is not None:
                    duplicates += 1
                    if event["event_time"] >= best["event_time"]:
                        continue
                winners[event["event_id"]] = event
        with open(os.path.join(out_dir, "rows.jsonl"), "w") as out:
            for event in winners.values():
                row = events.user_behavior_row(
                    event,
                    products.get(event["product_id"]),
                    users.get(event["user_id"]),
                    events.SOURCE_STREAM,
                    events.format_ts(datetime.now(UTC)),
                )
                out.write(json.dumps(row) + "\n")
    result["counters"] = {"duplicates_removed": duplicates}
    result["rows_out"] = len(winners)
    result["dead_out"] = dead
    return result


def child_main(args: argparse.Namespace) -> None:
    dataset = Dataset(**json.loads(Path(args.dataset_json).read_text()))
    out_dir = args.out_dir or tempfile.mkdtemp(prefix=f"bench-{args.worker}-")
    try:
        if args.worker == "python":
            result = run_python_case(dataset, out_dir)
        elif args.worker in PEERS:
            result = run_peer_case(args.worker, dataset, out_dir)
        else:
            result = run_beam_case(args.worker, dataset, out_dir, args.output_format)
    finally:
        if not args.out_dir:
            shutil.rmtree(out_dir, ignore_errors=True)
    measure.emit(result)


# ----------------------------------------------------------------------------- parent side


def _check_conservation(case: dict[str, Any], dataset: Dataset) -> str:
    if case["mode"] == "floor":
        ok = case["rows_out"] == dataset.n_events
        return "ok" if ok else f"FLOOR LOST LINES: {case['rows_out']} != {dataset.n_events}"
    if case["mode"] == "parse_only":
        ok = case["rows_out"] == dataset.n_events - dataset.n_bad and case["dead_out"] == dataset.n_bad
        return "ok" if ok else f"BROKEN: rows={case['rows_out']} dead={case['dead_out']}"
    dups = case["counters"].get("duplicates_removed", 0)
    total = case["rows_out"] + case["dead_out"] + dups
    expected = (dataset.n_unique_valid, dataset.n_bad, dataset.n_duplicates)
    got = (case["rows_out"], case["dead_out"], dups)
    if total == dataset.n_events and got == expected:
        return "ok"
    return f"BROKEN: in={dataset.n_events} rows+dead+dups={total} got={got} expected={expected}"


def summarise(cases: list[dict[str, Any]], dataset: Dataset, modes: list[str]) -> dict[str, Any]:
    """Medians per mode, and the chain/floor ratios of cases that ran in the same repeat."""
    n = dataset.n_events
    summary: dict[str, Any] = {"n_events": n, "modes": {}}
    for mode in modes:
        runs = [c for c in cases if c["mode"] == mode]
        summary["modes"][mode] = {
            "events_per_s": measure.median([n / c["wall_s"] for c in runs]),
            "events_per_s_all": [round(n / c["wall_s"]) for c in runs],
            "cpu_us_per_event": measure.median([c["cpu_s"] * 1e6 / n for c in runs]),
            "cpu_us_per_event_all": [round(c["cpu_s"] * 1e6 / n, 2) for c in runs],
            "wall_s": measure.median([c["wall_s"] for c in runs]),
            "peak_rss_mib": max(c["peak_rss_mib"] for c in runs),
            "conservation": sorted({_check_conservation(c, dataset) for c in runs}),
        }
    if "floor" in modes and "chain" in modes:
        by_repeat: dict[int, dict[str, Any]] = {}
        for c in cases:
            by_repeat.setdefault(c["repeat"], {})[c["mode"]] = c
        ratios = [r["chain"]["cpu_s"] / r["floor"]["cpu_s"] for r in by_repeat.values() if {"chain", "floor"} <= set(r)]
        summary["chain_to_floor_cpu_ratio"] = measure.median(ratios)
        summary["chain_to_floor_cpu_ratio_all"] = [round(x, 2) for x in ratios]
    for peer in PEERS:
        if peer not in modes or "chain" not in modes:
            continue
        by_repeat = {}
        for c in cases:
            by_repeat.setdefault(c["repeat"], {})[c["mode"]] = c
        ratios = [r["chain"]["cpu_s"] / r[peer]["cpu_s"] for r in by_repeat.values() if {"chain", peer} <= set(r)]
        summary[f"chain_to_{peer}_cpu_ratio"] = measure.median(ratios)
        summary[f"chain_to_{peer}_cpu_ratio_all"] = [round(x, 2) for x in ratios]
    return summary


def report(summary: dict[str, Any], dataset: Dataset, args: argparse.Namespace) -> str:
    rows = []
    for mode, s in summary["modes"].items():
        rows.append(
            [
                mode,
                f"{s['events_per_s']:,.0f}",
                f"{s['cpu_us_per_event']:.1f}",
                ", ".join(f"{x:g}" for x in s["cpu_us_per_event_all"]),
                f"{s['wall_s']:.1f}",
                f"{s['peak_rss_mib']:,.0f}",
                "; ".join(s["conservation"]),
            ]
        )
    table = measure.markdown_table(
        [
            "case",
            "events/s (median)",
            "CPU µs/event (median)",
            "CPU µs/event (each repeat)",
            "wall s",
            "peak RSS MiB",
            "conservation",
        ],
        rows,
    )
    lines = [
        f"batch_hourly_chain: {dataset.n_events:,} events ({dataset.n_unique_valid:,} unique valid, "
        f"{dataset.n_duplicates:,} duplicates, {dataset.n_bad:,} malformed), output {args.output_format}, "
        f"{args.repeats} repeat(s), FnApiRunner in_memory direct_num_workers=1",
        "",
        table,
    ]
    chain = summary["modes"].get("chain")
    if chain:
        ratio = summary.get("chain_to_floor_cpu_ratio")
        checks = [
            ("events/s >= 25,000", chain["events_per_s"] >= TARGET_EVENTS_PER_S, f"{chain['events_per_s']:,.0f}"),
            (
                "CPU <= 40 µs/event",
                chain["cpu_us_per_event"] <= TARGET_CPU_US_PER_EVENT,
                f"{chain['cpu_us_per_event']:.1f}",
            ),
            ("peak RSS <= 2 GiB", chain["peak_rss_mib"] <= TARGET_PEAK_RSS_MIB, f"{chain['peak_rss_mib']:,.0f} MiB"),
        ]
        if ratio is not None:
            checks.append(
                (
                    "CPU <= 1.5x floor",
                    ratio <= TARGET_RATIO_TO_FLOOR,
                    f"{ratio:.2f}x (each repeat: {summary['chain_to_floor_cpu_ratio_all']})",
                )
            )
        checks.append(
            (
                "events/s per core >= 60,000 (1 / CPU per event)",
                1e6 / chain["cpu_us_per_event"] >= TARGET_EVENTS_PER_CORE,
                f"{1e6 / chain['cpu_us_per_event']:,.0f}",
            )
        )
        for peer, target in (("duckdb", TARGET_RATIO_TO_PEER), ("polars", target_to_polars(summary["n_events"]))):
            ratio = summary.get(f"chain_to_{peer}_cpu_ratio")
            if ratio is not None:
                checks.append(
                    (
                        f"CPU <= {target}x the {peer} peer",
                        ratio <= target,
                        f"{ratio:.2f}x (each repeat: {summary[f'chain_to_{peer}_cpu_ratio_all']}); "
                        f"output {'; '.join(summary[f'chain_vs_{peer}_output'])}",
                    )
                )
        lines += ["", "targets (chain):"]
        lines += [f"  {'PASS' if ok else 'MISS'}  {name}: {value}" for name, ok, value in checks]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_hourly_chain", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="number of generated events (default 1M)")
    parser.add_argument("--repeats", type=int, default=3, help="times each case runs (medians reported)")
    parser.add_argument("--modes", default="floor,chain,python", help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument("--output_format", choices=("jsonl", "parquet"), default="jsonl")
    parser.add_argument("--bad_rate", type=float, default=0.005, help="share of malformed lines (default 0.005)")
    parser.add_argument("--cache_dir", default=str(DEFAULT_CACHE), help="where generated inputs are kept")
    parser.add_argument("--json_out", help="also write the raw cases and summary as JSON here")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--dataset_json", help=argparse.SUPPRESS)
    parser.add_argument("--out_dir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.worker:
        child_main(args)
        return None
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    machine = measure.machine_description()
    dataset, gen_s = measure.timed(
        lambda: generate(args.events, cache_dir=Path(args.cache_dir), bad_rate=args.bad_rate)
    )
    print(f"input: {dataset.events_path} ({gen_s:.1f} s to generate or find)", file=sys.stderr)
    dataset_json = Path(dataset.events_path).with_name("dataset.json")
    cases = []
    comparisons: dict[str, list[str]] = {peer: [] for peer in PEERS}
    for repeat in range(args.repeats):
        outs = {m: tempfile.mkdtemp(prefix=f"bench-{m}-") for m in ("chain", *PEERS) if m in modes}
        # Alternate the order so that drift in background load does not favour one case.
        order = modes if repeat % 2 == 0 else list(reversed(modes))
        for mode in order:
            case = measure.run_case(
                [
                    "-m",
                    "benchmarks.batch_hourly_chain",
                    "--worker",
                    mode,
                    "--dataset_json",
                    str(dataset_json),
                    "--output_format",
                    args.output_format,
                    *(["--out_dir", outs[mode]] if mode in outs else []),
                ]
            )
            case["repeat"] = repeat
            print(
                f"  repeat {repeat} {mode}: {case['wall_s']:.1f} s wall, {case['cpu_s']:.1f} s CPU, "
                f"{case['peak_rss_mib']:,.0f} MiB",
                file=sys.stderr,
            )
            cases.append(case)
        for peer in PEERS:
            if "chain" in outs and peer in outs:
                comparisons[peer].append(compare_outputs(outs["chain"], outs[peer]))
                print(f"  repeat {repeat} chain vs {peer}: {comparisons[peer][-1]}", file=sys.stderr)
        for folder in outs.values():
            shutil.rmtree(folder, ignore_errors=True)
    summary = summarise(cases, dataset, modes)
    for peer in PEERS:
        summary[f"chain_vs_{peer}_output"] = sorted(set(comparisons[peer]))
    summary["machine"] = machine
    summary["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(report(summary, dataset, args))
    print(f"machine: {json.dumps(summary['machine'])}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"summary": summary, "cases": cases}, indent=2, default=str))
    return summary


if __name__ == "__main__":
    main()
