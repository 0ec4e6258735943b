"""Crossbar physics in integers (golden_model/crossbar.py): device maps and ADC tables.

Device maps are sampled from explicit seeds (named in every assertion
message); statistical checks use tolerances of several standard errors.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from golden_model.crossbar import (
    INT32_MAX,
    STUCK_HRS,
    STUCK_LRS,
    STUCK_NONE,
    AdcTable,
    DeviceParams,
    ideal_adc,
    max_range,
    sample_device_map,
    uniform_adc,
)

BASE = DeviceParams(rows=64, cols=48, num_xbars=3, hrs_ua=5.0, lrs_ua=50.0, lsb_ua=0.05,
                    sigma_hrs_ua=2.0, sigma_lrs_ua=6.0, stuck_lrs_rate=0.02,
                    stuck_hrs_rate=0.03, seed=1234)


def phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


# --------------------------------------------------------------- device map


def test_same_seed_identical_arrays() -> None:
    a, b = sample_device_map(BASE), sample_device_map(BASE)
    for name in ("hrs", "lrs", "stuck"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name),
                                      err_msg=f"{name}, seed {BASE.seed}")
    assert a.hrs.dtype == np.int32 and a.lrs.dtype == np.int32 and a.stuck.dtype == np.int8
    assert a.hrs.shape == (BASE.num_xbars, BASE.rows, BASE.cols)


@pytest.mark.parametrize("variability", ["gaussian", "lognormal"])
def test_different_seeds_differ(variability: str) -> None:
    p = replace(BASE, variability=variability)
    a = sample_device_map(p)
    b = sample_device_map(replace(p, seed=p.seed + 1))
    for name in ("hrs", "lrs", "stuck"):
        assert (getattr(a, name) != getattr(b, name)).any(), (name, p.seed, p.seed + 1)
    # Crossbars of one chip differ from each other too.
    assert (a.lrs[0] != a.lrs[1]).any()


def test_crossbar_k_does_not_depend_on_num_xbars() -> None:
    small = sample_device_map(replace(BASE, num_xbars=2))
    big = sample_device_map(replace(BASE, num_xbars=5))
    for name in ("hrs", "lrs", "stuck"):
        np.testing.assert_array_equal(getattr(small, name), getattr(big, name)[:2],
                                      err_msg=f"{name}, seed {BASE.seed}")


def test_ideal_device_map_is_nominal() -> None:
    p = replace(BASE, sigma_hrs_ua=0.0, sigma_lrs_ua=0.0, stuck_lrs_rate=0.0,
                stuck_hrs_rate=0.0)
    d = sample_device_map(p)
    assert (d.hrs == p.hrs_units).all() and (d.lrs == p.lrs_units).all()
    assert (d.stuck == STUCK_NONE).all()
    assert (p.hrs_units, p.lrs_units) == (100, 1000)


def test_gaussian_clipped_at_zero() -> None:
    # sigma 16 uA around HRS 5 uA: about 38 % of the samples would be negative.
    p = replace(BASE, rows=128, cols=128, num_xbars=2, sigma_hrs_ua=16.0, stuck_lrs_rate=0.0,
                stuck_hrs_rate=0.0, seed=99)
    d = sample_device_map(p)
    assert d.hrs.min() == 0, f"seed {p.seed}"
    frac0 = float((d.hrs == 0).mean())
    # P(N(5, 16) < 0.025 uA) (values below half an LSB round to 0)
    expect = phi((0.025 - 5.0) / 16.0)
    n = d.hrs.size
    assert abs(frac0 - expect) < 5 * math.sqrt(expect * (1 - expect) / n), (frac0, expect, p.seed)
    # Above zero the distribution is untouched: the positive part's tail matches.
    above = float((d.hrs * p.lsb_ua > 21.0).mean())
    assert abs(above - (1 - phi(1.0))) < 0.01, (above, p.seed)


@pytest.mark.parametrize(("mean_sigma", "tol"), [((50.0, 6.0), 0.02), ((5.0, 2.0), 0.03)])
def test_gaussian_mean_and_std(mean_sigma: tuple[float, float], tol: float) -> None:
    mean, sigma = mean_sigma
    p = replace(BASE, rows=128, cols=128, num_xbars=2, lrs_ua=mean, hrs_ua=mean / 10,
                sigma_lrs_ua=sigma, sigma_hrs_ua=0.0, seed=5)
    v = sample_device_map(p).lrs * p.lsb_ua
    # sigma/mean small: clipping at 0 is negligible (z <= -2.5: 0.6 %; checked below)
    assert abs(v.mean() - mean) < tol * mean, (v.mean(), p.seed)
    assert abs(v.std() - sigma) < 0.02 * sigma + (0.02 if mean < 10 else 0), (v.std(), p.seed)


@pytest.mark.parametrize("sigma", [2.0, 10.0, 30.0])
def test_lognormal_positive_with_mean_and_std(sigma: float) -> None:
    mean = 30.0
    p = replace(BASE, rows=256, cols=256, num_xbars=2, variability="lognormal", lrs_ua=mean,
                hrs_ua=5.0, sigma_lrs_ua=sigma, sigma_hrs_ua=sigma / 3, stuck_lrs_rate=0.0,
                stuck_hrs_rate=0.0, seed=17)
    d = sample_device_map(p)
    assert d.hrs.min() >= 0 and d.lrs.min() >= 0
    v = d.lrs * p.lsb_ua
    # Lognormal values are strictly positive: only those below half an LSB round to 0.
    s2 = math.log1p((sigma / mean) ** 2)
    p_zero = phi((math.log(p.lsb_ua / 2 / mean) + s2 / 2) / math.sqrt(s2))
    assert float((d.lrs == 0).mean()) <= p_zero + 1e-3, f"seed {p.seed}"
    n = v.size
    # Standard errors of the sample mean and std (the lognormal tail inflates the latter).
    assert abs(v.mean() - mean) < 6 * sigma / math.sqrt(n) + 0.01, (v.mean(), p.seed)
    assert abs(v.std() / sigma - 1) < 0.04 + 0.1 * sigma / mean, (v.std(), p.seed)
    # Skewed: the median sits below the mean, unlike the Gaussian.
    assert np.median(v) < mean


def test_lognormal_and_gaussian_differ_for_the_same_seed() -> None:
    g = sample_device_map(BASE)
    lg = sample_device_map(replace(BASE, variability="lognormal"))
    assert (g.lrs != lg.lrs).any()


@pytest.mark.parametrize(("lrs_rate", "hrs_rate"), [(0.1, 0.0), (0.0, 0.2), (0.05, 0.15),
                                                    (0.5, 0.5), (1.0, 0.0), (0.0, 1.0)])
def test_stuck_at_rates(lrs_rate: float, hrs_rate: float) -> None:
    p = replace(BASE, rows=128, cols=128, num_xbars=4, stuck_lrs_rate=lrs_rate,
                stuck_hrs_rate=hrs_rate, seed=2024)
    s = sample_device_map(p).stuck
    n = s.size
    for code, rate in ((STUCK_LRS, lrs_rate), (STUCK_HRS, hrs_rate)):
        got = float((s == code).mean())
        se = math.sqrt(rate * (1 - rate) / n)
        assert abs(got - rate) <= 5 * se + 1e-12, (code, got, rate, p.seed)
    assert set(np.unique(s)) <= {STUCK_NONE, STUCK_LRS, STUCK_HRS}


def test_cell_currents_follow_bits_and_stuck_flags() -> None:
    p = replace(BASE, stuck_lrs_rate=0.2, stuck_hrs_rate=0.2, seed=8)
    d = sample_device_map(p)
    rng = np.random.default_rng(8)
    for k in range(p.num_xbars):
        bits = rng.integers(0, 2, size=(p.rows, p.cols)).astype(bool)
        cur = d.cell_currents(k, bits)
        st = d.stuck[k]
        eff = np.where(st == STUCK_LRS, True, np.where(st == STUCK_HRS, False, bits))
        np.testing.assert_array_equal(cur, np.where(eff, d.lrs[k], d.hrs[k]),
                                      err_msg=f"xbar {k} seed {p.seed}")
        assert cur.dtype == np.int32


# ---------------------------------------------------------------------- ADC


@pytest.mark.parametrize("di", [900, 1, 2, 7, 70])
@pytest.mark.parametrize("sense", ["POS", "SYM"])
def test_ideal_adc_exact_counts(sense: str, di: int) -> None:
    n = 64
    t = ideal_adc(sense, n, di)
    lo = 0 if sense == "POS" else -n
    k = np.arange(lo, n + 1)
    np.testing.assert_array_equal(t.convert(k * di), k)
    # Thresholds strictly increase (no empty bin) and there are 2n (+1) levels.
    assert (np.diff(t.thresholds) > 0).all()
    assert t.recon.size == (n + 1 if sense == "POS" else 2 * n + 1)
    # Boundaries: the nearest count, ties (x exactly halfway) round up.
    kk = k[1:]
    edge = -((-(2 * kk - 1) * di) // 2)  # ceil((k - 1/2) dI)
    np.testing.assert_array_equal(t.convert(edge), kk)
    np.testing.assert_array_equal(t.convert(edge - 1), kk - 1)
    # Every integer in range maps to its nearest count.
    xs = np.arange(lo * di - 3 * di, n * di + 3 * di + 1)
    want = np.clip(np.floor(xs / di + 0.5), lo, n).astype(np.int64)
    np.testing.assert_array_equal(t.convert(xs), want)


def test_ideal_adc_saturates() -> None:
    t = ideal_adc("POS", 8, 10)
    assert t.convert(np.array([-10**6, 10**6])).tolist() == [0, 8]
    t = ideal_adc("SYM", 8, 10)
    assert t.convert(np.array([-10**6, 10**6])).tolist() == [-8, 8]


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("sense", ["POS", "SYM"])
def test_uniform_adc_max_range(sense: str, bits: int) -> None:
    n, di = 256, 900
    lo, hi = max_range(sense, n, di)
    assert (lo, hi) == ((0.0 if sense == "POS" else -n * di), float(n * di))
    t = uniform_adc(sense, bits, lo, hi, di)
    steps = max((1 << bits) - (1 if sense == "POS" else 2), 1)
    assert t.thresholds.size == steps and t.recon.size == steps + 1
    xs = np.arange(int(lo) - di, int(hi) + di + 1, 97)
    codes = t.convert(xs)
    assert (np.diff(codes) >= 0).all(), "monotone"
    assert (np.diff(t.thresholds) >= 0).all()
    # Distinct levels: one per step + 1 (the step is far above dI here).
    assert np.unique(codes).size == steps + 1
    assert np.unique(t.recon).size == steps + 1
    # The end points reconstruct to the range limits in counts.
    assert codes[0] == round(lo / di) and codes[-1] == round(hi / di)
    if sense == "SYM" and bits >= 2:
        assert int(t.convert(np.array([0]))[0]) == 0, "0 is a level of the SYM quantizer"
        np.testing.assert_array_equal(t.recon, -t.recon[::-1])  # symmetric levels
    if sense == "SYM" and bits == 1:
        # 2^1 - 2 = 0 steps is clamped to one: a sign comparator with levels -N, +N.
        assert t.recon.tolist() == [-n, n]


def test_uniform_adc_levels_are_evenly_spaced() -> None:
    di = 900
    t = uniform_adc("POS", 3, 0.0, 7 * 10 * di, di)  # step = 10 counts
    np.testing.assert_array_equal(t.recon, np.arange(8) * 10)
    np.testing.assert_array_equal(t.thresholds, (np.arange(1, 8) - 0.5) * 10 * di)


def test_padded_table_converts_identically() -> None:
    t = uniform_adc("SYM", 4, -5000.0, 7000.0, 900)
    thr, rec = t.padded(40)
    assert thr.size == 40 and rec.size == 41
    assert (thr[t.thresholds.size:] == INT32_MAX).all()
    padded = AdcTable(thr, rec)
    xs = np.arange(-20000, 20000, 13)
    np.testing.assert_array_equal(padded.convert(xs), t.convert(xs))


@pytest.mark.parametrize("seed", range(30))
def test_machine_adc_lookup_equals_binary_search(seed: int) -> None:
    """The golden machine's ADC lookup (ideal-step and bucket fast paths) == the
    definition recon[#{t <= x}] for ideal, uniform, perturbed and random tables."""
    from golden_model.machine import _AdcLookup

    print("seed", seed)
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(2, 40))
    di = int(rng.integers(1, 2000))
    sense = "SYM" if seed % 2 else "POS"
    kind = seed % 5
    if kind == 0:
        tab = ideal_adc(sense, rows, di)
    elif kind == 1:
        lo, hi = max_range(sense, rows, di)
        top = min(6, int(math.log2(2 * rows + 1)))  # the table holds 2 * rows thresholds
        tab = uniform_adc(sense, int(rng.integers(1, top + 1)), lo, hi, di)
    elif kind == 2:  # an ideal table with one threshold moved by one: not ideal any more
        tab = ideal_adc(sense, rows, di)
        t = tab.thresholds.copy()
        t[int(rng.integers(0, t.size))] += 1
        tab = AdcTable(np.sort(t), tab.recon)
    elif kind == 3:  # levels that skip: not ideal
        tab = ideal_adc(sense, rows, di)
        r = tab.recon.copy()
        r[-1] += 1
        tab = AdcTable(tab.thresholds, r)
    else:
        m = int(rng.integers(1, 2 * rows))
        tab = AdcTable(np.sort(rng.integers(-5000, 5000, m)),
                       np.sort(rng.integers(-rows, rows + 1, m + 1)))
    thr, rec = tab.padded(2 * rows)
    lut = _AdcLookup(thr, rec)
    assert (lut.step > 0) == (kind == 0), (kind, lut.step)
    span = 2 * rows * di + 10
    x = np.concatenate([np.arange(-span, span + 1, max(1, span // 3000)),
                        thr[thr < 2**31 - 1], thr[thr < 2**31 - 1] - 1,
                        [-(2**40), 2**40, 0]]).astype(np.int64)
    want = rec[np.searchsorted(thr, x, side="right")]
    np.testing.assert_array_equal(lut.convert(x.copy()), want)
    np.testing.assert_array_equal(lut.convert(x.reshape(-1, 1).copy()).ravel(), want)
