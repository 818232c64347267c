"""`xpnet eval --model FILE`: load a saved model on any backend and report its test metrics."""
from __future__ import annotations

import argparse

from xpnet.backends import get_backend
from xpnet.cli.output import versions, write_json
from xpnet.errors import CheckpointError
from xpnet.io.checkpoint import load_model, model_metadata
from xpnet.io.outputs import check_output_path
from xpnet.recipes import test_data_for
from xpnet.training.fit import evaluate


def run_eval(args: argparse.Namespace) -> int:
    if args.json:
        check_output_path(args.json, "--json")
    backend = get_backend(args.backend)
    model, metadata = load_model(args.model, backend), model_metadata(args.model)
    try:
        x, y, loss = test_data_for(metadata, backend, model.dtype, args.data_dir)
    except CheckpointError as exc:  # a metadata field of the file: say which file
        raise CheckpointError(f"{args.model}: {exc}") from None
    metrics = evaluate(model, loss, x, y)
    shown = "  ".join(f"{k} {v:.2%}" if k == "accuracy" else f"{k} {v:.4g}" for k, v in metrics.items())
    print(f"xpnet: {args.model} ({metadata.get('task')}) on {backend.name} [{backend.describe_device()}], "
          f"{x.shape[0]:,} test samples: {shown}")
    if args.json:
        write_json(args.json, {"model_file": str(args.model), "task": metadata.get("task"), "backend": backend.name,
                               "device": backend.describe_device(), "dtype": model.dtype,
                               "versions": versions(backend.versions),
                               "metrics": {f"test_{k}": v for k, v in metrics.items()}})
    return 0
