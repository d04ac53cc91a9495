"""Flex Templates: metadata files match the jobs' options, gcloud accepts them, the Dockerfile fits."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.dataflow.test_job_descriptions import JOBS, job_options_class

REPO_ROOT = Path(__file__).resolve().parents[2]
DATAFLOW_DIR = REPO_ROOT / "dataflow"
IMAGE_BASE = "gcr.io/dataflow-templates-base/python311-template-launcher-base"
# contracts.md: the options each job exposes (all must be template parameters).
CONTRACT_OPTIONS = {
    "extract_orders": {"api_base_url", "api_token_env", "api_token_secret", "window_start", "window_end",
                       "lake_root", "page_size"},
    # No database_url_env: Dataflow workers do not have the launcher's environment.
    "extract_dims": {"cloud_sql_instance", "database_user", "database_name", "cloud_sql_ip_type",
                     "database_password_secret", "database_url", "lake_root", "tables", "num_partitions",
                     "updated_since", "snapshot_ts"},
    "hourly": {"window_start", "window_end", "lake_root", "output_table", "dead_letter_table", "products_table",
               "users_table", "orders_table", "temp_gcs_location", "run_id"},
    "streaming": {"input_subscription", "output_table", "dead_letter_table", "engagement_table", "products_table",
                  "users_table", "dims_lake_root", "dims_refresh_seconds", "dims_load_timeout_seconds",
                  "dedup_horizon_minutes",
                  "allowed_lateness_minutes", "window_seconds", "lake_root", "archive_flush_seconds",
                  "archive_shards"},
}  # fmt: skip
REQUIRED = {
    "extract_orders": {"api_base_url", "window_start", "window_end", "lake_root"},
    "extract_dims": {"lake_root"},
    "hourly": {"window_start", "window_end", "lake_root", "output_table", "dead_letter_table", "products_table",
               "users_table", "orders_table"},
    "streaming": {"input_subscription", "output_table", "dead_letter_table", "engagement_table", "lake_root"},
}  # fmt: skip


def metadata(job: str) -> dict[str, Any]:
    return json.loads((DATAFLOW_DIR / job / "metadata.json").read_text())


def job_option_names(job: str) -> set[str]:
    """Every ``--option`` the job's PipelineOptions subclass declares."""
    cls = job_options_class(importlib.import_module(f"beam_pipelines.{job}"))
    parser = argparse.ArgumentParser(conflict_handler="resolve")
    cls._add_argparse_args(parser)
    return {a.dest for a in parser._actions if a.option_strings and a.dest != "help"}


def test_one_metadata_file_per_job() -> None:
    assert sorted(p.parent.name for p in DATAFLOW_DIR.glob("*/metadata.json")) == sorted(CONTRACT_OPTIONS)


@pytest.mark.parametrize("job", sorted(CONTRACT_OPTIONS))
def test_parameters_are_the_jobs_options(job: str) -> None:
    params = {p["name"]: p for p in metadata(job)["parameters"]}
    assert set(params) == CONTRACT_OPTIONS[job]
    assert set(params) <= job_option_names(job)  # every parameter reaches a real option
    assert {n for n, p in params.items() if not p["isOptional"]} == REQUIRED[job]
    for p in params.values():
        assert p["label"] and p["helpText"].endswith("."), p["name"]


@pytest.mark.parametrize("job", sorted(CONTRACT_OPTIONS))
def test_regexes_accept_real_values_and_reject_wrong_ones(job: str) -> None:
    params = {p["name"]: p for p in metadata(job)["parameters"]}
    for name, value in JOBS[job]["options"].items():
        for regex in params[name].get("regexes", []):
            assert re.fullmatch(regex, value), (name, value)
    wrong = {
        "window_start": "2026-11-22 10:00",
        "lake_root": "s3://bucket/x",
        "output_table": "dataset.user_behavior",
        "input_subscription": "projects/p/topics/user-events",
        "api_base_url": "orders.internal",
        "database_url": "postgresql://reader:example-pw@10.20.0.5:5432/shop",  # a password in the URL
        "database_password_secret": "shop-reader",
        "cloud_sql_instance": "shop",
    }
    for name, value in wrong.items():
        if name in params and params[name].get("regexes"):
            assert not any(re.fullmatch(r, value) for r in params[name]["regexes"]), (name, value)
    if job == "hourly":  # whole hours only
        assert not re.fullmatch(params["window_start"]["regexes"][0], "2026-11-22T10:10:00Z")


def test_dockerfile_uses_the_python_launcher_and_the_package() -> None:
    text = (DATAFLOW_DIR / "Dockerfile").read_text()
    assert re.search(rf"^FROM {re.escape(IMAGE_BASE)}$", text, re.M)
    assert 'ENV FLEX_TEMPLATE_PYTHON_PY_FILE="${WORKDIR}/beam_pipelines/${JOB}.py"' in text
    assert 'ENV FLEX_TEMPLATE_PYTHON_SETUP_FILE="${WORKDIR}/setup.py"' in text
    for path in re.findall(r"^COPY (\S+)", text, re.M):
        assert (REPO_ROOT / path.rstrip("/")).exists(), path
    for job in CONTRACT_OPTIONS:
        assert (REPO_ROOT / "beam_pipelines" / f"{job}.py").exists()


@pytest.mark.integration
@pytest.mark.parametrize("job", sorted(CONTRACT_OPTIONS))
def test_gcloud_flex_template_build_print_only_accepts_metadata(job: str, tmp_path: Path) -> None:
    gcloud = shutil.which("gcloud")
    assert gcloud, "the Google Cloud CLI (gcloud) is needed to validate Flex Template metadata"
    image = f"europe-west1-docker.pkg.dev/acme-analytics-prod/dataflow/ecommerce-{job.replace('_', '-')}:test"
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    result = subprocess.run(
        [gcloud, "dataflow", "flex-template", "build", f"gs://acme-dataflow-prod/templates/{job}.json",
         f"--image={image}", "--sdk-language=PYTHON", f"--metadata-file={DATAFLOW_DIR / job / 'metadata.json'}",
         "--print-only"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # gcloud prints the spec as a YAML block scalar holding JSON.
    spec = json.loads(textwrap.dedent(result.stdout.split("\n", 1)[1]))
    assert spec["image"] == image
    assert spec["sdkInfo"] == {"language": "PYTHON"}
    # gcloud silently drops fields it does not know: equality proves none was dropped.
    assert spec["metadata"] == metadata(job)


def test_dockerignore_keeps_local_state_out_and_the_package_in() -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for heavy in (".venv", ".local", ".git", "**/__pycache__", ".pytest_cache", "tests"):
        assert heavy in patterns, heavy
    copied = {p.rstrip("/") for p in re.findall(r"^COPY (.+) \S+$", (DATAFLOW_DIR / "Dockerfile").read_text(), re.M)
              for p in p.split()}  # fmt: skip
    assert copied == {"setup.py", "requirements.lock", "beam_pipelines", "bigquery_schemas", "publishers"}
    assert not copied & set(patterns)
    assert not any(p.startswith("!") for p in patterns)  # no re-includes that could undo an exclusion
