"""Manage the local stack.

python -m beam_pipelines.local up [--service pubsub ...]   start emulators, create topic/tables
python -m beam_pipelines.local status                      what runs where
python -m beam_pipelines.local env                         'export' lines: eval "$(... env)"
python -m beam_pipelines.local down                        stop everything (the data stays)
python -m beam_pipelines.local wipe                        stop everything and delete the local data
python -m beam_pipelines.local install-extensions          DuckDB extensions for the BigQuery emulator

Exit codes: 0 ok, 2 bad command line, 3 the environment is not ready (a service is
missing or did not start; ``env`` while the stack is down), each with one ``error:`` line.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from beam_pipelines import cli
from beam_pipelines.local.processes import StackError
from beam_pipelines.local.services import install_duckdb_extensions
from beam_pipelines.local.stack import DEFAULT_ROOT, SERVICES, LocalStack, StackConfig
from beam_pipelines.preflight import ENV_FIX, UP_FIX


def _env_lines(stack: LocalStack) -> list[str]:
    """The export lines, or a StackError when a service is down: half of them would be eval'ed silently."""
    services = stack.load()
    down = sorted(name for name, info in services.items() if not info.alive())
    if not services or down:
        what = "the local stack is not running" if not services else f"{', '.join(down)} of the local stack is down"
        raise StackError(f"{what}, so there is nothing to point this shell at: run `{UP_FIX}`, then `{ENV_FIX}`")
    return [f"export {key}={shlex.quote(value)}" for key, value in stack.env(services).items()]


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
    sub.add_parser("down", help="stop every service this stack started (tables, objects, lake and source stay)")
    sub.add_parser(
        "wipe",
        help="stop the stack and delete its data: BigQuery tables, Cloud Storage objects, Pub/Sub messages, "
        "logs, the lake and the SQLite source (the DuckDB extensions stay)",
    )
    sub.add_parser("status", help="show each service, its pid, endpoints and log file")
    sub.add_parser("env", help="print shell 'export' lines for the running stack")
    sub.add_parser("install-extensions", help="install DuckDB extensions offline for the BigQuery emulator")
    args = parser.parse_args(argv)

    stack = LocalStack(StackConfig(root=args.root))
    try:
        if args.command == "up":
            print(f"Starting the local stack (state and data in {stack.config.state_dir}):")
            stack.up(args.service)
            print(cli.format_table(stack.status()))
            print(f"\nPoint your shell at it with:  {ENV_FIX}")
        elif args.command == "down":
            stack.down()
        elif args.command == "wipe":
            stack.wipe()
        elif args.command == "status":
            print(cli.format_table(stack.status()))
        elif args.command == "env":
            print("\n".join(_env_lines(stack)))
        elif args.command == "install-extensions":
            for path in install_duckdb_extensions(stack.config.root):
                print(f"installed {path}")
    except StackError as exc:
        cli.report_error(str(exc), None, False, parser.prog)
        return cli.EXIT_NOT_READY
    return 0


if __name__ == "__main__":
    sys.exit(main())
