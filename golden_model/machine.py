"""The ISA-level golden machine, vectorized over a batch of inferences.

The program has no data-dependent control flow, so one pass over it serves
the whole batch: every vector register and the data memory carry a leading
batch axis, while the program counter, cycle counter and error state are
shared. The RTL must match this machine on every DMEM word and every cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cimgen import isa
from cimgen.isa import BIT_SIGNED, MASK_NEG, MASK_POS, MASK_ZERO, Err, Sense, Src

from .crossbar import DeviceMap


@dataclass(frozen=True)
class MachineParams:
    """Sizes and timing of one chip instance (from the crossbar config)."""

    rows: int
    cols: int
    num_xbars: int
    dmem_words: int
    wmem_words: int
    adc_tables: int
    vec_width: int
    t_read: int
    t_adc: int
    t_write: int
    adcs_per_xbar: int
    hrs_units: int
    # Cycle-to-cycle read noise per driven cell (current units) and its RNG key.
    read_sigma_units: float = 0.0
    seed: int = 0


@dataclass(frozen=True, eq=False)
class ChipImage:
    """Everything the host loads before starting the controller."""

    params: MachineParams
    program: tuple[int, ...]  # 64-bit words
    wmem: np.ndarray  # uint8 bits [wmem_used, cols]
    dmem_init: np.ndarray  # int32 [n] loaded at DMEM[0..n)
    adc_thr: np.ndarray  # int64 [adc_tables_used, 2*rows]
    adc_recon: np.ndarray  # int64 [adc_tables_used, 2*rows + 1]
    devmap: DeviceMap


@dataclass
class RunResult:
    cycles: int
    instructions: int
    error: Err
    fault_pc: int
    pc: int
    cells_written: int = 0
    reads: int = 0


def _mask_of(values: np.ndarray, mask: int, bit: int) -> np.ndarray:
    """Boolean drive for each IN entry under a 3-bit value mask."""
    if bit == BIT_SIGNED:
        v = values
    else:
        v = (values.astype(np.int32) >> bit) & 1
    d = np.zeros(v.shape, dtype=bool)
    if mask & MASK_NEG:
        d |= v < 0
    if mask & MASK_ZERO:
        d |= v == 0
    if mask & MASK_POS:
        d |= v > 0
    return d


def _wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to the int32 range."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


@dataclass
class Machine:
    image: ChipImage
    batch: int
    xbar_bits: np.ndarray = field(init=False)  # bool [X, rows, cols], persists
    dmem: np.ndarray = field(init=False)  # int32 [B, dmem_words]
    # Called with (adc table, ADC input [B, lanes]) at every READ: calibration hook.
    probe: Callable[[int, np.ndarray], None] | None = None
    # Index of this batch's first image in the whole input set (keys the read noise).
    image_offset: int = 0
    _cur: dict[int, np.ndarray] = field(init=False, default_factory=dict)
    _reads: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        p = self.image.params
        self.xbar_bits = np.zeros((p.num_xbars, p.rows, p.cols), dtype=bool)
        self.dmem = np.zeros((self.batch, p.dmem_words), dtype=np.int32)
        n = self.image.dmem_init.size
        self.dmem[:, :n] = self.image.dmem_init
        self.decoded = [isa.decode(w) for w in self.image.program]
        self.costs = [isa.cost(d, p) if d is not None else 1 for d in self.decoded]

    # ------------------------------------------------------------ helpers
    def currents(self, xbar: int) -> np.ndarray:
        """Cell currents of one crossbar, cached until it is reprogrammed."""
        cur = self._cur.get(xbar)
        if cur is None:
            cur = self.image.devmap.cell_currents(xbar, self.xbar_bits[xbar])
            self._cur[xbar] = cur
        return cur

    def load_inputs(self, addr: int, data: np.ndarray) -> None:
        """Host writes [B, n] words at DMEM[addr..]."""
        self.dmem[:, addr:addr + data.shape[1]] = data

    # ----------------------------------------------------------------- run
    def run(self, entry: int = 0, max_instructions: int = 50_000_000) -> RunResult:
        p = self.image.params
        B = self.batch
        prog = self.decoded
        in_reg = np.zeros((B, p.rows), dtype=np.int32)
        # Which IN entries LDIN has written since INCLR: only those drive rows.
        in_valid = np.zeros(p.rows, dtype=bool)
        code = np.zeros((B, p.cols), dtype=np.int64)
        ndrv = np.zeros(B, dtype=np.int64)
        acc = np.zeros((B, p.cols), dtype=np.int64)
        dmem = self.dmem
        res = RunResult(0, 0, Err.NONE, -1, entry)
        pc = entry
        while res.instructions < max_instructions:
            if not 0 <= pc < len(prog):
                return self._fault(res, Err.PC_RANGE, pc)
            ins = prog[pc]
            if ins is None:
                return self._fault(res, Err.ILLEGAL, pc)
            err = self._check(ins)
            if err != Err.NONE:
                return self._fault(res, err, pc)
            res.instructions += 1
            res.cycles += self.costs[pc]
            op = ins.op
            a = dict(ins.args)
            n = a.get("lanes", 0)
            if op == "HALT":
                res.pc = pc
                return res
            if op == "NOP":
                pass
            elif op == "PROG":
                self.xbar_bits[a["xbar"], a["row"]] = self.image.wmem[a["wsrc"]].astype(bool)
                self._cur.pop(a["xbar"], None)
                res.cells_written += p.cols
            elif op == "INCLR":
                in_reg[:] = 0
                in_valid[:] = False
            elif op == "LDIN":
                in_reg[:, a["dst"]:a["dst"] + n] = dmem[:, a["src"]:a["src"] + n]
                in_valid[a["dst"]:a["dst"] + n] = True
            elif op == "READ":
                self._read(a, in_reg, in_valid, code, ndrv)
                res.reads += 1
            elif op == "ACC":
                k = a["mul"] << a["sh"]
                if a["src"] == Src.CODE:
                    acc[:, :n] += k * code[:, a["addr"]:a["addr"] + n]
                elif a["src"] == Src.NDRV:
                    acc[:, :n] += (k * ndrv)[:, None]
                else:
                    acc[:, :n] += k * dmem[:, a["addr"]:a["addr"] + n].astype(np.int64)
                acc[:, :n] = _wrap32(acc[:, :n])  # ACC lanes are 32-bit registers
            elif op == "ACLR":
                acc[:] = 0
            elif op == "STA":
                dmem[:, a["dst"]:a["dst"] + n] = acc[:, :n]
            elif op == "ACT":
                kk = a["k"]
                for lo, hi in self._chunks(n, a["tbl"], n * (kk + 1), a["dst"]):
                    tbl = dmem[:, a["tbl"] + lo * (kk + 1):a["tbl"] + hi * (kk + 1)]
                    tbl = tbl.reshape(B, hi - lo, kk + 1)
                    s = tbl[:, :, 0].astype(np.int64)
                    v = s * acc[:, lo:hi]
                    cnt = (v[:, :, None] >= tbl[:, :, 1:]).sum(axis=2)
                    dmem[:, a["dst"] + lo:a["dst"] + hi] = a["obias"] + a["oscale"] * cnt
            elif op == "VCOPY":
                for lo, hi in self._chunks(n, a["src"], n, a["dst"]):
                    dmem[:, a["dst"] + lo:a["dst"] + hi] = dmem[:, a["src"] + lo:a["src"] + hi]
            elif op == "VMAX":
                for lo, hi in self._chunks(n, a["src"], n, a["dst"]):
                    d = dmem[:, a["dst"] + lo:a["dst"] + hi]
                    np.maximum(d, dmem[:, a["src"] + lo:a["src"] + hi], out=d)
            pc += 1
        return self._fault(res, Err.PC_RANGE, pc)

    def _chunks(self, n: int, src: int, src_len: int, dst: int) -> list[tuple[int, int]]:
        """Lane ranges of a DMEM -> DMEM vector instruction, in execution order.

        The vector unit handles vec_width lanes per cycle, ascending; each step
        reads its source words, then writes its destination words. When the
        source range [src, src + src_len) and [dst, dst + n) do not overlap this
        equals one whole-vector step (the fast path).
        """
        if src + src_len <= dst or dst + n <= src:
            return [(0, n)]
        vw = self.image.params.vec_width
        return [(lo, min(n, lo + vw)) for lo in range(0, n, vw)]

    @staticmethod
    def _fault(res: RunResult, err: Err, pc: int) -> RunResult:
        # A faulting instruction costs its decode cycle and is not counted as executed.
        res.cycles += 1
        res.error = err
        res.fault_pc = pc
        res.pc = pc
        return res

    def _check(self, ins: isa.Instr) -> Err:
        """Range checks, in the order the RTL performs them."""
        p = self.image.params
        a = dict(ins.args)
        op = ins.op
        n = a.get("lanes", 0)
        if op == "ACC" and a["src"] > Src.DMEM:
            return Err.ILLEGAL
        if op == "ACT" and a["k"] == 0:
            return Err.ILLEGAL
        if op == "READ" and 8 <= a["bit"] < BIT_SIGNED:
            return Err.ILLEGAL
        if "lanes" in a and not 1 <= n <= (p.rows if op == "LDIN" else p.cols):
            return Err.VEC_RANGE
        if op == "PROG":
            if a["xbar"] >= p.num_xbars or a["row"] >= p.rows:
                return Err.XBAR_RANGE
            if a["wsrc"] >= p.wmem_words or a["wsrc"] >= self.image.wmem.shape[0]:
                return Err.WMEM_RANGE
        elif op == "LDIN":
            if a["dst"] + n > p.rows:
                return Err.VEC_RANGE
            if a["src"] + n > p.dmem_words:
                return Err.DMEM_RANGE
        elif op == "READ":
            width = 2 * n if a["sense"] == Sense.SYM else n
            if a["xbar"] >= p.num_xbars or a["row_off"] >= p.rows or a["col"] + width > p.cols:
                return Err.XBAR_RANGE
            if a["adc"] >= p.adc_tables or a["adc"] >= self.image.adc_thr.shape[0]:
                return Err.ADC_RANGE
        elif op == "ACC":
            if a["src"] == Src.CODE and a["addr"] + n > p.cols:
                return Err.VEC_RANGE
            if a["src"] == Src.DMEM and a["addr"] + n > p.dmem_words:
                return Err.DMEM_RANGE
        elif op == "STA":
            if a["dst"] + n > p.dmem_words:
                return Err.DMEM_RANGE
        elif op == "ACT":
            if a["dst"] + n > p.dmem_words or a["tbl"] + n * (a["k"] + 1) > p.dmem_words:
                return Err.DMEM_RANGE
        elif op in ("VCOPY", "VMAX") and (a["dst"] + n > p.dmem_words
                                          or a["src"] + n > p.dmem_words):
            return Err.DMEM_RANGE
        return Err.NONE

    def _read(self, a: dict[str, int], in_reg: np.ndarray, in_valid: np.ndarray,
              code: np.ndarray, ndrv: np.ndarray) -> None:
        p = self.image.params
        B = self.batch
        ro = a["row_off"]
        drive = np.zeros((B, p.rows), dtype=bool)
        if a["pair"]:
            m = (p.rows - ro + 1) // 2  # IN entries whose first row is in the array
            da = _mask_of(in_reg[:, :m], a["mask_a"], a["bit"]) & in_valid[:m]
            db = _mask_of(in_reg[:, :m], a["mask_b"], a["bit"]) & in_valid[:m]
            drive[:, ro:ro + 2 * m:2] = da
            nb = len(range(ro + 1, p.rows, 2))
            drive[:, ro + 1:p.rows:2] = db[:, :nb]
        else:
            m = p.rows - ro
            drive[:, ro:] = _mask_of(in_reg[:, :m], a["mask_a"], a["bit"]) & in_valid[:m]
        n = a["lanes"]
        c0 = a["col"]
        sym = a["sense"] == Sense.SYM
        width = 2 * n if sym else n
        cur = self.currents(a["xbar"])[:, c0:c0 + width]
        rows_used = np.flatnonzero(drive.any(axis=0))
        d = drive[:, rows_used]
        cur = cur[rows_used]
        big = int(cur.max(initial=0)) * max(1, rows_used.size)
        dt = np.float32 if big < 2**24 else np.float64
        col_i = (d.astype(dt) @ cur.astype(dt)).astype(np.int64)
        nd = d.sum(axis=1).astype(np.int64)
        if p.read_sigma_units > 0:
            col_i = np.maximum(col_i + self._read_noise(c0, width, nd), 0)
        if sym:
            x = col_i[:, 0::2] - col_i[:, 1::2]
        else:
            x = col_i - p.hrs_units * nd[:, None]
        if self.probe is not None:
            self.probe(a["adc"], x)
        t = self.image.adc_thr[a["adc"]]
        r = self.image.adc_recon[a["adc"]]
        code[:, :n] = r[np.searchsorted(t, x, side="right")]
        ndrv[:] = nd

    def _read_noise(self, c0: int, width: int, nd: np.ndarray) -> np.ndarray:
        """Cycle-to-cycle noise of one READ on columns [c0, c0 + width), integer units.

        Every driven cell adds N(0, sigma^2), so a column gets N(0, n_driven * sigma^2).
        Counter-based: a Philox stream keyed by (seed, read index) in which image i,
        column c is word i * ceil(cols / 4) * 4 + c (Box-Muller on its two 32-bit
        halves), so the noise is the same however the images are batched.
        """
        p = self.image.params
        words = -(-p.cols // 4) * 4
        gen = np.random.Philox(key=[p.seed, self._reads])
        self._reads += 1
        gen.advance(self.image_offset * (words // 4))
        w = gen.random_raw(self.batch * words).reshape(self.batch, words)[:, c0:c0 + width]
        u1 = ((w >> np.uint64(32)).astype(np.float64) + 0.5) / 2.0**32
        u2 = (w & np.uint64(0xFFFFFFFF)).astype(np.float64) / 2.0**32
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        return np.rint(z * (p.read_sigma_units * np.sqrt(nd))[:, None]).astype(np.int64)
