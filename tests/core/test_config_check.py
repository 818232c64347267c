"""A config read from a file is checked against the constructor's signature before the layer is built."""
from __future__ import annotations

import pytest

from xpnet.core.module import module_from_config
from xpnet.errors import CheckpointError


def test_an_integer_beyond_every_float_is_not_a_finite_number():
    # JSON may spell an integer with any number of digits; converting it to a float overflows
    with pytest.raises(CheckpointError, match="alpha must be a finite number"):
        module_from_config({"type": "LeakyReLU", "alpha": 10**400})
