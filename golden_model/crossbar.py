"""RRAM crossbar physics reduced to integers.

Currents are integers in units of ``current_lsb_ua``. A *device map* gives
every cell its own HRS and LRS current and a stuck-at flag, sampled once
from the seed (device-to-device variability is a property of the chip, so
reprogramming a cell keeps its currents). A read sums the currents of the
driven rows per column; the periphery removes the nominal HRS floor for a
POS read or subtracts the pair for a SYM read; the ADC maps that integer to a
count through a sorted list of integer thresholds and a reconstruction table:
``code = recon[#{t in T : t <= x}]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

STUCK_NONE, STUCK_LRS, STUCK_HRS = 0, 1, 2
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class DeviceParams:
    """The physical parameters a device map is sampled from."""

    rows: int
    cols: int
    num_xbars: int
    hrs_ua: float
    lrs_ua: float
    lsb_ua: float
    sigma_hrs_ua: float = 0.0
    sigma_lrs_ua: float = 0.0
    variability: str = "gaussian"
    stuck_lrs_rate: float = 0.0
    stuck_hrs_rate: float = 0.0
    seed: int = 0

    @property
    def hrs_units(self) -> int:
        return round(self.hrs_ua / self.lsb_ua)

    @property
    def lrs_units(self) -> int:
        return round(self.lrs_ua / self.lsb_ua)


@dataclass(frozen=True, eq=False)
class DeviceMap:
    """Per-cell integer currents and stuck-at flags: [num_xbars, rows, cols]."""

    hrs: np.ndarray  # int32
    lrs: np.ndarray  # int32
    stuck: np.ndarray  # int8: 0 none, 1 stuck at LRS, 2 stuck at HRS

    def lrs_state(self, xbar: int, bits: np.ndarray) -> np.ndarray:
        """Cells of one crossbar in the LRS state: programmed to 1 unless stuck at HRS,
        or stuck at LRS."""
        st = self.stuck[xbar]
        return ((bits != 0) & (st != STUCK_HRS)) | (st == STUCK_LRS)

    def cell_currents(self, xbar: int, bits: np.ndarray) -> np.ndarray:
        """Read current of every cell of one crossbar given its programmed bits."""
        return np.where(self.lrs_state(xbar, bits), self.lrs[xbar],
                        self.hrs[xbar]).astype(np.int32)


def _sample(rng: np.random.Generator, mean: float, sigma: float, kind: str,
            shape: tuple[int, ...]) -> np.ndarray:
    if sigma == 0:
        return np.full(shape, mean, dtype=np.float64)
    if kind == "lognormal":
        # Same mean and standard deviation as the Gaussian case, always positive.
        s2 = math.log1p((sigma / mean) ** 2)
        return mean * np.exp(rng.normal(-s2 / 2, math.sqrt(s2), size=shape))
    return np.clip(rng.normal(mean, sigma, size=shape), 0.0, None)


def sample_device_map(p: DeviceParams) -> DeviceMap:
    """Deterministic in ``p``; crossbar k's cells depend only on (seed, k)."""
    shape = (p.rows, p.cols)
    hrs = np.empty((p.num_xbars, *shape), np.int32)
    lrs = np.empty((p.num_xbars, *shape), np.int32)
    stuck = np.zeros((p.num_xbars, *shape), np.int8)
    for k in range(p.num_xbars):
        rng = np.random.default_rng([p.seed, k])
        h = _sample(rng, p.hrs_ua, p.sigma_hrs_ua, p.variability, shape)
        lo = _sample(rng, p.lrs_ua, p.sigma_lrs_ua, p.variability, shape)
        hrs[k] = np.rint(h / p.lsb_ua).astype(np.int32)
        lrs[k] = np.rint(lo / p.lsb_ua).astype(np.int32)
        if p.stuck_lrs_rate or p.stuck_hrs_rate:
            u = rng.random(shape)
            stuck[k][u < p.stuck_lrs_rate] = STUCK_LRS
            stuck[k][(u >= p.stuck_lrs_rate) & (u < p.stuck_lrs_rate + p.stuck_hrs_rate)] = \
                STUCK_HRS
    return DeviceMap(hrs, lrs, stuck)


# ------------------------------------------------------------------ ADC


@dataclass(frozen=True, eq=False)
class AdcTable:
    """Monotone ADC: code = recon[#{t <= x}] (thresholds ascending)."""

    thresholds: np.ndarray  # int64 [L-1]
    recon: np.ndarray  # int64 [L]

    def convert(self, x: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.thresholds, x, side="right")
        return self.recon[idx]

    def padded(self, n_thr: int) -> tuple[np.ndarray, np.ndarray]:
        """Fixed-size arrays for a table memory: thresholds padded with INT32_MAX
        (never reached), recon padded by repeating its last level."""
        t = np.full(n_thr, INT32_MAX, np.int64)
        t[: self.thresholds.size] = self.thresholds
        r = np.full(n_thr + 1, self.recon[-1], np.int64)
        r[: self.recon.size] = self.recon
        return t, r


def ideal_adc(sense: str, n_max: int, di: int) -> AdcTable:
    """Rounds to the nearest count: the exact code for ideal cells."""
    if sense == "POS":
        levels = np.arange(0, n_max + 1)
    else:
        levels = np.arange(-n_max, n_max + 1)
    # x >= (level - 1/2) * dI  <=>  x >= ceil((2*level - 1) * dI / 2) for integer x
    t = -((-(2 * levels[1:] - 1) * di) // 2)
    return AdcTable(t.astype(np.int64), levels.astype(np.int64))


def uniform_adc(sense: str, bits: int, lo: float, hi: float, di: int) -> AdcTable:
    """Uniform quantizer over [lo, hi] (current units), output in count units.

    POS uses 2^b - 1 steps, SYM 2^b - 2 steps (so that 0 is a level), as
    CIM-Explorer's ADC. Each level's reconstruction is the nearest count.
    Boundaries and levels are computed in exact rationals, and an input exactly
    on a boundary (or a level exactly halfway between two counts) goes away
    from zero: float rounding never decides a tie, and a SYM table is odd
    (``convert(-x) == -convert(x)`` when the range is symmetric).
    """
    steps = max((1 << bits) - (1 if sense == "POS" else 2), 1)
    flo, fhi = Fraction(lo), Fraction(hi)
    if fhi <= flo:
        fhi = flo + di
    step = (fhi - flo) / steps
    t = []
    for j in range(1, steps + 1):
        b = flo + (2 * j - 1) * step / 2
        # Integer x reaches the upper level iff x >= b (b > 0) or x > b (b <= 0).
        t.append(math.ceil(b) if b > 0 else math.floor(b) + 1)
    recon = []
    for k in range(steps + 1):
        c = (flo + k * step) / di
        r = math.floor(abs(c) + Fraction(1, 2))
        recon.append(r if c >= 0 else -r)
    return AdcTable(np.array(t, np.int64), np.array(recon, np.int64))


def max_range(sense: str, n_max: int, di: int) -> tuple[float, float]:
    if sense == "POS":
        return 0.0, float(n_max * di)
    return -float(n_max * di), float(n_max * di)
