"""Airflow for the DAG tests: a throw-away AIRFLOW_HOME and one metadata DB per session.

Airflow reads its configuration when it is first imported, so the environment is set
here, at collection time, before any test module imports ``airflow``. Only
``AIRFLOW_*`` variables are set; the directory is removed when the session ends.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "composer_dags"
CONFIG_ENV = "AIRFLOW_VAR_ECOMMERCE_CONFIG"

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)
# The DAG files import ``composer_dags.common`` (as they do from Composer's dags/ folder),
# and the Beam jobs the DAGs launch (``python beam_pipelines/<job>.py`` in a subprocess)
# import ``beam_pipelines``: this venv has no editable install of the project, so the
# repository goes on sys.path here and on PYTHONPATH for the subprocesses.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """``airflow db migrate`` once per session (~4 s on SQLite)."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=180, env=os.environ)
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture(scope="session")
def dagbag() -> Any:
    # Airflow 2.10: DagRunNote's foreign key names ab_user, a table of the FAB provider's
    # models; a failure callback that touches the run's note fails unless they are loaded.
    with contextlib.suppress(ImportError):  # Airflow 3.x: notes have no user table
        import airflow.providers.fab.auth_manager.models  # noqa: F401
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3.x
    except ImportError:  # Airflow 2.10
        from airflow.models import DagBag  # type: ignore[no-redef]
    return DagBag(dag_folder=str(DAGS_FOLDER))  # examples are off via AIRFLOW__CORE__LOAD_EXAMPLES


@pytest.fixture
def set_ecommerce_config(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set the ``ecommerce_config`` Variable for this test (from the environment, as Airflow allows).

    The values go through the DAGs' own model first, so a test cannot set a key the DAGs would refuse.
    """
    from composer_dags.config import parse_config

    def apply(**values: Any) -> None:
        parse_config(values, composer=False)
        monkeypatch.setenv(CONFIG_ENV, json.dumps(values))

    apply()
    return apply


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under ``CI=true`` a skipped DAG test fails the run: CI must never pass tests/composer by skipping."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") == "true" and skipped and exitstatus == 0:
        names = ", ".join(r.nodeid for r in skipped)
        reporter.write_line(f"error: CI=true and {len(skipped)} DAG test(s) skipped: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
