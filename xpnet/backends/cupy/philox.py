"""Philox4x32-10 (Salmon et al. 2011, Random123) on the GPU, and its NumPy mirror bit for bit.

Counter-based, so safe inside CUDA-graph capture (cuRAND's generators are not): `philox_uniform` reads its
call counter from a device array and a second launch advances it, so every replay of a captured graph
draws new numbers. Call it once before capture so that compilation happens outside the graph.
`philox_uniform_numpy` is the host mirror (tests/backends/test_philox.py checks it against Random123's known
answers). The CUDA source is philox.cu beside this file. Importing this module needs neither CuPy nor a GPU
(tools/check_cuda_sources.py compiles CUDA_SOURCES without one); CuPy is imported inside the functions.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xpnet.backends.cupy.launch import cuda_source, kernel, launch
from xpnet.backends.cupy.launch import import_cupy as _cupy
from xpnet.backends.cupy.launch import suffix as _suffix

CUDA_SOURCES: dict[str, str] = {"philox": cuda_source("philox.cu")}
_PHILOX = CUDA_SOURCES["philox"]


# -- the host mirror's constants and the argument helpers that both sides share -------------------------
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_MASK32 = 0xFFFFFFFF


def _key_words(seed: int) -> tuple[int, int]:
    s = int(seed) % (1 << 64)  # negative or huge seeds wrap to 64 bits
    return s & _MASK32, s >> 32


def _shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)


def philox_key(seed: int) -> np.ndarray:
    """The (2,) uint32 key words of `seed` (copy them into the device key that philox_uniform reads)."""
    return np.array(_key_words(seed), dtype=np.uint32)


def philox_uniform(shape: int | Sequence[int], dtype: Any, seed: Any, counter: Any, out: Any = None) -> Any:
    """Uniforms in [0, 1) of `shape`: Philox4x32-10 keyed by `seed`, at the call number held in `counter`
    (a 0-d uint64 or 2-element uint32 device array), which a second launch then increments. Layout as
    philox_uniform_numpy; `out` (C-contiguous, of `shape` and `dtype`) avoids an allocation.
    seed: an int (copied to the device per call: eager use only), or a (2,) uint32 device array holding
    philox_key(seed), which is what a captured graph must be given."""
    cupy = _cupy()
    sfx = _suffix(dtype)
    if not (isinstance(counter, cupy.ndarray) and counter.flags.c_contiguous
            and ((counter.dtype == np.uint64 and counter.size == 1)
                 or (counter.dtype == np.uint32 and counter.size == 2))):
        raise TypeError("counter must be a C-contiguous 0-d uint64 or 2-element uint32 device array")
    shape = _shape(shape)
    with counter.device:
        if out is None:
            out = cupy.empty(shape, dtype=dtype)
        elif tuple(out.shape) != shape or out.dtype != np.dtype(dtype) or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {np.dtype(dtype).name} array of shape {shape}")
        if isinstance(seed, cupy.ndarray):
            key = seed
        elif cupy.cuda.get_current_stream().is_capturing():
            # The copy of an int seed's key would be a host-to-device transfer, which CuPy refuses inside a
            # capture (and a graph would replay it with this seed forever): say what to pass instead.
            raise TypeError("philox_uniform inside a CUDA-graph capture needs a device key: pass "
                            "cupy.asarray(philox_key(seed)) made before the capture, not an int seed")
        else:
            key = cupy.asarray(philox_key(seed))
        if key.dtype != np.uint32 or key.shape != (2,) or not key.flags.c_contiguous:
            raise TypeError("a device seed must be the (2,) uint32 array philox_key(seed)")
        per_block = 4 if sfx == "f32" else 2
        launch(_PHILOX, f"xpnet_philox_uniform_{sfx}", -(-out.size // per_block),
               (out, np.int64(out.size), counter, key))
        kernel(_PHILOX, "xpnet_philox_counter_increment")((1,), (1,), (counter,))
    return out


def _philox4x32(counter_words: Any, key_words: Any, rounds: int) -> np.ndarray:
    # 32-bit words held in uint64 so that the 32x32-bit products never overflow.
    ctr = np.asarray(counter_words, dtype=np.uint64)
    key = np.asarray(key_words, dtype=np.uint64)
    if ctr.shape[-1:] != (4,) or key.shape[-1:] != (2,) or (ctr > _MASK32).any() or (key > _MASK32).any():
        raise ValueError("counter_words must be (..., 4) and key_words (..., 2) unsigned 32-bit words")
    mask, shift = np.uint64(_MASK32), np.uint64(32)
    c0, c1, c2, c3 = (ctr[..., i] for i in range(4))
    k0, k1 = key[..., 0], key[..., 1]
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + np.uint64(_PHILOX_W[0])) & mask, (k1 + np.uint64(_PHILOX_W[1])) & mask
        p0, p1 = np.uint64(_PHILOX_M[0]) * c0, np.uint64(_PHILOX_M[1]) * c2
        c0, c1, c2, c3 = (p1 >> shift) ^ c1 ^ k0, p1 & mask, (p0 >> shift) ^ c3 ^ k1, p0 & mask
    return np.stack(np.broadcast_arrays(c0, c1, c2, c3), axis=-1).astype(np.uint32)


def philox4x32_10_numpy(counter_words: Any, key_words: Any) -> np.ndarray:
    """Philox4x32-10 on the host: counter (..., 4) and key (..., 2) 32-bit words -> (..., 4) uint32."""
    return _philox4x32(counter_words, key_words, 10)


def philox_uniform_numpy(shape: int | Sequence[int], dtype: Any, seed: int, counter_value: int) -> np.ndarray:
    """The host mirror of philox_uniform, bit for bit, for the call whose counter holds `counter_value`."""
    sfx = _suffix(dtype)
    shape = _shape(shape)
    size = int(np.prod(shape, dtype=np.int64))
    per_block = 4 if sfx == "f32" else 2
    j = np.arange(-(-size // per_block), dtype=np.uint64)
    cv = int(counter_value) % (1 << 64)
    words = np.stack([j & np.uint64(_MASK32), j >> np.uint64(32),
                      np.full_like(j, cv & _MASK32), np.full_like(j, cv >> 32)], axis=-1)
    w = philox4x32_10_numpy(words, _key_words(seed)).reshape(-1)
    if sfx == "f32":
        out = (w[:size] >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)
    else:
        pairs = w.astype(np.uint64).reshape(-1, 2)
        bits = (pairs[:, 1] << np.uint64(32)) | pairs[:, 0]
        out = (bits[:size] >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return out.reshape(shape)
