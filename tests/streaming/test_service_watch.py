"""The streaming job's service watch: a warning with the address while a service is gone or
frozen, a line when it is back.

Probed over real loopback sockets: an HTTP server that is closed and opened again on the
same port stands in for an emulator that dies and is restarted there, and a socket that
listens but never answers for one that is stopped (SIGSTOP) or stuck.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState

from beam_pipelines import service_watch
from beam_pipelines.service_watch import Endpoint, ServiceWatch, http_probe, streaming_endpoints


def _listen(port: int = 0) -> socket.socket:
    """A socket that accepts connections (in the kernel) and never answers: a frozen service."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(404)  # any HTTP answer means "answering", as Google's APIs answer "/"
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args):
        return


def _serve(port: int = 0) -> ThreadingHTTPServer:
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", port), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _stop(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def test_endpoints_come_from_the_emulator_variables_or_the_google_apis():
    local = streaming_endpoints(
        {"PUBSUB_EMULATOR_HOST": "127.0.0.1:8085", "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9050"}
    )
    assert [(e.service, e.address, e.scheme) for e in local] == [
        ("Pub/Sub", "127.0.0.1:8085", "http"),
        ("BigQuery", "127.0.0.1:9050", "http"),
    ]
    cloud = streaming_endpoints({}, lake_root="gs://acme-lake/prod")
    assert [(e.address, e.scheme) for e in cloud] == [
        ("pubsub.googleapis.com:443", "https"),
        ("bigquery.googleapis.com:443", "https"),
        ("storage.googleapis.com:443", "https"),
    ]
    gcs = streaming_endpoints({"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9023"}, lake_root="gs://b/lake")
    assert gcs[-1] == Endpoint("Cloud Storage", "127.0.0.1", 9023)
    assert len(streaming_endpoints({}, lake_root="/data/lake")) == 2  # a folder lake: nothing more to watch
    with pytest.raises(ValueError, match="host:port"):
        Endpoint.parse("Pub/Sub", "localhost")


def test_warns_with_the_address_while_gone_or_frozen_and_says_when_it_is_back(caplog):
    server = _serve()
    port = server.server_address[1]
    endpoint = Endpoint("BigQuery", "127.0.0.1", port)
    now = [0.0]
    watch = ServiceWatch(
        [endpoint], probe=lambda e: http_probe(e, timeout=0.3), repeat_seconds=60, clock=lambda: now[0]
    )
    with caplog.at_level(logging.INFO, logger=service_watch.__name__):
        watch.check_once()
        assert caplog.records == []  # up: nothing to say
        _stop(server)
        watch.check_once()
        now[0] = 30.0
        watch.check_once()  # still down, but warned less than a minute ago
        frozen = _listen(port)  # back, but it accepts connections and never answers
        now[0] = 61.0
        watch.check_once()  # still down: said again
        frozen.close()
        server = _serve(port)
        now[0] = 75.0
        watch.check_once()
        watch.check_once()  # up again: said once
        _stop(server)
        frozen = _listen(port)  # a service that freezes while the job runs
        now[0] = 80.0
        watch.check_once()
        frozen.close()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "WARNING", "INFO", "WARNING"]
    assert lines[0][1].startswith(f"BigQuery at 127.0.0.1:{port} is unreachable (ConnectionRefusedError")
    assert lines[1][1] == f"BigQuery at 127.0.0.1:{port} is still unreachable after 61 s (no answer within 0.3 s)"
    assert lines[2][1] == f"BigQuery at 127.0.0.1:{port} is reachable again after 75 s"
    assert lines[3][1].startswith(f"BigQuery at 127.0.0.1:{port} is unreachable (no answer within 0.3 s)")


class _Result:
    def __init__(self):
        self.state = PipelineState.RUNNING


def test_the_watch_runs_in_local_runs_until_the_job_ends(monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:9")
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "http://127.0.0.1:9")
    result = _Result()
    thread = service_watch.start_watch(result, PipelineOptions(["--runner=BundleBasedDirectRunner"]), interval=0.05)
    assert isinstance(thread, threading.Thread) and thread.daemon and thread.is_alive()
    result.state = PipelineState.CANCELLED
    thread.join(timeout=5)
    assert not thread.is_alive()
    # On Dataflow the workers talk to the services: nothing to watch in the launcher.
    assert service_watch.start_watch(result, PipelineOptions(["--runner=DataflowRunner"])) is None
    assert service_watch.watch_while_running(result, PipelineOptions(["--runner=DataflowRunner"])) is result
