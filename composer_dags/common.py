"""Shared pieces of the e-commerce DAGs: default_args, alerting, config lookup, job launch.

Nothing here does I/O at import time: the DAG processor imports this module on
every parse. Configuration is one JSON Airflow Variable, ``ecommerce_config`` (set it
in Composer, or locally as the environment variable ``AIRFLOW_VAR_ECOMMERCE_CONFIG``),
validated by the typed model in :mod:`composer_dags.config`: each DAG file validates
it once at parse time (``load_config()``), and templates read it again through the
same model when a task renders (``{{ cfg('lake_root') }}``), so a Variable edited
between parse and run is still checked. Keys that are not set take the model's local
defaults (everything on this machine with the DirectRunner). See ``docs/deploy.md``
for the Composer values.

Tested on the Composer image's Airflow 2.10.5 and providers (``requirements-composer.in``);
imports fall back to Airflow 3.x's ``airflow.sdk`` names where they moved. Jobs run through
:func:`job_task`: a Flex Template launch on Composer, the module with the DirectRunner here.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

try:  # Airflow 3.x
    from airflow.sdk import Asset, BaseNotifier, BaseSensorOperator
except ImportError:  # Airflow 2.10
    from airflow.datasets import Dataset as Asset  # type: ignore[no-redef]
    from airflow.notifications.basenotifier import BaseNotifier  # type: ignore[no-redef]
    from airflow.sensors.base import BaseSensorOperator  # type: ignore[no-redef]

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.bigquery import BigQueryCheckOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator

from composer_dags.config import DATAFLOW_RUNNER, LOCAL_RUNNER, EcommerceConfig, load_config

_LOG = logging.getLogger(__name__)

ALERT_PREFIX = "ECOMMERCE_PIPELINE_ALERT"
# Go-live date: catchup fills every window since then (orders, hourly).
START_DATE = datetime(2026, 11, 1, tzinfo=UTC)
SQL_DIR = "sql"

# Lineage: what each extract DAG lands in the lake (shown in the Airflow UI).
ORDERS_ASSET = Asset("ecommerce://lake/raw/orders")
DIMS_ASSET = Asset("ecommerce://lake/raw/dims")
USER_BEHAVIOR_ASSET = Asset("ecommerce://bigquery/user_behavior")


# ----------------------------------------------------------------------------- config (render time)


def cfg(key: str) -> Any:
    """One configuration value, validated by :class:`~composer_dags.config.EcommerceConfig`.

    Called from templates (``{{ cfg('lake_root') }}``), so it runs when a task renders.

    Raises:
      ConfigError: ``key`` is not a configuration key, or the Variable is invalid.
    """
    return load_config().value(key)


def bq_table(name: str) -> str:
    """Beam table spec ``project:dataset.name`` from the configuration."""
    return f"{cfg('project')}:{cfg('dataset')}.{name}"


def bq_table_id(name: str) -> str:
    """BigQuery SQL table id ``project.dataset.name`` from the configuration."""
    return f"{cfg('project')}.{cfg('dataset')}.{name}"


def iso_utc(dt: datetime) -> str:
    """``2026-11-22T10:00:00Z``: the window format the jobs' options expect."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_file(job: str) -> str:
    """Path of ``beam_pipelines/<job>.py`` wherever the package is importable (editable or site-packages)."""
    spec = importlib.util.find_spec("beam_pipelines")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package beam_pipelines is not installed for this interpreter")
    return str(Path(next(iter(spec.submodule_search_locations))) / f"{job}.py")


def analytics_sql(name: str) -> str:
    """The statement of ``bigquery_schemas/analytics/<name>.sql`` for the configured project and dataset.

    The analytics SQL has one home, beside the ``analytics`` command that runs the same
    files; the DAG sends it with ``BigQueryInsertJobOperator``.
    """
    from bigquery_schemas import analytics

    return analytics.get(name).render(cfg("project"), cfg("dataset"))


MACROS = {
    "cfg": cfg,
    "analytics_sql": analytics_sql,
    "bq_table": bq_table,
    "bq_table_id": bq_table_id,
    "iso_utc": iso_utc,
    "job_file": job_file,
}


# ----------------------------------------------------------------------------- alerting and defaults


class PipelineAlertNotifier(BaseNotifier):
    """Failure notifier: one structured ``ECOMMERCE_PIPELINE_ALERT {json}`` ERROR line per failed task.

    In Composer the line lands in Cloud Logging; the log-based metric and the alert policy
    in ``dataflow/monitoring/`` turn it into a page on the policy's notification channels
    (e-mail, chat). No secrets and no network calls here, so the notifier itself cannot fail.
    """

    def notify(self, context: Mapping[str, Any]) -> None:
        ti = context.get("task_instance") or context.get("ti")
        dag_run = context.get("dag_run")
        exc = context.get("exception")
        payload = {
            "dag_id": getattr(ti, "dag_id", None),
            "task_id": getattr(ti, "task_id", None),
            "run_id": getattr(dag_run, "run_id", None) or getattr(ti, "run_id", None),
            "try_number": getattr(ti, "try_number", None),
            "data_interval_start": str(context.get("data_interval_start")),
            "data_interval_end": str(context.get("data_interval_end")),
            "error": f"{type(exc).__name__}: {exc}" if exc else None,
            "log_url": getattr(ti, "log_url", None),
        }
        _LOG.error("%s %s", ALERT_PREFIX, json.dumps(payload, default=str, sort_keys=True))


def failure_notifiers(config: EcommerceConfig) -> list[BaseNotifier]:
    """The notifiers of a failed task: the alert log line, plus e-mail when ``alert_emails`` is set.

    E-mail uses the smtp provider's ``SmtpNotifier`` and the ``smtp_default`` connection
    (Composer: an SMTP relay or SendGrid, see docs/deploy.md).
    """
    notifiers: list[BaseNotifier] = [PipelineAlertNotifier()]
    if config.alert_emails:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        notifiers.append(
            SmtpNotifier(
                to=list(config.alert_emails),
                subject="[ecommerce] {{ ti.dag_id }}.{{ ti.task_id }} failed ({{ run_id }})",
                html_content="{{ ti.log_url }}",
            )
        )
    return notifiers


def default_args(config: EcommerceConfig, **overrides: Any) -> dict[str, Any]:
    """default_args shared by the DAGs: retries with exponential backoff and the failure notifiers."""
    args: dict[str, Any] = {
        "owner": "data-platform",
        "depends_on_past": False,
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=20),
        "execution_timeout": timedelta(minutes=30),
        "on_failure_callback": failure_notifiers(config),
    }
    args.update(overrides)
    return args


# ----------------------------------------------------------------------------- launching jobs


class LocalBeamJobOperator(BeamRunPythonPipelineOperator):
    """``BeamRunPythonPipelineOperator`` running one job of ``beam_pipelines`` on this machine (DirectRunner).

    The local half of :func:`job_task`. Runs ``beam_pipelines/<job>.py`` with this
    interpreter (the provider would otherwise look ``python3`` up on PATH, and
    ``py_requirements`` would build a fresh venv from the package index on every run).
    Options whose value renders empty are dropped: an unset optional option must not
    reach the job as ``--x=``.

    Args:
      job: module name under ``beam_pipelines`` (``extract_orders``, ``hourly``...).
      job_options: the job's own options (the parameters of ``dataflow/<job>/metadata.json``), templated.
    """

    def __init__(self, *, job: str, job_options: dict[str, Any], **kwargs: Any) -> None:
        kwargs.setdefault("py_file", f"{{{{ job_file('{job}') }}}}")
        kwargs.setdefault("py_interpreter", sys.executable)
        # Rendered, so a Variable switched to the DataflowRunner after this DAG was parsed is
        # caught at run time rather than run here.
        kwargs.setdefault("runner", "{{ cfg('runner') }}")
        super().__init__(pipeline_options=dict(job_options), **kwargs)

    def effective_pipeline_options(self) -> dict[str, Any]:
        """The rendered options the job gets, empty values dropped."""
        return {k: v for k, v in self.pipeline_options.items() if v not in (None, "")}

    def execute(self, context: Any) -> Any:
        if self.runner != LOCAL_RUNNER:
            raise ValueError(
                f"task {self.task_id} runs jobs locally, but the configuration's runner is now {self.runner!r}: "
                "the DAG was parsed with another ecommerce_config; let it be parsed again"
            )
        self.pipeline_options = self.effective_pipeline_options()
        return super().execute(context)


def flex_template_path(templates_location: str, job: str, version: str) -> str:
    """``<templates_location>/<job>-<version>.json``: where dataflow/build_templates.sh writes a job's template."""
    return f"{templates_location.rstrip('/')}/{job}-{version}.json"


class FlexTemplateJobOperator(DataflowStartFlexTemplateOperator):
    """Launch one job from its Flex Template on Dataflow, deferrable; the Composer half of :func:`job_task`.

    The job's container (``dataflow/Dockerfile``: the package and the workers' Beam) builds
    and submits the pipeline, so the Composer environment needs neither ``beam_pipelines``'
    Beam nor ``setup.py``: only the DAG files and the Google provider. Once the launch is
    accepted the task defers (``TemplateJobStartTrigger``) and frees its worker slot.

    Template parameters and runtime environment values that render empty are dropped
    (the Flex Template refuses ``x=`` for a parameter it would otherwise default);
    ``maxWorkers`` is sent as a number.

    Args:
      job: module name under ``beam_pipelines``; the template is ``<job>-<template_version>.json``.
      job_options: the template's parameters (``dataflow/<job>/metadata.json``), templated.
    """

    def __init__(self, *, job: str, job_options: dict[str, Any], **kwargs: Any) -> None:
        body = {
            "launchParameter": {
                "jobName": f"ecommerce-{job.replace('_', '-')}",
                "containerSpecGcsPath": flex_template_path(
                    "{{ cfg('templates_location') }}", job, "{{ cfg('template_version') }}"
                ),
                "parameters": dict(job_options),
                "environment": {
                    "serviceAccountEmail": f"{{{{ cfg('service_account_{job}') }}}}",
                    "tempLocation": "{{ cfg('temp_location') }}",
                    "stagingLocation": "{{ cfg('staging_location') }}",
                    "subnetwork": "{{ cfg('subnetwork') }}",
                    "maxWorkers": "{{ cfg('max_num_workers') }}",
                    "sdkContainerImage": "{{ cfg('sdk_container_image') }}",
                },
            }
        }
        kwargs.setdefault("project_id", "{{ cfg('project') }}")
        kwargs.setdefault("location", "{{ cfg('region') }}")
        kwargs.setdefault("deferrable", True)
        kwargs.setdefault("append_job_name", True)
        super().__init__(body=body, **kwargs)

    def launch_parameter(self) -> dict[str, Any]:
        """The rendered ``launchParameter``: empty parameters and environment values dropped."""
        launch = dict(self.body["launchParameter"])
        launch["parameters"] = {k: str(v) for k, v in launch["parameters"].items() if v not in (None, "")}
        environment = {k: v for k, v in launch["environment"].items() if v not in (None, "")}
        if "maxWorkers" in environment:
            environment["maxWorkers"] = int(environment["maxWorkers"])
        launch["environment"] = environment
        return launch

    def execute(self, context: Any) -> Any:
        self.body = {"launchParameter": self.launch_parameter()}
        return super().execute(context)


def job_task(config: EcommerceConfig, *, task_id: str, job: str, job_options: dict[str, Any], **kwargs: Any) -> Any:
    """The task that runs ``beam_pipelines.<job>``: the one seam between Composer and this machine.

    ``runner`` DataflowRunner (always on Composer): :class:`FlexTemplateJobOperator`,
    the job's own container builds and submits it. DirectRunner (tests, local stack):
    :class:`LocalBeamJobOperator` runs the same module with this interpreter. Either
    way the job gets the same options and builds the same graph; the task id,
    dependencies and retries do not change.
    """
    if config.runner == DATAFLOW_RUNNER:
        return FlexTemplateJobOperator(task_id=task_id, job=job, job_options=job_options, **kwargs)
    return LocalBeamJobOperator(task_id=task_id, job=job, job_options=job_options, **kwargs)


# ----------------------------------------------------------------------------- lake readiness


class LakeReadySensor(BaseSensorOperator):
    """Wait until the extracts the hourly job reads for ``[window_start, window_end)`` are in the lake.

    Ready when (1) completion records of ``extract_orders`` (``_extracts/orders/``, written
    by the job after its files are in place) cover the whole interval and (2) each
    dimension's ``_LATEST`` snapshot was taken at or after ``window_end`` (extract_dims
    names snapshots ``snapshot=YYYYMMDDTHHMMSSZ``). A lake that cannot be read (403, a
    missing bucket) fails the task instead of waiting: it is not "not yet".
    """

    template_fields: Sequence[str] = ("lake_root", "window_start", "window_end", "dims_tables")

    def __init__(self, *, lake_root: str, window_start: str, window_end: str, dims_tables: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.lake_root = lake_root
        self.window_start = window_start
        self.window_end = window_end
        self.dims_tables = dims_tables

    def missing(self) -> list[str]:
        """What is not there yet (empty when ready)."""
        from beam_pipelines import lake

        start = datetime.fromisoformat(self.window_start.replace("Z", "+00:00"))
        end = datetime.fromisoformat(self.window_end.replace("Z", "+00:00"))
        missing = []
        gaps = lake.extract_gaps(self.lake_root, lake.ORDERS, start, end)
        if gaps:
            where = lake.join(self.lake_root, lake.EXTRACTS, lake.ORDERS)
            missing.append(f"orders extracts in {where} for {lake.describe_gaps(gaps, most=6)}")
        wanted = f"{lake.SNAPSHOT_PREFIX}{lake.compact_ts(end)}"
        for table in filter(None, (t.strip() for t in self.dims_tables.split(","))):
            folder = lake.latest_snapshot_dir(self.lake_root, table)
            if folder is None or folder.rsplit("/", 1)[-1] < wanted:
                missing.append(f"{lake.join(self.lake_root, lake.RAW, table)} snapshot >= {wanted} (have {folder})")
        return missing

    def poke(self, context: Any) -> bool:
        missing = self.missing()
        for item in missing:
            self.log.info("waiting for %s", item)
        return not missing


# ----------------------------------------------------------------------------- data quality


# Types of the query parameters the check SQL files use (values arrive rendered as text).
QUERY_PARAM_TYPES = {
    "window_start": "TIMESTAMP",
    "window_end": "TIMESTAMP",
    "max_ratio": "FLOAT64",
    "max_lag_minutes": "INT64",
    "pipeline": "STRING",
    "job_run_id": "STRING",
    "source": "STRING",
}


def query_params(values: Mapping[str, str]) -> list[dict[str, Any]]:
    """Typed BigQuery query parameters in the REST API's form (``queryParameters``), values templated.

    Values reach BigQuery as parameters, never spliced into the SQL; only table ids are
    templated into the ``.sql`` files.
    """
    params = []
    for name, value in values.items():
        if name not in QUERY_PARAM_TYPES:
            raise ValueError(f"unknown query parameter {name!r}; expected one of {sorted(QUERY_PARAM_TYPES)}")
        params.append(
            {"name": name, "parameterType": {"type": QUERY_PARAM_TYPES[name]}, "parameterValue": {"value": value}}
        )
    return params


_CHECK_TAKES_PROJECT_ID = "project_id" in inspect.signature(BigQueryCheckOperator.__init__).parameters


class DataQualityCheckOperator(BigQueryCheckOperator):
    """``BigQueryCheckOperator`` for one ``composer_dags/sql/dq_*.sql`` check of the configured project.

    The check query returns one row ``(passed, detail)``; the task fails when a value is
    false or NULL, and the failure message carries ``detail`` (observed value, threshold).

    * ``retry_on_failure=False``: a failed check fails at once (the data will not change
      by itself); errors reaching BigQuery still retry.
    * ``deferrable=True``: the job is submitted through the google-cloud-bigquery client
      and, while it runs, the triggerer waits. Measured on bqemulator 1.4: this path honours
      ``BIGQUERY_EMULATOR_HOST`` and the job is DONE at once, so it never defers locally;
      the non-deferrable path goes through the DB-API cursor (discovery client, base URL
      ``bigquery.googleapis.com``), which ignores the emulator and fails offline with
      ``ServerNotFoundError``.
    * ``project_id`` is templated (the provider's is not), so jobs run in ``cfg('project')``,
      where the provider takes one (google provider 17.2.0 of composer-3-airflow-2.10.5
      does); an older provider without it runs the job in the connection's project.
    """

    template_fields: Sequence[str] = (
        *BigQueryCheckOperator.template_fields,
        *(("project_id",) if _CHECK_TAKES_PROJECT_ID else ()),
    )

    def __init__(self, **kwargs: Any) -> None:
        if _CHECK_TAKES_PROJECT_ID:
            kwargs.setdefault("project_id", "{{ cfg('project') }}")
        kwargs.setdefault("use_legacy_sql", False)
        kwargs.setdefault("deferrable", True)
        kwargs.setdefault("retry_on_failure", False)
        super().__init__(**kwargs)


def sql_path(name: str) -> str:
    """Template path of ``composer_dags/sql/<name>.sql`` (rendered by the task, with ``{% include %}``)."""
    return os.path.join(SQL_DIR, f"{name}.sql")
