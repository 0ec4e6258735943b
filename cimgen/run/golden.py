"""Run a compiled program on the golden machine: setup once, then a batch of inferences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden_model.errors import MismatchError
from golden_model.machine import Machine, RunResult

from ..compiler.compiled import Compiled
from ..compiler.cost import Counts, clock_ns, energy


@dataclass
class MachineRun:
    logits: np.ndarray  # int64 [N, outputs]
    setup: RunResult
    result: RunResult  # one program run (a batch of comp.batch inputs; the same for every run)
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
    # A machine of an earlier call for the same image and runs, reset (Machine.reuse):
    # the same results as a new one, without allocating and preparing again.
    mach = Machine.reuse(comp.image, runs, image_offset=run_offset)
    setup = mach.run(comp.setup_entry)
    if setup.error:
        raise MismatchError(f"setup program stopped with {setup.error.name} at pc "
                            f"{setup.fault_pc}", where="machine")
    comp.load_inputs(mach, q)
    res = mach.run(comp.infer_entry)
    logits = comp.output_logits(mach.dmem, q.shape[0])
    mach.release()
    return MachineRun(logits, setup, res, runs, comp.batch)


def cost_rows(comp: Compiled, run: MachineRun) -> list[tuple[str, str]]:
    """Batch, writes, energy, latency and EDP of a machine run, from its counters
    (the READ energy of the actual inputs, averaged over the runs), beside the
    compile report's static estimate."""
    r = run.result
    cfg = comp.cfg
    c = Counts(cycles=r.cycles, instructions=r.instructions, reads=r.reads,
               conversions=r.conversions, lane_ops=r.lane_ops, dmem_accesses=r.dmem_accesses,
               progs=r.progs, wmem_rows=r.wmem_rows,
               read_charge=float(r.read_charge.mean()) if r.read_charge.size else 0.0)
    b = comp.batch
    e = energy(cfg, c, r.cells_written).total / b
    lat = r.cycles * clock_ns(cfg) / b
    rep = comp.report
    life = "never rewritten" if rep.lifetime_hours is None else f"{rep.lifetime_hours:g} h"
    return [
        ("batch (inputs per program run)", str(b)),
        ("weight residencies", str(rep.phases)),
        ("cycles per batch", str(r.cycles)),
        ("cell writes per batch (max per cell)", f"{r.cells_written} ({r.max_cell_writes})"),
        ("energy per inference", f"{e:.6g} pJ (compile estimate {rep.energy_pj_per_inference:g})"),
        ("latency per inference", f"{lat:.6g} ns at {cfg.clock_mhz:g} MHz"),
        ("energy-delay product", f"{e * lat:.6g} pJ*ns"),
        ("projected lifetime", f"{life} at {cfg.inference_rate_hz:g} inferences/s, "
                               f"endurance {cfg.endurance_writes:g}"),
    ]
