"""Property tests: random QONNX graphs built directly with onnx.helper.

The graphs are written here node by node, the way a Brevitas/FINN export
would write them (float latent weights behind BipolarQuant or ternary
IntQuant, BatchNormalization, MultiThreshold, Sign, Gemm with bias and
alpha, Pad + Conv, MaxPool, Flatten/Reshape), never through cimgen's
exporter. Each graph is imported by cimgen and its reference logits are
compared with

    (a) onnx's ReferenceEvaluator with independent QONNX ops,
    (b) qonnx's own executor,
    (c) onnxruntime on cimgen's plain-ONNX export of the imported network,

on inputs that include values exactly at the input quantizer's thresholds.

Every float constant is chosen so that the float graph is exact in float32
(power-of-two scales, BatchNormalization with var + eps a power of four,
means and offsets on the accumulator grid). Then the activations' ties fall
exactly on integer accumulator values and every correct executor must agree
bit for bit; a tie broken the wrong way anywhere shows up as a mismatch.

Seeds: each graph's numpy arrays come from a seed drawn by hypothesis (shown
in its falsifying-example report) and repeated in every assertion message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
import onnx
import pytest
from executors import (
    QONNX_DOMAINS,
    as_int64,
    run_onnxruntime,
    run_qonnx,
    run_reference_evaluator,
)
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from cimgen.frontend.fold import fold_thresholds
from cimgen.frontend.onnx_export import to_plain_onnx
from cimgen.frontend.onnx_import import import_model
from golden_model.floatops import ElementwiseOp, Quantizer
from golden_model.ir import Threshold
from golden_model.reference import forward_int, infer, quantize_input

F32 = np.float32
T = TypeVar("T")
PLAIN_ROUNDING = ("ROUND", "HALF_EVEN", "FLOOR", "CEIL")
ALL_ROUNDING = (*PLAIN_ROUNDING, "UP", "DOWN", "HALF_UP", "HALF_DOWN")


# --------------------------------------------------------------------------
# Choices: the same builder runs under hypothesis (shrinkable) or a numpy RNG
# --------------------------------------------------------------------------


class Chooser(Protocol):
    def int(self, lo: int, hi: int) -> int: ...

    def pick(self, options: Sequence[T]) -> T: ...

    def flag(self) -> bool: ...


class HypothesisChooser:
    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self.draw = draw

    def int(self, lo: int, hi: int) -> int:
        return int(self.draw(st.integers(lo, hi)))

    def pick(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(list(options)))  # type: ignore[no-any-return]

    def flag(self) -> bool:
        return bool(self.draw(st.booleans()))


class RngChooser:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def int(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def pick(self, options: Sequence[T]) -> T:
        return options[int(self.rng.integers(len(options)))]

    def flag(self) -> bool:
        return bool(self.rng.integers(2))


# --------------------------------------------------------------------------
# The graph builder
# --------------------------------------------------------------------------


@dataclass
class Act:
    """An activation tensor: float value = scale * integer level value."""

    name: str
    shape: tuple[int, ...]  # without the batch dimension
    scale: float
    ints: tuple[int, ...]  # the integer values it can take


@dataclass
class Acc:
    """A float tensor that is affine in an integer accumulator per channel:
    value[c] = u[c] * acc + b[c], exactly, |acc| <= bound."""

    name: str
    shape: tuple[int, ...]
    u: np.ndarray
    b: np.ndarray
    bound: int
    increasing: bool = True


@dataclass
class Recipe:
    model: onnx.ModelProto
    x: np.ndarray
    out_scale: float  # the float logits are out_scale * integer logits
    seed: int
    plain_ok: bool  # cimgen's plain export supports every rounding mode used
    notes: list[str] = field(default_factory=list)


def pow2(ch: Chooser, lo: int, hi: int) -> float:
    return float(2.0 ** ch.int(lo, hi))


class GraphBuilder:
    def __init__(self, ch: Chooser, seed: int) -> None:
        self.ch = ch
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0
        self.domains: set[str] = set()
        self.plain_ok = True
        self.notes: list[str] = []

    # ------------------------------------------------------------ plumbing
    def fresh(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def const(self, arr: np.ndarray | float, stem: str = "c",
              dtype: type[np.generic] = np.float32) -> str:
        name = self.fresh(stem)
        self.inits.append(onnx.numpy_helper.from_array(np.asarray(arr, dtype), name))
        return name

    def node(self, op: str, inputs: list[str], domain: str = "", **attrs: Any) -> str:
        out = self.fresh(op.lower() + "_")
        name = self.fresh(op) if self.ch.flag() else ""
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, domain=domain, **attrs))
        if domain:
            self.domains.add(domain)
        return out

    def domain(self) -> str:
        return self.ch.pick(QONNX_DOMAINS)

    def maybe_identity(self, x: str) -> str:
        if self.ch.int(0, 7) == 0:
            return self.node(self.ch.pick(("Identity", "Dropout")), [x])
        return x

    # ---------------------------------------------------------- quantizers
    def bipolar_quant(self, x: str, scale: np.ndarray | float) -> str:
        return self.node("BipolarQuant", [x, self.const(scale, "s")], self.domain())

    def int_quant(self, x: str, scale: np.ndarray | float, bits: int, signed: bool, narrow: bool,
                  rounding: str = "ROUND") -> str:
        op = self.ch.pick(("IntQuant", "Quant"))
        zero = np.zeros_like(np.asarray(scale, F32))
        return self.node(op, [x, self.const(scale, "s"), self.const(zero, "z"),
                              self.const(float(bits), "bw")], self.domain(),
                         signed=int(signed), narrow=int(narrow), rounding_mode=rounding)

    def multithreshold(self, x: str, t: np.ndarray, out_scale: float, out_bias: float,
                       rank: int, out_dtype: str) -> str:
        attrs: dict[str, Any] = {"out_scale": out_scale, "out_bias": out_bias,
                                 "out_dtype": out_dtype}
        if self.ch.flag():
            attrs["data_layout"] = "NCHW" if rank == 4 else "NC"
        return self.node("MultiThreshold", [x, self.const(t, "t")], self.domain(), **attrs)

    # ------------------------------------------------------------ the input
    def input_stage(self, shape: tuple[int, ...]) -> tuple[Act, Callable[[int], np.ndarray]]:
        """Input quantizer; returns the activation and a generator of inputs with ties."""
        ch, rng = self.ch, self.rng
        rank = len(shape) + 1
        c = shape[0]
        cshape = (c,) + (1,) * (len(shape) - 1)
        kind = ch.pick(("bipolar", "sign", "mt", "uint"))
        self.notes.append(f"input {kind} {shape}")
        x = "x"
        ties: np.ndarray  # per channel [C, K] float values exactly at a threshold
        if kind in ("bipolar", "sign"):
            # Optional float pre-ops; the tie (quantizer input exactly 0) is at x = x0[c].
            x0 = np.zeros(c)
            pre = ch.pick(("none", "sub", "add", "bn", "mul"))
            if pre == "sub":
                k = rng.integers(-8, 9, size=c) / 4
                x = self.node("Sub", [x, self.const(k.reshape(cshape))])
                x0 = k
            elif pre == "add":
                k = float(rng.integers(-8, 9) / 4)
                x = self.node("Add", [x, self.const(np.float32([k]))])
                x0 = np.full(c, -k)
            elif pre == "mul":
                k = pow2(ch, -2, 2) * ch.pick((1, -1))
                x = self.node(ch.pick(("Mul", "Div")), [x, self.const(np.float32(k))])
            elif pre == "bn":
                mean = rng.integers(-6, 7, size=c) / 2
                gamma = 2.0 ** rng.integers(-2, 3, size=c) * rng.choice((-1, 1), size=c)
                var = rng.choice((0.0, 0.75, 3.75), size=c)
                x = self.node("BatchNormalization", [
                    x, self.const(gamma), self.const(np.zeros(c)), self.const(mean),
                    self.const(var)], epsilon=0.25)
                x0 = mean
            ties = x0.reshape(c, 1)
            if kind == "bipolar":
                a = pow2(ch, -1, 1)
                if ch.flag():
                    y = self.bipolar_quant(x, a)
                else:  # a 1-bit signed IntQuant is bipolar too
                    y = self.int_quant(x, a, 1, True, False)
                act = Act(y, shape, a, (-1, 1))
            else:
                act = Act(self.node("Sign", [x]), shape, 1.0, (-1, 0, 1))
        elif kind == "mt":
            per_channel = ch.flag()
            nt = ch.int(1, 2)
            rows = c if per_channel else 1
            t = (rng.normal(size=(rows, nt)) * 4).astype(F32)  # unsorted along B
            a = pow2(ch, -1, 1)
            if nt == 1:
                y = self.multithreshold(x, t, 2 * a, -a, rank, "BIPOLAR" if a == 1 else "FLOAT32")
                act = Act(y, shape, a, (-1, 1))
            else:
                y = self.multithreshold(x, t, a, -a, rank, "FLOAT32")
                act = Act(y, shape, a, (-1, 0, 1))
            ties = np.broadcast_to(t, (c, nt)).astype(np.float64)
        else:
            bits = ch.int(2, 8)
            narrow = ch.flag()
            s = pow2(ch, -2, 1)
            rounding = ch.pick(ALL_ROUNDING)
            self.plain_ok &= rounding in PLAIN_ROUNDING
            y = self.int_quant(x, s, bits, False, narrow, rounding)
            hi = 2**bits - 1 - int(narrow)
            act = Act(y, shape, s, tuple(range(hi + 1)))
            k = rng.integers(-1, hi + 2, size=(c, 6))
            ties = np.concatenate([(k + 0.5) * s, k * s, [[(hi + 0.5) * s, -0.5 * s]] * c],
                                  axis=1)

        def make_x(n: int) -> np.ndarray:
            xs = rng.normal(size=(n, *shape)) * 3
            # About half the entries sit exactly on a threshold of their channel.
            mask = rng.random(size=xs.shape) < 0.5
            pick = rng.integers(ties.shape[1], size=xs.shape)
            chan = np.broadcast_to(np.arange(c).reshape((1, c) + (1,) * (len(shape) - 1)),
                                   xs.shape)
            xs = np.where(mask, ties[chan, pick], xs)
            return xs.astype(F32)

        return act, make_x

    # ------------------------------------------------------------- linears
    def weights(self, shape: tuple[int, ...], out_axis: int, ternary: bool, per_channel: bool
                ) -> tuple[str, np.ndarray]:
        """Float latent weights behind a quantizer (or already quantized); returns the
        tensor name and the positive scale per output channel."""
        ch, rng = self.ch, self.rng
        o = shape[out_axis]
        sshape = [1] * len(shape)
        sshape[out_axis] = o
        s = (2.0 ** rng.integers(-2, 2, size=o)) if per_channel else np.full(o, pow2(ch, -2, 1))
        s_b = s.reshape(sshape) if per_channel else np.float32(s[0])
        latent = rng.normal(size=shape) * np.asarray(s_b)
        style = ch.pick(("quant", "quant", "raw"))
        if ternary:
            # Some latent weights exactly at +-s/2: ROUND is half-to-even, so they become 0.
            half = rng.random(size=shape) < 0.1
            latent = np.where(half, np.sign(latent) * 0.5 * np.asarray(s_b), latent)
            q = np.round(np.clip(latent / np.asarray(s_b), -1, 1)) * np.asarray(s_b)
            if style == "raw":
                w = self.const(q)
            else:
                w = self.int_quant(self.const(latent), np.asarray(s_b, F32), 2, True, True)
        else:
            latent = np.where(rng.random(size=shape) < 0.05, 0.0, latent)  # 0 -> +1
            q = np.where(latent >= 0, 1.0, -1.0) * np.asarray(s_b)
            w = self.const(q) if style == "raw" else self.bipolar_quant(self.const(latent),
                                                                         np.asarray(s_b, F32))
        self.notes.append(f"weights {shape} {'ternary' if ternary else 'binary'} {style}")
        return w, s

    def dense(self, act: Act, out: int, ternary: bool, last: bool) -> Acc:
        ch, rng = self.ch, self.rng
        fan_in = act.shape[0]
        bound = fan_in * max(abs(v) for v in act.ints)
        per_channel = (not last) and ch.flag()
        op = ch.pick(("MatMul", "Gemm"))
        self.notes.append(f"{op} {fan_in}->{out}")
        if op == "MatMul":
            w, s = self.weights((fan_in, out), 1, ternary, per_channel)
            y = self.node("MatMul", [act.name, w])
            u = act.scale * s
            b = np.zeros(out)
            if not last and ch.flag():
                b = u * rng.integers(-bound // 2 - 1, bound // 2 + 2, size=out)
                y = self.node("Add", [y, self.const(b)])
            return Acc(y, (out,), u, b, bound)
        trans_b = ch.flag()
        shape = (out, fan_in) if trans_b else (fan_in, out)
        w, s = self.weights(shape, 0 if trans_b else 1, ternary, per_channel)
        alpha = pow2(ch, -1, 1) * (1 if last else ch.pick((1, 1, -1)))
        u = act.scale * s * alpha
        inputs = [act.name, w]
        attrs: dict[str, Any] = {"transB": int(trans_b)}
        if alpha != 1 or ch.flag():
            attrs["alpha"] = alpha
        b = np.zeros(out)
        if not last and ch.flag():
            beta = pow2(ch, -1, 1)
            b = u * rng.integers(-bound // 2 - 1, bound // 2 + 2, size=out)
            inputs.append(self.const(b / beta))
            if beta != 1 or ch.flag():
                attrs["beta"] = beta
        return Acc(self.node("Gemm", inputs, **attrs), (out,), u, b, bound,
                   increasing=bool(np.all(u > 0)))

    def conv(self, act: Act, out: int, ternary: bool) -> Acc:
        ch, rng = self.ch, self.rng
        c, h, w_ = act.shape
        k = ch.int(1, min(3, h + 2, w_ + 2))
        stride = ch.int(1, 2)
        x = act.name
        pads = [0, 0, 0, 0]
        pad_mode = ch.pick(("none", "attr", "node"))
        if pad_mode != "none":
            pads = [ch.int(0, 1) for _ in range(4)]
        if pad_mode == "node" and any(pads):
            # Explicit Pad with a value of the activation's value set: -1 if it has one.
            pv = -1 if -1 in act.ints else ch.pick(act.ints)
            p = np.int64([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]])
            x = self.node("Pad", [x, self.const(p, "pads", np.int64),
                                  self.const(np.float32(pv * act.scale), "pv")], mode="constant")
            self.notes.append(f"Pad value {pv}")
            h, w_ = h + pads[0] + pads[2], w_ + pads[1] + pads[3]
            pads = [0, 0, 0, 0]
        k = min(k, h + pads[0] + pads[2], w_ + pads[1] + pads[3])
        wname, s = self.weights((out, c, k, k), 0, ternary, ch.flag())
        inputs = [x, wname]
        bound = c * k * k * max(abs(v) for v in act.ints)
        u = act.scale * s
        b = np.zeros(out)
        if ch.flag():
            b = u * rng.integers(-bound // 2 - 1, bound // 2 + 2, size=out)
            inputs.append(self.const(b))
        attrs: dict[str, Any] = {"kernel_shape": [k, k], "strides": [stride, stride]}
        if any(pads) or ch.flag():
            attrs["pads"] = [pads[0], pads[1], pads[2], pads[3]]
        y = self.node("Conv", inputs, **attrs)
        oh = (h + pads[0] + pads[2] - k) // stride + 1
        ow = (w_ + pads[1] + pads[3] - k) // stride + 1
        self.notes.append(f"Conv {act.shape}->{(out, oh, ow)} k{k} s{stride} pads {pads}")
        return Acc(y, (out, oh, ow), u, b, bound)

    # -------------------------------------------------- float chain, activation
    def per_channel(self, v: np.ndarray, rank: int) -> np.ndarray:
        return np.asarray(v, F32).reshape((-1,) + (1,) * (rank - 2))

    def chain(self, acc: Acc) -> Acc:
        """BatchNormalization / Mul / Add between the accumulator and its quantizer."""
        ch, rng = self.ch, self.rng
        c = acc.shape[0]
        rank = len(acc.shape) + 1
        for _ in range(ch.int(0, 2)):
            op = ch.pick(("bn", "bn", "mul", "add"))
            if op == "bn":
                # Ties at integer accumulators: mean = value at acc = m; beta on the grid too.
                m = rng.integers(-acc.bound // 2 - 1, acc.bound // 2 + 2, size=c)
                mean = acc.u * m + acc.b
                gamma = 2.0 ** rng.integers(-2, 3, size=c) * rng.choice((-1, 1), size=c)
                var, sd = [(0.0, 0.5), (0.75, 1.0), (3.75, 2.0), (15.75, 4.0)][ch.int(0, 3)]
                u = acc.u * gamma / sd
                beta = np.zeros(c) if ch.flag() else u * rng.integers(-3, 4, size=c)
                y = self.node("BatchNormalization", [
                    acc.name, self.const(gamma), self.const(beta), self.const(mean),
                    self.const(np.full(c, var))], epsilon=0.25)
                self.notes.append(f"BN gamma signs {np.sign(gamma).astype(int).tolist()}")
                acc = Acc(y, acc.shape, u, beta, acc.bound, bool(np.all(u > 0)))
            elif op == "mul":
                k = 2.0 ** rng.integers(-1, 2, size=c) * rng.choice((-1, 1), size=c)
                y = self.node("Mul", [acc.name, self.const(self.per_channel(k, rank))])
                acc = Acc(y, acc.shape, acc.u * k, acc.b * k, acc.bound,
                          bool(np.all(acc.u * k > 0)))
            else:
                d = acc.u * rng.integers(-3, 4, size=c)
                y = self.node("Add", [acc.name, self.const(self.per_channel(d, rank))])
                acc = Acc(y, acc.shape, acc.u, acc.b + d, acc.bound, acc.increasing)
        return acc

    def activation(self, acc: Acc, ternary: bool) -> Act:
        ch, rng = self.ch, self.rng
        c = acc.shape[0]
        rank = len(acc.shape) + 1
        lo = np.minimum(acc.u * -acc.bound, acc.u * acc.bound) + acc.b
        hi = np.maximum(acc.u * -acc.bound, acc.u * acc.bound) + acc.b
        q = ch.pick(("bipolar", "mt", "intquant", "sign") if ternary else ("bipolar", "mt"))
        self.notes.append(f"activation {q}")
        if q == "bipolar":
            a = pow2(ch, -1, 1)
            return Act(self.bipolar_quant(acc.name, a), acc.shape, a, (-1, 1))
        if q == "sign":
            return Act(self.node("Sign", [acc.name]), acc.shape, 1.0, (-1, 0, 1))
        if q == "intquant":
            # 2-bit signed narrow: ties at +-a/2, ROUND half to even sends them to 0.
            a = pow2(ch, -1, 2)
            return Act(self.int_quant(acc.name, a, 2, True, True), acc.shape, a, (-1, 0, 1))
        nt = 2 if ternary else 1
        per_channel = ch.flag()
        rows = c if per_channel else 1
        # Integer thresholds, mostly inside the reachable range (ties), unsorted.
        lo_r, hi_r = (lo, hi) if per_channel else (lo.min(keepdims=True), hi.max(keepdims=True))
        span = np.maximum(hi_r - lo_r, 1.0)
        t = np.floor(lo_r[:, None] + span[:, None] * rng.random(size=(rows, nt)))
        t = np.clip(t, -2.0**20, 2.0**20)
        a = pow2(ch, -1, 1)
        if ternary:
            y = self.multithreshold(acc.name, t, a, -a, rank, "FLOAT32")
            return Act(y, acc.shape, a, (-1, 0, 1))
        y = self.multithreshold(acc.name, t, 2 * a, -a, rank, "BIPOLAR" if a == 1 else "FLOAT32")
        return Act(y, acc.shape, a, (-1, 1))

    def maxpool(self, x: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        c, h, w = shape
        k = self.ch.int(1, min(2, h, w))
        s = self.ch.int(1, 2)
        y = self.node("MaxPool", [x], kernel_shape=[k, k], strides=[s, s])
        return y, (c, (h - k) // s + 1, (w - k) // s + 1)

    def flatten(self, act: Act) -> Act:
        n = int(np.prod(act.shape))
        how = self.ch.pick(("Flatten", "reshape-1", "reshape0"))
        if how == "Flatten":
            y = self.node("Flatten", [act.name], axis=1)
        else:
            shp = [-1, n] if how == "reshape-1" else [0, self.ch.pick((n, -1))]
            y = self.node("Reshape", [act.name, self.const(np.int64(shp), "shape", np.int64)])
        return Act(y, (n,), act.scale, act.ints)

    # ---------------------------------------------------------------- build
    def build(self) -> Recipe:
        ch = self.ch
        ternary = ch.flag()
        image = ch.flag()
        if image:
            shape: tuple[int, ...] = (ch.int(1, 3), ch.int(3, 9), ch.int(3, 9))
        else:
            shape = (ch.pick((1, 2, 3, 5, 7, 10, 13, 17, 31, 33, 50, 63, 64, 65, 97)),)
        act, make_x = self.input_stage(shape)
        act.name = self.maybe_identity(act.name)
        if image:
            for _ in range(ch.int(0, 2)):
                if min(act.shape[1:]) < 2:
                    break
                acc = self.conv(act, ch.int(1, 5), ternary)
                if ch.flag() and min(acc.shape[1:]) >= 2:  # pool the accumulators
                    name, shp = self.maxpool(acc.name, acc.shape)
                    acc = Acc(name, shp, acc.u, acc.b, acc.bound)
                act = self.activation(self.chain(acc), ternary)
                act.name = self.maybe_identity(act.name)
                if ch.flag() and min(act.shape[1:]) >= 2:  # pool the activations
                    act.name, act.shape = self.maxpool(act.name, act.shape)
            act = self.flatten(act)
        for _ in range(ch.int(0, 2)):
            acc = self.dense(act, ch.pick((1, 2, 3, 7, 9, 16, 23, 40)), ternary, last=False)
            act = self.activation(self.chain(acc), ternary)
            act.name = self.maybe_identity(act.name)
        out = self.dense(act, ch.int(2, 11), ternary, last=True)
        out_scale = float(out.u[0])
        assert np.all(out.u == out_scale) and np.all(out.b == 0)
        # Rename the last tensor to "logits".
        self.nodes[-1].output[0] = "logits"
        graph = helper.make_graph(
            self.nodes, "prop",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", out.shape[0]])],
            self.inits)
        opsets = [helper.make_opsetid("", 17)]
        opsets += [helper.make_opsetid(d, 1) for d in sorted(self.domains)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="test_properties")
        model.ir_version = 8
        x = make_x(ch.int(1, 24))
        return Recipe(model, x, out_scale, self.seed, self.plain_ok, self.notes)


@st.composite
def recipes(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Recipe:
    ch = HypothesisChooser(draw)
    seed = ch.int(0, 2**32 - 1)
    return GraphBuilder(ch, seed).build()


def rng_recipe(seed: int) -> Recipe:
    return GraphBuilder(RngChooser(seed), seed).build()


# --------------------------------------------------------------------------
# The comparisons
# --------------------------------------------------------------------------


def ties_hit(net: Any, x: np.ndarray) -> int:
    """How many threshold comparisons in the imported network are exact ties."""
    out = forward_int(net, quantize_input(net, x), trace=True)
    assert not isinstance(out, np.ndarray)
    prev = out.input
    n = 0
    for layer, h in zip(net.layers, out.outputs, strict=True):
        if isinstance(layer, Threshold):
            v = np.moveaxis(prev.astype(np.int64), 1, -1) * layer.sign.astype(np.int64)
            n += int((v[..., None] == layer.thresholds).sum())
        prev = h
    return n


def check_recipe(r: Recipe) -> int:
    tag = f"seed={r.seed} ({'; '.join(r.notes)})"
    net = import_model(r.model, source=f"prop_{r.seed}")
    ref = infer(net, r.x)
    a = as_int64(run_reference_evaluator(r.model, r.x) / r.out_scale, f"ReferenceEvaluator {tag}")
    np.testing.assert_array_equal(ref, a, err_msg=f"cimgen vs ReferenceEvaluator, {tag}")
    b = as_int64(run_qonnx(r.model, r.x) / r.out_scale, f"qonnx {tag}")
    np.testing.assert_array_equal(ref, b, err_msg=f"cimgen vs qonnx executor, {tag}")
    if r.plain_ok:
        c = as_int64(run_onnxruntime(to_plain_onnx(net), r.x) / r.out_scale, f"ort {tag}")
        np.testing.assert_array_equal(ref, c, err_msg=f"cimgen vs onnxruntime (plain), {tag}")
    return ties_hit(net, r.x)


SETTINGS = settings(max_examples=150, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(recipes())
def test_random_qonnx_graphs_agree_with_executors(r: Recipe) -> None:
    note(f"seed={r.seed}; " + "; ".join(r.notes))
    ties = check_recipe(r)
    event("threshold ties hit" if ties else "no threshold tie")


def test_ties_are_exercised() -> None:
    """The generator really produces exact ties (seeded RNG, not hypothesis)."""
    seeds = range(1000, 1030)
    hits = [check_recipe(rng_recipe(s)) for s in seeds]
    with_ties = sum(h > 0 for h in hits)
    assert with_ties >= len(seeds) // 3, f"only {with_ties} of seeds {seeds} hit a tie: {hits}"


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(recipes())
def test_random_qonnx_graphs_agree_with_executors_sweep(r: Recipe) -> None:
    note(f"seed={r.seed}; " + "; ".join(r.notes))
    check_recipe(r)


# --------------------------------------------------------------------------
# BatchNormalization folding alone, brute force over every accumulator value
# --------------------------------------------------------------------------


def bn_float32(a: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
               var: np.ndarray, eps: float) -> np.ndarray:
    """The ONNX formula Y = (X - mean) / sqrt(var + eps) * scale + B, in float32."""
    x = a.astype(F32)[:, None]
    sd = np.sqrt((var.astype(F32) + F32(eps)).astype(F32)).astype(F32)
    return ((((x - mean.astype(F32)).astype(F32) / sd).astype(F32) * gamma.astype(F32))
            .astype(F32) + beta.astype(F32)).astype(F32)


@st.composite
def bn_cases(draw: Callable[[st.SearchStrategy[Any]], Any]
             ) -> tuple[int, int, int, str, np.ndarray, np.ndarray, float]:
    seed = draw(st.integers(0, 2**32 - 1))
    c = draw(st.integers(1, 9))
    bound = draw(st.integers(1, 600))
    mode = draw(st.sampled_from(("ties", "ties", "generic")))
    quant = draw(st.sampled_from(("bipolar", "sign", "mt1", "mt2", "mt3")))
    rng = np.random.default_rng(seed)
    if mode == "ties":
        # beta = 0 and an integer mean: the BN output is exactly 0 at acc = mean.
        gamma = (2.0 ** rng.integers(-3, 4, size=c) * rng.choice((-1, 1), size=c)
                 * rng.choice((1.0, 0.75, 1.3), size=c))
        mean = rng.integers(-bound, bound + 1, size=c).astype(np.float64)
        beta = np.zeros(c)
        var = rng.choice((0.0, 1.0 - 1e-5, 3.0, 0.3), size=c)
        eps = 1e-5
    else:
        gamma = rng.normal(size=c) * rng.choice((1.0, 1e-3, 50.0))
        mean = rng.normal(size=c) * bound / 2
        beta = rng.normal(size=c) * 2
        var = rng.exponential(size=c) * bound
        eps = float(rng.choice((1e-5, 1e-3)))
    params = np.stack([gamma, beta, mean, var]).astype(F32)
    tvals = np.round(rng.normal(size=(c, 3)) * 2) / 2  # thresholds on a half-integer grid
    return seed, c, bound, quant, params, tvals.astype(F32), eps


def levels_float(quant: str, y: np.ndarray, tvals: np.ndarray) -> np.ndarray:
    if quant == "bipolar":
        return (y >= 0).astype(np.int64)
    if quant == "sign":
        return (y >= 0).astype(np.int64) + (y > 0).astype(np.int64)
    nt = int(quant[-1])
    return (y[..., None] >= tvals[None, :, :nt]).sum(axis=-1)


@settings(max_examples=300, deadline=None, print_blob=True)
@given(bn_cases())
def test_bn_fold_matches_float_formula_at_every_integer(
        case: tuple[int, int, int, str, np.ndarray, np.ndarray, float]) -> None:
    seed, c, bound, quant, params, tvals, eps = case
    gamma, beta, mean, var = params
    if quant == "bipolar":
        q = Quantizer("bipolar")
    elif quant == "sign":
        q = Quantizer("sign")
    else:
        q = Quantizer("multithreshold", thresholds=tvals[:, :int(quant[-1])])
    op = ElementwiseOp("bn", bn=(gamma, beta, mean, var), eps=eps)
    f = fold_thresholds([op], q, c, bound)
    a = np.arange(-bound, bound + 1, dtype=np.int64)
    want = levels_float(quant, bn_float32(a, gamma, beta, mean, var, eps), tvals)  # [A, C]
    v = a[:, None] * f.sign.astype(np.int64)[None, :]
    got = (v[..., None] >= f.thresholds[None, :, :]).sum(axis=-1)
    bad = np.argwhere(got != want)
    assert bad.size == 0, (
        f"seed={seed}: fold disagrees with the float BN formula at acc={int(a[bad[0][0]])}, "
        f"channel {int(bad[0][1])} (got level {int(got[tuple(bad[0])])}, float says "
        f"{int(want[tuple(bad[0])])}); gamma={gamma.tolist()} mean={mean.tolist()} "
        f"var={var.tolist()} beta={beta.tolist()} eps={eps}")
    # Ties really happen in "ties" mode: the float output is exactly 0 at acc = mean.
    at_mean = bn_float32(mean.astype(np.int64), gamma, beta, mean, var, eps)
    if not beta.any():
        assert np.all(np.diagonal(at_mean) == 0), f"seed={seed}: no exact zero at the mean"


# --------------------------------------------------------------------------
# The reference's exact integer kernels against naive loops
# --------------------------------------------------------------------------


def naive_conv(x: np.ndarray, w: np.ndarray, stride: tuple[int, int],
               pads: tuple[int, int, int, int], pad_value: int) -> np.ndarray:
    t, left, b, r = pads
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (t, b), (left, r)),
                constant_values=pad_value)
    o, _, kh, kw = w.shape
    oh = (xp.shape[2] - kh) // stride[0] + 1
    ow = (xp.shape[3] - kw) // stride[1] + 1
    out = np.zeros((x.shape[0], o, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
            out[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w.astype(np.int64))
    return out


@settings(max_examples=150, deadline=None, print_blob=True)
@given(st.integers(0, 2**32 - 1))
def test_kernels_match_naive_loops(seed: int) -> None:
    from golden_model.kernels import (
        bipolar_matmul_popcount,
        conv2d_nchw,
        int_matmul,
        maxpool_nchw,
    )

    rng = np.random.default_rng(seed)
    n, c, h, w_ = (int(v) for v in rng.integers(1, 6, size=4))
    h, w_ = h + 2, w_ + 2
    kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
    pads = tuple(int(v) for v in rng.integers(0, 3, size=4))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    x = rng.integers(-1, 2, size=(n, c, h, w_)).astype(np.int8)
    if rng.integers(2):
        x = rng.integers(0, 256, size=(n, c, h, w_)).astype(np.int16)
    wt = rng.integers(-1, 2, size=(int(rng.integers(1, 6)), c, kh, kw)).astype(np.int8)
    pv = int(rng.integers(-1, 2))
    want = naive_conv(x, wt, stride, pads, pv)  # type: ignore[arg-type]
    for bound in (2**23, 2**30, 2**60):  # float32, float64 and int64 paths
        got = conv2d_nchw(x, wt, stride, pads, pv, bound)  # type: ignore[arg-type]
        assert got.dtype == np.int64 and got.flags.c_contiguous, f"seed={seed}"
        np.testing.assert_array_equal(got, want, err_msg=f"seed={seed} bound={bound}")
    k = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    ps = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pooled = maxpool_nchw(want, k, ps)
    oh, ow = (want.shape[2] - k[0]) // ps[0] + 1, (want.shape[3] - k[1]) // ps[1] + 1
    naive = np.array([[[[want[a, b, i * ps[0]:i * ps[0] + k[0], j * ps[1]:j * ps[1] + k[1]].max()
                         for j in range(ow)] for i in range(oh)]
                       for b in range(want.shape[1])] for a in range(want.shape[0])])
    np.testing.assert_array_equal(pooled, naive.reshape(pooled.shape), err_msg=f"seed={seed}")
    # Dense: BLAS path (every dtype) and the XNOR-popcount path agree with int64.
    i, o = int(rng.integers(1, 200)), int(rng.integers(1, 20))
    xb = rng.choice(np.int8([-1, 1]), size=(n, i))
    wb = rng.choice(np.int8([-1, 1]), size=(o, i))
    ref = xb.astype(np.int64) @ wb.astype(np.int64).T
    np.testing.assert_array_equal(bipolar_matmul_popcount(xb, wb), ref, err_msg=f"seed={seed}")
    for bound in (i, 2**30, 2**60):
        np.testing.assert_array_equal(int_matmul(xb, wb, bound), ref,
                                      err_msg=f"seed={seed} bound={bound}")
