"""HTTP client for the orders REST API: pagination, retries, auth, timeouts.

Contract (served locally by ``python -m publishers.orders_api serve``)::

    GET /v1/orders?updated_since=<ISO>&updated_before=<ISO>&page_size=<1..1000>&page_token=<opaque>
    Authorization: Bearer <token>
    -> 200 {"orders": [...], "next_page_token": "..." | null}

Behaviour:
  * pages are followed with ``next_page_token`` until it is null (keyset cursor, so a
    retried page returns the same orders);
  * 429 and 5xx, and every transport error (refused or reset connection, timeout, a
    body cut short of its Content-Length, a broken chunked or compressed body) are
    retried with exponential backoff and full jitter (``base * 2**attempt``, capped),
    waiting at least ``Retry-After`` seconds when the server sends it (also capped, so
    a bogus header cannot hang a worker);
  * 400/401/403/404 are not retried: they mean a bug or a bad token, and retrying
    would only hide it;
  * the page contract is enforced, never assumed: a 200 whose body is not exactly
    ``{"orders": [...], "next_page_token": <non-empty string or null>}`` (an HTML proxy
    page, a body without the ``next_page_token`` key) is retried like a 5xx, then
    raised. Reading a missing key as "last page" once ended a range early with exit
    code 0 and 140 of 300 orders lost;
  * the cursor must move: each page has to start after the last order (by the
    contract's ``(updated_at, order_id)`` order) of the page before. A page that
    repeats orders under a new token is answered by asking again for the page that
    handed out that token (a flaky server may hand out a good one), and after
    ``max_attempts`` such answers the range fails; a token seen before fails at once;
  * every failure is one :class:`OrdersApiError` line naming the API URL, the page
    number, the range and what was wrong;
  * the token comes from an environment variable or from Secret Manager, and is read
    on the worker when the client is built, never stored in pipeline options.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from beam_pipelines.events import format_ts, parse_ts
from beam_pipelines.io.secret_manager import read_secret

_LOG = logging.getLogger(__name__)

DEFAULT_TOKEN_ENV = "ORDERS_API_TOKEN"  # noqa: S105 - the variable name, not a token
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_PAGE_SIZE = 1000
# Transport failures that a new attempt can cure. ChunkedEncodingError is what requests
# raises for a body shorter than its Content-Length (urllib3's IncompleteRead) or a
# connection reset mid-body; ContentDecodingError for a gzip body cut short.
TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class OrdersApiError(RuntimeError):
    """The API refused the request or kept failing after every retry."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter.

    Attributes:
      max_attempts: attempts per request, the first one included.
      base_seconds: backoff before the second attempt (then doubled each time).
      max_backoff_seconds: cap of one wait, Retry-After included.
    """

    max_attempts: int = 6
    base_seconds: float = 0.5
    max_backoff_seconds: float = 30.0

    def backoff(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        ceiling = min(self.max_backoff_seconds, self.base_seconds * (2**attempt))
        wait = rng.uniform(0, ceiling)
        if retry_after is not None:
            # The server knows when it will accept us again: never retry earlier.
            wait = max(wait, min(retry_after, self.max_backoff_seconds))
        return wait


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date; None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def resolve_token(token_env: str | None = DEFAULT_TOKEN_ENV, secret_version: str | None = None) -> str:
    """The bearer token: from Secret Manager when ``secret_version`` is given, else the env var.

    Args:
      token_env: name of the environment variable holding the token.
      secret_version: ``projects/<p>/secrets/<s>/versions/<v>`` (e.g. ``.../versions/latest``).

    Raises:
      ValueError: bad secret name, or no token found.
      SecretError: the secret cannot be read (named, with the fix).
    """
    if secret_version:
        return read_secret(secret_version, "--api_token_secret")
    name = token_env or DEFAULT_TOKEN_ENV
    token = os.environ.get(name, "").strip()
    if not token:
        raise ValueError(
            f"no orders API token: set the environment variable {name} or pass --api_token_secret "
            "projects/<p>/secrets/<s>/versions/<v>"
        )
    return token


@dataclass(frozen=True)
class Page:
    orders: list[Any]
    next_page_token: str | None
    attempts: int


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


_NOT_JSON = object()


def contract_violation(body: Any) -> str | None:
    """What is wrong with a 200 body, or None when it is ``{"orders": [...], "next_page_token": ...}``."""
    if body is _NOT_JSON:
        return "body is not JSON"
    if not isinstance(body, dict):
        return f"body is not a JSON object but {type(body).__name__}"
    if not isinstance(body.get("orders"), list):
        return "body has no 'orders' list"
    if "next_page_token" not in body:
        return "body has no 'next_page_token' key (null marks the last page; a missing key is not a last page)"
    token = body["next_page_token"]
    if token is not None and (not isinstance(token, str) or not token):
        return f"next_page_token must be a non-empty string or null, got {token!r}"
    return None


def keyset(order: Any) -> tuple[datetime, str] | None:
    """An order's position in the contract's ``(updated_at, order_id)`` order (None if it has none)."""
    if not isinstance(order, dict) or order.get("order_id") is None:
        return None
    try:
        return parse_ts(order.get("updated_at")), str(order["order_id"])
    except (ValueError, TypeError):
        return None


def page_positions(orders: list[Any]) -> list[tuple[datetime, str]]:
    return [k for k in map(keyset, orders) if k is not None]


class OrdersApiClient:
    """Reads orders updated in a half-open time range, page by page.

    Args:
      base_url: e.g. ``http://127.0.0.1:8080`` (``/v1/orders`` is appended).
      token: bearer token.
      page_size: orders per page, 1..1000.
      timeout: (connect, read) seconds per request.
      retry: the backoff policy.
      session: a ``requests.Session`` (tests inject one); one is created otherwise.
      sleep: called with the seconds to wait (tests record instead of sleeping).
      on_retry: called with (status or None, seconds) before each wait, e.g. to count retries.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        page_size: int = 500,
        timeout: tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[int | None, float], None] | None = None,
        seed: int | None = None,
    ):
        if not re.match(r"^https?://[^/]+", base_url or ""):
            raise ValueError(f"api base URL must look like http(s)://host[:port], got {base_url!r}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        self.url = base_url.rstrip("/") + "/v1/orders"
        self.page_size = page_size
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["Accept"] = "application/json"
        self._sleep = sleep
        self._on_retry = on_retry
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not security

    def close(self) -> None:
        self.session.close()

    def describe(self, updated_since: datetime, updated_before: datetime, page_number: int) -> str:
        """``orders API <url> page N of [since, before)``: the start of every error message."""
        return f"orders API {self.url} page {page_number} of [{format_ts(updated_since)}, {format_ts(updated_before)})"

    def fetch_page(
        self,
        updated_since: datetime,
        updated_before: datetime,
        page_token: str | None = None,
        *,
        page_number: int = 1,
    ) -> Page:
        """One page, retried on 429/5xx, transport errors and bodies that break the contract."""
        params = {
            "updated_since": format_ts(updated_since),
            "updated_before": format_ts(updated_before),
            "page_size": str(self.page_size),
        }
        if page_token:
            params["page_token"] = page_token
        where = self.describe(updated_since, updated_before, page_number)
        last_error = ""
        for attempt in range(self.retry.max_attempts):
            status: int | None = None
            retry_after: float | None = None
            try:
                resp = self.session.get(self.url, params=params, timeout=self.timeout)
            except TRANSPORT_ERRORS as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                status = resp.status_code
                if status == 200:
                    body = _json_body(resp)
                    problem = contract_violation(body)
                    if problem is None:
                        return Page(body["orders"], body["next_page_token"], attempt + 1)
                    ctype = resp.headers.get("Content-Type", "no Content-Type")
                    last_error = f"HTTP 200 ({ctype}) but {problem}: {resp.text[:200]!r}"
                elif status in RETRYABLE_STATUS:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    last_error = f"HTTP {status}: {resp.text[:200]!r}"
                else:
                    raise OrdersApiError(one_line(f"{where}: HTTP {status}: {resp.text[:300]!r}"), status)
            if attempt + 1 == self.retry.max_attempts:
                break
            wait = self.retry.backoff(attempt, retry_after, self._rng)
            _LOG.warning("%s: attempt %d failed (%s); retrying in %.2fs", where, attempt + 1, last_error, wait)
            if self._on_retry:
                self._on_retry(status, wait)
            self._sleep(wait)
        raise OrdersApiError(one_line(f"{where}: failed after {self.retry.max_attempts} attempts: {last_error}"))

    def iter_pages(self, updated_since: datetime, updated_before: datetime) -> Iterator[Page]:
        """Every page of orders with ``updated_since <= updated_at < updated_before``.

        Raises:
          OrdersApiError: a request kept failing, a body broke the contract, a token
            came back twice, or the cursor stopped moving (see the module docstring).
        """
        token: str | None = None  # the token of the page about to be read
        parent: str | None = None  # the token of the page that handed out ``token``
        seen: set[str] = set()
        last: tuple[datetime, str] | None = None  # position of the last order yielded
        number = 1
        stalls = 0
        while True:
            page = self.fetch_page(updated_since, updated_before, token, page_number=number)
            stall = self._stall(page, last, number)
            if stall is not None:
                stalls += 1
                where = self.describe(updated_since, updated_before, number)
                if stalls >= self.retry.max_attempts:
                    raise OrdersApiError(f"{where}: cursor did not advance ({stall}), {stalls} times; stopping")
                wait = self.retry.backoff(stalls - 1, None, self._rng)
                _LOG.warning(
                    "%s: cursor did not advance (%s); asking page %d again in %.2fs", where, stall, number - 1, wait
                )
                if self._on_retry:
                    self._on_retry(None, wait)
                self._sleep(wait)
                # The bad token came with the previous page: ask for it again for a new one.
                seen.discard(token)
                token = self.fetch_page(updated_since, updated_before, parent, page_number=number - 1).next_page_token
                if token is None:
                    return  # that page is the last one now: its orders were yielded already
                if token in seen:
                    raise OrdersApiError(f"{where}: page {number - 1} asked again repeated token {token!r}; stopping")
                seen.add(token)
                continue
            stalls = 0
            yield page
            if page.next_page_token is None:
                return
            if page.next_page_token in seen:
                # A server bug would otherwise loop forever.
                where = self.describe(updated_since, updated_before, number)
                raise OrdersApiError(f"{where}: page token {page.next_page_token!r} repeated; stopping")
            positions = page_positions(page.orders)
            last = max(positions) if positions else last
            seen.add(page.next_page_token)
            parent, token = token, page.next_page_token
            number += 1

    @staticmethod
    def _stall(page: Page, last: tuple[datetime, str] | None, number: int) -> str | None:
        """Why ``page`` does not move the cursor past ``last``, or None when it does."""
        positions = page_positions(page.orders)
        if number > 1 and not page.orders and page.next_page_token is not None:
            return "an empty page with a next_page_token"
        if last is None or not positions:
            return None
        first = min(positions)
        if first <= last:
            return (
                f"page {number} starts at ({format_ts(first[0])}, {first[1]}), not after page {number - 1}'s "
                f"last order ({format_ts(last[0])}, {last[1]}): the same orders again under a new token"
            )
        return None


def _json_body(resp: requests.Response) -> Any:
    """The decoded JSON body, or ``_NOT_JSON`` (a JSON ``null`` body is None, and wrong too)."""
    try:
        return resp.json()
    except ValueError:
        return _NOT_JSON
