"""The dimension tables (products, users): their keys and columns, and when a new snapshot may replace one.

Shared by every job that replaces a dimension: the extract's snapshot merge
(:mod:`.dimension_extract`), the hourly job's MERGE into BigQuery
(:mod:`.staging.merge`, :mod:`.lake_io`) and the streaming job's refreshed side inputs
(:mod:`.dimension_side_inputs`), so all three refuse the same shrink.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DimTable:
    name: str
    key: str
    columns: tuple[str, ...]


DIM_TABLES = {
    "products": DimTable("products", "product_id", ("product_id", "product_name", "category", "price", "updated_at")),
    "users": DimTable("users", "user_id", ("user_id", "user_name", "email", "signup_date", "country", "updated_at")),
}


# A refresh may drop at most this share of a dimension's rows without --allow_dims_shrink:
# a read that fails quietly, a wrong source or a truncated snapshot looks like a shrink,
# and taking it would delete rows from products/users and blank attributes downstream.
MAX_DIMS_SHRINK = 0.5


def shrink_refusal(table: str, before: int, after: int, where: str) -> str | None:
    """Why replacing ``before`` rows of ``table`` by ``after`` is refused, or None when it is not.

    Refused: more than :data:`MAX_DIMS_SHRINK` of the rows would go (an empty snapshot
    replacing a non-empty one always is).
    """
    if before <= 0 or after >= before * (1 - MAX_DIMS_SHRINK):
        return None
    return (
        f"{table} would shrink from {before} to {after} rows in {where} (more than {MAX_DIMS_SHRINK:.0%} of them "
        "gone at once): nothing was replaced; check the source and the mapping, and if the table really "
        "shrank, run again with --allow_dims_shrink"
    )


def dim_table(name: str) -> DimTable:
    if name not in DIM_TABLES:
        raise ValueError(f"unknown dimension table {name!r}; expected one of {sorted(DIM_TABLES)}")
    return DIM_TABLES[name]
