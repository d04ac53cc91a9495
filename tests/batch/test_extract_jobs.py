"""extract_orders against a scripted API, extract_dims against SQLite: lake contents, re-runs, counters."""

import json
import uuid
from datetime import UTC, date, datetime

import pytest

from beam_pipelines import extract_dims, extract_orders, lake
from beam_pipelines.events import parse_ts
from beam_pipelines.io import sql
from beam_pipelines.io.sql_login import SqlLogin
from beam_pipelines.transforms.dimension_extract import PlanKeyRangesFn, ReadKeyRangeFn, key_ranges
from tests.batch.fake_api import TOKEN, FakeOrdersApi, make_order

ORDERS = [make_order(f"o{i:02d}", f"2026-11-21T10:{i * 5:02d}:00.000000Z") for i in range(12)] + [
    make_order("o99", "2026-11-21T11:05:00.000000Z")
]


def _files(root, zone, hour):
    part = lake.partition_path(root, "orders", datetime(2026, 11, 21, hour, tzinfo=UTC), zone=zone)
    return {path.rsplit("/", 1)[1]: list(lake.iter_lines(path)) for path in lake.list_files(lake.join(part, "*"))}


def _argv(api, root, start="2026-11-21T10:00:00Z", end="2026-11-21T11:30:00Z"):
    return [
        "--runner=FnApiRunner",
        f"--api_base_url={api.url}",
        f"--lake_root={root}",
        f"--window_start={start}",
        f"--window_end={end}",
        "--page_size=4",
        "--split_minutes=30",
        "--max_backoff_seconds=0.05",
    ]


def test_extract_orders_writes_hour_partitions_dead_letters_and_replaces_on_rerun(tmp_path, monkeypatch):
    monkeypatch.setenv("ORDERS_API_TOKEN", TOKEN)
    root = str(tmp_path / "lake")
    with FakeOrdersApi([*ORDERS, 42], faults=[(500, {}), (429, {"Retry-After": "0"})]) as api:
        api.first_since = parse_ts("2026-11-21T10:00:00Z")
        first = extract_orders.run(_argv(api, root))
        raw10, raw11 = _files(root, lake.RAW, 10), _files(root, lake.RAW, 11)
        second = extract_orders.run(_argv(api, root))
    assert first["api_retries"] == 2  # the 500 and the 429, then recovery
    assert (first["api_orders_read"], first["dead_letters_extract"]) == (13, 1)
    # Sub-ranges [10:00,10:30) and [10:30,11:00): one file each; hour 11 has the window's rest.
    assert sorted(raw10) == [
        "orders_20261121T100000Z_20261121T110000Z-00000.jsonl",
        "orders_20261121T100000Z_20261121T110000Z-00001.jsonl",
    ]
    ids10 = sorted(json.loads(line)["order_id"] for lines in raw10.values() for line in lines)
    assert ids10 == [f"o{i:02d}" for i in range(12)]
    assert [json.loads(line)["order_id"] for line in raw11["orders_20261121T110000Z_20261121T113000Z-00000.jsonl"]] == [
        "o99"
    ]
    [dead] = [json.loads(line) for lines in _files(root, lake.DEAD_LETTER, 10).values() for line in lines]
    assert (dead["pipeline"], dead["stage"], dead["payload"]) == ("extract_orders", "extract", "42")
    # The re-run replaced the partitions with identical content and no extra files.
    assert _files(root, lake.RAW, 10) == raw10 and _files(root, lake.RAW, 11) == raw11
    assert second["api_orders_read"] == 13 and second.get("api_retries", 0) == 0
    assert lake.list_files(lake.join(root, lake.TMP, "**")) == []  # temp files cleaned up by the job


def test_extract_orders_rerun_of_a_narrower_window_keeps_other_windows(tmp_path, monkeypatch):
    monkeypatch.setenv("ORDERS_API_TOKEN", TOKEN)
    root = str(tmp_path / "lake")
    with FakeOrdersApi(ORDERS) as api:
        extract_orders.run(_argv(api, root, "2026-11-21T10:00:00Z", "2026-11-21T10:30:00Z"))
        extract_orders.run(_argv(api, root, "2026-11-21T10:30:00Z", "2026-11-21T11:00:00Z"))
        api.orders = [o for o in ORDERS if o["order_id"] != "o07"]  # o07 (10:35) disappears
        extract_orders.run(_argv(api, root, "2026-11-21T10:30:00Z", "2026-11-21T11:00:00Z"))
    files = _files(root, lake.RAW, 10)
    assert sorted(files) == [
        "orders_20261121T100000Z_20261121T103000Z-00000.jsonl",
        "orders_20261121T103000Z_20261121T110000Z-00000.jsonl",
    ]
    ids = [json.loads(line)["order_id"] for name in sorted(files) for line in files[name]]
    assert ids == ["o00", "o01", "o02", "o03", "o04", "o05", "o06", "o08", "o09", "o10", "o11"]


def test_extract_orders_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="ISO-8601"):
        extract_orders.run(
            [
                "--runner=FnApiRunner",
                "--api_base_url=http://127.0.0.1:1",
                f"--lake_root={tmp_path}",
                "--window_start=today",
                "--window_end=2026-11-21T11:00:00Z",
            ]
        )
    # Refused before anything runs, not deep in the job ("range ... outside the window").
    with pytest.raises(ValueError, match="window bounds must be whole seconds"):
        extract_orders.run(
            [
                "--runner=FnApiRunner",
                "--api_base_url=http://127.0.0.1:1",
                f"--lake_root={tmp_path}",
                "--window_start=2026-11-21T23:07:00.000001Z",
                "--window_end=2026-11-21T23:30:00Z",
            ]
        )


def test_key_ranges_cover_every_key_once():
    assert key_ranges([]) == [(None, None)]
    assert key_ranges(["b", "m"]) == [(None, "b"), ("b", "m"), ("m", None)]
    with pytest.raises(ValueError, match="sorted and distinct"):
        key_ranges(["m", "b"])


MIXED_IDS = (
    [str(i) for i in (7, 10, 100, 9, 1017)]
    + [uuid.UUID(int=i * 7919).hex for i in range(1, 40)]
    + [f"SKU-{i:04d}/blue" for i in range(25)]
    + ["K\u00e4the", "\u4e2d\u6587", "a b", "Z", "_", "~"]
)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_partitioned_reads_split_any_id_shape_evenly_and_read_every_row_once(engine, sqlite_url, postgres_url):
    url = sqlite_url if engine == "sqlite" else postgres_url
    ts = datetime(2026, 11, 21, 9, tzinfo=UTC)
    with sql.connect(url) as db:
        sql.create_schema(db, drop_existing=True)
        db.bulk_load(
            "products",
            ["product_id", "product_name", "category", "price", "updated_at"],
            [(pid, "p", "cat", "1.50", ts) for pid in MIXED_IDS],
        )
    plan = PlanKeyRangesFn(SqlLogin(database_url=url), 4, None)
    ranges = list(plan.process("products"))
    assert len(ranges) == 4
    reader = ReadKeyRangeFn(SqlLogin(database_url=url), None)
    reader.setup()
    try:
        per_range = [[r["product_id"] for r in reader.process(key_range)] for key_range in ranges]
    finally:
        reader.teardown()
    assert sorted(pid for ids in per_range for pid in ids) == sorted(MIXED_IDS)  # each row exactly once
    sizes = [len(ids) for ids in per_range]
    assert max(sizes) - min(sizes) <= 1, sizes  # split at row offsets, not at key values


def _seed_dims(url, n_products=30, n_users=10):
    ts = datetime(2026, 11, 21, 9, tzinfo=UTC)
    with sql.connect(url) as db:
        sql.create_schema(db, drop_existing=True)
        db.bulk_load(
            "products",
            ["product_id", "product_name", "category", "price", "updated_at"],
            [(i, f"p{i}", "cat", "1.50", ts) for i in range(100, 100 + n_products)],
        )
        db.bulk_load(
            "users",
            ["user_id", "user_name", "email", "signup_date", "country", "updated_at"],
            [(i, f"u{i}", f"u{i}@example.com", date(2025, 1, 1), "DE", ts) for i in range(1, 1 + n_users)],
        )


def test_extract_dims_full_then_incremental_snapshot(sqlite_url, tmp_path):
    root = str(tmp_path / "lake")
    _seed_dims(sqlite_url)
    base = ["--runner=FnApiRunner", f"--database_url={sqlite_url}", f"--lake_root={root}", "--num_partitions=3"]
    full = extract_dims.run([*base, "--snapshot_ts=2026-11-21T10:00:00Z"])
    assert (full["sql_rows_read"], full["sql_key_ranges_read"]) == (40, 6)
    products = {r["product_id"]: r for r in lake.read_latest_snapshot_rows(root, "products")}
    assert len(products) == 30
    assert products["100"] == {
        "product_id": "100",
        "product_name": "p100",
        "category": "cat",
        "price": "1.50",
        "updated_at": "2026-11-21T09:00:00.000000Z",
    }
    users = lake.read_latest_snapshot_rows(root, "users")
    assert sorted(u["user_id"] for u in users) == sorted(str(i) for i in range(1, 11))
    assert users[0]["signup_date"] == "2025-01-01"

    with sql.connect(sqlite_url) as db:
        db.execute(
            "update products set product_name = :name, updated_at = :ts where product_id = :id",
            {"name": "renamed", "ts": datetime(2026, 11, 21, 10, 30, tzinfo=UTC), "id": "105"},
        )
    inc = extract_dims.run([*base, "--snapshot_ts=2026-11-21T11:00:00Z", "--updated_since=2026-11-21T10:00:00Z"])
    assert inc["sql_rows_read"] == 1
    assert lake.latest_snapshot_dir(root, "products").endswith("snapshot=20261121T110000Z")
    after = {r["product_id"]: r for r in lake.read_latest_snapshot_rows(root, "products")}
    assert len(after) == 30  # a complete snapshot, not just the change
    assert after["105"]["product_name"] == "renamed" and after["104"] == products["104"]


def test_extract_dims_requires_a_database_url(tmp_path):
    with pytest.raises(ValueError, match="--database_url"):
        extract_dims.run(["--runner=FnApiRunner", f"--lake_root={tmp_path}"])
