"""The SQL connection layer and the seeded catalog on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from beam_pipelines.io import sql
from publishers import catalog, catalog_rows

START = datetime(2025, 6, 1, 0, tzinfo=UTC)
END = datetime(2025, 6, 1, 6, tzinfo=UTC)


def _dump(url: str) -> dict[str, list[dict]]:
    keys = {"products": "product_id", "users": "user_id", "orders": "order_id", "order_lines": "order_id, line_number"}
    with sql.connect(url) as db:
        return {
            t: [sql.jsonable(r) for r in db.query_dicts(f"select * from {t} order by {k}")] for t, k in keys.items()
        }


@pytest.mark.parametrize(
    "url",
    ["mysql://root@localhost/db", "sqlite://relative.db", "", "postgresql+psycopg2//x", "data/source.db"],
)
def test_bad_url_names_the_expected_formats(url):
    with pytest.raises(sql.DatabaseURLError) as err:
        sql.connect(url)
    assert "sqlite:///" in str(err.value) and "postgresql://user" in str(err.value)


def test_url_password_is_redacted_in_errors():
    with pytest.raises(sql.DatabaseURLError) as err:
        sql.parse_url("mysql://app:s3cret@db/x")
    assert "s3cret" not in str(err.value) and "app:***@db" in str(err.value)


def test_missing_sqlite_folder_says_which():
    with pytest.raises(ConnectionError, match="does not exist"):
        sql.connect("sqlite:////no/such/folder/source.db")


def test_placeholders_rewritten_for_psycopg_outside_literals():
    assert sql._to_pyformat("select * from t where a = ? and b like '%x?' and c = :name and d::text = '%'") == (
        "select * from t where a = %s and b like '%x?' and c = %(name)s and d::text = '%'"
    )
    assert sql._to_pyformat("select 5 % 2, :a") == "select 5 %% 2, %(a)s"


def test_sqlite_parameters_and_jsonable_values(sqlite_url):
    with sql.connect(sqlite_url) as db:
        sql.create_schema(db)
        ts = datetime(2025, 6, 1, 10, 0, 0, 250000, tzinfo=UTC)
        db.execute("insert into products values (?, ?, ?, ?, ?)", (1, "Lamp", "home", Decimal("20.00"), ts))
        row = db.query_dicts("select * from products where updated_at >= :since", {"since": ts})[0]
        assert sql.jsonable(row) == {
            "product_id": "1",
            "product_name": "Lamp",
            "category": "home",
            "price": "20.00",
            "updated_at": "2025-06-01T10:00:00.250000Z",
        }
        assert db.query("select product_id from products where updated_at > ?", (ts,)) == []
        with pytest.raises(ValueError, match="timezone-aware"):
            db.query("select 1 where ? is not null", (datetime(2025, 6, 1),))
        # Foreign keys are enforced on SQLite too.
        with pytest.raises(Exception, match="FOREIGN KEY"):
            db.execute("insert into order_lines values ('o-x', 1, 1, 1, '1.00')")


def test_create_schema_is_idempotent_and_drop_existing_empties(sqlite_url):
    with sql.connect(sqlite_url) as db:
        catalog.load(db, seed=1, n_products=10, n_users=5, n_orders=3, start=START, end=END)
        sql.create_schema(db)
        assert sql.table_counts(db)["products"] == 10
        sql.create_schema(db, drop_existing=True)
        assert sql.table_counts(db) == {"products": 0, "users": 0, "orders": 0, "order_lines": 0}


def test_catalog_is_reproducible_and_seed_dependent(sqlite_url, tmp_path):
    other = f"sqlite:///{tmp_path / 'other.db'}"
    third = f"sqlite:///{tmp_path / 'third.db'}"
    for url, seed in ((sqlite_url, 5), (other, 5), (third, 6)):
        with sql.connect(url) as db:
            summary = catalog.load(db, seed=seed, n_products=200, n_users=100, n_orders=50, start=START, end=END)
            assert (summary["products"], summary["users"], summary["orders"]) == (200, 100, 50)
    first = _dump(sqlite_url)
    assert first == _dump(other)
    assert first["products"] != _dump(third)["products"]
    product = first["products"][0]
    assert product["category"] in catalog_rows.CATEGORIES and Decimal(product["price"]) > 0
    user = first["users"][0]
    assert len(user["country"]) == 2 and user["email"].endswith(catalog_rows.EMAIL_DOMAINS) and user["user_id"] == "1"
    assert len({u["email"] for u in first["users"]}) == 100
    assert all(f"{START:%Y-%m-%d}T00:00:00" <= o["order_ts"] < f"{END:%Y-%m-%d}T06:00:00" for o in first["orders"])


@pytest.mark.integration
def test_same_seed_gives_identical_content_in_sqlite_and_postgresql(sqlite_url, postgres_url):
    for url in (sqlite_url, postgres_url):
        with sql.connect(url) as db:
            catalog.load(db, seed=9, n_products=500, n_users=300, n_orders=200, start=START, end=END, replace=True)
    lite, pg = _dump(sqlite_url), _dump(postgres_url)
    assert [len(lite[t]) for t in sql.TABLES] == [500, 300, 200, len(lite["order_lines"])]
    assert len(lite["order_lines"]) >= 200
    for table in sql.TABLES:
        assert lite[table] == pg[table], table


@pytest.mark.integration
def test_postgresql_schema_has_keys_and_updated_at_indexes(postgres_url):
    with sql.connect(postgres_url) as db:
        sql.create_schema(db, drop_existing=True)
        indexes = {r[0] for r in db.query("select indexname from pg_indexes where schemaname = 'public'")}
        assert {"products_updated_at_idx", "users_updated_at_idx", "orders_updated_at_idx"} <= indexes
        assert {"products_pkey", "users_pkey", "orders_pkey", "order_lines_pkey", "users_email_key"} <= indexes
        fks = db.query(
            "select conrelid::regclass::text, confrelid::regclass::text from pg_constraint where contype = 'f' "
            "order by 1, 2"
        )
        assert fks == [("order_lines", "orders"), ("order_lines", "products"), ("orders", "users")]


def test_load_refuses_to_mix_with_existing_data(sqlite_url, capsys):
    args = [
        "load",
        "--database-url",
        sqlite_url,
        "--products",
        "5",
        "--users",
        "5",
        "--seed",
        "1",
        "--start",
        "2025-06-01T00:00:00Z",
        "--end",
        "2025-06-01T01:00:00Z",
    ]
    assert catalog.main(args) == 0
    assert catalog.main(args) == 2
    assert "pass --replace" in capsys.readouterr().err
    assert catalog.main([*args, "--replace", "--orders", "4"]) == 0
    with sql.connect(sqlite_url) as db:
        assert sql.table_counts(db)["orders"] == 4
