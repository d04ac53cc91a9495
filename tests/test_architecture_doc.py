"""docs/architecture.md names every module of the project and every local-only step.

The page is the map a newcomer reads first; a module or a ``runners.LocalStep`` added
without it would make the map quietly wrong.
"""

from __future__ import annotations

from pathlib import Path

from beam_pipelines import runners
from tests.test_import_graph import project_modules

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"


def test_every_module_is_on_the_map():
    text = DOC.read_text()
    missing = [
        name
        for name, path in project_modules().items()
        if path.name != "__init__.py" and not name.startswith("benchmarks.") and path.name not in text
    ]
    assert not missing, f"modules docs/architecture.md does not name: {missing}"


def test_every_local_only_step_is_in_the_table():
    text = DOC.read_text()
    missing = [step.name for step in runners.LocalStep if f"| `{step.name}` |" not in text]
    assert not missing, f"LocalStep members missing from docs/architecture.md's table: {missing}"
