"""The ISA-level golden machine, vectorized over independent runs.

One ``Machine`` holds ``batch`` independent program runs in lockstep: the
program has no data-dependent control flow, so one pass over it serves them
all. Every vector register and the data memory carry a trailing run axis,
while the program counter, loop state, cycle counter, error state and the
crossbar cells are shared (every run executes the same PROGs at the same
points, so their cells are equal). The RTL must match this machine, run for
run, on every DMEM word and every cycle.

Speed comes from three places, none of which changes a result:

- The program is decoded once into a plan: operand tuples, static costs and
  range checks, and runs of consecutive PROG instructions fused into one
  array assignment.
- A READ's matrix (per-cell current differences or HRS-floor-removed
  currents, transposed, with a row of ones for the driven-row count) is
  built once per crossbar and column window and kept until that crossbar is
  reprogrammed; a READ then gathers only its driven rows and does one exact
  float product.
- A LOOP whose body is independent across iterations (every DMEM word an
  iteration writes is its own, every register is written before it is read)
  runs as one pass with the iterations as extra columns; any other loop, or
  one that would fault, runs iteration by iteration.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import isa, physics
from .crossbar import DeviceMap
from .isa import BIT_SIGNED, MASK_NEG, MASK_POS, MASK_ZERO, Err, Sense, Src
from .kernels import unique

if TYPE_CHECKING:
    from .machine_fast import Engine


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
    t_write: int  # cycles of one PROG (write-verify of a row)
    adcs_per_xbar: int
    hrs_units: int
    # Width of a BasisN coefficient field in a weight-memory row (CMAC).
    coef_bits: int = 8
    # Read noise, IR drop, read disturb (all off: the ideal integer read).
    physics: physics.ReadPhysics = physics.IDEAL_READ


# plan_cache entries that hold live objects (pooled machines, the worker thread).
RUNTIME_CACHE = ("pool", "worker")


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
    # The decoded program plan of the machines that run this image (built once), and
    # what they share: READ matrices, machines to reuse, a worker thread.
    plan_cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and copied without the machines and the worker thread it keeps."""
        state = dict(self.__dict__)
        state["plan_cache"] = {k: v for k, v in self.plan_cache.items()
                               if k not in RUNTIME_CACHE}
        return state

    def worker(self) -> ThreadPoolExecutor:
        """The worker thread this image's machines share for the second half of big
        operations (made on first use, and again in a forked process, which has no
        copy of the thread)."""
        got = self.plan_cache.get("worker")
        if got is None or got[0] != os.getpid():
            got = self.plan_cache["worker"] = (os.getpid(),
                                               ThreadPoolExecutor(1, "golden-worker"))
        return got[1]


@dataclass
class RunResult:
    """Outcome and event counts of one run (the same for every lockstep run,
    except ``read_charge``, which depends on the data)."""

    cycles: int
    instructions: int
    error: Err
    fault_pc: int
    pc: int
    cells_written: int = 0  # cells whose state a PROG changed (differential write)
    progs: int = 0  # PROG instructions executed
    reads: int = 0  # READ instructions executed
    conversions: int = 0  # ADC conversions (lanes of every READ)
    lane_ops: int = 0  # vector-unit operations: lanes of LDIN/ACC/STA/ACT/VCOPY/VMAX, CMAC MACs
    dmem_accesses: int = 0  # DMEM words read or written by instructions
    wmem_rows: int = 0  # weight-memory rows read (PROG, CMAC)
    max_cell_writes: int = 0  # the most PROG state changes of any single cell in this run
    # Sum over READs of the read currents of every driven cell in the sensed
    # columns (current units), per lockstep run: the crossbars' read energy.
    read_charge: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _mask_of(values: np.ndarray, mask: int, bit: int) -> np.ndarray:
    """Boolean drive for each IN entry under a 3-bit value mask."""
    if bit == BIT_SIGNED:
        v = values
        if mask == MASK_POS:
            return v > 0
        if mask == MASK_NEG:
            return v < 0
    else:
        v = (values >> bit) & 1
        if mask == MASK_POS:
            return v.astype(bool)
    d = np.zeros(v.shape, dtype=bool)
    if mask & MASK_NEG:
        d |= v < 0
    if mask & MASK_ZERO:
        d |= v == 0
    if mask & MASK_POS:
        d |= v > 0
    return d


INT32_MAX, INT32_MIN = 2**31 - 1, -(2**31)
# Columns of a READ product from which OpenBLAS may start threads (below: one thread).
NARROW_PRODUCT = 8
INT32_MAX_ADC = 2**31 - 1  # ADC threshold padding: never reached


def _wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to the int32 range."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


class _BlasLimit:
    """Run BLAS single-threaded while a machine runs (reference counted, thread-safe).

    A READ's product is small (at most rows x cols x columns) and there are many
    of them: BLAS worker threads add wake-up latency, and on a shared machine
    they wait for each other (a 4096-column product took 20x longer with two
    threads than with one on a loaded 2-core host). The results are exact
    integers either way; this changes speed only. OpenBLAS's own setter costs
    about a microsecond, threadpoolctl's context about 20; without threadpoolctl
    (a scikit-learn dependency) it does nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._ctl: Any = None
        self._raw: list[tuple[Any, Any]] | None = None  # (get, set) per OpenBLAS
        self._saved: list[int] = []
        self._active: Any = None

    def _setup(self) -> None:
        try:
            from threadpoolctl import ThreadpoolController

            self._ctl = ThreadpoolController()
        except Exception:  # pragma: no cover - optional speed-up
            self._ctl = False
            return
        raw = []
        for lib in self._ctl.select(user_api="blas").lib_controllers:
            get_sym = getattr(lib, "_get_symbol", None)
            fns = (get_sym("openblas_get_num_threads"), get_sym("openblas_set_num_threads")) \
                if lib.internal_api == "openblas" and get_sym is not None else (None, None)
            if None in fns:
                return  # not OpenBLAS or another layout: threadpoolctl's own context
            raw.append(fns)
        self._raw = raw

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                if self._ctl is None:
                    self._setup()
                if self._raw is not None:
                    self._saved = [get() for get, _ in self._raw]
                    for _, put in self._raw:
                        put(1)
                elif self._ctl:
                    self._active = self._ctl.limit(limits=1, user_api="blas")
            self._depth += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                if self._raw is not None:
                    for (_, put), n in zip(self._raw, self._saved, strict=True):
                        put(n)
                elif self._active is not None:
                    self._active.restore_original_limits()
                    self._active = None


_BLAS_LIMIT = _BlasLimit()


class _AdcLookup:
    """``recon[#{t in thr : t <= x}]`` for an ADC table, without a binary search.

    The range of the thresholds is cut into buckets of width g, the smallest gap
    between distinct thresholds, so each bucket holds at most one distinct
    threshold value u: the code is lo[b] below u and hi[b] from u on. Bucket 0
    catches everything below the first threshold, the last one everything
    above the last threshold below the INT32_MAX padding. Exactly the binary
    search's result for every integer x; tables whose buckets would be too
    many fall back to the binary search.
    """

    MAX_BUCKETS = 1 << 16

    def __init__(self, thr: np.ndarray, recon: np.ndarray) -> None:
        self.thr = np.asarray(thr, dtype=np.int64)
        self.recon = np.asarray(recon, dtype=np.int64)
        real = unique(self.thr[self.thr < INT32_MAX_ADC])[0]
        self.fast = False
        self.step = self._ideal_step()
        if real.size == 0:
            return
        gap = int(np.diff(real).min()) if real.size > 1 else 1
        t0 = int(real[0])
        nb = (int(real[-1]) - t0) // gap + 1
        if nb > self.MAX_BUCKETS:
            return
        starts = t0 + gap * np.arange(nb, dtype=np.int64)
        below = np.searchsorted(self.thr, starts, side="left")  # #{t < start}
        nxt = np.minimum(below, self.thr.size - 1)
        has = (below < self.thr.size) & (self.thr[nxt] < starts + gap)
        u = np.where(has, self.thr[nxt], np.iinfo(np.int64).max)
        hi_idx = np.searchsorted(self.thr, np.where(has, u, starts), side="right")
        n_real = int(np.searchsorted(self.thr, INT32_MAX_ADC, side="left"))
        pad_u = INT32_MAX_ADC if n_real < self.thr.size else np.iinfo(np.int64).max
        self.t0, self.gap, self.nb = t0, gap, nb
        self.u = np.concatenate([[np.iinfo(np.int64).max], u, [pad_u]])
        lo = np.concatenate([[self.recon[0]], self.recon[below], [self.recon[n_real]]])
        hi = np.concatenate([[self.recon[0]], self.recon[np.where(has, hi_idx, below)],
                             [self.recon[-1]]])
        self.codes = np.stack([lo, hi], axis=1).reshape(-1)  # bucket b: [lo, hi]
        self.fast = True

    def _ideal_step(self) -> int:
        """d > 0 if the table rounds to the nearest multiple of d (an ideal ADC:
        levels L0, L0 + 1, ... with thresholds ceil((2L - 1) d / 2)), else 0."""
        n = int(np.searchsorted(self.thr, INT32_MAX_ADC, side="left"))
        t, r = self.thr[:n], self.recon
        if n < 2 or not (np.diff(t) >= 0).all():
            return 0
        lv = r[0] + np.arange(n + 1)
        if not np.array_equal(r[:n + 1], lv) or (r[n + 1:] != r[n]).any():
            return 0
        for d in {int(t[1] - t[0]) + k for k in (-1, 0, 1)}:
            if d > 0 and np.array_equal(t, -((-(2 * lv[1:] - 1) * d) // 2)):
                self.lo, self.hi = int(r[0]), int(r[n])
                return d
        return 0

    def convert(self, x: np.ndarray) -> np.ndarray:
        if self.step:
            # The nearest level: floor((2x + d) / 2d), within the table's levels.
            d = self.step
            c = x * 2
            c += d
            c //= 2 * d
            np.maximum(c, self.lo, out=c)
            return np.minimum(c, self.hi, out=c)
        if not self.fast:
            return self.recon[np.searchsorted(self.thr, x, side="right")]
        b = x - self.t0
        b //= self.gap
        if b.size and (b.min() < -1 or b.max() > self.nb):
            np.clip(b, -1, self.nb, out=b)
        b += 1
        up = x >= self.u[b]
        b <<= 1
        b += up
        return self.codes[b]


# Opcodes as small ints for the dispatch chain (most frequent first).
_OP = {name: i for i, name in enumerate(
    ("READ", "ACC", "LDIN", "INCLR", "ACLR", "STA", "ACT", "VCOPY", "VMAX", "PROG", "LOOP",
     "NOP", "HALT", "CMAC"))}
(_READ, _ACC, _LDIN, _INCLR, _ACLR, _STA, _ACT, _VCOPY, _VMAX, _PROG, _LOOP, _NOP, _HALT,
 _CMAC) = range(14)


@dataclass
class _Step:
    """One decoded program word: what the dispatch loop needs, computed once."""

    op: int
    a: dict[str, int]
    cost: int
    rel: bool  # some DMEM address depends on IB
    err0: Err  # the range check with IB = 0
    # DMEM ranges [(addr, n, relative, written)] for the loop-independence check.
    spans: tuple[tuple[int, int, bool, bool], ...] = ()
    lane_ops: int = 0
    dmem_acc: int = 0
    fused: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None  # PROG run
    gain: int = -1  # ACC: the most it can add to |ACC| (-1: not computed yet)


@dataclass
class _ReadMat:
    """A READ's product matrix for one crossbar column window, all physical rows."""

    lhs: np.ndarray  # [lanes + 1, rows]: lanes, then ones (NDRV)
    charge: np.ndarray  # float64 [rows]: read current summed over the sensed columns


class _Space:
    """DMEM as one executed instruction sees it: absolute words, and in a lifted
    loop every iteration's relative words as extra columns (column i * B + b is
    iteration i of run b)."""

    def __init__(self, dmem: np.ndarray, lo: int = 0, stride: int = 0, count: int = 1,
                 width: int = 0) -> None:
        self.dmem = dmem  # [words, B]
        self.lifted = count > 1
        self.copies = count
        self.lo = lo
        if self.lifted:
            # [count, width, B]: iteration i's words lo + i * stride ..; no copy (the
            # independence check keeps the iterations' windows apart).
            s0, s1 = dmem.strides
            self.win = np.lib.stride_tricks.as_strided(
                dmem[lo:], shape=(count, width, dmem.shape[1]), strides=(stride * s0, s0, s1))

    def view(self, addr: int, n: int, rel: bool) -> np.ndarray:
        v = self.dmem[addr:addr + n]
        if not self.lifted:
            return v
        if rel:
            w = self.win[:, addr - self.lo:addr - self.lo + n]  # [count, n, B]
            return w.transpose(1, 0, 2).reshape(n, -1)
        return np.tile(v, (1, self.copies))

    def write(self, addr: int, n: int, rel: bool, data: np.ndarray) -> None:
        if self.lifted and rel:
            d = np.asarray(data).reshape(n, self.copies, -1).transpose(1, 0, 2)
            self.win[:, addr - self.lo:addr - self.lo + n] = d
        else:
            self.dmem[addr:addr + n] = data


class _Regs:
    """Vector registers, lane-major ([lanes, columns]).

    Clearing is lazy: lanes at or past ``acc_hi`` (``code_hi``) read as zero
    whatever is stored there, and a reader first calls ``acc_lanes`` (``code_lanes``);
    invalid IN entries are never read. While LDINs since INCLR have loaded a
    contiguous prefix of IN (``in_exact``), the valid entries are [0, in_pref) and
    ``in_valid`` is all False; ``valid_mask`` gives the mask in either state. ACC
    lanes may hold values outside int32
    while ``acc_bound`` > INT32_MAX (ACC wraps modulo 2^32, so a sum can be wrapped
    when it is read: STA's int32 store truncates, ACT wraps first)."""

    def __init__(self, rows: int, cols: int, n: int) -> None:
        self.in_reg = np.zeros((rows, n), dtype=np.int32)
        self.in_valid = np.zeros(rows, dtype=bool)  # written by LDIN since INCLR
        self.in_exact = True  # the valid entries are exactly IN[:in_pref]
        self.in_hi = 0  # IN[in_hi:] is invalid
        self.in_pref = 0  # IN[:in_pref] is valid
        self.code = np.zeros((cols, n), dtype=np.int64)
        self.code_hi = 0  # CODE[code_hi:] is zero
        self.ndrv = np.zeros(n, dtype=np.int64)
        self.acc = np.zeros((cols, n), dtype=np.int64)
        self.acc_hi = 0  # ACC[acc_hi:] is zero
        self.acc_bound = 0  # max |ACC| is at most this (overflow checks only above 2^31)

    def reset(self) -> None:
        """The state a start leaves: IN invalid, ACC, CODE and NDRV zero."""
        self.inclr()
        self.code_hi = 0
        self.ndrv.fill(0)
        self.acc_hi = 0
        self.acc_bound = 0

    def inclr(self) -> None:
        """No IN entry valid."""
        if not self.in_exact:
            self.in_valid[:self.in_hi] = False
            self.in_exact = True
        self.in_hi = self.in_pref = 0

    def ldin(self, d0: int, end: int) -> None:
        """IN[d0:end] became valid."""
        if self.in_exact:
            if d0 <= self.in_pref:
                if end > self.in_pref:
                    self.in_pref = self.in_hi = end
                return
            self.in_valid[:self.in_pref] = True  # a gap: keep the mask from now on
            self.in_exact = False
        self.in_valid[d0:end] = True
        if end > self.in_hi:
            self.in_hi = end
        if d0 <= self.in_pref < end:
            self.in_pref = end

    def valid_mask(self) -> np.ndarray:
        """bool [rows]: the IN entries loaded since INCLR."""
        if not self.in_exact:
            return self.in_valid
        m = np.zeros(self.in_valid.size, bool)
        m[:self.in_pref] = True
        return m

    def acc_lanes(self, n: int) -> None:
        """Store zeros in the cleared lanes of ACC[:n]."""
        if n > self.acc_hi:
            self.acc[self.acc_hi:n] = 0
            self.acc_hi = n

    def code_lanes(self, end: int) -> None:
        """Store zeros in the cleared lanes of CODE[:end]."""
        if end > self.code_hi:
            self.code[self.code_hi:end] = 0
            self.code_hi = end

    def last_copy(self, lifted: _Regs, copies: int) -> None:
        """Take the registers of a lifted loop's last iteration."""
        n = self.in_reg.shape[1]
        lo = (copies - 1) * n
        self.in_reg[:lifted.in_hi] = lifted.in_reg[:lifted.in_hi, lo:]
        self.inclr()
        if not lifted.in_exact:
            self.in_valid[:] = lifted.in_valid
            self.in_exact = False
        self.in_hi = lifted.in_hi
        self.in_pref = lifted.in_pref
        self.code[:lifted.code_hi] = lifted.code[:lifted.code_hi, lo:]
        self.code_hi = lifted.code_hi
        self.ndrv[:] = lifted.ndrv[lo:]
        self.acc[:lifted.acc_hi] = lifted.acc[:lifted.acc_hi, lo:]
        self.acc_hi = lifted.acc_hi
        self.acc_bound = lifted.acc_bound


@dataclass
class Machine:
    image: ChipImage
    batch: int  # independent runs in lockstep
    xbar_bits: np.ndarray = field(init=False)  # bool [X, rows, cols], persists
    dmem: np.ndarray = field(init=False)  # int32 [B, dmem_words]
    # Called with (adc table, ADC input [columns, lanes]) at every READ: calibration hook.
    probe: Callable[[int, np.ndarray], None] | None = None
    # Index of this machine's first run in the whole input set (keys the read noise).
    image_offset: int = 0
    # Run independent loops as one pass (False: always iteration by iteration; the
    # results are the same, tests/test_streaming.py checks it).
    lift: bool = True
    # Run through the prepared plan (golden_model/machine_fast.py); False: every
    # instruction through ``_exec``, the definition (tests compare the two).
    fast: bool = True
    _cur: dict[int, np.ndarray] = field(init=False, default_factory=dict)
    _mats: dict[int, dict[tuple[int, int, bool], _ReadMat]] = field(init=False,
                                                                     default_factory=dict)
    _lrs: dict[int, np.ndarray] = field(init=False, default_factory=dict)
    # Read disturb: per crossbar row, READs since the row was written (the READ
    # counter that keys read noise is the run's ``RunResult.reads``).
    _row_reads: np.ndarray = field(init=False)
    _luts: dict[int, _AdcLookup] = field(init=False, default_factory=dict)
    _regs: _Regs | None = field(init=False, default=None)
    _engine: Engine | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        p = self.image.params
        self.xbar_bits = np.zeros((p.num_xbars, p.rows, p.cols), dtype=bool)
        # Per crossbar: a digest of its cells (None: not computed since a PROG changed
        # them; ``xbar_key``). READ caches key on it: the same cells, the same key.
        self._xver: list[bytes | None] = [None] * p.num_xbars
        # Cell writes of this run (``_prog_many``): [crossbars * rows, cols], and the
        # rows written (indices into its first axis).
        self._writes_buf: np.ndarray | None = None
        self._writes_rows: list[np.ndarray] = []
        self._row_reads = np.zeros((p.num_xbars, p.rows), dtype=np.int64)
        self._read_work = physics.Work()  # scratch arrays of non-ideal READs
        # DMEM is stored word-major ([words, B]) so that every vector instruction
        # touches one contiguous block; ``dmem`` is the [B, words] view of it.
        self.dmem = np.zeros((p.dmem_words, self.batch), dtype=np.int32).T
        n = self.image.dmem_init.size
        self.dmem[:, :n] = self.image.dmem_init
        self._host_top = 0  # DMEM words below this may have been written by load_inputs
        cache = self.image.plan_cache
        if "plan" not in cache:
            decoded: list[isa.Instr | None] = []
            plan: list[_Step | None] = []
            seen: dict[int, tuple[isa.Instr | None, _Step | None]] = {}
            for w in self.image.program:
                hit = seen.get(w)
                if hit is None:
                    ins = isa.decode(w)
                    hit = seen[w] = (ins, self._prepare(ins))
                decoded.append(hit[0])
                # Steps of repeated words are shared; only a fused PROG run's first
                # word carries state of its own.
                plan.append(hit[1])
            cache["decoded"], cache["plan"], cache["lift"] = decoded, plan, {}
            self.decoded, self.plan = decoded, plan
            self._fuse_progs()
        self.decoded = cache["decoded"]
        self.plan = cache["plan"]
        self._lift_ok: dict[tuple[int, int], tuple[int, int] | None] = cache["lift"]

    # ------------------------------------------------------------ helpers
    def currents(self, xbar: int) -> np.ndarray:
        """Cell currents of one crossbar, cached until it is reprogrammed."""
        cur = self._cur.get(xbar)
        if cur is None:
            cur = self.image.devmap.cell_currents(xbar, self.xbar_bits[xbar])
            self._cur[xbar] = cur
        return cur

    def lrs_state(self, xbar: int) -> np.ndarray:
        """Cells of one crossbar in the LRS state (programmed or stuck), cached likewise."""
        lrs = self._lrs.get(xbar)
        if lrs is None:
            lrs = self.image.devmap.lrs_state(xbar, self.xbar_bits[xbar])
            self._lrs[xbar] = lrs
        return lrs

    def load_inputs(self, addr: int, data: np.ndarray) -> None:
        """Host writes [B, n] words at DMEM[addr..]."""
        self.dmem[:, addr:addr + data.shape[1]] = data
        self._host_top = max(self._host_top, min(addr + data.shape[1], self.dmem.shape[1]))

    def load_slots(self, addr: int, stride: int, data: np.ndarray) -> None:
        """``load_inputs(addr + s * stride, data[:, s])`` for every slot s of
        ``data`` [B, slots, n], in order (one strided copy when the slots do not
        overlap and fit DMEM)."""
        _, slots, n = data.shape
        words = self.dmem.T  # [words, B], C-contiguous
        end = addr + (slots - 1) * stride + n
        if slots < 2 or stride < n or end > words.shape[0] or data.shape[0] != self.batch:
            for s in range(slots):
                self.load_inputs(addr + s * stride, data[:, s])
            return
        s0, s1 = words.strides
        view = np.lib.stride_tricks.as_strided(words[addr:], shape=(slots, n, self.batch),
                                               strides=(stride * s0, s0, s1))
        view[...] = data.transpose(1, 2, 0)
        self._host_top = max(self._host_top, end)

    # ------------------------------------------------------------ reuse
    def _dmem_top(self) -> int:
        """Words past this one are never written by an instruction of the program:
        every written DMEM range ends below it, a relative one at the largest IB any
        LOOP of the program can set (loops do not nest)."""
        cache = self.image.plan_cache
        top = cache.get("dmem_top")
        if top is None:
            steps = [st for st in self.plan if st is not None]
            max_ib = max(((st.a["count"] - 1) * st.a["stride"] for st in steps
                          if st.op == _LOOP), default=0)
            top = max((addr + n + (max_ib if rel else 0) for st in steps
                       for addr, n, rel, written in st.spans if written), default=0)
            top = cache["dmem_top"] = min(top, self.image.params.dmem_words)
        return top

    def reset(self, image_offset: int = 0) -> None:
        """Back to the state of a new ``Machine(image, batch, image_offset=...)``
        (probe, lift and fast are kept): no cell written, DMEM as the image loads it,
        no READ since a write. What a run prepared (blocks, lifted loops, scratch
        buffers, READ matrices keyed by cell content) is kept, and so are the arrays
        (views of ``dmem`` stay valid). DMEM is restored up to the highest word a
        program instruction or ``load_inputs`` can have written: words written
        directly into ``dmem`` past that are not."""
        n = self.image.dmem_init.size
        top = max(self._dmem_top(), self._host_top, n)
        words = self.dmem.T  # [words, B]
        words[n:top] = 0
        words[:n] = self.image.dmem_init[:, None]
        self._host_top = 0
        self.xbar_bits.fill(False)
        for x in range(self.xbar_bits.shape[0]):
            self._invalidate(x)
        self._row_reads.fill(0)
        self._writes = None
        self.image_offset = image_offset

    POOL_SIZE = 2  # machines ``release`` keeps per image (by batch, the last ones released)

    @classmethod
    def reuse(cls, image: ChipImage, batch: int, image_offset: int = 0) -> Machine:
        """``Machine(image, batch, image_offset=image_offset)``, or one that
        ``release`` gave back for this image and batch, ``reset``: the same runs,
        without allocating and preparing again."""
        pool: dict[int, Machine] = image.plan_cache.setdefault("pool", {})
        m = pool.pop(batch, None)  # one caller gets it (dict.pop is atomic)
        if m is None:
            return cls(image, batch, image_offset=image_offset)
        m.reset(image_offset)
        return m

    def release(self) -> None:
        """Give this machine to ``reuse`` (the caller does not use it afterwards).
        Only a machine with the default settings (no probe, lifting, prepared plan)
        is kept."""
        if self.probe is not None or not (self.lift and self.fast):
            return
        pool: dict[int, Machine] = self.image.plan_cache.setdefault("pool", {})
        pool.pop(self.batch, None)
        while len(pool) >= self.POOL_SIZE:
            pool.pop(next(iter(pool)), None)
        pool[self.batch] = self

    def _invalidate(self, xbar: int) -> None:
        self._cur.pop(xbar, None)
        self._lrs.pop(xbar, None)
        self._mats.pop(xbar, None)
        self._xver[xbar] = None

    def xbar_key(self, xbar: int) -> bytes:
        """A digest of the cells of one crossbar (what READ caches key on)."""
        key = self._xver[xbar]
        if key is None:
            key = self._xver[xbar] = hashlib.blake2b(
                np.packbits(self.xbar_bits[xbar]).tobytes(), digest_size=16).digest()
        return key

    # ------------------------------------------------------------ decoding
    def _prepare(self, ins: isa.Instr | None) -> _Step | None:
        if ins is None:
            return None
        p = self.image.params
        a = dict(ins.args)
        op = _OP[ins.op]
        n = a.get("lanes", 0)
        spans: list[tuple[int, int, bool, bool]] = []
        rel = False
        lane_ops = dmem_acc = 0
        if op == _LDIN:
            spans.append((a["src"], n, bool(a["rsrc"]), False))
        elif op == _ACC and a["src"] == Src.DMEM:
            spans.append((a["addr"], n, bool(a["rel"]), False))
        elif op == _STA:
            spans.append((a["dst"], n, bool(a["rel"]), True))
        elif op == _ACT:
            spans.append((a["tbl"], n * (a["k"] + 1), bool(a["rtbl"]), False))
            spans.append((a["dst"], n, bool(a["rdst"]), True))
        elif op in (_VCOPY, _VMAX):
            spans.append((a["src"], n, bool(a["rsrc"]), False))
            if op == _VMAX:
                spans.append((a["dst"], n, bool(a["rdst"]), False))
            spans.append((a["dst"], n, bool(a["rdst"]), True))
        elif op == _CMAC:
            spans.append((a["src"], a["n"], bool(a["rsrc"]), False))
        if op in (_LDIN, _ACC, _STA, _ACT, _VCOPY, _VMAX):
            lane_ops = n
            dmem_acc = sum(s[1] for s in spans)
        elif op == _CMAC:
            lane_ops = n * a["n"]  # one MAC per lane and basis product
            dmem_acc = a["n"]
        rel = any(s[2] for s in spans)
        cost = isa.cost(ins, p)
        return _Step(op, a, cost, rel, self._check(ins, 0), tuple(spans), lane_ops, dmem_acc)

    def _fuse_progs(self) -> None:
        """Runs of two or more consecutive PROGs (no row twice, all in range)
        become one assignment at the run's first word."""
        plan = self.plan
        pc = 0
        while pc < len(plan):
            end = pc
            seen: set[tuple[int, int]] = set()
            while end < len(plan):
                s = plan[end]
                if s is None or s.op != _PROG or s.err0 != Err.NONE:
                    break
                key = (s.a["xbar"], s.a["row"])
                if key in seen:
                    break
                seen.add(key)
                end += 1
            if end - pc >= 2:
                steps = [plan[i] for i in range(pc, end)]
                xs = np.array([s.a["xbar"] for s in steps if s is not None], np.int64)
                rs = np.array([s.a["row"] for s in steps if s is not None], np.int64)
                ws = np.array([s.a["wsrc"] for s in steps if s is not None], np.int64)
                first = plan[pc]
                assert first is not None
                plan[pc] = _Step(first.op, first.a, first.cost, first.rel, first.err0,
                                 first.spans, first.lane_ops, first.dmem_acc,
                                 (end - pc, xs, rs, ws))
            pc = max(end, pc + 1)

    # ----------------------------------------------------------------- run
    def run(self, entry: int = 0, max_instructions: int = 50_000_000) -> RunResult:
        """Run from ``entry`` until HALT or a fault (every lockstep run at once)."""
        cache = self.image.plan_cache
        if "widest_loop" not in cache:
            cache["widest_loop"] = max(
                (st.a["count"] for st in self.plan if st is not None and st.op == _LOOP),
                default=1)
        if self.batch * cache["widest_loop"] < NARROW_PRODUCT:
            # OpenBLAS runs products this narrow on one thread anyway; restoring its
            # thread count after a run costs about 10 us.
            return self._run(entry, max_instructions)
        with _BLAS_LIMIT:
            return self._run(entry, max_instructions)

    def _run(self, entry: int, max_instructions: int) -> RunResult:
        if self.image.params.physics.disturb:
            # Rows written before a run have seen disturb_age READs (every run
            # starts its READ counter at 0, like the RTL's READS register).
            self._row_reads[:] = self.image.params.physics.disturb_age
        if self.fast:
            eng = self._engine
            if eng is None:
                from .machine_fast import Engine

                eng = self._engine = Engine(self)
            return eng.run(entry, max_instructions)
        return self._run_general(entry, max_instructions)

    def _run_general(self, entry: int, max_instructions: int) -> RunResult:
        """The definition: one decoded instruction at a time through ``_exec``."""
        p = self.image.params
        B = self.batch
        regs = self._regs
        if regs is None:
            regs = self._regs = _Regs(p.rows, p.cols, B)
        else:
            regs.reset()
        dm = self.dmem.T
        space = _Space(dm)
        res = RunResult(0, 0, Err.NONE, -1, entry, read_charge=np.zeros(B, np.int64))
        self._writes = None
        plan = self.plan
        n_prog = len(plan)
        pc = entry
        # Loop state: body [start, end], iterations left after this one, IB, stride.
        lp_start = lp_end = -1
        lp_left = ib = stride = 0
        while res.instructions < max_instructions:
            if not 0 <= pc < n_prog:
                return self._fault(res, Err.PC_RANGE, pc)
            st = plan[pc]
            if st is None:
                return self._fault(res, Err.ILLEGAL, pc)
            err = self._check(self.decoded[pc], ib)
            if st.op == _LOOP and lp_end >= 0:
                err = Err.ILLEGAL  # loops do not nest
            if err != Err.NONE:
                return self._fault(res, err, pc)
            res.instructions += 1
            res.cycles += st.cost
            if st.op == _LOOP:
                count, length = st.a["count"], st.a["len"]
                lifted = None
                if count > 1 and self.lift:
                    lifted = self._liftable(pc, length, st.a["stride"], count)
                if lifted is not None and res.instructions + count * length <= max_instructions:
                    self._run_lifted(pc + 1, length, count, st.a["stride"], lifted, regs,
                                     space, res)
                    pc += 1 + length
                else:
                    lp_start, lp_end = pc + 1, pc + length
                    lp_left, ib, stride = count - 1, 0, st.a["stride"]
                    pc += 1
                continue
            if st.op == _HALT:
                res.pc = pc
                return res
            res.lane_ops += st.lane_ops
            res.dmem_accesses += st.dmem_acc
            self._exec(st, regs, space, ib, res)
            pc += 1
            if lp_end >= 0 and pc > lp_end:
                if lp_left > 0:
                    lp_left -= 1
                    ib += stride
                    pc = lp_start
                else:
                    lp_start = lp_end = -1
                    ib = 0
        return self._fault(res, Err.PC_RANGE, pc)

    @staticmethod
    def _fault(res: RunResult, err: Err, pc: int) -> RunResult:
        # A faulting instruction costs its decode cycle and is not counted as executed.
        res.cycles += 1
        res.error = err
        res.fault_pc = pc
        res.pc = pc
        return res

    # ------------------------------------------------------------ execution
    def _exec(self, st: _Step, regs: _Regs, space: _Space, ib: int, res: RunResult) -> None:
        op = st.op
        a = st.a
        n = a.get("lanes", 0)
        # Event counters are the caller's (a lifted loop counts every iteration).
        if op == _READ:
            self._read(a, regs, res, None)
        elif op == _ACC:
            k = a["mul"] << a["sh"]
            regs.acc_lanes(n)
            dst = regs.acc[:n]
            src = a["src"]
            if src == Src.CODE:
                regs.code_lanes(a["addr"] + n)
                dst += k * regs.code[a["addr"]:a["addr"] + n]
            elif src == Src.NDRV:
                dst += k * regs.ndrv
            else:
                rel = bool(a["rel"])
                dst += k * space.view(a["addr"] + (ib if rel else 0), n, rel).astype(np.int64)
            self._acc_wrap(regs, st, dst)
        elif op == _LDIN:
            d0 = a["dst"]
            rel = bool(a["rsrc"])
            regs.in_reg[d0:d0 + n] = space.view(a["src"] + (ib if rel else 0), n, rel)
            regs.ldin(d0, d0 + n)
        elif op == _INCLR:
            regs.inclr()
        elif op == _ACLR:
            regs.acc_hi = 0
            regs.acc_bound = 0
        elif op == _STA:
            rel = bool(a["rel"])
            regs.acc_lanes(n)
            space.write(a["dst"] + (ib if rel else 0), n, rel, _wrap32(regs.acc[:n]))
        elif op == _ACT:
            self._act(a, regs, space, ib)
        elif op in (_VCOPY, _VMAX):
            self._vmove(op, a, space, ib)
        elif op == _PROG:
            self._prog_many((1, np.array([a["xbar"]]), np.array([a["row"]]),
                             np.array([a["wsrc"]])), res)
        elif op == _CMAC:
            rel = bool(a["rsrc"])
            y = space.view(a["src"] + (ib if rel else 0), a["n"], rel).astype(np.int64)
            regs.acc_lanes(n)  # lanes cleared lazily (a start, ACLR) hold stale values
            dst = regs.acc[:n]
            dst += self._coefs(a["coef"], n, a["n"]) @ y  # [lanes, n] @ [n, columns]
            self._acc_wrap(regs, st, dst)
            if not space.lifted:
                res.wmem_rows += n

    def _coefs(self, row: int, lanes: int, n: int) -> np.ndarray:
        """Signed coefficient fields [lanes, n] of weight-memory rows row.. (CMAC)."""
        cache = self.image.plan_cache.setdefault("coefs", {})
        key = (row, lanes, n)
        c = cache.get(key)
        if c is None:
            cb = self.image.params.coef_bits
            bits = self.image.wmem[row:row + lanes, :n * cb].astype(np.int64)
            fields = bits.reshape(lanes, n, cb) @ (1 << np.arange(cb, dtype=np.int64))
            c = cache[key] = np.where(fields >= 1 << (cb - 1), fields - (1 << cb), fields)
        return c

    def _acc_gain(self, st: _Step) -> int:
        """The most one ACC can add to |ACC| (2^31: the operand is a DMEM word)."""
        a = st.a
        if st.op == _CMAC:
            return 1 << 62
        k = abs(a["mul"] << a["sh"])
        if a["src"] == Src.CODE:
            luts = [self._adc(t) for t in range(self.image.adc_recon.shape[0])]
            top = max((int(np.abs(lut.recon).max()) for lut in luts), default=0)
            return k * top
        if a["src"] == Src.NDRV:
            return k * self.image.params.rows
        return k * (1 << 31)

    def _acc_wrap(self, regs: _Regs, st: _Step, dst: np.ndarray) -> None:
        """Wrap ACC lanes to 32 bits, checking only when the bound says they might not fit."""
        gain = st.gain
        if gain < 0:
            gain = st.gain = self._acc_gain(st)
        old = regs.acc_bound
        if old + gain <= INT32_MAX:
            regs.acc_bound = old + gain
            return
        if not dst.size:
            return
        mx, mn = int(dst.max()), int(dst.min())
        if mx > INT32_MAX or mn < INT32_MIN:
            dst[...] = _wrap32(dst)  # ACC lanes are 32-bit registers
            mx, mn = int(dst.max()), int(dst.min())
        # Lanes past this ACC's are unchanged: their bound is the old one.
        regs.acc_bound = max(old, mx, -mn)

    def _act(self, a: dict[str, int], regs: _Regs, space: _Space, ib: int) -> None:
        n, kk = a["lanes"], a["k"]
        regs.acc_lanes(n)
        acc = _wrap32(regs.acc[:n])
        rt, rd = bool(a["rtbl"]), bool(a["rdst"])
        tbl0 = a["tbl"] + (ib if rt else 0)
        dst0 = a["dst"] + (ib if rd else 0)
        for lo, hi in self._chunks(n, tbl0, n * (kk + 1), dst0):
            tbl = space.view(tbl0 + lo * (kk + 1), (hi - lo) * (kk + 1), rt)
            tbl = tbl.reshape(hi - lo, kk + 1, -1)
            v = tbl[:, 0] * acc[lo:hi]  # int64: sign * ACC
            cnt = (v >= tbl[:, 1]).astype(np.int32)
            for j in range(2, kk + 1):
                cnt += v >= tbl[:, j]
            space.write(dst0 + lo, hi - lo, rd, a["obias"] + a["oscale"] * cnt)

    def _vmove(self, op: int, a: dict[str, int], space: _Space, ib: int) -> None:
        n = a["lanes"]
        rs, rd = bool(a["rsrc"]), bool(a["rdst"])
        s0 = a["src"] + (ib if rs else 0)
        d0 = a["dst"] + (ib if rd else 0)
        for lo, hi in self._chunks(n, s0, n, d0):
            src = space.view(s0 + lo, hi - lo, rs)
            if op == _VCOPY:
                space.write(d0 + lo, hi - lo, rd, src)
            else:
                space.write(d0 + lo, hi - lo, rd, np.maximum(space.view(d0 + lo, hi - lo, rd),
                                                              src))

    def _chunks(self, n: int, src: int, src_len: int, dst: int) -> list[tuple[int, int]]:
        """Lane ranges of a DMEM -> DMEM vector instruction, in execution order.

        The vector unit handles vec_width lanes per cycle, ascending; each step
        reads its source words, then writes its destination words. When the
        source range [src, src + src_len) and [dst, dst + n) do not overlap this
        equals one whole-vector step (the fast path). In a lifted loop the
        addresses are iteration 0's: every iteration has the same overlaps, and
        an absolute range never overlaps a relative window (the independence
        check).
        """
        if src + src_len <= dst or dst + n <= src:
            return [(0, n)]
        vw = self.image.params.vec_width
        return [(lo, min(n, lo + vw)) for lo in range(0, n, vw)]

    def _prog_many(self, fused: tuple[int, np.ndarray, np.ndarray, np.ndarray],
                   res: RunResult) -> None:
        _, xs, rs, ws = fused
        n_x, n_rows, n_cols = self.xbar_bits.shape
        # Rows of all crossbars as one axis: one index array (a fused run's rows are
        # distinct), which numpy gathers and scatters row by row.
        ri = xs * n_rows + rs
        bits = self.xbar_bits.reshape(n_x * n_rows, n_cols)
        new = self.image.wmem[ws].astype(bool)
        changed = new != bits[ri]
        bits[ri] = new
        writes = self._writes
        if writes is None:  # the run's first PROG: its counts start at zero
            writes = self._writes_buf
            if writes is None:
                writes = self._writes_buf = np.zeros((n_x * n_rows, n_cols), np.int32)
            for rows in self._writes_rows:
                writes[rows] = 0
            self._writes_rows.clear()
            self._writes = writes
        self._writes_rows.append(ri)
        counts = writes[ri]
        counts += changed
        writes[ri] = counts
        res.cells_written += int(np.count_nonzero(changed))
        res.wmem_rows += len(xs)
        res.max_cell_writes = max(res.max_cell_writes, int(counts.max()))
        res.progs += len(xs)
        if self.image.params.physics.disturb:
            self._row_reads[xs, rs] = 0  # read disturb counts READs since the write
        for x in unique(xs[changed.any(axis=1)])[0]:  # crossbars whose cells changed
            self._invalidate(int(x))

    # ------------------------------------------------------------------ READ
    def _matrix(self, xbar: int, c0: int, width: int, sym: bool) -> _ReadMat:
        per = self._mats.setdefault(xbar, {})
        key = (c0, width, sym)
        m = per.get(key)
        if m is not None:
            return m
        p = self.image.params
        cur = self.currents(xbar)[:, c0:c0 + width]  # [rows, width]
        if sym:
            # A SYM lane only needs I_pos - I_neg: one product with the per-cell
            # current differences (exact integers) gives it directly.
            w = cur[:, 0::2].astype(np.int64) - cur[:, 1::2]
        else:
            # POS: the HRS floor HRS * NDRV is removed cell by cell (the same sum).
            w = cur.astype(np.int64) - p.hrs_units
        big = max(int(np.abs(w).max(initial=0)), 1) * p.rows
        dt = np.float32 if big < 2**24 else np.float64
        lhs = np.empty((w.shape[1] + 1, p.rows), dtype=dt)
        lhs[:-1] = w.T
        lhs[-1] = 1
        m = _ReadMat(lhs, cur.sum(axis=1, dtype=np.int64).astype(np.float64))
        per[key] = m
        return m

    def _drive(self, a: dict[str, int], regs: _Regs) -> tuple[np.ndarray, np.ndarray | slice]:
        """Driven rows of a READ: bool [k, columns] and the k physical rows."""
        p = self.image.params
        ro, bit = a["row_off"], a["bit"]
        if a["pair"]:
            m = (p.rows - ro + 1) // 2  # IN entries whose first row is in the array
            idx = np.flatnonzero(regs.valid_mask()[:m])
            vals = regs.in_reg[idx]
            rows_a = ro + 2 * idx
            parts = []
            if a["mask_a"]:
                parts.append((_mask_of(vals, a["mask_a"], bit), rows_a))
            if a["mask_b"]:
                ok = rows_a + 1 < p.rows
                parts.append((_mask_of(vals[ok], a["mask_b"], bit), rows_a[ok] + 1))
            if len(parts) == 1:
                return parts[0]
            if parts:
                return (np.concatenate([parts[0][0], parts[1][0]]),
                        np.concatenate([parts[0][1], parts[1][1]]))
            return np.zeros((0, regs.in_reg.shape[1]), dtype=bool), idx[:0]
        m = p.rows - ro
        hi = min(regs.in_hi, m)
        if hi and regs.valid_mask()[:hi].all():
            # The common case: IN[0..hi) all loaded, rows ro..ro+hi contiguous.
            return _mask_of(regs.in_reg[:hi], a["mask_a"], bit), slice(ro, ro + hi)
        idx = np.flatnonzero(regs.valid_mask()[:m])
        return _mask_of(regs.in_reg[idx], a["mask_a"], bit), ro + idx

    def _read(self, a: dict[str, int], regs: _Regs, res: RunResult,
              noise_counters: np.ndarray | None) -> None:
        """One READ on lane-major state (in_reg [rows, N], code [cols, N]) and its counts."""
        counters = noise_counters if noise_counters is not None else \
            np.full(1, res.reads, np.int64)
        charge = self._read_core(a, regs, counters)
        B = self.batch
        res.read_charge += charge.reshape(-1, B).sum(axis=0)
        copies = charge.size // B
        res.reads += copies
        res.conversions += a["lanes"] * copies

    def _read_core(self, a: dict[str, int], regs: _Regs, counters: np.ndarray) -> np.ndarray:
        """A READ's effect on the registers; returns the read charge per column
        (int64 [N]). ``counters``: the READ counter of each column copy (read noise)."""
        p = self.image.params
        d, rows = self._drive(a, regs)
        n = a["lanes"]
        c0 = a["col"]
        sym = a["sense"] == Sense.SYM
        width = 2 * n if sym else n
        mat = self._matrix(a["xbar"], c0, width, sym)
        lhs = mat.lhs[:, rows]
        if d.shape[0]:
            prod = (lhs @ d.astype(lhs.dtype)).astype(np.int64)  # [out_rows + 1, N]
            charge = mat.charge[rows] @ d.astype(np.float64)
        else:
            prod = np.zeros((lhs.shape[0], d.shape[1]), np.int64)
            charge = np.zeros(d.shape[1])
        if p.physics.active:
            x, nd = self._read_physics(a["xbar"], rows, d, c0, width, sym, counters)
        else:
            x, nd = prod[:-1], prod[-1]
        if self.probe is not None:
            self.probe(a["adc"], np.ascontiguousarray(x.T))
        regs.code[:n] = self._adc(a["adc"]).convert(x)
        regs.code_hi = max(regs.code_hi, n)
        regs.ndrv[:] = nd
        return charge.astype(np.int64)

    def _adc(self, table: int) -> _AdcLookup:
        lut = self._luts.get(table)
        if lut is None:
            # A lookup depends only on the image's tables: machines of one image share it.
            shared = self.image.plan_cache.setdefault("adc", {})
            lut = shared.get(table)
            if lut is None:
                lut = shared[table] = _AdcLookup(self.image.adc_thr[table],
                                                 self.image.adc_recon[table])
            self._luts[table] = lut
        return lut

    def _read_physics(self, xbar: int, rows: np.ndarray | slice, d: np.ndarray, c0: int,
                      width: int, sym: bool, counters: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The physics hook: ADC inputs [lanes, N] and NDRV [N] of a non-ideal READ.

        Everything non-ideal (read noise, IR drop, read disturb) happens in
        ``golden_model.physics.read_columns``, once per column copy with that
        copy's READ counter (a lifted loop's iterations are copies; with read
        disturb on, loops are never lifted, so the rows' stress is exact). Run
        g of this machine is run ``image_offset + g`` of the input set.
        """
        p = self.image.params
        B = self.batch
        if isinstance(rows, slice):
            rows = np.arange(rows.start, rows.stop)
        cur = self.currents(xbar)[rows]
        lrs = self.lrs_state(xbar)[rows]
        stress = self._row_reads[xbar, rows]
        runs = self.image_offset + np.arange(B, dtype=np.int64)
        copies = d.shape[1] // B
        cols = np.empty((copies * B, width), np.int64)
        nd = np.empty(copies * B, np.int64)
        for i in range(copies):
            sl = slice(i * B, (i + 1) * B)
            cols[sl], nd[sl] = physics.read_columns(
                p.physics, cur, lrs, rows, d[:, sl].T, c0, width, runs, int(counters[i]),
                stress, p.rows, self.image.worker, self._read_work)
        if p.physics.disturb:
            self._row_reads[xbar, rows] += copies
        x = cols[:, 0::2] - cols[:, 1::2] if sym else cols - p.hrs_units * nd[:, None]
        return x.T, nd

    # ------------------------------------------------------------ range checks
    def _check(self, ins: isa.Instr | None, ib: int) -> Err:
        """Range checks, in the order the RTL performs them (IB = ``ib``)."""
        if ins is None:
            return Err.ILLEGAL
        p = self.image.params
        a = dict(ins.args)
        op = ins.op
        n = a.get("lanes", 0)

        def r(addr_field: str, rel_field: str) -> int:
            return a[addr_field] + (ib if a.get(rel_field, 0) else 0)

        if op == "ACC" and a["src"] > Src.DMEM:
            return Err.ILLEGAL
        if op == "ACT" and a["k"] == 0:
            return Err.ILLEGAL
        if op == "READ" and 8 <= a["bit"] < BIT_SIGNED:
            return Err.ILLEGAL
        if op == "LOOP" and (a["count"] == 0 or a["len"] == 0):
            return Err.ILLEGAL
        if "lanes" in a and not 1 <= n <= (p.rows if op == "LDIN" else p.cols):
            return Err.VEC_RANGE
        if op == "CMAC":
            if a["n"] == 0 or a["n"] * p.coef_bits > p.cols:
                return Err.VEC_RANGE
            if r("src", "rsrc") + a["n"] > p.dmem_words:
                return Err.DMEM_RANGE
            if a["coef"] + n > p.wmem_words or a["coef"] + n > self.image.wmem.shape[0]:
                return Err.WMEM_RANGE
        if op == "PROG":
            if a["xbar"] >= p.num_xbars or a["row"] >= p.rows:
                return Err.XBAR_RANGE
            if a["wsrc"] >= p.wmem_words or a["wsrc"] >= self.image.wmem.shape[0]:
                return Err.WMEM_RANGE
        elif op == "LDIN":
            if a["dst"] + n > p.rows:
                return Err.VEC_RANGE
            if r("src", "rsrc") + n > p.dmem_words:
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
            if a["src"] == Src.DMEM and r("addr", "rel") + n > p.dmem_words:
                return Err.DMEM_RANGE
        elif op == "STA":
            if r("dst", "rel") + n > p.dmem_words:
                return Err.DMEM_RANGE
        elif op == "ACT":
            if r("dst", "rdst") + n > p.dmem_words or \
                    r("tbl", "rtbl") + n * (a["k"] + 1) > p.dmem_words:
                return Err.DMEM_RANGE
        elif op in ("VCOPY", "VMAX") and (r("dst", "rdst") + n > p.dmem_words
                                          or r("src", "rsrc") + n > p.dmem_words):
            return Err.DMEM_RANGE
        return Err.NONE

    # ------------------------------------------------------------ lifted loops
    def _liftable(self, pc: int, length: int, stride: int, count: int
                  ) -> tuple[int, int] | None:
        """The relative window [lo, hi) if the loop at ``pc`` may run as one pass.

        Conditions (each makes the lifted pass equal to running the iterations
        one after the other): the body lies in the program and holds no LOOP,
        HALT, PROG or invalid word; every relative DMEM range of the body fits
        one window no wider than ``stride`` (iterations touch disjoint words);
        no absolute range is written, and no absolute range overlaps the
        windows of the iterations; IN, ACC and CODE/NDRV are written in the body
        before they are read (INCLR before READ, ACLR before ACC/STA/ACT, READ
        before ACC from CODE/NDRV within that READ's lanes); and no body
        instruction faults in the first or the last iteration.
        """
        if self.image.params.physics.disturb:
            return None  # each READ's row stress depends on the iterations before it
        key = (pc, count)
        if key in self._lift_ok:
            return self._lift_ok[key]
        out = self._lift_check(pc, length, stride, count)
        self._lift_ok[key] = out
        return out

    def _lift_check(self, pc: int, length: int, stride: int, count: int
                    ) -> tuple[int, int] | None:
        body = self.plan[pc + 1:pc + 1 + length]
        if len(body) != length:
            return None
        rel_spans: list[tuple[int, int]] = []
        abs_reads: list[tuple[int, int]] = []
        in_live = acc_live = code_live = False
        code_lanes = 0
        for k, st in enumerate(body):
            if st is None or st.op in (_LOOP, _HALT, _PROG) or st.fused is not None:
                return None
            ins = self.decoded[pc + 1 + k]
            if st.err0 != Err.NONE or self._check(ins, (count - 1) * stride) != Err.NONE:
                return None
            for addr, n, rel, written in st.spans:
                if rel:
                    rel_spans.append((addr, addr + n))
                elif written:
                    return None
                else:
                    abs_reads.append((addr, addr + n))
            op, a = st.op, st.a
            if op == _INCLR:
                in_live = True
            elif op == _READ:
                if not in_live:
                    return None
                code_live, code_lanes = True, a["lanes"]
            elif op == _ACLR:
                acc_live = True
            elif op in (_STA, _ACT, _CMAC) and not acc_live:
                return None
            elif op == _ACC:
                if not acc_live:
                    return None
                if a["src"] != Src.DMEM and not code_live:
                    return None
                if a["src"] == Src.CODE and a["addr"] + a["lanes"] > code_lanes:
                    return None
        if not rel_spans:
            return None
        lo = min(s for s, _ in rel_spans)
        hi = max(e for _, e in rel_spans)
        if hi - lo > stride:
            return None
        top = hi + (count - 1) * stride
        for s, e in abs_reads:
            if s < top and lo < e:
                return None
        return lo, hi

    def _run_lifted(self, start: int, length: int, count: int, stride: int,
                    window: tuple[int, int], regs: _Regs, space: _Space,
                    res: RunResult) -> None:
        """Run a loop body once with the iterations as extra columns."""
        p = self.image.params
        B = self.batch
        lo, hi = window
        lifted = _Space(space.dmem, lo, stride, count, hi - lo)
        lregs = _Regs(p.rows, p.cols, count * B)
        reads_per_iter = sum(1 for k in range(length)
                             if (st := self.plan[start + k]) is not None and st.op == _READ)
        reads_before = res.reads
        r_in_body = 0
        for k in range(length):
            st = self.plan[start + k]
            assert st is not None
            res.lane_ops += st.lane_ops * count
            res.dmem_accesses += st.dmem_acc * count
            if st.op == _CMAC:
                res.wmem_rows += st.a["lanes"] * count
            res.cycles += st.cost * count
            res.instructions += count
            if st.op == _READ:
                counters = reads_before + r_in_body + reads_per_iter * np.arange(count)
                self._read(st.a, lregs, res, counters)
                r_in_body += 1
            else:
                # ib = 0: the lifted views already address each iteration's words.
                self._exec(st, lregs, lifted, 0, res)
        regs.last_copy(lregs, count)
