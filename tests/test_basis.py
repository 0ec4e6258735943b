"""BasisN basis form: reference paths, ONNX export, fitting, directory, command line.

Expected values come from independent paths:

* hand-derived identities: a ternary basis of unit vectors with the weights as
  coefficients *is* the original network (logits == golden_model.reference);
  a binary basis {1, 1 - 2 e_r} with coefficients (sum w, -w_r) gives exactly
  2 W, so with doubled thresholds the logits are twice the reference's;
* the basis form's own path (reads x_s . b_j, then coefficients) against the
  materialized W_eff through the reference kernels and against onnxruntime on
  the exported plain-ONNX graph;
* a planted basis: weights built as exact combinations must be fitted with zero
  error.

Random cases print their seeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from netgen import random_network

from cimgen.basis.export import export_model
from cimgen.basis.fit import FitConfig, fit_weights, rescale_threshold
from cimgen.basis.io import load_basis, load_basis_dir
from cimgen.frontend.datasets import digits
from cimgen.frontend.onnx_import import load_model
from golden_model.basis import (
    Basis,
    BasisLinear,
    BasisNetwork,
    check_paths_agree,
    dmem_matrices,
    forward_basis,
    forward_materialized,
    num_segments,
    row_orders,
)
from golden_model.errors import BadInputError
from golden_model.floatops import Quantizer
from golden_model.ir import Conv2d, Dense, InputStage, Network, Threshold
from golden_model.reference import forward_int, quantize_input

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MODELS = ("bnn_mlp", "tnn_mlp", "bnn_cnn")


def ort_logits(bn: BasisNetwork, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(export_model(bn).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    y = np.asarray(sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0])
    assert np.all(y == np.rint(y)), "onnxruntime gave non-integral logits"
    return y.astype(np.int64)


def float_inputs(net: Network, seed: int, n: int = 16) -> np.ndarray:
    """Float32 inputs that reach every level of the network's input quantizer."""
    rng = np.random.default_rng(seed)
    spread = 2.0 ** net.input.values.bits if net.input.values.kind == "unsigned" else 1.5
    return (rng.normal(size=(n, *net.input.shape)) * spread).astype(np.float32)


def with_coefs(net: Network, basis: Basis, coefs: dict[int, np.ndarray], bits: int,
               thresholds: dict[int, Threshold] | None = None) -> BasisNetwork:
    orders = row_orders(net)
    layers: list[object] = list(net.layers)
    for i, c in coefs.items():
        layers[i] = BasisLinear(net.layers[i], c, orders[i],  # type: ignore[arg-type]
                                np.ones(c.shape[0]))
    for i, t in (thresholds or {}).items():
        layers[i] = t
    return BasisNetwork(net, basis, bits, tuple(layers))  # type: ignore[arg-type]


def segments_of(wm: np.ndarray, r: int) -> np.ndarray:
    """[O, F] DMEM-order weights -> [O, S, R] zero-padded segments."""
    o, f = wm.shape
    s = num_segments(f, r)
    pad = np.zeros((o, s * r), np.int64)
    pad[:, :f] = wm
    return pad.reshape(o, s, r)


# --------------------------------------------------------- hand-derived identities
def identity_ternary(net: Network, r: int) -> BasisNetwork:
    """Basis e_0..e_{R-1}, a[o, s, j] = w[o, s*R + j]: the original network exactly."""
    coefs = {i: segments_of(wm, r).astype(np.int8) for i, wm in dmem_matrices(net).items()}
    return with_coefs(net, Basis(np.eye(r, dtype=np.int8), "ternary"), coefs, 2)


def identity_binary(net: Network, r: int) -> BasisNetwork:
    """b_0 = 1, b_{1+k} = 1 - 2 e_k; a_0 = sum(w_s), a_{1+k} = -w_k: W_eff = 2 W."""
    vecs = np.ones((r + 1, r), np.int8)
    vecs[1:] -= 2 * np.eye(r, dtype=np.int8)
    coefs = {}
    for i, wm in dmem_matrices(net).items():
        seg = segments_of(wm, r)
        coefs[i] = np.concatenate([seg.sum(axis=2, keepdims=True), -seg], axis=2).astype(np.int8)
    ths = {i: Threshold(2 * ly.thresholds, ly.sign, ly.out_scale, ly.out_bias)
           for i, ly in enumerate(net.layers) if isinstance(ly, Threshold)}
    return with_coefs(net, Basis(vecs, "binary"), coefs, 8, ths)


NETS = [(f"random_{s}", s) for s in range(14)] + [(m, -1) for m in MODELS]


def net_of(name: str, seed: int) -> Network:
    if seed >= 0:
        return random_network(seed, conv=None if seed % 3 else True)
    return load_model(EXAMPLES / f"{name}.onnx")


@pytest.mark.parametrize(("name", "seed"), NETS, ids=[n for n, _ in NETS])
def test_identities_match_the_reference(name: str, seed: int) -> None:
    net = net_of(name, seed)
    rng = np.random.default_rng(abs(seed) + 100)
    # Short segments: several per layer, a short last one, DMEM orders exercised.
    r = int(rng.integers(2, 10))
    x = float_inputs(net, abs(seed))
    q = quantize_input(net, x)
    ref = forward_int(net, q)
    assert isinstance(ref, np.ndarray)
    print(f"{name} seed {seed} R {r}")
    tern = identity_ternary(net, r)
    assert np.array_equal(forward_basis(tern, q), ref)
    assert np.array_equal(forward_materialized(tern, q), ref)
    assert np.array_equal(ort_logits(tern, x), ref)
    binary = identity_binary(net, r)
    assert np.array_equal(forward_basis(binary, q), 2 * ref)
    assert np.array_equal(forward_materialized(binary, q), 2 * ref)
    assert np.array_equal(ort_logits(binary, x), 2 * ref)


def test_identity_fails_with_ir_row_order() -> None:
    """The identity sees the DMEM order: coefficients cut from the IR's (c, ky, kx) /
    CHW rows instead of (ky, kx, c) / HWC rows give other logits."""
    net = load_model(EXAMPLES / "bnn_cnn.onnx")
    r = 16
    coefs = {i: segments_of(ly.weight.reshape(ly.weight.shape[0], -1), r).astype(np.int8)
             for i, ly in enumerate(net.layers) if isinstance(ly, Dense | Conv2d)}
    bad = with_coefs(net, Basis(np.eye(r, dtype=np.int8), "ternary"), coefs, 2)
    q = quantize_input(net, digits("test", "image")[0][:100])
    assert not np.array_equal(forward_basis(bad, q), forward_int(net, q))
    assert np.array_equal(forward_basis(identity_ternary(net, r), q), forward_int(net, q))


# ----------------------------------------------- random coefficients, three paths
@pytest.mark.parametrize("seed", range(12))
def test_random_basis_forms_three_paths(seed: int) -> None:
    net = random_network(seed, conv=None if seed % 2 else True)
    rng = np.random.default_rng(seed + 7)
    kind = "ternary" if seed % 3 == 0 else "binary"
    r = int(rng.integers(2, 12))
    n = int(rng.integers(1, 9))
    bits = int(rng.integers(2, 9))
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    vals = (-1, 0, 1) if kind == "ternary" else (-1, 1)
    basis = Basis(rng.choice(vals, size=(n, r)).astype(np.int8), kind)
    coefs = {}
    for i, wm in dmem_matrices(net).items():
        shape = (wm.shape[0], num_segments(wm.shape[1], r), n)
        c = rng.integers(lo, hi + 1, size=shape)
        c.flat[0], c.flat[-1] = lo, hi  # the range ends
        coefs[i] = c.astype(np.int8)
    bn = with_coefs(net, basis, coefs, bits)
    print(f"random_network({seed}) {kind} basis N={n} R={r} coef_bits={bits}")
    x = float_inputs(net, seed, 24)
    q = quantize_input(net, x)
    logits = check_paths_agree(bn, q)
    assert np.array_equal(ort_logits(bn, x), logits)


# ----------------------------------------------------- fitted examples, three paths
@pytest.mark.parametrize("kind", ["binary", "ternary"])
@pytest.mark.parametrize("model", MODELS)
def test_fitted_examples_three_paths(model: str, kind: str) -> None:
    net = load_model(EXAMPLES / f"{model}.onnx")
    res = fit_weights(net, FitConfig(12, 4, 256, kind=kind, seed=1))
    x, _ = digits("all", "image" if len(net.input.shape) == 3 else "flat")
    q = quantize_input(net, x)
    logits = check_paths_agree(res.bn, q)
    assert np.array_equal(ort_logits(res.bn, x), logits)
    vals = set(np.unique(res.bn.basis.vectors).tolist())
    assert vals <= ({-1, 0, 1} if kind == "ternary" else {-1, 1})


def test_materialized_path_detects_a_changed_coefficient() -> None:
    """The two paths are compared for real: a coefficient changed in one copy shows."""
    net = load_model(EXAMPLES / "bnn_mlp.onnx")
    bn = fit_weights(net, FitConfig(8, 4, 256)).bn
    q = quantize_input(net, digits("test")[0])
    i, ly = max(bn.linear.items())  # the logits layer: no threshold hides the change
    c = ly.coefs.copy()
    c[0, 0, 0] = 3 if c[0, 0, 0] != 3 else 2
    layers = list(bn.layers)
    layers[i] = BasisLinear(ly.source, c, ly.in_order, ly.scale)
    other = BasisNetwork(net, bn.basis, bn.coef_bits, tuple(layers))
    assert not np.array_equal(forward_basis(bn, q), forward_materialized(other, q))


# ------------------------------------------------------------------ fitting
def planted_network(seed: int, kind: str) -> tuple[Network, np.ndarray, int]:
    """Two dense layers whose segments are each +-b_j of a planted basis (R = 8)."""
    rng = np.random.default_rng(seed)
    r, n = 8, 5
    vals = (-1, 0, 1) if kind == "ternary" else (-1, 1)
    while True:
        basis = rng.choice(vals, size=(n, r)).astype(np.int8)
        if np.linalg.matrix_rank(basis.astype(float)) == n and (basis != 0).any(axis=1).all():
            break

    def layer(o: int, f: int, k0: int) -> np.ndarray:
        s = num_segments(f, r)
        w = np.zeros((o, s * r), np.int8)
        for oo in range(o):
            for ss in range(s):
                j = (k0 + oo * s + ss) % n
                w[oo, ss * r:(ss + 1) * r] = basis[j] * rng.choice((-1, 1))
        return w[:, :f]

    w1, w2 = layer(12, 20, 0), layer(3, 12, 2)
    t1 = rng.integers(-4, 5, size=(12, 2 if kind == "ternary" else 1))
    th = Threshold(np.sort(t1, axis=1).astype(np.int64), np.ones(12, np.int8),
                   1 if kind == "ternary" else 2, -1)
    stage = InputStage((20,), (), Quantizer("bipolar"), 2, -1)
    net = Network(stage, (Dense(w1), th, Dense(w2)), name=f"planted_{kind}_{seed}")
    return net, basis, r


@pytest.mark.parametrize("kind", ["binary", "ternary"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_recovers_a_planted_basis(seed: int, kind: str) -> None:
    net, planted, r = planted_network(seed, kind)
    res = fit_weights(net, FitConfig(planted.shape[0], 2, r, kind=kind, seed=seed))
    print(f"planted {kind} seed {seed}: errors {[e.rel_error for e in res.errors]}")
    for e in res.errors:
        assert e.rel_error == 0.0 and e.sign_agreement == 1.0
    got = res.bn.basis.vectors.astype(int)
    # The same vectors up to order and sign.
    canon = {tuple(v * (1 if v[np.flatnonzero(v)[0]] > 0 else -1)) for v in got}
    want = {tuple(v * (1 if v[np.flatnonzero(v)[0]] > 0 else -1)) for v in planted.astype(int)}
    assert canon == want
    q = quantize_input(net, float_inputs(net, seed, 32))
    ref = forward_int(net, q)
    assert np.all(res.bn.linear[2].scale == 1.0)
    assert np.array_equal(check_paths_agree(res.bn, q), ref)


@pytest.mark.parametrize("scale", [0.25, 0.5, 1.0, 1.5, 3.0, 8.0])
def test_rescaled_threshold_is_the_same_comparison(scale: float) -> None:
    """sign * (s * acc') >= t  <=>  sign * acc' >= ceil(t / s) for s > 0 (exact binary s)."""
    rng = np.random.default_rng(int(scale * 4))
    c = 7
    t = np.sort(rng.integers(-50, 51, size=(c, 2)), axis=1).astype(np.int64)
    sign = rng.choice((-1, 1), size=c).astype(np.int8)
    th = Threshold(t, sign, 1, -1)
    new = rescale_threshold(th, np.full(c, scale), 1000)
    acc = np.arange(-300, 301)[:, None] * np.ones((1, c), np.int64)
    v = acc * sign
    for k in range(2):
        assert np.array_equal(v * scale >= t[:, k], v >= new.thresholds[:, k])


def test_fit_config_rejects_bad_values() -> None:
    with pytest.raises(BadInputError, match=r"2\.\.8"):
        FitConfig(4, 9, 16).validate()
    with pytest.raises(BadInputError, match="at least one"):
        FitConfig(0, 4, 16).validate()
    with pytest.raises(BadInputError, match="offers only 3 columns"):
        FitConfig(4, 4, 16, max_basis=3).validate()


# ------------------------------------------------------------------ command line
def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "cimgen.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def dir_bytes(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


FIT = ("--basis", "16", "--coef-bits", "4", "--finetune", "2")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fit") / "bmlp"
    res = cli("basis", "fit", EXAMPLES / "bnn_mlp.onnx", "-o", out, *FIT, "--seed", "5")
    assert res.returncode == 0, res.stderr
    print(res.stdout)
    return out


def test_fit_directory_is_deterministic(fitted: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    res = cli("basis", "fit", EXAMPLES / "bnn_mlp.onnx", "-o", again, *FIT, "--seed", "5")
    assert res.returncode == 0, res.stderr
    assert dir_bytes(again) == dir_bytes(fitted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no temp folder left


def test_the_seed_matters() -> None:
    net = load_model(EXAMPLES / "bnn_mlp.onnx")
    a, b = (fit_weights(net, FitConfig(16, 4, 256, seed=s)).bn.basis.vectors for s in (5, 6))
    assert not np.array_equal(a, b)


def test_fit_reports_and_finetuning_helps(fitted: Path) -> None:
    man = json.loads((fitted / "manifest.json").read_text())
    acc = man["metrics"]["accuracy_test"]
    assert set(acc) == {"original", "fit", "distilled", "finetuned"}
    assert acc["original"] == pytest.approx(0.94)
    # 16 basis vectors for 202 segments: the weight-space fit alone is far off
    # (measured 18 %); distillation and two STE epochs recover most of it.
    assert acc["finetuned"] > acc["fit"] + 0.3
    train = man["metrics"]["train_accuracy_per_epoch"]
    assert len(train) == 3 and max(train) == train[man["metrics"]["best_epoch"]]
    for e in man["metrics"]["layers_fit"]:
        assert e["rel_error"] >= 0 and 0 <= e["sign_agreement"] <= 1


def test_info_check_and_load(fitted: Path) -> None:
    res = cli("basis", "info", fitted)
    assert res.returncode == 0, res.stderr
    assert "16 binary vectors of 256 rows" in res.stdout and "4-bit" in res.stdout
    res = cli("basis", "check", fitted, "--images", "300")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count(" 0 differing logits") == 2
    bn = load_basis(fitted)
    x, y = digits("test")
    acc = json.loads((fitted / "manifest.json").read_text())["metrics"]["accuracy_test"]
    logits = forward_basis(bn, quantize_input(bn.original, x))
    assert float((logits.argmax(1) == y).mean()) == pytest.approx(acc["finetuned"], abs=1e-6)


def check_bad(res: subprocess.CompletedProcess[str], *expect: str) -> None:
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for e in expect:
        assert e in lines[0], f"{e!r} not in {lines[0]!r}"


def no_leftovers(parent: Path, keep: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == keep


BAD_FITS = [
    (("--basis", "8", "--coef-bits", "1"), ("--coef-bits", "1", "2..8")),
    (("--basis", "8", "--coef-bits", "9"), ("--coef-bits", "9", "2..8")),
    (("--basis", "0", "--coef-bits", "4"), ("--basis", "at least one")),
    (("--basis", "129", "--coef-bits", "4"), ("--basis", "129", "offers only 128 columns")),
    (("--basis", "8", "--coef-bits", "4", "--basis-kind", "ternary", "--mapping", "BNN_III"),
     ("--basis-kind", "BNN_III", "binary cells only")),
    (("--basis", "8", "--coef-bits", "4", "--finetune", "1", "--data", "none"),
     ("--finetune", "training data")),
]
@pytest.mark.parametrize(("args", "expect"), BAD_FITS, ids=[" ".join(a) for a, _ in BAD_FITS])
def test_bad_fit_arguments(tmp_path: Path, args: tuple[str, ...], expect: tuple[str, ...]
                           ) -> None:
    model = EXAMPLES / "bnn_mlp.onnx"
    res = cli("basis", "fit", model, "-o", tmp_path / "out", *args, cwd=tmp_path)
    check_bad(res, *expect)
    no_leftovers(tmp_path, set())


def test_bad_fit_keeps_an_existing_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = cli("basis", "fit", EXAMPLES / "bnn_mlp.onnx", "-o", out, "--basis", "4",
              "--coef-bits", "12")
    check_bad(res, "2..8")
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
    no_leftovers(tmp_path, {"out"})


def test_model_with_non_ternary_weights(tmp_path: Path) -> None:
    from test_cli_errors import case_weights_outside_value_set

    setup = case_weights_outside_value_set(tmp_path)
    res = cli("basis", "fit", setup.model, "-o", tmp_path / "out", "--basis", "2",
              "--coef-bits", "4", "--data", "none")
    check_bad(res, *setup.expect)
    assert not (tmp_path / "out").exists()


def test_hand_built_network_with_non_ternary_weights() -> None:
    stage = InputStage((4,), (), Quantizer("bipolar"), 2, -1)
    net = Network(stage, (Dense(np.array([[1, 2, -1, 1]], np.int8)),), name="w2")
    with pytest.raises(BadInputError, match=r"layer 0 \(Dense\).*outside"):
        fit_weights(net, FitConfig(2, 4, 4))


def copy_dir(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _flip(d: Path, name: str) -> None:
    data = bytearray((d / name).read_bytes())
    data[-1] ^= 1
    (d / name).write_bytes(bytes(data))


def _manifest(d: Path, edit: object) -> None:
    man = json.loads((d / "manifest.json").read_text())
    edit(man)  # type: ignore[operator]
    (d / "manifest.json").write_text(json.dumps(man))


TAMPER = {
    "coefs byte": (lambda d: _flip(d, "layer002_coefs.npy"), ("layer002_coefs.npy", "sha256")),
    "basis byte": (lambda d: _flip(d, "basis.npy"), ("basis.npy", "sha256")),
    "onnx byte": (lambda d: _flip(d, "basis_form.onnx"), ("basis_form.onnx", "sha256")),
    "source byte": (lambda d: _flip(d, "source.onnx"), ("source.onnx", "sha256")),
    "threshold file gone": (lambda d: (d / "layer001_thresholds.npy").unlink(),
                            ("layer001_thresholds.npy", "missing")),
    "coef_bits lowered": (lambda d: _manifest(d, lambda m: m.update(coef_bits=2)),
                          ("outside the 2-bit range",)),
    "coef_bits out of range": (lambda d: _manifest(d, lambda m: m.update(coef_bits=11)),
                               ("2..8",)),
    "basis count": (lambda d: _manifest(d, lambda m: m["basis"].update(count=15)),
                    ("manifest.json", "basis.npy is (16, 256)")),
    "basis kind": (lambda d: _manifest(d, lambda m: m["basis"].update(kind="quaternary")),
                   ("quaternary",)),
    "layer dropped": (lambda d: _manifest(d, lambda m: m["layers"].pop()),
                      ("manifest.json", "disagree")),
    "not json": (lambda d: (d / "manifest.json").write_text("{"), ("manifest.json", "JSON")),
    "no manifest": (lambda d: (d / "manifest.json").unlink(), ("manifest.json is missing",)),
}


@pytest.mark.parametrize("case", list(TAMPER))
def test_tampered_directory(fitted: Path, tmp_path: Path, case: str) -> None:
    d = copy_dir(fitted, tmp_path / "bad")
    edit, expect = TAMPER[case]
    edit(d)
    with pytest.raises(BadInputError) as e:
        load_basis_dir(d)
    for x in expect:
        assert x in str(e.value), str(e.value)


@pytest.mark.parametrize(("case", "cmd"), [("coefs byte", "info"), ("basis count", "check"),
                                           ("no manifest", "info")])
def test_tampered_directory_cli(fitted: Path, tmp_path: Path, case: str, cmd: str) -> None:
    d = copy_dir(fitted, tmp_path / "bad")
    edit, expect = TAMPER[case]
    edit(d)
    check_bad(cli("basis", cmd, d), *expect)


def test_export_refuses_inexact_float32() -> None:
    """Accumulators of 2**24 or more would not be exact in a float32 graph."""
    net = random_network(1, conv=False, input_kind="unsigned")
    r = 1024
    basis = Basis(np.ones((64, r), np.int8), "binary")
    coefs = {i: np.full((wm.shape[0], num_segments(wm.shape[1], r), 64), 127, np.int8)
             for i, wm in dmem_matrices(net).items()}
    bn = with_coefs(net, basis, coefs, 8)
    x_max = net.input.values.max_abs
    f0 = next(iter(dmem_matrices(net).values())).shape[1]
    if f0 * x_max * 127 * 64 < 2**24:
        pytest.skip("this network's first layer is too small to overflow")
    with pytest.raises(BadInputError, match=r"2\*\*24"):
        export_model(bn)


# ------------------------------------------------------------------ accuracy study
STUDY_POINTS = [("bnn_mlp", 32, 4, "binary"), ("bnn_cnn", 16, 4, "binary"),
                ("tnn_mlp", 64, 4, "ternary")]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "n", "k", "kind"), STUDY_POINTS)
def test_documented_points_within_two_points(model: str, n: int, k: int, kind: str,
                                             tmp_path: Path) -> None:
    """The (basis_count, coef_bits) points docs/basisn.md reports, re-measured."""
    mapping = "TNN_I" if kind == "ternary" else "BNN_I"
    res = cli("basis", "fit", EXAMPLES / f"{model}.onnx", "-o", tmp_path / "o", "--basis",
              str(n), "--coef-bits", str(k), "--finetune", "20", "--mapping", mapping,
              "--basis-kind", kind)
    assert res.returncode == 0, res.stderr
    acc = json.loads((tmp_path / "o" / "manifest.json").read_text())["metrics"]["accuracy_test"]
    print(model, n, k, acc)
    assert acc["finetuned"] >= acc["original"] - 0.02
