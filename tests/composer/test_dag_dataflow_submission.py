"""From the DAG to Dataflow, offline: each Beam task on the DataflowRunner yields a valid job description.

On Dataflow the task is deferrable: after the launch it defers to a Dataflow job trigger.

The operator runs its real ``execute()`` with the Composer-style configuration; only the
last step is intercepted: instead of starting ``python <job>.py --runner=DataflowRunner ...``
(which would submit), the command-line options it would pass are fed to the job's
``build_pipeline`` with ``tests.dataflow.offline.describe`` (``--template_location`` to a
local file, ``--no_auth``, uploads redirected): the job JSON the service would receive.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from pathlib import Path
from typing import Any
from unittest import mock

import pendulum
import pytest

from tests.composer.test_dags import render
from tests.dataflow.offline import LOCAL_ENDPOINT_ENVS, PROJECT, REGION, describe
from tests.dataflow.test_job_descriptions import SDK_IMAGE, SETUP_FILE, job_options_class

BUCKET = "gs://acme-dataflow-prod"
CONFIG = {
    "runner": "DataflowRunner",
    "project": PROJECT,
    "region": REGION,
    "dataset": "ecommerce",
    "lake_root": "gs://acme-lake-prod/ecommerce",
    "temp_location": f"{BUCKET}/temp",
    "staging_location": f"{BUCKET}/staging",
    # Required with the DataflowRunner; on Composer /home/airflow/gcs/data/..., here this
    # repository's, so the offline submission really builds the sdist.
    "setup_file": SETUP_FILE,
    "service_account_extract_orders": f"df-extract-orders@{PROJECT}.iam.gserviceaccount.com",
    "service_account_extract_dims": f"df-extract-dims@{PROJECT}.iam.gserviceaccount.com",
    "service_account_hourly": f"df-hourly@{PROJECT}.iam.gserviceaccount.com",
    "orders_api_base_url": "https://orders.acme.example",
    "orders_api_token_secret": f"projects/{PROJECT}/secrets/orders-api-token/versions/latest",
    "database_url": "postgresql://df-extract-dims@10.20.0.5:5432/shop",
}
TASKS = [
    # dag_id, task_id, job, interval start, interval length (minutes), options the job must receive
    ("ecommerce_extract_orders", "extract_orders", "extract_orders", (10, 50), 10,
     {"window_start": "2026-11-21T10:50:00Z", "window_end": "2026-11-21T11:00:00Z",
      "api_token_secret": CONFIG["orders_api_token_secret"], "lake_root": CONFIG["lake_root"]}),
    ("ecommerce_extract_dims", "extract_dims", "extract_dims", (10, 30), 30,
     {"snapshot_ts": "2026-11-21T11:00:00Z", "database_url": CONFIG["database_url"]}),
    ("ecommerce_hourly", "run_hourly", "hourly", (10, 0), 60,
     {"window_start": "2026-11-21T10:00:00Z", "window_end": "2026-11-21T11:00:00Z",
      "output_table": f"{PROJECT}:ecommerce.user_behavior", "temp_gcs_location": f"{BUCKET}/temp"}),
]  # fmt: skip


@pytest.fixture(autouse=True)
def _composer_like_environment(monkeypatch: pytest.MonkeyPatch, set_ecommerce_config: Any) -> None:
    for name in LOCAL_ENDPOINT_ENVS:
        monkeypatch.delenv(name, raising=False)
    set_ecommerce_config(**CONFIG)
    # Composer defines this connection (the environment's account); no credentials are read here.
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps({"conn_type": "google_cloud_platform"}))


@pytest.mark.parametrize(("dag_id", "task_id", "job", "start", "minutes", "expected"), TASKS)
def test_beam_task_on_dataflow_builds_a_valid_job(
    dagbag: Any, tmp_path: Path, dag_id: str, task_id: str, job: str, start: tuple[int, int], minutes: int,
    expected: dict[str, str],
) -> None:  # fmt: skip
    from airflow.providers.apache.beam.hooks.beam import BeamHook, beam_options_to_args

    try:  # Airflow 3.x
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 2.10
        from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]
    from airflow.providers.google.cloud.hooks.dataflow import DataflowHook

    begin = pendulum.datetime(2026, 11, 21, *start, tz="UTC")
    task = render(dagbag.dags[dag_id], task_id, begin, begin.add(minutes=minutes))
    launched: dict[str, Any] = {}

    def start_python_pipeline(self: Any, variables: dict, py_file: str, py_options: list, py_interpreter: str,
                              **kwargs: Any) -> None:  # fmt: skip
        launched.update(variables=dict(variables), py_file=py_file, py_interpreter=py_interpreter, runner=self.runner)

    with (
        mock.patch.object(BeamHook, "start_python_pipeline", start_python_pipeline),
        mock.patch.object(DataflowHook, "wait_for_done", side_effect=AssertionError("must defer, not wait")),
        # beam provider 6.1.4 (composer-3-airflow-2.10.5) wraps the launch in a gcloud login.
        mock.patch.object(DataflowHook, "provide_authorized_gcloud", contextlib.nullcontext),
        pytest.raises(TaskDeferred) as deferred,
    ):
        task.execute({"ti": mock.MagicMock(), "task_instance": mock.MagicMock(), "task": task})

    # Submitted from the worker, then deferred: the triggerer watches the job, the slot is free.
    trigger = deferred.value.trigger
    assert type(trigger).__name__ in {"DataflowJobStateCompleteTrigger", "DataflowJobStatusTrigger"}
    assert (trigger.project_id, trigger.location) == (PROJECT, REGION)
    assert launched["runner"] == "DataflowRunner"
    assert launched["py_file"].endswith(f"beam_pipelines/{job}.py")
    variables = launched["variables"]
    assert variables["job_name"].startswith(f"ecommerce-{job.replace('_', '-')}-")
    assert (variables["project"], variables["region"]) == (PROJECT, REGION)
    assert variables["service_account_email"] == CONFIG[f"service_account_{job}"]
    assert variables["setup_file"].endswith("setup.py")

    module = importlib.import_module(f"beam_pipelines.{job}")
    options_cls = job_options_class(module)
    # What BeamHook.start_python_pipeline puts on the command line (labels as key=value items).
    argv = beam_options_to_args({**variables, "labels": [f"{k}={v}" for k, v in variables["labels"].items()]})
    description = describe(lambda p, options: module.build_pipeline(p, options.view_as(options_cls)), argv, tmp_path)

    assert description.job["name"] == variables["job_name"]
    assert description.job["type"] == "JOB_TYPE_BATCH"
    assert description.environment["serviceAccountEmail"] == CONFIG[f"service_account_{job}"]
    pool = description.environment["workerPools"][0]
    assert [c["containerImage"] for c in pool["sdkHarnessContainerImages"]] == [SDK_IMAGE]
    assert "workflow.tar.gz" in {p["name"] for p in pool["packages"]}
    assert {k: description.options[k] for k in expected} == expected
    assert description.options["labels"] == [f"airflow-version={variables['labels']['airflow-version']}"]
