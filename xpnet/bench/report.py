"""The benchmark's table for the terminal (the plot is in plot.py)."""
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
    text = aligned(lines, left=2)
    cfg = result["config"]
    text.append(f"\n{cfg['samples']:,} MNIST samples per epoch, median of {cfg['repeats']} interleaved epochs after "
                f"1 warm-up, {cfg['threads']} thread{'s' * (cfg['threads'] != 1)}. {floor_text(result)}")
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


def aligned(lines: list[list[str]], left: int = 1) -> list[str]:
    """A table's rows of cells as text lines: the first `left` columns flush left, the others flush right,
    a rule of dashes under the first row (the head)."""
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    text = ["  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return text


def floor_text(result: dict[str, Any]) -> str:
    """What "% of GEMM floor" divides by: the median of the per-round GEMM rates, with their spread."""
    head = f"Floor: {result['flops_per_sample']:,} FLOP/sample at {result['gemm_gflops']:.1f} GFLOP/s"
    rounds = result.get("gemm_gflops_rounds") or []
    if not rounds:  # a result from before the GEMM was measured per round
        return f"{head} (float32 1024^3 GEMM, NumPy BLAS)."
    return (f"{head}, the median of {len(rounds)} float32 1024^3 GEMM measurements (NumPy BLAS, "
            f"{min(rounds):.1f}-{max(rounds):.1f}), one per repeat round, interleaved with the contenders' epochs.")
