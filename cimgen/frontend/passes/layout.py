"""Shape plumbing: layout ops moved to where the importer can absorb them, or removed.

Pointwise ops (Sign, arithmetic with one constant value, quantizers with
per-tensor parameters) commute with any rearrangement of the elements, so a
Reshape / Transpose / Flatten next to them can move across them without
changing a single float result. The passes use that to

* carry layout ops on the graph input (a flatten, tf2onnx's NHWC reshape)
  up to the input, where the importer folds them into the input stage;
* carry the others down, where a Transpose pair around Larq's sign cancels,
  and a Transpose before a flatten becomes a permutation of the next dense
  layer's weight rows (Larq flattens NHWC tensors in H, W, C order);
* turn Squeeze / Unsqueeze / Flatten(axis > 1) into Reshape.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..graph import OnnxGraph, attrs, is_standard, resolve_reshape
from .base import Pass, data_input, is_layout, is_pointwise, transpose_perm


def _axes(g: OnnxGraph, node: onnx.NodeProto) -> list[int] | None:
    a = attrs(node).get("axes")
    if a is not None:
        return [int(v) for v in a]
    if len(node.input) > 1 and node.input[1]:
        c = g.const(node.input[1])
        return None if c is None else [int(v) for v in c.reshape(-1)]
    return []


def _drop_value_info(g: OnnxGraph, name: str) -> None:
    for vi in list(g.g.value_info):
        if vi.name == name:
            g.g.value_info.remove(vi)


def input_region(g: OnnxGraph) -> set[str]:
    """Tensors computed from the graph input by layout and pointwise ops only."""
    ins = g.graph_inputs()
    region = {ins[0].name} if ins else set()
    for n in g.g.node:
        x = data_input(g, n)
        if x in region and (is_layout(g, n) or is_pointwise(g, n)):
            region.update(o for o in n.output if o)
    return region


class ShapeOpsToReshape(Pass):
    """Squeeze, Unsqueeze and Flatten(axis > 1) -> Reshape to [-1, ...] (batch kept)."""

    name = "ShapeOpsToReshape"
    needs_shapes = True

    def run(self, g: OnnxGraph) -> list[str]:
        done: list[str] = []
        for n in list(g.g.node):
            if not is_standard(n) or n.op_type not in ("Squeeze", "Unsqueeze", "Flatten"):
                continue
            shape = g.shape(n.input[0])
            if shape is None:
                continue  # the importer refuses it, naming the node
            rank = len(shape)
            if n.op_type == "Flatten":
                ax = int(attrs(n).get("axis", 1))
                ax = ax + rank if ax < 0 else ax
                if ax == 1:
                    continue  # a plain flatten: the importer takes it as is
                if ax == 0:
                    raise g.err("Flatten with axis 0 folds the batch into the features", n)
                out = [int(np.prod(shape[1:ax])), int(np.prod(shape[ax:]))]
            else:
                axes = _axes(g, n)
                if axes is None:
                    raise g.err(f"{n.op_type} axes are not a constant", n)
                if n.op_type == "Squeeze":
                    axes = [a + rank if a < 0 else a for a in axes]
                    if 0 in axes:
                        raise g.err("Squeeze removes the batch axis", n)
                    keep = [d for k, d in enumerate(shape) if k and (
                        (k not in axes) if axes else d != 1)]
                    out = keep
                else:
                    r_out = rank + len(axes)
                    axes = sorted(a + r_out if a < 0 else a for a in axes)
                    if 0 in axes:
                        raise g.err("Unsqueeze inserts an axis before the batch", n)
                    dims = list(shape[1:])
                    for a in axes:
                        dims.insert(a - 1, 1)
                    out = dims
            label = g.label(n)
            target = g.add_const(f"{n.name or n.op_type}_shape", np.int64([-1, *out]))
            r = helper.make_node("Reshape", [n.input[0], target], [n.output[0]], name=n.name)
            g.insert_after(n, r)
            g.remove(n)
            done.append(f"{label} -> Reshape [-1, {', '.join(map(str, out))}]")
        return done


class SinkLayout(Pass):
    """A layout op (outside the input region) moves past the pointwise op reading it."""

    name = "SinkLayout"

    def run(self, g: OnnxGraph) -> list[str]:
        done: list[str] = []
        for _ in range(10 * len(g.g.node) + 10):
            hit = self._find(g)
            if hit is None:
                break
            lay, pt, k = hit
            x, y, z = lay.input[0], lay.output[0], pt.output[0]
            t = g.fresh(f"{z}_pre")
            pt.input[k] = x
            pt.output[0] = t
            lay.input[0] = t
            lay.output[0] = z
            g.remove(lay)
            g.insert_after(pt, lay)
            _drop_value_info(g, y)
            done.append(f"{g.label(lay)} moved after {g.label(pt)}")
        return done

    @staticmethod
    def _find(g: OnnxGraph) -> tuple[onnx.NodeProto, onnx.NodeProto, int] | None:
        region = input_region(g)
        cons = g.consumers()
        outs = g.graph_outputs()
        for lay in g.g.node:
            if not is_layout(g, lay) or lay.input[0] in region or lay.output[0] in outs:
                continue
            users = cons.get(lay.output[0], [])
            if len(users) != 1 or not is_pointwise(g, users[0]):
                continue
            pt = users[0]
            if data_input(g, pt) != lay.output[0]:
                continue
            return lay, pt, list(pt.input).index(lay.output[0])
        return None


class HoistInputLayout(Pass):
    """A layout op in the input region moves before the pointwise ops that feed it,
    up to the graph input (the importer folds it into the input stage)."""

    name = "HoistInputLayout"

    def run(self, g: OnnxGraph) -> list[str]:
        done: list[str] = []
        for _ in range(10 * len(g.g.node) + 10):
            hit = self._find(g)
            if hit is None:
                break
            lay, pt, k = hit
            x, u, z = pt.input[k], pt.output[0], lay.output[0]
            t = g.fresh(f"{z}_pre")
            lay.input[0] = x
            lay.output[0] = t
            pt.input[k] = t
            pt.output[0] = z
            g.remove(lay)
            nodes = list(g.g.node)
            g.g.node.insert(nodes.index(pt), lay)
            _drop_value_info(g, u)
            done.append(f"{g.label(lay)} moved before {g.label(pt)}")
        return done

    @staticmethod
    def _find(g: OnnxGraph) -> tuple[onnx.NodeProto, onnx.NodeProto, int] | None:
        region = input_region(g)
        prods, cons = g.producers(), g.consumers()
        outs = g.graph_outputs()
        for lay in g.g.node:
            if not is_layout(g, lay) or lay.input[0] not in region:
                continue
            pt = prods.get(lay.input[0])
            if pt is None or not is_pointwise(g, pt) or pt.output[0] in outs:
                continue
            if len(cons.get(pt.output[0], [])) != 1:
                continue
            x = data_input(g, pt)
            assert x is not None
            return lay, pt, list(pt.input).index(x)
        return None


class ComposeLayout(Pass):
    """Back-to-back Transposes compose (cancel when they invert each other);
    back-to-back Reshapes keep the last; identity layout ops go."""

    name = "ComposeLayout"
    needs_shapes = True

    def run(self, g: OnnxGraph) -> list[str]:
        done: list[str] = []
        changed = True
        while changed:
            changed = False
            prods, cons = g.producers(), g.consumers()
            for n in list(g.g.node):
                if not is_layout(g, n):
                    continue
                prev = prods.get(n.input[0])
                single = prev is not None and len(cons.get(prev.output[0], [])) == 1 and \
                    prev.output[0] not in g.graph_outputs()
                if n.op_type == "Transpose" and single and prev is not None and \
                        prev.op_type == "Transpose" and is_standard(prev):
                    shape = g.shape(prev.input[0])
                    rank = len(shape) if shape is not None else len(attrs(prev).get("perm", []))
                    p1, p2 = transpose_perm(prev, rank), transpose_perm(n, rank)
                    perm = [p1[j] for j in p2]
                    label = f"{g.label(prev)} and {g.label(n)}"
                    n.input[0] = prev.input[0]
                    g.remove(prev)
                    if perm == list(range(len(perm))):
                        g.bypass(n, n.input[0])
                        done.append(f"{label} cancel")
                    else:
                        del n.attribute[:]
                        n.attribute.append(helper.make_attribute("perm", perm))
                        done.append(f"{label} composed to perm {perm}")
                    changed = True
                    break
                if n.op_type == "Reshape" and single and prev is not None and \
                        is_layout(g, prev) and prev.op_type in ("Reshape", "Flatten"):
                    tgt = g.const(n.input[1])
                    if tgt is None or (not attrs(n).get("allowzero", 0) and (tgt == 0).any()):
                        continue
                    label = f"{g.label(prev)} then {g.label(n)}"
                    n.input[0] = prev.input[0]
                    g.remove(prev)
                    done.append(f"{label}: one Reshape")
                    changed = True
                    break
                if self._is_identity(g, n):
                    done.append(f"{g.label(n)} changes nothing: removed")
                    g.bypass(n, n.input[0])
                    changed = True
                    break
        return done

    @staticmethod
    def _is_identity(g: OnnxGraph, n: onnx.NodeProto) -> bool:
        shape = g.shape(n.input[0])
        if n.op_type == "Transpose":
            rank = len(shape) if shape is not None else len(attrs(n).get("perm", []))
            return bool(rank) and transpose_perm(n, rank) == list(range(rank))
        if n.op_type != "Reshape" or shape is None:
            return False
        tgt = g.const(n.input[1])
        assert tgt is not None
        return resolve_reshape(shape, tgt, bool(attrs(n).get("allowzero", 0))) == shape


class FlattenPermutation(Pass):
    """Transpose -> flatten -> MatMul/Gemm with constant weights: the flatten reads the
    untransposed tensor and the weight rows are permuted to match."""

    name = "FlattenPermutation"
    needs_shapes = True

    def run(self, g: OnnxGraph) -> list[str]:
        done: list[str] = []
        while True:
            hit = self._find(g)
            if hit is None:
                return done
            tr, fl, mm, w_name, k_axis, idx = hit
            w = g.const(w_name)
            assert w is not None
            inv = np.argsort(idx)
            w2 = np.take(w, inv, axis=k_axis)
            if len(g.consumers().get(w_name, [])) > 1:
                new = g.add_const(f"{w_name}_perm", w2)
                mm.input[1] = new
            else:
                g.set_const(w_name, w2)
            fl.input[0] = tr.input[0]
            label = g.label(tr)
            g.remove(tr)
            done.append(f"{label} before the flatten {g.label(fl)} folded into the weight rows "
                        f"of {g.label(mm)}")

    @staticmethod
    def _find(g: OnnxGraph) -> tuple[onnx.NodeProto, onnx.NodeProto, onnx.NodeProto, str, int,
                                     np.ndarray] | None:
        prods, cons = g.producers(), g.consumers()
        outs = g.graph_outputs()
        for fl in g.g.node:
            if not is_layout(g, fl) or fl.op_type not in ("Reshape", "Flatten"):
                continue
            tr = prods.get(fl.input[0])
            if tr is None or tr.op_type != "Transpose" or not is_standard(tr):
                continue
            if len(cons.get(tr.output[0], [])) != 1 or tr.output[0] in outs:
                continue
            shape = g.shape(tr.input[0])
            if shape is None or len(shape) < 2:
                continue
            perm = transpose_perm(tr, len(shape))
            if perm[0] != 0:
                continue
            t_shape = tuple(shape[p] for p in perm)
            if fl.op_type == "Flatten":
                if int(attrs(fl).get("axis", 1)) != 1:
                    continue
            else:
                tgt = g.const(fl.input[1])
                assert tgt is not None
                res = resolve_reshape(t_shape, tgt, bool(attrs(fl).get("allowzero", 0)))
                if res is None or res != (t_shape[0], int(np.prod(t_shape[1:]))):
                    continue
            users = cons.get(fl.output[0], [])
            if len(users) != 1 or fl.output[0] in outs:
                continue
            mm = users[0]
            if not is_standard(mm) or mm.op_type not in ("MatMul", "Gemm") or \
                    mm.input[0] != fl.output[0]:
                continue
            w = g.const(mm.input[1])
            if w is None or w.ndim != 2:
                continue
            k_axis = 1 if mm.op_type == "Gemm" and attrs(mm).get("transB", 0) else 0
            if mm.op_type == "Gemm" and attrs(mm).get("transA", 0):
                continue
            k = int(np.prod(shape[1:]))
            if w.shape[k_axis] != k:
                continue
            inner = [p - 1 for p in perm[1:]]
            idx = np.arange(k).reshape(shape[1:]).transpose(inner).reshape(-1)
            return tr, fl, mm, mm.input[1], k_axis, idx
        return None
