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
