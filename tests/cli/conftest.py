"""Fixtures of the command-line tests."""
from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def fit_calls(monkeypatch) -> list[dict[str, Any]]:
    """The keyword arguments of every fit() call `xpnet train` makes, recorded on their way to the real fit."""
    import xpnet.cli.train as train_cmd

    calls: list[dict[str, Any]] = []
    real_fit = train_cmd.fit

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(dict(kwargs))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(train_cmd, "fit", spy)
    return calls
