"""Orders extract: every 10 minutes, the orders REST API window -> the lake.

Runs ``beam_pipelines.extract_orders`` for the DAG run's data interval
``[data_interval_start, data_interval_end)``. The job itself writes the window's
completion record in the lake once its files are in place (``_extracts/orders/``), which
the hourly DAG's sensor and the hourly job read: a manual or backfill run of the job
counts as much as a scheduled one, and Composer never writes to the lake.
"""

from __future__ import annotations

from datetime import timedelta

try:  # Airflow 3.x
    from airflow.sdk import DAG, CronDataIntervalTimetable
except ImportError:  # Airflow 2.10
    from airflow import DAG  # type: ignore[no-redef]
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef]

from composer_dags.common import (
    MACROS,
    ORDERS_ASSET,
    START_DATE,
    default_args,
    job_task,
)
from composer_dags.config import load_config

DAG_ID = "ecommerce_extract_orders"
# The ecommerce_config Variable, validated once per parse: an unknown, missing or
# wrongly-typed key (or a DirectRunner on Composer) makes this file an import error
# that names the key, before any run is scheduled.
CONFIG = load_config()

with DAG(
    dag_id=DAG_ID,
    description="Orders REST API -> lake raw/orders, one 10-minute window per run",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("*/10 * * * *", timezone="UTC"),
    start_date=START_DATE,
    # Every window must be extracted once: the API filters on updated_at, so missed
    # windows are fetched later in order (max_active_runs=1) instead of being skipped.
    catchup=True,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=45),
    default_args=default_args(CONFIG, execution_timeout=timedelta(minutes=20)),
    user_defined_macros=MACROS,
    tags=["ecommerce", "extract", "orders", "dataflow"],
) as dag:
    extract_orders = job_task(
        CONFIG,
        task_id="extract_orders",
        job="extract_orders",
        job_options={
            "api_base_url": "{{ cfg('orders_api_base_url') }}",
            "api_token_env": "{{ cfg('orders_api_token_env') }}",
            "api_token_secret": "{{ cfg('orders_api_token_secret') }}",
            "window_start": "{{ iso_utc(data_interval_start) }}",
            "window_end": "{{ iso_utc(data_interval_end) }}",
            "lake_root": "{{ cfg('lake_root') }}",
            "page_size": "{{ cfg('orders_page_size') }}",
        },
        outlets=[ORDERS_ASSET],
    )
