"""The real ``cimgen`` console script on malformed models and inputs.

Every bad case must end with exit code 2 and exactly one line on stderr that
names the file and/or node and the reason: no traceback, and no output file
(nor output folder) left behind. The positive cases check ``inspect`` and
``infer`` on an example model against golden_model.reference.infer.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cimgen.frontend.datasets import digits_for
from cimgen.frontend.onnx_import import load_model
from golden_model.reference import infer

QD = "qonnx.custom_op.general"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEED = 20240607


def cimgen_exe() -> str:
    exe = shutil.which("cimgen")
    assert exe, "the cimgen console script is not on PATH (pip install -e .)"
    return exe


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cimgen_exe(), *map(str, args)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, cwd=cwd)


# --------------------------------------------------------------------------
# A small valid QONNX MLP (4 -> 6 -> 3), written node by node, then broken
# --------------------------------------------------------------------------


def base_parts() -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], onnx.ValueInfoProto]:
    rng = np.random.default_rng(SEED)

    def init(name: str, a: np.ndarray, dtype: type[np.generic] = np.float32) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(a, dtype), name)

    inits = [
        init("one", np.float32(1.0)),
        init("w1", rng.normal(size=(4, 6))),
        init("w2", rng.normal(size=(6, 3))),
        init("bn_g", rng.uniform(0.5, 2, size=6)),
        init("bn_b", rng.normal(size=6)),
        init("bn_m", rng.normal(size=6)),
        init("bn_v", rng.uniform(0.5, 2, size=6)),
    ]
    nodes = [
        helper.make_node("BipolarQuant", ["x", "one"], ["xq"], name="in_quant", domain=QD),
        helper.make_node("BipolarQuant", ["w1", "one"], ["w1q"], name="w1_quant", domain=QD),
        helper.make_node("MatMul", ["xq", "w1q"], ["h1"], name="fc1"),
        helper.make_node("BatchNormalization", ["h1", "bn_g", "bn_b", "bn_m", "bn_v"], ["h1n"],
                         name="bn1"),
        helper.make_node("BipolarQuant", ["h1n", "one"], ["a1"], name="act1", domain=QD),
        helper.make_node("BipolarQuant", ["w2", "one"], ["w2q"], name="w2_quant", domain=QD),
        helper.make_node("MatMul", ["a1", "w2q"], ["logits"], name="fc2"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    return nodes, inits, x


def make_model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
               x: onnx.ValueInfoProto) -> onnx.ModelProto:
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])
    g = helper.make_graph(nodes, "cli_base", [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid(QD, 1)])
    m.ir_version = 8
    return m


def base_model() -> onnx.ModelProto:
    return make_model(*base_parts())


def write_model(path: Path, m: onnx.ModelProto) -> Path:
    path.write_bytes(m.SerializeToString())
    return path


def good_inputs(path: Path) -> Path:
    np.save(path, np.random.default_rng(SEED).normal(size=(5, 4)).astype(np.float32))
    return path


def replace_node(nodes: list[onnx.NodeProto], name: str, new: onnx.NodeProto) -> None:
    i = next(k for k, n in enumerate(nodes) if n.name == name)
    nodes[i] = new


def replace_init(inits: list[onnx.TensorProto], name: str, a: np.ndarray) -> None:
    i = next(k for k, t in enumerate(inits) if t.name == name)
    inits[i] = numpy_helper.from_array(np.asarray(a), name)


# ---------------------------------------------------------------- the cases


@dataclass
class Setup:
    """What to run: the model path, the inputs path, the output path."""

    model: Path
    inputs: Path
    out: Path
    expect: tuple[str, ...]  # substrings the one stderr line must contain


def case_missing_model(tmp: Path) -> Setup:
    return Setup(tmp / "nope.onnx", good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("nope.onnx", "no such file"))


def case_model_is_directory(tmp: Path) -> Setup:
    (tmp / "adir.onnx").mkdir()
    return Setup(tmp / "adir.onnx", good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("adir.onnx", "directory"))


def case_truncated_protobuf(tmp: Path) -> Setup:
    data = base_model().SerializeToString()
    p = tmp / "trunc.onnx"
    p.write_bytes(data[: len(data) // 2 + 3])
    return Setup(p, good_inputs(tmp / "x.npy"), tmp / "o.npy", ("trunc.onnx", "protobuf"))


def case_not_onnx_at_all(tmp: Path) -> Setup:
    p = tmp / "text.onnx"
    p.write_text("this is not a model\n")
    return Setup(p, good_inputs(tmp / "x.npy"), tmp / "o.npy", ("text.onnx",))


def case_unsupported_op(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    replace_node(nodes, "bn1", helper.make_node("Tanh", ["h1"], ["h1n"], name="squash"))
    return Setup(write_model(tmp / "tanh.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy", ("tanh.onnx", "squash", "Tanh",
                                                             "unsupported op"))


def case_weights_outside_value_set(tmp: Path) -> Setup:
    # Raw float weights (no quantizer) with three different magnitudes.
    nodes, inits, x = base_parts()
    replace_node(nodes, "w2_quant", helper.make_node("Identity", ["w2"], ["w2q"], name="w2_id"))
    replace_init(inits, "w2", np.float32([[1, -1, 0.3], [1, 1, -1], [-1, 1, 1], [1, 0.7, 1],
                                          [1, 1, 1], [-1, -1, -1]]))
    return Setup(write_model(tmp / "w.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy", ("w.onnx", "fc2",
                                                             "outside the binary/ternary"))


def case_weights_quantized_to_three_bits(tmp: Path) -> Setup:
    # IntQuant declares 3-bit signed weights {-3..3}: not binary or ternary.
    nodes, inits, x = base_parts()
    inits += [numpy_helper.from_array(np.float32(0.0), "zero"),
              numpy_helper.from_array(np.float32(3.0), "three")]
    replace_node(nodes, "w1_quant", helper.make_node(
        "IntQuant", ["w1", "one", "zero", "three"], ["w1q"], name="w1_int3", domain=QD,
        signed=1, narrow=1, rounding_mode="ROUND"))
    replace_init(inits, "w1", np.float32(np.arange(24).reshape(4, 6) % 7 - 3))
    return Setup(write_model(tmp / "w3.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy", ("w3.onnx", "fc1",
                                                             "outside the binary/ternary"))


def case_nan_thresholds(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    t = np.zeros((6, 1), np.float32)
    t[2, 0] = np.nan
    inits.append(numpy_helper.from_array(t, "thr"))
    replace_node(nodes, "act1", helper.make_node(
        "MultiThreshold", ["h1n", "thr"], ["a1"], name="mt1", domain=QD, out_dtype="BIPOLAR",
        out_scale=2.0, out_bias=-1.0))
    return Setup(write_model(tmp / "nan_t.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy", ("nan_t.onnx", "mt1", "NaN"))


def case_nan_bn_parameter(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    replace_init(inits, "bn_m", np.float32([0, 1, np.nan, 0, 0, 0]))
    return Setup(write_model(tmp / "nan_bn.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy", ("nan_bn.onnx", "bn1", "NaN"))


def case_negative_variance(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    replace_init(inits, "bn_v", np.float32([1, 1, -1, 1, 1, 1]))
    return Setup(write_model(tmp / "negvar.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy", ("negvar.onnx", "bn1",
                                                             "negative variance"))


def case_shape_mismatch(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    replace_init(inits, "w2", np.ones((5, 3), np.float32))
    return Setup(write_model(tmp / "shape.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy", ("shape.onnx", "fc2",
                                                             "shape mismatch"))


def case_missing_initializer(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    inits = [t for t in inits if t.name != "w2"]
    nodes = [n for n in nodes if n.name != "w2_quant"]
    replace_node(nodes, "fc2", helper.make_node("MatMul", ["a1", "w2"], ["logits"], name="fc2"))
    return Setup(write_model(tmp / "noinit.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy", ("noinit.onnx", "fc2", "'w2'",
                                                             "missing initializer"))


def case_dynamic_feature_dim(tmp: Path) -> Setup:
    nodes, inits, _ = base_parts()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "features"])
    return Setup(write_model(tmp / "dyn.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy", ("dyn.onnx", "'features'",
                                                             "dynamic dimension"))


def case_empty_graph(tmp: Path) -> Setup:
    _, _, x = base_parts()
    return Setup(write_model(tmp / "empty.onnx", make_model([], [], x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy", ("empty.onnx", "empty graph"))


def case_gemm_trans_a(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    replace_node(nodes, "fc2", helper.make_node("Gemm", ["a1", "w2q"], ["logits"], name="g2",
                                                transA=1))
    return Setup(write_model(tmp / "transa.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy", ("transa.onnx", "g2", "transA"))


def _valid_model(tmp: Path) -> Path:
    return write_model(tmp / "ok.onnx", base_model())


def case_wrong_input_rank(tmp: Path) -> Setup:
    p = tmp / "rank.npy"
    np.save(p, np.zeros((5, 2, 2), np.float32))
    return Setup(_valid_model(tmp), p, tmp / "o.npy", ("rank.npy", "rank 3"))


def case_wrong_input_shape(tmp: Path) -> Setup:
    p = tmp / "shape.npy"
    np.save(p, np.zeros((5, 7), np.float32))
    return Setup(_valid_model(tmp), p, tmp / "o.npy", ("shape.npy", "(5, 7)"))


def case_wrong_input_dtype(tmp: Path) -> Setup:
    p = tmp / "f64.npy"
    np.save(p, np.zeros((5, 4), np.float64))
    return Setup(_valid_model(tmp), p, tmp / "o.npy", ("f64.npy", "float64", "float32"))


def case_nan_inputs(tmp: Path) -> Setup:
    p = tmp / "nan.npy"
    a = np.zeros((5, 4), np.float32)
    a[1, 2] = a[3, 0] = np.nan
    np.save(p, a)
    return Setup(_valid_model(tmp), p, tmp / "o.npy", ("nan.npy", "2 NaN"))


def case_missing_inputs_file(tmp: Path) -> Setup:
    return Setup(_valid_model(tmp), tmp / "absent.npy", tmp / "o.npy",
                 ("absent.npy", "no such file"))


def case_inputs_not_npy(tmp: Path) -> Setup:
    p = tmp / "junk.npy"
    p.write_bytes(b"\x00\x01 definitely not numpy")
    return Setup(_valid_model(tmp), p, tmp / "o.npy", ("junk.npy", ".npy"))


def case_output_in_missing_folder(tmp: Path) -> Setup:
    return Setup(_valid_model(tmp), good_inputs(tmp / "x.npy"), tmp / "missing" / "o.npy",
                 ("missing", "does not exist"))


# ------------------------------------- export idioms and branches (issue 13)


def insert_after(nodes: list[onnx.NodeProto], name: str, new: list[onnx.NodeProto]) -> None:
    i = next(k for k, n in enumerate(nodes) if n.name == name)
    nodes[i + 1:i + 1] = new


def rewire(nodes: list[onnx.NodeProto], node: str, old: str, new: str) -> None:
    n = next(n for n in nodes if n.name == node)
    for k, i in enumerate(n.input):
        if i == old:
            n.input[k] = new


def case_reshape_shape_computed_at_run_time(tmp: Path) -> Setup:
    # The target shape depends on the data (a ReduceMax of the input): no constant.
    nodes, inits, x = base_parts()
    inits += [numpy_helper.from_array(np.zeros(2, np.float32), "zeros2"),
              numpy_helper.from_array(np.float32([-1, 6]), "shape_f")]
    insert_after(nodes, "act1", [
        helper.make_node("ReduceMax", ["x"], ["rmax"], name="rmax", keepdims=0),
        helper.make_node("Mul", ["rmax", "zeros2"], ["z2"], name="z2"),
        helper.make_node("Add", ["z2", "shape_f"], ["sf"], name="sf"),
        helper.make_node("Cast", ["sf"], ["shape_i"], name="shape_i", to=TensorProto.INT64),
        helper.make_node("Reshape", ["a1", "shape_i"], ["a1r"], name="reshape_dyn")])
    rewire(nodes, "fc2", "a1", "a1r")
    return Setup(write_model(tmp / "rsdyn.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("rsdyn.onnx", "'reshape_dyn' (Reshape)", "computed at run time"))


def case_reshape_cannot_be_resolved(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    inits.append(numpy_helper.from_array(np.int64([-1, -1]), "two_unknown"))
    insert_after(nodes, "act1", [helper.make_node("Reshape", ["a1", "two_unknown"], ["a1r"],
                                                  name="reshape_mm")])
    rewire(nodes, "fc2", "a1", "a1r")
    return Setup(write_model(tmp / "rsmm.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("rsmm.onnx", "'reshape_mm' (Reshape)", "[-1, -1]", "does not fit"))


def case_reshape_into_the_batch(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    inits.append(numpy_helper.from_array(np.int64([3, -1]), "into_batch"))
    insert_after(nodes, "act1", [helper.make_node("Reshape", ["a1", "into_batch"], ["a1r"],
                                                  name="reshape_b")])
    rewire(nodes, "fc2", "a1", "a1r")
    return Setup(write_model(tmp / "rsb.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("rsb.onnx", "'reshape_b' (Reshape)", "batch"))


def case_float_activation_between_layers(tmp: Path) -> Setup:
    # Bi-Real style: the BatchNorm output (float) added to a quantized tensor.
    nodes, inits, x = base_parts()
    insert_after(nodes, "act1", [
        helper.make_node("Add", ["h1n", "a1"], ["mix"], name="bireal_add"),
        helper.make_node("BipolarQuant", ["mix", "one"], ["a1m"], name="act_mix", domain=QD)])
    rewire(nodes, "fc2", "a1", "a1m")
    return Setup(write_model(tmp / "bireal.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("bireal.onnx", "'bireal_add' (Add)", "float activation between layers"))


def case_unsupported_op_in_a_branch(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    insert_after(nodes, "act1", [
        helper.make_node("Abs", ["a1"], ["a1abs"], name="abs_branch"),
        helper.make_node("Add", ["a1", "a1abs"], ["res"], name="res_add"),
        helper.make_node("BipolarQuant", ["res", "one"], ["a1r"], name="act_res", domain=QD)])
    rewire(nodes, "fc2", "a1", "a1r")
    return Setup(write_model(tmp / "branch.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("branch.onnx", "'abs_branch' (Abs)", "unsupported op after an activation"))


def case_concat_of_mismatched_shapes(tmp: Path) -> Setup:
    # Two conv branches of a [1, 4, 4] image: 3x3 padded (4x4) and unpadded (2x2).
    rng = np.random.default_rng(SEED)
    inits = [numpy_helper.from_array(np.float32(1.0), "one"),
             numpy_helper.from_array(rng.choice((-1.0, 1.0), (2, 1, 3, 3)).astype(np.float32),
                                     "k1"),
             numpy_helper.from_array(rng.choice((-1.0, 1.0), (2, 1, 3, 3)).astype(np.float32),
                                     "k2"),
             numpy_helper.from_array(rng.choice((-1.0, 1.0), (40, 3)).astype(np.float32), "wd")]
    nodes = [
        helper.make_node("BipolarQuant", ["x", "one"], ["xq"], name="in_quant", domain=QD),
        helper.make_node("Conv", ["xq", "k1"], ["c1"], name="conv_pad", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("BipolarQuant", ["c1", "one"], ["b1"], name="act_b1", domain=QD),
        helper.make_node("Conv", ["xq", "k2"], ["c2"], name="conv_valid", kernel_shape=[3, 3]),
        helper.make_node("BipolarQuant", ["c2", "one"], ["b2"], name="act_b2", domain=QD),
        helper.make_node("Concat", ["b1", "b2"], ["cat"], name="cat", axis=1),
        helper.make_node("Flatten", ["cat"], ["flat"], name="flat"),
        helper.make_node("MatMul", ["flat", "wd"], ["logits"], name="fc")]
    xi = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 4, 4])
    np.save(tmp / "img.npy", rng.normal(size=(5, 1, 4, 4)).astype(np.float32))
    return Setup(write_model(tmp / "cat.onnx", make_model(nodes, inits, xi)), tmp / "img.npy",
                 tmp / "o.npy", ("cat.onnx", "'cat' (Concat)", "mismatched shapes",
                                 "[N, 2, 4, 4]", "[N, 2, 2, 2]"))


def case_per_channel_activation_scale(tmp: Path) -> Setup:
    # A 2-bit activation quantizer with one scale per channel: no common integer grid.
    nodes, inits, x = base_parts()
    inits += [numpy_helper.from_array(np.float32([1, 2, 1, 1, 0.5, 1]), "pc_scale"),
              numpy_helper.from_array(np.float32(0.0), "zero"),
              numpy_helper.from_array(np.float32(2.0), "two")]
    replace_node(nodes, "act1", helper.make_node(
        "Quant", ["h1n", "pc_scale", "zero", "two"], ["a1"], name="pc_quant", domain=QD,
        signed=1, narrow=1, rounding_mode="ROUND"))
    return Setup(write_model(tmp / "pcq.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("pcq.onnx", "'pc_quant' (Quant)", "per-channel activation scales"))


def case_sign_idiom_with_a_bad_constant(tmp: Path) -> Setup:
    # Sign(Sign(x) + 1.5) is constant for x >= -0: not Larq's ste_sign.
    nodes, inits, x = base_parts()
    inits.append(numpy_helper.from_array(np.float32(1.5), "c15"))
    replace_node(nodes, "in_quant", helper.make_node("Sign", ["x"], ["s0"], name="sgn_in"))
    insert_after(nodes, "sgn_in", [
        helper.make_node("Add", ["s0", "c15"], ["s1"], name="sgn_add"),
        helper.make_node("Sign", ["s1"], ["xq"], name="sgn_out")])
    return Setup(write_model(tmp / "stesign.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("stesign.onnx", "'sgn_out' (Sign)", "c = 1.5", "0 < c < 1"))


def case_softmax_between_layers(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    insert_after(nodes, "fc1", [helper.make_node("Softmax", ["h1"], ["h1s"], name="mid_softmax",
                                                 axis=1)])
    rewire(nodes, "bn1", "h1", "h1s")
    return Setup(write_model(tmp / "midsm.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("midsm.onnx", "'mid_softmax' (Softmax)", "classifier tail"))


def case_transpose_between_layers(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    insert_after(nodes, "act1", [helper.make_node("Transpose", ["a1"], ["a1t"], name="swap",
                                                  perm=[1, 0])])
    rewire(nodes, "fc2", "a1", "a1t")
    return Setup(write_model(tmp / "tr.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("tr.onnx", "'swap' (Transpose)", "layout change"))


def case_residual_scales_without_integer_ratio(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    inits.append(numpy_helper.from_array(np.float32(0.3), "s03"))
    insert_after(nodes, "act1", [
        helper.make_node("BipolarQuant", ["h1n", "s03"], ["a1b"], name="act_small", domain=QD),
        helper.make_node("Add", ["a1", "a1b"], ["res"], name="res_add"),
        helper.make_node("BipolarQuant", ["res", "one"], ["a1r"], name="act_res", domain=QD)])
    rewire(nodes, "fc2", "a1", "a1r")
    return Setup(write_model(tmp / "ratio.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("ratio.onnx", "'res_add' (Add)", "no exact integer form"))


def case_argmax_over_the_batch(tmp: Path) -> Setup:
    nodes, inits, x = base_parts()
    replace_node(nodes, "fc2", helper.make_node("MatMul", ["a1", "w2q"], ["pre"], name="fc2"))
    nodes.append(helper.make_node("ArgMax", ["pre"], ["logits"], name="argmax0", axis=0))
    return Setup(write_model(tmp / "am.onnx", make_model(nodes, inits, x)),
                 good_inputs(tmp / "x.npy"), tmp / "o.npy",
                 ("am.onnx", "'argmax0' (ArgMax)", "axis 0"))


NEW_CASES = (case_reshape_shape_computed_at_run_time, case_reshape_cannot_be_resolved,
             case_reshape_into_the_batch, case_float_activation_between_layers,
             case_unsupported_op_in_a_branch, case_concat_of_mismatched_shapes,
             case_per_channel_activation_scale, case_sign_idiom_with_a_bad_constant,
             case_softmax_between_layers, case_transpose_between_layers,
             case_residual_scales_without_integer_ratio, case_argmax_over_the_batch)


CASES: dict[str, Callable[[Path], Setup]] = {
    f.__name__.removeprefix("case_"): f for f in (
        case_missing_model, case_model_is_directory, case_truncated_protobuf,
        case_not_onnx_at_all, case_unsupported_op, case_weights_outside_value_set,
        case_weights_quantized_to_three_bits, case_nan_thresholds, case_nan_bn_parameter,
        case_negative_variance, case_shape_mismatch, case_missing_initializer,
        case_dynamic_feature_dim, case_empty_graph, case_gemm_trans_a, case_wrong_input_rank,
        case_wrong_input_shape, case_wrong_input_dtype, case_nan_inputs,
        case_missing_inputs_file, case_inputs_not_npy, case_output_in_missing_folder,
        *NEW_CASES)
}

MODEL_CASES = {"missing_model", "model_is_directory", "truncated_protobuf", "not_onnx_at_all",
               "unsupported_op", "weights_outside_value_set", "weights_quantized_to_three_bits",
               "nan_thresholds", "nan_bn_parameter", "negative_variance", "shape_mismatch",
               "missing_initializer", "dynamic_feature_dim", "empty_graph", "gemm_trans_a",
               *(f.__name__.removeprefix("case_") for f in NEW_CASES)}


def test_base_model_is_valid(tmp_path: Path) -> None:
    """The cases break one thing each in a model that is otherwise fine."""
    p = _valid_model(tmp_path)
    x = good_inputs(tmp_path / "x.npy")
    r = run_cli("infer", p, "--inputs", x, "--out", tmp_path / "o.npy")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), infer(load_model(p), np.load(x)))


def _check_error(r: subprocess.CompletedProcess[str], expect: tuple[str, ...]) -> None:
    lines = r.stderr.splitlines()
    assert r.returncode == 2, f"exit {r.returncode}, stderr: {r.stderr!r}"
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {r.stderr!r}"
    for word in expect:
        assert word in lines[0], f"{word!r} missing from {lines[0]!r}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_infer_rejects(name: str, tmp_path: Path) -> None:
    s = CASES[name](tmp_path)
    before = set(tmp_path.rglob("*"))
    r = run_cli("infer", s.model, "--inputs", s.inputs, "--out", s.out)
    _check_error(r, s.expect)
    assert not s.out.exists(), f"{s.out} was created"
    assert set(tmp_path.rglob("*")) == before, "files appeared: " + str(
        sorted(set(tmp_path.rglob("*")) - before))


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_inspect_rejects(name: str, tmp_path: Path) -> None:
    s = CASES[name](tmp_path)
    r = run_cli("inspect", s.model)
    _check_error(r, s.expect)
    assert r.stdout == "", r.stdout


def test_at_least_twelve_distinct_cases() -> None:
    assert len(CASES) >= 12
    assert len(NEW_CASES) >= 8


# --------------------------------------------------------------------------
# Exports with signed 8-bit input and residual branches verify end to end
# --------------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "onnx"


@pytest.mark.parametrize(("name", "mapping"), [("cnv_small_w1a1", "BNN_III"),
                                               ("resnet_w1a1", "TNN_I")])
def test_verify_signed_input_and_residual_exports(name: str, mapping: str,
                                                  tmp_path: Path) -> None:
    """CNV's signed 8-bit first layer and a residual network with a
    downsampling shortcut: ``verify`` compiles them and the golden machine
    equals the reference inference (exit 0)."""
    with np.load(FIXTURES / f"{name}.io.npz") as io:
        np.save(tmp_path / "x.npy", io["x"][:2])
    r = run_cli("verify", FIXTURES / f"{name}.onnx", "--inputs", tmp_path / "x.npy",
                "--set", f"mapping={mapping}", "--set", "num_xbars=16")
    assert r.returncode == 0, r.stdout + r.stderr


def test_inspect_lists_the_normalization_passes() -> None:
    r = run_cli("inspect", FIXTURES / "larq_cnn.onnx")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("normalization:"))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("input "))
    listed = [ln.split(":")[0].strip() for ln in lines[start + 1:end]]
    assert listed == ["FixBatch", "InferShapes", "LarqSteSign", "ClassifierTail", "SinkLayout",
                      "ComposeLayout", "FlattenPermutation", "HoistInputLayout"], lines
    assert "dropped 'sequential/activation/Softmax' (Softmax)" in r.stdout
    assert "[batch, 28, 28, 1] -> reshaped to [batch, 1, 28, 28]" in r.stdout
    assert "host-side float op(s) (per class)" in r.stdout


# --------------------------------------------------------------------------
# Positive CLI runs on an example model
# --------------------------------------------------------------------------

EXAMPLE_MODELS = sorted(EXAMPLES.glob("*.onnx"))
PARAMS = [pytest.param(p, id=p.stem) for p in EXAMPLE_MODELS] or [
    pytest.param(None, id="no-examples")]


@pytest.mark.parametrize("path", PARAMS)
def test_inspect_example(path: Path | None) -> None:
    assert path is not None, f"no example models in {EXAMPLES}"
    r = run_cli("inspect", path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    net = load_model(path)
    assert f"model: {path.name}" in r.stdout
    assert f"{len(net.layers)} layers" in r.stdout
    assert "int64 logits [batch, 10]" in r.stdout


@pytest.mark.parametrize("path", PARAMS)
def test_infer_example_matches_reference(path: Path | None, tmp_path: Path) -> None:
    assert path is not None, f"no example models in {EXAMPLES}"
    net = load_model(path)
    x, _ = digits_for(net.input.shape)
    np.save(tmp_path / "digits.npy", x)
    out = tmp_path / "logits.npy"
    r = run_cli("infer", path, "--inputs", tmp_path / "digits.npy", "--out", out)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert f"{len(x)} image(s)" in r.stdout
    got = np.load(out)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, infer(net, x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.npy", "logits.npy"]
