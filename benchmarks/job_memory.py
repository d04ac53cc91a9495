"""Peak memory (RSS) of each job, run for real on local services, one job per process (a script, not a test).

Each batch job runs as its own command, ``python -m beam_pipelines.<job> ...``, exactly
as a user runs it (FnApiRunner, in-memory, one worker); its peak RSS is the
``ru_maxrss`` that ``wait4`` reports for that process, start-up and imports included.
Every size runs in a fresh process, so the smaller size gives the fixed part and the
difference the growth per record.

* ``extract_dims``: N products and N users in SQLite (``publishers.catalog load``) ->
  lake snapshots; checks that each snapshot holds N rows.
* ``extract_orders``: N/2 orders (~2.1 lines each, so ~N order lines) in SQLite, served by
  the real orders API (``publishers.orders_api`` via ``beam_pipelines.local.services``)
  -> lake; checks that the lake holds every order and every line of the window.
* ``hourly``: N stream events (``benchmarks.datagen``: 2 % duplicates, 0.5 % malformed)
  in one lake hour, 5,000 products and 50,000 users as the snapshot, written to the
  BigQuery emulator (staging tables by load jobs from the GCS emulator + MERGE, as the
  job does), both started fresh for each size so their peak RSS and CPU are that run's;
  checks rows, dead letters and ``duplicates_removed`` against the generator's ground
  truth. Sized apart (``--hourly_records``).
* ``streaming``: the job as a long-running process on the Pub/Sub and BigQuery
  emulators (dimensions from the lake snapshot, ``--dims_lake_root``); the simulator
  publishes in steps (5 % duplicates, 3 % malformed) and after each step, once every
  row and dead letter is in BigQuery, the job's ``VmHWM`` (peak RSS) and ``VmRSS`` are
  read from ``/proc``. It drains ~1,000 events/s here, so it is measured at thousands,
  not millions, of events.

Generated sources are cached under ``.local/bench/job_memory/``. Run::

    NO_GCE_CHECK=true .venv/bin/python -m benchmarks.job_memory  # extracts 100k+1M, hourly 250k+1M, streaming 5k+20k
    NO_GCE_CHECK=true .venv/bin/python -m benchmarks.job_memory --hourly_records 20000 --jobs hourly
    NO_GCE_CHECK=true .venv/bin/python -m benchmarks.job_memory --jobs streaming --stream_messages 5000,20000
    NO_GCE_CHECK=true .venv/bin/python -m benchmarks.job_memory --jobs hourly,backfill --hourly_records 1000000 \
        --backfill_records 20000000 --bigquery_emulator stack   # the backfill on the emulator as `local up` runs it
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from beam_pipelines import events, lake
from benchmarks import measure
from benchmarks.datagen import DEFAULT_CACHE, generate

PROJECT = "local-ecommerce"
JOBS = ("extract_dims", "extract_orders", "hourly", "streaming", "backfill")
DEFAULT_JOBS = ("extract_dims", "extract_orders", "hourly", "streaming")
# The side inputs of hourly and streaming: datagen's catalog size, so every event finds its product.
SMALL_PRODUCTS, SMALL_USERS = 5_000, 50_000
ORDERS_START, ORDERS_END = "2026-01-10T00:00:00Z", "2026-01-11T00:00:00Z"
SNAPSHOT_TS = "2026-01-10T00:00:00Z"
# The share of malformed event lines of hourly's input (--hourly_bad_rate; one value per run).
HOURLY_BAD_RATE = [0.005]
# --bigquery_emulator: "fixtures" (as the tests start it: in memory for hourly, a DuckDB file for the
# backfill, both copying the table after every write for time travel) or "stack" (as `local up`
# runs it: a DuckDB file, no time-travel copies; see beam_pipelines.local.services.start_bigquery).
BIGQUERY_EMULATOR = ["fixtures"]
_COUNTER_LINE = re.compile(r"^\s+(\w+)\s+(-?\d+)$")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- running a job


@dataclass
class JobRun:
    peak_rss_mib: float
    wall_s: float
    counters: dict[str, int]
    cpu_s: float = 0.0  # user + system of the job's process (its children included)


def run_job(job: str, args: list[str], work: Path, env: dict[str, str], timeout: float = 3600) -> JobRun:
    """Run ``python -m beam_pipelines.<job> args`` to completion; its own peak RSS from ``wait4``.

    Raises:
      RuntimeError: the job failed or ran past ``timeout`` (the end of its stderr is included).
    """
    out_path, err_path = work / f"{job}.out", work / f"{job}.err"
    t0 = time.monotonic()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"beam_pipelines.{job}", *args],
            stdout=out,
            stderr=err,
            env={**os.environ, "NO_GCE_CHECK": "true", **env},
        )
    # wait4 instead of Popen.wait: it returns the child's own rusage (ru_maxrss in KiB on Linux).
    next_note = t0 + 30
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.monotonic()
        if now - t0 > timeout:
            proc.kill()
            raise RuntimeError(f"{job} ran past {timeout:.0f} s; see {err_path}")
        if now > next_note:
            say(f"    {job} running, {now - t0:.0f} s")
            next_note = now + 30
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{job} failed (exit {proc.returncode}):\n{err_path.read_text()[-3000:]}")
    counters: dict[str, int] = {}
    # Summed: a split backfill prints each window's counters.
    for m in filter(None, map(_COUNTER_LINE.match, out_path.read_text().splitlines())):
        counters[m[1]] = counters.get(m[1], 0) + int(m[2])
    return JobRun(usage.ru_maxrss / 1024, wall, counters, usage.ru_utime + usage.ru_stime)


def proc_mib(pid: int, key: str) -> float:
    """``VmHWM`` (peak RSS) or ``VmRSS`` of a live process, from ``/proc``, in MiB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status[key].split()[0]) / 1024


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used so far, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check(what: dict[str, tuple[int, int]]) -> str:
    """``ok`` when every (got, want) pair matches, else the pairs that do not."""
    bad = [f"{name} {got:,} != {want:,}" for name, (got, want) in what.items() if got != want]
    return "ok: " + ", ".join(f"{name} {got:,}" for name, (got, _) in what.items()) if not bad else "; ".join(bad)


# ----------------------------------------------------------------------------- inputs


def catalog_db(cache: Path, n_products: int, n_users: int, n_orders: int = 0) -> str:
    """SQLite source loaded by ``publishers.catalog load`` (cached by size); its URL."""
    path = cache / f"source_p{n_products}_u{n_users}_o{n_orders}.db"
    if not path.exists():
        say(f"  generating {path.name} with publishers.catalog ...")
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        argv = ["load", "--database-url", f"sqlite:///{tmp}", "--products", str(n_products), "--users", str(n_users)]
        argv += ["--orders", str(n_orders), "--seed", "7", "--start", ORDERS_START, "--end", ORDERS_END]
        subprocess.run([sys.executable, "-m", "publishers.catalog", *argv], check=True, stdout=subprocess.DEVNULL)
        tmp.rename(path)
    return f"sqlite:///{path}"


def count_lines(paths: list[str]) -> int:
    return sum(1 for path in paths for _ in lake.iter_lines(path))


def snapshot_rows(lake_root: str, table: str) -> int:
    return count_lines(lake.list_files(lake.join(lake.latest_snapshot_dir(lake_root, table), "part-*.jsonl")))


def small_dims_lake(cache: Path, lake_root: str, work: Path) -> None:
    """Products and users snapshots of the hourly/streaming side inputs, written by extract_dims itself."""
    url = catalog_db(cache, SMALL_PRODUCTS, SMALL_USERS)
    run_job("extract_dims", ["--database_url", url, "--lake_root", lake_root, "--snapshot_ts", SNAPSHOT_TS], work, {})


# ----------------------------------------------------------------------------- cases


@dataclass
class Services:
    """Emulators shared by the cases of one run (started only when a selected job needs them)."""

    bigquery: Any = None
    pubsub: Any = None

    def client(self):
        from bigquery_schemas.client import make_client

        return make_client(PROJECT, self.bigquery.endpoints["rest"])

    def fresh_dataset(self) -> str:
        from bigquery_schemas.ddl import ensure_all

        dataset = f"jobmem_{uuid.uuid4().hex[:8]}"
        ensure_all(self.client(), dataset)
        return dataset

    def count(self, dataset: str, table: str, where: str = "true") -> int:
        from bigquery_schemas.client import query_scalar

        return query_scalar(self.client(), f"select count(*) from `{PROJECT}.{dataset}.{table}` where {where}")


def case_extract_dims(n: int, cache: Path, work: Path, _services: Services) -> dict[str, Any]:
    url = catalog_db(cache, n, n)
    lake_root = str(work / "lake")
    args = ["--database_url", url, "--lake_root", lake_root, "--snapshot_ts", SNAPSHOT_TS]
    run = run_job("extract_dims", args, work, {})
    got = {t: (snapshot_rows(lake_root, t), n) for t in ("products", "users")}
    return {"input": f"{n:,} products + {n:,} users", "records": 2 * n, "run": run, "check": check(got)}


def case_extract_orders(n: int, cache: Path, work: Path, _services: Services) -> dict[str, Any]:
    from beam_pipelines.io import sql
    from beam_pipelines.local.processes import stop_process
    from beam_pipelines.local.services import start_orders_api

    url = catalog_db(cache, SMALL_PRODUCTS, SMALL_USERS, n_orders=n // 2)
    with sql.connect(url) as db:
        n_orders, n_lines = db.scalar("select count(*) from orders"), db.scalar("select count(*) from order_lines")
        first, last = db.query_dicts("select min(updated_at) as lo, max(updated_at) as hi from orders")[0].values()
    # Orders are placed in [ORDERS_START, ORDERS_END) and updated up to hours later: cover them all.
    start = lake.floor_hour(events.parse_ts(str(first)))
    end = lake.floor_hour(events.parse_ts(str(last))) + timedelta(hours=1)
    token = secrets.token_urlsafe(24)
    api = start_orders_api(work / "api", url, token=token, create_schema=False)
    lake_root = str(work / "lake")
    try:
        args = ["--api_base_url", api.endpoints["http"], "--lake_root", lake_root]
        args += ["--window_start", events.format_ts(start), "--window_end", events.format_ts(end)]
        run = run_job("extract_orders", args, work, {"ORDERS_API_TOKEN": token})
    finally:
        stop_process(api.pid)
    files = lake.list_files(lake.join(lake_root, lake.RAW, lake.ORDERS, "dt=*", "hour=*", "orders_*.jsonl"))
    orders_out = lines_out = 0
    for path in files:
        for line in lake.iter_lines(path):
            orders_out += 1
            lines_out += len(json.loads(line)["lines"])
    got = {"orders": (orders_out, n_orders), "order lines": (lines_out, n_lines)}
    return {"input": f"{n_orders:,} orders, {n_lines:,} lines", "records": n_lines, "run": run, "check": check(got)}


def case_hourly(n: int, cache: Path, work: Path, _services: Services) -> dict[str, Any]:
    """The hourly job over one generated hour of event files (emulators fresh per size)."""
    data = generate(n, cache_dir=cache, n_products=SMALL_PRODUCTS, n_users=SMALL_USERS, bad_rate=HOURLY_BAD_RATE[0])
    lake_root = str(work / "lake")
    small_dims_lake(cache, lake_root, work)
    hour = events.parse_ts(data.hour_start)
    partition = Path(lake.partition_path(lake_root, lake.EVENTS, hour))
    partition.mkdir(parents=True)
    os.link(data.events_path, partition / "events.jsonl")
    want = {"rows": data.n_unique_valid, "dead letters": data.n_bad, "duplicates_removed": data.n_duplicates}
    return hourly_on_fresh_stack(f"{n:,} events", n, work, lake_root, (hour, hour + lake.HOUR), want)


def hourly_on_fresh_stack(
    label: str,
    n: int,
    work: Path,
    lake_root: str,
    window: tuple[datetime, datetime],
    want: dict[str, int],
    extra: tuple[str, ...] = (),
    persistent: bool = False,
) -> dict[str, Any]:
    """``python -m beam_pipelines.hourly`` over ``window`` on emulators of its own; the case's result.

    The emulators start fresh, so their peaks and CPU are this run's; ``persistent`` keeps the
    BigQuery emulator's tables in a DuckDB file (always so with ``--bigquery_emulator stack``,
    which also runs it without time-travel copies, as the local stack does). Event files dropped into the lake and no
    orders extract: the job is told so (``--allow_missing_extracts``). Checks rows, dead
    letters and ``duplicates_removed`` against ``want``.
    """
    from beam_pipelines.local.processes import stop_process
    from beam_pipelines.local.services import start_bigquery, start_storage
    from beam_pipelines.local.stack import DEFAULT_ROOT

    stack = BIGQUERY_EMULATOR[0] == "stack"
    persistent = persistent or stack
    storage = start_storage(work / "storage", "job-memory-temp", data_dir=work / "gcs")
    bigquery = start_bigquery(
        work / "bigquery",
        PROJECT,
        DEFAULT_ROOT,
        gcs_dir=work / "gcs",
        persistent_dir=work / "bigquery-data" if persistent else None,
        time_travel_copies=not stack,
    )
    services = Services(bigquery=bigquery)
    try:
        dataset = services.fresh_dataset()
        table = lambda name: f"{PROJECT}:{dataset}.{name}"  # noqa: E731
        args = ["--project", PROJECT, "--lake_root", lake_root, "--allow_missing_extracts", *extra]
        args += ["--window_start", events.format_ts(window[0]), "--window_end", events.format_ts(window[1])]
        args += ["--output_table", table("user_behavior"), "--dead_letter_table", table("dead_letter")]
        args += ["--products_table", table("products"), "--users_table", table("users")]
        args += ["--orders_table", table("orders")]
        cpu0 = {s.name: proc_cpu_s(s.pid) for s in (bigquery, storage)}
        run = run_job("hourly", args, work, {**bigquery.env, **storage.env}, timeout=4 * 3600)
        cpu = {s.name: proc_cpu_s(s.pid) - cpu0[s.name] for s in (bigquery, storage)}
        peak = {s.name: proc_mib(s.pid, "VmHWM") for s in (bigquery, storage)}
        got = {
            "rows": (services.count(dataset, "user_behavior"), want["rows"]),
            "dead letters": (services.count(dataset, "dead_letter"), want["dead letters"]),
            "duplicates_removed": (run.counters.get("duplicates_removed", 0), want["duplicates_removed"]),
        }
    finally:
        stop_process(bigquery.pid)
        stop_process(storage.pid)
    windows = len(re.findall(r"backfill: window \d+/\d+ .*: done in", (work / "hourly.err").read_text()))
    total = run.peak_rss_mib + sum(peak.values())
    note = (
        (f"{windows} windows; " if windows else "")
        + f"job CPU {run.cpu_s:,.0f} s; bqemulator{' (DuckDB file)' if persistent else ''}"
        f"{', no time-travel copies' if stack else ''} "
        f"{peak['bigquery']:,.0f} MiB peak, {cpu['bigquery']:,.0f} s CPU; GCS emulator {peak['storage']:,.0f} MiB, "
        f"{cpu['storage']:,.0f} s; job + emulators <= {total:,.0f} MiB"
    )
    return {
        "input": label,
        "records": n,
        "run": run,
        "check": check(got),
        "note": note,
        "cpu_s": run.cpu_s + sum(cpu.values()),
        "peak_sum_mib": total,
    }


def case_streaming(steps: list[int], cache: Path, work: Path, services: Services) -> list[dict[str, Any]]:
    """One job process; after each cumulative step of published messages, its peak and current RSS."""
    from beam_pipelines.local.processes import start_process, stop_process
    from beam_pipelines.local.pubsub_admin import ensure_subscription

    lake_root = str(work / "lake")
    small_dims_lake(cache, lake_root, work)
    topic = f"jobmem-{uuid.uuid4().hex[:8]}"
    subscription = ensure_subscription(PROJECT, topic, f"{topic}-sub", services.pubsub.env["PUBSUB_EMULATOR_HOST"])
    dataset = services.fresh_dataset()
    table = lambda name: f"{PROJECT}:{dataset}.{name}"  # noqa: E731
    env = {**services.bigquery.env, **services.pubsub.env, "NO_GCE_CHECK": "true"}
    argv = [sys.executable, "-m", "beam_pipelines.streaming", "--project", PROJECT]
    argv += ["--input_subscription", subscription, "--dims_lake_root", lake_root, "--lake_root", lake_root]
    argv += ["--output_table", table("user_behavior"), "--dead_letter_table", table("dead_letter")]
    argv += ["--engagement_table", table("engagement_minutely")]
    argv += ["--products_table", table("products"), "--users_table", table("users")]
    job = start_process("streaming-job", argv, work / "streaming.log", env=env)
    results, sent, want_rows, want_dead = [], 0, 0, 0
    t0 = time.monotonic()
    try:
        for step, total in enumerate(steps):
            manifest = work / f"manifest-{step}.json"
            pub = ["publish", "--project", PROJECT, "--topic", topic, "--count", str(total - sent), "--rate", "0"]
            pub += ["--seed", str(step + 1), "--duplicate-fraction", "0.05", "--malformed-fraction", "0.03"]
            pub += ["--products", str(SMALL_PRODUCTS), "--users", str(SMALL_USERS), "--manifest", str(manifest)]
            subprocess.run(
                [sys.executable, "-m", "publishers.simulator", *pub, "--quiet"],
                check=True,
                stdout=subprocess.DEVNULL,
                env={**os.environ, **env},
            )
            facts = json.loads(manifest.read_text())
            sent = total
            want_rows, want_dead = want_rows + facts["unique_valid_events"], want_dead + facts["malformed_sent"]
            deadline = time.monotonic() + 120 + total / 20
            while True:
                rows = services.count(dataset, "user_behavior")
                dead = services.count(dataset, "dead_letter")
                say(f"    streaming: {sent:,} sent, rows {rows:,}/{want_rows:,}, dead letters {dead:,}/{want_dead:,}")
                if (rows >= want_rows and dead >= want_dead) or time.monotonic() > deadline:
                    break
                if not Path(f"/proc/{job.pid}").exists():
                    raise RuntimeError(f"the streaming job exited; see {job.log_path}")
                time.sleep(5)
            results.append(
                {
                    "input": f"{total:,} messages ({want_rows:,} unique valid)",
                    "records": total,
                    "run": JobRun(proc_mib(job.pid, "VmHWM"), time.monotonic() - t0, {}),
                    "note": f"RSS now {proc_mib(job.pid, 'VmRSS'):,.0f} MiB",
                    "check": check({"rows": (rows, want_rows), "dead letters": (dead, want_dead)}),
                }
            )
    finally:
        stop_process(job.pid)
    return results


CHAIN_RUNS: list[dict[str, Any]] = []


def run_chain(n: int, cache: Path) -> dict[str, Any]:
    """``benchmarks.batch_hourly_chain``'s chain on the hourly case's very input, in its own process."""
    data = generate(n, cache_dir=cache, n_products=SMALL_PRODUCTS, n_users=SMALL_USERS, bad_rate=HOURLY_BAD_RATE[0])
    dataset_json = Path(data.events_path).with_name("dataset.json")
    result = measure.run_case(
        ["-m", "benchmarks.batch_hourly_chain", "--worker", "chain", "--dataset_json", str(dataset_json)]
    )
    result["records"] = n
    say(f"  chain {n:,} events: {result['process_cpu_s']:,.1f} s CPU (process), {result['cpu_s']:,.1f} s in the run")
    return result


def job_to_chain(hourly: list[dict[str, Any]]) -> str:
    """Job CPU / chain CPU, pairing each hourly case with the chain run next to it (whole processes both)."""
    lines = []
    for n in sorted({c["records"] for c in CHAIN_RUNS}):
        jobs = [h["run"].cpu_s for h in hourly if h["records"] == n]
        chains = [c for c in CHAIN_RUNS if c["records"] == n]
        ratios = [j / c["process_cpu_s"] for j, c in zip(jobs, chains, strict=False)]
        lines.append(
            f"hourly job / chain CPU at {n:,} events (bad rate {HOURLY_BAD_RATE[0]}): median "
            f"{measure.median(ratios):.2f}x, each {[round(r, 2) for r in ratios]}; "
            f"job {[round(j, 1) for j in jobs]} s, "
            f"chain process {[round(c['process_cpu_s'], 1) for c in chains]} s (in its run "
            f"{[round(c['cpu_s'], 1) for c in chains]} s)"
        )
    return "\n".join(lines)


BACKFILL_DAYS = [5]
BACKFILL_WINDOW_MIB: list[float | None] = [None]  # --backfill_window_mib of the job (None: its default)


def case_backfill(n: int, cache: Path, work: Path, _services: Services) -> dict[str, Any]:
    """One ``python -m beam_pipelines.hourly`` over several days of event files: it splits itself.

    ``n`` events spread evenly over the hours of ``BACKFILL_DAYS`` days (each hour generated
    apart, its own seed and order ids); the BigQuery emulator keeps its tables in a DuckDB
    file (in memory it would hold ~0.8 KiB a row).
    """
    lake_root = str(work / "lake")
    small_dims_lake(cache, lake_root, work)
    days = BACKFILL_DAYS[0]
    first = lake.floor_hour(events.parse_ts(generate(1000, cache_dir=cache).hour_start)) - timedelta(days=days)
    hours = [first + i * lake.HOUR for i in range(24 * days)]
    want = {"rows": 0, "dead letters": 0, "duplicates_removed": 0}
    say(f"  generating {n:,} events over {len(hours)} hours ...")
    for i, hour in enumerate(hours):
        data = generate(
            n // len(hours) + (1 if i < n % len(hours) else 0),
            cache_dir=cache / "backfill",
            n_products=SMALL_PRODUCTS,
            n_users=SMALL_USERS,
            seed=1000 + i,
            hour=hour,
            order_prefix=f"{i:04d}",
            bad_rate=HOURLY_BAD_RATE[0],
        )
        partition = Path(lake.partition_path(lake_root, lake.EVENTS, hour))
        partition.mkdir(parents=True)
        os.link(data.events_path, partition / "events.jsonl")
        want["rows"] += data.n_unique_valid
        want["dead letters"] += data.n_bad
        want["duplicates_removed"] += data.n_duplicates
    extra = ("--backfill_window_mib", str(BACKFILL_WINDOW_MIB[0])) if BACKFILL_WINDOW_MIB[0] else ()
    window = (hours[0], hours[-1] + lake.HOUR)
    label = f"{n:,} events over {days} days"
    return hourly_on_fresh_stack(label, n, work, lake_root, window, want, extra, persistent=True)


CASES = {
    "extract_dims": case_extract_dims,
    "extract_orders": case_extract_orders,
    "hourly": case_hourly,
    "backfill": case_backfill,
}


# ----------------------------------------------------------------------------- report


def slope(results: list[dict[str, Any]]) -> str:
    """Growth of peak RSS per 1,000 records between the smallest and the largest size (medians of repeats)."""
    sizes = sorted({r["records"] for r in results})
    if len(sizes) < 2:
        return "-"
    peak = {n: measure.median([r["run"].peak_rss_mib for r in results if r["records"] == n]) for n in sizes}
    per_k = (peak[sizes[-1]] - peak[sizes[0]]) * 1024 / ((sizes[-1] - sizes[0]) / 1000)
    return f"{per_k:,.1f} KiB per 1k records"


def report(by_job: dict[str, list[dict[str, Any]]]) -> str:
    rows = []
    for job, results in by_job.items():
        for i, r in enumerate(results):
            rows.append(
                [
                    job,
                    r["input"],
                    f"{r['run'].peak_rss_mib:,.0f}",
                    f"{r['run'].wall_s:,.0f}",
                    slope(results) if i == len(results) - 1 else "",
                    r["check"],
                    r.get("note", ""),
                ]
            )
    return measure.markdown_table(["job", "input", "peak RSS MiB", "wall s", "growth", "check", "note"], rows)


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(x.replace("_", "")) for x in text.split(",") if x.strip()})
    if not sizes or sizes[0] <= 0:
        raise argparse.ArgumentTypeError(f"expected positive counts like 100000,1000000, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.job_memory",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--records",
        type=parse_sizes,
        default=[100_000, 1_000_000],
        help="comma-separated sizes for extract_dims (products, and as many users) and extract_orders "
        "(~order lines) (default 100000,1000000)",
    )
    parser.add_argument(
        "--hourly_records",
        type=parse_sizes,
        default=[250_000, 1_000_000],
        help="comma-separated event counts for hourly (default 250000,1000000: issue 14's targets compare "
        "the CPU of the two); each size gets fresh emulators",
    )
    parser.add_argument(
        "--stream_messages",
        type=parse_sizes,
        default=[5_000, 20_000],
        help="cumulative messages published to the streaming job, RSS read after each (default 5000,20000)",
    )
    parser.add_argument(
        "--hourly_bad_rate",
        type=float,
        default=0.005,
        help="share of malformed lines in hourly's generated input (default 0.005; issue 27 also measures 0.05)",
    )
    parser.add_argument(
        "--backfill_records",
        type=parse_sizes,
        default=[20_000_000],
        help="events of the backfill case, spread evenly over --backfill_days (default 20000000)",
    )
    parser.add_argument("--backfill_days", type=int, default=5, help="days of the backfill case (default 5)")
    parser.add_argument(
        "--chain_repeats",
        type=int,
        default=0,
        help="run the hourly case this many times per size, each beside batch_hourly_chain's chain on the same "
        "input (alternating which goes first), and report job / chain CPU (issue 27's target: <= 1.3x)",
    )
    parser.add_argument(
        "--backfill_window_mib", type=float, help="passed to the backfill's hourly run (default: the job's own)"
    )
    parser.add_argument(
        "--bigquery_emulator",
        choices=("fixtures", "stack"),
        default="fixtures",
        help="how hourly and backfill start bqemulator: as the test fixtures do (default; in memory for hourly, "
        "a DuckDB file for the backfill, copying each table after every write for time travel) or as the "
        "local stack does (a DuckDB file for both, no time-travel copies)",
    )
    parser.add_argument("--jobs", default=",".join(DEFAULT_JOBS), help=f"comma-separated subset of {','.join(JOBS)}")
    parser.add_argument("--cache_dir", default=str(DEFAULT_CACHE / "job_memory"), help="where sources are kept")
    parser.add_argument("--json_out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    if set(jobs) - set(JOBS):
        parser.error(f"unknown jobs {sorted(set(jobs) - set(JOBS))}; choose from {','.join(JOBS)}")
    os.environ.setdefault("NO_GCE_CHECK", "true")
    HOURLY_BAD_RATE[0] = args.hourly_bad_rate
    BIGQUERY_EMULATOR[0] = args.bigquery_emulator
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    machine = measure.machine_description()
    from beam_pipelines.local.processes import stop_process
    from beam_pipelines.local.services import start_bigquery, start_pubsub
    from beam_pipelines.local.stack import DEFAULT_ROOT

    state = Path(tempfile.mkdtemp(prefix="job-memory-stack-"))
    services = Services()
    by_job: dict[str, list[dict[str, Any]]] = {}
    try:
        if "streaming" in jobs:
            say("starting the BigQuery emulator ...")
            services.bigquery = start_bigquery(state / "bigquery", PROJECT, DEFAULT_ROOT)
        if "streaming" in jobs:
            say("starting the Pub/Sub emulator ...")
            services.pubsub = start_pubsub(state / "pubsub", PROJECT)
        for job in jobs:
            sizes = {"streaming": args.stream_messages, "hourly": args.hourly_records}.get(job, args.records)
            sizes = args.backfill_records if job == "backfill" else sizes
            BACKFILL_DAYS[0] = args.backfill_days
            BACKFILL_WINDOW_MIB[0] = args.backfill_window_mib
            say(f"{job}: {', '.join(f'{n:,}' for n in sizes)}")
            work = Path(tempfile.mkdtemp(prefix=f"job-memory-{job}-", dir=state))
            if job == "streaming":
                by_job[job] = case_streaming(sizes, cache, work, services)
            else:
                by_job[job] = []
                for n in sizes:
                    for repeat in range(max(1, args.chain_repeats) if job == "hourly" else 1):
                        case_dir = work / f"{n}-{repeat}"
                        case_dir.mkdir()
                        if job == "hourly" and args.chain_repeats and repeat % 2:
                            CHAIN_RUNS.append(run_chain(n, cache))  # alternate which goes first
                        by_job[job].append(CASES[job](n, cache, case_dir, services))
                        if job == "hourly" and args.chain_repeats and not repeat % 2:
                            CHAIN_RUNS.append(run_chain(n, cache))
                        shutil.rmtree(case_dir / "lake", ignore_errors=True)
            for r in by_job[job]:
                run = r["run"]
                say(f"  {job} {r['input']}: {run.peak_rss_mib:,.0f} MiB peak, {run.wall_s:,.0f} s, {r['check']}")
    finally:
        for service in (services.bigquery, services.pubsub):
            if service is not None:
                stop_process(service.pid)
        shutil.rmtree(state, ignore_errors=True)
    machine["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print("job_memory: peak RSS (ru_maxrss / VmHWM) of each job's own process, FnApiRunner in-memory for batch")
    print()
    print(report(by_job))
    hourly = by_job.get("hourly", [])
    if CHAIN_RUNS:
        print("\n" + job_to_chain(hourly))
    for case in by_job.get("backfill", []):
        peak, cpu = case["peak_sum_mib"], case["cpu_s"]
        print(f"\nbackfill {case['input']}: job + emulators <= {peak:,.0f} MiB, CPU {cpu:,.0f} s")
        for ref in hourly:
            ratio = case["cpu_s"] / ref["cpu_s"]
            print(f"  CPU {ratio:.1f}x the hourly run of {ref['records']:,} events ({ref['cpu_s']:,.0f} s)")
    if len({h["records"] for h in hourly}) >= 2:
        lo, hi = hourly[0], hourly[-1]
        print(
            f"\nhourly CPU (job + emulators) {hi['cpu_s']:,.0f} s at {hi['records']:,} vs {lo['cpu_s']:,.0f} s at "
            f"{lo['records']:,}: {hi['cpu_s'] / lo['cpu_s']:.2f}x for {hi['records'] / lo['records']:.1f}x the events"
        )
    print(f"\nmachine: {json.dumps(machine)}")
    if args.json_out:
        plain = {job: [{**r, "run": r["run"].__dict__} for r in rs] for job, rs in by_job.items()}
        Path(args.json_out).write_text(json.dumps({"results": plain, "machine": machine}, indent=2))
    broken = [r for rs in by_job.values() for r in rs if not r["check"].startswith("ok")]
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
