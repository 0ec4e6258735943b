"""Fold a float chain plus quantizer into exact integer thresholds.

Between an integer accumulator ``a`` and the next quantizer, an ONNX graph
applies a chain of per-channel float32 ops (bias, scale, BatchNormalization,
...). Each op is monotone in ``a``, and float rounding keeps it (weakly)
monotone, so for each level k the predicate ``level(f(a)) >= k`` flips at
most once over the integers. We find that point by binary search over the
accumulator's whole range, evaluating the *same float32 ops* the graph
executes, so the integer threshold reproduces the float executor exactly,
ties included. Decreasing channels (negative BN scale) are searched in
``-a`` and marked with sign -1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden_model.floatops import ElementwiseOp, Quantizer, apply_chain, chain_direction


@dataclass(frozen=True)
class FoldResult:
    thresholds: np.ndarray  # int64 [C, L-1]; sign * a >= t  <=>  level >= k
    sign: np.ndarray  # int8 [C]


def fold_thresholds(ops: list[ElementwiseOp], quant: Quantizer, channels: int,
                    bound: int) -> FoldResult:
    """Integer thresholds equivalent to ``quant.level(chain(a))`` for |a| <= bound."""
    if bound >= 2**24:
        raise ValueError(f"accumulator bound {bound} exceeds float32's exact integer range")
    sign = chain_direction(ops, channels)
    sign = np.where(sign == 0, 1, sign).astype(np.int8)
    levels = quant.num_levels
    out = np.empty((channels, levels - 1), dtype=np.int64)
    s64 = sign.astype(np.int64)

    def level_at(a_prime: np.ndarray) -> np.ndarray:
        acc = (s64 * a_prime).astype(np.float32)[None, :]
        return quant.level(apply_chain(ops, acc, axis=1), axis=1)[0]

    for k in range(1, levels):
        lo = np.full(channels, -bound, dtype=np.int64)
        hi = np.full(channels, bound + 1, dtype=np.int64)
        while True:
            active = lo < hi
            if not active.any():
                break
            mid = (lo + hi) // 2
            p = level_at(np.where(active, mid, 0)) >= k
            hi = np.where(active & p, mid, hi)
            lo = np.where(active & ~p, mid + 1, lo)
        out[:, k - 1] = lo
    return FoldResult(out, sign)
