"""publishers.import_files: a user's files into the SQL source, all or nothing, every bad value reported.

Files are written here in the shapes real exports have (hex ids, naive local
timestamps, eight source statuses, blanks where a catalog has gaps); expected rows are
written out by hand from them.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_pipelines.io import sql
from publishers import import_files

MAPPING = """
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
columns = { product_id = "pid", category = "product_category_name", price = "list_price" }

[products.defaults]
product_name = "{category} {product_id}"
category = "(uncategorised)"
updated_at = "2018-01-01T00:00:00Z"

[users]
columns = { user_id = "customer_id", country = "customer_state" }

[users.defaults]
user_name = "customer {user_id}"
email = "{user_id}@unknown.invalid"
signup_date = "2018-01-01"
updated_at = "2018-01-01T00:00:00Z"

[orders]
defaults = { currency = "BRL" }

[orders.columns]
order_id = "order_id"
user_id = "customer_id"
status = "order_status"
order_ts = "order_purchase_timestamp"
updated_at = "order_purchase_timestamp"

[order_lines]
columns = { line_number = "order_item_id", unit_price = "price" }
defaults = { quantity = 1 }

[clickstream]
defaults = { }
"""


def _csv(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def files(tmp_path):
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING)
    products = _csv(
        tmp_path / "products.csv",
        [
            {"pid": "a1b2c3", "product_category_name": "perfumaria", "list_price": "10.5"},
            {"pid": "d4e5f6", "product_category_name": "", "list_price": "3"},
        ],
    )
    users = _csv(
        tmp_path / "customers.csv",
        [{"customer_id": "9f86d081", "customer_state": "SP"}, {"customer_id": "0b14ff", "customer_state": "RJ"}],
    )
    orders = _csv(
        tmp_path / "orders.csv",
        [
            {"order_id": "e481f51c", "customer_id": "9f86d081", "order_status": "delivered",
             "order_purchase_timestamp": "2017-10-02 10:56:33", "freight": "8.72"},
            {"order_id": "53cdb2fc", "customer_id": "0b14ff", "order_status": "unavailable",
             "order_purchase_timestamp": "2018-07-24 20:41:37", "freight": "0"},
        ],
    )  # fmt: skip
    lines = _csv(
        tmp_path / "items.csv",
        [{"order_id": "e481f51c", "order_item_id": "1", "product_id": "a1b2c3", "price": "29.99"}],
    )
    return {"mapping": mapping, "products": products, "users": users, "orders": orders, "order_lines": lines}


def _run(args):
    return subprocess.run(
        [sys.executable, "-m", "publishers.import_files", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_import_loads_converted_rows_and_reports_defaults_and_orders_without_lines(files, sqlite_url):
    proc = _run(
        [
            "--database-url", sqlite_url, "--mapping", files["mapping"], "--timezone", "America/Sao_Paulo",
            "--products", files["products"], "--users", files["users"], "--orders", files["orders"],
            "--order-lines", files["order_lines"],
        ]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["loaded"] == {"products": 2, "users": 2, "orders": 2, "order_lines": 1}
    assert summary["defaults_used"] == {
        "order_lines.quantity": 1,
        "orders.currency": 2,
        "products.category": 1,
        "products.product_name": 2,
        "products.updated_at": 2,
        "users.email": 2,
        "users.signup_date": 2,
        "users.updated_at": 2,
        "users.user_name": 2,
    }
    assert summary["orders_without_lines"] == 1 and summary["orders_without_lines_sample"] == ["53cdb2fc"]
    assert proc.stderr.strip() == f"warning: {files['orders']}: column(s) not imported: freight"
    with sql.connect(sqlite_url) as db:
        assert db.query_dicts("select * from orders order by order_id") == [
            {"order_id": "53cdb2fc", "user_id": "0b14ff", "session_id": None, "status": "cancelled",
             "order_ts": "2018-07-24T23:41:37.000000Z", "updated_at": "2018-07-24T23:41:37.000000Z", "currency": "BRL"},
            {"order_id": "e481f51c", "user_id": "9f86d081", "session_id": None, "status": "delivered",
             "order_ts": "2017-10-02T13:56:33.000000Z", "updated_at": "2017-10-02T13:56:33.000000Z", "currency": "BRL"},
        ]  # fmt: skip
        assert db.query("select product_id, product_name, category, price from products order by 1") == [
            ("a1b2c3", "perfumaria a1b2c3", "perfumaria", "10.50"),
            ("d4e5f6", "(uncategorised) d4e5f6", "(uncategorised)", "3.00"),
        ]
        assert db.query("select user_id, email, country from users order by 1") == [
            ("0b14ff", "0b14ff@unknown.invalid", "RJ"),
            ("9f86d081", "9f86d081@unknown.invalid", "SP"),
        ]
        assert db.query("select * from order_lines") == [("e481f51c", 1, "a1b2c3", 1, "29.99")]


def test_any_bad_row_loads_nothing_and_every_error_names_file_row_column(files, sqlite_url, tmp_path):
    bad_orders = _csv(
        tmp_path / "bad_orders.csv",
        [
            {"order_id": "o1", "customer_id": "9f86d081", "order_status": "created",
             "order_purchase_timestamp": "2017-10-02 10:56:33"},
            {"order_id": "o2", "customer_id": "nobody", "order_status": "lost",
             "order_purchase_timestamp": "2017-10-02 10:56:33"},
            {"order_id": "o3", "customer_id": "9f86d081", "order_status": "created",
             "order_purchase_timestamp": "02/10/2017"},
            {"order_id": "o1", "customer_id": "9f86d081", "order_status": "created",
             "order_purchase_timestamp": "2017-10-02 11:00:00"},
            {"order_id": "o5", "customer_id": "nobody", "order_status": "created",
             "order_purchase_timestamp": "2017-10-02 11:00:00"},
        ],
    )  # fmt: skip
    report = tmp_path / "errors.csv"
    proc = _run(
        [
            "--database-url", sqlite_url, "--mapping", files["mapping"], "--products", files["products"],
            "--users", files["users"], "--orders", bad_orders, "--error-report", report,
        ]
    )  # fmt: skip
    assert proc.returncode == 1
    with open(report, newline="") as fh:
        rows = [(r["file"].rsplit("/", 1)[-1], int(r["row"]), r["column"], r["reason"]) for r in csv.DictReader(fh)]
    assert [(f, n, c) for f, n, c, _ in rows] == [
        ("bad_orders.csv", 2, "status"),
        ("bad_orders.csv", 3, "order_ts"),
        ("bad_orders.csv", 3, "updated_at"),
        ("bad_orders.csv", 4, "order_id"),
        ("bad_orders.csv", 5, "user_id"),
    ]
    assert rows[0][3].startswith("status 'lost' is not mapped: add it under [statuses]")
    assert rows[1][3] == "not an ISO-8601 timestamp: '02/10/2017'"
    assert rows[3][3] == "duplicate key 'o1' (first at row 1)"
    assert rows[4][3] == "unknown user 'nobody'"
    assert proc.stderr.splitlines()[-1] == f"import failed: 5 error(s), all in {report}; nothing was loaded"
    with sql.connect(sqlite_url) as db:
        assert sql.table_counts(db) == {"products": 0, "users": 0, "orders": 0, "order_lines": 0}


def test_references_to_unknown_users_and_products_are_errors(files, sqlite_url, tmp_path):
    lines = _csv(
        tmp_path / "lines.csv", [{"order_id": "e481f51c", "order_item_id": "1", "product_id": "zz", "price": "1"}]
    )
    proc = _run(
        [
            "--database-url", sqlite_url, "--mapping", files["mapping"], "--users", files["users"],
            "--orders", files["orders"], "--order-lines", lines,
        ]
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"error: {lines}, row 1, product_id: unknown product 'zz'" in proc.stderr.splitlines()


def test_a_missing_column_is_refused_in_one_line_before_reading_rows(files, sqlite_url, tmp_path):
    users = _csv(tmp_path / "u.csv", [{"customer_id": "x"}])
    proc = _run(["--database-url", sqlite_url, "--mapping", files["mapping"], "--users", users])
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: {files['mapping']}: users: column(s) country (as 'customer_state') not found in file {users} "
        "(it has: customer_id); map them under [users.columns] (or, for optional columns, give [users.defaults])"
    )


def test_clickstream_yields_products_and_users_and_parquet_reads_like_csv(tmp_path, sqlite_url):
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        '[products]\ndefaults = { product_name = "{category} {product_id}", category = "(none)" }\n'
        '[users]\ndefaults = { user_name = "visitor {user_id}", email = "{user_id}@unknown.invalid", '
        'signup_date = "2019-10-01", country = "ZZ" }\n'
    )
    events = pa.table(
        {
            "event_time": ["2019-10-01 00:00:00 UTC", "2019-10-01 00:05:00 UTC", "2019-10-01 00:07:00 UTC"],
            "event_type": ["view", "view", "cart"],
            "product_id": [44600062, 44600062, 3900821],
            "category_id": [2103807459595387724, 2103807459595387724, 2053013552326770905],
            "category_code": [None, "appliances.environment.water_heater", ""],
            "brand": ["shiseido", "shiseido", "aqua"],
            "price": [35.79, 33.2, 33.20],
            "user_id": [541312140, 541312140, 554748717],
            "user_session": ["72d76fde", "72d76fde", "9333dfbd"],
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(events, path)
    assert import_files.main(["--database-url", sqlite_url, "--mapping", str(mapping), "--clickstream", str(path)]) == 0
    with sql.connect(sqlite_url) as db:
        assert db.query("select product_id, product_name, category, price, updated_at from products order by 1") == [
            ("3900821", "aqua", "(none)", "33.20", "2019-10-01T00:07:00.000000Z"),
            ("44600062", "shiseido", "appliances.environment.water_heater", "33.20", "2019-10-01T00:05:00.000000Z"),
        ]
        assert db.query("select user_id, user_name, country, updated_at from users order by 1") == [
            ("541312140", "visitor 541312140", "ZZ", "2019-10-01T00:05:00.000000Z"),
            ("554748717", "visitor 554748717", "ZZ", "2019-10-01T00:07:00.000000Z"),
        ]


def test_help_names_every_file_kind_and_option():
    text = import_files.build_parser().format_help()
    for flag in ("--products", "--users", "--orders", "--order-lines", "--clickstream", "--timezone", "--mapping",
                 "--error-report", "--format"):  # fmt: skip
        assert flag in text


# ---------------------------------------------------------------------------- replay keeps what it is given

CLICKSTREAM = Path(__file__).parent.parent / "publishers" / "data" / "clickstream.csv"
INVALID_WARNING = "warning: 1 of 6 rows are invalid (16.7%): 1 validate: missing price"


def _replay(*args):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "publishers.simulator",
            "replay",
            "--file",
            str(CLICKSTREAM),
            "--quiet",
            "--max-invalid-share",
            "0.2",  # the sample's one row without a price is 1 of 6
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_retimed_runs_get_fresh_ids_and_unmapped_columns_are_named(tmp_path):
    runs = []
    for run_id in ("run1", "run2"):
        out = tmp_path / f"{run_id}.jsonl"
        proc = _replay("--speed", "0", "--retime", "--run-id", run_id, "--output-jsonl", out)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["run_id"] == run_id
        assert proc.stderr.splitlines() == [
            INVALID_WARNING,
            "warning: column(s) not replayed: category_id, category_code, brand "
            "(product and user columns reach the dimensions with --database-url)",
        ]
        runs.append([json.loads(line) for line in out.read_text().splitlines()])
    first, second = runs
    assert not {r["event_id"] for r in first} & {r["event_id"] for r in second}
    assert {r["session_id"] for r in first} == {"72d76fde-8bb3-4e00-8c23-a032dfed738c-run1"} | {
        r["session_id"] for r in first if not r["session_id"].startswith("72d76fde")
    }
    assert all(r["session_id"].endswith("-run2") for r in second)
    orders = [r for r in second if r["event_name"] == "order"]
    assert orders[0]["event_id"] == f"{orders[0]['order_id']}:1"


def test_replay_into_the_lake_writes_one_backfill_file_per_hour_and_imports_dimensions(tmp_path, sqlite_url):
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        '[products]\ndefaults = { product_name = "{product_id}", category = "(none)", price = "0.00" }\n'
        '[users]\ndefaults = { user_name = "visitor {user_id}", email = "{user_id}@unknown.invalid", '
        'signup_date = "2019-10-01", country = "ZZ" }\n'
    )
    root = tmp_path / "lake"
    proc = _replay(
        "--speed", "0", "--lake-root", root, "--database-url", sqlite_url, "--source-mapping", mapping
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["lake_partitions"] == {"dt=2019-10-01/hour=00": 6}
    assert summary["dimensions_imported"]["products"] == 6
    # category_code and brand went to the product dimension; category_id has no place in either.
    assert proc.stderr.splitlines() == [INVALID_WARNING, "warning: column(s) not replayed: category_id"]
    files = sorted(root.glob("raw/events/dt=*/hour=*/*.jsonl"))
    assert [f.relative_to(root).as_posix() for f in files] == [
        f"raw/events/dt=2019-10-01/hour=00/replay_{summary['run_id']}.jsonl"
    ]
    with sql.connect(sqlite_url) as db:
        assert db.query("select category from products where product_id = '3900821'") == [
            ("appliances.environment.water_heater",)
        ]
