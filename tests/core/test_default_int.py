"""The integer dtype of the indices and counts xpnet creates is the namespace's default, asked of its
inspection API, or of a Python int's array where a namespace has none."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from xpnet.core.integers import default_int, default_int_name
from xpnet.core.metrics import correct_count


def test_the_libraries_xpnet_names_default_to_int64(backend):
    assert default_int_name(backend.xp, backend.device) == "int64"


def _array_of(dtype):
    return lambda value, device=None: SimpleNamespace(dtype=dtype)


def test_a_namespace_without_the_inspection_api_answers_through_a_python_ints_array():
    assert default_int(SimpleNamespace(asarray=_array_of("int32"))) == "int32"
    assert default_int(SimpleNamespace(asarray=_array_of("int16")), device="cpu") == "int16"


def test_a_partial_inspection_api_falls_back_too():
    class Info:
        def default_dtypes(self):  # no device keyword: an inspection API older than the standard's
            return {"integral": "int8"}

    xp = SimpleNamespace(__array_namespace_info__=Info, asarray=_array_of("int32"))
    assert default_int(xp, device="cpu") == "int32"


def test_correct_count_counts_in_the_default_integer_dtype(backend):
    scores = backend.asarray(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32))
    count = correct_count(scores, backend.asarray(np.array([0, 1, 1])))
    assert int(count) == 2 and count.dtype == default_int(backend.xp, backend.device)
