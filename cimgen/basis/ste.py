"""Straight-through-estimator fine-tuning of coefficients and thresholds (numpy).

The basis is fixed (it is what the crossbars hold). Trained: latent float
coefficients (the forward pass uses clip(round(.)) to the ``coef_bits``
range) and latent float thresholds (the forward pass compares the integer
accumulators with them, which equals comparing with their ceiling, the
integer threshold that is stored). The forward pass is therefore exactly the
integer basis-form inference; gradients pass the rounding unchanged (STE) and
pass a threshold step as a box of half-width w_c around it, w_c the spread
of that channel's accumulators on the training set (the hard-tanh STE of
binarized networks, scaled to each channel).

Loss: softmax cross-entropy of the integer logits times a temperature chosen
once (the grid value with the lowest initial loss). Adam, mini-batches in a
seeded order, one BLAS thread: deterministic. The returned network is the
epoch with the best training accuracy (the starting point included), so
fine-tuning never returns something worse on the data it saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from golden_model.basis import (
    BasisLinear,
    BasisNetwork,
    check_basis_network,
    coef_range,
    forward_basis,
)
from golden_model.ir import Conv2d, Flatten, LayerInfo, MaxPool2d, Threshold

from .finetune import layer_reads, to_positions
from .fit import one_blas_thread


@dataclass(frozen=True)
class SteConfig:
    epochs: int
    seed: int = 0
    batch: int = 64
    # Adam step sizes at the start of a cosine decay to zero. Coefficients: in
    # units of 1/7 of the coefficient range (one integer step at 4 bits), so
    # every coef_bits moves the same fraction of its range per step.
    lr_coef: float = 0.05
    lr_thr: float = 0.05  # in units of the channel's box half-width w_c


@dataclass
class SteResult:
    bn: BasisNetwork
    train_accuracy: list[float] = field(default_factory=list)  # per epoch, [0] = start
    best_epoch: int = 0


class _Adam:
    def __init__(self, shape: tuple[int, ...], lr: float) -> None:
        self.m = np.zeros(shape)
        self.v = np.zeros(shape)
        self.lr = lr
        self.t = 0

    def step(self, p: np.ndarray, g: np.ndarray, scale: np.ndarray | float = 1.0) -> None:
        self.t += 1
        self.m = 0.9 * self.m + 0.1 * g
        self.v = 0.999 * self.v + 0.001 * g * g
        mh = self.m / (1 - 0.9**self.t)
        vh = self.v / (1 - 0.999**self.t)
        p -= self.lr * scale * mh / (np.sqrt(vh) + 1e-8)


class _Model:
    """Latent parameters plus forward/backward over the basis-form layer list."""

    def __init__(self, bn: BasisNetwork, infos: list[LayerInfo]) -> None:
        self.bn = bn
        self.infos = infos
        self.lo, self.hi = coef_range(bn.coef_bits)
        self.coef: dict[int, np.ndarray] = {}
        self.thr: dict[int, np.ndarray] = {}
        self.width: dict[int, np.ndarray] = {}
        for i, ly in enumerate(bn.layers):
            if isinstance(ly, BasisLinear):
                self.coef[i] = ly.coefs.reshape(ly.out_features, -1).astype(np.float64)
            elif isinstance(ly, Threshold):
                # ceil(t - 0.5) == t: the latent value sits mid-way between integers
                self.thr[i] = ly.thresholds.astype(np.float64) - 0.5
        self.first_linear = min(self.coef)

    def int_coefs(self, i: int) -> np.ndarray:
        return np.clip(np.rint(self.coef[i]), self.lo, self.hi)

    def int_thresholds(self, i: int) -> np.ndarray:
        return np.ceil(self.thr[i]).astype(np.int64)

    def forward(self, q: np.ndarray, keep: bool) -> tuple[np.ndarray, list[object]]:
        h = q.astype(np.int64)
        cache: list[object] = []
        for i, (ly, info) in enumerate(zip(self.bn.layers, self.infos, strict=True)):
            if isinstance(ly, BasisLinear):
                assert info.in_values is not None
                x, shape = layer_reads(ly, h, self.bn.basis, info.in_values.max_abs)
                a = self.int_coefs(i)
                acc = np.rint(x @ a.T).astype(np.int64)
                cache.append((x, shape, a, h.shape) if keep else None)
                if len(shape) == 3:
                    acc = acc.reshape(*shape, -1).transpose(0, 3, 1, 2)
                h = np.ascontiguousarray(acc)
            elif isinstance(ly, MaxPool2d):
                win = sliding_window_view(h, ly.kernel, axis=(2, 3))[
                    :, :, ::ly.stride[0], ::ly.stride[1]]
                flat = win.reshape(*win.shape[:4], -1)
                arg = flat.argmax(axis=4)
                cache.append((arg, h.shape) if keep else None)
                h = np.take_along_axis(flat, arg[..., None], axis=4)[..., 0]
            elif isinstance(ly, Flatten):
                cache.append(h.shape)
                h = h.reshape(h.shape[0], -1)
            else:
                assert isinstance(ly, Threshold)
                bshape = (1, -1) + (1,) * (h.ndim - 2)
                v = h * ly.sign.astype(np.int64).reshape(bshape)
                t = self.thr[i]
                count = np.zeros(h.shape, np.int64)
                for k in range(t.shape[1]):
                    count += v >= t[:, k].reshape(bshape)
                cache.append(v if keep else None)
                h = ly.out_bias + ly.out_scale * count
        return h, cache

    def backward(self, g: np.ndarray, cache: list[object]
                 ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        gc: dict[int, np.ndarray] = {}
        gt: dict[int, np.ndarray] = {}
        basis = self.bn.basis.vectors.astype(np.float64)
        for i in range(len(self.bn.layers) - 1, -1, -1):
            ly = self.bn.layers[i]
            c = cache[i]
            if isinstance(ly, BasisLinear):
                x, shape, a, in_shape = c  # type: ignore[misc]
                gp = to_positions(g)
                gc[i] = gp.T @ x
                if i == self.first_linear:
                    break
                gx = (gp @ a).reshape(gp.shape[0], ly.segments, basis.shape[0])
                rows = (gx @ basis).reshape(gp.shape[0], -1)[:, :ly.rows]
                if isinstance(ly.source, Conv2d):
                    g = _col2im(rows, in_shape, ly.source, shape)
                else:
                    flat = np.zeros((in_shape[0], ly.rows))
                    flat[:, ly.in_order] = rows
                    g = flat.reshape(in_shape)
            elif isinstance(ly, MaxPool2d):
                arg, in_shape = c  # type: ignore[misc]
                g = _unpool(g, arg, in_shape, ly)
            elif isinstance(ly, Flatten):
                g = g.reshape(c)  # type: ignore[arg-type]
            else:
                assert isinstance(ly, Threshold)
                v = c
                assert isinstance(v, np.ndarray)
                bshape = (1, -1) + (1,) * (v.ndim - 2)
                w = self.width[i].reshape(bshape)
                t = self.thr[i]
                gv = np.zeros(v.shape)
                gti = np.zeros(t.shape)
                axes = (0, *range(2, v.ndim))
                for k in range(t.shape[1]):
                    box = (np.abs(v - t[:, k].reshape(bshape)) <= w) / (2 * w)
                    gk = g * ly.out_scale * box
                    gv += gk
                    gti[:, k] = -gk.sum(axis=axes)
                gt[i] = gti
                g = gv * ly.sign.astype(np.float64).reshape(bshape)
        return gc, gt

    def network(self) -> BasisNetwork:
        layers: list[object] = list(self.bn.layers)
        for i, ly in enumerate(self.bn.layers):
            if isinstance(ly, BasisLinear):
                a = self.int_coefs(i).astype(np.int8).reshape(ly.coefs.shape)
                layers[i] = BasisLinear(ly.source, a, ly.in_order, ly.scale)
            elif isinstance(ly, Threshold):
                layers[i] = Threshold(self.int_thresholds(i), ly.sign, ly.out_scale,
                                      ly.out_bias)
        return BasisNetwork(self.bn.original, self.bn.basis, self.bn.coef_bits,
                            tuple(layers))  # type: ignore[arg-type]


def _col2im(rows: np.ndarray, in_shape: tuple[int, ...], conv: Conv2d,
            out_shape: tuple[int, ...]) -> np.ndarray:
    """Gradient of ``im2col_dmem``: rows [N*OH*OW, KH*KW*C] back onto the input NCHW."""
    n, c, h, w = in_shape
    kh, kw = conv.weight.shape[2:]
    t, left, b, r = conv.pads
    sy, sx = conv.stride
    _, oh, ow = out_shape
    g = rows.reshape(n, oh, ow, kh, kw, c)
    gp = np.zeros((n, c, h + t + b, w + left + r))
    for dy in range(kh):
        for dx in range(kw):
            gp[:, :, dy:dy + sy * (oh - 1) + 1:sy, dx:dx + sx * (ow - 1) + 1:sx] += \
                g[:, :, :, dy, dx, :].transpose(0, 3, 1, 2)
    return gp[:, :, t:t + h, left:left + w]


def _unpool(g: np.ndarray, arg: np.ndarray, in_shape: tuple[int, ...], pool: MaxPool2d
            ) -> np.ndarray:
    n, c, oh, ow = g.shape
    _, kw = pool.kernel
    sy, sx = pool.stride
    out = np.zeros(in_shape)
    dy, dx = np.divmod(arg, kw)
    ni, ci, yi, xi = np.indices((n, c, oh, ow))
    np.add.at(out, (ni, ci, yi * sy + dy, xi * sx + dx), g)
    return out


def _softmax_ce(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    p[np.arange(len(y)), y] -= 1
    return loss, p / len(y)


def finetune_ste(bn: BasisNetwork, q: np.ndarray, y: np.ndarray, cfg: SteConfig) -> SteResult:
    """``cfg.epochs`` epochs on integer training inputs ``q`` with labels ``y``."""
    infos = check_basis_network(bn)
    model = _Model(bn, infos)
    rng = np.random.default_rng([cfg.seed, 0x57E])
    with one_blas_thread():
        logits, cache = model.forward(q, keep=True)
        for i, ly in enumerate(bn.layers):
            if isinstance(ly, Threshold):
                v = cache[i]
                assert isinstance(v, np.ndarray)
                spread = np.moveaxis(v, 1, 0).reshape(v.shape[1], -1).std(axis=1)
                model.width[i] = np.maximum(spread, 1.0)
        grid = np.geomspace(1e-3, 10, 41) / max(float(logits.std()), 1.0)
        tau = float(grid[int(np.argmin([_softmax_ce(logits * s, y)[0] for s in grid]))])
        lr_c = cfg.lr_coef * max(1.0, model.hi / 7)
        opt_c = {i: _Adam(p.shape, lr_c) for i, p in model.coef.items()}
        opt_t = {i: _Adam(p.shape, cfg.lr_thr) for i, p in model.thr.items()}
        best_acc = float((logits.argmax(1) == y).mean())
        hist = [best_acc]
        best = model.network()
        best_epoch = 0
        for ep in range(1, cfg.epochs + 1):
            decay = 0.5 * (1 + np.cos(np.pi * (ep - 1) / cfg.epochs))
            for opt, lr in [*((o, lr_c) for o in opt_c.values()),
                            *((o, cfg.lr_thr) for o in opt_t.values())]:
                opt.lr = lr * decay
            order = rng.permutation(len(y))
            for s0 in range(0, len(y), cfg.batch):
                idx = order[s0:s0 + cfg.batch]
                z, cache = model.forward(q[idx], keep=True)
                _, gz = _softmax_ce(z * tau, y[idx])
                gc, gt = model.backward(gz * tau, cache)
                for i, gi in gc.items():
                    opt_c[i].step(model.coef[i], gi)
                    np.clip(model.coef[i], model.lo - 0.5, model.hi + 0.5, out=model.coef[i])
                for i, gi in gt.items():
                    opt_t[i].step(model.thr[i], gi, model.width[i][:, None])
            logits, _ = model.forward(q, keep=False)
            acc = float((logits.argmax(1) == y).mean())
            hist.append(acc)
            if acc > best_acc:
                best_acc, best, best_epoch = acc, model.network(), ep
    check_basis_network(best)
    assert isinstance(forward_basis(best, q[:1]), np.ndarray)
    return SteResult(best, hist, best_epoch)

