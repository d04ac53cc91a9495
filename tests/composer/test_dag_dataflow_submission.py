"""From the DAG to Dataflow, offline: each job task on Composer launches the job's Flex Template, then defers.

The operator runs its real ``execute()`` with a Composer configuration; only the call to
the Dataflow API (``flexTemplates.launch``) is intercepted. The request it would send is
checked against what the service checks: the template path is the one
``dataflow/build_templates.sh`` writes, every parameter is declared in the job's
``dataflow/<job>/metadata.json`` and matches its regexes, every required one is there,
and the job's own options class parses them (the launcher passes them to the job as
``--name=value``). Then the task defers to the Dataflow trigger: the worker slot is free.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any
from unittest import mock

import pendulum
import pytest

from composer_dags.config import COMPOSER_ENV
from tests.composer.conftest import DAGS_FOLDER, REPO_ROOT
from tests.composer.test_dags import render
from tests.dataflow.offline import LOCAL_ENDPOINT_ENVS, PROJECT, REGION
from tests.dataflow.test_job_descriptions import job_options_class

BUCKET = "gs://acme-dataflow-prod"
VERSION = "20261122-3f2a9c1"
CONFIG = {
    "runner": "DataflowRunner",
    "project": PROJECT,
    "region": REGION,
    "dataset": "ecommerce",
    "lake_root": "gs://acme-lake-prod/ecommerce",
    "temp_location": f"{BUCKET}/temp",
    "staging_location": f"{BUCKET}/staging",
    "templates_location": f"{BUCKET}/templates",
    "template_version": VERSION,
    "subnetwork": f"regions/{REGION}/subnetworks/dataflow",
    "max_num_workers": 8,
    "service_account_extract_orders": f"df-extract-orders@{PROJECT}.iam.gserviceaccount.com",
    "service_account_extract_dims": f"df-extract-dims@{PROJECT}.iam.gserviceaccount.com",
    "service_account_hourly": f"df-hourly@{PROJECT}.iam.gserviceaccount.com",
    "orders_api_base_url": "https://orders.acme.example",
    "orders_api_token_secret": f"projects/{PROJECT}/secrets/orders-api-token/versions/latest",
    "cloud_sql_instance": f"{PROJECT}:{REGION}:shop",
    "database_user": f"df-extract-dims@{PROJECT}.iam",
    "database_name": "shop",
}
TASKS = [
    # dag_id, task_id, job, interval start, interval length (minutes), parameters the job must receive
    ("ecommerce_extract_orders", "extract_orders", "extract_orders", (10, 50), 10,
     {"window_start": "2026-11-21T10:50:00Z", "window_end": "2026-11-21T11:00:00Z",
      "api_token_secret": CONFIG["orders_api_token_secret"], "lake_root": CONFIG["lake_root"]}),
    ("ecommerce_extract_dims", "extract_dims", "extract_dims", (10, 30), 30,
     {"snapshot_ts": "2026-11-21T11:00:00Z", "cloud_sql_instance": CONFIG["cloud_sql_instance"],
      "database_user": CONFIG["database_user"], "database_name": CONFIG["database_name"]}),
    ("ecommerce_hourly", "run_hourly", "hourly", (10, 0), 60,
     {"window_start": "2026-11-21T10:00:00Z", "window_end": "2026-11-21T11:00:00Z",
      "output_table": f"{PROJECT}:ecommerce.user_behavior", "temp_gcs_location": f"{BUCKET}/temp",
      "run_id": "scheduled__2026-11-21T10:00:00+00:00"}),
]  # fmt: skip
# FlexTemplateRuntimeEnvironment fields (Dataflow REST API v1b3) the operator may set.
RUNTIME_ENVIRONMENT = {
    "serviceAccountEmail", "tempLocation", "stagingLocation", "subnetwork", "maxWorkers", "sdkContainerImage",
}  # fmt: skip
# Dataflow job names: lower case letters, digits and dashes, starting with a letter.
JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,1022}[a-z0-9])?$")


@pytest.fixture
def composer_dagbag(monkeypatch: pytest.MonkeyPatch, set_ecommerce_config: Any) -> Any:
    """The DAGs as Composer parses them: ``COMPOSER_ENVIRONMENT`` set, the Composer configuration."""
    from airflow.models import DagBag

    for name in LOCAL_ENDPOINT_ENVS:
        monkeypatch.delenv(name, raising=False)
    set_ecommerce_config(**CONFIG)
    monkeypatch.setenv(COMPOSER_ENV, "ecommerce")
    # Composer defines this connection (the environment's account); no credentials are read here.
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps({"conn_type": "google_cloud_platform"}))
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag


def metadata_parameters(job: str) -> dict[str, dict[str, Any]]:
    spec = json.loads((REPO_ROOT / "dataflow" / job / "metadata.json").read_text())
    return {p["name"]: p for p in spec["parameters"]}


def test_templates_are_where_the_build_script_writes_them() -> None:
    from composer_dags.common import flex_template_path

    script = (REPO_ROOT / "dataflow" / "build_templates.sh").read_text()
    assert 'template="${BUCKET}/templates/${job}-${VERSION}.json"' in script
    assert flex_template_path(f"{BUCKET}/templates/", "hourly", VERSION) == f"{BUCKET}/templates/hourly-{VERSION}.json"


@pytest.mark.parametrize(("dag_id", "task_id", "job", "start", "minutes", "expected"), TASKS)
def test_job_task_on_composer_launches_the_flex_template_and_defers(
    composer_dagbag: Any, dag_id: str, task_id: str, job: str, start: tuple[int, int], minutes: int,
    expected: dict[str, str],
) -> None:  # fmt: skip
    from airflow.exceptions import TaskDeferred
    from airflow.providers.google.cloud.hooks.dataflow import DataflowHook
    from apache_beam.options.pipeline_options import PipelineOptions

    from composer_dags.common import FlexTemplateJobOperator

    begin = pendulum.datetime(2026, 11, 21, *start, tz="UTC")
    task = render(composer_dagbag.dags[dag_id], task_id, begin, begin.add(minutes=minutes))
    assert isinstance(task, FlexTemplateJobOperator)
    launched: dict[str, Any] = {}

    def launch(self: Any, *, body: dict, location: str, project_id: str) -> dict[str, str]:
        launched.update(body=body, location=location, project_id=project_id)
        return {"id": "2026-11-21_03_00_00-1234567890", "name": body["launchParameter"]["jobName"]}

    with (
        mock.patch.object(DataflowHook, "launch_job_with_flex_template", launch),
        mock.patch.object(DataflowHook, "start_flex_template", side_effect=AssertionError("must defer, not wait")),
        pytest.raises(TaskDeferred) as deferred,
    ):
        task.execute({"ti": mock.MagicMock(), "task_instance": mock.MagicMock(), "task": task})

    trigger = deferred.value.trigger
    assert type(trigger).__name__ == "TemplateJobStartTrigger"
    assert (trigger.project_id, trigger.location, trigger.job_id) == (PROJECT, REGION, "2026-11-21_03_00_00-1234567890")
    assert (launched["project_id"], launched["location"]) == (PROJECT, REGION)
    launch_parameter = launched["body"]["launchParameter"]
    assert launch_parameter["containerSpecGcsPath"] == f"{BUCKET}/templates/{job}-{VERSION}.json"
    assert launch_parameter["jobName"].startswith(f"ecommerce-{job.replace('_', '-')}-")
    assert JOB_NAME.fullmatch(launch_parameter["jobName"]), launch_parameter["jobName"]

    environment = launch_parameter["environment"]
    assert set(environment) <= RUNTIME_ENVIRONMENT
    assert environment == {
        "serviceAccountEmail": CONFIG[f"service_account_{job}"],
        "tempLocation": f"{BUCKET}/temp",
        "stagingLocation": f"{BUCKET}/staging",
        "subnetwork": CONFIG["subnetwork"],
        "maxWorkers": 8,
    }

    # What the Flex Template service checks before it starts the launcher.
    parameters = launch_parameter["parameters"]
    declared = metadata_parameters(job)
    assert set(parameters) <= set(declared), set(parameters) - set(declared)
    assert {n for n, p in declared.items() if not p["isOptional"]} <= set(parameters)
    for name, value in parameters.items():
        assert isinstance(value, str) and value, name
        for regex in declared[name].get("regexes", []):
            assert re.fullmatch(regex, value), (name, value, regex)
    assert {k: parameters[k] for k in expected} == expected
    # What the launcher then does: the job's options class parses them.
    options_cls = job_options_class(importlib.import_module(f"beam_pipelines.{job}"))
    options = PipelineOptions([f"--{k}={v}" for k, v in parameters.items()]).view_as(options_cls)
    assert {k: str(getattr(options, k)) for k in parameters} == parameters
