"""Drive compiled programs on the golden machine and compare with the reference."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from golden_model.errors import BadInputError, MismatchError
from golden_model.ir import Network
from golden_model.machine import Machine, RunResult
from golden_model.reference import check_inputs, forward_int, quantize_input

from .compiler import Compiled, compile_network
from .config import XbarConfig
from .fileio import load_npy


@dataclass
class MachineRun:
    logits: np.ndarray  # int64 [B, outputs]
    setup: RunResult
    result: RunResult  # the inference program (same for every image of the batch)
    dmem: np.ndarray


def run_golden(comp: Compiled, q: np.ndarray) -> MachineRun:
    """Run setup once, then the inference program on the whole batch ``q`` (integers)."""
    mach = Machine(comp.image, q.shape[0])
    setup = mach.run(comp.setup_entry)
    if setup.error:
        raise MismatchError(f"setup program stopped with {setup.error.name} at pc "
                            f"{setup.fault_pc}", where="machine")
    mach.load_inputs(comp.input.base, comp.input_words(q))
    res = mach.run(comp.infer_entry)
    return MachineRun(comp.output_logits(mach.dmem), setup, res, mach.dmem)


def calibration_batch(net: Network, cfg: XbarConfig, path: str | None) -> np.ndarray | None:
    """Quantized calibration inputs: a file, or the digits train split for digits models."""
    if cfg.adc_range != "calib" or cfg.adc_bits == 0:
        return None
    if path is not None:
        x = load_npy(path)
        check_inputs(net, x, where=path)
    else:
        from .datasets import digits_for

        try:
            x, _ = digits_for(net.input.shape, "train")
        except BadInputError:
            raise BadInputError("adc_range = calib needs --calib X.npy for a model that does "
                                "not take digits", where="config") from None
    return quantize_input(net, x[: cfg.calib_images])


def default_inputs(net: Network, inputs: str | None, labels: str | None
                   ) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Inputs (float32) and optional labels: files, or all 1,797 digits."""
    if inputs is not None:
        x = load_npy(inputs)
        check_inputs(net, x, where=inputs)
        y = None
        if labels is not None:
            y = load_npy(labels)
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise BadInputError(f"labels shape {y.shape} does not match {x.shape[0]} "
                                    "inputs", where=labels)
        return x, y, os.path.basename(inputs)
    from .datasets import digits_for

    try:
        x, y = digits_for(net.input.shape)
    except BadInputError:
        raise BadInputError("the model does not take digits; give --inputs X.npy",
                            where=net.name) from None
    return x, y, "digits (all 1,797)"


@dataclass
class VerifyReport:
    images: int
    ideal: bool
    equal_images: int
    mismatching_words: int
    agreement: float  # identical argmax with the reference
    accuracy: float | None
    reference_accuracy: float | None
    cycles_per_inference: int
    first_mismatch: tuple[int, int, int, int] | None  # image, output, got, expected
    error: str

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
        rows.append(("cycles per inference", str(self.cycles_per_inference)))
        if self.first_mismatch is not None:
            i, o, got, exp = self.first_mismatch
            rows.append(("first mismatch", f"image {i} output {o}: got {got}, expected {exp}"))
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def compare(out: np.ndarray, ref: np.ndarray, labels: np.ndarray | None, ideal: bool,
            cycles: int, error: str) -> VerifyReport:
    diff = out != ref
    first = None
    if diff.any():
        i, o = (int(v) for v in np.argwhere(diff)[0])
        first = (i, o, int(out[i, o]), int(ref[i, o]))
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
    return compare(run.logits, ref, labels, cfg.is_ideal, run.result.cycles,
                   run.result.error.name)
