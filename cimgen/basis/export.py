"""Basis-form network -> plain ONNX (standard ops only), for onnxruntime cross-checks.

Graph, per linear layer, the way the chip computes it:

* one shared initializer ``basis`` (int8 [R, N], cast to float once) with a
  zero row appended: row R is what rows outside a segment meet;
* the layer's view of the basis is a ``Gather`` of basis rows by a constant
  index map (segment s, IR input index i -> DMEM row within segment s, or R
  when i is in another segment): [S, F, N]. It reorders rows from DMEM order
  to the IR order the graph's tensors use, so no activation is permuted;
* the reads: ``MatMul`` of the input with that view ([F, S*N]), or a ``Conv``
  with S*N kernels shaped [C, KH, KW] (an explicit ``Pad`` first for a
  non-zero pad value) -- x_s . b_j for every segment and basis vector;
* the coefficient combination: ``MatMul`` with the int8 coefficients cast to
  float ([S*N, O]), or a 1x1 ``Conv`` for a convolution.

Thresholds are GreaterOrEqual counts (as in the plain export of the original
network). Everything is float32: exact because every value is an integer
below 2**24, which ``export_model`` checks. The original graph's output ops
(a positive logit scale, for instance) are not applied: the outputs are the
basis form's integer logits.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from golden_model.basis import BasisLinear, BasisNetwork, check_basis_network, read_bounds
from golden_model.errors import BadInputError
from golden_model.ir import Conv2d, Flatten, MaxPool2d, Threshold, layer_name

from ..frontend.onnx_export import OPSET, _Builder

_F32_EXACT = 2**24


def gather_index(layer: BasisLinear, seg_len: int) -> np.ndarray:
    """[S, F] int64: for IR row i, its row within segment s, or ``seg_len`` (the zero row)."""
    f = layer.rows
    pos = np.empty(f, np.int64)
    pos[layer.in_order] = np.arange(f)  # DMEM row of each IR row
    s = np.arange(layer.segments)[:, None]
    within = pos[None, :] - s * seg_len
    return np.where((within >= 0) & (within < seg_len), within, seg_len).astype(np.int64)


def exact_in_float32(bn: BasisNetwork) -> None:
    infos = check_basis_network(bn)
    for i, (ly, info) in enumerate(zip(bn.layers, infos, strict=True)):
        where = layer_name(i, bn.original.layers[i])
        if isinstance(ly, BasisLinear):
            assert info.in_values is not None
            read, acc = read_bounds(ly, bn.basis, info.in_values.max_abs)
            if max(read, acc) >= _F32_EXACT:
                raise BadInputError(f"accumulator bound {max(read, acc)} is not below 2**24: a "
                                    "float32 ONNX graph would not be exact", where=where)
        elif isinstance(ly, Threshold) and ly.thresholds.size and \
                int(np.abs(ly.thresholds).max()) >= _F32_EXACT:
            raise BadInputError("thresholds not below 2**24 in magnitude", where=where)


def export_model(bn: BasisNetwork) -> onnx.ModelProto:
    exact_in_float32(bn)
    net = bn.original
    infos = check_basis_network(bn)
    b = _Builder(net, qonnx=False)
    rank = len(net.input.shape) + 1
    x = net.input_name
    for op in net.input.pre_ops:
        x = b.elementwise(x, op, rank)
    x = b.input_quant(x, net.input.quantizer, rank)
    r, n = bn.basis.length, bn.basis.count
    b.inits.append(onnx.numpy_helper.from_array(
        np.ascontiguousarray(bn.basis.vectors.T.astype(np.int8)), "basis"))
    basis_f = b.node("Cast", ["basis"], "basis_f", to=TensorProto.FLOAT)
    basis_z = b.node("Concat", [basis_f, b.const("zero_row", np.zeros((1, n), np.float32))],
                     "basis_padded", axis=0)
    for i, (layer, info) in enumerate(zip(bn.layers, infos, strict=True)):
        rank = len(info.in_shape) + 1
        if isinstance(layer, BasisLinear):
            x = _linear(b, x, layer, basis_z, r, n, i)
        elif isinstance(layer, MaxPool2d):
            x = b.node("MaxPool", [x], "pool", kernel_shape=list(layer.kernel),
                       strides=list(layer.stride))
        elif isinstance(layer, Flatten):
            x = b.node("Flatten", [x], "flat", axis=1)
        else:
            x = b.threshold(x, layer, rank)
    b.nodes[-1].output[0] = net.output_name
    graph = helper.make_graph(
        b.nodes, f"{net.name}_basis",
        [helper.make_tensor_value_info(net.input_name, TensorProto.FLOAT,
                                       ["batch", *net.input.shape])],
        [helper.make_tensor_value_info(net.output_name, TensorProto.FLOAT,
                                       ["batch", *infos[-1].out_shape])],
        b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cimgen-basis")
    model.ir_version = 8
    meta = {"basis_count": str(n), "basis_kind": bn.basis.kind, "seg_len": str(r),
            "coef_bits": str(bn.coef_bits)}
    for k, v in sorted(meta.items()):
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    return model


def _linear(b: _Builder, x: str, layer: BasisLinear, basis_z: str, r: int, n: int, i: int
            ) -> str:
    s, o = layer.segments, layer.out_features
    idx = b.const(f"idx{i}", gather_index(layer, r))
    view = b.node("Gather", [basis_z, idx], f"view{i}", axis=0)  # [S, F, N]
    coefs = b.fresh(f"coefs{i}")
    b.inits.append(onnx.numpy_helper.from_array(np.ascontiguousarray(
        layer.coefs.astype(np.int8)), coefs))  # [O, S, N]
    cf = b.node("Cast", [coefs], f"coefs{i}_f", to=TensorProto.FLOAT)
    src = layer.source
    if isinstance(src, Conv2d):
        _, c, kh, kw = src.weight.shape
        k = b.node("Transpose", [view], f"view{i}_t", perm=[0, 2, 1])  # [S, N, F]
        k = b.node("Reshape", [k, b.const("shape", np.int64([s * n, c, kh, kw]))],
                   f"basis_kernels{i}")
        pads = list(src.pads)
        if src.pad_value != 0 and any(pads):
            p = b.const("pads", np.int64([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]))
            x = b.node("Pad", [x, p, b.const("pv", np.float32(src.pad_value))], "pad",
                       mode="constant")
            pads = [0, 0, 0, 0]
        reads = b.node("Conv", [x, k], f"reads{i}", pads=pads, strides=list(src.stride),
                       kernel_shape=[kh, kw])  # [B, S*N, OH, OW]
        w = b.node("Reshape", [cf, b.const("shape", np.int64([o, s * n, 1, 1]))], f"comb{i}")
        return b.node("Conv", [reads, w], f"acc{i}", kernel_shape=[1, 1])
    e = b.node("Transpose", [view], f"view{i}_t", perm=[1, 0, 2])  # [F, S, N]
    e = b.node("Reshape", [e, b.const("shape", np.int64([layer.rows, s * n]))], f"basis_rows{i}")
    reads = b.node("MatMul", [x, e], f"reads{i}")  # [B, S*N]
    w = b.node("Reshape", [cf, b.const("shape", np.int64([o, s * n]))], f"comb{i}")
    w = b.node("Transpose", [w], f"comb{i}_t", perm=[1, 0])
    return b.node("MatMul", [reads, w], f"acc{i}")
