"""Packaging for the e-commerce user-behaviour pipelines.

The same package is installed locally (``make venv``) and shipped to Dataflow
workers with ``--setup_file ./setup.py``. ``apache-beam[gcp]`` is pinned to the
SDK version of the worker container the jobs run on; keep it in step with
``requirements.in`` and the Flex Template base image.
"""

from setuptools import find_packages, setup

BEAM_VERSION = "2.77.0"

setup(
    name="ecommerce-user-behavior",
    version="0.1.0",
    description="Beam pipelines that unify e-commerce user activity into BigQuery",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["beam_pipelines*", "publishers*", "bigquery_schemas*"]),
    package_data={"bigquery_schemas": ["*.json", "analytics/*.sql"]},
    include_package_data=True,
    # Exactly the distributions the code shipped to the workers imports (beam_pipelines/ and
    # what it imports of bigquery_schemas/), nothing else: tests/dataflow/test_worker_dependencies.py
    # walks their imports and fails on a missing or an unused entry. Lower bounds only (beside
    # Beam): the worker image's Beam brings its own versions, requirements.lock pins the rest.
    install_requires=[
        f"apache-beam[gcp]=={BEAM_VERSION}",
        # extract_dims' Cloud SQL login (IAM database authentication); 1.22 added the psycopg driver.
        "cloud-sql-python-connector>=1.22",
        "google-api-core>=2.0",
        "google-auth>=2.0",
        "google-cloud-bigquery>=3.20",
        "google-cloud-bigquery-storage>=2.6",
        # The streaming job's Pub/Sub read on the workers, and the launcher's checks
        # (preflight: the subscription exists) and pull tuning import it directly.
        "google-cloud-pubsub>=2.20",
        "google-cloud-secret-manager>=2.0",
        "grpcio>=1.60",
        # The hourly job's columnar batches (beam_pipelines/event_batch.py).
        "numpy>=1.26",
        "psycopg[binary]>=3.1",
        "pyarrow>=16",
        "requests>=2.31",
    ],
    extras_require={
        "publishers": ["faker>=30", "fastapi>=0.110", "uvicorn>=0.29"],
        # The local stack (beam_pipelines/local, beam_pipelines/demo.py), never on workers.
        "local": [
            "bqemulator==1.4.0",
            "duckdb==1.5.5",
            "duckdb-extension-spatial==1.5.5",
            "duckdb-extension-avro==1.5.5",
            "gcp-storage-emulator",
        ],
        "test": ["pytest>=8", "pytest-timeout", "ruff", "httpx>=0.27", "jsonschema"],
    },
)
