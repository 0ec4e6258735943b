"""Batch-packed exact inference: several images in each float32 value.

The accumulators of a binary or ternary network are small integers, and a
float32 holds every integer of magnitude below 2**24 exactly. A 1024-input
binary layer needs 11 bits, so one float32 can carry the numbers of F images:
image j of a group of F sits in the field of bits [s*j, s*j + s) of

    P = sum_j 2**(s*j) * c_j        (c_j: an activation of image j, as a level count)

and one float32 product ``P @ W`` is ``sum_j 2**(s*j) * (c_j @ W)``, every
image's accumulator in its own field, provided that

* every partial sum of the product is an integer below 2**24 in magnitude, so
  the float32 product is exact in any order of addition. The inputs are >= 0,
  so a partial sum of an output lies between the sum of its negative terms and
  the sum of its positive ones: checked as ``S * hi < 2**24`` and
  ``-S * lo < 2**24`` per output, [lo, hi] the accumulator range over counts in
  [0, L] and S = sum_j 2**(s*j);
* every field, after a per-output offset, lies in [0, 2**s), so fields never
  borrow or carry into each other (checked from the accumulator range).

A GEMM, an im2col copy and every elementwise pass then run on n / F rows
instead of n.

Activations without unpacking. With the offset G - T added to each field
(G = 2**(s-1), T the threshold on the accumulator; one float32 addition per
output, exact as its result is an integer in [0, 2**24)), a field is >= G
exactly when the accumulator is >= T: bit s-1 of each field is that image's
activation (this needs T - lo <= G and hi - T < G for the accumulator range
[lo, hi]). Cast to int32 (in the same pass as the addition), one AND
with the mask of the fields' top bits leaves G * sum_j 2**(s*j) * b_j: the
next layer's packed input times G (a power of two, folded into the next
layer's weights). A max-pool of 0/1 activations, or of accumulators before a
non-decreasing threshold, is the OR of these bits.

Levels, not values. Activations are carried as level counts c in [0, L] (a
threshold's count of passed thresholds, the input quantizer's level index),
with value = a + b * c. A layer's accumulator is a * rowsum(W) + b * (W @ c),
so thresholds move to the count domain exactly (integer ceil and floor); a
channel whose activation falls as W @ c grows has its weight row negated.
Convolution padding must be a level, as it is for every network the importer
makes.

The last layer's fields are extracted exactly (int32 shifts and masks; its
inputs split into chunks when one float32 product or one field cannot hold
the whole sum) and mapped back to the integer logits. A network that cannot
be packed with two or more images per value (branches, a pad value between
levels, a max-pool that is not an OR, fields too wide) gets None from
``build`` and runs unpacked. ``build`` picks (s, F) by a rough cost (products
and elementwise passes per image) among the packings that meet every condition.

Running: buffers come from a ``Workspace`` kept between calls (fresh arrays of
a few hundred kilobytes cost page faults on every call), and chunks of packed
rows can run on helper threads (``Workers``: work stealing, one BLAS thread
each; ``Tuner``: helpers or not, by recent wall times, for middling calls).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .ir import Conv2d, Dense, Flatten, LayerInfo, MaxPool2d, Network, Threshold
from .kernels import SINGLE_THREAD_MACS, _OneBlasThread

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

F32_EXACT = 2**24  # every integer of magnitude below this is a float32
MAX_FIELDS = 4
PASS_COST = 32  # one elementwise pass over an element, in multiply-adds (for choosing s, F)

Pool = tuple[tuple[int, int], tuple[int, int]]  # kernel, stride
ConvGeom = tuple[int, int, tuple[int, int], tuple[int, int, int, int]]  # kh, kw, stride, pads


class _NotPackableError(Exception):
    """The network does not meet a packing condition (it runs unpacked)."""


# ------------------------------------------------------------- integer analysis


@dataclass
class _Act:
    """A threshold in the count domain of the product before it:
    count = #{k : d >= t[o, k]} with d = (W' @ c)[o], W' = W with rows ``neg`` negated."""

    t: np.ndarray  # int64 [O, K], sorted along K, clipped to [lo, hi + 1]
    neg: np.ndarray  # bool [O]


@dataclass
class _Lin:
    """One dense or conv product in storage order (features as stored, patches in
    (ky, kx, c) order), with the level range and value map of its input."""

    w: np.ndarray  # int8 [O, K], the true weights
    levels: int  # L: input counts are in [0, L]
    a: int  # input value = a + b * count
    b: int
    conv: ConvGeom | None
    pad: int = 0  # conv: the pad value's count
    positions: int = 1  # output positions per image
    act: _Act | None = None
    _bounds: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _parts: tuple[np.ndarray, np.ndarray] | None = None  # prefix sums of the - and + weights

    def signed_w(self) -> np.ndarray:
        if self.act is None:
            return self.w
        return np.where(self.act.neg[:, None], -self.w, self.w)

    def bounds(self, n: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Range [lo, hi] of d = (W' @ c)[o] over counts in [0, L] (pads included),
        [n, O] for the inputs split into the n ``chunks`` (remembered: set ``act``
        first)."""
        if n == 1 and n not in self._bounds:
            lo = self.levels * np.minimum(self.w, 0).sum(axis=1, dtype=np.int64)[None, :]
            hi = self.levels * np.maximum(self.w, 0).sum(axis=1, dtype=np.int64)[None, :]
            if self.act is not None:  # negated rows swap and negate the range
                lo, hi = np.where(self.act.neg, -hi, lo), np.where(self.act.neg, -lo, hi)
            self._bounds[n] = (lo, hi)
        if n not in self._bounds:
            if self._parts is None:  # prefix sums over the inputs, [O, K + 1]
                o, k = self.w.shape
                dt = np.int16 if k < 2**15 else np.int64
                parts = []
                for p in (np.minimum(self.w, 0), np.maximum(self.w, 0)):
                    c = np.zeros((o, k + 1), dt)
                    np.cumsum(p, axis=1, dtype=dt, out=c[:, 1:])
                    parts.append(c)
                self._parts = (parts[0], parts[1])
            cuts = np.array(chunks(self.w.shape[1], n))
            lo, hi = (self.levels * (p[:, cuts[:, 1]].T.astype(np.int64) - p[:, cuts[:, 0]].T)
                      for p in self._parts)
            if self.act is not None:  # negated rows swap and negate the range
                lo, hi = np.where(self.act.neg, -hi, lo), np.where(self.act.neg, -lo, hi)
            self._bounds[n] = (lo, hi)
        return self._bounds[n]


def chunks(k: int, n: int) -> tuple[tuple[int, int], ...]:
    """0..k in n nearly equal ranges (fewer when n does not divide evenly)."""
    size = -(-k // n)
    return tuple((c, min(k, c + size)) for c in range(0, k, size))


def _count_domain(layer: Threshold, lin: _Lin, acc_bound: int, pooled: bool) -> None:
    """The threshold on acc = a * rowsum(W) + b * d as thresholds on +-d (sets lin.act)."""
    bound = acc_bound + 1  # clipping keeps every comparison and keeps int64 small
    t = np.clip(layer.thresholds.astype(np.int64), -bound, bound)
    sigma = layer.sign.astype(np.int64)[:, None]
    if pooled and (sigma != 1).any():
        raise _NotPackableError("a decreasing threshold after a max-pool of accumulators")
    e = sigma * lin.b  # sigma * acc >= t  <=>  e * d >= t - sigma * a * rowsum
    rhs = t - sigma * lin.a * lin.w.sum(axis=1, dtype=np.int64)[:, None]
    up = e > 0
    # e > 0: d >= ceil(rhs / e); e < 0: d <= floor(rhs / e), i.e. -d >= -floor(rhs / e).
    tt = np.where(up, -((-rhs) // np.where(up, e, 1)), -(rhs // np.where(up, 1, e)))
    lin.act = _Act(np.sort(tt, axis=1), ~up[:, 0])
    lin._bounds.clear()
    lo, hi = (v[0] for v in lin.bounds())
    lin.act.t = np.clip(lin.act.t, lo[:, None], hi[:, None] + 1)


Op = tuple[str, object]


def _analyze(net: Network, infos: list[LayerInfo]) -> tuple[list[_Lin], list[Op]]:
    """The products in count terms, and the program in execution order:
    ("lin", i), ("act", (i, pools)), ("pool", pool), ("flatten", None). Max-pools of
    accumulators run after the threshold, on each threshold's bits (OR)."""
    st = net.input
    levels, a, b = st.quantizer.num_levels - 1, st.int_bias, st.int_scale
    nhwc = len(st.shape) == 3
    perm: np.ndarray | None = None
    lins: list[_Lin] = []
    prog: list[Op] = []
    state = "values"  # "values": activations (counts); "acc": a product's accumulators
    pooled: list[Pool] = []  # max-pools of accumulators, waiting for the threshold
    for layer, info in zip(net.layers, infos, strict=True):
        if isinstance(layer, Dense | Conv2d):
            if state != "values" or b == 0:
                raise _NotPackableError("a product without an activation input")
            if isinstance(layer, Dense):
                w = layer.weight if perm is None else layer.weight[:, perm]
                lins.append(_Lin(np.asarray(w, np.int8), levels, a, b, None))
                perm = None
            else:
                pad = (layer.pad_value - a) // b
                if any(layer.pads) and (a + b * pad != layer.pad_value or not 0 <= pad <= levels):
                    raise _NotPackableError("a pad value that is not a level")
                w = layer.weight
                wm = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1).astype(np.int8)
                geom = (int(w.shape[2]), int(w.shape[3]), layer.stride, layer.pads)
                lins.append(_Lin(wm, levels, a, b, geom, max(pad, 0),
                                 info.out_shape[1] * info.out_shape[2]))
            prog.append(("lin", len(lins) - 1))
            state = "acc"
        elif isinstance(layer, MaxPool2d):
            if state == "acc":
                pooled.append((layer.kernel, layer.stride))
            elif prog and prog[-1][0] in ("act", "pool") and levels == 1 and b > 0:
                prog.append(("pool", (layer.kernel, layer.stride)))  # max of 0/1 = OR
            else:
                raise _NotPackableError("a max-pool that is not an OR of bits")
        elif isinstance(layer, Flatten):
            if state == "acc":
                raise _NotPackableError("a flatten between a product and its threshold")
            if nhwc:
                c, h, w_ = info.in_shape
                perm = np.arange(c * h * w_).reshape(c, h, w_).transpose(1, 2, 0).reshape(-1)
                nhwc = False
            prog.append(("flatten", None))
        elif isinstance(layer, Threshold):
            if state != "acc" or layer.out_scale == 0:
                raise _NotPackableError("a threshold that does not follow a product")
            _count_domain(layer, lins[-1], infos[info.index - 1].acc_bound, bool(pooled))
            prog.append(("act", (len(lins) - 1, tuple(pooled))))
            pooled = []
            levels, a, b = layer.thresholds.shape[1], layer.out_bias, layer.out_scale
            state = "values"
        else:
            raise _NotPackableError(f"layer kind {type(layer).__name__}")
    if state != "acc" or pooled or prog[-1][0] != "lin":
        raise _NotPackableError("the network does not end in a product")
    return lins, prog


def _bits(v: int) -> int:
    """The least s >= 0 with v <= 2**s (v >= 1)."""
    return int(v - 1).bit_length()


@dataclass(frozen=True)
class _Layout:
    """A packing (s, F) that meets every exactness condition, and its final chunks."""

    s: int
    f: int
    chunks: tuple[tuple[int, int], ...]  # the last product's input ranges
    split: bool  # extract the fields of every chunk (one field cannot hold the sum)
    cost: float
    n: int  # the chunk count asked for (``chunks(k, n)``)


def _layout(lins: list[_Lin], s: int, f: int, worse_than: float = np.inf) -> _Layout | None:
    """Check (s, F) against every condition of the module text; None if one fails
    (or if it would cost ``worse_than`` or more)."""
    if s * f > 24:
        return None
    big_s = sum(1 << (s * j) for j in range(f))
    g = 1 << (s - 1)
    macs = 0.0
    for lin in lins:
        if lin.levels * big_s >= F32_EXACT:  # a packed count itself must be exact
            return None
        macs += lin.positions * lin.w.shape[0] * (lin.w.shape[1] + 1 + PASS_COST)
        if lin.act is None:
            continue
        lo, hi = (v[0] for v in lin.bounds())
        t = lin.act.t
        if (t - lo[:, None]).max() > g or (hi[:, None] - t + 1).max() > g:
            return None  # a field would leave [0, 2**s)
        if not _exact(lo, hi, big_s):
            return None
    last = lins[-1]
    lo, hi = (v[0] for v in last.bounds())
    split = bool((hi - lo).max() >= 1 << s)  # one field cannot hold every sum
    k = last.w.shape[1]
    # Chunks of the last product's inputs: each an exact float32 product and, when one
    # field cannot hold the whole sum, each sum in one field. From the fewest chunks
    # the totals allow up to a count that surely works (one weight's range per field).
    cap = min((F32_EXACT - 1) // (last.levels * big_s),
              ((1 << s) - 1) // last.levels if split else k)
    if cap < 1:
        return None
    least = max(1, int(max(hi.max(), -lo.min()) * big_s // F32_EXACT))
    most = -(-k // cap)
    if last.conv is not None and most > 1:
        return None  # a convolution's patches are not split
    o = last.w.shape[0] * last.positions

    def cost(n: int) -> float:
        passes = n * (3 * f + 1) if split else 2 * n + 2 * f
        return (macs + o * PASS_COST * (passes + 3 * f)) / f

    if cost(least) >= worse_than:
        return None
    for n in [*range(least, min(most, least + 4)), most]:
        if cost(n) >= worse_than:
            return None
        if n == most:
            break  # chunks of at most ``cap`` inputs: exact by construction
        lo_c, hi_c = last.bounds(n)
        if _exact(lo_c, hi_c, big_s) and \
                (not split or (hi_c - lo_c < 1 << s).all()):
            break
    cuts = chunks(k, n)
    return _Layout(s, f, cuts, split, cost(len(cuts)), n)


def _exact(lo: np.ndarray, hi: np.ndarray, big_s: int) -> bool:
    """Every partial sum of a packed product is exact in float32: the inputs are
    >= 0, so partial sums lie in [S * lo, S * hi]."""
    return bool((big_s * hi < F32_EXACT).all() and (-big_s * lo < F32_EXACT).all())


def build(net: Network, infos: list[LayerInfo], fields: tuple[int, int] | None = None
          ) -> PackedPlan | None:
    """A packed plan for a chain network, or None when it cannot hold two or more
    images per float32. ``fields`` = (s, F) asks for that packing only (for tests)."""
    try:
        lins, prog = _analyze(net, infos)
    except _NotPackableError:
        return None
    best: _Layout | None = None
    for s, f in [fields] if fields else [(s, f) for s in range(1, 13)
                                         for f in range(2, MAX_FIELDS + 1)]:
        lay = _layout(lins, s, f, np.inf if best is None else best.cost)
        if lay is not None and (best is None or lay.cost < best.cost):
            best = lay
    if best is None:
        return None
    try:
        return PackedPlan(net, infos, lins, prog, best)
    except _NotPackableError:
        return None


# ------------------------------------------------------------------ the plan


@dataclass
class _Prod:
    """A prepared product: float32 weights [K, O], divided by G."""

    w: np.ndarray
    conv: ConvGeom | None
    fill: np.float32  # conv: the packed pad value
    offsets: np.ndarray | None = None  # act: float32 [thresholds, O], (G - t_k) * S
    los: tuple[np.ndarray, ...] = ()  # final: int64 [O], each chunk's lowest d
    lows: tuple[np.ndarray, ...] = ()  # final: float32 [O], those times S
    scale: int = 1  # final: logits = scale * (sum of fields) + offset
    offset: np.ndarray | None = None  # final: int64 [O]


class PackedPlan:
    """A chain network prepared to run F images per float32 (see the module text)."""

    def __init__(self, net: Network, infos: list[LayerInfo], lins: list[_Lin],
                 prog: list[Op], lay: _Layout) -> None:
        self.s, self.f = s, f = lay.s, lay.f
        self.chunks, self.split = lay.chunks, lay.split
        self.cost = lay.cost * f  # per packed row, in multiply-adds (roughly)
        self.prog = prog
        self.shape = tuple(net.input.shape)
        self.nhwc_in = len(self.shape) == 3
        g = 1 << (s - 1)
        self.big_s = big_s = sum(1 << (s * j) for j in range(f))
        self.unit = np.float32(g)  # the packed value of level 1 in field 0
        self.mask = np.int32(sum(1 << (s * j + s - 1) for j in range(f)))
        self.prods: list[_Prod] = []
        for i, lin in enumerate(lins):
            ws = lin.signed_w()
            wt = ws.T.astype(np.float32)
            wt *= np.float32(1 / g)  # a power of two: exact
            fill = np.float32(lin.pad * g * big_s)
            if i == len(lins) - 1:
                los = tuple(lin.bounds(lay.n)[0])
                off = lin.a * lin.w.sum(axis=1, dtype=np.int64) + lin.b * sum(los)
                if (abs(lin.b) * (lin.bounds()[1] - lin.bounds()[0]) + np.abs(off)).max() >= 2**31:
                    raise _NotPackableError("logits beyond int32")
                lows = tuple((lo * big_s).astype(np.float32) for lo in los)
                self.prods.append(_Prod(np.ascontiguousarray(wt), lin.conv, fill,
                                        los=los, lows=lows, scale=lin.b,
                                        offset=off.astype(np.int32)))
                continue
            assert lin.act is not None
            t = lin.act.t
            offsets = (g - t.T) * big_s  # the field offset of each threshold
            assert (np.abs(offsets) < F32_EXACT).all()
            self.prods.append(_Prod(np.ascontiguousarray(wt), lin.conv, fill,
                                    offsets=offsets.astype(np.float32)))
        # Multiply-adds per packed row of each dense product (for the BLAS thread
        # choice; a convolution's products are cache-sized patches: 2**19 values).
        self._dense_macs = [lin.w.shape[0] * (lin.w.shape[1] + 1) for lin in lins
                            if lin.conv is None]
        self._conv_macs = [lin.w.shape[0] * (1 << 19) for lin in lins if lin.conv is not None]


    def small(self, rows: int) -> bool:
        """Every product of ``rows`` packed rows is small enough for one BLAS thread."""
        return max([rows * m for m in self._dense_macs] + self._conv_macs) < SINGLE_THREAD_MACS

    def rows(self, n: int) -> int:
        """Packed rows for n images (row i holds images i, i + rows, i + 2 rows, ...)."""
        return -(-n // self.f)

    # ---------------------------------------------------------------- running

    def input_buffer(self, rows: int, ws: Workspace) -> tuple[np.ndarray, str]:
        """The buffer of the packed batch [rows, ...] and its form: "ready" when it is
        the first product's input buffer (conv: the padding around it), else "float"
        (NHWC for images)."""
        pr = self.prods[0]
        if self.prog[0][0] == "lin" and pr.conv is not None:
            return self._conv_input(ws, 0, pr, (rows, self.shape[1], self.shape[2],
                                                self.shape[0])), "ready"
        shape = (rows, self.shape[1], self.shape[2], self.shape[0]) if self.nhwc_in else \
            (rows, *self.shape)
        return ws.get("pack", shape), "float"

    def pack_rows(self, levels: Callable[[int, int, Workspace], np.ndarray], n: int,
                  h: np.ndarray, r0: int, r1: int, ws: Workspace) -> None:
        """Pack rows r0:r1 of the batch buffer ``h`` (``input_buffer``): row i holds
        G * sum_j 2**(s*j) * levels of image j * rows + i; ``levels(a0, a1, ws)`` gives
        the levels [a1 - a0, *shape] (IR layout, any real dtype) of images a0:a1."""
        rows = h.shape[0]
        if self.prods[0].conv is not None and self.prog[0][0] == "lin":
            t, left = self.prods[0].conv[3][:2]
            view = h[r0:r1, t:t + self.shape[1], left:left + self.shape[2]]
            view = view.transpose(0, 3, 1, 2)
        else:
            view = h[r0:r1].transpose(0, 3, 1, 2) if self.nhwc_in else h[r0:r1]
        for j in range(self.f):
            a0, a1 = j * rows + r0, min(n, j * rows + r1)
            if a0 >= a1:
                break
            lev = levels(a0, a1, ws)
            unit = np.float32(self.unit * (1 << (self.s * j)))
            if j == 0:  # every row has an image in field 0
                np.multiply(lev, unit, out=view, casting="unsafe")
            else:
                tmp = ws.get("pack_tmp", lev.shape)
                np.multiply(lev, unit, out=tmp, casting="unsafe")
                view[:a1 - a0] += tmp

    def forward(self, h: np.ndarray, form: str, n: int, out: np.ndarray, ws: Workspace,
                r0: int = 0) -> None:
        """Run packed rows ``h`` (rows r0.. of the packed batch of n images, in
        ``form``) and write their images' logits into ``out`` [n, logits] int64.
        ``ws.one_blas_thread``: the caller already holds the BLAS to one thread."""
        for idx, (kind, arg) in enumerate(self.prog):
            if kind == "lin":
                assert isinstance(arg, int)
                pr = self.prods[arg]
                if pr.offset is not None:
                    self._final(arg, h, form, pr, n, out, r0, ws)
                    return
                h, form = self._product(arg, h, form, pr, ws), "acc"
            elif kind == "act":
                i, pools = arg  # type: ignore[misc]
                h, form = self._act(i, h, self.prods[i].offsets, pools, ws), "int"
            elif kind == "pool":
                assert form == "int"
                kernel, stride = arg  # type: ignore[misc]
                h = _or_pool(h, kernel, stride, ws, idx)
            else:
                h = h.reshape(h.shape[0], -1)

    @staticmethod
    def _conv_input(ws: Workspace, i: int, pr: _Prod, shape: tuple[int, ...]) -> np.ndarray:
        """Product i's padded NHWC input buffer (the padding filled once)."""
        assert pr.conv is not None
        t, left, b, r = pr.conv[3]
        rows, hh, ww, c = shape

        def pad(buf: np.ndarray) -> None:
            buf.fill(pr.fill)
        return ws.get(("in", i), (rows, hh + t + b, ww + left + r, c), init=pad)

    def _product(self, i: int, h: np.ndarray, form: str, pr: _Prod, ws: Workspace
                 ) -> np.ndarray:
        if pr.conv is not None:
            return self._conv(i, self._conv_x(i, h, form, pr, ws), pr, ws)
        x = self._dense_x(i, h, ws)
        r = ws.get(("acc", i), (x.shape[0], pr.w.shape[1]))
        with ws.blas(x.shape[0] * x.shape[1] * pr.w.shape[1]):
            np.matmul(x, pr.w, out=r)
        return r

    @staticmethod
    def _dense_x(i: int, h: np.ndarray, ws: Workspace) -> np.ndarray:
        """A dense product's float32 input (packed counts as int32 are converted)."""
        if h.dtype == np.float32:
            return h
        x = ws.get(("in", i), h.shape)
        np.copyto(x, h, casting="unsafe")
        return x

    def _conv_x(self, i: int, h: np.ndarray, form: str, pr: _Prod, ws: Workspace
                ) -> np.ndarray:
        if form == "ready":
            return h
        assert pr.conv is not None
        xp = self._conv_input(ws, i, pr, h.shape)
        t, left = pr.conv[3][:2]
        np.copyto(xp[:, t:t + h.shape[1], left:left + h.shape[2]], h, casting="unsafe")
        return xp

    def _conv(self, i: int, xp: np.ndarray, pr: _Prod, ws: Workspace) -> np.ndarray:
        """NHWC convolution of padded packed rows by im2col + GEMM, a few rows at a
        time (the patch buffer stays in cache)."""
        assert pr.conv is not None
        kh, kw, (sh, sw), _ = pr.conv
        w = pr.w
        rows, c = xp.shape[0], xp.shape[3]
        oh = (xp.shape[1] - kh) // sh + 1
        ow = (xp.shape[2] - kw) // sw + 1
        k, o = w.shape
        out = ws.get(("acc", i), (rows, oh, ow, o))
        step = max(1, (1 << 19) // (oh * ow * k))
        buf = ws.get(("patches", i), (min(rows, step) * oh * ow, k))
        # The (window source, patch destination, output) views of each few rows, made
        # once per set of buffers (making them costs more than copying small ones).
        key = ("conv", i, xp.ctypes.data, xp.shape, xp.strides, buf.ctypes.data,
               out.ctypes.data)
        views = ws.views.get(key)
        if views is None:
            views = []
            st = xp.strides
            for s0 in range(0, rows, step):
                e = min(rows, s0 + step)
                src = as_strided(xp[s0:e], shape=(e - s0, oh, ow, kh, kw, c),
                                 strides=(st[0], sh * st[1], sw * st[2], st[1], st[2], st[3]),
                                 writeable=False)
                part = buf[:(e - s0) * oh * ow]
                views.append((src, part.reshape(e - s0, oh, ow, kh, kw, c), part,
                              out[s0:e].reshape(-1, o)))
            ws.views[key] = views
        with ws.blas(step * oh * ow * k * o):
            for src, dst, part, res in views:
                dst[...] = src
                np.matmul(part, w, out=res)
        return out

    def _act(self, i: int, r: np.ndarray, offsets: np.ndarray | None,
             pools: tuple[Pool, ...], ws: Workspace) -> np.ndarray:
        """Packed accumulators r = sum_j 2**(s*j) * d_j -> the packed counts
        G * sum_j 2**(s*j) * #{k : d_j >= t_k}, int32; ``pools`` (max-pools of the
        accumulators) are ORs of each threshold's bits."""
        assert offsets is not None
        mask = self.mask
        acc = ws.get(("act", i), r.shape, np.int32)
        # Fields d - t_0 + G, each in [0, 2**s): the float32 sum is exact (an integer
        # below 2**24), and so is its conversion to int32 in the same pass.
        np.add(r, offsets[0], out=acc, casting="unsafe")
        acc &= mask
        for j, (kernel, stride) in enumerate(pools):
            acc = _or_pool(acc, kernel, stride, ws, ("act_pool", i, 0, j))
        if offsets.shape[0] == 1:
            return acc
        yi = ws.get(("act_yi", i), r.shape, np.int32)
        for k in range(1, offsets.shape[0]):
            np.add(r, offsets[k], out=yi, casting="unsafe")
            yi &= mask
            b = yi
            for j, (kernel, stride) in enumerate(pools):
                b = _or_pool(b, kernel, stride, ws, ("act_pool", i, k, j))
            acc += b
        return acc

    def _final(self, i: int, h: np.ndarray, form: str, pr: _Prod, n: int, out: np.ndarray,
               r0: int, ws: Workspace) -> None:
        """The last product: exact fields -> the integer logits of each image. The
        products are float32 (exact); the fields are taken a block of rows at a time
        so that their passes stay in cache."""
        assert pr.offset is not None
        o = pr.w.shape[1]
        parts: list[np.ndarray] = []
        if pr.conv is not None:
            parts.append(self._conv(i, self._conv_x(i, h, form, pr, ws), pr, ws))
        else:
            if form == "ready" or h.dtype == np.float32:
                x = h
            else:
                x = ws.get(("in", i), h.shape)
                np.copyto(x, h, casting="unsafe")
            for c, (c0, c1) in enumerate(self.chunks):
                r = ws.get(("acc", i, c), (x.shape[0], o))
                with ws.blas(x.shape[0] * (c1 - c0) * o):
                    np.matmul(x[:, c0:c1], pr.w[c0:c1], out=r)
                parts.append(r)
        parts = [r.reshape(r.shape[0], -1, o) for r in parts]
        rows, positions = parts[0].shape[:2]
        lows = pr.lows
        # ``out`` has F * rows_all rows: field j of packed row i is image j * rows_all + i
        # (rows past the batch's last image are written and not returned).
        dst = out.reshape(self.f, self.rows(n), o, positions)
        blk = min(rows, max(1, (1 << 17) // (positions * o)))
        for b0 in range(0, rows, blk):
            b1 = min(rows, b0 + blk)
            u = ws.get("fin_u", (blk, positions, o))[:b1 - b0]
            if not self.split:
                np.subtract(parts[0][b0:b1], lows[0], out=u)
                for r, low in zip(parts[1:], lows[1:], strict=True):
                    np.add(u, r[b0:b1], out=u)  # each sum of fields below 2**24: exact
                    u -= low
                fields = self._fields(u, ws, "fin_f")
            else:
                for c, (r, low) in enumerate(zip(parts, lows, strict=True)):
                    np.subtract(r[b0:b1], low, out=u)  # fields d - lo in [0, 2**s)
                    if c == 0:
                        fields = self._fields(u, ws, "fin_f")
                    else:
                        fields += self._fields(u, ws, "fin_g")
            fields *= pr.scale
            fields += pr.offset
            # [F, rows, positions, O] -> each image's logits (NCHW order for a conv's)
            dst[:, r0 + b0:r0 + b1] = fields.transpose(0, 1, 3, 2)

    def _fields(self, u: np.ndarray, ws: Workspace, key: str) -> np.ndarray:
        """Packed non-negative float32 integers below 2**24 -> the F fields, int32
        [F, *u.shape]."""
        s, f = self.s, self.f
        ui = ws.get("fin_ui", u.shape, np.int32)
        np.copyto(ui, u, casting="unsafe")
        fmask = np.int32((1 << s) - 1)
        out = ws.get(key, (u.shape[0], f, *u.shape[1:]), np.int32).swapaxes(0, 1)
        np.bitwise_and(ui, fmask, out=out[0])
        for j in range(1, f):
            np.right_shift(ui, s * j, out=out[j])
        if f > 2:
            out[1:f - 1] &= fmask
        return out


class Workers:
    """Helper threads that take chunks of packed rows alongside the calling thread.

    Work stealing: every thread takes the next chunk when it is free, and the
    caller waits only for chunks that were taken. A helper the OS does not
    schedule in time (a loaded machine) leaves its share to the caller instead of
    stalling the call, unlike a BLAS that splits one product between threads in
    fixed halves. Each thread has its own ``Workspace``; numpy releases the GIL in
    products, copies and elementwise passes. The pool belongs to its owner (a
    Plan) and its threads end when the owner is garbage collected."""

    def __init__(self, helpers: int) -> None:
        self.helpers = helpers
        self.spaces = [Workspace() for _ in range(helpers)]
        self._pool: ThreadPoolExecutor | None = None

    def run(self, prologue: Callable[[], tuple[Job, list[tuple[int, int]]]],
            ws: Workspace) -> None:
        """Wake the helpers, run ``prologue()`` on this thread while they wake (it
        returns a job and its tasks), then ``job(r0, r1, workspace)`` for every task
        on this thread and the helpers."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor  # (imports logging: lazily)

            self._pool = ThreadPoolExecutor(self.helpers, thread_name_prefix="cimgen-plan")
        cond = threading.Condition()
        todo: list[Iterator[tuple[int, int]]] = []  # the tasks, once published
        jobs: list[Job] = []
        done: list[int] = [0]
        errors: list[BaseException] = []

        def drain(space: Workspace) -> None:
            while True:
                with cond:
                    task = next(todo[0], None)
                if task is None:
                    return
                try:
                    jobs[0](*task, space)
                except BaseException as e:  # re-raised by the caller
                    with cond:
                        errors.append(e)
                finally:
                    with cond:
                        done[0] += 1
                        cond.notify_all()

        def helper(space: Workspace) -> None:
            with cond:
                cond.wait_for(lambda: bool(todo))
            drain(space)

        for space in self.spaces:
            self._pool.submit(helper, space)
        try:
            job, tasks = prologue()
        except BaseException:
            with cond:  # let the helpers go
                todo.append(iter(()))
                cond.notify_all()
            raise
        with cond:
            jobs.append(job)
            todo.append(iter(tasks))
            cond.notify_all()
        drain(ws)
        with cond:
            cond.wait_for(lambda: done[0] == len(tasks))
        if errors:
            raise errors[0]


Job = Callable[[int, int, "Workspace"], None]


class Tuner:
    """Chooses a way to run calls where none is clearly fastest, per case (batch
    size, BLAS threads), from the recent wall times of each way (an exponential
    average). Helpers and a 2-thread BLAS win when the other CPUs are free; when
    other jobs hold them, a 2-thread BLAS product waits for its second half (tens of
    milliseconds for a 0.1 ms product) and one thread wins. Every ``EXPLORE``-th call
    tries another way, so the choice follows the machine's load; a way that came
    out more than ``SLOW`` times slower than the best is retried half as often
    each time (at most every ``BACKOFF`` calls). Speed only: every way gives the
    same integers."""

    EXPLORE = 16
    SLOW = 3.0
    BACKOFF = 1024
    CASES = 64  # cases remembered (the table starts over beyond)

    def __init__(self, ways: tuple[str, ...]) -> None:
        self.ways = ways
        self._stats: dict[Hashable, dict[str, list[float]]] = {}  # way -> [s, every]
        self._calls: dict[Hashable, int] = {}

    def choose(self, case: Hashable) -> str:
        st = self._stats.get(case)
        if st is None:
            if len(self._stats) >= self.CASES:
                self._stats.clear()
                self._calls.clear()
            st = self._stats[case] = {w: [np.nan, self.EXPLORE] for w in self.ways}
            self._calls[case] = 0
        self._calls[case] += 1
        calls = self._calls[case]
        for w in self.ways:
            if np.isnan(st[w][0]):
                return w  # untried
        best = min(self.ways, key=lambda w: st[w][0])
        for i, w in enumerate(self.ways):  # (offset by i: the ways take turns)
            if w != best and (calls + i) % int(st[w][1]) == 0:
                return w
        return best

    def record(self, case: Hashable, way: str, seconds: float) -> None:
        st = self._stats.get(case)
        if st is None:
            return
        t = st[way]
        t[0] = seconds if np.isnan(t[0]) else 0.7 * t[0] + 0.3 * seconds
        best = min(v[0] for v in st.values() if not np.isnan(v[0]))
        t[1] = min(2 * t[1], self.BACKOFF) if seconds > self.SLOW * best else self.EXPLORE


class Workspace:
    """Buffers of a run, kept for the next run of the same shapes (fresh arrays of a
    few hundred kilobytes cost page faults on every call)."""

    def __init__(self) -> None:
        self._bufs: dict[object, np.ndarray] = {}
        self.views: dict[object, list[tuple[np.ndarray, ...]]] = {}  # of current buffers
        self.one_blas_thread = False  # set while the caller holds the BLAS to one thread

    def blas(self, macs: int) -> AbstractContextManager[object]:
        """``_OneBlasThread(macs)``, or nothing when the caller holds one thread already."""
        return nullcontext() if self.one_blas_thread else _OneBlasThread(macs)

    def get(self, key: object, shape: tuple[int, ...], dtype: type[np.generic] = np.float32,
            init: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
        """A buffer [shape[0] rows of at least that many, *shape[1:]] (contents left from
        its last use; ``init`` runs once, on a new buffer)."""
        k = (key, shape[1:], dtype)
        buf = self._bufs.get(k)
        if buf is None or buf.shape[0] < shape[0]:
            buf = np.empty(shape, dtype)
            if init is not None:
                init(buf)
            self._bufs[k] = buf
            self.views.clear()  # views of the buffer this one replaces go too
        return buf if buf.shape[0] == shape[0] else buf[:shape[0]]


def _or_pool(h: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], ws: Workspace,
             key: object) -> np.ndarray:
    """Max-pool of packed 0/1 bits (int32 [rows, H, W, C]): the OR of each field."""
    kh, kw = kernel
    sh, sw = stride
    oh = (h.shape[1] - kh) // sh + 1
    ow = (h.shape[2] - kw) // sw + 1
    out = ws.get(("pool", key), (h.shape[0], oh, ow, h.shape[3]), np.int32)
    for dy in range(kh):
        for dx in range(kw):
            v = h[:, dy:dy + sh * (oh - 1) + 1:sh, dx:dx + sw * (ow - 1) + 1:sw]
            if dy == dx == 0:
                out[...] = v
            else:
                np.bitwise_or(out, v, out=out)
    return out
