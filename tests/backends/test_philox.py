"""The host mirror of the CUDA Philox4x32-10 generator: Random123's known answers, layout, uniformity.

Runs on the CPU (no CuPy needed); tests/backends/test_cupy_kernels.py checks the device against this mirror bit
for bit.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from xpnet.backends.cupy.philox import (
    _philox4x32,
    philox4x32_10_numpy,
    philox_uniform_numpy,
)

# Random123 tests/kat_vectors (DEShawResearch/random123): "philox4x32 R  ctr[4]  key[2]  expected[4]", hex.
KAT = """
philox4x32 7 00000000 00000000 00000000 00000000 00000000 00000000   5f6fb709 0d893f64 4f121f81 4f730a48
philox4x32 7 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   5207ddc2 45165e59 4d8ee751 8c52f662
philox4x32 7 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   4dfccaba 190a87f0 c47362ba b6b5242a
philox4x32 10 00000000 00000000 00000000 00000000 00000000 00000000   6627e8d5 e169c58d bc57ac4c 9b00dbd8
philox4x32 10 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   408f276d 41c83b0e a20bc7c6 6d5451fd
philox4x32 10 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   d16cfe09 94fdcceb 5001e420 24126ea1
"""
VECTORS = [(int(r), [int(w, 16) for w in ws[:4]], [int(w, 16) for w in ws[4:6]], [int(w, 16) for w in ws[6:]])
           for _, r, *ws in (line.split() for line in KAT.strip().splitlines())]


@pytest.mark.parametrize("rounds,ctr,key,expected", VECTORS)
def test_known_answers(rounds, ctr, key, expected):
    got = _philox4x32(ctr, key, rounds)
    assert got.dtype == np.uint32 and got.tolist() == expected
    if rounds == 10:
        assert philox4x32_10_numpy(ctr, key).tolist() == expected


def test_vectorised_over_counters_equals_one_at_a_time():
    ctrs = np.array([v[1] for v in VECTORS if v[0] == 10], dtype=np.uint32)
    keys = np.array([v[2] for v in VECTORS if v[0] == 10], dtype=np.uint32)
    assert philox4x32_10_numpy(ctrs, keys).tolist() == [v[3] for v in VECTORS if v[0] == 10]


def test_layout_float32_uses_every_word_of_block_i_div_4():
    seed, cv = 0x0123456789ABCDEF, (5 << 32) + 9
    u = philox_uniform_numpy(10, "float32", seed, cv)
    for i in (0, 3, 4, 9):
        words = philox4x32_10_numpy([i // 4, 0, cv & 0xFFFFFFFF, cv >> 32], [seed & 0xFFFFFFFF, seed >> 32])
        assert u[i] == np.float32((int(words[i % 4]) >> 8) * 2.0 ** -24)


def test_layout_float64_uses_53_bits_of_a_word_pair():
    seed, cv = 42, 3
    u = philox_uniform_numpy(5, "float64", seed, cv)
    for i in range(5):
        w = philox4x32_10_numpy([i // 2, 0, cv, 0], [seed, 0])
        bits = (int(w[2 * (i % 2) + 1]) << 32) | int(w[2 * (i % 2)])
        assert u[i] == (bits >> 11) * 2.0 ** -53


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniforms_lie_in_zero_one_with_the_right_moments(dtype):
    u = philox_uniform_numpy((200, 500), dtype, seed=7, counter_value=0)
    assert u.shape == (200, 500) and u.dtype == np.dtype(dtype)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.005  # 100k samples: the mean's standard error is 0.0009
    assert abs(float(u.var()) - 1 / 12) < 0.002
    assert len(np.unique(u)) > 0.99 * u.size


def test_largest_word_still_maps_below_one():
    top = np.uint32(0xFFFFFFFF)
    assert np.float32((int(top) >> 8) * 2.0 ** -24) < 1.0
    assert ((1 << 64) - 1 >> 11) * 2.0 ** -53 < 1.0


def test_counter_seed_and_dtype_change_the_stream_and_the_same_inputs_repeat():
    a = philox_uniform_numpy(64, "float32", 1, 0)
    assert np.array_equal(a, philox_uniform_numpy(64, "float32", 1, 0))
    for other in (philox_uniform_numpy(64, "float32", 1, 1), philox_uniform_numpy(64, "float32", 2, 0),
                  philox_uniform_numpy(64, "float32", 1, 1 << 32)):
        assert not np.array_equal(a, other)
    assert np.array_equal(philox_uniform_numpy(7, "float32", 1, 0), a[:7])  # a prefix does not depend on size


def test_other_dtypes_raise_type_error():
    with pytest.raises(TypeError, match="float32 and float64"):
        philox_uniform_numpy(4, "int32", 0, 0)
    with pytest.raises(TypeError):
        philox_uniform_numpy(4, "float16", 0, 0)


def test_the_kernel_module_imports_without_cupy_and_registers_lazily():
    code = ("import sys; import xpnet.backends.cupy.kernels as k, xpnet.backends.cupy.philox as ph; "
            "k.register_all(); "
            "from xpnet.backends.ops import registered; "
            "ops = {op for ns, op in registered() if ns == 'array_api_compat.cupy'}; "
            "assert {'adam_update', 'sgd_update', 'softmax_cross_entropy_labels', 'philox_uniform'} <= ops, ops; "
            "assert 'cupy' not in sys.modules; assert set(k.CUDA_SOURCES) >= {'optim'}; "
            "assert set(ph.CUDA_SOURCES) == {'philox'}")
    subprocess.run([sys.executable, "-c", code], check=True)
