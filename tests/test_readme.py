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


def _quick_start_output() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Quick start"):text.index("## Tests")]
    return re.findall(r"```\n(xpnet: training .*?)```", section, re.S)[0].strip().splitlines()


EPOCH = re.compile(r"epoch (\d)/5  train_loss ([\d.]+)  test_loss ([\d.]+)  test_accuracy ([\d.]+)%  "
                   r"[\d,]+ samples/s  [\d.]+ s")


def test_the_quick_start_prints_what_readme_shows(mnist_dir, tmp_path):
    """`xpnet train mnist` as README's quick start runs it: the same lines, the same figures up to the last digits
    (which the thread count may change) and the speeds, which are this machine's."""
    import os
    import subprocess
    import sys

    shown = _quick_start_output()
    env = {**os.environ, "XPNET_DATA_DIR": str(mnist_dir)}
    proc = subprocess.run([sys.executable, "-m", "xpnet", "train", "mnist"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.strip().splitlines()
    assert len(printed) == len(shown) == 7
    assert printed[0] == shown[0] and printed[-1] == shown[-1]
    for ours, theirs in zip(printed[1:-1], shown[1:-1]):
        a, b = EPOCH.fullmatch(ours), EPOCH.fullmatch(theirs)
        assert a and b, (ours, theirs)
        assert a[1] == b[1]
        for i, tol in ((2, 0.005), (3, 0.01), (4, 0.3)):  # losses and accuracy (points of a percent)
            assert abs(float(a[i]) - float(b[i])) <= tol, (ours, theirs)
    assert (tmp_path / "mnist-mlp.safetensors").exists()


def test_ci_runs_the_test_command_readme_gives():
    text = README.read_text()
    section = text[text.index("## Tests"):text.index("## Command line")]
    command = re.findall(r"```bash\n(.*?)\n```", section, re.S)[0].strip()
    install, run = (part.strip() for part in command.split("&&"))
    ci = (README.parent / ".ci" / "run").read_text().splitlines()
    installs = [line.split() for line in ci if line.startswith("python -m pip install")]
    assert [[w for w in words if not w.startswith(("-q", "--disable-pip"))] for words in installs] == \
        [["python", "-m", *install.split()]]
    assert run in ci
