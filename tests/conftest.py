"""Test configuration: every module in tests/fixtures/ is a pytest plugin.

Fixtures that need a real service (emulators, PostgreSQL, the orders API) start it
on free loopback ports and stop it at the end of the session.
"""

import os
from pathlib import Path

# Never probe the GCE metadata server, never let google-auth look for a login.
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "local-ecommerce")

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"
)
