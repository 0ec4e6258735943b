"""The batch-packed reference (golden_model.packed: several images per float32)
against an independent int64 evaluation of the IR written here (numpy integer
arithmetic only: no float, no golden_model kernels), on the example networks,
random networks and hand-made edge cases: the float32 bound at exactly 2**24 - 1
and 2**24, thresholds at the ends of the accumulator range, 1x1 and strided
convolutions with padding on odd sizes, pools before and after thresholds,
flipped and negative-scale thresholds, batch sizes that leave a field empty."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from netgen import random_network

from cimgen.frontend.datasets import digits_for
from cimgen.frontend.onnx_import import load_model
from golden_model import packed
from golden_model.floatops import ElementwiseOp, Quantizer, apply_chain
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
)
from golden_model.packed import Tuner, Workers, Workspace
from golden_model.reference import Plan, infer, prepare, quantize_input, stage_levels

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def int64_forward(net: Network, q: np.ndarray) -> np.ndarray:
    """The IR's definition, layer by layer, in int64 numpy arithmetic."""
    h = q.astype(np.int64)
    n = h.shape[0]
    for layer in net.layers:
        if isinstance(layer, Dense):
            h = h @ layer.weight.astype(np.int64).T
        elif isinstance(layer, Conv2d):
            t, left, b, r = layer.pads
            x = np.pad(h, ((0, 0), (0, 0), (t, b), (left, r)), constant_values=layer.pad_value)
            w = layer.weight.astype(np.int64)
            kh, kw = w.shape[2:]
            sh, sw = layer.stride
            oh = (x.shape[2] - kh) // sh + 1
            ow = (x.shape[3] - kw) // sw + 1
            out = np.zeros((n, w.shape[0], oh, ow), np.int64)
            for dy in range(kh):
                for dx in range(kw):
                    xs = x[:, :, dy:dy + sh * (oh - 1) + 1:sh, dx:dx + sw * (ow - 1) + 1:sw]
                    out += np.einsum("nchw,oc->nohw", xs, w[:, :, dy, dx])
            h = out
        elif isinstance(layer, MaxPool2d):
            (kh, kw), (sh, sw) = layer.kernel, layer.stride
            oh = (h.shape[2] - kh) // sh + 1
            ow = (h.shape[3] - kw) // sw + 1
            out = np.full((n, h.shape[1], oh, ow), np.iinfo(np.int64).min)
            for dy in range(kh):
                for dx in range(kw):
                    out = np.maximum(out, h[:, :, dy:dy + sh * (oh - 1) + 1:sh,
                                            dx:dx + sw * (ow - 1) + 1:sw])
            h = out
        elif isinstance(layer, Flatten):
            h = h.reshape(n, -1)
        else:
            assert isinstance(layer, Threshold)
            shape = (1, -1) + (1,) * (h.ndim - 2)
            v = h * layer.sign.astype(np.int64).reshape(shape)
            cnt = sum((v >= layer.thresholds[:, k].reshape(shape)).astype(np.int64)
                      for k in range(layer.thresholds.shape[1]))
            h = layer.out_bias + layer.out_scale * cnt
    return h.reshape(n, -1)


def random_levels(net: Network, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.array(net.input.values.values), size=(n, *net.input.shape)
                      ).astype(np.int16)


def packed_plan(net: Network, fields: tuple[int, int] | None = None) -> Plan:
    plan = prepare(net)
    if fields is not None:
        plan.packed = packed.build(net, analyze(net), fields)
    assert plan.packed is not None and plan.packed.f >= 2
    return plan


@pytest.mark.parametrize("name", ["bnn_mlp", "tnn_mlp", "bnn_cnn"])
def test_examples_pack_and_match_int64(name: str) -> None:
    net = load_model(str(EXAMPLES / f"{name}.onnx"))
    x, _ = digits_for(net.input.shape)
    plan = packed_plan(net)
    want = int64_forward(net, quantize_input(net, x))
    np.testing.assert_array_equal(infer(net, x, plan), want)
    for n in (1, 2, 3, 7):  # the last row group of fields part-filled
        q = random_levels(net, n, n)
        np.testing.assert_array_equal(plan.forward(q), int64_forward(net, q))


@pytest.mark.parametrize("seed", range(80))
def test_random_networks_match_int64(seed: int) -> None:
    net = random_network(seed)
    plan = prepare(net)
    for n in (1, 2, 5, 13):
        q = random_levels(net, n, seed + n)
        np.testing.assert_array_equal(plan.forward(q), int64_forward(net, q),
                                      err_msg=f"seed {seed}, batch {n}")


def test_random_networks_mostly_pack() -> None:
    """The packed path is what the random networks above exercise (not the fallback)."""
    packs = sum(prepare(random_network(seed)).packed is not None for seed in range(80))
    assert packs >= 30


@pytest.mark.parametrize("fields", [(2, 2), (4, 3), (5, 4), (12, 2)])
def test_every_packing_that_fits_matches_int64(fields: tuple[int, int]) -> None:
    rng = np.random.default_rng(fields[0])
    for seed in range(40):
        net = random_network(seed)
        pk = packed.build(net, analyze(net), fields)
        if pk is None:
            continue
        plan = prepare(net)
        plan.packed = pk
        q = random_levels(net, 9, int(rng.integers(1000)))
        np.testing.assert_array_equal(plan.forward(q), int64_forward(net, q),
                                      err_msg=f"seed {seed}, fields {fields}")


def bipolar_stage(shape: tuple[int, ...]) -> InputStage:
    return InputStage(shape, (), Quantizer("bipolar"), 2, -1)


def one_dense(w: np.ndarray) -> Network:
    return Network(bipolar_stage((w.shape[1],)), (Dense(w.astype(np.int8)),))


def test_float32_bound_at_2_pow_24_minus_1_and_2_pow_24() -> None:
    """s = 8, F = 3: S = 1 + 2**8 + 2**16 = 65793 and 255 * S = 2**24 - 1. A dense
    layer of 255 weights +1 fits one exact float32 product; one of 256 does not (its
    sums need a second chunk). Both are exact at the largest sums (every input +1)."""
    big_s = 1 + 2**8 + 2**16
    assert 255 * big_s == 2**24 - 1
    zero = np.zeros(1, np.int64)
    assert packed._exact(zero, np.array([255]), big_s)
    assert not packed._exact(zero, np.array([256]), big_s)
    assert packed._exact(np.array([-255]), zero, big_s)
    assert not packed._exact(np.array([-256]), zero, big_s)
    # The bound is strict: sums that reach 2**24 itself are refused.
    assert not packed._exact(zero, np.array([2**24]), 1)
    assert packed._exact(zero, np.array([2**24 - 1]), 1)
    for k, chunks in ((255, 1), (256, 2)):
        net = one_dense(np.ones((3, k)))
        pk = packed.build(net, analyze(net), (8, 3))
        assert pk is not None and len(pk.chunks) == chunks
        plan = prepare(net)
        plan.packed = pk
        q = np.ones((7, k), np.int16)
        q[3] = -1  # the smallest sums too
        np.testing.assert_array_equal(plan.forward(q), int64_forward(net, q))
        np.testing.assert_array_equal(plan.forward(q)[:, 0], np.where(q[:, 0] > 0, k, -k))


def test_negative_sums_at_the_bound() -> None:
    """The negative side of the same bound: 255 weights -1 (the sum -255 * S)."""
    net = one_dense(-np.ones((2, 255)))
    plan = packed_plan(net, (8, 3))
    assert plan.packed is not None and len(plan.packed.chunks) == 1
    q = np.ones((5, 255), np.int16)
    np.testing.assert_array_equal(plan.forward(q), int64_forward(net, q))


def test_split_fields_when_one_field_cannot_hold_the_sum() -> None:
    """A 4096-input binary layer has 4097 sums: s = 12 fields hold 4096, so each
    half of the inputs is extracted on its own and the halves added."""
    rng = np.random.default_rng(5)
    net = one_dense(rng.choice([-1, 1], size=(6, 4096)))
    plan = packed_plan(net, (12, 2))
    assert plan.packed is not None and plan.packed.split and len(plan.packed.chunks) == 2
    q = rng.choice(np.int16([-1, 1]), size=(5, 4096))
    q[0] = 1
    q[1] = -1
    np.testing.assert_array_equal(plan.forward(q), int64_forward(net, q))


def mlp_with(t: np.ndarray, sign: np.ndarray, out_scale: int = 2, out_bias: int = -1,
             k: int = 12, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    w1 = rng.choice(np.int8([-1, 1]), size=(t.shape[0], k))
    w2 = rng.choice(np.int8([-1, 1]), size=(3, t.shape[0]))
    act = Threshold(t.astype(np.int64), sign.astype(np.int8), out_scale, out_bias)
    return Network(bipolar_stage((k,)), (Dense(w1), act, Dense(w2)))


def test_thresholds_at_the_ends_of_the_accumulator_range() -> None:
    """Thresholds at -12 (always passed), 13 (never), the ends 12 and -11, far beyond
    (clipped), on both signs: every field stays in [0, 2**s) at the smallest s."""
    t = np.array([[-12], [13], [12], [-11], [2**40], [-(2**40)], [0], [1]])
    sign = np.array([1, 1, 1, 1, 1, -1, -1, -1])
    net = mlp_with(t, sign)
    q = np.concatenate([np.ones((1, 12)), -np.ones((1, 12)),
                        np.random.default_rng(1).choice([-1, 1], size=(9, 12))]).astype(np.int16)
    want = int64_forward(net, q)
    plan = packed_plan(net)
    np.testing.assert_array_equal(plan.forward(q), want)
    for f in (2, 3, 4):
        for s in range(1, 13):
            pk = packed.build(net, analyze(net), (s, f))
            if pk is None:
                continue
            plan.packed = pk
            np.testing.assert_array_equal(plan.forward(q), want, err_msg=f"s={s} F={f}")


def test_guard_bit_needs_the_whole_half_range() -> None:
    """A threshold at the top of a 12-input sum needs hi - t + 1 = 12 ... t - lo = 24
    levels of d (in 0/1 counts: d in [-6, 6] per field, t = -6 puts t - lo at 0 and
    hi - t + 1 at 13): s = 5 (G = 16) fits, s = 4 (G = 8) does not."""
    w1 = np.ones((1, 12), np.int8)
    w1[0, :6] = -1
    act = Threshold(np.array([[-12]]), np.array([1], np.int8), 2, -1)
    net = Network(bipolar_stage((12,)), (Dense(w1), act, Dense(np.ones((2, 1), np.int8))))
    lins, _ = packed._analyze(net, analyze(net))
    lo, hi = (v[0] for v in lins[0].bounds())
    t = lins[0].act.t  # type: ignore[union-attr]
    assert int(hi[0] - t[0, 0] + 1) == 13 and int(t[0, 0] - lo[0]) == 0
    assert packed._layout(lins, 5, 2) is not None
    assert packed._layout(lins, 4, 2) is None
    q = np.random.default_rng(2).choice(np.int16([-1, 1]), size=(6, 12))
    np.testing.assert_array_equal(packed_plan(net, (5, 2)).forward(q), int64_forward(net, q))


def test_negative_out_scale_and_ternary_counts() -> None:
    """out_scale -2 (a count of 1 is -1) and two thresholds (ternary)."""
    rng = np.random.default_rng(3)
    t1 = np.sort(rng.integers(-8, 9, size=(7, 1)), axis=1)
    net = mlp_with(t1, np.array([1, -1, 1, 1, -1, 1, 1]), out_scale=-2, out_bias=1)
    q = random_levels(net, 10, 4)
    np.testing.assert_array_equal(packed_plan(net).forward(q), int64_forward(net, q))
    t2 = np.sort(rng.integers(-8, 9, size=(7, 2)), axis=1)
    net = mlp_with(t2, np.array([1, -1, 1, 1, -1, 1, -1]), out_scale=1, out_bias=-1)
    np.testing.assert_array_equal(packed_plan(net).forward(q), int64_forward(net, q))


def conv_net(layers: list[Layer], shape: tuple[int, int, int], ternary_in: bool = False
             ) -> Network:
    if ternary_in:
        t = np.sort(np.random.default_rng(0).normal(size=(shape[0], 2)).astype(np.float32),
                    axis=1)
        stage = InputStage(shape, (), Quantizer("multithreshold", thresholds=t,
                                                out_scale=1.0, out_bias=-1.0), 1, -1)
    else:
        stage = bipolar_stage(shape)
    net = Network(stage, tuple(layers))
    analyze(net)
    return net


def rand_w(seed: int, shape: tuple[int, ...], ternary: bool = False) -> np.ndarray:
    vals = [-1, 0, 1] if ternary else [-1, 1]
    return np.random.default_rng(seed).choice(np.int8(vals), size=shape)


def thr(c: int, seed: int, k: int = 1, lim: int = 6) -> Threshold:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(-lim, lim + 1, size=(c, k)), axis=1)
    if k == 1:
        return Threshold(t.astype(np.int64), np.ones(c, np.int8), 2, -1)
    return Threshold(t.astype(np.int64), np.ones(c, np.int8), 1, -1)


CONV_CASES = {
    # 1x1 conv, odd size, no padding, then a 3x3 stride-2 conv with padding (pad = level 0)
    "1x1_then_stride2": ([Conv2d(rand_w(1, (4, 2, 1, 1))), thr(4, 1, lim=1),
                          Conv2d(rand_w(2, (3, 4, 3, 3)), (2, 2), (1, 1, 1, 1), -1), thr(3, 2),
                          Flatten(), Dense(rand_w(3, (5, 3 * 4 * 3)))], (2, 7, 5)),
    # pad value = level 1 (+1), asymmetric pads, pool of activations after the threshold
    "pad_plus_one_pool_after": ([Conv2d(rand_w(4, (5, 1, 3, 2)), (1, 1), (0, 1, 2, 1), 1),
                                 thr(5, 4), MaxPool2d((2, 2), (2, 2)), Flatten(),
                                 Dense(rand_w(5, (4, 5 * 3 * 3)))], (1, 7, 5)),
    # pool of accumulators before the threshold, overlapping 3x3 windows, stride 1
    "pool_before_threshold": ([Conv2d(rand_w(6, (3, 2, 3, 3)), (1, 1), (1, 1, 1, 1), -1),
                               MaxPool2d((3, 3), (1, 1)), thr(3, 6), Flatten(),
                               Dense(rand_w(7, (2, 3 * 5 * 3)))], (2, 7, 5)),
    # ternary: two thresholds, pool of accumulators (each threshold's bits ORed), pad 0
    "ternary_pool_before": ([Conv2d(rand_w(8, (4, 3, 3, 3), True), (1, 1), (1, 1, 1, 1), 0),
                             MaxPool2d((2, 2), (2, 2)), thr(4, 8, k=2), Flatten(),
                             Dense(rand_w(9, (3, 4 * 3 * 2), True))], (3, 6, 5)),
    # the logits are a convolution's (NCHW order), stride 2 on an odd size
    "conv_logits": ([Conv2d(rand_w(10, (3, 1, 3, 3)), (1, 1), (1, 1, 1, 1), -1), thr(3, 10),
                     Conv2d(rand_w(11, (2, 3, 2, 2)), (2, 2))], (1, 7, 7)),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_edge_cases(case: str) -> None:
    layers, shape = CONV_CASES[case]
    net = conv_net(layers, shape, ternary_in=case.startswith("ternary"))
    plan = packed_plan(net)
    for n in (1, 2, 4, 9):
        q = random_levels(net, n, n)
        np.testing.assert_array_equal(plan.forward(q), int64_forward(net, q),
                                      err_msg=f"{case}, batch {n}")


def test_unpackable_networks_fall_back() -> None:
    """A pad value between levels (0 with +-1 activations) and a decreasing threshold
    after a max-pool of accumulators run unpacked, still exact."""
    flip = Threshold(np.zeros((3, 1), np.int64), np.int8([1, -1, 1]), 2, -1)
    for layers in ([Conv2d(rand_w(1, (3, 1, 3, 3)), (1, 1), (1, 1, 1, 1), 0), thr(3, 1),
                    Flatten(), Dense(rand_w(2, (2, 3 * 25)))],
                   [Conv2d(rand_w(3, (3, 1, 3, 3))), MaxPool2d((2, 2), (1, 1)), flip,
                    Flatten(), Dense(rand_w(4, (2, 3 * 4)))]):
        net = conv_net(layers, (1, 5, 5))
        plan = prepare(net)
        assert plan.packed is None
        q = random_levels(net, 6, 0)
        np.testing.assert_array_equal(plan.forward(q), int64_forward(net, q))


QUANTIZERS = [
    ("bipolar, pre-ops", InputStage((3, 4, 4), (
        ElementwiseOp("sub", const=np.float32([0.5, -0.25, 1.0])),
        ElementwiseOp("mul", const=np.float32([3.0])),
        ElementwiseOp("div", const=np.float32([0.7, 2.0, -1.5])),
        ElementwiseOp("add", const=np.float32([0.125])),
        ElementwiseOp("rsub", const=np.float32([1.0, 0.0, -2.0]))),
        Quantizer("bipolar"), 2, -1)),
    ("multithreshold per channel", InputStage((3, 5), (), Quantizer(
        "multithreshold", thresholds=np.float32([[-0.5, 0.5], [0.0, 0.0], [-1.0, 2.0]]),
        out_scale=1.0, out_bias=-1.0), 1, -1)),
    ("sign", InputStage((7,), (), Quantizer("sign"), 1, -1)),
    ("intquant 1-bit signed", InputStage((7,), (), Quantizer(
        "intquant", scale=np.float32([0.5]), bits=1, signed=True), 2, -1)),
]
for _rnd in ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "DOWN", "UP", "HALF_UP", "HALF_DOWN"):
    QUANTIZERS.append((f"intquant signed 4-bit {_rnd}", InputStage((2, 6), (), Quantizer(
        "intquant", scale=np.float32([0.5, 0.25]), zeropt=np.float32([1.0, -2.0]), bits=4,
        signed=True, narrow=True, rounding=_rnd), 1, -7)))
QUANTIZERS.append(("intquant unsigned 3-bit, scale 1", InputStage((9,), (), Quantizer(
    "intquant", scale=np.float32([1.0]), zeropt=np.float32([0.0]), bits=3, signed=False),
    1, 0)))


@pytest.mark.parametrize("name", [q[0] for q in QUANTIZERS])
def test_stage_levels_are_the_quantizer_levels(name: str) -> None:
    """``stage_levels`` (float32 ops into buffers) against ``Quantizer.level`` (the
    floatops path), on values with exact ties (halves, thresholds, zero)."""
    st = dict(QUANTIZERS)[name]
    rng = np.random.default_rng(7)
    x = rng.normal(scale=3, size=(40, *st.shape)).astype(np.float32)
    x.reshape(-1)[::3] = np.round(x.reshape(-1)[::3] * 2) / 2  # ties
    x.reshape(-1)[::7] = 0
    want = st.quantizer.level(apply_chain(st.pre_ops, x, axis=1), axis=1)
    got = stage_levels(st, x)
    np.testing.assert_array_equal(np.asarray(got, np.int64), want)
    ws = Workspace()  # buffers reused: the same levels again, and for a smaller batch
    for xs in (x, x, x[:3]):
        np.testing.assert_array_equal(np.asarray(stage_levels(st, xs, ws), np.int64),
                                      want[:xs.shape[0]])


def test_buffers_reused_across_batch_sizes() -> None:
    """The Plan keeps its buffers: batches of other sizes in any order give the same
    logits (padding filled once, the column of ones kept, row views of larger
    buffers)."""
    for layers, shape in (CONV_CASES["1x1_then_stride2"], CONV_CASES["ternary_pool_before"]):
        net = conv_net(layers, shape, ternary_in=layers is CONV_CASES["ternary_pool_before"][0])
        plan = packed_plan(net)
        q = random_levels(net, 300, 1)
        want = int64_forward(net, q)
        for n in (300, 7, 1, 300, 64, 2, 300):
            np.testing.assert_array_equal(plan.forward(q[:n]), want[:n], err_msg=f"batch {n}")
    net = load_model(str(EXAMPLES / "bnn_mlp.onnx"))
    x, _ = digits_for(net.input.shape)
    plan = packed_plan(net)
    want = int64_forward(net, quantize_input(net, x))
    for n in (len(x), 5, 1, len(x), 3):
        np.testing.assert_array_equal(infer(net, x[:n], plan), want[:n])


def test_helper_threads_and_concurrent_calls() -> None:
    """The helper threads take chunks in any order; two threads calling one Plan at
    once (the second gets its own buffers, no helpers) both get exact logits."""
    net = load_model(str(EXAMPLES / "bnn_cnn.onnx"))
    x, _ = digits_for(net.input.shape)
    want = int64_forward(net, quantize_input(net, x))
    plan = packed_plan(net)
    plan._workers = Workers(2)  # more helpers than this machine may have CPUs
    np.testing.assert_array_equal(infer(net, x, plan), want)
    results: list[np.ndarray] = []

    def call() -> None:
        for _ in range(3):
            results.append(infer(net, x, plan))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 9
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_helper_thread_errors_reach_the_caller() -> None:
    def job(r0: int, r1: int, ws: Workspace) -> None:
        if r0 == 2:
            raise ValueError("chunk 2")

    with pytest.raises(ValueError, match="chunk 2"):
        Workers(1).run(lambda: (job, [(0, 1), (1, 2), (2, 3), (3, 4)]), Workspace())

    def prologue() -> tuple[packed.Job, list[tuple[int, int]]]:
        raise KeyError("prologue")

    workers = Workers(2)
    with pytest.raises(KeyError, match="prologue"):
        workers.run(prologue, Workspace())
    seen: list[int] = []  # the helpers were let go: the pool still runs new work
    workers.run(lambda: (lambda r0, r1, ws: seen.append(r0), [(0, 1), (1, 2)]), Workspace())
    assert sorted(seen) == [0, 1]


def test_tuner_takes_the_fastest_way_and_keeps_checking() -> None:
    t = Tuner(("a", "b", "c"))
    times = {"a": 1.0, "b": 2.0, "c": 1.5}
    first = []
    for _ in range(3):  # every way once, in order
        first.append(t.choose(100))
        t.record(100, first[-1], times[first[-1]])
    assert first == ["a", "b", "c"]
    picks = [t.choose(100) for _ in range(4 * Tuner.EXPLORE)]
    assert picks.count("a") >= 4 * Tuner.EXPLORE - 8  # the fastest, but the others
    assert picks.count("b") >= 1 and picks.count("c") >= 1  # are retried now and then
    for _ in range(20):
        t.record(100, "c", 0.2)  # "c" got faster (the other CPUs freed up)
    assert [t.choose(100) for _ in range(3)].count("c") >= 2


def test_tuner_backs_off_from_a_way_that_stalls() -> None:
    """A way more than SLOW times slower than the best is retried half as often each
    time it is (a 2-thread BLAS product on a loaded machine: tens of ms)."""
    t = Tuner(("fast", "stall"))
    t.choose(7)
    t.record(7, "fast", 0.001)
    t.choose(7)
    t.record(7, "stall", 0.05)
    tries = []
    for call in range(3, 6000):
        way = t.choose(7)
        if way == "stall":
            tries.append(call)
            t.record(7, "stall", 0.05)
        else:
            t.record(7, "fast", 0.001)
    gaps = np.diff(tries)
    assert len(tries) < 12 and (gaps[1:] >= gaps[:-1]).all() and gaps.max() <= Tuner.BACKOFF
    for _ in range(Tuner.CASES + 5):  # a bounded table
        t.choose(object())
    assert len(t._stats) <= Tuner.CASES
