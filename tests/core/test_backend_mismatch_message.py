"""Input of one array library into a layer whose weights are of another names the libraries, not the dtype
(their float32s print alike), and says to move the model; a real dtype mismatch keeps its own message."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.errors import DTypeError


@pytest.mark.parametrize("layer, shape", [(lambda: xn.Sequential([xn.Dense(3, 2)]), (2, 3)),
                                          (lambda: xn.Conv2D(1, 2, 3), (1, 1, 5, 5))])
def test_another_librarys_input_names_both_libraries(layer, shape):
    torch = pytest.importorskip("torch")
    on_numpy = layer()
    with pytest.raises(DTypeError, match="weights of numpy but got input of torch; move the model") as caught:
        on_numpy.forward(torch.zeros(shape))
    assert "float32 weights but got float32" not in str(caught.value)
    with pytest.raises(DTypeError, match="weights of torch but got input of numpy"):
        layer().to("torch").forward(np.zeros(shape, np.float32))


def test_a_real_dtype_mismatch_keeps_the_dtype_message():
    with pytest.raises(DTypeError, match="float32 weights but got float64 input"):
        xn.Dense(3, 2).forward(np.zeros((1, 3)))
