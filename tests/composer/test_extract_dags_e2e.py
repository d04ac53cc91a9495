"""The extract DAGs end to end with ``dag.test()``: orders API window and SQL dims -> lake, DirectRunner.

A generated SQLite world (``tests/fixtures/orders_api.py``) with 300 orders placed in
2026-11-21 10:00-11:00 UTC (after the DAGs' start date), 50 products and 40 users,
served by the real orders API.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pendulum
import pytest

from tests.composer.dag_runs import run_dag, run_states

WINDOW_START = pendulum.datetime(2026, 11, 21, 10, 20, tz="UTC")
WINDOW_END = WINDOW_START.add(minutes=10)
WORLD = {
    "seed": 7,
    "n_products": 50,
    "n_users": 40,
    "n_orders": 300,
    "window": (datetime(2026, 11, 21, 10, tzinfo=UTC), datetime(2026, 11, 21, 11, tzinfo=UTC)),
}


@pytest.fixture(scope="module")
def recent_orders_api(orders_api_server: Any, generated_world: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    url = f"sqlite:///{tmp_path_factory.mktemp('recent-world') / 'source.db'}"
    world = generated_world(url, **WORLD)
    api = orders_api_server(url)
    api.orders = world.orders
    return api


@pytest.mark.integration
def test_orders_extract_dag_lands_its_window_and_its_completion_record(
    dagbag: Any, airflow_db: str, recent_orders_api: Any, set_ecommerce_config: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from beam_pipelines import lake

    lake_root = str(tmp_path / "lake")
    set_ecommerce_config(lake_root=lake_root, orders_api_base_url=recent_orders_api.base_url, orders_page_size=200)
    monkeypatch.setenv("ORDERS_API_TOKEN", recent_orders_api.token)

    state, states = run_states(run_dag(dagbag.dags["ecommerce_extract_orders"], WINDOW_END))

    assert (state, states) == ("success", {"extract_orders": "success"})
    partition = lake.partition_path(lake_root, lake.ORDERS, WINDOW_START)
    files = lake.list_files(lake.join(partition, "orders_*.jsonl"))
    assert [Path(f).name.rsplit("-", 1)[0] for f in files] == ["orders_20261121T102000Z_20261121T103000Z"] * len(files)
    landed = sorted(json.loads(line)["order_id"] for f in files for line in lake.iter_lines(f))
    expected = sorted(o.order_id for o in recent_orders_api.orders if WINDOW_START <= o.updated_at < WINDOW_END)
    assert landed == expected and len(expected) > 0
    # The job's own completion record: the proof the hourly sensor and job look for.
    record = json.loads(lake.read_text(f"{lake_root}/_extracts/orders/dt=2026-11-21/hour=10/"
                                       "20261121T102000Z_20261121T103000Z.json"))  # fmt: skip
    assert (record["window_start"], record["window_end"]) == ("20261121T102000Z", "20261121T103000Z")
    assert record["raw"] == len(files) and lake.extract_gaps(lake_root, lake.ORDERS, WINDOW_START, WINDOW_END) == []


@pytest.mark.integration
def test_dims_extract_dag_writes_snapshots_named_after_the_interval_end(
    dagbag: Any, airflow_db: str, recent_orders_api: Any, set_ecommerce_config: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from beam_pipelines import lake

    lake_root = str(tmp_path / "lake")
    set_ecommerce_config(lake_root=lake_root)
    monkeypatch.setenv("ECOMMERCE_DATABASE_URL", recent_orders_api.database_url)  # the DAG passes only the name
    run_after = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)

    state, states = run_states(run_dag(dagbag.dags["ecommerce_extract_dims"], run_after))

    assert (state, states) == ("success", {"extract_dims": "success"})
    for table, key, count in (("products", "product_id", 50), ("users", "user_id", 40)):
        assert lake.latest_snapshot_dir(lake_root, table) == f"{lake_root}/raw/{table}/snapshot=20261121T110000Z"
        rows = lake.read_latest_snapshot_rows(lake_root, table)
        assert len(rows) == len({r[key] for r in rows}) == count
