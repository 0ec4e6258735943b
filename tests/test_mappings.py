"""The 11 CIM-Explorer mappings (cimgen/compiler/mappings.py) against REFERENCE.md section 2.

Three layers of checks:

1. For each mapping, its integer identity (the table's last column) computed
   by hand from the definitions: cell bits written out per mapping, LRS counts
   P of the driven rows, and the formula. This uses neither the recipe tables
   nor ``Mapping.encode``; a second assertion checks that ``encode`` lays the
   cells out exactly as the hand derivation does.
2. ``evaluate_recipe`` (the recipe tables) == x @ w for bipolar, ternary and
   {0, 1} bit-plane inputs.
3. On the golden machine with ideal cells: a POS read's raw column current is
   dI * P + HRS * n and the code is exactly P (HRS floor removed); a SYM read's
   HRS terms cancel and the code is exactly P_pos - P_neg.

Random cases come from ``np.random.default_rng(seed)``; every assertion
message names the seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from cimgen.compiler import default_adc, device_params, machine_params
from cimgen.compiler.mappings import MAPPINGS, evaluate_recipe
from cimgen.config import MAPPINGS as MAPPING_NAMES
from cimgen.config import XbarConfig, make_config
from golden_model import isa
from golden_model.crossbar import sample_device_map
from golden_model.isa import BIT_SIGNED, MASK_NEG, MASK_POS, Sense, Src
from golden_model.machine import ChipImage, Machine

SEEDS = list(range(8))
I64 = np.int64

# ---------------------------------------------------------------------------
# Hand derivations. Each returns (y by the identity, physical cell bits).
# w [F, O], x [B, F]; indicator arrays are int64 0/1.
# ---------------------------------------------------------------------------


def ind(a: np.ndarray) -> np.ndarray:
    return a.astype(I64)


def pairs(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """SYM column pairs: pos at 2c, neg at 2c + 1."""
    f, o = pos.shape
    out = np.zeros((f, 2 * o), I64)
    out[:, 0::2], out[:, 1::2] = pos, neg
    return out


def blocks(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """POS two-column mappings: first column block, then second."""
    return np.concatenate([a, b], axis=1)


def row_pairs(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Two-row mappings: row 2n, row 2n + 1."""
    f, c = top.shape
    out = np.zeros((2 * f, c), I64)
    out[0::2], out[1::2] = top, bottom
    return out


def bnn_i(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = ind(w == 1), ind(w == -1)
    v = ind(x == 1)
    d = v @ pos - v @ neg  # P_pos - P_neg
    return 2 * d - w.sum(axis=0), pairs(pos, neg)


def bnn_ii(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = ind(w == 1), ind(w == -1)
    v = ind(x == -1)
    d = v @ neg - v @ pos  # P_neg - P_pos
    return 2 * d + w.sum(axis=0), pairs(pos, neg)


def bnn_iii(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = ind(w == 1)
    p_plus, p_minus = ind(x == 1) @ g, ind(x == -1) @ g
    return 2 * (p_plus - p_minus) - x.sum(axis=1, dtype=I64)[:, None], g


def bnn_iv(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = ind(w == -1)
    p_plus, p_minus = ind(x == 1) @ g, ind(x == -1) @ g
    return -2 * (p_plus - p_minus) + x.sum(axis=1, dtype=I64)[:, None], g


def bnn_v(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cells = row_pairs(ind(w == 1), ind(w == -1))
    drive = np.zeros((x.shape[0], 2 * x.shape[1]), I64)
    drive[:, 0::2], drive[:, 1::2] = x == 1, x == -1
    p = drive @ cells  # matches
    n = w.shape[0]
    return 2 * p - n, cells


def quad(w: np.ndarray) -> np.ndarray:
    pos_row = pairs(ind(w == 1), ind(w == -1))  # [+, pos] = (w=+1), [+, neg] = (w=-1)
    neg_row = pairs(ind(w == -1), ind(w == 1))  # [-, pos] = (w=-1), [-, neg] = (w=+1)
    return row_pairs(pos_row, neg_row)


def differential_rows(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cells = quad(w)
    drive = np.zeros((x.shape[0], 2 * x.shape[1]), I64)
    drive[:, 0::2], drive[:, 1::2] = x == 1, x == -1  # i = 0 drives neither row
    counts = drive @ cells
    return counts[:, 0::2] - counts[:, 1::2], cells  # D = P_pos - P_neg


def tnn_ii(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = ind(w == 1), ind(w == -1)
    b0, b1 = ind(x != 0), ind(x == -1)
    assert (b0 - 2 * b1 == x).all()
    d0, d1 = b0 @ pos - b0 @ neg, b1 @ pos - b1 @ neg
    return d0 - 2 * d1, pairs(pos, neg)


def tnn_iii(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = ind(w == 1), ind(w == -1)
    u = x.astype(I64) + 1
    c0, c1 = u & 1, u >> 1
    d0, d1 = c0 @ pos - c0 @ neg, c1 @ pos - c1 @ neg
    return d0 + 2 * d1 - w.sum(axis=0), pairs(pos, neg)


def tnn_iv(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = ind(w < 0)  # two's complement of w in 2 bits: w = L - 2M
    low = ind(w != 0)
    assert (low - 2 * m == w).all()
    vp, vn = ind(x == 1), ind(x == -1)
    y = (vp @ low - vn @ low) - 2 * (vp @ m - vn @ m)
    return y, blocks(low, m)


def tnn_v(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = w.astype(I64) + 1  # w + 1 = L + 2M
    low, m = u & 1, u >> 1
    vp, vn = ind(x == 1), ind(x == -1)
    y = (vp @ low + 2 * (vp @ m)) - (vn @ low + 2 * (vn @ m)) - x.sum(axis=1, dtype=I64)[:, None]
    return y, blocks(low, m)


HAND: dict[str, tuple[Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], bool]] = {
    # name: (derivation, ternary domain)
    "BNN_I": (bnn_i, False),
    "BNN_II": (bnn_ii, False),
    "BNN_III": (bnn_iii, False),
    "BNN_IV": (bnn_iv, False),
    "BNN_V": (bnn_v, False),
    "BNN_VI": (differential_rows, False),
    "TNN_I": (differential_rows, True),
    "TNN_II": (tnn_ii, True),
    "TNN_III": (tnn_iii, True),
    "TNN_IV": (tnn_iv, True),
    "TNN_V": (tnn_v, True),
}


def test_every_mapping_has_a_hand_derivation() -> None:
    assert set(HAND) == set(MAPPING_NAMES) == set(MAPPINGS)


def exhaustive(f: int, values: tuple[int, ...]) -> np.ndarray:
    return np.array(list(itertools.product(values, repeat=f)), dtype=np.int8)


def domain(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input values, weight values) of the mapping's identity in REFERENCE.md."""
    ternary = HAND[name][1]
    return ((-1, 0, 1), (-1, 0, 1)) if ternary else ((-1, 1), (-1, 1))


@pytest.mark.parametrize("name", list(HAND))
def test_identity_exhaustive_small(name: str) -> None:
    """Every input vector and every weight column of length 3 in the domain."""
    xv, wv = domain(name)
    x = exhaustive(3, xv)
    w = exhaustive(3, wv).T.copy()  # every possible weight column, [3, O]
    fn = HAND[name][0]
    y, _ = fn(w, x)
    np.testing.assert_array_equal(y, x.astype(I64) @ w.astype(I64), err_msg=name)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(HAND))
def test_identity_and_cell_layout(name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    xv, wv = domain(name)
    f, o, b = int(rng.integers(1, 70)), int(rng.integers(1, 20)), 16
    w = rng.choice(wv, size=(f, o)).astype(np.int8)
    x = rng.choice(xv, size=(b, f)).astype(np.int8)
    y, cells = HAND[name][0](w, x)
    np.testing.assert_array_equal(y, x.astype(I64) @ w.astype(I64),
                                  err_msg=f"{name} identity, seed {seed}")
    np.testing.assert_array_equal(MAPPINGS[name].encode(w), cells,
                                  err_msg=f"{name} cell layout, seed {seed}")


@pytest.mark.parametrize("name", list(HAND))
def test_geometry(name: str) -> None:
    m = MAPPINGS[name]
    rows, cols = {"BNN_V": (2, 1), "BNN_VI": (2, 2), "TNN_I": (2, 2), "BNN_III": (1, 1),
                  "BNN_IV": (1, 1)}.get(name, (1, 2))
    assert (m.rows_per_input, m.cols_per_output) == (rows, cols)
    sym = {"BNN_I", "BNN_II", "BNN_VI", "TNN_I", "TNN_II", "TNN_III"}
    assert m.sense == ("SYM" if name in sym else "POS")
    reads = {"BNN_III": 2, "BNN_IV": 2, "TNN_II": 2, "TNN_III": 2, "TNN_IV": 2, "TNN_V": 2}
    assert len(m.general.reads) == reads.get(name, 1 if name not in ("BNN_I", "BNN_II") else 2)
    assert len(m.bipolar.reads) == reads.get(name, 1)
    # Ternary mappings store w = 0; the BNN ones other than the 2x2 / pair layouts cannot.
    assert m.supports_weight(0) == (name not in ("BNN_III", "BNN_IV", "BNN_V"))


# ---------------------------------------------------------------------------
# evaluate_recipe == x @ w
# ---------------------------------------------------------------------------

INPUT_KINDS = {"bipolar": (-1, 1), "ternary": (-1, 0, 1), "bitplane": (0, 1)}


@pytest.mark.parametrize("kind", list(INPUT_KINDS))
@pytest.mark.parametrize("name", list(HAND))
def test_evaluate_recipe_equals_matmul(name: str, kind: str) -> None:
    m = MAPPINGS[name]
    wv = (-1, 0, 1) if m.supports_weight(0) else (-1, 1)
    for seed in SEEDS:
        rng = np.random.default_rng(1000 + seed)
        f, o = int(rng.integers(1, 80)), int(rng.integers(1, 24))
        w = rng.choice(wv, size=(f, o)).astype(np.int8)
        x = rng.choice(INPUT_KINDS[kind], size=(12, f)).astype(np.int8)
        recipe_kind = "bipolar" if kind == "bipolar" else "general"
        got = evaluate_recipe(m, w, x, recipe_kind)
        np.testing.assert_array_equal(got, x.astype(I64) @ w.astype(I64),
                                      err_msg=f"{name} {kind} seed {1000 + seed}")


@pytest.mark.parametrize("name", list(HAND))
def test_general_recipe_on_all_zero_input(name: str) -> None:
    """The compiler uses the general recipe whenever an input can be 0: no row is
    driven, every term (codes, NDRV and Sum_w corrections) must cancel to 0."""
    m = MAPPINGS[name]
    w = np.array([[1, -1], [-1, 1], [1, 1]], np.int8)
    x = np.zeros((1, 3), np.int8)
    np.testing.assert_array_equal(evaluate_recipe(m, w, x, "general"), [[0, 0]])


# ---------------------------------------------------------------------------
# The golden machine with ideal cells: HRS floor removal and SYM cancellation
# ---------------------------------------------------------------------------


def tiny_image(cfg: XbarConfig, bits: np.ndarray, program: list[isa.Instr],
               dmem: np.ndarray) -> ChipImage:
    thr, rec = default_adc(cfg).padded(2 * cfg.rows)
    return ChipImage(machine_params(cfg), tuple(isa.encode(i) for i in program),
                     bits.astype(np.uint8), dmem.astype(np.int32), thr[None], rec[None],
                     sample_device_map(device_params(cfg)))


def read_once(cfg: XbarConfig, bits: np.ndarray, x: np.ndarray, sense: Sense, mask: int,
              lanes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Program ``bits`` [rows, cols], READ once with IN = x [B, rows].
    Returns (ADC input seen by the probe, CODE stored via ACC/STA, NDRV)."""
    rows = cfg.rows
    mk = isa.make
    prog = [mk("PROG", xbar=0, row=r, wsrc=r) for r in range(rows)]
    prog += [mk("INCLR"), mk("LDIN", dst=0, src=0, lanes=rows),
             mk("READ", xbar=0, row_off=0, col=0, mask_a=mask, sense=int(sense), adc=0,
                bit=BIT_SIGNED, lanes=lanes),
             mk("ACLR"), mk("ACC", src=int(Src.CODE), mul=1, addr=0, lanes=lanes),
             mk("STA", dst=rows, lanes=lanes),
             mk("ACLR"), mk("ACC", src=int(Src.NDRV), mul=1, lanes=1),
             mk("STA", dst=rows + lanes, lanes=1), mk("HALT")]
    seen: list[np.ndarray] = []
    mach = Machine(tiny_image(cfg, bits, prog, np.zeros(0)), x.shape[0],
                   probe=lambda _t, v: seen.append(v.copy()))
    mach.load_inputs(0, x)
    res = mach.run(0)
    assert res.error == isa.Err.NONE, res
    assert len(seen) == 1
    return seen[0], mach.dmem[:, rows:rows + lanes].astype(I64), \
        mach.dmem[:, rows + lanes].astype(I64)


@pytest.mark.parametrize("hrs_lrs", [(5.0, 50.0), (5.0, 30.0), (0.5, 4.0), (20.0, 25.0)])
def test_pos_read_removes_hrs_floor(hrs_lrs: tuple[float, float]) -> None:
    hrs, lrs = hrs_lrs
    cfg = make_config(None, {"rows": 64, "cols": 16, "num_xbars": 1, "hrs_ua": hrs,
                             "lrs_ua": lrs, "current_lsb_ua": 0.05})
    seed = 7
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(cfg.rows, cfg.cols))
    x = rng.choice((-1, 0, 1), size=(32, cfg.rows)).astype(np.int32)
    x[0] = 1  # every row driven
    x[1] = 0  # none
    adc_in, code, nd = read_once(cfg, bits, x, Sense.POS, MASK_POS, cfg.cols)
    v = (x == 1).astype(I64)
    p = v @ bits  # LRS cells among driven rows
    n = v.sum(axis=1)
    h, l_ = cfg.hrs_units, cfg.lrs_units
    raw = v @ np.where(bits == 1, l_, h)  # the column current of ideal cells
    np.testing.assert_array_equal(raw, (l_ - h) * p + h * n[:, None], err_msg=f"seed {seed}")
    # The HRS floor matters: without its removal the nearest count would be wrong.
    assert ((raw / (l_ - h)).round() != p).any()
    np.testing.assert_array_equal(adc_in, raw - h * n[:, None], err_msg=f"seed {seed}")
    np.testing.assert_array_equal(code, p, err_msg=f"seed {seed}")
    np.testing.assert_array_equal(nd, n, err_msg=f"seed {seed}")


@pytest.mark.parametrize("hrs_lrs", [(5.0, 50.0), (0.5, 4.0)])
def test_sym_read_cancels_hrs(hrs_lrs: tuple[float, float]) -> None:
    hrs, lrs = hrs_lrs
    cfg = make_config(None, {"rows": 64, "cols": 32, "num_xbars": 1, "hrs_ua": hrs,
                             "lrs_ua": lrs})
    seed = 11
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(cfg.rows, cfg.cols))
    x = rng.choice((-1, 0, 1), size=(32, cfg.rows)).astype(np.int32)
    x[0] = -1
    lanes = cfg.cols // 2
    adc_in, code, nd = read_once(cfg, bits, x, Sense.SYM, MASK_NEG, lanes)
    v = (x == -1).astype(I64)
    d = v @ bits[:, 0::2] - v @ bits[:, 1::2]
    h, l_ = cfg.hrs_units, cfg.lrs_units
    cur = np.where(bits == 1, l_, h)
    i_pos, i_neg = v @ cur[:, 0::2], v @ cur[:, 1::2]
    np.testing.assert_array_equal(adc_in, i_pos - i_neg, err_msg=f"seed {seed}")
    np.testing.assert_array_equal(adc_in, (l_ - h) * d, err_msg=f"seed {seed}")
    np.testing.assert_array_equal(code, d, err_msg=f"seed {seed}")
    np.testing.assert_array_equal(nd, v.sum(axis=1), err_msg=f"seed {seed}")


@pytest.mark.parametrize("name", list(HAND))
def test_recipe_on_machine_equals_matmul(name: str) -> None:
    """One tile compiled by hand from the recipe tables into READ/ACC, run on the
    golden machine with ideal cells: y == x @ w for ternary and bipolar inputs."""
    m = MAPPINGS[name]
    seed = 3
    rng = np.random.default_rng(seed)
    f, o = 20, 6
    cfg = make_config(None, {"rows": f * m.rows_per_input, "cols": o * m.cols_per_output,
                             "num_xbars": 1, "mapping": name})
    wv = (-1, 0, 1) if m.supports_weight(0) else (-1, 1)
    w = rng.choice(wv, size=(f, o)).astype(np.int8)
    for kind, xv in (("general", (-1, 0, 1)), ("bipolar", (-1, 1))):
        x = rng.choice(xv, size=(9, f)).astype(np.int32)
        rec = m.recipe(kind)
        bits = m.encode(w)
        mk = isa.make
        prog = [mk("PROG", xbar=0, row=r, wsrc=r) for r in range(bits.shape[0])]
        prog += [mk("INCLR"), mk("LDIN", dst=0, src=0, lanes=f), mk("ACLR")]
        for r, rs in enumerate(rec.reads):
            prog.append(mk("READ", xbar=0, mask_a=rs.mask_a, mask_b=rs.mask_b,
                           pair=int(m.rows_per_input == 2),
                           sense=int(Sense.SYM if m.sense == "SYM" else Sense.POS), adc=0,
                           bit=BIT_SIGNED, lanes=o * m.col_blocks))
            for t in rec.terms_of(r):
                src = Src.CODE if t.kind == "code" else Src.NDRV
                prog.append(mk("ACC", src=int(src), mul=t.coef, addr=t.block * o, lanes=o))
        sumw = rec.sumw * w.sum(axis=0).astype(I64)
        prog += [mk("ACC", src=int(Src.DMEM), mul=1, addr=f, lanes=o),
                 mk("STA", dst=f + o, lanes=o), mk("HALT")]
        dmem = np.concatenate([np.zeros(f, I64), sumw])
        mach = Machine(tiny_image(cfg, bits, prog, dmem), x.shape[0])
        mach.load_inputs(0, x)
        res = mach.run(0)
        assert res.error == isa.Err.NONE
        np.testing.assert_array_equal(mach.dmem[:, f + o:f + 2 * o], x.astype(I64) @ w,
                                      err_msg=f"{name} {kind} seed {seed}")
