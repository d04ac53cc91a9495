"""The one local-only switch that points Beam's BigQuery IO at the BigQuery emulator.

Beam's BigQuery IO cannot be aimed at an emulator by configuration: its apitools
client has a hard-coded base URL, it asks Google for default credentials (without
them it ends in an interactive login), streaming inserts go through a
``google.cloud.bigquery.Client`` built with default credentials, and
``DIRECT_READ`` builds its own Storage Read client. :func:`use_bigquery_emulator`
changes exactly those four things, in this process, and nothing in the job code:
the production transforms run unchanged.

It is off unless ``BIGQUERY_EMULATOR_HOST`` is set, and refuses to act for the
DataflowRunner (the patches only live in the launching process, and a Dataflow
job must never be pointed at a laptop). Workers of the in-process local runners
(FnApiRunner, BundleBasedDirectRunner) share the patched modules.
"""

from __future__ import annotations

import logging
import os
import types
from typing import Any

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

from beam_pipelines import runners
from bigquery_schemas.client import EMULATOR_GRPC_ENV, emulator_endpoint

_LOG = logging.getLogger(__name__)
_applied: dict[str, Any] = {}


class _ModuleProxy(types.ModuleType):
    """A stand-in module that overrides some attributes and delegates the rest."""

    def __init__(self, wrapped: types.ModuleType, **overrides: Any):
        super().__init__(wrapped.__name__)
        self._wrapped = wrapped
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


def use_bigquery_emulator(rest_endpoint: str, grpc_endpoint: str | None, project: str) -> None:
    """Point Beam's BigQuery IO in this process at the emulator.

    Args:
      rest_endpoint: the emulator's REST API, e.g. ``http://127.0.0.1:9050``.
      grpc_endpoint: its Storage Read API, ``host:port`` (needed for ``DIRECT_READ``).
      project: default project for clients that are not given one.
    """
    import grpc
    from apache_beam.internal.gcp import auth
    from apache_beam.io.gcp import bigquery as beam_bigquery
    from apache_beam.io.gcp import bigquery_tools
    from apache_beam.io.gcp.internal.clients.bigquery import bigquery_v2_client
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery as gcp_bigquery

    rest_endpoint = rest_endpoint.rstrip("/")
    if _applied.get("rest") == rest_endpoint and _applied.get("grpc") == grpc_endpoint:
        return

    # 1. Credentials: anonymous for every apitools client Beam builds.
    with auth._Credentials._credentials_lock:
        auth._Credentials._credentials = auth._ApitoolsCredentialsAdapter(AnonymousCredentials())
        auth._Credentials._credentials_init = True

    # 2. The apitools BigQuery client (tables, datasets, jobs).
    bigquery_v2_client.BigqueryV2.BASE_URL = f"{rest_endpoint}/bigquery/v2/"

    # 3. The google-cloud-bigquery client used for streaming inserts.
    original_bq = _applied.get("gcp_bigquery", bigquery_tools.gcp_bigquery)

    class EmulatorClient(gcp_bigquery.Client):
        def __init__(self, *args: Any, **kwargs: Any):
            kwargs.setdefault("project", project)
            kwargs["credentials"] = AnonymousCredentials()
            kwargs["client_options"] = ClientOptions(api_endpoint=rest_endpoint)
            super().__init__(*args, **kwargs)

    bigquery_tools.gcp_bigquery = _ModuleProxy(original_bq, Client=EmulatorClient)

    # 4. The Storage Read client used by DIRECT_READ (plain-text gRPC locally).
    original_storage = _applied.get("bq_storage", beam_bigquery.bq_storage)
    if grpc_endpoint:
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

        def read_client(*_args: Any, **_kwargs: Any) -> Any:
            transport = BigQueryReadGrpcTransport(channel=grpc.insecure_channel(grpc_endpoint))
            return original_storage.BigQueryReadClient(transport=transport)

        beam_bigquery.bq_storage = _ModuleProxy(original_storage, BigQueryReadClient=read_client)

    _applied.update(rest=rest_endpoint, grpc=grpc_endpoint, gcp_bigquery=original_bq, bq_storage=original_storage)
    _LOG.info("Beam BigQuery IO -> emulator at %s (Storage Read at %s)", rest_endpoint, grpc_endpoint)


def configure_for_environment(options: PipelineOptions) -> bool:
    """Apply the emulator switch when ``BIGQUERY_EMULATOR_HOST`` is set; return whether it did.

    Raises:
      ValueError: the emulator is configured but the runner is a remote one.
    """
    endpoint = emulator_endpoint()
    if not endpoint:
        return False
    if not runners.allows(options, runners.LocalStep.EMULATOR_SWITCH):
        runner = options.view_as(StandardOptions).runner
        raise ValueError(
            f"BIGQUERY_EMULATOR_HOST={endpoint} is set but --runner={runner} runs its workers outside this "
            "process, where the emulator switch does not reach: unset BIGQUERY_EMULATOR_HOST (and "
            "PUBSUB_EMULATOR_HOST) to submit to Dataflow, or leave --runner out for a local run"
        )
    project = options.view_as(GoogleCloudOptions).project or os.environ.get("GOOGLE_CLOUD_PROJECT", "local-ecommerce")
    use_bigquery_emulator(endpoint, os.environ.get(EMULATOR_GRPC_ENV), project)
    return True
