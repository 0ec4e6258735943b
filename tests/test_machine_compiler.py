"""Compiler + golden machine against reference inference, configs, the compile CLI.

- Ideal crossbars: for every mapping and every example model (200 digit images
  here, all 1,797 under ``-m slow``) and for random networks on arrays whose
  sizes are not multiples of the layers, the machine's logits equal
  golden_model.reference exactly, and its cycle count equals the compiler's
  report.
- Reprogramming (weights that do not fit at once): still exact; cell writes and
  write cycles are paid per inference.
- Non-ideal crossbars: seeded and reproducible byte for byte through
  ``cimgen compile``; stuck-at faults and variability land where the device
  map says (checked against numpy computations from the device map).
- Bad programs: every error code with its fault pc and cycle count.
- Bad configs and impossible compiles: exit 2 with one line.
- The CLI: compile -> run round trip, tampered/missing files, verify.

Random networks come from tests/netgen.py ``random_network(seed)``; the seed is
printed (``-s``) and named in every assertion message.
"""

from __future__ import annotations

import filecmp
import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from netgen import random_network

from cimgen.cli import main as cli_main
from cimgen.compiler import (
    Compiled,
    Compiler,
    calibration_batch,
    compile_network,
    default_adc,
    machine_params,
)
from cimgen.compiler.adc import layer_adc
from cimgen.compiler.emit import Emitter
from cimgen.config import MAPPINGS, make_config
from cimgen.frontend.datasets import digits_for
from cimgen.frontend.onnx_import import load_model
from cimgen.run import run_golden
from golden_model import isa
from golden_model.crossbar import STUCK_HRS, STUCK_LRS, DeviceParams, sample_device_map
from golden_model.errors import BadInputError
from golden_model.floatops import Quantizer
from golden_model.ir import (
    Conv2d,
    Dense,
    Flatten,
    InputStage,
    Layer,
    MaxPool2d,
    Network,
    Threshold,
    analyze,
    conv_out_hw,
)
from golden_model.isa import BIT_SIGNED, MASK_POS, Err, Instr, Sense, Src
from golden_model.machine import ChipImage, Machine
from golden_model.reference import forward_int, quantize_input

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MODELS = ("bnn_mlp", "tnn_mlp", "bnn_cnn")
BINARY_ONLY = ("BNN_III", "BNN_IV", "BNN_V")  # cannot store w = 0
I64 = np.int64


@functools.cache
def example(name: str) -> tuple[Network, np.ndarray, np.ndarray, np.ndarray]:
    """(network, float inputs, quantized inputs, reference logits) on all digits."""
    net = load_model(EXAMPLES / f"{name}.onnx")
    x, _ = digits_for(net.input.shape)
    q = quantize_input(net, x)
    ref = forward_int(net, q)
    assert isinstance(ref, np.ndarray)
    return net, x, q, ref


def has_zero_weights(net: Network) -> bool:
    return any(isinstance(layer, Dense | Conv2d) and bool((layer.weight == 0).any())
               for layer in net.layers)


def check_exact(comp: Compiled, q: np.ndarray, ref: np.ndarray, what: str) -> None:
    run = run_golden(comp, q)
    assert run.result.error == Err.NONE, (what, run.result)
    assert run.setup.error == Err.NONE, (what, run.setup)
    diff = np.argwhere(run.logits != ref)
    assert diff.size == 0, f"{what}: {len(diff)} logits differ, first at {diff[0].tolist()}"
    rep, res = comp.report, run.result
    # The machine's counters of one run == the compiler's walk of the program.
    assert res.cycles == rep.cycles_per_batch, what
    assert run.setup.cycles == rep.setup_cycles, what
    assert res.reads == rep.reads_per_batch, what
    assert res.conversions == rep.conversions_per_batch, what
    assert res.lane_ops == rep.lane_ops_per_batch, what
    assert res.dmem_accesses == rep.dmem_accesses_per_batch, what
    assert res.progs == rep.progs_per_batch, what
    assert res.cells_written == rep.cell_writes_per_batch, what
    assert res.max_cell_writes == rep.max_cell_writes_per_batch, what


# ===========================================================================
# Ideal crossbars: machine == reference
# ===========================================================================


@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("model", MODELS)
def test_examples_ideal_200_images(model: str, mapping: str) -> None:
    net, _, q, ref = example(model)
    cfg = make_config(None, {"mapping": mapping})
    if mapping in BINARY_ONLY and has_zero_weights(net):
        with pytest.raises(BadInputError, match=f"mapping {mapping} cannot store weight"):
            compile_network(net, cfg)
        return
    comp = compile_network(net, cfg)
    assert comp.report.phases == 1 and comp.report.cell_writes_per_inference == 0
    sel = slice(None, None, 9)  # 200 images spread over the set
    check_exact(comp, q[sel], ref[sel], f"{model} {mapping}")


@pytest.mark.slow
@pytest.mark.parametrize(("model", "mapping"),
                         [(m, mp) for m in MODELS for mp in MAPPINGS
                          if not (mp in BINARY_ONLY and m == "tnn_mlp")])
def test_examples_ideal_all_images(model: str, mapping: str) -> None:
    net, _, q, ref = example(model)
    assert not (mapping in BINARY_ONLY and has_zero_weights(net)), "parameter list is stale"
    comp = compile_network(net, make_config(None, {"mapping": mapping}))
    check_exact(comp, q, ref, f"{model} {mapping} all 1,797")


ARRAYS = [(32, 16, 256), (24, 40, 256), (17, 9, 256)]  # rows, cols, crossbars


def random_cases(seeds: range, rows: int, cols: int, xbars: int, mapping: str,
                 skip_too_big: bool = False) -> int:
    """Binary-only mappings get the binary-weight variant of each seed's network.
    With ``skip_too_big``, networks with a layer larger than all crossbars are skipped."""
    runs = 0
    for seed in seeds:
        net = random_network(seed, ternary=False if mapping in BINARY_ONLY else None)
        rng = np.random.default_rng(seed)
        q = rng.choice(np.array(net.input.values.values),
                       size=(6, *net.input.shape)).astype(np.int16)
        ref = forward_int(net, q)
        assert isinstance(ref, np.ndarray)
        cfg = make_config(None, {"mapping": mapping, "rows": rows, "cols": cols,
                                 "num_xbars": xbars, "seed": seed})
        what = f"random_network({seed}) {net.input.values.kind} {mapping} {rows}x{cols}"
        print(what)
        try:
            comp = compile_network(net, cfg)
        except BadInputError as e:
            if skip_too_big and "crossbars" in str(e):
                continue
            raise
        check_exact(comp, q, ref, what)
        runs += 1
    return runs


@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize(("rows", "cols", "xbars"), ARRAYS, ids=[f"{r}x{c}" for r, c, _ in ARRAYS])
def test_random_networks_odd_arrays(rows: int, cols: int, xbars: int, mapping: str) -> None:
    assert random_cases(range(8), rows, cols, xbars, mapping) == 8


@pytest.mark.slow
@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize(("rows", "cols", "xbars"), [*ARRAYS, (2, 2, 256), (5, 3, 256)])
def test_random_networks_sweep(rows: int, cols: int, xbars: int, mapping: str) -> None:
    seeds = range(8, 60)
    runs = random_cases(seeds, rows, cols, xbars, mapping, skip_too_big=True)
    assert runs >= 10, runs  # 2x2 arrays with 2x2 cell groups hold one weight each


def test_random_timing_configs_cycles_match_report() -> None:
    """Random array sizes, shared ADCs, vector widths and latencies: exact logits, and
    the machine's cycle counts equal the compiler's report (setup and inference)."""
    ran = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        mapping = str(rng.choice(MAPPINGS))
        net = random_network(seed, ternary=False if mapping in BINARY_ONLY else None)
        rows, cols = int(rng.integers(2, 40)), int(rng.integers(2, 40))
        over = {"mapping": mapping, "rows": rows, "cols": cols,
                "num_xbars": int(rng.integers(1, 257)),
                "adcs_per_xbar": int(rng.integers(0, cols + 1)),
                "vec_width": int(rng.integers(1, 17)), "t_read": int(rng.integers(1, 9)),
                "t_adc": int(rng.integers(1, 5)), "t_write": int(rng.integers(1, 500))}
        comp = compile_network(net, make_config(None, over))
        q = rng.choice(np.array(net.input.values.values),
                       size=(4, *net.input.shape)).astype(np.int16)
        ref = forward_int(net, q)
        assert isinstance(ref, np.ndarray)
        check_exact(comp, q, ref, f"random_network({seed}) {over}")
        ran += 1
    assert ran >= 30


def test_emitter_builds_what_isa_make_builds() -> None:
    """The compiler's cached instruction builder == isa.make, errors included."""
    em = Emitter()
    rng = np.random.default_rng(77)
    for _ in range(3000):
        spec = isa.OPS[int(rng.integers(len(isa.OPS)))]
        fields = {f.name: int(rng.integers(f.lo - 2, f.hi + 3)) for f in spec.fields
                  if rng.random() < 0.9}
        try:
            want: Instr | str = isa.make(spec.name, **fields)
        except isa.EncodeError as e:
            want = str(e)
        try:
            got: Instr | str = em.make(spec.name, **fields)
        except isa.EncodeError as e:
            got = str(e)
        assert got == want, (spec.name, fields)
    with pytest.raises(isa.EncodeError, match="unknown field"):
        em.make("STA", dst=1, lanes=2, bogus=3)


def strided_network(seed: int) -> Network:
    """Convs with strides 1-2, kernels 1x1..3x3, asymmetric pads of -1/+1, and max-pools
    with overlapping or non-dividing windows (tests/netgen.py has none of these)."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(6, 12)), int(rng.integers(6, 12))
    shape = (c, h, w)
    layers: list[Layer] = []
    for _ in range(int(rng.integers(1, 3))):
        o, kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        st = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pads = (int(rng.integers(3)), int(rng.integers(3)), int(rng.integers(3)),
                int(rng.integers(3)))
        oh, ow = conv_out_hw(shape[1], shape[2], kh, kw, st, pads)
        if oh < 1 or ow < 1:
            break
        layers.append(Conv2d(rng.choice((-1, 1), size=(o, shape[0], kh, kw)).astype(np.int8),
                             st, pads, int(rng.choice([-1, 1]))))
        shape = (o, oh, ow)
        if rng.integers(2) and min(oh, ow) >= 2:
            k = (int(rng.integers(1, min(3, oh) + 1)), int(rng.integers(1, min(3, ow) + 1)))
            s = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
            layers.append(MaxPool2d(k, s))
            shape = (o, (oh - k[0]) // s[0] + 1, (ow - k[1]) // s[1] + 1)
        layers.append(Threshold(rng.integers(-3, 4, size=(o, 1)).astype(np.int64),
                                rng.choice((-1, 1), size=o).astype(np.int8), 2, -1))
    layers += [Flatten(), Dense(rng.choice((-1, 1), size=(5, int(np.prod(shape))))
                                .astype(np.int8))]
    net = Network(InputStage((c, h, w), (), Quantizer("bipolar"), 2, -1), tuple(layers),
                  name=f"strided_{seed}")
    analyze(net)
    return net


@pytest.mark.parametrize("mapping", ["BNN_I", "BNN_V", "TNN_I", "TNN_IV"])
def test_strided_convs_and_overlapping_pools(mapping: str) -> None:
    for seed in range(15):
        net = strided_network(seed)
        q = np.random.default_rng(seed).choice((-1, 1), size=(6, *net.input.shape))
        q = q.astype(np.int16)
        ref = forward_int(net, q)
        assert isinstance(ref, np.ndarray)
        cfg = make_config(None, {"mapping": mapping, "rows": 24, "cols": 20, "num_xbars": 256})
        check_exact(compile_network(net, cfg), q, ref, f"strided_network({seed}) {mapping}")


def test_random_network_kinds_are_covered() -> None:
    kinds = {(random_network(s).input.values.kind,
              any(hasattr(layer, "pads") for layer in random_network(s).layers))
             for s in range(8)}
    assert {k for k, _ in kinds} == {"bipolar", "ternary", "unsigned"}, kinds
    assert {c for _, c in kinds} == {True, False}, kinds


def test_batch_split_does_not_matter() -> None:
    net, _, q, _ = example("bnn_cnn")
    comp = compile_network(net, make_config(None, {"mapping": "TNN_IV"}))
    whole = run_golden(comp, q[:60]).logits
    parts = np.concatenate([run_golden(comp, q[i:min(i + 7, 60)]).logits
                            for i in range(0, 60, 7)])
    np.testing.assert_array_equal(whole, parts)


# ===========================================================================
# Reprogramming
# ===========================================================================


def prog_count(comp: Compiled) -> int:
    words = comp.image.program[comp.infer_entry:]
    return sum(1 for w in words if (d := isa.decode(w)) is not None and d.op == "PROG")


@pytest.mark.parametrize("mapping", ["BNN_I", "BNN_III", "BNN_V", "TNN_I", "TNN_V"])
def test_streaming_examples_on_one_crossbar(mapping: str) -> None:
    """The digits MLP on a single 64x64 crossbar: every tile streams through it."""
    net, _, q, ref = example("bnn_mlp")
    base = {"mapping": mapping, "rows": 64, "cols": 64, "num_xbars": 1, "batch": 8}
    comp = compile_network(net, make_config(None, base))
    rep = comp.report
    assert rep.phases > 1 and rep.cell_writes_per_batch > 0, rep
    n_prog = prog_count(comp)
    assert n_prog == rep.progs_per_batch > 0
    sel = slice(None, None, 9)
    check_exact(comp, q[sel], ref[sel], f"streamed {mapping}")
    # The write cycles are in the per-batch cycle count: PROG costs t_write cycles.
    slow = compile_network(net, make_config(None, {**base, "t_write": 1000}))
    assert slow.report.cycles_per_batch - rep.cycles_per_batch == \
        n_prog * (1000 - comp.cfg.prog_cycles)


def test_streaming_cnn_and_random_networks() -> None:
    net, _, q, ref = example("bnn_cnn")
    comp = compile_network(net, make_config(None, {"rows": 64, "cols": 32, "num_xbars": 1,
                                                   "batch": 6}))
    assert comp.report.phases > 1
    check_exact(comp, q[::30], ref[::30], "bnn_cnn streamed")
    streamed = 0
    for seed in range(12):
        rnet = random_network(seed)
        rq = np.random.default_rng(seed).choice(np.array(rnet.input.values.values),
                                                size=(5, *rnet.input.shape)).astype(np.int16)
        c = compile_network(rnet, make_config(None, {"mapping": "TNN_II", "rows": 12,
                                                     "cols": 10, "seed": seed, "num_xbars": 1,
                                                     "batch": 2}))
        streamed += c.report.phases > 1
        ref_r = forward_int(rnet, rq)
        assert isinstance(ref_r, np.ndarray)
        check_exact(c, rq, ref_r, f"random_network({seed}) on one 12x10 crossbar")
    assert streamed >= 4, streamed


def test_no_reprogramming_when_everything_fits() -> None:
    net, _, _, _ = example("bnn_mlp")
    comp = compile_network(net, make_config(None, {"num_xbars": 16}))
    assert comp.report.phases == 1 and comp.report.cell_writes_per_inference == 0
    assert prog_count(comp) == 0 and comp.report.cell_writes_setup > 0
    assert comp.report.cell_writes_per_batch == 0 and comp.batch == 1


# ===========================================================================
# Non-ideal crossbars
# ===========================================================================

# Variability, stuck cells and a 6-bit ADC calibrated on the digits train split.
NONIDEAL = ["sigma_lrs_ua=8", "sigma_hrs_ua=3", "stuck_lrs_rate=0.01", "stuck_hrs_rate=0.01",
            "adc_bits=6", "adc_range=calib"]


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("cimgen")
    cmd = [exe] if exe else [sys.executable, "-m", "cimgen.cli"]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, cwd=cwd)


def sets(items: list[str]) -> list[str]:
    out: list[str] = []
    for it in items:
        out += ["--set", it]
    return out


def same_tree(a: Path, b: Path) -> list[str]:
    """Names of files that differ (or exist in only one) between two folders."""
    names = sorted({p.name for p in a.iterdir()} | {p.name for p in b.iterdir()})
    return [n for n in names if not ((a / n).is_file() and (b / n).is_file()
                                     and filecmp.cmp(a / n, b / n, shallow=False))]


def test_nonideal_compile_is_reproducible_byte_for_byte(tmp_path: Path) -> None:
    model = EXAMPLES / "bnn_cnn.onnx"
    x = example("bnn_cnn")[1][:100]
    np.save(tmp_path / "x.npy", x)
    outs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        r = run_cli("compile", model, "-o", tmp_path / name, *sets([*NONIDEAL, f"seed={seed}"]))
        assert r.returncode == 0, r.stderr
        r = run_cli("run", tmp_path / name, "--inputs", tmp_path / "x.npy", "--out",
                    tmp_path / f"y_{name}.npy")
        assert r.returncode == 0, r.stderr
        outs[name] = np.load(tmp_path / f"y_{name}.npy")
    assert same_tree(tmp_path / "a", tmp_path / "b") == [], "seed 7 twice"
    assert len(list((tmp_path / "a").iterdir())) == 13  # 12 files + manifest (format 3)
    np.testing.assert_array_equal(outs["a"], outs["b"])
    differ = same_tree(tmp_path / "a", tmp_path / "c")
    assert {"devmap_hrs.npy", "devmap_lrs.npy", "devmap_stuck.npy", "manifest.json"} <= \
        set(differ), differ
    assert "program.bin" not in differ and "wmem.npy" not in differ  # same program
    assert (outs["a"] != outs["c"]).any(), "seeds 7 and 8 give identical logits"
    ref = example("bnn_cnn")[3][:100]
    assert (outs["a"] != ref).any(), "non-ideal crossbar equals the reference exactly"


def test_nonideal_in_process_reproducible_and_seeded() -> None:
    net, _, q, _ = example("tnn_mlp")
    q = q[:200]
    over = {"mapping": "TNN_I", "sigma_lrs_ua": 10.0, "variability": "lognormal",
            "stuck_hrs_rate": 0.01, "adc_bits": 6, "adc_range": "calib", "seed": 3}

    def logits(seed: int) -> np.ndarray:
        cfg = make_config(None, {**over, "seed": seed})
        comp = compile_network(net, cfg, calibration_batch(net, cfg, None))
        return run_golden(comp, q).logits

    a, b, c = logits(3), logits(3), logits(4)
    np.testing.assert_array_equal(a, b, err_msg="seed 3 twice")
    assert (a != c).any(), "seeds 3 and 4"
    assert (a != example("tnn_mlp")[3][:200]).any(), "non-ideal equals the reference"


def single_dense(f: int, o: int, seed: int) -> Network:
    """x (bipolar, [f]) -> Dense [o, f] -> integer logits."""
    rng = np.random.default_rng(seed)
    w = rng.choice((-1, 1), size=(o, f)).astype(np.int8)
    stage = InputStage((f,), (), Quantizer("bipolar"), 2, -1)
    return Network(stage, (Dense(w),), name=f"dense_{seed}")


def bipolar_inputs(f: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 1).choice((-1, 1), size=(n, f)).astype(np.int16)


ALL_STUCK = {
    # mapping: (all cells LRS, all cells HRS) as functions of (Sum_w per output, Sum_i, N)
    "BNN_I": (lambda sw, si, n: -sw, lambda sw, si, n: -sw),
    "BNN_II": (lambda sw, si, n: sw, lambda sw, si, n: sw),
    "BNN_III": (lambda sw, si, n: si, lambda sw, si, n: -si),
    "BNN_IV": (lambda sw, si, n: -si, lambda sw, si, n: si),
    "BNN_V": (lambda sw, si, n: n + 0 * si, lambda sw, si, n: -n + 0 * si),
    "BNN_VI": (lambda sw, si, n: 0 * si, lambda sw, si, n: 0 * si),
    "TNN_IV": (lambda sw, si, n: -si, lambda sw, si, n: 0 * si),
    "TNN_V": (lambda sw, si, n: 2 * si, lambda sw, si, n: -si),
}


@pytest.mark.parametrize("mapping", list(ALL_STUCK))
@pytest.mark.parametrize("stuck", ["lrs", "hrs"])
def test_all_cells_stuck_by_hand(mapping: str, stuck: str) -> None:
    """Every cell stuck: the recipe's algebra with P = n (all LRS) or P = 0 (all HRS)."""
    f, o, seed = 20, 6, 31
    net = single_dense(f, o, seed)
    q = bipolar_inputs(f, 40, seed)
    cfg = make_config(None, {"mapping": mapping, "rows": 64, "cols": 32, "num_xbars": 2,
                             f"stuck_{stuck}_rate": 1.0, "seed": seed})
    got = run_golden(compile_network(net, cfg), q).logits
    w = net.layers[0].weight.astype(I64)  # type: ignore[union-attr]
    sw = w.sum(axis=1)[None, :]
    si = q.astype(I64).sum(axis=1)[:, None]
    want = ALL_STUCK[mapping][0 if stuck == "lrs" else 1](sw, si, f)
    np.testing.assert_array_equal(got, np.broadcast_to(want, got.shape),
                                  err_msg=f"{mapping} all {stuck}, seed {seed}")


@pytest.mark.parametrize("mapping", ["BNN_I", "BNN_III"])
def test_partial_stuck_faults_from_device_map(mapping: str) -> None:
    """Stuck cells where devmap.stuck says: effective cell bits, then the identity."""
    f, o, seed = 20, 6, 5
    net = single_dense(f, o, seed)
    q = bipolar_inputs(f, 64, seed)
    cfg = make_config(None, {"mapping": mapping, "rows": 32, "cols": 16, "num_xbars": 1,
                             "stuck_lrs_rate": 0.1, "stuck_hrs_rate": 0.1, "seed": seed})
    comp = compile_network(net, cfg)
    got = run_golden(comp, q).logits
    c = Compiler(net, cfg)
    c.compile()
    (tile,) = c.tiles[0]
    assert (tile.xbar, tile.row0, tile.col0) == (0, 0, 0)
    stuck = comp.image.devmap.stuck[0]
    w = net.layers[0].weight.T.astype(I64)  # type: ignore[union-attr]  # [F, O]
    v_pos, v_neg = (q == 1).astype(I64), (q == -1).astype(I64)

    def eff(bits: np.ndarray, r0: int, c0: int) -> np.ndarray:
        s = stuck[r0:r0 + bits.shape[0], c0:c0 + bits.shape[1]]
        return np.where(s == STUCK_LRS, 1, np.where(s == STUCK_HRS, 0, bits))

    if mapping == "BNN_I":
        cells = eff(np.stack([(w == 1), (w == -1)], axis=2).reshape(f, 2 * o).astype(I64), 0, 0)
        pos, neg = cells[:, 0::2], cells[:, 1::2]
        want = 2 * (v_pos @ pos - v_pos @ neg) - w.sum(axis=0)
    else:
        g = eff((w == 1).astype(I64), 0, 0)
        want = 2 * (v_pos @ g - v_neg @ g) - q.astype(I64).sum(axis=1)[:, None]
    assert (stuck[:f, :2 * o] != 0).any()
    np.testing.assert_array_equal(got, want, err_msg=f"{mapping} seed {seed}")
    assert (got != q.astype(I64) @ w).any(), "the faults changed nothing"


def test_variability_and_adc_from_device_map() -> None:
    """BNN_III (POS, one column per output) by hand from per-cell currents and the ADC."""
    f, o, seed = 40, 12, 9
    net = single_dense(f, o, seed)
    q = bipolar_inputs(f, 64, seed)
    cfg = make_config(None, {"mapping": "BNN_III", "rows": 48, "cols": 16, "num_xbars": 1,
                             "sigma_lrs_ua": 6.0, "sigma_hrs_ua": 2.0, "adc_bits": 6,
                             "seed": seed})
    comp = compile_network(net, cfg)
    got = run_golden(comp, q).logits
    dev = comp.image.devmap
    w = net.layers[0].weight.T  # type: ignore[union-attr]
    cur = np.where(w == 1, dev.lrs[0, :f, :o], dev.hrs[0, :f, :o]).astype(I64)
    adc = layer_adc(cfg, f)  # the MAX range of a layer driving f rows
    y = np.zeros((q.shape[0], o), I64)
    for sign, v in ((1, q == 1), (-1, q == -1)):
        v = v.astype(I64)
        n = v.sum(axis=1)[:, None]
        code = adc.convert(v @ cur - cfg.hrs_units * n)
        y += sign * (2 * code - n)
    np.testing.assert_array_equal(got, y, err_msg=f"seed {seed}")
    assert (got != q.astype(I64) @ w).any()


# ===========================================================================
# Bad programs on the machine
# ===========================================================================

P_ROWS, P_COLS, P_DMEM, P_WMEM = 16, 16, 64, 4


def bad_image(program: list[Instr | int]) -> ChipImage:
    cfg = make_config(None, {"rows": P_ROWS, "cols": P_COLS, "num_xbars": 2,
                             "dmem_words": P_DMEM, "wmem_words": 8, "adc_tables": 4})
    thr, rec = default_adc(cfg).padded(2 * cfg.rows)
    words = tuple(w if isinstance(w, int) else isa.encode(w) for w in program)
    dev = sample_device_map(DeviceParams(P_ROWS, P_COLS, 2, 5.0, 50.0, 0.05))
    return ChipImage(machine_params(cfg), words, np.zeros((P_WMEM, P_COLS), np.uint8),
                     np.zeros(0, np.int32), np.stack([thr, thr]), np.stack([rec, rec]), dev)


mk = isa.make
PREFIX = [mk("NOP"), mk("PROG", xbar=1, row=3, wsrc=2), mk("INCLR"),
          mk("LDIN", dst=0, src=0, lanes=16), mk("ACLR"),
          mk("READ", xbar=0, mask_a=MASK_POS, sense=int(Sense.SYM), adc=1, bit=BIT_SIGNED,
             lanes=8),
          mk("ACC", src=int(Src.DMEM), mul=1, addr=0, lanes=9)]

BAD: dict[str, tuple[Instr | int, Err]] = {
    "unknown-opcode": ((0x3F << isa.OPCODE_LSB) | 5, Err.ILLEGAL),
    "unknown-opcode-0x0E": (0x0E << isa.OPCODE_LSB, Err.ILLEGAL),
    "loop-count-0": (mk("LOOP", count=0, len=1), Err.ILLEGAL),
    "cmac-n-0": (mk("CMAC", src=0, coef=0, n=0, lanes=1), Err.VEC_RANGE),
    "cmac-n-wider-than-a-row": (mk("CMAC", src=0, coef=0, n=P_COLS // 8 + 1, lanes=1),
                                Err.VEC_RANGE),
    "cmac-dmem": (mk("CMAC", src=P_DMEM - 1, coef=0, n=2, lanes=1), Err.DMEM_RANGE),
    "cmac-wmem": (mk("CMAC", src=0, coef=P_WMEM - 1, n=1, lanes=2), Err.WMEM_RANGE),
    "loop-len-0": (mk("LOOP", count=3, len=0), Err.ILLEGAL),
    "acc-src-3": (mk("ACC", src=3, mul=1, lanes=1), Err.ILLEGAL),
    "act-k-0": (mk("ACT", k=0, lanes=1), Err.ILLEGAL),
    "read-bit-8": (mk("READ", bit=8, lanes=1), Err.ILLEGAL),
    "ldin-dmem": (mk("LDIN", src=P_DMEM - 3, lanes=4), Err.DMEM_RANGE),
    "sta-dmem": (mk("STA", dst=P_DMEM - 1, lanes=2), Err.DMEM_RANGE),
    "acc-dmem": (mk("ACC", src=int(Src.DMEM), mul=1, addr=P_DMEM, lanes=1), Err.DMEM_RANGE),
    "act-dst": (mk("ACT", k=1, tbl=0, dst=P_DMEM - 2, lanes=3), Err.DMEM_RANGE),
    "act-tbl": (mk("ACT", k=3, tbl=P_DMEM - 15, dst=0, lanes=4), Err.DMEM_RANGE),
    "vcopy-src": (mk("VCOPY", dst=0, src=P_DMEM - 4, lanes=5), Err.DMEM_RANGE),
    "vmax-dst": (mk("VMAX", dst=P_DMEM - 4, src=0, lanes=5), Err.DMEM_RANGE),
    "prog-xbar": (mk("PROG", xbar=2, row=0, wsrc=0), Err.XBAR_RANGE),
    "prog-row": (mk("PROG", xbar=0, row=P_ROWS, wsrc=0), Err.XBAR_RANGE),
    "read-xbar": (mk("READ", xbar=2, lanes=1), Err.XBAR_RANGE),
    "read-row-off": (mk("READ", row_off=P_ROWS, lanes=1), Err.XBAR_RANGE),
    "read-col-pos": (mk("READ", col=P_COLS - 3, lanes=4), Err.XBAR_RANGE),
    "read-col-sym": (mk("READ", col=1, sense=int(Sense.SYM), lanes=8), Err.XBAR_RANGE),
    "prog-wmem": (mk("PROG", xbar=0, row=0, wsrc=P_WMEM), Err.WMEM_RANGE),
    "lanes-0": (mk("STA", dst=0, lanes=0), Err.VEC_RANGE),
    "lanes-over-cols": (mk("VCOPY", dst=0, src=0, lanes=P_COLS + 1), Err.VEC_RANGE),
    "ldin-in-range": (mk("LDIN", dst=10, src=0, lanes=7), Err.VEC_RANGE),
    "acc-code-range": (mk("ACC", src=int(Src.CODE), mul=1, addr=10, lanes=7), Err.VEC_RANGE),
    "read-adc": (mk("READ", adc=2, lanes=1), Err.ADC_RANGE),
    "read-adc-beyond-tables": (mk("READ", adc=63, lanes=1), Err.ADC_RANGE),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_instruction_faults(case: str) -> None:
    bad, err = BAD[case]
    image = bad_image([*PREFIX, bad, mk("HALT")])
    mach = Machine(image, 3)
    before = mach.dmem.copy()
    res = mach.run(0)
    p = image.params
    assert res.error == err, (case, res)
    assert res.fault_pc == len(PREFIX) == res.pc
    assert res.instructions == len(PREFIX)
    assert res.cycles == sum(isa.cost(i, p) for i in PREFIX) + 1, case
    # The prefix's only DMEM write is none: the faulting instruction wrote nothing.
    np.testing.assert_array_equal(mach.dmem, before)


def test_pc_range_without_halt() -> None:
    image = bad_image(list(PREFIX))
    res = Machine(image, 2).run(0)
    assert (res.error, res.fault_pc, res.instructions) == (Err.PC_RANGE, len(PREFIX), len(PREFIX))
    assert res.cycles == sum(isa.cost(i, image.params) for i in PREFIX) + 1
    for entry in (len(PREFIX) + 5, -1):
        res = Machine(image, 2).run(entry)
        assert (res.error, res.fault_pc, res.cycles, res.instructions) == \
            (Err.PC_RANGE, entry, 1, 0)


def test_fault_codes_are_distinct_and_complete() -> None:
    seen = {err for _, err in BAD.values()} | {Err.PC_RANGE}
    assert seen == set(Err) - {Err.NONE}


def test_good_program_halts_with_cost_sum() -> None:
    image = bad_image([*PREFIX, mk("STA", dst=20, lanes=9), mk("HALT")])
    res = Machine(image, 2).run(0)
    prog = [*PREFIX, mk("STA", dst=20, lanes=9), mk("HALT")]
    assert res.error == Err.NONE and res.pc == len(prog) - 1
    assert res.cycles == sum(isa.cost(i, image.params) for i in prog)
    assert res.instructions == len(prog)
    # PREFIX programs one row whose WMEM image is all ones into blank cells.
    assert res.progs == 1 and res.reads == 1
    assert res.cells_written == 0  # WMEM holds zeros, the cells are blank: nothing changes


# ===========================================================================
# Bad configs and impossible compiles: exit 2 with one line
# ===========================================================================


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    rc = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cimgen: error: "), err
    assert "Traceback" not in err
    return lines[0]


TOML_BAD = {
    "unknown-key": ("rows = 128\nrowz = 3\n", "unknown key 'rowz'"),
    "wrong-type-int": ('rows = "many"\n', "rows: expected int"),
    "wrong-type-float-int": ("rows = 12.5\n", "rows: expected int"),
    "wrong-type-str": ("mapping = 3\n", "mapping: expected str"),
    "wrong-type-bool": ("seed = true\n", "seed: expected int"),
    "bad-toml": ("rows = = 3\n", "invalid TOML"),
    "hrs-above-lrs": ("hrs_ua = 60.0\nlrs_ua = 50.0\n", "hrs_ua/lrs_ua"),
    "mapping-name": ('mapping = "BNN_VII"\n', "mapping: 'BNN_VII' is not one of"),
}


@pytest.mark.parametrize("case", list(TOML_BAD))
def test_bad_toml_config(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, msg = TOML_BAD[case]
    cfg = tmp_path / "xbar.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "compile", EXAMPLES / "bnn_mlp.onnx", "-o", out, "--xbar", cfg)
    assert rc == 2, err
    line = one_error_line(err)
    assert msg in line and str(cfg) in line, line
    assert not out.exists()


SET_BAD = {
    "unknown-key": (["bogus=1"], "unknown key 'bogus'"),
    "not-key-value": (["rows"], "'rows' is not KEY=VALUE"),
    "not-a-number": (["rows=abc"], "rows: 'abc' is not a number"),
    "float-for-int": (["rows=1.5"], "rows: expected int"),
    "hrs-equal-lrs": (["hrs_ua=50", "lrs_ua=50"], "need 0 < hrs_ua < lrs_ua"),
    "hrs-above-lrs": (["hrs_ua=51"], "need 0 < hrs_ua < lrs_ua"),
    "negative-hrs": (["hrs_ua=-1"], "need 0 < hrs_ua < lrs_ua"),
    "lrs-rate-above-1": (["stuck_lrs_rate=1.5"], "stuck_lrs_rate: must be a probability"),
    "hrs-rate-negative": (["stuck_hrs_rate=-0.1"], "stuck_hrs_rate: must be a probability"),
    "rates-sum-above-1": (["stuck_lrs_rate=0.6", "stuck_hrs_rate=0.6"], "must be <= 1"),
    "adcs-above-cols": (["cols=64", "adcs_per_xbar=65"], "adcs_per_xbar: must be within"),
    "mapping-name": (["mapping=XNOR"], "mapping: 'XNOR' is not one of"),
    "variability": (["variability=uniform"], "variability: 'uniform'"),
    "adc-bits": (["adc_bits=13"], "adc_bits"),
    "adc-range": (["adc_range=auto"], "adc_range: 'auto'"),
    "zero-xbars": (["num_xbars=0"], "num_xbars: must be >= 1"),
    "too-many-xbars": (["num_xbars=300"], "num_xbars: at most 256"),
    "rows-too-small": (["rows=1"], "array size"),
    "negative-sigma": (["sigma_lrs_ua=-2"], "sigma_lrs_ua: must be >= 0"),
    "lsb-coarse": (["current_lsb_ua=100"], "too coarse"),
    "negative-seed": (["seed=-1"], "seed"),
    # Limits of the instruction fields and the ADC table memory:
    "dmem-beyond-isa": (["dmem_words=300000"], "dmem_words: at most 262144"),
    "wmem-beyond-isa": (["wmem_words=16777217"], "wmem_words: at most 16777216"),
    "adc-tables-beyond-isa": (["adc_tables=65"], "adc_tables: at most 64"),
    "adc-bits-beyond-table": (["rows=64", "adc_bits=8"], "an ADC table holds 2 * rows = 128"),
}


@pytest.mark.parametrize("case", list(SET_BAD))
def test_bad_set_config(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items, msg = SET_BAD[case]
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "compile", EXAMPLES / "bnn_mlp.onnx", "-o", out, *sets(items))
    assert rc == 2, err
    assert msg in one_error_line(err), err
    assert not out.exists()
    # verify reads the same config the same way
    rc, _, err = cli(capsys, "verify", EXAMPLES / "bnn_mlp.onnx", *sets(items))
    assert rc == 2 and msg in one_error_line(err)


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(capsys, "compile", EXAMPLES / "bnn_mlp.onnx", "-o", tmp_path / "o",
                     "--xbar", tmp_path / "nope.toml")
    assert rc == 2 and "no such file" in one_error_line(err)


IMPOSSIBLE = {
    "array-too-small": ("bnn_mlp", ["mapping=TNN_I", "cols=1"], "rows/cols"),
    "batch-too-big": ("bnn_mlp", ["batch=5000"], "the largest batch that fits is"),
    "prog-words": ("bnn_cnn", ["prog_words=500"], "program memory exhausted"),
    "dmem-words": ("bnn_mlp", ["dmem_words=300"], "data memory exhausted"),
    "wmem-words": ("bnn_mlp", ["wmem_words=20"], "weight memory exhausted"),
    "adc-tables": ("bnn_mlp", ["adc_tables=2"], "ADC tables"),
    "ternary-on-binary-mapping": ("tnn_mlp", ["mapping=BNN_V"], "cannot store weight value"),
    "num-xbars-zero": ("bnn_mlp", ["num_xbars=0"], "num_xbars: must be >= 1"),
}


@pytest.mark.parametrize("case", list(IMPOSSIBLE))
def test_impossible_compile(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                            ) -> None:
    model, items, msg = IMPOSSIBLE[case]
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "compile", EXAMPLES / f"{model}.onnx", "-o", out, *sets(items))
    assert rc == 2, err
    assert msg in one_error_line(err), err
    assert not out.exists()


def test_console_script_exit_codes(tmp_path: Path) -> None:
    """The real ``cimgen`` process: bad key, impossible layout, then a good compile."""
    model = EXAMPLES / "bnn_mlp.onnx"
    for items in (["rowz=3"], ["batch=100000"], ["stuck_lrs_rate=2"]):
        r = run_cli("compile", model, "-o", tmp_path / "o", *sets(items))
        assert r.returncode == 2, (items, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert r.stdout == ""
        assert not (tmp_path / "o").exists()


# ===========================================================================
# CLI round trips
# ===========================================================================


@pytest.fixture(scope="module")
def compiled_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("compiled")
    x = example("bnn_cnn")[1][::9]
    np.save(d / "x.npy", x)
    r = run_cli("compile", EXAMPLES / "bnn_cnn.onnx", "-o", d / "c", "--set", "mapping=TNN_III",
                "--set", "num_xbars=4")
    assert r.returncode == 0, r.stderr
    return d / "c", d / "x.npy"


def test_cli_compile_run_round_trip(compiled_dir: tuple[Path, Path], tmp_path: Path) -> None:
    cdir, xfile = compiled_dir
    man = json.loads((cdir / "manifest.json").read_text())
    assert man["config"]["mapping"] == "TNN_III" and man["report"]["phases"] == 1
    r = run_cli("run", cdir, "--inputs", xfile, "--out", tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr
    assert f"{man['report']['cycles_per_inference']:g} cycles per inference" in r.stdout
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, example("bnn_cnn")[3][::9])


def corrupt_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["program.bin", "wmem.npy", "dmem_init.npy", "adc_thr.npy",
                                  "devmap_lrs.npy", "devmap_stuck.npy", "model.onnx",
                                  "host.json", "host.npz"])
@pytest.mark.parametrize("how", ["tampered", "missing"])
def test_run_rejects_tampered_or_missing(compiled_dir: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], name: str,
                                         how: str) -> None:
    cdir, xfile = compiled_dir
    d = tmp_path / "c"
    shutil.copytree(cdir, d)
    if how == "missing":
        (d / name).unlink()
    else:
        corrupt_byte(d / name)
    out = tmp_path / "y.npy"
    rc, _, err = cli(capsys, "run", d, "--inputs", xfile, "--out", out)
    assert rc == 2, err
    line = one_error_line(err)
    assert name in line
    assert ("missing" if how == "missing" else "sha256") in line
    assert not out.exists()


@pytest.mark.parametrize("edit", ["files-entry-removed", "config-mapping", "config-num-xbars",
                                  "output-base", "infer-entry", "not-json", "not-object",
                                  "report-keys", "missing"])
def test_run_rejects_inconsistent_manifest(compiled_dir: tuple[Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str], edit: str) -> None:
    cdir, xfile = compiled_dir
    d = tmp_path / "c"
    shutil.copytree(cdir, d)
    mpath = d / "manifest.json"
    man = json.loads(mpath.read_text())
    if edit == "files-entry-removed":
        del man["files"]["devmap_hrs.npy"]
    elif edit == "config-mapping":
        man["config"]["mapping"] = "BNN_III"
    elif edit == "config-num-xbars":
        man["config"]["num_xbars"] = 2
    elif edit == "output-base":
        man["layout"]["output"]["base"] = 10**9
    elif edit == "infer-entry":
        man["layout"]["infer_entry"] = 10**7
    elif edit == "report-keys":
        man["report"]["surprise"] = 1
    mpath.write_text(json.dumps(man))
    if edit == "not-object":
        mpath.write_text("[1, 2]")
    if edit == "not-json":
        mpath.write_text("{")
    if edit == "missing":
        mpath.unlink()
    rc, _, err = cli(capsys, "run", d, "--inputs", xfile, "--out", tmp_path / "y.npy")
    assert rc == 2, err
    one_error_line(err)


def test_cli_verify_ideal_and_nonideal(capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0 when the machine equals what it must: the reference inference on an ideal
    chip, the independent non-ideal reference otherwise (issue 15)."""
    model = EXAMPLES / "bnn_mlp.onnx"
    rc, out, err = cli(capsys, "verify", model, "--set", "mapping=BNN_V")
    assert rc == 0, out + err
    assert table_value(out, "mismatching logit words") == "0", out
    assert table_value(out, "images with identical logits") == "1797/1797", out
    assert table_value(out, "crossbar") == "ideal", out
    assert table_value(out, "compared with") == "reference inference", out
    rc, out, err = cli(capsys, "verify", model, *sets([*NONIDEAL, "seed=11", "sigma_read_ua=1",
                                                       "wire_ohm=0.01"]))
    assert rc == 0, out + err
    assert table_value(out, "crossbar") == "non-ideal", out
    assert table_value(out, "compared with") == "independent non-ideal reference", out
    assert table_value(out, "mismatching logit words") == "0", out
    assert table_value(out, "images with identical logits") == "1797/1797", out
    ideal_equal = int(table_value(out, "logits equal to reference inference").split("/")[0])
    assert ideal_equal < 1797, out
    assert 0.5 < float(table_value(out, "prediction agreement")) <= 1.0, out
    assert 0.5 < float(table_value(out, "accuracy (machine)")) <= 1.0, out
    assert float(table_value(out, "accuracy (reference)")) > 0.9, out
    assert "verify: PASS" in out


def test_cli_verify_fails_on_a_wrong_adc_table(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler bug that only a non-ideal chip shows (layer 0 read through layer 1's
    calibrated ADC table): exit 1, with the first differing word."""
    from cimgen.compiler import codegen

    orig = codegen.Compiler.linear

    def wrong(self, st, *a, **k):  # type: ignore[no-untyped-def]
        if st.index == 0:
            self.adc_of[0] = 1
        return orig(self, st, *a, **k)

    monkeypatch.setattr(codegen.Compiler, "linear", wrong)
    rc, out, err = cli(capsys, "verify", EXAMPLES / "bnn_mlp.onnx", "--images", "40",
                       *sets(["mapping=BNN_III", "adc_bits=5", "adc_range=calib"]))
    assert rc == 1, out + err
    assert int(table_value(out, "mismatching logit words")) > 0, out
    assert table_value(out, "first mismatch").startswith("image "), out
    assert "verify: FAIL: golden machine != independent non-ideal reference" in out


def test_cli_verify_fails_on_a_wrong_recipe(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Ideal chip, compiler with a wrong recipe coefficient: exit 1."""
    from dataclasses import replace

    from cimgen.compiler import mappings

    m = mappings.MAPPINGS["BNN_I"]
    bad = replace(m, bipolar=mappings.Recipe(m.bipolar.reads, (
        mappings.Term("code", 3, 0), mappings.Term("sumw", -1))))
    monkeypatch.setitem(mappings.MAPPINGS, "BNN_I", bad)
    rc, out, err = cli(capsys, "verify", EXAMPLES / "bnn_cnn.onnx", "--images", "5")
    assert rc == 1, out + err
    assert table_value(out, "compared with") == "reference inference", out


def test_cli_verify_streamed_and_basis(capsys: pytest.CaptureFixture[str]) -> None:
    """Streamed weights with read disturb (loops run iteration by iteration) and read
    noise through lifted loops, and basis mode ideal and non-ideal: exit 0, each
    table naming what the machine was compared with."""
    model = EXAMPLES / "bnn_mlp.onnx"
    small = ["rows=64", "cols=64", "num_xbars=1", "batch=8"]
    for extra in (["sigma_read_ua=2", "read_noise=column"],
                  ["disturb_onset_reads=20", "disturb_age_reads=7", "wire_ohm=0.5"]):
        rc, out, err = cli(capsys, "verify", model, "--images", "20",
                           *sets([*small, "seed=3", *extra]))
        assert rc == 0, out + err
        assert table_value(out, "compared with") == "independent non-ideal reference", out
        assert table_value(out, "mismatching logit words") == "0", out
        assert int(table_value(out, "weight residencies")) > 1, out
    rc, out, err = cli(capsys, "verify", model, "--images", "20",
                       *sets(["basis_count=12", "coef_bits=6"]))
    assert rc == 0, out + err
    assert table_value(out, "compared with") == "basis-form reference (golden_model.basis)", out
    rc, out, err = cli(capsys, "verify", model, "--images", "20",
                       *sets(["basis_count=12", "coef_bits=6", "sigma_read_ua=2",
                              "adc_bits=5"]))
    assert rc == 0, out + err
    assert table_value(out, "compared with") == "independent non-ideal reference", out
    assert "verify: PASS" in out


def test_cli_verify_fails_in_basis_mode(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A basis-mode compiler bug (every CMAC reads the products one word too far):
    exit 1 on an ideal chip (vs the basis form's reference) and a non-ideal one."""
    from cimgen.compiler import codegen

    class Shifted:
        def __init__(self, em):  # type: ignore[no-untyped-def]
            self.em = em

        def __call__(self, op, *a, **k):  # type: ignore[no-untyped-def]
            if op == "CMAC":
                k["src"] += 1
            return self.em(op, *a, **k)

        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(self.em, name)

    def init(self, *a, **k):  # type: ignore[no-untyped-def]
        orig_init(self, *a, **k)
        self.emit = Shifted(self.emit)

    orig_init = codegen.Compiler.__init__
    monkeypatch.setattr(codegen.Compiler, "__init__", init)
    model = EXAMPLES / "bnn_mlp.onnx"
    for extra in ([], ["sigma_read_ua=2"]):
        rc, out, err = cli(capsys, "verify", model, "--images", "8",
                           *sets(["basis_count=12", "coef_bits=6", *extra]))
        assert rc == 1, out + err
        assert "verify: FAIL" in out, out


@pytest.mark.parametrize("items", [["read_noise=pink"], ["wire_ohm=-1"], ["v_read=0"],
                                   ["disturb_age_reads=-2"]])
def test_cli_verify_bad_physics_keys_exit_2(capsys: pytest.CaptureFixture[str],
                                           items: list[str]) -> None:
    rc, out, err = cli(capsys, "verify", EXAMPLES / "bnn_mlp.onnx", "--images", "2",
                       *sets(items))
    assert rc == 2, out + err
    assert items[0].split("=")[0] in one_error_line(err) and "Traceback" not in err


@pytest.mark.parametrize(("items", "key"), [
    (["sigma_read_ua=1"], "sigma_read_ua"), (["wire_ohm=0.1"], "wire_ohm"),
    (["disturb_onset_reads=100"], "disturb_onset_reads")])
def test_cli_rtl_refuses_physics(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 items: list[str], key: str) -> None:
    """The RTL crossbar reads ideal integer currents: --rtl and vector sets refuse read
    noise, IR drop and read disturb with exit 2 naming the key, before building."""
    rc, out, err = cli(capsys, "verify", EXAMPLES / "bnn_mlp.onnx", "--rtl", "--images", "2",
                       *sets(items))
    assert rc == 2, out + err
    assert key in one_error_line(err) and "--rtl" in err
    d = tmp_path / "c"
    rc, _, err = cli(capsys, "compile", EXAMPLES / "bnn_mlp.onnx", "-o", d, *sets(items))
    assert rc == 0, err
    x, _ = digits_for((64,), "test")
    np.save(tmp_path / "x.npy", x[:2])
    rc, _, err = cli(capsys, "run", d, "--rtl", "--inputs", tmp_path / "x.npy", "--out",
                     tmp_path / "y.npy")
    assert rc == 2 and key in one_error_line(err)
    rc, _, err = cli(capsys, "vectors", EXAMPLES / "bnn_mlp.onnx", "-o", tmp_path / "v",
                     "--inputs", tmp_path / "x.npy", *sets(items))
    assert rc == 2 and key in one_error_line(err)
    assert not (tmp_path / "v").exists()


def table_value(out: str, key: str) -> str:
    for line in out.splitlines():
        if line.startswith(key + " "):
            return line[len(key):].strip()
    raise AssertionError(f"no '{key}' row in:\n{out}")
