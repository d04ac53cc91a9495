"""This environment is the Composer image's: every pin of requirements-composer.in is what is installed.

The pins are the image's Airflow and providers and the tests' own (Beam, the emulators).
"""

from __future__ import annotations

from importlib import metadata

from tests import composer_versions


def test_installed_versions_are_the_pins() -> None:
    pins = composer_versions.pins()
    assert composer_versions.AIRFLOW in pins and "apache-airflow-providers-google" in pins
    assert {name: metadata.version(name) for name in pins} == pins


def test_airflow_reports_the_pinned_version() -> None:
    import airflow

    assert airflow.__version__ == composer_versions.airflow_pin()
