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
from dataclasses import dataclass
from functools import cache, lru_cache
from statistics import NormalDist

import numpy as np

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


def philox4x32(ctr: tuple[np.ndarray, ...], key: tuple[int, int]) -> list[np.ndarray]:
    """Philox4x32-10 (Salmon et al., SC'11) on broadcastable arrays of 32-bit words;
    returns the four 32-bit output words as uint64 arrays of the broadcast shape."""
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    w0, w1 = 0x9E3779B9, 0xBB67AE85
    s32, lo = np.uint64(32), np.uint64(MASK32)
    arrs = np.broadcast_arrays(*(np.asarray(c, dtype=np.uint64) for c in ctr))
    x0, x1, x2, x3 = (a.copy() for a in arrs)
    p0, p1 = np.empty_like(x0), np.empty_like(x0)
    k0, k1 = key[0] & MASK32, key[1] & MASK32
    for _ in range(10):
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
                  cols: np.ndarray) -> np.ndarray:
    """The 16-bit uniforms behind ``normal_q`` (uint16, shape S + [w], possibly a view).

    One Philox call serves 8 cells: counter (row * 256 + col // 8, read, run low,
    run high), key (seed low, seed high); column col takes 16-bit lane col % 8.
    """
    read_a = np.asarray(read, dtype=np.int64)
    if read_a.size and (int(read_a.min()) < 0 or int(read_a.max()) > MASK32):
        raise ValueError(f"READ counter {int(read_a.max())} out of 32 bits")
    runs_a, rows_a, read_a = np.broadcast_arrays(np.asarray(runs, dtype=np.uint64),
                                                 np.asarray(rows, dtype=np.int64), read_a)
    cols = np.asarray(cols, dtype=np.int64)
    shape = runs_a.shape
    if cols.size == 0:
        return np.zeros((*shape, 0), np.uint16)
    g0 = int(cols.min()) >> 3
    n_groups = (int(cols.max()) >> 3) - g0 + 1
    groups = np.arange(g0, g0 + n_groups, dtype=np.int64)
    x0 = (rows_a[..., None] * 256 + groups).astype(np.uint64)
    x2 = (runs_a & np.uint64(MASK32))[..., None]
    x3 = (runs_a >> np.uint64(32))[..., None]
    x1 = read_a.astype(np.uint64)[..., None]
    out = philox4x32((x0, x1, x2, x3), (seed & MASK32, seed >> 32))
    words = np.empty((*shape, n_groups, 4), dtype="<u4")
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
    uniq, inv = np.unique(s, return_inverse=True)
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


def read_columns(phys: ReadPhysics, cur_rows: np.ndarray, lrs_rows: np.ndarray,
                 rows: np.ndarray, drive: np.ndarray, c0: int, width: int, runs: np.ndarray,
                 read: int | np.ndarray, stress: np.ndarray, n_rows: int
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

    Returns:
        (int64 [B, width] column currents, int64 [B] driven rows per image).
    """
    rows = np.asarray(rows)
    b = np.asarray(drive).shape[0]
    reads = np.broadcast_to(np.asarray(read, dtype=np.int64), (b,))
    step = max(1, CHUNK_CELLS // max(1, rows.size * width))
    if b > step:
        # Bound the temporaries: the draws of an image do not depend on its batch.
        parts = [read_columns(phys, cur_rows, lrs_rows, rows, drive[s:s + step], c0, width,
                              runs[s:s + step], reads[s:s + step], stress, n_rows)
                 for s in range(0, b, step)]
        return (np.concatenate([c for c, _ in parts]), np.concatenate([n for _, n in parts]))
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    cur = cur_rows[order].astype(np.int64)
    d = np.asarray(drive, dtype=bool)[:, order]
    if phys.disturb:
        cur = drifted(cur, lrs_rows[order], np.asarray(stress)[order], phys.disturb_n0,
                      phys.disturb_p)
    win = cur[:, c0:c0 + width]
    nd = d.sum(axis=1).astype(np.int64)
    cols = np.arange(c0, c0 + width)
    runs = np.asarray(runs, dtype=np.int64)
    w = win.shape[1]
    if phys.sigma_units > 0 and phys.noise == "cell":
        # Draws for the driven (image, row) pairs only, in row-major order.
        bi, ri = np.nonzero(d)
        u = uniform_lanes(phys.seed, runs[bi], reads[bi], rows[ri], cols)
        table = noise_table(float(phys.sigma_units))
        if bi.size == b * rows.size and phys.wire_g_units == 0:
            # Every row driven (bipolar inputs): the cells of an image are [k, w] in
            # row-major order, so no gather or scatter. int32 when no sum can reach 2**31.
            narrow = (int(np.abs(win).max(initial=0)) + int(np.abs(table).max())) \
                * max(1, rows.size) < 1 << 31
            dt = np.int32 if narrow else np.int64
            vals = table.astype(dt)[u].reshape(b, rows.size, w)
            vals += win.astype(dt)
            np.maximum(vals, 0, out=vals)
            return vals.sum(axis=1, dtype=np.int64), nd
        vals = win[ri] + table[u]  # [P, w]
        np.maximum(vals, 0, out=vals)
        if phys.wire_g_units > 0:
            g = np.zeros((b, rows.size, w))
            g[bi, ri] = vals
            v = wordline_fraction(cur, phys.wire_g_units)[:, c0:c0 + width]
            col = np.rint(bitline_ladder(g, v, rows, n_rows, phys.wire_g_units)).astype(np.int64)
        else:
            dense = np.zeros((b, rows.size, w), np.int64)
            dense[bi, ri] = vals
            col = dense.sum(axis=1)
    elif phys.wire_g_units > 0:
        g = np.where(d[:, :, None], win[None], 0).astype(np.float64)
        v = wordline_fraction(cur, phys.wire_g_units)[:, c0:c0 + width]
        col = np.rint(bitline_ladder(g, v, rows, n_rows, phys.wire_g_units)).astype(np.int64)
    else:
        # Exact: integer sums far below 2**53 (float64 so that BLAS does the work).
        col = (d.astype(np.float64) @ win.astype(np.float64)).astype(np.int64)
    if phys.sigma_units > 0 and phys.noise == "column":
        zq = normal_q(phys.seed, runs, reads, np.array([COLUMN_STREAM_ROW]), cols)
        col = np.maximum(col + noise_units(phys.sigma_units * np.sqrt(nd)[:, None], zq), 0)
    return col, nd
