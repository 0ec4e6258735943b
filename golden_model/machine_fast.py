"""The golden machine's prepared execution: what a static program costs once.

``Machine._exec`` interprets one decoded instruction at a time; it is the
definition. This module runs the same program faster without changing any
result (tests/test_machine_fast.py runs both on seeded random programs, with
loops, faults, read noise and instruction limits, and compares every DMEM word,
cell and counter):

- Straight-line code outside loops is cut into blocks once per machine: the
  instructions of a block become closures bound to this machine's registers,
  DMEM views and scratch buffers, and the block's cycles, instructions and
  event counts are added in one step. A block ends before a LOOP, an invalid
  word or an instruction whose range check fails, and after a HALT.
- A READ keeps, per crossbar, column window and ADC step, one product matrix
  (lanes, a row of ones for NDRV and two rows that give the read charge), keyed
  by a digest of the crossbar's cells (``Machine.xbar_key``): built once per
  cell content, and shared by the machines of one image. When an ideal ADC's
  step divides every entry (ideal or stuck cells), the lanes are stored divided
  by it, so the product is the ADC code itself. The driven rows are a view of
  the matrix when IN holds a contiguous prefix; any other IN state, and a chip
  with read noise, IR drop or read disturb, go through ``Machine._read_core``.
- A run of (READ, ACC from CODE) pairs over one matrix and driven rows
  (``read_chains``: bit planes, the positive/negative pair of a ternary input, a
  single pair) is one product W @ sum_i k_i drive_i added to ACC, when those
  lanes are the ADC codes (no clipping) and CODE/NDRV as the last READ leaves
  them are not read afterwards (``regs_read_later``); when IN's rows come from
  LDINs right before and nothing else reads IN, from their DMEM words directly
  (``in_source``). Anything else at run time (a probe, IN gaps, a bound past
  2^62, a matrix without the ADC step) runs the pairs' own closures.
- Single-pair chains whose LDINs load the same DMEM words again and again (the
  positions of a convolution) read a drive shadow (``golden_model.shadow``): the
  drive of every word they load, made once per run of such chains that nothing
  writes in between, multiplied as row blocks (no copy into IN, no drive per READ).
- A chain that starts on cleared ACC lanes and is followed by ACCs of absolute
  DMEM words (a bias) and a STA or an ACT, with ACC dead after them
  (``acc_read_later``), hands its product to them directly (``Epilogue``): no
  ACC passes; ACT compares the product with its bounds minus the bias.
- On few columns (a small batch), runs of like units of a convolution's positions
  (``golden_model.stack``: the same READ, ACCs and STA or ACT, other DMEM words)
  run as one product of the matrix with all their drives side by side, then one
  epilogue pass into every unit's words (``_stack_fn``): a few long passes where
  each unit would make hundreds of short ones.
- A single READ over many rows with few lanes multiplies a packed matrix
  (``Packed``: three 8-bit lanes per float32 row, the read charge from the counts
  of rows of each charge value) and takes the lanes apart by shifts: a third of
  the product's rows, where a float32 product of few rows is slow per row.
- ACT with an absolute table compares ACC (as int32) with ceil(t / s) or, for
  s < 0, ~ACC with ~floor(t / s), per lane and run: no products.
- A lifted loop (``Machine._liftable``) runs its body once as closures over
  registers with ``iterations x runs`` columns and strided DMEM windows, kept
  per loop between runs; loops with as many columns share registers (reset at
  the loop's start) and scratch buffers.

Every exact-integer float product keeps its partial sums below 2^24 (float32)
or 2^53 (float64), so BLAS's summation order does not matter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from .isa import BIT_SIGNED, MASK_NEG, MASK_POS, MASK_ZERO, Err, Sense, Src
from .kernels import unique
from .machine import (
    _ACC,
    _ACLR,
    _ACT,
    _HALT,
    _INCLR,
    _LDIN,
    _LOOP,
    _NOP,
    _PROG,
    _READ,
    _STA,
    _VCOPY,
    _VMAX,
    INT32_MAX,
    INT32_MIN,
    RunResult,
    _AdcLookup,
    _Regs,
    _Space,
    _Step,
    _wrap32,
)
from .shadow import Shadow, plan_shadows
from .stack import Unit, stack_runs

if TYPE_CHECKING:
    from .machine import Machine

Fn = Callable[[int], None]  # an instruction: called with IB
# An ACT table as comparison bounds: tiled thresholds, the sign mask, every sign < 0.
ActBounds = tuple[np.ndarray, np.ndarray | None, bool]
# The read charge is accumulated in float64 and folded into the int64 counter
# at least every FOLD_READS READs: each READ adds less than 2^24 per row, so the
# float64 sums stay exact.
FOLD_READS = 1 << 28
# Bytes of READ matrices an image keeps for the machines that run it, by cell
# content (least recently used dropped first): a streamed network re-PROGs the
# same weights in every run.
SHARED_MATRIX_BYTES = 256 << 20


# Products of at least this many multiply-adds are split in two halves of columns,
# one on a worker thread (``Engine.matmul``): the reference inference's limit for BLAS
# threads (kernels.SINGLE_THREAD_MACS). A worker waits for a CPU instead of spinning
# as BLAS threads do, so a busy host costs little.
SPLIT_MACS = 1 << 24


def charge_shift(rows: int) -> int:
    """Bits in the low charge row: ``rows`` values below 2^s sum below 2^24."""
    return 24 - max(rows, 1).bit_length()


def _driver(mask: int, bit: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
    """out = 1.0 where an IN value drives its row under ``mask`` (``_mask_of``), else 0.

    Called as f(values int32, out float, scratch int32 of values' shape).
    """
    if bit == BIT_SIGNED:
        ufunc = {MASK_POS: np.greater, MASK_NEG: np.less, MASK_ZERO: np.equal,
                 MASK_POS | MASK_NEG: np.not_equal, MASK_POS | MASK_ZERO: np.greater_equal,
                 MASK_NEG | MASK_ZERO: np.less_equal}.get(mask)
        if ufunc is not None:
            def signed(v: np.ndarray, out: np.ndarray, _t: np.ndarray) -> None:
                ufunc(v, 0, out=out)
            return signed
        fill = 1.0 if mask == MASK_POS | MASK_NEG | MASK_ZERO else 0.0
    else:
        # A bit-plane value is 0 or 1: POS picks 1, ZERO picks 0, NEG nothing.
        pos, zero = bool(mask & MASK_POS), bool(mask & MASK_ZERO)
        if pos != zero:
            def plane(v: np.ndarray, out: np.ndarray, t: np.ndarray) -> None:
                np.right_shift(v, bit, out=t)
                if pos:
                    np.bitwise_and(t, 1, out=out)
                else:
                    np.bitwise_and(t, 1, out=t)
                    np.equal(t, 0, out=out)
            return plane
        fill = 1.0 if pos else 0.0

    def const(_v: np.ndarray, out: np.ndarray, _t: np.ndarray) -> None:
        out.fill(fill)
    return const


@dataclass
class FastMat:
    """A READ's product matrix over all physical rows of one column window."""

    lhs: np.ndarray  # [lanes + 1 + nch, rows]: lanes, ones (NDRV), charge rows
    lanes: int
    div: int  # > 0: lanes hold ADC input / div and are the ideal ADC's code (after clip)
    clip: tuple[int, int] | None  # the ideal ADC's code range, when a lane can leave it
    nch: int  # charge rows: 2 (float32: high part, low part) or 1 (float64, exact)
    colsum: int  # the largest sum of |lane entries| over the rows of a column
    chsum: int  # the sum over rows of the largest charge-row entry
    # Views of lhs by (first row, rows), and matrices made of its rows (``_chain_fn``);
    # lhs is never written after it is built.
    views: dict[tuple, np.ndarray] = field(default_factory=dict)


def fast_matrix(m: Machine, xbar: int, c0: int, width: int, sym: bool, lut: _AdcLookup
                ) -> FastMat:
    """The matrix of ``Machine._matrix`` in the form the prepared READ uses, for
    one ADC table."""
    p = m.image.params
    step = lut.step
    cur = m.currents(xbar)[:, c0:c0 + width]
    if sym:
        w = cur[:, 0::2].astype(np.int64) - cur[:, 1::2]
    else:
        w = cur.astype(np.int64) - p.hrs_units
    div = 0
    clip = None
    if step:
        g = int(np.gcd.reduce(w, axis=None)) if w.size else 0
        if g % step == 0:
            div = step
            w //= step
            neg = np.minimum(w, 0).sum(axis=0).min(initial=0)
            pos = np.maximum(w, 0).sum(axis=0).max(initial=0)
            if neg < lut.lo or pos > lut.hi:
                clip = (lut.lo, lut.hi)
    lanes = w.shape[1]
    colsum = int(np.abs(w).sum(axis=0).max(initial=0))
    rowsum = cur.sum(axis=1, dtype=np.int64)
    s = charge_shift(p.rows)
    hi_part, lo_part = rowsum >> s, rowsum & ((1 << s) - 1)
    f32 = max(colsum, p.rows, int(hi_part.sum()), int(lo_part.sum())) < 2**24
    if f32:
        lhs = np.empty((lanes + 3, p.rows), np.float32)
        lhs[lanes + 1] = hi_part
        lhs[lanes + 2] = lo_part
    else:
        lhs = np.empty((lanes + 2, p.rows), np.float64)
        lhs[lanes + 1] = rowsum
    lhs[:lanes] = w.T
    lhs[lanes] = 1
    chsum = max(int(hi_part.sum()), int(lo_part.sum())) if f32 else int(rowsum.sum())
    return FastMat(lhs, lanes, div, clip, 2 if f32 else 1, colsum, chsum)


# A single READ's product with at least PACK_MIN_ROWS driven rows runs packed
# (``pack_plan``): PACK_FIELDS lanes of PACK_BITS bits in each float32 row of the
# matrix, its rows a multiple of PACK_ROW_STEP (BLAS's single-precision kernels run
# 8-row blocks: 8 rows over the 144 driven rows of the digits CNN's second layer take
# less than half the time of its 18). Fewer driven rows, or a packed matrix of more
# than PACK_MAX_ROWS rows (a wide layer's product runs at full speed as it is: the
# 64-lane layer of the digits MLP got slower), and unpacking the fields costs more
# than the product saves.
PACK_FIELDS, PACK_BITS, PACK_ROW_STEP = 3, 8, 8
PACK_MIN_ROWS = 48
PACK_MAX_ROWS = 8
PACK_MAX_CHARGES = 2  # distinct read charges of the driven rows (one field each)


@dataclass
class Packed:
    """A single READ's product (W: k times the lanes ACC takes; d: the 0/1 drive)
    with PACK_FIELDS lanes in each row of ``lhs``.

    W = g * Wp + off (per lane, off <= 0, Wp >= 0), so W @ d = g * (Wp @ d) + off *
    count(d), and the read charge of d is sum_v v * count_v(d) over the distinct read
    charges v of the rows (their counts sum to count(d)). Slot s (the lanes of Wp,
    then a 0/1 row per charge value) is field s // rows of row s % rows: field f of
    the product's rows is lanes [f * rows, (f + 1) * rows), a block of ACC. Every
    entry and drive value is >= 0 and every field's sum is below 2^PACK_BITS, so the
    packed product's partial sums are integers below 2^24: exact in float32, and
    field f is bits [f * PACK_BITS, (f + 1) * PACK_BITS) of each row as int32."""

    lhs: np.ndarray  # float32 [rows, driven rows]
    rows: int
    g: int
    off: np.ndarray  # int64 [lanes]
    off0: int | None  # every lane's offset, when they agree
    charges: tuple[tuple[int, int, int], ...]  # (charge, row, field) of each charge value


def pack_plan(lanes: np.ndarray, k: int, charge: np.ndarray) -> Packed | None:
    """The packed form of the product of ``k * lanes`` (int64 [lanes, driven rows])
    and the read charge of each driven row (int64), or None when a field may reach
    2^PACK_BITS or there are more than PACK_MAX_CHARGES charge values."""
    top = 1 << PACK_BITS
    n = lanes.shape[0]
    a = lanes.astype(np.int64) * k
    off = np.minimum(a.min(axis=1, initial=0), 0)
    a -= off[:, None]
    g = int(np.gcd.reduce(a, axis=None)) if a.size else 0
    g = g or 1
    a //= g
    vals, inv = unique(charge)
    if len(vals) > PACK_MAX_CHARGES or int(a.sum(axis=1).max(initial=0)) >= top or \
            int(np.bincount(inv, minlength=1).max()) >= top:
        return None
    slots = np.concatenate([a, inv[None, :] == np.arange(len(vals))[:, None]])
    rows = -(-slots.shape[0] // PACK_FIELDS)
    rows = -(-rows // PACK_ROW_STEP) * PACK_ROW_STEP
    if rows > PACK_MAX_ROWS:
        return None
    lhs = np.zeros((rows, lanes.shape[1]), np.int64)
    for s in range(slots.shape[0]):
        lhs[s % rows] += slots[s] << (PACK_BITS * (s // rows))
    off0 = int(off[0]) if n and (off == off[0]).all() else None
    charges = tuple((int(v), (n + i) % rows, (n + i) // rows) for i, v in enumerate(vals))
    return Packed(lhs.astype(np.float32), rows, g, off, off0, charges)


def vec_chunks(n: int, src: int, src_len: int, dst: int, vw: int
               ) -> tuple[tuple[int, int], ...]:
    """``Machine._chunks``: one step unless source and destination overlap."""
    if src + src_len <= dst or dst + n <= src:
        return ((0, n),)
    return tuple((lo, min(n, lo + vw)) for lo in range(0, n, vw))


class Ctx:
    """Registers, DMEM views and scratch buffers one set of closures runs on: the
    machine's own (one copy) or a lifted loop's (one copy per iteration)."""

    def __init__(self, engine: Engine, regs: _Regs, copies: int, space: _Space | None,
                 bufs: dict[tuple[str, type], np.ndarray] | None = None) -> None:
        m = engine.m
        p = m.image.params
        B = m.batch
        self.engine = engine
        self.m = m
        self.regs = regs
        self.copies = copies
        self.B = B
        self.N = N = copies * B
        self.dm = m.dmem.T  # [words, B]
        self.win = space.win if space is not None and space.lifted else None
        self.lo = space.lo if space is not None else 0
        self.space = space if space is not None else _Space(self.dm)
        self.in3 = regs.in_reg.reshape(p.rows, copies, B)
        self.acc3 = regs.acc.reshape(p.cols, copies, B)
        self.code3 = regs.code.reshape(p.cols, copies, B)
        self.ndrv2 = regs.ndrv.reshape(copies, B)
        # Scratch buffers hold nothing from one instruction to the next: contexts with
        # the same columns share them.
        self._bufs: dict[tuple[str, type], np.ndarray] = {} if bufs is None else bufs
        self._tiles: dict[tuple[object, ...], tuple[bytes, np.ndarray, int]] = {}
        # ACT tables prepared for comparison (``_act_fn``), by (address, lanes, k + 1).
        self.act_tables: dict[tuple[int, int, int], tuple[bytes, ActBounds | None, int]] = {}
        self.ch2 = np.zeros((2, N))  # float64 charge sums: high part, low part
        self.chi = np.zeros(N, np.int64)  # exact charges of float64 products and slow READs
        self.dirty = self.dirty_i = False  # ch2, chi hold something
        self.shift = charge_shift(p.rows)
        # READs after which hi * 2^s + lo may pass 2^53 (each READ adds < 2^24 to both).
        self.float_fold = 1 << max(0, 28 - self.shift)
        self.reads_since = 0
        self.res: RunResult = RunResult(0, 0, Err.NONE, -1, 0)
        # Runs of a lifted body (``Engine._run_lifted``): no absolute DMEM word changes
        # during one (``Machine._liftable``), so what was made of such words and checked
        # against them in this run still holds (``fixed``).
        self.gen = 0
        self.read_base = 0
        self.fold_at = self.fold_base = 0

    def buf(self, kind: str, dtype: type) -> np.ndarray:
        """Scratch memory, allocated on first use: "drive", "bits", "rhs", "cnt", "u8"
        [rows, N], "charge" [2, N], "prod" [cols + 3, N], "x" [cols, N], "tmp", "act",
        "cnt3", "cond" [cols, copies, B]. One buffer per kind and dtype: a closure's
        buffers of different kinds never alias."""
        b = self._bufs.get((kind, dtype))
        if b is None:
            p = self.m.image.params
            shape = {"drive": (p.rows, self.N), "bits": (p.rows, self.N),
                     "rhs": (p.rows, self.N), "cnt": (p.rows, self.N), "u8": (p.rows, self.N),
                     "charge": (2, self.N),
                     "prod": (p.cols + 3, self.N), "x": (p.cols, self.N),
                     "tmp": (p.cols, self.copies, self.B), "act": (p.cols, self.copies, self.B),
                     "cnt3": (p.cols, self.copies, self.B),
                     "cond": (p.cols, self.copies, self.B)}[kind]
            b = self._bufs[(kind, dtype)] = np.empty(shape, dtype)
        return b

    def scratch(self, kind: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """Scratch memory of any shape, one per kind, shape and dtype (shared like
        ``buf``)."""
        k = (f"{kind}{shape}", dtype)
        b = self._bufs.get(k)
        if b is None:
            b = self._bufs[k] = np.empty(shape, dtype)
        return b

    def flat(self, kind: str, size: int, dtype: type) -> np.ndarray:
        """Scratch memory of at least ``size`` elements, one per kind and dtype,
        grown as needed (shared like ``buf``)."""
        k = (kind, dtype)
        b = self._bufs.get(k)
        if b is None or b.size < size:
            b = self._bufs[k] = np.empty(size, dtype)
        return b

    def fixed(self, gen: int) -> bool:
        """Were absolute words checked in run ``gen`` of this lifted body still the
        same now? (True only within that run; a block's closures always check.)"""
        return gen == self.gen and self.win is not None

    def kept(self, cache: dict, key: object, words: Callable[[], bytes]
             ) -> tuple[bool, object, bytes]:
        """``cache[key]`` holds (the DMEM words a value was made of, the value, the
        lifted run it was last checked in). Returns (True, the value, the words) while
        they are unchanged (compared once per run of a lifted body: ``fixed``), else
        (False, the old value or None, the words now): the caller makes the value
        again and stores (words, value, ``gen``)."""
        got = cache.get(key)
        if got is not None and self.fixed(got[2]):
            return True, got[1], got[0]
        now = words()
        if got is not None and got[0] == now:
            cache[key] = (now, got[1], self.gen)
            return True, got[1], now
        return False, None if got is None else got[1], now

    def tiled(self, a: int, n: int, k: int) -> np.ndarray:
        """k times absolute DMEM words [a, a + n) for every copy: int64 [n, copies, B],
        contiguous (an operation on the [n, 1, B] words broadcasts over copies in runs
        of B values, several times slower). Kept per (a, n, k) in the context and
        remade when the words differ from those it was made of."""
        key = ("tiled", a, n, k)
        words = self.dm[a:a + n]
        # (comparing bytes: a tenth of np.array_equal's time)
        hit, out, raw = self.kept(self._tiles, key, words.tobytes)
        if hit:
            return out
        if out is None:
            out = np.empty((n, self.copies, self.B), np.int64)
        np.multiply(words[:, None, :], k, out=out, dtype=np.int64)
        self._tiles[key] = (raw, out, self.gen)
        return out

    def act_bounds(self, t0: int, n: int, k1: int) -> ActBounds | None:
        """The absolute ACT table at t0 as int32 comparison bounds tiled over the
        copies ([n, k, copies, B]), the sign mask (-1 where s < 0, tiled, or None) and
        whether every sign is negative (``act_bounds``); None when the table needs
        the general path. Kept per table (the ACTs of a layer's positions share one)
        and remade when its words differ from those it was made of."""
        key = (t0, n, k1)
        words = self.dm[t0:t0 + n * k1]
        hit, out, raw = self.kept(self.act_tables, key, words.tobytes)
        if hit:
            return out
        out = act_bounds(words.reshape(n, k1, 1, -1), n, k1, self.copies, self.B)
        self.act_tables[key] = (raw, out, self.gen)
        return out

    def words(self, a: int, n: int, rel: bool) -> np.ndarray:
        """The rows of ``dm`` that hold DMEM words [a, a + n) of each copy, intp [n,
        copies] (IB 0): a lifted body's relative word a of copy c is a + c * stride
        (``_Space.win``)."""
        w = np.arange(a, a + n, dtype=np.intp)[:, None]
        step = 0 if not rel or self.win is None else self.win.strides[0] // self.dm.strides[0]
        return w + np.arange(self.copies, dtype=np.intp) * step

    def view(self, a: int, n: int, rel: bool) -> np.ndarray:
        """DMEM words [a, a + n) as [n, copies or 1, B] (``a`` includes IB)."""
        if rel and self.win is not None:
            o = a - self.lo
            return self.win[:, o:o + n].transpose(1, 0, 2)
        return self.dm[a:a + n, None, :]

    def fold(self, into: np.ndarray) -> None:
        """Add the read charge per column since the last fold to ``into`` (int64
        [B], summed over copies) and restart."""
        if self.dirty:
            ch = self.ch2
            if self.copies == 1 and self.reads_since < self.float_fold:
                # hi * 2^s + lo is below 2^53: exact in float64. (``into`` may hold a
                # lifted loop's charge already: added, not assigned.)
                t = ch[0] * float(1 << self.shift)
                t += ch[1]
                into += t.astype(np.int64)
            else:
                h = ch.astype(np.int64)
                h[0] <<= self.shift
                if self.copies == 1:
                    into += h[0]
                    into += h[1]
                else:
                    into += h.reshape(2 * self.copies, -1).sum(axis=0)
            ch.fill(0)
            self.dirty = False
        self.reads_since = 0
        if self.dirty_i:
            c = self.chi
            into += c if self.copies == 1 else c.reshape(self.copies, -1).sum(axis=0)
            self.chi.fill(0)
            self.dirty_i = False


# ------------------------------------------------------------------ closures


def build(st: _Step, ctx: Ctx, k_read: int = 0, rpi: int = 0, ndrv_live: bool = True
          ) -> Fn | None:
    """The instruction of ``st`` as a closure over ``ctx`` (None: nothing to do).

    ``k_read``: READs of the enclosing block or loop body before this one;
    ``rpi``: READs per iteration of a lifted body (read-noise counters);
    ``ndrv_live``: a READ's NDRV may be read (False: the run ends first)."""
    op = st.op
    if op in (_NOP, _HALT):
        return None
    if op == _READ:
        return _read_fn(st, ctx, k_read, rpi, ndrv_live)
    if op == _ACC:
        return _acc_fn(st, ctx)
    if op == _LDIN:
        return _ldin_fn(st, ctx)
    if op == _INCLR:
        return _inclr_fn(ctx)
    if op == _ACLR:
        return _aclr_fn(ctx)
    if op == _STA:
        return _sta_fn(st, ctx)
    if op == _ACT:
        return _act_fn(st, ctx)
    if op in (_VCOPY, _VMAX):
        return _vmove_fn(st, ctx)
    if op == _PROG:
        return _prog_fn(st, ctx)
    m = ctx.m
    space = ctx.space

    def f_general(ib: int) -> None:
        m._exec(st, ctx.regs, space, ib, ctx.res)
    return f_general


def _dmem_operand(ctx: Ctx, addr: int, n: int, rel: bool) -> Callable[[int], np.ndarray]:
    """IB -> the operand's DMEM view; computed once unless it moves with IB."""
    v0 = ctx.view(addr, n, rel)
    if not rel or ctx.win is not None:
        return lambda ib: v0
    view = ctx.view
    return lambda ib: v0 if ib == 0 else view(addr + ib, n, rel)


def _ldin_fn(st: _Step, ctx: Ctx, copy: bool = True) -> Fn:
    """LDIN; ``copy=False``: only IN's valid entries (``_chain_fn`` reads the
    values from DMEM, see ``in_source``)."""
    a = st.a
    n, d0 = a["lanes"], a["dst"]
    end = d0 + n
    src = _dmem_operand(ctx, a["src"], n, bool(a["rsrc"]))
    dst_t = ctx.in3[d0:end].transpose(1, 0, 2)
    regs = ctx.regs
    mark = regs.ldin

    def f_ldin(ib: int) -> None:
        if copy:  # copy-major: each copy's words are one block of DMEM
            np.copyto(dst_t, src(ib).transpose(1, 0, 2))
        if regs.in_exact and d0 <= regs.in_pref:
            if end > regs.in_pref:
                regs.in_pref = regs.in_hi = end
        else:
            mark(d0, end)
    return f_ldin


def _ldin_copy(st: _Step, ctx: Ctx) -> Fn:
    """The values LDIN writes to IN, without the valid entries."""
    a = st.a
    n, d0 = a["lanes"], a["dst"]
    src = _dmem_operand(ctx, a["src"], n, bool(a["rsrc"]))
    dst_t = ctx.in3[d0:d0 + n].transpose(1, 0, 2)
    return lambda ib: np.copyto(dst_t, src(ib).transpose(1, 0, 2))


def in_read_later(later: Iterable[_Step | None], halts: bool) -> bool:
    """May IN's values be read (by a READ) before the next INCLR?"""
    for st in later:
        if st is None or st.op == _HALT:
            return st is None
        if st.op in (_READ, _LOOP) or st.op not in (_ACC, _LDIN, _ACLR, _STA, _ACT, _VCOPY,
                                                     _VMAX, _PROG, _NOP, _INCLR):
            return True
        if st.op == _INCLR:
            return False
    return not halts


def _inclr_fn(ctx: Ctx) -> Fn:
    regs = ctx.regs
    inclr = regs.inclr

    def f_inclr(ib: int) -> None:
        # The values of invalid entries are never read, so they are not cleared.
        if regs.in_exact:
            regs.in_hi = regs.in_pref = 0
        else:
            inclr()
    return f_inclr


def _aclr_fn(ctx: Ctx) -> Fn:
    regs = ctx.regs

    def f_aclr(ib: int) -> None:
        regs.acc_hi = 0  # lazily: the next ACC assigns these lanes
        regs.acc_bound = 0
    return f_aclr


# |ACC| may grow to this before its lanes are wrapped (int64 headroom for one more ACC).
ACC_HEADROOM = 1 << 62


def _acc_fn(st: _Step, ctx: Ctx) -> Fn:
    """ACC[l] += k * S[l]. Lanes past acc_hi are cleared: they are assigned, not
    added to. The sum is not wrapped to 32 bits here (see ``_Regs``)."""
    a = st.a
    m = ctx.m
    n = a["lanes"]
    k = a["mul"] << a["sh"]
    src_kind = a["src"]
    regs = ctx.regs
    acc3 = ctx.acc3
    dst = acc3[:n]
    tmp = ctx.buf("tmp", np.int64) if k not in (0, 1) else acc3  # (acc3: never used)
    if st.gain < 0:
        st.gain = m._acc_gain(st)
    gain = st.gain
    if src_kind == Src.CODE:
        c0 = a["addr"]
        code_src = ctx.code3[c0:c0 + n]
        operand = None
    elif src_kind == Src.NDRV:
        code_src = None
        nd = ctx.ndrv2
        operand = lambda ib: nd  # noqa: E731
    else:
        code_src = None
        operand = _dmem_operand(ctx, a["addr"], n, bool(a["rel"]))
    # Absolute words in a lifted loop: k * words tiled over the copies (``Ctx.tiled``).
    tiled = src_kind == Src.DMEM and not a["rel"] and ctx.copies > 1 and k != 0
    addr = a["addr"]
    # Split points of the lanes by acc_hi -> (add part, assign part) views.
    parts: dict[int, tuple[np.ndarray, np.ndarray, slice]] = {}
    # A lifted loop's relative words: walked copy-major ([copies, lanes, B]), each
    # copy's words one block of DMEM.
    cm = src_kind == Src.DMEM and bool(a["rel"]) and ctx.win is not None
    dst_w = dst.transpose(1, 0, 2) if cm else dst
    tmp_w = tmp[:n].transpose(1, 0, 2) if cm else tmp[:n]

    def f_acc(ib: int) -> None:
        if code_src is not None:
            if regs.code_hi < c0 + n:
                regs.code_lanes(c0 + n)
            s = code_src
        else:
            s = operand(ib)  # type: ignore[misc]
        h = regs.acc_hi
        if tiled and (h == 0 or h >= n):
            if h == 0:
                np.copyto(dst, ctx.tiled(addr, n, k))
                regs.acc_hi = n
            else:
                np.add(dst, ctx.tiled(addr, n, k), out=dst)
        elif h == 0 or h >= n:
            sw = s.transpose(1, 0, 2) if cm else s
            if h == 0:
                np.multiply(sw, k, out=dst_w, dtype=np.int64)
                regs.acc_hi = n
            elif k == 1:
                np.add(dst_w, sw, out=dst_w)
            elif k == -1:
                np.subtract(dst_w, sw, out=dst_w)
            elif k:
                np.multiply(sw, k, out=tmp_w, dtype=np.int64)
                np.add(dst_w, tmp_w, out=dst_w)
        else:
            pr = parts.get(h)
            if pr is None:
                pr = parts[h] = (acc3[:h], acc3[h:n], slice(h, n))
            add, new, sl = pr
            if s.ndim == 3 and s.shape[0] == n:
                s_add, s_new = s[:h], s[sl]
            else:
                s_add = s_new = s  # NDRV: the same value on every lane
            np.multiply(s_new, k, out=new, dtype=np.int64)
            if h:
                if k == 1:
                    np.add(add, s_add, out=add)
                elif k:
                    t = tmp[:h]
                    np.multiply(s_add, k, out=t, dtype=np.int64)
                    np.add(add, t, out=add)
            regs.acc_hi = n
        b = regs.acc_bound + gain
        if b > ACC_HEADROOM:
            hi = regs.acc_hi
            regs.acc[:hi] = _wrap32(regs.acc[:hi])
            b = 1 << 31
        regs.acc_bound = b
    return f_acc


def _acc_read(ctx: Ctx, n: int) -> Callable[[], np.ndarray]:
    """ACC[:n] as [n, copies, B] with values in int32 range (clearing lazily
    cleared lanes and wrapping first when needed)."""
    regs = ctx.regs
    a3 = ctx.acc3[:n]

    def get() -> np.ndarray:
        if regs.acc_hi < n:
            regs.acc_lanes(n)
        if regs.acc_bound > INT32_MAX:
            return _wrap32(a3)
        return a3
    return get


def _sta_fn(st: _Step, ctx: Ctx) -> Fn:
    a = st.a
    n = a["lanes"]
    dst = _dmem_operand(ctx, a["dst"], n, bool(a["rel"]))
    regs = ctx.regs
    src = ctx.acc3[:n]

    src_w = src.transpose(1, 0, 2)

    def f_sta(ib: int) -> None:
        if regs.acc_hi < n:
            regs.acc_lanes(n)
        # The int32 store truncates: two's complement wrap of an unwrapped sum.
        # (Copy-major: each copy's words are one block of DMEM.)
        np.copyto(dst(ib).transpose(1, 0, 2), src_w, casting="unsafe")
    return f_sta


def _act_fn(st: _Step, ctx: Ctx) -> Fn:
    a = st.a
    n, k1 = a["lanes"], a["k"] + 1
    rt, rd = bool(a["rtbl"]), bool(a["rdst"])
    tbl, dst = a["tbl"], a["dst"]
    obias, oscale = a["obias"], a["oscale"]
    vw = ctx.m.image.params.vec_width
    view = ctx.view
    acc = _acc_read(ctx, n)
    regs = ctx.regs
    a3 = ctx.acc3[:n]

    def general(t0: int, d0: int) -> None:
        acc3 = acc()
        for lo, hi in vec_chunks(n, t0, n * k1, d0, vw):
            tv = view(t0 + lo * k1, (hi - lo) * k1, rt)
            tv = tv.reshape(hi - lo, k1, *tv.shape[1:])
            v = tv[:, 0] * acc3[lo:hi]  # int64: sign * ACC
            cnt = (v >= tv[:, 1]).astype(np.int32)
            for j in range(2, k1):
                cnt += v >= tv[:, j]
            view(d0 + lo, hi - lo, rd)[...] = obias + oscale * cnt

    # The outputs obias + oscale * count fit int8 (3-bit fields, k <= 3).
    small = all(-128 <= obias + oscale * j <= 127 for j in range(k1))

    def f_act(ib: int) -> None:
        t0 = tbl + ib if rt else tbl
        d0 = dst + ib if rd else dst
        if rt or not small or act_overwrites_table(t0, d0, n, k1):
            general(t0, d0)  # a relative table, or one the result overwrites
            return
        prep = ctx.act_bounds(t0, n, k1)
        if prep is None:
            general(t0, d0)
            return
        t, mask, negative = prep
        if regs.acc_hi < n:
            regs.acc_lanes(n)
        # ACC as int32: its values, or wrapped to 32 bits when they may not fit
        # (two's complement truncation); int32 comparisons are the faster ones.
        v = ctx.buf("act", np.int32)[:n]
        np.copyto(v, a3, casting="unsafe")
        if negative:
            np.invert(v, out=v)
        elif mask is not None:
            np.bitwise_xor(v, mask, out=v)
        act_store(ctx, v, t, np.greater_equal, oscale, obias, view(d0, n, rd))
    return f_act


def act_overwrites_table(t0: int, d0: int, n: int, k1: int) -> bool:
    """Do an ACT's n outputs at d0 overlap its table (n * k1 words at t0)?"""
    return t0 < d0 + n and d0 < t0 + n * k1


def act_store(ctx: Ctx, v: np.ndarray, t: np.ndarray, cmp: np.ufunc, oscale: int, obias: int,
              out: np.ndarray) -> None:
    """out = obias + oscale * #{j : cmp(v, t[:, j])}, v [n, copies, B], t [n, k,
    copies, B], out the DMEM words [n, copies, B] (the values fit int8)."""
    n, k = t.shape[:2]
    cond = ctx.buf("cond", np.bool_)[:n]
    cmp(v, t[:, 0], out=cond)
    cnt = cond.view(np.int8)
    if k > 1:
        cnt = ctx.buf("cnt3", np.int8)[:n]
        np.copyto(cnt, cond)
        for j in range(1, k):
            cmp(v, t[:, j], out=cond)
            np.add(cnt, cond, out=cnt)
    np.multiply(cnt, np.int8(oscale), out=cnt)
    np.add(cnt.transpose(1, 0, 2), np.int8(obias), out=out.transpose(1, 0, 2),
           casting="unsafe")  # copy-major: each copy's words are one block of DMEM


def acc_read_later(later: Iterable[_Step | None], halts: bool) -> bool:
    """May ACC, as the instructions before ``later`` leave it, be read? ``later``: the
    instructions run next, in order; ``halts``: the run ends after them. (ACLR
    clears every lane; ACC, STA and ACT read lanes from 0 on.)"""
    known = (_LDIN, _INCLR, _READ, _VCOPY, _VMAX, _PROG, _NOP)
    for st in later:
        if st is None or st.op == _HALT:
            return st is None
        if st.op == _ACLR:
            return False
        if st.op not in known:
            return True  # ACC, STA, ACT, or an instruction this pass does not know
    return not halts


class Epilogue:
    """ACCs of absolute DMEM words (a bias b) and a STA or an ACT right after a
    chain, on its ACC lanes, with ACC dead afterwards (``acc_read_later``): when the
    chain starts on cleared lanes, ACC would hold P + b, P the chain's exact product
    (float, or a packed product's lanes as int32), and only the STA or ACT sees it.
    So P goes to them directly: STA stores int32(P) + int32(b) (int32 additions wrap
    as the store truncates ACC); ACT compares P with its bounds minus b, when P + b
    cannot leave int32 (else, and for tables with mixed signs, the instructions run
    as they are)."""

    def __init__(self, steps: list[_Step], fns: list[Fn], ctx: Ctx) -> None:
        self.ctx = ctx
        self.fns = fns  # the steps' own closures: the fallback
        last = steps[-1]
        self.n = n = last.a["lanes"]
        self.terms = [(st.a["addr"], st.a["mul"] << st.a["sh"]) for st in steps[:-1]]
        self.gain = sum(abs(k) << 31 for _, k in self.terms)
        self.act = last.op == _ACT
        a = last.a
        if self.act:
            self.k1 = a["k"] + 1
            self.tbl, self.dst, self.rd = a["tbl"], a["dst"], bool(a["rdst"])
            self.oscale, self.obias = a["oscale"], a["obias"]
            self.out = None
        else:
            self.out = _dmem_operand(ctx, a["dst"], n, bool(a["rel"]))
        # ``Ctx.kept`` entries: "bias" -> the [n, copies, B] int32 bias or None, and
        # ("bounds", float type) -> the ACT's bounds or None.
        self._kept: dict[object, tuple[bytes, object, int]] = {}

    @staticmethod
    def fits(steps: list[_Step], n: int) -> bool:
        """steps: ACCs of absolute DMEM words and a STA or an ACT (absolute table,
        outputs that fit int8), each on ACC lanes [0, n)."""
        *accs, last = steps
        if last.op not in (_STA, _ACT) or \
                any(st.fused is not None or st.a["lanes"] != n for st in steps):
            return False
        if any(st.a["src"] != Src.DMEM or st.a["rel"] for st in accs):
            return False
        if last.op == _STA:
            return True
        if last.a["rtbl"]:
            return False
        ob, os_ = last.a["obias"], last.a["oscale"]
        return all(-128 <= ob + os_ * j <= 127 for j in range(last.a["k"] + 2))

    def raw(self) -> bytes:
        dm = self.ctx.dm
        return b"".join(dm[a:a + self.n].tobytes() for a, _ in self.terms)

    def bias64(self) -> np.ndarray | None:
        """b as int64 [n, copies, B] (None: no bias)."""
        ctx = self.ctx
        if not self.terms:
            return None
        (a, k), *more = self.terms
        b = ctx.tiled(a, self.n, k)
        for a, k in more:
            b = b + ctx.tiled(a, self.n, k)
        return b

    def bias32(self) -> np.ndarray | None:
        """b wrapped to int32 (kept while its words are unchanged)."""
        ctx = self.ctx
        hit, out, raw = ctx.kept(self._kept, "bias", self.raw)
        if not hit:
            b = self.bias64()
            out = None if b is None else b.astype(np.int32)
            self._kept["bias"] = (raw, out, ctx.gen)
        return out  # type: ignore[return-value]

    def bounds(self, pmax: int, dt: type) -> tuple[np.ndarray, np.ufunc] | None:
        """The ACT's bounds on P ([n, k, copies, B] in P's float type) and the
        comparison; None when it needs the instructions themselves."""
        ctx = self.ctx
        n, k1, t0 = self.n, self.k1, self.tbl
        # (pmax with the words: the bounds are clipped to it, and a PROG between runs
        # may change the matrix; within a lifted run it cannot.)
        hit, got, raw = ctx.kept(self._kept, ("bounds", dt), lambda: ctx.dm[
            t0:t0 + n * k1].tobytes() + self.raw() + pmax.to_bytes(8, "little"))
        if hit:
            return got  # type: ignore[return-value]
        out = None
        prep = ctx.act_bounds(t0, n, k1)
        if prep is not None and prep[1] is None:
            t, _, negative = prep
            b = self.bias64()
            big = 0 if b is None else int(np.abs(b).max(initial=0))
            if pmax + big <= INT32_MAX:
                # P + b is ACC as int32: s * ACC >= t is P >= t - b, or for s < 0
                # (t = ~u: ACC <= u) P <= u - b. Bounds past +-(pmax + 1) clipped
                # (for an int32 P; a float P would keep its side of a rounded one).
                u = t.astype(np.int64)
                if negative:
                    u = ~u
                if b is not None:
                    u -= b[:, None]
                np.clip(u, -pmax - 1, pmax + 1, out=u)
                out = (u.astype(dt), np.less_equal if negative else np.greater_equal)
        self._kept[("bounds", dt)] = (raw, out, ctx.gen)
        return out

    def ready(self, pmax: int, dt: type, ib: int) -> object | None:
        """What ``apply`` needs, or None: run the chain and these instructions as
        they are. ``pmax``: a bound on |P|, which is exact in ``dt``."""
        if not self.act:
            return self
        d0 = self.dst + ib if self.rd else self.dst
        if act_overwrites_table(self.tbl, d0, self.n, self.k1):
            return None
        return self.bounds(pmax, dt)

    def apply(self, got: object, p: np.ndarray, ib: int) -> None:
        """The STA or ACT of ACC = P + b, P the product [n, copies, B] (float, or
        int32)."""
        ctx = self.ctx
        if self.act:
            assert isinstance(got, tuple)
            u, cmp = got
            d0 = self.dst + ib if self.rd else self.dst
            act_store(ctx, p, u, cmp, self.oscale, self.obias, ctx.view(d0, self.n, self.rd))
            return
        assert self.out is not None
        out = self.out(ib).transpose(1, 0, 2)  # copy-major
        b = self.bias32()
        if b is not None and p.dtype == np.int32:
            # (p is a scratch buffer: the sum in place, then one strided copy, is
            # faster than the sum into DMEM's strides.)
            np.add(p, b, out=p)  # wraps
            np.copyto(out, p.transpose(1, 0, 2))
            return
        np.copyto(out, p.transpose(1, 0, 2), casting="unsafe")
        if b is not None:
            np.add(out, b.transpose(1, 0, 2), out=out)


def act_bounds(tv: np.ndarray, n: int, k1: int, copies: int, B: int) -> ActBounds | None:
    """An ACT table ``tv`` ([n, k1, 1, B]: per lane and run a sign s and thresholds
    t_j, one value per run for all copies) as comparison bounds; None when it needs
    the general path. s * ACC >= t is ACC >= ceil(t / s) for s > 0 and ACC <= floor(t
    / s), i.e. ~ACC >= ~floor(t / s), for s < 0 (~x = -1 - x reverses the order of
    int32 values without overflow): compare ACC, or ACC ^ mask (-1 on lanes with s <
    0), with those; no products."""
    sg = tv[:, 0]
    lo_s, hi_s = int(sg.min()), int(sg.max())
    if lo_s <= 0 <= hi_s and not sg.all():
        return None  # a zero sign: 0 >= t, whatever ACC holds
    if lo_s == 1 and hi_s == 1:
        t = tv[:, 1:]
    else:
        s64 = sg[:, None].astype(np.int64)
        t = tv[:, 1:].astype(np.int64)
        if lo_s > 0:
            t = -((-t) // s64)
        elif hi_s < 0:
            t = ~(t // s64)
        else:
            t = np.where(s64 > 0, -((-t) // s64), ~(t // s64))
    if t.dtype != np.int32:
        if int(t.max()) > INT32_MAX:
            return None  # a threshold no int32 value reaches
        # Below INT32_MIN every int32 value passes: INT32_MIN itself does.
        t = np.maximum(t, INT32_MIN).astype(np.int32)
    tt = np.ascontiguousarray(np.broadcast_to(t, (n, k1 - 1, copies, B)))
    mask = None
    if lo_s < 0 <= hi_s:
        mask = np.ascontiguousarray(np.broadcast_to(
            -(sg < 0).astype(np.int32), (n, copies, B)))  # 0 or -1 (all ones)
    return tt, mask, hi_s < 0


def _vmove_fn(st: _Step, ctx: Ctx) -> Fn:
    a = st.a
    n = a["lanes"]
    rs, rd = bool(a["rsrc"]), bool(a["rdst"])
    src, dst = a["src"], a["dst"]
    copy = st.op == _VCOPY
    vw = ctx.m.image.params.vec_width
    view = ctx.view

    def f_vmove(ib: int) -> None:
        s0 = src + ib if rs else src
        d0 = dst + ib if rd else dst
        for lo, hi in vec_chunks(n, s0, n, d0, vw):
            sv = view(s0 + lo, hi - lo, rs)
            dv = view(d0 + lo, hi - lo, rd)
            if copy:
                dv[...] = sv
            else:
                np.maximum(dv, sv, out=dv)
    return f_vmove


def _prog_fn(st: _Step, ctx: Ctx) -> Fn:
    m = ctx.m
    a = st.a
    one = (1, np.array([a["xbar"]]), np.array([a["row"]]), np.array([a["wsrc"]]))

    def f_prog(ib: int) -> None:
        m._prog_many(one, ctx.res)
    return f_prog


def _fused_fn(st: _Step, ctx: Ctx) -> Fn:
    m = ctx.m
    fused = st.fused
    assert fused is not None

    def f_progs(ib: int) -> None:
        m._prog_many(fused, ctx.res)
    return f_progs


def _read_fn(st: _Step, ctx: Ctx, k_read: int, rpi: int, ndrv_live: bool) -> Fn:
    m = ctx.m
    p = m.image.params
    a = st.a
    regs = ctx.regs
    n = a["lanes"]
    sym = a["sense"] == Sense.SYM
    width = 2 * n if sym else n
    xbar, c0, ro, adc = a["xbar"], a["col"], a["row_off"], a["adc"]
    copies = ctx.copies
    spread = rpi * np.arange(copies, dtype=np.int64)

    def f_slow(ib: int) -> None:
        counters = ctx.read_base + k_read + spread
        ctx.chi += m._read_core(a, regs, counters)
        ctx.dirty_i = True

    if p.physics.active:
        return f_slow  # the physics hook (Machine._read_physics)
    lut = m._adc(adc)
    pair = bool(a["pair"])
    drive_a = _driver(a["mask_a"], a["bit"])
    drive_b = _driver(a["mask_b"], a["bit"])
    lim = (p.rows - ro + 1) // 2 if pair else p.rows - ro  # IN entries with a row
    valid = regs.in_valid
    in_reg = regs.in_reg
    itmp = ctx.buf("bits", np.int32) if a["bit"] != BIT_SIGNED else in_reg
    code = regs.code[:n]
    ndrv = regs.ndrv
    xbox: list[np.ndarray] = []  # the int64 ADC input, for tables without a closed form
    ch2 = ctx.ch2
    xkey = m.xbar_key
    engine = ctx.engine
    matmul = engine.matmul
    # (crossbar cells key, driven IN entries) -> what the product needs.
    key: list = [None, -1]  # (cells key, driven IN entries) of prep
    prep: list = []

    def refresh(ver: bytes, hi: int) -> None:
        mat = engine.matrix(xbar, c0, width, sym, adc)
        nrows = min(2 * hi, p.rows - ro) if pair else hi
        lv = mat.views.get((ro, nrows))
        if lv is None:
            lv = mat.views[(ro, nrows)] = mat.lhs[:, ro:ro + nrows]
        dt = mat.lhs.dtype.type
        L = mat.lanes
        prod = ctx.buf("prod", dt)[:L + 1 + mat.nch]
        prep[:] = [mat, lv, ctx.buf("drive", dt)[:nrows], prod, prod[:L], prod[L],
                   prod[L + 1:], nrows // 2]
        key[0], key[1] = ver, hi

    def f_read(ib: int) -> None:
        hi = regs.in_hi
        if hi > lim:
            hi = lim
        if hi == 0 or (regs.in_pref < hi and not valid[:hi].all()):
            f_slow(ib)  # no driven row, or a gap in IN: gather the driven rows
            return
        ver = xkey(xbar)
        if key[0] != ver or key[1] != hi:
            refresh(ver, hi)
        mat, lv, d, prod, lanes, nd_row, ch_rows, nb = prep
        if pair:
            drive_a(in_reg[:hi], d[0::2], itmp[:hi])
            drive_b(in_reg[:nb], d[1::2], itmp[:nb])
        else:
            drive_a(in_reg[:hi], d, itmp[:hi])
        matmul(lv, d, out=prod)
        if mat.div:
            if m.probe is not None:
                x = lanes.astype(np.int64)
                x *= mat.div
                m.probe(adc, np.ascontiguousarray(x.T))
            if mat.clip is not None:
                np.clip(lanes, mat.clip[0], mat.clip[1], out=lanes)
            np.copyto(code, lanes, casting="unsafe")
        else:
            if not xbox:
                xbox.append(ctx.buf("x", np.int64)[:n])
            xb = xbox[0]
            np.copyto(xb, lanes, casting="unsafe")
            if m.probe is not None:
                m.probe(adc, np.ascontiguousarray(xb.T))
            code[...] = lut.convert(xb)
        if ndrv_live:
            np.copyto(ndrv, nd_row, casting="unsafe")
        if mat.nch == 2:
            np.add(ch2, ch_rows, out=ch2)
            ctx.dirty = True
            ctx.reads_since += 1
        else:
            ctx.chi += ch_rows[0].astype(np.int64)
            ctx.dirty_i = True
        if regs.code_hi < n:
            regs.code_hi = n
    return f_read


# ------------------------------------------------------------------ READ chains

# READ fields that must agree for READs to share one matrix and driven rows.
_SAME_READ = ("xbar", "col", "lanes", "sense", "row_off", "adc", "pair")
F32_EXACT, F64_EXACT = 1 << 24, 1 << 53


def read_chains(steps: list[_Step]) -> dict[int, int]:
    """Runs of (READ, ACC from CODE) pairs over one matrix and driven rows, the
    ACCs on the same lanes: first index -> index after the run.

    With an ideal ADC whose lanes are the codes (``FastMat.div``, no clipping), the
    run adds sum_i k_i * (W @ drive_i) = W @ (sum_i k_i * drive_i) to ACC: one
    product for the whole run (``_chain_fn``)."""
    out: dict[int, int] = {}
    i = 0
    while i + 1 < len(steps):
        j = i
        while _chain_pair(steps, j, steps[i], steps[i + 1]):
            j += 2
        if j - i >= 2:
            out[i] = j
        i = max(j, i + 1)
    return out


def chain_exact(mat: FastMat, ksum: int, reads: int) -> bool:
    """Is sum_i k_i * (W @ drive_i) over ``reads`` READs of ``mat`` (sum |k_i| =
    ``ksum``) ACC's exact increment as one float product? The lanes must be the ADC
    codes (its step divides every entry, no clipping) and every partial sum, and the
    charge rows' sums over the READs, exact in the matrix's float type."""
    exact = F32_EXACT if mat.nch == 2 else F64_EXACT
    return bool(mat.div) and mat.clip is None and mat.colsum * ksum < exact and \
        ksum < exact and mat.chsum * reads < F64_EXACT


def _chain_pair(steps: list[_Step], i: int, first: _Step, first_acc: _Step) -> bool:
    """steps[i:i + 2] is a READ like ``first`` and an ACC from CODE like ``first_acc``."""
    if i + 1 >= len(steps):
        return False
    rd, acc = steps[i], steps[i + 1]
    if rd.op != _READ or acc.op != _ACC or rd.fused is not None or acc.fused is not None:
        return False
    a, b, b0 = rd.a, acc.a, first_acc.a
    return first.op == _READ and all(a[f] == first.a[f] for f in _SAME_READ) and \
        b["src"] == Src.CODE and b["addr"] == b0["addr"] and b["lanes"] == b0["lanes"] and \
        b["addr"] + b["lanes"] <= a["lanes"]


T = TypeVar("T")


def islice_from(seq: list[T], start: int) -> Iterator[T]:
    """``seq[start:]`` without copying it (the scans below stop early)."""
    for i in range(start, len(seq)):
        yield seq[i]


def regs_read_later(later: Iterable[_Step | None], lanes: int, halts: bool) -> bool:
    """May CODE lanes [0, lanes) or NDRV, as a READ leaves them, be read? ``later``:
    the instructions run next, in order; ``halts``: the run ends after them."""
    covered = 0  # CODE lanes a READ since has written
    ndrv = True  # NDRV not written since
    known = (_ACC, _LDIN, _INCLR, _ACLR, _STA, _ACT, _VCOPY, _VMAX, _PROG, _NOP, _READ)
    for st in later:
        if st is None or st.op == _HALT:
            return st is None
        if st.op not in known:
            return True
        a = st.a
        if st.op == _READ:
            covered = max(covered, a["lanes"])
            ndrv = False
            if covered >= lanes:
                # Both overwritten: nothing after (not even a fault's state) sees them.
                # Stopping here keeps the scan short (it ran to the program's end,
                # quadratic in its length).
                return False
        elif st.op == _ACC:
            if a["src"] == Src.NDRV:
                if ndrv:
                    return True
            elif a["src"] == Src.CODE and \
                    max(a["addr"], covered) < min(a["addr"] + a["lanes"], lanes):
                return True
    return not halts


def straight_after(m: Machine, pc: int) -> tuple[list[_Step | None], bool]:
    """The instructions run from ``pc`` on, as far as CODE and NDRV are concerned,
    to the first HALT (True) or an invalid word or the program's end (False). A
    LOOP's body is listed once: which lanes an instruction reads or writes does not
    depend on IB, so every iteration acts on CODE and NDRV as the first."""
    out: list[_Step | None] = []
    plan = m.plan
    while 0 <= pc < len(plan):
        st = plan[pc]
        if st is None or st.err0 != Err.NONE:
            return out, False
        if st.op == _LOOP:
            body = plan[pc + 1:pc + 1 + st.a["len"]]
            if any(b is None or b.op in (_LOOP, _HALT) for b in body):
                return out, False
            out += body
            pc += 1 + st.a["len"]
            continue
        out.append(st)
        if st.op == _HALT:
            return out, True
        pc += st.fused[0] if st.fused is not None else 1
    return out, False


def _chain_rhs(pairs: list[tuple[_Step, _Step]], ks: list[int]
               ) -> tuple[str, int, int]:
    """How a chain's right-hand side sum_i k_i * drive_i is formed: ("planes", c, M)
    when READ i drives the rows whose IN value has bit b_i set and k_i = c * 2^b_i
    (the sum is c * (IN & M), M = sum_i 2^b_i, a row driven popcount(IN & M) times);
    ("sign", c, 0) for a READ of the positive and one of the negative IN values with
    k = c and -c (c * sign(IN), rows of nonzero IN driven once); else ("sum", 0, 0)."""
    reads = [rd.a for rd, _ in pairs]
    if any(a["pair"] for a in reads):
        return "sum", 0, 0
    bits = [a["bit"] for a in reads]
    if all(b != BIT_SIGNED and a["mask_a"] == MASK_POS for a, b in zip(reads, bits, strict=True)) \
            and len(set(bits)) == len(bits):
        c = ks[0] >> bits[0] if ks[0] % (1 << bits[0]) == 0 else 0
        if c and all(k == c << b for k, b in zip(ks, bits, strict=True)):
            return "planes", c, sum(1 << b for b in bits)
    if len(reads) == 2 and bits == [BIT_SIGNED] * 2 and ks[0] == -ks[1] and \
            {reads[0]["mask_a"], reads[1]["mask_a"]} == {MASK_POS, MASK_NEG}:
        return "sign", ks[0] if reads[0]["mask_a"] == MASK_POS else ks[1], 0
    return "sum", 0, 0


def add_product(ctx: Ctx, acc2: np.ndarray, p_c: np.ndarray, h: int, n: int, cols: slice,
                dt: type) -> None:
    """ACC lanes [0, n) of columns ``cols`` += the float product ``p_c``: lanes below
    ``h`` (acc_hi) accumulate, the lanes from h on are assigned. The product's
    integers are exact in the float; the sum goes through a ``dt`` buffer (int32
    where they are below 2^24: faster than a mixed int64 + float32 sum)."""
    if h == 0:
        np.copyto(acc2[:n, cols], p_c, casting="unsafe")
        return
    if h < n:
        np.copyto(acc2[h:n, cols], p_c[h:], casting="unsafe")
    k = min(h, n)
    ti = ctx.buf("prod", dt)[:k, cols]
    np.copyto(ti, p_c[:k], casting="unsafe")
    np.add(acc2[:k, cols], ti, out=acc2[:k, cols])


def _part(b: np.ndarray, r0: int, r1: int, c0: int, c1: int, copy_major: object, B: int
          ) -> np.ndarray:
    """Rows [r0, r1) and copies [c0, c1) (columns c0 * B .. c1 * B) of a [rows, N]
    buffer: as [rows, columns], or ``copy_major`` as [copies, rows, B]."""
    if not copy_major:
        return b[r0:r1, c0 * B:c1 * B]
    return b[r0:r1].reshape(r1 - r0, -1, B).transpose(1, 0, 2)[c0:c1]


def _chain_fn(steps: list[_Step], ctx: Ctx, slow: list[Fn], live: bool,
              src: list[tuple[int, int, Callable[[int], np.ndarray]]] | None = None,
              fill: list[Fn] | None = None,
              shadow: tuple[Shadow, np.ndarray] | None = None,
              epi: Epilogue | None = None) -> Fn:
    """(READ, ACC from CODE) pairs of ``read_chains`` as one product. ``slow``: the
    pairs' own closures, run instead when the product would not be exact or a READ
    needs the general path (gaps in IN, a probe, a matrix without div). ``live``:
    CODE or NDRV as the last READ leaves them may be read: that pair runs on its own
    closures after the product of the others (``with_chains`` fuses one pair only
    when they are not read). ``src``: IN's rows as (first row, rows, DMEM operand) of
    the LDINs that loaded them, whose closures only marked the entries valid (``fill``
    copies the values, before the fallback). ``shadow``: a single pair's drive is the
    shadow's rows (the shadow row of each IN row) that its LDINs load (``fill`` as
    for ``src``). ``epi``: the ACCs and the STA or ACT after the chain, run on its
    product when the chain starts on cleared ACC lanes (``Epilogue``): the float
    product, or the lanes of a packed one as int32."""
    m = ctx.m
    p = m.image.params
    first = steps[0].a
    acc_a, n = steps[1].a["addr"], steps[1].a["lanes"]
    pairs = [(steps[k], steps[k + 1]) for k in range(0, len(steps), 2)]
    tail: list[Fn] = []
    if live:
        pairs = pairs[:-1]
        tail = slow[-2:]
    nfused = len(pairs)
    ks = [acc.a["mul"] << acc.a["sh"] for _, acc in pairs]
    ksum = sum(abs(k) for k in ks)
    for _, acc in pairs:
        if acc.gain < 0:
            acc.gain = m._acc_gain(acc)
    gain = sum(acc.gain for _, acc in pairs)
    # One pair: the product of the drive itself with k * lanes.
    kind, kc, kmask = ("one", ks[0], 0) if nfused == 1 else _chain_rhs(pairs, ks)
    drivers = [(_driver(rd.a["mask_a"], rd.a["bit"]), _driver(rd.a["mask_b"], rd.a["bit"]),
                rd.a["bit"] != BIT_SIGNED) for rd, _ in pairs]
    xbar, ro, adc = first["xbar"], first["row_off"], first["adc"]
    sym = first["sense"] == Sense.SYM
    width = 2 * first["lanes"] if sym else first["lanes"]
    c0 = first["col"]
    pair = bool(first["pair"])
    lim = (p.rows - ro + 1) // 2 if pair else p.rows - ro
    regs = ctx.regs
    valid = regs.in_valid
    in_reg = regs.in_reg
    acc2 = regs.acc
    lanes_read = first["lanes"]
    xkey = m.xbar_key
    engine = ctx.engine
    matmul = engine.matmul
    ch2 = ctx.ch2
    key: list = [None, -1]  # (cells key, driven IN entries) of prep
    prep: list = []  # [] : the product is not exact for this matrix
    pk: list = []  # a single READ's packed product (Packed, buffers), when it has one
    pmax = [0]  # a bound on |the product| (exact in its float type)
    fused_epi = [False]  # the last run applied ``epi``
    # A shadow's row blocks for IN rows [0, hi): (IN rows r0:r1, shadow rows s0:s1),
    # and each product matrix (by id) as (its column block, s0, s1) per distinct s0:s1.
    sh_runs: list[tuple[int, int, int, int]] = []
    sh_lhs: dict[int, list[tuple[np.ndarray, int, int]]] = {}
    sh_part: dict[tuple[int, ...], np.ndarray] = {}  # a block product's scratch, by shape

    def refresh(ver: bytes, hi: int) -> None:
        key[0], key[1] = ver, hi
        prep.clear()
        pk.clear()
        sh_runs.clear()
        sh_lhs.clear()
        sh_part.clear()
        if shadow is not None:
            r = shadow[1][:hi]
            cut = np.flatnonzero(np.diff(r) != 1) + 1
            starts = [0, *cut.tolist()]
            ends = [*cut.tolist(), len(r)]
            sh_runs.extend((a, b, int(r[a]), int(r[a]) + b - a)
                           for a, b in zip(starts, ends, strict=True))
        mat = engine.matrix(xbar, c0, width, sym, adc)
        if not chain_exact(mat, ksum, nfused):
            return
        nrows = min(2 * hi, p.rows - ro) if pair else hi
        dt = mat.lhs.dtype.type
        pmax[0] = mat.colsum * ksum
        L = mat.lanes
        lanes = mat.lhs[acc_a:acc_a + n, ro:ro + nrows]
        # Each charge sum is below nfused * (sum of the row entries): float32 when
        # exact (one READ: as exact as the matrix's own charge rows).
        ch = mat.lhs[L + 1:, ro:ro + nrows]
        big = int(ch.sum(axis=1, dtype=np.float64).max(initial=0))
        cdt = dt if nfused == 1 else np.float32 if big * nfused < F32_EXACT else np.float64
        d = ctx.buf("drive", dt)[:nrows]
        if nfused == 1:
            # One READ: k * lanes (exact: |k| * colsum is below the exact bound) and
            # the charge rows in one product with the drive.
            vkey = ("joint", acc_a, n, ro, nrows, ks[0])
            joint = mat.views.get(vkey)
            if joint is None:
                joint = mat.views[vkey] = np.concatenate([lanes * ks[0], ch])
            whole = ctx.buf("prod", dt)[:n + mat.nch]
            prep[:] = [joint, None, d, d, ctx.buf("bits", np.int32)[:nrows], whole[:n],
                       mat.nch, d, whole[n:], nrows // 2, whole]
            if nrows >= PACK_MIN_ROWS:
                pkey = ("packed", acc_a, n, ro, nrows, ks[0])
                plan = mat.views.get(pkey, False)
                if plan is False:
                    rows = mat.lhs[:, ro:ro + nrows]
                    charge = rows[L + 1].astype(np.int64)
                    if mat.nch == 2:
                        charge = (charge << charge_shift(p.rows)) + rows[L + 2].astype(np.int64)
                    plan = mat.views[pkey] = pack_plan(
                        rows[acc_a:acc_a + n].astype(np.int64), ks[0], charge)
                if plan is not None:
                    R, N = plan.rows, ctx.N
                    fields = -(-(n + len(plan.charges)) // R)
                    pk[:] = [plan, ctx.scratch("pack_out", (R, N), np.float32),
                             ctx.scratch("pack_outi", (R, N), np.int32),
                             ctx.scratch("pack_slots", (fields * R, N), np.int32),
                             ctx.scratch("pack_tmp", (N,), np.int64),
                             ctx.scratch("pack_cnt", (N,), np.int64),
                             ctx.buf("x", np.int64), ctx.scratch("pack_off", (p.cols, N), np.int64),
                             # The offsets as int32, for fused lanes, when they fit.
                             ctx.scratch("pack_off32", (p.cols, N), np.int32)
                             if int(np.abs(plan.off).max(initial=0)) * nrows <= INT32_MAX
                             else None]
            return
        prep[:] = [lanes, ch.astype(cdt), d, ctx.buf("rhs", dt)[:nrows],
                   ctx.buf("bits", np.int32)[:nrows], ctx.buf("prod", dt)[:n], mat.nch,
                   ctx.buf("cnt", cdt)[:nrows], ctx.buf("charge", cdt)[:mat.nch], nrows // 2,
                   None]

    slow = [*(fill or []), *slow]
    copies, B = ctx.copies, ctx.B

    def slow_path(ib: int) -> None:
        for f in slow:
            f(ib)

    def segments(ib: int, hi: int) -> list[tuple[int, int, np.ndarray]]:
        """IN rows [0, hi) as (first, end, values): IN itself, or DMEM words."""
        if src is None:
            return [(0, hi, in_reg[:hi])]
        return [(r0, min(r0 + nr, hi), op(ib)[:min(nr, hi - r0)]) for r0, nr, op in src
                if r0 < hi]

    def pair_sum(i: int, d: np.ndarray, rhs: np.ndarray, cnt: np.ndarray) -> None:
        """rhs += k_i * drive_i, cnt += drive_i (assigned for i = 0); d is drive_i."""
        k = ks[i]
        if kind == "one":
            return
        if i == 0:
            np.copyto(cnt, d)
            np.multiply(d, k, out=rhs)
            return
        np.add(cnt, d, out=cnt)
        if k == 1:
            np.add(rhs, d, out=rhs)
        elif k == -1:
            np.subtract(rhs, d, out=rhs)
        else:
            d *= k
            np.add(rhs, d, out=rhs)

    def compute(ib: int, hi: int, h: int, c0: int, c1: int,
                mm: Callable[..., None] = np.matmul, fuse: bool = False) -> None:
        """The chain's effect on ACC and the read charge for copies [c0, c1) of the
        columns (``f_chain`` may run two halves at once: disjoint columns; then
        ``mm`` is np.matmul, never the engine's, which would wait for the worker).
        ``fuse``: the product stays in its buffer, for ``epi``, not added to ACC."""
        lanes, ch, d, rhs, itmp, prod, nch, cnt, chp, nb, whole = prep
        cols = slice(c0 * B, c1 * B)
        if pair:
            x = in_reg[:hi, cols]
            for i, (drive_a, drive_b, planes) in enumerate(drivers):
                drive_a(x, d[0::2, cols], itmp[:hi, cols] if planes else x)
                drive_b(x[:nb], d[1::2, cols], itmp[:nb, cols] if planes else x[:nb])
                pair_sum(i, d[:, cols], rhs[:, cols], cnt[:, cols])
        elif shadow is None:
            for r0, r1, x in segments(ib, hi):
                if src is None:
                    x = x[:, cols]
                else:
                    # Copy-major order ([copies, rows, B]): each copy's rows are one
                    # block of DMEM, walked in order (one copy: absolute words).
                    x = x.transpose(1, 0, 2)
                    if x.shape[0] > 1:
                        x = x[c0:c1]
                dd, tt = _part(d, r0, r1, c0, c1, src, B), _part(itmp, r0, r1, c0, c1, src, B)
                rr, cc = _part(rhs, r0, r1, c0, c1, src, B), _part(cnt, r0, r1, c0, c1, src, B)
                if kind == "planes":
                    np.bitwise_and(x, kmask, out=tt)
                    if kc == 1:
                        np.copyto(rr, tt, casting="unsafe")
                    else:
                        np.multiply(tt, kc, out=rr, casting="unsafe")
                    u8 = _part(ctx.buf("u8", np.uint8), r0, r1, c0, c1, src, B)
                    np.copyto(u8, tt, casting="unsafe")  # IN & M < 256 (bits 0..7)
                    np.bitwise_count(u8, out=u8)
                    np.copyto(cc, u8)
                elif kind == "sign":
                    # sign(x) straight into the float rhs (exact), the driven rows
                    # |sign(x)| from it: one pass over the DMEM words, not two.
                    np.sign(x, out=rr, casting="unsafe")
                    np.abs(rr, out=cc)
                    if kc != 1:
                        np.multiply(rr, kc, out=rr)
                else:
                    for i, (drive_a, _, planes) in enumerate(drivers):
                        drive_a(x, dd, tt if planes else x)
                        pair_sum(i, dd, rr, cc)  # (one pair: rhs and cnt are d itself)
        if pk:
            packed_acc(h, cols, rhs[:, cols], mm, fuse)
            return
        out = (prod if whole is None else whole)[:, cols]
        mul(lanes, rhs[:, cols], out, mm)
        if not fuse:
            add_product(ctx, acc2, prod[:, cols], h, n, cols,
                        np.int32 if nch == 2 else np.int64)
        # The read charge: sum_i charge_rows @ drive_i = charge_rows @ (sum_i drive_i)
        # (one READ: rows of its product).
        if whole is None:
            for r in range(nch):
                np.matmul(ch[r], cnt[:, cols], out=chp[r, cols])
        if nch == 2:
            np.add(ch2[:, cols], chp[:, cols], out=ch2[:, cols])
        else:
            chi = ctx.chi[cols]
            chi += chp[0, cols].astype(np.int64)

    sh_drv = (drivers[0][0], first["mask_a"], first["bit"])

    def mul(lhs: np.ndarray, d: np.ndarray, out: np.ndarray, mm: Callable[..., None]
            ) -> None:
        """out = lhs @ the drive: ``d``, or the shadow's rows (all columns: a chain
        with a shadow does not split them)."""
        if shadow is None:
            mm(lhs, d, out=out)
            return
        S = shadow[0].get(sh_drv[1], sh_drv[2], lhs.dtype.type, sh_drv[0])
        blocks = sh_lhs.get(id(lhs))
        if blocks is None:
            # IN rows that load the same shadow rows (padding words) share a block:
            # their columns of lhs are summed (still exact: every partial sum is
            # bounded by the sum of absolute entries the product's bound covers).
            merged: dict[tuple[int, int], np.ndarray] = {}
            for r0, r1, s0, s1 in sh_runs:
                blk = merged.get((s0, s1))
                merged[(s0, s1)] = lhs[:, r0:r1].copy() if blk is None else blk + lhs[:, r0:r1]
            blocks = sh_lhs[id(lhs)] = [(b, s0, s1) for (s0, s1), b in merged.items()]
        if len(blocks) > SHADOW_BLOCKS or d.shape[0] < SHADOW_BLOCK_ROWS * len(blocks):
            # (d: the drive buffer of the chain's IN rows [0, hi))
            np.take(S, shadow[1][:d.shape[0]], axis=0, out=d, mode="wrap")  # (in range)
            mm(lhs, d, out=out)
            return
        t = sh_part.get(out.shape)
        if t is None:
            t = sh_part[out.shape] = ctx.scratch("shadow_part", out.shape, out.dtype.type)
        for i, (blk, s0, s1) in enumerate(blocks):
            if i == 0:
                mm(blk, S[s0:s1], out=out)
            else:
                mm(blk, S[s0:s1], out=t)
                np.add(out, t, out=out)

    def packed_acc(h: int, cols: slice, d: np.ndarray, mm: Callable[..., None],
                   fuse: bool = False) -> None:
        """ACC and the read charge from the packed product of the drive ``d``
        (columns ``cols``; see ``Packed``). ``fuse``: the product's lanes go to the
        first n rows of the slots buffer (int32: |product| < 2^24), not to ACC."""
        plan, out, oi, slots, tmp, offc, new, offs, offs32 = pk
        R = plan.rows
        out = out[:, cols]
        mul(plan.lhs, d, out, mm)
        oi = oi[:, cols]
        np.copyto(oi, out, casting="unsafe")
        # Row s of ``slots`` is slot s: field s // R of row s % R (the value is below
        # 2^24, so the last field needs no mask).
        mask = (1 << PACK_BITS) - 1
        for f in range(len(slots) // R):
            sf = slots[f * R:(f + 1) * R, cols]
            if f == 0:
                np.bitwise_and(oi, mask, out=sf)
            else:
                np.right_shift(oi, f * PACK_BITS, out=sf)
                if f < PACK_FIELDS - 1:
                    np.bitwise_and(sf, mask, out=sf)
        tmp, offc = tmp[cols], offc[cols]
        chi = ctx.chi[cols]
        cnt = None  # driven rows
        for i, (v, _, _) in enumerate(plan.charges):
            c = slots[n + i, cols]
            np.multiply(c, v, out=tmp, dtype=np.int64)
            np.add(chi, tmp, out=chi)
            if cnt is None:
                cnt = c
            else:
                np.add(cnt, c, out=offc)
                cnt = offc
        assert cnt is not None
        # Lanes past acc_hi are assigned: all of them straight into ACC when h is 0.
        if fuse:
            lanes = slots[:n, cols]
            if plan.g != 1:
                np.multiply(lanes, plan.g, out=lanes)
        else:
            lanes = acc2[:n, cols] if h == 0 else new[:n, cols]
            if plan.g == 1:
                np.copyto(lanes, slots[:n, cols])
            else:
                np.multiply(slots[:n, cols], plan.g, out=lanes, dtype=np.int64)
        if fuse and offs32 is not None:
            # int32 lanes plus int32 offsets (|off| * count fits): an int64 operand
            # would make the addition cast every element, four times slower.
            if plan.off0 is None:
                off = offs32[:n, cols]
                np.multiply(plan.off[:, None], cnt, out=off, casting="unsafe")
                np.add(lanes, off, out=lanes)
            elif plan.off0:
                off = offs32[0, cols]
                np.multiply(cnt, plan.off0, out=off, casting="unsafe")
                np.add(lanes, off, out=lanes)
        elif plan.off0 is None:
            off = offs[:n, cols]
            np.multiply(plan.off[:, None], cnt, out=off)
            np.add(lanes, off, out=lanes, casting="unsafe")
        elif plan.off0:
            np.multiply(cnt, plan.off0, out=offc)
            np.add(lanes, offc, out=lanes, casting="unsafe")
        if h:  # (never when fused: the epilogue runs on cleared lanes only)
            if h < n:
                np.copyto(acc2[h:n, cols], lanes[h:])
            k = min(h, n)
            np.add(acc2[:k, cols], lanes[:k], out=acc2[:k, cols])

    def f_chain(ib: int) -> None:
        hi = regs.in_hi
        if hi > lim:
            hi = lim
        b = regs.acc_bound + gain
        if m.probe is not None or hi == 0 or b > ACC_HEADROOM or \
                (regs.in_pref < hi and not valid[:hi].all()):
            slow_path(ib)
            return
        ver = xkey(xbar)
        if key[0] != ver or key[1] != hi:
            refresh(ver, hi)
        if not prep:
            slow_path(ib)
            return
        h = regs.acc_hi
        # The product the epilogue takes: a packed one's lanes (int32) or the float one.
        prod = pk[3][:n] if pk else prep[5]
        got = epi.ready(pmax[0], prod.dtype.type, ib) if epi is not None and h == 0 \
            else None
        fuse = got is not None
        half = copies // 2
        if half and shadow is None and prep[0].shape[0] * prep[0].shape[1] * ctx.N >= SPLIT_MACS:
            # Two halves of the copies at once: one on the worker thread.
            job = engine.worker().submit(compute, ib, hi, h, 0, half, np.matmul, fuse)
            try:
                compute(ib, hi, h, half, copies, np.matmul, fuse)
            finally:
                job.result()
        else:
            compute(ib, hi, h, 0, copies, matmul, fuse)
        if got is not None:
            assert epi is not None
            epi.apply(got, prod.reshape(n, copies, B), ib)
            fused_epi[0] = True
            b += epi.gain
        regs.acc_hi = max(h, n)
        regs.acc_bound = b
        if prep[6] == 2 and not pk:
            ctx.dirty = True
            ctx.reads_since += nfused
        else:
            ctx.dirty_i = True
        if regs.code_hi < lanes_read:
            regs.code_hi = lanes_read
        for f in tail:
            f(ib)
    if epi is None:
        return f_chain
    rest = epi.fns

    def f_chain_epi(ib: int) -> None:
        fused_epi[0] = False
        f_chain(ib)
        if not fused_epi[0]:
            for f in rest:
                f(ib)
    return f_chain_epi


def _group_fn(parts: list[tuple[_Step, _Step, list]], ctx: Ctx, span: list[Fn],
              marks: list[Fn]) -> Fn:
    """Single-pair chains (READ, ACC from CODE), each with IN loaded right before it
    by INCLR and LDINs (``in_source``), all into the same ACC lanes: ACC += sum_i
    k_i * W_i @ drive_i as one product [k_1 W_1 ... k_m W_m] @ [drive_1; ...;
    drive_m], with each READ's charge rows in its own output rows. ``span``: the
    closures from the first chain to the last (the fallback, one by one); ``marks``:
    those of the INCLRs and LDINs between (IN's valid entries, run after)."""
    m = ctx.m
    p = m.image.params
    regs = ctx.regs
    acc_a, n = parts[0][1].a["addr"], parts[0][1].a["lanes"]
    ks = [acc.a["mul"] << acc.a["sh"] for _, acc, _ in parts]
    for _, acc, _ in parts:
        if acc.gain < 0:
            acc.gain = m._acc_gain(acc)
    gain = sum(acc.gain for _, acc, _ in parts)
    nread = len(parts)
    reads = [rd.a for rd, _, _ in parts]
    srcs = [src for _, _, src in parts]
    drivers = [(_driver(a["mask_a"], a["bit"]), a["bit"] != BIT_SIGNED) for a in reads]
    # IN rows each READ drives: its LDINs' prefix, within the array.
    his = [min(sum(nr for _, nr, _ in src), p.rows - a["row_off"])
           for a, src in zip(reads, srcs, strict=True)]
    lanes_read = max(a["lanes"] for a in reads)
    xbars = [a["xbar"] for a in reads]
    offs = [sum(his[:i]) for i in range(nread + 1)]
    R = offs[-1]
    xkey = m.xbar_key
    engine = ctx.engine
    copies, B, N = ctx.copies, ctx.B, ctx.N
    acc2 = regs.acc
    ch2 = ctx.ch2
    key: list = [None]
    prep: list = []  # [] : not one exact float32 product for these cells

    def refresh(keys: tuple) -> None:
        key[0] = keys
        prep.clear()
        lhs = np.zeros((n + 2 * nread, R), np.float32)
        bound = 0
        for i, a in enumerate(reads):
            width = 2 * a["lanes"] if a["sense"] == Sense.SYM else a["lanes"]
            mat = engine.matrix(a["xbar"], a["col"], width, a["sense"] == Sense.SYM, a["adc"])
            if not mat.div or mat.clip is not None or mat.nch != 2:
                return
            bound += mat.colsum * abs(ks[i])
            ro, L = a["row_off"], mat.lanes
            lhs[:n, offs[i]:offs[i + 1]] = mat.lhs[acc_a:acc_a + n, ro:ro + his[i]] * ks[i]
            lhs[n + 2 * i:n + 2 * i + 2, offs[i]:offs[i + 1]] = \
                mat.lhs[L + 1:L + 3, ro:ro + his[i]]
        if bound >= F32_EXACT:
            return
        prep[:] = [lhs, ctx.scratch("stack", (R, N), np.float32),
                   ctx.scratch("stack_out", (n + 2 * nread, N), np.float32)]

    def compute(h: int, c0: int, c1: int, mm: Callable[..., None] = np.matmul) -> None:
        """Drives, product and ACC for copies [c0, c1) (two halves may run at once)."""
        lhs, stack, out = prep
        cols = slice(c0 * B, c1 * B)
        itmp = ctx.buf("bits", np.int32)
        for i in range(nread):
            drive, planes = drivers[i]
            for r0, nr, op in srcs[i]:
                r1 = min(r0 + nr, his[i])
                if r0 >= r1:
                    continue
                x = op(0)[:r1 - r0].transpose(1, 0, 2)  # copy-major, as _chain_fn
                if x.shape[0] > 1:
                    x = x[c0:c1]
                dd = _part(stack, offs[i] + r0, offs[i] + r1, c0, c1, True, B)
                drive(x, dd, _part(itmp, r0, r1, c0, c1, True, B) if planes else x)
        mm(lhs, stack[:, cols], out=out[:, cols])
        add_product(ctx, acc2, out[:n, cols], h, n, cols, np.int32)
        for i in range(nread):  # each READ's charge rows, exact on their own
            np.add(ch2[:, cols], out[n + 2 * i:n + 2 * i + 2, cols], out=ch2[:, cols])

    def slow_path(ib: int) -> None:
        for f in span:
            f(ib)

    def f_group(ib: int) -> None:
        b = regs.acc_bound + gain
        if m.probe is not None or b > ACC_HEADROOM or not all(his) or \
                not regs.in_exact or regs.in_pref < his[0]:
            slow_path(ib)
            return
        keys = tuple(xkey(x) for x in xbars)
        if key[0] != keys:
            refresh(keys)
        if not prep:
            slow_path(ib)
            return
        h = regs.acc_hi
        half = copies // 2
        if half and (n + 2 * nread) * R * N >= SPLIT_MACS:
            job = engine.worker().submit(compute, h, 0, half)
            try:
                compute(h, half, copies)
            finally:
                job.result()
        else:
            compute(h, 0, copies, engine.matmul)
        for f in marks:
            f(ib)
        regs.acc_hi = max(h, n)
        regs.acc_bound = b
        ctx.dirty = True
        ctx.reads_since += nread
        if regs.code_hi < lanes_read:
            regs.code_hi = lanes_read
    return f_group

# ------------------------------------------------------------------ blocks


@dataclass
class Block:
    """Straight-line instructions from one pc, run as one step."""

    fns: list[Fn]
    end: int  # pc after the block
    n: int  # instructions
    cycles: int
    lane_ops: int
    dmem_acc: int
    reads: int
    conversions: int
    halts: bool


def _ndrv_read_later(steps: list[_Step], k: int, halts: bool) -> bool:
    """May NDRV as the READ at steps[k] leaves it be read? (It is dead when the
    next READ or the run's end comes before any ACC from NDRV.)"""
    for st in islice_from(steps, k + 1):
        if st.op == _ACC and st.a["src"] == Src.NDRV:
            return True
        if st.op == _READ:
            return False
        if st.op not in (_ACC, _LDIN, _INCLR, _ACLR, _STA, _ACT, _VCOPY, _VMAX, _PROG, _NOP):
            return True  # an instruction this pass does not know
    return not halts


def build_block(m: Machine, ctx: Ctx, pc: int) -> Block | None:
    plan = m.plan
    steps: list[_Step] = []
    halts = False
    q = pc
    while 0 <= q < len(plan):
        st = plan[q]
        if st is None or st.err0 != Err.NONE or st.op == _LOOP:
            break
        steps.append(st)
        q += st.fused[0] if st.fused is not None else 1
        if st.op == _HALT:
            halts = True
            break
    if not steps:
        return None
    per: list[Fn | None] = []  # each step's closure
    n = cycles = lane_ops = dmem_acc = reads = conv = 0
    for k, st in enumerate(steps):
        if st.fused is not None:
            per.append(_fused_fn(st, ctx))
            n += st.fused[0]
            cycles += st.fused[0] * st.cost
            continue
        n += 1
        cycles += st.cost
        lane_ops += st.lane_ops
        dmem_acc += st.dmem_acc
        live = _ndrv_read_later(steps, k, halts) if st.op == _READ else True
        per.append(build(st, ctx, k_read=reads, ndrv_live=live))
        if st.op == _READ:
            reads += 1
            conv += st.a["lanes"]
    after, then_halts = ([], True) if halts else straight_after(m, q)
    fns = with_chains(steps, per, ctx, after, then_halts)
    return Block(fns, q, n, cycles, lane_ops, dmem_acc, reads, conv, halts)


def with_chains(steps: list[_Step], per: list[Fn | None], ctx: Ctx, after: list[_Step | None],
                halts: bool) -> list[Fn]:
    """The closures of ``steps`` (``per``), each READ chain (``read_chains``) as one,
    runs of single-pair chains into the same ACC lanes as one (``_group_fn``).
    ``after``: the instructions run after ``steps``, then the run ends if ``halts``."""
    chains = {} if ctx.m.image.params.physics.active else read_chains(steps)
    # Runs of like units (``golden_model.stack``) but their last unit (left to the
    # closures below: registers end as it leaves them), in stacks of per_stack
    # units: a stack's first step -> (the step after it, its closure).
    stacked: dict[int, tuple[int, Fn]] = {}
    per_stack = max(2, STACK_COLUMNS // ctx.N)
    for run in stack_runs(steps, chains) if ctx.N <= STACK_MAX_N else []:
        for i in range(0, len(run) - 1, per_stack):
            units = run[i:min(i + per_stack, len(run) - 1)]
            f = _stack_fn(units, steps, per, ctx) if len(units) >= 2 else None
            if f is not None:
                stacked[units[0].start] = (units[-1].end, f)
                for u in units:
                    del chains[u.read]
    # Chain start -> may CODE or NDRV, as its last READ leaves them, be read?
    lives = {k: regs_read_later(chain(islice_from(steps, e), after), steps[k].a["lanes"],
                                halts) for k, e in chains.items()}
    # Single-pair chains whose IN rows come from their LDINs alone: those in runs
    # that load the same DMEM words again and again read a drive shadow.
    cands: dict[int, tuple[int, list[int]]] = {}
    for k, e in chains.items():
        if e - k == 2 and not steps[k].a["pair"] and not lives[k] and \
                (loads := in_source(steps, k, e, after, halts, False, pieces=True)) is not None:
            cands[k] = (e, loads)
    shadows = plan_shadows(steps, cands, ctx) if cands else {}
    stale: set[int] = set()  # shadows already marked stale at their epoch's start
    fns: list[Fn] = []
    at: dict[int, int] = {}  # step -> its closure's place in fns
    # chain start -> (end, its IN rows from DMEM or None, the INCLR before its LDINs)
    fused: dict[int, tuple[int, list, int]] = {}
    k = 0
    while k < len(steps):
        if k in stacked:
            k, f = stacked[k]
            fns.append(f)
            continue
        e = chains.get(k)
        if e is None:
            f = per[k]
            if f is not None:
                at[k] = len(fns)
                fns.append(f)
            k += 1
            continue
        slow = [f for f in per[k:e] if f is not None]
        live = lives[k]
        epi, after_epi = (None, e) if live else epilogue(steps, per, k, e, ctx, after, halts)
        if live and e - k == 2:  # one pair whose CODE or NDRV is read: as it is
            fns += slow
        elif k in shadows:
            loads = cands[k][1]
            for j in loads:
                fns[at[j]] = _ldin_fn(steps[j], ctx, copy=False)
            fill = [_ldin_copy(steps[j], ctx) for j in loads]
            sh = shadows[k]
            if id(sh) not in stale:
                stale.add(id(sh))
                fns.append(sh.stale)
            rows = [sh.row("rel" if steps[j].a["rsrc"] and ctx.win is not None else "abs",
                           steps[j].a["src"]) + r
                    for j in loads for r in range(steps[j].a["lanes"])]
            at[k] = len(fns)
            fns.append(_chain_fn(steps[k:e], ctx, slow, live, fill=fill,
                                 shadow=(sh, np.array(rows, np.intp)), epi=epi))
        elif (loads := in_source(steps, k, e, after, halts, live, ctx.copies > 1)) is not None:
            # The chain reads IN's values from the LDINs' DMEM words: the LDINs only
            # mark IN's valid entries (their copies run when the chain falls back).
            for j in loads:
                fns[at[j]] = _ldin_fn(steps[j], ctx, copy=False)
            fill = [_ldin_copy(steps[j], ctx) for j in loads]
            src = [(steps[j].a["dst"], steps[j].a["lanes"],
                    _dmem_operand(ctx, steps[j].a["src"], steps[j].a["lanes"],
                                  bool(steps[j].a["rsrc"]))) for j in loads]
            at[k] = len(fns)
            fns.append(_chain_fn(steps[k:e], ctx, slow, live, src, fill, epi=epi))
            if e - k == 2 and epi is None:
                fused[k] = (e, src, loads[0] - 1)
        else:
            fns.append(_chain_fn(steps[k:e], ctx, slow, live, epi=epi))
        k = after_epi
    # Runs of single-pair chains, each right after the previous one's INCLR and
    # LDINs, into the same ACC lanes.
    starts = sorted(fused)
    groups: list[list[int]] = []
    for k in starts:
        g = groups[-1] if groups else None
        if g is not None and fused[g[-1]][0] == fused[k][2] and \
                steps[k + 1].a["addr"] == steps[g[0] + 1].a["addr"] and \
                steps[k + 1].a["lanes"] == steps[g[0] + 1].a["lanes"]:
            g.append(k)
        else:
            groups.append([k])
    for g in reversed(groups):
        if len(g) < 2:
            continue
        lo, hi = at[g[0]], at[g[-1]] + 1
        parts = [(steps[k], steps[k + 1], fused[k][1]) for k in g]
        chain_at = {at[k] for k in g}
        marks = [fns[i] for i in range(lo, hi) if i not in chain_at]
        fns[lo:hi] = [_group_fn(parts, ctx, fns[lo:hi], marks)]
    # Runs of LDINs that copy into IN (their own closures): one gather.
    ldin_at = {id(per[k]): k for k in range(len(steps))
               if steps[k].op == _LDIN and per[k] is not None}
    out: list[Fn] = []
    i = 0
    while i < len(fns):
        j = i
        while j < len(fns) and id(fns[j]) in ldin_at:
            j += 1
        run = _ldin_run_fn([steps[ldin_at[id(f)]] for f in fns[i:j]], ctx) if j - i > 1 \
            else None
        if run is None:
            out.append(fns[i])
            i += 1
        else:
            out.append(run)
            i = j
    return out


def epilogue(steps: list[_Step], per: list[Fn | None], k: int, e: int, ctx: Ctx,
             after: list[_Step | None], halts: bool) -> tuple[Epilogue | None, int]:
    """The ``Epilogue`` of the chain steps[k:e] (None when the instructions after it
    are not one) and the step after the chain and it."""
    n = steps[k + 1].a["lanes"]
    j = e
    while j < len(steps) and steps[j].op == _ACC:
        j += 1
    if j == len(steps) or not Epilogue.fits(steps[e:j + 1], n) or \
            acc_read_later(chain(islice_from(steps, j + 1), after), halts):
        return None, e
    fns = [f for f in per[e:j + 1] if f is not None]
    return Epilogue(steps[e:j + 1], fns, ctx), j + 1


def run_units(fns: list[Fn], ib: int) -> None:
    """A stack's fallback: its units' own closures, one by one."""
    for f in fns:
        f(ib)


# Like units are stacked in contexts of at most STACK_MAX_N columns (a lifted
# body's copies x runs), STACK_COLUMNS columns (units x the context's) at a time.
# A stack gathers and drives every unit's IN rows itself, where the units' own
# closures read a drive shadow (``golden_model.shadow``) and packed products: it
# saves the hundreds of short passes of each unit, which cost more than the extra
# work only while a unit's passes are short (the digits CNN, whole run: 1.5 against
# 4.4 ms at 16 columns, 5.1 against 6.5 ms at 160, 8.6 against 7.7 ms at 320, 16.3
# against 10.5 ms at 640).
STACK_MAX_N, STACK_COLUMNS = 192, 16384


def _stack_fn(units: list[Unit], steps: list[_Step], per: list[Fn | None], ctx: Ctx
              ) -> Fn | None:
    """Like units (``golden_model.stack``) as one product and one epilogue: the
    drives of every unit's IN rows gathered from DMEM side by side ([rows, units x
    columns]), times k * the READ's lanes and its charge rows, then P + b stored
    (STA, wrapping to int32) or compared with the ACT's bounds minus b, into each
    unit's words. None when a unit reads a word one of them writes (the loads come
    first here), two write one word, or the STA or ACT is not an ``Epilogue``. At
    run time the units' own closures run instead when the product is not exact or
    needs the general path."""
    u0 = units[0]
    rd, acc = steps[u0.read].a, steps[u0.read + 1].a
    tail = steps[u0.read + 2:u0.end]
    n = acc["lanes"]
    if not Epilogue.fits(tail, n):
        return None
    m = ctx.m
    p = m.image.params
    ro = rd["row_off"]
    hi = min(u0.hi, p.rows - ro)
    copies, B, G, N = ctx.copies, ctx.B, len(units), ctx.N
    if hi <= 0:
        return None
    idx = np.empty((hi, G, copies), np.intp)  # the dm row of each IN row, unit, copy
    out_idx = np.empty((n, G, copies), np.intp)
    reads: list[np.ndarray] = []
    writes: list[np.ndarray] = []
    for g, u in enumerate(units):
        for j in u.loads:
            a = steps[j].a
            d0 = a["dst"]
            if d0 < hi:
                idx[d0:min(d0 + a["lanes"], hi), g] = \
                    ctx.words(a["src"], a["lanes"], bool(a["rsrc"]))[:hi - d0]
        last = steps[u.end - 1]
        rel = bool(last.a["rel"] if last.op == _STA else last.a["rdst"])
        assert copies == 1 or rel  # a lifted body writes no absolute word (_liftable)
        out_idx[:, g] = ctx.words(last.a["dst"], n, rel)
        for st in steps[u.start:u.end]:
            for a0, k0, r0, w in st.spans:
                (writes if w else reads).append(ctx.words(a0, k0, r0).ravel())
    wr, rs = np.concatenate(writes), np.concatenate(reads)
    words = ctx.dm.shape[0]
    if min(wr.min(), rs.min()) < 0 or max(wr.max(), rs.max()) >= words or \
            np.unique(wr).size != wr.size or np.isin(wr, rs).any():
        return None
    epi = Epilogue(tail, [], ctx)
    drive = _driver(rd["mask_a"], rd["bit"])
    sym = rd["sense"] == Sense.SYM
    xbar, c0, adc = rd["xbar"], rd["col"], rd["adc"]
    width = 2 * rd["lanes"] if sym else rd["lanes"]
    k = acc["mul"] << acc["sh"]
    acc_a = acc["addr"]
    slow = [f for u in units for f in per[u.start:u.end] if f is not None]
    engine = ctx.engine
    xkey = m.xbar_key
    dm = ctx.dm
    dest = strided_rows(dm, out_idx)  # the stores as one strided copy, when they can be
    key: list = [None]
    prep: list = []  # [] : the product is not exact for this matrix

    def refresh(ver: bytes) -> None:
        key[0] = ver
        prep.clear()
        mat = engine.matrix(xbar, c0, width, sym, adc)
        if not chain_exact(mat, abs(k), 1):
            return
        pmax = mat.colsum * abs(k)
        L = mat.lanes
        lhs = mat.lhs[:, ro:ro + hi]
        prep[:] = [np.concatenate([lhs[acc_a:acc_a + n] * k, lhs[L + 1:]]),
                   mat.lhs.dtype.type, mat.nch, pmax]

    def f_stack(ib: int) -> None:
        if m.probe is None:
            ver = xkey(xbar)
            if key[0] != ver:
                refresh(ver)
        if m.probe is not None or not prep:
            run_units(slow, ib)
            return
        joint, dt, nch, pmax = prep
        got = epi.bounds(pmax, dt) if epi.act else None
        if epi.act and got is None:
            run_units(slow, ib)
            return
        x = ctx.scratch("stack_in", (hi, G, copies, B), np.int32)
        np.take(dm, idx, axis=0, out=x, mode="wrap")  # (every index is in range)
        d = ctx.scratch("stack_drive", (hi, G * N), dt)
        drive(x.reshape(hi, G * N), d, ctx.scratch("stack_bits", (hi, G * N), np.int32))
        out = ctx.scratch("stack_prod", (n + nch, G * N), dt)
        engine.matmul(joint, d, out)
        # The read charge of every unit, exact in int64 (each entry below 2^24 or 2^53).
        ch = out[n:].reshape(nch, G, N).astype(np.int64).sum(axis=1)
        if nch == 2:
            ch[0] <<= ctx.shift
            ctx.chi += ch[1]
        ctx.chi += ch[0]
        ctx.dirty_i = True
        prod = out[:n].reshape(n, G, copies, B)
        if got is not None:
            u, cmp = got
            cond = ctx.scratch("stack_cond", prod.shape, np.bool_)
            cnt = ctx.scratch("stack_cnt", prod.shape, np.int32)
            for j in range(u.shape[1]):
                cmp(prod, u[:, j, None], out=cond)
                if j == 0:
                    np.copyto(cnt, cond)
                else:
                    np.add(cnt, cond, out=cnt)
            np.multiply(cnt, epi.oscale, out=cnt)
            if dest is not None:
                np.add(cnt, epi.obias, out=dest)
            else:
                np.add(cnt, epi.obias, out=cnt)
                dm[out_idx] = cnt
            return
        v = prod.astype(np.int64)
        b = epi.bias64()
        if b is not None:
            v += b[:, None]
        if dest is not None:
            np.copyto(dest, v, casting="unsafe")  # the store truncates: two's complement
        else:
            dm[out_idx] = v.astype(np.int32)
    return f_stack


def strided_rows(a: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """``a[rows]`` (rows intp of any shape, distinct) as a strided view, when the
    rows step evenly along each axis of ``rows``; else None."""
    base = int(rows.flat[0])
    steps = []
    for ax in range(rows.ndim):
        sl = [0] * rows.ndim
        sl[ax] = 1
        steps.append(int(rows[tuple(sl)]) - base if rows.shape[ax] > 1 else 0)
    want = base + sum(np.arange(m)[(slice(None),) + (None,) * (rows.ndim - 1 - ax)] * st
                      for ax, (m, st) in enumerate(zip(rows.shape, steps, strict=True)))
    if not np.array_equal(want, rows) or min(steps, default=0) < 0:
        return None
    rs, es = a.strides
    return np.lib.stride_tricks.as_strided(
        a[base:], shape=(*rows.shape, a.shape[1]), strides=(*(st * rs for st in steps), es))


def _ldin_run_fn(sts: list[_Step], ctx: Ctx) -> Fn | None:
    """LDINs run one after another (closures called with IB = 0: a block or a lifted
    body) that load one block of IN rows in order, as one gather of DMEM words
    (rows x copies word indices); None when their rows are not one block. A lifted
    body's relative word a of copy c is a + c * stride (``_Space.win``)."""
    d0 = end = sts[0].a["dst"]
    for st in sts:
        if st.a["dst"] != end:
            return None
        end += st.a["lanes"]
    idx = np.empty((end - d0, ctx.copies), np.intp)
    for st in sts:
        a = st.a
        r = a["dst"] - d0
        idx[r:r + a["lanes"]] = ctx.words(a["src"], a["lanes"], bool(a["rsrc"]))
    if idx.min(initial=0) < 0 or idx.max(initial=0) >= ctx.dm.shape[0]:
        return None
    dm = ctx.dm
    dst = ctx.in3[d0:end]  # [rows, copies, B], contiguous
    regs = ctx.regs
    mark = regs.ldin
    spans = [(st.a["dst"], st.a["dst"] + st.a["lanes"]) for st in sts]

    def f_ldins(ib: int) -> None:
        # (mode "wrap": no buffered copy for the range check; every index is in range.)
        np.take(dm, idx, axis=0, out=dst, mode="wrap")
        for s0, s1 in spans:  # IN's valid entries, as each LDIN marks them
            if regs.in_exact and s0 <= regs.in_pref:
                if s1 > regs.in_pref:
                    regs.in_pref = regs.in_hi = s1
            else:
                mark(s0, s1)
    return f_ldins


# A chain reads its shadow as at most SHADOW_BLOCKS row blocks, one product each,
# of SHADOW_BLOCK_ROWS rows or more on average; otherwise it gathers the rows first.
SHADOW_BLOCKS, SHADOW_BLOCK_ROWS = 4, 16

# LDINs of fewer lanes than this, when there are several, load IN (``in_source``).
MIN_IN_PIECE = 32


def in_source(steps: list[_Step], k: int, e: int, after: list[_Step | None], halts: bool,
              live: bool, lifted: bool = False, pieces: bool = False) -> list[int] | None:
    """The LDINs (step indices) that, right after an INCLR and right before the
    chain steps[k:e], load IN's rows as one prefix, when nothing else reads IN's
    values before the next INCLR: the chain can read those values from the LDINs'
    DMEM words (only LDINs lie between them and the chain, so DMEM is unchanged).
    ``lifted``: the chain runs in a lifted loop (``Ctx.copies`` > 1); ``pieces``: any
    LDINs will do (the chain reads a drive shadow, not DMEM itself)."""
    if steps[k].a["pair"] or live:
        return None
    j = k - 1
    while j >= 0 and steps[j].op == _LDIN:
        j -= 1
    if j < 0 or steps[j].op != _INCLR or j == k - 1:
        return None
    end = 0
    for st in steps[j + 1:k]:  # one prefix, in order
        if st.a["dst"] != end:
            return None
        end += st.a["lanes"]
    # Small pieces: the copies into IN and one drive cost less than a drive per piece.
    # In a lifted loop, any pieces: there a drive reads its piece as [copies, rows, B]
    # windows of DMEM, one short run of B values at a time, converting to the drive's
    # float type as it goes; the copies into IN run as fast and the drive of IN is one
    # pass over contiguous memory (a 3x3 convolution's 144 rows in three pieces of 48,
    # 16 copies: 143 us for the drives from DMEM against about 70 us for the copies
    # and one drive).
    if not pieces and k - j > 2 and \
            (lifted or min(st.a["lanes"] for st in steps[j + 1:k]) < MIN_IN_PIECE):
        return None
    if in_read_later(chain(islice_from(steps, e), after), halts):
        return None
    return list(range(j + 1, k))


@dataclass
class Lifted:
    """A lifted loop body over its own context (kept between runs)."""

    ctx: Ctx
    fns: list[Fn]
    cycles: int
    lane_ops: int
    dmem_acc: int
    reads: int
    conversions: int


class Engine:
    """Runs a machine's program through blocks and lifted loops."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        p = m.image.params
        regs = m._regs
        if regs is None:
            regs = m._regs = _Regs(p.rows, p.cols, m.batch)
        self.ctx = Ctx(self, regs, 1, None)
        n = len(m.plan)
        self.blocks: list[Block | bool | None] = [False] * n  # False: not built yet
        self.singles: list[Fn | bool | None] = [False] * n
        self.lifted: dict[tuple[int, int], Lifted] = {}
        # Columns -> registers and scratch buffers of the lifted loops with that many
        # columns: a lifted body writes every register before it reads it, and its
        # registers are reset when it starts, so the loops can share them.
        self.lifted_regs: dict[int, tuple[_Regs, dict[tuple[str, type], np.ndarray]]] = {}

    def worker(self) -> ThreadPoolExecutor:
        """The worker thread of the image's machines (``ChipImage.worker``)."""
        return self.m.image.worker()

    def matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """``np.matmul(a, b, out=out)``; from ``SPLIT_MACS`` on, the first half of
        b's columns on the worker thread of the image's machines while this thread
        does the rest (each half an exact product: the same integers)."""
        h = b.shape[1] // 2
        if h == 0 or a.shape[0] * a.shape[1] * b.shape[1] < SPLIT_MACS:
            np.matmul(a, b, out=out)
            return
        job = self.worker().submit(np.matmul, a, b[:, :h], out=out[:, :h])
        try:
            np.matmul(a, b[:, h:], out=out[:, h:])
        finally:
            job.result()

    def matrix(self, xbar: int, c0: int, width: int, sym: bool, adc: int) -> FastMat:
        """The READ matrix of the crossbar's present cells. Machines of one image
        usually hold the same cells (after the same setup and PROGs): they share
        matrices through the image, keyed by the cells' content (``xbar_key``)."""
        m = self.m
        skey = (xbar, c0, width, sym, adc, m.xbar_key(xbar))
        shared = m.image.plan_cache.setdefault("fast_mats", {})
        mat = shared.pop(skey, None)
        if mat is None:
            mat = fast_matrix(m, xbar, c0, width, sym, m._adc(adc))
            size = sum(v.lhs.nbytes for v in shared.values())
            while shared and size + mat.lhs.nbytes > SHARED_MATRIX_BYTES:
                size -= shared.pop(next(iter(shared))).lhs.nbytes
        shared[skey] = mat  # the most recently used last
        return mat

    def _single(self, pc: int, st: _Step) -> Fn | None:
        f = self.singles[pc]
        if f is False:
            f = self.singles[pc] = build(st, self.ctx)
        return f  # type: ignore[return-value]

    def _finish(self, res: RunResult) -> RunResult:
        ctx = self.ctx
        ctx.reads_since = res.reads - ctx.fold_base
        ctx.fold(res.read_charge)
        return res

    def _fault(self, res: RunResult, err: Err, pc: int) -> RunResult:
        res.cycles += 1
        res.error = err
        res.fault_pc = pc
        res.pc = pc
        return self._finish(res)

    def run(self, entry: int, max_instructions: int) -> RunResult:
        m = self.m
        ctx = self.ctx
        regs = ctx.regs
        regs.reset()
        res = RunResult(0, 0, Err.NONE, -1, entry,
                        read_charge=np.zeros(m.batch, np.int64))
        ctx.res = res
        ctx.fold_at = FOLD_READS
        ctx.fold_base = 0
        m._writes = None
        plan = m.plan
        n_prog = len(plan)
        blocks = self.blocks
        pc = entry
        lp_start = lp_end = -1
        lp_left = ib = stride = 0
        while res.instructions < max_instructions:
            if lp_end < 0 and 0 <= pc < n_prog:
                blk = blocks[pc]
                if blk is False:
                    blk = blocks[pc] = build_block(m, ctx, pc)
                if blk is not None and res.instructions + blk.n <= max_instructions:
                    assert isinstance(blk, Block)
                    ctx.read_base = res.reads
                    for f in blk.fns:
                        f(0)
                    res.instructions += blk.n
                    res.cycles += blk.cycles
                    res.lane_ops += blk.lane_ops
                    res.dmem_accesses += blk.dmem_acc
                    res.reads += blk.reads
                    res.conversions += blk.conversions
                    if res.reads >= ctx.fold_at:
                        ctx.fold(res.read_charge)
                        ctx.fold_at = res.reads + FOLD_READS
                        ctx.fold_base = res.reads
                    if blk.halts:
                        res.pc = blk.end - 1
                        return self._finish(res)
                    pc = blk.end
                    continue
            if not 0 <= pc < n_prog:
                return self._fault(res, Err.PC_RANGE, pc)
            st = plan[pc]
            if st is None:
                return self._fault(res, Err.ILLEGAL, pc)
            err = st.err0 if not (st.rel and ib) else m._check(m.decoded[pc], ib)
            if st.op == _LOOP and lp_end >= 0:
                err = Err.ILLEGAL  # loops do not nest
            if err != Err.NONE:
                return self._fault(res, err, pc)
            if st.fused is not None and (lp_end < 0 or pc + st.fused[0] - 1 <= lp_end) \
                    and res.instructions + st.fused[0] <= max_instructions:
                k = st.fused[0]
                m._prog_many(st.fused, res)
                res.instructions += k
                res.cycles += k * st.cost
                pc += k
            elif st.op == _LOOP:
                res.instructions += 1
                res.cycles += st.cost
                count, length = st.a["count"], st.a["len"]
                window = None
                if count > 1 and m.lift:
                    window = m._liftable(pc, length, st.a["stride"], count)
                if window is not None and \
                        res.instructions + count * length <= max_instructions:
                    self._run_lifted(pc, count, window, res)
                    pc += 1 + length
                else:
                    lp_start, lp_end = pc + 1, pc + length
                    lp_left, ib, stride = count - 1, 0, st.a["stride"]
                    pc += 1
                continue
            else:
                res.instructions += 1
                res.cycles += st.cost
                if st.op == _HALT:
                    res.pc = pc
                    return self._finish(res)
                f = self._single(pc, st)
                if f is not None:
                    ctx.read_base = res.reads
                    f(ib)
                res.lane_ops += st.lane_ops
                res.dmem_accesses += st.dmem_acc
                if st.op == _READ:
                    res.reads += 1
                    res.conversions += st.a["lanes"]
                    if res.reads >= ctx.fold_at:
                        ctx.fold(res.read_charge)
                        ctx.fold_at = res.reads + FOLD_READS
                        ctx.fold_base = res.reads
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

    def _lifted_body(self, pc: int, count: int, window: tuple[int, int]) -> Lifted:
        m = self.m
        p = m.image.params
        st = m.plan[pc]
        assert st is not None
        length, stride = st.a["len"], st.a["stride"]
        lo, hi = window
        space = _Space(m.dmem.T, lo, stride, count, hi - lo)
        N = count * m.batch
        shared = self.lifted_regs.get(N)
        if shared is None:
            shared = self.lifted_regs[N] = (_Regs(p.rows, p.cols, N), {})
        ctx = Ctx(self, shared[0], count, space, shared[1])
        body = [m.plan[pc + 1 + k] for k in range(length)]
        rpi = sum(1 for b in body if b is not None and b.op == _READ)
        per: list[Fn | None] = []
        steps: list[_Step] = []
        cycles = lane_ops = dmem_acc = reads = conv = 0
        for b in body:
            assert b is not None
            steps.append(b)
            per.append(build(b, ctx, k_read=reads, rpi=rpi))
            cycles += b.cost
            lane_ops += b.lane_ops
            dmem_acc += b.dmem_acc
            if b.op == _READ:
                reads += 1
                conv += b.a["lanes"]
        # Registers leave the loop as its last iteration leaves them.
        after, halts = straight_after(m, pc + 1 + length)
        fns = with_chains(steps, per, ctx, after, halts)
        return Lifted(ctx, fns, cycles, lane_ops, dmem_acc, reads, conv)

    def _run_lifted(self, pc: int, count: int, window: tuple[int, int],
                    res: RunResult) -> None:
        key = (pc, count)
        lf = self.lifted.get(key)
        if lf is None:
            lf = self.lifted[key] = self._lifted_body(pc, count, window)
        st = self.m.plan[pc]
        assert st is not None
        ctx = lf.ctx
        ctx.regs.reset()  # as the definition's new registers
        ctx.gen += 1
        ctx.res = res
        ctx.read_base = res.reads
        for f in lf.fns:
            f(0)
        res.instructions += count * st.a["len"]
        res.cycles += count * lf.cycles
        res.lane_ops += count * lf.lane_ops
        res.dmem_accesses += count * lf.dmem_acc
        res.reads += count * lf.reads
        res.conversions += count * lf.conversions
        ctx.fold(res.read_charge)
        self.ctx.regs.last_copy(ctx.regs, count)
