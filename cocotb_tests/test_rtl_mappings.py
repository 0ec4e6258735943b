"""Compiled networks on the RTL against the golden machine (and, for ideal
chips, the reference inference): every output word, cycles, instructions.

CI: all 11 mappings on bnn_mlp (3 digit images each, 256x256 arrays) and one
seeded non-ideal chip for a POS and a SYM mapping. Slow: every example x every
mapping, ideal and non-ideal.
"""

from __future__ import annotations

import numpy as np
import pytest
from cases import NONIDEAL, compiled, images, reference, session_and_params, storable_pairs
from scoreboard import check_sim

from cimgen.config import MAPPINGS

pytestmark = pytest.mark.rtl

N_IMAGES = 3


def _check(model: str, mapping: str, overrides: dict[str, object], n: int, tag: str) -> None:
    comp = compiled(model, mapping, **overrides)
    q = images(model, n, start=17)
    sess, params = session_and_params(comp, q)
    res, sb = check_sim([sess], name=f"{model}-{mapping}-{tag}", params=params)
    assert sb.runs == n + 1
    if not overrides:  # ideal chip: the RTL also equals the reference inference
        out = comp.output_logits(np.stack([
            np.concatenate([np.zeros(comp.output.base, np.int64), r.data[0]])
            for r in res.sessions[0][1:]]))
        np.testing.assert_array_equal(out, reference(model, q))


@pytest.mark.parametrize("mapping", MAPPINGS)
def test_mapping_bnn_mlp(mapping: str) -> None:
    _check("bnn_mlp", mapping, {}, N_IMAGES, "ideal")


@pytest.mark.parametrize(("model", "mapping"), [("bnn_mlp", "BNN_III"), ("tnn_mlp", "TNN_I")])
def test_nonideal_chip(model: str, mapping: str) -> None:
    _check(model, mapping, NONIDEAL, N_IMAGES, "nonideal")


@pytest.mark.slow
@pytest.mark.parametrize("chip", ["ideal", "nonideal"])
@pytest.mark.parametrize(("model", "mapping"), storable_pairs())
def test_every_example_every_mapping(model: str, mapping: str, chip: str) -> None:
    _check(model, mapping, NONIDEAL if chip == "nonideal" else {}, 5, chip)
