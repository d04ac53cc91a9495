"""``--lake_root`` is taken literally and must hold the extracts, through ``python -m beam_pipelines.hourly``.

Before: a root that did not exist exited 0 with ``records_in 0``; a root ``.../brk[1]``
read the lake ``.../brk1``, and ``.../star*`` merged two lakes, because the root went
into Beam's glob patterns as it was. Now glob characters are data, a root with nothing
under it fails with one line, and so does an hour no extract completion record covers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.jobs import hourly_job_args, write_small_lake
from tests.fixtures.stack import own_dataset

pytestmark = pytest.mark.integration

HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def hourly_cli(project: str, ds: str, root: str, *extra: str) -> subprocess.CompletedProcess:
    argv = [
        sys.executable,
        "-m",
        "beam_pipelines.hourly",
        *hourly_job_args(project, ds, root, HOUR, HOUR + timedelta(hours=1), *extra),
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_GCE_CHECK": "true"})


def event_ids(client, project: str, ds: str) -> list[str]:
    rows = client.query(f"select event_id from `{project}.{ds}.user_behavior` order by event_id").result()
    return [r["event_id"] for r in rows]


@pytest.mark.parametrize("tricky, lookalike", [("brk[1]", "brk1"), ("star*", "star-other")])
def test_glob_characters_in_the_root_are_part_of_its_name(bigquery_emulator, tmp_path, tricky, lookalike):
    write_small_lake(str(tmp_path / tricky), HOUR, ["own-1", "own-2"])
    write_small_lake(str(tmp_path / lookalike), HOUR, ["other-1"], product_name="other lake")
    with own_dataset(bigquery_emulator, "root") as (client, project, ds):
        done = hourly_cli(project, ds, str(tmp_path / tricky))
        assert done.returncode == 0, done.stderr[-2000:]
        assert event_ids(client, project, ds) == ["own-1", "own-2"]


def test_a_root_with_nothing_under_it_fails_with_one_line(bigquery_emulator, tmp_path):
    with own_dataset(bigquery_emulator, "root") as (client, project, ds):
        done = hourly_cli(project, ds, str(tmp_path / "no-such-lake"))
        assert done.returncode == 1
        [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]  # logs aside
        assert line.startswith("error: hourly failed: ") and "nothing is under --lake_root" in line
        assert event_ids(client, project, ds) == []


def test_an_hour_no_extract_covered_fails_and_the_flag_loads_it_anyway(bigquery_emulator, tmp_path):
    root = tmp_path / "lake"
    write_small_lake(str(root), HOUR, ["e-1"])
    for record in (root / "_extracts").rglob("*.json"):
        record.unlink()  # the orders extract of the hour never finished
    with own_dataset(bigquery_emulator, "root") as (client, project, ds):
        done = hourly_cli(project, ds, str(root))
        assert done.returncode == 1
        [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
        assert "have no orders extract completion record" in line and "--allow_missing_extracts" in line
        assert event_ids(client, project, ds) == []
        done = hourly_cli(project, ds, str(root), "--allow_missing_extracts")
        assert done.returncode == 0, done.stderr[-2000:]
        assert event_ids(client, project, ds) == ["e-1"]
