"""An hourly run killed mid-run leaves nothing behind for long, and its re-run is exact.

``python -m beam_pipelines.hourly`` runs as a real subprocess against the BigQuery
emulator and is killed with SIGKILL once its staging tables exist (before its merge
could drop them). Then:

* a re-run of the window leaves ``user_behavior`` and ``orders`` equal to one clean
  run into a fresh dataset (``ingest_ts`` aside);
* the re-run drops the killed run's staging tables once they are older than the
  staging TTL (the emulator ignores ``expirationTime``, so this sweep is what removes
  them locally), keeps a younger staging table of a run that may still be going, and
  drops its own: no staging table older than the TTL is left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
from google.cloud import bigquery

from bigquery_schemas.ddl import ensure_all
from tests.fixtures.jobs import extract_lake, hourly_job_args

pytestmark = pytest.mark.integration

WINDOW = (datetime(2025, 8, 4, 14, tzinfo=UTC), datetime(2025, 8, 4, 15, tzinfo=UTC))
TTL_MINUTES = 0.5  # 30 s: more than the re-run needs to reach its sweep step, short enough to wait out


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory, generated_world, orders_api_server) -> str:
    """A lake with the orders of WINDOW and product/user snapshots."""
    url = f"sqlite:///{tmp_path_factory.mktemp('kill') / 'source.db'}"
    generated_world(url, 23, 200, 150, 1500, WINDOW, with_events=False)
    api = orders_api_server(url)
    root = str(tmp_path_factory.mktemp("kill-lake"))
    extract_lake(root, api.base_url, api.token, url, *WINDOW)
    return root


def _hourly(lake_root: str, project: str, dataset: str, run_id: str) -> list[str]:
    extra = (f"--run_id={run_id}", f"--staging_ttl_minutes={TTL_MINUTES}")
    return [
        sys.executable,
        "-m",
        "beam_pipelines.hourly",
        *hourly_job_args(project, dataset, lake_root, *WINDOW, *extra),
    ]


def _run(argv: list[str]) -> dict[str, int]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]
    return {m[1]: int(m[2]) for m in re.finditer(r"^\s+(\w+)\s+(\d+)$", done.stdout, re.M)}


def _staging(client: bigquery.Client, dataset: str) -> dict[str, bigquery.table.TableListItem]:
    return {t.table_id: t for t in client.list_tables(dataset) if "_stg_" in t.table_id}


def _rows(client: bigquery.Client, project: str, dataset: str, table: str, drop: str) -> list[tuple]:
    result = client.query(f"select * from `{project}.{dataset}.{table}`").result()
    return sorted(tuple(v for k, v in r.items() if k != drop) for r in result)


def test_a_killed_hourly_run_is_repaired_by_its_rerun_and_leaves_no_stale_staging_table(
    lake_root, bq_dataset, bigquery_emulator
):
    client, project, ds = bq_dataset.client, bq_dataset.project, bq_dataset.dataset

    # Kill the first run as soon as it has staging tables, before it can merge them.
    proc = subprocess.Popen(
        _hourly(lake_root, project, ds, "killed1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 300
    while not _staging(client, ds) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL  # it was still running: a real mid-run kill
    time.sleep(1)  # a create request already on the wire still lands after the kill
    left = _staging(client, ds)
    assert left and all(name.endswith("_stg_killed1") for name in left), sorted(left)

    # Wait the TTL out; then a staging table of a run that started just now must survive.
    oldest = min(t.created for t in left.values())
    time.sleep(max(0.0, oldest.timestamp() + TTL_MINUTES * 60 + 1 - time.time()))
    young = client.create_table(
        bigquery.Table(
            bq_dataset.table_id("user_behavior_stg_still_running"),
            schema=client.get_table(bq_dataset.table_id("user_behavior")).schema,
        )
    )

    metrics = _run(_hourly(lake_root, project, ds, "rerun1"))
    assert metrics["bq_stale_staging_tables_dropped"] == len(left)
    assert sorted(_staging(client, ds)) == [young.table_id]  # killed run's gone, own dropped, live one kept

    # One clean run into a fresh dataset is the reference.
    clean = f"kill_clean_{uuid.uuid4().hex[:8]}"
    ensure_all(client, clean)
    try:
        reference = _run(_hourly(lake_root, project, clean, "clean1"))
        assert reference["bq_merged_user_behavior"] > 1500  # the window really had rows
        for table, drop in (("user_behavior", "ingest_ts"), ("orders", "")):
            assert _rows(client, project, ds, table, drop) == _rows(client, project, clean, table, drop), table
        assert not _staging(client, clean)
    finally:
        client.delete_dataset(clean, delete_contents=True, not_found_ok=True)
