"""LakeReadySensor: the hourly DAG starts only when every orders window and fresh dims snapshots are there."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from beam_pipelines import lake
from composer_dags.common import LakeReadySensor, orders_marker_path, orders_windows, write_orders_marker

START = datetime(2026, 11, 21, 10, tzinfo=UTC)
END = datetime(2026, 11, 21, 11, tzinfo=UTC)


def sensor(lake_root: str) -> LakeReadySensor:
    return LakeReadySensor(
        task_id="wait_for_extracts",
        lake_root=lake_root,
        window_start="2026-11-21T10:00:00Z",
        window_end="2026-11-21T11:00:00Z",
        dims_tables="products,users",
    )


def test_orders_windows_and_marker_paths() -> None:
    assert [w.strftime("%H:%M") for w in orders_windows(START, END)] == [
        "10:00", "10:10", "10:20", "10:30", "10:40", "10:50",
    ]  # fmt: skip
    assert orders_marker_path("gs://acme-lake/ecommerce", START.replace(minute=50)) == (
        "gs://acme-lake/ecommerce/_airflow/orders/dt=2026-11-21/hour=10/_SUCCESS_1050"
    )


def test_waits_for_each_missing_window_and_stale_snapshot(tmp_path: Path) -> None:
    root = str(tmp_path)
    for w in orders_windows(START, END)[:-1]:
        write_orders_marker(root, w.strftime("%Y-%m-%dT%H:%M:%SZ"), "", "r")
    lake.write_latest_pointer(root, "products", "snapshot=20261121T110000Z")
    lake.write_latest_pointer(root, "users", "snapshot=20261121T103000Z")  # taken before the hour ended

    missing = sensor(root).missing()

    assert missing == [
        f"{root}/_airflow/orders/dt=2026-11-21/hour=10/_SUCCESS_1050",
        f"{root}/raw/users snapshot >= snapshot=20261121T110000Z (have {root}/raw/users/snapshot=20261121T103000Z)",
    ]
    assert sensor(root).poke({}) is False


def test_ready_when_all_windows_landed_and_snapshots_are_new_enough(tmp_path: Path) -> None:
    root = str(tmp_path)
    for w in orders_windows(START, END):
        write_orders_marker(root, w.strftime("%Y-%m-%dT%H:%M:%SZ"), "", "r")
    lake.write_latest_pointer(root, "products", "snapshot=20261121T110000Z")
    lake.write_latest_pointer(root, "users", "snapshot=20261121T113000Z")  # newer is fine (catch-up)

    assert sensor(root).missing() == []
    assert sensor(root).poke({}) is True
