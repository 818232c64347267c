"""The architecture rules: no GPU library on import, and core/models speak only the Array API."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xpnet"


def test_import_xpnet_loads_neither_cupy_nor_torch():
    code = "import sys, xpnet, xpnet.cli; print(sorted(m for m in ('cupy', 'torch', 'jax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_core_and_models_import_no_array_library():
    pattern = re.compile(r"^\s*(import|from)\s+(numpy|cupy|torch|jax|array_api_strict)\b", re.M)
    offenders = [f"{path.relative_to(PACKAGE.parent)}: {m.group(0).strip()}"
                 for folder in ("core", "models") for path in (PACKAGE / folder).rglob("*.py")
                 for m in pattern.finditer(path.read_text())]
    assert offenders == []


def test_backends_never_import_core():
    pattern = re.compile(r"^\s*(import|from)\s+xpnet\.(core|models|train|io|data|cli)\b", re.M)
    offenders = [str(p) for p in (PACKAGE / "backends").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
