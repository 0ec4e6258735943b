"""Every example model, all 1,797 digits: cimgen's reference inference against
three independent executors, bit for bit.

    cimgen reference logits (load_model + golden_model.reference.infer)
    == onnx ReferenceEvaluator on the .onnx file (QONNX ops from tests/executors.py)
    == qonnx's execute_onnx on the .onnx file
    == onnxruntime on cimgen's plain-ONNX export of the imported network

and the QONNX round trip import(to_qonnx(net)) gives identical logits.
The data set is the whole of scikit-learn's digits: no randomness here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest
from executors import as_int64, run_onnxruntime, run_qonnx, run_reference_evaluator

from cimgen.frontend.datasets import digits_for
from cimgen.frontend.onnx_export import to_plain_onnx, to_qonnx
from cimgen.frontend.onnx_import import import_model, load_model
from golden_model.floatops import apply_chain
from golden_model.ir import Network
from golden_model.reference import infer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODELS = sorted(EXAMPLES.glob("*.onnx"))
N_DIGITS = 1797

# An empty glob must fail the suite, not skip it: parametrize with a sentinel.
PARAMS = [pytest.param(p, id=p.stem) for p in MODELS] or [pytest.param(None, id="no-examples")]


def _require(path: Path | None) -> Path:
    assert path is not None, f"no example models (*.onnx) in {EXAMPLES}"
    return path


@cache
def _reference(path: Path) -> tuple[Network, np.ndarray, np.ndarray]:
    net = load_model(path)
    x, _ = digits_for(net.input.shape)
    assert x.shape[0] == N_DIGITS
    return net, x, infer(net, x)


def _float_logits(net: Network, logits: np.ndarray) -> np.ndarray:
    """What a float executor of the graph outputs: the integer logits, then any
    scalar output ops the graph applies (none in the examples)."""
    return apply_chain(net.output_ops, logits.astype(np.float32), axis=1)


def _check(name: str, path: Path, net: Network, ref: np.ndarray, got: np.ndarray) -> None:
    want = _float_logits(net, ref)
    assert got.shape == want.shape, f"{path.name}: {name} output shape {got.shape}"
    if not net.output_ops:
        got_i = as_int64(got, f"{path.name}: {name}")
        bad = np.flatnonzero((got_i != ref).any(axis=1))
        assert bad.size == 0, (
            f"{path.name}: {name} differs from cimgen on {bad.size} of {len(ref)} digits, "
            f"first at image {bad[0]}: {got_i[bad[0]].tolist()} vs {ref[bad[0]].tolist()}")
    else:
        np.testing.assert_array_equal(got, want, err_msg=f"{path.name}: {name}")


@pytest.mark.parametrize("path", PARAMS)
def test_examples_exist_and_cover_digits(path: Path | None) -> None:
    p = _require(path)
    net, _, ref = _reference(p)
    assert ref.shape == (N_DIGITS, 10) and ref.dtype == np.int64
    _, y = digits_for(net.input.shape)
    acc = float((ref.argmax(axis=1) == y).mean())
    assert acc > 0.5, f"{p.name}: accuracy {acc:.3f} on all digits; model or data is broken"


@pytest.mark.parametrize("path", PARAMS)
def test_reference_evaluator(path: Path | None) -> None:
    p = _require(path)
    net, x, ref = _reference(p)
    _check("ReferenceEvaluator", p, net, ref, run_reference_evaluator(onnx.load(p), x))


@pytest.mark.parametrize("path", PARAMS)
def test_qonnx_executor(path: Path | None) -> None:
    p = _require(path)
    net, x, ref = _reference(p)
    _check("qonnx execute_onnx", p, net, ref, run_qonnx(onnx.load(p), x))


@pytest.mark.parametrize("path", PARAMS)
def test_onnxruntime_plain_export(path: Path | None) -> None:
    p = _require(path)
    net, x, ref = _reference(p)
    _check("onnxruntime (plain export)", p, net, ref, run_onnxruntime(to_plain_onnx(net), x))


@pytest.mark.parametrize("path", PARAMS)
def test_qonnx_round_trip(path: Path | None) -> None:
    p = _require(path)
    net, x, ref = _reference(p)
    q = to_qonnx(net)
    again = import_model(q, source=f"to_qonnx({p.name})")
    np.testing.assert_array_equal(infer(again, x), ref,
                                  err_msg=f"{p.name}: import(to_qonnx(net)) changed the logits")
    # The exported QONNX graph itself runs on the independent executors too.
    _check("ReferenceEvaluator on to_qonnx", p, net, ref, run_reference_evaluator(q, x))
    _check("qonnx on to_qonnx", p, net, ref, run_qonnx(q, x))
