"""Integer IR -> ONNX: a QONNX graph and a plain-ONNX float graph.

The QONNX export uses the custom ops a Brevitas/FINN flow would (weights
behind BipolarQuant or ternary IntQuant, activations as MultiThreshold), so
it round-trips through ``cimgen.frontend.onnx_import`` and runs on qonnx's executor.
The plain export uses only standard ONNX ops (thresholds as GreaterOrEqual
counts, explicit Pad nodes for non-zero padding) so that onnxruntime can run
the same integer network in float32, exactly.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from golden_model.floatops import ElementwiseOp, Quantizer
from golden_model.ir import (
    Add,
    Concat,
    Conv2d,
    Dense,
    Flatten,
    MaxPool2d,
    Network,
    Tap,
    Threshold,
    analyze,
)

QONNX_DOMAIN = "qonnx.custom_op.general"
OPSET = 17


class _Builder:
    def __init__(self, net: Network, qonnx: bool) -> None:
        self.net = net
        self.qonnx = qonnx
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def fresh(self, stem: str) -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def const(self, stem: str, arr: np.ndarray) -> str:
        name = self.fresh(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, domain: str = "",
             **attrs: object) -> str:
        out = self.fresh(stem)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.fresh(op), domain=domain,
                                           **attrs))
        return out

    @staticmethod
    def channel_shape(c: np.ndarray, rank: int) -> np.ndarray:
        """Per-channel vector -> broadcastable against [N, C, ...] of ``rank`` dims."""
        c = np.asarray(c, np.float32).reshape(-1)
        if c.size == 1:
            return c
        return c.reshape([c.size] + [1] * (rank - 2))

    # ----------------------------------------------------------------- ops
    def elementwise(self, x: str, op: ElementwiseOp, rank: int) -> str:
        if op.kind == "bn":
            assert op.bn is not None
            c = max(np.asarray(p).size for p in op.bn)
            names = [self.const("bn", np.broadcast_to(np.asarray(p, np.float32).reshape(-1),
                                                      (c,)).copy()) for p in op.bn]
            return self.node("BatchNormalization", [x, *names], "bn", epsilon=op.eps)
        k = self.const("k", self.channel_shape(op.const, rank))
        if op.kind == "rsub":
            return self.node("Sub", [k, x], "rsub")
        return self.node(op.kind.capitalize(), [x, k], op.kind)

    def count_ge(self, x: str, t: np.ndarray, rank: int) -> str:
        """Plain ONNX: number of thresholds t[c, :] that x reaches, as float."""
        terms = []
        for k in range(t.shape[1]):
            tk = self.const("t", self.channel_shape(t[:, k], rank))
            ge = self.node("GreaterOrEqual", [x, tk], "ge")
            terms.append(self.node("Cast", [ge], "cnt", to=TensorProto.FLOAT))
        return terms[0] if len(terms) == 1 else self.node("Sum", terms, "count")

    def affine(self, x: str, scale: float, bias: float) -> str:
        if scale != 1:
            x = self.node("Mul", [x, self.const("s", np.float32([scale]))], "mul")
        if bias != 0:
            x = self.node("Add", [x, self.const("b", np.float32([bias]))], "add")
        return x

    def input_quant(self, x: str, q: Quantizer, rank: int) -> str:
        st = self.net.input
        if self.qonnx:
            if q.kind == "sign":
                return self.node("Sign", [x], "sign")
            if q.kind == "bipolar":
                return self.node("BipolarQuant", [x, self.const("s", self.channel_shape(
                    q.scale, rank))], "bq", domain=QONNX_DOMAIN)
            if q.kind == "intquant":
                return self.node("IntQuant", [
                    x, self.const("s", self.channel_shape(q.scale, rank)),
                    self.const("z", self.channel_shape(q.zeropt, rank)),
                    self.const("bw", np.float32(q.bits))], "iq", domain=QONNX_DOMAIN,
                    signed=int(q.signed), narrow=int(q.narrow), rounding_mode=q.rounding)
            assert q.thresholds is not None
            return self.node("MultiThreshold", [x, self.const("t", q.thresholds)], "mt",
                             domain=QONNX_DOMAIN, out_scale=float(q.out_scale),
                             out_bias=float(q.out_bias), out_dtype="FLOAT32",
                             data_layout="NCHW" if rank > 2 else "NC")
        # plain ONNX: compute the level index, then the IR's integer value.
        if q.kind in ("sign", "bipolar") or (q.kind == "intquant" and q.bits == 1 and q.signed):
            if q.kind == "intquant":
                x = self.node("Div", [x, self.const("s", self.channel_shape(q.scale, rank))], "d")
                x = self.node("Add", [x, self.const("z", self.channel_shape(q.zeropt, rank))], "a")
            lvl = self.count_ge(x, np.zeros((1, 1), np.float32), rank)
            if q.kind == "sign":
                gt = self.node("Greater", [x, self.const("zero", np.float32([0]))], "gt")
                lvl = self.node("Add", [lvl, self.node("Cast", [gt], "c", to=TensorProto.FLOAT)],
                                "lvl")
        elif q.kind == "multithreshold":
            assert q.thresholds is not None
            lvl = self.count_ge(x, q.thresholds, rank)
        else:
            lo, hi = q.int_range()
            rnd = {"ROUND": "Round", "HALF_EVEN": "Round", "FLOOR": "Floor", "CEIL": "Ceil"}
            if q.rounding.upper() not in rnd:
                raise ValueError(f"rounding mode {q.rounding} has no plain-ONNX equivalent")
            x = self.node("Div", [x, self.const("s", self.channel_shape(q.scale, rank))], "d")
            x = self.node("Add", [x, self.const("z", self.channel_shape(q.zeropt, rank))], "a")
            x = self.node("Clip", [x, self.const("lo", np.float32(lo)),
                                   self.const("hi", np.float32(hi))], "clip")
            x = self.node(rnd[q.rounding.upper()], [x], "round")
            lvl = self.affine(x, 1.0, float(-lo))
        return self.affine(lvl, float(st.int_scale), float(st.int_bias))

    def weight(self, w: np.ndarray, layout: np.ndarray) -> str:
        """Float weight initializer, behind a weight quantizer in QONNX."""
        f = self.const("w", np.ascontiguousarray(layout.astype(np.float32)))
        if not self.qonnx:
            return f
        one = self.const("one", np.float32([1.0]))
        if np.isin(w, (-1, 1)).all():
            return self.node("BipolarQuant", [f, one], "wq", domain=QONNX_DOMAIN)
        return self.node("IntQuant", [f, one, self.const("z", np.float32([0.0])),
                                      self.const("bw", np.float32(2))], "wq",
                         domain=QONNX_DOMAIN, signed=1, narrow=1, rounding_mode="ROUND")

    def threshold(self, x: str, layer: Threshold, rank: int) -> str:
        if (layer.sign < 0).any():
            x = self.node("Mul", [x, self.const("sgn", self.channel_shape(
                layer.sign.astype(np.float32), rank))], "flip")
        t = layer.thresholds.astype(np.float32)
        if self.qonnx:
            dt = "BIPOLAR" if set(layer.values.values) == {-1, 1} else "FLOAT32"
            return self.node("MultiThreshold", [x, self.const("t", t)], "act",
                             domain=QONNX_DOMAIN, out_scale=float(layer.out_scale),
                             out_bias=float(layer.out_bias), out_dtype=dt,
                             data_layout="NCHW" if rank > 2 else "NC")
        return self.affine(self.count_ge(x, t, rank), float(layer.out_scale),
                           float(layer.out_bias))

    def input_layout(self, x: str) -> str:
        """The graph input as the model takes it -> the IR's input shape."""
        st = self.net.input
        if st.source_shape is None:
            return x
        n = int(np.prod(st.shape))
        if st.source_index is not None:
            x = self.node("Reshape", [x, self.const("flat", np.int64([-1, n]))], "flat")
            x = self.node("Gather", [x, self.const("idx", np.asarray(st.source_index, np.int64))],
                          "gather", axis=1)
        return self.node("Reshape", [x, self.const("shape", np.int64([-1, *st.shape]))],
                         "layout")

    def add(self, names: list[str], layer: Add, rank: int) -> str:
        terms = []
        for name, k in zip(names, layer.factors, strict=True):
            terms.append(name if k == 1 else self.node(
                "Mul", [name, self.const("k", np.float32([k]))], "scaled"))
        return self.node("Sum", terms, "sum")

    def build(self) -> onnx.ModelProto:
        net = self.net
        infos = analyze(net)
        rank = len(net.input.shape) + 1
        x = self.input_layout(net.input_name)
        for op in net.input.pre_ops:
            x = self.elementwise(x, op, rank)
        x = self.input_quant(x, net.input.quantizer, rank)
        outs: dict[int, str] = {-1: x}
        for i, (layer, info) in enumerate(zip(net.layers, infos, strict=True)):
            rank = len(info.in_shape) + 1
            x = outs[info.sources[0]]
            if isinstance(layer, Tap):
                pass
            elif isinstance(layer, Add):
                x = self.add([outs[j] for j in layer.inputs], layer, rank)
            elif isinstance(layer, Concat):
                x = self.node("Concat", [outs[j] for j in layer.inputs], "cat", axis=1)
            elif isinstance(layer, Dense):
                x = self.node("MatMul", [x, self.weight(layer.weight, layer.weight.T)], "mm")
            elif isinstance(layer, Conv2d):
                pads = list(layer.pads)
                if layer.pad_value != 0 and any(pads):
                    p = self.const("pads", np.int64([0, 0, pads[0], pads[1], 0, 0, pads[2],
                                                     pads[3]]))
                    v = self.const("pv", np.float32(layer.pad_value))
                    x = self.node("Pad", [x, p, v], "pad", mode="constant")
                    pads = [0, 0, 0, 0]
                w = self.weight(layer.weight, layer.weight)
                x = self.node("Conv", [x, w], "conv", pads=pads, strides=list(layer.stride),
                              kernel_shape=list(layer.weight.shape[2:]))
            elif isinstance(layer, MaxPool2d):
                x = self.node("MaxPool", [x], "pool", kernel_shape=list(layer.kernel),
                              strides=list(layer.stride))
            elif isinstance(layer, Flatten):
                x = self.node("Flatten", [x], "flat", axis=1)
            elif isinstance(layer, Threshold):
                x = self.threshold(x, layer, rank)
            outs[i] = x
        for op in net.output_ops:
            x = self.elementwise(x, op, 2)
        if not self.nodes or self.nodes[-1].output[0] != x:
            x = self.node("Identity", [x], "out")  # the output is an earlier tensor (a Tap)
        # Rename the last tensor to the network's output name.
        self.nodes[-1].output[0] = net.output_name
        out_shape = list(infos[-1].out_shape)
        graph = helper.make_graph(
            self.nodes, net.name,
            [helper.make_tensor_value_info(net.input_name, TensorProto.FLOAT,
                                           ["batch", *net.input.graph_shape])],
            [helper.make_tensor_value_info(net.output_name, TensorProto.FLOAT,
                                           ["batch", *out_shape])],
            self.inits)
        opsets = [helper.make_opsetid("", OPSET)]
        if self.qonnx:
            opsets.append(helper.make_opsetid(QONNX_DOMAIN, 1))
        model = helper.make_model(graph, opset_imports=opsets, producer_name="cimgen")
        model.ir_version = 8
        for k, v in sorted(net.metadata.items()):
            model.metadata_props.add(key=k, value=v)
        return model


def to_qonnx(net: Network) -> onnx.ModelProto:
    return _Builder(net, qonnx=True).build()


def to_plain_onnx(net: Network) -> onnx.ModelProto:
    return _Builder(net, qonnx=False).build()
