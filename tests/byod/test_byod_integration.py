"""Bring your own data end to end: files shaped like two public data sets -> import -> jobs -> BigQuery.

An orders data set (hex ids, naive timestamps in America/Sao_Paulo, eight source
statuses, orders without items, products with empty categories) and a clickstream
(``event_time, event_type, product_id, category_id, category_code, brand, price,
user_id, user_session``) are generated here, imported into PostgreSQL through a
mapping, served by the real orders API, extracted by ``extract_orders`` /
``extract_dims``, replayed into the lake and unified by ``hourly`` on the BigQuery
emulator. The expected rows and dead letters are computed from the generated data
alone (UTC = local + 3 h: the zone has had no daylight saving time since 2019).
"""

from __future__ import annotations

import csv
import hashlib
import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from beam_pipelines import extract_dims, extract_orders, hourly
from beam_pipelines.events import format_ts
from publishers import import_files
from tests.byod.test_import_files import MAPPING
from tests.fixtures.jobs import hourly_job_args
from tests.fixtures.stack import own_dataset, own_postgres_database

pytestmark = pytest.mark.integration

START = datetime(2021, 6, 1, 10, tzinfo=UTC)
END = datetime(2021, 6, 1, 12, tzinfo=UTC)
LOCAL = timedelta(hours=-3)
STATUSES = ["created", "approved", "invoiced", "processing", "shipped", "delivered", "canceled", "unavailable"]
PROJECT_STATUS = {"created": "placed", "approved": "paid", "invoiced": "paid", "processing": "paid",
                  "shipped": "shipped", "delivered": "delivered", "canceled": "cancelled",
                  "unavailable": "cancelled"}  # fmt: skip


def _hex(kind: str, i: int) -> str:
    return hashlib.md5(f"{kind}{i}".encode()).hexdigest()  # noqa: S324 - ids, not security


def _write(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = random.Random(13)
    folder = tmp_path_factory.mktemp("byod-files")
    products = [
        {"pid": _hex("p", i), "product_category_name": "" if i % 5 == 0 else rng.choice(["perfumaria", "esporte"]),
         "list_price": f"{rng.randint(100, 9999) / 100:.2f}"}
        for i in range(30)
    ]  # fmt: skip
    customers = [{"customer_id": _hex("c", i), "customer_state": rng.choice(["SP", "RJ", "MG"])} for i in range(20)]
    orders, items = [], []
    for i in range(40):
        local = START + LOCAL + timedelta(seconds=rng.randint(0, 7199))
        orders.append(
            {"order_id": _hex("o", i), "customer_id": rng.choice(customers)["customer_id"],
             "order_status": STATUSES[i % 8], "order_purchase_timestamp": local.strftime("%Y-%m-%d %H:%M:%S")}
        )  # fmt: skip
        for n in range(1, 1 + (0 if i % 9 == 4 else rng.randint(1, 3))):
            p = rng.choice(products)
            items.append({"order_id": orders[-1]["order_id"], "order_item_id": str(n), "product_id": p["pid"],
                          "price": p["list_price"]})  # fmt: skip
    clicks = []
    sessions = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(6)]
    for i in range(25):
        ts = START + timedelta(seconds=rng.randint(0, 7199))
        clicks.append(
            {"event_time": ts.strftime("%Y-%m-%d %H:%M:%S UTC"), "event_type": rng.choice(["view", "view", "cart"]),
             "product_id": str(1000 + i % 7), "category_id": "2053013552326770905",
             "category_code": "" if i % 7 == 3 else f"electronics.kind{i % 7}", "brand": f"brand{i % 7}",
             "price": f"{10 + i % 7}.50", "user_id": str(500 + i % 4), "user_session": sessions[i % 6]}
        )  # fmt: skip
    mapping = folder / "mapping.toml"
    # Users derived from the clickstream have no state column: the mapping gives them one.
    mapping.write_text(MAPPING.replace('signup_date = "2018-01-01"\n', 'signup_date = "2018-01-01"\ncountry = "ZZ"\n'))
    return {
        "products": products, "customers": customers, "orders": orders, "items": items, "clicks": clicks,
        "files": {"products": _write(folder / "products.csv", products),
                  "users": _write(folder / "customers.csv", customers),
                  "orders": _write(folder / "orders.csv", orders),
                  "order_lines": _write(folder / "items.csv", items),
                  "clickstream": _write(folder / "clicks.csv", clicks)},
        "mapping": mapping,
    }  # fmt: skip


@pytest.fixture(scope="module")
def source_url(postgres_url):
    with own_postgres_database(postgres_url, "byod") as url:
        yield url


@pytest.fixture(scope="module")
def dataset(bigquery_emulator, beam_bq_emulator):
    with own_dataset(bigquery_emulator, "byod") as made:
        yield made


@pytest.fixture(scope="module")
def runs(data, source_url, dataset, orders_api_server, tmp_path_factory):
    client, project, ds = dataset
    files = data["files"]
    argv = ["--database-url", source_url, "--mapping", str(data["mapping"]), "--timezone", "America/Sao_Paulo"]
    for entity, path in files.items():
        argv += [f"--{entity.replace('_', '-')}", str(path)]
    assert import_files.main(argv) == 0
    # Clickstream users get the [users] defaults; their events carry no category in the contract.
    api = orders_api_server(source_url)
    root = str(tmp_path_factory.mktemp("lake"))
    mp = pytest.MonkeyPatch()
    mp.setenv("BYOD_TOKEN", api.token)
    extract = extract_orders.run(
        ["--runner=FnApiRunner", f"--api_base_url={api.base_url}", "--api_token_env=BYOD_TOKEN", f"--lake_root={root}",
         f"--window_start={format_ts(START)}", f"--window_end={format_ts(END)}", "--page_size=7"]
    )  # fmt: skip
    mp.undo()
    dims = extract_dims.run(["--runner=FnApiRunner", f"--database_url={source_url}", f"--lake_root={root}"])
    replay = subprocess.run(
        [sys.executable, "-m", "publishers.simulator", "replay", "--file", str(files["clickstream"]), "--speed", "0",
         "--lake-root", root, "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    run = hourly.run(hourly_job_args(project, ds, root, START, END, "--run_id=byod1"))
    return {"extract": extract, "dims": dims, "hourly": run, "client": client, "table": f"{project}.{ds}"}


def _query(runs, sql):
    return [tuple(r.values()) for r in runs["client"].query(sql.format(t=runs["table"])).result()]


def test_api_orders_become_one_row_per_line_with_mapped_names_and_utc_times(data, runs):
    products = {p["pid"]: p for p in data["products"]}
    customers = {c["customer_id"] for c in data["customers"]}
    orders = {o["order_id"]: o for o in data["orders"]}
    expected = set()
    for item in data["items"]:
        order, product = orders[item["order_id"]], products[item["product_id"]]
        ts = datetime.fromisoformat(order["order_purchase_timestamp"]).replace(tzinfo=UTC) - LOCAL
        category = product["product_category_name"] or "(uncategorised)"
        expected.add(
            (f"{item['order_id']}:{item['order_item_id']}", "order", f"{float(item['price']):.2f}",
             item["product_id"], f"{category} {item['product_id']}", category, order["customer_id"],
             f"customer {order['customer_id']}", format_ts(ts))
        )  # fmt: skip
    assert all(o["customer_id"] in customers for o in data["orders"])
    actual = _query(
        runs,
        "select event_id, event_name, format('%.2f', cast(price as float64)), product_id, product_name, category, "
        "user_id, user_name, format_timestamp('%Y-%m-%dT%H:%M:%E6SZ', event_ts) from `{t}.user_behavior` "
        "where source = 'api'",
    )
    assert set(actual) == expected and len(actual) == len(expected)
    statuses = dict(_query(runs, "select order_id, status from `{t}.orders`"))
    # Every order reaches the orders table, with or without lines.
    assert statuses == {k: PROJECT_STATUS[o["order_status"]] for k, o in orders.items()}


def test_orders_without_items_are_dead_letters_naming_the_order(data, runs):
    with_lines = {i["order_id"] for i in data["items"]}
    missing = sorted(o["order_id"] for o in data["orders"] if o["order_id"] not in with_lines)
    assert missing
    errors = sorted(e for (e,) in _query(runs, "select error from `{t}.dead_letter` where stage = 'explode'"))
    assert errors == sorted(f"order {oid} has no lines" for oid in missing)


def test_replayed_clickstream_rows_are_enriched_from_the_clickstreams_own_product_columns(data, runs):
    expected = set()
    names = {"view": "view", "cart": "add_to_cart"}
    for c in data["clicks"]:
        latest = [x for x in data["clicks"] if x["product_id"] == c["product_id"] and x["category_code"]]
        category = max(latest, key=lambda x: x["event_time"])["category_code"] if latest else "(uncategorised)"
        ts = datetime.strptime(c["event_time"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
        expected.add((names[c["event_type"]], format_ts(ts), c["product_id"], f"brand{int(c['product_id']) - 1000}",
                      category, c["user_id"], f"customer {c['user_id']}", c["user_session"]))  # fmt: skip
    actual = _query(
        runs,
        "select event_name, format_timestamp('%Y-%m-%dT%H:%M:%E6SZ', event_ts), product_id, product_name, category, "
        "user_id, user_name, session_id from `{t}.user_behavior` where source = 'stream'",
    )
    assert sorted(actual) == sorted(expected)


def test_analytics_over_the_imported_data_match_a_computation_from_the_files(data, runs):
    """Revenue, orders, cancellations and visitors of the day, from the files alone."""
    from decimal import Decimal

    from bigquery_schemas import analytics

    client, ds = runs["client"], runs["table"].split(".", 1)[1]
    analytics.create_views(client, ds)
    orders = {o["order_id"]: o for o in data["orders"]}
    day = START.date()
    sold, cancelled = [], []
    for item in data["items"]:
        order = orders[item["order_id"]]
        ts = datetime.fromisoformat(order["order_purchase_timestamp"]).replace(tzinfo=UTC) - LOCAL
        if ts.date() != day:
            continue
        is_cancelled = PROJECT_STATUS[order["order_status"]] == "cancelled"
        (cancelled if is_cancelled else sold).append((item["order_id"], Decimal(item["price"])))
    (row,) = analytics.run_query(client, "orders_revenue_by_date", ds, day, day)
    assert row["orders"] == len({o for o, _ in sold})
    assert Decimal(row["gross_revenue"]) == sum(p for _, p in sold)
    assert row["cancelled_orders"] == len({o for o, _ in cancelled})
    assert Decimal(row["cancelled_revenue"]) == sum(p for _, p in cancelled)
    assert cancelled, "the data set must hold cancelled orders with items"
    # Visitors: everyone with an event that day, clickstream users and API buyers alike.
    visitors = {c["user_id"] for c in data["clicks"]} | {orders[i["order_id"]]["customer_id"] for i in data["items"]}
    (traffic,) = [r for r in analytics.run_query(client, "unique_visitors", ds, day, day) if r["scope"] == "day"]
    assert traffic["visitors"] == len(visitors)
