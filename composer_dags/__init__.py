"""Cloud Composer / Airflow DAGs of the e-commerce pipelines (deployed as ``dags/composer_dags/``)."""
