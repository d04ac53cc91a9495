"""Benchmark: API requests and wall time of ``extract_orders`` over a long, sparse window.

Seeds ``--orders`` generated orders spread over ``--years`` years into a SQLite SQL
source, serves them with the local orders API (``publishers.orders_api``), and runs
``beam_pipelines.extract_orders`` (FnApiRunner) for the whole window through a
:class:`~beam_pipelines.local.counting_proxy.CountingProxy`, which counts the requests
the job made. Prints the request count, the bound the job promises
(``ceil(orders / page_size)`` plus one per read range: ``read_ranges`` counts the
requests without a page token), the wall time of the job,
and checks conservation: every order of the window is in the lake exactly once.

Run::

    .venv/bin/python -m benchmarks.extract_orders_paging                 # 8,135 orders over 2 years
    .venv/bin/python -m benchmarks.extract_orders_paging --orders 2000 --years 1 --page_size 100

Figures (before and after the paging change) are in docs/batch.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from beam_pipelines import extract_orders, lake
from beam_pipelines.events import format_ts
from beam_pipelines.local.counting_proxy import CountingProxy
from beam_pipelines.local.processes import stop_process
from beam_pipelines.local.services import start_orders_api
from publishers.catalog import build_world

TOKEN_ENV = "BENCH_ORDERS_API_TOKEN"  # noqa: S105 - the variable's name


def _lake_order_ids(root: str) -> list[str]:
    ids = []
    for path in lake.list_files(lake.join(root, lake.RAW, lake.ORDERS, "**", "*.jsonl")):
        ids.extend(str(json.loads(line)["order_id"]) for line in lake.iter_lines(path))
    return ids


def run(args: argparse.Namespace) -> dict[str, object]:
    end = datetime(2026, 11, 21, tzinfo=UTC)
    start = end - timedelta(days=round(365.25 * args.years))
    work = Path(tempfile.mkdtemp(prefix="bench-extract-orders-"))
    url = f"sqlite:///{work / 'source.db'}"
    world = build_world(url, args.seed, 300, 2000, args.orders, (start, end), with_events=False)
    in_window = sorted(o.order_id for o in world.orders if start <= o.updated_at < end)
    token = secrets.token_urlsafe(24)
    info = start_orders_api(work, url, token=token, create_schema=False)
    os.environ[TOKEN_ENV] = token
    try:
        with CountingProxy(info.endpoints["http"]) as proxy:
            argv = [
                "--runner=FnApiRunner",
                f"--api_base_url={proxy.url}",
                f"--api_token_env={TOKEN_ENV}",
                f"--lake_root={work / 'lake'}",
                f"--window_start={format_ts(start)}",
                f"--window_end={format_ts(end)}",
                f"--page_size={args.page_size}",
                *args.extra,
            ]
            began = time.perf_counter()
            counters = extract_orders.run(argv)
            wall = time.perf_counter() - began
            requests = proxy.counts["/v1/orders"]
            ranges = sum(1 for q in proxy.queries if "page_token=" not in q)
    finally:
        stop_process(info.pid)
    written = _lake_order_ids(str(work / "lake"))
    return {
        "orders_in_window": len(in_window),
        "window": f"{format_ts(start)} .. {format_ts(end)}",
        "page_size": args.page_size,
        "requests": requests,
        "read_ranges": ranges,
        "ceil_orders_per_page": math.ceil(len(in_window) / args.page_size),
        "within_bound": requests <= math.ceil(len(in_window) / args.page_size) + ranges,
        "pages_read_counter": counters.get("api_pages_read"),
        "orders_read_counter": counters.get("api_orders_read"),
        "wall_seconds": round(wall, 1),
        "conserved": sorted(written) == in_window,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=8135, help="orders to seed (default 8,135)")
    parser.add_argument("--years", type=float, default=2.0, help="window length in years (default 2)")
    parser.add_argument("--page_size", type=int, default=500, help="API page size (default 500, the job's default)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("extra", nargs="*", help="more extract_orders options, after --")
    args = parser.parse_args(argv)
    result = run(args)
    for key, value in result.items():
        print(f"{key:>22}: {value}")
    return 0 if result["conserved"] and result["within_bound"] else 1


if __name__ == "__main__":
    sys.exit(main())
