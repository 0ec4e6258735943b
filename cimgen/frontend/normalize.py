"""The normalization stage: exported graphs rewritten into the form the strict importer takes.

Each pass is a small named rewrite (``cimgen.frontend.passes``) that reports
what it changed; ``cimgen inspect`` prints the reports. The passes only
rewrite what they recognize and prove equal (a float32 executor computes the
same values before and after); anything else is left for the importer, which
refuses it naming the node, its op type and the reason.

Order matters: constants and shapes first, then the quantizer idioms (Larq's
sign patterns fan out and would block layout moves), then the classifier
tail, then the layout passes, repeated until none applies.
"""

from __future__ import annotations

import onnx

from golden_model.errors import BadInputError

from .graph import OnnxGraph
from .passes import (
    ClassifierTail,
    ComposeLayout,
    ConstantNodes,
    FixBatch,
    FlattenPermutation,
    FoldConstants,
    HoistInputLayout,
    InferShapes,
    LarqSteSign,
    LarqSteTern,
    Pass,
    PassReport,
    QonnxDomains,
    RemoveIdentities,
    ShapeOpsToReshape,
    SinkLayout,
    StaticInputs,
)

PREPARE: tuple[Pass, ...] = (QonnxDomains(), StaticInputs(), ConstantNodes(), FixBatch(),
                             InferShapes(), FoldConstants(), RemoveIdentities(), LarqSteSign(),
                             LarqSteTern(), ClassifierTail(), ShapeOpsToReshape())
LAYOUT: tuple[Pass, ...] = (SinkLayout(), ComposeLayout(), FlattenPermutation(),
                            HoistInputLayout())
MAX_ROUNDS = 20


def _run(p: Pass, g: OnnxGraph, state: dict[str, bool]) -> list[str]:
    if p.needs_shapes and state["stale"]:
        InferShapes().run(g)
        state["stale"] = False
    g.toposort()
    changes = p.run(g)
    if changes and not isinstance(p, InferShapes):
        state["stale"] = True
    return changes


def normalize(model: onnx.ModelProto, source: str = "<model>"
              ) -> tuple[onnx.ModelProto, list[PassReport]]:
    """A normalized copy of ``model`` and, per pass that changed something, its report."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = OnnxGraph(m, source)
    if not g.g.node:
        raise BadInputError("empty graph (no nodes)", where=source)
    reports: dict[str, PassReport] = {}
    state = {"stale": True}

    def record(p: Pass, changes: list[str]) -> None:
        if changes:
            reports.setdefault(p.name, PassReport(p.name)).changes.extend(changes)

    for p in PREPARE:
        changes = _run(p, g, state)
        if isinstance(p, InferShapes):
            state["stale"] = False
        record(p, changes)
    for _ in range(MAX_ROUNDS):
        any_change = False
        for p in LAYOUT:
            changes = _run(p, g, state)
            record(p, changes)
            any_change |= bool(changes)
        if not any_change:
            break
    g.toposort()
    return g.model, list(reports.values())
