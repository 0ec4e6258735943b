"""Reference BNN/TNN inference on the integer IR (numpy, whole batch at once).

This is the ground truth every other executor in cimgen is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BadInputError
from .floatops import apply_chain
from .ir import (
    Add,
    Concat,
    Conv2d,
    Dense,
    Flatten,
    InputStage,
    MaxPool2d,
    Network,
    Tap,
    Threshold,
    analyze,
)
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
    want = stage.graph_shape
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


def to_ir_layout(st: InputStage, x: np.ndarray) -> np.ndarray:
    """The graph input [N, *graph_shape] rearranged to the IR's [N, *shape]."""
    if st.source_shape is None:
        return x
    flat = x.reshape(x.shape[0], -1)
    if st.source_index is not None:
        flat = flat[:, np.asarray(st.source_index, np.int64)]
    return np.ascontiguousarray(flat).reshape(x.shape[0], *st.shape)


def quantize_input(net: Network, x: np.ndarray) -> np.ndarray:
    """Float32 input -> integer input tensor (int16), exactly as a float32 executor."""
    return quantize_stage(net.input, x)


def quantize_stage(st: InputStage, x: np.ndarray) -> np.ndarray:
    """``quantize_input`` for an input stage."""
    q = st.quantizer
    # Layout first: the pre-ops and the quantizer are elementwise, so moving
    # values around before them changes no float result.
    y = apply_chain(st.pre_ops, to_ir_layout(st, x), axis=1)
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


def _last_reads(sources: list[tuple[int, ...]]) -> dict[int, int]:
    """For each output (-1 = input), the index of the last layer that reads it."""
    last: dict[int, int] = {}
    for i, srcs in enumerate(sources):
        for j in srcs:
            last[j] = i
    return last


def forward_int(net: Network, q: np.ndarray, trace: bool = False) -> np.ndarray | Trace:
    """Run the integer layers on an integer input batch; returns int64 logits."""
    infos = analyze(net)
    last_read = _last_reads([info.sources for info in infos])
    live: dict[int, np.ndarray] = {-1: q}
    outs: list[np.ndarray] = []
    h: np.ndarray = q
    for i, (layer, info) in enumerate(zip(net.layers, infos, strict=True)):
        x = live[info.sources[0]]
        if isinstance(layer, Dense):
            h = int_matmul(x, layer.weight, info.acc_bound)
        elif isinstance(layer, Conv2d):
            h = conv2d_nchw(x, layer.weight, layer.stride, layer.pads, layer.pad_value,
                            info.acc_bound)
        elif isinstance(layer, MaxPool2d):
            h = maxpool_nchw(x, layer.kernel, layer.stride)
        elif isinstance(layer, Flatten):
            h = x.reshape(x.shape[0], -1)
        elif isinstance(layer, Threshold):
            h = apply_threshold(layer, x)
        elif isinstance(layer, Tap):
            h = x
        elif isinstance(layer, Add):
            # |sum| <= acc_bound, far below int32's range (analyze bounds every operand).
            h = np.zeros(x.shape, np.int32)
            for j, k in zip(layer.inputs, layer.factors, strict=True):
                h += np.int32(k) * live[j].astype(np.int32)
        elif isinstance(layer, Concat):
            h = np.concatenate([live[j] for j in layer.inputs], axis=1)
        h = np.ascontiguousarray(h)
        # Drop tensors no later layer reads (a residual net keeps only its shortcuts).
        for j in set(info.sources):
            if last_read.get(j) == i and not trace:
                live.pop(j, None)
        live[i] = h
        if trace:
            outs.append(h)
    logits = h.astype(np.int64)
    if trace:
        return Trace(q, outs)
    return logits


def scores(net: Network, logits: np.ndarray) -> np.ndarray:
    """The host-side float32 scores: the graph's output ops applied to the integer
    logits (the logits themselves, as float32, when there are none)."""
    return apply_chain(net.output_ops, np.asarray(logits).astype(np.float32), axis=1)


def predict(net: Network, logits: np.ndarray) -> np.ndarray:
    """Predicted classes: argmax of the host-side scores (first maximum on ties)."""
    if not net.output_ops:
        return np.asarray(logits).argmax(axis=1)
    return scores(net, logits).argmax(axis=1)


def infer(net: Network, x: np.ndarray) -> np.ndarray:
    """Float32 input batch (as the ONNX graph takes it) -> int64 logits."""
    check_inputs(net, x)
    out = forward_int(net, quantize_input(net, x))
    assert isinstance(out, np.ndarray)
    return out
