"""The streaming job's service watch: a warning with the address while a service is gone, a line when it is back.

Probed over real loopback sockets: a listener that is closed and opened again on
the same port stands in for an emulator that dies and is restarted there.
"""

from __future__ import annotations

import logging
import socket
import threading

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState

from beam_pipelines import service_watch
from beam_pipelines.service_watch import Endpoint, ServiceWatch, streaming_endpoints


def _listen(port: int = 0) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_endpoints_come_from_the_emulator_variables_or_the_google_apis():
    local = streaming_endpoints(
        {"PUBSUB_EMULATOR_HOST": "127.0.0.1:8085", "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9050"}
    )
    assert [(e.service, e.address) for e in local] == [("Pub/Sub", "127.0.0.1:8085"), ("BigQuery", "127.0.0.1:9050")]
    cloud = streaming_endpoints({})
    assert [e.address for e in cloud] == ["pubsub.googleapis.com:443", "bigquery.googleapis.com:443"]
    with pytest.raises(ValueError, match="host:port"):
        Endpoint.parse("Pub/Sub", "localhost")


def test_warns_with_the_address_while_unreachable_and_says_when_it_is_back(caplog):
    server = _listen()
    port = server.getsockname()[1]
    endpoint = Endpoint("Pub/Sub", "127.0.0.1", port)
    now = [0.0]
    watch = ServiceWatch([endpoint], repeat_seconds=60, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger=service_watch.__name__):
        watch.check_once()
        assert caplog.records == []  # up: nothing to say
        server.close()
        watch.check_once()
        now[0] = 30.0
        watch.check_once()  # still down, but warned less than a minute ago
        now[0] = 61.0
        watch.check_once()  # still down: said again
        server = _listen(port)
        now[0] = 75.0
        watch.check_once()
        watch.check_once()  # up again: said once
    server.close()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "WARNING", "INFO"]
    assert lines[0][1].startswith(f"Pub/Sub at 127.0.0.1:{port} is unreachable (ConnectionRefusedError")
    assert lines[1][1].startswith(f"Pub/Sub at 127.0.0.1:{port} is still unreachable after 61 s (")
    assert lines[2][1] == f"Pub/Sub at 127.0.0.1:{port} is reachable again after 75 s"


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
