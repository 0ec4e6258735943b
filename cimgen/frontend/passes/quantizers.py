"""Sign idioms of Larq (through tf2onnx) rewritten as the QONNX quantizers they equal.

* ``ste_sign``: ``Sign(Sign(x) + c)`` with ``0 < c < 1``. ``Sign(x)`` is -1, 0 or
  +1; adding c gives -1 + c < 0, c > 0 or 1 + c > 0, so the outer Sign is +1
  exactly when x >= 0 (-0.0 included): ``BipolarQuant(x, 1)``.
* ``ste_tern(t)``: ``Sign(Sign(x + t) + Sign(x - t))``. In float32, x + t is 0
  exactly when x == -t, and x - t exactly when x == t, so the sum is 2 (x > t),
  1 (x == t), 0 (-t < x < t), -1 (x == -t) or -2 (x < -t): +1 iff x >= t,
  -1 iff x <= -t (both ends inclusive), else 0. That is a MultiThreshold with
  thresholds (nextafter(-t, +inf), t), out_bias -1: "x >= nextafter(-t)" is
  "x > -t" for every float32 x. Any two offsets work the same way (thresholds
  at their negatives); equal offsets give ``Sign(x - a)``, ternary at a.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..graph import QONNX_DOMAIN, OnnxGraph, is_standard
from .base import Pass

F32 = np.float32


def _only_reader(g: OnnxGraph, tensor: str, reader: onnx.NodeProto,
                 cons: dict[str, list[onnx.NodeProto]]) -> bool:
    users = cons.get(tensor, [])
    return len(users) == 1 and users[0] is reader and tensor not in g.graph_outputs()


def _sign_of(g: OnnxGraph, name: str, prods: dict[str, onnx.NodeProto]) -> onnx.NodeProto | None:
    n = prods.get(name)
    return n if n is not None and n.op_type == "Sign" and is_standard(n) else None


def _replace(g: OnnxGraph, old: list[onnx.NodeProto], new: onnx.NodeProto) -> None:
    """Put ``new`` where the last of ``old`` was and remove ``old``."""
    g.insert_after(old[-1], new)
    for n in old:
        g.remove(n)


class LarqSteSign(Pass):
    """``Sign(Sign(x) + c)``, 0 < c < 1 -> ``BipolarQuant(x, 1)``."""

    name = "LarqSteSign"

    def run(self, g: OnnxGraph) -> list[str]:
        done: list[str] = []
        while True:
            hit = self._find(g)
            if hit is None:
                return done
            outer, add, inner, c = hit
            if not 0 < c < 1:
                raise g.err(f"Sign(Sign(x) + c) with c = {c!r} is not a sign quantizer (Larq's "
                            "ste_sign adds 0 < c < 1)", outer)
            one = g.add_const("ste_sign_scale", np.ones(1, F32))
            q = helper.make_node("BipolarQuant", [inner.input[0], one], [outer.output[0]],
                                 name=outer.name, domain=QONNX_DOMAIN)
            done.append(f"{g.label(inner)} + {g.label(add)} + {g.label(outer)} "
                        f"(Sign(Sign(x) + {float(F32(c)):g})) -> BipolarQuant (+1 iff x >= 0)")
            _replace(g, [inner, add, outer], q)
            g.ensure_qonnx_opset()

    @staticmethod
    def _find(g: OnnxGraph) -> tuple[onnx.NodeProto, onnx.NodeProto, onnx.NodeProto,
                                     float] | None:
        prods, cons = g.producers(), g.consumers()
        for outer in g.g.node:
            if outer.op_type != "Sign" or not is_standard(outer):
                continue
            add = prods.get(outer.input[0])
            if add is None or add.op_type != "Add" or not is_standard(add) or \
                    not _only_reader(g, add.output[0], outer, cons):
                continue
            for k in (0, 1):
                inner = _sign_of(g, add.input[k], prods)
                c = g.scalar(add.input[1 - k])
                if inner is not None and c is not None and \
                        _only_reader(g, inner.output[0], add, cons):
                    return outer, add, inner, c
        return None


class LarqSteTern(Pass):
    """``Sign(Sign(x + a) + Sign(x + b))`` -> MultiThreshold at -a, -b (inclusive ends)."""

    name = "LarqSteTern"

    def run(self, g: OnnxGraph) -> list[str]:
        done: list[str] = []
        while True:
            hit = self._find(g)
            if hit is None:
                return done
            nodes, x, offs = hit
            outer = nodes[-1]
            lo, hi = sorted(F32(-o) for o in offs)
            if lo < hi:
                t = np.array([[np.nextafter(lo, F32(np.inf)), hi]], F32)
                rule = f"+1 iff x >= {float(hi):g}, -1 iff x <= {float(lo):g}, else 0"
            else:  # both Signs flip at the same point: Sign(x - lo)
                t = np.array([[lo, np.nextafter(lo, F32(np.inf))]], F32)
                rule = f"Sign(x - {float(lo):g})"
            tn = g.add_const("ste_tern_thresholds", t)
            q = helper.make_node("MultiThreshold", [x, tn], [outer.output[0]], name=outer.name,
                                 domain=QONNX_DOMAIN, out_dtype="TERNARY", out_scale=1.0,
                                 out_bias=-1.0)
            done.append(f"{g.label(outer)} and its {len(nodes) - 1} inputs (Larq ste_tern) -> "
                        f"MultiThreshold ({rule})")
            _replace(g, nodes, q)
            g.ensure_qonnx_opset()

    @staticmethod
    def _offset(g: OnnxGraph, n: onnx.NodeProto | None) -> tuple[str, float] | None:
        """(x, o) if ``n`` computes x + o with a one-value constant o."""
        if n is None or not is_standard(n) or n.op_type not in ("Add", "Sub"):
            return None
        for k in (0, 1):
            c = g.scalar(n.input[1 - k])
            if c is None or g.initializer(n.input[k]) is not None:
                continue
            if n.op_type == "Add":
                return n.input[k], c
            if k == 0:  # x - c; c - x is not an offset of x
                return n.input[0], -c
        return None

    def _find(self, g: OnnxGraph) -> tuple[list[onnx.NodeProto], str, tuple[float, float]] | None:
        prods, cons = g.producers(), g.consumers()
        for outer in g.g.node:
            if outer.op_type != "Sign" or not is_standard(outer):
                continue
            add = prods.get(outer.input[0])
            if add is None or add.op_type != "Add" or not is_standard(add) or \
                    not _only_reader(g, add.output[0], outer, cons):
                continue
            signs = [_sign_of(g, i, prods) for i in add.input]
            if len(signs) != 2 or signs[0] is None or signs[1] is None or signs[0] is signs[1]:
                continue
            if not all(_only_reader(g, s.output[0], add, cons) for s in signs if s):
                continue
            arms = [prods.get(s.input[0]) for s in signs if s]
            offs = [self._offset(g, a) for a in arms]
            if offs[0] is None or offs[1] is None or offs[0][0] != offs[1][0]:
                continue
            if not all(a is not None and _only_reader(g, a.output[0], s, cons)
                       for a, s in zip(arms, signs, strict=True)):
                continue
            nodes = [a for a in arms if a] + [s for s in signs if s] + [add, outer]
            return nodes, offs[0][0], (offs[0][1], offs[1][1])
        return None
