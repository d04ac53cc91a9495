"""Idempotency: re-running a batch job for the same window changes nothing.

``extract_orders`` against the real API server and ``extract_dims`` against SQLite are
run twice; the lake must be byte-for-byte the same afterwards (same files, same
content, same ``_LATEST``). The hourly job's re-run (BigQuery MERGE) is covered by
``tests/batch/test_batch_integration.py::test_rerun_is_idempotent``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from beam_pipelines import events, extract_dims, extract_orders
from beam_pipelines.io import sql
from publishers.catalog import load as load_catalog
from tests.reliability.hostile import HOUR


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` except in-flight temp files, with its content."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "_tmp" not in p.relative_to(root).parts
    }


@pytest.mark.integration
def test_extract_orders_rerun_leaves_the_lake_unchanged(orders_api, tmp_path, monkeypatch):
    monkeypatch.setenv("RELIABILITY_API_TOKEN", orders_api.token)
    start, end = orders_api.window
    lake_root = tmp_path / "lake"
    argv = [
        "--runner=FnApiRunner",
        f"--api_base_url={orders_api.base_url}",
        "--api_token_env=RELIABILITY_API_TOKEN",
        f"--window_start={events.format_ts(start)}",
        f"--window_end={events.format_ts(end)}",
        f"--lake_root={lake_root}",
        "--page_size=500",
    ]
    first_metrics = extract_orders.run(argv)
    first = _tree(lake_root)
    second_metrics = extract_orders.run(argv)
    assert _tree(lake_root) == first
    assert sum(len(c.splitlines()) for p, c in first.items() if p.startswith("raw/")) == len(
        [o for o in orders_api.orders if start <= o.updated_at < end]
    )
    assert first_metrics["api_orders_read"] == second_metrics["api_orders_read"]


def test_extract_dims_rerun_with_the_same_snapshot_time_leaves_the_lake_unchanged(sqlite_url, tmp_path):
    with sql.connect(sqlite_url) as db:
        load_catalog(db, seed=9, n_products=300, n_users=200, start=HOUR, end=HOUR, replace=True)
    lake_root = tmp_path / "lake"
    argv = [
        "--runner=FnApiRunner",
        f"--database_url={sqlite_url}",
        f"--lake_root={lake_root}",
        "--snapshot_ts=2026-11-22T10:00:00Z",
        "--num_partitions=3",
    ]
    extract_dims.run(argv)
    first = _tree(lake_root)
    extract_dims.run(argv)
    assert _tree(lake_root) == first
    assert first["raw/products/_LATEST"].decode().strip().endswith("snapshot=20261122T100000Z")
    rows = sum(len(c.splitlines()) for p, c in first.items() if p.startswith("raw/products/snapshot="))
    assert rows == 300
