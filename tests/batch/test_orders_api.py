"""Orders API client: pagination, retries with backoff and Retry-After, auth, tokens."""

from datetime import UTC, datetime

import pytest

from beam_pipelines.io import orders_api
from beam_pipelines.io.orders_api import OrdersApiClient, OrdersApiError, RetryPolicy
from tests.batch.fake_api import TOKEN, FakeOrdersApi, make_order

START = datetime(2026, 11, 21, 10, tzinfo=UTC)
END = datetime(2026, 11, 21, 11, tzinfo=UTC)
ORDERS = [make_order(f"o{i}", f"2026-11-21T10:{i:02d}:00.000000Z") for i in range(5)]


def _client(api, sleeps, **kw):
    return OrdersApiClient(api.url, TOKEN, sleep=sleeps.append, seed=1, **kw)


def test_reads_every_page_in_order():
    with FakeOrdersApi(ORDERS) as api:
        sleeps = []
        pages = list(_client(api, sleeps, page_size=2).iter_pages(START, END))
    assert [[o["order_id"] for o in p.orders] for p in pages] == [["o0", "o1"], ["o2", "o3"], ["o4"]]
    assert [r.get("page_token") for r in api.requests] == [None, ["2"], ["4"]]
    assert api.requests[0]["updated_since"] == ["2026-11-21T10:00:00.000000Z"]
    assert api.requests[0]["updated_before"] == ["2026-11-21T11:00:00.000000Z"]
    assert sleeps == []


def test_500_then_recovery_retries_with_backoff():
    with FakeOrdersApi(ORDERS, faults=[(500, {}), (503, {})]) as api:
        sleeps = []
        retried = []
        client = _client(api, sleeps, page_size=10, on_retry=lambda s, w: retried.append(s))
        pages = list(client.iter_pages(START, END))
    assert [o["order_id"] for o in pages[0].orders] == ["o0", "o1", "o2", "o3", "o4"]
    assert pages[0].attempts == 3
    assert retried == [500, 503]
    # Full jitter inside the exponential ceiling: 0.5 s then 1 s.
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_429_waits_at_least_retry_after():
    with FakeOrdersApi(ORDERS, faults=[(429, {"Retry-After": "7"})]) as api:
        sleeps = []
        pages = list(_client(api, sleeps).iter_pages(START, END))
    assert len(pages[0].orders) == 5
    assert sleeps == [7.0]


def test_retry_after_is_capped_and_attempts_are_bounded():
    faults = [(503, {"Retry-After": "3600"})] * 3
    with FakeOrdersApi(ORDERS, faults=faults) as api:
        sleeps = []
        client = _client(api, sleeps, retry=RetryPolicy(max_attempts=3, max_backoff_seconds=2.0))
        with pytest.raises(OrdersApiError, match="after 3 attempts"):
            list(client.iter_pages(START, END))
    assert sleeps == [2.0, 2.0]


def test_401_is_not_retried():
    with FakeOrdersApi(ORDERS) as api:
        sleeps = []
        client = OrdersApiClient(api.url, "wrong", sleep=sleeps.append)
        with pytest.raises(OrdersApiError) as err:
            list(client.iter_pages(START, END))
    assert err.value.status == 401
    assert len(api.requests) == 1 and sleeps == []


def test_parse_retry_after_seconds_and_http_date():
    now = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
    assert orders_api.parse_retry_after("5") == 5.0
    assert orders_api.parse_retry_after("Sat, 21 Nov 2026 10:00:30 GMT", now) == 30.0
    assert orders_api.parse_retry_after("soon") is None
    assert orders_api.parse_retry_after(None) is None


def test_resolve_token_from_env_and_secret_name_checked(monkeypatch):
    monkeypatch.setenv("MY_TOKEN", " abc ")
    assert orders_api.resolve_token("MY_TOKEN") == "abc"
    monkeypatch.delenv("MY_TOKEN")
    with pytest.raises(ValueError, match="MY_TOKEN"):
        orders_api.resolve_token("MY_TOKEN")
    with pytest.raises(ValueError, match="projects/<p>/secrets/<s>/versions/<v>"):
        orders_api.resolve_token("MY_TOKEN", "my-secret")


def test_client_validates_arguments():
    with pytest.raises(ValueError, match="http"):
        OrdersApiClient("localhost:8080", TOKEN)
    with pytest.raises(ValueError, match="page_size"):
        OrdersApiClient("http://127.0.0.1:1", TOKEN, page_size=0)


def test_a_body_that_breaks_the_contract_is_retried_then_read():
    # 200 {"error": ...}: no orders list, no next_page_token key.
    with FakeOrdersApi(ORDERS, faults=[(200, {}), (200, {})]) as api:
        sleeps = []
        pages = list(_client(api, sleeps, page_size=5).iter_pages(START, END))
    assert [len(p.orders) for p in pages] == [5] and pages[0].attempts == 3 and len(sleeps) == 2


def test_a_body_that_keeps_breaking_the_contract_fails_naming_url_page_and_reason():
    with FakeOrdersApi(ORDERS, faults=[(200, {})] * 3) as api:
        client = _client(api, [], page_size=5, retry=RetryPolicy(max_attempts=3))
        with pytest.raises(OrdersApiError) as err:
            list(client.iter_pages(START, END))
    message = str(err.value)
    assert message.startswith(f"orders API {api.url}/v1/orders page 1 of [2026-11-21T10:00:00.000000Z, ")
    assert "failed after 3 attempts: HTTP 200 (application/json) but body has no 'orders' list" in message
    assert "\n" not in message


def test_a_repeating_token_is_answered_by_asking_its_page_again():
    with FakeOrdersApi(ORDERS, repeat_tokens=1) as api:
        sleeps = []
        pages = list(_client(api, sleeps, page_size=2).iter_pages(START, END))
        tokens = [r.get("page_token", [None])[0] for r in api.requests]
    assert [o["order_id"] for p in pages for o in p.orders] == ["o0", "o1", "o2", "o3", "o4"]  # each once
    # page 2 handed out "2#0" (same offset), page 3 repeated page 2; page 2 asked again gave "4".
    assert tokens == [None, "2", "2#0", "2", "4"] and len(sleeps) == 1


def test_a_cursor_that_never_advances_fails_instead_of_looping():
    with FakeOrdersApi(ORDERS, repeat_tokens=100) as api:
        client = _client(api, [], page_size=2, retry=RetryPolicy(max_attempts=3))
        with pytest.raises(OrdersApiError, match=r"page 3 of .*cursor did not advance .* 3 times; stopping"):
            list(client.iter_pages(START, END))
        assert len(api.requests) < 10
