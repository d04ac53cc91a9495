"""Create or update the dataset and tables from the schema files, idempotently.

Run it against real BigQuery or the emulator::

    python -m bigquery_schemas.tables --project my-proj --dataset ecommerce
    BIGQUERY_EMULATOR_HOST=http://127.0.0.1:9050 python -m bigquery_schemas.tables ...

Allowed changes are applied in place (new NULLABLE columns, REQUIRED -> NULLABLE,
descriptions, clustering). Anything BigQuery cannot do without rewriting the table
(dropping or retyping a column, a new REQUIRED column, NULLABLE -> REQUIRED,
different partitioning) is refused with :class:`IncompatibleSchemaChange`, which
names the column and what to do instead.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from bigquery_schemas import TableSpec, table_names, table_spec
from bigquery_schemas.client import make_client, query_scalar

_LOG = logging.getLogger(__name__)

# Legacy and standard spellings the API may return for the same type.
_TYPE_ALIASES = {
    "INT64": "INTEGER",
    "FLOAT64": "FLOAT",
    "BOOL": "BOOLEAN",
    "STRUCT": "RECORD",
    "DECIMAL": "NUMERIC",
    "BIGDECIMAL": "BIGNUMERIC",
}


class IncompatibleSchemaChange(RuntimeError):
    """The schema file asks for a change BigQuery cannot apply in place."""


@dataclass(frozen=True)
class TableResult:
    table_id: str
    action: str  # created | updated | unchanged


def _norm_type(field_type: str) -> str:
    upper = field_type.upper()
    return _TYPE_ALIASES.get(upper, upper)


def to_schema_fields(fields: Iterable[dict[str, Any]]) -> list[bigquery.SchemaField]:
    """JSON schema entries -> ``SchemaField`` objects (recursing into RECORDs)."""
    return [
        bigquery.SchemaField(
            name=f["name"],
            field_type=f["type"],
            mode=f.get("mode", "NULLABLE"),
            description=f.get("description"),
            fields=to_schema_fields(f.get("fields", ())),
        )
        for f in fields
    ]


def _merge_fields(
    table: str, existing: Sequence[bigquery.SchemaField], wanted: Sequence[bigquery.SchemaField], path: str = ""
) -> list[bigquery.SchemaField]:
    """Return the schema to store, or raise if ``wanted`` cannot replace ``existing``."""
    wanted_by_name = {f.name.lower(): f for f in wanted}
    merged: list[bigquery.SchemaField] = []
    for old in existing:
        name = f"{path}{old.name}"
        new = wanted_by_name.pop(old.name.lower(), None)
        if new is None:
            raise IncompatibleSchemaChange(
                f"{table}: column {name!r} exists in BigQuery but not in the schema file. "
                "BigQuery cannot drop columns in place: keep the column in the file (mark it "
                "deprecated in its description) or migrate to a new table."
            )
        if _norm_type(old.field_type) != _norm_type(new.field_type):
            if _norm_type(old.field_type) == "INTEGER" and _norm_type(new.field_type) == "STRING":
                raise IncompatibleSchemaChange(
                    f"{table}: column {name!r} is INTEGER in BigQuery but STRING in the schema file (ids "
                    "are text now). Migrate the table, keeping its rows: python -m bigquery_schemas.migrate_ids "
                    "--project <p> --dataset <d> (docs/migrations.md)."
                )
            raise IncompatibleSchemaChange(
                f"{table}: column {name!r} is {old.field_type} in BigQuery but {new.field_type} in "
                "the schema file. Changing a type needs a new column (add it, backfill, switch readers)."
            )
        old_mode, new_mode = (old.mode or "NULLABLE").upper(), (new.mode or "NULLABLE").upper()
        if old_mode != new_mode and not (old_mode == "REQUIRED" and new_mode == "NULLABLE"):
            raise IncompatibleSchemaChange(
                f"{table}: column {name!r} mode {old_mode} -> {new_mode} is not allowed in place "
                "(only REQUIRED -> NULLABLE is). Keep the mode or create a new column."
            )
        sub = list(new.fields)
        if old.fields or new.fields:
            sub = _merge_fields(table, old.fields, new.fields, path=f"{name}.")
        merged.append(
            bigquery.SchemaField(old.name, new.field_type, mode=new_mode, description=new.description, fields=sub)
        )
    for new in wanted_by_name.values():
        if (new.mode or "NULLABLE").upper() == "REQUIRED":
            raise IncompatibleSchemaChange(
                f"{table}: new column {path}{new.name!r} is REQUIRED; existing rows have no value "
                "for it. Add it as NULLABLE (and backfill) instead."
            )
        merged.append(new)
    return merged


def _schema_key(fields: Sequence[bigquery.SchemaField]) -> list[tuple]:
    return [
        (f.name, _norm_type(f.field_type), (f.mode or "NULLABLE").upper(), f.description or "", _schema_key(f.fields))
        for f in fields
    ]


def _check_partitioning(spec: TableSpec, table: bigquery.Table) -> None:
    current = table.time_partitioning
    current_field = current.field if current else None
    current_type = current.type_ if current else None
    if (current_field, current_type) != (spec.partition_field, spec.partition_type):
        raise IncompatibleSchemaChange(
            f"{spec.name}: partitioning is {current_type}({current_field}) in BigQuery but "
            f"{spec.partition_type}({spec.partition_field}) in tables.json. Partitioning cannot "
            "change in place: create a new table with CREATE TABLE ... AS SELECT and swap."
        )


def build_table(project: str, dataset: str, spec: TableSpec, name: str | None = None) -> bigquery.Table:
    """``spec`` as a table to create, named ``name`` (default ``spec.name``: a staging table takes its own)."""
    table = bigquery.Table(f"{project}.{dataset}.{name or spec.name}", schema=to_schema_fields(spec.fields))
    table.description = spec.description
    if spec.partition_field:
        table.time_partitioning = bigquery.TimePartitioning(type_=spec.partition_type, field=spec.partition_field)
    if spec.clustering:
        table.clustering_fields = list(spec.clustering)
    return table


def ensure_table(client: bigquery.Client, dataset: str, spec: TableSpec) -> TableResult:
    """Create ``spec`` in ``dataset`` or bring an existing table in line with it."""
    wanted = build_table(client.project, dataset, spec)
    try:
        current = client.get_table(wanted.reference)
    except NotFound:
        client.create_table(wanted)
        return TableResult(str(wanted.reference), "created")
    _check_partitioning(spec, current)
    merged = _merge_fields(spec.name, current.schema, wanted.schema)
    changes: list[str] = []
    if _schema_key(merged) != _schema_key(current.schema):
        current.schema = merged
        changes.append("schema")
    if (current.description or "") != spec.description:
        current.description = spec.description
        changes.append("description")
    if list(current.clustering_fields or []) != list(spec.clustering):
        current.clustering_fields = list(spec.clustering) or None
        changes.append("clustering_fields")
    if not changes:
        return TableResult(str(wanted.reference), "unchanged")
    client.update_table(current, changes)
    return TableResult(str(wanted.reference), "updated")


def ensure_dataset(client: bigquery.Client, dataset: str, location: str | None = None) -> None:
    ds = bigquery.Dataset(f"{client.project}.{dataset}")
    if location:
        ds.location = location
    ds.description = "E-commerce user behaviour (managed by bigquery_schemas.tables)"
    client.create_dataset(ds, exists_ok=True)


def ensure_all(
    client: bigquery.Client, dataset: str, tables: Iterable[str] | None = None, location: str | None = None
) -> list[TableResult]:
    """Create the dataset and every declared table (or the ones named)."""
    ensure_dataset(client, dataset, location)
    return [ensure_table(client, dataset, table_spec(t)) for t in (tables or table_names())]


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


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain aligned text table for terminals."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    line = "  ".join(c.ljust(widths[c]) for c in cols)
    body = ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join([line, "  ".join("-" * widths[c] for c in cols), *body])


def main(argv: Sequence[str] | None = None) -> int:
    # The command line is the one layer above beam_pipelines here: the shared parser and
    # preflight live there, the table logic of this module stays below it.
    from beam_pipelines import cli, preflight

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
        print(format_table(describe_tables(client, args.dataset, args.table)))
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
