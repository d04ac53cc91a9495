"""Manage the local stack.

python -m beam_pipelines.local up [--service pubsub ...]   start emulators, create topic/tables
python -m beam_pipelines.local status                      what runs where
python -m beam_pipelines.local env                         'export' lines: eval "$(... env)"
python -m beam_pipelines.local down                        stop everything
python -m beam_pipelines.local install-extensions          DuckDB extensions for the BigQuery emulator
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from beam_pipelines import cli
from beam_pipelines.local.processes import StackError
from beam_pipelines.local.services import install_duckdb_extensions
from beam_pipelines.local.stack import DEFAULT_ROOT, SERVICES, LocalStack, StackConfig
from beam_pipelines.preflight import ENV_FIX
from bigquery_schemas.tables import format_table


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(
        prog="python -m beam_pipelines.local",
        description="Local stand-ins for Google Cloud: the official Pub/Sub emulator, the BigQuery "
        "emulator (bqemulator), a GCS emulator, a lake folder and the SQL source. State lives in .local/.",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=DEFAULT_ROOT,
        help="folder for the stack's state, logs and data",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack (idempotent) and create topic, subscription, dataset, tables")
    up.add_argument("--service", action="append", choices=sorted(SERVICES), help="only this service (repeatable)")
    sub.add_parser("down", help="stop every service this stack started")
    sub.add_parser("status", help="show each service, its pid, endpoints and log file")
    sub.add_parser("env", help="print shell 'export' lines for the running stack")
    sub.add_parser("install-extensions", help="install DuckDB extensions offline for the BigQuery emulator")
    args = parser.parse_args(argv)

    stack = LocalStack(StackConfig(root=args.root))
    try:
        if args.command == "up":
            print("Starting the local stack (state in .local/stack):")
            stack.up(args.service)
            print(format_table(stack.status()))
            print(f"\nPoint your shell at it with:  {ENV_FIX}")
        elif args.command == "down":
            stack.down()
        elif args.command == "status":
            print(format_table(stack.status()))
        elif args.command == "env":
            for key, value in stack.env().items():
                print(f"export {key}={shlex.quote(value)}")
        elif args.command == "install-extensions":
            for path in install_duckdb_extensions(stack.config.root):
                print(f"installed {path}")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
