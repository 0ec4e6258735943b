"""Scoreboard: RTL results against the golden machine, run for run.

For every run it compares the error code, the faulting pc (when there is a
fault), the final cycle counter, the instruction counter, the READ/PROG
counters and every data-memory word read back. A mismatch is reported with
the first differing word, its DMEM address and the instruction (pc and
disassembly) that last wrote that address in the run.

``check_sim`` runs a simulation, checks it and, on a mismatch, reruns it with
FST waves and names the wave file in the failure message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from cimgen.hw.rtl_sim import RunOut, RunSpec, Session, SimResult, simulate, waves_requested
from golden_model import isa
from golden_model.isa import Err
from golden_model.machine import ChipImage, Machine


@dataclass
class Expected:
    cycles: int
    instructions: int
    error: Err
    fault_pc: int
    pc: int
    reads: int
    progs: int
    data: list[np.ndarray]


def golden(sessions: list[Session]) -> list[list[Expected]]:
    """The golden machine on the same sessions (cells carried across sessions)."""
    out: list[list[Expected]] = []
    bits = None
    for s in sessions:
        m = Machine(s.image, 1)
        if bits is not None:
            m.xbar_bits[:] = bits
        runs = []
        for r in s.runs:
            for addr, words in r.writes:
                m.load_inputs(addr, np.asarray(words, np.int32)[None, :])
            res = m.run(r.entry)
            runs.append(Expected(res.cycles, res.instructions, res.error, res.fault_pc, res.pc,
                                 res.reads, res.progs,
                                 [m.dmem[0, a:a + n].astype(np.int64) for a, n in r.reads]))
        bits = m.xbar_bits.copy()
        out.append(runs)
    return out


def _disasm(image: ChipImage, pc: int) -> str:
    if not 0 <= pc < len(image.program):
        return f"pc {pc}: (outside the program of {len(image.program)} words)"
    ins = isa.decode(image.program[pc])
    text = isa.disassemble(ins) if ins is not None else f"illegal word 0x{image.program[pc]:016x}"
    return f"pc {pc}: {text}"


def last_writer(image: ChipImage, entry: int, end_pc: int, addr: int) -> str:
    """The last instruction in [entry, end_pc] whose DMEM destination covers addr."""
    found = None
    for pc in range(max(0, entry), min(end_pc + 1, len(image.program))):
        ins = isa.decode(image.program[pc])
        if ins is None or ins.op not in ("STA", "ACT", "VCOPY", "VMAX"):
            continue
        dst, n = ins["dst"], ins["lanes"]
        if dst <= addr < dst + n:
            found = pc
    if found is None:
        return "no instruction of the run writes it (loaded value)"
    return "last written by " + _disasm(image, found)


class Scoreboard:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.runs = 0
        self.words = 0

    def check_run(self, where: str, image: ChipImage, spec: RunSpec, exp: Expected,
                  got: RunOut) -> None:
        self.runs += 1
        bad = []
        if got.error != exp.error:
            bad.append(f"error {got.error.name} != golden {exp.error.name}")
        if exp.error != Err.NONE and got.fault_pc != exp.fault_pc:
            bad.append(f"fault pc {got.fault_pc} != golden {exp.fault_pc} "
                       f"[rtl {_disasm(image, got.fault_pc)}; golden "
                       f"{_disasm(image, exp.fault_pc)}]")
        if exp.error == Err.NONE and got.pc != exp.pc:
            bad.append(f"final pc {got.pc} != golden {exp.pc}")
        for name in ("cycles", "instructions", "reads", "progs"):
            if getattr(got, name) != getattr(exp, name):
                bad.append(f"{name} {getattr(got, name)} != golden {getattr(exp, name)}")
        for (addr, n), want, have in zip(spec.reads, exp.data, got.data, strict=True):
            self.words += n
            diff = np.flatnonzero(np.asarray(want) != np.asarray(have))
            if diff.size:
                i = int(diff[0])
                end = exp.fault_pc if exp.error != Err.NONE else exp.pc
                bad.append(f"{diff.size} of {n} DMEM words differ; first DMEM[{addr + i}] = "
                           f"{int(have[i])} != golden {int(want[i])}; "
                           f"{last_writer(image, spec.entry, end, addr + i)}")
        if bad:
            self.failures.append(f"{where} (entry {spec.entry}): " + "; ".join(bad))

    def check(self, sessions: list[Session], result: SimResult,
              expected: list[list[Expected]] | None = None) -> None:
        expected = expected if expected is not None else golden(sessions)
        for si, (s, exp_s, got_s) in enumerate(zip(sessions, expected, result.sessions,
                                                   strict=True)):
            for ri, (spec, exp, got) in enumerate(zip(s.runs, exp_s, got_s, strict=True)):
                self.check_run(f"session {si} run {ri}", s.image, spec, exp, got)

    @property
    def ok(self) -> bool:
        return not self.failures

    def report(self, limit: int = 5) -> str:
        head = self.failures[:limit]
        more = len(self.failures) - len(head)
        return "\n".join(head) + (f"\n... and {more} more" if more > 0 else "")


def check_sim(sessions: list[Session], name: str, **kw: Any) -> tuple[SimResult, Scoreboard]:
    """Simulate, compare with the golden machine; on a mismatch rerun with waves
    and fail with the report and the wave path."""
    expected = golden(sessions)
    res = simulate(sessions, name=name, **kw)
    sb = Scoreboard()
    sb.check(sessions, res, expected)
    if not sb.ok:
        waves = res.waves
        # CIMGEN_WAVES_RERUN=0 skips the rerun (mutation runs: only the verdict counts).
        rerun = os.environ.get("CIMGEN_WAVES_RERUN", "1") != "0"
        if waves is None and rerun and not waves_requested() and kw.get("waves") is None:
            try:
                waves = simulate(sessions, name=name + "-waves", **{**kw, "waves": True}).waves
            except Exception as e:  # the report matters more than the waves
                waves = f"(rerun with waves failed: {e})"  # type: ignore[assignment]
        raise AssertionError(f"RTL != golden machine in {name}:\n{sb.report()}\n"
                             f"waves: {waves}\nsim log: {res.stats.get('log')}")
    return res, sb
