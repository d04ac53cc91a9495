"""Bring the dataset and its tables in line with the schema files, idempotently.

The table logic under ``python -m bigquery_schemas.tables`` (:mod:`bigquery_schemas.tables`,
the command line above it), also used by ``beam_pipelines.local up``, the migration
(:mod:`bigquery_schemas.migrate_ids`) and the hourly job's staging tables.

Allowed changes are applied in place (new NULLABLE columns, REQUIRED -> NULLABLE,
descriptions, clustering). Anything BigQuery cannot do without rewriting the table
(dropping or retyping a column, a new REQUIRED column, NULLABLE -> REQUIRED,
different partitioning) is refused with :class:`IncompatibleSchemaChange`, which
names the column and what to do instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from bigquery_schemas import TableSpec, table_names, table_spec

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
