"""Compare an execution's logits with what it must equal, and report the verify table.

What each comparison proves (README, docs/dse.md "Verification"):

* ideal crossbar: golden machine == reference inference, exactly. The
  compiler's program and chip image compute the network.
* non-ideal crossbar (variability, faults, a coarse ADC, read noise, IR drop,
  read disturb): golden machine == the independent non-ideal reference
  (``golden_model.nonideal_reference``), exactly. The compiler placed, wired
  and scheduled every tile, ADC table and read as the mapping requires, and
  the machine executed it; the shared physics (``golden_model.physics``) is
  checked by its own tests.
* basis mode (BasisN): golden machine == the basis form's own reference
  (``golden_model.basis.forward_basis``) on an ideal chip, == the independent
  non-ideal reference otherwise (it reads every input segment against the
  basis tiles and combines the products with the coefficients itself). The
  original network's reference inference is information only: the basis
  form approximates it.
* with ``--rtl``, in addition: RTL == golden machine on every output word,
  cycle count and error code.

The reference inference (the ideal network) is reported for information on a
non-ideal chip: accuracy and agreement, never a pass/fail criterion there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from golden_model import nonideal_reference
from golden_model.basis import forward_basis
from golden_model.errors import CimgenError
from golden_model.ir import Network
from golden_model.reference import forward_int, predict, quantize_input

from ..compiler import Compiled, compile_network
from ..config import XbarConfig
from .golden import run_golden

REFERENCE = "reference inference"
NONIDEAL = "independent non-ideal reference"
BASIS = "basis-form reference (golden_model.basis)"


@dataclass
class VerifyReport:
    images: int
    ideal: bool
    expected: str  # what the machine was compared with
    equal_images: int
    mismatching_words: int
    agreement: float  # identical argmax with the reference inference (ideal network)
    ideal_equal_images: int  # images whose logits equal the reference inference
    accuracy: float | None
    reference_accuracy: float | None
    cycles_per_inference: float
    first_mismatch: tuple[int, int, int, int] | None  # image, output, got, expected
    error: str
    costs: list[tuple[str, str]] = field(default_factory=list)  # extra rows (cost_rows)

    @property
    def ok(self) -> bool:
        return self.error == "NONE" and self.mismatching_words == 0

    def table(self) -> str:
        rows = [
            ("images", str(self.images)),
            ("crossbar", "ideal" if self.ideal else "non-ideal"),
            ("compared with", self.expected),
            ("machine error", self.error),
            ("images with identical logits", f"{self.equal_images}/{self.images}"),
            ("mismatching logit words", str(self.mismatching_words)),
        ]
        if self.first_mismatch is not None:
            i, o, got, exp = self.first_mismatch
            rows.append(("first mismatch", f"image {i} output {o}: got {got}, expected {exp}"))
        if not self.ideal:
            rows.append(("logits equal to reference inference",
                         f"{self.ideal_equal_images}/{self.images}"))
        rows.append(("prediction agreement", f"{self.agreement:.4f}"))
        if self.accuracy is not None:
            rows.append(("accuracy (machine)", f"{self.accuracy:.4f}"))
            rows.append(("accuracy (reference)", f"{self.reference_accuracy:.4f}"))
        rows.append(("cycles per inference", f"{self.cycles_per_inference:g}"))
        rows += self.costs
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def compare(out: np.ndarray, expected: np.ndarray, ref: np.ndarray, labels: np.ndarray | None,
            ideal: bool, cycles: float, error: str, expected_name: str = REFERENCE,
            net: Network | None = None) -> VerifyReport:
    """``out`` must equal ``expected``; ``ref`` (the reference inference) is information.
    Predictions are the argmax of the network's host-side output ops applied to the
    logits (``net`` given) or of the logits themselves."""
    diff = out != expected
    first = None
    if diff.any():
        i, o = (int(v) for v in np.argwhere(diff)[0])
        first = (i, o, int(out[i, o]), int(expected[i, o]))
    if net is not None:
        pm, pr = predict(net, out), predict(net, ref)
    else:
        pm, pr = out.argmax(axis=1), ref.argmax(axis=1)
    acc = racc = None
    if labels is not None:
        acc = float((pm == labels).mean())
        racc = float((pr == labels).mean())
    return VerifyReport(images=out.shape[0], ideal=ideal, expected=expected_name,
                        equal_images=int((~diff).all(axis=1).sum()),
                        mismatching_words=int(diff.sum()), agreement=float((pm == pr).mean()),
                        ideal_equal_images=int((out == ref).all(axis=1).sum()),
                        accuracy=acc, reference_accuracy=racc, cycles_per_inference=cycles,
                        first_mismatch=first, error=error)


def expected_logits(comp: Compiled, q: np.ndarray, ref: np.ndarray, run_offset: int = 0
                    ) -> tuple[np.ndarray, str]:
    """What the golden machine must produce on ``comp`` (and which check that is): the
    reference inference on an ideal chip (the basis form's reference in basis mode),
    the independent non-ideal reference otherwise."""
    if comp.cfg.is_ideal:
        if comp.basis is not None:
            return np.asarray(forward_basis(comp.basis, q), np.int64), BASIS
        return ref, REFERENCE
    if comp.schedule is None or comp.net is None:
        raise CimgenError("a non-ideal chip loaded from a compile directory has no schedule "
                          "for the non-ideal reference; verify the model instead", where="verify")
    return nonideal_reference.infer(comp.net, comp.image.params, comp.image.devmap,
                                    comp.adc_tables, comp.schedule, q, run_offset,
                                    basis=comp.basis), NONIDEAL


def verify_golden(net: Network, cfg: XbarConfig, x: np.ndarray, labels: np.ndarray | None,
                  calib: np.ndarray | None = None) -> VerifyReport:
    comp = compile_network(net, cfg, calib)
    q = quantize_input(net, x)
    ref = forward_int(net, q)
    assert isinstance(ref, np.ndarray)
    run = run_golden(comp, q)
    exp, name = expected_logits(comp, q, ref)
    return compare(run.logits, exp, ref, labels, cfg.is_ideal, run.cycles_per_inference,
                   run.result.error.name, name, net)
