"""``replay`` of a file with naive local times: ``--timezone``, the mapping's zone, the invalid-rows exit.

Times are in Europe/Berlin around both daylight-saving changes of 2021 (CET = UTC+1,
CEST = UTC+2 between 2021-03-28 01:00 UTC and 2021-10-31 01:00 UTC); the expected
UTC times and lake hours are written out by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from beam_pipelines import events

HEADER = "event_time,event_type,product_id,price,user_id,user_session\n"
LOCAL = [
    ("2021-03-27 23:30:00", "2021-03-27T22:30:00.000000Z"),  # CET
    ("2021-03-28 01:59:00", "2021-03-28T00:59:00.000000Z"),  # CET, a minute before the change
    ("2021-03-28 03:30:00", "2021-03-28T01:30:00.000000Z"),  # CEST
    ("2021-10-31 01:30:00", "2021-10-30T23:30:00.000000Z"),  # CEST
    ("2021-10-31 04:00:00", "2021-10-31T03:00:00.000000Z"),  # CET again
]


def _file(tmp_path):
    path = tmp_path / "clicks.csv"
    path.write_text(HEADER + "".join(f"{t},view,p{i},9.90,u{i},s{i}\n" for i, (t, _) in enumerate(LOCAL)))
    return path


def _replay(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "publishers.simulator", "replay", "--speed", "0", "--quiet", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("zone_from", ["--timezone", "--source-mapping"])
def test_naive_times_are_read_in_the_given_zone_and_land_in_their_utc_hours(tmp_path, zone_from):
    path, root = _file(tmp_path), tmp_path / "lake"
    if zone_from == "--timezone":
        zone = ["--timezone", "Europe/Berlin"]
    else:
        (tmp_path / "m.toml").write_text('timezone = "Europe/Berlin"\n')
        zone = ["--source-mapping", tmp_path / "m.toml"]
    proc = _replay("--file", path, "--lake-root", root, *zone)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", "valid rows: no warning"
    summary = json.loads(proc.stdout)
    assert summary["timezone"] == "Europe/Berlin" and summary["unique_valid_events"] == len(LOCAL)
    written = {}
    for file in root.glob("raw/events/dt=*/hour=*/*.jsonl"):
        for line in file.read_text().splitlines():
            written[json.loads(line)["product_id"]] = (file.parent.parent.name, file.parent.name, line)
    for i, (_, utc) in enumerate(LOCAL):
        day, hour, line = written[f"p{i}"]
        assert json.loads(line)["event_ts"] == utc
        assert (day, hour) == (f"dt={utc[:10]}", f"hour={utc[11:13]}")


def test_naive_times_without_a_zone_are_invalid_and_nothing_is_written(tmp_path):
    path, root = _file(tmp_path), tmp_path / "lake"
    proc = _replay("--file", path, "--lake-root", root)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: 5 of 5 rows are invalid (100.0%): 5 validate: event_ts has no UTC offset",
        "hint: the file's times have no UTC offset: pass --timezone (e.g. UTC or Europe/Berlin)",
        "error: more than --max-invalid-share 0.1 of the rows are invalid; nothing was sent (fix the file or the "
        "--mapping / --timezone, or raise --max-invalid-share)",
    ]
    assert proc.stdout == "" and not root.exists()


def test_a_bad_timezone_is_refused_in_one_line(tmp_path):
    proc = _replay("--file", _file(tmp_path), "--output-jsonl", tmp_path / "o.jsonl", "--timezone", "Berlin")
    assert proc.returncode == 2
    assert proc.stderr == "error: --timezone = 'Berlin' is not a known IANA time zone (e.g. 'America/Sao_Paulo')\n"


@pytest.mark.integration
def test_publishing_events_older_than_the_engagement_windows_warns_with_the_count(tmp_path, pubsub_emulator):
    # Ages before the last event, once retimed to end now: 0, 5, 9 min are inside a 60 s
    # window plus 10 min of lateness; 12, 20, 30 min are not, whatever second it is.
    last = datetime(2021, 3, 1, 12, tzinfo=UTC)
    ages = [30, 20, 12, 9, 5, 0]
    path = tmp_path / "clicks.csv"
    path.write_text(
        HEADER
        + "".join(
            f"{events.format_ts(last - timedelta(minutes=a))},view,p{i},9.90,u{i},s{i}\n" for i, a in enumerate(ages)
        )
    )
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_emulator.host}
    topic = ["--project", pubsub_emulator.project, "--topic", "replay-late", "--create-topic"]
    proc = _replay("--file", path, "--retime", *topic, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        "warning: 3 of 6 events will be published after their engagement window closed (60 s windows, 10 min "
        "allowed lateness, the streaming job's defaults): engagement_minutely leaves them out, user_behavior still "
        "gets them; --retime --speed 0 puts the file's whole span before now: use a --speed that paces it in real "
        "time\n"
    )
    proc = _replay("--file", path, *topic, env=env)  # the file's own times: years late
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("warning: 6 of 6 events will be published after their engagement window closed")
    assert proc.stderr.endswith("use --retime to move them to now\n")
