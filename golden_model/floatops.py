"""Float32 elementwise operations and quantizers, evaluated as ONNX executors do.

These are the only float computations in cimgen. They serve two purposes:

* the input stage of a network (float pixels -> integer levels) is evaluated
  with them at inference time, in float32, in the order the ONNX graph
  writes them, so the integer levels equal those of any float32 executor;
* the importer folds the float chain between an integer accumulator and the
  next quantizer into integer thresholds by evaluating the same chain on
  integer candidates (``cimgen.frontend.fold``).

Each op is monotone in its input for a fixed channel, which is what makes
folding by search exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

F32 = np.float32


def _per_channel(a: np.ndarray, ndim: int, axis: int = 1) -> np.ndarray:
    """Reshape a per-channel vector [C] (or scalar [1]) to broadcast on ``axis``."""
    a = np.asarray(a, dtype=F32).reshape(-1)
    shape = [1] * ndim
    shape[axis] = a.size
    return a.reshape(shape)


@dataclass(frozen=True, eq=False)
class ElementwiseOp:
    """One float op with a per-channel (or scalar) constant operand.

    kind: "add", "sub", "mul", "div" (x op c), "rsub" (c - x), or "bn"
    (ONNX BatchNormalization in inference mode with ``params`` =
    scale, bias, mean, var and ``eps``).
    """

    kind: str
    const: np.ndarray = field(default_factory=lambda: np.zeros(1, F32))
    bn: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    eps: float = 1e-5

    def apply(self, x: np.ndarray, axis: int = 1) -> np.ndarray:
        x = np.asarray(x, dtype=F32)
        if self.kind == "bn":
            assert self.bn is not None
            scale, bias, mean, var = (_per_channel(p, x.ndim, axis) for p in self.bn)
            # The ONNX reference formula, term by term in float32.
            return ((x - mean) / np.sqrt(var + F32(self.eps)) * scale + bias).astype(F32)
        c = _per_channel(self.const, x.ndim, axis)
        if self.kind == "add":
            return (x + c).astype(F32)
        if self.kind == "sub":
            return (x - c).astype(F32)
        if self.kind == "rsub":
            return (c - x).astype(F32)
        if self.kind == "mul":
            return (x * c).astype(F32)
        if self.kind == "div":
            return (x / c).astype(F32)
        raise ValueError(f"unknown elementwise op {self.kind}")

    def direction(self, channels: int) -> np.ndarray:
        """Per-channel monotonic direction: +1 increasing, -1 decreasing, 0 constant."""
        if self.kind in ("add", "sub"):
            return np.ones(channels, np.int8)
        if self.kind == "rsub":
            return -np.ones(channels, np.int8)
        if self.kind == "bn":
            assert self.bn is not None
            s = np.broadcast_to(np.asarray(self.bn[0], F32).reshape(-1), (channels,))
            return np.sign(s).astype(np.int8)
        c = np.broadcast_to(np.asarray(self.const, F32).reshape(-1), (channels,))
        return np.sign(c).astype(np.int8)

    def channels(self) -> int:
        if self.kind == "bn":
            assert self.bn is not None
            return max(np.asarray(p).size for p in self.bn)
        return int(np.asarray(self.const).size)


def apply_chain(ops: list[ElementwiseOp] | tuple[ElementwiseOp, ...], x: np.ndarray,
                axis: int = 1) -> np.ndarray:
    y = np.asarray(x, dtype=F32)
    for op in ops:
        y = op.apply(y, axis)
    return y


def chain_direction(ops: list[ElementwiseOp] | tuple[ElementwiseOp, ...],
                    channels: int) -> np.ndarray:
    d = np.ones(channels, np.int8)
    for op in ops:
        d = (d * op.direction(channels)).astype(np.int8)
    return d


# --------------------------------------------------------------------------
# Quantizers: float -> level index in [0, num_levels); level -> float value.
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Quantizer:
    """A monotone non-decreasing map from float to a level index.

    ``level_values`` gives the float value the ONNX op outputs for each level
    (per channel when the op has per-channel parameters: shape [C, L] or [1, L]).
    """

    kind: str  # "bipolar", "sign", "multithreshold", "intquant"
    scale: np.ndarray = field(default_factory=lambda: np.ones(1, F32))
    thresholds: np.ndarray | None = None  # multithreshold: [C or 1, B] float32
    out_scale: float = 1.0
    out_bias: float = 0.0
    zeropt: np.ndarray = field(default_factory=lambda: np.zeros(1, F32))
    bits: int = 1
    signed: bool = True
    narrow: bool = False
    rounding: str = "ROUND"

    @property
    def num_levels(self) -> int:
        if self.kind == "bipolar":
            return 2
        if self.kind == "sign":
            return 3
        if self.kind == "multithreshold":
            assert self.thresholds is not None
            return int(self.thresholds.shape[1]) + 1
        if self.kind == "intquant":
            if self.bits == 1 and self.signed:
                return 2
            lo, hi = self.int_range()
            return hi - lo + 1
        raise ValueError(self.kind)

    def int_range(self) -> tuple[int, int]:
        b = self.bits
        if self.signed:
            lo = -(2 ** (b - 1)) + (1 if self.narrow else 0)
            hi = 2 ** (b - 1) - 1
        else:
            lo = 0
            hi = 2**b - 1 - (1 if self.narrow else 0)
        return lo, hi

    def level(self, v: np.ndarray, axis: int = 1) -> np.ndarray:
        """Level index of each element of float32 ``v`` (channels on ``axis``)."""
        v = np.asarray(v, dtype=F32)
        if self.kind == "bipolar":
            return (v >= F32(0)).astype(np.int64)
        if self.kind == "sign":
            return (v >= F32(0)).astype(np.int64) + (v > F32(0)).astype(np.int64)
        if self.kind == "multithreshold":
            assert self.thresholds is not None
            t = np.asarray(self.thresholds, F32)
            vm = np.moveaxis(v, axis, -1)[..., None]
            cnt = (vm >= t).sum(axis=-1, dtype=np.int64)
            return np.moveaxis(cnt, -1, axis)
        if self.kind == "intquant":
            y = (v / _per_channel(self.scale, v.ndim, axis)).astype(F32)
            y = (y + _per_channel(self.zeropt, v.ndim, axis)).astype(F32)
            if self.bits == 1 and self.signed:
                return (y >= F32(0)).astype(np.int64)
            lo, hi = self.int_range()
            y = np.clip(y, F32(lo), F32(hi))
            y = ROUNDERS[self.rounding.upper()](y)
            return y.astype(np.int64) - lo
        raise ValueError(self.kind)

    def level_values(self) -> np.ndarray:
        """Float value of each level: shape [C or 1, L]."""
        L = self.num_levels
        idx = np.arange(L, dtype=np.float64)
        if self.kind in ("bipolar", "sign") or (self.kind == "intquant" and self.bits == 1
                                                 and self.signed):
            base = idx * 2 - 1 if L == 2 else idx - 1
            s = np.asarray(self.scale, np.float64).reshape(-1, 1)
            return base[None, :] * s
        if self.kind == "multithreshold":
            return (self.out_scale * idx + self.out_bias)[None, :]
        lo, _ = self.int_range()
        s = np.asarray(self.scale, np.float64).reshape(-1, 1)
        z = np.asarray(self.zeropt, np.float64).reshape(-1, 1)
        return (idx[None, :] + lo - z) * s


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + F32(0.5))


def _round_half_down(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.ceil(np.abs(x) - F32(0.5))


def _round_up(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.ceil(np.abs(x))


ROUNDERS = {
    "ROUND": np.round,
    "HALF_EVEN": np.round,
    "CEIL": np.ceil,
    "FLOOR": np.floor,
    "DOWN": np.fix,
    "UP": _round_up,
    "HALF_UP": _round_half_up,
    "HALF_DOWN": _round_half_down,
}
