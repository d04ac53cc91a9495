"""What keeping the local BigQuery emulator's data on disk costs: in memory vs ``--persistent``.

The local stack runs bqemulator with ``--persistent --data-dir .local/stack/bigquery``
so tables survive ``local down`` / ``up`` (issue 25). This measures, for each mode, the
work the jobs and the analytics command give it, on the same emulator start-up path as
the stack (``beam_pipelines.local.services.start_bigquery``):

  * ``load``: a Parquet file of N ``user_behavior`` rows loaded into a staging table by a
    load job (the hourly job's staging step, its own Arrow schema and conversion);
  * ``merge``: the hourly job's ``MERGE`` of that staging table into ``user_behavior``;
  * ``insert``: streaming inserts of 5,000 rows in requests of ``--insert-batch`` rows (the
    streaming job's sink: one request per bundle, ~100 messages per pull locally);
  * ``query``: a report-like aggregate over ``user_behavior`` (per day and event type);
  * ``restart``: stop and start again (persistent: then the rows are counted, to be sure they
    came back);

plus the emulator process's CPU (utime + stime) and peak RSS (``VmHWM``), and the size of
its DuckDB files. Four modes: in memory and on disk, each as bqemulator runs by default
(a copy of the table after every write, for time travel) and without those copies
(``-nc``: :mod:`beam_pipelines.local.bqemulator_main`); the stack runs ``disk-nc``, the
test fixtures ``memory``. They run interleaved, ``--repeats`` times; the table gives the
median of each figure and its ratio to ``memory``'s.

    .venv/bin/python -m benchmarks.bq_persistence --rows 200000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from beam_pipelines.local.processes import stop_process
from beam_pipelines.local.services import gcs_objects_dir, start_bigquery
from beam_pipelines.local.stack import DEFAULT_ROOT
from beam_pipelines.transforms.staging.load import arrow_schemas, to_load_table
from beam_pipelines.transforms.staging.merge import user_behavior_merge_sql
from beam_pipelines.transforms.staging.targets import MergeTarget, TableRef
from bigquery_schemas.client import make_client, query_scalar
from bigquery_schemas.ddl import ensure_all, to_schema_fields

PROJECT, DATASET, BUCKET = "bench-project", "bench", "bench-bucket"
STEPS = ("start", "load", "merge", "insert", "query", "restart")


def _rows(n: int, offset: int = 0) -> list[dict]:
    """``user_behavior`` rows in their text form, spread over one day."""
    day = datetime(2026, 11, 20, tzinfo=UTC)
    names = ("view", "view", "view", "add_to_cart", "order")
    rows = []
    for i in range(offset, offset + n):
        ts = (day + timedelta(seconds=i % 86_400)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rows.append(
            {
                "date": "2026-11-20",
                "event_id": f"e-{i}",
                "event_name": names[i % 5],
                "price": f"{(i % 997) / 10:.2f}",
                "product_id": f"p-{i % 5000}",
                "product_name": f"Product {i % 5000}",
                "user_id": f"u-{i % 50000}",
                "user_name": f"User {i % 50000}",
                "order_id": f"o-{i}" if i % 5 == 4 else None,
                "event_ts": ts,
                "session_id": f"s-{i // 7}",
                "quantity": 1 + i % 3,
                "category": f"c-{i % 8}",
                "source": "stream",
                "ingest_ts": ts,
            }
        )
    return rows


def _proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) / 1024


def _timed(figures: dict[str, float], step: str, fn: Callable[[], object]) -> object:
    t0 = time.perf_counter()
    out = fn()
    figures[step] = time.perf_counter() - t0
    return out


# (label, on disk, bqemulator's copy of the table after each write for time travel)
MODES = (("memory", False, True), ("disk", True, True), ("memory-nc", False, False), ("disk-nc", True, False))


def run_once(persistent: bool, copies: bool, n_rows: int, parquet: Path, workdir: Path, batch: int) -> dict[str, float]:
    """One emulator life in one mode: every step's wall seconds, the emulator's CPU and peak RSS."""
    from google.cloud import bigquery

    figures: dict[str, float] = {}
    data_dir = workdir / "bigquery" if persistent else None
    gcs_dir = workdir / "gcs"
    start = lambda: start_bigquery(  # noqa: E731
        workdir, PROJECT, DEFAULT_ROOT, gcs_dir=gcs_dir, persistent_dir=data_dir, time_travel_copies=copies
    )
    info = _timed(figures, "start", start)
    try:
        client = make_client(PROJECT, info.endpoints["rest"])
        ensure_all(client, DATASET)
        final = TableRef(PROJECT, DATASET, "user_behavior")
        staging = final.staging("bench")
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            schema=to_schema_fields(__import__("bigquery_schemas").table_spec("user_behavior").fields),
        )
        client.create_table(bigquery.Table(staging.table_id, schema=config.schema), exists_ok=True)
        uri = f"gs://{BUCKET}/{parquet.name}"
        _timed(figures, "load", lambda: client.load_table_from_uri(uri, staging.table_id, job_config=config).result())
        merge = user_behavior_merge_sql(MergeTarget("user_behavior", final, staging))
        params = [bigquery.ScalarQueryParameter(p, "DATE", "2026-11-20") for p in ("min_date", "max_date")]
        merge_config = bigquery.QueryJobConfig(query_parameters=params)
        _timed(figures, "merge", lambda: client.query(merge, job_config=merge_config).result())
        extra = _rows(5_000, offset=n_rows)
        _timed(
            figures,
            "insert",
            lambda: [
                client.insert_rows_json(final.table_id, extra[i : i + batch]) for i in range(0, len(extra), batch)
            ],
        )
        sql = (
            f"select date, event_name, count(*) as events, count(distinct user_id) as users, sum(price) as amount "
            f"from {final.sql} group by date, event_name order by 1, 2"
        )
        _timed(figures, "query", lambda: list(client.query(sql).result()))
        figures["emulator_cpu_s"], figures["emulator_peak_mib"] = _proc_stats(info.pid)
        t0 = time.perf_counter()
        stop_process(info.pid)
        info = start()
        figures["restart"] = time.perf_counter() - t0
        if persistent:
            client = make_client(PROJECT, info.endpoints["rest"])
            found = query_scalar(client, f"select count(*) from {final.sql}")
            if found != n_rows + len(extra):
                raise RuntimeError(f"after the restart {found} rows, expected {n_rows + len(extra)}")
        figures["disk_mib"] = sum(f.stat().st_size for f in (data_dir or workdir).rglob("*.duckdb*")) / 2**20
    finally:
        stop_process(info.pid)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bq_persistence", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the loaded Parquet file")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mode, interleaved")
    parser.add_argument("--insert-batch", type=int, default=100, help="rows per streaming-insert request")
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_GCE_CHECK", "true")
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in MODES}
    with tempfile.TemporaryDirectory(prefix="bq-persistence-") as tmp:
        root = Path(tmp)
        objects = gcs_objects_dir(root / "gcs") / BUCKET
        objects.mkdir(parents=True)
        typed, text = arrow_schemas("user_behavior")
        parquet = objects / "rows.parquet"
        pq.write_table(to_load_table(pa.Table.from_pylist(_rows(args.rows), schema=text), typed), parquet)
        print(f"{args.rows:,} rows in {parquet.stat().st_size / 2**20:.1f} MiB of Parquet", flush=True)
        for i in range(args.repeats):
            for mode, persistent, copies in MODES:
                workdir = root / f"{mode}-{i}"
                workdir.mkdir()
                (workdir / "gcs").symlink_to(root / "gcs")
                figures = run_once(persistent, copies, args.rows, parquet, workdir, args.insert_batch)
                results[mode].append(figures)
                print(f"  run {i + 1} {mode:6s} " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)
    keys = [*STEPS, "emulator_cpu_s", "emulator_peak_mib", "disk_mib"]
    print(
        f"\nmedian of {args.repeats} (seconds unless named), {args.rows:,} rows loaded + 5,000 inserted "
        f"{args.insert_batch} per request"
    )
    labels = [label for label, _, _ in MODES]
    print(f"{'figure':20s} " + " ".join(f"{label:>10s}" for label in labels) + "  (ratios to memory)")
    for key in keys:
        medians = [statistics.median(r.get(key, 0.0) for r in results[label]) for label in labels]
        ratios = " ".join(f"{m / medians[0]:.2f}x" if medians[0] else "-" for m in medians[1:])
        print(f"{key:20s} " + " ".join(f"{m:10.2f}" for m in medians) + f"  {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
