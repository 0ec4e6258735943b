"""Run a compiled program on the golden machine: setup once, then a batch of inferences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden_model.errors import MismatchError
from golden_model.machine import Machine, RunResult

from ..compiler import Compiled


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
