"""A counting HTTP forwarder: put it in front of a local service to count the requests a job makes.

``CountingProxy(upstream)`` listens on a free loopback port and forwards every GET (path,
query string and headers) to ``upstream``, answering with the upstream's status, body
and ``Content-Type`` / ``Retry-After`` headers. It counts requests per path
(``counts``) and keeps each query string (``queries``), so a test or a benchmark can say
how many API requests a job made without touching the server. Used by
``benchmarks/extract_orders_paging.py`` and the paging test of the orders extract.

It reads the upstream body in full before answering: transport faults of the server
(a body cut short) are not forwarded faithfully, so count through it only without them.

Use::

    with CountingProxy("http://127.0.0.1:8080") as proxy:
        run_job(api_base_url=proxy.url)
        print(proxy.counts["/v1/orders"])
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import requests

_FORWARDED_HEADERS = ("Content-Type", "Retry-After")


class CountingProxy:
    """Forward GETs to ``upstream`` (``http://host:port``) and count them by path."""

    def __init__(self, upstream: str, host: str = "127.0.0.1"):
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"upstream must look like http(s)://host[:port], got {upstream!r}")
        self.upstream = f"{parts.scheme}://{parts.netloc}"
        self.counts: Counter[str] = Counter()
        self.queries: list[str] = []
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server calls do_<METHOD>
                path, _, query = self.path.partition("?")
                with proxy._lock:
                    proxy.counts[path] += 1
                    proxy.queries.append(query)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept")}
                resp = proxy._session.get(proxy.upstream + self.path, headers=headers, timeout=60)
                body = resp.content
                self.send_response(resp.status_code)
                for name in _FORWARDED_HEADERS:
                    if name in resp.headers:
                        self.send_header(name, resp.headers[name])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:  # the counts are the record
                return

        return Handler

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.queries.clear()

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._session.close()
