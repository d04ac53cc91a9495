"""setup.py's ``install_requires`` is exactly what the code shipped to the Dataflow workers imports.

The workers install this package from the setup.py sdist and nothing else, so a module
that imports an undeclared distribution fails there and only there (``requests`` in
``beam_pipelines/io/orders_api.py`` did), while a declared one nobody imports (``httpx``,
used by tests) is only weight. This test walks every ``import`` (module level and inside
functions, read with ``ast``) of ``beam_pipelines/`` and of the first-party modules it
reaches, maps each import to the installed distribution that provides it, and compares
the set with ``install_requires``. The local tooling (:data:`LOCAL_TOOLING`) never runs on
a worker: its imports must be declared in an extra instead.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("beam_pipelines", "bigquery_schemas", "publishers")
# Modules of beam_pipelines that only run on a developer's machine or in CI.
LOCAL_TOOLING = ("beam_pipelines.local", "beam_pipelines.demo")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def setup_requirements() -> tuple[set[str], dict[str, set[str]]]:
    """Distribution names of ``install_requires`` and of each extra, read from setup.py's source (not executed)."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    (call,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"]
    keywords = {k.arg: k.value for k in call.keywords}

    def names(node: ast.expr) -> set[str]:
        assert isinstance(node, ast.List), ast.dump(node)
        out = set()
        for item in node.elts:
            if isinstance(item, ast.JoinedStr):  # f"apache-beam[gcp]=={BEAM_VERSION}": only the name matters
                item = ast.Constant("".join(v.value if isinstance(v, ast.Constant) else "0" for v in item.values))
            out.add(canonical(Requirement(item.value).name))
        return out

    extras = keywords["extras_require"]
    assert isinstance(extras, ast.Dict)
    return names(keywords["install_requires"]), {
        k.value: names(v) for k, v in zip(extras.keys, extras.values, strict=True)
    }


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            # ``from google.cloud import bigquery``: the submodule is the import that matters.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def source_of(module: str) -> Path | None:
    base = REPO_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def third_party_imports(roots: list[Path], exclude: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Third-party imports of the modules under ``roots`` and of every first-party module they reach.

    Returns:
      import name -> the first-party modules that import it.
    """
    pending = [p for root in roots for p in sorted(root.rglob("*.py"))]
    seen: set[Path] = set()
    out: dict[str, set[str]] = {}
    while pending:
        path = pending.pop()
        name = module_name(path)
        if path in seen or name.startswith(exclude):
            continue
        seen.add(path)
        for imported in imports_of(path):
            top = imported.split(".")[0]
            if top in FIRST_PARTY:
                source = source_of(imported)
                if source is not None:
                    pending.append(source)
            elif top not in sys.stdlib_module_names and top != "__future__":
                out.setdefault(imported, set()).add(name)
    return out


@cache
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@cache
def _dist_files(dist: str) -> frozenset[str]:
    return frozenset(str(f) for f in importlib.metadata.distribution(dist).files or ())


def distribution_of(imported: str) -> str | None:
    """The installed distribution whose files hold module ``imported`` (``google.cloud.bigquery`` ->
    ``google-cloud-bigquery``); ``None`` for an attribute or a namespace package (``google.cloud``)."""
    candidates = _packages_distributions().get(imported.split(".")[0], [])
    parts = imported.split(".")
    if len(candidates) == 1:
        return canonical(candidates[0])
    for dist in candidates:  # a namespace package (google): find who ships the module itself
        files = _dist_files(dist)
        stem = "/".join(parts)
        if f"{stem}/__init__.py" in files or f"{stem}.py" in files:
            return canonical(dist)
    return None


def distributions(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    """distribution -> import names, for the names that are modules (``from x import attr`` gives ``x.attr`` too)."""
    out: dict[str, set[str]] = {}
    for imported in imports:
        if importlib.util.find_spec(imported.split(".")[0]) is None:
            raise AssertionError(f"{imported} (imported by {sorted(imports[imported])}) is not installed")
        dist = distribution_of(imported)
        if dist is not None:
            out.setdefault(dist, set()).add(imported)
    return out


def test_install_requires_is_exactly_what_the_worker_code_imports() -> None:
    install_requires, _ = setup_requirements()
    imported = distributions(third_party_imports([REPO_ROOT / "beam_pipelines"], exclude=LOCAL_TOOLING))

    missing = {d: sorted(names) for d, names in imported.items() if d not in install_requires}
    unused = install_requires - set(imported)
    assert not missing, f"imported on the workers but not in install_requires: {missing}"
    assert not unused, f"in install_requires but imported by no worker module: {sorted(unused)}"
    assert {"requests", "apache-beam", "psycopg"} <= install_requires
    assert "httpx" not in install_requires  # tests only


def test_local_tooling_imports_are_declared_in_an_extra() -> None:
    install_requires, extras = setup_requirements()
    imports: dict[str, set[str]] = {}
    for module in LOCAL_TOOLING:
        root = REPO_ROOT.joinpath(*module.split("."))
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]:
            for name, users in _file_imports(path).items():
                imports.setdefault(name, set()).update(users)
    declared = install_requires | extras["local"]
    missing = {d: sorted(n) for d, n in distributions(imports).items() if d not in declared}
    assert not missing, f"local tooling imports these without declaring them in extras 'local': {missing}"


def _file_imports(path: Path) -> dict[str, set[str]]:
    name = module_name(path)
    return {
        i: {name}
        for i in imports_of(path)
        if i.split(".")[0] not in (*FIRST_PARTY, *sys.stdlib_module_names, "__future__")
    }


def test_the_walk_finds_imports_inside_functions() -> None:
    # orders_api imports requests at module level; secret_manager imports secretmanager inside a function.
    assert "requests" in imports_of(REPO_ROOT / "beam_pipelines" / "io" / "orders_api.py")
    assert "google.cloud.secretmanager" in imports_of(REPO_ROOT / "beam_pipelines" / "io" / "secret_manager.py")
    assert distribution_of("google.cloud.secretmanager") == "google-cloud-secret-manager"
    assert distribution_of("google.cloud.bigquery") == "google-cloud-bigquery"
