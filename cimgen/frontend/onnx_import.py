"""ONNX (QONNX, Brevitas-style, plain float) -> integer IR.

The importer walks the graph as one straight line from the input to the
output. Constant sub-graphs (weights behind BipolarQuant / IntQuant /
Transpose) are evaluated first. Between two quantizers it expects exactly
one linear node (MatMul, Gemm, Conv) followed by a chain of per-channel
monotone float ops (bias, Mul, Div, BatchNormalization, MaxPool), which
``cimgen.frontend.fold`` turns into integer thresholds. Anything else is rejected
with a message naming the file and node.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from golden_model.errors import BadInputError
from golden_model.floatops import ROUNDERS, ElementwiseOp, Quantizer, chain_direction
from golden_model.ir import (
    Conv2d,
    Dense,
    Flatten,
    InputStage,
    Layer,
    MaxPool2d,
    Network,
    Threshold,
    ValueSet,
    analyze,
    conv_out_hw,
)

from .fold import fold_thresholds

QONNX_DOMAINS = frozenset({
    "qonnx.custom_op.general", "finn", "finn.custom_op.general", "onnx.brevitas",
})
QUANT_OPS = frozenset({"BipolarQuant", "Quant", "IntQuant", "MultiThreshold"})
ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div"})
PASS_THROUGH = frozenset({"Identity", "Dropout"})


def load_onnx(path: str | os.PathLike[str]) -> onnx.ModelProto:
    p = os.fspath(path)
    if not os.path.exists(p):
        raise BadInputError("no such file", where=p)
    if os.path.isdir(p):
        raise BadInputError("is a directory, expected an ONNX file", where=p)
    try:
        with open(p, "rb") as f:
            data = f.read()
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise BadInputError(f"not a valid ONNX protobuf (truncated or corrupt?): "
                            f"{type(e).__name__}", where=p) from None
    if not data or not model.HasField("graph"):
        raise BadInputError("not a valid ONNX model (no graph)", where=p)
    return model


def load_model(path: str | os.PathLike[str]) -> Network:
    """Read an ONNX file and import it into the integer IR."""
    p = os.fspath(path)
    return import_model(load_onnx(p), source=p)


def _is_qonnx(node: onnx.NodeProto) -> bool:
    return node.domain in QONNX_DOMAINS and node.op_type in QUANT_OPS | {
        "Trunc", "XnorPopcountMatMul"}


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _as_str(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass
class _State:
    """Where the walk stands: the current tensor, its shape and meaning."""

    name: str
    shape: tuple[int, ...]
    # "float" before the input quantizer, "act" after a quantizer, "acc" after a linear node
    kind: str
    scale: float = 1.0  # float value = scale * integer value ("act")
    values: ValueSet | None = None
    chain: list[ElementwiseOp] = field(default_factory=list)
    acc_bound: int = 0
    pending: list[Layer] = field(default_factory=list)  # pools/flatten before the threshold
    pending_pad: tuple[tuple[int, int, int, int], int] | None = None


class _Importer:
    def __init__(self, model: onnx.ModelProto, source: str) -> None:
        self.model = model
        self.src = source
        self.g = model.graph
        self.consts: dict[str, np.ndarray] = {}
        self.layers: list[Layer] = []
        self.input_stage: InputStage | None = None

    # ---------------------------------------------------------------- errors
    def err(self, msg: str, node: onnx.NodeProto | None = None) -> BadInputError:
        if node is None:
            return BadInputError(msg, where=self.src)
        label = node.name or f"#{list(self.g.node).index(node)}"
        return BadInputError(msg, where=f"{self.src}: node '{label}' ({node.op_type})")

    # ------------------------------------------------------------- constants
    def const(self, name: str, node: onnx.NodeProto, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self.err(f"{what} '{name}' is not an initializer or constant (missing "
                           "initializer?)", node)
        return self.consts[name]

    def fold_constants(self) -> list[onnx.NodeProto]:
        """Evaluate nodes whose inputs are all constant; return the others in order."""
        for init in self.g.initializer:
            try:
                self.consts[init.name] = numpy_helper.to_array(init)
            except Exception as e:
                raise self.err(f"initializer '{init.name}' cannot be read: {e}") from None
        rest: list[onnx.NodeProto] = []
        for node in self.g.node:
            ins = [i for i in node.input if i]
            if node.op_type == "Constant":
                a = _attrs(node)
                if "value" not in a:
                    raise self.err("only tensor-valued Constant nodes are supported", node)
                self.consts[node.output[0]] = numpy_helper.to_array(a["value"])
            elif ins and all(i in self.consts for i in ins) and (
                    node.op_type in ("Transpose", "Identity", "Sign", "Reshape")
                    or _is_qonnx(node)):
                self.consts[node.output[0]] = self.eval_const(node)
            else:
                rest.append(node)
        return rest

    def eval_const(self, node: onnx.NodeProto) -> np.ndarray:
        x = np.asarray(self.consts[node.input[0]], dtype=np.float32)
        a = _attrs(node)
        op = node.op_type
        if op == "Transpose":
            perm = a.get("perm")
            return np.transpose(x, perm) if perm is not None else x.T
        if op == "Identity":
            return x
        if op == "Sign":
            return np.sign(x)
        if op == "Reshape":
            return x.reshape(self.consts[node.input[1]].astype(np.int64))
        q = self.quantizer(node)
        if q.kind == "multithreshold":
            raise self.err("MultiThreshold on a constant is not supported", node)
        if q.kind == "bipolar":
            s = np.asarray(self.consts[node.input[1]], np.float32)
            return (np.where(x >= 0, 1.0, -1.0) * s).astype(np.float32)
        # IntQuant on weights: numpy broadcasting of scale/zeropt, as the op does.
        s = np.asarray(self.consts[node.input[1]], np.float32)
        z = np.asarray(self.consts[node.input[2]], np.float32)
        y = (x / s + z).astype(np.float32)
        if q.bits == 1 and q.signed:
            y = np.where(y >= 0, 1.0, -1.0).astype(np.float32)
        else:
            lo, hi = q.int_range()
            y = ROUNDERS[q.rounding.upper()](np.clip(y, np.float32(lo), np.float32(hi)))
        return ((y - z) * s).astype(np.float32)

    # ------------------------------------------------------------ quantizers
    def quantizer(self, node: onnx.NodeProto) -> Quantizer:
        op = node.op_type
        if op == "Sign" and node.domain in ("", "ai.onnx"):
            return Quantizer("sign")
        if node.domain not in QONNX_DOMAINS:
            raise self.err(f"unsupported op (domain '{node.domain}')", node)
        a = _attrs(node)
        if op == "BipolarQuant":
            s = np.asarray(self.const(node.input[1], node, "scale"), np.float32).reshape(-1)
            return Quantizer("bipolar", scale=s)
        if op in ("Quant", "IntQuant"):
            if len(node.input) < 4:
                raise self.err("IntQuant needs inputs X, scale, zeropt, bitwidth", node)
            s = np.asarray(self.const(node.input[1], node, "scale"), np.float32).reshape(-1)
            z = np.asarray(self.const(node.input[2], node, "zeropt"), np.float32).reshape(-1)
            bw = np.asarray(self.const(node.input[3], node, "bitwidth")).reshape(-1)
            if bw.size != 1 or bw[0] != int(bw[0]) or not 1 <= int(bw[0]) <= 8:
                raise self.err(f"bitwidth must be one integer in 1..8, got {bw.tolist()}", node)
            rounding = _as_str(a.get("rounding_mode", "ROUND")).upper()
            if rounding not in ROUNDERS:
                raise self.err(f"unknown rounding_mode '{rounding}'", node)
            if np.any(s == 0) or not np.all(np.isfinite(s)) or not np.all(np.isfinite(z)):
                raise self.err("scale must be finite and non-zero, zeropt finite", node)
            return Quantizer("intquant", scale=s, zeropt=z, bits=int(bw[0]),
                             signed=bool(a.get("signed", 1)), narrow=bool(a.get("narrow", 0)),
                             rounding=rounding)
        if op == "MultiThreshold":
            t = np.asarray(self.const(node.input[1], node, "thresholds"), np.float32)
            if t.ndim != 2:
                raise self.err(f"thresholds must be [C, B], got shape {t.shape}", node)
            if np.isnan(t).any():
                raise self.err(f"thresholds contain {int(np.isnan(t).sum())} NaN values", node)
            layout = _as_str(a.get("data_layout", "NCHW"))
            if layout not in ("NCHW", "NC", "NCW"):
                raise self.err(f"data_layout '{layout}' is not supported (channels first only)",
                               node)
            return Quantizer("multithreshold", thresholds=t,
                             out_scale=float(a.get("out_scale", 1.0)),  # type: ignore[arg-type]
                             out_bias=float(a.get("out_bias", 0.0)))  # type: ignore[arg-type]
        raise self.err("unsupported op", node)

    def level_map(self, q: Quantizer, node: onnx.NodeProto) -> tuple[float, int, int]:
        """(unit scale u, int_scale, int_bias): level L has value u * (bias + scale * L)."""
        v = q.level_values()
        if v.shape[0] > 1 and not np.all(v == v[:1]):
            raise self.err("per-channel activation scales are not supported (the output "
                           "scale must be the same for every channel)", node)
        v = v[0]
        if not np.all(np.isfinite(v)):
            raise self.err("quantizer output values are not finite", node)
        if v.size < 2:
            raise self.err("quantizer has a single output level", node)
        d = v[1] - v[0]
        if d == 0 or not np.allclose(v, v[0] + d * np.arange(v.size), rtol=0, atol=abs(d) * 1e-6):
            raise self.err(f"quantizer levels {v.tolist()} are not evenly spaced", node)
        for div in (1.0, 2.0):
            u = abs(d) / div
            ints = v / u
            if np.allclose(ints, np.round(ints), rtol=0, atol=1e-6):
                return float(u), round(d / u), round(v[0] / u)
        raise self.err(f"quantizer levels {v.tolist()} are not integer multiples of one "
                       "scale", node)

    # ------------------------------------------------------------ per channel
    def channel_vector(self, c: np.ndarray, shape: tuple[int, ...], node: onnx.NodeProto
                       ) -> np.ndarray:
        """A constant operand as a per-channel vector [C] (or [1] for scalars)."""
        c = np.asarray(c, dtype=np.float32)
        if c.size == 1:
            return c.reshape(1)
        full = (1, *shape)
        try:
            b = np.broadcast_to(c, full) if c.ndim <= len(full) else None
        except ValueError:
            b = None
        if b is None:
            raise self.err(f"constant of shape {c.shape} does not broadcast to the tensor "
                           f"[N, {', '.join(map(str, shape))}]", node)
        per_c = b[0].reshape(shape[0], -1)
        if not np.all(per_c == per_c[:, :1]):
            raise self.err("constant varies over spatial positions; only per-channel "
                           "constants are supported", node)
        return np.ascontiguousarray(per_c[:, 0])

    # ----------------------------------------------------------------- walk
    def graph_input(self) -> tuple[str, tuple[int, ...]]:
        inits = {i.name for i in self.g.initializer}
        ins = [i for i in self.g.input if i.name not in inits]
        if len(ins) != 1:
            raise self.err(f"expected exactly one graph input, found {len(ins)}")
        vi = ins[0]
        tt = vi.type.tensor_type
        if tt.elem_type != onnx.TensorProto.FLOAT:
            raise self.err(f"graph input '{vi.name}' must be float32, it is "
                           f"{onnx.TensorProto.DataType.Name(tt.elem_type)}")
        if not tt.HasField("shape") or len(tt.shape.dim) < 2:
            raise self.err(f"graph input '{vi.name}' needs a static shape [batch, ...]")
        dims: list[int] = []
        for ax, d in enumerate(tt.shape.dim):
            if ax == 0:
                continue
            if not d.HasField("dim_value") or d.dim_value <= 0:
                label = d.dim_param or "?"
                raise self.err(f"graph input '{vi.name}' has a dynamic dimension '{label}' at "
                               f"axis {ax}; only the batch dimension may be dynamic")
            dims.append(int(d.dim_value))
        return vi.name, tuple(dims)

    def run(self) -> Network:
        nodes = self.fold_constants()
        if not self.g.node:
            raise self.err("empty graph (no nodes)")
        in_name, in_shape = self.graph_input()
        if len(self.g.output) != 1:
            raise self.err(f"expected exactly one graph output, found {len(self.g.output)}")
        out_name = self.g.output[0].name
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in nodes:
            for i in n.input:
                if i and i not in self.consts:
                    consumers.setdefault(i, []).append(n)
        st = _State(in_name, in_shape, "float")
        pre_ops: list[ElementwiseOp] = []
        seen: set[int] = set()
        while st.name != out_name:
            users = consumers.get(st.name, [])
            if not users:
                raise self.err(f"tensor '{st.name}' has no consumer and is not the graph "
                               f"output '{out_name}'")
            if len(users) > 1:
                raise self.err(f"tensor '{st.name}' feeds {len(users)} nodes; branching graphs "
                               "are not supported", users[0])
            node = users[0]
            if id(node) in seen:
                raise self.err("the graph has a cycle", node)
            seen.add(id(node))
            self.step(node, st, pre_ops)
            st.name = node.output[0]
        left = [n for n in nodes if id(n) not in seen]
        if left:
            raise self.err(f"{len(left)} node(s) are not on the input-to-output path", left[0])
        if st.kind != "acc":
            raise self.err("the graph must end with a linear layer's output (integer logits); "
                           f"it ends in {'an activation' if st.kind == 'act' else 'a float op'}")
        self.layers.extend(st.pending)
        out_ops = tuple(st.chain)
        for op in out_ops:
            if op.channels() != 1 or op.kind not in ("mul", "div", "add", "sub") or \
                    (op.kind in ("mul", "div") and float(np.asarray(op.const).reshape(-1)[0]) <= 0):
                raise self.err("only positive scalar scales and scalar offsets may follow the last "
                               "linear layer (per-class affine ops change the ranking of the "
                               "integer logits)")
        assert self.input_stage is not None
        net = Network(self.input_stage, tuple(self.layers), input_name=in_name,
                      output_name=out_name, name=os.path.basename(self.src),
                      metadata={}, output_ops=out_ops)
        analyze(net)
        return net

    def step(self, node: onnx.NodeProto, st: _State, pre_ops: list[ElementwiseOp]) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx") and node.domain not in QONNX_DOMAINS:
            raise self.err(f"unsupported op domain '{node.domain}'", node)
        if op in PASS_THROUGH:
            return
        is_quant = (node.domain in QONNX_DOMAINS and op in QUANT_OPS) or (
            op == "Sign" and node.domain in ("", "ai.onnx"))
        if node.domain in QONNX_DOMAINS and not is_quant:
            raise self.err("unsupported op", node)
        if st.kind == "float":
            if op in ELEMENTWISE or op == "BatchNormalization":
                pre_ops.append(self.elementwise(node, st))
                return
            if is_quant:
                q = self.quantizer(node)
                self.check_quant_channels(q, st, node)
                u, isc, ib = self.level_map(q, node)
                self.input_stage = InputStage(st.shape, tuple(pre_ops), q, isc, ib)
                st.kind, st.scale, st.values = "act", u, self.input_stage.values
                if st.values.kind == "signed":
                    raise self.err(f"input levels {st.values.values} are signed multi-bit; the "
                                   "first layer takes bipolar, ternary or unsigned inputs", node)
                if st.values.hi > 255:
                    raise self.err("input levels exceed 8 bits", node)
                return
            raise self.err("the graph input must be quantized (Sign, BipolarQuant, IntQuant or "
                           "MultiThreshold) before any other op", node)
        if st.kind == "act":
            self.step_act(node, st)
            return
        self.step_acc(node, st, is_quant)

    def check_quant_channels(self, q: Quantizer, st: _State, node: onnx.NodeProto) -> None:
        c = st.shape[0]
        for name, arr in (("thresholds", q.thresholds), ("scale", q.scale), ("zeropt", q.zeropt)):
            if arr is not None and np.asarray(arr).shape[0] not in (1, c):
                raise self.err(f"{name} has {np.asarray(arr).shape[0]} channels, the tensor has "
                               f"{c}", node)

    def step_act(self, node: onnx.NodeProto, st: _State) -> None:
        op = node.op_type
        a = _attrs(node)
        if op == "MaxPool":
            self.layers.append(self.maxpool(node, st))
            return
        if op in ("Flatten", "Reshape"):
            self.flatten(node, st)
            if len(st.shape) == 1 and not (self.layers and isinstance(self.layers[-1], Flatten)):
                self.layers.append(Flatten())
            return
        if op == "Pad":
            mode = _as_str(a.get("mode", "constant"))
            if mode != "constant":
                raise self.err(f"Pad mode '{mode}' is not supported", node)
            pads = self.const(node.input[1], node, "pads").astype(np.int64).reshape(-1) \
                if len(node.input) > 1 else np.asarray(a.get("pads"), np.int64)
            if len(node.input) > 3 and node.input[3]:
                raise self.err("Pad with explicit axes is not supported", node)
            if pads.size != 8 or pads[[0, 1, 4, 5]].any() or (pads < 0).any():
                raise self.err(f"only non-negative spatial pads of an NCHW tensor are supported, "
                               f"got {pads.tolist()}", node)
            v = 0.0
            if len(node.input) > 2 and node.input[2]:
                cv = self.const(node.input[2], node, "constant_value")
                v = float(np.asarray(cv).reshape(-1)[0])
            iv = v / st.scale
            assert st.values is not None
            if iv != round(iv) or (int(iv) not in st.values.values and iv != 0):
                raise self.err(f"pad value {v} is not in the tensor's value set "
                               f"{st.values.describe()} (scale {st.scale})", node)
            st.pending_pad = ((int(pads[2]), int(pads[3]), int(pads[6]), int(pads[7])), int(iv))
            st.shape = (st.shape[0], st.shape[1] + int(pads[2] + pads[6]),
                        st.shape[2] + int(pads[3] + pads[7]))
            return
        if op in ("MatMul", "Gemm", "Conv"):
            self.linear(node, st)
            return
        raise self.err("unsupported op after an activation (expected MatMul, Gemm, Conv, "
                       "MaxPool, Flatten, Reshape or Pad)", node)

    def step_acc(self, node: onnx.NodeProto, st: _State, is_quant: bool) -> None:
        op = node.op_type
        if op in ELEMENTWISE or op == "BatchNormalization":
            st.chain.append(self.elementwise(node, st))
            return
        if op == "MaxPool":
            # Pooling accumulators equals pooling the chain's output only while
            # the chain so far is increasing in every channel.
            if (chain_direction(st.chain, st.shape[0]) < 0).any():
                raise self.err("MaxPool after a decreasing float op (negative scale) would be a "
                               "min-pool on the accumulators; not supported", node)
            st.pending.append(self.maxpool(node, st))
            return
        if op in ("Flatten", "Reshape"):
            if len(st.shape) == 3 and st.shape[1] * st.shape[2] != 1:
                raise self.err("flattening accumulators with spatial extent before their "
                               "activation is not supported", node)
            self.flatten(node, st)
            st.pending.append(Flatten())
            return
        if is_quant:
            q = self.quantizer(node)
            self.check_quant_channels(q, st, node)
            u, isc, ib = self.level_map(q, node)
            c = st.shape[0]
            try:
                f = fold_thresholds(st.chain, q, c, st.acc_bound)
            except ValueError as e:
                raise self.err(str(e), node) from None
            self.layers.extend(st.pending)
            self.layers.append(Threshold(f.thresholds, f.sign, isc, ib))
            vs = self.layers[-1].values  # type: ignore[union-attr]
            if not set(vs.values) <= {-1, 0, 1}:
                raise self.err(f"activation levels {vs.values} are not binary or ternary", node)
            st.kind, st.scale, st.values = "act", u, vs
            st.chain, st.pending = [], []
            return
        raise self.err("unsupported op between a linear layer and its activation", node)

    # ------------------------------------------------------------- op parts
    def elementwise(self, node: onnx.NodeProto, st: _State) -> ElementwiseOp:
        op = node.op_type
        c = st.shape[0]
        if op == "BatchNormalization":
            a = _attrs(node)
            if a.get("training_mode", 0):
                raise self.err("BatchNormalization in training mode", node)
            if len(node.input) != 5:
                raise self.err("BatchNormalization needs 5 inputs", node)
            # BN parameters are 1-D [C] on axis 1 (ONNX spec), not numpy-broadcast operands:
            # channel_vector would align them with the last axis (W) of an NCHW tensor.
            raw = [np.asarray(self.const(n, node, what), np.float32)
                   for n, what in zip(node.input[1:], ("scale", "B", "mean", "var"), strict=True)]
            if any(p.ndim > 1 for p in raw):
                raise self.err("BatchNormalization parameters must be 1-D [C]", node)
            params = tuple(p.reshape(-1) for p in raw)
            for p, what in zip(params, ("scale", "B", "mean", "var"), strict=True):
                if p.size not in (1, c):
                    raise self.err(f"{what} has {p.size} channels, the tensor has {c}", node)
                if not np.all(np.isfinite(p)):
                    raise self.err(f"{what} contains NaN or infinite values", node)
            if (params[3] < 0).any():
                raise self.err("negative variance", node)
            eps = float(a.get("epsilon", 1e-5))  # type: ignore[arg-type]
            return ElementwiseOp("bn", bn=params, eps=eps)  # type: ignore[arg-type]
        x_first = node.input[0] == st.name
        other = node.input[1] if x_first else node.input[0]
        cv = self.channel_vector(self.const(other, node, "operand"), st.shape, node)
        if cv.size not in (1, c):
            raise self.err(f"operand has {cv.size} channels, the tensor has {c}", node)
        if not np.all(np.isfinite(cv)):
            raise self.err("operand contains NaN or infinite values", node)
        kind = op.lower()
        if not x_first:
            if op == "Div":
                raise self.err("dividing a constant by the tensor is not monotone-safe; "
                               "not supported", node)
            if op == "Sub":
                kind = "rsub"
        if kind == "div" and (cv == 0).any():
            raise self.err("division by zero", node)
        return ElementwiseOp(kind, const=cv)

    def maxpool(self, node: onnx.NodeProto, st: _State) -> MaxPool2d:
        a = _attrs(node)
        if len(st.shape) != 3:
            raise self.err(f"MaxPool needs an NCHW tensor, got [N, {st.shape}]", node)
        k = tuple(int(v) for v in a.get("kernel_shape", []))  # type: ignore[union-attr]
        if len(k) != 2:
            raise self.err("MaxPool needs a 2-D kernel_shape", node)
        s = tuple(int(v) for v in a.get("strides", [1, 1]))  # type: ignore[union-attr]
        pads = list(a.get("pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
        if any(pads) or a.get("ceil_mode", 0) or any(int(d) != 1 for d in a.get(
                "dilations", [1, 1])) or _as_str(a.get("auto_pad", "NOTSET")) not in (
                    "NOTSET", "VALID"):
            raise self.err("MaxPool with padding, ceil_mode or dilation is not supported", node)
        oh, ow = conv_out_hw(st.shape[1], st.shape[2], k[0], k[1], s, (0, 0, 0, 0))  # type: ignore[arg-type]
        if oh < 1 or ow < 1:
            raise self.err(f"pool kernel {k} larger than input {st.shape[1:]}", node)
        st.shape = (st.shape[0], oh, ow)
        return MaxPool2d((k[0], k[1]), (s[0], s[1]))

    def flatten(self, node: onnx.NodeProto, st: _State) -> None:
        n = int(np.prod(st.shape))
        if node.op_type == "Flatten":
            if int(_attrs(node).get("axis", 1)) != 1:  # type: ignore[call-overload]
                raise self.err("Flatten must use axis=1", node)
        else:
            shp = self.const(node.input[1], node, "shape").astype(np.int64).reshape(-1)
            ok = shp.size == 2 and (shp[1] in (-1, n)) and (shp[0] in (-1, 0) or shp[1] == n)
            if not ok:
                raise self.err(f"Reshape to {shp.tolist()} is not a flatten to [batch, {n}]",
                               node)
        st.shape = (n,)

    def linear(self, node: onnx.NodeProto, st: _State) -> None:
        op = node.op_type
        a = _attrs(node)
        if node.input[0] != st.name:
            raise self.err("the activation must be the first input", node)
        w = np.asarray(self.const(node.input[1], node, "weight"), np.float32)
        chain: list[ElementwiseOp] = []
        if op in ("MatMul", "Gemm"):
            if len(st.shape) != 1:
                raise self.err(f"{op} needs a flat input, got [N, {st.shape}]; add Flatten", node)
            if w.ndim != 2:
                raise self.err(f"weight must be 2-D, got {w.shape}", node)
            if op == "Gemm":
                if a.get("transA", 0):
                    raise self.err("Gemm with transA=1 is not supported", node)
                w = w if a.get("transB", 0) else w.T
            else:
                w = w.T
            # w is now [out, in]
            if w.shape[1] != st.shape[0]:
                raise self.err(f"shape mismatch: input has {st.shape[0]} features, weight "
                               f"expects {w.shape[1]}", node)
            if st.pending_pad is not None:
                raise self.err("Pad before a dense layer", node)
        else:
            if len(st.shape) != 3 or w.ndim != 4:
                raise self.err(f"Conv needs an NCHW input and 4-D weight, got [N, {st.shape}] "
                               f"and {w.shape}", node)
            if int(a.get("group", 1)) != 1:  # type: ignore[call-overload]
                raise self.err("grouped convolution is not supported", node)
            if any(int(d) != 1 for d in a.get("dilations", [1, 1])):  # type: ignore[union-attr]
                raise self.err("dilated convolution is not supported", node)
            if _as_str(a.get("auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
                raise self.err("auto_pad SAME is not supported; give explicit pads", node)
            if w.shape[1] != st.shape[0]:
                raise self.err(f"shape mismatch: input has {st.shape[0]} channels, weight "
                               f"expects {w.shape[1]}", node)
        ints, wscale = self.weight_ints(w, node)
        if op == "Conv":
            pads = tuple(int(p) for p in a.get("pads", [0, 0, 0, 0]))  # type: ignore[union-attr]
            stride = tuple(int(s) for s in a.get("strides", [1, 1]))  # type: ignore[union-attr]
            pad_value = 0
            h, wd = st.shape[1], st.shape[2]
            if st.pending_pad is not None:
                (pt, pl, pb, pr), pad_value = st.pending_pad
                if any(pads) and pad_value != 0:
                    raise self.err("Conv pads (value 0) after an explicit Pad of another value",
                                   node)
                h, wd = h - pt - pb, wd - pl - pr
                pads = (pads[0] + pt, pads[1] + pl, pads[2] + pb, pads[3] + pr)
                st.pending_pad = None
            kh, kw = int(ints.shape[2]), int(ints.shape[3])
            oh, ow = conv_out_hw(h, wd, kh, kw, stride, pads)  # type: ignore[arg-type]
            if oh < 1 or ow < 1:
                raise self.err(f"kernel {(kh, kw)} larger than padded input", node)
            self.layers.append(Conv2d(ints, stride, pads, pad_value))  # type: ignore[arg-type]
            fan_in = int(np.prod(ints.shape[1:]))
            st.shape = (int(ints.shape[0]), oh, ow)
        else:
            self.layers.append(Dense(ints))
            fan_in = int(ints.shape[1])
            st.shape = (int(ints.shape[0]),)
        assert st.values is not None
        st.acc_bound = fan_in * st.values.max_abs
        unit = (st.scale * wscale).astype(np.float32)
        if np.all(unit == unit[0]):
            unit = unit[:1]  # one scale for every channel is a scalar (allowed on the logits)
        if not np.all(unit == 1):
            chain.append(ElementwiseOp("mul", const=unit))
        if op == "Gemm":
            alpha = float(a.get("alpha", 1.0))  # type: ignore[arg-type]
            beta = float(a.get("beta", 1.0))  # type: ignore[arg-type]
            if alpha != 1.0:
                chain.append(ElementwiseOp("mul", const=np.float32([alpha])))
            if len(node.input) > 2 and node.input[2]:
                b = self.channel_vector(self.const(node.input[2], node, "bias C"), st.shape,
                                        node) * np.float32(beta)
                chain.append(ElementwiseOp("add", const=b.astype(np.float32)))
        elif op == "Conv" and len(node.input) > 2 and node.input[2]:
            b = np.asarray(self.const(node.input[2], node, "bias"), np.float32).reshape(-1)
            if b.size != st.shape[0]:
                raise self.err(f"bias has {b.size} values for {st.shape[0]} channels", node)
            chain.append(ElementwiseOp("add", const=b))
        st.kind, st.values, st.chain, st.pending = "acc", None, chain, []

    def weight_ints(self, w: np.ndarray, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray]:
        """Split float weights into int8 {-1,0,+1} and a positive per-output scale."""
        if not np.all(np.isfinite(w)):
            raise self.err("weights contain NaN or infinite values", node)
        flat = w.reshape(w.shape[0], -1)
        m = np.abs(flat).max(axis=1)
        # An all-zero row has no scale of its own; give it another row's so that a
        # common scale stays common (a per-row scale on the logits is rejected).
        m = np.where(m == 0, m.max() if m.max() > 0 else 1, m).astype(np.float32)
        ints = flat / m[:, None]
        bad = ~np.isin(ints, (-1.0, 0.0, 1.0))
        if bad.any():
            o, i = np.argwhere(bad)[0]
            raise self.err(f"weights outside the binary/ternary value set: weight[{o}, {i}] = "
                           f"{float(flat[o, i])!r} is not -s, 0 or +s for the channel scale s = "
                           f"{float(m[o])!r}", node)
        return ints.reshape(w.shape).astype(np.int8), m


def import_model(model: onnx.ModelProto, source: str = "<model>") -> Network:
    return _Importer(model, source).run()
