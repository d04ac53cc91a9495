"""The alerting files in dataflow/monitoring/, validated offline (no project, no network).

* ``log_metric_pipeline_alerts.yaml``: a Cloud Logging ``LogMetric`` counting the
  ``ECOMMERCE_PIPELINE_ALERT`` lines of the Composer failure notifier;
* ``alert_policy_pipelines.json``: a Cloud Monitoring ``AlertPolicy`` on that metric and
  on the Dataflow jobs' metrics (failed job, Beam counters of rows BigQuery refused,
  streaming watermark age).

Each is checked against a JSON schema of the API fields it uses (the REST resources'
names, types and enums; unknown fields are refused, as the API refuses them), and
against the code: the Beam counters the policy watches exist (that the alert prefix is
the notifier's is checked in tests/composer/test_dags.py, where Airflow is).
tests/dataflow/test_deploy_doc.py checks the gcloud commands that create them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "dataflow" / "monitoring"
LOG_METRIC = MONITORING / "log_metric_pipeline_alerts.yaml"
ALERT_POLICY = MONITORING / "alert_policy_pipelines.json"
DURATION = {"type": "string", "pattern": r"^\d+s$"}
ALIGNERS = ["ALIGN_SUM", "ALIGN_MAX", "ALIGN_MEAN", "ALIGN_COUNT", "ALIGN_DELTA", "ALIGN_RATE"]
STRICT = {"type": "object", "additionalProperties": False}

LOG_METRIC_SCHEMA = {
    **STRICT,
    "required": ["name", "description", "filter"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9_\-.]{1,100}$"},
        "description": {"type": "string", "minLength": 1},
        "filter": {"type": "string", "minLength": 1},
        "metricDescriptor": {
            **STRICT,
            "properties": {
                "metricKind": {"enum": ["DELTA"]},  # the only kind a log-based counter has
                "valueType": {"enum": ["INT64", "DISTRIBUTION"]},
                "unit": {"type": "string"},
            },
        },
    },
}
THRESHOLD = {
    **STRICT,
    "required": ["filter", "comparison", "duration"],
    "properties": {
        "filter": {"type": "string", "pattern": r'metric\.type = "[a-z.]+googleapis\.com/[A-Za-z0-9_/]+"'},
        "aggregations": {
            "type": "array",
            "items": {
                **STRICT,
                "required": ["alignmentPeriod", "perSeriesAligner"],
                "properties": {
                    "alignmentPeriod": DURATION,
                    "perSeriesAligner": {"enum": ALIGNERS},
                    "crossSeriesReducer": {"type": "string", "pattern": "^REDUCE_"},
                    "groupByFields": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "comparison": {"enum": ["COMPARISON_GT", "COMPARISON_GE", "COMPARISON_LT", "COMPARISON_LE"]},
        "thresholdValue": {"type": "number"},
        "duration": DURATION,
        "trigger": {**STRICT, "properties": {"count": {"type": "integer", "minimum": 1}}},
    },
}
ALERT_POLICY_SCHEMA = {
    **STRICT,
    "required": ["displayName", "combiner", "conditions", "documentation"],
    "properties": {
        "displayName": {"type": "string", "minLength": 1},
        "documentation": {
            **STRICT,
            "required": ["content", "mimeType"],
            "properties": {"content": {"type": "string", "minLength": 1}, "mimeType": {"const": "text/markdown"}},
        },
        "combiner": {"enum": ["OR", "AND", "AND_WITH_MATCHING_RESOURCE"]},
        "enabled": {"type": "boolean"},
        "userLabels": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^[a-z0-9_-]{0,63}$"}},
        "alertStrategy": {**STRICT, "properties": {"autoClose": DURATION}},
        "notificationChannels": {"type": "array", "items": {"type": "string"}},
        "conditions": {
            "type": "array",
            "minItems": 1,
            "maxItems": 6,  # the API's limit per policy
            "items": {
                **STRICT,
                "required": ["displayName", "conditionThreshold"],
                "properties": {"displayName": {"type": "string", "minLength": 1}, "conditionThreshold": THRESHOLD},
            },
        },
    },
}


def log_metric() -> dict[str, Any]:
    return yaml.safe_load(LOG_METRIC.read_text())


def alert_policy() -> dict[str, Any]:
    return json.loads(ALERT_POLICY.read_text())


def filters() -> list[str]:
    return [c["conditionThreshold"]["filter"] for c in alert_policy()["conditions"]]


def test_log_metric_matches_the_schema() -> None:
    # That it counts the notifier's lines (its prefix) is checked beside the notifier, in
    # tests/composer/test_dags.py: composer_dags imports Airflow, which this venv does not have.
    metric = log_metric()
    jsonschema.validate(metric, LOG_METRIC_SCHEMA)
    assert 'resource.type="cloud_composer_environment"' in metric["filter"]


def test_alert_policy_matches_the_schema() -> None:
    jsonschema.validate(alert_policy(), ALERT_POLICY_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):  # the schema does refuse a typo
        jsonschema.validate({**alert_policy(), "conditons": []}, ALERT_POLICY_SCHEMA)


def test_alert_policy_watches_the_log_metric_and_metrics_the_jobs_have() -> None:
    metric_types = {re.search(r'metric\.type = "([^"]+)"', f).group(1) for f in filters()}
    assert f"logging.googleapis.com/user/{log_metric()['name']}" in metric_types
    assert {"dataflow.googleapis.com/job/is_failed", "dataflow.googleapis.com/job/user_counter"} <= metric_types
    counters = set()
    for path in (REPO_ROOT / "beam_pipelines").rglob("*.py"):
        counters |= set(re.findall(r'Metrics\.counter\(METRICS_NAMESPACE, "([a-z_]+)"\)', path.read_text()))
    watched = {n for f in filters() if "user_counter" in f for n in re.findall(r'"([a-z_]+)"', f.split("one_of", 1)[1])}
    assert watched and watched <= counters, watched - counters
    for f in filters():  # every Dataflow condition is scoped to this project's jobs
        if 'resource.type = "dataflow_job"' in f:
            assert 'starts_with("ecommerce-")' in f or 'job_name = "ecommerce-streaming"' in f, f
