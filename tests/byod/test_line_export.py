"""A line-level order export (one row per order line) imported with a mapping alone.

The export has the traits of a real shop's: invoice numbers, ``C``-prefixed credit notes
with negative quantities, float-looking customer ids (``17850.0``), guest lines without
a customer, naive local times in a zone with daylight saving time (Europe/Berlin), no
status column, products and customers repeated with changing attributes. The expected
rows are written out by hand (CET = UTC+1, CEST = UTC+2 from 2021-03-28 01:00 UTC).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from beam_pipelines.io import sql
from tests.fixtures.stack import own_postgres_database

MAPPING = """
timezone = "Europe/Berlin"

[orders]
columns = { order_id = "Invoice", user_id = "Customer ID", order_ts = "InvoiceDate", updated_at = "InvoiceDate" }
defaults = { status = "delivered", user_id = "guest-{order_id}", currency = "EUR" }

[[orders.status_rules]]
column = "Invoice"
prefix = "C"
status = "returned"

[order_lines]
columns = { order_id = "Invoice", product_id = "StockCode", quantity = "Quantity", unit_price = "Price" }

[products]
columns = { product_name = "Description", price = "Price" }
defaults = { category = "(uncategorised)" }

[users.defaults]
user_name = "customer {user_id}"
email = "{user_id}@unknown.invalid"
signup_date = "2021-01-01"
country = "DE"
"""

HEADER = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
EXPORT = HEADER + (
    "489434,85048,15CM CHRISTMAS GLASS BALL,12,2021-03-27 23:30:00,6.95,13085.0,Germany\n"
    "489434,79323P,PINK CHERRY LIGHTS,12,2021-03-27 23:30:00,6.75,13085.0,Germany\n"
    "489435,22350,CAT BOWL,12,2021-03-28 03:30:00,2.55,,Germany\n"
    "C489449,85048,15CM CHRISTMAS GLASS BALL (DAMAGED),-2,2021-03-28 10:00:00,6.95,13085.0,Germany\n"
    "489450,79323P,,1,2021-10-31 01:30:00,7.00,16033.0,Austria\n"
)


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "publishers.import_files", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def _files(tmp_path):
    (tmp_path / "m.toml").write_text(MAPPING)
    (tmp_path / "export.csv").write_text(EXPORT)
    return tmp_path / "m.toml", tmp_path / "export.csv"


def _rows(db_path, table, order_by):
    with sqlite3.connect(db_path) as conn:
        return conn.execute(f"select * from {table} order by {order_by}").fetchall()


def test_a_line_export_yields_orders_lines_products_and_users_with_a_mapping_alone(tmp_path):
    mapping, export = _files(tmp_path)
    db = tmp_path / "source.db"
    proc = _run("--database-url", f"sqlite:///{db}", "--mapping", mapping, "--line-export", export)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["loaded"] == {"products": 3, "users": 3, "orders": 4, "order_lines": 5}
    assert summary["line_exports"] == {
        str(export): {"lines": 5, "orders": 4, "credit_lines": 1, "guest_lines": 1, "guest_orders": 1,
                      "products": 3, "users": 3}
    }  # fmt: skip
    assert proc.stderr == f"warning: {export}: column(s) not imported: Country\n"
    # Header fields from each invoice's first line; no status column: the default, or the C rule.
    assert _rows(db, "orders", "order_id") == [
        ("489434", "13085.0", None, "delivered", "2021-03-27T22:30:00.000000Z", "2021-03-27T22:30:00.000000Z", "EUR"),
        ("489435", "guest-489435", None, "delivered", "2021-03-28T01:30:00.000000Z", "2021-03-28T01:30:00.000000Z",
         "EUR"),
        ("489450", "16033.0", None, "delivered", "2021-10-30T23:30:00.000000Z", "2021-10-30T23:30:00.000000Z", "EUR"),
        ("C489449", "13085.0", None, "returned", "2021-03-28T08:00:00.000000Z", "2021-03-28T08:00:00.000000Z",
         "EUR"),
    ]  # fmt: skip
    assert _rows(db, "order_lines", "order_id, line_number") == [
        ("489434", 1, "85048", 12, "6.95"),
        ("489434", 2, "79323P", 12, "6.75"),
        ("489435", 1, "22350", 12, "2.55"),
        ("489450", 1, "79323P", 1, "7.00"),
        ("C489449", 1, "85048", -2, "6.95"),  # the credit line keeps its sign
    ]
    # Products and users: the latest line wins; a blank description does not erase the name.
    assert _rows(db, "products", "product_id") == [
        ("22350", "CAT BOWL", "(uncategorised)", "2.55", "2021-03-28T01:30:00.000000Z"),
        ("79323P", "PINK CHERRY LIGHTS", "(uncategorised)", "7.00", "2021-10-30T23:30:00.000000Z"),
        ("85048", "15CM CHRISTMAS GLASS BALL (DAMAGED)", "(uncategorised)", "6.95", "2021-03-28T08:00:00.000000Z"),
    ]
    assert [(r[0], r[1], r[5]) for r in _rows(db, "users", "user_id")] == [
        ("13085.0", "customer 13085.0", "2021-03-28T08:00:00.000000Z"),
        ("16033.0", "customer 16033.0", "2021-10-30T23:30:00.000000Z"),
        ("guest-489435", "customer guest-489435", "2021-03-28T01:30:00.000000Z"),
    ]


def test_a_line_export_given_as_orders_says_to_use_line_export(tmp_path, sqlite_url):
    mapping, export = _files(tmp_path)
    proc = _run("--database-url", sqlite_url, "--mapping", mapping, "--orders", export)
    assert proc.returncode == 1
    assert f"error: {export}, row 2, order_id: duplicate key '489434' (first at row 1)" in proc.stderr
    assert (
        f"hint: {export} repeats 1 order_id value(s); if it has one row per order line, import it with "
        "--line-export (orders, lines, products and users are derived)"
    ) in proc.stderr.splitlines()


def test_a_row_error_of_a_line_export_names_the_section_and_loads_nothing(tmp_path, sqlite_url):
    mapping, export = _files(tmp_path)
    export.write_text(EXPORT + "489451,85048,X,1,31/10/2021 02:00,6.95,13085.0,Germany\n")
    proc = _run("--database-url", sqlite_url, "--mapping", mapping, "--line-export", export)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"error: {export}, row 6, orders.order_ts: not an ISO-8601 timestamp: '31/10/2021 02:00'",
        f"error: {export}, row 6, orders.updated_at: not an ISO-8601 timestamp: '31/10/2021 02:00'",
        "import failed: 2 error(s); nothing was loaded",
    ]


def test_a_source_created_before_credit_lines_is_refused_with_the_migration(tmp_path, old_source):
    mapping, export = _files(tmp_path)
    url = old_source("SQLite")
    proc = _run("--database-url", url, "--mapping", mapping, "--line-export", export)
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: the source's order_lines table refuses negative quantities (check quantity > 0, created by an older "
        "version): apply the 'Credit lines' migration of docs/migrations.md, or import into a new database\n"
    )
    assert _rows(tmp_path / "old.db", "orders", "order_id") == []


def test_serve_with_the_mapping_import_files_used_says_to_drop_it(tmp_path):
    mapping, export = _files(tmp_path)
    url = f"sqlite:///{tmp_path / 'source.db'}"
    assert _run("--database-url", url, "--mapping", mapping, "--line-export", export).returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "publishers.orders_api", "serve", "--database-url", url, "--mapping", str(mapping)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ORDERS_API_TOKEN": "t" * 24},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {mapping}: orders: column(s) order_id (as 'Invoice'),")
    assert proc.stderr.endswith(
        "These tables are the project's own (publishers.import_files wrote them, already converted through the "
        "mapping): serve them without --mapping\n"
    )
    assert proc.stderr.count("\n") == 1


def _migration(engine: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "migrations.md").read_text()
    section = text[text.index("## Credit lines") :]
    rest = section[section.index(engine) :]
    return rest[rest.index("```sql\n") + 7 : rest.index("\n```", rest.index("```sql\n"))]


@pytest.fixture
def old_source(request, tmp_path):
    """A source created with the DDL of before credit lines, on SQLite or PostgreSQL."""
    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)

    def make(engine: str) -> str:
        if engine == "SQLite":
            url = f"sqlite:///{tmp_path / 'old.db'}"
        else:
            url = stack.enter_context(own_postgres_database(request.getfixturevalue("postgres_url"), "creditmig"))
        with sql.connect(url) as conn:
            for statement in sql.schema_statements(conn.dialect):
                conn.execute(statement.replace("check (quantity <> 0)", "check (quantity > 0)"))
        return url

    return make


@pytest.mark.parametrize("engine", ["SQLite", "PostgreSQL"])
def test_the_documented_credit_lines_migration_lets_an_older_source_take_credit_notes(tmp_path, engine, old_source):
    mapping, export = _files(tmp_path)
    url = old_source(engine)
    # Rows from before the migration must survive it.
    assert _run("--database-url", url, "--mapping", mapping, "--line-export", _without_credit(export)).returncode == 0
    if engine == "SQLite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.executescript(_migration("SQLite"))
    else:
        with sql.connect(url) as conn:
            conn.execute(_migration("PostgreSQL"))
    proc = _run("--database-url", url, "--mapping", mapping, "--line-export", export)
    assert proc.returncode == 0, proc.stderr
    with sql.connect(url) as conn:
        assert conn.query("select order_id, quantity from order_lines where quantity < 0") == [("C489449", -2)]
        assert conn.scalar("select count(*) from order_lines") == 5
        with pytest.raises(Exception, match=r"(?i)check"):  # zero is still refused
            conn.execute("insert into order_lines values ('489434', 9, '85048', 0, '1.00')")


def _without_credit(export: Path) -> Path:
    path = export.with_name("no_credit.csv")
    path.write_text("".join(line for line in export.read_text().splitlines(keepends=True) if ",-" not in line))
    return path
