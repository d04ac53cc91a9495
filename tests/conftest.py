"""Test configuration: every module in tests/fixtures/ is a pytest plugin.

Fixtures that need a real service (emulators, PostgreSQL, the orders API) start it
on free loopback ports and stop it at the end of the session.
"""

import os
from pathlib import Path

from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream

from tests import composer_versions

# Never probe the GCE metadata server, never let google-auth look for a login.
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "local-ecommerce")

# Beam's TestPipeline/TestStream are not test classes, whatever their names say.
TestPipeline.__test__ = False
TestStream.__test__ = False

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"
)

# The DAG tests run in .venv/composer, at the Composer image's Airflow and provider versions
# (`make test-composer`, part of `make test`, which fails when it collects nothing). The
# main venv has no Airflow, as the Dataflow workers have none: there, and in any venv whose
# Airflow is not the image's, tests/composer is not collected (and airflow never imported).
collect_ignore = [] if composer_versions.in_composer_env() else ["composer"]
