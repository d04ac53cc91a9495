"""`make demo`: the whole system end to end on the local stack, no cloud account.

Each step says what it does and how long it took. The stack stays up afterwards
so the tables can be queried; `make stack-down` stops it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from beam_pipelines.local.processes import StackError
from beam_pipelines.local.stack import LocalStack, StackConfig
from bigquery_schemas.client import make_client
from bigquery_schemas.tables import describe_tables, format_table


@dataclass
class DemoContext:
    stack: LocalStack
    args: argparse.Namespace

    @property
    def config(self) -> StackConfig:
        return self.stack.config

    def table(self, name: str) -> str:
        return f"{self.config.project}:{self.config.dataset}.{name}"


def step_stack(ctx: DemoContext) -> None:
    """Bring up the emulators and create the topic, subscription, dataset and tables."""
    ctx.stack.up(progress=lambda line: print(line, flush=True))
    os.environ.update(ctx.stack.env())


def step_show_tables(ctx: DemoContext) -> None:
    """List the BigQuery tables with partitioning, clustering and row counts."""
    client = make_client(ctx.config.project)
    print(format_table(describe_tables(client, ctx.config.dataset)))


STEPS: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("Start the local stack", step_stack),
    ("Show the BigQuery tables", step_show_tables),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beam_pipelines.demo",
        description="Run every job end to end on the local stack (emulators, SQLite, local lake).",
    )
    parser.add_argument("--down", action="store_true", help="stop the stack at the end (default: leave it up)")
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_GCE_CHECK", "true")
    ctx = DemoContext(LocalStack(StackConfig()), args)
    started = time.monotonic()
    try:
        for number, (title, step) in enumerate(STEPS, start=1):
            print(f"\n[{number}/{len(STEPS)}] {title}: {step.__doc__.strip()}", flush=True)
            t0 = time.monotonic()
            step(ctx)
            print(f"      done in {time.monotonic() - t0:.1f} s", flush=True)
    except StackError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.down:
            ctx.stack.down()
    print(f"\nDemo finished in {time.monotonic() - started:.0f} s.")
    if not args.down:
        print(
            'The stack is still running: eval "$(.venv/bin/python -m beam_pipelines.local env)" to use it, '
            "make stack-down to stop it."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
