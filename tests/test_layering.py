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
