"""TestPipeline tests of the batch transforms: parse, explode, validate, dedupe, join, dead letters."""

import json

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines import events
from beam_pipelines.batch_run import counters
from beam_pipelines.transforms import parse
from beam_pipelines.transforms.dedupe import DeduplicateEvents
from beam_pipelines.transforms.enrich import EnrichWithDimensions
from beam_pipelines.transforms.job_window import KeepEventsInWindow
from beam_pipelines.transforms.orders import (
    DEAD_LETTERS,
    ORDER_RECORDS,
    ORDERS,
    ExplodeOrderLines,
    LatestOrderVersions,
    ParseOrders,
    explode_order,
    order_row,
)
from tests.batch.fake_api import make_order

LINES = [
    {"line_number": 1, "product_id": "101", "quantity": 2, "unit_price": "10.00", "amount": "20.00"},
    {"line_number": 2, "product_id": "102", "quantity": 1, "unit_price": "5.50", "amount": "5.50"},
]
SAMPLE_ORDER = make_order("o-1", "2026-11-21T10:20:00.000000Z", order_ts="2026-11-21T10:05:00.000000Z", lines=LINES)
SAMPLE_RETURNED = make_order(
    "o-2", "2026-11-21T10:40:00.000000Z", order_ts="2026-11-21T09:50:00.000000Z", status="returned", user_id=2
)
SAMPLE_PRODUCTS = [("101", {"product_id": "101", "product_name": "Mug", "category": "Kitchen"})]
SAMPLE_USERS = [("1", {"user_id": "1", "user_name": "Ada"}), ("2", {"user_id": "2", "user_name": "Bob"})]


def _pipeline():
    return test_pipeline.TestPipeline(runner="FnApiRunner")


def _stage_and_error(row):
    return row["stage"], row["error"]


def test_explode_order_builds_order_and_return_records():
    assert explode_order(SAMPLE_ORDER) == [
        {
            "event_id": "o-1:1",
            "event_name": "order",
            "event_ts": "2026-11-21T10:05:00.000000Z",
            "user_id": "1",
            "session_id": "s-o-1",
            "product_id": "101",
            "price": "10.00",
            "quantity": 2,
            "order_id": "o-1",
        },
        {
            "event_id": "o-1:2",
            "event_name": "order",
            "event_ts": "2026-11-21T10:05:00.000000Z",
            "user_id": "1",
            "session_id": "s-o-1",
            "product_id": "102",
            "price": "5.50",
            "quantity": 1,
            "order_id": "o-1",
        },
    ]
    returned = explode_order(SAMPLE_RETURNED)
    assert [(r["event_id"], r["event_name"], r["event_ts"]) for r in returned] == [
        ("o-2:1", "order", "2026-11-21T09:50:00.000000Z"),
        ("o-2:1:return", "return", "2026-11-21T10:40:00.000000Z"),
    ]


def test_parse_orders_dead_letters_malformed_lines():
    p = _pipeline()
    lines = p | beam.Create(
        [
            ("f1", json.dumps(SAMPLE_ORDER)),
            ("f1", '{"order_id": "o-9", "lines": ['),  # truncated JSON
            ("f2", "[1, 2]"),
        ]
    )
    out = lines | ParseOrders("hourly")
    assert_that(out[ORDERS] | "Ids" >> beam.Map(lambda o: o["order_id"]), equal_to(["o-1"]), label="Orders")
    assert_that(
        out[DEAD_LETTERS] | "Why" >> beam.Map(lambda r: (r["stage"], r["error"].split(":")[0], r["attributes"])),
        equal_to(
            [
                ("parse", "lake order line is not JSON", '{"file": "f1"}'),
                ("parse", "lake order line is not a JSON object but list", '{"file": "f2"}'),
            ]
        ),
        label="DeadLetters",
    )
    p.run()


def test_explode_and_validate_route_every_bad_record_to_dead_letters():
    missing_id = {k: v for k, v in SAMPLE_ORDER.items() if k != "order_id"}
    no_lines = make_order("o-3", "2026-11-21T10:00:00Z", lines=[])
    zero = make_order(
        "o-4",
        "2026-11-21T10:00:00Z",
        lines=[{"line_number": 1, "product_id": "101", "quantity": 0, "unit_price": "1.00", "amount": "0.00"}],
    )
    p = _pipeline()
    exploded = p | beam.Create([SAMPLE_ORDER, missing_id, no_lines, zero]) | ExplodeOrderLines("hourly")
    validated = exploded[ORDER_RECORDS] | parse.ValidateRecords("hourly")
    assert_that(
        validated[parse.EVENTS] | "Ids" >> beam.Map(lambda e: (e["event_id"], e["price"], e["quantity"])),
        equal_to([("o-1:1", "10.00", 2), ("o-1:2", "5.50", 1)]),
        label="Valid",
    )
    assert_that(
        exploded[DEAD_LETTERS] | "ExplodeWhy" >> beam.Map(_stage_and_error),
        equal_to([("explode", "order has no order_id"), ("explode", "order o-3 has no lines")]),
        label="ExplodeDeadLetters",
    )
    assert_that(
        validated[parse.DEAD_LETTERS] | "ValidateWhy" >> beam.Map(_stage_and_error),
        equal_to([("validate", "quantity out of range (1..10000): 0")]),
        label="ValidateDeadLetters",
    )
    p.run()


def test_a_credit_line_is_one_return_on_the_documents_own_date_and_never_a_sale():
    # A credit note of a line-level export: C-prefixed, status 'returned', negative lines,
    # quantities as the API may send them (int or text). Its order_ts is the credit's time.
    credit = make_order(
        "C-9",
        "2026-11-21T12:00:00.000000Z",
        order_ts="2026-11-21T11:15:00.000000Z",
        status="returned",
        lines=[
            {"line_number": 1, "product_id": "101", "quantity": -2, "unit_price": "10.00", "amount": "-20.00"},
            {"line_number": 2, "product_id": "102", "quantity": "-1", "unit_price": "5.50", "amount": "-5.50"},
        ],
    )
    # An invoice with a sale and a return line: the sale stays a sale, not also returned.
    mixed = make_order(
        "o-5",
        "2026-11-21T10:30:00.000000Z",
        order_ts="2026-11-21T10:30:00.000000Z",
        lines=[
            {"line_number": 1, "product_id": "101", "quantity": 3, "unit_price": "10.00", "amount": "30.00"},
            {"line_number": 2, "product_id": "102", "quantity": -1, "unit_price": "5.50", "amount": "-5.50"},
        ],
    )
    p = _pipeline()
    exploded = p | beam.Create([credit, mixed]) | ExplodeOrderLines("hourly")
    validated = exploded[ORDER_RECORDS] | parse.ValidateRecords("hourly")
    assert_that(
        validated[parse.EVENTS]
        | "View" >> beam.Map(lambda e: (e["event_id"], e["event_name"], e["event_ts"], e["quantity"], e["price"])),
        equal_to(
            [
                ("C-9:1:return", "return", "2026-11-21T11:15:00.000000Z", 2, "10.00"),
                ("C-9:2:return", "return", "2026-11-21T11:15:00.000000Z", 1, "5.50"),
                ("o-5:1", "order", "2026-11-21T10:30:00.000000Z", 3, "10.00"),
                ("o-5:2:return", "return", "2026-11-21T10:30:00.000000Z", 1, "5.50"),
            ]
        ),
    )
    assert_that(validated[parse.DEAD_LETTERS], equal_to([]), label="NoDeadLetters")
    p.run()


def _row_view(row):
    return (
        row["event_id"],
        row["event_name"],
        row["price"],
        row["product_name"],
        row["category"],
        row["user_name"],
        row["source"],
    )


def test_order_lines_dedupe_across_hours_and_join_keeps_unknown_products():
    # The same order extracted in two hours (status changed) yields its line events twice.
    later = SAMPLE_ORDER | {"status": "delivered", "updated_at": "2026-11-21T11:30:00.000000Z"}
    p2 = _pipeline()
    products = p2 | "Products" >> beam.Create(SAMPLE_PRODUCTS)
    users = p2 | "Users" >> beam.Create(SAMPLE_USERS)
    exploded = p2 | beam.Create([SAMPLE_ORDER, later, SAMPLE_RETURNED]) | ExplodeOrderLines("hourly")
    validated = exploded[ORDER_RECORDS] | parse.ValidateRecords("hourly")
    rows = validated[parse.EVENTS] | DeduplicateEvents() | EnrichWithDimensions(products, users, events.SOURCE_API)
    assert_that(
        rows | beam.Map(_row_view),
        equal_to(
            [
                ("o-1:1", "order", "20.00", "Mug", "Kitchen", "Ada", "api"),
                # Product 102 is not in the snapshot: the row stays, attributes NULL.
                ("o-1:2", "order", "5.50", None, None, "Ada", "api"),
                ("o-2:1", "order", "20.00", "Mug", "Kitchen", "Bob", "api"),
                ("o-2:1:return", "return", "20.00", "Mug", "Kitchen", "Bob", "api"),
            ]
        ),
    )
    result = p2.run()
    result.wait_until_finish()
    values = counters(result)
    assert (values["duplicates_removed"], values["unknown_products"], values.get("unknown_users", 0)) == (2, 1, 0)


def test_latest_order_versions_and_order_rows():
    later = SAMPLE_ORDER | {"status": "delivered", "updated_at": "2026-11-21T11:30:00Z"}
    p = _pipeline()
    latest = p | beam.Create([SAMPLE_ORDER, later, SAMPLE_RETURNED]) | LatestOrderVersions()
    assert_that(
        latest | beam.Map(lambda o: (o["order_id"], o["status"])),
        equal_to([("o-1", "delivered"), ("o-2", "returned")]),
    )
    p.run()
    assert order_row(SAMPLE_ORDER) == {
        "order_id": "o-1",
        "user_id": "1",
        "session_id": "s-o-1",
        "status": "paid",
        "order_ts": "2026-11-21T10:05:00.000000Z",
        "updated_at": "2026-11-21T10:20:00.000000Z",
        "currency": "USD",
        "total_amount": "20.00",
        "lines": [
            {"line_number": 1, "product_id": "101", "quantity": 2, "unit_price": "10.00", "amount": "20.00"},
            {"line_number": 2, "product_id": "102", "quantity": 1, "unit_price": "5.50", "amount": "5.50"},
        ],
    }


def test_keep_events_in_window_dead_letters_the_rest():
    from datetime import UTC, datetime

    inside = events.validate_record({**json.loads(json.dumps(explode_order(SAMPLE_ORDER)[0]))})
    outside = inside | {"event_id": "x", "event_ts": "2026-11-21T12:00:00.000000Z", "event_time": 1_795_262_400.0}
    p = _pipeline()
    out = (
        p
        | beam.Create([inside, outside])
        | KeepEventsInWindow(datetime(2026, 11, 21, 10, tzinfo=UTC), datetime(2026, 11, 21, 11, tzinfo=UTC), "hourly")
    )
    assert_that(out["events"] | "Ids" >> beam.Map(lambda e: e["event_id"]), equal_to(["o-1:1"]), label="Kept")
    assert_that(
        out["dead_letters"] | "Why" >> beam.Map(_stage_and_error),
        equal_to(
            [
                (
                    "window",
                    "event_ts 2026-11-21T12:00:00.000000Z is outside the job window "
                    "[2026-11-21T10:00:00.000000Z, 2026-11-21T11:00:00.000000Z)",
                )
            ]
        ),
        label="Outside",
    )
    p.run()
