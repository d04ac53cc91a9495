"""backfill.py's pure parts: how a range is cut, what each window's command line is, its record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from beam_pipelines import backfill

H0 = datetime(2026, 1, 1, tzinfo=UTC)


def _hours(*sizes):
    return [(H0 + timedelta(hours=i), s) for i, s in enumerate(sizes)]


def test_split_keeps_whole_consecutive_hours_within_the_limit_and_a_big_hour_alone():
    windows = backfill.split(_hours(4, 4, 1, 9, 0, 0, 3), limit=8, run_id="b")
    assert [(w.start[11:13], w.end[11:13], w.input_bytes) for w in windows] == [
        ("00", "02", 8),
        ("02", "03", 1),
        ("03", "04", 9),  # larger than the limit: alone
        ("04", "07", 3),
    ]
    assert [w.run_id for w in windows] == ["b-20260101T00", "b-20260101T02", "b-20260101T03", "b-20260101T04"]
    assert windows[-1].end == "2026-01-01T07:00:00.000000Z"


def test_window_bytes_follows_the_measured_model_and_refuses_nonsense():
    assert backfill.window_bytes(10_000, 1024) == 1024 * 2**20  # the measured cap
    small = backfill.window_bytes(backfill.JOB_FIXED_MIB + 10, 1024)
    assert small == int(10 / backfill.MIB_PER_INPUT_MIB * 2**20)
    with pytest.raises(ValueError, match="--backfill_memory_mib must exceed"):
        backfill.window_bytes(backfill.JOB_FIXED_MIB, 1024)
    with pytest.raises(ValueError, match="--backfill_window_mib must be a positive"):
        backfill.window_bytes(4096, 0)


def test_a_window_reruns_the_command_with_its_own_window_run_id_and_the_range():
    window = backfill.Window("2026-01-01T02:00:00.000000Z", "2026-01-01T05:00:00.000000Z", 7, "b-20260101T02")
    plan = backfill.Backfill(
        [window], backfill.State("/x"), "2026-01-01T00:00:00.000000Z", "2026-01-02T00:00:00.000000Z"
    )
    argv = ["--lake_root=/l", "--window_start", "2026-01-01T00:00:00Z", "--window_end=2026-01-02T00:00:00Z"]
    argv += ["--run_id", "b", "--project=p"]
    assert backfill.window_argv(argv, plan, window) == [
        "--lake_root=/l",
        "--project=p",
        "--window_start=2026-01-01T02:00:00.000000Z",
        "--window_end=2026-01-01T05:00:00.000000Z",
        "--run_id=b-20260101T02",
        "--backfill_range_start=2026-01-01T00:00:00.000000Z",
        "--backfill_range_end=2026-01-02T00:00:00.000000Z",
    ]


def test_the_record_counts_only_a_complete_matching_record(tmp_path):
    state = backfill.State(str(tmp_path / "s"))
    w = backfill.Window("2026-01-01T02:00:00.000000Z", "2026-01-01T05:00:00.000000Z", 7, "b-20260101T02")
    assert state.plan() is None and state.done(w) is None
    state.save_plan([w], w.start, w.end)
    assert state.plan() == [w]
    state.mark_done(w, {"records_in": 3}, 1.5)
    assert state.done(w)["counters"] == {"records_in": 3}
    assert not [p for p in (tmp_path / "s").rglob("*.partial")]  # written beside its name, renamed
    other = backfill.Window(w.start, w.end, 7, "another-run-id")
    assert state.done(other) is None  # a record of another run id is not this window's
    (tmp_path / "s" / "done" / f"{w.name}.json").write_text('{"start": "2026')  # cut short by a crash
    assert state.done(w) is None
