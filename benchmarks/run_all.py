"""Run every benchmark script in turn (``make bench``) and keep their output.

Each script runs as ``python -m benchmarks.<name>`` in its own process, one after the
other (never in parallel: they would measure each other). Scripts that are not in
the checkout yet are reported as missing, not failed. Output goes to the terminal
and to ``.local/bench/results/run_all-<UTC time>.txt``.

Usage::

    .venv/bin/python -m benchmarks.run_all                      # full size (1M events; batch chain alone ~15 min)
    .venv/bin/python -m benchmarks.run_all --quick              # small sizes, 1 repeat
    .venv/bin/python -m benchmarks.run_all --only batch_hourly_chain
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

# (module, full-size arguments, --quick arguments)
BENCHMARKS: list[tuple[str, list[str], list[str]]] = [
    ("batch_hourly_chain", ["--events", "1000000", "--repeats", "3"], ["--events", "100000", "--repeats", "1"]),
    ("publisher_throughput", [], []),
    ("streaming_throughput", [], []),
    ("bq_persistence", ["--rows", "200000", "--repeats", "3"], ["--rows", "20000", "--repeats", "1"]),
    (
        "job_memory",
        [],
        ["--records", "10000,100000", "--hourly_records", "2000,10000", "--stream_messages", "1000,3000"],
    ),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, one repeat: a smoke run")
    parser.add_argument("--only", help="comma-separated benchmark names to run")
    parser.add_argument("--results_dir", default=".local/bench/results")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",")} if args.only else None
    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / f"run_all-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.txt"
    env = dict(os.environ, NO_GCE_CHECK="true")
    failures = 0
    with open(log_path, "w") as log:
        for name, full_args, quick_args in BENCHMARKS:
            if only and name not in only:
                continue
            module = f"benchmarks.{name}"
            header = f"=== {module} ==="
            if importlib.util.find_spec(module) is None:
                print(f"{header}\nmissing (not in this checkout yet)\n", file=log, flush=True)
                print(f"{header}\nmissing (not in this checkout yet)\n", flush=True)
                continue
            cmd = [sys.executable, "-m", module, *(quick_args if args.quick else full_args)]
            print(f"{header}\n$ {' '.join(cmd[1:])}", flush=True)
            print(f"{header}\n$ python {' '.join(cmd[1:])}", file=log, flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            took = time.perf_counter() - t0
            print(proc.stdout, flush=True)
            print(proc.stdout, file=log)
            if proc.returncode != 0:
                failures += 1
                print(proc.stderr[-4000:], file=sys.stderr)
                print(f"FAILED (exit {proc.returncode})\n{proc.stderr[-4000:]}", file=log)
            print(f"({took:.0f} s)\n", file=log, flush=True)
    print(f"results: {log_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
