"""``beam_pipelines.cli`` in process: help defaults once, typo suggestions, the one-line failure summary."""

from __future__ import annotations

import argparse

import pytest

from beam_pipelines import cli, hourly, launch


def test_help_formatter_appends_a_default_once_and_only_when_there_is_one():
    parser = cli.ArgumentParser(prog="x")
    parser.add_argument("--size", type=int, default=500, help="rows per page (default 500)")
    parser.add_argument("--rate", type=float, default=0.0, help="fraction")
    parser.add_argument("--name", default=None, help="optional name")
    parser.add_argument("--flag", action="store_true", help="a switch")
    text = " ".join(parser.format_help().split())
    assert "rows per page (default 500)" in text and "(default 500) (default" not in text
    assert "fraction (default: 0.0)" in text
    assert "optional name (default" not in text and "a switch (default" not in text


def test_unknown_flags_are_refused_with_the_jobs_closest_flag():
    with pytest.raises(cli.UsageError, match=r"unknown option --windw_end \(did you mean --window_end\?\)"):
        cli.parse_job_options(["--windw_end=2026-11-22T10:00:00Z"], hourly.HourlyOptions, "beam_pipelines.hourly")
    with pytest.raises(cli.UsageError, match="invalid int value"):
        cli.parse_job_options(["--num_workers=many"], hourly.HourlyOptions, "beam_pipelines.hourly")
    options = cli.parse_job_options(
        ["--runner=FnApiRunner", "--window_start=2026-11-22"], hourly.HourlyOptions, "beam_pipelines.hourly"
    )
    assert options.view_as(hourly.HourlyOptions).window_start == "2026-11-22"


def test_argument_parser_errors_are_one_line_with_a_suggestion(capsys):
    parser = cli.ArgumentParser(prog="python -m tool")
    parser.add_argument("--dataset")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--datset", "x"])
    assert exit_info.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == "error: unknown option --datset (did you mean --dataset?) (see python -m tool --help)\n"


def test_failure_summary_names_the_real_cause_its_step_and_the_resource():
    # The shape of a DoFn error re-raised by Beam: the worker traceback inside the message.
    wrapped = RuntimeError(
        'Traceback (most recent call last):\n  File "x.py", line 1, in process\n'
        "google.api_core.exceptions.NotFound: 404 Not found: Table p-1:ds.user_behaviour "
        "[while running 'StageUserBehavior/Insert']"
    )
    line = cli.failure_summary("hourly", wrapped, ["p-1:ds.user_behaviour", "p-1:ds.orders"])
    assert line.startswith("hourly failed: google.api_core.exceptions.NotFound: 404 Not found")
    assert "[step StageUserBehavior/Insert]" in line and line.endswith("(resource: p-1:ds.user_behaviour)")
    assert "\n" not in line


def test_input_errors_and_failed_runs_are_told_apart():
    assert launch._is_input_error(ValueError("--window_start must be ..."))
    assert not launch._is_input_error(ValueError("bad row [while running 'ParseEvents']"))
    assert not launch._is_input_error(argparse.ArgumentTypeError("x"))
