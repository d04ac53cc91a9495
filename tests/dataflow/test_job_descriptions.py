"""Offline proof that every job submits to Dataflow: the full job description, built in seconds.

No network and no credentials: see :mod:`tests.dataflow.offline` for what is redirected
(uploads to gs:// and the bucket soft-delete probe, in this test only).
"""

from __future__ import annotations

import importlib
import tarfile
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from tests.dataflow.offline import BUCKET, LOCAL_ENDPOINT_ENVS, PROJECT, REGION, JobDescription, describe

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_FILE = str(REPO_ROOT / "setup.py")
SDK_IMAGE = f"gcr.io/cloud-dataflow/v1beta3/beam_python3.11_sdk:{beam.__version__}"
LAKE = "gs://acme-lake-prod/ecommerce"
TABLES = {
    "output_table": f"{PROJECT}:ecommerce.user_behavior",
    "dead_letter_table": f"{PROJECT}:ecommerce.dead_letter",
    "products_table": f"{PROJECT}:ecommerce.products",
    "users_table": f"{PROJECT}:ecommerce.users",
}
JOBS: dict[str, dict[str, Any]] = {
    "extract_orders": {
        "options": {
            "api_base_url": "https://orders.acme.example",
            "api_token_secret": f"projects/{PROJECT}/secrets/orders-api-token/versions/latest",
            "window_start": "2026-11-21T10:00:00Z",
            "window_end": "2026-11-21T10:10:00Z",
            "lake_root": LAKE,
        },
        "steps": ["ReadOrdersFromApi", "WriteOrderPartitions", "WriteDeadLetterPartitions", "RecordExtractedWindow"],
        "type": "JOB_TYPE_BATCH",
    },
    "extract_dims": {
        "options": {
            "cloud_sql_instance": f"{PROJECT}:{REGION}:shop",
            "database_user": f"df-extract-dims@{PROJECT}.iam",
            "database_name": "shop",
            "lake_root": LAKE,
            "snapshot_ts": "2026-11-21T11:00:00Z",
        },
        "steps": ["ReadProducts", "WriteProductsSnapshot", "ReadUsers", "WriteUsersSnapshot"],
        "type": "JOB_TYPE_BATCH",
    },
    "hourly": {
        "options": {
            "window_start": "2026-11-21T10:00:00Z",
            "window_end": "2026-11-21T11:00:00Z",
            "lake_root": LAKE,
            "orders_table": f"{PROJECT}:ecommerce.orders",
            **TABLES,
        },
        "steps": [
            "CheckOrdersExtracted",
            "ReadProductsSnapshot",
            "ReadUsersSnapshot",
            "ReadOrderFiles",
            "ParseOrders",
            "ExplodeOrderLines",
            "ValidateOrderRecords",
            "DeduplicateOrderEvents",
            "EnrichOrderEvents",
            "StageUserBehavior",
            "StageDeadLetters",
            "MergeStagingTables",
            "DropStagingTables",
        ],
        "type": "JOB_TYPE_BATCH",
    },
    "streaming": {
        "options": {
            "input_subscription": f"projects/{PROJECT}/subscriptions/user-events-dataflow",
            "engagement_table": f"{PROJECT}:ecommerce.engagement_minutely",
            "lake_root": LAKE,
            **TABLES,
        },
        "steps": [
            "ReadEvents",
            "ParseEvents",
            "ArchiveMessages",
            "DeduplicateEvents",
            "EnrichWithDimensions",
            "WriteUserBehavior",
            "ComputeEngagement",
            "WriteEngagement",
            "WriteDeadLetters",
        ],
        "type": "JOB_TYPE_STREAMING",
        "extra_args": ["--streaming"],
    },
}


@pytest.fixture(autouse=True)
def _no_local_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulator fixtures of other tests may have set these; a Dataflow job must not see them."""
    for name in LOCAL_ENDPOINT_ENVS:
        monkeypatch.delenv(name, raising=False)


def job_options_class(module: Any) -> type[PipelineOptions]:
    (cls,) = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, PipelineOptions) and v.__module__ == module.__name__
    ]
    return cls


def sdist_file(description: JobDescription, suffix: str) -> str:
    with tarfile.open(description.upload("workflow.tar.gz")) as tar:
        (member,) = [m for m in tar.getmembers() if m.name.endswith(suffix)]
        return tar.extractfile(member).read().decode()  # type: ignore[union-attr]


def test_tiny_pipeline_job_description(tmp_path: Path) -> None:
    def build(p: beam.Pipeline, _options: PipelineOptions) -> None:
        _ = p | "CreateNumbers" >> beam.Create([1, 2, 3]) | "DoubleNumbers" >> beam.Map(lambda x: 2 * x)

    description = describe(build, ["--job_name=tiny-job", f"--setup_file={SETUP_FILE}"], tmp_path)

    assert description.job["name"] == "tiny-job"
    assert description.job["type"] == "JOB_TYPE_BATCH"
    assert description.step_names() == ["CreateNumbers", "DoubleNumbers"]
    pool = description.environment["workerPools"][0]
    assert [c["containerImage"] for c in pool["sdkHarnessContainerImages"]] == [SDK_IMAGE]
    staged = {p["name"]: p["location"] for p in pool["packages"]}
    assert staged["workflow.tar.gz"].startswith("storage.googleapis.com/acme-dataflow-prod/staging/tiny-job.")
    assert (description.options["project"], description.options["region"]) == (PROJECT, REGION)
    assert description.options["temp_location"].startswith(f"{BUCKET}/temp/tiny-job.")


@pytest.mark.parametrize("job", sorted(JOBS))
def test_job_description(job: str, tmp_path: Path) -> None:
    spec = JOBS[job]
    module = importlib.import_module(f"beam_pipelines.{job}")
    options_cls = job_options_class(module)
    job_name = f"ecommerce-{job.replace('_', '-')}"
    service_account = f"df-{job.replace('_', '-')}@{PROJECT}.iam.gserviceaccount.com"
    argv = [
        f"--job_name={job_name}",
        f"--setup_file={SETUP_FILE}",
        f"--service_account_email={service_account}",
        *spec.get("extra_args", []),
        *(f"--{k}={v}" for k, v in spec["options"].items()),
    ]

    description = describe(lambda p, options: module.build_pipeline(p, options.view_as(options_cls)), argv, tmp_path)

    # The job the service would create.
    assert description.job["name"] == job_name
    assert description.job["type"] == spec["type"]
    steps = description.step_names()
    assert [s for s in steps if s in spec["steps"]] == spec["steps"], steps
    assert len(steps) == len(set(steps))  # unique labels: --update maps steps by name
    # Workers: the Beam SDK image of this Beam version, plus our package built from setup.py.
    pool = description.environment["workerPools"][0]
    assert [c["containerImage"] for c in pool["sdkHarnessContainerImages"]] == [SDK_IMAGE]
    assert "workflow.tar.gz" in {p["name"] for p in pool["packages"]}
    pkg_info = sdist_file(description, "ecommerce_user_behavior-0.1.0/PKG-INFO")
    assert "Name: ecommerce-user-behavior" in pkg_info
    members = {m.split("/", 1)[1] for m in description.sdist_members() if "/" in m}
    assert {f"beam_pipelines/{job}.py", "beam_pipelines/events.py", "bigquery_schemas/user_behavior.json",
            "bigquery_schemas/tables.json", "setup.py"} <= members  # fmt: skip
    # Workers install apache-beam[gcp] pinned to the version that built the job (and its SDK image).
    setup_py = sdist_file(description, "setup.py")
    assert f'BEAM_VERSION = "{beam.__version__}"' in setup_py
    assert 'f"apache-beam[gcp]=={BEAM_VERSION}"' in setup_py
    # Options as the workers will see them.
    options = description.options
    assert {k: options[k] for k in spec["options"]} == spec["options"]
    assert (options["project"], options["region"], options["runner"]) == (PROJECT, REGION, "DataflowRunner")
    assert options["service_account_email"] == service_account
    assert description.environment["serviceAccountEmail"] == service_account
    assert options["streaming"] is (spec["type"] == "JOB_TYPE_STREAMING")


def test_describing_refuses_emulator_endpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "http://127.0.0.1:9050")
    with pytest.raises(RuntimeError, match="unset BIGQUERY_EMULATOR_HOST"):
        describe(lambda p, o: None, [], tmp_path)
