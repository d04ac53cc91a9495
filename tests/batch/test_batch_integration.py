"""The three batch jobs end to end: orders API (with injected faults) + PostgreSQL -> lake -> BigQuery emulator.

Expected rows are computed from the SQL source directly (the API's own database),
not from the code under test. Bad inputs are dropped into the lake next to the real
extract; every input record must end as a row, a dead letter or a counted duplicate.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from beam_pipelines import extract_dims, extract_orders, hourly, lake
from beam_pipelines.events import format_ts
from beam_pipelines.io import sql
from bigquery_schemas.client import query_scalar
from tests.fixtures.jobs import hourly_job_args
from tests.fixtures.stack import own_dataset, own_postgres_database

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 21, 10, tzinfo=UTC)
END = datetime(2026, 11, 21, 12, tzinfo=UTC)
WORLD = {"seed": 7, "n_products": 60, "n_users": 40, "n_orders": 120, "window": (START, END)}
UNKNOWN_PRODUCT = 999_999

BAD_ORDER_LINES = [
    '{"order_id": "bad-json", "lines": [',  # malformed JSON
    json.dumps(
        {
            "order_id": "zero-qty",  # (a negative quantity is a credit line: a return event)
            "user_id": "1",
            "status": "paid",
            "order_ts": "2026-11-21T10:10:00Z",
            "updated_at": "2026-11-21T10:10:00Z",
            "currency": "USD",
            "lines": [{"line_number": 1, "product_id": "1", "quantity": 0, "unit_price": "2.00", "amount": "0.00"}],
        }
    ),
    json.dumps(
        {
            "user_id": "1",
            "status": "paid",
            "order_ts": "2026-11-21T10:11:00Z",
            "updated_at": "2026-11-21T10:11:00Z",
            "lines": [{"line_number": 1, "product_id": "1", "quantity": 1, "unit_price": "2.00", "amount": "2.00"}],
        }
    ),  # missing order id
    json.dumps(
        {
            "order_id": "unknown-product",
            "user_id": "1",
            "session_id": "s-x",
            "status": "paid",
            "order_ts": "2026-11-21T10:12:00Z",
            "updated_at": "2026-11-21T10:12:00Z",
            "currency": "USD",
            "total_amount": "7.00",
            "lines": [
                {"line_number": 1, "product_id": UNKNOWN_PRODUCT, "quantity": 2, "unit_price": "3.50", "amount": "7.00"}
            ],
        }
    ),
]


@pytest.fixture(scope="module")
def source_url(postgres_url):
    """A PostgreSQL database of our own on the session's server (the world replaces its tables)."""
    with own_postgres_database(postgres_url, "batch") as url:
        yield url


@pytest.fixture(scope="module")
def dataset(bigquery_emulator, beam_bq_emulator):
    with own_dataset(bigquery_emulator, "batch") as made:
        yield made


@pytest.fixture(scope="module")
def world(source_url, generated_world, orders_api_server):
    result = generated_world(source_url, **WORLD)
    # 20 % 503s and 10 % 429s (Retry-After: 1): the extract must still get every order.
    api = orders_api_server(source_url, fault_rate_5xx=0.2, fault_rate_429=0.1, fault_seed=5)
    return result, api


def _hourly_argv(root, project, ds, run_id):
    return hourly_job_args(project, ds, root, START, END, f"--run_id={run_id}")


@pytest.fixture(scope="module")
def runs(world, source_url, dataset, tmp_path_factory):
    """Run extract_orders, extract_dims and hourly once; return their counters and inputs."""
    result, api = world
    _client, project, ds = dataset
    root = str(tmp_path_factory.mktemp("lake"))
    mp = pytest.MonkeyPatch()
    mp.setenv("BATCH_TEST_TOKEN", api.token)
    mp.setenv("BATCH_TEST_DB", source_url)
    extract = extract_orders.run(
        [
            "--runner=FnApiRunner",
            f"--api_base_url={api.base_url}",
            "--api_token_env=BATCH_TEST_TOKEN",
            f"--lake_root={root}",
            f"--window_start={format_ts(START)}",
            f"--window_end={format_ts(END)}",
            "--page_size=25",
            "--split_minutes=30",
        ]
    )
    dims = extract_dims.run(
        ["--runner=FnApiRunner", "--database_url_env=BATCH_TEST_DB", f"--lake_root={root}", "--num_partitions=3"]
    )
    mp.undo()
    # Bad inputs next to the real extract, and stream events dropped for a backfill.
    part10 = lake.partition_path(root, "orders", START)
    lake.write_jsonl(lake.join(part10, "orders_20261121T100000Z_20261121T110000Z-00099.jsonl"), BAD_ORDER_LINES)
    views = [e for e in result.events if e["event_name"] == "view" and START <= _ts(e) < START + timedelta(hours=1)]
    stream = views[:20]
    late = [stream[0] | {"event_id": "before-window", "event_ts": "2026-11-21T09:59:00.000000Z"}]
    event_lines = [json.dumps(e) for e in stream] + [json.dumps(stream[0])] + [json.dumps(e) for e in late] + ["{oops"]
    lake.write_jsonl(lake.join(lake.partition_path(root, "events", START), "backfill.jsonl"), event_lines)
    first = hourly.run(_hourly_argv(root, project, ds, "run1"))
    return {
        "extract": extract,
        "dims": dims,
        "hourly": first,
        "root": root,
        "stream": stream,
        "late": late,
        "event_lines": len(event_lines),
    }


def _ts(event):
    from beam_pipelines.events import parse_ts

    return parse_ts(event["event_ts"])


def _expected_api_rows(source_url):
    """(event_id, event_name, event_ts, price, product_name, category, user_name, quantity) from SQL."""
    with sql.connect(source_url) as db:
        lines = db.query_dicts(
            "select o.order_id, l.line_number, o.status, o.order_ts, o.updated_at, l.quantity, l.unit_price, "
            "p.product_name, p.category, u.user_name "
            "from orders o join order_lines l on l.order_id = o.order_id "
            "left join products p on p.product_id = l.product_id left join users u on u.user_id = o.user_id "
            "where o.updated_at >= :s and o.updated_at < :e",
            {"s": START, "e": END},
        )
    rows = set()
    for r in lines:
        amount = (Decimal(r["unit_price"]) * r["quantity"]).quantize(Decimal("0.01"))
        base = (amount, r["product_name"], r["category"], r["user_name"], r["quantity"])
        rows.add((f"{r['order_id']}:{r['line_number']}", "order", r["order_ts"], *base))
        if r["status"] == "returned":
            rows.add((f"{r['order_id']}:{r['line_number']}:return", "return", r["updated_at"], *base))
    return rows


def _table_rows(dataset, source):
    client, project, ds = dataset
    query = (
        "select event_id, event_name, event_ts, price, product_name, category, user_name, quantity "
        f"from `{project}.{ds}.user_behavior` where source = @source"
    )
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("source", "STRING", source)])
    return [tuple(r.values()) for r in client.query(query, job_config=config).result()]


def _count(dataset, table, where="true"):
    client, project, ds = dataset
    return query_scalar(client, f"select count(*) from `{project}.{ds}.{table}` where {where}")


def test_extract_survives_api_faults_and_reads_every_order(runs, world):
    result, _ = world
    assert runs["extract"]["api_orders_read"] == len(result.orders) == WORLD["n_orders"]
    assert runs["extract"]["api_retries"] > 0  # faults were injected and recovered from
    assert runs["extract"].get("dead_letters_extract", 0) == 0
    assert runs["dims"]["sql_rows_read"] == WORLD["n_products"] + WORLD["n_users"]


def test_user_behavior_matches_the_sql_source(runs, dataset, source_url):
    expected = _expected_api_rows(source_url) | {
        # The order with an unknown product: kept, with NULL product attributes.
        (
            "unknown-product:1",
            "order",
            datetime(2026, 11, 21, 10, 12, tzinfo=UTC),
            Decimal("7.00"),
            None,
            None,
            _user_name(source_url, 1),
            2,
        )
    }
    actual = _table_rows(dataset, "api")
    assert len(actual) == len(set(actual))
    assert set(actual) == expected
    assert runs["hourly"]["unknown_products"] == 1


def _user_name(source_url, user_id):
    with sql.connect(source_url) as db:
        return db.scalar("select user_name from users where user_id = :u", {"u": str(user_id)})


def test_backfilled_stream_events_are_written_once(runs, dataset):
    actual = sorted(r[0] for r in _table_rows(dataset, "stream"))
    assert actual == sorted(e["event_id"] for e in runs["stream"])


def test_dimensions_and_orders_are_refreshed(dataset, source_url, runs):
    with sql.connect(source_url) as db:
        n_orders = db.scalar(
            "select count(*) from orders where updated_at >= :s and updated_at < :e", {"s": START, "e": END}
        )
    assert _count(dataset, "products") == WORLD["n_products"]
    assert _count(dataset, "users") == WORLD["n_users"]
    # Every API order plus the two bad-input orders with an id and a valid header
    # (zero-qty and unknown-product: the orders table keeps orders as extracted).
    assert _count(dataset, "orders") == n_orders + 2


def test_conservation_every_record_is_a_row_a_dead_letter_or_a_duplicate(runs, dataset):
    m = runs["hourly"]
    # Order files: every line is parsed or dead-lettered; every order explodes or is dead-lettered.
    assert m["lake_order_records_read"] == WORLD["n_orders"] + len(BAD_ORDER_LINES)
    assert (
        m["lake_order_records_read"] == m["orders_exploded"] + m["dead_letters_order_parse"] + m["dead_letters_explode"]
    )
    # Records into validation (order lines + stream lines) = valid + dead letters.
    assert m["records_in"] == m["order_line_records"] + runs["event_lines"]
    assert m["records_in"] == m["valid_events"] + m["dead_letters_parse"] + m["dead_letters_validate"]
    # Valid events = rows staged + duplicates + out-of-window.
    assert m["valid_events"] == m["bq_merged_user_behavior"] + m["duplicates_removed"] + m["dead_letters_window"]
    assert _count(dataset, "user_behavior") == m["bq_merged_user_behavior"]
    dead = _count(dataset, "dead_letter", "job_name = 'run1'")
    assert dead == (
        m["dead_letters_order_parse"]
        + m["dead_letters_explode"]
        + m["dead_letters_parse"]
        + m["dead_letters_validate"]
        + m["dead_letters_window"]
        + m.get("dead_letters_order_row", 0)
    )


def test_each_bad_input_has_its_dead_letter(runs, dataset):
    client, project, ds = dataset
    rows = client.query(
        f"select stage, error from `{project}.{ds}.dead_letter` where job_name = 'run1' order by stage, error"
    ).result()
    reasons = [(r["stage"], r["error"] if r["stage"] == "window" else r["error"].split(":")[0]) for r in rows]
    late_ts = format_ts(_ts(runs["late"][0]))
    assert reasons == [
        ("explode", "order has no order_id"),
        ("parse", "lake order line is not JSON"),
        ("parse", "payload is not JSON"),
        ("validate", "quantity out of range (1..10000)"),
        (
            "window",
            f"event_ts {late_ts} is outside the job window [2026-11-21T10:00:00.000000Z, 2026-11-21T12:00:00.000000Z)",
        ),
    ]


def test_rerun_is_idempotent(runs, dataset):
    client, project, ds = dataset
    snapshot = lambda: sorted(  # noqa: E731
        tuple(v for k, v in r.items() if k != "ingest_ts")
        for r in client.query(f"select * from `{project}.{ds}.user_behavior`").result()
    )
    before = snapshot()
    orders_before = _count(dataset, "orders")
    second = hourly.run(_hourly_argv(runs["root"], project, ds, "run2"))
    after = snapshot()
    assert len(after) == len(before) == second["bq_merged_user_behavior"]
    assert after == before
    assert _count(dataset, "orders") == orders_before
    # Staging tables are gone.
    assert not [t.table_id for t in client.list_tables(ds) if "_stg_" in t.table_id]


def test_missing_snapshots_keep_rows_with_nulls_and_leave_dims_tables_alone(runs, dataset, tmp_path):
    """A lake without dims snapshots or extract records fails the run and changes nothing; with
    --allow_missing_extracts rows keep NULL attributes and products/users are not emptied."""
    _client, project, ds = dataset
    root = str(tmp_path / "lake")
    hour = datetime(2026, 11, 21, 13, tzinfo=UTC)
    order = json.loads(BAD_ORDER_LINES[3]) | {
        "order_id": "no-dims",
        "order_ts": "2026-11-21T13:05:00Z",
        "updated_at": "2026-11-21T13:05:00Z",
    }
    lake.write_jsonl(
        lake.join(lake.partition_path(root, "orders", hour), "orders_20261121T130000Z_20261121T140000Z-00000.jsonl"),
        [order],
    )
    argv = _hourly_argv(root, project, ds, "run3")
    argv = [a for a in argv if not a.startswith("--window_")] + [
        "--window_start=2026-11-21T13:00:00Z",
        "--window_end=2026-11-21T14:00:00Z",
    ]
    before = _count(dataset, "user_behavior")
    with pytest.raises(Exception, match=r"no orders extract completion record|no (products|users) snapshot"):
        hourly.run(argv)
    assert _count(dataset, "user_behavior") == before
    m = hourly.run([*argv, "--allow_missing_extracts"])
    assert m["orders_extract_gaps"] == 1 and m["dimension_snapshots_missing"] == 2
    # Nothing staged for products, users and dead_letter: all three left as they are.
    assert (m["unknown_products"], m["unknown_users"], m["bq_merge_skipped_empty_staging"]) == (1, 1, 3)
    assert _count(dataset, "products") == WORLD["n_products"]
    assert _count(dataset, "users") == WORLD["n_users"]
    [row] = [r for r in _table_rows(dataset, "api") if r[0] == "no-dims:1"]
    assert row[4:7] == (None, None, None)
