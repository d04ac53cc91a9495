"""Command line for the analytics SQL: list, run, create-views, refresh-profile, report.

Against the local emulator (``python -m beam_pipelines.local env`` prints the variable)::

    export BIGQUERY_EMULATOR_HOST=http://127.0.0.1:9050
    python -m bigquery_schemas.analytics list
    python -m bigquery_schemas.analytics create-views --project local-ecommerce --dataset ecommerce
    python -m bigquery_schemas.analytics run top_products_by_units --project local-ecommerce \\
        --dataset ecommerce --start 2026-11-20 --end 2026-11-21 --limit 5
    python -m bigquery_schemas.analytics run all ... --format json --output results.json
    python -m bigquery_schemas.analytics refresh-profile --project local-ecommerce --dataset ecommerce
    python -m bigquery_schemas.analytics report ...     # reports/report-<start>-<end>.html

Without ``BIGQUERY_EMULATOR_HOST`` (or ``--endpoint``) it talks to real BigQuery with
Application Default Credentials.

Errors are one ``error:`` line (``--verbose`` adds the traceback), with the exit codes
of every command of the project (:mod:`beam_pipelines.cli`): 2 bad input (an unknown
query name, with the closest one; a bad date or option), 3 the environment is not ready
(the emulator or credentials missing; a dataset, table or view that does not exist, with
the closest existing dataset and the command that creates what is missing), 1 BigQuery
refused the query.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from google.api_core.exceptions import GoogleAPICallError
from google.auth.exceptions import DefaultCredentialsError

from beam_pipelines import cli, preflight
from bigquery_schemas import analytics
from bigquery_schemas.analytics.formatting import FORMATS, format_rows, json_rows
from bigquery_schemas.client import make_client

REPORTS_DIR = Path("reports")
"""Where generated files go by default: ignored by git (.gitignore), never the repository root."""


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", required=True, help="GCP project id, e.g. my-analytics-prod")
    parser.add_argument("--dataset", required=True, help="dataset holding user_behavior, e.g. ecommerce")
    parser.add_argument("--endpoint", default=None, help="emulator REST endpoint (default: $BIGQUERY_EMULATOR_HOST)")
    parser.add_argument(cli.VERBOSE_FLAG, action="store_true", help="print the full traceback of an error")


def _time_zone(text: str) -> str:
    try:
        return analytics.check_time_zone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--start", required=True, type=_date, help="first day, inclusive (YYYY-MM-DD, a date in --time-zone)"
    )
    parser.add_argument("--end", required=True, type=_date, help="last day, inclusive (YYYY-MM-DD)")
    parser.add_argument(
        "--time-zone",
        type=_time_zone,
        default=os.environ.get(analytics.TIME_ZONE_ENV) or analytics.DEFAULT_TIME_ZONE,
        metavar="ZONE",
        help="business time zone (IANA name, e.g. Europe/Berlin): every day, and the range, runs from local "
        f"midnight to local midnight (default: ${analytics.TIME_ZONE_ENV}, else UTC)",
    )
    parser.add_argument(
        "--limit", type=_positive, default=analytics.DEFAULT_LIMIT, help="rows for the top_* queries (default 10)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m bigquery_schemas.analytics",
        description="BigQuery analytics on user_behavior (SQL files in bigquery_schemas/analytics/).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list the queries, views and tables with their one-line descriptions")
    listing.add_argument(cli.VERBOSE_FLAG, action="store_true", help="print the full traceback of an error")

    run = sub.add_parser("run", help="run one query or all of them")
    run.add_argument("query", help="query name (see 'list') or 'all'")
    _add_target(run)
    _add_range(run)
    run.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    run.add_argument(
        "--output", type=Path, default=None, help="write to this file instead of stdout (a directory for 'all' as csv)"
    )

    views = sub.add_parser("create-views", help="create or replace user_behavior_dedup")
    _add_target(views)
    profile = sub.add_parser("refresh-profile", help="rebuild the user_profile table from the dedup view")
    _add_target(profile)

    report = sub.add_parser("report", help="static HTML report with inline SVG charts (no external assets)")
    _add_target(report)
    _add_range(report)
    report.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"HTML file to write (default: {REPORTS_DIR}/report-<start>-<end>.html)",
    )
    return parser


def known_query(name: str) -> str:
    """``name`` if it is a query file or ``all``; else a ValueError naming the closest one."""
    if name == "all":
        return name
    try:
        return analytics.get(name).name
    except ValueError:
        names = [q.name for q in analytics.queries()]
        hint = cli.closest(name, names)
        raise ValueError(
            f"unknown query {name!r}"
            + (f" (did you mean {hint}?)" if hint else "")
            + "; 'python -m bigquery_schemas.analytics list' shows them all"
        ) from None


def _cmd_list(out) -> None:
    entries = list(analytics.catalog().values())
    rows = [
        {
            "name": e.name,
            "kind": e.kind,
            "parameters": " ".join(f"@{p}" for p in e.parameters),
            "description": e.description,
        }
        for e in entries
    ]
    print(cli.format_table(rows), file=out)


def _write(text: str, path: Path | None, out) -> None:
    if path is None:
        print(text, file=out)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
    print(f"wrote {path}", file=out)


def _cmd_run(args: argparse.Namespace, out) -> None:
    names = [q.name for q in analytics.queries()] if args.query == "all" else [analytics.get(args.query).name]
    client = make_client(args.project, args.endpoint)
    results = {
        name: analytics.run_query(
            client, name, args.dataset, args.start, args.end, args.limit, project=args.project, time_zone=args.time_zone
        )
        for name in names
    }
    if args.query != "all":
        _write(format_rows(results[names[0]], args.format), args.output, out)
    elif args.format == "json":
        doc = {name: json_rows(rows) for name, rows in results.items()}
        _write(json.dumps(doc, indent=2), args.output, out)
    elif args.format == "csv" and args.output is not None:
        for name, rows in results.items():
            _write(format_rows(rows, "csv"), args.output / f"{name}.csv", out)
    else:
        sections = [
            f"== {name}: {analytics.get(name).description}\n{format_rows(rows, args.format)}"
            for name, rows in results.items()
        ]
        _write("\n\n".join(sections), args.output, out)


def main(argv: Sequence[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            known_query(args.query)  # an unknown name is bad input, whatever the stack's state
        if args.command in ("run", "report"):
            analytics.check_range(args.start, args.end)
        if args.command != "list":
            # Before any query: with the stack down the client retries silently for minutes.
            preflight.require_bigquery(f"querying {args.project}:{args.dataset}", args.endpoint)
            preflight.require_dataset(args.project, args.dataset, args.endpoint)
        if args.command == "list":
            _cmd_list(out)
        elif args.command == "run":
            _cmd_run(args, out)
        elif args.command == "create-views":
            client = make_client(args.project, args.endpoint)
            for view in analytics.create_views(client, args.dataset, project=args.project):
                print(f"created or replaced view {view}", file=out)
        elif args.command == "refresh-profile":
            client = make_client(args.project, args.endpoint)
            table = analytics.refresh_profile(client, args.dataset, project=args.project)
            print(f"rebuilt table {table}", file=out)
        elif args.command == "report":
            from bigquery_schemas.analytics.report import generate_report

            client = make_client(args.project, args.endpoint)
            html = generate_report(
                client, args.dataset, args.start, args.end, args.limit, project=args.project, time_zone=args.time_zone
            )
            output = args.output or REPORTS_DIR / f"report-{args.start.isoformat()}-{args.end.isoformat()}.html"
            _write(html, output, out)
    except (analytics.MissingTableError, preflight.PreflightError) as exc:
        cli.report_error(str(exc), exc if args.verbose else None, args.verbose, parser.prog)
        return cli.EXIT_NOT_READY
    except DefaultCredentialsError as exc:
        message = (
            "no Google credentials: set BIGQUERY_EMULATOR_HOST (or --endpoint) for the local emulator, "
            f"or run `{preflight.LOGIN_FIX}` for real BigQuery"
        )
        cli.report_error(message, exc if args.verbose else None, args.verbose, parser.prog)
        return cli.EXIT_NOT_READY
    except ValueError as exc:
        cli.report_error(preflight.one_line(exc), exc if args.verbose else None, args.verbose, parser.prog)
        return cli.EXIT_USAGE
    except GoogleAPICallError as exc:
        # The API's message names the table or the SQL position; that is what the user needs. Its
        # first line only: the client appends "Location: ..." and "Job ID: ..." lines.
        message = f"BigQuery: {preflight.one_line(getattr(exc, 'message', exc))}"
        cli.report_error(message, exc if args.verbose else None, args.verbose, parser.prog)
        return cli.EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
