"""Independent ONNX executors for cross-checking cimgen's reference inference.

Nothing here imports ``cimgen`` or ``golden_model``: the point is to run the
same ONNX file through code that shares no logic with the importer.

(a) ``run_reference_evaluator``: ``onnx.reference.ReferenceEvaluator`` with
    the QONNX custom ops (BipolarQuant, Quant, IntQuant, MultiThreshold)
    written below in plain float math from the QONNX operator definitions.
    ReferenceEvaluator looks custom ops up by ``(cls.op_domain, cls.__name__)``
    and only for domains the model declares in ``opset_import``, so one class
    is generated per (op, domain spelling) and missing domains are declared.
(b) ``run_qonnx``: qonnx's own ``execute_onnx`` on a ``ModelWrapper`` (custom
    ops run through qonnx, standard ops node by node through onnxruntime).
(c) ``run_onnxruntime``: onnxruntime's CPU provider (standard ops only), for
    the plain-ONNX export.
(d) ``run_tensors``: (b) or (c) returning any intermediate tensors by name.

Every executor takes a ``ModelProto`` with one float32 input and one output
and returns that output as a numpy array. ``as_int64`` turns a float output
that must hold integers into int64, refusing anything non-integral.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, ClassVar
from unittest import mock

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

QONNX_DOMAINS: tuple[str, ...] = (
    "qonnx.custom_op.general",
    "finn",
    "finn.custom_op.general",
    "onnx.brevitas",
)
# IR version 10 (onnx 1.16) is accepted by every onnxruntime this project supports.
ORT_MAX_IR_VERSION = 10

# --------------------------------------------------------------------------
# QONNX custom ops as OpRun subclasses (plain float math, from the spec)
# --------------------------------------------------------------------------


def _text(v: Any, default: str) -> str:
    if v is None:
        return default
    if isinstance(v, bytes):
        return v.decode()
    return str(v)


def _round_half_up(y: np.ndarray) -> np.ndarray:
    return np.sign(y) * np.floor(np.abs(y) + 0.5)


def _round_half_down(y: np.ndarray) -> np.ndarray:
    return np.sign(y) * np.ceil(np.abs(y) - 0.5)


def _round_up(y: np.ndarray) -> np.ndarray:
    return np.sign(y) * np.ceil(np.abs(y))


_ROUNDING = {
    "ROUND": np.round,  # numpy rounds half to even, as the QONNX spec says
    "HALF_EVEN": np.round,
    "CEIL": np.ceil,
    "FLOOR": np.floor,
    "DOWN": np.trunc,
    "UP": _round_up,
    "HALF_UP": _round_half_up,
    "HALF_DOWN": _round_half_down,
}


class _BipolarQuantBase(OpRun):
    """BipolarQuant(X, scale): +scale where X >= 0, else -scale (0 -> +1)."""

    op_domain: ClassVar[str] = ""

    def _run(self, x: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray]:
        x = np.asarray(x, np.float32)
        s = np.asarray(scale, np.float32)
        y = np.where(x >= np.float32(0), np.float32(1), np.float32(-1)) * s
        return (y.astype(np.float32),)


class _IntQuantBase(OpRun):
    """IntQuant / Quant(X, scale, zeropt, bitwidth), attributes signed, narrow,
    rounding_mode: q = round(clip(X / scale + zeropt, min, max)); out = (q - zeropt) * scale.
    min/max: signed [-2^(b-1) + narrow, 2^(b-1) - 1], unsigned [0, 2^b - 1 - narrow].
    A 1-bit signed quantizer is bipolar (y >= 0 -> +1, else -1), as in qonnx.
    """

    op_domain: ClassVar[str] = ""

    def _run(self, x: np.ndarray, scale: np.ndarray, zeropt: np.ndarray, bitwidth: np.ndarray,
             signed: int | None = None, narrow: int | None = None,
             rounding_mode: str | bytes | None = None) -> tuple[np.ndarray]:
        f32 = np.float32
        s = np.asarray(scale, f32)
        z = np.asarray(zeropt, f32)
        b = int(np.asarray(bitwidth).reshape(-1)[0])
        sgn = bool(1 if signed is None else signed)
        nar = bool(0 if narrow is None else narrow)
        y = (np.asarray(x, f32) / s).astype(f32)
        y = (y + z).astype(f32)
        if b == 1 and sgn:
            q = np.where(y >= f32(0), f32(1), f32(-1))
        else:
            if sgn:
                lo = -(2 ** (b - 1)) + (1 if nar else 0)
                hi = 2 ** (b - 1) - 1
            else:
                lo = 0
                hi = 2**b - 1 - (1 if nar else 0)
            y = np.minimum(np.maximum(y, f32(lo)), f32(hi))
            q = _ROUNDING[_text(rounding_mode, "ROUND").upper()](y).astype(f32)
        return (((q - z) * s).astype(f32),)


class _MultiThresholdBase(OpRun):
    """MultiThreshold(X, thresholds[C or 1, B]): out_scale * #{b : x >= t[c, b]} + out_bias,
    channel axis from data_layout ('C' position, default 1)."""

    op_domain: ClassVar[str] = ""

    def _run(self, x: np.ndarray, thresholds: np.ndarray, out_dtype: str | bytes | None = None,
             out_scale: float | None = None, out_bias: float | None = None,
             data_layout: str | bytes | None = None) -> tuple[np.ndarray]:
        x = np.asarray(x, np.float32)
        t = np.asarray(thresholds, np.float32)
        layout = _text(data_layout, "")
        axis = layout.index("C") if "C" in layout else 1
        xc = np.moveaxis(x, axis, -1)  # [..., C]
        c = xc.shape[-1]
        tt = np.broadcast_to(t, (c, t.shape[1])) if t.shape[0] == 1 else t
        count = np.zeros(xc.shape, np.float32)
        for k in range(tt.shape[1]):
            count += (xc >= tt[:, k]).astype(np.float32)
        scale = np.float32(1.0 if out_scale is None else out_scale)
        bias = np.float32(0.0 if out_bias is None else out_bias)
        y = scale * count + bias
        return (np.moveaxis(y, -1, axis).astype(np.float32),)


def _make_custom_ops() -> list[type[OpRun]]:
    ops: list[type[OpRun]] = []
    bases: dict[str, type[OpRun]] = {
        "BipolarQuant": _BipolarQuantBase,
        "IntQuant": _IntQuantBase,
        "Quant": _IntQuantBase,
        "MultiThreshold": _MultiThresholdBase,
    }
    for domain in QONNX_DOMAINS:
        for name, base in bases.items():
            # ReferenceEvaluator keys custom ops by (op_domain, class __name__).
            ops.append(type(name, (base,), {"op_domain": domain}))
    return ops


CUSTOM_OPS: list[type[OpRun]] = _make_custom_ops()


def _declare_domains(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose opset_import names every domain its nodes use."""
    m = copy.deepcopy(model)
    have = {o.domain for o in m.opset_import}
    for node in m.graph.node:
        if node.domain not in have and node.domain not in ("", "ai.onnx"):
            m.opset_import.append(helper.make_opsetid(node.domain, 1))
            have.add(node.domain)
    return m


def _single_io(model: onnx.ModelProto) -> tuple[str, str]:
    inits = {i.name for i in model.graph.initializer}
    ins = [i.name for i in model.graph.input if i.name not in inits]
    assert len(ins) == 1, f"expected one graph input, got {ins}"
    assert len(model.graph.output) == 1, "expected one graph output"
    return ins[0], model.graph.output[0].name


def run_reference_evaluator(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """(a) onnx's pure-python ReferenceEvaluator with the QONNX ops above."""
    m = _declare_domains(model)
    inp, _ = _single_io(m)
    sess = ReferenceEvaluator(m, new_ops=CUSTOM_OPS)
    return np.asarray(sess.run(None, {inp: np.asarray(x, np.float32)})[0])


def run_qonnx(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """(b) qonnx's execute_onnx; the batch dimension is fixed to len(x) for shape inference."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    m = _declare_domains(model)
    inp, out = _single_io(m)
    n = int(x.shape[0])
    for vi in [*m.graph.input, *m.graph.output]:
        if vi.name in (inp, out):
            d0 = vi.type.tensor_type.shape.dim[0]
            d0.Clear()
            d0.dim_value = n
    del m.graph.value_info[:]
    import qonnx.core.onnx_exec as qexec

    make_model = qexec.qonnx_make_model

    def make_model_for_ort(graph: onnx.GraphProto, **kwargs: Any) -> onnx.ModelProto:
        # qonnx runs standard nodes in onnxruntime through single-node models that
        # get onnx's newest IR version, which this onnxruntime may not accept yet.
        node_model = make_model(graph, **kwargs)
        node_model.ir_version = min(node_model.ir_version, ORT_MAX_IR_VERSION)
        return node_model

    with warnings.catch_warnings(), mock.patch.object(qexec, "qonnx_make_model",
                                                      make_model_for_ort):
        warnings.simplefilter("ignore")  # old-style domain notices, shape notices
        w = ModelWrapper(m)
        w = w.transform(InferShapes())
        res = execute_onnx(w, {inp: np.asarray(x, np.float32)})
    return np.asarray(res[out])


def run_onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """(c) onnxruntime CPU (standard ONNX ops only)."""
    import onnxruntime as ort

    inp, _ = _single_io(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {inp: np.asarray(x, np.float32)})[0])


def ort_session(model: onnx.ModelProto) -> Any:
    """An onnxruntime CPU session (for benchmarks that reuse one session)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def as_int64(y: np.ndarray, what: str = "output") -> np.ndarray:
    """Float executor output -> int64, after checking every value is a finite integer."""
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    assert np.all(np.isfinite(y)), f"{what}: non-finite values"
    assert np.all(y == np.round(y)), (
        f"{what}: non-integral values, e.g. {y[y != np.round(y)][:5].tolist()}")
    assert np.all(np.abs(y) < 2**53), f"{what}: values too large to be exact"
    return y.astype(np.int64)


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs are ``names`` (any tensors of the graph)."""
    m = copy.deepcopy(model)
    del m.graph.output[:]
    m.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                          for n in names)
    return m


def run_tensors(model: onnx.ModelProto, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The values of the tensors ``names`` on input ``x``: qonnx's executor for graphs
    with QONNX ops (its full execution context), onnxruntime for plain ONNX."""
    if any(n.domain in QONNX_DOMAINS for n in model.graph.node):
        import qonnx.core.onnx_exec as qexec
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.transformation.infer_shapes import InferShapes

        m = _declare_domains(model)
        inp, _ = _single_io(m)
        for vi in m.graph.input:
            if vi.name == inp:
                d0 = vi.type.tensor_type.shape.dim[0]
                d0.Clear()
                d0.dim_value = int(x.shape[0])
        del m.graph.value_info[:]
        make_model = qexec.qonnx_make_model

        def make_model_for_ort(graph: onnx.GraphProto, **kwargs: Any) -> onnx.ModelProto:
            node_model = make_model(graph, **kwargs)
            node_model.ir_version = min(node_model.ir_version, ORT_MAX_IR_VERSION)
            return node_model

        with warnings.catch_warnings(), mock.patch.object(qexec, "qonnx_make_model",
                                                          make_model_for_ort):
            warnings.simplefilter("ignore")
            w = ModelWrapper(m).transform(InferShapes())
            ctx = execute_onnx(w, {inp: np.asarray(x, np.float32)},
                               return_full_exec_context=True)
        return {n: np.asarray(ctx[n]) for n in names}
    import onnxruntime as ort

    m = _with_outputs(model, names)
    inp, _ = _single_io(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    outs = sess.run(names, {inp: np.asarray(x, np.float32)})
    return {n: np.asarray(v) for n, v in zip(names, outs, strict=True)}
