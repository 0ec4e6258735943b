"""Generic clean-up: op domains, static inputs, constants, batch, shapes, identities.

Where qonnx has the transformation (``RemoveStaticGraphInputs``,
``InferShapes``, ``FoldConstants``) it is used as is, applied in place.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from ..graph import QONNX_DOMAIN, QONNX_DOMAINS, OnnxGraph, attrs, is_standard
from .base import Pass

# Quantizers are never folded on constants here: the importer evaluates weight
# quantizers itself (and names them in its messages).
NO_FOLD = frozenset({"BipolarQuant", "Quant", "IntQuant", "MultiThreshold", "Trunc"})


def _qonnx_apply(g: OnnxGraph, transformation: Any) -> None:
    """Run a qonnx transformation to its fixed point without the deep copy that
    ``ModelWrapper.transform`` makes at every step."""
    from qonnx.core.modelwrapper import ModelWrapper

    w = ModelWrapper(g.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while True:
            w, again = transformation.apply(w)
            if not again:
                break
    g.model = w.model


class QonnxDomains(Pass):
    """Old QONNX domain spellings (finn, onnx.brevitas) -> qonnx.custom_op.general."""

    name = "QonnxDomains"

    def run(self, g: OnnxGraph) -> list[str]:
        moved: dict[str, int] = {}
        for n in g.g.node:
            if n.domain in QONNX_DOMAINS and n.domain != QONNX_DOMAIN:
                moved[n.domain] = moved.get(n.domain, 0) + 1
                n.domain = QONNX_DOMAIN
        if moved:
            g.ensure_qonnx_opset()
        return [f"{k} node(s) from domain '{d}' to '{QONNX_DOMAIN}'" for d, k in moved.items()]


class StaticInputs(Pass):
    """Initializers that are also listed as graph inputs (Brevitas keeps them
    there) become plain initializers: qonnx ``RemoveStaticGraphInputs``."""

    name = "StaticInputs"

    def run(self, g: OnnxGraph) -> list[str]:
        from qonnx.transformation.general import RemoveStaticGraphInputs

        inits = {t.name for t in g.g.initializer}
        n = sum(1 for i in g.g.input if i.name in inits)
        if n == 0:
            return []
        _qonnx_apply(g, RemoveStaticGraphInputs())
        return [f"{n} initializer(s) removed from the graph inputs"]


class ConstantNodes(Pass):
    """Constant nodes become initializers."""

    name = "ConstantNodes"

    def run(self, g: OnnxGraph) -> list[str]:
        done: list[str] = []
        for n in list(g.g.node):
            if n.op_type != "Constant" or not is_standard(n):
                continue
            a = attrs(n)
            if "value" in a:
                arr = onnx.numpy_helper.to_array(a["value"])
            elif "value_float" in a or "value_int" in a:
                arr = np.asarray(a.get("value_float", a.get("value_int")),
                                 np.float32 if "value_float" in a else np.int64)
            elif "value_floats" in a or "value_ints" in a:
                arr = np.asarray(a.get("value_floats", a.get("value_ints")),
                                 np.float32 if "value_floats" in a else np.int64)
            else:
                raise g.err("only numeric Constant nodes are supported (found "
                            f"{', '.join(sorted(a))})", n)
            g.g.initializer.append(onnx.numpy_helper.from_array(np.asarray(arr), n.output[0]))
            done.append(g.label(n))
            g.remove(n)
        return [f"{len(done)} Constant node(s) to initializers: {', '.join(done)}"] if done else []


class FixBatch(Pass):
    """A symbolic batch dimension (Larq/tf2onnx: 'unk__7') is set to 1 so that shape
    inference and constant folding see static shapes. cimgen treats axis 0 as the
    batch everywhere and runs any batch size; every other dimension must be static."""

    name = "FixBatch"

    def run(self, g: OnnxGraph) -> list[str]:
        ins = g.graph_inputs()
        if len(ins) != 1:
            raise g.err(f"expected exactly one graph input, found {len(ins)}"
                        + (f" ({', '.join(repr(i.name) for i in ins)})" if ins else ""))
        vi = ins[0]
        tt = vi.type.tensor_type
        if tt.elem_type != TensorProto.FLOAT:
            raise g.err(f"graph input '{vi.name}' must be float32, it is "
                        f"{TensorProto.DataType.Name(tt.elem_type)}")
        if not tt.HasField("shape") or len(tt.shape.dim) < 2:
            raise g.err(f"graph input '{vi.name}' needs a static shape [batch, ...]")
        for ax, d in enumerate(tt.shape.dim):
            if ax and (not d.HasField("dim_value") or d.dim_value <= 0):
                label = d.dim_param or "?"
                raise g.err(f"graph input '{vi.name}' has a dynamic dimension '{label}' at "
                            f"axis {ax}; only the batch dimension may be dynamic")
        changes: list[str] = []
        for v in (vi, *g.g.output):
            shp = v.type.tensor_type.shape
            if not v.type.tensor_type.HasField("shape") or not shp.dim:
                continue
            d0 = shp.dim[0]
            if d0.HasField("dim_value") and d0.dim_value > 0:
                continue
            label = d0.dim_param or "?"
            d0.Clear()
            d0.dim_value = 1
            if v is vi:
                changes.append(f"batch dimension '{label}' of input '{vi.name}' set to 1 for "
                               "shape inference (cimgen takes any batch)")
        if changes:
            g.drop_shapes()  # inferred again with the static batch
        return changes


class InferShapes(Pass):
    """qonnx ``InferShapes`` (ONNX shape inference with QONNX ops hidden)."""

    name = "InferShapes"

    def run(self, g: OnnxGraph) -> list[str]:
        from qonnx.transformation.infer_shapes import InferShapes as QInferShapes

        before = {v.name for v in g.g.value_info}
        try:
            _qonnx_apply(g, QInferShapes())
        except Exception as e:  # a malformed graph: the importer says where
            return [f"shape inference failed ({type(e).__name__}: {str(e).splitlines()[0]}); "
                    "the importer checks shapes itself"]
        new = len({v.name for v in g.g.value_info} - before)
        return [f"shapes of {new} tensor(s) inferred"] if new else []


class FoldConstants(Pass):
    """Nodes whose inputs are all constant become initializers (qonnx
    ``FoldConstants``; quantizers excluded: the importer evaluates weight quantizers)."""

    name = "FoldConstants"

    def run(self, g: OnnxGraph) -> list[str]:
        from qonnx.transformation.fold_constants import FoldConstants as QFold

        inits = {t.name for t in g.g.initializer}
        cands = [n for n in g.g.node if n.op_type not in NO_FOLD and n.op_type != "Constant"
                 and n.input and all(i in inits for i in n.input if i)]
        shape_of = [n for n in g.g.node if n.op_type == "Shape" and is_standard(n)]
        if not cands and not shape_of:
            return []
        names_before = {g.label(n) for n in g.g.node}
        try:
            _qonnx_apply(g, QFold(exclude_op_types=sorted(NO_FOLD)))
        except Exception as e:  # executing a node failed: say which
            raise g.err(f"constant folding failed: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}") from None
        gone = sorted(names_before - {g.label(n) for n in g.g.node})
        return [f"{len(gone)} node(s) with constant inputs folded: {', '.join(gone)}"] if gone \
            else []


class RemoveIdentities(Pass):
    """Identity, inference-mode Dropout and float-to-float Cast pass their input
    through: removed."""

    name = "RemoveIdentities"

    def run(self, g: OnnxGraph) -> list[str]:
        done: list[str] = []
        for n in list(g.g.node):
            if not is_standard(n) or not n.input or not n.input[0]:
                continue
            if n.op_type == "Identity":
                pass
            elif n.op_type == "Dropout":
                if len(n.output) > 1 and n.output[1] and g.consumers().get(n.output[1]):
                    continue  # its mask is used: not an identity
                if len(n.input) > 2 and n.input[2]:
                    mode = g.const(n.input[2])
                    if mode is None or bool(np.asarray(mode).reshape(-1)[0]):
                        continue
            elif n.op_type == "Cast":
                if attrs(n).get("to") != TensorProto.FLOAT or not self._is_float(g, n.input[0]):
                    continue
            else:
                continue
            done.append(g.label(n))
            g.bypass(n, n.input[0])
        return [f"removed {', '.join(done)}"] if done else []

    @staticmethod
    def _is_float(g: OnnxGraph, name: str) -> bool:
        for vi in (*g.g.input, *g.g.value_info, *g.g.output):
            if vi.name == name:
                return bool(vi.type.tensor_type.elem_type == TensorProto.FLOAT)
        t = g.initializer(name)
        return t is not None and t.data_type == TensorProto.FLOAT
