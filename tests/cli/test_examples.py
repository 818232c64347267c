"""The seeds' other problems learn: y = 3x with one neuron, and the synthetic house prices."""
from __future__ import annotations

import json
import re

from xpnet.cli import main


def test_linear_fit_recovers_weight_3_and_bias_0(capsys, tmp_path):
    assert main(["train", "linear", "--no-progress", "--save", str(tmp_path / "lin.safetensors")]) == 0
    out = capsys.readouterr().out
    w, b = map(float, re.search(r"learned y = (-?[\d.]+) x \+ (-?[\d.]+)", out).groups())
    assert round(w, 2) == 3.0 and round(b, 2) in (0.0, -0.0)


def test_housing_mlp_learns_prices(tmp_path):
    report = tmp_path / "h.json"
    assert main(["train", "housing", "--no-progress", "--no-save", "--json", str(report)]) == 0
    epochs = json.loads(report.read_text())["epochs"]
    first, last = epochs[0], epochs[-1]
    assert last["test_r2"] > 0.98
    assert last["test_mse"] < 250  # noise variance is 144 (k$^2); predicting the mean gives ~16,000
    assert last["test_mse"] < first["test_mse"]
    assert {"test_mae", "samples_per_second", "seconds", "train_loss"} <= set(last)
