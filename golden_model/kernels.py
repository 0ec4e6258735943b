"""Exact integer kernels, vectorized over the batch.

Integer matrix products go through float BLAS: every product and partial sum
is an integer whose magnitude is bounded by ``fan_in * max|x|``, and float32
(float64) represents every integer below 2**24 (2**53) exactly, so the result
is exact whatever order the BLAS sums in. The bound is checked, not assumed.
A bit-packed XNOR/popcount path exists for bipolar-by-bipolar products.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_F32_EXACT = 2**24
_F64_EXACT = 2**53


def int_matmul(x: np.ndarray, w: np.ndarray, bound: int) -> np.ndarray:
    """x [N, I] (ints) times w[O, I].T (ints), exact, as int64 [N, O].

    ``bound`` is an upper bound of sum_i |x_i| * |w_i| for any row.
    """
    if bound < _F32_EXACT:
        y = x.astype(np.float32, copy=False) @ w.astype(np.float32, copy=False).T
    elif bound < _F64_EXACT:
        y = x.astype(np.float64, copy=False) @ w.astype(np.float64, copy=False).T
    else:
        return x.astype(np.int64) @ w.astype(np.int64).T
    return y.astype(np.int64)


def pack_bipolar(a: np.ndarray) -> np.ndarray:
    """Pack a {-1,+1} matrix [M, K] to uint64 words [M, ceil(K/64)], bit = (a == +1)."""
    bits = np.packbits(a > 0, axis=1, bitorder="little")
    pad = (-bits.shape[1]) % 8
    if pad:
        bits = np.pad(bits, ((0, 0), (0, pad)))
    return np.ascontiguousarray(bits).view(np.uint64)


def bipolar_matmul_popcount(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact x @ w.T for {-1,+1} matrices via XNOR-popcount on packed words.

    dot = K - 2 * popcount(x XOR w); padding bits are 0 in both, so they never
    count as a mismatch.
    """
    k = x.shape[1]
    xp = pack_bipolar(x)
    wp = pack_bipolar(w)
    out = np.empty((x.shape[0], w.shape[0]), dtype=np.int64)
    # Chunk the batch so the [n, O, words] XOR temporary stays small.
    step = max(1, (1 << 22) // max(1, wp.shape[0] * wp.shape[1]))
    for s in range(0, x.shape[0], step):
        diff = np.bitwise_count(xp[s:s + step, None, :] ^ wp[None, :, :]).sum(axis=2,
                                                                             dtype=np.int64)
        out[s:s + step] = k - 2 * diff
    return out


def pad_nchw(x: np.ndarray, pads: tuple[int, int, int, int], value: int) -> np.ndarray:
    t, left, b, r = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)), constant_values=value)


def im2col(x: np.ndarray, kh: int, kw: int, stride: tuple[int, int]) -> np.ndarray:
    """Patches of an already padded NCHW tensor: [N, OH, OW, C*KH*KW].

    Patch element order is (c, ky, kx), channel-major, which is the order of a
    weight tensor [O, C, KH, KW] reshaped to [O, C*KH*KW].
    """
    n, c = x.shape[:2]
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    oh, ow = win.shape[2], win.shape[3]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh, ow, c * kh * kw)


def maxpool_nchw(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    win = sliding_window_view(x, kernel, axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    return win.max(axis=(4, 5))
