"""Reference BNN/TNN inference on the integer IR (numpy, whole batch at once).

This is the ground truth every other executor in cimgen is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BadInputError
from .floatops import apply_chain
from .ir import Conv2d, Dense, Flatten, InputStage, MaxPool2d, Network, Threshold, analyze
from .kernels import conv2d_nchw, int_matmul, maxpool_nchw


def check_inputs(net: Network, x: np.ndarray, where: str = "inputs") -> None:
    """Reject inputs the ONNX graph would not take: dtype, rank, shape, NaN."""
    check_stage_inputs(net.input, x, where)


def check_stage_inputs(stage: InputStage, x: np.ndarray, where: str = "inputs") -> None:
    """``check_inputs`` for an input stage."""
    if not isinstance(x, np.ndarray):
        raise BadInputError("inputs are not a numpy array", where=where)
    if x.dtype != np.float32:
        raise BadInputError(f"dtype {x.dtype}, the graph input takes float32", where=where)
    want = tuple(stage.shape)
    if x.ndim != len(want) + 1:
        raise BadInputError(f"rank {x.ndim} (shape {x.shape}), the graph input takes "
                            f"[batch, {', '.join(map(str, want))}]", where=where)
    if tuple(x.shape[1:]) != want:
        raise BadInputError(f"shape {x.shape}, the graph input takes "
                            f"[batch, {', '.join(map(str, want))}]", where=where)
    if x.shape[0] == 0:
        raise BadInputError("empty batch", where=where)
    if np.isnan(x).any():
        raise BadInputError(f"{int(np.isnan(x).sum())} NaN values", where=where)


def _count_at_least(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """int8 #{k : v >= t[c, k]} with channels on axis 1 of ``v``; t is [C or 1, K].

    One broadcast comparison per threshold column: no transposes and no
    [..., K] temporary.
    """
    bshape = (1, t.shape[0]) + (1,) * (v.ndim - 2)
    cnt = (v >= t[:, 0].reshape(bshape)).astype(np.int8)
    for k in range(1, t.shape[1]):
        cnt += v >= t[:, k].reshape(bshape)
    return cnt


def quantize_input(net: Network, x: np.ndarray) -> np.ndarray:
    """Float32 input -> integer input tensor (int16), exactly as a float32 executor."""
    return quantize_stage(net.input, x)


def quantize_stage(st: InputStage, x: np.ndarray) -> np.ndarray:
    """``quantize_input`` for an input stage."""
    q = st.quantizer
    y = apply_chain(st.pre_ops, x, axis=1)
    if q.kind == "multithreshold" and q.thresholds is not None and q.thresholds.shape[1] < 128:
        # Same float32 comparisons as Quantizer.level, channels kept on axis 1
        # (the int8 count holds up to 127 thresholds; more take the generic path).
        levels = _count_at_least(y, np.asarray(q.thresholds, np.float32)).astype(np.int16)
    else:
        levels = q.level(y, axis=1).astype(np.int16)
    return (np.int16(st.int_bias) + np.int16(st.int_scale) * levels).astype(np.int16)


def apply_threshold(layer: Threshold, acc: np.ndarray) -> np.ndarray:
    """Per-channel (axis 1) threshold activation of integer accumulators:
    out_bias + out_scale * #{k : sign[c] * acc >= t[c, k]}, as int8.

    The arithmetic is done in int8: ``analyze`` guarantees the outputs are in
    {-1, 0, +1} (so out_scale * count and the bias stay tiny).
    """
    v = acc.astype(np.int64, copy=False)
    if (layer.sign != 1).any():
        v = v * layer.sign.astype(np.int64).reshape((1, -1) + (1,) * (acc.ndim - 2))
    out = _count_at_least(v, layer.thresholds.astype(np.int64, copy=False))
    if layer.out_scale != 1:
        out *= np.int8(layer.out_scale)
    if layer.out_bias != 0:
        out += np.int8(layer.out_bias)
    return out


@dataclass
class Trace:
    """Every intermediate tensor of one inference (for debugging and compilers)."""

    input: np.ndarray
    outputs: list[np.ndarray]


def forward_int(net: Network, q: np.ndarray, trace: bool = False) -> np.ndarray | Trace:
    """Run the integer layers on an integer input batch; returns int64 logits."""
    infos = analyze(net)
    h: np.ndarray = q
    outs: list[np.ndarray] = []
    for layer, info in zip(net.layers, infos, strict=True):
        if isinstance(layer, Dense):
            h = int_matmul(h, layer.weight, info.acc_bound)
        elif isinstance(layer, Conv2d):
            h = conv2d_nchw(h, layer.weight, layer.stride, layer.pads, layer.pad_value,
                            info.acc_bound)
        elif isinstance(layer, MaxPool2d):
            h = maxpool_nchw(h, layer.kernel, layer.stride)
        elif isinstance(layer, Flatten):
            h = h.reshape(h.shape[0], -1)
        elif isinstance(layer, Threshold):
            h = apply_threshold(layer, h)
        h = np.ascontiguousarray(h)
        if trace:
            outs.append(h)
    logits = h.astype(np.int64)
    if trace:
        return Trace(q, outs)
    return logits


def infer(net: Network, x: np.ndarray) -> np.ndarray:
    """Float32 input batch (as the ONNX graph takes it) -> int64 logits."""
    check_inputs(net, x)
    out = forward_int(net, quantize_input(net, x))
    assert isinstance(out, np.ndarray)
    return out
