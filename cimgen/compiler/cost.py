"""The compile report: cycles, cell writes, energy, latency, EDP and lifetime.

Counts come from a walk of the compiled program that follows its control flow
(loops included) without data: the inference program has no data-dependent
control, so cycles, READs, ADC conversions, vector-lane operations and DMEM
accesses are exact, and the golden machine's counters must equal them
(tests/test_streaming.py). The one data-dependent quantity, the current that
flows through the driven cells of a READ, is estimated here with each loaded
input row driven with probability 1/2; ``cimgen verify`` prints the energy of
the actual inputs from the golden machine's counters.

Energy model (every constant is a config key; defaults and sources in
docs/energy.md):

    READ      v_read * sum(driven cell currents over the sensed columns) * t_read
    ADC       adc_fom_fj * 2^bits per conversion (Walden figure of merit); an
              ideal ADC counts at the resolution that resolves every count
    write     per changed cell: write_verify_iters * v_write * i_write_ua * t_write_pulse
    digital   e_digital_pj per vector-lane operation
    memory    e_dmem_pj per DMEM word read or written, and per 32-bit WMEM word
              a PROG or CMAC reads
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from golden_model import isa
from golden_model.isa import Instr, Sense, Src
from golden_model.machine import ChipImage

from ..config import XbarConfig
from .mappings import MAPPINGS
from .tiling import Tile


@dataclass
class Counts:
    """Events of one program run (one batch)."""

    cycles: int = 0
    instructions: int = 0
    reads: int = 0
    conversions: int = 0
    lane_ops: int = 0
    dmem_accesses: int = 0
    progs: int = 0
    wmem_rows: int = 0  # weight-memory rows read (PROG, CMAC)
    read_charge: float = 0.0  # current units summed over driven cells of every READ


@dataclass
class Energy:
    """Energy of one program run, pJ, by source."""

    read: float
    adc: float
    write: float
    digital: float
    memory: float

    @property
    def total(self) -> float:
        return self.read + self.adc + self.write + self.digital + self.memory


def clock_ns(cfg: XbarConfig) -> float:
    return 1000.0 / cfg.clock_mhz


def adc_resolution(cfg: XbarConfig) -> int:
    if cfg.adc_bits:
        return cfg.adc_bits
    levels = cfg.rows + 1 if MAPPINGS[cfg.mapping].sense == "POS" else 2 * cfg.rows + 1
    return max(1, math.ceil(math.log2(levels)))


def energy(cfg: XbarConfig, c: Counts, cells_written: int) -> Energy:
    t = clock_ns(cfg)
    read = cfg.v_read * c.read_charge * cfg.current_lsb_ua * cfg.t_read * t / 1000.0
    adc = c.conversions * cfg.adc_fom_fj * 2.0 ** adc_resolution(cfg) / 1000.0
    write = (cells_written * cfg.write_verify_iters * cfg.v_write * cfg.i_write_ua
             * cfg.t_write_pulse * t / 1000.0)
    digital = c.lane_ops * cfg.e_digital_pj
    memory = (c.dmem_accesses + c.wmem_rows * -(-cfg.cols // 32)) * cfg.e_dmem_pj
    return Energy(read, adc, write, digital, memory)


def walk(image: ChipImage, code: list[Instr], entry: int) -> Counts:
    """Count the events of one run from ``entry`` (no data: loops and PROGs only).

    The READ current is the expected one: every IN entry loaded since INCLR
    drives its row(s) with probability 1/2 (for two-row inputs, one of its two
    rows), at the nominal cell currents of the bits the PROGs left.
    """
    p = image.params
    wmem = image.wmem.astype(bool)
    lrs = image.devmap.lrs.astype(np.float64)
    hrs = image.devmap.hrs.astype(np.float64)
    bits = np.zeros((p.num_xbars, p.rows, p.cols), dtype=bool)
    valid = np.zeros(p.rows, dtype=bool)
    c = Counts()
    cost_of: dict[int, int] = {}

    def step(ins: Instr, times: int) -> None:
        cyc = cost_of.get(id(ins))
        if cyc is None:
            cyc = cost_of[id(ins)] = isa.cost(ins, p)
        c.cycles += cyc * times
        c.instructions += times
        op = ins.op
        n = ins.get("lanes")
        if op == "PROG":
            bits[ins["xbar"], ins["row"]] = wmem[ins["wsrc"]]
            c.progs += times
            c.wmem_rows += times
        elif op == "CMAC":
            c.lane_ops += n * ins["n"] * times
            c.dmem_accesses += ins["n"] * times
            c.wmem_rows += n * times
        elif op == "INCLR":
            valid[:] = False
        elif op == "LDIN":
            valid[ins["dst"]:ins["dst"] + n] = True
            c.lane_ops += n * times
            c.dmem_accesses += n * times
        elif op == "READ":
            c.reads += times
            c.conversions += n * times
            width = 2 * n if ins["sense"] == Sense.SYM else n
            x, ro, c0 = ins["xbar"], ins["row_off"], ins["col"]
            cur = np.where(bits[x, :, c0:c0 + width], lrs[x, :, c0:c0 + width],
                           hrs[x, :, c0:c0 + width]).sum(axis=1)
            idx = np.flatnonzero(valid)
            if ins["pair"]:
                ra = ro + 2 * idx
                ra = ra[ra < p.rows]
                rb = np.minimum(ra + 1, p.rows - 1)
                both = ins["mask_a"] and ins["mask_b"]
                q = cur[ra] * (0.5 if ins["mask_a"] else 0.0) if not both else \
                    0.25 * (cur[ra] + cur[rb])
                q = q.sum() + (0.5 * cur[rb].sum() if ins["mask_b"] and not both else 0.0)
            else:
                rows = ro + idx
                q = 0.5 * cur[rows[rows < p.rows]].sum()
            c.read_charge += float(q) * times
        elif op == "ACC":
            c.lane_ops += n * times
            if ins["src"] == Src.DMEM:
                c.dmem_accesses += n * times
        elif op == "STA":
            c.lane_ops += n * times
            c.dmem_accesses += n * times
        elif op == "ACT":
            c.lane_ops += n * times
            c.dmem_accesses += (n * (ins["k"] + 1) + n) * times
        elif op in ("VCOPY", "VMAX"):
            c.lane_ops += n * times
            c.dmem_accesses += (2 * n if op == "VCOPY" else 3 * n) * times

    pc = entry
    while pc < len(code):
        ins = code[pc]
        if ins.op == "HALT":
            step(ins, 1)
            break
        if ins.op == "LOOP":
            step(ins, 1)
            body = code[pc + 1:pc + 1 + ins["len"]]
            for b in body:  # the body's events do not depend on IB
                step(b, ins["count"])
            pc += 1 + ins["len"]
            continue
        step(ins, 1)
        pc += 1
    return c


@dataclass
class Report:
    mapping: str
    phases: int  # residencies of the weights (1: everything fits and is written at setup)
    xbars_used: int
    utilization: float
    tiles: int
    instructions: int
    setup_instructions: int
    cycles_per_inference: float  # amortized: cycles of a batch run / batch
    setup_cycles: int
    cell_writes_setup: int
    cell_writes_per_inference: float  # amortized: changed cells of a batch run / batch
    reads_per_inference: float
    dmem_words_used: int
    wmem_words_used: int
    adc_tables_used: int
    batch: int
    cycles_per_batch: int
    reads_per_batch: int
    conversions_per_batch: int
    lane_ops_per_batch: int
    dmem_accesses_per_batch: int
    progs_per_batch: int
    cell_writes_per_batch: int
    max_cell_writes_per_batch: int
    energy_pj_per_inference: float
    energy_read_pj: float
    energy_adc_pj: float
    energy_write_pj: float
    energy_digital_pj: float
    energy_memory_pj: float
    latency_ns_per_inference: float
    latency_ns_per_batch: float
    edp_pj_ns: float
    lifetime_hours: float | None  # None: no cell is ever rewritten after setup

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _r(x: float) -> float:
    return float(f"{x:.6g}")


def static_report(cfg: XbarConfig, image: ChipImage, code: list[Instr], entry: int, *,
                  batch: int, residencies: int, xbars_used: int, tiles: list[Tile],
                  cells_per_run: int, max_cell_writes: int, setup_cells: int, dmem_used: int,
                  adc_tables: int) -> Report:
    run = walk(image, code, entry)
    setup = walk(image, code, 0)
    e = energy(cfg, run, cells_per_run)
    per = e.total / batch
    lat_batch = run.cycles * clock_ns(cfg)
    lat = lat_batch / batch
    lifetime = None
    if max_cell_writes:
        runs_per_s = cfg.inference_rate_hz / batch
        lifetime = _r(cfg.endurance_writes / (max_cell_writes * runs_per_s) / 3600.0)
    cells = sum(t.bits.size for t in tiles)
    return Report(
        mapping=cfg.mapping, phases=max(1, residencies), xbars_used=xbars_used,
        utilization=round(cells / (max(1, xbars_used) * cfg.rows * cfg.cols), 6),
        tiles=len(tiles), instructions=len(code) - entry, setup_instructions=entry,
        cycles_per_inference=_r(run.cycles / batch), setup_cycles=setup.cycles,
        cell_writes_setup=setup_cells, cell_writes_per_inference=_r(cells_per_run / batch),
        reads_per_inference=_r(run.reads / batch), dmem_words_used=dmem_used,
        wmem_words_used=int(image.wmem.shape[0]), adc_tables_used=adc_tables, batch=batch,
        cycles_per_batch=run.cycles, reads_per_batch=run.reads,
        conversions_per_batch=run.conversions, lane_ops_per_batch=run.lane_ops,
        dmem_accesses_per_batch=run.dmem_accesses, progs_per_batch=run.progs,
        cell_writes_per_batch=cells_per_run,
        max_cell_writes_per_batch=max_cell_writes, energy_pj_per_inference=_r(per),
        energy_read_pj=_r(e.read / batch), energy_adc_pj=_r(e.adc / batch),
        energy_write_pj=_r(e.write / batch), energy_digital_pj=_r(e.digital / batch),
        energy_memory_pj=_r(e.memory / batch), latency_ns_per_inference=_r(lat),
        latency_ns_per_batch=_r(lat_batch), edp_pj_ns=_r(per * lat), lifetime_hours=lifetime)
