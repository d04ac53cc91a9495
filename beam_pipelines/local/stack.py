"""The whole local stack as one object, with its state kept in ``.local/stack/state.json``.

``up`` is idempotent: services that are already running and healthy are reused,
dead ones are restarted on the ports recorded for them (a running streaming job or
publisher keeps the address it was given, so a service that came back on a new port
would stay unreachable to it). ``down`` stops everything this stack started and
forgets the ports; the data stays, as it does on Google Cloud: the BigQuery emulator's
tables and rows (``.local/stack/bigquery/``), the Cloud Storage emulator's objects
(``.local/stack/gcs/``), the lake and the SQL source. ``wipe`` stops the stack and
deletes that data.

**Subscriptions.** The Pub/Sub emulator keeps topics and subscriptions in memory: after
it restarts, every subscription is gone and a job reading one gets ``NotFound``. The
stack therefore records every subscription it sees on its emulator, with its topic and
ack deadline, in ``.local/stack/subscriptions.json``: at ``up`` and ``status``, and when a
streaming job starts against it (:func:`remember_subscriptions`). ``up`` recreates every
recorded subscription that is missing (and its topic), not only ``user-events-sub``.
The file outlives ``down``, so a fresh stack gets them back too; ``wipe`` forgets them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beam_pipelines.local.processes import StackError, stop_process
from beam_pipelines.local.pubsub_admin import ensure_subscription, list_subscriptions, restore_subscription
from beam_pipelines.local.services import (
    ServiceInfo,
    start_bigquery,
    start_orders_api,
    start_pubsub,
    start_storage,
)
from bigquery_schemas.client import make_client
from bigquery_schemas.ddl import ensure_all

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = PROJECT_ROOT / ".local"
STACK_DIR_ENV = "LOCAL_STACK_DIR"
"""Set by ``local env``: the stack's state folder, where a job records the subscription it reads."""
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackConfig:
    """Names used on the local stack. None of them is a real GCP resource."""

    root: Path = DEFAULT_ROOT
    project: str = "local-ecommerce"
    dataset: str = "ecommerce"
    topic: str = "user-events"
    subscription: str = "user-events-sub"
    bucket: str = "local-ecommerce-temp"
    database_url: str | None = None  # default: SQLite file under root

    @property
    def state_dir(self) -> Path:
        return self.root / "stack"

    @property
    def lake_dir(self) -> Path:
        return self.root / "lake"

    @property
    def bigquery_dir(self) -> Path:
        """The BigQuery emulator's DuckDB file: datasets, tables and rows survive ``down`` / ``up``."""
        return self.state_dir / "bigquery"

    @property
    def gcs_dir(self) -> Path:
        """The storage emulator's objects, which the BigQuery emulator's load jobs read too."""
        return self.state_dir / "gcs"

    @property
    def sqlite_url(self) -> str:
        return f"sqlite:///{self.root / 'source.db'}"

    @property
    def source_url(self) -> str:
        return self.database_url or self.sqlite_url


ServiceStarter = Callable[[StackConfig, "dict[str, int] | None"], ServiceInfo]
"""(config, recorded ports or None) -> the started service."""

SERVICES: dict[str, ServiceStarter] = {
    "pubsub": lambda c, ports: start_pubsub(c.state_dir, c.project, ports),
    "bigquery": lambda c, ports: start_bigquery(
        c.state_dir,
        c.project,
        c.root,
        ports,
        gcs_dir=c.gcs_dir,
        persistent_dir=c.bigquery_dir,
        time_travel_copies=False,
    ),
    "storage": lambda c, ports: start_storage(c.state_dir, c.bucket, ports, data_dir=c.gcs_dir),
    "orders_api": lambda c, ports: start_orders_api(c.state_dir, c.source_url, ports=ports),
}


class LocalStack:
    def __init__(self, config: StackConfig | None = None):
        self.config = config or StackConfig()
        self.state_file = self.config.state_dir / "state.json"
        self.subscriptions_file = self.config.state_dir / "subscriptions.json"

    # ------------------------------------------------------------------ state
    def load(self) -> dict[str, ServiceInfo]:
        if not self.state_file.exists():
            return {}
        raw = json.loads(self.state_file.read_text())
        return {name: ServiceInfo(**info) for name, info in raw.get("services", {}).items()}

    def _save(self, services: dict[str, ServiceInfo]) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "config": {k: str(v) for k, v in self.config.__dict__.items()},
            "services": {n: s.to_json() for n, s in services.items()},
        }
        self.state_file.write_text(json.dumps(payload, indent=2))

    # ------------------------------------------------------------------ lifecycle
    def up(self, services: list[str] | None = None, progress: Callable[[str], None] = print) -> dict[str, ServiceInfo]:
        """Start what is not running yet and create the topic, subscription, dataset and tables."""
        wanted = services or list(SERVICES)
        unknown = set(wanted) - set(SERVICES)
        if unknown:
            raise StackError(f"unknown service(s) {sorted(unknown)}; choose from {sorted(SERVICES)}")
        running = self.load()
        self.config.lake_dir.mkdir(parents=True, exist_ok=True)
        for name in wanted:
            info = running.get(name)
            if info and info.alive():
                if not self._outdated(name, info):
                    progress(f"  {name:10s} already running (pid {info.pid})")
                    continue
                progress(
                    f"  {name:10s} was started by an older version (without the shared GCS folder or its "
                    f"data folder); restarting on {info.describe_endpoints()} ..."
                )
                stop_process(info.pid)
            elif info:
                progress(f"  {name:10s} died (pid {info.pid}); restarting on {info.describe_endpoints()} ...")
            else:
                progress(f"  {name:10s} starting ...")
            running[name] = SERVICES[name](self.config, info.ports() if info else None)
            self._save(running)
            progress(f"  {name:10s} up: {running[name].describe_endpoints()}")
        self._save(running)
        if "pubsub" in running:
            host = running["pubsub"].env["PUBSUB_EMULATOR_HOST"]
            ensure_subscription(self.config.project, self.config.topic, self.config.subscription, host)
            restored = self.restore_subscriptions(host)
            known = [r["subscription"].rsplit("/", 1)[-1] for r in self.remember_subscriptions(host)]
            progress(
                f"  pubsub     topic {self.config.topic}, subscriptions {', '.join(sorted(known))}"
                + (f" (recreated: {', '.join(restored)})" if restored else "")
            )
        if "bigquery" in running:
            client = make_client(self.config.project, running["bigquery"].endpoints["rest"])
            results = ensure_all(client, self.config.dataset)
            progress(
                f"  bigquery   dataset {self.config.dataset}: "
                + ", ".join(f"{r.table_id.split('.')[-1]} {r.action}" for r in results)
            )
        return running

    def _outdated(self, name: str, info: ServiceInfo) -> bool:
        """A running emulator started differently: not sharing ``gcs_dir`` (staging load jobs could not read
        its files), or a BigQuery emulator in memory (its tables would be lost at the next ``down``) or
        copying each table after each write (``bqemulator_main``)."""
        wanted = {
            "bigquery": {"gcs_dir": str(self.config.gcs_dir), "data_dir": str(self.config.bigquery_dir),
                         "time_travel_copies": False},
            "storage": {"data_dir": str(self.config.gcs_dir)},
        }.get(name, {})  # fmt: skip
        return any(info.extra.get(key) != value for key, value in wanted.items())

    # ------------------------------------------------------------------ subscriptions
    def known_subscriptions(self) -> list[dict[str, Any]]:
        """The recorded subscriptions (``subscription``, ``topic``, ``ack_deadline_seconds``)."""
        if not self.subscriptions_file.exists():
            return []
        return json.loads(self.subscriptions_file.read_text()).get("subscriptions", [])

    def remember_subscriptions(self, host: str) -> list[dict[str, Any]]:
        """Record every subscription of the project on the emulator at ``host``; return all recorded."""
        records = {r["subscription"]: r for r in self.known_subscriptions()}
        records.update({r["subscription"]: r for r in list_subscriptions(self.config.project, host)})
        ordered = [records[name] for name in sorted(records)]
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        # Written whole and renamed: a job and `up` may record at the same moment.
        partial = self.subscriptions_file.with_name(f"{self.subscriptions_file.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"subscriptions": ordered}, indent=2))
        partial.replace(self.subscriptions_file)
        return ordered

    def restore_subscriptions(self, host: str) -> list[str]:
        """Recreate every recorded subscription missing on the emulator at ``host``; return their names."""
        return [
            r["subscription"].rsplit("/", 1)[-1] for r in self.known_subscriptions() if restore_subscription(r, host)
        ]

    def down(self, progress: Callable[[str], None] = print) -> None:
        for name, info in self.load().items():
            if info.alive():
                stop_process(info.pid)
                progress(f"  {name:10s} stopped (pid {info.pid})")
            else:
                progress(f"  {name:10s} was not running")
        if self.state_file.exists():
            self.state_file.unlink()

    def wipe(self, progress: Callable[[str], None] = print) -> list[Path]:
        """Stop the stack and delete its data: emulator state (BigQuery tables, Cloud Storage objects,
        Pub/Sub messages, logs, the API token), the lake and the SQLite source. The DuckDB
        extensions stay (``duckdb-home``: the emulator cannot start offline without them)."""
        self.down(progress)
        root = self.config.root
        targets = [self.config.state_dir, self.config.lake_dir, root / "source.db", *root.glob("demo-*")]
        removed = []
        for path in targets:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            removed.append(path)
            progress(f"  removed {path}")
        return removed

    def status(self) -> list[dict[str, Any]]:
        rows = []
        running = self.load()
        pubsub = running.get("pubsub")
        if pubsub and pubsub.alive():
            try:
                self.remember_subscriptions(pubsub.env["PUBSUB_EMULATOR_HOST"])
            except Exception as exc:  # status must answer even when the emulator does not
                _LOG.warning("could not list the Pub/Sub emulator's subscriptions: %s", exc)
        for name in SERVICES:
            info = running.get(name)
            state = "running" if info and info.alive() else ("crashed" if info else "stopped")
            rows.append(
                {
                    "service": name,
                    "state": state,
                    "pid": info.pid if info else "-",
                    "endpoints": info.describe_endpoints() if info else "-",
                    "log": info.log if info else "-",
                }
            )
        return rows

    def env(self, services: dict[str, ServiceInfo] | None = None) -> dict[str, str]:
        """Environment variables that point clients and jobs at the running services."""
        env = {
            "GOOGLE_CLOUD_PROJECT": self.config.project,
            "NO_GCE_CHECK": "true",
            "LOCAL_LAKE_DIR": str(self.config.lake_dir),
            "SOURCE_DATABASE_URL": self.config.source_url,
            STACK_DIR_ENV: str(self.config.state_dir),
        }
        for info in (services if services is not None else self.load()).values():
            env.update(info.env)
        return env


def remember_subscriptions(env: dict[str, str] | None = None) -> list[dict[str, Any]] | None:
    """Record the emulator's subscriptions in the stack whose state folder ``$LOCAL_STACK_DIR`` names.

    Called by a streaming job that starts against the local stack, so that ``up`` can
    recreate its subscription after an emulator restart. Does nothing (None) unless the
    job's ``PUBSUB_EMULATOR_HOST`` is that stack's emulator.
    """
    env = os.environ if env is None else env
    state_dir, host = env.get(STACK_DIR_ENV), env.get("PUBSUB_EMULATOR_HOST")
    if not state_dir or not host:
        return None
    root = Path(state_dir).parent
    state = root / "stack" / "state.json"
    project = json.loads(state.read_text()).get("config", {}).get("project") if state.exists() else None
    stack = LocalStack(StackConfig(root=root, project=project or StackConfig.project))
    pubsub = stack.load().get("pubsub")
    if pubsub is None or pubsub.env.get("PUBSUB_EMULATOR_HOST") != host:
        return None
    return stack.remember_subscriptions(host)
