"""Models exported by the real training tools, checked against those tools' own outputs.

``tests/fixtures/onnx`` holds files written by ``scripts/export_models.py``
(Brevitas ``export_qonnx``) and ``scripts/export_larq.py`` (Larq through
tf2onnx), each with ``<name>.io.npz``: seeded inputs ``x``, the framework's
outputs ``y_framework`` and its classifier-layer outputs ``acc_framework``.
Neither torch nor TensorFlow is needed here: the expected values were computed
by the frameworks when the files were exported, and an executor that shares
nothing with cimgen (qonnx for QONNX files, onnxruntime for plain ONNX) must
reproduce them.

Exactness: every Brevitas output matches bit for bit (the TensorNorm tail is
the same float32 Sub/Div/Mul/Add sequence in torch and onnxruntime). Larq's
Softmax is computed differently by TensorFlow and onnxruntime, which differ in
the last bits (measured at most 2.6e-7 relative); the classifier accumulators
before it, which depend on every hidden binary/ternary activation, match
exactly for every fixture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from executors import QONNX_DOMAINS, as_int64, run_onnxruntime, run_qonnx
from onnx import helper

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "onnx"
BREVITAS = ("tfc_w1a1", "tfc_w1a2", "tfc_w2a2", "sfc_w1a1", "lfc_w1a1", "cnv_w1a1",
            "cnv_small_w1a1", "cnv_small_w2a2", "resnet_w1a1", "resnet_w2a2")
LARQ = ("larq_mlp", "larq_cnn", "larq_tern_mlp")
ALL = BREVITAS + LARQ
LINEAR_OPS = ("Gemm", "MatMul")
# TensorFlow and onnxruntime round Softmax differently in the last bits.
SOFTMAX_RTOL = 1e-6
SOFTMAX_ATOL = 1e-7


def _load(name: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    model = onnx.load(FIXTURE_DIR / f"{name}.onnx")
    with np.load(FIXTURE_DIR / f"{name}.io.npz") as io:
        data = {k: io[k] for k in io.files}
    return model, data


def _is_qonnx(model: onnx.ModelProto) -> bool:
    return any(n.domain in QONNX_DOMAINS for n in model.graph.node)


def _execute(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """One sample at a time: Brevitas exports hard-code batch 1 in their flatten."""
    run = run_qonnx if _is_qonnx(model) else run_onnxruntime
    return np.concatenate([run(model, x[i:i + 1]) for i in range(len(x))])


def _cut_at_classifier(model: onnx.ModelProto, classes: int) -> onnx.ModelProto:
    """The same graph ending at the last dense layer's output (drops the float tail)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    last = [n for n in g.node if n.op_type in LINEAR_OPS][-1]
    needed = {last.output[0]}
    keep: list[onnx.NodeProto] = []
    for node in reversed(list(g.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    del g.node[:]
    g.node.extend(reversed(keep))
    batch = g.output[0].type.tensor_type.shape.dim[0]
    batch_dim: int | str = batch.dim_param or batch.dim_value
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(last.output[0], onnx.TensorProto.FLOAT,
                                                  [batch_dim, classes]))
    return m


def test_fixture_set_is_complete() -> None:
    on_disk = sorted(p.name for p in FIXTURE_DIR.iterdir() if not p.name.startswith("."))
    expected = sorted([f"{n}.onnx" for n in ALL] + [f"{n}.io.npz" for n in ALL] + ["README.md"])
    assert on_disk == expected


@pytest.mark.parametrize("name", ALL)
def test_fixture_passes_onnx_checker(name: str) -> None:
    model, data = _load(name)
    onnx.checker.check_model(model, full_check=True)
    assert set(data) == {"x", "y_framework", "acc_framework"}
    assert data["x"].dtype == np.float32 and data["x"].shape[0] == data["y_framework"].shape[0]


@pytest.mark.parametrize("name", ALL)
def test_executor_reproduces_framework_output(name: str) -> None:
    model, data = _load(name)
    y = _execute(model, data["x"])
    assert y.shape == data["y_framework"].shape
    if name in BREVITAS:
        np.testing.assert_array_equal(y, data["y_framework"])
    else:  # Softmax tail
        np.testing.assert_allclose(y, data["y_framework"], rtol=SOFTMAX_RTOL, atol=SOFTMAX_ATOL)
        np.testing.assert_array_equal(y.argmax(axis=1), data["y_framework"].argmax(axis=1))


@pytest.mark.parametrize("name", ALL)
def test_executor_reproduces_framework_accumulators(name: str) -> None:
    model, data = _load(name)
    expected = as_int64(data["acc_framework"], f"{name}: acc_framework")
    # A fixture whose logits do not depend on the input would check nothing.
    assert len({tuple(row) for row in expected.tolist()}) == len(expected)
    cut = _cut_at_classifier(model, expected.shape[1])
    got = as_int64(_execute(cut, data["x"]), f"{name}: executor accumulators")
    np.testing.assert_array_equal(got, expected)
