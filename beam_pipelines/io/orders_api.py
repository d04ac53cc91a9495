"""HTTP client for the orders REST API: pagination, retries, auth, timeouts.

Contract (served locally by ``python -m publishers.orders_api serve``)::

    GET /v1/orders?updated_since=<ISO>&updated_before=<ISO>&page_size=<1..1000>&page_token=<opaque>
    Authorization: Bearer <token>
    -> 200 {"orders": [...], "next_page_token": "..." | null}

Behaviour:
  * pages are followed with ``next_page_token`` until it is null (keyset cursor, so a
    retried page returns the same orders);
  * 429 and 5xx, connection errors and timeouts are retried with exponential backoff
    and full jitter (``base * 2**attempt``, capped), waiting at least ``Retry-After``
    seconds when the server sends it (also capped, so a bogus header cannot hang a worker);
  * 400/401/403/404 are not retried: they mean a bug or a bad token, and retrying
    would only hide it;
  * a 200 whose body is not a JSON object with an ``orders`` list is retried like a
    5xx (a proxy error page), then raised;
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

from beam_pipelines.events import format_ts

_LOG = logging.getLogger(__name__)

DEFAULT_TOKEN_ENV = "ORDERS_API_TOKEN"  # noqa: S105 - the variable name, not a token
SECRET_VERSION_RE = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_PAGE_SIZE = 1000


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
      RuntimeError: Secret Manager requested but google-cloud-secret-manager is not installed.
    """
    if secret_version:
        if not SECRET_VERSION_RE.match(secret_version):
            raise ValueError(
                f"--api_token_secret must look like projects/<p>/secrets/<s>/versions/<v>, got {secret_version!r}"
            )
        try:
            from google.cloud import secretmanager
        except ImportError:  # pragma: no cover - installed with apache-beam[gcp] here
            raise RuntimeError(
                "--api_token_secret needs the google-cloud-secret-manager package; install it or pass "
                "the token through --api_token_env"
            ) from None
        client = secretmanager.SecretManagerServiceClient()
        response = client.access_secret_version(request={"name": secret_version})
        return response.payload.data.decode("utf-8").strip()
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

    def fetch_page(self, updated_since: datetime, updated_before: datetime, page_token: str | None = None) -> Page:
        """One page, retried on 429/5xx/network errors."""
        params = {
            "updated_since": format_ts(updated_since),
            "updated_before": format_ts(updated_before),
            "page_size": str(self.page_size),
        }
        if page_token:
            params["page_token"] = page_token
        last_error = ""
        for attempt in range(self.retry.max_attempts):
            status: int | None = None
            retry_after: float | None = None
            try:
                resp = self.session.get(self.url, params=params, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                status = resp.status_code
                if status == 200:
                    body = _json_or_none(resp)
                    if isinstance(body, dict) and isinstance(body.get("orders"), list):
                        token = body.get("next_page_token")
                        return Page(body["orders"], token if token else None, attempt + 1)
                    last_error = f"200 with a body that is not {{'orders': [...]}}: {resp.text[:200]!r}"
                elif status in RETRYABLE_STATUS:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    last_error = f"HTTP {status}: {resp.text[:200]}"
                else:
                    raise OrdersApiError(f"GET {self.url} -> HTTP {status}: {resp.text[:300]}", status)
            if attempt + 1 == self.retry.max_attempts:
                break
            wait = self.retry.backoff(attempt, retry_after, self._rng)
            _LOG.warning("orders API attempt %d failed (%s); retrying in %.2fs", attempt + 1, last_error, wait)
            if self._on_retry:
                self._on_retry(status, wait)
            self._sleep(wait)
        raise OrdersApiError(f"GET {self.url} failed after {self.retry.max_attempts} attempts: {last_error}")

    def iter_pages(self, updated_since: datetime, updated_before: datetime) -> Iterator[Page]:
        """Every page of orders with ``updated_since <= updated_at < updated_before``."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            page = self.fetch_page(updated_since, updated_before, token)
            yield page
            if page.next_page_token is None:
                return
            if page.next_page_token in seen:
                # A server bug would otherwise loop forever.
                raise OrdersApiError(f"page token {page.next_page_token!r} repeated; stopping")
            seen.add(page.next_page_token)
            token = page.next_page_token


def _json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None
