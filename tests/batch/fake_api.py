"""A tiny in-thread orders API for unit tests: the contract's pagination and faults, nothing else.

The real service (``publishers.orders_api``, fixture ``orders_api``) is used by the
integration test; this one lets unit tests script exact failures (500 then recovery,
429 with Retry-After, a non-object record) in milliseconds.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from beam_pipelines.events import parse_ts

TOKEN = "test-token"


class FakeOrdersApi:
    def __init__(
        self, orders: list[Any], faults: list[tuple[int, dict[str, str]]] | None = None, repeat_tokens: int = 0
    ):
        self.orders = orders
        self.faults = list(faults or [])  # served, in order, before any real answer
        # The first ``repeat_tokens`` answers to a page_token hand out a fresh token for
        # the same offset (``<offset>#<n>``), so the next page repeats this one.
        self.repeat_tokens = repeat_tokens
        self.requests: list[dict[str, list[str]]] = []
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlparse(self.path)
                q = parse_qs(url.query)
                with api._lock:
                    api.requests.append(q)
                    fault = api.faults.pop(0) if api.faults else None
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"error": "unauthorized"})
                if fault:
                    return self._send(fault[0], {"error": "injected"}, fault[1])
                since, before = parse_ts(q["updated_since"][0]), parse_ts(q["updated_before"][0])
                size = int(q["page_size"][0])
                token = q.get("page_token", ["0"])[0]
                offset = int(token.split("#")[0])
                match = [
                    o for o in api.orders if not isinstance(o, dict) or since <= parse_ts(o["updated_at"]) < before
                ]
                # Non-object records are served in the first range only, once.
                if since != api.first_since:
                    match = [o for o in match if isinstance(o, dict)]
                page = match[offset : offset + size]
                nxt = str(offset + size) if offset + size < len(match) else None
                with api._lock:
                    if nxt and "page_token" in q and api.repeat_tokens > 0:
                        api.repeat_tokens -= 1
                        nxt = f"{offset}#{api.repeat_tokens}"
                return self._send(200, {"orders": page, "next_page_token": nxt})

        self.first_since = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeOrdersApi:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_order(
    order_id: str,
    updated_at: str,
    *,
    order_ts: str | None = None,
    status: str = "paid",
    user_id: str = "1",
    lines: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    lines = (
        lines
        if lines is not None
        else [{"line_number": 1, "product_id": "101", "quantity": 2, "unit_price": "10.00", "amount": "20.00"}]
    )
    return {
        "order_id": order_id,
        "user_id": user_id,
        "session_id": f"s-{order_id}",
        "status": status,
        "order_ts": order_ts or updated_at,
        "updated_at": updated_at,
        "currency": "USD",
        "total_amount": "20.00",
        "lines": lines,
    }
