"""Each job file, run exactly as the Flex Template launcher runs it, exits 0 and writes its job.

The launcher (``dataflow/Dockerfile``: ``FLEX_TEMPLATE_PYTHON_PY_FILE``) runs the job file
as ``__main__`` with ``--runner=DataflowRunner --template_location=gs://.../job_object``
and the template's parameters; any non-zero exit fails the launch. Here the file runs
the same way, in a fresh interpreter: credentials come from a stand-in for the VM's
metadata server (no key file, no ``NO_GCE_CHECK``), and Cloud Storage is the GCS
emulator, where the job description, the pipeline proto and the setup.py sdist land
and are read back. The job must not look for a job id or metrics (there is none yet),
touch BigQuery or the lake, or contain a local-only step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from tests.dataflow.offline import BUCKET, LOCAL_ENDPOINT_ENVS, PROJECT, REGION, JobDescription
from tests.dataflow.test_job_descriptions import JOBS, REPO_ROOT
from tests.dataflow.test_runner_spellings import LOCAL_ONLY_STEPS, all_transform_names
from tests.fixtures.gce_metadata import FakeMetadataServer

pytestmark = pytest.mark.integration
TEMPLATE_BUCKET = BUCKET.removeprefix("gs://")


@pytest.fixture(scope="module")
def metadata_server():
    with FakeMetadataServer() as server:
        yield server


@pytest.fixture(scope="module")
def cloud_storage(gcs_emulator) -> storage.Client:
    client = storage.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=gcs_emulator.url)
    )
    if client.lookup_bucket(TEMPLATE_BUCKET) is None:
        client.create_bucket(TEMPLATE_BUCKET)
    return client


def launcher_env(metadata_server: FakeMetadataServer, gcs_url: str, job: str) -> dict[str, str]:
    """The launcher container's environment: its Dockerfile's variables and a VM's credentials."""
    env = {k: v for k, v in os.environ.items() if k not in (*LOCAL_ENDPOINT_ENVS, "NO_GCE_CHECK")}
    env.update(metadata_server.env)
    env["STORAGE_EMULATOR_HOST"] = gcs_url  # stands in for Cloud Storage only
    env["FLEX_TEMPLATE_PYTHON_PY_FILE"] = str(REPO_ROOT / "beam_pipelines" / f"{job}.py")
    env["FLEX_TEMPLATE_PYTHON_SETUP_FILE"] = str(REPO_ROOT / "setup.py")
    env["PIP_NO_DEPS"] = "True"
    return env


@pytest.mark.parametrize("job", sorted(JOBS))
def test_job_file_runs_as_the_flex_launcher_runs_it(job, metadata_server, cloud_storage, gcs_emulator, tmp_path):
    spec = JOBS[job]
    job_name = f"launch-{job.replace('_', '-')}"
    template = f"{BUCKET}/templates/{job_name}/job_object"
    env = launcher_env(metadata_server, gcs_emulator.url, job)
    argv = [
        sys.executable,
        env["FLEX_TEMPLATE_PYTHON_PY_FILE"],
        "--runner=DataflowRunner",
        f"--project={PROJECT}",
        f"--region={REGION}",
        f"--job_name={job_name}",
        f"--template_location={template}",
        f"--staging_location={BUCKET}/staging",
        f"--temp_location={BUCKET}/temp",
        f"--setup_file={env['FLEX_TEMPLATE_PYTHON_SETUP_FILE']}",
        *spec.get("extra_args", []),
        *(f"--{k}={v}" for k, v in spec["options"].items()),
    ]
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    assert f"job description written to {template}" in done.stdout
    assert any("/token" in r for r in metadata_server.requests)  # credentials the way a VM has them

    # The job description and everything it names, read back from "Cloud Storage".
    uploads: dict[str, Path] = {}
    for blob in cloud_storage.list_blobs(TEMPLATE_BUCKET, prefix=f"staging/{job_name}."):
        local = tmp_path / blob.name
        local.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(local)
        uploads[f"{BUCKET}/{blob.name}"] = local
    job_json = json.loads(
        cloud_storage.bucket(TEMPLATE_BUCKET).blob(f"templates/{job_name}/job_object").download_as_text()
    )
    description = JobDescription(job_json, uploads)
    assert description.job["type"] == spec["type"]
    assert description.options["runner"] == "DataflowRunner"
    steps = description.step_names()
    assert [s for s in steps if s in spec["steps"]] == spec["steps"], steps
    assert f"beam_pipelines/{job}.py" in {m.split("/", 1)[1] for m in description.sdist_members() if "/" in m}
    names = all_transform_names(description.pipeline())
    assert not {n for n in names if n.rsplit("/", 1)[-1] in LOCAL_ONLY_STEPS}, sorted(names)
