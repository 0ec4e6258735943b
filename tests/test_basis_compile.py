"""BasisN on the chip: the compiler's basis mode against the basis-form reference.

- Ideal arrays: golden machine == ``golden_model.basis.forward_basis`` (the
  basis-form model's own reference path) on every logit, for binary and
  ternary bases, BNN and TNN mapping families, dense and conv layers, bit-plane
  inputs, batches of several inputs; the machine's counters == the report.
- Zero cell writes after setup; the basis is the only thing written.
- Bad input: a basis the crossbars cannot hold, coefficients wider than the
  chip's CMAC, a basis value the mapping cannot store -> exit 2 naming the key.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from cimgen.cli import main as cli_main
from cimgen.compiler import compile_network
from cimgen.compiler.codegen import fit_basis
from cimgen.config import make_config
from cimgen.frontend.datasets import digits_for
from cimgen.frontend.onnx_import import load_model
from cimgen.run import run_golden
from golden_model.basis import BasisNetwork, forward_basis
from golden_model.errors import BadInputError
from golden_model.ir import Network
from golden_model.isa import Err
from golden_model.reference import quantize_input

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def example(name: str) -> tuple[Network, np.ndarray]:
    net = load_model(ROOT / "examples" / f"{name}.onnx")
    x, _ = digits_for(net.input.shape)
    return net, quantize_input(net, x[::45])


def check(bn: BasisNetwork, over: dict[str, object], q: np.ndarray, what: str) -> None:
    comp = compile_network(bn, make_config(None, over))
    ref = np.asarray(forward_basis(bn, q))
    run = run_golden(comp, q)
    res, rep = run.result, comp.report
    assert res.error == Err.NONE and run.setup.error == Err.NONE, (what, res)
    diff = np.argwhere(run.logits != ref)
    assert diff.size == 0, f"{what}: {len(diff)} logits differ, first {diff[0].tolist()}"
    for key in ("cycles", "reads", "conversions", "lane_ops", "dmem_accesses", "progs"):
        assert getattr(res, key) == getattr(rep, f"{key}_per_batch"), (what, key)
    assert res.cells_written == 0 and res.progs == 0 and rep.cell_writes_per_batch == 0, what
    assert rep.phases == 1 and rep.lifetime_hours is None, what
    assert rep.cell_writes_setup > 0


CASES = [
    # model, mapping, basis count, coefficient bits, chip
    ("bnn_mlp", "BNN_I", 16, 6, {}),
    ("bnn_mlp", "BNN_V", 40, 8, {"rows": 32, "cols": 32, "num_xbars": 2, "batch": 3}),
    ("bnn_cnn", "BNN_III", 24, 4, {"batch": 4}),
    ("tnn_mlp", "TNN_I", 12, 5, {"rows": 64, "cols": 64}),
    ("tnn_mlp", "TNN_IV", 20, 3, {"rows": 48, "cols": 40, "batch": 2}),
    ("bnn_cnn", "TNN_V", 9, 2, {"rows": 64, "cols": 96, "num_xbars": 1}),
]


@pytest.mark.parametrize(("model", "mapping", "n", "bits", "chip"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}x{c[3]}b" for c in CASES])
def test_machine_equals_basis_reference(model: str, mapping: str, n: int, bits: int,
                                        chip: dict[str, object]) -> None:
    net, q = example(model)
    over = {"mapping": mapping, "basis_count": n, "coef_bits": bits, **chip}
    bn = fit_basis(net, make_config(None, over))
    print(model, mapping, bn.basis.kind, n, bits, chip)
    check(bn, over, q, f"{model} {mapping}")


def test_ternary_basis_on_a_binary_network() -> None:
    """A ternary basis (zeros in the basis vectors) needs a mapping that stores 0."""
    net, q = example("bnn_mlp")
    over = {"mapping": "TNN_II", "basis_count": 10, "coef_bits": 4, "seed": 3}
    bn = fit_basis(net, make_config(None, over))
    from cimgen.basis.fit import FitConfig, fit_weights

    tern = fit_weights(net, FitConfig(basis_count=10, coef_bits=4, seg_len=256,
                                      kind="ternary", seed=3)).bn
    assert (tern.basis.vectors == 0).any() and bn.basis.kind == "binary"
    check(tern, over, q, "ternary basis on TNN_II")
    with pytest.raises(BadInputError, match="cannot store basis value"):
        compile_network(tern, make_config(None, {**over, "mapping": "BNN_III"}))


@pytest.mark.parametrize(("over", "msg"), [
    ({"basis_count": 300, "rows": 64, "cols": 64, "num_xbars": 2}, "basis_count"),
    ({"basis_count": 8, "coef_bits": 9}, "coef_bits: must be within 2..8"),
])
def test_bad_basis_configs_exit_2(over: dict[str, object], msg: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    args = ["compile", str(ROOT / "examples" / "bnn_mlp.onnx"), "-o", str(out)]
    for k, v in over.items():
        args += ["--set", f"{k}={v}"]
    rc = cli_main(args)
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and "Traceback" not in err, err
    assert not out.exists()


def test_basis_wider_than_the_chip_coefficients() -> None:
    net, _ = example("bnn_mlp")
    bn = fit_basis(net, make_config(None, {"basis_count": 6, "coef_bits": 8}))
    with pytest.raises(BadInputError, match="8-bit coefficients, the chip's CMAC takes 4"):
        compile_network(bn, make_config(None, {"coef_bits": 4}))
