"""World, malformed generator, simulator (JSONL and Pub/Sub emulator) and replay."""

from __future__ import annotations

import collections
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from beam_pipelines import events
from beam_pipelines.io import sql
from publishers import malformed, simulator
from publishers.world import CatalogView, World

DATA = Path(__file__).parent / "data"
AS_OF = datetime(2025, 6, 1, tzinfo=UTC)


# ----------------------------------------------------------------------------- malformed


@pytest.mark.parametrize("reason", malformed.REASONS)
def test_every_malformed_kind_really_fails_parse_payload(reason):
    rng = random.Random(reason)
    template = {
        "event_id": "e-1",
        "event_name": "order",
        "event_ts": "2025-06-01T10:00:00.000000Z",
        "user_id": "4",
        "session_id": "s-1",
        "product_id": "9",
        "price": "19.99",
        "quantity": 2,
        "order_id": "o-1",
    }
    assert events.validate_record(dict(template))["event_id"] == "e-1"  # the template itself is valid
    stages = collections.Counter()
    for _ in range(300):
        data = malformed.make_malformed(rng, template, reason)
        with pytest.raises(events.InvalidEvent) as err:
            events.parse_payload(data)
        stages[err.value.stage] += 1
        assert b"\n" not in data
    expected_stage = events.STAGE_PARSE if reason in ("non_json", "truncated_json") else events.STAGE_VALIDATE
    assert stages == {expected_stage: 300}


def test_a_payload_that_validates_is_caught_by_the_generator_check():
    with pytest.raises(malformed.NotMalformed):
        malformed.assert_rejected(
            json.dumps(
                {
                    "event_id": "x",
                    "event_name": "view",
                    "event_ts": "2025-06-01T10:00:00Z",
                    "user_id": "1",
                    "product_id": "2",
                    "price": "1.00",
                }
            ).encode(),
            "test",
        )


# ----------------------------------------------------------------------------- world


def test_window_world_events_are_valid_and_match_orders():
    catalog = CatalogView.generated(3, 200, 100, AS_OF)
    start, end = AS_OF, AS_OF + timedelta(hours=4)
    result = World(catalog, 3).window(start, end, 300)
    assert len(result.orders) == 300
    now = end + timedelta(days=1)
    parsed = [events.validate_record(e, now) for e in result.events]
    assert len({e["event_id"] for e in parsed}) == len(parsed)
    assert all(events.format_ts(start) <= e["event_ts"] < events.format_ts(end) for e in parsed)
    by_id = {e["event_id"]: e for e in parsed}
    n_lines = n_returns = 0
    for order in result.orders:
        assert start <= order.order_ts <= order.updated_at < end
        for line in order.lines:
            n_lines += 1
            ev = by_id[events.order_line_event_id(order.order_id, line.line_number, "order")]
            assert (ev["event_ts"], ev["product_id"], ev["quantity"], ev["price"], ev["order_id"], ev["user_id"]) == (
                events.format_ts(order.order_ts),
                line.product_id,
                line.quantity,
                line.unit_price,
                order.order_id,
                order.user_id,
            )
            ret = by_id.get(events.order_line_event_id(order.order_id, line.line_number, "return"))
            assert (ret is not None) == (order.status == "returned")
            if ret:
                n_returns += 1
                assert ret["event_ts"] == events.format_ts(order.updated_at)
    counts = result.events_by_name()
    assert (counts["order"], counts["return"]) == (n_lines, n_returns)
    assert counts["view"] > counts["add_to_cart"] > 0 and counts["wishlist"] > 0
    # Reproducible: same seed, same world; without events, the same orders.
    again = World(catalog, 3).window(start, end, 300, with_events=False)
    assert [o.to_api() for o in again.orders] == [o.to_api() for o in result.orders]


def test_live_world_emits_exactly_n_events():
    catalog = CatalogView.generated(1, 50, 20, AS_OF)
    t0 = datetime.now(UTC)
    result = World(catalog, 1).live(1234, lambda i: t0 + timedelta(milliseconds=i))
    assert len(result.events) == 1234
    lines = sum(len(o.lines) for o in result.orders)
    assert result.events_by_name()["order"] == lines
    for e in result.events:
        events.validate_record(e)


# ----------------------------------------------------------------------------- simulator


def _messages(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _check_against_manifest(datas: list[bytes], manifest: dict) -> None:
    seen: collections.Counter[str] = collections.Counter()
    by_name: collections.Counter[str] = collections.Counter()
    malformed_count = 0
    for data in datas:
        try:
            event = events.parse_payload(data)
        except events.InvalidEvent:
            malformed_count += 1
            continue
        if seen[event["event_id"]] == 0:
            by_name[event["event_name"]] += 1
        seen[event["event_id"]] += 1
    assert len(datas) == manifest["published_total"]
    assert malformed_count == manifest["malformed_sent"]
    assert len(seen) == manifest["unique_valid_events"]
    assert sum(seen.values()) - len(seen) == manifest["duplicates_sent"]
    assert dict(by_name) == {k: v for k, v in manifest["valid_by_event_name"].items() if v}
    assert sorted(seen) == sorted(manifest["valid_event_ids"])


def test_simulator_to_jsonl_matches_its_manifest_and_writes_orders(sqlite_url, tmp_path, capsys):
    from publishers.catalog import load

    with sql.connect(sqlite_url) as db:
        load(db, seed=2, n_products=300, n_users=100, start=AS_OF, end=AS_OF + timedelta(hours=1))
    out, man = tmp_path / "events.jsonl", tmp_path / "manifest.json"
    rc = simulator.main(
        [
            "publish",
            "--count",
            "5000",
            "--rate",
            "0",
            "--seed",
            "8",
            "--database-url",
            sqlite_url,
            "--duplicate-fraction",
            "0.04",
            "--late-fraction",
            "0.03",
            "--late-minutes",
            "20",
            "--malformed-fraction",
            "0.02",
            "--output-jsonl",
            str(out),
            "--manifest",
            str(man),
        ]
    )
    assert rc == 0
    manifest = json.loads(man.read_text())
    assert (
        manifest["published_total"],
        manifest["duplicates_sent"],
        manifest["malformed_sent"],
        manifest["late_sent"],
        manifest["unique_valid_events"],
    ) == (5000, 200, 100, 150, 4700)
    assert set(manifest["malformed_by_reason"]) == set(malformed.REASONS)
    datas = _messages(out)
    _check_against_manifest(datas, manifest)
    # Late events are valid and --late-minutes older than their neighbours.
    ts = sorted(events.parse_payload(d)["event_time"] for d in datas if _valid(d))
    assert manifest["min_event_ts"] == events.format_ts(datetime.fromtimestamp(ts[0], UTC))
    assert ts[-1] - ts[0] >= 20 * 60
    with sql.connect(sqlite_url) as db:
        n_orders = db.scalar("select count(*) from orders")
        lines = {(o, n) for o, n in db.query("select order_id, line_number from order_lines")}
    assert n_orders == manifest["orders_written"] > 0
    valid = [events.parse_payload(d) for d in datas if _valid(d)]
    stream_lines = {(e["order_id"], int(e["event_id"].split(":")[1])) for e in valid if e["event_name"] == "order"}
    assert stream_lines == lines  # one order event per SQL order line, same ids
    assert "done: published 5,000/5,000" in capsys.readouterr().err


def _valid(data: bytes) -> bool:
    try:
        events.parse_payload(data)
    except events.InvalidEvent:
        return False
    return True


def test_bad_arguments_say_what_to_do(capsys):
    assert (
        simulator.main(
            [
                "publish",
                "--count",
                "10",
                "--duplicate-fraction",
                "0.6",
                "--malformed-fraction",
                "0.5",
                "--output-jsonl",
                "/dev/null",
            ]
        )
        == 2
    )
    assert "keep their sum below 1" in capsys.readouterr().err
    assert simulator.main(["publish", "--duration", "5", "--rate", "0", "--output-jsonl", "/dev/null"]) == 2
    assert "--duration needs a --rate above 0" in capsys.readouterr().err
    assert simulator.main(["publish", "--count", "10", "--topic", "user-events"]) == 2
    assert "needs --project" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        simulator.main(["publish", "--count", "10", "--late-fraction", "2"])
    assert "must be a fraction within [0, 1]" in capsys.readouterr().err


@pytest.mark.integration
def test_simulator_publishes_to_the_emulator_and_a_subscriber_pulls_the_manifest_counts(pubsub_emulator, tmp_path):
    from google.api_core.exceptions import DeadlineExceeded
    from google.cloud import pubsub_v1

    topic = pubsub_emulator.topic("sim-events")
    subscription = pubsub_emulator.subscription("sim-events", "sim-events-sub")
    man = tmp_path / "manifest.json"
    rc = simulator.main(
        [
            "publish",
            "--project",
            pubsub_emulator.project,
            "--topic",
            "sim-events",
            "--count",
            "3000",
            "--rate",
            "0",
            "--seed",
            "5",
            "--duplicate-fraction",
            "0.05",
            "--malformed-fraction",
            "0.03",
            "--late-fraction",
            "0.02",
            "--manifest",
            str(man),
            "--quiet",
        ]
    )
    assert rc == 0
    manifest = json.loads(man.read_text())
    assert manifest["target"] == f"{topic} on the Pub/Sub emulator at {pubsub_emulator.host}"
    received: list[tuple[bytes, dict]] = []
    subscriber = pubsub_v1.SubscriberClient()

    def pull(timeout: float) -> int:
        try:
            resp = subscriber.pull(subscription=subscription, max_messages=1000, timeout=timeout)
        except DeadlineExceeded:
            return 0
        received.extend((m.message.data, dict(m.message.attributes)) for m in resp.received_messages)
        if resp.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in resp.received_messages])
        return len(resp.received_messages)

    try:
        deadline = time.monotonic() + 60
        while len(received) < manifest["published_total"] and time.monotonic() < deadline:
            pull(10)
        assert pull(2) == 0  # and nothing more than the manifest says
    finally:
        subscriber.close()
    assert len(received) == manifest["published_total"] == 3000
    _check_against_manifest([d for d, _ in received], manifest)
    for data, attrs in received:
        assert set(attrs) == {"event_id", "event_ts"}
        events.parse_ts(attrs["event_ts"])  # valid on every message, malformed ones included
        if _valid(data):
            event = events.parse_payload(data)
            assert attrs == {"event_id": event["event_id"], "event_ts": event["event_ts"]}
    # A duplicate is the same data with the same attributes.
    copies = collections.Counter((d, tuple(sorted(a.items()))) for d, a in received)
    assert sum(n - 1 for n in copies.values()) == manifest["duplicates_sent"] == 150


# ----------------------------------------------------------------------------- replay


def test_replay_maps_every_column_of_a_real_clickstream_csv(tmp_path):
    out, man = tmp_path / "replayed.jsonl", tmp_path / "manifest.json"
    rc = simulator.main(
        [
            "replay",
            "--file",
            str(DATA / "clickstream.csv"),
            "--speed",
            "0",
            "--mapping",
            "event_time=event_ts,event_type=event_name,product_id=product_id,price=price,user_id=user_id,"
            "user_session=session_id",
            "--value-map",
            "cart=add_to_cart,purchase=order,remove_from_cart=",
            "--output-jsonl",
            str(out),
            "--manifest",
            str(man),
            "--quiet",
            "--max-invalid-share",
            "0.2",  # the sample's one row without a price is 1 of 6
        ]
    )
    assert rc == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["event_name"] for r in records] == ["view", "add_to_cart", "order", "order", "view", "view"]
    first = records[0]
    assert {k: v for k, v in first.items() if k != "event_id"} == {
        "event_name": "view",
        "event_ts": "2019-10-01 00:00:00 UTC",
        "product_id": "44600062",
        "price": "35.79",
        "user_id": "541312140",
        "session_id": "72d76fde-8bb3-4e00-8c23-a032dfed738c",
    }
    assert events.parse_payload(json.dumps(first))["event_ts"] == "2019-10-01T00:00:00.000000Z"
    order_a, order_b = records[2], records[3]
    assert order_a["order_id"] == order_b["order_id"]  # same session -> same order, two lines
    assert (order_a["event_id"], order_b["event_id"]) == (f"{order_a['order_id']}:1", f"{order_a['order_id']}:2")
    assert (order_a["price"], order_a["product_id"], order_b["product_id"]) == ("543.10", "17200506", "1307067")
    manifest = json.loads(man.read_text())
    assert manifest["rows_skipped_by_value_map"] == 1
    assert (manifest["published_total"], manifest["unique_valid_events"], manifest["malformed_sent"]) == (6, 5, 1)
    assert manifest["malformed_by_reason"] == {"validate: missing price": 1}
    # Ids are stable: a second replay sends the same ids.
    again = tmp_path / "again.jsonl"
    simulator.main(
        [
            "replay",
            "--file",
            str(DATA / "clickstream.csv"),
            "--speed",
            "0",
            "--output-jsonl",
            str(again),
            "--quiet",
            "--max-invalid-share",
            "0.2",
        ]
    )
    assert [json.loads(x)["event_id"] for x in again.read_text().splitlines()] == [r["event_id"] for r in records]


def test_replay_retime_moves_events_to_now_keeping_gaps(tmp_path):
    out = tmp_path / "retimed.jsonl"
    before = datetime.now(UTC)
    assert (
        simulator.main(
            [
                "replay",
                "--file",
                str(DATA / "clickstream.csv"),
                "--speed",
                "0",
                "--retime",
                "--output-jsonl",
                str(out),
                "--quiet",
                "--max-invalid-share",
                "0.2",
            ]
        )
        == 0
    )
    times = [events.parse_ts(json.loads(x)["event_ts"]) for x in out.read_text().splitlines()]
    assert times[-1] - times[0] == timedelta(seconds=10)
    assert before <= times[-1] <= datetime.now(UTC)


def test_replay_rejects_a_mapping_to_an_unknown_field(capsys):
    assert (
        simulator.main(
            [
                "replay",
                "--file",
                str(DATA / "clickstream.csv"),
                "--mapping",
                "brand=brand_name",
                "--output-jsonl",
                "/dev/null",
            ]
        )
        == 2
    )
    assert "target 'brand_name' is not an event field" in capsys.readouterr().err
