"""Using a model: predict and evaluate, on the arrays of any backend (the model follows them, as in fit)."""
from __future__ import annotations

from typing import Any

from xpnet.backends import Backend, backend_for
from xpnet.core.arrays import namespace
from xpnet.core.losses import MAE, MSE, Loss, SoftmaxCrossEntropy
from xpnet.core.metrics import accuracy, mae, mse, r2
from xpnet.core.module import Module
from xpnet.data.validate import check_inputs, check_targets, data_pair, model_inputs
from xpnet.distributed.communicator import Communicator
from xpnet.training.parallel import predict_split


def predict(model: Module, x: Any, batch_size: int = 1000) -> Any:
    """The model's outputs for every row of x, in eval mode (no dropout), in batches, as arrays of x's library.

    As in fit, the model moves to x's backend and device first (it stays there), and floating x of another
    precision is cast to the model's dtype; integer or bool x is refused (scale pixels to floats first)."""
    positive("batch_size", batch_size)
    backend = follow_inputs(model, x)
    return outputs(model, model_inputs(backend, x, model.dtype or "float32", "predict"), batch_size)


def evaluate(model: Module, loss: Loss, data: Any, y: Any = None, *, batch_size: int = 1000,
             communicator: Communicator | None = None) -> dict[str, float]:
    """Loss plus accuracy (classification) or MSE/MAE/R^2 (regression) over the whole set.

    The data as fit takes it, an (x, y) pair, or as x and y apart: evaluate(model, loss, (x, y)) or
    evaluate(model, loss, x, y). As in fit, the model moves to x's backend and device first, y follows x, and
    floating x of another precision is cast to the model's dtype; integer or bool x, NaN/inf and a row count
    that differs between x and y are refused. With a communicator, each process predicts its share of the
    rows and every process gets the same metrics."""
    x, y = data_pair(data, "evaluate", y, apart=True)
    positive("batch_size", batch_size)
    backend = follow_inputs(model, x)
    x = check_inputs(backend, x, model.dtype or "float32", "evaluation data")
    y = check_targets(backend, y, x.shape[0], "evaluation data")
    return metrics(model, loss, x, y, batch_size, communicator)


def follow_inputs(model: Module, x: Any) -> Backend:
    """The backend of array x, with the model moved there (a no-op when it is already): a model follows
    its data, in fit, evaluate and predict alike, rather than fail on arrays of another library or device."""
    backend = backend_for(x)
    model.to(backend)
    return backend


def outputs(model: Module, x: Any, batch_size: int) -> Any:
    """predict's work on inputs already on the model's backend and of its dtype."""
    was_training = model.training
    model.eval()
    try:
        n = x.shape[0]
        parts = [model.forward(x[i:min(i + batch_size, n), ...]) for i in range(0, n, batch_size)]
    finally:
        model.train(was_training)
    return parts[0] if len(parts) == 1 else namespace(parts[0]).concat(parts, axis=0)


def metrics(model: Module, loss: Loss, x: Any, y: Any, batch_size: int,
             communicator: Communicator | None) -> dict[str, float]:
    """evaluate's work on data already checked and on the model's backend, as fit's validation set is before
    its first epoch (so each epoch's evaluation does not check the set again)."""
    out = outputs(model, x, batch_size) if communicator is None else \
        predict_split(outputs, model, x, batch_size, communicator)
    result = {"loss": float(loss.forward(out, y))}
    if isinstance(loss, SoftmaxCrossEntropy):
        result["accuracy"] = accuracy(out, y)
    elif isinstance(loss, (MSE, MAE)):
        result.update(mse=mse(out, y), mae=mae(out, y), r2=r2(out, y))
    return result


def positive(name: str, value: int) -> None:
    """Refuse what is not a positive int (a bool is not), naming the argument."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
