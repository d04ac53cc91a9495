"""Create or update the dataset and tables from the schema files, idempotently.

Run it against real BigQuery or the emulator::

    python -m bigquery_schemas.tables --project my-proj --dataset ecommerce
    BIGQUERY_EMULATOR_HOST=http://127.0.0.1:9050 python -m bigquery_schemas.tables ...

The command line over :mod:`bigquery_schemas.ddl`, which holds what may change in place
and what is refused (:class:`~bigquery_schemas.ddl.IncompatibleSchemaChange`, exit code 2);
it prints each table's action, then what BigQuery reports for it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from google.cloud import bigquery

from beam_pipelines import cli, preflight
from bigquery_schemas import table_names
from bigquery_schemas.client import make_client, query_scalar
from bigquery_schemas.ddl import IncompatibleSchemaChange, ensure_all


def describe_tables(client: bigquery.Client, dataset: str, tables: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """What BigQuery reports for each declared table (or the ones named): columns, partitioning, clustering, rows."""
    out = []
    for name in tables or table_names():
        t = client.get_table(f"{client.project}.{dataset}.{name}")
        tp = t.time_partitioning
        out.append(
            {
                "table": name,
                "columns": len(t.schema),
                "partitioning": f"{tp.type_}({tp.field})" if tp else "-",
                "clustering": ",".join(t.clustering_fields or []) or "-",
                # count(*) rather than num_rows: num_rows leaves out the streaming buffer.
                "rows": query_scalar(client, f"select count(*) from `{t.full_table_id.replace(':', '.')}`"),
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.ArgumentParser(
        prog="python -m bigquery_schemas.tables",
        description="Create or update the BigQuery dataset and tables from bigquery_schemas/*.json. "
        "Set BIGQUERY_EMULATOR_HOST (or --endpoint) to target the local emulator.",
    )
    parser.add_argument("--project", required=True, help="GCP project id, e.g. my-analytics-prod")
    parser.add_argument("--dataset", required=True, help="dataset id, e.g. ecommerce")
    parser.add_argument("--location", default=None, help="dataset location for a new dataset, e.g. EU or us-central1")
    parser.add_argument("--endpoint", default=None, help="emulator REST endpoint, e.g. http://127.0.0.1:9050")
    parser.add_argument("--table", action="append", help="only this table (repeatable); default: all")
    parser.add_argument(cli.VERBOSE_FLAG, action="store_true", help="print the full traceback of an error")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    unknown = sorted(set(args.table or ()) - set(table_names()))
    if unknown:
        hints = [f"{t} (did you mean {cli.closest(t, table_names())}?)" for t in unknown]
        parser.error(f"--table {', '.join(hints)}: the declared tables are {', '.join(table_names())}")
    try:
        preflight.require_bigquery(f"creating tables in {args.project}:{args.dataset}", args.endpoint)
        client = make_client(args.project, args.endpoint)
        existing = preflight.dataset_ids(client, args.project)
        near = cli.closest(args.dataset, existing) if args.dataset not in existing else None
        if near:  # creating is this command's job, but a near-miss name is worth a word first
            print(f"warning: creating a new dataset {args.dataset} (did you mean --dataset {near}?)", file=sys.stderr)
        results = ensure_all(client, args.dataset, args.table, args.location)
        for r in results:
            print(f"{r.action:9s} {r.table_id}")
        print(cli.format_table(describe_tables(client, args.dataset, args.table)))
    except IncompatibleSchemaChange as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        return cli.command_failed(
            exc, prog=parser.prog, resources=[f"{args.project}:{args.dataset}"], verbose=args.verbose
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
