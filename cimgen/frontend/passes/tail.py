"""Classifier tails: Softmax, LogSoftmax and ArgMax at the graph output are dropped.

They are strictly increasing per row (Softmax, LogSoftmax) or read the ranking
(ArgMax), so the class a model predicts is the argmax of what comes before
them. cimgen's outputs are the integer logits (plus any host-side float ops
between the last linear layer and the tail); predictions are their argmax.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from ..graph import OnnxGraph, attrs, is_standard
from .base import Pass

TAIL_OPS = ("Softmax", "LogSoftmax", "ArgMax")


class ClassifierTail(Pass):
    """Drop Softmax / LogSoftmax / ArgMax producing the graph output."""

    name = "ClassifierTail"
    needs_shapes = True

    def run(self, g: OnnxGraph) -> list[str]:
        done: list[str] = []
        while len(g.g.output) == 1:
            out = g.g.output[0]
            node = g.producers().get(out.name)
            if node is None or not is_standard(node) or node.op_type not in TAIL_OPS:
                break
            x = node.input[0]
            if len(g.consumers().get(x, [])) != 1:
                raise g.err(f"the {node.op_type} input also feeds other nodes; only a "
                            "classifier tail at the graph output is dropped", node)
            shape = g.shape(x)
            rank = len(shape) if shape is not None else 2
            a = attrs(node)
            if node.op_type == "ArgMax":
                axis = int(a.get("axis", 0))
                if int(a.get("select_last_index", 0)):
                    raise g.err("ArgMax with select_last_index=1 breaks ties towards the last "
                                "class; cimgen's argmax takes the first", node)
            else:
                opset = next((o.version for o in g.model.opset_import if o.domain in ("",
                              "ai.onnx")), 13)
                axis = int(a.get("axis", -1 if opset >= 13 else 1))
            if rank != 2 or axis not in (1, -1):
                raise g.err(f"{node.op_type} over axis {axis} of a rank-{rank} tensor is not a "
                            "classifier tail (expected [batch, classes], axis 1)", node)
            label = g.label(node)
            self._retarget(g, out, x, shape)
            g.remove(node)
            done.append(f"dropped {label} at the output: the outputs are the logits "
                        f"'{x}' (the class is their argmax)")
        return done

    @staticmethod
    def _retarget(g: OnnxGraph, out: onnx.ValueInfoProto, x: str,
                  shape: tuple[int, ...] | None) -> None:
        dims: list[int | str | None]
        if shape is not None:
            dims = list(shape)
        else:
            d0 = out.type.tensor_type.shape.dim[0] if out.type.tensor_type.shape.dim else None
            dims = [(d0.dim_value or d0.dim_param) if d0 is not None else None, None]
        new = helper.make_tensor_value_info(x, TensorProto.FLOAT, dims)
        out.CopyFrom(new)
        for vi in list(g.g.value_info):  # a graph output has no separate value info
            if vi.name == x:
                g.g.value_info.remove(vi)
