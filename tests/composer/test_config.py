"""The ``ecommerce_config`` model: a typo, a missing key or a DirectRunner on Composer fails DAG parsing, by name."""

from __future__ import annotations

import json
from typing import Any

import pytest

from composer_dags.config import COMPOSER_ENV, DATAFLOW_REQUIRED, ConfigError, EcommerceConfig, parse_config
from tests.composer.conftest import CONFIG_ENV, DAGS_FOLDER

DAG_FILES = sorted(p.name for p in DAGS_FOLDER.glob("ecommerce_*.py"))
DATAFLOW = {
    "runner": "DataflowRunner",
    "project": "acme-analytics-prod",
    "region": "europe-west1",
    "dataset": "ecommerce",
    "lake_root": "gs://acme-lake-prod/ecommerce",
    "temp_location": "gs://acme-dataflow-prod/temp",
    "staging_location": "gs://acme-dataflow-prod/staging",
    "templates_location": "gs://acme-dataflow-prod/templates",
    "template_version": "20261122-3f2a9c1",
}


def parse_dags(monkeypatch: pytest.MonkeyPatch, config: Any, *, composer: bool = False) -> dict[str, str]:
    """A fresh DagBag of composer_dags/ with ``config`` as the Variable; returns {file name: import error}."""
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3.x
    except ImportError:  # Airflow 2.10
        from airflow.models import DagBag  # type: ignore[no-redef]

    if config is None:
        monkeypatch.delenv(CONFIG_ENV, raising=False)
    else:
        monkeypatch.setenv(CONFIG_ENV, config if isinstance(config, str) else json.dumps(config))
    if composer:
        monkeypatch.setenv(COMPOSER_ENV, "ecommerce")
    else:
        monkeypatch.delenv(COMPOSER_ENV, raising=False)
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    return {path.rsplit("/", 1)[-1]: str(error) for path, error in bag.import_errors.items()}


def test_local_defaults_need_no_variable() -> None:
    config = parse_config(None, composer=False)
    assert config.runner == "DirectRunner"
    assert config.project == "local-ecommerce"
    assert config.value("max_num_workers") == ""  # unset: dropped from the job's options


def test_values_are_typed() -> None:
    config = parse_config('{"orders_page_size": "200", "dq_max_dead_letter_ratio": 0.02}', composer=False)
    assert (config.orders_page_size, config.dq_max_dead_letter_ratio) == (200, 0.02)
    assert parse_config(DATAFLOW, composer=True).runner == "DataflowRunner"


@pytest.mark.parametrize(
    ("raw", "composer", "named"),
    [
        ({"runer": "DataflowRunner"}, False, "unknown key 'runer' (did you mean 'runner'?)"),
        ({"projcet": "acme"}, False, "unknown key 'projcet' (did you mean 'project'?)"),
        ({"colour": "blue"}, False, "unknown key 'colour'; known keys: alert_emails, cloud_sql_instance"),
        (
            {**DATAFLOW, "database_url": "postgresql://reader:pw@10.20.0.5/shop"},
            False,
            "key 'database_url' holds a password, which Dataflow shows in the job's parameters",
        ),
        (
            {**DATAFLOW, "database_url": "postgresql://reader@10.20.0.5/shop?password=pw"},
            False,
            "key 'database_url' holds a password",
        ),
        ({"orders_page_size": "many"}, False, "key 'orders_page_size': Input should be a valid integer"),
        ({"dq_max_dead_letter_ratio": 2}, False, "key 'dq_max_dead_letter_ratio'"),
        ({"runner": "PrismRunner"}, False, "key 'runner': Input should be 'DirectRunner' or 'DataflowRunner'"),
        ({k: v for k, v in DATAFLOW.items() if k != "temp_location"}, False, "needs the key(s) temp_location"),
        ({"runner": "DataflowRunner"}, False, "needs the key(s) " + ", ".join(DATAFLOW_REQUIRED)),
        ({**DATAFLOW, "runner": "DirectRunner"}, True, "key 'runner' is 'DirectRunner'; on Cloud Composer"),
        (None, True, "Variable ecommerce_config is not set; on Cloud Composer it is required"),
        ("{not json", False, "Variable ecommerce_config is not valid JSON"),
        ("[1, 2]", False, "must be a JSON object, got list"),
        ({**DATAFLOW, "templates_location": "/data/templates"}, False, "key 'templates_location' must be the gs://"),
        # Composer no longer stages the sources: a Variable still naming setup.py is out of date.
        ({**DATAFLOW, "setup_file": "/home/airflow/gcs/data/ecommerce/setup.py"}, False, "unknown key 'setup_file'"),
    ],
)
def test_invalid_configuration_is_refused_naming_the_key(raw: Any, composer: bool, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(raw, composer=composer)
    assert named in str(error.value)


def test_every_key_the_dags_template_is_in_the_model() -> None:
    import re

    used = {m for p in DAGS_FOLDER.glob("*.py") for m in re.findall(r"cfg\('([a-z0-9_]+)'\)", p.read_text())}
    # FlexTemplateJobOperator's cfg(f'service_account_{job}'):
    used |= {f"service_account_{job}" for job in ("extract_orders", "extract_dims", "hourly")}
    assert used and used <= set(EcommerceConfig.model_fields)


@pytest.mark.parametrize(
    ("config", "composer", "named"),
    [
        ({"runer": "DataflowRunner", "projcet": "my-analytics-prod"}, False, "unknown key 'runer'"),
        ({k: v for k, v in DATAFLOW.items() if k != "staging_location"}, False, "staging_location"),
        (None, True, "Variable ecommerce_config is not set"),
        ({**DATAFLOW, "runner": "DirectRunner"}, True, "key 'runner' is 'DirectRunner'"),
    ],
    ids=["misspelled-key", "missing-key", "no-variable-on-composer", "direct-runner-on-composer"],
)
def test_a_bad_variable_fails_dag_parsing_naming_the_key(
    monkeypatch: pytest.MonkeyPatch, config: Any, composer: bool, named: str
) -> None:
    errors = parse_dags(monkeypatch, config, composer=composer)
    assert sorted(errors) == DAG_FILES
    for error in errors.values():
        assert "ConfigError" in error and named in error, error


def test_a_valid_dataflow_variable_parses_on_composer(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_dags(monkeypatch, DATAFLOW, composer=True) == {}
