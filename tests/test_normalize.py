"""Normalization passes and branch import on small hand-built graphs (onnx.helper).

Each graph is written node by node the way an exporter writes it. For each,
the pass under test must report its change, and three computations must
agree exactly, on inputs that include the boundary cases (ste_tern at exactly
+-t, Sign at 0 and -0.0, -0.0 out of a Quant, values one ulp from a tie):

* an independent executor on the graph as written (onnxruntime for plain
  ONNX, qonnx's executor when QONNX ops are present),
* the same executor on the normalized graph (the passes change no value),
* cimgen's reference inference on the imported network (and, for branches,
  onnxruntime on cimgen's plain-ONNX export of it).

Random weights come from ``SEED`` (printed in failure messages).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest
from executors import as_int64, run_onnxruntime, run_qonnx, run_tensors
from onnx import TensorProto, helper, numpy_helper

from cimgen.frontend.normalize import normalize
from cimgen.frontend.onnx_export import to_plain_onnx, to_qonnx
from cimgen.frontend.onnx_import import import_model, import_model_report, import_strict
from golden_model.errors import BadInputError
from golden_model.floatops import Quantizer
from golden_model.ir import (
    Add,
    Concat,
    Dense,
    Flatten,
    InputStage,
    Network,
    Tap,
    Threshold,
    analyze,
)
from golden_model.reference import forward_int, infer, predict, quantize_input, scores

QD = "qonnx.custom_op.general"
SEED = 4242
F32 = np.float32


class G:
    """A graph under construction."""

    def __init__(self, seed: int = SEED) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0
        self.rng = np.random.default_rng(seed)

    def c(self, a: Any, dtype: type[np.generic] = np.float32) -> str:
        self.n += 1
        name = f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(a, dtype), name))
        return name

    def op(self, op: str, inputs: list[str], domain: str = "", name: str | None = None,
           **kw: Any) -> str:
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or f"{op}_{self.n}",
                                           domain=domain, **kw))
        return out

    def bq(self, x: str, scale: float = 1.0) -> str:
        return self.op("BipolarQuant", [x, self.c(F32(scale))], QD)

    def tq(self, x: str, scale: float = 1.0) -> str:
        """2-bit signed narrow Quant: ternary {-s, 0, s}; -0.0 for small negatives."""
        return self.op("Quant", [x, self.c(F32(scale)), self.c(F32(0)), self.c(F32(2))], QD,
                       signed=1, narrow=1, rounding_mode="ROUND")

    def w(self, shape: tuple[int, ...], ternary: bool = False) -> str:
        vals = (-1, 0, 1) if ternary else (-1, 1)
        return self.c(self.rng.choice(vals, size=shape))

    def bn(self, x: str, c: int) -> str:
        r = self.rng
        return self.op("BatchNormalization", [
            x, self.c(r.uniform(0.5, 2, c) * r.choice((-1, 1), c)), self.c(r.normal(size=c)),
            self.c(r.normal(size=c) * 2), self.c(r.uniform(0.5, 2, c))], epsilon=1e-5)

    def model(self, out: str, in_shape: list[int | str], out_shape: list[int | str] | None = None,
              opset: int = 17, out_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info(out, out_type, out_shape)], self.inits)
        opsets = [helper.make_opsetid("", opset)]
        if any(n.domain == QD for n in self.nodes):
            opsets.append(helper.make_opsetid(QD, 1))
        m = helper.make_model(graph, opset_imports=opsets)
        m.ir_version = 8
        return m


def execute(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    if any(n.domain == QD for n in model.graph.node):
        return run_qonnx(model, x)
    return run_onnxruntime(model, x)


def per_sample(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Normalized graphs have the batch fixed to 1."""
    return np.concatenate([execute(model, x[i:i + 1]) for i in range(len(x))])


def check_all(model: onnx.ModelProto, x: np.ndarray, expect_pass: str | None = None,
              integer_out: bool = True) -> tuple[Network, list[str]]:
    """Executor(original) == executor(normalized) == cimgen; returns the network and the
    names of the passes that ran."""
    want = execute(model, x)
    normalized, reports = normalize(model, "test")
    names = [r.name for r in reports]
    if expect_pass is not None:
        assert expect_pass in names, f"{expect_pass} did not run: {names}"
    np.testing.assert_array_equal(per_sample(normalized, x), want,
                                  err_msg=f"normalized graph differs (seed={SEED})")
    net = import_model(model, "test")
    logits = infer(net, x)
    if integer_out and not net.output_ops:
        np.testing.assert_array_equal(logits, as_int64(want), err_msg=f"cimgen (seed={SEED})")
    else:
        np.testing.assert_array_equal(scores(net, logits), want,
                                      err_msg=f"cimgen scores (seed={SEED})")
    return net, names


def pass_changes(model: onnx.ModelProto, name: str) -> list[str]:
    _, reports = normalize(model, "test")
    return next((r.changes for r in reports if r.name == name), [])


# --------------------------------------------------------------------------
# Larq's sign idioms
# --------------------------------------------------------------------------

EDGE = [0.0, -0.0, 1e-45, -1e-45, 1e-7, -1e-7, 3.0, -3.0]


def ste_sign(g: G, x: str, c: float = 0.1) -> str:
    return g.op("Sign", [g.op("Add", [g.op("Sign", [x]), g.c(F32(c))])])


def test_ste_sign_is_bipolar_at_zero_and_negative_zero() -> None:
    g = G()
    a = ste_sign(g, "x")
    y = g.op("MatMul", [a, g.w((8, 3))])
    m = g.model(y, ["N", 8], ["N", 3])
    x = np.array([EDGE, EDGE[::-1]], F32)
    net, _ = check_all(m, x, "LarqSteSign")
    assert net.input.quantizer.kind == "bipolar"
    # -0.0 and +0.0 are +1, exactly like Larq's sign(0) = +1.
    changes = pass_changes(m, "LarqSteSign")
    assert len(changes) == 1 and "+1 iff x >= 0" in changes[0]


def test_ste_sign_constant_out_of_range_is_refused() -> None:
    g = G()
    y = g.op("MatMul", [ste_sign(g, "x", 1.5), g.w((4, 2))])
    with pytest.raises(BadInputError, match=r"Sign_\d+' \(Sign\).*c = 1\.5.*0 < c < 1"):
        import_model(g.model(y, ["N", 4], ["N", 2]), "test")


def ste_tern(g: G, x: str, t: float, form: str) -> str:
    if form == "larq":  # tf2onnx: Sub(x, t) and Add(x, t)
        lo, hi = g.op("Sub", [x, g.c(F32(t))]), g.op("Add", [x, g.c(F32(t))])
    elif form == "swapped":  # Add(t, x) and Add(x, -t)
        lo, hi = g.op("Add", [x, g.c(F32(-t))]), g.op("Add", [g.c(F32(t)), x])
    else:  # both arms the same offset: Sign(x - t)
        lo, hi = g.op("Sub", [x, g.c(F32(t))]), g.op("Sub", [x, g.c(F32(t))])
    return g.op("Sign", [g.op("Add", [g.op("Sign", [hi]), g.op("Sign", [lo])])])


@pytest.mark.parametrize("t", [0.5, 0.3, 1e-3])
@pytest.mark.parametrize("form", ["larq", "swapped", "equal"])
def test_ste_tern_inclusive_boundaries(t: float, form: str) -> None:
    g = G()
    y = g.op("MatMul", [ste_tern(g, "x", t, form), g.w((8, 3))])
    m = g.model(y, ["N", 8], ["N", 3])
    t32 = F32(t)
    up, down = F32(np.inf), F32(-np.inf)
    row = [t32, -t32, np.nextafter(t32, up), np.nextafter(t32, down), np.nextafter(-t32, up),
           np.nextafter(-t32, down), 0.0, -0.0]
    x = np.array([row, row[::-1], [0.0] * 8], F32)
    net, _ = check_all(m, x, "LarqSteTern")
    assert net.input.values.kind == "ternary"
    q = net.input.quantizer
    lv = q.level(np.array([row], F32))[0] - 1
    if form == "equal":
        assert lv.tolist() == [0, -1, 1, -1, -1, -1, -1, -1]  # Sign(x - t)
    else:
        # +1 iff x >= t, -1 iff x <= -t: both ends inclusive.
        assert lv.tolist() == [1, -1, 1, 0, 0, -1, 0, 0]


def test_plain_sign_is_ternary_with_zero_at_zero() -> None:
    g = G()
    y = g.op("MatMul", [g.op("Sign", ["x"]), g.w((8, 2))])
    m = g.model(y, ["N", 8], ["N", 2])
    net, names = check_all(m, np.array([EDGE], F32))
    assert net.input.values.kind == "ternary" and names == ["FixBatch", "InferShapes"]


def test_negative_zero_out_of_a_quant_in_a_residual_add() -> None:
    # Quant(2-bit narrow) gives -0.0 for x in [-0.5, 0); -0.0 + -0.0 = -0.0 and a
    # BipolarQuant maps it to +1, as the integer 0 + 0 = 0 >= 0 does.
    g = G()
    a = g.tq("x")
    h = g.tq(g.bn(g.op("MatMul", [a, g.w((6, 6), ternary=True)]), 6))
    s = g.bq(g.op("Add", [a, h]))
    y = g.op("MatMul", [s, g.w((6, 3))])
    m = g.model(y, ["N", 6], ["N", 3])
    x = np.array([[-0.3, -0.5, -0.0, 0.0, 0.5, -0.49], [-0.2] * 6, [0.7, -0.7, 1.5, -1.5, 0.5,
                                                                    -0.5]], F32)
    assert np.signbit(run_tensors(m, x, [a])[a]).any(), "the Quant produced no -0.0"
    net, _ = check_all(m, x)
    assert sum(isinstance(la, Add) for la in net.layers) == 1


# --------------------------------------------------------------------------
# Batch, constants, identities, tails
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("batch", "target"), [("unk__7", -1), (5, 5), (5, -1), (1, 1)])
def test_batch_dimension_and_flatten_target(batch: int | str, target: int) -> None:
    # tf2onnx: symbolic batch, Reshape [-1, K]; Brevitas: static batch 1, Reshape [1, -1].
    g = G()
    tgt = [target, 16] if target == -1 else [target, -1]
    a = g.bq(g.op("Reshape", ["x", g.c(tgt, np.int64)]))
    y = g.op("MatMul", [a, g.w((16, 3))])
    m = g.model(y, [batch, 1, 4, 4], [batch, 3])
    rng = np.random.default_rng(SEED)
    n = batch if isinstance(batch, int) else 5
    x = np.where(rng.random((n, 1, 4, 4)) < 0.3, 0.0, rng.normal(size=(n, 1, 4, 4))).astype(F32)
    want = execute(m, x)
    net = import_model(m, "test")
    np.testing.assert_array_equal(infer(net, x), as_int64(want))
    assert net.input.graph_shape == (1, 4, 4) and net.input.shape == (16,)
    if batch == "unk__7":
        assert any("'unk__7'" in c for c in pass_changes(m, "FixBatch"))
        check_all(m, x, "FixBatch")


@pytest.mark.parametrize("domain", ["finn", "finn.custom_op.general", "onnx.brevitas"])
def test_old_qonnx_domains_are_renamed(domain: str) -> None:
    g = G()
    a = g.op("BipolarQuant", ["x", g.c(F32(1))], domain)
    y = g.op("MatMul", [g.op("MultiThreshold", [g.bn(g.op("MatMul", [a, g.w((4, 5))]), 5),
                                                g.c([[0.0]])], domain, out_dtype="BIPOLAR",
                                       out_scale=2.0, out_bias=-1.0), g.w((5, 2))])
    m = g.model(y, ["N", 4], ["N", 2])
    m.opset_import.append(helper.make_opsetid(domain, 1))
    changes = pass_changes(m, "QonnxDomains")
    assert changes == [f"2 node(s) from domain '{domain}' to '{QD}'"]
    x = np.random.default_rng(SEED).normal(size=(4, 4)).astype(F32)
    x[0, :2] = 0.0
    np.testing.assert_array_equal(infer(import_model(m, "test"), x), as_int64(run_qonnx(m, x)))


def test_initializers_as_inputs_and_constant_nodes() -> None:
    g = G()
    w = g.w((4, 3))
    g.nodes.append(helper.make_node("Constant", [], ["half"], name="k",
                                    value=numpy_helper.from_array(F32(0.5))))
    a = g.bq(g.op("Sub", ["x", "half"]))
    y = g.op("MatMul", [a, w])
    m = g.model(y, ["N", 4], ["N", 3])
    m.graph.input.extend([helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                          for t in m.graph.initializer])
    x = np.array([[0.5, 0.4, 0.6, -1]], F32)
    _, names = check_all(m, x)
    assert {"StaticInputs", "ConstantNodes"} <= set(names)


def test_fold_constants_shape_chain_and_weight_transpose() -> None:
    # tf2onnx's dynamic flatten: Reshape(x, Concat(Slice(Shape(x), 0, 1), [-1])), and
    # weights behind a Transpose.
    g = G()
    shp = g.op("Shape", ["x"])
    b = g.op("Slice", [shp, g.c([0], np.int64), g.c([1], np.int64)])
    tgt = g.op("Concat", [b, g.c([-1], np.int64)], axis=0)
    a = g.bq(g.op("Reshape", ["x", tgt]))
    w = g.op("Transpose", [g.w((3, 12))], perm=[1, 0])
    y = g.op("MatMul", [a, w])
    m = g.model(y, ["N", 3, 4], ["N", 3])
    x = np.random.default_rng(SEED).normal(size=(1, 3, 4)).astype(F32)
    check_all(m, x, "FoldConstants")
    changes = pass_changes(m, "FoldConstants")
    assert "Shape" in changes[0] and "Concat" in changes[0]


def test_identity_dropout_and_cast_are_removed() -> None:
    g = G()
    a = g.op("Identity", [g.bq("x")])
    h = g.op("Dropout", [g.op("MatMul", [a, g.w((5, 4))]), g.c(F32(0.3))])
    h = g.op("Cast", [g.bn(h, 4)], to=TensorProto.FLOAT)
    y = g.op("MatMul", [g.bq(h), g.w((4, 2))])
    m = g.model(y, ["N", 5], ["N", 2])
    x = np.random.default_rng(SEED).normal(size=(4, 5)).astype(F32)
    check_all(m, x, "RemoveIdentities")
    change = pass_changes(m, "RemoveIdentities")[0]
    assert all(f"({op})" in change for op in ("Identity", "Dropout", "Cast")), change


@pytest.mark.parametrize("tail", ["Softmax", "LogSoftmax", "ArgMax"])
def test_classifier_tail_is_dropped(tail: str) -> None:
    g = G()
    y = g.op("Add", [g.op("Mul", [g.op("MatMul", [g.bq("x"), g.w((6, 4))]),
                                  g.c([0.5, -2.0, 1.0, 0.25])]), g.c([0.0, 1.0, -1.0, 0.5])])
    logits = y
    argmax = tail == "ArgMax"
    out = g.op(tail, [y], **({"axis": 1, "keepdims": 0} if argmax else {}))
    m = g.model(out, ["N", 6], ["N"] if argmax else ["N", 4],
                out_type=TensorProto.INT64 if argmax else TensorProto.FLOAT)
    x = np.random.default_rng(SEED).normal(size=(7, 6)).astype(F32)
    imp = import_model_report(m, "test")
    assert [r.name for r in imp.passes if r.name == "ClassifierTail"] == ["ClassifierTail"]
    net = imp.net
    # The per-class affine (a negative scale included) stays host-side.
    assert len(net.output_ops) == 2 and net.output_ops[0].channels() == 4
    got = scores(net, infer(net, x))
    np.testing.assert_array_equal(got, run_tensors(m, x, [logits])[logits])
    np.testing.assert_array_equal(predict(net, infer(net, x)), got.argmax(axis=1))
    if argmax:
        np.testing.assert_array_equal(got.argmax(axis=1), execute(m, x))


def test_argmax_over_the_batch_is_refused() -> None:
    g = G()
    out = g.op("ArgMax", [g.op("MatMul", [g.bq("x"), g.w((6, 4))])], axis=0, name="am")
    with pytest.raises(BadInputError, match=r"'am' \(ArgMax\).*axis 0"):
        import_model(g.model(out, ["N", 6], [1, 4]), "test")


# --------------------------------------------------------------------------
# Layout: NCHW/NHWC converters, flattens, squeeze
# --------------------------------------------------------------------------


def test_transposes_around_sign_cancel_and_nhwc_flatten_permutes_weights() -> None:
    # Larq's CNN: Conv -> Transpose to NHWC -> ste_sign -> Transpose back -> Conv ...
    # -> Transpose to NHWC -> Reshape [-1, H*W*C] -> ste_sign -> MatMul.
    g = G()
    h = g.op("Conv", [g.bq("x"), g.w((4, 2, 3, 3))], kernel_shape=[3, 3])
    h = g.op("Transpose", [g.bn(h, 4)], perm=[0, 2, 3, 1])
    h = g.op("Transpose", [ste_sign(g, h)], perm=[0, 3, 1, 2])
    h = g.op("Conv", [h, g.w((3, 4, 2, 2))], kernel_shape=[2, 2])
    h = g.op("Transpose", [g.bn(h, 3)], perm=[0, 2, 3, 1])
    h = ste_sign(g, g.op("Reshape", [h, g.c([-1, 3 * 3 * 3], np.int64)]))
    y = g.op("MatMul", [h, g.w((27, 5))])
    m = g.model(y, ["N", 2, 6, 6], ["N", 5])
    x = np.random.default_rng(SEED).normal(size=(6, 2, 6, 6)).astype(F32)
    net, names = check_all(m, x)
    assert {"SinkLayout", "ComposeLayout", "FlattenPermutation"} <= set(names)
    assert not any(n.op_type == "Transpose" for n in normalize(m, "t")[0].graph.node)
    assert [type(la).__name__ for la in net.layers] == [
        "Conv2d", "Threshold", "Conv2d", "Threshold", "Flatten", "Dense"]


def test_nhwc_input_transpose_becomes_the_input_layout() -> None:
    g = G()
    h = g.bq(g.op("Sub", [g.op("Transpose", ["x"], perm=[0, 3, 1, 2]), g.c(F32(0.25))]))
    h = g.op("Conv", [h, g.w((4, 3, 3, 3))], kernel_shape=[3, 3])
    y = g.op("MatMul", [g.op("Flatten", [g.bq(g.bn(h, 4))]), g.w((4 * 2 * 2, 3))])
    m = g.model(y, ["N", 4, 4, 3], ["N", 3])
    x = np.random.default_rng(SEED).normal(size=(5, 4, 4, 3)).astype(F32)
    x[0, 0, 0] = 0.25  # exactly at the quantizer's tie after the Sub
    net, _ = check_all(m, x)
    assert net.input.graph_shape == (4, 4, 3) and net.input.shape == (3, 4, 4)
    assert net.input.source_index is not None
    ref = infer(net, x)
    # cimgen's exports carry the layout map: onnxruntime and a re-import agree.
    np.testing.assert_array_equal(as_int64(run_onnxruntime(to_plain_onnx(net), x)), ref)
    np.testing.assert_array_equal(infer(import_model(to_qonnx(net), "rt"), x), ref)


def test_sign_then_reshape_on_the_input_is_hoisted() -> None:
    # Larq's CNN input: ste_sign on NHWC [28, 28, 1], then Reshape to [-1, 1, 28, 28].
    g = G()
    h = g.op("Reshape", [ste_sign(g, "x"), g.c([-1, 1, 5, 5], np.int64)])
    h = g.op("Conv", [h, g.w((2, 1, 3, 3))], kernel_shape=[3, 3])
    y = g.op("MatMul", [g.op("Flatten", [g.bq(g.bn(h, 2))]), g.w((18, 2))])
    m = g.model(y, ["N", 5, 5, 1], ["N", 2])
    x = np.random.default_rng(SEED).normal(size=(3, 5, 5, 1)).astype(F32)
    x[0, :2, :2, 0] = 0.0
    net, _ = check_all(m, x, "HoistInputLayout")
    assert net.input.source_index is None and net.input.shape == (1, 5, 5)


def test_squeeze_and_unsqueeze_become_reshapes() -> None:
    g = G()
    a = g.op("Unsqueeze", [g.bq("x"), g.c([2], np.int64)])
    a = g.op("Squeeze", [a, g.c([2], np.int64)])
    y = g.op("MatMul", [a, g.w((6, 2))])
    m = g.model(y, ["N", 6], ["N", 2])
    check_all(m, np.random.default_rng(SEED).normal(size=(3, 6)).astype(F32),
              "ShapeOpsToReshape")


# --------------------------------------------------------------------------
# Branches: residual Add (identity and downsampling shortcuts), Concat
# --------------------------------------------------------------------------


def resnet_graph(ternary: bool, seed: int) -> onnx.ModelProto:
    """FINN-style residual blocks: quantized Add of quantized operands, an identity
    shortcut and a 1x1 stride-2 downsampling shortcut."""
    g = G(seed)
    q = g.tq if ternary else g.bq

    def cbq(x: str, cin: int, cout: int, k: int, stride: int, pad: int) -> str:
        h = g.op("Conv", [x, g.w((cout, cin, k, k), ternary)], kernel_shape=[k, k],
                 strides=[stride, stride], pads=[pad] * 4)
        return q(g.bn(h, cout))

    x0 = q(g.op("Sub", [g.op("Mul", ["x", g.c(F32(2))]), g.c(F32(1))]))
    a = cbq(x0, 2, 4, 3, 1, 1)
    b = cbq(cbq(a, 4, 4, 3, 1, 1), 4, 4, 3, 1, 1)
    b = q(g.op("Add", [b, a]))  # identity shortcut
    main = cbq(cbq(b, 4, 6, 3, 2, 1), 6, 6, 3, 1, 1)
    short = cbq(b, 4, 6, 1, 2, 0)  # downsampling shortcut
    c = q(g.op("Add", [main, short]))
    y = g.op("Gemm", [g.op("Flatten", [c]), g.w((3, 6 * 3 * 3))], transB=1)
    return g.model(y, ["N", 2, 6, 6], ["N", 3])


@pytest.mark.parametrize("ternary", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_residual_blocks_are_exact(ternary: bool, seed: int) -> None:
    m = resnet_graph(ternary, seed)
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, 9, size=(6, 2, 6, 6)) / 8).astype(F32)  # 2x - 1 hits 0 exactly
    net, _ = check_all(m, x)
    assert [type(la).__name__ for la in net.layers if isinstance(la, Add | Tap)] == [
        "Add", "Tap", "Add"]
    ref = infer(net, x)
    np.testing.assert_array_equal(as_int64(run_onnxruntime(to_plain_onnx(net), x)), ref,
                                  err_msg=f"plain export seed={seed}")
    # The sums of two binary operands are -2, 0 or 2 (and -2..2 for ternary).
    tr = forward_int(net, quantize_input(net, x), trace=True)
    assert not isinstance(tr, np.ndarray)
    for la, h in zip(net.layers, tr.outputs, strict=True):
        if isinstance(la, Add):
            assert set(np.unique(h)) <= ({-2, -1, 0, 1, 2} if ternary else {-2, 0, 2})


def test_residual_add_of_operands_with_different_scales() -> None:
    g = G()
    a = g.bq("x", 1.0)
    b = g.bq(g.bn(g.op("MatMul", [a, g.w((5, 5))]), 5), 2.0)
    y = g.op("MatMul", [g.bq(g.op("Add", [a, b])), g.w((5, 2))])
    m = g.model(y, ["N", 5], ["N", 2])
    net, _ = check_all(m, np.random.default_rng(SEED).normal(size=(8, 5)).astype(F32))
    add = next(la for la in net.layers if isinstance(la, Add))
    assert add.factors == (1, 2)


def test_concat_of_two_branches() -> None:
    g = G()
    a = g.bq("x")
    b1 = g.bq(g.bn(g.op("Conv", [a, g.w((3, 2, 3, 3))], kernel_shape=[3, 3], pads=[1] * 4), 3))
    b2 = g.bq(g.bn(g.op("Conv", [a, g.w((2, 2, 1, 1))], kernel_shape=[1, 1]), 2))
    cat = g.op("Concat", [b1, b2], axis=1)
    y = g.op("MatMul", [g.op("Flatten", [cat]), g.w((5 * 4 * 4, 3))])
    m = g.model(y, ["N", 2, 4, 4], ["N", 3])
    x = np.random.default_rng(SEED).normal(size=(5, 2, 4, 4)).astype(F32)
    net, _ = check_all(m, x)
    assert any(isinstance(la, Concat) for la in net.layers)
    np.testing.assert_array_equal(as_int64(run_onnxruntime(to_plain_onnx(net), x)),
                                  infer(net, x))


def test_bn_fused_into_conv_weights_factors_exactly() -> None:
    # Larq fuses a BatchNorm into the first conv: weights +-|s_c| per channel, a bias.
    g = G()
    s = F32([0.7587755, 0.44795075, 0.2005339])
    signs = g.rng.choice((-1.0, 1.0), size=(3, 1, 3, 3))
    w = g.c((signs * s[:, None, None, None]).astype(F32))
    h = g.op("Conv", [g.op("Sign", ["x"]), w, g.c([0.05, -0.4, 0.3])], kernel_shape=[3, 3])
    y = g.op("MatMul", [g.op("Flatten", [ste_sign(g, h)]), g.w((3 * 2 * 2, 2))])
    m = g.model(y, ["N", 1, 4, 4], ["N", 2])
    x = np.random.default_rng(SEED).choice((-1.0, 0.0, 1.0), size=(16, 1, 4, 4)).astype(F32)
    check_all(m, x)
    # One more magnitude in a channel: not a fused BatchNorm of binary weights.
    bad = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == w)).copy()
    bad[1, 0, 0, 0] *= 2
    for t in m.graph.initializer:
        if t.name == w:
            t.CopyFrom(numpy_helper.from_array(bad, w))
    with pytest.raises(BadInputError, match=r"\(Conv\).*one magnitude per output channel"):
        import_model(m, "test")


# --------------------------------------------------------------------------
# The IR contract for branches, checked by analyze and run by the reference
# --------------------------------------------------------------------------


def _tiny(layers: list[Any], features: int = 3) -> Network:
    return Network(InputStage((features,), (), Quantizer("bipolar"), 2, -1), tuple(layers))


def _thr(c: int, t: int = 0) -> Threshold:
    return Threshold(np.full((c, 1), t, np.int64), np.ones(c, np.int8), 2, -1)


def test_reference_runs_a_hand_computed_residual_network() -> None:
    w1 = np.int8([[1, 1, 1], [1, -1, 1], [-1, -1, 1]])
    net = _tiny([Dense(w1), _thr(3, 1), Add((-1, 1), (1, 3)), _thr(3, 0), Tap(1),
                 Concat((3, 4)), Dense(np.ones((1, 6), np.int8))])
    q = np.int16([[1, -1, 1], [-1, -1, -1]])
    # By hand: h = x @ w1.T; a = +1 iff h >= 1; s = x + 3a; b = +1 iff s >= 0;
    # out = sum(b) + sum(a).
    h = q.astype(int) @ w1.T.astype(int)
    a = np.where(h >= 1, 1, -1)
    b = np.where(q + 3 * a >= 0, 1, -1)
    want = (b.sum(axis=1) + a.sum(axis=1))[:, None]
    np.testing.assert_array_equal(forward_int(net, q), want)
    assert analyze(net)[5].out_shape == (6,) and analyze(net)[2].acc_bound == 4


BAD_IR: dict[str, tuple[Callable[[], Network], str]] = {
    "dead branch": (lambda: _tiny([Dense(np.ones((3, 3), np.int8)), _thr(3), Tap(-1),
                                   Dense(np.ones((2, 3), np.int8))]), "never read"),
    "add of accumulators": (lambda: _tiny([Dense(np.ones((3, 3), np.int8)), Add((-1, 0)),
                                           _thr(3), Dense(np.ones((2, 3), np.int8))]),
                            "not an activation"),
    "add shapes": (lambda: _tiny([Dense(np.ones((2, 3), np.int8)), _thr(2), Add((-1, 1)),
                                  _thr(3), Dense(np.ones((2, 3), np.int8))]), "shapes differ"),
    "tap forward": (lambda: _tiny([Tap(3), Dense(np.ones((2, 3), np.int8))]),
                    "not an earlier layer"),
    "zero scale": (lambda: _tiny([Dense(np.ones((3, 3), np.int8)), _thr(3), Add((-1, 1),
                                  (1, 0)), _thr(3), Dense(np.ones((2, 3), np.int8))]),
                   "non-zero integers"),
    "concat shapes": (lambda: Network(InputStage((2, 3, 3), (), Quantizer("bipolar"), 2, -1), (
        Flatten(), Concat((-1, 0)), Flatten(), Dense(np.ones((2, 27), np.int8)))),
        "differ beyond axis 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_IR))
def test_analyze_refuses_broken_branches(case: str) -> None:
    make, words = BAD_IR[case]
    with pytest.raises(BadInputError, match=words):
        analyze(make())


def test_strict_import_takes_canonical_graphs_only() -> None:
    g = G()
    y = g.op("MatMul", [ste_sign(g, "x"), g.w((4, 2))])
    m = g.model(y, ["N", 4], ["N", 2])
    with pytest.raises(BadInputError, match=r"\(Add\).*float op on a quantized"):
        import_strict(m, "test")
    assert import_model(m, "test").input.quantizer.kind == "bipolar"
