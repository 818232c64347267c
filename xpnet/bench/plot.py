"""The benchmark's plot, for a report: samples/s against batch size, or grouped bars when the run had a
single batch size (a line through one point per contender says nothing).

One colour and marker per contender, the same whichever optimizer it ran; one line style per optimizer;
a shaded band from each point's slowest to its fastest repeat (error bars on the bars). matplotlib is
optional: require_matplotlib() lets `xpnet bench --plot` fail at start-up rather than after the run. The
figure is drawn on the Agg canvas directly, without pyplot, so no display or global backend is involved.
"""
from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from xpnet.errors import XpnetError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

OPTIMIZER_STYLES = {"adam": "-", "sgd": "--", "momentum": ":"}  # fixed, so Adam is solid in every plot
OPTIMIZER_NAMES = {"adam": "Adam", "sgd": "SGD", "momentum": "SGD + momentum"}
MARKERS = "osD^vPX*h<>p"
LOG_SPAN = 20  # medians spanning more than this factor (CPU beside GPU contenders): a logarithmic y axis
MODEL_TITLES = {"mlp": "MNIST MLP 784-128-64-10", "lenet": "MNIST LeNet-5"}


class PlotUnavailable(XpnetError, RuntimeError):
    """--plot cannot work here: matplotlib is missing."""


def require_matplotlib() -> None:
    """Raise PlotUnavailable, one line naming the fix, unless the parts of matplotlib the plot uses import."""
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError as exc:
        raise PlotUnavailable(f"--plot needs matplotlib, which cannot be imported here ({exc}): "
                              f"pip install matplotlib") from None


def save_plot(result: dict[str, Any], path: str) -> Figure:
    """Draw `result` (run_throughput's dict, with the CLI's "machine") and write it to `path` as PNG.
    Returns the figure, so its lines, bars and legend can be inspected."""
    import io

    from xpnet.io.atomic import atomic_write_bytes

    fig = throughput_figure(result)
    png = io.BytesIO()
    fig.savefig(png, dpi=130, format="png")
    # as the JSON is written: a missing directory made, only a regular file replaced, never half a file
    atomic_write_bytes(path, png.getvalue())
    return fig


def throughput_figure(result: dict[str, Any]) -> Figure:
    """Lines (samples/s against batch size) for several batch sizes, grouped bars for one."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["rows"]
    if not rows:
        raise ValueError("--plot: no contender was measured, nothing to plot")
    fig = Figure(figsize=(9.5, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    optimizers = list(dict.fromkeys(r["optimizer"] for r in rows))
    styles = contender_styles(contenders)
    if len({r["batch_size"] for r in rows}) > 1:
        _lines(ax, rows, contenders, optimizers, styles)
    else:
        _bars(ax, rows, contenders, optimizers, styles)
    _y_axis(ax, rows)
    ax.grid(True, axis="y", alpha=0.3)
    model = result.get("config", {}).get("model", "mlp")
    fig.suptitle(f"{MODEL_TITLES.get(model, model)}: training throughput", fontweight="bold")
    ax.set_title(caption(result), fontsize=8.5, loc="left")
    return fig


def contender_styles(contenders: list[str]) -> dict[str, tuple[Any, str]]:
    """(colour, marker) per contender, in order of appearance: tab10's colours, then repeated with other
    markers, so even the eleventh contender differs from the first."""
    from matplotlib import colormaps

    colours = colormaps["tab10"].colors
    return {c: (colours[i % len(colours)], MARKERS[i % len(MARKERS)]) for i, c in enumerate(contenders)}


def optimizer_style(optimizer: str, optimizers: list[str]) -> str:
    spare = ["-.", (0, (1, 3)), (0, (5, 1, 1, 1))]  # for optimizers the table above does not name
    return OPTIMIZER_STYLES.get(optimizer) or spare[optimizers.index(optimizer) % len(spare)]


def _lines(ax: Axes, rows: list[dict[str, Any]], contenders: list[str], optimizers: list[str],
           styles: dict[str, tuple[Any, str]]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import NullLocator

    for name in contenders:
        colour, marker = styles[name]
        for opt in optimizers:
            pts = sorted((r["batch_size"], r["samples_per_second"], r["min_samples_per_second"],
                          r["max_samples_per_second"])
                         for r in rows if r["contender"] == name and r["optimizer"] == opt)
            if not pts:
                continue
            batch, median, low, high = zip(*pts)
            ax.fill_between(batch, low, high, color=colour, alpha=0.12, linewidth=0, label=f"_{name}, {opt} min-max")
            ax.plot(batch, median, linestyle=optimizer_style(opt, optimizers), marker=marker, color=colour,
                    markersize=5, linewidth=1.6, label=f"{name}, {opt}")
    batches = sorted({r["batch_size"] for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, labels=[str(b) for b in batches])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("batch size (samples per step)")
    # The legend is a key, not a line list: colour and marker name the contender, line style the optimizer.
    handles = [Line2D([], [], color=styles[c][0], marker=styles[c][1], label=c) for c in contenders]
    handles += [Line2D([], [], color="0.35", linestyle=optimizer_style(o, optimizers), label=OPTIMIZER_NAMES.get(o, o))
                for o in optimizers]
    handles.append(Patch(facecolor="0.5", alpha=0.3, label="min-max over repeats"))
    ax.figure.legend(handles=handles, loc="outside right upper", fontsize=8.5, frameon=False)


def _bars(ax: Axes, rows: list[dict[str, Any]], contenders: list[str], optimizers: list[str],
          styles: dict[str, tuple[Any, str]]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    width = 0.8 / len(contenders)
    found = {(r["contender"], r["optimizer"]): r for r in rows}
    for i, name in enumerate(contenders):
        got = [(g, found[name, opt]) for g, opt in enumerate(optimizers) if (name, opt) in found]
        x = [g - 0.4 + width * (i + 0.5) for g, _ in got]
        median = [r["samples_per_second"] for _, r in got]
        error = [[r["samples_per_second"] - r["min_samples_per_second"] for _, r in got],
                 [r["max_samples_per_second"] - r["samples_per_second"] for _, r in got]]
        ax.bar(x, median, width * 0.92, yerr=error, color=styles[name][0], label=name, capsize=3,
               error_kw={"elinewidth": 1, "ecolor": "0.2"})
        for xi, (_, r) in zip(x, got):
            ax.annotate(si(r["samples_per_second"]), (xi, r["max_samples_per_second"]), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7.5)
    ax.set_xticks(range(len(optimizers)), labels=[OPTIMIZER_NAMES.get(o, o) for o in optimizers])
    ax.set_xlim(-0.55, len(optimizers) - 0.45)
    ax.set_xlabel(f"optimizer (batch size {rows[0]['batch_size']})")
    handles = [Patch(facecolor=styles[c][0], label=c) for c in contenders]
    handles.append(Line2D([], [], color="0.2", marker="_", markersize=8, linestyle="-",
                          label="min-max over repeats"))
    ax.figure.legend(handles=handles, loc="outside right upper", fontsize=8.5, frameon=False)


def _y_axis(ax: Axes, rows: list[dict[str, Any]]) -> None:
    from matplotlib.ticker import FuncFormatter

    # Judged on the medians: one stalled repeat on a busy machine must not turn the whole axis logarithmic.
    medians = [r["samples_per_second"] for r in rows]
    if min(medians) > 0 and max(medians) / min(medians) > LOG_SPAN:
        ax.set_yscale("log")
    else:  # from zero, so bar heights and gaps between lines read as ratios
        ax.set_ylim(0, max(r["max_samples_per_second"] for r in rows) * 1.12)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v)))
    ax.set_ylabel("training throughput (samples/s)")


def si(value: float) -> str:
    """A rate for an axis or a bar: 950, 95k, 1.2M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            text = f"{value / scale:.1f}".removesuffix(".0")
            return f"{text}{suffix}" if abs(value) < 10 * scale else f"{value / scale:.0f}{suffix}"
    return f"{value:.0f}"


def caption(result: dict[str, Any]) -> str:
    """Where and how it was measured: machine, threads, GPU if any, epochs and repeats."""
    m, cfg = result.get("machine", {}), result.get("config", {})
    cpu = m.get("cpu_model") or m.get("processor") or m.get("machine") or "unknown CPU"
    where = f"{cpu}, {m.get('cpus', '?')} CPUs, {cfg.get('threads', '?')} thread{'' if cfg.get('threads') == 1 else 's'} per contender"
    gpus = {info["device"] for info in result.get("contenders", {}).values()
            if info.get("gemm_gflops") and info.get("device")}
    if gpus:
        where += f"; GPU {', '.join(sorted(gpus))}"
    how = (f"Median of {cfg.get('repeats', '?')} interleaved epochs of {cfg.get('samples', 0):,} samples after "
           f"1 warm-up; python {m.get('python', '?')}")
    return "\n".join(textwrap.wrap(f"{where}. {how}", 110))
