"""Time to accuracy: training seconds until the default MNIST recipe first reaches a test accuracy."""
from __future__ import annotations

from typing import Any


class _StopAt:
    """Stops fit at the first epoch whose test accuracy reaches `target`; adds up training seconds."""

    def __init__(self, target: float) -> None:
        self.target, self.seconds, self.reached = target, 0.0, None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool:
        self.seconds += logs["seconds"]
        if logs["test_accuracy"] >= self.target:
            self.reached = {"epoch": epoch, "test_accuracy": logs["test_accuracy"], "train_seconds": self.seconds}
            return True
        return False


def time_to_accuracy(backend_name: str, target: float, data_dir: str | None, max_epochs: int = 10,
                     seed: int = 0, graph: bool = False) -> dict[str, Any]:
    """Run `xpnet train mnist`'s recipe on `backend_name` until test accuracy >= target (or max_epochs);
    graph: each step replayed from a CUDA graph (the xpnet-cupy-graph contender) or not (xpnet-cupy)."""
    from xpnet.backends import get_backend
    from xpnet.core.optim import make_optimizer
    from xpnet.data.batches import num_batches
    from xpnet.recipes import DEFAULTS, build_problem, make_schedule
    from xpnet.training.fit import fit

    d = DEFAULTS["mnist"]
    backend = get_backend(backend_name)
    problem = build_problem("mnist", backend, "mlp", "float32", seed, data_dir)
    steps = d.epochs * num_batches(problem.train[0].shape[0], d.batch_size)  # the recipe's schedule, as in train
    opt = make_optimizer(d.optimizer, problem.model.parameters(), d.lr, 0.0, make_schedule(d.schedule, steps))
    stop = _StopAt(target)
    history = fit(problem.model, problem.loss, opt, problem.train, epochs=max_epochs, batch_size=d.batch_size,
                  validation=problem.test, seed=seed, callbacks=[stop], validation_prefix="test", graph=graph)
    return {"backend": backend_name, "target": target, "reached": stop.reached,
            "epochs_run": len(history.epochs), "best_accuracy": max(history["test_accuracy"])}
