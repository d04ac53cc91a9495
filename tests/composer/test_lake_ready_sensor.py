"""LakeReadySensor: the hourly DAG starts only when the orders extracts cover the hour and dims are fresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from beam_pipelines import lake
from composer_dags.common import LakeReadySensor

START = datetime(2026, 11, 21, 10, tzinfo=UTC)
END = datetime(2026, 11, 21, 11, tzinfo=UTC)
TEN = timedelta(minutes=10)


def sensor(lake_root: str) -> LakeReadySensor:
    return LakeReadySensor(
        task_id="wait_for_extracts",
        lake_root=lake_root,
        window_start="2026-11-21T10:00:00Z",
        window_end="2026-11-21T11:00:00Z",
        dims_tables="products,users",
    )


def test_waits_for_each_missing_window_and_stale_snapshot(tmp_path: Path) -> None:
    root = str(tmp_path)
    for minute in range(0, 50, 10):  # 10:50..11:00 never extracted
        lake.write_extract_record(root, lake.ORDERS, START + minute * TEN / 10, START + minute * TEN / 10 + TEN)
    lake.write_latest_pointer(root, "products", "snapshot=20261121T110000Z")
    lake.write_latest_pointer(root, "users", "snapshot=20261121T103000Z")  # taken before the hour ended

    missing = sensor(root).missing()

    assert missing == [
        f"orders extracts in {root}/_extracts/orders for 2026-11-21T10:50:00Z..11:00:00Z",
        f"{root}/raw/users snapshot >= snapshot=20261121T110000Z (have {root}/raw/users/snapshot=20261121T103000Z)",
    ]
    assert sensor(root).poke({}) is False


def test_ready_when_the_extracts_cover_the_hour_and_snapshots_are_new_enough(tmp_path: Path) -> None:
    root = str(tmp_path)
    # One backfill extract of 10:00-10:30 and three scheduled ones: coverage is what counts.
    lake.write_extract_record(root, lake.ORDERS, START, START + 3 * TEN)  # one backfill extract
    for k in range(3, 6):
        lake.write_extract_record(root, lake.ORDERS, START + k * TEN, START + (k + 1) * TEN)
    lake.write_latest_pointer(root, "products", "snapshot=20261121T110000Z")
    lake.write_latest_pointer(root, "users", "snapshot=20261121T113000Z")  # newer is fine (catch-up)

    assert sensor(root).missing() == []
    assert sensor(root).poke({}) is True


def test_a_lake_that_cannot_be_read_fails_instead_of_waiting(tmp_path: Path, monkeypatch) -> None:
    """A denied listing (tests/batch/test_lake_storage.py makes Cloud Storage answer 403) is not "not yet"."""

    def denied(*_args, **_kwargs):
        raise lake.LakeReadError("could not list gs://acme-lake/_extracts/orders/dt=2026-11-21/hour=10/*.json: 403")

    monkeypatch.setattr(lake, "extract_gaps", denied)
    with pytest.raises(lake.LakeReadError, match="403"):
        sensor(str(tmp_path)).poke({})
