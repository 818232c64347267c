"""What the state of a checkpoint must hold, checked field by field (type and range) before a resume uses any
of it: a negative batch position would silently train extra batches, a history of strings would fail epochs
later, a non-list of callbacks with a traceback. Every refusal is one CheckpointError naming file and field."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from xpnet.errors import CheckpointError, XpnetError
from xpnet.io.fields import Fields, check


def check_saved_state(meta: dict[str, Any]) -> None:
    """Check the type (and the range that does not depend on this run) of every field of a checkpoint's state."""
    path = meta.get("path")
    state = Fields(path, meta.get("state", {}), "state")
    for i, log in enumerate(state.items("history", dict)):
        epoch_log = Fields(path, log, f"state.history[{i}]")
        for key in log:  # null where a metric was not finite
            epoch_log.get(key, int, low=1) if key == "epoch" else epoch_log.get(key, float, nullable=True, finite=False)
    state.items("callbacks", dict)
    state.get("stopped_early", bool, False)
    state.get("skipped_steps", int, 0, low=0)
    state.get("processes", int, 1, low=1)
    state.get("loss_sum", float, 0.0)
    state.get("seen", int, 0, low=0)
    state.get("seconds", float, 0.0, low=0)
    rng = state.object("rng", {})
    rng.get("backend", str, None, nullable=True)
    rng.get("ranks", list, None, nullable=True)


def check_position(meta: dict[str, Any], batches: int, batch_size: int) -> None:
    """The checkpoint's batch lies in 0..batches of this run (a negative one would train extra batches), and the
    rows it counts as seen fit in those batches."""
    path = meta.get("path")
    batch = check(path, "batch", meta.get("batch", batches), int, low=0, high=batches)
    check(path, "state.seen", meta.get("state", {}).get("seen", 0), int, low=0, high=batch * batch_size)


@contextmanager
def field_of(path: Any, field: str) -> Iterator[None]:
    """Turn what a saved value does to the code that reads it (a callback's load_state, a backend's
    set_rng_state: KeyError, TypeError, ValueError, ...) into one CheckpointError naming file and field."""
    try:
        yield
    except XpnetError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, OverflowError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: field {field} holds a value this run cannot use "
                               f"({type(exc).__name__}: {str(exc)[:80]})") from None
