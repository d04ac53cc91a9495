"""Warn while a local streaming job cannot reach Pub/Sub or BigQuery, and say when they are back.

The local runner's Pub/Sub reader and BigQuery writer retry a dead endpoint quietly:
with the emulator gone the job just stops moving, and nothing says why. A
:class:`ServiceWatch` probes each endpoint the job uses with a TCP connect every
few seconds, in a daemon thread of the job's own process, and logs

* ``WARNING <service> at <host:port> is unreachable (<reason>)`` when it goes away,
  and ``... is still unreachable after <n> s`` every ``repeat_seconds`` while it stays away;
* ``INFO <service> at <host:port> is reachable again after <n> s`` when it is back.

A TCP connect is the cheapest probe that tells "process gone" (refused) or "host
unreachable" (timeout) apart from "up"; it does not claim the service is healthy.
On Dataflow the workers, not the launcher, talk to the services (and Dataflow
reports their errors), so :func:`watch_while_running` only watches local runs.

Hook (one line in ``beam_pipelines/streaming.py``)::

    return service_watch.watch_while_running(p.run(), options)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState

from beam_pipelines import runners
from bigquery_schemas.client import EMULATOR_ENV

PUBSUB_EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"
PUBSUB_DEFAULT = "pubsub.googleapis.com:443"
BIGQUERY_DEFAULT = "bigquery.googleapis.com:443"

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """A service the job talks to, and where."""

    service: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, service: str, value: str) -> Endpoint:
        """``host:port`` or ``http(s)://host:port[/...]`` (the emulator variables' forms)."""
        hostport = value.split("://", 1)[-1].split("/", 1)[0]
        host, sep, port = hostport.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"{service} address must look like host:port or http://host:port, got {value!r}")
        return cls(service, host, int(port))


def streaming_endpoints(env: Mapping[str, str] | None = None) -> list[Endpoint]:
    """Pub/Sub and BigQuery as this process reaches them (the emulators when their variables are set)."""
    env = os.environ if env is None else env
    return [
        Endpoint.parse("Pub/Sub", env.get(PUBSUB_EMULATOR_ENV) or PUBSUB_DEFAULT),
        Endpoint.parse("BigQuery", env.get(EMULATOR_ENV) or BIGQUERY_DEFAULT),
    ]


def tcp_probe(endpoint: Endpoint, timeout: float = 2.0) -> str | None:
    """None when ``endpoint`` accepts a TCP connection, else why not."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


class ServiceWatch:
    """Probes endpoints and logs each change between reachable and unreachable.

    Args:
      endpoints: what to probe.
      probe: ``endpoint -> None or reason`` (default a TCP connect).
      repeat_seconds: how often to warn again while an endpoint stays unreachable.
      clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        endpoints: list[Endpoint],
        probe: Callable[[Endpoint], str | None] = tcp_probe,
        repeat_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.endpoints = list(endpoints)
        self._probe = probe
        self._repeat = repeat_seconds
        self._clock = clock
        self._down_since: dict[Endpoint, float] = {}
        self._warned_at: dict[Endpoint, float] = {}

    def check_once(self) -> None:
        for endpoint in self.endpoints:
            reason = self._probe(endpoint)
            now = self._clock()
            if reason is None:
                if endpoint in self._down_since:
                    down_for = now - self._down_since.pop(endpoint)
                    self._warned_at.pop(endpoint, None)
                    _LOG.info("%s at %s is reachable again after %.0f s", endpoint.service, endpoint.address, down_for)
                continue
            if endpoint not in self._down_since:
                self._down_since[endpoint] = self._warned_at[endpoint] = now
                _LOG.warning(
                    "%s at %s is unreachable (%s); the job waits and retries",
                    endpoint.service,
                    endpoint.address,
                    reason,
                )
            elif now - self._warned_at[endpoint] >= self._repeat:
                self._warned_at[endpoint] = now
                _LOG.warning(
                    "%s at %s is still unreachable after %.0f s (%s)",
                    endpoint.service,
                    endpoint.address,
                    now - self._down_since[endpoint],
                    reason,
                )

    def run(self, stop: Callable[[], bool], interval: float = 5.0) -> None:
        """Check every ``interval`` seconds until ``stop()`` is true."""
        while not stop():
            self.check_once()
            time.sleep(interval)


def watch_while_running(result, options: PipelineOptions):
    """Start :func:`start_watch` for a running job and return ``result`` unchanged."""
    start_watch(result, options)
    return result


def start_watch(result, options: PipelineOptions, interval: float = 5.0) -> threading.Thread | None:
    """Watch Pub/Sub and BigQuery in a daemon thread until ``result`` reaches a terminal state.

    Returns the thread, or None when the job does not run in this process (Dataflow).
    """
    if not runners.allows(options, runners.LocalStep.SERVICE_WATCH):
        return None
    watch = ServiceWatch(streaming_endpoints())

    def finished() -> bool:
        return PipelineState.is_terminal(result.state)

    thread = threading.Thread(target=watch.run, args=(finished, interval), name="service-watch", daemon=True)
    thread.start()
    return thread
