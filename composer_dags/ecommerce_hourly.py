"""Hourly unify: lake extracts of one hour -> BigQuery ``user_behavior``, checked, then analytics.

For the data interval ``[H, H+1)``:

1. ``wait_for_extracts``: the six 10-minute orders windows of the hour are marked
   landed by ``ecommerce_extract_orders`` and the products/users snapshots are at
   least as new as ``H+1`` (``ecommerce_extract_dims``).
2. ``run_hourly``: ``beam_pipelines.hourly`` for the window (idempotent per hour, so
   a retry or a re-run of the hour leaves the table as one run did).
3. Data-quality checks on the written hour, each one ``BigQueryCheckOperator`` query
   (``composer_dags/sql/dq_*.sql``, values as typed query parameters): rows written > 0,
   no NULL keys, dead-letter ratio under ``dq_max_dead_letter_ratio``, newest event
   within ``dq_max_freshness_lag_minutes`` of the hour's end. A failed check fails the
   run at once (no retries) and alerts; analytics are not refreshed.
4. ``refresh_dedup_view`` then ``refresh_user_profile``: ``BigQueryInsertJobOperator`` jobs
   running ``bigquery_schemas/analytics/user_behavior_dedup.sql`` (the view the analytics
   queries read) and ``user_profile.sql`` (the table rebuilt from it).

Configuration: the ``ecommerce_config`` Variable (see ``docs/deploy.md``).
"""

from __future__ import annotations

from datetime import timedelta

try:  # Airflow 3.x
    from airflow.sdk import DAG, CronDataIntervalTimetable
except ImportError:  # Airflow 2.10
    from airflow import DAG  # type: ignore[no-redef]
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef]

from airflow.providers.google.cloud.operators.bigquery import BigQueryInsertJobOperator

from composer_dags.common import (
    MACROS,
    START_DATE,
    USER_BEHAVIOR_ASSET,
    DataQualityCheckOperator,
    LakeReadySensor,
    default_args,
    job_task,
    query_params,
    sql_path,
)
from composer_dags.config import load_config

DAG_ID = "ecommerce_hourly"
HOURLY_PIPELINE = "hourly"
HOURLY_SOURCE = "api"
# The hourly job stamps its dead letters (dead_letter.job_name) and staging tables with this id.
JOB_RUN_ID = "{{ run_id }}"
WINDOW = {"window_start": "{{ iso_utc(data_interval_start) }}", "window_end": "{{ iso_utc(data_interval_end) }}"}
CHECKS = {
    "check_row_count": ("dq_row_count", {"source": HOURLY_SOURCE}),
    "check_null_keys": ("dq_null_keys", {}),
    "check_dead_letter_ratio": (
        "dq_dead_letter_ratio",
        {
            "source": HOURLY_SOURCE,
            "pipeline": HOURLY_PIPELINE,
            "job_run_id": JOB_RUN_ID,
            "max_ratio": "{{ cfg('dq_max_dead_letter_ratio') }}",
        },
    ),
    "check_freshness": ("dq_freshness", {"max_lag_minutes": "{{ cfg('dq_max_freshness_lag_minutes') }}"}),
}
# The ecommerce_config Variable, validated once per parse: an unknown, missing or
# wrongly-typed key (or a DirectRunner on Composer) makes this file an import error
# that names the key, before any run is scheduled.
CONFIG = load_config()

with DAG(
    dag_id=DAG_ID,
    description="Lake extracts of one hour -> user_behavior, data-quality checks, analytics refresh",
    doc_md=__doc__,
    # Not "@hourly": on Airflow 3 that gives an empty data interval (start == end).
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=START_DATE,
    # Each hour is loaded exactly once and in order; missed hours are caught up.
    catchup=True,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=3),
    default_args=default_args(CONFIG),
    user_defined_macros=MACROS,
    tags=["ecommerce", "hourly", "bigquery", "data-quality", "dataflow"],
) as dag:
    wait_for_extracts = LakeReadySensor(
        task_id="wait_for_extracts",
        lake_root="{{ cfg('lake_root') }}",
        dims_tables="{{ cfg('dims_tables') }}",
        mode="reschedule",
        poke_interval=60,
        timeout=timedelta(hours=2),
        exponential_backoff=True,
        max_wait=timedelta(minutes=5),
        execution_timeout=timedelta(minutes=5),
        **WINDOW,
    )

    run_hourly = job_task(
        CONFIG,
        task_id="run_hourly",
        job="hourly",
        job_options={
            **WINDOW,
            "lake_root": "{{ cfg('lake_root') }}",
            "output_table": "{{ bq_table('user_behavior') }}",
            "dead_letter_table": "{{ bq_table('dead_letter') }}",
            "products_table": "{{ bq_table('products') }}",
            "users_table": "{{ bq_table('users') }}",
            "orders_table": "{{ bq_table('orders') }}",
            "temp_gcs_location": "{{ cfg('temp_location') }}",
            "run_id": JOB_RUN_ID,
        },
        execution_timeout=timedelta(minutes=50),
        outlets=[USER_BEHAVIOR_ASSET],
    )

    checks = [
        DataQualityCheckOperator(
            task_id=task_id,
            # The .sql path is read and rendered as a template (table ids from the config).
            sql=sql_path(sql_name),
            query_params=query_params({**WINDOW, **extra}),
            retries=2,
            execution_timeout=timedelta(minutes=10),
        )
        for task_id, (sql_name, extra) in CHECKS.items()
    ]

    # The view first: user_profile.sql reads it.
    refresh_dedup_view, refresh_user_profile = (
        BigQueryInsertJobOperator(
            task_id=task_id,
            project_id="{{ cfg('project') }}",
            configuration={"query": {"query": f"{{{{ analytics_sql('{sql_name}') }}}}", "useLegacySql": False}},
            execution_timeout=timedelta(minutes=15),
        )
        for task_id, sql_name in (
            ("refresh_dedup_view", "user_behavior_dedup"),
            ("refresh_user_profile", "user_profile"),
        )
    )

    wait_for_extracts >> run_hourly >> checks >> refresh_dedup_view >> refresh_user_profile
