"""The architecture rules: no GPU library on import, core/models speak only the Array API, imports point down."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xpnet"
ARRAY_LIBRARIES = {"numpy", "cupy", "torch", "jax", "array_api_strict"}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, as dotted names ('from xpnet import core' gives 'xpnet.core')."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_import_xpnet_loads_neither_cupy_nor_torch():
    code = "import sys, xpnet, xpnet.cli; print(sorted(m for m in ('cupy', 'torch', 'jax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_core_and_models_import_no_array_library():
    offenders = [f"{path.relative_to(PACKAGE)}: {name}" for folder in ("core", "models")
                 for path in (PACKAGE / folder).rglob("*.py") for name in _imports(path)
                 if name.split(".")[0] in ARRAY_LIBRARIES]
    assert offenders == []


def test_backends_import_nothing_above_them():
    above = ("xpnet.core", "xpnet.models", "xpnet.training.fit", "xpnet.io", "xpnet.data", "xpnet.cli", "xpnet.bench",
             "xpnet.commands", "xpnet.recipes")
    offenders = [f"{p.relative_to(PACKAGE)}: {n}" for p in (PACKAGE / "backends").rglob("*.py")
                 for n in _imports(p) if n.startswith(above)]
    assert offenders == []


def test_core_imports_nothing_above_it():
    above = ("xpnet.models", "xpnet.training.fit", "xpnet.io", "xpnet.data", "xpnet.cli", "xpnet.bench",
             "xpnet.commands", "xpnet.recipes")
    offenders = [f"{p.relative_to(PACKAGE)}: {n}" for p in (PACKAGE / "core").rglob("*.py")
                 for n in _imports(p) if n.startswith(above)]
    assert offenders == []


def test_the_layering_check_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os, torch\nfrom xpnet import core\n")
    assert {"torch", "xpnet.core"} <= _imports(bad)
