"""The bench plot, judged from the matplotlib objects it returns (not pixels): one colour and marker per
contender across optimizers, one line style per optimizer, min-max bands or error bars, a legend beside the
data, labelled axes, and grouped bars when the run had one batch size. matplotlib is in the test extra."""
from __future__ import annotations

import pytest

from xpnet.bench.plot import save_plot

CONTENDERS = ("xpnet-numpy", "numpy-reference", "torch-eager")
OPTIMIZERS = ("sgd", "adam")


def _result(batch_sizes, contenders=CONTENDERS, scale=1.0):
    rows = []
    for i, name in enumerate(contenders):
        for j, opt in enumerate(OPTIMIZERS):
            for b in batch_sizes:
                rate = scale * (1 + i) * (2 + j) * b * 100.0
                rows.append({"contender": name, "batch_size": b, "optimizer": opt, "samples_per_second": rate,
                             "min_samples_per_second": 0.9 * rate, "max_samples_per_second": 1.1 * rate})
    return {"rows": rows, "config": {"model": "mlp", "repeats": 5, "samples": 60000, "threads": 2},
            "machine": {"python": "3.11.7", "machine": "x86_64", "cpus": 2, "cpu_model": "Test CPU 9000"},
            "contenders": {}}


def _png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    return data


def _legend_beside_the_data(fig, ax):
    fig.canvas.draw()
    (legend,) = fig.legends
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # right of the axes: covers no data
    return [t.get_text() for t in legend.get_texts()]


def test_lines_have_a_colour_per_contender_and_a_style_per_optimizer(tmp_path):
    batches = [32, 128, 512, 2048]
    result = _result(batches)
    fig = save_plot(result, str(tmp_path / "plots" / "b.png"))  # the directory is made, as for --json
    _png(tmp_path / "plots" / "b.png")
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {f"{c}, {o}" for c in CONTENDERS for o in OPTIMIZERS}
    colours = {c: {lines[f"{c}, {o}"].get_color() for o in OPTIMIZERS} for c in CONTENDERS}
    assert all(len(v) == 1 for v in colours.values())  # a contender keeps its colour across optimizers
    assert len({v.pop() for v in colours.values()}) == len(CONTENDERS)
    markers = {c: {lines[f"{c}, {o}"].get_marker() for o in OPTIMIZERS} for c in CONTENDERS}
    assert all(len(v) == 1 and v != {"None"} for v in markers.values())
    styles = {o: {lines[f"{c}, {o}"].get_linestyle() for c in CONTENDERS} for o in OPTIMIZERS}
    assert styles == {"adam": {"-"}, "sgd": {"--"}}
    assert list(lines["torch-eager, adam"].get_xdata()) == batches

    bands = ax.collections
    assert len(bands) == len(CONTENDERS) * len(OPTIMIZERS)
    rows = {(r["contender"], r["optimizer"], r["batch_size"]): r for r in result["rows"]}
    first = rows["xpnet-numpy", "sgd", 32]
    ys = bands[0].get_paths()[0].vertices[:, 1]  # the first band drawn: xpnet-numpy, sgd
    assert min(ys) == pytest.approx(first["min_samples_per_second"])
    assert max(ys) == pytest.approx(rows["xpnet-numpy", "sgd", 2048]["max_samples_per_second"])
    assert tuple(bands[0].get_facecolor()[0][:3]) == pytest.approx(lines["xpnet-numpy, sgd"].get_color()[:3])

    assert "samples/s" in ax.get_ylabel() and "batch size" in ax.get_xlabel()
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["32", "128", "512", "2048"]
    caption = " ".join(ax.get_title(loc="left").split())  # wrapped to the figure's width
    assert "Test CPU 9000, 2 CPUs, 2 threads per contender" in caption and "Median of 5" in caption
    assert "training throughput" in fig.get_suptitle()
    texts = _legend_beside_the_data(fig, ax)
    assert texts[:3] == list(CONTENDERS) and "Adam" in texts and "SGD" in texts and "min-max over repeats" in texts


def test_one_batch_size_gives_grouped_bars_with_min_max_error_bars(tmp_path):
    result = _result([128])
    result["rows"][0]["min_samples_per_second"] = 1.0  # one stalled repeat: the axis stays linear all the same
    fig = save_plot(result, str(tmp_path / "b.png"))
    _png(tmp_path / "b.png")
    (ax,) = fig.axes
    assert not ax.get_lines() or all(line.get_label().startswith("_") for line in ax.get_lines())  # no data lines
    bars = {c.get_label(): c for c in ax.containers if hasattr(c, "patches") and c.get_label() in CONTENDERS}
    assert list(bars) == list(CONTENDERS)
    colours = {name: {p.get_facecolor() for p in b.patches} for name, b in bars.items()}
    assert all(len(v) == 1 for v in colours.values()) and len({v.pop() for v in colours.values()}) == 3
    for name, b in bars.items():
        assert len(b.patches) == len(OPTIMIZERS)
        for g, (patch, opt) in enumerate(zip(b.patches, OPTIMIZERS)):  # group g: optimizer g, around x = g
            assert g - 0.5 < patch.get_x() + patch.get_width() / 2 < g + 0.5
            row = next(r for r in result["rows"] if r["contender"] == name and r["optimizer"] == opt)
            assert patch.get_height() == pytest.approx(row["samples_per_second"])
            (low, high) = b.errorbar.lines[2][0].get_segments()[g][:, 1]
            assert (low, high) == pytest.approx((row["min_samples_per_second"], row["max_samples_per_second"]))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["SGD", "Adam"]
    assert "samples/s" in ax.get_ylabel() and "batch size 128" in ax.get_xlabel()
    assert ax.get_ylim()[0] == 0  # bars start at zero on a linear axis
    texts = _legend_beside_the_data(fig, ax)
    assert texts[:3] == list(CONTENDERS)


def test_a_span_beyond_twenty_times_gets_a_log_axis(tmp_path):
    result = _result([128, 512])
    fast = _result([128, 512], contenders=("torch-cuda-graph",), scale=1000.0)["rows"]
    result["rows"] += fast
    result["contenders"] = {"torch-cuda-graph": {"gemm_gflops": 5e4, "device": "cuda:0 (Test GPU)"}}
    (ax,) = save_plot(result, str(tmp_path / "b.png")).axes
    assert ax.get_yscale() == "log"
    assert "GPU cuda:0 (Test GPU)" in " ".join(ax.get_title(loc="left").split())
