"""The orders REST API: a local stand-in for the company's order system, served from the SQL source.

Run it (the bearer token comes from the environment, never from the command line)::

    export ORDERS_API_TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe(24))")
    python -m publishers.orders_api serve --host 127.0.0.1 --port 8080 \\
        --database-url sqlite:///.local/source.db

    curl -H "Authorization: Bearer $ORDERS_API_TOKEN" \\
        "http://127.0.0.1:8080/v1/orders?updated_since=2026-11-22T10:00:00Z&updated_before=2026-11-22T11:00:00Z"

Contract (``GET /v1/orders``): orders with ``updated_since <= updated_at < updated_before``
ordered by ``(updated_at, order_id)``, ``page_size`` 1..1000 (default 100; ASCII digits only), keyset
pagination with an opaque ``next_page_token`` (``null`` on the last page). Each order
carries its lines; decimal amounts are JSON strings. Errors: 400 ``{"error": ...}`` for
bad or unknown parameters, 401 for a missing or wrong token, 429 with ``Retry-After``
when rate limited. ``GET /healthz`` needs no token.

Fault injection for testing clients, each a fraction of authorised requests:
``--fault-rate-5xx`` / ``--fault-rate-429`` (answered 503 / 429), and page faults that
break the contract while answering 200 (:data:`PAGE_FAULTS`):
``--fault-rate-missing-token`` (the body has no ``next_page_token`` key),
``--fault-rate-repeat-token`` (a page after the first hands out a fresh token that
points back at its own start, so the next page repeats it),
``--fault-rate-truncated`` (``Content-Length`` of the whole body, half of it sent),
``--fault-rate-html`` (a ``text/html`` proxy error page).

Bring your own data: ``--mapping mapping.toml`` serves the user's own orders and
order-lines tables or views (:mod:`beam_pipelines.io.source_mapping`): their names,
columns, status values (mapped onto ``sql.ORDER_STATUSES``) and time zone. This is
where the mapping of orders is applied: ``extract_orders`` speaks only this HTTP
contract, so a mapped source and the built-in world look the same to it. ``serve``
refuses a mapping the live tables do not fit (missing table or column, an unmapped
status value) before it listens; a row that later cannot be read is answered 500
with a one-line reason naming the order and the column. Also ``--slow-ms`` (added
latency) and ``--rate-limit-per-second`` (token bucket; 0 = unlimited).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hmac
import json
import math
import os
import random
import re
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from beam_pipelines import cli
from beam_pipelines.events import CENTS, format_ts, parse_ts
from beam_pipelines.io import sql
from beam_pipelines.io.source_mapping import MappingError, SourceMapping, check_live, live_columns
from beam_pipelines.io.source_mapping import connect as connect_source
from beam_pipelines.io.source_mapping import load as load_mapping
from publishers.cli_types import fraction
from publishers.world import api_line, api_total

TOKEN_ENV = "ORDERS_API_TOKEN"  # noqa: S105 - the name of the variable, not a secret
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
_PAGE_SIZE_RE = re.compile(r"[0-9]{1,4}")
QUERY_PARAMS = frozenset({"updated_since", "updated_before", "page_size", "page_token"})
_TOKEN_VERSION = 1
MISSING_TOKEN, REPEAT_TOKEN, TRUNCATED, HTML = "missing_token", "repeat_token", "truncated", "html"
PAGE_FAULTS = (MISSING_TOKEN, REPEAT_TOKEN, TRUNCATED, HTML)
"""Faults of a 200 answer, each drawn with its own rate (``create_app(page_fault_rates=...)``)."""
HTML_ERROR_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


class BadRequest(ValueError):
    """A request parameter is wrong; the message is returned as ``{"error": ...}`` with 400."""


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class RateLimiter:
    """A token bucket: ``rate`` requests per second on average, bursts up to ``rate`` (at least 1)."""

    def __init__(self, rate: float):
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """0 when the request may go ahead, else seconds until it may."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate


# ---------------------------------------------------------------------------- page tokens


def encode_page_token(
    updated_at: str, order_id: str, since: str | None, before: str | None, nonce: int | None = None
) -> str:
    """Opaque keyset cursor: the last (updated_at, order_id) plus the filters it belongs to.

    ``nonce`` (ignored when decoding) makes tokens of the same position differ: the
    ``repeat_token`` fault uses it to hand out new tokens that do not advance.
    """
    fields = {"v": _TOKEN_VERSION, "u": updated_at, "o": order_id, "s": since, "b": before}
    if nonce is not None:
        fields["n"] = nonce
    body = json.dumps(fields, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_page_token(token: str, since: str | None, before: str | None) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
        if not isinstance(body, dict) or body.get("v") != _TOKEN_VERSION:
            raise ValueError("unknown version")
        cursor_ts = parse_ts(body["u"])
        order_id = body["o"]
        if not isinstance(order_id, str):
            raise ValueError("bad order id")
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("page_token is not valid: pass next_page_token from the previous response unchanged") from None
    if body.get("s") != since or body.get("b") != before:
        raise BadRequest(
            "page_token belongs to different filters: keep updated_since and updated_before the same on every page"
        )
    return cursor_ts, order_id


# ---------------------------------------------------------------------------- queries


def _parse_params(query: Any) -> dict[str, Any]:
    unknown = sorted(set(query.keys()) - QUERY_PARAMS)
    if unknown:
        raise BadRequest(f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(QUERY_PARAMS))}")
    for key in QUERY_PARAMS:
        if len(query.getlist(key)) > 1:
            raise BadRequest(f"parameter {key} given more than once")
    out: dict[str, Any] = {}
    for key in ("updated_since", "updated_before"):
        value = query.get(key)
        if value is None:
            out[key] = None
            continue
        try:
            out[key] = parse_ts(value)
        except ValueError:
            raise BadRequest(
                f"{key}={value!r} is not an ISO-8601 timestamp with a UTC offset (e.g. 2026-11-22T10:00:00Z)"
            ) from None
    if out["updated_since"] and out["updated_before"] and out["updated_since"] >= out["updated_before"]:
        raise BadRequest("updated_since must be before updated_before (the window is [updated_since, updated_before))")
    size = query.get("page_size")
    if size is None:
        out["page_size"] = DEFAULT_PAGE_SIZE
    else:
        # ASCII digits, at most 4 of them, before int(): str.isdigit() took superscript two and
        # circled one (then int() raised: a 500), Arabic-Indic and full-width digits (int() read
        # them as 12 and 5), and a 5,000-digit value (int() refuses over 4,300 digits: a 500).
        if not _PAGE_SIZE_RE.fullmatch(size) or not 1 <= int(size) <= MAX_PAGE_SIZE:
            shown = (
                f"={size!r}" if len(size) <= 40 else f" (a value of {len(size):,} characters)"
            )  # echoed whole or not
            raise BadRequest(f"page_size{shown} must be an integer from 1 to {MAX_PAGE_SIZE} (ASCII digits)")
        out["page_size"] = int(size)
    since_s = format_ts(out["updated_since"]) if out["updated_since"] else None
    before_s = format_ts(out["updated_before"]) if out["updated_before"] else None
    token = query.get("page_token")
    out["cursor"] = decode_page_token(token, since_s, before_s) if token else None
    out["since_s"], out["before_s"] = since_s, before_s
    return out


class SourceRowError(RuntimeError):
    """A source row the mapping cannot read; answered 500 with the one-line reason (fix the mapping)."""


def _mapped(mapping: SourceMapping, entity: str, row: dict[str, Any]) -> dict[str, Any]:
    out, errors, _ = mapping.row(entity, row)
    if errors:
        detail = "; ".join(f"{col}: {reason}" for col, reason in errors)
        source_key = mapping[entity].columns["order_id"]
        raise SourceRowError(f"{mapping.origin}: {entity} row with order_id={row.get(source_key)!r:.60}: {detail}")
    return out


def fetch_orders_page(db: sql.Database, params: dict[str, Any], mapping: SourceMapping | None = None) -> dict[str, Any]:
    """One page of ``GET /v1/orders`` as the response body, read through ``mapping``.

    The SQL is fixed text over the mapping's quoted identifiers (the project's own
    tables by default); every value is a bound parameter. Rows are turned into the
    project's columns by the mapping (ids, statuses, naive timestamps in its zone,
    defaults); a row it cannot read raises :class:`SourceRowError`.

    Raises:
      SourceRowError: a row of the page cannot be read through the mapping.
    """
    mapping = mapping or SourceMapping.default()
    om, lm = mapping["orders"], mapping["order_lines"]
    updated, order_id = om.qcol("updated_at"), om.qcol("order_id")
    where, bind = [], {}
    if params["updated_since"]:
        where.append(f"{updated} >= :since")
        bind["since"] = params["updated_since"]
    if params["updated_before"]:
        where.append(f"{updated} < :before")
        bind["before"] = params["updated_before"]
    if params["cursor"]:
        where.append(f"({updated} > :cursor_ts or ({updated} = :cursor_ts and {order_id} > :cursor_id))")
        bind["cursor_ts"], bind["cursor_id"] = params["cursor"]
    size = params["page_size"]
    bind["limit"] = size + 1  # one extra row tells whether another page exists
    source_rows = db.query_dicts(
        f"select {om.select_list()} from {om.qtable}"
        + (" where " + " and ".join(where) if where else "")
        + f" order by {updated}, {order_id} limit :limit",
        bind,
    )
    more = len(source_rows) > size
    source_rows = source_rows[:size]
    rows = [_mapped(mapping, "orders", r) for r in source_rows]
    lines_by_order: dict[str, list[dict[str, Any]]] = {r["order_id"]: [] for r in rows}
    if rows:
        marks = ", ".join("?" for _ in rows)
        # Without a line-number column, lines are numbered in this (deterministic) order.
        line_order = [lm.qcol(c) for c in ("order_id", "line_number", "product_id", "unit_price") if c in lm.columns]
        numbered: dict[str, int] = {}
        for source_line in db.query_dicts(
            f"select {lm.select_list()} from {lm.qtable} where {lm.qcol('order_id')} in ({marks}) "
            f"order by {', '.join(line_order)}",
            [r[om.columns["order_id"]] for r in source_rows],
        ):
            line = _mapped(mapping, "order_lines", source_line)
            number = numbered[line["order_id"]] = numbered.get(line["order_id"], 0) + 1
            unit = Decimal(line["unit_price"]).quantize(CENTS)
            lines_by_order[line["order_id"]].append(
                api_line(line["line_number"] or number, line["product_id"], line["quantity"], str(unit))
            )
    orders = []
    for r in rows:
        lines = lines_by_order[r["order_id"]]
        orders.append(
            {
                "order_id": r["order_id"],
                "user_id": r["user_id"],
                "session_id": r["session_id"],
                "status": r["status"],
                "order_ts": r["order_ts"],
                "updated_at": r["updated_at"],
                "currency": r["currency"],
                "total_amount": api_total(lines),
                "lines": lines,
            }
        )
    next_token = None
    if more:
        last = rows[-1]
        next_token = encode_page_token(last["updated_at"], last["order_id"], params["since_s"], params["before_s"])
    return {"orders": orders, "next_page_token": next_token}


def check_source(db: sql.Database, mapping: SourceMapping) -> None:
    """Refuse, in one line, a mapping the live source does not fit: tables, columns, status values.

    When the tables are the project's own (``publishers.import_files`` wrote them through
    the mapping already), the message says to serve them without ``--mapping``.
    """
    for entity in ("orders", "order_lines"):
        try:
            check_live(db, mapping, entity)
        except MappingError as exc:
            if _holds_project_tables(db):
                raise MappingError(
                    f"{exc}. These tables are the project's own (publishers.import_files wrote them, already "
                    "converted through the mapping): serve them without --mapping"
                ) from None
            raise
    om = mapping["orders"]
    if "status" not in om.columns:
        return  # statuses come from the rules and the default, both checked when the mapping was read
    values = [r[0] for r in db.query(f"select distinct {om.qcol('status')} from {om.qtable}")]
    unmapped = mapping.unmapped_statuses(values)
    if unmapped:
        raise MappingError(
            f"{mapping.origin}: orders: status value(s) {', '.join(repr(v) for v in unmapped)} in table "
            f"{om.table!r} are not mapped; add them under [statuses] (targets: {', '.join(sql.ORDER_STATUSES)})"
        )


def _holds_project_tables(db: sql.Database) -> bool:
    """Whether ``orders`` and ``order_lines`` exist with the project's own columns."""
    default = SourceMapping.default()
    for entity in ("orders", "order_lines"):
        try:
            columns = live_columns(db, default[entity])
        except MappingError:
            return False
        if not set(default[entity].entity.names) <= set(columns):
            return False
    return True


# ---------------------------------------------------------------------------- app


def create_app(
    database_url: str,
    token: str,
    *,
    fault_rate_5xx: float = 0.0,
    fault_rate_429: float = 0.0,
    slow_ms: int = 0,
    rate_limit_per_second: float = 0.0,
    fault_seed: int | None = None,
    page_fault_rates: dict[str, float] | None = None,
    mapping: SourceMapping | None = None,
) -> FastAPI:
    """The API as an ASGI app (``uvicorn`` serves it; tests can use ``TestClient``).

    ``mapping`` says how the source names its tables, columns and statuses (default:
    the project's own DDL); ``serve`` checks it against the live database first.

    ``page_fault_rates`` maps names of :data:`PAGE_FAULTS` to the fraction of
    answers that get that fault (see the module docstring).
    """
    if not token:
        raise ValueError(f"an API token is required (set {TOKEN_ENV})")
    page_fault_rates = {k: v for k, v in (page_fault_rates or {}).items() if v}
    unknown = sorted(set(page_fault_rates) - set(PAGE_FAULTS))
    if unknown:
        raise ValueError(f"unknown page fault(s) {', '.join(unknown)}; known: {', '.join(PAGE_FAULTS)}")
    rates = {"fault_rate_5xx": fault_rate_5xx, "fault_rate_429": fault_rate_429}
    rates.update({f"fault_rate_{k}": v for k, v in page_fault_rates.items()})
    for name, rate in rates.items():
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {rate}")
    sql.parse_url(database_url)  # fail now on a bad URL, not on the first request
    expected = token.encode()
    limiter = RateLimiter(rate_limit_per_second) if rate_limit_per_second > 0 else None
    faults = random.Random(fault_seed)
    state: dict[str, sql.Database] = {}
    mapping = mapping or SourceMapping.default()

    def database() -> sql.Database:
        # Opened lazily in the serving thread; handlers are async so they never run concurrently.
        if "db" not in state:
            state["db"] = connect_source(database_url, mapping)
        return state["db"]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if "db" in state:
            state.pop("db").close()

    app = FastAPI(
        title="Orders API (local)", version="1.0", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/orders")
    async def list_orders(request: Request) -> JSONResponse:
        header = request.headers.get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not supplied:
            return _error(
                401, "missing bearer token: send 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
            )
        if not hmac.compare_digest(supplied.strip().encode(), expected):
            return _error(401, "invalid bearer token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if limiter is not None:
            wait = limiter.acquire()
            if wait > 0:
                return _error(
                    429,
                    "rate limit exceeded; retry after the Retry-After seconds",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
        if fault_rate_429 and faults.random() < fault_rate_429:
            return _error(429, "injected rate limit (fault injection)", {"Retry-After": "1"})
        if fault_rate_5xx and faults.random() < fault_rate_5xx:
            return _error(503, "injected server error (fault injection)")
        try:
            params = _parse_params(request.query_params)
        except BadRequest as exc:
            return _error(400, str(exc))
        if slow_ms:
            await asyncio.sleep(slow_ms / 1000)
        try:
            body = fetch_orders_page(database(), params, mapping)
        except SourceRowError as exc:
            return _error(500, str(exc))
        drawn = [name for name in PAGE_FAULTS if name in page_fault_rates and faults.random() < page_fault_rates[name]]
        return _faulty_page(body, params, drawn[0]) if drawn else JSONResponse(body)

    return app


def _faulty_page(body: dict[str, Any], params: dict[str, Any], fault: str) -> Response:
    """A 200 answer for ``body`` that breaks the contract in the way ``fault`` names."""
    if fault == MISSING_TOKEN:
        return JSONResponse({"orders": body["orders"]})
    if fault == HTML:
        return HTMLResponse(HTML_ERROR_PAGE)
    if fault == TRUNCATED:
        # Declares the whole body and sends half: the server closes the connection
        # short of Content-Length, as a proxy dying mid-response does.
        data = json.dumps(body).encode()
        return Response(
            data[: len(data) // 2], media_type="application/json", headers={"Content-Length": str(len(data))}
        )
    # REPEAT_TOKEN: a fresh token for the position this page started from. A first
    # page has no such position, so it is served as it is.
    if params["cursor"] is None or body["next_page_token"] is None:
        return JSONResponse(body)
    cursor_ts, cursor_id = params["cursor"]
    nonce = random.getrandbits(32)
    token = encode_page_token(format_ts(cursor_ts), cursor_id, params["since_s"], params["before_s"], nonce)
    return JSONResponse({**body, "next_page_token": token})


# ---------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m publishers.orders_api",
        description="Local orders REST API (GET /v1/orders, GET /healthz) served from the SQL source.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="serve the API",
        description=f"Serve GET /v1/orders from the database. The bearer token is read from ${TOKEN_ENV}.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    serve.add_argument("--database-url", required=True, help=f"SQL source: {sql.URL_FORMATS}")
    serve.add_argument(
        "--mapping",
        type=Path,
        metavar="FILE",
        help="source mapping (.toml or .json): the orders and order_lines tables or views, their columns, "
        "status values and time zone (default: the project's own tables; docs/bring-your-own-data.md)",
    )
    serve.add_argument(
        "--fault-rate-5xx", type=fraction, default=0.0, help="fraction of authorised requests answered 503 (default 0)"
    )
    serve.add_argument(
        "--fault-rate-429",
        type=fraction,
        default=0.0,
        help="fraction of authorised requests answered 429 with Retry-After: 1 (default 0)",
    )
    for fault, what in (
        (MISSING_TOKEN, "answered without the next_page_token key"),
        (REPEAT_TOKEN, "after the first page answered with a new token that repeats the page"),
        (TRUNCATED, "answered with half the body and the whole body's Content-Length"),
        (HTML, "answered 200 with an HTML error page"),
    ):
        serve.add_argument(
            f"--fault-rate-{fault.replace('_', '-')}",
            type=fraction,
            default=0.0,
            help=f"fraction of authorised requests {what} (default 0)",
        )
    serve.add_argument("--slow-ms", type=int, default=0, help="extra latency per orders request, ms (default 0)")
    serve.add_argument(
        "--rate-limit-per-second",
        type=float,
        default=0.0,
        help="token-bucket limit on orders requests per second; 0 = unlimited (default)",
    )
    serve.add_argument("--fault-seed", type=int, default=None, help="seed for fault injection (reproducible faults)")
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="uvicorn log level (default warning)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        print(f"error: set the bearer token in the environment: export {TOKEN_ENV}=<secret>", file=sys.stderr)
        return 2
    try:
        mapping = load_mapping(args.mapping)
        with connect_source(args.database_url, mapping) as db:
            if args.mapping is not None:
                check_source(db, mapping)
            else:
                db.scalar("select count(*) from orders")
    except (sql.DatabaseURLError, ConnectionError, MappingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a missing table differs per engine (sqlite3 / psycopg errors)
        print(
            f"error: the database has no orders table ({exc}); create it with "
            "'python -m publishers.catalog load --database-url ...' first",
            file=sys.stderr,
        )
        return 2
    # Lazy: uvicorn takes ~0.45 s to import (python -X importtime); only `serve` runs a server,
    # and the tests that build the app with create_app() never need it.
    import uvicorn

    app = create_app(
        args.database_url,
        token,
        fault_rate_5xx=args.fault_rate_5xx,
        fault_rate_429=args.fault_rate_429,
        slow_ms=args.slow_ms,
        rate_limit_per_second=args.rate_limit_per_second,
        fault_seed=args.fault_seed,
        page_fault_rates={fault: getattr(args, f"fault_rate_{fault}") for fault in PAGE_FAULTS},
        mapping=mapping,
    )
    print(f"orders API on http://{args.host}:{args.port} (database {sql.redact(args.database_url)})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.log_level == "debug")
    return 0


if __name__ == "__main__":
    sys.exit(main())
