"""Reference BNN/TNN inference on the integer IR (numpy, whole batch at once).

This is the ground truth every other executor in cimgen is compared with.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import BadInputError
from .floatops import F32, ROUNDERS, apply_chain
from .ir import (
    BRANCH_KINDS,
    Add,
    Concat,
    Conv2d,
    Dense,
    Flatten,
    InputStage,
    MaxPool2d,
    Network,
    Tap,
    Threshold,
    analyze,
)
from .kernels import _OneBlasThread, conv2d_nchw, exact_dtype, int_matmul, maxpool_nchw
from .packed import Job, PackedPlan, Tuner, Workers, Workspace, build

# The packed plan runs on this many threads at most (the caller and helpers): always
# for batches of at least SURE_PARALLEL_WORK multiply-add equivalents (of small
# weight matrices), as a Tuner finds faster from PARALLEL_WORK (golden_model.packed).
MAX_THREADS = 4
PARALLEL_WORK = 1e7
SURE_PARALLEL_WORK = 5e7


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_inputs(net: Network, x: np.ndarray, where: str = "inputs") -> None:
    """Reject inputs the ONNX graph would not take: dtype, rank, shape, NaN."""
    check_stage_inputs(net.input, x, where)


def check_stage_inputs(stage: InputStage, x: np.ndarray, where: str = "inputs") -> None:
    """``check_inputs`` for an input stage."""
    if not isinstance(x, np.ndarray):
        raise BadInputError("inputs are not a numpy array", where=where)
    if x.dtype != np.float32:
        raise BadInputError(f"dtype {x.dtype}, the graph input takes float32", where=where)
    want = stage.graph_shape
    if x.ndim != len(want) + 1:
        raise BadInputError(f"rank {x.ndim} (shape {x.shape}), the graph input takes "
                            f"[batch, {', '.join(map(str, want))}]", where=where)
    if tuple(x.shape[1:]) != want:
        raise BadInputError(f"shape {x.shape}, the graph input takes "
                            f"[batch, {', '.join(map(str, want))}]", where=where)
    if x.shape[0] == 0:
        raise BadInputError("empty batch", where=where)
    if np.isnan(x.min()):  # a NaN anywhere makes the minimum NaN (no mask array)
        raise BadInputError(f"{int(np.isnan(x).sum())} NaN values", where=where)


def _count_at_least(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """int8 #{k : v >= t[c, k]} with channels on axis 1 of ``v``; t is [C or 1, K].

    One broadcast comparison per threshold column: no transposes and no
    [..., K] temporary.
    """
    bshape = (1, t.shape[0]) + (1,) * (v.ndim - 2)
    cnt = (v >= t[:, 0].reshape(bshape)).astype(np.int8)
    for k in range(1, t.shape[1]):
        cnt += v >= t[:, k].reshape(bshape)
    return cnt


def to_ir_layout(st: InputStage, x: np.ndarray) -> np.ndarray:
    """The graph input [N, *graph_shape] rearranged to the IR's [N, *shape]."""
    if st.source_shape is None:
        return x
    flat = x.reshape(x.shape[0], -1)
    if st.source_index is not None:
        flat = flat[:, np.asarray(st.source_index, np.int64)]
    return np.ascontiguousarray(flat).reshape(x.shape[0], *st.shape)


def quantize_input(net: Network, x: np.ndarray) -> np.ndarray:
    """Float32 input -> integer input tensor (int16), exactly as a float32 executor."""
    return quantize_stage(net.input, x)


def quantize_stage(st: InputStage, x: np.ndarray) -> np.ndarray:
    """``quantize_input`` for an input stage."""
    q = st.quantizer
    # Layout first: the pre-ops and the quantizer are elementwise, so moving
    # values around before them changes no float result.
    y = apply_chain(st.pre_ops, to_ir_layout(st, x), axis=1)
    if q.kind == "multithreshold" and q.thresholds is not None and q.thresholds.shape[1] < 128:
        # Same float32 comparisons as Quantizer.level, channels kept on axis 1
        # (the int8 count holds up to 127 thresholds; more take the generic path).
        levels = _count_at_least(y, np.asarray(q.thresholds, np.float32)).astype(np.int16)
    else:
        levels = q.level(y, axis=1).astype(np.int16)
    return (np.int16(st.int_bias) + np.int16(st.int_scale) * levels).astype(np.int16)


_ROUND_INTO = {"ROUND": np.rint, "HALF_EVEN": np.rint, "CEIL": np.ceil, "FLOOR": np.floor,
               "DOWN": np.fix}
_PRE_INTO = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


class StageLevels:
    """The input quantizer's level index of every element (IR layout), as
    ``quantize_stage`` computes it: the same float32 operations in the same order,
    into buffers (any real dtype: bool, int8 or float32). Constants prepared once."""

    def __init__(self, st: InputStage) -> None:
        self.st = st
        q = st.quantizer
        self.generic_pre = any(op.kind == "bn" for op in st.pre_ops)
        self.pre = [(op.kind, np.asarray(op.const, F32).reshape(-1)) for op in st.pre_ops]
        self.thresholds = None if q.thresholds is None else np.asarray(q.thresholds, F32)
        self.plain = bool(np.all(np.asarray(q.scale) == 1) and np.all(np.asarray(q.zeropt) == 0))
        self.scale = np.asarray(q.scale, F32).reshape(-1)
        self.zeropt = np.asarray(q.zeropt, F32).reshape(-1)

    @staticmethod
    def _chan(c: np.ndarray, ndim: int) -> np.ndarray:
        return c.reshape((1, -1) + (1,) * (ndim - 2)) if c.size > 1 else c.reshape(())

    def __call__(self, x: np.ndarray, ws: Workspace | None = None) -> np.ndarray:
        ws = ws if ws is not None else Workspace()
        st, q = self.st, self.st.quantizer
        x = to_ir_layout(st, x)
        if self.generic_pre:
            y = apply_chain(st.pre_ops, x, axis=1)
        else:  # ElementwiseOp.apply's float32 operations, into a buffer
            y = x
            for kind, c in self.pre:
                buf = ws.get("levels_pre", x.shape)
                if kind == "rsub":
                    np.subtract(self._chan(c, x.ndim), y, out=buf)
                else:
                    _PRE_INTO[kind](y, self._chan(c, x.ndim), out=buf)
                y = buf
        if q.kind == "bipolar":
            return np.greater_equal(y, F32(0), out=ws.get("levels_bool", y.shape, np.bool_))
        t = self.thresholds
        if q.kind == "multithreshold" and t is not None and t.shape[1] < 128:
            # Same float32 comparisons as Quantizer.level, channels kept on axis 1 (an int8
            # count holds up to 127 thresholds; more take the generic path).
            bshape = (1, t.shape[0]) + (1,) * (y.ndim - 2)
            cnt = ws.get("levels_count", y.shape, np.int8)
            hit = ws.get("levels_bool", y.shape, np.bool_)
            np.greater_equal(y, t[:, 0].reshape(bshape), out=cnt, casting="unsafe")
            for k in range(1, t.shape[1]):
                np.greater_equal(y, t[:, k].reshape(bshape), out=hit)
                np.add(cnt, hit, out=cnt, casting="unsafe")
            return cnt
        if q.kind != "intquant":
            return q.level(y, axis=1)
        buf = ws.get("levels_float", y.shape)
        if self.plain:
            buf[...] = y  # dividing by 1 and adding 0 are exact
        else:
            np.divide(y, self._chan(self.scale, y.ndim), out=buf)
            np.add(buf, self._chan(self.zeropt, y.ndim), out=buf)
        if q.bits == 1 and q.signed:
            return np.greater_equal(buf, F32(0), out=ws.get("levels_bool", y.shape, np.bool_))
        lo, hi = q.int_range()
        np.clip(buf, F32(lo), F32(hi), out=buf)  # (4x faster than maximum + minimum)
        rnd = q.rounding.upper()
        if rnd in _ROUND_INTO:
            _ROUND_INTO[rnd](buf, out=buf)
        else:
            buf[...] = ROUNDERS[rnd](buf)
        if lo:
            buf -= F32(lo)
        return buf


def stage_levels(st: InputStage, x: np.ndarray, ws: Workspace | None = None) -> np.ndarray:
    """``StageLevels(st)(x, ws)``: the input quantizer's level index of every element."""
    return StageLevels(st)(x, ws)


def apply_threshold(layer: Threshold, acc: np.ndarray) -> np.ndarray:
    """Per-channel (axis 1) threshold activation of integer accumulators:
    out_bias + out_scale * #{k : sign[c] * acc >= t[c, k]}, as int8.

    The arithmetic is done in int8: ``analyze`` guarantees the outputs are in
    {-1, 0, +1} (so out_scale * count and the bias stay tiny).
    """
    v = acc.astype(np.int64, copy=False)
    if (layer.sign != 1).any():
        v = v * layer.sign.astype(np.int64).reshape((1, -1) + (1,) * (acc.ndim - 2))
    out = _count_at_least(v, layer.thresholds.astype(np.int64, copy=False))
    if layer.out_scale != 1:
        out *= np.int8(layer.out_scale)
    if layer.out_bias != 0:
        out += np.int8(layer.out_bias)
    return out


@dataclass
class Trace:
    """Every intermediate tensor of one inference (for debugging and compilers)."""

    input: np.ndarray
    outputs: list[np.ndarray]


def _last_reads(sources: list[tuple[int, ...]]) -> dict[int, int]:
    """For each output (-1 = input), the index of the last layer that reads it."""
    last: dict[int, int] = {}
    for i, srcs in enumerate(sources):
        for j in srcs:
            last[j] = i
    return last


def forward_int(net: Network, q: np.ndarray, trace: bool = False, plan: Plan | None = None
                ) -> np.ndarray | Trace:
    """Run the integer layers on an integer input batch; returns int64 logits.

    Without ``trace`` the work is done by a ``Plan`` (``plan``, prepared once for
    repeated calls, or prepared here); with it, layer by layer in IR layouts."""
    if not trace:
        plan = plan if plan is not None else Plan(net)
        if plan.exact:
            return plan.forward(q)
    return _forward_layers(net, q, trace)


def _forward_layers(net: Network, q: np.ndarray, trace: bool) -> np.ndarray | Trace:
    infos = analyze(net)
    last_read = _last_reads([info.sources for info in infos])
    live: dict[int, np.ndarray] = {-1: q}
    outs: list[np.ndarray] = []
    h: np.ndarray = q
    for i, (layer, info) in enumerate(zip(net.layers, infos, strict=True)):
        x = live[info.sources[0]]
        if isinstance(layer, Dense):
            h = int_matmul(x, layer.weight, info.acc_bound)
        elif isinstance(layer, Conv2d):
            h = conv2d_nchw(x, layer.weight, layer.stride, layer.pads, layer.pad_value,
                            info.acc_bound)
        elif isinstance(layer, MaxPool2d):
            h = maxpool_nchw(x, layer.kernel, layer.stride)
        elif isinstance(layer, Flatten):
            h = x.reshape(x.shape[0], -1)
        elif isinstance(layer, Threshold):
            h = apply_threshold(layer, x)
        elif isinstance(layer, Tap):
            h = x
        elif isinstance(layer, Add):
            # |sum| <= acc_bound, far below int32's range (analyze bounds every operand).
            h = np.zeros(x.shape, np.int32)
            for j, k in zip(layer.inputs, layer.factors, strict=True):
                h += np.int32(k) * live[j].astype(np.int32)
        elif isinstance(layer, Concat):
            h = np.concatenate([live[j] for j in layer.inputs], axis=1)
        h = np.ascontiguousarray(h)
        # Drop tensors no later layer reads (a residual net keeps only its shortcuts).
        for j in set(info.sources):
            if last_read.get(j) == i and not trace:
                live.pop(j, None)
        live[i] = h
        if trace:
            outs.append(h)
    logits = h.astype(np.int64)
    if trace:
        return Trace(q, outs)
    return logits


def scores(net: Network, logits: np.ndarray) -> np.ndarray:
    """The host-side float32 scores: the graph's output ops applied to the integer
    logits (the logits themselves, as float32, when there are none)."""
    return apply_chain(net.output_ops, np.asarray(logits).astype(np.float32), axis=1)


def predict(net: Network, logits: np.ndarray) -> np.ndarray:
    """Predicted classes: argmax of the host-side scores (first maximum on ties)."""
    if not net.output_ops:
        return np.asarray(logits).argmax(axis=1)
    return scores(net, logits).argmax(axis=1)


def infer(net: Network, x: np.ndarray, plan: Plan | None = None) -> np.ndarray:
    """Float32 input batch (as the ONNX graph takes it) -> int64 logits (``plan``:
    ``prepare(net)``, to reuse across calls)."""
    check_inputs(net, x)
    plan = plan if plan is not None else Plan(net)
    if plan.exact:
        return plan.run(x)
    out = forward_int(net, quantize_input(net, x), plan=plan)
    assert isinstance(out, np.ndarray)
    return out


# ------------------------------------------------------------------ prepared plan


class Plan:
    """A network prepared for repeated exact inference (like an onnxruntime session).

    Same integers as the layer-by-layer path above, computed differently: every
    activation and accumulator stays in one float dtype that holds all of them
    exactly (float32 when every accumulator bound is below 2**24, float64 below
    2**53), weights are cast once, convolutions run channel-last (NHWC) from
    the input to the flatten, and the flatten's HWC order is folded into the
    next layer's weights and thresholds instead of transposing activations.
    Thresholds are clipped to the accumulator range before the cast, so every
    comparison is exact. ``forward_int`` uses it; the layer-by-layer path
    remains for ``trace`` and is checked against it by the tests.

    Chains whose accumulators are small enough run packed instead
    (``golden_model.packed``): several images share each float32, thresholds
    act on the packed fields, and chunks of the batch run on the calling thread
    and helper threads, with buffers the Plan keeps between calls
    (tests/test_reference_packed.py checks it against int64 arithmetic).
    """

    def __init__(self, net: Network) -> None:
        self.net = net
        infos = analyze(net)
        top = max([info.acc_bound for info in infos] + [net.input.values.max_abs])
        # Chains only: a network with branches (Tap, Add, Concat) runs layer by layer.
        self.exact = top < 2**53 and not any(isinstance(ly, BRANCH_KINDS) for ly in net.layers)
        if not self.exact:
            return
        self.dt = exact_dtype(top)
        self.infos = infos
        self.out_size = int(np.prod(infos[-1].out_shape))
        # Images per chunk: about 2**19 elements in the largest per-image buffer (a
        # conv's patches, a layer's output), unless a weight matrix is itself too big
        # for the cache (then it, not the activations, must be read as few times as
        # possible, and the batch runs whole).
        per_image = [info.out_shape[1] * info.out_shape[2] * info.fan_in
                     if isinstance(layer, Conv2d) else int(np.prod(info.out_shape))
                     for layer, info in zip(net.layers, infos, strict=True)]
        weights = [layer.weight.size for layer in net.layers if isinstance(layer, Dense | Conv2d)]
        self.chunk = (max(1, (1 << 19) // max(per_image)) if max(weights) <= 1 << 18 else 0)
        # Several images per float32 where the network allows it (golden_model.packed);
        # otherwise one image per value, in the steps below.
        self.packed: PackedPlan | None = build(net, infos)
        self._levels = StageLevels(net.input)
        self._ws = Workspace()
        self._ws_lock = threading.Lock()
        self._workers = Workers(max(0, min(_cpus(), MAX_THREADS) - 1))
        self._tuner = Tuner(("one", "many", "helpers"))
        self.steps: list[tuple[str, tuple[object, ...]]] = []
        self.out_nhwc = False
        self.out_perm: np.ndarray | None = None
        if self.packed is None:
            self._prepare_steps()

    def _prepare_steps(self) -> None:
        net, infos, dt = self.net, self.infos, self.dt
        nhwc = len(net.input.shape) == 3
        perm: np.ndarray | None = None  # IR index of each stored feature (flat tensors)
        for layer, info in zip(net.layers, infos, strict=True):
            if isinstance(layer, Dense):
                w = layer.weight if perm is None else layer.weight[:, perm]
                self.steps.append(("dense", (np.ascontiguousarray(w.T.astype(dt)),
                                             info.fan_in * info.out_shape[0])))
                perm = None
            elif isinstance(layer, Conv2d):
                w = layer.weight
                kh, kw = int(w.shape[2]), int(w.shape[3])
                wm = np.ascontiguousarray(w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1).T
                                          .astype(dt))
                self.steps.append(("conv", (wm, kh, kw, layer.stride, layer.pads,
                                            dt(layer.pad_value))))
            elif isinstance(layer, MaxPool2d):
                self.steps.append(("pool", (layer.kernel, layer.stride)))
            elif isinstance(layer, Flatten):
                if nhwc:
                    c, h, w_ = info.in_shape
                    perm = np.arange(c * h * w_).reshape(c, h, w_).transpose(1, 2, 0).reshape(-1)
                    nhwc = False
                self.steps.append(("flatten", ()))
            else:
                assert isinstance(layer, Threshold)
                bound = infos[info.index - 1].acc_bound + 1
                t = np.clip(layer.thresholds, -bound, bound)
                sign = layer.sign
                if perm is not None:
                    t, sign = t[perm], sign[perm]
                flip = None if (sign == 1).all() else sign.astype(dt)
                self.steps.append(("act", (t.T.astype(dt), flip, dt(layer.out_scale),
                                           dt(layer.out_bias))))
        self.out_nhwc = nhwc
        self.out_perm = perm

    def run(self, x: np.ndarray) -> np.ndarray:
        """Float32 input batch (checked) -> int64 logits: the input quantizer's float32
        ops, then ``forward``, without the int16 round trip when the quantizer is an
        IntQuant of scale 1 and zero point 0 (dividing by 1 and adding 0 are exact)."""
        st = self.net.input
        if self.packed is not None:
            return self._run_packed(self.packed, x, stage=True)
        qz = st.quantizer
        if (qz.kind != "intquant" or (qz.bits == 1 and qz.signed)
                or np.any(np.asarray(qz.scale) != 1) or np.any(np.asarray(qz.zeropt) != 0)):
            return self.forward(quantize_input(self.net, x))
        lo, hi = qz.int_range()
        y = apply_chain(st.pre_ops, to_ir_layout(st, x), axis=1)
        y = ROUNDERS[qz.rounding.upper()](np.clip(y, F32(lo), F32(hi)))
        if lo != 0 or st.int_scale != 1 or st.int_bias != 0:
            y = (y - F32(lo)) * F32(st.int_scale) + F32(st.int_bias)
        return self.forward(y)

    def forward(self, q: np.ndarray) -> np.ndarray:
        """Integer input batch (any integer or integer-valued float dtype) -> int64
        logits, exactly as ``forward_int``. Networks with convolutions run the whole
        plan a few images at a time, so every activation and patch buffer of a chunk
        stays in cache (the images are independent)."""
        if self.packed is not None:
            st = self.net.input
            lev = q.astype(np.float32)
            if st.int_bias:
                lev -= F32(st.int_bias)
            if st.int_scale != 1:
                lev /= F32(st.int_scale)  # exact: the values are levels times the scale
            return self._run_packed(self.packed, lev, stage=False)
        n = q.shape[0]
        step = self.chunk or n
        out = np.empty((n, self.out_size), np.int64)
        for s in range(0, n, step):
            self._forward(q[s:s + step], out[s:s + step])
        return out

    def _run_packed(self, pk: PackedPlan, x: np.ndarray, stage: bool) -> np.ndarray:
        """Float32 inputs (``stage``: the input quantizer's levels first) or levels
        [n, ...] -> int64 logits through the packed plan, a chunk of packed rows at a
        time for convolutional networks (like ``forward``). The buffers are the
        Plan's, kept between calls, unless another thread is using them (then the
        call gets its own)."""
        n = x.shape[0]
        rows = pk.rows(n)
        # F * rows rows: every packed field has a row (the first n are the result).
        out = np.empty((pk.f * rows, self.out_size), np.int64)
        mine = self._ws_lock.acquire(blocking=False)
        try:
            ws = self._ws if mine else Workspace()
            threads = 1 + self._workers.helpers if mine else 1
            work = rows * pk.cost if threads > 1 and rows > 1 else 0.0
            # Helpers for big calls of small weight matrices (the digits CNN); for
            # middling calls and big weight matrices, the way that was fastest lately:
            # helpers, alone on one BLAS thread, or alone with the BLAS's own threads.
            sure = work >= SURE_PARALLEL_WORK and self.chunk > 0
            tuned = work >= PARALLEL_WORK and not sure
            case = (n, _OneBlasThread.threads()) if tuned else None
            way = "helpers" if sure else self._tuner.choose(case) if tuned else ""
            start = time.perf_counter()
            if way == "helpers":
                # Cache-sized chunks for the threads to take in turn, or two shares each
                # (one for middling calls: fewer GIL hand-offs), each chunk packing its
                # own images; one BLAS thread per thread.
                shares = threads if tuned and self.chunk else 2 * threads

                def prologue() -> tuple[Job, list[tuple[int, int]]]:
                    # The batch's levels at once while the helpers wake (per chunk, the
                    # many small calls contend for the GIL).
                    lev = self._levels(x, ws) if stage else x
                    h, form = pk.input_buffer(rows, ws)
                    step = min(self.chunk or rows, -(-rows // shares))

                    def job(r0: int, r1: int, space: Workspace) -> None:
                        pk.pack_rows(lambda a0, a1, _: lev[a0:a1], n, h, r0, r1, space)
                        pk.forward(h[r0:r1], form, n, out, space, r0)

                    return job, [(r0, min(rows, r0 + step)) for r0 in range(0, rows, step)]

                for space in (ws, *self._workers.spaces):
                    space.one_blas_thread = True
                with _OneBlasThread(0):
                    self._workers.run(prologue, ws)
            else:
                # One thread: the whole batch quantized at once, then chunks in turn.
                # The BLAS on one thread for the whole run ("one", or untuned and every
                # product small: set once), on its own threads ("many"), or per product.
                lev = self._levels(x, ws) if stage else x
                h, form = pk.input_buffer(rows, ws)
                one = way == "one" or (not way and pk.small(rows))
                ws.one_blas_thread = one or way == "many"
                with _OneBlasThread(0) if one else nullcontext():
                    step = self.chunk or max(rows, 1)
                    for r0 in range(0, rows, step):
                        r1 = min(rows, r0 + step)
                        pk.pack_rows(lambda a0, a1, _: lev[a0:a1], n, h, r0, r1, ws)
                        pk.forward(h[r0:r1], form, n, out, ws, r0)
            if tuned:
                self._tuner.record(case, way, time.perf_counter() - start)
        finally:
            if mine:
                self._ws_lock.release()
        return out[:n]

    def _forward(self, q: np.ndarray, out: np.ndarray) -> None:
        dt = self.dt
        n = q.shape[0]
        if q.ndim == 4:
            h = np.empty((n, q.shape[2], q.shape[3], q.shape[1]), dt)
            np.copyto(h, q.transpose(0, 2, 3, 1), casting="unsafe")
        else:
            h = q.reshape(n, -1).astype(dt, copy=False)
        for kind, args in self.steps:
            if kind == "dense":
                wt, macs = args
                with _OneBlasThread(n * int(macs)):  # type: ignore[arg-type]
                    h = h @ wt  # type: ignore[operator]
            elif kind == "conv":
                h = self._conv(h, *args)  # type: ignore[arg-type]
            elif kind == "pool":
                h = _maxpool_nhwc(h, *args)  # type: ignore[arg-type]
            elif kind == "flatten":
                h = h.reshape(n, -1)
            else:
                t, flip, scale, bias = args
                v = h if flip is None else h * flip  # type: ignore[operator]
                # bias + scale * #{k : v >= t_k}, in place (np.where with scalars is
                # ten times slower than these three passes).
                h = (v >= t[0]).astype(dt)  # type: ignore[index]
                for row in t[1:]:  # type: ignore[index]
                    h += v >= row
                h *= scale
                h += bias
        if self.out_nhwc:
            h = h.transpose(0, 3, 1, 2)
        flat = h.reshape(n, -1)
        if self.out_perm is not None:
            out[:, self.out_perm] = flat
        else:
            np.copyto(out, flat, casting="unsafe")

    @staticmethod
    def _conv(h: np.ndarray, wm: np.ndarray, kh: int, kw: int, stride: tuple[int, int],
              pads: tuple[int, int, int, int], pad_value: np.generic) -> np.ndarray:
        """NHWC convolution by im2col + GEMM, a few images at a time: the patch buffer
        stays in cache (half the time of one batch-wide im2col on the digits CNN)."""
        n, hh, ww, c = h.shape
        t, left, b, r = pads
        if any(pads):
            xp = np.empty((n, hh + t + b, ww + left + r, c), h.dtype)
            xp.fill(pad_value)
            xp[:, t:t + hh, left:left + ww] = h
        else:
            xp = h
        oh = (xp.shape[1] - kh) // stride[0] + 1
        ow = (xp.shape[2] - kw) // stride[1] + 1
        k, o = wm.shape
        out = np.empty((n, oh, ow, o), h.dtype)
        step = max(1, (1 << 19) // (oh * ow * k))
        buf = np.empty((min(n, step), oh, ow, kh, kw, c), h.dtype)
        # Each chunk's product is small: one BLAS thread (a second one only waits).
        with _OneBlasThread(step * oh * ow * k * o):
            for s in range(0, n, step):
                e = min(n, s + step)
                win = sliding_window_view(xp[s:e], (kh, kw), axis=(1, 2))
                part = buf[:e - s]
                part[...] = win[:, ::stride[0], ::stride[1]].transpose(0, 1, 2, 4, 5, 3)
                np.matmul(part.reshape(-1, k), wm, out=out[s:e].reshape(-1, o))
        return out


def _maxpool_nhwc(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]
                  ) -> np.ndarray:
    kh, kw = kernel
    sh, sw = stride
    oh = (x.shape[1] - kh) // sh + 1
    ow = (x.shape[2] - kw) // sw + 1
    out: np.ndarray | None = None
    for dy in range(kh):
        for dx in range(kw):
            s = x[:, dy:dy + sh * (oh - 1) + 1:sh, dx:dx + sw * (ow - 1) + 1:sw]
            out = s.copy() if out is None else np.maximum(out, s, out=out)
    assert out is not None
    return out


def prepare(net: Network) -> Plan:
    return Plan(net)
