"""The emulators of the local stack, each one class: how to start it, probe it, reach it.

Each service starts on free loopback ports and describes itself as a
:class:`ServiceInfo`: its pid, endpoints and the environment variables that point
clients at it (``PUBSUB_EMULATOR_HOST``, ``BIGQUERY_EMULATOR_HOST``,
``STORAGE_EMULATOR_HOST``). Every starter also takes the ports a previous start
recorded (``ServiceInfo.ports()``): a service restarted after it died must come back
where running jobs and publishers still send their requests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from beam_pipelines.local.processes import (
    LOOPBACK,
    StackError,
    free_port,
    http_ok,
    pid_alive,
    port_free,
    start_process,
)
from bigquery_schemas.client import EMULATOR_ENV, EMULATOR_GRPC_ENV

TEMP_LOCATION_ENV = "LOCAL_TEMP_GCS_LOCATION"
"""A ``gs://`` folder on the storage emulator for the jobs' temp files (the hourly job's staging loads)."""


@dataclass
class ServiceInfo:
    name: str
    pid: int
    endpoints: dict[str, str]
    env: dict[str, str]
    log: str
    extra: dict[str, Any] = field(default_factory=dict)

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def ports(self) -> dict[str, int]:
        """The port of each endpoint (``{"rest": 9050, "grpc": 9060}``), to restart on."""
        return {name: int(url.rsplit(":", 1)[1].split("/", 1)[0]) for name, url in self.endpoints.items()}

    def describe_endpoints(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.endpoints.items())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- Pub/Sub


def pubsub_launcher() -> Path:
    """Path of the official emulator's launcher, or a StackError saying how to install it."""
    gcloud = shutil.which("gcloud")
    if not gcloud:
        raise StackError(
            "The Google Cloud CLI is not installed (no 'gcloud' on PATH). Install it "
            "(https://cloud.google.com/sdk/docs/install, or Debian package google-cloud-cli) "
            "and the emulator: gcloud components install pubsub-emulator "
            "(Debian: apt-get install google-cloud-cli-pubsub-emulator)."
        )
    if not shutil.which("java"):
        raise StackError(
            "The Pub/Sub emulator needs Java 17+ and 'java' is not on PATH: apt-get install openjdk-17-jre-headless"
        )
    try:
        root = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        raise StackError(f"'gcloud info' failed ({exc}); check the Google Cloud CLI installation.") from None
    launcher = Path(root) / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    if not launcher.exists():
        raise StackError(
            f"The Pub/Sub emulator component is missing ({launcher} not found). Install it with "
            "'gcloud components install pubsub-emulator' or 'apt-get install google-cloud-cli-pubsub-emulator'."
        )
    return launcher


def _port(recorded: dict[str, int] | None, endpoint: str, service: str) -> int:
    """The recorded port of ``endpoint`` when it is free again, a free one when none was recorded."""
    port = (recorded or {}).get(endpoint)
    if port is None:
        return free_port()
    deadline = time.monotonic() + 5
    while not port_free(port) and time.monotonic() < deadline:
        time.sleep(0.1)  # a server that just died may hold its socket a moment longer
    if not port_free(port):
        raise StackError(
            f"{service}: port {port}, where it ran before (recorded in state.json), is taken by another "
            "process; clients still point there. Stop that process, or run 'down' then 'up' for new ports."
        )
    return port


def start_pubsub(state_dir: Path, project: str, ports: dict[str, int] | None = None) -> ServiceInfo:
    port = _port(ports, "grpc", "pubsub")
    launcher = pubsub_launcher()
    data_dir = state_dir / "pubsub-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://{LOOPBACK}:{port}"
    proc = start_process(
        "pubsub-emulator",
        [str(launcher), f"--host={LOOPBACK}", f"--port={port}", f"--data-dir={data_dir}"],
        state_dir / "logs" / "pubsub-emulator.log",
        ready=lambda: http_ok(url),
        timeout=60,
        hint="The official emulator needs Java 17+ (java -version).",
    )
    host = f"{LOOPBACK}:{port}"
    return ServiceInfo(
        "pubsub",
        proc.pid,
        {"grpc": host},
        {"PUBSUB_EMULATOR_HOST": host, "PUBSUB_PROJECT_ID": project},
        str(proc.log_path),
    )


# --------------------------------------------------------------------------- BigQuery


def duckdb_home(root: Path) -> Path:
    """HOME for the BigQuery emulator: DuckDB looks for its extensions under ~/.duckdb."""
    return root / "duckdb-home"


def install_duckdb_extensions(root: Path) -> list[Path]:
    """Install DuckDB's spatial and avro extensions from their PyPI wheels, offline.

    bqemulator runs ``INSTALL spatial`` at boot, which downloads the extension
    unless it is already in ``$HOME/.duckdb``; we install it there from the
    ``duckdb-extension-*`` wheels so start-up never touches the network.
    """
    import duckdb  # local-stack dependency only

    version = duckdb.__version__
    home = duckdb_home(root)
    installed = []
    for ext in ("spatial", "avro"):
        module = __import__(f"duckdb_extension_{ext}")
        source = Path(module.__file__).parent / "extensions" / f"v{version}" / f"{ext}.duckdb_extension"
        if not source.exists():
            raise StackError(
                f"DuckDB extension file {source} not found: install duckdb-extension-{ext}=={version} "
                "(pinned in requirements.lock; run 'make venv')."
            )
        target_dir = home / ".duckdb" / "extensions" / f"v{version}"
        if not any(target_dir.glob(f"*/{ext}.duckdb_extension")):
            con = duckdb.connect(config={"extension_directory": str(home / ".duckdb" / "extensions")})
            con.execute(f"INSTALL '{source}'")
            con.close()
        installed.extend(target_dir.glob(f"*/{ext}.duckdb_extension"))
    return installed


def start_bigquery(
    state_dir: Path,
    project: str,
    root: Path,
    ports: dict[str, int] | None = None,
    gcs_dir: Path | None = None,
    persistent_dir: Path | None = None,
    time_travel_copies: bool = True,
) -> ServiceInfo:
    """bqemulator; with ``gcs_dir`` (the storage emulator's ``--data-dir``) its load jobs read ``gs://`` there.

    With ``persistent_dir`` it keeps its datasets, tables, views and rows in a DuckDB file
    there (``--persistent``): they survive a stop and start, as BigQuery's do (the local
    stack), and data sets larger than this machine's memory fit (the in-memory emulator
    holds ~1.2 KiB per user_behavior row: 3.1 GiB at 4M rows). Without it, in memory (each
    test session's own emulator). Measured with bqemulator 1.4.0: tables, views,
    partitioning and rows came back after SIGTERM and after SIGKILL (DuckDB's WAL).

    ``time_travel_copies=False`` runs it through :mod:`beam_pipelines.local.bqemulator_main`,
    which skips the copy of the whole table that bqemulator makes after every write for
    ``FOR SYSTEM_TIME AS OF`` (on disk a 100-row insert into a 200k-row table took 1.5 s
    with it, 75 ms without). The default keeps bqemulator as it is.
    """
    install_duckdb_extensions(root)
    env = {"HOME": str(duckdb_home(root)), "BQEMU_ENABLE_FORMAT_EXTENSIONS": "true"}
    if gcs_dir is not None:
        # bqemulator maps gs://bucket/object to <BQEMU_GCS_LOCAL_ROOT>/bucket/object, the
        # very file the storage emulator keeps for that object: a load job reads what
        # the job uploaded through the storage API, as BigQuery reads Cloud Storage.
        env["BQEMU_GCS_LOCAL_ROOT"] = str(gcs_objects_dir(gcs_dir))
    rest, grpc = _port(ports, "rest", "bigquery"), _port(ports, "grpc", "bigquery")
    exe = [str(Path(sys.executable).with_name("bqemulator"))]
    if not time_travel_copies:
        exe = [sys.executable, "-m", "beam_pipelines.local.bqemulator_main"]
    url = f"http://{LOOPBACK}:{rest}"
    storage = ["--ephemeral"]
    if persistent_dir is not None:
        persistent_dir.mkdir(parents=True, exist_ok=True)
        storage = ["--persistent", "--data-dir", str(persistent_dir)]
    proc = start_process(
        "bigquery-emulator",
        [
            *exe,
            "start",
            "--project",
            project,
            "--rest-host",
            LOOPBACK,
            "--rest-port",
            str(rest),
            "--grpc-host",
            LOOPBACK,
            "--grpc-port",
            str(grpc),
            "--log-level",
            "warning",
            "--log-format",
            "console",
            *storage,
        ],
        state_dir / "logs" / "bigquery-emulator.log",
        env=env,
        ready=lambda: http_ok(f"{url}/bigquery/v2/projects/{project}/datasets"),
        timeout=90,
        hint="Run 'make venv' (bqemulator and the DuckDB extension wheels come from requirements.lock).",
    )
    return ServiceInfo(
        "bigquery",
        proc.pid,
        {"rest": url, "grpc": f"{LOOPBACK}:{grpc}"},
        {EMULATOR_ENV: url, EMULATOR_GRPC_ENV: f"{LOOPBACK}:{grpc}"},
        str(proc.log_path),
        {
            "gcs_dir": str(gcs_dir) if gcs_dir is not None else None,
            "data_dir": str(persistent_dir) if persistent_dir is not None else None,
            "time_travel_copies": time_travel_copies,
        },
    )


# --------------------------------------------------------------------------- Cloud Storage


def gcs_objects_dir(data_dir: Path) -> Path:
    """Where the storage emulator started with ``--data-dir data_dir`` keeps object ``b/o``: ``<dir>/b/o``."""
    from gcp_storage_emulator.settings import STORAGE_DIR

    return data_dir / STORAGE_DIR


def start_storage(
    state_dir: Path, bucket: str, ports: dict[str, int] | None = None, data_dir: Path | None = None
) -> ServiceInfo:
    """The GCS emulator; objects live in files under ``data_dir`` (default ``<state_dir>/gcs``).

    On disk, not in memory: the BigQuery emulator's load jobs read the same files
    (``start_bigquery(gcs_dir=...)``), and hourly staging files of a 1M-event run do not
    sit in the emulator's heap.
    """
    port = _port(ports, "http", "storage")
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    url = f"http://{LOOPBACK}:{port}"
    data_dir = data_dir or state_dir / "gcs"
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = start_process(
        "storage-emulator",
        [
            *(str(exe), "--data-dir", str(data_dir), "start"),
            *("--host", LOOPBACK, "--port", str(port), "--default-bucket", bucket, "-q"),
        ],
        state_dir / "logs" / "storage-emulator.log",
        ready=lambda: http_ok(f"{url}/storage/v1/b"),
        timeout=60,
        hint="Run 'make venv' (gcp-storage-emulator comes from requirements.lock).",
    )
    return ServiceInfo(
        "storage",
        proc.pid,
        {"http": url},
        {"STORAGE_EMULATOR_HOST": url, TEMP_LOCATION_ENV: f"gs://{bucket}/jobs-temp"},
        str(proc.log_path),
        {"bucket": bucket, "data_dir": str(data_dir)},
    )


# --------------------------------------------------------------------------- Orders REST API


def orders_api_token(state_dir: Path) -> str:
    """The local API's bearer token: random, kept in the state dir (mode 600), never in git."""
    path = state_dir / "orders-api-token"
    if not path.exists():
        import secrets

        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def start_orders_api(
    state_dir: Path,
    database_url: str,
    token: str | None = None,
    flags: dict[str, Any] | None = None,
    create_schema: bool = True,
    ports: dict[str, int] | None = None,
) -> ServiceInfo:
    """The local orders REST API (``publishers.orders_api``) over the SQL source.

    Args:
      state_dir: where the log (and, without ``token``, the generated token) lives.
      database_url: the SQL source the API serves from.
      token: bearer token; default: the stack's token in ``state_dir``.
      flags: extra ``serve`` options, e.g. ``{"fault_rate_5xx": 0.2}`` -> ``--fault-rate-5xx 0.2``.
      create_schema: create the source tables first (idempotent) so an empty database serves.
      ports: ``{"http": port}`` to restart where it ran before; default a free port.
    """
    token = token or orders_api_token(state_dir)
    if create_schema:
        subprocess.run(
            [sys.executable, "-m", "publishers.catalog", "schema", "--database-url", database_url],
            check=True,
            capture_output=True,
            timeout=120,
        )
    port = _port(ports, "http", "orders_api")
    url = f"http://{LOOPBACK}:{port}"
    argv = [
        sys.executable,
        "-m",
        "publishers.orders_api",
        "serve",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--database-url",
        database_url,
    ]
    for name, value in (flags or {}).items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    proc = start_process(
        "orders-api",
        argv,
        state_dir / "logs" / f"orders-api-{port}.log",
        env={"ORDERS_API_TOKEN": token},
        ready=lambda: http_ok(f"{url}/healthz"),
        timeout=60,
        hint="Run 'make venv' (fastapi and uvicorn come from requirements.lock).",
    )
    return ServiceInfo(
        "orders_api", proc.pid, {"http": url}, {"ORDERS_API_URL": url, "ORDERS_API_TOKEN": token}, str(proc.log_path)
    )
