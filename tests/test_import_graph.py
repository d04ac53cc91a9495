"""Imports between the project's modules only run downwards: the import graph has no cycle.

Every ``.py`` under the project's packages is parsed (``ast``, never imported) and every
``import`` in it is an edge, at module level and inside functions alike: an import placed
inside a function to dodge a circle is still a circle, only one that fails later. Two
modules that import each other are the shortest cycle.

How an import becomes an edge:

* ``import a.b.c`` and ``from a.b.c import name`` depend on ``a.b.c`` and on the packages
  above it (``a``, ``a.b``: their ``__init__`` runs first), except the importer's own
  packages, which are already running.
* ``from a.b import c`` depends on ``a.b.c`` when ``c`` is a submodule, else on ``a.b``.
* Relative imports are resolved against the importer's package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("beam_pipelines", "publishers", "bigquery_schemas", "composer_dags", "benchmarks")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        if not (root / package / "__init__.py").exists():
            continue
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    own = set(_ancestors(name))
    targets: set[str] = set()

    def add(target: str) -> None:
        for candidate in (*_ancestors(target), target):
            if candidate in modules and candidate not in own and candidate != name:
                targets.add(candidate)

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            add(source)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:
                    add(sub)
    return targets


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def tangles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The sets of modules that reach each other through imports (strongly connected
    components of more than one module; Tarjan's algorithm, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return sorted(sorted(component) for component in components)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle per tangle."""
    return [_cycle_in(component, graph) for component in tangles(graph)]


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A concrete cycle a -> b -> ... -> a inside one strongly connected component."""
    members = set(component)
    start = component[0]
    # Breadth-first from start back to start, inside the component: the shortest cycle through it.
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")


def test_finds_a_planted_cycle_with_its_modules(tmp_path):
    # The check itself: a cycle through a function-level import and a `from pkg import sub`.
    pkg = tmp_path / "beam_pipelines"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from beam_pipelines import high\n")
    (pkg / "high.py").write_text("from . import low\n")
    (pkg / "leaf.py").write_text("import beam_pipelines.low\n")
    graph = import_graph(tmp_path)
    assert graph["beam_pipelines.high"] == {"beam_pipelines.low"}
    assert graph["beam_pipelines.leaf"] == {"beam_pipelines.low"}
    assert find_cycles(graph) == [["beam_pipelines.high", "beam_pipelines.low", "beam_pipelines.high"]]


def test_sees_the_whole_project():
    graph = import_graph()
    assert {"beam_pipelines.hourly", "publishers.simulator", "bigquery_schemas.tables"} <= set(graph)
    # The jobs' entry wiring really imports the transforms: the parse found the edges.
    assert any(target.startswith("beam_pipelines.transforms.") for target in graph["beam_pipelines.hourly"])


def test_project_imports_have_no_cycle():
    graph = import_graph()
    found = tangles(graph)
    assert not found, "imports that run in a circle (module -> module it imports):\n" + "\n".join(
        f"  {' -> '.join(_cycle_in(tangle, graph))}\n    (all modules of this circle: {', '.join(tangle)})"
        for tangle in found
    )
