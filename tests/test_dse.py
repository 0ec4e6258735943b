"""Design-space exploration (issue 6): sweep files, engine, determinism, resume, errors.

Tiny sweeps on the digits BNN MLP with a subset of the test split keep this
file fast; the committed sweeps in scripts/sweeps/ are the full studies.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cimgen.cli import main
from cimgen.compiler import compile_network
from cimgen.config import make_config
from cimgen.dse import Progress, load_sweep, run_machine, run_sweep
from cimgen.frontend.datasets import digits_for
from cimgen.frontend.onnx_import import load_model
from golden_model.errors import BadInputError
from golden_model.reference import forward_int, quantize_input

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BNN = EXAMPLES / "bnn_mlp.onnx"
TNN = EXAMPLES / "tnn_mlp.onnx"

NOISY = """
title = "noisy"
model = "{model}"
dataset = "digits"
images = 48
seeds = [3, 11]

[fixed]
hrs_ua = 5.0
lrs_ua = 30.0
adc_bits = 5
sigma_read_ua = 1.0

[sweep]
mapping = ["BNN_I", "BNN_III", "TNN_IV"]
sigma_hrs_ua = [0.0, 6.0]
adc_range = ["max", "calib"]
"""


def write(tmp: Path, text: str, name: str = "sweep.toml", **kw: object) -> Path:
    p = tmp / name
    p.write_text(text.format(model=BNN.as_posix(), **kw))
    return p


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_ideal_points_agree_with_reference(tmp_path: Path) -> None:
    sw = load_sweep(write(tmp_path, """
model = "{model}"
dataset = "digits"
images = 40
seeds = [0, 7]
[fixed]
adc_range = "calib"
[sweep]
mapping = ["BNN_I", "BNN_II", "BNN_III", "BNN_IV", "BNN_V", "BNN_VI", "TNN_II", "TNN_V"]
"""))
    res = run_sweep(sw, tmp_path / "out")
    net = load_model(BNN)
    x, y = digits_for(net.input.shape, "test")
    ref = forward_int(net, quantize_input(net, x[:40])).argmax(axis=1)
    rows = read_csv(res.csv_path)
    assert len(rows) == 8 * 2
    assert res.ideal_accuracy == pytest.approx(float((ref == y[:40]).mean()))
    for r in rows:
        assert float(r["agreement"]) == 1.0, r
        assert float(r["accuracy"]) == pytest.approx(res.ideal_accuracy, abs=1e-6)
        assert int(r["images"]) == 40
        assert float(r["cycles_per_inference"]) > 0
        assert int(r["cell_writes_setup"]) > 0 and float(r["cell_writes_per_inference"]) == 0
    assert list(rows[0]) == ["point", "mapping", "seed", "images", "accuracy", "agreement",
                             "cycles_per_inference", "cell_writes_setup",
                             "cell_writes_per_inference", "batch", "energy_pj_per_inference",
                             "latency_ns_per_inference", "edp_pj_ns"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert summary.count("\n| ") == 1 + 8  # header + one row per point


def test_one_job_two_jobs_and_dask_are_identical(tmp_path: Path) -> None:
    sw = load_sweep(write(tmp_path, NOISY))
    assert sw.n_points == 12
    one = run_sweep(sw, tmp_path / "one")
    two = run_sweep(sw, tmp_path / "two", jobs=2)
    text = one.csv_path.read_bytes()
    assert two.csv_path.read_bytes() == text
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        dk = run_sweep(sw, tmp_path / "dask", dask=cluster.scheduler_address)
    assert dk.csv_path.read_bytes() == text
    rows = read_csv(one.csv_path)
    assert [int(r["point"]) for r in rows] == sorted(int(r["point"]) for r in rows)
    acc = np.array([float(r["accuracy"]) for r in rows])
    assert acc.min() < acc.max()  # the noise does something
    # Seeds give different chips: at least one noisy point differs between seeds.
    by = {(r["point"], r["seed"]): r["accuracy"] for r in rows}
    assert any(by[(p, "3")] != by[(p, "11")] for p, _ in by)
    # Calibrated ranges beat the full-scale range at 5 bits on this small layer.
    mean = {}
    for r in rows:
        mean.setdefault(r["adc_range"], []).append(float(r["accuracy"]))
    assert np.mean(mean["calib"]) > np.mean(mean["max"])


def test_resume_after_crash(tmp_path: Path) -> None:
    sw = load_sweep(write(tmp_path, NOISY))
    full = run_sweep(sw, tmp_path / "full").csv_path.read_bytes()

    class CrashError(Exception):
        pass

    def crash_after_5(k: int, total: int, index: int, rows: list[list[str]]) -> None:
        if k == 5:
            raise CrashError

    out = tmp_path / "crashed"
    with pytest.raises(CrashError):
        run_sweep(sw, out, jobs=2, progress=crash_after_5)
    rows = read_csv(out / "results.csv")
    assert len({r["point"] for r in rows}) == 5 and len(rows) == 10  # flushed per point
    with open(out / "results.csv", "a") as f:
        f.write("11,TNN_IV,6.0,calib,3,48,0.5")  # a row cut short by the crash
    with pytest.raises(BadInputError, match="--resume"):
        run_sweep(sw, out)
    res = run_sweep(sw, out, resume=True)
    assert (res.points_resumed, res.points_run) == (5, 7)
    assert res.csv_path.read_bytes() == full
    again = run_sweep(sw, out, resume=True)
    assert again.points_run == 0 and again.csv_path.read_bytes() == full
    # A different sweep cannot resume into that folder.
    other = load_sweep(write(tmp_path, NOISY.replace("[3, 11]", "[3, 12]"), "other.toml"))
    with pytest.raises(BadInputError, match="seeds differs"):
        run_sweep(other, out, resume=True)


def test_read_noise_is_independent_of_batching() -> None:
    net = load_model(BNN)
    x, _ = digits_for(net.input.shape, "test")
    q = quantize_input(net, x[:30])
    ref = forward_int(net, q)
    cfg = make_config(None, {"mapping": "BNN_III", "sigma_read_ua": 3.0, "seed": 5})
    comp = compile_network(net, cfg)
    whole, _ = run_machine(comp, q, chunk=512)
    pieces, _ = run_machine(comp, q, chunk=7)
    assert np.array_equal(whole, pieces)
    assert not np.array_equal(whole, ref)  # noise on: logits move
    again, _ = run_machine(compile_network(net, cfg), q)
    assert np.array_equal(whole, again)  # reproducible
    other, _ = run_machine(compile_network(net, make_config(None, {
        "mapping": "BNN_III", "sigma_read_ua": 3.0, "seed": 6})), q)
    assert not np.array_equal(whole, other)
    ideal, _ = run_machine(compile_network(net, make_config(None, {"mapping": "BNN_III",
                                                                    "seed": 5})), q, chunk=7)
    assert np.array_equal(ideal, ref)


def test_inputs_labels_and_calib_files(tmp_path: Path) -> None:
    net = load_model(BNN)
    x, y = digits_for(net.input.shape, "test")
    xt, _ = digits_for(net.input.shape, "train")
    np.save(tmp_path / "x.npy", x[:25])
    np.save(tmp_path / "y.npy", y[:25])
    np.save(tmp_path / "xc.npy", xt[:32])
    shutil.copy(BNN, tmp_path / "m.onnx")
    sw = load_sweep(write(tmp_path, """
model = "m.onnx"
inputs = "x.npy"
labels = "y.npy"
calib = "xc.npy"
seeds = [1]
[fixed]
mapping = "BNN_VI"
adc_range = "calib"
[sweep]
adc_bits = [0, 3, 6]
"""))
    buf = io.StringIO()
    res = run_sweep(sw, tmp_path / "out", progress=Progress(sw, stream=buf, tty=False))
    rows = read_csv(res.csv_path)
    assert [r["adc_bits"] for r in rows] == ["0", "3", "6"]
    assert rows[0]["agreement"] == "1.000000"
    log = buf.getvalue().splitlines()
    assert len(log) == 3 and log[0].startswith("dse: [1/3] point 0 (adc_bits=0): accuracy")
    bar = io.StringIO()
    Progress(sw, stream=bar, tty=True)(2, 3, 1, res_rows_of(res, 1))
    assert bar.getvalue().startswith("\rdse [####################..........] 2/3 points")


def res_rows_of(res: object, point: int) -> list[list[str]]:
    return [list(r.values()) for r in res.rows if r["point"] == str(point)]  # type: ignore[attr-defined]


def test_plots_and_summary(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    sw = load_sweep(write(tmp_path, """
model = "{model}"
dataset = "digits"
images = 20
seeds = [0, 1]
[fixed]
hrs_ua = 5.0
lrs_ua = 30.0
[sweep]
mapping = ["BNN_I", "BNN_V"]
sigma_lrs_ua = [0, 8]
adc_range = ["max", "calib"]
adc_bits = [0, 4]
"""))
    res = run_sweep(sw, tmp_path / "out")
    names = sorted(p.name for p in res.files)
    assert names == ["accuracy_vs_adc_bits.png", "accuracy_vs_adc_range.png",
                     "accuracy_vs_sigma_lrs_ua.png", "results.csv", "summary.md"]
    for p in res.files:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert p.stat().st_size < 200_000
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "![accuracy_vs_adc_bits](accuracy_vs_adc_bits.png)" in md
    assert "ideal accuracy (reference inference = ideal crossbar)" in md


# ------------------------------------------------------------- bad sweep files

GOOD = """
model = "{model}"
dataset = "digits"
seeds = [0]
[sweep]
mapping = ["BNN_I"]
"""

BAD = [
    ("unknown top key", 'colour = "red"\n' + GOOD, "unknown key 'colour'"),
    ("unknown config key", GOOD.replace("[sweep]", "[sweep]\nadc_bitz = [3]"),
     "sweep.adc_bitz: unknown config key"),
    ("unknown fixed key", GOOD + "[fixed]\nrowz = 3\n", "fixed.rowz: unknown config key"),
    ("empty list", GOOD.replace('["BNN_I"]', "[]"), "sweep.mapping: empty list"),
    ("not a list", GOOD.replace('["BNN_I"]', '"BNN_I"'), "expected a list of values"),
    ("empty seeds", GOOD.replace("[0]", "[]"), "seeds: expected a non-empty list"),
    ("no seeds", GOOD.replace("seeds = [0]", ""), "missing key 'seeds'"),
    ("negative seed", GOOD.replace("[0]", "[-1]"), "seeds: -1 is not"),
    ("duplicate values", GOOD.replace('["BNN_I"]', '["BNN_I", "BNN_I"]'), "duplicate"),
    ("missing model", GOOD.replace("{model}", "nope.onnx"), "model: no such file 'nope.onnx'"),
    ("no model key", GOOD.replace('model = "{model}"', ""), "missing key 'model'"),
    ("bad mapping", GOOD.replace('["BNN_I"]', '["BNN_I", "BNN_IX"]'),
     "point 1 (mapping=BNN_IX): mapping: 'BNN_IX' is not one of"),
    ("bad type", GOOD + "[fixed]\nadc_bits = \"four\"\n", "fixed.adc_bits: expected int"),
    ("bad value", GOOD.replace("[sweep]", "[sweep]\nadc_range = [\"max\", \"median\"]"),
     "adc_range: 'median' is not one of max, calib, cimx_max, cimx_calib"),
    ("bad combination", GOOD.replace("[sweep]", "[sweep]\nhrs_ua = [5.0, 60.0]"),
     "point 1 (hrs_ua=60.0, mapping=BNN_I): hrs_ua/lrs_ua: need 0 < hrs_ua < lrs_ua"),
    ("seed in sweep", GOOD.replace("[sweep]", "[sweep]\nseed = [1, 2]"),
     "give the seeds as the top-level list"),
    ("fixed and swept", GOOD + "[fixed]\nmapping = \"BNN_II\"\n", "both fixed and swept"),
    ("no data", GOOD.replace('dataset = "digits"', ""), "give either dataset"),
    ("bad dataset", GOOD.replace('"digits"', '"mnist"'), "dataset: 'mnist' is not one of"),
    ("too many images", "images = 451\n" + GOOD, "images = 451 but the data has 450"),
    ("zero images", "images = 0\n" + GOOD, "images: expected a positive integer"),
    ("labels wrong length", GOOD.replace('dataset = "digits"',
                                         'inputs = "x.npy"\nlabels = "y_short.npy"'),
     "labels shape [9] does not match 10 inputs"),
    ("inputs without labels", GOOD.replace('dataset = "digits"', 'inputs = "x.npy"'),
     "inputs: needs labels"),
    ("calib without file", GOOD.replace('dataset = "digits"',
                                        'inputs = "x.npy"\nlabels = "y.npy"')
     + "[fixed]\nadc_range = \"calib\"\nadc_bits = 4\n",
     "a calibrated adc_range needs calibration"),
    ("weights a mapping cannot hold",
     GOOD.replace("{model}", "tnn.onnx").replace('"BNN_I"', '"BNN_I", "BNN_III"'),
     "point 1 (mapping=BNN_III): layer 0 (Dense): mapping BNN_III cannot store weight"),
    ("batch larger than DMEM holds",
     GOOD.replace("[sweep]", "[sweep]\nbatch = [1, 100000]"),
     "batch: at most 65535"),
    ("plot of an unswept key", 'plots = ["adc_bits"]\n' + GOOD,
     "plots: 'adc_bits' is not a swept key"),
    ("bad toml", "model = [", "invalid TOML"),
]


@pytest.fixture
def bad_dir(tmp_path: Path) -> Path:
    net = load_model(BNN)
    x, y = digits_for(net.input.shape, "test")
    np.save(tmp_path / "x.npy", x[:10])
    np.save(tmp_path / "y.npy", y[:10])
    np.save(tmp_path / "y_short.npy", y[:9])
    shutil.copy(TNN, tmp_path / "tnn.onnx")
    return tmp_path


@pytest.mark.parametrize(("text", "msg"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_sweep_exits_2(bad_dir: Path, text: str, msg: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    p = bad_dir / "sweep.toml"
    p.write_text(text.replace("{model}", BNN.as_posix()))
    out = bad_dir / "out"
    assert main(["dse", str(p), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("cimgen: error: ") and msg in err[0], err[0]
    assert not out.exists()  # nothing is written before validation passes


def test_cli_console_script(tmp_path: Path) -> None:
    exe = shutil.which("cimgen")
    assert exe, "the cimgen console script is not on PATH (pip install -e .)"
    p = write(tmp_path, "images = 12\n" + GOOD)
    run = subprocess.run([exe, "dse", str(p), "-o", str(tmp_path / "o"), "--jobs", "2"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "1 point(s) x 1 seed(s) on 12 images" in run.stdout
    assert run.stderr.startswith("dse: [1/1] point 0 (mapping=BNN_I): accuracy")
    again = subprocess.run([exe, "dse", str(p), "-o", str(tmp_path / "o")],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "results.csv exists: pass --resume" in again.stderr
