"""Reading single ONNX nodes for the importer: constants, quantizers, float ops, weights.

``NodeParser`` holds the model's constants (initializers, Constant nodes and
constant sub-graphs such as weights behind a quantizer, evaluated here) and
turns one node at a time into the golden model's float-op and quantizer
descriptions. Every refusal names the file and the node.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from golden_model.errors import BadInputError
from golden_model.floatops import ROUNDERS, ElementwiseOp, Quantizer

from .graph import QONNX_DOMAINS, QUANT_OPS, as_str, attrs

CONST_EVAL = frozenset({"Transpose", "Identity", "Sign", "Reshape"})


def is_qonnx(node: onnx.NodeProto) -> bool:
    return node.domain in QONNX_DOMAINS and node.op_type in QUANT_OPS | {
        "Trunc", "XnorPopcountMatMul"}


class NodeParser:
    def __init__(self, model: onnx.ModelProto, source: str) -> None:
        self.model = model
        self.src = source
        self.g = model.graph
        self.consts: dict[str, np.ndarray] = {}

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
                a = attrs(node)
                if "value" not in a:
                    raise self.err("only tensor-valued Constant nodes are supported", node)
                self.consts[node.output[0]] = numpy_helper.to_array(a["value"])
            elif ins and all(i in self.consts for i in ins) and (
                    node.op_type in CONST_EVAL or is_qonnx(node)):
                self.consts[node.output[0]] = self.eval_const(node)
            else:
                rest.append(node)
        return rest

    def eval_const(self, node: onnx.NodeProto) -> np.ndarray:
        x = np.asarray(self.consts[node.input[0]], dtype=np.float32)
        a = attrs(node)
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
        a = attrs(node)
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
            rounding = as_str(a.get("rounding_mode", "ROUND")).upper()
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
            layout = as_str(a.get("data_layout", "NCHW"))
            if layout not in ("NCHW", "NC", "NCW", ""):
                raise self.err(f"data_layout '{layout}' is not supported (channels first only)",
                               node)
            return Quantizer("multithreshold", thresholds=t,
                             out_scale=float(a.get("out_scale", 1.0)),
                             out_bias=float(a.get("out_bias", 0.0)))
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

    def check_quant_channels(self, q: Quantizer, shape: tuple[int, ...],
                             node: onnx.NodeProto) -> None:
        c = shape[0]
        for name, arr in (("thresholds", q.thresholds), ("scale", q.scale), ("zeropt", q.zeropt)):
            if arr is not None and np.asarray(arr).shape[0] not in (1, c):
                raise self.err(f"{name} has {np.asarray(arr).shape[0]} channels, the tensor has "
                               f"{c}", node)

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

    def elementwise(self, node: onnx.NodeProto, x_name: str, shape: tuple[int, ...]
                    ) -> ElementwiseOp:
        """A float op on the tensor ``x_name`` of ``shape`` with one constant operand."""
        op = node.op_type
        c = shape[0]
        if op == "BatchNormalization":
            a = attrs(node)
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
            eps = float(a.get("epsilon", 1e-5))
            return ElementwiseOp("bn", bn=params, eps=eps)  # type: ignore[arg-type]
        x_first = node.input[0] == x_name
        other = node.input[1] if x_first else node.input[0]
        cv = self.channel_vector(self.const(other, node, "operand"), shape, node)
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

    # --------------------------------------------------------------- weights
    def weight_ints(self, w: np.ndarray, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray]:
        """Split float weights into int8 {-1,0,+1} and a positive per-output scale.

        Exact or refused: a BatchNorm fused into the weights (Larq) factors only
        when every weight of an output channel is -s, 0 or +s for one s.
        """
        if not np.all(np.isfinite(w)):
            raise self.err("weights contain NaN or infinite values", node)
        flat = w.reshape(w.shape[0], -1)
        m = np.abs(flat).max(axis=1)
        # An all-zero row has no scale of its own; give it another row's so that a
        # common scale stays common.
        m = np.where(m == 0, m.max() if m.max() > 0 else 1, m).astype(np.float32)
        ints = flat / m[:, None]
        bad = ~np.isin(ints, (-1.0, 0.0, 1.0))
        if bad.any():
            o, i = np.argwhere(bad)[0]
            raise self.err(f"weights outside the binary/ternary value set: weight[{o}, {i}] = "
                           f"{float(flat[o, i])!r} is not -s, 0 or +s for the channel scale s = "
                           f"{float(m[o])!r} (a BatchNorm fused into binary weights must leave "
                           "one magnitude per output channel)", node)
        return ints.reshape(w.shape).astype(np.int8), m
