"""Exact integer kernels, vectorized over the batch.

Integer matrix products go through float BLAS: every product and partial sum
is an integer whose magnitude is bounded by ``fan_in * max|x|``, and float32
(float64) represents every integer below 2**24 (2**53) exactly, so the result
is exact whatever order the BLAS sums in. The bound is checked, not assumed.
A bit-packed XNOR/popcount path exists for bipolar-by-bipolar products.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_F32_EXACT = 2**24
_F64_EXACT = 2**53

# Products with fewer multiply-adds than this run with one BLAS thread: for them
# a second thread saves ~0.1 ms on an idle machine but, on a loaded 2-CPU one,
# waiting for a busy CPU made them 10-20x slower (docs/benchmarks.md).
SINGLE_THREAD_MACS = 2**24


def unique(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, index of each element of the flattened ``a`` in them):
    ``np.unique(a, return_inverse=True)`` for plain arrays, without numpy 2's
    import of numpy.ma (20 ms of a `cimgen run` start-up)."""
    flat = np.asarray(a).ravel()
    s = np.sort(flat)
    keep = np.ones(s.size, bool)
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    vals = s[keep]
    return vals, np.searchsorted(vals, flat).astype(np.intp, copy=False)


class _OneBlasThread:
    """Context: numpy's BLAS on one thread for small products. Speed only: the results
    are exact integers either way.

    Sets the thread count through threadpoolctl's per-library controllers, found
    once per process (for OpenBLAS, its own get/set functions, which the
    controller calls: about 1 us per use instead of 15), where
    ``ThreadpoolController.limit`` costs about 100 us, which is most of a small
    network's inference."""

    _libs: list[tuple[Callable[[], int], Callable[[int], object]]] | None = None

    def __init__(self, macs: int) -> None:
        self.on = macs < SINGLE_THREAD_MACS
        self.saved: list[int] = []

    @classmethod
    def libs(cls) -> list[tuple[Callable[[], int], Callable[[int], object]]]:
        """(get, set) of each BLAS library's thread count."""
        if cls._libs is None:
            libs = []
            try:
                from threadpoolctl import ThreadpoolController

                for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
                    get, put = lib.get_num_threads, lib.set_num_threads
                    if getattr(lib, "internal_api", "") == "openblas":
                        try:  # the functions the controller's methods call
                            get = lib._get_symbol("openblas_get_num_threads")
                            put = lib._get_symbol("openblas_set_num_threads")
                        except Exception:  # pragma: no cover - other threadpoolctl versions
                            pass
                    libs.append((get, put))
            except Exception:  # pragma: no cover - optional speed-up
                libs = []
            cls._libs = libs
        return cls._libs

    @classmethod
    def threads(cls) -> int:
        """The BLAS libraries' thread count now (the largest; 1 without any)."""
        return max([get() for get, _ in cls.libs()] + [1])

    def __enter__(self) -> None:
        if self.on:
            libs = self.libs()
            self.saved = [get() for get, _ in libs]
            for _, put in libs:
                put(1)

    def __exit__(self, *exc: object) -> None:
        for (_, put), n in zip(self.libs(), self.saved, strict=False):
            put(n)
        self.saved = []


def exact_dtype(bound: int) -> type[np.generic]:
    """The cheapest dtype whose products and sums up to ``bound`` are exact integers."""
    if bound < _F32_EXACT:
        return np.float32
    if bound < _F64_EXACT:
        return np.float64
    return np.int64


def int_matmul(x: np.ndarray, w: np.ndarray, bound: int) -> np.ndarray:
    """x [N, I] (ints) times w[O, I].T (ints), exact, as int64 [N, O].

    ``bound`` is an upper bound of sum_i |x_i| * |w_i| for any row.

    This float-BLAS path is the one the reference uses: on the 4096 x 4096
    binary layer (scripts/bench_reference.py, docs/benchmarks.md) it was
    1.1-3.3x faster than ``bipolar_matmul_popcount`` on the 2-CPU machine.
    """
    dt = exact_dtype(bound)
    with _OneBlasThread(x.shape[0] * x.shape[1] * w.shape[0]):
        y = x.astype(dt, copy=False) @ w.astype(dt, copy=False).T
    return y.astype(np.int64, copy=False)


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


def conv2d_nchw(x: np.ndarray, w: np.ndarray, stride: tuple[int, int],
                pads: tuple[int, int, int, int], pad_value: int, bound: int) -> np.ndarray:
    """Exact integer convolution: x [N, C, H, W] (ints), w [O, C, KH, KW] -> int64 NCHW.

    Same result as ``im2col`` + ``int_matmul``, faster: the padded input is
    laid out NHWC in the matmul dtype first, so patches are gathered with the
    channel axis contiguous, in (ky, kx, c) order, and the weights are
    reordered to match (the sum is over the same products, exactly).
    """
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    t, left, b, r = pads
    dt = exact_dtype(bound)
    xp = np.empty((n, h + t + b, wd + left + r, c), dt)
    if any(pads):
        xp.fill(pad_value)
    xp[:, t:t + h, left:left + wd, :] = x.transpose(0, 2, 3, 1)
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::stride[0], ::stride[1]]
    oh, ow = win.shape[1], win.shape[2]
    cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * c)
    wm = w.transpose(0, 2, 3, 1).reshape(o, kh * kw * c).astype(dt)
    with _OneBlasThread(cols.shape[0] * cols.shape[1] * o):
        acc = (cols @ wm.T).reshape(n, oh, ow, o)
    out = np.empty((n, o, oh, ow), np.int64)
    np.copyto(out, acc.transpose(0, 3, 1, 2), casting="unsafe")
    return out


def maxpool_nchw(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Max over windows, as an elementwise maximum of kh * kw strided slices."""
    kh, kw = kernel
    sh, sw = stride
    oh = (x.shape[2] - kh) // sh + 1
    ow = (x.shape[3] - kw) // sw + 1
    out: np.ndarray | None = None
    for dy in range(kh):
        for dx in range(kw):
            s = x[:, :, dy:dy + sh * (oh - 1) + 1:sh, dx:dx + sw * (ow - 1) + 1:sw]
            out = s.copy() if out is None else np.maximum(out, s, out=out)
    assert out is not None
    return out
