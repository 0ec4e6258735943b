"""Graphs with branches and signed multi-bit inputs through the compiler and the
golden machine: residual adds (identity and 1x1 stride-2 shortcuts), channel
concats, signed bit-plane inputs with a negative-weighted sign plane, on chips
that hold everything and on chips the weights stream through. Expected values:
the reference inference (golden_model.reference), independent of the compiler."""

from __future__ import annotations

import numpy as np
import pytest
from netgen import residual_network

from cimgen.compiler import compile_network
from cimgen.compiler.codegen import Compiler
from cimgen.config import make_config
from cimgen.run import run_golden
from golden_model.errors import BadInputError
from golden_model.ir import Add, Concat, Tap
from golden_model.isa import Err
from golden_model.reference import forward_int

VARIANTS = [(False, False, False), (True, False, True), (False, True, True), (True, True, False)]


def _check(net, over, q, what) -> None:  # type: ignore[no-untyped-def]
    comp = compile_network(net, make_config(None, over))
    run = run_golden(comp, q)
    ref = forward_int(net, q)
    assert run.result.error == Err.NONE, (what, run.result.error)
    diff = np.argwhere(run.logits != ref)
    assert diff.size == 0, f"{what}: {len(diff)} logits differ, first {diff[0].tolist()}"
    assert run.result.cycles == comp.report.cycles_per_batch, what


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("ternary", "signed", "concat"), VARIANTS,
                         ids=["bin", "tern-concat", "bin-signed-concat", "tern-signed"])
def test_residual_networks(seed: int, ternary: bool, signed: bool, concat: bool) -> None:
    net = residual_network(seed, ternary=ternary, signed_input=signed, concat=concat)
    assert any(isinstance(ly, Add) for ly in net.layers)
    assert any(isinstance(ly, Tap) for ly in net.layers)
    assert concat == any(isinstance(ly, Concat) for ly in net.layers)
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array(net.input.values.values), size=(6, *net.input.shape)
                   ).astype(np.int16)
    maps = ("TNN_I", "TNN_III", "TNN_V") if ternary else ("BNN_I", "BNN_IV", "BNN_VI")
    print("seed", seed, net.input.values.describe())
    for k, mapping in enumerate(maps):
        _check(net, {"mapping": mapping}, q, f"{net.name} {mapping}")
        if k == 0:  # weights streamed through two small crossbars, batches of 4
            _check(net, {"mapping": mapping, "rows": 16, "cols": 12, "num_xbars": 2,
                         "batch": 4}, q, f"{net.name} {mapping} streamed")


def test_signed_input_extremes() -> None:
    """Signed inputs at -2^(b-1) and 2^(b-1) - 1 exercise the sign plane's weight."""
    net = residual_network(3, signed_input=True)
    lo, hi = net.input.values.lo, net.input.values.hi
    q = np.stack([np.full(net.input.shape, v, np.int16) for v in (lo, hi, 0, -1, lo + 1)])
    _check(net, {"mapping": "BNN_III"}, q, "signed extremes")


@pytest.mark.parametrize("factor", [1, -1, -128, 127, 128, 256, -384, 200, 127 << 15])
def test_operand_scales_as_mul_and_shift(factor: int) -> None:
    mul, sh = Compiler.scaled(factor, "x")
    assert mul << sh == factor and -128 <= mul <= 127 and 0 <= sh <= 15


@pytest.mark.parametrize("factor", [129, 257, 129 << 3, 1 << 24])
def test_operand_scale_that_no_acc_takes(factor: int) -> None:
    with pytest.raises(BadInputError, match="not a signed byte times a power of two"):
        Compiler.scaled(factor, "x")
