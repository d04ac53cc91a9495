"""The DAG files: they load cleanly, and schedules, intervals, retries, graphs and templates are as designed."""

from __future__ import annotations

import copy
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
import yaml

from tests.composer.conftest import DAGS_FOLDER, REPO_ROOT

HOUR_START = pendulum.datetime(2026, 11, 22, 10, tz="UTC")
HOUR_END = HOUR_START.add(hours=1)
EXPECTED_DAGS = {
    # dag_id: (cron, catchup, tasks with their upstreams)
    "ecommerce_extract_orders": (
        "*/10 * * * *",
        True,
        {"extract_orders": set()},
    ),
    "ecommerce_extract_dims": ("*/30 * * * *", False, {"extract_dims": set()}),
    "ecommerce_hourly": (
        "0 * * * *",
        True,
        {
            "wait_for_extracts": set(),
            "run_hourly": {"wait_for_extracts"},
            "check_row_count": {"run_hourly"},
            "check_null_keys": {"run_hourly"},
            "check_dead_letter_ratio": {"run_hourly"},
            "check_freshness": {"run_hourly"},
            "refresh_dedup_view": {"check_row_count", "check_null_keys", "check_dead_letter_ratio", "check_freshness"},
            "refresh_user_profile": {"refresh_dedup_view"},
        },
    ),
}


def core_timetable(dag: Any) -> Any:
    try:  # Airflow 3.x: DAGs from the DagBag carry SDK timetables
        from airflow.serialization.encoders import coerce_to_core_timetable

        return coerce_to_core_timetable(dag.timetable)
    except ImportError:
        return dag.timetable


def render(dag: Any, task_id: str, start: pendulum.DateTime, end: pendulum.DateTime) -> Any:
    """A copy of ``task_id`` with its templates rendered for the interval ``[start, end)``."""
    task = copy.deepcopy(dag.get_task(task_id))
    context = {
        "data_interval_start": start,
        "data_interval_end": end,
        "run_id": f"scheduled__{start.isoformat()}",
        "params": {},
        "dag": dag,
        "task": task,
    }
    task.render_template_fields(context, jinja_env=dag.get_template_env())
    return task


def test_dagbag_loads_without_errors_or_warnings(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert getattr(dagbag, "captured_warnings", {}) == {}
    assert sorted(dagbag.dag_ids) == sorted(EXPECTED_DAGS)


def test_dag_files_do_no_io_or_variable_lookups_at_parse_time() -> None:
    for path in DAGS_FOLDER.glob("*.py"):
        text = path.read_text()
        assert "Variable.get" not in text.replace("Variable.get(CONFIG_VARIABLE", ""), path.name
        assert "open(" not in text, path.name


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_schedule_catchup_and_concurrency(dagbag: Any, dag_id: str) -> None:
    cron, catchup, _ = EXPECTED_DAGS[dag_id]
    dag = dagbag.dags[dag_id]
    timetable = core_timetable(dag)
    assert type(timetable).__name__ == "CronDataIntervalTimetable"
    assert timetable.summary == cron
    assert dag.catchup is catchup
    assert dag.max_active_runs == 1
    assert dag.start_date == pendulum.datetime(2026, 11, 1, tz="UTC")
    assert "ecommerce" in dag.tags
    assert dag.doc_md and dag.doc_md.strip().splitlines()[0].endswith(".")


@pytest.mark.parametrize(
    ("dag_id", "run_after", "expected"),
    [
        ("ecommerce_hourly", (11, 5), ((10, 0), (11, 0))),
        ("ecommerce_extract_orders", (10, 25), ((10, 10), (10, 20))),
        ("ecommerce_extract_dims", (10, 40), ((10, 0), (10, 30))),
    ],
)
def test_data_interval_is_the_last_complete_period(
    dagbag: Any, dag_id: str, run_after: tuple[int, int], expected: tuple[tuple[int, int], tuple[int, int]]
) -> None:
    timetable = core_timetable(dagbag.dags[dag_id])
    interval = timetable.infer_manual_data_interval(run_after=pendulum.datetime(2026, 11, 22, *run_after, tz="UTC"))
    (sh, sm), (eh, em) = expected
    assert interval.start == pendulum.datetime(2026, 11, 22, sh, sm, tz="UTC")
    assert interval.end == pendulum.datetime(2026, 11, 22, eh, em, tz="UTC")
    assert interval.end > interval.start  # not the empty interval of Airflow 3's @hourly


@pytest.mark.parametrize(
    ("dag_id", "task_graph"), [(dag_id, spec[2]) for dag_id, spec in sorted(EXPECTED_DAGS.items())]
)
def test_task_graph(dagbag: Any, dag_id: str, task_graph: dict[str, set[str]]) -> None:
    dag = dagbag.dags[dag_id]
    assert {t.task_id: set(t.upstream_task_ids) for t in dag.tasks} == task_graph


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_retries_backoff_timeouts_and_alerting(dagbag: Any, dag_id: str) -> None:
    from composer_dags.common import PipelineAlertNotifier

    for task in dagbag.dags[dag_id].tasks:
        assert task.retries >= 2, task.task_id
        assert task.retry_exponential_backoff, task.task_id
        assert task.retry_delay == timedelta(minutes=2)
        assert task.max_retry_delay == timedelta(minutes=20)
        assert task.execution_timeout is not None and task.execution_timeout <= timedelta(minutes=50), task.task_id
        callbacks = task.on_failure_callback
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        assert any(isinstance(c, PipelineAlertNotifier) for c in callbacks), task.task_id


def test_beam_tasks_use_this_interpreter_and_the_job_modules(dagbag: Any, set_ecommerce_config: Any) -> None:
    from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

    jobs = {
        ("ecommerce_extract_orders", "extract_orders"): "extract_orders",
        ("ecommerce_extract_dims", "extract_dims"): "extract_dims",
        ("ecommerce_hourly", "run_hourly"): "hourly",
    }
    for (dag_id, task_id), job in jobs.items():
        task = dagbag.dags[dag_id].get_task(task_id)
        assert isinstance(task, BeamRunPythonPipelineOperator)
        assert task.py_interpreter == sys.executable
        assert task.py_requirements is None
        rendered = render(dagbag.dags[dag_id], task_id, HOUR_START, HOUR_END)
        assert Path(rendered.py_file) == Path(__file__).resolve().parents[2] / "beam_pipelines" / f"{job}.py"
        assert rendered.runner == "DirectRunner"


def test_hourly_templates_render_the_window_and_tables(dagbag: Any, set_ecommerce_config: Any) -> None:
    set_ecommerce_config(project="acme-analytics", dataset="shop", lake_root="gs://acme-lake/ecommerce")
    task = render(dagbag.dags["ecommerce_hourly"], "run_hourly", HOUR_START, HOUR_END)
    assert task.effective_pipeline_options() == {
        "window_start": "2026-11-22T10:00:00Z",
        "window_end": "2026-11-22T11:00:00Z",
        "lake_root": "gs://acme-lake/ecommerce",
        "output_table": "acme-analytics:shop.user_behavior",
        "dead_letter_table": "acme-analytics:shop.dead_letter",
        "products_table": "acme-analytics:shop.products",
        "users_table": "acme-analytics:shop.users",
        "orders_table": "acme-analytics:shop.orders",
        "run_id": "scheduled__2026-11-22T10:00:00+00:00",
    }
    sensor = render(dagbag.dags["ecommerce_hourly"], "wait_for_extracts", HOUR_START, HOUR_END)
    assert (sensor.lake_root, sensor.window_start, sensor.window_end, sensor.dims_tables) == (
        "gs://acme-lake/ecommerce",
        "2026-11-22T10:00:00Z",
        "2026-11-22T11:00:00Z",
        "products,users",
    )


def test_a_runner_switched_after_parsing_is_refused_not_run_here(dagbag: Any, set_ecommerce_config: Any) -> None:
    # Parsed with the DirectRunner (a local task), rendered after the Variable became the DataflowRunner.
    set_ecommerce_config(
        runner="DataflowRunner",
        project="acme-analytics",
        region="europe-west1",
        dataset="shop",
        lake_root="gs://acme-lake/ecommerce",
        temp_location="gs://acme-dataflow/temp",
        staging_location="gs://acme-dataflow/staging",
        templates_location="gs://acme-dataflow/templates",
        template_version="v1",
    )
    task = render(dagbag.dags["ecommerce_hourly"], "run_hourly", HOUR_START, HOUR_END)
    with pytest.raises(ValueError, match=r"runner is now 'DataflowRunner'.*parsed again"):
        task.execute({})


def test_extract_templates_render_the_window(dagbag: Any, set_ecommerce_config: Any) -> None:
    set_ecommerce_config(lake_root="/data/lake", orders_api_base_url="http://orders.internal:8080")
    start = pendulum.datetime(2026, 11, 22, 10, 50, tz="UTC")
    orders = render(dagbag.dags["ecommerce_extract_orders"], "extract_orders", start, start.add(minutes=10))
    assert orders.effective_pipeline_options() == {
        "api_base_url": "http://orders.internal:8080",
        "api_token_env": "ORDERS_API_TOKEN",
        "window_start": "2026-11-22T10:50:00Z",
        "window_end": "2026-11-22T11:00:00Z",
        "lake_root": "/data/lake",
        "page_size": "500",
    }
    # The job writes the window's completion record itself: Composer never writes to the lake.
    assert dagbag.dags["ecommerce_extract_orders"].task_ids == ["extract_orders"]
    dims_start = pendulum.datetime(2026, 11, 22, 10, 30, tz="UTC")
    dims = render(dagbag.dags["ecommerce_extract_dims"], "extract_dims", dims_start, dims_start.add(minutes=30))
    assert dims.effective_pipeline_options() == {
        "database_url_env": "ECOMMERCE_DATABASE_URL",
        "lake_root": "/data/lake",
        "tables": "products,users",
        "snapshot_ts": "2026-11-22T11:00:00Z",
    }


def test_quality_checks_are_provider_check_operators_with_typed_parameters(
    dagbag: Any, set_ecommerce_config: Any
) -> None:
    from airflow.providers.google.cloud.operators.bigquery import BigQueryCheckOperator

    set_ecommerce_config(project="acme-analytics", dataset="shop", dq_max_dead_letter_ratio=0.02)
    task = render(dagbag.dags["ecommerce_hourly"], "check_dead_letter_ratio", HOUR_START, HOUR_END)
    assert isinstance(task, BigQueryCheckOperator)
    assert (task.deferrable, task.retry_on_failure, task.use_legacy_sql) == (True, False, False)
    if "project_id" in task.template_fields:  # google provider >= 16 (see DataQualityCheckOperator)
        assert task.project_id == "acme-analytics"
    assert "from `acme-analytics.shop.user_behavior`" in task.sql
    assert "from `acme-analytics.shop.dead_letter`" in task.sql
    assert "{{" not in task.sql and "@window_start" in task.sql
    params = {p["name"]: (p["parameterType"]["type"], p["parameterValue"]["value"]) for p in task.query_params}
    assert params == {
        "window_start": ("TIMESTAMP", "2026-11-22T10:00:00Z"),
        "window_end": ("TIMESTAMP", "2026-11-22T11:00:00Z"),
        "source": ("STRING", "api"),
        "pipeline": ("STRING", "hourly"),
        "job_run_id": ("STRING", "scheduled__2026-11-22T10:00:00+00:00"),
        "max_ratio": ("FLOAT64", "0.02"),
    }


def test_analytics_refresh_is_insert_jobs_of_the_analytics_sql(dagbag: Any, set_ecommerce_config: Any) -> None:
    from airflow.providers.google.cloud.operators.bigquery import BigQueryInsertJobOperator

    set_ecommerce_config(project="acme-analytics", dataset="shop")
    for task_id, statement in (
        ("refresh_dedup_view", "create or replace view `acme-analytics.shop.user_behavior_dedup`"),
        ("refresh_user_profile", "create or replace table `acme-analytics.shop.user_profile`"),
    ):
        task = render(dagbag.dags["ecommerce_hourly"], task_id, HOUR_START, HOUR_END)
        assert isinstance(task, BigQueryInsertJobOperator)
        assert task.project_id == "acme-analytics"
        assert task.configuration["query"]["useLegacySql"] is False
        assert " ".join(task.configuration["query"]["query"].split()).lower().startswith(statement), task_id


def test_failure_callback_logs_one_structured_alert(caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from composer_dags.common import ALERT_PREFIX, PipelineAlertNotifier

    ti = SimpleNamespace(dag_id="ecommerce_hourly", task_id="check_null_keys", run_id="r1", try_number=1, log_url="u")
    with caplog.at_level("ERROR", logger="composer_dags.common"):
        # notify() itself: __call__ also renders templates, which needs a full task context
        # (Airflow 2.10); the e2e DAG test goes through __call__.
        PipelineAlertNotifier().notify(
            {"ti": ti, "exception": ValueError("3 null keys"), "data_interval_start": HOUR_START}
        )
    (record,) = caplog.records
    assert record.getMessage().startswith(ALERT_PREFIX + " ")
    assert '"error": "ValueError: 3 null keys"' in record.getMessage()
    assert '"task_id": "check_null_keys"' in record.getMessage()
    # The log-based metric the alert policy pages on counts exactly these lines.
    metric = yaml.safe_load((REPO_ROOT / "dataflow" / "monitoring" / "log_metric_pipeline_alerts.yaml").read_text())
    assert f'textPayload:"{ALERT_PREFIX}"' in metric["filter"]


def test_failure_emails_are_an_smtp_notifier_when_configured() -> None:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    from composer_dags.common import PipelineAlertNotifier, failure_notifiers
    from composer_dags.config import parse_config

    assert [type(n) for n in failure_notifiers(parse_config({}, composer=False))] == [PipelineAlertNotifier]
    local, email = failure_notifiers(parse_config({"alert_emails": ["oncall@example.com"]}, composer=False))
    assert isinstance(local, PipelineAlertNotifier) and isinstance(email, SmtpNotifier)
    assert email.to == ["oncall@example.com"]
