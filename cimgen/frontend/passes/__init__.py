"""Normalization passes: small named graph rewrites run in front of the strict importer."""

from .base import Pass, PassReport
from .cleanup import (
    ConstantNodes,
    FixBatch,
    FoldConstants,
    InferShapes,
    QonnxDomains,
    RemoveIdentities,
    StaticInputs,
)
from .layout import (
    ComposeLayout,
    FlattenPermutation,
    HoistInputLayout,
    ShapeOpsToReshape,
    SinkLayout,
)
from .quantizers import LarqSteSign, LarqSteTern
from .tail import ClassifierTail

__all__ = ["ClassifierTail", "ComposeLayout", "ConstantNodes", "FixBatch", "FlattenPermutation",
           "FoldConstants", "HoistInputLayout", "InferShapes", "LarqSteSign", "LarqSteTern",
           "Pass", "PassReport", "QonnxDomains", "RemoveIdentities", "ShapeOpsToReshape",
           "SinkLayout", "StaticInputs"]
