"""Basis-form networks (BasisN): every weight segment is a combination of shared basis vectors.

A chip that holds a few global basis vectors b_j (binary {-1, +1} or ternary
{-1, 0, +1}, length R = the logical rows of one crossbar tile) never has to be
reprogrammed: each linear layer is rewritten as

    acc[o] = sum_s sum_j a[o, s, j] * (x_s . b_j)

where x_s is the s-th segment of the layer's input rows, in the compiler's data
memory order (rows [s*R, (s+1)*R); the last segment may be shorter and then
meets only the first rows of each basis vector), and a[o, s, j] are small
signed integers of ``coef_bits`` bits (two's complement range). One crossbar
read of x_s gives x_s . b_j for every basis column at once; the coefficients
are applied digitally. This is exact because the dot product is linear:
x_s . (sum_j a_j b_j) = sum_j a_j (x_s . b_j).

Row order (it must match ``cimgen.compiler``): activations live in data memory
channel-fastest (HWC), so a Dense layer after a Flatten of a C, H, W tensor
sees its IR columns permuted to HWC order, and a convolution's rows are the
patch elements in (ky, kx, c) order.

The accumulators of the basis form approximate the original ones divided by a
positive per-channel scale (recorded, never used at inference), so each
threshold is rescaled to the new integer accumulators; activations, pooling and
flattening are unchanged. The logits are the last layer's integer accumulators.

Two inference paths, deliberately independent:

* ``forward_basis``: reads (x_s . b_j) then the coefficient combination, in its
  own integer numpy code (im2col, pooling and thresholds included);
* ``forward_materialized``: W_eff = sum_j a_j b_j rebuilt as an ordinary
  integer weight tensor and run through the reference kernels
  (``golden_model.kernels``, ``golden_model.reference.apply_threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import BadInputError, MismatchError
from .ir import (
    Conv2d,
    Dense,
    Flatten,
    LayerInfo,
    MaxPool2d,
    Network,
    Threshold,
    analyze,
    layer_name,
)
from .kernels import conv2d_nchw, int_matmul, maxpool_nchw
from .reference import apply_threshold, check_inputs, quantize_input

BASIS_KINDS = ("binary", "ternary")
BASIS_VALUES = {"binary": (-1, 1), "ternary": (-1, 0, 1)}
# 2 bits is the narrowest two's complement width holding both signs ({-2..1});
# 8 keeps a coefficient one byte and the digital multiply-accumulate small
# (an 8-bit coefficient times a read of at most log2(R) + 1 bits).
COEF_BITS_MIN = 2
COEF_BITS_MAX = 8

_F64_EXACT = 2**53


def coef_range(bits: int) -> tuple[int, int]:
    """Two's complement range of a ``bits``-bit coefficient."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def check_coef_bits(bits: int, where: str = "coef_bits") -> None:
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or \
            not COEF_BITS_MIN <= int(bits) <= COEF_BITS_MAX:
        raise BadInputError(
            f"{bits!r} is outside the supported {COEF_BITS_MIN}..{COEF_BITS_MAX} bits: "
            f"{COEF_BITS_MIN} is the narrowest two's complement width with both signs, "
            f"{COEF_BITS_MAX} keeps a coefficient one byte for the digital "
            "multiply-accumulate", where=where)


def num_segments(rows: int, seg_len: int) -> int:
    return -(-rows // seg_len)


@dataclass(frozen=True, eq=False)
class Basis:
    """The shared basis: ``vectors[j]`` is basis vector b_j (one crossbar column)."""

    vectors: np.ndarray  # int8 [N, R]
    kind: str  # "binary" | "ternary"

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def length(self) -> int:
        return int(self.vectors.shape[1])


@dataclass(frozen=True, eq=False)
class BasisLinear:
    """A Dense or Conv2d in basis form.

    ``source`` is the original layer: its geometry (stride, pads, pad value,
    kernel size) is used as is; its weights are what the coefficients
    approximate and are never used by the basis-form inference.
    ``in_order[m]`` is the index, in the IR's flat input (Dense) or in the
    IR's (c, ky, kx) patch order (Conv2d), of DMEM-order row m.
    ``scale[o]`` records W[o] ~ scale[o] * W_eff[o] (fit metadata only).
    """

    source: Dense | Conv2d
    coefs: np.ndarray  # int8 [O, S, N]
    in_order: np.ndarray  # int64 [F]
    scale: np.ndarray  # float64 [O]

    @property
    def out_features(self) -> int:
        return int(self.coefs.shape[0])

    @property
    def rows(self) -> int:
        return int(self.in_order.size)

    @property
    def segments(self) -> int:
        return int(self.coefs.shape[1])

    @property
    def is_conv(self) -> bool:
        return isinstance(self.source, Conv2d)


BasisLayer = BasisLinear | MaxPool2d | Flatten | Threshold


@dataclass(frozen=True, eq=False)
class BasisNetwork:
    """The original network plus its basis form, layer for layer.

    ``layers[i]`` replaces ``original.layers[i]``: a ``BasisLinear`` for each
    Dense/Conv2d, a rescaled ``Threshold`` for each threshold, and the same
    MaxPool2d/Flatten objects otherwise, so a compiler can walk one list.
    """

    original: Network
    basis: Basis
    coef_bits: int
    layers: tuple[BasisLayer, ...]

    @property
    def linear(self) -> dict[int, BasisLinear]:
        return {i: ly for i, ly in enumerate(self.layers) if isinstance(ly, BasisLinear)}

    @property
    def seg_len(self) -> int:
        return self.basis.length


# ---------------------------------------------------------------- row orders
def hwc_order(shape: tuple[int, ...]) -> np.ndarray:
    """IR (C-major) flat index held by each position of a channel-fastest layout."""
    if len(shape) != 3:
        return np.arange(int(np.prod(shape)), dtype=np.int64)
    c, h, w = shape
    return np.arange(c * h * w, dtype=np.int64).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def conv_row_order(weight_shape: tuple[int, ...]) -> np.ndarray:
    """Index into a (c, ky, kx)-flattened kernel of each (ky, kx, c) row."""
    _, c, kh, kw = weight_shape
    return np.arange(c * kh * kw, dtype=np.int64).reshape(c, kh, kw).transpose(1, 2, 0).reshape(-1)


def row_orders(net: Network, infos: list[LayerInfo] | None = None) -> dict[int, np.ndarray]:
    """Per linear layer, the IR index of each DMEM-order weight row.

    The data memory order of a tensor is HWC for images and the identity for
    vectors; Flatten and Threshold keep the memory order of their input.
    """
    infos = infos if infos is not None else analyze(net)
    order = hwc_order(tuple(net.input.shape))
    out: dict[int, np.ndarray] = {}
    for i, (layer, info) in enumerate(zip(net.layers, infos, strict=True)):
        if isinstance(layer, Dense):
            out[i] = order
        elif isinstance(layer, Conv2d):
            out[i] = conv_row_order(tuple(layer.weight.shape))
        if not isinstance(layer, Flatten | Threshold):
            order = hwc_order(info.out_shape)
    return out


def dmem_matrix(layer: Dense | Conv2d, order: np.ndarray) -> np.ndarray:
    """The layer's weights as [O, F] with rows (the F axis) in DMEM order."""
    w = layer.weight
    return np.ascontiguousarray(w.reshape(w.shape[0], -1)[:, order])


def dmem_matrices(net: Network) -> dict[int, np.ndarray]:
    orders = row_orders(net)
    return {i: dmem_matrix(net.layers[i], o) for i, o in orders.items()}  # type: ignore[arg-type]


def segment_matrix(coefs: np.ndarray, basis: np.ndarray, rows: int) -> np.ndarray:
    """W_eff in DMEM order, [O, rows]: segment s is sum_j coefs[o, s, j] * b_j (prefix)."""
    o, s, _ = coefs.shape
    full = np.einsum("osn,nr->osr", coefs.astype(np.int64), basis.astype(np.int64))
    return full.reshape(o, s * basis.shape[1])[:, :rows]


def materialize(layer: BasisLinear, basis: Basis) -> np.ndarray:
    """The integer weight tensor of the basis form, in the IR layout of ``source``."""
    wm = segment_matrix(layer.coefs, basis.vectors, layer.rows)
    flat = np.empty_like(wm)
    flat[:, layer.in_order] = wm
    return flat.reshape(layer.source.weight.shape)


# ---------------------------------------------------------------- validation
def read_bounds(layer: BasisLinear, basis: Basis, x_max: int) -> tuple[int, int]:
    """Bounds of |x_s . b_j| over all segments and of |acc| over all outputs."""
    nnz = (basis.vectors != 0).astype(np.int64)
    r = basis.length
    lens = np.minimum(r, layer.rows - r * np.arange(layer.segments))
    # Nonzeros of each basis prefix a segment meets: [S, N].
    prefix = np.cumsum(nnz, axis=1)[:, lens - 1].T
    read = int(prefix.max(initial=0)) * x_max
    acc = int((np.abs(layer.coefs.astype(np.int64)) * prefix[None]).sum(axis=(1, 2))
              .max(initial=0)) * x_max
    return read, acc


def check_basis_network(bn: BasisNetwork, where: str = "basis form") -> list[LayerInfo]:
    """Validate the basis form against its original network; returns the original's infos."""
    net = bn.original
    infos = analyze(net)
    b = bn.basis
    v = b.vectors
    if b.kind not in BASIS_KINDS:
        raise BadInputError(f"basis kind '{b.kind}' is not one of {', '.join(BASIS_KINDS)}",
                            where=where)
    if not isinstance(v, np.ndarray) or v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1 \
            or v.dtype.kind not in "iu":
        raise BadInputError(f"basis must be a non-empty integer [N, R] array, got "
                            f"{getattr(v, 'dtype', type(v))} {getattr(v, 'shape', '')}",
                            where=where)
    bad = sorted({int(t) for t in np.unique(v)} - set(BASIS_VALUES[b.kind]))
    if bad:
        raise BadInputError(f"{b.kind} basis holds value(s) {bad}", where=where)
    check_coef_bits(bn.coef_bits, where=f"{where}: coef_bits")
    lo, hi = coef_range(bn.coef_bits)
    if len(bn.layers) != len(net.layers):
        raise BadInputError(f"{len(bn.layers)} layers, the original network has "
                            f"{len(net.layers)}", where=where)
    orders = row_orders(net, infos)
    for i, (orig, layer, info) in enumerate(zip(net.layers, bn.layers, infos, strict=True)):
        here = f"{where}: {layer_name(i, orig)}"
        if isinstance(orig, Dense | Conv2d):
            if not isinstance(layer, BasisLinear) or layer.source is not orig:
                raise BadInputError("a linear layer must be a BasisLinear of the original",
                                    where=here)
            c = layer.coefs
            rows = int(np.prod(orig.weight.shape[1:]))
            want = (int(orig.weight.shape[0]), num_segments(rows, b.length), b.count)
            if c.dtype.kind not in "iu" or c.shape != want:
                raise BadInputError(f"coefficients {c.dtype} {tuple(c.shape)}, expected an "
                                    f"integer array {want} (outputs, segments of "
                                    f"{b.length} rows, basis vectors)", where=here)
            if c.size and (int(c.min()) < lo or int(c.max()) > hi):
                raise BadInputError(f"coefficients span [{int(c.min())}, {int(c.max())}], "
                                    f"outside the {bn.coef_bits}-bit range [{lo}, {hi}]",
                                    where=here)
            if not np.array_equal(layer.in_order, orders[i]):
                raise BadInputError("row order differs from the network's DMEM order",
                                    where=here)
            if layer.scale.shape != (want[0],) or not np.all(np.isfinite(layer.scale)) or \
                    not np.all(layer.scale > 0):
                raise BadInputError(f"scale must be {want[0]} positive finite values",
                                    where=here)
            assert info.in_values is not None
            _, acc = read_bounds(layer, b, info.in_values.max_abs)
            if acc >= _F64_EXACT:
                raise BadInputError(f"accumulator bound {acc} exceeds 2**53", where=here)
        elif isinstance(orig, Threshold):
            if not isinstance(layer, Threshold):
                raise BadInputError("expected a threshold layer", where=here)
            t = layer.thresholds
            if t.shape != orig.thresholds.shape or t.dtype.kind not in "iu":
                raise BadInputError(f"thresholds {t.dtype} {tuple(t.shape)}, the original has "
                                    f"{tuple(orig.thresholds.shape)}", where=here)
            if not (np.array_equal(layer.sign, orig.sign) and
                    layer.out_scale == orig.out_scale and layer.out_bias == orig.out_bias):
                raise BadInputError("sign, out_scale and out_bias must be the original's "
                                    "(only the thresholds are rescaled)", where=here)
        elif layer is not orig:
            raise BadInputError(f"expected the original {type(orig).__name__} layer",
                                where=here)
    return infos


# ------------------------------------------------- path 1: reads, then combination
def _exact_matmul(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """a @ b for integer arrays, exact: float64 BLAS when every partial sum is
    an integer below 2**53 (``bound``), else int64."""
    if bound < _F64_EXACT:
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def im2col_dmem(x: np.ndarray, conv: Conv2d) -> tuple[np.ndarray, int, int]:
    """im2col of NCHW ``x`` with rows in (ky, kx, c) order: [N*OH*OW, KH*KW*C]."""
    n, c, h, w = x.shape
    kh, kw = conv.weight.shape[2:]
    t, left, b, r = conv.pads
    xp = np.full((n, c, h + t + b, w + left + r), conv.pad_value, np.int64)
    xp[:, :, t:t + h, left:left + w] = x
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::conv.stride[0],
                                                          ::conv.stride[1]]
    oh, ow = win.shape[2], win.shape[3]
    # win: [N, C, OH, OW, KH, KW] -> [N, OH, OW, KH, KW, C]
    cols = win.transpose(0, 2, 3, 4, 5, 1).reshape(n * oh * ow, kh * kw * c)
    return cols, oh, ow


def basis_reads(rows_mem: np.ndarray, basis: Basis, x_max: int, *, as_float: bool = False
                ) -> np.ndarray:
    """What the crossbar reads: [P, F] inputs (DMEM order) -> [P, S, N] values x_s . b_j.

    Exact: every read is an integer of magnitude <= R * x_max, far below 2**53,
    so float64 BLAS sums it exactly (checked). ``as_float`` returns the same
    integers as float64 (for fine-tuning, which multiplies them further).
    """
    p, f = rows_mem.shape
    r = basis.length
    s = num_segments(f, r)
    if r * x_max >= _F64_EXACT:  # pragma: no cover - R <= 1024 and |x| <= 255
        raise BadInputError(f"read bound {r * x_max} exceeds 2**53", where="basis reads")
    seg = np.zeros((p, s * r), np.float64)
    seg[:, :f] = rows_mem
    reads = (seg.reshape(p * s, r) @ basis.vectors.T.astype(np.float64)).reshape(
        p, s, basis.count)
    return reads if as_float else reads.astype(np.int64)


def _combine(reads: np.ndarray, coefs: np.ndarray, bound: int) -> np.ndarray:
    p, s, n = reads.shape
    return _exact_matmul(reads.reshape(p, s * n), coefs.reshape(coefs.shape[0], s * n).T, bound)


def maxpool(x: np.ndarray, pool: MaxPool2d) -> np.ndarray:
    win = sliding_window_view(x, pool.kernel, axis=(2, 3))[:, :, ::pool.stride[0],
                                                          ::pool.stride[1]]
    return win.max(axis=(4, 5))


def threshold_counts(x: np.ndarray, th: Threshold) -> np.ndarray:
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    v = x.astype(np.int64) * th.sign.astype(np.int64).reshape(bshape)
    t = th.thresholds.astype(np.int64)
    count = np.zeros(x.shape, np.int64)
    for k in range(t.shape[1]):
        count += v >= t[:, k].reshape(bshape)
    return th.out_bias + th.out_scale * count


def forward_basis(bn: BasisNetwork, q: np.ndarray, *, trace: bool = False
                  ) -> np.ndarray | list[np.ndarray]:
    """Integer input batch -> int64 logits through per-segment basis reads.

    With ``trace`` it returns every layer's output instead (the accumulators of
    a linear layer, pooled values, activations), which fine-tuning and
    debugging use.
    """
    infos = check_basis_network(bn)
    h = q.astype(np.int64)
    outs: list[np.ndarray] = []
    for layer, info in zip(bn.layers, infos, strict=True):
        if isinstance(layer, BasisLinear):
            assert info.in_values is not None
            x_max = info.in_values.max_abs
            _, bound = read_bounds(layer, bn.basis, x_max)
            if layer.is_conv:
                assert isinstance(layer.source, Conv2d)
                cols, oh, ow = im2col_dmem(h, layer.source)
                acc = _combine(basis_reads(cols, bn.basis, x_max), layer.coefs, bound)
                n = h.shape[0]
                h = acc.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
            else:
                rows = h.reshape(h.shape[0], -1)[:, layer.in_order]
                h = _combine(basis_reads(rows, bn.basis, x_max), layer.coefs, bound)
        elif isinstance(layer, MaxPool2d):
            h = maxpool(h, layer)
        elif isinstance(layer, Flatten):
            h = h.reshape(h.shape[0], -1)
        else:
            h = threshold_counts(h, layer)
        h = np.ascontiguousarray(h, dtype=np.int64)
        if trace:
            outs.append(h)
    return outs if trace else h


# ------------------------------------------------- path 2: materialized W_eff
def forward_materialized(bn: BasisNetwork, q: np.ndarray) -> np.ndarray:
    """Integer input batch -> int64 logits with W_eff = sum_j a_j b_j as plain
    integer weights, through the reference kernels."""
    infos = check_basis_network(bn)
    h: np.ndarray = q
    for layer, info in zip(bn.layers, infos, strict=True):
        if isinstance(layer, BasisLinear):
            w = materialize(layer, bn.basis)
            assert info.in_values is not None
            bound = int(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max()) * \
                info.in_values.max_abs
            src = layer.source
            if isinstance(src, Conv2d):
                h = conv2d_nchw(h, w, src.stride, src.pads, src.pad_value, bound)
            else:
                h = int_matmul(h, w, bound)
        elif isinstance(layer, MaxPool2d):
            h = maxpool_nchw(h, layer.kernel, layer.stride)
        elif isinstance(layer, Flatten):
            h = h.reshape(h.shape[0], -1)
        else:
            h = apply_threshold(layer, h)
        h = np.ascontiguousarray(h)
    return h.astype(np.int64)


def check_paths_agree(bn: BasisNetwork, q: np.ndarray) -> np.ndarray:
    """Run both paths; raise ``MismatchError`` on any differing logit; returns the logits."""
    a = forward_basis(bn, q)
    assert isinstance(a, np.ndarray)
    b = forward_materialized(bn, q)
    if a.shape != b.shape or not np.array_equal(a, b):
        bad = np.argwhere(a != b) if a.shape == b.shape else np.zeros((1, 2), int)
        i, o = (int(t) for t in bad[0])
        raise MismatchError(f"basis reads and materialized weights differ at image {i} "
                            f"output {o}: {int(a[i, o])} vs {int(b[i, o])}",
                            where=bn.original.name)
    return a


def infer_basis(bn: BasisNetwork, x: np.ndarray) -> np.ndarray:
    """Float32 inputs (as the ONNX graph takes them) -> int64 logits of the basis form."""
    check_inputs(bn.original, x)
    out = forward_basis(bn, quantize_input(bn.original, x))
    assert isinstance(out, np.ndarray)
    return out
