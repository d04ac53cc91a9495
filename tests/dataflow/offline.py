"""Build a job's full Dataflow job description offline: no network, no credentials, ~2 s.

``--dry_run`` only returns a stub job. What the Dataflow service would receive comes
from ``--template_location=<local file> --no_auth``: the runner writes the job JSON
to that file instead of submitting it. Two things still talk to Cloud Storage and,
offline, retry for minutes; this module redirects them, for the test only:

* every upload to ``gs://`` (``DataflowApplicationClient.stage_file``: the setup.py
  sdist ``workflow.tar.gz``, ``pipeline.pb``, ...) is written to a local folder and
  recorded under its ``gs://`` name, so the job JSON still names the real locations;
* the soft-delete policy probe of the temp/staging buckets is skipped.

With Runner v2 the steps are not in the job JSON but in the portable pipeline
(``pipeline.pb``), which is parsed from the captured upload.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.internal import apiclient

from bigquery_schemas.client import EMULATOR_ENV, EMULATOR_GRPC_ENV

PROJECT = "acme-analytics-prod"
REGION = "europe-west1"
BUCKET = "gs://acme-dataflow-prod"
# Realistic names on purpose: ids like "p" or buckets like "gs://b" are rejected.
DATAFLOW_ARGS = [
    "--runner=DataflowRunner",
    f"--project={PROJECT}",
    f"--region={REGION}",
    f"--temp_location={BUCKET}/temp",
    f"--staging_location={BUCKET}/staging",
    "--no_auth",
]
LOCAL_ENDPOINT_ENVS = (EMULATOR_ENV, EMULATOR_GRPC_ENV, "PUBSUB_EMULATOR_HOST",
                       "STORAGE_EMULATOR_HOST")  # fmt: skip


@dataclass
class JobDescription:
    """What ``DataflowRunner`` would send: the job JSON plus the files it would upload."""

    job: dict[str, Any]
    uploads: dict[str, Path] = field(default_factory=dict)  # gs:// name -> local copy

    @property
    def environment(self) -> dict[str, Any]:
        return self.job["environment"]

    @property
    def options(self) -> dict[str, Any]:
        return self.environment["sdkPipelineOptions"]["options"]

    def upload(self, name: str) -> Path:
        """The uploaded file whose gs:// path ends with ``/name``."""
        (path,) = [local for remote, local in self.uploads.items() if remote.endswith("/" + name)]
        return path

    def pipeline(self) -> beam_runner_api_pb2.Pipeline:
        return beam_runner_api_pb2.Pipeline.FromString(self.upload("pipeline.pb").read_bytes())

    def step_names(self) -> list[str]:
        """Labels of the pipeline's top-level steps, in order (what the Dataflow job graph shows).

        The runner wraps the whole pipeline in one root transform; its children are the steps.
        """
        proto = self.pipeline()
        names: list[str] = []
        for root_id in proto.root_transform_ids:
            root = proto.components.transforms[root_id]
            names.extend(proto.components.transforms[s].unique_name for s in root.subtransforms)
        return names

    def sdist_members(self) -> list[str]:
        with tarfile.open(self.upload("workflow.tar.gz")) as tar:
            return tar.getnames()


@contextmanager
def offline_staging(upload_dir: Path) -> Iterator[dict[str, Path]]:
    """Redirect Dataflow's gs:// uploads into ``upload_dir`` and skip bucket probes."""
    uploads: dict[str, Path] = {}
    original = apiclient.DataflowApplicationClient.stage_file

    def stage_file(self: Any, gcs_or_local_path: str, file_name: str, stream: Any, *args: Any, **kwargs: Any) -> None:
        if not gcs_or_local_path.startswith("gs://"):
            return original(self, gcs_or_local_path, file_name, stream, *args, **kwargs)
        remote = f"{gcs_or_local_path.rstrip('/')}/{file_name}"
        local = upload_dir / remote.removeprefix("gs://")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(stream.read())
        uploads[remote] = local
        return None

    with (
        mock.patch.object(apiclient.DataflowApplicationClient, "stage_file", stage_file),
        mock.patch.object(GoogleCloudOptions, "_warn_if_soft_delete_policy_enabled", lambda self, arg: None),
    ):
        yield uploads


def describe(build: Callable[[beam.Pipeline, PipelineOptions], Any], argv: list[str], workdir: Path) -> JobDescription:
    """Build a pipeline with ``build(p, options)`` for the DataflowRunner and capture its job description."""
    for name in LOCAL_ENDPOINT_ENVS:  # a Dataflow job must never point at a local emulator
        if name in os.environ:
            raise RuntimeError(f"unset {name} before describing a Dataflow job")
    template = workdir / "job.json"
    with offline_staging(workdir / "uploads") as uploads:
        options = PipelineOptions([*DATAFLOW_ARGS, f"--template_location={template}", *argv])
        pipeline = beam.Pipeline(options=options)
        build(pipeline, options)
        pipeline.run()
    return JobDescription(json.loads(template.read_text()), dict(uploads))
