"""The orders REST API: pagination, filters, auth, errors and fault injection, per the contract."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from beam_pipelines.events import format_ts
from beam_pipelines.io import sql
from publishers.orders_api import create_app, encode_page_token
from publishers.world import iter_api_orders

pytestmark = pytest.mark.integration

WINDOW = (datetime(2025, 6, 1, 8, tzinfo=UTC), datetime(2025, 6, 1, 11, tzinfo=UTC))
TIE_TS = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)
TIED = 1500  # orders forced onto one updated_at: a tie group spanning several pages


@pytest.fixture(scope="module")
def big_api(tmp_path_factory, generated_world, orders_api_server):
    """10,000 orders in a 3-hour window, 1,500 of them sharing one updated_at."""
    url = f"sqlite:///{tmp_path_factory.mktemp('api-10k') / 'source.db'}"
    world = generated_world(url, 21, 400, 300, 10_000, WINDOW, with_events=False)
    by_id = {o.order_id: o for o in world.orders}
    tied = sorted(by_id)[:TIED]
    with sql.connect(url) as db, db.transaction():
        db.executemany("update orders set updated_at = ? where order_id = ?", [(TIE_TS, oid) for oid in tied])
    for oid in tied:
        by_id[oid].updated_at = TIE_TS
    api = orders_api_server(url)
    api.orders = world.orders
    return api


def _page_all(api, since: datetime | None, before: datetime | None, page_size: int) -> tuple[list[dict], int]:
    params = {"page_size": str(page_size)}
    if since:
        params["updated_since"] = format_ts(since)
    if before:
        params["updated_before"] = before.isoformat()
    out, pages = [], 0
    with httpx.Client(base_url=api.base_url, headers=api.headers(), timeout=30) as client:
        while True:
            resp = client.get("/v1/orders", params=params)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert set(body) == {"orders", "next_page_token"}
            assert len(body["orders"]) <= page_size
            out.extend(body["orders"])
            pages += 1
            if body["next_page_token"] is None:
                return out, pages
            params["page_token"] = body["next_page_token"]


def test_paginates_a_10k_window_without_loss_or_duplication(big_api):
    got, pages = _page_all(big_api, *WINDOW, page_size=500)
    expected = list(iter_api_orders([o for o in big_api.orders if WINDOW[0] <= o.updated_at < WINDOW[1]]))
    assert len(expected) == 10_000
    assert pages == 20
    assert [o["order_id"] for o in got] == [o["order_id"] for o in expected]
    assert got == expected  # every field, lines and amounts included
    assert sum(1 for o in got if o["updated_at"] == format_ts(TIE_TS)) == TIED


def test_sub_window_and_odd_page_size_follow_the_half_open_filter(big_api):
    since, before = datetime(2025, 6, 1, 9, 0, tzinfo=UTC), TIE_TS  # the tie group itself is excluded
    got, pages = _page_all(big_api, since, before, page_size=333)
    expected = [o for o in iter_api_orders(big_api.orders) if format_ts(since) <= o["updated_at"] < format_ts(before)]
    assert [o["order_id"] for o in got] == [o["order_id"] for o in expected]
    assert pages == len(expected) // 333 + 1
    got_incl, _ = _page_all(big_api, TIE_TS, TIE_TS + timedelta(microseconds=1), page_size=1000)
    assert len(got_incl) == TIED


def test_order_body_matches_the_contract(orders_api):
    with httpx.Client(base_url=orders_api.base_url, headers=orders_api.headers()) as client:
        body = client.get("/v1/orders", params={"page_size": "1"}).json()
    order = body["orders"][0]
    assert list(order) == [
        "order_id",
        "user_id",
        "session_id",
        "status",
        "order_ts",
        "updated_at",
        "currency",
        "total_amount",
        "lines",
    ]
    assert order["currency"] == "USD" and isinstance(order["user_id"], str)
    line = order["lines"][0]
    assert list(line) == ["line_number", "product_id", "quantity", "unit_price", "amount"]
    assert isinstance(line["unit_price"], str) and isinstance(line["amount"], str)
    assert order == next(iter_api_orders(orders_api.orders))
    assert isinstance(body["next_page_token"], str)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer wrong-token"}, "invalid bearer token"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "missing bearer token"),
        ({"Authorization": "Bearer"}, "missing bearer token"),
    ],
)
def test_rejects_missing_or_wrong_token_with_401(orders_api, headers, message):
    resp = httpx.get(f"{orders_api.base_url}/v1/orders", headers=headers)
    assert resp.status_code == 401
    assert message in resp.json()["error"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_healthz_needs_no_token(orders_api):
    resp = httpx.get(f"{orders_api.base_url}/healthz")
    assert (resp.status_code, resp.json()) == (200, {"status": "ok"})


def _forged_token(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"page_size": "0"}, "page_size='0' must be an integer from 1 to 1000"),
        ({"page_size": "1001"}, "page_size='1001' must be an integer from 1 to 1000"),
        ({"page_size": "ten"}, "page_size='ten'"),
        ({"updated_since": "yesterday"}, "updated_since='yesterday' is not an ISO-8601 timestamp"),
        ({"updated_before": "2025-06-01T10:00:00"}, "updated_before='2025-06-01T10:00:00' is not an ISO-8601"),
        (
            {"updated_since": "2025-06-01T11:00:00Z", "updated_before": "2025-06-01T10:00:00Z"},
            "updated_since must be before updated_before",
        ),
        ({"updated_after": "2025-06-01T10:00:00Z"}, "unknown parameter(s) updated_after"),
        ({"page_token": "not-a-token!"}, "page_token is not valid"),
        (
            {"page_token": _forged_token({"v": 1, "u": "garbage", "o": "x", "s": None, "b": None})},
            "page_token is not valid",
        ),
        (
            {
                "page_token": encode_page_token(
                    "2025-06-01T10:00:00.000000Z", "o-1", "2025-06-01T09:00:00.000000Z", None
                )
            },
            "page_token belongs to different filters",
        ),
    ],
)
def test_rejects_bad_parameters_with_400(orders_api, params, message):
    resp = httpx.get(f"{orders_api.base_url}/v1/orders", params=params, headers=orders_api.headers())
    assert resp.status_code == 400
    assert message in resp.json()["error"]


@pytest.mark.parametrize(
    "raw",
    [
        "%C2%B2",  # superscript two: str.isdigit() is True, int() raises (was a 500)
        "%E2%91%A0",  # circled digit one: the same
        "%D9%A1%D9%A2",  # Arabic-Indic 12: int() read it as 12 (was a 200)
        "%EF%BC%95",  # full-width 5: int() read it as 5 (was a 200)
        "1" * 5000,  # int() refuses more than 4,300 digits (was a 500)
        "0" * 5000 + "5",  # a valid number in too many digits
        "+5",
        "5.0",
        "%205",
        "",
    ],
)
def test_page_size_takes_ascii_digits_only_and_answers_400_for_anything_else(orders_api, raw):
    """Sent raw, as a hostile client sends it (httpx would re-encode a decoded value)."""
    resp = httpx.get(f"{orders_api.base_url}/v1/orders?page_size={raw}", headers=orders_api.headers())
    assert resp.status_code == 400, resp.text[:200]
    error = resp.json()["error"]
    assert error.startswith("page_size") and "must be an integer from 1 to 1000 (ASCII digits)" in error
    assert len(error) < 200  # a 5,000-digit value is not echoed


def test_repeated_parameter_is_rejected(orders_api):
    resp = httpx.get(f"{orders_api.base_url}/v1/orders?page_size=5&page_size=6", headers=orders_api.headers())
    assert (resp.status_code, resp.json()) == (400, {"error": "parameter page_size given more than once"})


def test_rate_limit_returns_429_with_retry_after(orders_api, orders_api_server):
    limited = orders_api_server(orders_api.database_url, rate_limit_per_second=0.5)
    with httpx.Client(base_url=limited.base_url, headers=limited.headers()) as client:
        first = client.get("/v1/orders", params={"page_size": "1"})
        second = client.get("/v1/orders", params={"page_size": "1"})
        health = client.get("/healthz")
    assert first.status_code == 200
    assert second.status_code == 429
    assert second.headers["Retry-After"] == "2"  # one request per 2 s: the next token is ~2 s away
    assert "rate limit" in second.json()["error"]
    assert health.status_code == 200  # health checks are never limited


def test_fault_injection_flags(orders_api):
    token = "t0ken"
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(orders_api.database_url, token, fault_rate_5xx=1.0)) as client:
        resp = client.get("/v1/orders", headers=headers)
        assert (resp.status_code, resp.json()) == (503, {"error": "injected server error (fault injection)"})
        assert client.get("/v1/orders").status_code == 401  # auth is checked before faults
    with TestClient(create_app(orders_api.database_url, token, fault_rate_429=1.0)) as client:
        resp = client.get("/v1/orders", headers=headers)
        assert (resp.status_code, resp.headers["Retry-After"]) == (429, "1")
    with TestClient(create_app(orders_api.database_url, token, fault_rate_5xx=0.5, fault_seed=3)) as client:
        codes = [client.get("/v1/orders", headers=headers, params={"page_size": "1"}).status_code for _ in range(40)]
        assert set(codes) == {200, 503} and 8 <= codes.count(503) <= 32


def test_page_fault_flags_break_the_contract_as_named(orders_api):
    token = "t0ken"
    headers = {"Authorization": f"Bearer {token}"}
    params = {"page_size": "5"}
    app = lambda fault: create_app(orders_api.database_url, token, page_fault_rates={fault: 1.0})  # noqa: E731
    with TestClient(app("missing_token")) as client:
        body = client.get("/v1/orders", headers=headers, params=params).json()
        assert set(body) == {"orders"} and len(body["orders"]) == 5
    with TestClient(app("html")) as client:
        resp = client.get("/v1/orders", headers=headers, params=params)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    with TestClient(app("repeat_token")) as client, TestClient(create_app(orders_api.database_url, token)) as clean:
        first = clean.get("/v1/orders", headers=headers, params=params).json()  # a first page is served as it is
        second = client.get("/v1/orders", headers=headers, params={**params, "page_token": first["next_page_token"]})
        third = client.get(
            "/v1/orders", headers=headers, params={**params, "page_token": second.json()["next_page_token"]}
        )
        assert third.json()["orders"] == second.json()["orders"]  # the same page again ...
        assert third.json()["next_page_token"] != second.json()["next_page_token"]  # ... under a new token
    with pytest.raises(ValueError, match="unknown page fault"):
        create_app(orders_api.database_url, token, page_fault_rates={"teapot": 1.0})
    with pytest.raises(ValueError, match=r"fault_rate_html must be within \[0, 1\]"):
        create_app(orders_api.database_url, token, page_fault_rates={"html": 2.0})
    # The truncated body is a transport fault: it is driven over real HTTP in
    # tests/reliability/test_api_contract.py (TestClient does not go through a socket).


def test_postgresql_source_serves_the_same_pages_as_sqlite(orders_api, postgres_url, generated_world):
    world = generated_world(postgres_url, 4, 100, 50, 300, WINDOW)
    token = "pg-token"
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(postgres_url, token)) as client:
        got, params = [], {"page_size": "70", "updated_since": "2025-06-01T08:00:00Z"}
        while True:
            body = client.get("/v1/orders", params=params, headers=headers).json()
            got.extend(body["orders"])
            if not body["next_page_token"]:
                break
            params["page_token"] = body["next_page_token"]
    assert got == list(iter_api_orders(world.orders))
