"""Reference BNN/TNN inference on the integer IR (numpy, whole batch at once).

This is the ground truth every other executor in cimgen is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BadInputError
from .floatops import apply_chain
from .ir import Conv2d, Dense, Flatten, MaxPool2d, Network, Threshold, analyze
from .kernels import im2col, int_matmul, maxpool_nchw, pad_nchw


def check_inputs(net: Network, x: np.ndarray, where: str = "inputs") -> None:
    """Reject inputs the ONNX graph would not take: dtype, rank, shape, NaN."""
    if not isinstance(x, np.ndarray):
        raise BadInputError("inputs are not a numpy array", where=where)
    if x.dtype != np.float32:
        raise BadInputError(f"dtype {x.dtype}, the graph input takes float32", where=where)
    want = tuple(net.input.shape)
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


def quantize_input(net: Network, x: np.ndarray) -> np.ndarray:
    """Float32 input -> integer input tensor (int16), exactly as a float32 executor."""
    st = net.input
    y = apply_chain(st.pre_ops, x, axis=1)
    levels = st.quantizer.level(y, axis=1)
    return (st.int_bias + st.int_scale * levels).astype(np.int16)


def apply_threshold(layer: Threshold, acc: np.ndarray) -> np.ndarray:
    """Per-channel (axis 1) threshold activation of integer accumulators."""
    v = np.moveaxis(acc.astype(np.int64), 1, -1) * layer.sign.astype(np.int64)
    cnt = (v[..., None] >= layer.thresholds).sum(axis=-1)
    return np.moveaxis(layer.out_bias + layer.out_scale * cnt, -1, 1).astype(np.int8)


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
            w = layer.weight
            o, _, kh, kw = w.shape
            xp = pad_nchw(h, layer.pads, layer.pad_value)
            cols = im2col(xp, kh, kw, layer.stride)
            n, oh, ow, k = cols.shape
            acc = int_matmul(cols.reshape(n * oh * ow, k), w.reshape(o, k), info.acc_bound)
            h = acc.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)
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
