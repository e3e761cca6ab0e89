"""The fake's shape: state per resource without HTTP or wire JSON, and no import of the lab."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import provision.fakegce

PACKAGE = Path(provision.fakegce.__file__).parent
STATE = PACKAGE / "state"


def test_state_is_split_per_resource_into_small_modules():
    modules = {p.stem for p in STATE.glob("*.py")}
    assert {"clock", "core", "operations", "vm", "instances", "power", "firewalls"} <= modules
    assert not (PACKAGE / "state.py").exists()
    for path in STATE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 300, path.name


def test_state_knows_no_http_and_no_wire_json():
    for path in STATE.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m.startswith(("http", "urllib")) or m.endswith(("serializers", "server"))
                       for m in imported), path.name
        if path.stem != "core":  # core hashes values into fingerprints with json
            assert "json" not in imported, path.name
        functions = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert "to_json" not in functions, path.name
        assert "googleapis.com" not in path.read_text(), path.name
        assert '"kind"' not in path.read_text(), path.name


STATE_PACKAGE = "provision.fakegce.state"


def state_modules_imported(node: ast.Import | ast.ImportFrom, modules: set[str]) -> set[str]:
    """The state modules an import statement reaches (`__init__` for the package itself)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = STATE_PACKAGE.rsplit(".", node.level - 1)[0] if node.level else ""
        source = ".".join(filter(None, [base, node.module]))
        names = [f"{source}.{a.name}" for a in node.names]  # a submodule, or a name in it
    found = set()
    for parts in (name.split(".") for name in names):
        if parts[:3] == STATE_PACKAGE.split("."):
            found.add(parts[3] if len(parts) > 3 and parts[3] in modules else "__init__")
    return found


def state_imports() -> dict[str, set[str]]:
    """module -> the state modules it imports, read with `ast` so that imports under
    `if TYPE_CHECKING:` count: they are arrows between the modules too."""
    modules = {p.stem for p in STATE.glob("*.py")}
    graph = {}
    for path in STATE.glob("*.py"):
        nodes = ast.walk(ast.parse(path.read_text()))
        graph[path.stem] = {m for n in nodes if isinstance(n, ast.Import | ast.ImportFrom)
                            for m in state_modules_imported(n, modules)} - {path.stem}
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle, as [a, b, ..., a], or None when the imports go one way."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            if cycle := visit(target, [*path, module]):
                return cycle
        done.add(module)
        return None

    return next((c for m in sorted(graph) if (c := visit(m, []))), None)


def test_import_cycle_finds_a_cycle_and_names_it():
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_state_imports_go_one_way():
    """Resource stores import the core, never the reverse (as moto's models import its core)."""
    graph = state_imports()
    cycle = import_cycle(graph)
    assert cycle is None, "import cycle in provision/fakegce/state: " + " -> ".join(cycle or [])
    assert graph["core"] <= {"clock"}, f"core imports resource modules: {graph['core']}"


def test_the_fake_imports_no_lab_and_cites_no_private_notes():
    code = ("import sys, pkgutil, importlib, provision.fakegce as f\n"
            "for m in pkgutil.walk_packages(f.__path__, 'provision.fakegce.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(sorted(m for m in sys.modules if m.startswith('provision.lab')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"
    for path in PACKAGE.rglob("*.py"):
        assert "shared/" not in path.read_text(), path
