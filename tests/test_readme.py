"""The README's Python example runs as written and learns."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(mnist_dir, tmp_path, monkeypatch):
    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]  # the Python section's; the
    # data-parallel one needs mpiexec
    monkeypatch.setenv("XPNET_DATA_DIR", str(mnist_dir))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["history"].last["val_accuracy"] > 0.95
    assert (tmp_path / "my-mlp.safetensors").exists()
