"""One way to build a ``google.cloud.bigquery.Client`` for real BigQuery or the emulator.

Real BigQuery uses Application Default Credentials. The local emulator is chosen
by an explicit endpoint or ``BIGQUERY_EMULATOR_HOST`` (``http://127.0.0.1:9050``)
and gets anonymous credentials, so nothing asks for a Google login locally.
"""

from __future__ import annotations

import os
import time
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"
EMULATOR_GRPC_ENV = "BIGQUERY_EMULATOR_GRPC_HOST"
"""Our own variable: host:port of the emulator's Storage Read/Write gRPC API."""


def emulator_endpoint() -> str | None:
    """The emulator's REST endpoint from the environment, normalised to ``http://host:port``."""
    host = os.environ.get(EMULATOR_ENV, "").strip()
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def make_client(project: str, endpoint: str | None = None, location: str | None = None) -> bigquery.Client:
    """Build a BigQuery client.

    Args:
      project: GCP project id that owns the dataset (any id works on the emulator).
      endpoint: emulator REST endpoint; defaults to ``$BIGQUERY_EMULATOR_HOST``.
        When neither is set the client talks to real BigQuery with default credentials.
      location: default location for jobs (e.g. ``EU``), real BigQuery only.
    """
    if not project:
        raise ValueError("a project id is required (e.g. --project my-analytics-prod)")
    endpoint = endpoint or emulator_endpoint()
    if endpoint:
        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=endpoint),
        )
    return bigquery.Client(project=project, location=location)


def query_rows(client: bigquery.Client, sql: str, job_config: Any = None, attempts: int = 5) -> list[Any]:
    """The rows of a query that always returns at least one (an aggregate such as ``count(*)``).

    bqemulator has answered an aggregate with no row at all while streaming inserts
    were landing in the same table (real BigQuery always returns one row); such an
    answer is asked again, and after ``attempts`` tries it is an error.
    """
    for _ in range(attempts):
        rows = list(client.query(sql, job_config=job_config).result())
        if rows:
            return rows
        time.sleep(0.2)
    raise RuntimeError(f"BigQuery returned no row for {sql!r} ({attempts} attempts)")


def query_scalar(client: bigquery.Client, sql: str, attempts: int = 5) -> Any:
    """The single value of a one-row, one-column query such as ``select count(*) ...``."""
    return query_rows(client, sql, attempts=attempts)[0][0]
