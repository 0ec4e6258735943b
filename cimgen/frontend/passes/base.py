"""What every normalization pass shares: its report and the op classes passes reason about."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import onnx

from ..graph import OnnxGraph, attrs, is_quantizer, is_standard

LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Flatten"})
SCALAR_ARITH = frozenset({"Add", "Sub", "Mul", "Div"})


@dataclass
class PassReport:
    """What one pass changed: one entry per change, in graph order."""

    name: str
    changes: list[str] = field(default_factory=list)

    def summary(self, limit: int = 2) -> str:
        shown = "; ".join(self.changes[:limit])
        more = len(self.changes) - limit
        return shown + (f"; and {more} more like it" if more > 0 else "")


class Pass:
    """A graph rewrite. ``run`` edits the graph in place and returns what it changed
    (an empty list: nothing to do). ``needs_shapes``: run shape inference first."""

    name: ClassVar[str] = "pass"
    needs_shapes: ClassVar[bool] = False

    def run(self, g: OnnxGraph) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError


def data_input(g: OnnxGraph, node: onnx.NodeProto) -> str | None:
    """The one non-constant input of ``node`` if all its other inputs are
    constants (None otherwise)."""
    live = [i for i in node.input if i and g.initializer(i) is None]
    return live[0] if len(live) == 1 else None


def is_layout(g: OnnxGraph, node: onnx.NodeProto) -> bool:
    """Reshape to a constant shape, Transpose, Flatten, or a Gather of constant indices
    off the batch axis (cimgen's own export of a permuted input): moves values,
    computes none."""
    if not is_standard(node):
        return False
    if node.op_type == "Gather":
        return len(node.input) > 1 and g.initializer(node.input[1]) is not None and \
            int(attrs(node).get("axis", 0)) != 0
    if node.op_type not in LAYOUT_OPS:
        return False
    if node.op_type == "Reshape":
        return len(node.input) > 1 and g.initializer(node.input[1]) is not None
    return True


def is_pointwise(g: OnnxGraph, node: onnx.NodeProto) -> bool:
    """The same scalar function on every element of its one data input (so it
    commutes with any layout change): Sign, arithmetic with a one-value
    constant, or a quantizer with per-tensor parameters."""
    x = data_input(g, node)
    if x is None:
        return False
    if node.input[0] != x and node.op_type not in ("Add", "Mul"):
        return False  # c - x and c / x: left where they are for the importer to judge
    if is_standard(node):
        if node.op_type == "Sign":
            return True
        if node.op_type in SCALAR_ARITH:
            other = [i for i in node.input if i != x]
            return len(other) == 1 and g.scalar(other[0]) is not None
        return False
    if is_quantizer(node):
        params = [g.const(i) for i in node.input[1:] if i]
        if any(p is None for p in params):
            return False
        if node.op_type == "MultiThreshold":
            t = params[0]
            assert t is not None
            return t.ndim == 2 and t.shape[0] == 1
        return all(p is not None and p.size == 1 for p in params)
    return False


def transpose_perm(node: onnx.NodeProto, rank: int) -> list[int]:
    perm = attrs(node).get("perm")
    return list(perm) if perm is not None else list(range(rank))[::-1]
