"""Source mappings: the file format's rules, and a user's own PostgreSQL schema read by extract_dims and the API.

The PostgreSQL schema here is a stranger's: other table and column names, UUID and
hex ids, naive ``timestamp`` columns in a non-UTC zone, source status values the
project does not use, no quantity, currency or session columns. Expected values are
written out from the inserted rows (UTC = local + 3 h: America/Sao_Paulo has had no
daylight saving time since 2019), not computed by the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime
from decimal import Decimal

import httpx
import psycopg
import pytest

from beam_pipelines import extract_dims, lake
from beam_pipelines.io import source_mapping
from beam_pipelines.io.source_mapping import MappingError, SourceMapping, parse, quote_identifier

SKUS = [uuid.UUID(int=(i + 1) * 0x1F2E3D4C5B6A79881726354453627180) for i in range(7)]
CUSTOMERS = [f"{(i * 0x9E3779B97F4A7C15) & (2**64 - 1):016x}" for i in range(1, 6)]

MAPPING_TOML = """
timezone = "America/Sao_Paulo"

[statuses]
created = "placed"
approved = "paid"
invoiced = "paid"
processing = "paid"
shipped = "shipped"
delivered = "delivered"
canceled = "cancelled"
unavailable = "cancelled"

[products]
table = "shop.catalog items"

[products.columns]
product_id = "SKU"
product_name = "title"
category = "cat"
price = "list price"
updated_at = "modified"

[products.defaults]
category = "(none)"

[users]
table = "shop.customers"
columns = { user_id = "customer_ref", user_name = "full_name", country = "cc", updated_at = "changed" }
defaults = { email = "{user_id}@unknown.invalid", signup_date = "2018-01-01" }

[orders]
table = "shop.purchases"
defaults = { currency = "BRL" }

[orders.columns]
order_id = "ref"
user_id = "customer_ref"
status = "state"
order_ts = "placed_at"
updated_at = "changed_at"

[order_lines]
table = "shop.purchase_items"
columns = { order_id = "ref", line_number = "item_no", product_id = "SKU", unit_price = "price" }
defaults = { quantity = 1 }
"""

STATUSES = ["created", "approved", "invoiced", "processing", "shipped", "delivered", "canceled", "unavailable"]
PROJECT_STATUS = {
    "created": "placed",
    "approved": "paid",
    "invoiced": "paid",
    "processing": "paid",
    "shipped": "shipped",
    "delivered": "delivered",
    "canceled": "cancelled",
    "unavailable": "cancelled",
}


# ---------------------------------------------------------------------------- the format


def test_default_mapping_is_the_identity_onto_the_project_ddl():
    m = SourceMapping.default()
    assert m["products"].table == "products"
    assert m["orders"].columns == {c: c for c in m["orders"].entity.names}
    assert m["order_lines"].select_list() == '"order_id", "line_number", "product_id", "quantity", "unit_price"'
    assert m.status("paid") == "paid"


def test_identifiers_are_quoted_for_both_engines():
    assert quote_identifier('we"ird name') == '"we""ird name"'
    assert source_mapping.quote_table("shop.catalog items") == '"shop"."catalog items"'


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"timezon": "UTC"}, r"unknown key\(s\) timezon; allowed: timezone, statuses, products"),
        ({"products": {"colums": {}}}, r"unknown key\(s\) products.colums; allowed: table, columns, defaults"),
        (
            {"products": {"columns": {"sku": "x"}}},
            r"unknown column\(s\) products.columns.sku; products has: product_id",
        ),
        ({"products": {"defaults": {"product_id": "x"}}}, r"products.defaults.product_id: product_id is required"),
        ({"statuses": {"canceled": "canceled"}}, r"statuses.canceled = 'canceled' is not a project status"),
        ({"timezone": "Mars/Olympus"}, r"timezone = 'Mars/Olympus' is not a known IANA time zone"),
        ({"users": {"defaults": {"signup_date": "yesterday"}}}, r"users.defaults.signup_date: not a date"),
        ({"users": {"defaults": {"email": "{mail}@x"}}}, r"placeholder\(s\) \{mail\} are not users columns"),
        ({"orders": {"table": "a.b.c"}}, r"orders.table = 'a.b.c' is not a table name or schema.table"),
        ({"orders": {"columns": {"status": ""}}}, r"orders.columns.status must be a non-empty name"),
    ],
)
def test_bad_mapping_is_refused_with_one_line_naming_the_key(document, message):
    with pytest.raises(MappingError, match=message) as info:
        parse(document, "m.toml")
    assert "\n" not in str(info.value) and str(info.value).startswith("m.toml: ")


def test_mapping_files_in_toml_and_json_read_the_same(tmp_path):
    toml_path = tmp_path / "m.toml"
    toml_path.write_text(MAPPING_TOML)
    from_toml = source_mapping.load(toml_path)
    json_path = tmp_path / "m.json"
    json_path.write_text(json.dumps(from_toml.to_json()))
    assert source_mapping.load(json_path).to_json() == from_toml.to_json()
    broken = tmp_path / "broken.toml"
    broken.write_text("[products\n")
    with pytest.raises(MappingError, match=r"broken.toml is not valid TOML"):
        source_mapping.load(broken)


def test_rows_are_converted_defaulted_and_refused_per_column(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(MAPPING_TOML)
    m = source_mapping.load(path)
    row, errors, defaulted = m.row(
        "users", {"customer_ref": " ab12 ", "full_name": "Ana", "cc": "BR", "changed": "2021-03-01 10:00:00"}
    )
    assert errors == [] and defaulted == ["email", "signup_date"]
    assert row == {
        "user_id": "ab12",
        "user_name": "Ana",
        "email": "ab12@unknown.invalid",
        "signup_date": "2018-01-01",
        "country": "BR",
        "updated_at": "2021-03-01T13:00:00.000000Z",
    }
    _row, errors, _ = m.row(
        "orders", {"ref": "o1", "customer_ref": "", "state": "lost", "placed_at": "soon", "changed_at": "2021-03-01"}
    )
    assert [c for c, _ in errors] == ["user_id", "status", "order_ts"]
    assert "status 'lost' is not mapped: add it under [statuses]" in dict(errors)["status"]


def test_check_columns_names_every_missing_column_and_what_the_source_has():
    m = parse({"products": {"columns": {"product_id": "sku"}}}, "m.toml")
    with pytest.raises(MappingError) as info:
        m.check_columns("products", ["sku", "title"], "file p.csv")
    assert str(info.value) == (
        "m.toml: products: column(s) product_name, category, price, updated_at not found in file p.csv "
        "(it has: sku, title); map them under [products.columns] (or, for optional columns, give [products.defaults])"
    )


LINE_RULES = {
    "statuses": {"storniert": "cancelled"},
    "orders": {
        "columns": {"order_id": "Invoice", "user_id": "Customer", "order_ts": "Date", "updated_at": "Date"},
        "defaults": {"status": "delivered", "user_id": "guest-{order_id}", "currency": "EUR"},
        "status_rules": [
            {"column": "Cancelled at", "not_blank": True, "status": "storniert"},
            {"column": "Invoice", "prefix": "C", "status": "returned"},
            {"column": "Qty", "negative": True, "status": "returned"},
            {"column": "Channel", "equals": ["test", "staff"], "status": "cancelled"},
        ],
    },
}


@pytest.mark.parametrize(
    ("source", "status"),
    [
        ({"Invoice": "536365", "Qty": "6"}, "delivered"),  # no rule met: the default
        ({"Invoice": " C536379", "Qty": "-1"}, "returned"),  # prefix after trimming
        ({"Invoice": "536380", "Qty": "-2.0"}, "returned"),  # a negative number, any spelling
        ({"Invoice": "536381", "Qty": "x"}, "delivered"),  # not a number: not negative
        ({"Invoice": "C1", "Qty": "-1", "Cancelled at": "2021-01-01"}, "cancelled"),  # first rule met wins
        ({"Invoice": "536382", "Channel": "staff"}, "cancelled"),
        ({"Invoice": "536383", "Channel": "web"}, "delivered"),
    ],
)
def test_status_rules_are_tried_in_order_before_the_default(source, status):
    m = parse(LINE_RULES, "m.toml")
    row, errors, _ = m.row("orders", {"Customer": "17850.0", "Date": "2021-03-01 10:00:00", **source})
    assert errors == [] and row["status"] == status


def test_status_rules_win_over_a_mapped_status_column_and_its_unmapped_values():
    document = {**LINE_RULES, "orders": {**LINE_RULES["orders"], "defaults": {"currency": "EUR"}}}
    document["orders"]["columns"] = {**LINE_RULES["orders"]["columns"], "status": "State"}
    m = parse(document, "m.toml")
    base = {"Customer": "c", "Date": "2021-03-01 10:00:00"}
    assert m.row("orders", {**base, "Invoice": "C9", "State": "whatever"})[0]["status"] == "returned"
    assert m.row("orders", {**base, "Invoice": "9", "State": "storniert"})[0]["status"] == "cancelled"
    _row, errors, _ = m.row("orders", {**base, "Invoice": "9", "State": "whatever"})
    assert dict(errors)["status"].startswith("status 'whatever' is not mapped")
    assert parse(m.to_json(), "again").to_json() == m.to_json()  # rules survive the trip to the workers


def test_a_guest_order_gets_the_templated_user_id_and_a_bad_template_result_is_a_row_error():
    m = parse(LINE_RULES, "m.toml")
    row, errors, defaulted = m.row("orders", {"Invoice": "536366", "Customer": " ", "Date": "2021-03-01 10:00:00"})
    assert errors == [] and row["user_id"] == "guest-536366" and "user_id" in defaulted
    assert m.row("orders", {"Invoice": "536366", "Customer": "16033.0", "Date": "2021-03-01"})[0]["user_id"] == (
        "16033.0"  # ids stay text: a float-looking id is kept as written
    )
    long = parse({"orders": {"defaults": {"user_id": "{order_id}" * 2}}}, "m.toml")
    _row, errors, _ = long.row(
        "orders", {"order_id": "x" * 100, "status": "paid", "order_ts": "2021-01-01Z", "updated_at": "2021-01-01Z"}
    )
    assert dict(errors)["user_id"] == "default '{order_id}{order_id}' gives user_id longer than 128 characters"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"column": "a", "status": "paid"}, r"status_rules\[1\] needs exactly one condition of prefix, equals"),
        ({"column": "a", "prefix": "C", "negative": True, "status": "paid"}, r"needs exactly one condition"),
        ({"column": "a", "prefix": "C", "status": "gone"}, r"status_rules\[1\].status = 'gone' is not a project"),
        ({"column": "a", "prefix": "C"}, r"status_rules\[1\] needs a status"),
        ({"column": "a", "negative": "yes", "status": "paid"}, r"status_rules\[1\]: negative must be true"),
        ({"prefix": "C", "status": "paid"}, r"status_rules\[1\].column must be a non-empty name"),
        ({"column": "a", "prefix": "C", "status": "paid", "when": 1}, r"unknown key\(s\) when"),
    ],
)
def test_bad_status_rules_are_refused_at_load_in_one_line(rules, message):
    with pytest.raises(MappingError, match=message) as info:
        parse({"orders": {"status_rules": [rules]}}, "m.toml")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"users": {"defaults": {"country": "ZZZ"}}}, "m.toml: users.defaults.country: must be 2 characters, got"),
        ({"orders": {"defaults": {"currency": "EU"}}}, "m.toml: orders.defaults.currency: must be 3 characters"),
        ({"orders": {"defaults": {"status": "lost"}}}, "m.toml: orders.defaults.status = 'lost' is not a project"),
        ({"order_lines": {"defaults": {"quantity": 0}}}, "m.toml: order_lines.defaults.quantity: must be a non-zero"),
    ],
)
def test_defaults_are_checked_once_when_the_mapping_is_read(document, message):
    with pytest.raises(MappingError) as info:
        parse(document, "m.toml")
    assert str(info.value).startswith(message)


def test_a_credit_lines_negative_quantity_is_read_and_zero_is_refused():
    m = parse({"order_lines": {"columns": {"line_number": "line_number"}}}, "m.toml")
    base = {"order_id": "C1", "line_number": "1", "product_id": "p", "unit_price": "2.55"}
    assert m.row("order_lines", {**base, "quantity": "-6"})[0]["quantity"] == -6
    assert dict(m.row("order_lines", {**base, "quantity": "0"})[1])["quantity"].startswith("must be a non-zero")
    assert dict(m.row("order_lines", {**base, "line_number": "-1", "quantity": "1"})[1])["line_number"] == (
        "must be a positive integer, got -1"
    )


# ---------------------------------------------------------------------------- a user's PostgreSQL schema


@pytest.fixture(scope="module")
def user_db(postgres_url):
    """A database of our own holding a stranger's schema (names with spaces and capitals, on purpose)."""
    name = f"byod_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema shop")
        conn.execute(
            'create table shop."catalog items" ("SKU" uuid primary key, title text, cat text, '
            '"list price" numeric(10,2), modified timestamp without time zone)'
        )
        conn.execute(
            "create table shop.customers (customer_ref text primary key, full_name text, cc text, changed timestamp)"
        )
        conn.execute(
            "create table shop.purchases (ref text primary key, customer_ref text, state text, "
            "placed_at timestamp, changed_at timestamp)"
        )
        conn.execute('create table shop.purchase_items (ref text, item_no int, "SKU" uuid, price numeric(10,2))')
        for i, sku in enumerate(SKUS):
            conn.execute(
                'insert into shop."catalog items" values (%s, %s, %s, %s, %s)',
                (
                    sku,
                    f"item {i}",
                    None if i % 3 == 0 else f"cat{i % 2}",
                    Decimal(f"{i + 1}.5"),
                    datetime(2021, 5, 1, 9, i),
                ),
            )
        for i, ref in enumerate(CUSTOMERS):
            conn.execute(
                "insert into shop.customers values (%s, %s, %s, %s)",
                (ref, f"customer {i}", "BR", datetime(2021, 4, 1, 23, 30)),
            )
        for i, status in enumerate(STATUSES):
            ref = uuid.UUID(int=i + 0xABCDEF).hex
            placed = datetime(2021, 6, 1, 21, 10 + i)  # 21:10 local = 00:10 UTC the next day
            conn.execute(
                "insert into shop.purchases values (%s, %s, %s, %s, %s)",
                (ref, CUSTOMERS[i % len(CUSTOMERS)], status, placed, placed.replace(hour=22)),
            )
            for line in range(1, 1 + i % 3):  # the first order has no lines
                conn.execute(
                    "insert into shop.purchase_items values (%s, %s, %s, %s)",
                    (ref, line, SKUS[(i + line) % len(SKUS)], Decimal("10.00") * line),
                )
    yield url
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def mapping_file(tmp_path):
    path = tmp_path / "mapping.toml"
    path.write_text(MAPPING_TOML)
    return path


@pytest.mark.integration
def test_extract_dims_reads_a_users_schema_through_the_mapping(user_db, mapping_file, tmp_path):
    root = str(tmp_path / "lake")
    counters = extract_dims.run(
        [
            "--runner=FnApiRunner",
            f"--database_url={user_db}",
            f"--lake_root={root}",
            "--num_partitions=3",
            f"--source_mapping={mapping_file}",
        ]
    )
    assert counters["sql_rows_read"] == len(SKUS) + len(CUSTOMERS)
    products = {r["product_id"]: r for r in lake.read_latest_snapshot_rows(root, "products")}
    assert sorted(products) == sorted(str(s) for s in SKUS)
    assert products[str(SKUS[0])] == {
        "product_id": str(SKUS[0]),
        "product_name": "item 0",
        "category": "(none)",  # NULL in the source: the mapping's default
        "price": "1.50",
        "updated_at": "2021-05-01T12:00:00.000000Z",
    }
    assert products[str(SKUS[1])]["category"] == "cat1"
    users = {r["user_id"]: r for r in lake.read_latest_snapshot_rows(root, "users")}
    assert users[CUSTOMERS[0]] == {
        "user_id": CUSTOMERS[0],
        "user_name": "customer 0",
        "email": f"{CUSTOMERS[0]}@unknown.invalid",
        "signup_date": "2018-01-01",
        "country": "BR",
        "updated_at": "2021-04-02T02:30:00.000000Z",
    }


@pytest.mark.integration
def test_extract_dims_incremental_read_compares_naive_columns_in_the_sources_zone(user_db, mapping_file, tmp_path):
    root = str(tmp_path / "lake")
    base = [
        "--runner=FnApiRunner",
        f"--database_url={user_db}",
        f"--lake_root={root}",
        f"--source_mapping={mapping_file}",
    ]
    extract_dims.run([*base, "--tables=products", "--snapshot_ts=2021-06-01T00:00:00Z"])
    # modified = 09:00..09:06 local = 12:00..12:06 UTC: since 12:04 UTC keeps the last three.
    inc = extract_dims.run(
        [*base, "--tables=products", "--snapshot_ts=2021-06-02T00:00:00Z", "--updated_since=2021-05-01T12:04:00Z"]
    )
    assert inc["sql_rows_read"] == 3


@pytest.mark.integration
def test_extract_dims_refuses_a_mapping_the_live_table_does_not_fit(user_db, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(MAPPING_TOML.replace('category = "cat"', 'category = "kategorie"'))
    with pytest.raises(MappingError, match=r"products: column\(s\) category \(as 'kategorie'\) not found in table"):
        extract_dims.run(
            ["--runner=FnApiRunner", f"--database_url={user_db}", f"--lake_root={tmp_path}", f"--source_mapping={path}"]
        )


def _expected_api_orders() -> list[dict]:
    out = []
    for i, status in enumerate(STATUSES):
        ref = uuid.UUID(int=i + 0xABCDEF).hex
        lines = [
            {
                "line_number": line,
                "product_id": str(SKUS[(i + line) % len(SKUS)]),
                "quantity": 1,
                "unit_price": f"{10 * line}.00",
                "amount": f"{10 * line}.00",
            }
            for line in range(1, 1 + i % 3)
        ]
        out.append(
            {
                "order_id": ref,
                "user_id": CUSTOMERS[i % len(CUSTOMERS)],
                "session_id": None,
                "status": PROJECT_STATUS[status],
                "order_ts": f"2021-06-02T00:{10 + i:02d}:00.000000Z",
                "updated_at": f"2021-06-02T01:{10 + i:02d}:00.000000Z",
                "currency": "BRL",
                "total_amount": f"{sum(10 * n for n in range(1, 1 + i % 3))}.00",
                "lines": lines,
            }
        )
    return out


@pytest.mark.integration
def test_orders_api_serves_a_users_schema_through_the_mapping(user_db, mapping_file, orders_api_server):
    api = orders_api_server(user_db, mapping=str(mapping_file))
    got, params = (
        [],
        {"page_size": "3", "updated_since": "2021-06-02T01:00:00Z", "updated_before": "2021-06-03T00:00:00Z"},
    )
    with httpx.Client(base_url=api.base_url, headers=api.headers()) as client:
        while True:
            body = client.get("/v1/orders", params=params).raise_for_status().json()
            got.extend(body["orders"])
            if not body["next_page_token"]:
                break
            params["page_token"] = body["next_page_token"]
    assert got == _expected_api_orders()


@pytest.mark.integration
def test_orders_api_refuses_to_serve_unmapped_status_values(user_db, mapping_file, tmp_path):
    path = tmp_path / "partial.toml"
    path.write_text(MAPPING_TOML.replace('unavailable = "cancelled"\n', ""))
    proc = subprocess.run(
        [sys.executable, "-m", "publishers.orders_api", "serve", "--database-url", user_db, "--mapping", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "ORDERS_API_TOKEN": "t"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {path}: orders: status value(s) 'unavailable' in table 'shop.purchases' are not mapped; "
        "add them under [statuses] (targets: placed, paid, shipped, delivered, cancelled, returned)"
    ]
