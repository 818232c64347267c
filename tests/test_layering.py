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


def test_import_xpnet_loads_neither_cupy_nor_torch_nor_mpi4py():
    code = ("import sys, xpnet, xpnet.cli, xpnet.distributed; "
            "print(sorted(m for m in ('cupy', 'torch', 'jax', 'mpi4py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_core_and_models_import_no_array_library():
    offenders = [f"{path.relative_to(PACKAGE)}: {name}" for folder in ("core", "models")
                 for path in (PACKAGE / folder).rglob("*.py") for name in _imports(path)
                 if name.split(".")[0] in ARRAY_LIBRARIES]
    assert offenders == []


# DESIGN's order, bottom up: a module may import its own floor and those below it, never one above.
FLOORS = {"errors": 0, "backends": 1, "core": 2, "models": 3, "data": 3, "io": 3, "recipes": 4,
          "distributed": 4, "training": 5, "bench": 6, "cli": 7}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.get(parts[1]) if len(parts) > 1 and parts[0] == "xpnet" else None


def _graph() -> dict[str, set[str]]:
    """xpnet module -> the xpnet modules it imports (anywhere in the file). A package's __init__ only
    re-exports, so it is a face, not a room: imports through it are followed to nothing."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        targets = set()
        for imported in _imports(path):
            while imported and imported not in files:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = set() if path.name == "__init__.py" else targets
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    assert _circles(_graph()) == []


def test_no_module_imports_one_above_it():
    offenders = [f"{src} imports {dst}" for src, dsts in _graph().items() for dst in sorted(dsts)
                 if _floor(src) is not None and _floor(dst) is not None and _floor(dst) > _floor(src)]
    assert offenders == []


def test_every_package_has_a_floor():
    tops = {p.name if p.is_dir() else p.stem for p in PACKAGE.iterdir()
            if not p.name.startswith("_") and (p.is_dir() or p.suffix == ".py")}
    assert tops - {"__pycache__"} <= set(FLOORS), tops - set(FLOORS)


def test_the_circle_check_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_layering_check_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os, torch\nfrom xpnet import core\n")
    assert {"torch", "xpnet.core"} <= _imports(bad)
