"""The DAGs' configuration: the ``ecommerce_config`` Variable as one typed, validated model.

Contract:

* :class:`EcommerceConfig` lists every key the DAGs read, with its type and its local
  default (everything on this machine, DirectRunner). An unknown key is refused with
  the closest known key suggested, so ``{"runer": ...}`` fails instead of silently
  running with the default runner.
* With ``runner = DataflowRunner`` the keys in :data:`DATAFLOW_REQUIRED` must be set
  explicitly: their local defaults (``local-ecommerce``, a folder of this repository)
  would be wrong on Google Cloud.
* On Cloud Composer (the environment variable ``COMPOSER_ENVIRONMENT``, which Composer
  sets on its schedulers, DAG processors and workers) the Variable is required and the
  runner must be the DataflowRunner: a DirectRunner job there would run inside the
  Composer worker.
* :func:`load_config` reads the Variable once and raises :class:`ConfigError` naming the
  key. Each DAG file calls it at parse time, so a bad Variable is an import error of
  every DAG (visible in the Airflow UI) before any run starts; templates call
  :func:`composer_dags.common.cfg`, which goes through the same model at render time.

No Airflow import at module level: tests and tools validate a configuration without it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONFIG_VARIABLE = "ecommerce_config"
DATAFLOW_RUNNER = "DataflowRunner"
LOCAL_RUNNER = "DirectRunner"
# Set by Cloud Composer in every Airflow component's environment.
COMPOSER_ENV = "COMPOSER_ENVIRONMENT"
REPO_ROOT = Path(__file__).resolve().parents[1]
# Keys whose local default must not reach a Dataflow job.
DATAFLOW_REQUIRED = (
    "project",
    "region",
    "dataset",
    "lake_root",
    "temp_location",
    "staging_location",
    "templates_location",
    "template_version",
)

# user:password@ in a URL, or a password= parameter.
_URL_PASSWORD = re.compile(r"://[^/@:]+:[^/@]*@|[?&]password=")


class ConfigError(ValueError):
    """The ``ecommerce_config`` Variable is not a valid configuration; the message names the key."""


class EcommerceConfig(BaseModel):
    """Every key of the ``ecommerce_config`` Variable, typed, with its local default."""

    # frozen: one validated value per parse/render; forbid: a typo is an error, not a default.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    # Where and how the Beam jobs run.
    runner: Literal["DirectRunner", "DataflowRunner"] = "DirectRunner"
    project: str = Field("local-ecommerce", min_length=1)
    region: str = Field("us-central1", min_length=1)
    dataset: str = Field("ecommerce", min_length=1)
    lake_root: str = Field(str(REPO_ROOT / ".local" / "lake"), min_length=1)
    # DataflowRunner only: each job is launched from its Flex Template
    # <templates_location>/<job>-<template_version>.json (dataflow/build_templates.sh writes
    # them), so Composer needs neither the job code nor its Beam.
    temp_location: str = ""
    staging_location: str = ""
    templates_location: str = ""
    template_version: str = ""
    sdk_container_image: str = ""
    subnetwork: str = ""
    max_num_workers: int | None = Field(None, ge=1)
    service_account_extract_orders: str = ""
    service_account_extract_dims: str = ""
    service_account_hourly: str = ""
    # Sources.
    orders_api_base_url: str = "http://127.0.0.1:8080"
    orders_api_token_env: str = "ORDERS_API_TOKEN"  # noqa: S105 - the name of a variable, not a token
    orders_api_token_secret: str = ""
    orders_page_size: int = Field(500, ge=1)
    # The dims extract's SQL source (beam_pipelines/io/sql_login.py). On Dataflow: cloud_sql_instance
    # (project:region:instance), database_user (the df-extract-dims account as SA@PROJECT.iam: IAM
    # database authentication) and database_name, plus database_password_secret for a built-in user;
    # or a database_url without a password. Locally (DirectRunner) database_url_env names the
    # variable holding the URL: Dataflow workers do not have the launcher's environment.
    cloud_sql_instance: str = ""
    cloud_sql_ip_type: Literal["", "PRIVATE", "PUBLIC", "PSC"] = ""
    database_user: str = ""
    database_name: str = ""
    database_password_secret: str = ""
    database_url: str = ""
    database_url_env: str = "ECOMMERCE_DATABASE_URL"
    dims_tables: str = "products,users"
    # Data-quality thresholds.
    dq_max_dead_letter_ratio: float = Field(0.01, ge=0, le=1)
    dq_max_freshness_lag_minutes: int = Field(30, ge=0)
    # Failure e-mails (SmtpNotifier) besides the alert log line; empty: log line only.
    alert_emails: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _dataflow_needs_explicit_cloud_keys(self) -> EcommerceConfig:
        if self.runner == DATAFLOW_RUNNER:
            missing = [k for k in DATAFLOW_REQUIRED if k not in self.model_fields_set or not getattr(self, k)]
            if missing:
                raise ValueError(f"runner {DATAFLOW_RUNNER} needs the key(s) {', '.join(missing)}")
            if _URL_PASSWORD.search(self.database_url):
                raise ValueError(
                    "key 'database_url' holds a password, which Dataflow shows in the job's parameters: drop it and "
                    "set database_password_secret (projects/<p>/secrets/<s>/versions/<v>), or use cloud_sql_instance"
                )
            if not self.templates_location.startswith("gs://"):
                raise ValueError(
                    f"key 'templates_location' must be the gs:// folder of the Flex Template specs, "
                    f"got {self.templates_location!r}"
                )
        return self

    def value(self, key: str) -> Any:
        """The value of ``key`` for a template (an unset optional number renders as ``""``, which is dropped)."""
        if key not in type(self).model_fields:
            raise ConfigError(unknown_key_message(key))
        value = getattr(self, key)
        return "" if value is None else value


def unknown_key_message(key: str) -> str:
    """``unknown key 'runer' (did you mean 'runner'?)``."""
    known = list(EcommerceConfig.model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(sorted(known))}"
    return f"{CONFIG_VARIABLE}: unknown key {key!r}{hint}"


def on_composer() -> bool:
    """True inside a Cloud Composer environment."""
    return bool(os.environ.get(COMPOSER_ENV))


def parse_config(raw: Any, *, composer: bool | None = None) -> EcommerceConfig:
    """Validate the Variable's value (a mapping, a JSON string, or ``None`` when it is not set).

    Args:
      raw: the Variable as stored (JSON text), already decoded, or ``None`` when unset.
      composer: whether this runs on Cloud Composer (default: :func:`on_composer`).

    Raises:
      ConfigError: naming the first offending key (unknown keys first, then missing or
        wrongly-typed ones), or saying the Variable is missing or not a JSON object.
    """
    composer = on_composer() if composer is None else composer
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"Variable {CONFIG_VARIABLE} is not valid JSON: {exc}") from exc
    if raw is None:
        if composer:
            raise ConfigError(
                f"Variable {CONFIG_VARIABLE} is not set; on Cloud Composer it is required "
                f"(runner {DATAFLOW_RUNNER} and the keys {', '.join(DATAFLOW_REQUIRED)}; see docs/deploy.md)"
            )
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"Variable {CONFIG_VARIABLE} must be a JSON object, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in EcommerceConfig.model_fields]
    if unknown:
        raise ConfigError("; ".join(unknown_key_message(k) for k in unknown))
    try:
        config = EcommerceConfig.model_validate(dict(raw))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            problems.append(f"key {where!r}: {err['msg']}" if where else err["msg"].removeprefix("Value error, "))
        raise ConfigError(f"{CONFIG_VARIABLE}: {'; '.join(problems)}") from None
    if composer and config.runner != DATAFLOW_RUNNER:
        raise ConfigError(
            f"{CONFIG_VARIABLE}: key 'runner' is {config.runner!r}; on Cloud Composer it must be "
            f"{DATAFLOW_RUNNER!r} (a DirectRunner job would run inside the Composer worker)"
        )
    return config


def load_config() -> EcommerceConfig:
    """Read the ``ecommerce_config`` Variable once and validate it (see :func:`parse_config`)."""
    try:  # Airflow 3.x
        from airflow.sdk import Variable
    except ImportError:  # Airflow 2.10
        from airflow.models import Variable  # type: ignore[no-redef]

    # Positional default (``default`` on Airflow 3, ``default_var`` on 2.10); the JSON is parsed here,
    # so a syntax error is reported like any other configuration error.
    return parse_config(Variable.get(CONFIG_VARIABLE, None))
