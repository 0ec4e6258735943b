"""Networks larger than the chip: hardware loops, weight streaming, batches, costs.

- LOOP and IB-relative addressing against hand-derived results and cycles.
- A lifted loop (one pass, iterations as columns) == the same loop run
  iteration by iteration, on seeded random loop programs.
- Models whose layers are 1x to 32x the chip's capacity, odd sizes, every
  mapping: golden machine == reference inference on every logit, and the
  machine's counters of a run == the compiler's static report.
- Writes: every streamed tile at most once per batch (cell writes per inference
  <= tile cells / batch), none after setup when the model fits.
- Bad sizes exit 2 naming the key (and the largest batch that fits).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from netgen import random_input_stage, random_threshold, random_weights

from cimgen.cli import main as cli_main
from cimgen.compiler import compile_network, default_adc, machine_params
from cimgen.compiler.cost import Counts, energy
from cimgen.config import MAPPINGS, make_config
from cimgen.run import run_golden
from golden_model import isa
from golden_model.crossbar import DeviceParams, sample_device_map
from golden_model.ir import Conv2d, Dense, Flatten, Layer, MaxPool2d, Network
from golden_model.isa import Err, Src
from golden_model.machine import ChipImage, Machine
from golden_model.reference import forward_int

BINARY_ONLY = ("BNN_III", "BNN_IV", "BNN_V")
mk = isa.make


# --------------------------------------------------------------------- loops


def tiny_image(program: list[isa.Instr], dmem: np.ndarray, dmem_words: int = 256,
               vec_width: int = 4) -> ChipImage:
    cfg = make_config(None, {"rows": 8, "cols": 8, "num_xbars": 1, "dmem_words": dmem_words,
                             "vec_width": vec_width})
    thr, rec = default_adc(cfg).padded(2 * cfg.rows)
    dev = sample_device_map(DeviceParams(8, 8, 1, 5.0, 50.0, 0.05))
    return ChipImage(machine_params(cfg), tuple(isa.encode(i) for i in program),
                     np.zeros((1, 8), np.uint8), dmem.astype(np.int32), thr[None], rec[None],
                     dev)


def test_loop_with_relative_addresses_by_hand() -> None:
    # DMEM[100 + 4i + l] = 3 * DMEM[4i + l] + DMEM[200 + l] for i < 5, l < 2; then one
    # relative STA after the loop sees IB = 0 again.
    dmem = np.arange(256) * 7 % 23 - 11
    body = [mk("ACLR"), mk("ACC", src=int(Src.DMEM), mul=3, addr=0, lanes=2, rel=1),
            mk("ACC", src=int(Src.DMEM), mul=1, addr=200, lanes=2),
            mk("STA", dst=100, lanes=2, rel=1)]
    prog = [mk("LOOP", count=5, len=len(body), stride=4), *body,
            mk("STA", dst=50, lanes=2, rel=1), mk("HALT")]
    img = tiny_image(prog, dmem)
    want = dmem.copy()
    for i in range(5):
        want[100 + 4 * i:102 + 4 * i] = 3 * dmem[4 * i:4 * i + 2] + dmem[200:202]
    acc_last = 3 * dmem[16:18] + dmem[200:202]
    want[50:52] = acc_last
    p = img.params
    cyc = 1 + 5 * sum(isa.cost(i, p) for i in body) + isa.cost(prog[-2], p) + 1
    for lift in (True, False):
        m = Machine(img, 2, lift=lift)
        res = m.run(0)
        assert res.error == Err.NONE, res
        np.testing.assert_array_equal(m.dmem[0], want)
        np.testing.assert_array_equal(m.dmem[1], want)
        assert res.cycles == cyc and res.instructions == 1 + 5 * 4 + 2


def test_loop_faults_at_the_iteration_that_leaves_dmem() -> None:
    # stride 60: iteration 4 writes DMEM[240 + 20 ..] past the 256 words.
    body = [mk("ACLR"), mk("STA", dst=20, lanes=3, rel=1)]
    prog = [mk("LOOP", count=6, len=2, stride=60), *body, mk("HALT")]
    img = tiny_image(prog, np.zeros(0))
    for lift in (True, False):
        res = Machine(img, 1, lift=lift).run(0)
        assert res.error == Err.DMEM_RANGE and res.fault_pc == 2
        assert res.instructions == 1 + 2 * 4 + 1  # iterations 0..3, then ACLR of iteration 4


def test_nested_loop_is_illegal() -> None:
    prog = [mk("LOOP", count=2, len=2, stride=1), mk("NOP"), mk("LOOP", count=1, len=1),
            mk("HALT")]
    res = Machine(tiny_image(prog, np.zeros(0)), 1).run(0)
    assert res.error == Err.ILLEGAL and res.fault_pc == 2


def random_loop_program(rng: np.random.Generator) -> tuple[list[isa.Instr], np.ndarray]:
    """A loop whose body mixes relative and absolute DMEM operands, READs and
    vector ops; some bodies are independent across iterations, some are not
    (absolute writes, registers carried over, overlapping windows)."""
    count = int(rng.integers(2, 7))
    # Mostly disjoint iteration windows (offsets < 16); sometimes overlapping ones.
    stride = int(rng.integers(16, 30)) if rng.random() < 0.7 else int(rng.integers(4, 16))
    n = int(rng.integers(1, 5))
    body: list[isa.Instr] = []
    carry = rng.random() < 0.3  # registers live across iterations
    if not carry:
        body += [mk("INCLR"), mk("ACLR")]
    body.append(mk("LDIN", dst=0, src=int(rng.integers(0, 4)), lanes=n, rsrc=1))
    body.append(mk("READ", xbar=0, mask_a=int(rng.integers(1, 8)), sense=int(rng.integers(2)),
                   adc=0, bit=isa.BIT_SIGNED, lanes=min(n, 4)))
    body.append(mk("ACC", src=int(Src.CODE), mul=int(rng.integers(-3, 4)), lanes=min(n, 4)))
    rel = int(rng.integers(2))  # an absolute operand lies past every iteration's window
    body.append(mk("ACC", src=int(Src.DMEM), mul=int(rng.integers(-2, 3)),
                   addr=int(rng.integers(0, 8)) + (0 if rel else 200), lanes=n, rel=rel))
    rel = int(rng.integers(2))
    body.append(mk("VMAX", dst=int(rng.integers(0, 8)),
                   src=int(rng.integers(0, 8)) + (0 if rel else 200), lanes=n, rdst=1, rsrc=rel))
    rel = int(rng.random() < 0.85)
    body.append(mk("STA", dst=int(rng.integers(0, 12)) + (0 if rel else 200), lanes=n, rel=rel))
    prog = [mk("PROG", xbar=0, row=r, wsrc=0) for r in range(8)]
    prog += [mk("LOOP", count=count, len=len(body), stride=stride), *body, mk("HALT")]
    dmem = rng.integers(-3, 4, size=256)
    return prog, dmem


@pytest.mark.parametrize("seed", range(40))
def test_lifted_loop_equals_iteration_by_iteration(seed: int) -> None:
    print("seed", seed)
    rng = np.random.default_rng(seed)
    prog, dmem = random_loop_program(rng)
    img = tiny_image(prog, dmem, dmem_words=512)
    img.wmem[0] = rng.integers(0, 2, size=8)
    ms = [Machine(img, 3, lift=lift) for lift in (True, False)]
    for m in ms:
        m.dmem[:, :256] += np.arange(3)[:, None]  # the runs differ
    r1, r2 = (m.run(0) for m in ms)
    assert (r1.error, r1.cycles, r1.instructions, r1.reads) == \
        (r2.error, r2.cycles, r2.instructions, r2.reads)
    np.testing.assert_array_equal(ms[0].dmem, ms[1].dmem)
    np.testing.assert_array_equal(r1.read_charge, r2.read_charge)
    assert (r1.conversions, r1.lane_ops, r1.dmem_accesses) == \
        (r2.conversions, r2.lane_ops, r2.dmem_accesses)


def test_some_random_loops_are_lifted() -> None:
    lifted = 0
    for seed in range(40):
        prog, dmem = random_loop_program(np.random.default_rng(seed))
        m = Machine(tiny_image(prog, dmem, dmem_words=512), 1)
        m.run(0)
        lifted += any(v is not None for v in m._lift_ok.values())
    assert 5 <= lifted < 40, lifted


# ----------------------------------------------------------- big networks


def big_mlp(seed: int, sizes: tuple[int, ...], ternary: bool, kind: str) -> Network:
    rng = np.random.default_rng(seed)
    stage = random_input_stage(rng, (sizes[0],), kind)
    layers: list[Layer] = []
    bound = stage.values.max_abs
    for i in range(1, len(sizes)):
        layers.append(Dense(random_weights(rng, (sizes[i], sizes[i - 1]), ternary)))
        if i < len(sizes) - 1:
            layers.append(random_threshold(rng, sizes[i], sizes[i - 1] * bound, ternary))
            bound = 1
    return Network(stage, tuple(layers))


def big_cnn(seed: int, ternary: bool) -> Network:
    rng = np.random.default_rng(seed)
    stage = random_input_stage(rng, (3, 9, 9), "ternary" if ternary else "bipolar")
    layers: list[Layer] = [
        Conv2d(random_weights(rng, (13, 3, 3, 3), ternary), (1, 1), (1, 1, 1, 1), 0 if ternary
               else 1),
        random_threshold(rng, 13, 27, ternary),
        MaxPool2d((2, 2), (2, 2)),
        Conv2d(random_weights(rng, (21, 13, 3, 3), ternary), (2, 2), (0, 1, 1, 0), 1),
        random_threshold(rng, 21, 117, ternary),
        Flatten(),
        Dense(random_weights(rng, (11, 21 * 2 * 2), ternary)),
    ]
    return Network(stage, tuple(layers))


def inputs(net: Network, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.array(net.input.values.values), size=(n, *net.input.shape)
                      ).astype(np.int16)


def check_run(net: Network, over: dict[str, object], n: int, seed: int, what: str):  # type: ignore[no-untyped-def]
    comp = compile_network(net, make_config(None, over))
    q = inputs(net, n, seed)
    ref = forward_int(net, q)
    run = run_golden(comp, q)
    res, rep = run.result, comp.report
    assert res.error == Err.NONE and run.setup.error == Err.NONE, (what, res)
    diff = np.argwhere(run.logits != ref)
    assert diff.size == 0, f"{what}: {len(diff)} logits differ, first {diff[0].tolist()}"
    for key in ("cycles", "reads", "conversions", "lane_ops", "dmem_accesses", "progs"):
        assert getattr(res, key) == getattr(rep, f"{key}_per_batch"), (what, key)
    assert res.cells_written == rep.cell_writes_per_batch, what
    assert res.max_cell_writes == rep.max_cell_writes_per_batch, what
    assert run.setup.cycles == rep.setup_cycles, what
    return comp, run


def tile_cells(comp) -> int:  # type: ignore[no-untyped-def]
    return sum(t.bits.size for t in comp.tiles)


@pytest.mark.parametrize("mapping", MAPPINGS)
def test_mlp_1x_to_32x_the_chip(mapping: str) -> None:
    ternary = mapping not in BINARY_ONLY
    # Arrays of 24x20 (odd tiles for every mapping); the first layer alone is many times
    # the chip, the rest fit at most partly.
    net = big_mlp(3, (101, 77, 45, 10), ternary, "ternary" if ternary else "bipolar")
    for xbars, batch in ((1, 4), (3, 3), (7, 1)):
        over = {"mapping": mapping, "rows": 24, "cols": 20, "num_xbars": xbars,
                "batch": batch}
        comp, _run = check_run(net, over, 9, xbars, f"{mapping} x{xbars} b{batch}")
        rep = comp.report
        cap = xbars * 24 * 20
        assert tile_cells(comp) > cap, "the model must not fit"
        assert rep.phases > 1
        assert rep.cell_writes_per_inference <= tile_cells(comp) / batch + 1e-9
        assert rep.cell_writes_per_batch <= tile_cells(comp)


@pytest.mark.parametrize("mapping", ["BNN_I", "BNN_IV", "BNN_VI", "TNN_II", "TNN_V"])
def test_cnn_streamed_and_unsigned_inputs(mapping: str) -> None:
    ternary = mapping not in BINARY_ONLY
    net = big_cnn(5, ternary)
    check_run(net, {"mapping": mapping, "rows": 16, "cols": 12, "num_xbars": 2, "batch": 5},
              11, 1, f"cnn {mapping}")
    mlp = big_mlp(8, (40, 33, 7), ternary, "unsigned")
    check_run(mlp, {"mapping": mapping, "rows": 10, "cols": 8, "num_xbars": 2, "batch": 3}, 7,
              2, f"unsigned {mapping}")


def test_layer_32x_the_chip_and_a_second_run_on_the_same_machine() -> None:
    net = big_mlp(11, (256, 160, 10), False, "bipolar")
    over = {"mapping": "BNN_I", "rows": 32, "cols": 32, "num_xbars": 2, "batch": 4}
    comp, _ = check_run(net, over, 8, 0, "32x")
    assert tile_cells(comp) >= 32 * 2 * 32 * 32 * 0.9
    # Runs are repeatable on one chip: each ends in the state it started from.
    q = inputs(net, 8, 1)
    m = Machine(comp.image, comp.runs(8))
    m.run(comp.setup_entry)
    for part in (q, q[::-1]):
        comp.load_inputs(m, part)
        res = m.run(comp.infer_entry)
        assert res.cells_written == comp.report.cell_writes_per_batch
        np.testing.assert_array_equal(comp.output_logits(m.dmem, 8), forward_int(net, part))


def test_batch_does_not_change_logits_and_amortizes_writes() -> None:
    net = big_mlp(4, (90, 64, 10), True, "ternary")
    q = inputs(net, 12, 4)
    ref = forward_int(net, q)
    per_inf = []
    for batch in (1, 2, 4, 12):
        comp = compile_network(net, make_config(None, {"mapping": "TNN_I", "rows": 32,
                                                       "cols": 32, "num_xbars": 2,
                                                       "batch": batch}))
        np.testing.assert_array_equal(run_golden(comp, q).logits, ref)
        per_inf.append(comp.report.cycles_per_inference)
        assert comp.report.cell_writes_per_batch == \
            compile_network(net, make_config(None, {"mapping": "TNN_I", "rows": 32,
                                                    "cols": 32, "num_xbars": 2, "batch": 1})
                            ).report.cell_writes_per_batch
    assert all(a > b for a, b in itertools.pairwise(per_inf)), per_inf


def test_model_that_fits_writes_nothing_after_setup() -> None:
    net = big_mlp(2, (60, 30, 10), False, "bipolar")
    comp, run = check_run(net, {"num_xbars": 2, "rows": 64, "cols": 64, "batch": 4}, 8, 0,
                          "fits")
    assert comp.report.phases == 1 and comp.report.cell_writes_per_batch == 0
    assert run.result.cells_written == 0 and run.result.progs == 0
    assert comp.report.cell_writes_setup > 0 and comp.report.lifetime_hours is None


def test_auto_batch() -> None:
    small = big_mlp(2, (60, 30, 10), False, "bipolar")
    assert compile_network(small, make_config(None, {})).batch == 1  # fits: one per run
    big = big_mlp(2, (300, 200, 10), False, "bipolar")
    comp = compile_network(big, make_config(None, {"rows": 32, "cols": 32, "num_xbars": 2}))
    assert comp.batch == 256
    tight = compile_network(big, make_config(None, {"rows": 32, "cols": 32, "num_xbars": 2,
                                                    "dmem_words": 20_000}))
    # The largest power of two whose slots fit beside the constants.
    base = tight.input.base  # slot 0 starts after the constants
    assert base + tight.batch * tight.stride <= 20_000 < base + 2 * tight.batch * tight.stride
    assert tight.report.dmem_words_used <= 20_000 and tight.batch & (tight.batch - 1) == 0


def test_energy_formula_by_hand() -> None:
    cfg = make_config(None, {"clock_mhz": 200.0, "v_read": 0.25, "current_lsb_ua": 0.5,
                             "t_read": 3, "adc_bits": 4, "adc_fom_fj": 8.0, "v_write": 1.5,
                             "i_write_ua": 80.0, "t_write_pulse": 4, "write_verify_iters": 3,
                             "e_digital_pj": 0.2, "e_dmem_pj": 2.0, "cols": 64})
    c = Counts(reads=7, conversions=100, lane_ops=50, dmem_accesses=30, progs=2, wmem_rows=2,
               read_charge=1000.0)
    e = energy(cfg, c, cells_written=10)
    ns = 5.0  # 200 MHz
    assert e.read == pytest.approx(0.25 * 1000 * 0.5 * 3 * ns / 1000)
    assert e.adc == pytest.approx(100 * 8.0 * 16 / 1000)
    assert e.write == pytest.approx(10 * 3 * 1.5 * 80.0 * 4 * ns / 1000)
    assert e.digital == pytest.approx(50 * 0.2)
    assert e.memory == pytest.approx((30 + 2 * 2) * 2.0)


@pytest.mark.parametrize(("items", "msg"), [
    (["num_xbars=0"], "num_xbars: must be >= 1"),
    (["batch=4000"], "the largest batch that fits is"),
    (["dmem_words=100"], "dmem_words"),
    (["cols=1"], "rows/cols"),
])
def test_bad_sizes_exit_2(items: list[str], msg: str, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "o"
    args = ["compile", "examples/bnn_mlp.onnx", "-o", str(out)]
    for it in items:
        args += ["--set", it]
    rc = cli_main(args)
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and "Traceback" not in err, err
    assert not out.exists()


def test_machines_sharing_an_image_keep_their_own_state() -> None:
    """The decoded plan is cached on the chip image; every machine's crossbar
    cells, READ caches and probe stay its own."""

    prog = [mk("INCLR"), mk("LDIN", dst=0, src=0, lanes=8),
            mk("READ", xbar=0, mask_a=isa.MASK_POS, sense=0, adc=0, bit=isa.BIT_SIGNED,
               lanes=8),
            mk("ACLR"), mk("ACC", src=int(Src.CODE), mul=1, lanes=8), mk("STA", dst=20, lanes=8),
            mk("HALT")]
    img = tiny_image(prog, np.array([1, -1, 1, 1, -1, 1, 1, 1]))
    rng = np.random.default_rng(5)
    outs = []
    for bits in (rng.random((1, 8, 8)) < 0.5, rng.random((1, 8, 8)) < 0.5):
        seen: list[np.ndarray] = []
        shared = Machine(img, 1, probe=lambda _t, x, s=seen: s.append(x))
        shared.xbar_bits[:] = bits
        shared.run(0)
        fresh = Machine(dataclasses.replace(img, plan_cache={}), 1)
        fresh.xbar_bits[:] = bits
        fresh.run(0)
        np.testing.assert_array_equal(shared.dmem, fresh.dmem)
        assert len(seen) == 1  # this machine's probe saw its own READ
        outs.append(shared.dmem[0, 20:28].copy())
    assert not np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("coef_bits", [2, 3, 5, 8])
def test_cmac_by_hand(coef_bits: int) -> None:
    """CMAC: ACC[l] += sum_j C[l][j] * y[j] with C[l][j] the signed coef_bits-bit field
    j of weight-memory row coef + l (bits LSB first), y from DMEM; ACC wraps at 32 bits.
    Expected values by a plain loop over the bits."""
    print("coef_bits", coef_bits)
    rng = np.random.default_rng(coef_bits)
    cols, lanes = 16, 5
    n = cols // coef_bits
    wmem = rng.integers(0, 2, size=(9, cols)).astype(np.uint8)
    y = rng.integers(-2**31, 2**31, size=n) if coef_bits == 8 else rng.integers(-50, 50, n)
    dmem = np.zeros(64, np.int64)
    dmem[10:10 + n] = y
    prog = [mk("ACLR"), mk("ACC", src=int(Src.DMEM), mul=1, addr=30, lanes=lanes),
            mk("CMAC", src=10, coef=3, n=n, lanes=lanes), mk("STA", dst=40, lanes=lanes),
            mk("HALT")]
    cfg = make_config(None, {"rows": 8, "cols": cols, "num_xbars": 1, "dmem_words": 64,
                             "coef_bits": coef_bits, "vec_width": 3})
    thr, rec = default_adc(cfg).padded(2 * cfg.rows)
    dev = sample_device_map(DeviceParams(8, cols, 1, 5.0, 50.0, 0.05))
    dmem[30:30 + lanes] = rng.integers(-2**31, 2**31, size=lanes)
    img = ChipImage(machine_params(cfg), tuple(isa.encode(i) for i in prog), wmem,
                    dmem.astype(np.int32), thr[None], rec[None], dev)
    m = Machine(img, 1)
    res = m.run(0)
    assert res.error == Err.NONE
    # CMAC as the first ACC writer of a run, run twice on one machine: the
    # second run must not see the first run's ACC (a start clears it).
    only = [mk("CMAC", src=10, coef=3, n=n, lanes=lanes), mk("STA", dst=50, lanes=lanes),
            mk("HALT")]
    m2 = Machine(dataclasses.replace(img, program=tuple(isa.encode(i) for i in only),
                                     plan_cache={}), 1)
    for _ in range(2):
        assert m2.run(0).error == Err.NONE
    for lane in range(lanes):
        combo = 0
        for j in range(n):
            field = sum(int(wmem[3 + lane, j * coef_bits + b]) << b for b in range(coef_bits))
            combo += (field - (1 << coef_bits) if field >= 1 << (coef_bits - 1) else field) \
                * int(y[j])
        assert int(m2.dmem[0, 50 + lane]) == (combo + 2**31) % 2**32 - 2**31, lane
    for lane in range(lanes):
        total = int(dmem[30 + lane])
        for j in range(n):
            field = sum(int(wmem[3 + lane, j * coef_bits + b]) << b for b in range(coef_bits))
            if field >= 1 << (coef_bits - 1):
                field -= 1 << coef_bits
            total += field * int(y[j])
        total = (total + 2**31) % 2**32 - 2**31
        assert int(m.dmem[0, 40 + lane]) == total, lane
    assert res.cycles == 1 + (1 + -(-lanes // 3)) + (1 + -(-n // 3) + lanes) + \
        (1 + -(-lanes // 3)) + 1
