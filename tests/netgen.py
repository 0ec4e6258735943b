"""Seeded random BNN/TNN networks in the integer IR, for property tests."""

from __future__ import annotations

import numpy as np

from golden_model.floatops import ElementwiseOp, Quantizer
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


def random_weights(rng: np.random.Generator, shape: tuple[int, ...], ternary: bool) -> np.ndarray:
    vals = (-1, 0, 1) if ternary else (-1, 1)
    return rng.choice(vals, size=shape).astype(np.int8)


def random_threshold(rng: np.random.Generator, c: int, bound: int, ternary: bool) -> Threshold:
    """Thresholds inside the accumulator range (ties happen), some channels flipped."""
    k = 2 if ternary else 1
    t = np.sort(rng.integers(-bound // 2 - 1, bound // 2 + 2, size=(c, k)), axis=1)
    sign = rng.choice((-1, 1), size=c).astype(np.int8)
    if ternary:
        return Threshold(t.astype(np.int64), sign, 1, -1)
    return Threshold(t.astype(np.int64), sign, 2, -1)


def random_input_stage(rng: np.random.Generator, shape: tuple[int, ...], kind: str
                       ) -> InputStage:
    c = shape[0]
    if kind == "unsigned":
        bits = int(rng.integers(1, 9))
        q = Quantizer("intquant", scale=np.float32([1.0]), zeropt=np.float32([0.0]), bits=bits,
                      signed=False)
        return InputStage(shape, (), q, 1, 0)
    if kind == "ternary":
        t = np.sort(rng.normal(size=(c, 2)).astype(np.float32), axis=1)
        q = Quantizer("multithreshold", thresholds=t, out_scale=1.0, out_bias=-1.0)
        return InputStage(shape, (), q, 1, -1)
    pre = (ElementwiseOp("sub", const=np.float32([0.25])),)
    return InputStage(shape, pre, Quantizer("bipolar"), 2, -1)


def random_network(seed: int, *, conv: bool | None = None, ternary: bool | None = None,
                   input_kind: str | None = None) -> Network:
    """A random valid network: optional conv stack, then dense layers, integer logits."""
    rng = np.random.default_rng(seed)
    conv = bool(rng.integers(2)) if conv is None else conv
    ternary = bool(rng.integers(2)) if ternary is None else ternary
    input_kind = input_kind or str(rng.choice(["bipolar", "ternary", "unsigned"]))
    layers: list[Layer] = []
    if conv:
        c, h, w = int(rng.integers(1, 4)), int(rng.integers(5, 10)), int(rng.integers(5, 10))
        shape: tuple[int, ...] = (c, h, w)
    else:
        shape = (int(rng.integers(3, 70)),)
    stage = random_input_stage(rng, shape, input_kind)
    bound_vals = stage.values.max_abs
    if conv:
        for _ in range(int(rng.integers(1, 3))):
            o = int(rng.integers(1, 7))
            k = min(int(rng.integers(1, 4)), shape[1], shape[2])
            pads = tuple(int(p) for p in rng.integers(0, 2, size=4))
            pad_value = int(rng.choice([v for v in (-1, 0, 1) if v in stage.values.values or v == 0]
                                       if not layers else ([-1, 0, 1] if ternary else [-1, 1])))
            layers.append(Conv2d(random_weights(rng, (o, shape[0], k, k), ternary), (1, 1),
                                 pads, pad_value))  # type: ignore[arg-type]
            h2 = shape[1] + pads[0] + pads[2] - k + 1
            w2 = shape[2] + pads[1] + pads[3] - k + 1
            shape = (o, h2, w2)
            fan = k * k * int(layers[-1].weight.shape[1])  # type: ignore[union-attr]
            if rng.integers(2) and min(h2, w2) >= 2:
                layers.append(MaxPool2d((2, 2), (2, 2)))
                shape = (o, h2 // 2, w2 // 2)
            layers.append(random_threshold(rng, o, fan * bound_vals, ternary))
            bound_vals = 1
        layers.append(Flatten())
        shape = (int(np.prod(shape)),)
    for _ in range(int(rng.integers(0, 3))):
        o = int(rng.integers(2, 40))
        layers.append(Dense(random_weights(rng, (o, shape[0]), ternary)))
        layers.append(random_threshold(rng, o, shape[0] * bound_vals, ternary))
        bound_vals = 1
        shape = (o,)
    layers.append(Dense(random_weights(rng, (int(rng.integers(2, 11)), shape[0]), ternary)))
    net = Network(stage, tuple(layers), name=f"random_{seed}")
    analyze(net)
    return net


def residual_network(seed: int, *, ternary: bool = False, signed_input: bool = False,
                     concat: bool = False) -> Network:
    """A small residual network: stem conv, an identity block, a downsampling block
    (3x3 stride-2 main path, 1x1 stride-2 shortcut), optionally a channel concat of
    the two paths' thresholded outputs, then a dense classifier. Binary or ternary
    weights and activations; a signed multi-bit input on request."""
    from golden_model.ir import Add, Concat, Tap

    rng = np.random.default_rng(seed)
    c0 = int(rng.integers(1, 3))
    shape = (c0, 6, 6)
    if signed_input:
        bits = int(rng.integers(2, 9))
        q = Quantizer("intquant", scale=np.float32([1.0]), zeropt=np.float32([0.0]), bits=bits,
                      signed=True)
        stage = InputStage(shape, (), q, 1, -(2 ** (bits - 1)))  # level k is k - 2^(b-1)
    else:
        stage = random_input_stage(rng, shape, "ternary" if ternary else "bipolar")
    acts = (-1, 0, 1) if ternary else (-1, 1)
    layers: list[Layer] = []
    bound = stage.values.max_abs

    def conv(cin: int, cout: int, k: int, stride: int, pad: int, bnd: int) -> int:
        layers.append(Conv2d(random_weights(rng, (cout, cin, k, k), ternary), (stride, stride),
                             (pad,) * 4, int(rng.choice(acts)) if pad else 0))
        layers.append(random_threshold(rng, cout, k * k * cin * bnd, ternary))
        return len(layers) - 1

    def add_thr(a: int, b: int, c: int) -> int:
        layers.append(Add((a, b)))
        layers.append(random_threshold(rng, c, 2, ternary))
        return len(layers) - 1

    c = int(rng.integers(2, 5))
    stem = conv(c0, c, 3, 1, 1, bound)
    b1 = conv(c, c, 3, 1, 1, 1)
    b1 = conv(c, c, 3, 1, 1, 1)
    blk1 = add_thr(b1, stem, c)
    c2 = int(rng.integers(2, 6))
    m = conv(c, c2, 3, 2, 1, 1)
    m = conv(c2, c2, 3, 1, 1, 1)
    layers.append(Tap(blk1))
    sc = conv(c, c2, 1, 2, 0, 1)
    blk2 = add_thr(m, sc, c2)
    last, ch = blk2, c2
    if concat:
        layers.append(Concat((blk2, sc)))
        last, ch = len(layers) - 1, 2 * c2
    del last
    layers.append(Flatten())
    layers.append(Dense(random_weights(rng, (int(rng.integers(2, 7)), ch * 3 * 3), ternary)))
    net = Network(stage, tuple(layers), name=f"residual{seed}")
    analyze(net)
    return net
