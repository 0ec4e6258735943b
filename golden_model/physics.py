"""Non-ideal crossbar reads reduced to integers: read noise, IR drop, read disturb.

Pure functions over numpy arrays. The golden machine calls ``read_columns``
from its READ (one hook, ``Machine._read``) and the independent non-ideal
reference (``nonideal_reference``) calls it with the rows, drives and stress
counts it derives itself; both get the same integers because every step is
either integer arithmetic or an element-wise float64 operation in a fixed
order (no float reductions whose order could differ between executors).

Currents are integers in units of ``current_lsb_ua`` at the read voltage; a
conductance is expressed the same way (the current it would carry with the
full read voltage across it), so the read voltage never appears explicitly.

Models (docs/dse.md, "Read noise, IR drop and read disturb"):

* Read disturb: every READ stresses the rows it addresses (the IN entries it
  reads, whether or not their value drives the row: CIM-Explorer's count of
  reads per mapped cell is input-independent too). A row's stress s counts
  its READs since it was last written, starting from ``disturb_age`` for rows
  written before the run. An LRS cell's current is scaled by
  f(s) = (1 + s / n0) ** -p, in 16-bit fixed point, rounded per cell; HRS
  cells do not drift.
* Read noise (cycle-to-cycle): model "cell" adds to every driven cell an
  independent N(0, sigma^2) draw (an integer: 16-bit quantile of the normal
  times sigma, rounded), clips the cell's current at 0 and sums the column;
  model "column" adds one N(0, n_driven sigma^2) draw per column sum and
  clips the column at 0. Draw (seed, run g, READ c, row r, column k) comes
  from a Philox4x32-10 counter (``normal_q``): it does not depend on the
  batch, on the other cells read, or on the executor.
* IR drop: word lines are driven from the column-0 end, bit lines sensed at
  the row-(R-1) end (virtual ground), one wire segment of conductance ``gw``
  per cell pitch on both. Each driven word line is solved exactly as a ladder
  loaded by every cell of its row (nominal, noise-free currents) with the bit
  lines at ground, giving each cell's share v of the read voltage; each
  sensed bit line is then solved exactly as a ladder of sources v * V behind
  the cells' (noisy) conductances, undriven rows floating, down to the sense
  node. Decoupling the two lines is the approximation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cache, lru_cache
from statistics import NormalDist

import numpy as np
from numpy.typing import DTypeLike

from .kernels import unique

NOISE_MODELS = ("cell", "column")
# A normal draw is the quantile of a 16-bit uniform, scaled by Z_SCALE and
# rounded: |z| <= 4.17, resolution ~4e-5 sigma near 0.
Z_BITS = 16
Z_SCALE = 1 << 12
# Fixed point of the read-disturb factor.
DRIFT_BITS = 16
# Row field of the counter for the column-noise model (rows are < 1024).
COLUMN_STREAM_ROW = 1024
MASK32 = 0xFFFFFFFF
# Cells (images x rows x columns) one READ handles at a time: bounds the temporaries
# and keeps them near the caches (2^20 was the fastest of 2^16..2^22 measured).
CHUNK_CELLS = 1 << 20
# From this many cells (images x rows x columns) on, a READ hands half of its images
# to a worker thread (numpy releases the GIL in the draws and sums; below it the
# hand-off costs more than it saves).
SPLIT_CELLS = 1 << 16


class Work:
    """Scratch arrays of one thread's READs, kept from READ to READ.

    A noisy READ's temporaries are megabytes; allocated afresh for every chunk the
    allocator handed the pages back and refaulted them, which made the READ about
    2x slower. A machine keeps one ``Work``; ``helper`` is the one for the worker
    thread that takes half of a big READ.
    """

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self._helper: Work | None = None

    def helper(self) -> Work:
        if self._helper is None:
            self._helper = Work()
        return self._helper


def scratch(work: Work | None, name: str, shape: tuple[int, ...], dtype: DTypeLike
            ) -> np.ndarray:
    """An uninitialized array for temporaries: from ``work`` (reused by the next
    call that asks for ``name`` with no more elements) or new when it is None."""
    n = math.prod(shape)
    dt = np.dtype(dtype)
    if work is None:
        return np.empty(shape, dt)
    buf = work.arrays.get(name)
    if buf is None or buf.size < n or buf.dtype != dt:
        buf = work.arrays[name] = np.empty(n, dt)
    return buf[:n].reshape(shape)


@dataclass(frozen=True)
class ReadPhysics:
    """Non-ideal read parameters of a chip (all zero: the ideal integer read)."""

    seed: int = 0
    sigma_units: float = 0.0  # read noise per driven cell, current units
    noise: str = "cell"  # "cell" | "column"
    wire_g_units: float = 0.0  # one wire segment's conductance, current units (0: no IR drop)
    disturb_n0: int = 0  # reads at which an LRS cell's current has fallen to 2**-p (0: off)
    disturb_p: float = 0.0
    disturb_age: int = 0  # reads of every row written before the run

    @property
    def active(self) -> bool:
        return self.sigma_units > 0 or self.wire_g_units > 0 or self.disturb_n0 > 0

    @property
    def disturb(self) -> bool:
        return self.disturb_n0 > 0 and self.disturb_p > 0


IDEAL_READ = ReadPhysics()


# ------------------------------------------------------------------ random


def philox4x32(ctr: tuple[np.ndarray, ...], key: tuple[int, int], work: Work | None = None
               ) -> list[np.ndarray]:
    """Philox4x32-10 (Salmon et al., SC'11) on broadcastable arrays of 32-bit words;
    returns the four 32-bit output words as uint64 arrays of the broadcast shape
    (arrays of ``work`` when given: valid until its next use)."""
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    w0, w1 = 0x9E3779B9, 0xBB67AE85
    s32, lo = np.uint64(32), np.uint64(MASK32)
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in ctr)
    shape = np.broadcast_shapes(c0.shape, c1.shape, c2.shape, c3.shape)
    x0, x1, x2, x3 = (scratch(work, f"philox{i}", shape, np.uint64) for i in range(4))
    p0, p1 = (scratch(work, f"philox-p{i}", shape, np.uint64) for i in range(2))
    k0, k1 = key[0] & MASK32, key[1] & MASK32
    # Round 1 on the unbroadcast counter words (a word shared by every image or
    # every cell is multiplied once), written straight into the full-size state.
    q0 = np.multiply(c0, m0, out=scratch(work, "philox-q0", c0.shape, np.uint64))
    q1 = np.multiply(c2, m1, out=scratch(work, "philox-q1", c2.shape, np.uint64))
    h = np.right_shift(q1, s32, out=scratch(work, "philox-h", c2.shape, np.uint64))
    np.bitwise_xor(h, c1, out=x0)
    x0 ^= np.uint64(k0)
    h = np.right_shift(q0, s32, out=scratch(work, "philox-h", c0.shape, np.uint64))
    np.bitwise_xor(h, c3, out=x2)
    x2 ^= np.uint64(k1)
    np.bitwise_and(q1, lo, out=x1)
    np.bitwise_and(q0, lo, out=x3)
    k0, k1 = (k0 + w0) & MASK32, (k1 + w1) & MASK32
    for _ in range(9):
        np.multiply(x0, m0, out=p0)
        np.multiply(x2, m1, out=p1)
        np.right_shift(p1, s32, out=x0)  # x0' = hi(M1 x2) ^ x1 ^ k0
        x0 ^= x1
        x0 ^= np.uint64(k0)
        np.right_shift(p0, s32, out=x2)  # x2' = hi(M0 x0) ^ x3 ^ k1
        x2 ^= x3
        x2 ^= np.uint64(k1)
        np.bitwise_and(p1, lo, out=x1)  # x1' = lo(M1 x2)
        np.bitwise_and(p0, lo, out=x3)  # x3' = lo(M0 x0)
        k0, k1 = (k0 + w0) & MASK32, (k1 + w1) & MASK32
    return [x0, x1, x2, x3]


@cache
def z_table() -> np.ndarray:
    """int32 [2**16]: round(Z_SCALE * Phi^-1((i + 1/2) / 2**16)) (pure-Python quantiles,
    so the table is the same on every platform)."""
    nd = NormalDist()
    n = 1 << Z_BITS
    return np.array([round(Z_SCALE * nd.inv_cdf((i + 0.5) / n)) for i in range(n)], np.int32)


def normal_q(seed: int, runs: np.ndarray, read: int | np.ndarray, rows: np.ndarray,
             cols: np.ndarray) -> np.ndarray:
    """Standard normal draws times Z_SCALE, int32 of shape S + [w]: run ``runs``, READ
    ``read`` of that run, row ``rows`` (runs, reads and rows broadcast to S), column
    ``cols[j]``: the quantile table at ``uniform_lanes``."""
    return z_table()[uniform_lanes(seed, runs, read, rows, cols)]


def uniform_lanes(seed: int, runs: np.ndarray, read: int | np.ndarray, rows: np.ndarray,
                  cols: np.ndarray, work: Work | None = None) -> np.ndarray:
    """The 16-bit uniforms behind ``normal_q`` (uint16, shape S + [w], possibly a view,
    of an array of ``work`` when given).

    One Philox call serves 8 cells: counter (row * 256 + col // 8, read, run low,
    run high), key (seed low, seed high); column col takes 16-bit lane col % 8.
    """
    read_a = np.asarray(read, dtype=np.int64)
    if read_a.size and (int(read_a.min()) < 0 or int(read_a.max()) > MASK32):
        raise ValueError(f"READ counter {int(read_a.max())} out of 32 bits")
    runs_a = np.asarray(runs, dtype=np.uint64)
    rows_a = np.asarray(rows, dtype=np.int64)
    shape = np.broadcast_shapes(runs_a.shape, rows_a.shape, read_a.shape)
    cols = np.asarray(cols, dtype=np.int64)
    if cols.size == 0:
        return np.zeros((*shape, 0), np.uint16)
    g0 = int(cols.min()) >> 3
    n_groups = (int(cols.max()) >> 3) - g0 + 1
    groups = np.arange(g0, g0 + n_groups, dtype=np.int64)
    # The counter words unbroadcast (philox broadcasts them).
    x0 = scratch(work, "ctr-row", (*rows_a.shape, n_groups), np.uint64)
    np.add((rows_a * 256)[..., None], groups, out=x0, casting="unsafe")
    x2 = (runs_a & np.uint64(MASK32))[..., None]
    x3 = (runs_a >> np.uint64(32))[..., None]
    x1 = read_a.astype(np.uint64)[..., None]
    out = philox4x32((x0, x1, x2, x3), (seed & MASK32, seed >> 32), work)
    words = scratch(work, "lanes", (*shape, n_groups, 4), "<u4")
    for i, o in enumerate(out):
        words[..., i] = o
    # Little-endian 16-bit halves: lane 2i is word i's low half, lane 2i + 1 its high half.
    lanes = words.view("<u2").reshape(*shape, 8 * n_groups)
    idx = cols - 8 * g0
    if (np.diff(idx) == 1).all():
        return lanes[..., idx[0]:idx[-1] + 1]
    return lanes[..., idx]


def noise_units(sigma_units: float | np.ndarray, zq: np.ndarray) -> np.ndarray:
    """Integer noise currents: rint(sigma * z) with z = zq / Z_SCALE (exact scaling)."""
    return np.rint(np.multiply(sigma_units, zq) / Z_SCALE).astype(np.int64)


@lru_cache(maxsize=16)
def noise_table(sigma_units: float) -> np.ndarray:
    """int64 [2**16]: ``noise_units(sigma_units, z_table())``, the noise current of each
    16-bit uniform, so a per-cell draw is one lookup (the same numbers, element-wise)."""
    t = noise_units(sigma_units, z_table())
    t.flags.writeable = False
    return t


# ------------------------------------------------------------------ disturb


def drift_factor(stress: np.ndarray, n0: int, p: float) -> np.ndarray:
    """int64 fixed-point factors round(2**16 * (1 + s / n0) ** -p), one per stress s
    (Python floats, one per distinct s, so every executor gets the same integers)."""
    s = np.asarray(stress, dtype=np.int64)
    uniq, inv = unique(s)
    f = [round((1 << DRIFT_BITS) * math.pow(1.0 + int(v) / n0, -p)) for v in uniq]
    return np.asarray(f, np.int64)[inv].reshape(s.shape)


def drifted(cur: np.ndarray, lrs: np.ndarray, stress: np.ndarray, n0: int, p: float
            ) -> np.ndarray:
    """Cell currents [k, C] of rows with stress [k]: LRS cells scaled by the drift factor,
    rounded half up per cell; HRS cells unchanged."""
    f = drift_factor(stress, n0, p)[:, None]
    half = 1 << (DRIFT_BITS - 1)
    scaled = (cur.astype(np.int64) * f + half) >> DRIFT_BITS
    return np.where(lrs, scaled, cur).astype(np.int64)


# ------------------------------------------------------------------ IR drop


def wordline_fraction(cur_rows: np.ndarray, gw: float) -> np.ndarray:
    """Fraction of the read voltage across each cell of driven rows [k, C]: each word
    line solved exactly as a ladder from its driver (one wire segment before column
    0, one between columns) with every cell of the row loading it towards the bit
    lines, taken at ground (their own drop is the bit-line ladder's)."""
    g = cur_rows.astype(np.float64)
    c = g.shape[1]
    # Conductance seen into the line at column j, towards the far end (backwards).
    gin = np.empty_like(g)
    gin[:, c - 1] = g[:, c - 1]
    for j in range(c - 2, -1, -1):
        t = gin[:, j + 1]
        gin[:, j] = g[:, j] + gw * t / (gw + t)
    v = np.empty_like(g)
    v[:, 0] = gw / (gw + gin[:, 0])
    for j in range(1, c):
        v[:, j] = v[:, j - 1] * (gw / (gw + gin[:, j]))
    return v


def bitline_ladder(g: np.ndarray, v: np.ndarray, rows: np.ndarray, n_rows: int, gw: float
                   ) -> np.ndarray:
    """Column currents [B, w] of a bit-line ladder: cells of ascending ``rows`` with
    conductances g [B, k, w] (0 = not driven) behind sources v [k, w] (fractions of
    the read voltage), one wire segment per row pitch, the sense node (ground)
    after row n_rows - 1. Norton reduction from row 0 down: (G, J) is the
    conductance and short-circuit current of everything above the next node."""
    b, k, w = g.shape
    big_g = np.zeros((b, w))
    big_j = np.zeros((b, w))
    nxt = np.append(rows[1:], n_rows)
    for i in range(k):
        gi = g[:, i, :]
        gp = big_g + gi
        jp = big_j + gi * v[i]
        gs = gw / float(nxt[i] - rows[i])
        den = gp + gs
        big_g = gp * gs / den
        big_j = jp * gs / den
    return big_j


# ------------------------------------------------------------------ one READ


@lru_cache(maxsize=16)
def noise_table32(sigma_units: float) -> np.ndarray:
    """``noise_table`` as int32 (its entries are far below 2**31)."""
    t = noise_table(sigma_units).astype(np.int32)
    t.flags.writeable = False
    return t


def cell_noise(seed: int, sigma_units: float, win: np.ndarray, rows: np.ndarray,
               cols: np.ndarray, d: np.ndarray, runs: np.ndarray, reads: np.ndarray,
               work: Work | None) -> np.ndarray:
    """Column currents [B, w] of a READ with per-cell noise and no IR drop: the
    driven cells of each image (drive d [B, k], sensed currents win [k, w]) each
    get their draw, are clipped at 0 and summed. int32 cells when no column sum
    can reach 2**31; no temporary is allocated when ``work`` is given."""
    table = noise_table(sigma_units)
    b, k = d.shape
    w = win.shape[1]
    narrow = (int(np.abs(win).max(initial=0)) + int(np.abs(table).max())) * max(1, k) < 1 << 31
    dt = np.int32 if narrow else np.int64
    every = bool(d.all())
    if every:
        # Bipolar inputs drive every row: the counter words broadcast (no gather).
        u = uniform_lanes(seed, runs[:, None], reads[:, None], rows[None, :], cols, work)
        shape: tuple[int, ...] = u.shape
    else:
        bi, ri = np.nonzero(d)  # driven (image, row) pairs, grouped by image
        u = uniform_lanes(seed, runs[bi], reads[bi], rows[ri], cols, work)
        shape = u.shape
    idx = scratch(work, "noise-idx", shape, np.intp)
    np.copyto(idx, u)
    vals = scratch(work, "noise-vals", shape, dt)
    # mode="clip" never clips (16-bit indices into 2**16 entries) but, unlike
    # "raise", writes straight into ``out``.
    np.take(noise_table32(sigma_units) if narrow else table, idx, out=vals, mode="clip")
    win_dt = win.astype(dt, copy=False)
    if every:
        vals += win_dt
    else:
        cells = scratch(work, "noise-cells", shape, dt)
        np.take(win_dt, ri, axis=0, out=cells, mode="clip")
        vals += cells
    np.maximum(vals, 0, out=vals)
    # Sums in the cells' dtype (``narrow`` bounds them), widened afterwards.
    if every:
        return vals.sum(axis=1, dtype=dt).astype(np.int64, copy=False)
    counts = d.sum(axis=1)
    if b and (counts == counts[0]).all():
        return vals.reshape(b, int(counts[0]), w).sum(axis=1, dtype=dt).astype(np.int64,
                                                                            copy=False)
    col = np.zeros((b, w), np.int64)
    some = counts > 0
    if some.any():
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[some]
        col[some] = np.add.reduceat(vals, starts, axis=0, dtype=dt)
    return col


def read_columns(phys: ReadPhysics, cur_rows: np.ndarray, lrs_rows: np.ndarray,
                 rows: np.ndarray, drive: np.ndarray, c0: int, width: int, runs: np.ndarray,
                 read: int | np.ndarray, stress: np.ndarray, n_rows: int,
                 worker: Callable[[], Executor] | None = None, work: Work | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Column currents of one non-ideal READ (the machine's hook).

    Args:
        phys: the chip's read physics.
        cur_rows: int [k, C] nominal cell currents (device map and programmed
            bits, all C columns) of the k addressed rows.
        lrs_rows: bool [k, C] cells in the LRS state (programmed or stuck).
        rows: int [k] their row indices (any order; distinct).
        drive: bool [B, k] which addressed rows each image's inputs drive.
        c0, width: the sensed columns [c0, c0 + width).
        runs: int [B] run (image) index of each batch entry.
        read: index of this READ within the run (0 at every start), one for all
            images or int [B] (an executor that reads several loop iterations
            at once).
        stress: int [k] the rows' reads since written (before this READ).
        n_rows: the array's rows (the bit-line length).
        worker: gives a thread that computes the first half of the images of a
            big READ (the draws of an image do not depend on its batch, so the
            split changes no integer).
        work: the calling thread's scratch arrays (``Work``; None: fresh ones).

    Returns:
        (int64 [B, width] column currents, int64 [B] driven rows per image).
    """
    rows = np.asarray(rows)
    b = np.asarray(drive).shape[0]
    reads = np.broadcast_to(np.asarray(read, dtype=np.int64), (b,))
    # What does not depend on the images is done once per READ, not per chunk.
    order = np.argsort(rows, kind="stable")
    ident = bool((order == np.arange(rows.size)).all())
    rows_s = rows if ident else rows[order]
    cur = cur_rows if ident else cur_rows[order]
    cur = cur.astype(np.int64, copy=False)
    if phys.disturb:
        cur = drifted(cur, lrs_rows if ident else lrs_rows[order],
                      np.asarray(stress) if ident else np.asarray(stress)[order],
                      phys.disturb_n0, phys.disturb_p)
    d = np.asarray(drive, dtype=bool)
    pr = _ReadRows(rows_s, cur, c0, width, n_rows,
                   wordline_fraction(cur, phys.wire_g_units)[:, c0:c0 + width]
                   if phys.wire_g_units > 0 else None)
    return _read_images(phys, pr, d if ident else d[:, order], np.asarray(runs, np.int64),
                        reads, worker, work)


@dataclass
class _ReadRows:
    """The image-independent part of one READ: addressed rows in ascending order,
    their cell currents (drifted), the sensed window, the word-line fractions."""

    rows: np.ndarray  # int [k] ascending
    cur: np.ndarray  # int64 [k, C]
    c0: int
    width: int
    n_rows: int
    v: np.ndarray | None  # float64 [k, width] word-line fractions (IR drop), else None

    @property
    def win(self) -> np.ndarray:
        return self.cur[:, self.c0:self.c0 + self.width]


def _read_images(phys: ReadPhysics, pr: _ReadRows, d: np.ndarray, runs: np.ndarray,
                 reads: np.ndarray, worker: Callable[[], Executor] | None, work: Work | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``read_columns`` for the images of drive d [B, k] (columns in ``pr.rows``'
    order): half of a big READ on the worker, the rest in chunks of bounded size
    (the draws of an image do not depend on its batch, so neither changes an
    integer)."""
    b = d.shape[0]
    cells = max(1, pr.rows.size * pr.width)
    if worker is not None and b >= 2 and b * cells >= SPLIT_CELLS:
        h = b // 2
        job = worker().submit(_read_images, phys, pr, d[:h], runs[:h], reads[:h], None,
                              None if work is None else work.helper())
        c2, n2 = _read_images(phys, pr, d[h:], runs[h:], reads[h:], None, work)
        c1, n1 = job.result()
        return np.concatenate([c1, c2]), np.concatenate([n1, n2])
    step = max(1, CHUNK_CELLS // cells)
    if b > step:
        work = Work() if work is None else work
        parts = [_read_chunk(phys, pr, d[s:s + step], runs[s:s + step], reads[s:s + step],
                             work) for s in range(0, b, step)]
        return (np.concatenate([c for c, _ in parts]), np.concatenate([n for _, n in parts]))
    return _read_chunk(phys, pr, d, runs, reads, work)


def _read_chunk(phys: ReadPhysics, pr: _ReadRows, d: np.ndarray, runs: np.ndarray,
                reads: np.ndarray, work: Work | None) -> tuple[np.ndarray, np.ndarray]:
    """Column currents and driven-row counts of a few images of one READ."""
    b = d.shape[0]
    rows, win = pr.rows, pr.win
    nd = d.sum(axis=1).astype(np.int64)
    cols = np.arange(pr.c0, pr.c0 + pr.width)
    w = win.shape[1]
    if phys.sigma_units > 0 and phys.noise == "cell":
        if pr.v is None:
            return cell_noise(phys.seed, float(phys.sigma_units), win, rows, cols, d, runs,
                              reads, work), nd
        # IR drop: the noisy cells are the conductances of the bit-line ladder.
        bi, ri = np.nonzero(d)
        u = uniform_lanes(phys.seed, runs[bi], reads[bi], rows[ri], cols)
        vals = win[ri] + noise_table(float(phys.sigma_units))[u]  # [P, w]
        np.maximum(vals, 0, out=vals)
        g = np.zeros((b, rows.size, w))
        g[bi, ri] = vals
        col = np.rint(bitline_ladder(g, pr.v, rows, pr.n_rows, phys.wire_g_units)
                      ).astype(np.int64)
    elif pr.v is not None:
        g = np.where(d[:, :, None], win[None], 0).astype(np.float64)
        col = np.rint(bitline_ladder(g, pr.v, rows, pr.n_rows, phys.wire_g_units)
                      ).astype(np.int64)
    else:
        # Exact: integer sums far below 2**53 (float64 so that BLAS does the work).
        col = (d.astype(np.float64) @ win.astype(np.float64)).astype(np.int64)
    if phys.sigma_units > 0 and phys.noise == "column":
        zq = normal_q(phys.seed, runs, reads, np.array([COLUMN_STREAM_ROW]), cols)
        col = np.maximum(col + noise_units(phys.sigma_units * np.sqrt(nd)[:, None], zq), 0)
    return col, nd
