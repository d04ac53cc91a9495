"""Dimensions extract: every 30 minutes, SQL products and users -> lake snapshots.

Runs ``beam_pipelines.extract_dims``; the snapshot is named after the run's
``data_interval_end`` (``raw/<table>/snapshot=YYYYMMDDTHHMMSSZ``) and ``_LATEST`` is
moved last, which is what the hourly DAG waits for.
"""

from __future__ import annotations

from datetime import timedelta

try:  # Airflow 3.x
    from airflow.sdk import DAG, CronDataIntervalTimetable
except ImportError:  # Airflow 2.10
    from airflow import DAG  # type: ignore[no-redef]
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef]

from composer_dags.common import (
    DIMS_ASSET,
    MACROS,
    START_DATE,
    default_args,
    job_task,
)
from composer_dags.config import load_config

DAG_ID = "ecommerce_extract_dims"
# The ecommerce_config Variable, validated once per parse: an unknown, missing or
# wrongly-typed key (or a DirectRunner on Composer) makes this file an import error
# that names the key, before any run is scheduled.
CONFIG = load_config()

with DAG(
    dag_id=DAG_ID,
    description="SQL products/users -> lake snapshots every 30 minutes",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("*/30 * * * *", timezone="UTC"),
    start_date=START_DATE,
    # A snapshot is the tables' state now: replaying old intervals would only copy
    # today's rows under old names, so missed runs are skipped.
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=45),
    default_args=default_args(CONFIG, execution_timeout=timedelta(minutes=25)),
    user_defined_macros=MACROS,
    tags=["ecommerce", "extract", "dimensions", "dataflow"],
) as dag:
    extract_dims = job_task(
        CONFIG,
        task_id="extract_dims",
        job="extract_dims",
        job_options={
            # On Dataflow: Cloud SQL with IAM database authentication (or a password the workers
            # read from Secret Manager); nothing secret is a parameter. Locally the URL stays in an
            # environment variable, which Dataflow workers would not have.
            "cloud_sql_instance": "{{ cfg('cloud_sql_instance') }}",
            "database_user": "{{ cfg('database_user') }}",
            "database_name": "{{ cfg('database_name') }}",
            "cloud_sql_ip_type": "{{ cfg('cloud_sql_ip_type') }}",
            "database_password_secret": "{{ cfg('database_password_secret') }}",
            "database_url": "{{ cfg('database_url') }}",
            "database_url_env": "{{ '' if cfg('database_url') or cfg('cloud_sql_instance') "
            "or cfg('runner') != 'DirectRunner' else cfg('database_url_env') }}",
            "lake_root": "{{ cfg('lake_root') }}",
            "tables": "{{ cfg('dims_tables') }}",
            "snapshot_ts": "{{ iso_utc(data_interval_end) }}",
        },
        outlets=[DIMS_ASSET],
    )
