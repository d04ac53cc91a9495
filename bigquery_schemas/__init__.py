"""BigQuery schemas as code: the JSON files beside this module are the only copy.

Every table's columns live in ``<table>.json`` (the ``bq`` CLI schema format) and
its table-level settings (description, partitioning, clustering) in
``tables.json``. The table creator (:mod:`bigquery_schemas.tables`) and every Beam
``WriteToBigQuery`` read them through the functions below, so a column added to
a file reaches both with no other change.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent

USER_BEHAVIOR = "user_behavior"
DEAD_LETTER = "dead_letter"
ENGAGEMENT_MINUTELY = "engagement_minutely"
PRODUCTS = "products"
USERS = "users"
ORDERS = "orders"


@dataclass(frozen=True)
class TableSpec:
    """A table as declared in ``tables.json`` plus its column list."""

    name: str
    description: str
    fields: tuple[dict[str, Any], ...]
    partition_field: str | None = None
    partition_type: str | None = None
    clustering: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [f["name"] for f in self.fields]


@functools.cache
def _table_settings() -> dict[str, dict[str, Any]]:
    return json.loads((SCHEMA_DIR / "tables.json").read_text())


def table_names() -> list[str]:
    """All tables declared in ``tables.json``, in file order."""
    return list(_table_settings())


def load_fields(table: str) -> list[dict[str, Any]]:
    """Return the column list of ``table`` from its JSON schema file."""
    settings = _table_settings()
    if table not in settings:
        raise ValueError(f"unknown table {table!r}; expected one of {sorted(settings)}")
    path = SCHEMA_DIR / settings[table]["schema"]
    return json.loads(path.read_text())


def table_spec(table: str) -> TableSpec:
    """Return the full declaration of ``table`` (columns and table settings)."""
    settings = _table_settings()
    fields = load_fields(table)
    entry = settings[table]
    partitioning = entry.get("time_partitioning") or {}
    return TableSpec(
        name=table,
        description=entry.get("description", ""),
        fields=tuple(fields),
        partition_field=partitioning.get("field"),
        partition_type=partitioning.get("type"),
        clustering=tuple(entry.get("clustering", ())),
    )


def beam_schema(table: str) -> dict[str, Any]:
    """Schema in the form ``beam.io.WriteToBigQuery(schema=...)`` accepts."""
    return {"fields": load_fields(table)}


def beam_additional_bq_parameters(table: str) -> dict[str, Any]:
    """Partitioning/clustering for ``WriteToBigQuery(additional_bq_parameters=...)``.

    Used when Beam creates the table (CREATE_IF_NEEDED), so a table Beam makes
    is laid out exactly like one :mod:`bigquery_schemas.tables` makes.
    """
    spec = table_spec(table)
    params: dict[str, Any] = {}
    if spec.partition_field:
        params["timePartitioning"] = {"type": spec.partition_type, "field": spec.partition_field}
    if spec.clustering:
        params["clustering"] = {"fields": list(spec.clustering)}
    return params
