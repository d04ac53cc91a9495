"""A backfill split into windows, killed part-way and resumed, leaves exactly one clean run's tables.

``python -m beam_pipelines.hourly --window_start A --window_end B`` runs as a real
subprocess over six hours of lake files (the orders extract's files and completion
records, dimension snapshots, stream event files with redeliveries across hours, an event
stored in one hour but timed in the next, one timed before the range, malformed lines).
A small ``--backfill_window_mib`` makes it split the range into several windows. It is
killed with SIGKILL once its first window is recorded done and the next one has staging
tables (mid-run), then the same command is run again: it skips the recorded window and
runs the rest under the same run ids. ``user_behavior``, ``orders`` and ``dead_letter``
must then equal one clean, unsplit run over the range into a fresh dataset (``ingest_ts``,
``job_name`` and ``insert_ts`` aside).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.cloud import bigquery

from beam_pipelines import backfill, events, extract_dims, extract_orders, lake
from bigquery_schemas.ddl import ensure_all
from tests.fixtures.jobs import hourly_job_args

pytestmark = pytest.mark.integration

RANGE = (datetime(2025, 8, 5, 10, tzinfo=UTC), datetime(2025, 8, 5, 16, tzinfo=UTC))
TOKEN_ENV = "BACKFILL_TEST_API_TOKEN"


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory, generated_world, orders_api_server) -> str:
    """Six hours of orders extracts, dimension snapshots and stream event files."""
    url = f"sqlite:///{tmp_path_factory.mktemp('backfill') / 'source.db'}"
    world = generated_world(url, 31, 120, 100, 400, RANGE)
    api = orders_api_server(url)
    root = str(tmp_path_factory.mktemp("backfill-lake"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_ENV, api.token)
        extract_orders.run(
            [
                "--runner=FnApiRunner",
                f"--api_base_url={api.base_url}",
                f"--api_token_env={TOKEN_ENV}",
                f"--window_start={events.format_ts(RANGE[0])}",
                f"--window_end={events.format_ts(RANGE[1])}",
                f"--lake_root={root}",
            ]
        )
    extract_dims.run(["--runner=FnApiRunner", f"--database_url={url}", f"--lake_root={root}"])
    by_hour: dict[datetime, list[bytes]] = {}
    for event in world.events:
        hour = events.parse_ts(event["event_ts"]).replace(minute=0, second=0, microsecond=0)
        by_hour.setdefault(hour, []).append(json.dumps(event).encode())
    hours = sorted(by_hour)
    assert len(hours) == 6
    # Redeliveries in another hour's file (so in another window), an event stored in the
    # hour before its own, one timed before the range, malformed lines.
    by_hour[hours[-1]] += by_hour[hours[0]][:15]
    moved = json.loads(by_hour[hours[3]].pop())
    by_hour[hours[2]].append(json.dumps(moved).encode())
    early = {**moved, "event_id": "before-the-range", "event_ts": events.format_ts(RANGE[0] - timedelta(minutes=5))}
    by_hour[hours[0]] += [json.dumps(early).encode(), b"not json", b'{"event_id": "x", "event_name": "teleport"}']
    for hour, lines in by_hour.items():
        folder = Path(lake.partition_path(root, lake.EVENTS, hour))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return root


def _command(lake_root: str, project: str, dataset: str, *extra: str) -> list[str]:
    args = hourly_job_args(project, dataset, lake_root, *RANGE, *extra)
    return [sys.executable, "-m", "beam_pipelines.hourly", *args]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _rows(client: bigquery.Client, project: str, dataset: str, table: str, drop: tuple[str, ...]) -> list[tuple]:
    result = client.query(f"select * from `{project}.{dataset}.{table}`").result()
    return sorted(tuple(str(v) for k, v in r.items() if k not in drop) for r in result)


def test_a_backfill_killed_part_way_and_resumed_equals_one_clean_run(lake_root, bq_dataset, tmp_path):
    client, project, ds = bq_dataset.client, bq_dataset.project, bq_dataset.dataset
    sizes = backfill.hour_bytes(lake_root, *RANGE)
    # About one and a half hours of files per window: several windows, none empty.
    window_mib = 1.5 * sum(size for _, size in sizes) / len(sizes) / 2**20
    state = tmp_path / "state"
    argv = _command(lake_root, project, ds, f"--backfill_window_mib={window_mib}", f"--backfill_state={state}")

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        done = list((state / "done").glob("*.json")) if (state / "done").exists() else []
        if done and any("_stg_" in t.table_id for t in client.list_tables(ds)):
            break  # window 1 recorded, window 2 has staging tables: mid-run
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
    plan = json.loads((state / "plan.json").read_text())["windows"]
    finished = sorted(p.name for p in (state / "done").glob("*.json"))
    assert len(plan) >= 3 and 1 <= len(finished) < len(plan)
    starts = [events.parse_ts(w["start"]) for w in plan]
    stored_in = max(i for i, s in enumerate(starts) if s <= RANGE[0] + 2 * lake.HOUR)
    timed_in = max(i for i, s in enumerate(starts) if s <= RANGE[0] + 3 * lake.HOUR)
    assert stored_in != timed_in  # the moved event crosses windows

    resumed = _run(argv)
    log = resumed.stderr
    assert len(re.findall(r"backfill: window \d+/\d+ .*: already done", log)) == len(finished)
    assert f"all {len(plan)} windows done" in log
    assert sorted(p.name for p in (state / "done").glob("*.json")) == sorted(
        f"{w['start'][:13]}_{w['end'][:13]}.json" for w in plan
    )
    again = _run(argv)  # a finished backfill run again only reports
    assert len(re.findall(r": already done", again.stderr)) == len(plan)

    # One clean run over the whole range (a window as large as it needs) is the reference.
    clean = f"backfill_clean_{uuid.uuid4().hex[:8]}"
    ensure_all(client, clean)
    try:
        reference = _run(_command(lake_root, project, clean, "--backfill_window_mib=1024"))
        assert "backfill:" not in reference.stderr  # one ordinary run
        n_rows = 0
        for table, drop in (
            ("user_behavior", ("ingest_ts",)),
            ("orders", ()),
            ("dead_letter", ("job_name", "insert_ts")),
        ):
            split_rows = _rows(client, project, ds, table, drop)
            assert split_rows == _rows(client, project, clean, table, drop), table
            n_rows += len(split_rows)
        dead = _rows(client, project, ds, "dead_letter", ("job_name", "insert_ts"))
        assert sum("before-the-range" in r[2] for r in dead if r[0] == "window") == 1
        # Stored in another window's hour, timed inside the range: a row, as in one run.
        ids = {r[1] for r in _rows(client, project, ds, "user_behavior", ("ingest_ts",))}
        assert moved_id(lake_root) in ids
        assert n_rows > 1000
    finally:
        client.delete_dataset(clean, delete_contents=True, not_found_ok=True)


def moved_id(lake_root: str) -> str:
    """The event stored in the hour before its own (the last line of the third hour's file)."""
    hour = RANGE[0] + 2 * lake.HOUR
    path = Path(lake.partition_path(lake_root, lake.EVENTS, hour)) / "events.jsonl"
    return json.loads(path.read_bytes().splitlines()[-1])["event_id"]
