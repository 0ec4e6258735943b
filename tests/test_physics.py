"""Read noise, IR drop and read disturb (golden_model/physics.py), and the golden
machine against the independent non-ideal reference (golden_model/nonideal_reference.py).

Expected values come from published known-answer vectors (Philox), a dense
nodal analysis (numpy.linalg.solve) of the same resistor networks, the
models' formulas evaluated here element by element, and the non-ideal
reference, which shares only golden_model.physics with the machine. Seeds are
in every assertion message.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from netgen import random_network, residual_network

from cimgen.compiler import calibration_batch, compile_network
from cimgen.compiler.mappings import MAPPINGS as RECIPES
from cimgen.config import MAPPINGS, make_config
from cimgen.dse.engine import run_machine
from cimgen.frontend.datasets import digits_for
from cimgen.frontend.onnx_import import load_model
from golden_model import isa, nonideal_reference, physics
from golden_model.crossbar import DeviceParams, ideal_adc, sample_device_map
from golden_model.errors import MismatchError
from golden_model.ir import Conv2d, Dense
from golden_model.isa import BIT_SIGNED, MASK_POS, Sense
from golden_model.machine import ChipImage, Machine, MachineParams
from golden_model.reference import forward_int, quantize_input
from golden_model.schedule import Body, Schedule

# ------------------------------------------------------------------ Philox


@pytest.mark.parametrize(("ctr", "key", "want"), [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_known_answers(ctr: tuple[int, ...], key: tuple[int, int],
                              want: tuple[int, ...]) -> None:
    """Random123's kat_vectors for philox4x32-10, element-wise in a batch of 3."""
    arr = tuple(np.full(3, c, np.uint64) for c in ctr)
    out = physics.philox4x32(arr, key)
    assert [int(o[1]) for o in out] == list(want)


def test_normal_draws_are_addressed_not_streamed() -> None:
    """A draw depends only on (seed, run, READ, row, column): any subset, any batch
    order, any executor gets the same values; changing any key changes them."""
    seed, read = 7, 12
    runs = np.arange(40, 46)
    rows = np.arange(0, 30)
    cols = np.arange(5, 70)
    full = physics.normal_q(seed, runs[:, None], read, rows[None, :], cols)
    assert full.shape == (6, 30, 65)
    sub = physics.normal_q(seed, np.array([45, 41]), read, np.array([29, 3]),
                           np.array([68, 5, 40]))
    np.testing.assert_array_equal(sub, full[[5, 1], [29, 3]][:, [63, 0, 35]])
    for s2, r2, ru in ((seed + 1, read, runs), (seed, read + 1, runs), (seed, read, runs + 1)):
        other = physics.normal_q(s2, ru[:, None], r2, rows[None, :], cols)
        assert (other != full).mean() > 0.99
    big = physics.normal_q(2**62 + 5, np.array([2**40 + 3]), 2**32 - 1, np.array([1023]), cols)
    assert big.shape == (1, 65)


def test_normal_draws_are_standard_normal() -> None:
    table = physics.z_table()
    np.testing.assert_array_equal(table, -table[::-1])  # symmetric quantiles
    assert (np.diff(table) >= 0).all()
    z = physics.normal_q(3, np.arange(64)[:, None], 0, np.arange(128)[None, :],
                         np.arange(256)).astype(np.float64) / physics.Z_SCALE
    n = z.size  # 2M draws
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.std() - 1) < 0.005
    assert abs((z < -1.96).mean() - 0.025) < 0.001 and abs((z > 1.96).mean() - 0.025) < 0.001
    # Neighbouring cells (lanes of one Philox word) are uncorrelated.
    assert abs(np.corrcoef(z[..., 0::2].ravel(), z[..., 1::2].ravel())[0, 1]) < 0.005


# ------------------------------------------------------------------ read noise


def _cells(seed: int, k: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lrs = rng.random((k, c)) < 0.5
    cur = np.where(lrs, rng.integers(550, 650, (k, c)), rng.integers(80, 120, (k, c)))
    return cur.astype(np.int32), lrs


def _drive(pattern: str, b: int, k: int, seed: int) -> np.ndarray:
    """Drive patterns that take each summation path of the per-cell model."""
    rng = np.random.default_rng(seed + 10)
    if pattern == "all":  # bipolar inputs: every row
        return np.ones((b, k), bool)
    if pattern == "equal":  # the same number of rows per image, different rows
        return np.argsort(rng.random((b, k)), axis=1) < k // 2
    drive = rng.random((b, k)) < 0.6
    if pattern == "some-none":  # images that drive no row at all, first and inside
        drive[[0, 3]] = False
    return drive


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("pattern", ["all", "equal", "random", "some-none"])
@pytest.mark.parametrize("wide", [False, True])  # True: sums beyond int32
def test_cell_noise_is_a_clipped_draw_per_driven_cell(seed: int, pattern: str,
                                                      wide: bool) -> None:
    print(f"seed {seed}")
    k, c, b = 20, 40, 6
    cur, lrs = _cells(seed, k, c)
    if wide:
        cur = cur.astype(np.int64) << 22  # 20 rows of ~2**31.2: int64 sums
    rows = np.arange(100, 100 + k)[::-1]  # any order
    drive = _drive(pattern, b, k, seed)
    runs = np.arange(9, 9 + b)
    sigma = 150.0  # larger than HRS currents: clipping happens
    phys = physics.ReadPhysics(seed=seed, sigma_units=sigma)
    col, nd = physics.read_columns(phys, cur, lrs, rows, drive, 8, 20, runs, 4,
                                   np.zeros(k, np.int64), 256)
    want = np.zeros((b, 20), np.int64)
    clipped = 0
    for i in range(b):
        for r in range(k):
            if not drive[i, r]:
                continue
            for j in range(20):
                z = physics.normal_q(seed, np.array([runs[i]]), 4, np.array([rows[r]]),
                                     np.array([8 + j]))[0, 0]
                v = int(cur[r, 8 + j]) + round(sigma * int(z) / physics.Z_SCALE)
                clipped += v < 0
                want[i, j] += max(v, 0)
    np.testing.assert_array_equal(col, want, err_msg=f"seed {seed}")
    np.testing.assert_array_equal(nd, drive.sum(axis=1))
    assert clipped > 0 or wide


@pytest.mark.parametrize("seed", [5, 6])
def test_read_split_and_scratch_reuse_change_no_integer(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Half of a big READ on a worker thread, chunks of bounded size and scratch
    arrays reused across READs of other shapes give the integers of one plain
    call per image."""
    print(f"seed {seed}")
    # Small limits, so that these small READs split and chunk (unevenly).
    monkeypatch.setattr(physics, "SPLIT_CELLS", 5000)
    monkeypatch.setattr(physics, "CHUNK_CELLS", 7000)
    rng = np.random.default_rng(seed)
    k, c = 48, 64
    cur, lrs = _cells(seed, k, c)
    phys = physics.ReadPhysics(seed=seed, sigma_units=150.0)
    work = physics.Work()
    with ThreadPoolExecutor(1) as pool:
        for b, k_read, pattern in ((40, 48, "random"), (7, 11, "all"), (90, 30, "equal"),
                                   (33, 48, "some-none"), (1, 48, "all")):
            rows = rng.permutation(k)[:k_read]
            drive = _drive(pattern, b, k_read, seed)
            runs = rng.integers(0, 2**40, b)
            read = rng.integers(0, 2**32, b)
            args = (phys, cur[rows], lrs[rows], rows, drive, 3, 50, runs, read,
                    np.zeros(k_read, np.int64), 64)
            fast = physics.read_columns(*args, lambda: pool, work)
            for i in range(b):
                one = physics.read_columns(phys, cur[rows], lrs[rows], rows, drive[i:i + 1],
                                           3, 50, runs[i:i + 1], read[i:i + 1],
                                           np.zeros(k_read, np.int64), 64)
                np.testing.assert_array_equal(fast[0][i], one[0][0], err_msg=f"b {b} image {i}")
                assert fast[1][i] == one[1][0]


def test_column_noise_model() -> None:
    k, c, b, seed = 30, 16, 5, 4
    cur, lrs = _cells(seed, k, c)
    rows = np.arange(k)
    drive = np.random.default_rng(seed).random((b, k)) < 0.5
    runs = np.arange(b)
    phys = physics.ReadPhysics(seed=seed, sigma_units=40.0, noise="column")
    col, nd = physics.read_columns(phys, cur, lrs, rows, drive, 0, c, runs, 2,
                                   np.zeros(k, np.int64), 64)
    z = physics.normal_q(seed, runs, 2, np.array([physics.COLUMN_STREAM_ROW]), np.arange(c))
    clean = drive.astype(np.int64) @ cur
    want = np.maximum(clean + np.rint(40.0 * np.sqrt(nd)[:, None] * z / physics.Z_SCALE), 0)
    np.testing.assert_array_equal(col, want.astype(np.int64))


def test_cell_noise_variance_adds_up_over_driven_cells() -> None:
    """Far from the clip at 0, the per-cell model's column noise is N(0, n sigma^2)."""
    k, c, b = 64, 64, 256
    cur = np.full((k, c), 1000, np.int32)
    phys = physics.ReadPhysics(seed=11, sigma_units=20.0)
    drive = np.zeros((b, k), bool)
    drive[:, :25] = True
    col, _ = physics.read_columns(phys, cur, cur > 0, np.arange(k), drive, 0, c,
                                  np.arange(b), 0, np.zeros(k, np.int64), 64)
    noise = (col - 25 * 1000).astype(np.float64)
    assert abs(noise.mean()) < 4 * 100 / math.sqrt(noise.size)
    assert abs(noise.std() / (20.0 * 5) - 1) < 0.03


# ------------------------------------------------------------------ IR drop


def _nodal_bitline(g: np.ndarray, v: np.ndarray, n_rows: int, gw: float) -> float:
    """Sense current of one bit line by nodal analysis: cell r drives node r from a
    source v[r] through g[r]; node r - node r+1 and node n-1 - ground are wires."""
    a = np.zeros((n_rows, n_rows))
    rhs = np.zeros(n_rows)
    for r in range(n_rows):
        a[r, r] += g[r] + gw
        rhs[r] += g[r] * v[r]
        if r > 0:
            a[r, r] += gw
            a[r, r - 1] -= gw
        if r < n_rows - 1:
            a[r, r + 1] -= gw
    volts = np.linalg.solve(a, rhs)
    return float(gw * volts[-1])


def _nodal_wordline(g: np.ndarray, gw: float) -> np.ndarray:
    """Node voltages of one word line driven at 1 through a wire before column 0,
    cells to ground."""
    c = g.size
    a = np.zeros((c, c))
    rhs = np.zeros(c)
    for j in range(c):
        a[j, j] += g[j] + gw
        if j == 0:
            rhs[j] += gw
        else:
            a[j, j - 1] -= gw
        if j < c - 1:
            a[j, j] += gw
            a[j, j + 1] -= gw
    return np.linalg.solve(a, rhs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ladders_equal_nodal_analysis(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_rows, gw = 40, 3000.0
    g_full = np.where(rng.random(n_rows) < 0.5, rng.uniform(0, 400, n_rows), 0.0)
    v_full = rng.uniform(0.5, 1.0, n_rows)
    want = _nodal_bitline(g_full, v_full, n_rows, gw)
    rows = np.flatnonzero(g_full)
    got = physics.bitline_ladder(g_full[rows][None, :, None], v_full[rows][:, None], rows,
                                 n_rows, gw)
    assert got.shape == (1, 1)
    assert math.isclose(float(got[0, 0]), want, rel_tol=1e-9), f"seed {seed}"
    # Undriven rows passed in explicitly (g = 0) give the same current.
    every = physics.bitline_ladder(g_full[None, :, None], v_full[:, None], np.arange(n_rows),
                                   n_rows, gw)
    assert math.isclose(float(every[0, 0]), want, rel_tol=1e-9)
    wl = rng.uniform(10, 500, (3, 50))
    got_v = physics.wordline_fraction(wl.astype(np.int64), gw)
    for r in range(3):
        np.testing.assert_allclose(got_v[r], _nodal_wordline(wl.astype(np.int64)[r]
                                                             .astype(float), gw), rtol=1e-9)


def test_ir_drop_depends_on_position_and_input_pattern() -> None:
    n_rows, c = 64, 64
    cur = np.full((n_rows, c), 1000, np.int32)
    lrs = np.ones((n_rows, c), bool)
    phys = physics.ReadPhysics(wire_g_units=2e6)
    z = np.zeros(n_rows, np.int64)

    def read(drive_rows: list[int]) -> np.ndarray:
        d = np.zeros((1, n_rows), bool)
        d[0, drive_rows] = True
        col, _ = physics.read_columns(phys, cur, lrs, np.arange(n_rows), d, 0, c,
                                      np.zeros(1, np.int64), 0, z, n_rows)
        return col[0]

    near, far = read([n_rows - 1]), read([0])
    assert near[0] < 1000 and far[0] < near[0], "a cell far from the sense node loses more"
    assert near[-1] < near[0], "a column far from the word-line driver loses more"
    top, bottom = read(list(range(32))), read(list(range(32, 64)))
    both = read(list(range(64)))
    assert (both < top + bottom).all(), "currents sharing a bit line drop more together"
    assert (both > np.maximum(top, bottom)).all()
    # Negligible wire resistance: the ideal integer sums.
    tiny = physics.ReadPhysics(wire_g_units=1e15)
    d = np.random.default_rng(0).random((3, n_rows)) < 0.5
    col, _ = physics.read_columns(tiny, cur, lrs, np.arange(n_rows), d, 0, c, np.arange(3), 0,
                                  z, n_rows)
    np.testing.assert_array_equal(col, d.astype(np.int64) @ cur)


# ------------------------------------------------------------------ read disturb


def test_drift_factor_formula() -> None:
    s = np.array([0, 1, 99, 100, 10**6, 2**40])
    f = physics.drift_factor(s, 100, 0.25)
    want = [round(65536 * (1 + int(v) / 100) ** -0.25) for v in s]
    assert f.tolist() == want
    assert f[0] == 65536 and f[3] == round(65536 * 2**-0.25)
    cur = np.array([[1000, 100], [999, 101]], np.int32)
    lrs = np.array([[True, False], [True, False]])
    out = physics.drifted(cur, lrs, np.array([100, 0]), 100, 1.0)
    assert out.tolist() == [[500, 100], [999, 101]]


def _disturb_image() -> tuple[ChipImage, int]:
    """One 8x4 crossbar, row 0 all LRS; the inference program reads row 0 three
    times (POS), reprograms it and reads it once more."""
    rows, cols = 8, 4
    dev = sample_device_map(DeviceParams(rows, cols, 1, 5.0, 50.0, 0.05))
    phys = physics.ReadPhysics(disturb_n0=10, disturb_p=0.5, disturb_age=30)
    p = MachineParams(rows, cols, 1, 256, 4, 1, 4, 2, 1, 100, cols, 100, physics=phys)
    mk = isa.make
    read = mk("READ", xbar=0, row_off=0, col=0, mask_a=MASK_POS, sense=int(Sense.POS), adc=0,
              bit=BIT_SIGNED, lanes=cols)
    prog = [mk("PROG", xbar=0, row=0, wsrc=0), mk("HALT")]
    entry = len(prog)
    prog += [mk("INCLR"), mk("LDIN", dst=0, src=0, lanes=1), read, read, read,
             mk("PROG", xbar=0, row=0, wsrc=0), read, mk("HALT")]
    thr, rec = ideal_adc("POS", rows, 900).padded(2 * rows)
    image = ChipImage(p, tuple(isa.encode(i) for i in prog), np.ones((1, cols), np.uint8),
                      np.array([1], np.int32), thr[None], rec[None], dev)
    return image, entry


def test_machine_counts_reads_since_written() -> None:
    """Reads 1-3 of a run see stress age + 0, 1, 2; after the row is reprogrammed the
    next read sees 0; every run starts again from the age. The ADC input is the
    drifted LRS current minus the HRS floor of the one driven row."""
    image, entry = _disturb_image()
    seen: list[np.ndarray] = []
    m = Machine(image, 2, probe=lambda t, x: seen.append(x.copy()))
    assert m.run(0).error == isa.Err.NONE
    lrs = image.devmap.lrs[0, 0].astype(np.int64)
    for run in range(2):
        seen.clear()
        assert m.run(entry).error == isa.Err.NONE
        assert len(seen) == 4
        for x, s in zip(seen, (30, 31, 32, 0), strict=True):
            f = round(65536 * (1 + s / 10) ** -0.5)
            want = ((lrs * f + 32768) >> 16) - image.params.hrs_units
            np.testing.assert_array_equal(x, np.tile(want, (2, 1)), err_msg=f"run {run} s {s}")


# ------------------------------------------------------- machine vs reference

PHYSICS = {
    "cell noise": {"sigma_read_ua": 3.0},
    "column noise": {"sigma_read_ua": 3.0, "read_noise": "column", "adc_bits": 5},
    "ir drop": {"wire_ohm": 5.0, "adc_bits": 5},
    "read disturb": {"disturb_onset_reads": 3, "disturb_exponent": 0.1,
                     "disturb_age_reads": 50},
    "all": {"sigma_read_ua": 2.0, "wire_ohm": 0.02, "disturb_onset_reads": 5,
            "sigma_lrs_ua": 2.0, "sigma_hrs_ua": 1.0, "stuck_lrs_rate": 0.02,
            "stuck_hrs_rate": 0.02, "adc_bits": 4},
}


def _storable(net: object, mapping: str) -> bool:
    vals = {int(v) for layer in net.layers if isinstance(layer, Dense | Conv2d)  # type: ignore[attr-defined]
            for v in np.unique(layer.weight)}
    return vals <= set(RECIPES[mapping].cells)


def _check(net: object, cfg_keys: dict[str, object], q: np.ndarray, tag: str,
           chunk: int = 5, offset: int = 0) -> np.ndarray:
    cfg = make_config(None, cfg_keys)
    comp = compile_network(net, cfg)  # type: ignore[arg-type]
    got, res = run_machine(comp, q, chunk)
    assert int(res.error) == 0, tag
    want = nonideal_reference.infer(comp.net, comp.image.params, comp.image.devmap,
                                    comp.adc_tables, comp.schedule, q)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got, want, err_msg=tag)
    return got


@pytest.mark.parametrize("effect", list(PHYSICS))
@pytest.mark.parametrize("mapping", MAPPINGS)
def test_machine_equals_nonideal_reference(mapping: str, effect: str) -> None:
    """Random networks (netgen) on small odd arrays with several tiles per layer,
    every mapping, every physics option: the golden machine in batches of 5 equals
    the reference. Seeded by the mapping's and effect's positions."""
    seed = 1000 + 10 * MAPPINGS.index(mapping) + list(PHYSICS).index(effect)
    net = random_network(seed)
    if not _storable(net, mapping):
        mapping = "TNN_I"
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array(net.input.values.values), size=(12, *net.input.shape))
    keys = {"mapping": mapping, "rows": 23, "cols": 19, "num_xbars": 64, "seed": seed,
            "hrs_ua": 5.0, "lrs_ua": 30.0, **PHYSICS[effect]}
    tag = f"seed={seed} mapping={mapping} effect={effect}"
    got = _check(net, keys, q.astype(np.int16), tag)
    ref = forward_int(net, q.astype(np.int16))
    assert not np.array_equal(got, ref) or effect == "read disturb", f"{tag}: no effect"


@pytest.mark.parametrize(("model", "xbars", "size"), [("bnn_cnn", 3, 64), ("tnn_mlp", 3, 128)])
def test_examples_equal_nonideal_reference_with_reprogramming(model: str, xbars: int, size: int
                                                              ) -> None:
    """Example models on too few crossbars, so the inference program rewrites them
    between layers (read-disturb counts restart), with every effect on."""
    net = load_model(f"examples/{model}.onnx")
    x, _ = digits_for(net.input.shape, "test")
    q = quantize_input(net, x[:6])
    keys = {"mapping": "TNN_I", "rows": size, "cols": size, "num_xbars": xbars, "seed": 5,
            "adc_bits": 5, "sigma_read_ua": 1.0, "wire_ohm": 0.01,
            "disturb_onset_reads": 5, "disturb_age_reads": 100}
    comp = compile_network(net, make_config(None, keys))
    assert comp.report.phases > 1
    got, _ = run_machine(comp, q, 4)
    want = nonideal_reference.infer(net, comp.image.params, comp.image.devmap, comp.adc_tables,
                                    comp.schedule, q)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(6))
def test_nonideal_reference_is_the_reference_on_ideal_chips(seed: int) -> None:
    net = random_network(seed)
    mapping = MAPPINGS[seed % len(MAPPINGS)]
    if not _storable(net, mapping):
        mapping = "TNN_I"
    cfg = make_config(None, {"mapping": mapping, "rows": 17, "cols": 29, "num_xbars": 128})
    comp = compile_network(net, cfg)
    q = np.random.default_rng(seed).choice(np.array(net.input.values.values),
                                           size=(7, *net.input.shape)).astype(np.int16)
    got = nonideal_reference.infer(net, comp.image.params, comp.image.devmap, comp.adc_tables,
                                   comp.schedule, q)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got, forward_int(net, q), err_msg=f"seed {seed} {mapping}")


def _noisy_mlp() -> tuple[object, np.ndarray, object]:
    net = load_model("examples/bnn_mlp.onnx")
    x, _ = digits_for(net.input.shape, "test")
    q = quantize_input(net, x[:16])
    cfg = make_config(None, {"mapping": "BNN_III", "adc_bits": 5, "adc_range": "calib",
                             "sigma_read_ua": 1.0})
    return net, q, cfg


def test_reference_catches_a_wrong_adc_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler that wires layer 0's READs to layer 1's ADC table: the chip image and
    tables are otherwise right, the machine runs it faithfully, and only the
    independent reference (table n for the n-th layer) disagrees."""
    from cimgen.compiler import codegen

    net, q, cfg = _noisy_mlp()
    orig = codegen.Compiler.linear

    def wrong(self, st, *a, **k):  # type: ignore[no-untyped-def]
        if st.index == 0:
            self.adc_of[0] = 1
        return orig(self, st, *a, **k)

    monkeypatch.setattr(codegen.Compiler, "linear", wrong)
    comp = compile_network(net, cfg, calibration_batch(net, cfg, None))  # type: ignore[arg-type]
    got, _ = run_machine(comp, q)
    want = nonideal_reference.infer(net, comp.image.params, comp.image.devmap, comp.adc_tables,
                                    comp.schedule, q)  # type: ignore[arg-type]
    assert not np.array_equal(got, want)


def test_reference_rejects_an_incomplete_schedule() -> None:
    net, q, cfg = _noisy_mlp()
    comp = compile_network(net, cfg, calibration_batch(net, cfg, None))  # type: ignore[arg-type]
    s = comp.schedule
    assert s is not None
    body = s.bodies[0]
    reads = body.reads
    short = Schedule(s.mapping, s.tiles,
                     (Body(body.residency, reads[:3] + reads[4:]), *s.bodies[1:]), s.batch,
                     s.streams)
    with pytest.raises(MismatchError, match="missing from the schedule"):
        nonideal_reference.infer(net, comp.image.params, comp.image.devmap, comp.adc_tables,
                                 short, q)  # type: ignore[arg-type]
    twice = Schedule(s.mapping, s.tiles,
                     (Body(body.residency, (*reads[:3], reads[2], *reads[3:])),
                      *s.bodies[1:]), s.batch, s.streams)
    with pytest.raises(MismatchError, match="unexpected or repeated"):
        nonideal_reference.infer(net, comp.image.params, comp.image.devmap, comp.adc_tables,
                                 twice, q)  # type: ignore[arg-type]


# ------------------------------------------- streamed, branches, signed inputs, basis


STREAMED = {"rows": 16, "cols": 8, "num_xbars": 1, "batch": 4}


@pytest.mark.parametrize("effect", list(PHYSICS))
@pytest.mark.parametrize("mapping", ["BNN_I", "BNN_V", "TNN_II", "TNN_IV"])
def test_streamed_batches_equal_nonideal_reference(mapping: str, effect: str) -> None:
    """Weights streamed through one small crossbar in several residencies, batches of
    4 inputs per run as LOOPs (lifted unless read disturb is on), 10 inputs (the last
    batch padded), machines of 8 inputs: READ counters count every loop iteration,
    residencies reset the read counts of the rows they rewrite."""
    base = 2000 + 10 * ["BNN_I", "BNN_V", "TNN_II", "TNN_IV"].index(mapping) \
        + list(PHYSICS).index(effect)
    for seed in range(base, base + 50):  # the first network that streams on this chip
        net = random_network(seed)
        if not _storable(net, mapping):
            mapping = "TNN_I"
        keys = {"mapping": mapping, "seed": seed, "hrs_ua": 5.0, "lrs_ua": 30.0, **STREAMED,
                **PHYSICS[effect]}
        comp = compile_network(net, make_config(None, keys))
        assert comp.schedule is not None
        if comp.schedule.streams:
            break
    assert comp.schedule.streams and comp.batch == 4 and len(comp.schedule.bodies) > 1
    print("seed", seed)
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array(net.input.values.values), size=(10, *net.input.shape))
    _check(net, keys, q.astype(np.int16), f"seed={seed} mapping={mapping} effect={effect}",
           chunk=8)


@pytest.mark.parametrize("effect", list(PHYSICS))
@pytest.mark.parametrize(("seed", "ternary", "signed", "concat"),
                         [(0, False, False, False), (1, True, False, True),
                          (2, False, True, True), (3, True, True, False)])
def test_branch_networks_equal_nonideal_reference(seed: int, ternary: bool, signed: bool,
                                                  concat: bool, effect: str) -> None:
    """Residual networks (Tap, Add with operand scales, Concat) with signed multi-bit
    inputs read as bit-planes (the sign plane weighs -2^(b-1)), pinned and streamed."""
    net = residual_network(seed, ternary=ternary, signed_input=signed, concat=concat)
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array(net.input.values.values), size=(6, *net.input.shape)
                   ).astype(np.int16)
    mapping = "TNN_III" if ternary else "BNN_IV"
    for chip in ({}, STREAMED):
        keys = {"mapping": mapping, "seed": 30 + seed, **chip, **PHYSICS[effect]}
        _check(net, keys, q, f"residual seed={seed} signed={signed} concat={concat} "
               f"effect={effect} chip={chip}", chunk=4)


@pytest.mark.parametrize("effect", ["cell noise", "all"])
def test_basis_mode_equals_nonideal_reference(effect: str) -> None:
    """BasisN: every input segment read against the basis tiles, products combined
    with the coefficients (CMAC), on a non-ideal chip."""
    net = load_model("examples/bnn_mlp.onnx")
    x, _ = digits_for(net.input.shape, "test")
    q = quantize_input(net, x[:12])
    keys = {"mapping": "BNN_I", "basis_count": 12, "coef_bits": 6, "seed": 4,
            **PHYSICS[effect]}
    comp = compile_network(net, make_config(None, keys))
    assert comp.basis is not None
    got, res = run_machine(comp, q, 5)
    assert int(res.error) == 0
    want = nonideal_reference.infer(net, comp.image.params, comp.image.devmap, comp.adc_tables,
                                    comp.schedule, q, basis=comp.basis)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got, want, err_msg=effect)


def test_reference_catches_a_wrong_read_counter() -> None:
    """Two bodies' READs swapped in the schedule: the same reads, other READ counters,
    other read-noise draws; the reference then disagrees with the machine."""
    net = random_network(7)
    keys = {"mapping": "TNN_I", "seed": 7, **STREAMED, "sigma_read_ua": 15.0, "hrs_ua": 5.0,
            "lrs_ua": 30.0}
    comp = compile_network(net, make_config(None, keys))
    s = comp.schedule
    assert s is not None and len(s.bodies) > 1
    q = np.random.default_rng(7).choice(np.array(net.input.values.values),
                                        size=(16, *net.input.shape)).astype(np.int16)
    got, _ = run_machine(comp, q, 8)
    same = nonideal_reference.infer(net, comp.image.params, comp.image.devmap, comp.adc_tables,
                                    s, q)
    np.testing.assert_array_equal(got, same)
    rolled = Schedule(s.mapping, s.tiles, (Body(s.bodies[0].residency, s.bodies[0].reads[::-1]),
                                           *s.bodies[1:]), s.batch, s.streams)
    want = nonideal_reference.infer(net, comp.image.params, comp.image.devmap, comp.adc_tables,
                                    rolled, q)
    assert not np.array_equal(got, want)
