"""The prepared reference (golden_model.reference.Plan: one float dtype, NHWC, folded
flatten order) against the layer-by-layer reference path in IR layouts. Both must
give the same integers; the executors tests compare either with onnxruntime, qonnx
and onnx's ReferenceEvaluator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from netgen import random_network

from cimgen.frontend.datasets import digits_for
from cimgen.frontend.onnx_import import load_model
from golden_model.floatops import Quantizer
from golden_model.ir import Dense, InputStage, Network, Threshold
from golden_model.reference import Trace, forward_int, prepare, quantize_input

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def layers(net: Network, q: np.ndarray) -> np.ndarray:
    tr = forward_int(net, q, trace=True)
    assert isinstance(tr, Trace)
    return tr.outputs[-1].reshape(q.shape[0], -1).astype(np.int64)


@pytest.mark.parametrize("seed", range(60))
def test_plan_equals_layer_path_on_random_networks(seed: int) -> None:
    net = random_network(seed)
    q = np.random.default_rng(seed).choice(np.array(net.input.values.values),
                                           size=(11, *net.input.shape)).astype(np.int16)
    np.testing.assert_array_equal(prepare(net).forward(q), layers(net, q),
                                  err_msg=f"seed {seed}")


@pytest.mark.parametrize("name", ["bnn_mlp", "tnn_mlp", "bnn_cnn", "large/bnn_mlp_large"])
def test_plan_equals_layer_path_on_examples(name: str) -> None:
    net = load_model(str(EXAMPLES / f"{name}.onnx"))
    x, _ = digits_for(net.input.shape)
    q = quantize_input(net, x)
    plan = prepare(net)
    assert plan.dt == np.float32  # every accumulator below 2**24
    np.testing.assert_array_equal(plan.forward(q), layers(net, q))
    np.testing.assert_array_equal(forward_int(net, q, plan=plan), forward_int(net, q))


def test_plan_clips_thresholds_beyond_the_accumulator_range() -> None:
    """Thresholds of 2**40 (never reached) and -2**40 (always passed) would round in
    float32; clipped to the accumulator range they compare exactly."""
    rng = np.random.default_rng(3)
    w1 = rng.choice(np.int8([-1, 1]), size=(6, 20))
    t = np.array([[2**40], [-(2**40)], [0], [3], [-3], [20]], np.int64)
    act = Threshold(t, np.int8([1, -1, 1, -1, 1, 1]), 2, -1)
    w2 = rng.choice(np.int8([-1, 1]), size=(4, 6))
    net = Network(InputStage((20,), (), Quantizer("bipolar"), 2, -1), (Dense(w1), act, Dense(w2)))
    q = rng.choice(np.int16([-1, 1]), size=(50, 20))
    np.testing.assert_array_equal(prepare(net).forward(q), layers(net, q))
