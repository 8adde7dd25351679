"""The arrows point down: no domain module imports from the doors (runs/api/, runs/views/).

The doors — the REST API, the studio pages, the admin, the URL confs, the management
commands and the SDK (which imports no Django at all) — may import the domain; the domain
(models, services, selectors, storage, compute, execution, tasks, alerts…) never imports a
door, at module level or inside a function. docs/architecture.md, "One door"."""

import ast
import sys
from pathlib import Path

import pytest

RUNS = Path(__file__).resolve().parent.parent / "runs"
DOORS = ("runs.api", "runs.views", "runs.mlflow")
# apps.py is Django's wiring: its ready() registers the API's OpenAPI extensions.
NOT_DOMAIN = {
    *("api", "views", "mlflow", "sdk", "migrations", "templatetags"),
    *("admin.py", "urls.py", "apps.py"),
}


def _domain_modules() -> list[Path]:
    found = []
    for path in sorted(RUNS.rglob("*.py")):
        parts = path.relative_to(RUNS).parts
        if parts[0] in NOT_DOMAIN or parts[:2] == ("management", "commands"):
            continue
        found.append(path)
    return found


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(RUNS.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from runs import views` imports runs.views: count the names as modules too.
            found += [(node.lineno, base)]
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


DOMAIN = _domain_modules()


def test_the_walk_sees_the_domain_layer():
    names = {_module_name(p) for p in DOMAIN}
    assert {"runs.models", "runs.selectors", "runs.services.runs", "runs.access"} <= names
    assert not any(n.startswith(DOORS) for n in names)


@pytest.mark.parametrize("path", DOMAIN, ids=lambda p: str(p.relative_to(RUNS.parent)))
def test_a_domain_module_imports_nothing_from_the_api_or_the_views(path):
    offending = [
        f"line {line}: {module}"
        for line, module in _imports(path)
        if module in DOORS or module.startswith(tuple(d + "." for d in DOORS))
    ]
    assert not offending, f"{path.relative_to(RUNS.parent)} imports a door: {offending}"


def test_the_check_catches_an_import_of_a_door(tmp_path, monkeypatch):
    """The rule bites: a module that reaches into the API or the views, even inside a
    function or through a relative import, is caught."""
    package = tmp_path / "runs" / "services"
    package.mkdir(parents=True)
    module = package / "sneaky.py"
    module.write_text(
        "def f():\n    from runs.api.serializers import run_json\n"
        "from ..views import common\n"
        "from runs import views\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "RUNS", tmp_path / "runs")

    found = {module for _, module in _imports(module)}
    assert {"runs.api.serializers", "runs.views.common", "runs.views"} <= found


def _import_graph(paths: list[Path]) -> dict[str, set[str]]:
    """Module → the domain modules it imports, at module level or inside a function.

    `from runs.services import files` is an edge to runs.services.files, not to the package:
    a package's __init__ re-exporting its modules does not make each of them import it."""
    names = {_module_name(p): p for p in paths}
    graph = {}
    for name, path in names.items():
        targets = {m for _, m in _imports(path) if m in names and m != name}
        graph[name] = {m for m in targets if not any(t.startswith(m + ".") for t in targets)}
    return graph


def _a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, …, a], or None (a depth-first walk)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_domain_modules_import_one_another_without_a_circle():
    """services → selectors → models, never back: a circle (services → alerts → … → services,
    submission → tasks → execution → services) means an import order that works by luck and
    modules that cannot be understood one at a time. docs/architecture.md, "One door"."""
    circle = _a_cycle(_import_graph(DOMAIN))
    assert circle is None, "an import circle: " + " → ".join(circle or [])


def test_the_circle_check_catches_a_circle_through_a_function_level_import(tmp_path, monkeypatch):
    package = tmp_path / "runs"
    (package / "services").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "services" / "__init__.py").write_text("from runs.services.submit import go\n")
    (package / "services" / "submit.py").write_text("def go():\n    from runs import tasks\n")
    (package / "tasks.py").write_text("from runs import execution\n")
    (package / "execution.py").write_text("from runs.services.submit import go\n")
    monkeypatch.setattr(sys.modules[__name__], "RUNS", package)

    graph = _import_graph(sorted(package.rglob("*.py")))
    assert _a_cycle(graph) == [
        "runs.execution",
        "runs.services.submit",
        "runs.tasks",
        "runs.execution",
    ]
    graph["runs.services.submit"].clear()  # the function-level import gone: no circle
    assert _a_cycle(graph) is None
