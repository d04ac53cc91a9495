"""Tables made when ids were INT64 migrate to text ids with every row kept (on bqemulator)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from google.cloud import bigquery

from bigquery_schemas import table_spec
from bigquery_schemas.ddl import IncompatibleSchemaChange, build_table, ensure_table, to_schema_fields
from bigquery_schemas.migrate_ids import BACKUP_SUFFIX, main, plan_table

pytestmark = pytest.mark.integration

TS = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def _as_int64_ids(fields):
    """The schema file as it was before ids became text."""
    fields = copy.deepcopy(list(fields))
    for f in fields:
        if f["name"] in ("user_id", "product_id"):
            f["type"] = "INTEGER"
        if f.get("fields"):
            f["fields"] = _as_int64_ids(f["fields"])
    return fields


def _create_old_table(client: bigquery.Client, dataset: str, name: str) -> None:
    spec = table_spec(name)
    client.delete_table(f"{client.project}.{dataset}.{name}", not_found_ok=True)
    table = build_table(client.project, dataset, spec)
    table.schema = to_schema_fields(_as_int64_ids(spec.fields))
    client.create_table(table)


ORDERS = [
    {
        "order_id": "o-1",
        "user_id": 42,
        "session_id": "s-1",
        "status": "paid",
        "order_ts": TS,
        "updated_at": TS,
        "currency": "EUR",
        "total_amount": Decimal("7.00"),
        "lines": [
            {
                "line_number": 1,
                "product_id": 9007199254740993,
                "quantity": 2,
                "unit_price": Decimal("2.50"),
                "amount": Decimal("5.00"),
            },
            {
                "line_number": 2,
                "product_id": 7,
                "quantity": 1,
                "unit_price": Decimal("2.00"),
                "amount": Decimal("2.00"),
            },
        ],
    },
    {
        "order_id": "o-2",
        "user_id": 7,
        "session_id": None,
        "status": "cancelled",
        "order_ts": TS,
        "updated_at": TS,
        "currency": "EUR",
        "total_amount": Decimal("0.00"),
        "lines": [],
    },
]


def _insert(client, dataset, name, rows):
    errors = client.insert_rows(client.get_table(f"{client.project}.{dataset}.{name}"), rows)
    assert errors == []


def test_int64_id_tables_are_refused_by_the_creator_then_migrated_with_every_row(bq_dataset, capsys):
    client, ds = bq_dataset.client, bq_dataset.dataset
    _create_old_table(client, ds, "orders")
    _create_old_table(client, ds, "users")
    _insert(client, ds, "orders", ORDERS)
    _insert(
        client,
        ds,
        "users",
        [
            {
                "user_id": 42,
                "user_name": "ada",
                "email": "a@example.com",
                "signup_date": "2025-01-01",
                "country": "DE",
                "updated_at": TS,
            },
        ],
    )

    with pytest.raises(
        IncompatibleSchemaChange, match=r"'user_id' is INTEGER .* python -m bigquery_schemas.migrate_ids"
    ):
        ensure_table(client, ds, table_spec("orders"))
    plan = plan_table(client, ds, "orders")
    assert plan.retyped == ("user_id", "lines.product_id")
    assert plan_table(client, ds, "user_behavior") is None  # already text ids

    # --dry-run prints the SQL and changes nothing.
    assert main(["--project", bq_dataset.project, "--dataset", ds, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "-- orders: user_id, lines.product_id INT64 -> STRING" in out and "cast(t.`user_id` as string)" in out
    assert client.get_table(bq_dataset.table_id("orders")).schema[1].field_type == "INTEGER"

    assert main(["--project", bq_dataset.project, "--dataset", ds]) == 0
    out = capsys.readouterr().out
    assert "orders: [5/5] done" in out and "users: [5/5] done" in out

    orders = {r["order_id"]: r for r in bq_dataset.rows("orders")}
    assert orders["o-1"]["user_id"] == "42" and orders["o-2"]["user_id"] == "7"
    # Line order and every other value survive; an id beyond 2**53 keeps every digit.
    assert [(ln["line_number"], ln["product_id"], ln["amount"]) for ln in orders["o-1"]["lines"]] == [
        (1, "9007199254740993", Decimal("5.00")),
        (2, "7", Decimal("2.00")),
    ]
    assert (
        orders["o-2"]["lines"] == [] and orders["o-2"]["session_id"] is None and orders["o-2"]["status"] == "cancelled"
    )
    assert [r["user_id"] for r in bq_dataset.rows("users")] == ["42"]

    # The table is the schema file's again (partitioning, clustering), the backup holds the old rows.
    assert ensure_table(client, ds, table_spec("orders")).action == "unchanged"
    migrated = client.get_table(bq_dataset.table_id("orders"))
    assert migrated.time_partitioning.field == "order_ts" and migrated.clustering_fields == ["status", "user_id"]
    assert bq_dataset.count(f"orders{BACKUP_SUFFIX}") == 2

    # A second run finds nothing to do.
    assert main(["--project", bq_dataset.project, "--dataset", ds]) == 0
    assert "nothing to migrate" in capsys.readouterr().out


def test_an_existing_backup_stops_the_migration_before_any_change(bq_dataset, capsys):
    client, ds = bq_dataset.client, bq_dataset.dataset
    _create_old_table(client, ds, "users")
    client.copy_table(bq_dataset.table_id("users"), bq_dataset.table_id(f"users{BACKUP_SUFFIX}")).result()
    assert main(["--project", bq_dataset.project, "--dataset", ds, "--table", "users"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert client.get_table(bq_dataset.table_id("users")).schema[0].field_type == "INTEGER"


def _doc_sql_block(after: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "migrations.md").read_text()
    rest = text[text.index(after) :]
    return rest[rest.index("```sql\n") + 7 : rest.index("\n```", rest.index("```sql\n"))]


def test_the_documented_postgresql_retype_keeps_rows_and_keys(postgres_url):
    import psycopg

    old_ddl = """
        create table products (product_id bigint primary key, product_name text not null);
        create table users (user_id bigint primary key);
        create table orders (order_id text primary key, user_id bigint not null references users (user_id));
        create table order_lines (order_id text not null references orders (order_id), line_number int not null,
            product_id bigint not null references products (product_id), primary key (order_id, line_number));
        insert into products values (1017, 'kettle'); insert into users values (42);
        insert into orders values ('o-1', 42); insert into order_lines values ('o-1', 1, 1017);
    """
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("drop table if exists order_lines, orders, users, products")
        conn.execute(old_ddl)
        conn.execute(_doc_sql_block("existing PostgreSQL source"))
        types = dict(
            conn.execute(
                "select table_name || '.' || column_name, data_type from information_schema.columns "
                "where column_name in ('user_id', 'product_id') and table_schema = current_schema()"
            ).fetchall()
        )
        assert set(types.values()) == {"text"} and len(types) == 4
        assert conn.execute("select product_id, user_id from order_lines join orders using (order_id)").fetchall() == [
            ("1017", "42")
        ]
        with pytest.raises(psycopg.errors.ForeignKeyViolation):  # the keys are back
            conn.execute("insert into order_lines values ('o-1', 2, 'no-such-product')")
        conn.execute("drop table order_lines, orders, users, products")
