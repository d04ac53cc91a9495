"""The hourly DAG end to end with ``dag.test()``: lake -> hourly job (DirectRunner) -> checks on the BigQuery emulator.

The lake holds what the extract DAGs would have left for 2026-11-21 10:00-11:00 UTC
(orders window markers, products/users snapshots taken at 11:00, the hour's orders),
so the sensor, the Beam job, the four data-quality checks (``BigQueryCheckOperator``)
and the analytics refresh (``BigQueryInsertJobOperator``) all run for real: the provider
operators reach the emulator through ``BIGQUERY_EMULATOR_HOST`` and a
``google_cloud_default`` connection with anonymous credentials. A second run rejects a
third of its records and must fail on the dead-letter check, without refreshing analytics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pendulum
import pytest

from tests.composer.dag_runs import run_dag, run_states, run_xcoms

HOUR_START = pendulum.datetime(2026, 11, 21, 10, tz="UTC")  # in the past: the job refuses future events
HOUR_END = HOUR_START.add(hours=1)
# dag.test() run id; the DAG passes it to the job, which stamps its dead letters with it.
RUN_ID = "manual__2026-11-21T11:00:00+00:00"

PRODUCTS = [
    {"product_id": "101", "product_name": "Trail Shoe", "category": "shoes", "price": "10.00",
     "updated_at": "2026-11-01T00:00:00.000000Z"},
    {"product_id": "102", "product_name": "Wool Sock", "category": "socks", "price": "5.50",
     "updated_at": "2026-11-01T00:00:00.000000Z"},
]  # fmt: skip
USERS = [
    {"user_id": "1", "user_name": "Ada", "email": "ada@example.com", "signup_date": "2026-01-02", "country": "GB",
     "updated_at": "2026-11-01T00:00:00.000000Z"},
    {"user_id": "2", "user_name": "Lin", "email": "lin@example.com", "signup_date": "2026-03-04", "country": "SG",
     "updated_at": "2026-11-01T00:00:00.000000Z"},
]  # fmt: skip
ORDERS = [
    {"order_id": "o-1", "user_id": "1", "session_id": "s-1", "status": "paid", "order_ts": "2026-11-21T10:05:00Z",
     "updated_at": "2026-11-21T10:06:00Z", "currency": "USD", "total_amount": "25.50",
     "lines": [{"line_number": 1, "product_id": "101", "quantity": 2, "unit_price": "10.00", "amount": "20.00"},
               {"line_number": 2, "product_id": "102", "quantity": 1, "unit_price": "5.50", "amount": "5.50"}]},
    {"order_id": "o-2", "user_id": "2", "session_id": "s-2", "status": "returned", "order_ts": "2026-11-21T10:40:00Z",
     "updated_at": "2026-11-21T10:50:00Z", "currency": "USD", "total_amount": "10.00",
     "lines": [{"line_number": 1, "product_id": "101", "quantity": 1, "unit_price": "10.00", "amount": "10.00"}]},
]  # fmt: skip
# o-1 -> 2 order events (10:05); o-2 -> an order event (10:40) and a return event (10:50).
EXPECTED_ROWS = [
    ("o-1:1", "order", "o-1", "101", "Trail Shoe", "1", "Ada", 2, "20.00"),
    ("o-1:2", "order", "o-1", "102", "Wool Sock", "1", "Ada", 1, "5.50"),
    ("o-2:1", "order", "o-2", "101", "Trail Shoe", "2", "Lin", 1, "10.00"),
    ("o-2:1:return", "return", "o-2", "101", "Trail Shoe", "2", "Lin", 1, "10.00"),
]


def write_lake(lake_root: str, order_lines: list[str]) -> None:
    """What the extract DAGs leave in the lake for hour 10 (extract records, dims snapshots at 11:00, orders)."""
    from beam_pipelines import lake

    for table, rows in (("products", PRODUCTS), ("users", USERS)):
        folder = lake.snapshot_dir(lake_root, table, HOUR_END)
        lake.write_jsonl(lake.join(folder, "part-00000-of-00001.jsonl"), [json.dumps(r) for r in rows])
        lake.write_latest_pointer(lake_root, table, folder.rsplit("/", 1)[-1])
    partition = lake.partition_path(lake_root, lake.ORDERS, HOUR_START)
    lake.write_jsonl(lake.join(partition, lake.window_file_name("orders", HOUR_START, HOUR_END, 0)), order_lines)
    for minute in range(0, 60, 10):  # the six 10-minute extracts of the hour
        start = HOUR_START.add(minutes=minute)
        lake.write_extract_record(lake_root, lake.ORDERS, start, start.add(minutes=10))


def run_hourly_dag(dagbag: Any) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``dag.test()`` for hour 10; returns the run state, task states and the tasks' XComs (``task_id.key``)."""
    # A manual run covers the last complete interval before run_after: [10:00, 11:00).
    dag_run = run_dag(dagbag.dags["ecommerce_hourly"], HOUR_END)
    state, states = run_states(dag_run)
    return state, states, run_xcoms(dag_run)


@pytest.fixture
def hourly_env(
    tmp_path: Path, bq_dataset: Any, set_ecommerce_config: Any, airflow_db: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    # The google provider's hooks with anonymous credentials; the BigQuery client they build
    # honours BIGQUERY_EMULATOR_HOST (set by the emulator fixture).
    connection = {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": bq_dataset.project}}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(connection))
    config = {
        "project": bq_dataset.project,
        "dataset": bq_dataset.dataset,
        "lake_root": str(tmp_path / "lake"),
        "dq_max_dead_letter_ratio": 0.1,
        "dq_max_freshness_lag_minutes": 30,
    }
    set_ecommerce_config(**config)
    return config


@pytest.mark.integration
def test_hourly_dag_loads_the_hour_checks_it_and_refreshes_analytics(
    dagbag: Any, hourly_env: dict[str, Any], bq_dataset: Any
) -> None:
    write_lake(hourly_env["lake_root"], [json.dumps(o) for o in ORDERS])

    state, states, xcoms = run_hourly_dag(dagbag)

    assert states == {
        "wait_for_extracts": "success",
        "run_hourly": "success",
        "check_row_count": "success",
        "check_null_keys": "success",
        "check_dead_letter_ratio": "success",
        "check_freshness": "success",
        "refresh_dedup_view": "success",
        "refresh_user_profile": "success",
    }
    assert state == "success"
    rows = bq_dataset.rows("user_behavior", order_by="event_id")
    assert [
        (r["event_id"], r["event_name"], r["order_id"], r["product_id"], r["product_name"], r["user_id"],
         r["user_name"], r["quantity"], f"{r['price']:.2f}")
        for r in rows
    ] == EXPECTED_ROWS  # fmt: skip
    assert {r["source"] for r in rows} == {"api"}
    # Each check and refresh ran as a BigQuery job on the emulator (the operators push its id).
    # Each check and each refresh ran as a BigQuery job on the emulator (the operators push its id).
    for check in ("check_row_count", "check_null_keys", "check_dead_letter_ratio", "check_freshness"):
        assert xcoms[f"{check}.job_id"], check
    for refresh in ("refresh_dedup_view", "refresh_user_profile"):
        assert xcoms[f"{refresh}.return_value"].startswith(f"airflow_ecommerce_hourly_{refresh}_"), refresh
    assert bq_dataset.count("user_behavior_dedup") == 4
    profiles = bq_dataset.rows("user_profile", order_by="user_id")
    assert [p["user_id"] for p in profiles] == ["1", "2"]


@pytest.mark.integration
def test_hourly_dag_fails_on_a_data_quality_check_and_skips_analytics(
    dagbag: Any, hourly_env: dict[str, Any], bq_dataset: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from composer_dags.common import ALERT_PREFIX

    # Two of six records are not orders: 2 / (4 rows + 2 dead letters) = 0.33 > 0.1.
    write_lake(hourly_env["lake_root"], [json.dumps(o) for o in ORDERS] + ["{not json", '"a string"'])

    with caplog.at_level("ERROR", logger="composer_dags.common"):
        state, states, _ = run_hourly_dag(dagbag)

    assert state == "failed"
    assert states["run_hourly"] == "success"
    assert states["check_dead_letter_ratio"] == "failed"
    assert {states[t] for t in ("check_row_count", "check_null_keys", "check_freshness")} == {"success"}
    assert {states[t] for t in ("refresh_dedup_view", "refresh_user_profile")} == {"upstream_failed"}
    # One alert, from the failure notifier, on the first try (a failed check is not retried),
    # carrying what the check observed.
    (alert,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith(ALERT_PREFIX)]
    assert '"task_id": "check_dead_letter_ratio"' in alert and '"try_number": 1' in alert
    assert "dead_letter_ratio: observed 0.333" in alert and "threshold 0.1" in alert
    dead = bq_dataset.rows("dead_letter")
    assert len(dead) == 2
    assert {(d["pipeline"], d["job_name"]) for d in dead} == {("hourly", RUN_ID)}
    assert bq_dataset.count("user_behavior") == 4
    for not_refreshed in ("user_behavior_dedup", "user_profile"):
        with pytest.raises(Exception, match="Not found"):
            bq_dataset.count(not_refreshed)
