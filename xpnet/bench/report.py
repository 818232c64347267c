"""The benchmark's table (terminal), and its plot (matplotlib, optional)."""
from __future__ import annotations

from typing import Any

from xpnet.bench.contenders import REFERENCE_NAMES

REFERENCES = REFERENCE_NAMES  # a ratio column for each one measured in the run


def _lookup(rows: list[dict[str, Any]]) -> dict[tuple[str, int, str], float]:
    return {(r["contender"], r["batch_size"], r["optimizer"]): r["samples_per_second"] for r in rows}


def throughput_table(result: dict[str, Any]) -> str:
    """Rows grouped by (optimizer, batch size), with ratios to each reference measured in the same run, the
    time a whole 60,000-sample epoch takes at the median rate, and the contenders skipped with the reason."""
    rows, rate = result["rows"], _lookup(result["rows"])
    refs = [name for name in REFERENCES if any(r["contender"] == name for r in rows)]
    head = ["contender", "opt", "batch", "samples/s (median)", "min-max", "60k epoch ms", "% of GEMM floor"]
    head += [f"x {n}" for n in refs]
    lines = [head]
    for r in sorted(rows, key=lambda r: (r["optimizer"], r["batch_size"], -r["samples_per_second"])):
        ratios = []
        for ref in refs:
            base = rate.get((ref, r["batch_size"], r["optimizer"]))
            ratios.append(f"{r['samples_per_second'] / base:.2f}" if base and ref != r["contender"] else "-")
        epoch_ms = r.get("epoch_ms_60k") or 60000 / r["samples_per_second"] * 1e3
        lines.append([r["contender"], r["optimizer"], str(r["batch_size"]), f"{r['samples_per_second']:,.0f}",
                      f"{r['min_samples_per_second']:,.0f}-{r['max_samples_per_second']:,.0f}",
                      f"{epoch_ms:,.1f}", f"{100 * r['fraction_of_floor']:.0f}%", *ratios])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    text = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    cfg = result["config"]
    text.append(f"\n{cfg['samples']:,} MNIST samples per epoch, median of {cfg['repeats']} interleaved epochs after "
                f"1 warm-up, {cfg['threads']} thread(s). Floor: {result['flops_per_sample']:,} FLOP/sample at "
                f"{result['gemm_gflops']:.1f} GFLOP/s (float32 1024^3 GEMM, NumPy BLAS).")
    gpu = [name for name, info in result.get("contenders", {}).items() if info.get("gemm_gflops")]
    if gpu and result.get("gpu_gemm_gflops"):
        text.append(f"GPU contenders ({', '.join(gpu)}): floor at the GPU's float32 4096^3 GEMM rate, "
                    f"{result['gpu_gemm_gflops']:,.0f} GFLOP/s (best measured by those contenders).")
    compiled = result.get("contenders", {}).get("torch-cuda-compile", {}).get("compile_mode")
    if compiled:
        text.append(f"torch-cuda-compile: torch.compile(mode={compiled!r}).")
    for name, reason in result.get("skipped", {}).items():
        text.append(f"skipped {name}: {reason}")
    return "\n".join(text)


def save_plot(result: dict[str, Any], path: str) -> None:
    """samples/s against batch size, one line per contender and optimizer, log axes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError('--plot needs matplotlib: pip install -e ".[bench]"') from None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = result["rows"]
    for name in dict.fromkeys(r["contender"] for r in rows):
        for opt, style in zip(dict.fromkeys(r["optimizer"] for r in rows), ("-", "--", ":")):
            pts = sorted((r["batch_size"], r["samples_per_second"]) for r in rows
                         if r["contender"] == name and r["optimizer"] == opt)
            if pts:
                ax.plot(*zip(*pts), style, marker="o", label=f"{name} ({opt})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("training samples / s")
    model = result["config"].get("model", "mlp")
    ax.set_title(f"MNIST {'MLP 784-128-64-10' if model == 'mlp' else 'LeNet-5'} training throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
