"""Compare an execution's logits with the reference inference: the verify table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from golden_model.ir import Network
from golden_model.reference import forward_int, predict, quantize_input

from ..compiler import compile_network
from ..config import XbarConfig
from .golden import run_golden


@dataclass
class VerifyReport:
    images: int
    ideal: bool
    equal_images: int
    mismatching_words: int
    agreement: float  # identical argmax with the reference
    accuracy: float | None
    reference_accuracy: float | None
    cycles_per_inference: float
    first_mismatch: tuple[int, int, int, int] | None  # image, output, got, expected
    error: str
    costs: list[tuple[str, str]] = field(default_factory=list)  # extra rows (cost_rows)

    @property
    def ok(self) -> bool:
        return self.error == "NONE" and (not self.ideal or self.mismatching_words == 0)

    def table(self) -> str:
        rows = [
            ("images", str(self.images)),
            ("crossbar", "ideal" if self.ideal else "non-ideal"),
            ("machine error", self.error),
            ("images with identical logits", f"{self.equal_images}/{self.images}"),
            ("mismatching logit words", str(self.mismatching_words)),
            ("prediction agreement", f"{self.agreement:.4f}"),
        ]
        if self.accuracy is not None:
            rows.append(("accuracy (machine)", f"{self.accuracy:.4f}"))
            rows.append(("accuracy (reference)", f"{self.reference_accuracy:.4f}"))
        rows.append(("cycles per inference", f"{self.cycles_per_inference:g}"))
        rows += self.costs
        if self.first_mismatch is not None:
            i, o, got, exp = self.first_mismatch
            rows.append(("first mismatch", f"image {i} output {o}: got {got}, expected {exp}"))
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def compare(out: np.ndarray, ref: np.ndarray, labels: np.ndarray | None, ideal: bool,
            cycles: float, error: str, net: Network | None = None) -> VerifyReport:
    """Logits of an execution vs the reference's. Predictions are the argmax of the
    network's host-side output ops applied to the logits (``net`` given) or of the
    logits themselves."""
    diff = out != ref
    first = None
    if diff.any():
        i, o = (int(v) for v in np.argwhere(diff)[0])
        first = (i, o, int(out[i, o]), int(ref[i, o]))
    if net is not None:
        pm, pr = predict(net, out), predict(net, ref)
    else:
        pm, pr = out.argmax(axis=1), ref.argmax(axis=1)
    acc = racc = None
    if labels is not None:
        acc = float((pm == labels).mean())
        racc = float((pr == labels).mean())
    return VerifyReport(images=out.shape[0], ideal=ideal,
                        equal_images=int((~diff).all(axis=1).sum()),
                        mismatching_words=int(diff.sum()), agreement=float((pm == pr).mean()),
                        accuracy=acc, reference_accuracy=racc, cycles_per_inference=cycles,
                        first_mismatch=first, error=error)


def verify_golden(net: Network, cfg: XbarConfig, x: np.ndarray, labels: np.ndarray | None,
                  calib: np.ndarray | None = None) -> VerifyReport:
    comp = compile_network(net, cfg, calib)
    q = quantize_input(net, x)
    ref = forward_int(net, q)
    assert isinstance(ref, np.ndarray)
    run = run_golden(comp, q)
    return compare(run.logits, ref, labels, cfg.is_ideal, run.cycles_per_inference,
                   run.result.error.name, net)
