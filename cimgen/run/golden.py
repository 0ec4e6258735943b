"""Run a compiled program on the golden machine: setup once, then a batch of inferences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden_model.errors import MismatchError
from golden_model.machine import Machine, RunResult

from ..compiler import Compiled


@dataclass
class MachineRun:
    logits: np.ndarray  # int64 [N, outputs]
    setup: RunResult
    result: RunResult  # one program run (a batch of comp.batch inputs; the same for every run)
    dmem: np.ndarray  # [runs, dmem_words]
    runs: int = 1
    batch: int = 1

    @property
    def cycles_per_inference(self) -> float:
        """Cycles of a program run over the inputs it processes."""
        return self.result.cycles / self.batch


def run_golden(comp: Compiled, q: np.ndarray, run_offset: int = 0) -> MachineRun:
    """Run setup once, then the inference program over ``q`` (integers), ``comp.batch``
    inputs per program run, all runs in lockstep. ``run_offset`` is the index of
    the first run in the whole input set (it keys the read noise)."""
    runs = comp.runs(q.shape[0])
    mach = Machine(comp.image, runs, image_offset=run_offset)
    setup = mach.run(comp.setup_entry)
    if setup.error:
        raise MismatchError(f"setup program stopped with {setup.error.name} at pc "
                            f"{setup.fault_pc}", where="machine")
    comp.load_inputs(mach, q)
    res = mach.run(comp.infer_entry)
    return MachineRun(comp.output_logits(mach.dmem, q.shape[0]), setup, res, mach.dmem, runs,
                      comp.batch)
