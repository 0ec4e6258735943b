"""Compiled networks on the RTL against the golden machine (and, for ideal
chips, the reference inference): every output word, cycles, instructions.

CI: all 11 mappings on bnn_mlp (3 digit images each, 256x256 arrays), one
seeded non-ideal chip for a POS and a SYM mapping, and models many times larger
than a 2 x 32x32 chip with weights streamed through it, 4 inputs per run (two
runs, the last one padded). Slow: every example x every mapping, ideal and
non-ideal; the CNN streamed.
"""

from __future__ import annotations

import numpy as np
import pytest
from cases import NONIDEAL, compiled, images, reference, session_and_params, storable_pairs
from scoreboard import check_sim

from cimgen.config import MAPPINGS

pytestmark = pytest.mark.rtl

N_IMAGES = 3


#: A chip many times smaller than the examples: weights stream, 4 inputs per run.
STREAM: dict[str, object] = {"rows": 32, "cols": 32, "num_xbars": 2, "batch": 4,
                             "dmem_words": 8192}


def _check(model: str, mapping: str, overrides: dict[str, object], n: int, tag: str,
           ideal: bool) -> None:
    comp = compiled(model, mapping, **overrides)
    q = images(model, n, start=17)
    sess, params = session_and_params(comp, q)
    res, sb = check_sim([sess], name=f"{model}-{mapping}-{tag}", params=params)
    assert sb.runs == comp.runs(n) + 1
    if ideal:  # the RTL also equals the reference inference
        words = np.concatenate([np.concatenate(r.data).reshape(-1, comp.output.size)
                                for r in res.sessions[0][1:]])
        out = comp.logits_of_words(words[:n])
        np.testing.assert_array_equal(out, reference(model, q))


@pytest.mark.parametrize("mapping", MAPPINGS)
def test_mapping_bnn_mlp(mapping: str) -> None:
    _check("bnn_mlp", mapping, {}, N_IMAGES, "ideal", True)


@pytest.mark.parametrize(("model", "mapping"), [("bnn_mlp", "BNN_III"), ("tnn_mlp", "TNN_I")])
def test_nonideal_chip(model: str, mapping: str) -> None:
    _check(model, mapping, NONIDEAL, N_IMAGES, "nonideal", False)


@pytest.mark.parametrize(("model", "mapping"), [("bnn_mlp", "BNN_I"), ("tnn_mlp", "TNN_V")])
def test_streamed_model(model: str, mapping: str) -> None:
    comp = compiled(model, mapping, **STREAM)
    assert comp.report.phases > 1 and comp.report.cell_writes_per_batch > 0
    _check(model, mapping, STREAM, 6, "stream", True)


@pytest.mark.slow
@pytest.mark.parametrize("mapping", ["BNN_III", "TNN_I"])
def test_streamed_cnn(mapping: str) -> None:
    _check("bnn_cnn", mapping, STREAM, 5, "stream", True)


@pytest.mark.slow
@pytest.mark.parametrize("chip", ["ideal", "nonideal"])
@pytest.mark.parametrize(("model", "mapping"), storable_pairs())
def test_every_example_every_mapping(model: str, mapping: str, chip: str) -> None:
    _check(model, mapping, NONIDEAL if chip == "nonideal" else {}, 5, chip, chip == "ideal")


@pytest.mark.parametrize(("model", "mapping", "over"), [
    ("bnn_mlp", "BNN_I", {"basis_count": 16, "coef_bits": 6}),
    ("tnn_mlp", "TNN_I", {"basis_count": 12, "coef_bits": 5, "rows": 64, "cols": 64,
                          "batch": 2}),
])
def test_basis_mode(model: str, mapping: str, over: dict[str, object]) -> None:
    """BasisN: the basis written once, CMAC combinations; RTL == golden machine (and the
    golden machine == the basis-form reference, tests/test_basis_compile.py)."""
    comp = compiled(model, mapping, **over)
    assert comp.report.cell_writes_per_batch == 0
    _check(model, mapping, over, 3, "basis", False)


@pytest.mark.parametrize(("seed", "ternary", "signed", "over"), [
    (1, False, True, {"mapping": "BNN_I"}),
    (2, True, False, {"mapping": "TNN_IV", "rows": 16, "cols": 12, "num_xbars": 2, "batch": 2}),
])
def test_residual_network(seed: int, ternary: bool, signed: bool,
                          over: dict[str, object]) -> None:
    """Two residual blocks (identity and a 1x1 stride-2 shortcut) and a concat, a signed
    multi-bit input or weights streamed in batches: RTL == golden machine == reference."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from netgen import residual_network

    from cimgen.compiler import compile_network
    from cimgen.config import make_config
    from golden_model.reference import forward_int

    net = residual_network(seed, ternary=ternary, signed_input=signed, concat=True)
    comp = compile_network(net, make_config(None, over))
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array(net.input.values.values), size=(3, *net.input.shape)
                   ).astype(np.int16)
    sess, params = session_and_params(comp, q)
    res, sb = check_sim([sess], name=f"residual{seed}-{over['mapping']}", params=params)
    assert sb.runs == comp.runs(3) + 1
    words = np.concatenate([np.concatenate(r.data).reshape(-1, comp.output.size)
                            for r in res.sessions[0][1:]])
    np.testing.assert_array_equal(comp.logits_of_words(words[:3]), forward_int(net, q))
