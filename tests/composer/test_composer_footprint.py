"""What a Composer environment needs of this repository: the DAG files and a few pure-Python helpers.

No pip package is installed into Composer (its image keeps its own Beam): docs/deploy.md
copies ``composer_dags/`` and the source folders its tasks import at run time into the
environment's ``dags/`` folder. Measured here in a fresh interpreter, with the Composer
configuration:

* parsing the DAGs imports neither Beam nor any of the job code;
* the tasks that run on the Composer workers (the window markers, the lake sensor, the
  analytics SQL macro) import only ``beam_pipelines.lake``/``events`` and
  ``bigquery_schemas.analytics`` of this repository, with Beam's public FileSystems and the
  BigQuery client (both in the image), never the jobs' own dependencies;
* those folders are exactly what docs/deploy.md uploads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from composer_dags.config import COMPOSER_ENV
from tests.composer.conftest import DAGS_FOLDER, REPO_ROOT
from tests.composer.test_dag_dataflow_submission import CONFIG

REPOSITORY_PACKAGES = {"beam_pipelines", "bigquery_schemas", "composer_dags", "publishers", "tests"}
# The jobs' and the local stack's own dependencies, none of them in the Composer image (requests
# and pyarrow are: Airflow and its providers import them themselves).
JOB_ONLY = {"psycopg", "faker", "fastapi", "uvicorn", "duckdb", "bqemulator", "gcp_storage_emulator"}
# Run in a fresh interpreter, as Composer would: parse the DAG folder, then run what the
# tasks run on the workers; print what was imported after each stage.
CHILD = """
import json, sys

def imported():
    mods = sorted(sys.modules)
    return {"ours": [m for m in mods if m.split(".")[0] in REPOSITORY_PACKAGES],
            "roots": sorted({m.split(".")[0] for m in mods})}

from airflow.models import DagBag
bag = DagBag(dag_folder=DAGS_FOLDER)
parsed = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags), **imported()}

from composer_dags import common
root = common.cfg("lake_root")
sensor = common.LakeReadySensor(task_id="w", lake_root=root, window_start="2026-11-21T10:00:00Z",
                                window_end="2026-11-21T11:00:00Z", dims_tables="products,users")
ran = {"missing": sensor.missing(), "sql": common.analytics_sql("user_behavior_dedup"), **imported()}
print(json.dumps({"parsed": parsed, "ran": ran}))
"""


@pytest.fixture(scope="module")
def footprint(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What parsing the DAGs, then running the workers' side of the tasks, imported (one fresh interpreter)."""
    lake_root = str(tmp_path_factory.mktemp("lake"))
    env = {**os.environ, "AIRFLOW_VAR_ECOMMERCE_CONFIG": json.dumps({**CONFIG, "lake_root": lake_root}),
           COMPOSER_ENV: "ecommerce"}  # fmt: skip
    script = f"REPOSITORY_PACKAGES = {sorted(REPOSITORY_PACKAGES)!r}\nDAGS_FOLDER = {str(DAGS_FOLDER)!r}\n{CHILD}"
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_parsing_the_dags_imports_no_job_code_and_no_beam(footprint: dict[str, Any]) -> None:
    parsed = footprint["parsed"]
    assert parsed["errors"] == {}
    assert parsed["dags"] == ["ecommerce_extract_dims", "ecommerce_extract_orders", "ecommerce_hourly"]
    assert {m.split(".")[0] for m in parsed["ours"]} == {"composer_dags"}
    assert not ({"apache_beam"} | JOB_ONLY) & set(parsed["roots"])


def test_tasks_on_composer_workers_import_only_the_uploaded_helpers(footprint: dict[str, Any]) -> None:
    ran = footprint["ran"]
    # The orders extract records of the hour and both snapshots: the helpers really ran.
    assert len(ran["missing"]) == 1 + 2 and "10:00:00Z..11:00:00Z" in ran["missing"][0]
    assert f"`{CONFIG['project']}.{CONFIG['dataset']}." in ran["sql"]
    helpers = {m for m in ran["ours"] if not m.startswith("composer_dags")}
    assert helpers == {"beam_pipelines", "beam_pipelines.events", "beam_pipelines.lake", "bigquery_schemas",
                       "bigquery_schemas.analytics"}  # fmt: skip
    assert not JOB_ONLY & set(ran["roots"])
    # docs/deploy.md uploads these packages (and only these) beside the DAGs.
    deploy = (REPO_ROOT / "docs" / "deploy.md").read_text()
    uploaded = set(re.findall(r'gcloud storage rsync --recursive (\w+) "\$COMPOSER_BUCKET/dags/\1"', deploy))
    assert uploaded == {"composer_dags"} | {m.split(".")[0] for m in helpers}
