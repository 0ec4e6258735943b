"""The real exports in tests/fixtures/onnx, imported as the tools wrote them.

For every fixture (Brevitas ``export_qonnx``, Larq through tf2onnx):

* cimgen imports the file unedited (normalization passes, then the strict
  importer) into the expected IR;
* cimgen's reference inference equals the framework's own classifier
  accumulators (``acc_framework``, computed by torch / TensorFlow at export
  time) exactly;
* on the fixture inputs and on seeded random inputs that sit exactly on the
  input quantizer's ties, cimgen's integer logits equal the accumulators an
  independent executor computes (qonnx's for QONNX graphs, onnxruntime for
  tf2onnx's plain ONNX), and its host-side scores (the float tail kept as
  output ops) equal the executor's values bit for bit;
* the normalized graph, run by the same executor, computes what the exported
  one does (the passes change no value);
* every fixture compiles (signed 8-bit inputs bit-serially, residual blocks
  with their shortcuts in DMEM, LFC and CNV with weights streamed through 16
  arrays) and the golden machine on ideal arrays equals the reference for
  BNN_I, BNN_III, TNN_I and TNN_IV (the large CNV/residual programs for one
  mapping in CI, all of them under -m slow).

Seeds are printed in every assertion message.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import onnx
import pytest
from executors import as_int64, run_tensors
from test_fixtures_export import ALL, FIXTURE_DIR, LARQ

from cimgen.compiler import compile_network
from cimgen.compiler.mappings import MAPPINGS as MAPPING_TABLE
from cimgen.config import make_config, parse_set
from cimgen.frontend.normalize import normalize
from cimgen.frontend.onnx_import import Imported, load_model_report
from cimgen.run import run_golden
from golden_model.floatops import apply_chain
from golden_model.ir import Add, Conv2d, Dense, Tap
from golden_model.reference import (
    forward_int,
    infer,
    predict,
    quantize_input,
    scores,
    to_ir_layout,
)

SEED = 20250611
N_RANDOM = 6
LINEAR_OPS = ("Gemm", "MatMul")
TAIL_OPS = ("Softmax", "LogSoftmax", "ArgMax")

# name -> (input value kind, residual Adds, Taps, passes that must have run)
EXPECTED: dict[str, tuple[str, int, int, set[str]]] = {
    "tfc_w1a1": ("bipolar", 0, 0, {"StaticInputs"}),
    "tfc_w1a2": ("ternary", 0, 0, {"StaticInputs"}),
    "tfc_w2a2": ("ternary", 0, 0, {"StaticInputs"}),
    "sfc_w1a1": ("bipolar", 0, 0, {"StaticInputs"}),
    "lfc_w1a1": ("bipolar", 0, 0, {"StaticInputs"}),
    "cnv_w1a1": ("signed", 0, 0, {"StaticInputs"}),
    "cnv_small_w1a1": ("signed", 0, 0, {"StaticInputs"}),
    "cnv_small_w2a2": ("signed", 0, 0, {"StaticInputs"}),
    "resnet_w1a1": ("signed", 3, 1, {"StaticInputs"}),
    "resnet_w2a2": ("signed", 3, 1, {"StaticInputs"}),
    "larq_mlp": ("bipolar", 0, 0, {"FixBatch", "LarqSteSign", "ClassifierTail"}),
    "larq_tern_mlp": ("ternary", 0, 0, {"FixBatch", "LarqSteTern", "ClassifierTail"}),
    "larq_cnn": ("bipolar", 0, 0, {"FixBatch", "LarqSteSign", "ClassifierTail", "SinkLayout",
                                   "ComposeLayout", "FlattenPermutation", "HoistInputLayout"}),
}
# Every fixture compiles as exported; the number of 256x256 arrays (LFC streams on 16,
# CNV's signed 8-bit input is read bit-serially, the residual nets keep their shortcuts).
COMPILED = {"tfc_w1a1": 64, "tfc_w1a2": 64, "tfc_w2a2": 64, "sfc_w1a1": 64, "lfc_w1a1": 16,
            "larq_mlp": 64, "larq_tern_mlp": 64, "larq_cnn": 64, "cnv_small_w1a1": 16,
            "cnv_small_w2a2": 16, "resnet_w1a1": 16, "resnet_w2a2": 16, "cnv_w1a1": 16}
# Large programs (tens of thousands of instructions per input, or LFC streamed): one
# pair each in CI, every mapping under -m slow.
CI_ONLY = {"lfc_w1a1": "BNN_I", "cnv_small_w1a1": "BNN_III", "resnet_w1a1": "BNN_I",
           "cnv_small_w2a2": None, "resnet_w2a2": None, "cnv_w1a1": None}
MAPPINGS = ("BNN_I", "BNN_III", "TNN_I", "TNN_IV")
# Weights with zeros (2-bit narrow-range Brevitas, Larq's ternary quantizer);
# checked by test_weight_kinds.
TERNARY_WEIGHTS = {"tfc_w2a2", "larq_tern_mlp", "cnv_small_w2a2", "resnet_w2a2"}


def test_tables_cover_every_fixture() -> None:
    assert sorted(EXPECTED) == sorted(ALL)
    assert sorted(COMPILED) == sorted(ALL)


@cache
def _fixture(name: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray], Imported]:
    path = FIXTURE_DIR / f"{name}.onnx"
    with np.load(FIXTURE_DIR / f"{name}.io.npz") as io:
        data = {k: io[k] for k in io.files}
    return onnx.load(path), data, load_model_report(path)


def tie_inputs(name: str, x: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Seeded inputs in the fixture's range, half of the values on a k/512 grid, which
    holds every tie of these input quantizers: 2x - 1 at 0 (bipolar), at +-1/2
    (2-bit narrow), at (k + 1/2)/128 (8-bit, scale 2^-7); Larq's 0 and +-0.5."""
    seed = SEED + sum(map(ord, name))
    rng = np.random.default_rng(seed)
    lo, hi = float(x.min()), float(x.max())
    shape = (n, *x.shape[1:])
    grid = rng.integers(round(lo * 512), round(hi * 512) + 1, size=shape) / 512
    xs = np.where(rng.random(size=shape) < 0.5, grid, rng.uniform(lo, hi, size=shape))
    return xs.astype(np.float32), seed


def ties_at_input(imp: Imported, x: np.ndarray) -> int:
    """Input values whose quantizer input (after the float pre-ops) sits exactly on a
    level boundary: the level differs one ulp below or one ulp above it."""
    st = imp.net.input
    y = apply_chain(st.pre_ops, to_ir_layout(st, x), axis=1)
    lv = st.quantizer.level(y, axis=1)
    below = st.quantizer.level(np.nextafter(y, np.float32(-np.inf)), axis=1)
    above = st.quantizer.level(np.nextafter(y, np.float32(np.inf)), axis=1)
    return int(((lv != below) | (lv != above)).sum())


def _classifier(model: onnx.ModelProto) -> str:
    return [n for n in model.graph.node if n.op_type in LINEAR_OPS][-1].output[0]


def _pre_tail(model: onnx.ModelProto) -> str:
    """The tensor before the classifier tail (Softmax), else the graph output."""
    out = model.graph.output[0].name
    prod = {o: n for n in model.graph.node for o in n.output}
    node = prod.get(out)
    while node is not None and node.op_type in TAIL_OPS:
        out = node.input[0]
        node = prod.get(out)
    return out


def _per_sample(model: onnx.ModelProto, x: np.ndarray, names: list[str]
                ) -> dict[str, np.ndarray]:
    """Brevitas exports hard-code batch 1 in their flatten: one sample at a time."""
    runs = [run_tensors(model, x[i:i + 1], names) for i in range(len(x))]
    return {k: np.concatenate([r[k] for r in runs]) for k in names}


@pytest.mark.parametrize("name", ALL)
def test_imports_as_exported(name: str) -> None:
    _, _, imp = _fixture(name)
    kind, adds, taps, passes = EXPECTED[name]
    net = imp.net
    assert net.input.values.kind == kind, net.input.values.describe()
    assert sum(isinstance(la, Add) for la in net.layers) == adds
    assert sum(isinstance(la, Tap) for la in net.layers) == taps
    ran = {p.name for p in imp.passes}
    assert passes <= ran, f"{name}: passes {sorted(ran)} miss {sorted(passes - ran)}"
    assert all(p.changes for p in imp.passes), "a pass reported without a change"
    if name in LARQ:
        # NHWC input as Keras takes it; the per-class BatchNorm tail is host-side.
        assert net.input.graph_shape == (28, 28, 1)
        assert len(net.output_ops) == 2 and net.output_ops[0].channels() == 10


@pytest.mark.parametrize("name", ALL)
def test_reference_equals_framework_accumulators(name: str) -> None:
    _, data, imp = _fixture(name)
    want = as_int64(data["acc_framework"], f"{name}: acc_framework")
    np.testing.assert_array_equal(infer(imp.net, data["x"]), want, err_msg=name)
    # The framework's predicted class is cimgen's (host-side scores, argmax).
    np.testing.assert_array_equal(predict(imp.net, want), data["y_framework"].argmax(axis=1))


@pytest.mark.parametrize("name", ALL)
def test_reference_equals_executor_with_ties(name: str) -> None:
    model, data, imp = _fixture(name)
    xr, seed = tie_inputs(name, data["x"], N_RANDOM)
    ties = ties_at_input(imp, xr)
    assert ties > 0, f"{name} seed={seed}: no input lands on a quantizer tie"
    x = np.concatenate([data["x"], xr])
    acc_t, tail_t = _classifier(model), _pre_tail(model)
    got = _per_sample(model, x, list(dict.fromkeys([acc_t, tail_t])))
    logits = infer(imp.net, x)
    msg = f"{name} seed={seed} ({ties} input values on ties)"
    np.testing.assert_array_equal(logits, as_int64(got[acc_t], msg), err_msg=msg)
    # The float tail after the last linear layer, kept host-side, is bit-exact.
    np.testing.assert_array_equal(scores(imp.net, logits), got[tail_t], err_msg=msg)


@pytest.mark.parametrize("name", [*LARQ, "tfc_w1a1", "resnet_w2a2"])
def test_normalized_graph_computes_the_same(name: str) -> None:
    model, data, _ = _fixture(name)
    normalized, _ = normalize(model, name)
    xr, seed = tie_inputs(name, data["x"], N_RANDOM)
    x = np.concatenate([data["x"][:4], xr])
    before = _per_sample(model, x, [_pre_tail(model)])[_pre_tail(model)]
    after_t = normalized.graph.output[0].name
    after = _per_sample(normalized, x, [after_t])[after_t]
    np.testing.assert_array_equal(after, before, err_msg=f"{name} seed={seed}")


@pytest.mark.parametrize("name", sorted(COMPILED))
def test_weight_kinds(name: str) -> None:
    _, _, imp = _fixture(name)
    zeros = any((la.weight == 0).any() for la in imp.net.layers if isinstance(la, Dense | Conv2d))
    assert zeros == (name in TERNARY_WEIGHTS)


# A mapping without a cell pattern for weight 0 (BNN_III) takes binary weights only.
@pytest.mark.parametrize(("name", "mapping"), [
    pytest.param(n, m, marks=[pytest.mark.slow] if n in CI_ONLY and CI_ONLY[n] != m
                 else [])
    for n in COMPILED for m in MAPPINGS
    if n not in TERNARY_WEIGHTS or 0 in MAPPING_TABLE[m].cells])
def test_golden_machine_equals_reference(name: str, mapping: str) -> None:
    _, data, imp = _fixture(name)
    xr, seed = tie_inputs(name, data["x"], 2)
    q = quantize_input(imp.net, np.concatenate([data["x"], xr]))
    cfg = make_config(None, parse_set([f"mapping={mapping}", f"num_xbars={COMPILED[name]}"]))
    comp = compile_network(imp.net, cfg)
    run = run_golden(comp, q)
    assert run.result.error.name == "NONE", f"{name} {mapping}: {run.result.error.name}"
    ref = forward_int(imp.net, q)
    assert isinstance(ref, np.ndarray)
    np.testing.assert_array_equal(run.logits, ref, err_msg=f"{name} {mapping} seed={seed}")
