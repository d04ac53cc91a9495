"""Warn while a local streaming job cannot reach Pub/Sub, BigQuery or Cloud Storage, and say when they are back.

The local runner's Pub/Sub reader and BigQuery writer retry a dead endpoint quietly:
with the emulator gone the job just stops moving, and nothing says why. A
:class:`ServiceWatch` probes each endpoint the job uses every :data:`PROBE_INTERVAL_SECONDS`,
in a daemon thread of the job's own process, and logs

* ``WARNING <service> at <host:port> is unreachable (<reason>)`` when it goes away,
  and ``... is still unreachable after <n> s`` every ``repeat_seconds`` while it stays away;
* ``INFO <service> at <host:port> is reachable again after <n> s`` when it is back.

The probe is one HTTP request (any HTTP answer, even 404, means "answering"): a process
that is gone refuses the connection, and one that is frozen (stopped, or stuck) accepts
it in the kernel and then never answers, which a TCP connect alone took for "up" (a
BigQuery emulator stopped for 30 s gave no line at all). So a service that stops
answering is reported within :data:`WARN_WITHIN_SECONDS` (10 s: the interval plus the
probe's timeout, and a margin). It does not claim the service is healthy. Cloud Storage is watched when the
lake is on ``gs://``.

On Dataflow the workers, not the launcher, talk to the services (and Dataflow
reports their errors), so :func:`watch_while_running` only watches local runs.

Hook (one line in ``beam_pipelines/streaming.py``)::

    return service_watch.watch_while_running(p.run(), options, lake_root)
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState

from beam_pipelines import runners
from bigquery_schemas.client import EMULATOR_ENV

PUBSUB_EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"
STORAGE_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
PUBSUB_DEFAULT = "https://pubsub.googleapis.com:443"
BIGQUERY_DEFAULT = "https://bigquery.googleapis.com:443"
STORAGE_DEFAULT = "https://storage.googleapis.com:443"
PROBE_INTERVAL_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 2.0
# The documented bound: a service that stopped answering is reported within this many
# seconds (one interval plus the probe's timeout is 7 s; measured 7.0 s against a
# SIGSTOPped BigQuery emulator; the rest is margin for a loaded machine).
WARN_WITHIN_SECONDS = 10.0

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """A service the job talks to, and where."""

    service: str
    host: str
    port: int
    scheme: str = "http"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, service: str, value: str) -> Endpoint:
        """``host:port`` (plain HTTP, as the emulator variables give it) or ``http(s)://host:port[/...]``."""
        scheme, sep, rest = value.partition("://")
        scheme, rest = (scheme, rest) if sep else ("http", value)
        hostport = rest.split("/", 1)[0]
        host, sep, port = hostport.rpartition(":")
        if not sep or not port.isdigit() or scheme not in ("http", "https"):
            raise ValueError(f"{service} address must look like host:port or http://host:port, got {value!r}")
        return cls(service, host, int(port), scheme)


def streaming_endpoints(env: Mapping[str, str] | None = None, lake_root: str | None = None) -> list[Endpoint]:
    """Pub/Sub, BigQuery and (for a ``gs://`` lake) Cloud Storage as this process reaches them."""
    env = os.environ if env is None else env
    endpoints = [
        Endpoint.parse("Pub/Sub", env.get(PUBSUB_EMULATOR_ENV) or PUBSUB_DEFAULT),
        Endpoint.parse("BigQuery", env.get(EMULATOR_ENV) or BIGQUERY_DEFAULT),
    ]
    if lake_root and lake_root.startswith("gs://"):
        endpoints.append(Endpoint.parse("Cloud Storage", env.get(STORAGE_EMULATOR_ENV) or STORAGE_DEFAULT))
    return endpoints


def http_probe(endpoint: Endpoint, timeout: float = PROBE_TIMEOUT_SECONDS) -> str | None:
    """None when ``endpoint`` answers an HTTP request (any status) within ``timeout``, else why not."""
    conn_cls = http.client.HTTPSConnection if endpoint.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(endpoint.host, endpoint.port, timeout=timeout)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


class ServiceWatch:
    """Probes endpoints and logs each change between reachable and unreachable.

    Args:
      endpoints: what to probe.
      probe: ``endpoint -> None or reason`` (default one HTTP request, :func:`http_probe`).
      repeat_seconds: how often to warn again while an endpoint stays unreachable.
      clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        endpoints: list[Endpoint],
        probe: Callable[[Endpoint], str | None] = http_probe,
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

    def run(self, stop: Callable[[], bool], interval: float = PROBE_INTERVAL_SECONDS) -> None:
        """Check every ``interval`` seconds until ``stop()`` is true."""
        while not stop():
            self.check_once()
            time.sleep(interval)


def watch_while_running(result, options: PipelineOptions, lake_root: str | None = None):
    """Start :func:`start_watch` for a running job and return ``result`` unchanged."""
    start_watch(result, options, lake_root=lake_root)
    return result


def start_watch(
    result, options: PipelineOptions, interval: float = PROBE_INTERVAL_SECONDS, lake_root: str | None = None
) -> threading.Thread | None:
    """Watch Pub/Sub, BigQuery and a ``gs://`` lake in a daemon thread until ``result`` reaches a terminal state.

    Returns the thread, or None when the job does not run in this process (Dataflow).
    """
    if not runners.allows(options, runners.LocalStep.SERVICE_WATCH):
        return None
    watch = ServiceWatch(streaming_endpoints(lake_root=lake_root))

    def finished() -> bool:
        return PipelineState.is_terminal(result.state)

    thread = threading.Thread(target=watch.run, args=(finished, interval), name="service-watch", daemon=True)
    thread.start()
    return thread
