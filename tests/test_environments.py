"""The two locked environments hold what their side needs, and the Composer one the image's versions.

* ``requirements.lock`` (the main venv: jobs, publishers, local stack, tests) has no
  Airflow: the Dataflow workers have none, and the google provider's extras (Vertex AI
  evaluation: litellm, openai, tiktoken; ray) made it 2.5 GB.
* ``requirements-composer.lock`` (``.venv/composer``) resolves the pins of
  ``requirements-composer.in`` to exactly those versions.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests import composer_versions

REPO_ROOT = Path(__file__).resolve().parents[1]
# Not in the main venv, whatever pulls them in.
NOT_IN_MAIN = re.compile(r"^(apache-airflow.*|litellm|openai|tiktoken|ray|google-cloud-aiplatform\[.*\])$")


def locked(path: Path) -> dict[str, str]:
    """``{name: version}`` of a uv-compiled lock file."""
    out = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._\[\],-]*)==(\S+)", line)
        if match:
            out[match[1].lower()] = match[2]
    return out


def test_main_lock_has_no_airflow_llm_or_ray_packages() -> None:
    main = locked(REPO_ROOT / "requirements.lock")
    assert "apache-beam" in main  # the parser reads this lock
    assert sorted(n for n in main if NOT_IN_MAIN.match(n)) == []


def test_composer_lock_resolves_the_image_pins() -> None:
    pins = composer_versions.pins()
    assert pins[composer_versions.AIRFLOW] == composer_versions.airflow_pin()
    assert {n for n in pins if n.startswith("apache-airflow-providers-")} >= {
        "apache-airflow-providers-google",
        "apache-airflow-providers-apache-beam",
    }
    lock = locked(REPO_ROOT / "requirements-composer.lock")
    assert {n: lock.get(n) for n in pins} == pins


def test_the_image_named_once_matches_its_airflow_pin() -> None:
    image = composer_versions.image()
    assert image.startswith(f"composer-3-airflow-{composer_versions.airflow_pin()}-build.")


def test_deploy_doc_names_the_image_and_its_pinned_versions() -> None:
    deploy = (REPO_ROOT / "docs" / "deploy.md").read_text()
    assert f"--image-version {composer_versions.image()} " in deploy
    airflow_pins = {n: v for n, v in composer_versions.pins().items() if n.startswith(composer_versions.AIRFLOW)}
    assert len(airflow_pins) >= 3
    for name, version in airflow_pins.items():
        assert f"`{name}=={version}`" in deploy, name
    named = dict(re.findall(r"`(apache-airflow[a-z-]*)==([0-9][^`]*)`", deploy))
    assert named == {n: airflow_pins[n] for n in named}  # no other version named anywhere
