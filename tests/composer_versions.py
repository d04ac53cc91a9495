"""The Cloud Composer image the DAGs target, and its pinned versions, read from requirements-composer.in.

``requirements-composer.in`` is the one place that names the image
(``composer-3-airflow-X.Y.Z-build.N``) and the Airflow and provider versions it ships;
the lock, ``docs/deploy.md`` and the tests are checked against it. Reading it needs no
Airflow, so the main venv's ``tests/conftest.py`` can decide, without importing
``airflow``, whether this interpreter is the DAG tests' environment.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements-composer.in"
AIRFLOW = "apache-airflow"
_IMAGE = re.compile(r"\bcomposer-\d+-airflow-\d+\.\d+\.\d+-build\.\d+\b")
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^]]*\])?==(?P<version>\S+)")


def image() -> str:
    """The Composer image, e.g. ``composer-3-airflow-2.10.5-build.15``.

    Raises:
      ValueError: requirements-composer.in names no image, or more than one.
    """
    found = set(_IMAGE.findall(REQUIREMENTS.read_text()))
    if len(found) != 1:
        expected = "composer-<n>-airflow-<x.y.z>-build.<n>"
        raise ValueError(f"{REQUIREMENTS.name} must name one {expected} image, found {sorted(found)}")
    return found.pop()


def pins() -> dict[str, str]:
    """Every ``name==version`` line of requirements-composer.in, names lower-case (extras dropped)."""
    out = {}
    for line in REQUIREMENTS.read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            out[match["name"].lower()] = match["version"]
    return out


def airflow_pin() -> str:
    """The image's Airflow version (``2.10.5``)."""
    return pins()[AIRFLOW]


def in_composer_env() -> bool:
    """True when this interpreter has exactly the image's Airflow (``.venv/composer``)."""
    try:
        return metadata.version(AIRFLOW) == airflow_pin()
    except metadata.PackageNotFoundError:
        return False
