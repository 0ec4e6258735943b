"""ONNX (QONNX, Brevitas, Larq through tf2onnx, plain float) -> integer IR.

``import_model`` first runs the normalization stage (``cimgen.frontend.normalize``:
small named passes that rewrite export idioms into canonical form), then the
strict importer below, which walks the graph in topological order and gives
every tensor one of three meanings:

* float: the graph input before its quantizer. Layout ops on it become the
  input stage's layout map, float ops its pre-ops, the quantizer its levels.
* activation: an integer tensor (``scale * integer``) that a layer of the IR
  holds. Linear layers, MaxPool, Pad, a flatten, a residual Add and Concat
  may read it; it may feed several of them (branches), the IR then reads an
  earlier layer's output again through a ``Tap``.
* accumulators: a linear layer's (or residual Add's) integer output followed
  by a chain of per-channel monotone float ops (bias, scale, BatchNorm,
  MaxPool); at the next quantizer ``cimgen.frontend.fold`` turns the chain into
  integer thresholds. The graph output must be accumulators: the chain after
  the last linear layer stays as the network's host-side ``output_ops``.

Anything else is refused with a message naming the file, the node, its op
type and the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from golden_model.errors import BadInputError
from golden_model.floatops import ElementwiseOp, chain_direction
from golden_model.ir import (
    Add,
    Concat,
    Conv2d,
    Dense,
    Flatten,
    InputStage,
    Layer,
    MaxPool2d,
    Network,
    Tap,
    Threshold,
    ValueSet,
    analyze,
    conv_out_hw,
)

from .fold import fold_thresholds
from .graph import QONNX_DOMAINS, QUANT_OPS, OnnxGraph, as_str, attrs, resolve_reshape
from .node_parse import NodeParser
from .normalize import normalize
from .passes import PassReport

ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div"})
PASS_THROUGH = frozenset({"Identity", "Dropout"})
LAYOUT = frozenset({"Reshape", "Flatten", "Transpose"})
# Integer ratios tried when two residual operands have different float scales.
MAX_ADD_RATIO = 16


@dataclass(frozen=True)
class Imported:
    """A network and the normalization passes that changed its graph."""

    net: Network
    passes: list[PassReport] = field(default_factory=list)


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
    """Read an ONNX file, normalize it and import it into the integer IR."""
    return load_model_report(path).net


def load_model_report(path: str | os.PathLike[str]) -> Imported:
    p = os.fspath(path)
    return import_model_report(load_onnx(p), source=p)


def import_model(model: onnx.ModelProto, source: str = "<model>") -> Network:
    """Normalize ``model`` (a copy) and import it."""
    return import_model_report(model, source).net


def import_model_report(model: onnx.ModelProto, source: str = "<model>") -> Imported:
    normalized, reports = normalize(model, source)
    return Imported(import_strict(normalized, source), reports)


def import_strict(model: onnx.ModelProto, source: str = "<model>") -> Network:
    """Import a graph already in canonical form (no normalization)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    OnnxGraph(m, source).toposort()
    return _Importer(m, source).run()


@dataclass(frozen=True, eq=False)
class _Val:
    """What one ONNX tensor is in the IR."""

    kind: str  # "float" (before the input quantizer), "act", "acc"
    shape: tuple[int, ...]  # without the batch
    src: int = -1  # IR layer holding its integer tensor (-1: the quantized input)
    scale: float = 1.0  # act: float value = scale * integer value
    values: ValueSet | None = None  # act
    chain: tuple[ElementwiseOp, ...] = ()  # acc: float ops after the integers; float: pre-ops
    bound: int = 0  # acc: max |integer|
    pad: tuple[tuple[int, int, int, int], int] | None = None  # act: a Pad not yet used
    index: np.ndarray | None = None  # float: the input layout map (None: unchanged)


class _Importer(NodeParser):
    def __init__(self, model: onnx.ModelProto, source: str) -> None:
        super().__init__(model, source)
        self.layers: list[Layer] = []
        self.input_stage: InputStage | None = None
        self.vals: dict[str, _Val] = {}
        self.in_shape: tuple[int, ...] = ()
        self.batch = 1  # the graph input's declared batch (normalization fixes a symbolic one)

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
        d0 = tt.shape.dim[0]
        self.batch = int(d0.dim_value) if d0.HasField("dim_value") and d0.dim_value > 0 else 1
        return vi.name, tuple(dims)

    def on_path(self, nodes: list[onnx.NodeProto], in_name: str, out_name: str) -> None:
        """Every remaining node must lie on a path from the input to the output."""
        fwd = {in_name}
        for n in nodes:
            if any(i in fwd for i in n.input if i):
                fwd.update(o for o in n.output if o)
        back = {out_name}
        for n in reversed(nodes):
            if any(o in back for o in n.output if o):
                back.update(i for i in n.input if i)
        left = [n for n in nodes if not (set(n.output) & fwd and set(n.output) & back)]
        if left:
            raise self.err(f"{len(left)} node(s) are not on the input-to-output path", left[0])

    def run(self) -> Network:
        if not self.g.node:
            raise self.err("empty graph (no nodes)")
        nodes = self.fold_constants()
        in_name, in_shape = self.graph_input()
        self.in_shape = in_shape
        if len(self.g.output) != 1:
            raise self.err(f"expected exactly one graph output, found {len(self.g.output)}")
        out_name = self.g.output[0].name
        for n in nodes:
            if n.op_type == "Reshape" and (len(n.input) < 2 or n.input[1] not in self.consts):
                raise self.err("the Reshape target shape is computed at run time (not a "
                               "constant after constant folding); cimgen needs static shapes", n)
        self.on_path(nodes, in_name, out_name)
        self.vals[in_name] = _Val("float", in_shape)
        for node in nodes:
            self.step(node)
        out = self.vals.get(out_name)
        if out is None:
            raise self.err(f"the graph output '{out_name}' is not computed from the input")
        if out.kind != "acc":
            raise self.err("the graph must end with a linear layer's output (integer logits); "
                           f"it ends in {'an activation' if out.kind == 'act' else 'a float op'}")
        if out.src != len(self.layers) - 1:
            self.layers.append(Tap(out.src))
        assert self.input_stage is not None
        net = Network(self.input_stage, tuple(self.layers), input_name=in_name,
                      output_name=out_name, name=os.path.basename(self.src),
                      metadata={}, output_ops=tuple(out.chain))
        try:
            analyze(net)
        except BadInputError as e:
            raise self.err(f"the imported network is invalid: {e}") from None
        return net

    def use(self, v: _Val) -> None:
        """Make ``v``'s tensor the input of the next layer (a Tap if it is not the last)."""
        if v.src != len(self.layers) - 1:
            self.layers.append(Tap(v.src))

    def emit(self, layer: Layer) -> int:
        self.layers.append(layer)
        return len(self.layers) - 1

    def step(self, node: onnx.NodeProto) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx") and node.domain not in QONNX_DOMAINS:
            raise self.err(f"unsupported op domain '{node.domain}'", node)
        is_quant = (node.domain in QONNX_DOMAINS and op in QUANT_OPS) or (
            op == "Sign" and node.domain in ("", "ai.onnx"))
        if node.domain in QONNX_DOMAINS and not is_quant:
            raise self.err("unsupported op", node)
        data = [i for i in dict.fromkeys(node.input) if i and i in self.vals]
        if not data:
            raise self.err("no input of this node is computed from the graph input", node)
        if op in PASS_THROUGH:
            self.vals[node.output[0]] = self.vals[data[0]]
            return
        if len(data) > 1 or (len(node.input) > 1 and node.input[0] == node.input[1]):
            self.vals[node.output[0]] = self.join(node, data)
            return
        x = data[0]
        v = self.vals[x]
        if node.input[0] != x and op not in ELEMENTWISE:
            raise self.err("the computed tensor must be the first input", node)
        if v.kind == "float":
            out = self.step_float(node, x, v, is_quant)
        elif v.kind == "act":
            out = self.step_act(node, v, is_quant)
        else:
            out = self.step_acc(node, x, v, is_quant)
        self.vals[node.output[0]] = out

    # ------------------------------------------------------------- the input
    def step_float(self, node: onnx.NodeProto, x: str, v: _Val, is_quant: bool) -> _Val:
        op = node.op_type
        if op in LAYOUT or op == "Gather":
            if v.chain:
                raise self.err("a layout change after float preprocessing of the input is not "
                               "supported (move the Reshape/Transpose before it)", node)
            return self.input_layout(node, v)
        if op in ELEMENTWISE or op == "BatchNormalization":
            return replace(v, chain=(*v.chain, self.elementwise(node, x, v.shape)))
        if is_quant:
            return self.input_quant(node, v)
        raise self.err("the graph input must be quantized (Sign, BipolarQuant, IntQuant or "
                       "MultiThreshold) before any other op", node)

    def input_layout(self, node: onnx.NodeProto, v: _Val) -> _Val:
        idx = v.index if v.index is not None else np.arange(int(np.prod(v.shape)))
        op = node.op_type
        if op == "Transpose":
            perm = [int(p) for p in attrs(node).get("perm", range(len(v.shape), -1, -1))]
            if len(perm) != len(v.shape) + 1 or perm[0] != 0:
                raise self.err(f"Transpose perm {perm} moves the batch axis", node)
            inner = [p - 1 for p in perm[1:]]
            idx = idx.reshape(v.shape).transpose(inner).reshape(-1)
            return replace(v, shape=tuple(v.shape[p] for p in inner), index=idx)
        if op == "Gather":
            # cimgen's own export writes a permuted input as Reshape + Gather(axis 1).
            sel = self.const(node.input[1], node, "indices").astype(np.int64)
            if int(attrs(node).get("axis", 0)) != 1 or len(v.shape) != 1 or sel.ndim != 1 or \
                    not np.array_equal(np.sort(sel), np.arange(idx.size)):
                raise self.err("a Gather on the input is supported only as a permutation of "
                               "the features (axis 1 of [batch, features])", node)
            return replace(v, index=idx[sel])
        return replace(v, shape=self.reshaped(node, v.shape), index=idx)

    def reshaped(self, node: onnx.NodeProto, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The batch-free output shape of a Reshape/Flatten that keeps axis 0 as the batch."""
        n = int(np.prod(shape))
        if node.op_type == "Flatten":
            if int(attrs(node).get("axis", 1)) != 1:
                raise self.err("Flatten must use axis=1", node)
            return (n,)
        if len(node.input) < 2 or node.input[1] not in self.consts:
            raise self.err("the Reshape target shape is computed at run time (not a constant "
                           "after constant folding)", node)
        tgt = np.asarray(self.consts[node.input[1]]).astype(np.int64).reshape(-1)
        b = self.batch
        out = resolve_reshape((b, *shape), tgt, bool(attrs(node).get("allowzero", 0)))
        if out is None:
            raise self.err(f"Reshape to {tgt.tolist()} does not fit the tensor "
                           f"[N, {', '.join(map(str, shape))}]", node)
        if len(out) < 2 or out[0] != b or int(tgt[0]) not in (-1, 0, b):
            raise self.err(f"Reshape to {tgt.tolist()} does not keep the batch as axis 0",
                           node)
        return tuple(out[1:])

    def input_quant(self, node: onnx.NodeProto, v: _Val) -> _Val:
        if self.input_stage is not None:
            raise self.err("the graph input is quantized a second time (one input quantizer "
                           "is supported)", node)
        q = self.quantizer(node)
        self.check_quant_channels(q, v.shape, node)
        u, isc, ib = self.level_map(q, node)
        moved = v.index is not None
        ident = moved and np.array_equal(v.index, np.arange(v.index.size))
        self.input_stage = InputStage(
            v.shape, tuple(v.chain), q, isc, ib,
            source_shape=self.in_shape if moved else None,
            source_index=None if (not moved or ident) else np.asarray(v.index, np.int64))
        vs = self.input_stage.values
        if vs.lo < -128 or vs.hi > 255:
            raise self.err(f"input levels {vs.describe()} exceed 8 bits", node)
        return _Val("act", v.shape, -1, u, vs)

    # --------------------------------------------------------- activations
    def step_act(self, node: onnx.NodeProto, v: _Val, is_quant: bool) -> _Val:
        op = node.op_type
        if op == "MaxPool":
            if v.pad is not None:
                raise self.err("Pad before a MaxPool is not supported", node)
            self.use(v)
            return replace(v, shape=self.pooled(node, v.shape), src=self.emit(self.maxpool(node)))
        if op in ("Flatten", "Reshape"):
            out = self.reshaped(node, v.shape)
            if out == v.shape:
                return v
            if len(out) != 1:
                raise self.err(f"Reshape of an activation to [N, {', '.join(map(str, out))}]: "
                               "only a flatten to [batch, features] is supported between layers",
                               node)
            if v.pad is not None:
                raise self.err("Pad before a flatten", node)
            self.use(v)
            return replace(v, shape=out, src=self.emit(Flatten()))
        if op == "Transpose":
            raise self.err("a layout change (Transpose) of an activation between layers: no "
                           "normalization pass could remove it (it must sit next to a "
                           "pointwise op, a pair that cancels, or before a dense layer's "
                           "flatten)", node)
        if op == "Pad":
            return self.pad(node, v)
        if op in ("MatMul", "Gemm", "Conv"):
            return self.linear(node, v)
        if op in ("Mul", "Div"):
            c = np.asarray(self.const(node.input[1], node, "operand"), np.float32).reshape(-1)
            k = float(c[0]) if c.size == 1 else 0.0
            if op == "Div" and k:
                k = 1.0 / k
            # Scaling by a power of two keeps every value exact in float32.
            if k > 0 and float(np.log2(k)).is_integer():
                return replace(v, scale=v.scale * k)
        if op in ELEMENTWISE or op == "BatchNormalization":
            raise self.err("a float op on a quantized activation (float activations between "
                           "layers are not supported: only a linear layer, MaxPool, Pad, a "
                           "flatten, a residual Add or Concat may read a quantized tensor)",
                           node)
        if is_quant:
            raise self.err("a quantizer on an already quantized tensor (re-quantization) is "
                           "not supported", node)
        raise self.err("unsupported op after an activation (expected MatMul, Gemm, Conv, "
                       "MaxPool, Flatten, Reshape, Pad, Add or Concat)", node)

    def pad(self, node: onnx.NodeProto, v: _Val) -> _Val:
        a = attrs(node)
        mode = as_str(a.get("mode", "constant"))
        if mode != "constant":
            raise self.err(f"Pad mode '{mode}' is not supported", node)
        pads = self.const(node.input[1], node, "pads").astype(np.int64).reshape(-1) \
            if len(node.input) > 1 else np.asarray(a.get("pads"), np.int64)
        if len(node.input) > 3 and node.input[3]:
            raise self.err("Pad with explicit axes is not supported", node)
        if len(v.shape) != 3 or pads.size != 8 or pads[[0, 1, 4, 5]].any() or (pads < 0).any():
            raise self.err(f"only non-negative spatial pads of an NCHW tensor are supported, "
                           f"got {pads.tolist()}", node)
        if v.pad is not None:
            raise self.err("two Pads in a row", node)
        val = 0.0
        if len(node.input) > 2 and node.input[2]:
            cv = self.const(node.input[2], node, "constant_value")
            val = float(np.asarray(cv).reshape(-1)[0])
        iv = val / v.scale
        assert v.values is not None
        if iv != round(iv) or (int(iv) not in v.values.values and iv != 0):
            raise self.err(f"pad value {val} is not in the tensor's value set "
                           f"{v.values.describe()} (scale {v.scale})", node)
        shape = (v.shape[0], v.shape[1] + int(pads[2] + pads[6]),
                 v.shape[2] + int(pads[3] + pads[7]))
        return replace(v, shape=shape, pad=((int(pads[2]), int(pads[3]), int(pads[6]),
                                             int(pads[7])), int(iv)))

    # --------------------------------------------------------- accumulators
    def step_acc(self, node: onnx.NodeProto, x: str, v: _Val, is_quant: bool) -> _Val:
        op = node.op_type
        if op in ELEMENTWISE or op == "BatchNormalization":
            return replace(v, chain=(*v.chain, self.elementwise(node, x, v.shape)))
        if op == "MaxPool":
            # Pooling accumulators equals pooling the chain's output only while
            # the chain so far is increasing in every channel.
            if (chain_direction(v.chain, v.shape[0]) < 0).any():
                raise self.err("MaxPool after a decreasing float op (negative scale) would be a "
                               "min-pool on the accumulators; not supported", node)
            self.use(v)
            return replace(v, shape=self.pooled(node, v.shape), src=self.emit(self.maxpool(node)))
        if op in ("Flatten", "Reshape"):
            out = self.reshaped(node, v.shape)
            if out == v.shape:
                return v
            if len(v.shape) == 3 and v.shape[1] * v.shape[2] != 1:
                raise self.err("flattening accumulators with spatial extent before their "
                               "activation is not supported", node)
            if len(out) != 1:
                raise self.err(f"Reshape of accumulators to [N, {', '.join(map(str, out))}] is "
                               "not a flatten", node)
            self.use(v)
            return replace(v, shape=out, src=self.emit(Flatten()))
        if is_quant:
            return self.threshold(node, v)
        if op in ("Softmax", "LogSoftmax", "ArgMax"):
            raise self.err(f"{op} is dropped only as the classifier tail at the graph output; "
                           "here it is between layers", node)
        raise self.err("unsupported op between a linear layer and its activation", node)

    def threshold(self, node: onnx.NodeProto, v: _Val) -> _Val:
        q = self.quantizer(node)
        self.check_quant_channels(q, v.shape, node)
        u, isc, ib = self.level_map(q, node)
        c = v.shape[0]
        try:
            f = fold_thresholds(list(v.chain), q, c, v.bound)
        except ValueError as e:
            raise self.err(str(e), node) from None
        self.use(v)
        layer = Threshold(f.thresholds, f.sign, isc, ib)
        vs = layer.values
        if not set(vs.values) <= {-1, 0, 1}:
            raise self.err(f"activation levels {vs.values} are not binary or ternary", node)
        return _Val("act", v.shape, self.emit(layer), u, vs)

    # ------------------------------------------------------------- branches
    def join(self, node: onnx.NodeProto, data: list[str]) -> _Val:
        op = node.op_type
        vals = [self.vals[i] for i in node.input if i in self.vals]
        if op not in ("Add", "Sum", "Concat"):
            raise self.err(f"{op} of two computed tensors is not supported (only a residual "
                           "Add and Concat combine branches)", node)
        for i, v in zip((i for i in node.input if i in self.vals), vals, strict=True):
            if v.kind == "float":
                raise self.err(f"{op} of the unquantized graph input '{i}' with another tensor: "
                               "float activations between layers are not supported", node)
            if v.kind == "acc":
                raise self.err(f"{op} reads '{i}', a float tensor computed from accumulators "
                               "(a float activation between layers); quantize every operand "
                               "before the residual Add/Concat", node)
            if v.pad is not None:
                raise self.err(f"{op} of a padded tensor is not supported", node)
        if op == "Concat":
            return self.concat(node, vals)
        shapes = {v.shape for v in vals}
        if len(shapes) > 1:
            raise self.err(f"{op} of tensors of shapes " + " and ".join(
                f"[N, {', '.join(map(str, s))}]" for s in sorted(shapes)) +
                " (no broadcasting between branches)", node)
        u, ks = self.common_unit(node, [v.scale for v in vals])
        bound = sum(k * (v.values.max_abs if v.values else 1) for k, v in zip(ks, vals,
                                                                            strict=True))
        src = self.emit(Add(tuple(v.src for v in vals), tuple(ks) if set(ks) != {1} else ()))
        chain = (ElementwiseOp("mul", const=np.float32([u])),) if u != 1 else ()
        return _Val("acc", vals[0].shape, src, chain=chain, bound=bound)

    def common_unit(self, node: onnx.NodeProto, scales: list[float]) -> tuple[float, list[int]]:
        """One float unit u and small integers k with scales[i] == k[i] * u exactly."""
        base = min(scales)
        for div in range(1, MAX_ADD_RATIO + 1):
            u = float(np.float32(base / div))
            ks = [round(s / u) for s in scales]
            # Exact in float64 (a float32 times a small integer): s == k * u as real numbers,
            # so the graph's float sum is fl(u * integer sum), what the fold evaluates.
            if all(1 <= k <= MAX_ADD_RATIO * div and k * u == s for k, s in zip(ks, scales,
                                                                                strict=True)):
                return u, ks
        raise self.err(f"operand scales {scales} are not small integer multiples of one unit; "
                       "the residual sum has no exact integer form", node)

    def concat(self, node: onnx.NodeProto, vals: list[_Val]) -> _Val:
        rank = len(vals[0].shape) + 1
        axis = int(attrs(node).get("axis", 1))
        if axis % rank != 1:
            raise self.err(f"Concat along axis {axis}: only the channel axis (1) is supported",
                           node)
        first = vals[0]
        for v in vals[1:]:
            if len(v.shape) != len(first.shape) or v.shape[1:] != first.shape[1:]:
                raise self.err("Concat of mismatched shapes " + " and ".join(
                    f"[N, {', '.join(map(str, w.shape))}]" for w in vals) +
                    " (they must agree beyond the channel axis)", node)
            if v.scale != first.scale:
                raise self.err(f"Concat of tensors quantized with different scales "
                               f"({first.scale} and {v.scale})", node)
        vs: set[int] = set()
        for v in vals:
            assert v.values is not None
            vs.update(v.values.values)
        src = self.emit(Concat(tuple(v.src for v in vals)))
        shape = (sum(v.shape[0] for v in vals), *first.shape[1:])
        return _Val("act", shape, src, first.scale, ValueSet(tuple(sorted(vs))))

    # ------------------------------------------------------------- op parts
    def maxpool(self, node: onnx.NodeProto) -> MaxPool2d:
        a = attrs(node)
        k = tuple(int(v) for v in a.get("kernel_shape", []))
        if len(k) != 2:
            raise self.err("MaxPool needs a 2-D kernel_shape", node)
        s = tuple(int(v) for v in a.get("strides", [1, 1]))
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if any(pads) or a.get("ceil_mode", 0) or any(int(d) != 1 for d in a.get(
                "dilations", [1, 1])) or as_str(a.get("auto_pad", "NOTSET")) not in (
                    "NOTSET", "VALID"):
            raise self.err("MaxPool with padding, ceil_mode or dilation is not supported", node)
        return MaxPool2d((k[0], k[1]), (s[0], s[1]))

    def pooled(self, node: onnx.NodeProto, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 3:
            raise self.err(f"MaxPool needs an NCHW tensor, got [N, {shape}]", node)
        p = self.maxpool(node)
        oh, ow = conv_out_hw(shape[1], shape[2], p.kernel[0], p.kernel[1], p.stride,
                             (0, 0, 0, 0))
        if oh < 1 or ow < 1:
            raise self.err(f"pool kernel {p.kernel} larger than input {shape[1:]}", node)
        return (shape[0], oh, ow)

    def linear(self, node: onnx.NodeProto, v: _Val) -> _Val:
        op = node.op_type
        a = attrs(node)
        if node.input[0] not in self.vals:
            raise self.err("the activation must be the first input", node)
        w = np.asarray(self.const(node.input[1], node, "weight"), np.float32)
        chain: list[ElementwiseOp] = []
        shape = v.shape
        if op in ("MatMul", "Gemm"):
            if len(shape) != 1:
                raise self.err(f"{op} needs a flat input, got [N, {shape}]; add Flatten", node)
            if w.ndim != 2:
                raise self.err(f"weight must be 2-D, got {w.shape}", node)
            if op == "Gemm":
                if a.get("transA", 0):
                    raise self.err("Gemm with transA=1 is not supported", node)
                w = w if a.get("transB", 0) else w.T
            else:
                w = w.T
            # w is now [out, in]
            if w.shape[1] != shape[0]:
                raise self.err(f"shape mismatch: input has {shape[0]} features, weight "
                               f"expects {w.shape[1]}", node)
            if v.pad is not None:
                raise self.err("Pad before a dense layer", node)
        else:
            if len(shape) != 3 or w.ndim != 4:
                raise self.err(f"Conv needs an NCHW input and 4-D weight, got [N, {shape}] "
                               f"and {w.shape}", node)
            if int(a.get("group", 1)) != 1:
                raise self.err("grouped convolution is not supported", node)
            if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
                raise self.err("dilated convolution is not supported", node)
            if as_str(a.get("auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
                raise self.err("auto_pad SAME is not supported; give explicit pads", node)
            if w.shape[1] != shape[0]:
                raise self.err(f"shape mismatch: input has {shape[0]} channels, weight "
                               f"expects {w.shape[1]}", node)
        ints, wscale = self.weight_ints(w, node)
        self.use(v)
        if op == "Conv":
            pads = tuple(int(p) for p in a.get("pads", [0, 0, 0, 0]))
            stride = tuple(int(s) for s in a.get("strides", [1, 1]))
            pad_value = 0
            h, wd = shape[1], shape[2]
            if v.pad is not None:
                (pt, pl, pb, pr), pad_value = v.pad
                if any(pads) and pad_value != 0:
                    raise self.err("Conv pads (value 0) after an explicit Pad of another value",
                                   node)
                h, wd = h - pt - pb, wd - pl - pr
                pads = (pads[0] + pt, pads[1] + pl, pads[2] + pb, pads[3] + pr)
            kh, kw = int(ints.shape[2]), int(ints.shape[3])
            oh, ow = conv_out_hw(h, wd, kh, kw, stride, pads)  # type: ignore[arg-type]
            if oh < 1 or ow < 1:
                raise self.err(f"kernel {(kh, kw)} larger than padded input", node)
            src = self.emit(Conv2d(ints, stride, pads, pad_value))  # type: ignore[arg-type]
            fan_in = int(np.prod(ints.shape[1:]))
            out_shape: tuple[int, ...] = (int(ints.shape[0]), oh, ow)
        else:
            src = self.emit(Dense(ints))
            fan_in = int(ints.shape[1])
            out_shape = (int(ints.shape[0]),)
        assert v.values is not None
        unit = (np.float32(v.scale) * wscale).astype(np.float32)
        if np.all(unit == unit[0]):
            unit = unit[:1]  # one scale for every channel is a scalar
        if not np.all(unit == 1):
            chain.append(ElementwiseOp("mul", const=unit))
        if op == "Gemm":
            alpha = float(a.get("alpha", 1.0))
            beta = float(a.get("beta", 1.0))
            if alpha != 1.0:
                chain.append(ElementwiseOp("mul", const=np.float32([alpha])))
            if len(node.input) > 2 and node.input[2]:
                b = self.channel_vector(self.const(node.input[2], node, "bias C"), out_shape,
                                        node) * np.float32(beta)
                chain.append(ElementwiseOp("add", const=b.astype(np.float32)))
        elif op == "Conv" and len(node.input) > 2 and node.input[2]:
            b = np.asarray(self.const(node.input[2], node, "bias"), np.float32).reshape(-1)
            if b.size != out_shape[0]:
                raise self.err(f"bias has {b.size} values for {out_shape[0]} channels", node)
            chain.append(ElementwiseOp("add", const=b))
        return _Val("acc", out_shape, src, chain=tuple(chain),
                    bound=fan_in * v.values.max_abs)
