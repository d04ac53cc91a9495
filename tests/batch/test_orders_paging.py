"""extract_orders' requests grow with the orders in the window, not with its length.

The planning of read ranges is checked as a function; then the job runs against the real
orders API server (``publishers.orders_api`` over a SQLite source) behind a counting
proxy, over a long window with few orders, and the requests are counted by the proxy:
at most ``floor(orders / page_size)`` plus one per read range, every order in the lake
exactly once, in the hour partition of its ``updated_at``, and the same after a re-run.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest

from beam_pipelines import extract_orders, lake
from beam_pipelines.events import format_ts, parse_ts
from beam_pipelines.local.counting_proxy import CountingProxy
from beam_pipelines.transforms.orders import plan_read_ranges

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_read_ranges_are_contiguous_whole_seconds_and_few():
    two_years = plan_read_ranges(T0, T0 + timedelta(days=730), 8, timedelta(minutes=15))
    assert len(two_years) == 8
    assert two_years[0][0] == T0 and two_years[-1][1] == T0 + timedelta(days=730)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(two_years))
    assert all(s.microsecond == 0 and s < e for s, e in two_years)
    # a short window is not cut below the shortest range; a 10-minute window is one range
    assert plan_read_ranges(T0, T0 + timedelta(minutes=90), 8, timedelta(minutes=30)) == [
        (T0 + timedelta(minutes=m), T0 + timedelta(minutes=m + 30)) for m in (0, 30, 60)
    ]
    assert plan_read_ranges(T0, T0 + timedelta(minutes=10), 8, timedelta(minutes=15)) == [
        (T0, T0 + timedelta(minutes=10))
    ]
    # never more ranges than seconds in the window
    assert len(plan_read_ranges(T0, T0 + timedelta(seconds=3), 8, timedelta(seconds=1) / 10)) == 3
    with pytest.raises(ValueError, match="at least 1"):
        plan_read_ranges(T0, T0 + timedelta(hours=1), 0, timedelta(minutes=15))
    with pytest.raises(ValueError, match="must be after"):
        plan_read_ranges(T0, T0, 8, timedelta(minutes=15))
    with pytest.raises(ValueError, match="positive length"):
        plan_read_ranges(T0, T0 + timedelta(hours=1), 8, timedelta(0))


def test_extract_orders_rejects_read_pieces_below_one(tmp_path):
    with pytest.raises(ValueError, match="--read_pieces must be at least 1"):
        extract_orders.run(
            [
                "--runner=FnApiRunner",
                "--api_base_url=http://127.0.0.1:1",
                f"--lake_root={tmp_path}",
                "--window_start=2026-11-21T10:00:00Z",
                "--window_end=2026-11-21T11:00:00Z",
                "--read_pieces=0",
            ]
        )


def _lake_orders(root):
    """order_id -> [partition hour of each copy] over every raw order file."""
    found: dict[str, list[datetime]] = {}
    for path in lake.list_files(lake.join(root, lake.RAW, lake.ORDERS, "**", "*.jsonl")):
        folder = path.rsplit("/", 2)[-2], path.rsplit("/", 3)[-3]  # hour=HH, dt=YYYY-MM-DD
        hour = datetime.strptime(f"{folder[1][3:]} {folder[0][5:]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
        for line in lake.iter_lines(path):
            found.setdefault(json.loads(line)["order_id"], []).append(hour)
    return found


@pytest.mark.integration
def test_a_long_sparse_window_costs_requests_per_order_not_per_quarter_hour(
    tmp_path, monkeypatch, generated_world, orders_api_server
):
    start, end = T0, T0 + timedelta(days=120)  # 11,520 quarter hours
    url = f"sqlite:///{tmp_path / 'source.db'}"
    world = generated_world(url, 29, 40, 60, 170, (start, end), with_events=False)
    expected = {o.order_id: o.updated_at for o in world.orders if start <= o.updated_at < end}
    assert len(expected) > 100
    api = orders_api_server(url)
    monkeypatch.setenv("PAGING_TEST_TOKEN", api.token)
    page_size, pieces = 20, 4
    root = str(tmp_path / "lake")
    with CountingProxy(api.base_url) as proxy:
        argv = [
            "--runner=FnApiRunner",
            f"--api_base_url={proxy.url}",
            "--api_token_env=PAGING_TEST_TOKEN",
            f"--lake_root={root}",
            f"--window_start={format_ts(start)}",
            f"--window_end={format_ts(end)}",
            f"--page_size={page_size}",
            f"--read_pieces={pieces}",
        ]
        counters = extract_orders.run(argv)
        requests = proxy.counts["/v1/orders"]
        queries = [parse_qs(q) for q in proxy.queries]
        first = _lake_orders(root)
        proxy.reset()
        extract_orders.run(argv)
        rerun_requests = proxy.counts["/v1/orders"]
    # the requests the proxy saw: a first page per read range, then one per further page
    firsts = sorted((parse_ts(q["updated_since"][0]), parse_ts(q["updated_before"][0]))
                    for q in queries if "page_token" not in q)  # fmt: skip
    assert len(firsts) == pieces
    assert firsts[0][0] == start and firsts[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(firsts))  # no gap, no overlap
    assert requests <= len(expected) // page_size + pieces
    assert requests == counters["api_pages_read"] == rerun_requests
    # exactly once, in the hour partition of updated_at, and the same after the re-run
    assert counters["api_orders_read"] == len(expected)
    assert counters.get("api_orders_outside_range", 0) == 0
    assert first == {oid: [ts.replace(minute=0, second=0, microsecond=0)] for oid, ts in expected.items()}
    assert _lake_orders(root) == first
