"""A small mutable view of an ONNX graph for the normalization passes.

Passes rewrite ``onnx.ModelProto`` graphs in place through this view: who
produces and who consumes a tensor, constant values, inferred shapes, fresh
names. Maps are rebuilt on demand (graphs here have at most a few hundred
nodes), so a pass never sees a stale index after an edit.
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from golden_model.errors import BadInputError

QONNX_DOMAIN = "qonnx.custom_op.general"
QONNX_DOMAINS = frozenset({QONNX_DOMAIN, "finn", "finn.custom_op.general", "onnx.brevitas"})
QUANT_OPS = frozenset({"BipolarQuant", "Quant", "IntQuant", "MultiThreshold"})
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def as_str(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def is_standard(node: onnx.NodeProto) -> bool:
    return node.domain in STANDARD_DOMAINS


def is_quantizer(node: onnx.NodeProto) -> bool:
    return node.domain in QONNX_DOMAINS and node.op_type in QUANT_OPS


class OnnxGraph:
    """The graph of ``model`` plus the helpers passes need; ``source`` names the file."""

    def __init__(self, model: onnx.ModelProto, source: str) -> None:
        self.model = model
        self.source = source
        self._const_cache: dict[str, tuple[int, np.ndarray]] = {}
        self._n = 0

    @property
    def g(self) -> onnx.GraphProto:
        return self.model.graph

    # ------------------------------------------------------------ messages
    def label(self, node: onnx.NodeProto) -> str:
        name = node.name or f"#{list(self.g.node).index(node)}"
        return f"'{name}' ({node.op_type})"

    def err(self, msg: str, node: onnx.NodeProto | None = None) -> BadInputError:
        if node is None:
            return BadInputError(msg, where=self.source)
        name = node.name or f"#{list(self.g.node).index(node)}"
        return BadInputError(msg, where=f"{self.source}: node '{name}' ({node.op_type})")

    # ------------------------------------------------------------- structure
    def producers(self) -> dict[str, onnx.NodeProto]:
        return {o: n for n in self.g.node for o in n.output if o}

    def consumers(self) -> dict[str, list[onnx.NodeProto]]:
        out: dict[str, list[onnx.NodeProto]] = {}
        for n in self.g.node:
            for i in n.input:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def graph_outputs(self) -> set[str]:
        return {o.name for o in self.g.output}

    def graph_inputs(self) -> list[onnx.ValueInfoProto]:
        inits = {t.name for t in self.g.initializer}
        return [i for i in self.g.input if i.name not in inits]

    # ------------------------------------------------------------- constants
    def initializer(self, name: str) -> onnx.TensorProto | None:
        for t in self.g.initializer:
            if t.name == name:
                return t
        return None

    def const(self, name: str) -> np.ndarray | None:
        """The value of an initializer (None if ``name`` is not one)."""
        t = self.initializer(name)
        if t is None:
            return None
        hit = self._const_cache.get(name)
        if hit is not None and hit[0] == id(t):
            return hit[1]
        try:
            a = numpy_helper.to_array(t)
        except Exception as e:
            raise self.err(f"initializer '{name}' cannot be read: {e}") from None
        self._const_cache[name] = (id(t), a)
        return a

    def scalar(self, name: str) -> float | None:
        """The value of a constant holding one number (any shape), else None."""
        a = self.const(name)
        if a is None or a.size != 1 or a.dtype.kind not in "fiu":
            return None
        return float(a.reshape(-1)[0])

    def fresh(self, stem: str) -> str:
        taken = {t.name for t in self.g.initializer} | {o for n in self.g.node for o in n.output}
        taken |= {i.name for i in self.g.input} | {o.name for o in self.g.output}
        stem = stem.split("__n")[0]
        while True:
            self._n += 1
            name = f"{stem}__n{self._n}"
            if name not in taken:
                return name

    def add_const(self, stem: str, arr: np.ndarray) -> str:
        name = self.fresh(stem)
        self.g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def set_const(self, name: str, arr: np.ndarray) -> None:
        t = self.initializer(name)
        assert t is not None
        t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr), name))

    # ---------------------------------------------------------------- shapes
    def shape(self, name: str) -> tuple[int, ...] | None:
        """Static shape of a tensor from the graph's value infos (None if unknown)."""
        for vi in (*self.g.input, *self.g.output, *self.g.value_info):
            if vi.name != name:
                continue
            tt = vi.type.tensor_type
            if not tt.HasField("shape"):
                return None
            dims = []
            for d in tt.shape.dim:
                if not d.HasField("dim_value"):
                    return None
                dims.append(int(d.dim_value))
            return tuple(dims)
        a = self.const(name)
        return None if a is None else tuple(a.shape)

    def drop_shapes(self) -> None:
        """Forget inferred shapes (a pass changed tensors' shapes)."""
        del self.g.value_info[:]

    # ----------------------------------------------------------------- edits
    def remove(self, node: onnx.NodeProto) -> None:
        self.g.node.remove(node)

    def bypass(self, node: onnx.NodeProto, data_input: str) -> None:
        """Remove ``node``, whose output equals ``data_input``: its readers read
        ``data_input``; a graph output keeps its name (the producer is renamed)."""
        out = node.output[0]
        if out in self.graph_outputs():
            prod = self.producers().get(data_input)
            others = [n for n in self.consumers().get(data_input, []) if n is not node]
            if prod is None or others or data_input in self.graph_outputs():
                raise self.err("cannot remove this node: its input is also read elsewhere and "
                               "its output is the graph output", node)
            idx = list(prod.output).index(data_input)
            prod.output[idx] = out
            self.remove(node)
            return
        for n in self.g.node:
            for k, i in enumerate(n.input):
                if i == out:
                    n.input[k] = data_input
        self.remove(node)

    def insert_after(self, anchor: onnx.NodeProto, node: onnx.NodeProto) -> None:
        nodes = list(self.g.node)
        self.g.node.insert(nodes.index(anchor) + 1, node)

    def ensure_qonnx_opset(self) -> None:
        if not any(o.domain == QONNX_DOMAIN for o in self.model.opset_import):
            self.model.opset_import.append(onnx.helper.make_opsetid(QONNX_DOMAIN, 1))

    def toposort(self) -> None:
        """Order nodes topologically, keeping the file's order where it is free."""
        nodes = list(self.g.node)
        prod = {o: k for k, n in enumerate(nodes) for o in n.output if o}
        users: list[list[int]] = [[] for _ in nodes]
        indeg = [0] * len(nodes)
        for k, n in enumerate(nodes):
            for p in {prod[i] for i in n.input if i in prod}:
                users[p].append(k)
                indeg[k] += 1
        ready = [k for k in range(len(nodes)) if indeg[k] == 0]
        heapq.heapify(ready)
        order: list[int] = []
        while ready:
            k = heapq.heappop(ready)
            order.append(k)
            for u in users[k]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) < len(nodes):
            stuck = next(k for k in range(len(nodes)) if indeg[k] > 0)
            raise self.err("the graph has a cycle", nodes[stuck])
        if order != list(range(len(nodes))):
            kept = [onnx.NodeProto() for _ in order]
            for c, k in zip(kept, order, strict=True):
                c.CopyFrom(nodes[k])
            del self.g.node[:]
            self.g.node.extend(kept)


def resolve_reshape(in_shape: tuple[int, ...], target: np.ndarray | list[int],
                    allowzero: bool) -> tuple[int, ...] | None:
    """The output shape of ONNX Reshape (0 copies a dimension unless allowzero, -1 is
    inferred), or None when the target does not fit the input."""
    out: list[int] = []
    for k, t in enumerate(int(v) for v in np.asarray(target).reshape(-1)):
        if t == 0 and not allowzero:
            if k >= len(in_shape):
                return None
            out.append(int(in_shape[k]))
        else:
            out.append(t)
    n = int(np.prod(in_shape))
    if out.count(-1) > 1 or any(d < -1 for d in out):
        return None
    if -1 in out:
        rest = int(np.prod([d for d in out if d != -1]))
        if rest <= 0 or n % rest:
            return None
        out[out.index(-1)] = n // rest
    return tuple(out) if int(np.prod(out)) == n else None
