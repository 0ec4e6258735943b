"""Data-driven refinement of a basis-form network on a training split.

Stage 1, layer-wise distillation (closed form, one pass from the first layer
to the last): the basis is fixed (it is what the chip holds); for each linear
layer the coefficients are re-solved so that the basis form's accumulators,
*computed from the basis form's own activations*, match the original
network's accumulators on the training images, and each threshold is then
re-chosen so that the basis form's activations agree with the original's as
often as possible. Because every layer sees the activations the basis form
really produces, the errors of earlier layers are compensated rather than
compounded. Details:

* features: the crossbar reads X = [x_s . b_j] (samples x positions, S*N);
  target: the original accumulators T. Ridge least squares pulls toward the
  weight-space fit: c = argmin ||X c - T||^2 + lam ||c - c0||^2, lam a small
  fraction of the mean feature energy, which keeps under-determined layers
  (few samples per coefficient) at the weight-space solution.
* quantization: per-output scale (one per layer for the logits) so that the
  largest coefficient meets the top of the range, rounding, then integer
  coordinate descent on the same quadratic form (Gram matrix X^T X + lam I),
  alternated with the least-squares scale.
* thresholds: for threshold k of channel c, the integer t maximizing the
  agreement of [sign * acc' >= t] with [original count >= k] over the
  training positions; ties go to the value nearest the rescaled original.

Stage 2, ``epochs`` of straight-through-estimator gradient descent
(``cimgen.basis.ste``) on latent float coefficients and thresholds against the
labels, if asked for.

All of it is float64 numpy on one BLAS thread with fixed orders: deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden_model.basis import (
    Basis,
    BasisLinear,
    BasisNetwork,
    basis_reads,
    check_basis_network,
    coef_range,
    forward_basis,
    im2col_dmem,
    maxpool,
    threshold_counts,
)
from golden_model.ir import Conv2d, Flatten, LayerInfo, MaxPool2d, Threshold
from golden_model.reference import forward_int

from .fit import one_blas_thread


@dataclass(frozen=True)
class TuneConfig:
    ridge: float = 1e-2  # lam as a fraction of the mean diagonal of X^T X
    quant_iters: int = 8


def layer_reads(layer: BasisLinear, h: np.ndarray, basis: Basis, x_max: int
                ) -> tuple[np.ndarray, tuple[int, ...]]:
    """Reads of a linear layer on activations h: [positions, S*N] and the output
    layout (batch, OH, OW) for a conv, (batch,) for a dense layer."""
    if isinstance(layer.source, Conv2d):
        cols, oh, ow = im2col_dmem(h, layer.source)
        shape: tuple[int, ...] = (h.shape[0], oh, ow)
    else:
        cols = h.reshape(h.shape[0], -1)[:, layer.in_order]
        shape = (h.shape[0],)
    r = basis_reads(cols, basis, x_max, as_float=True)
    return r.reshape(r.shape[0], -1), shape


def to_positions(acc: np.ndarray) -> np.ndarray:
    """Accumulators [B, O] or [B, O, H, W] -> [positions, O] matching ``layer_reads``."""
    if acc.ndim == 4:
        return acc.transpose(0, 2, 3, 1).reshape(-1, acc.shape[1])
    return acc


def solve_layer(x: np.ndarray, t: np.ndarray, c0: np.ndarray, per_channel: bool, bits: int,
                cfg: TuneConfig) -> tuple[np.ndarray, np.ndarray]:
    """Integer coefficients [O, D] and scales [O] with x @ (s * a).T ~ t."""
    lo, hi = coef_range(bits)
    g = x.T @ x
    d = g.shape[0]
    lam = cfg.ridge * max(float(np.trace(g)) / d, 1e-12)
    g[np.diag_indices(d)] += lam
    rhs = x.T @ t + lam * c0.T  # [D, O]
    c = np.linalg.solve(g, rhs).T  # [O, D]
    o = c.shape[0]
    peak = np.abs(c).max(axis=1) if per_channel else np.full(o, np.abs(c).max())
    s = np.where(peak > 0, peak / hi, 1.0)
    a = np.clip(np.rint(c / s[:, None]), lo, hi)
    for _ in range(cfg.quant_iters):
        # Coordinate descent on f(a) = s^2 a G a - 2 s a.rhs, each output independently.
        grad_part = a @ g  # [O, D]: sum_k a_k G_jk
        for j in range(d):
            gjj = g[j, j]
            if gjj <= 0:
                continue
            # minimizer of the 1-D quadratic in a_j, others fixed
            other = grad_part[:, j] - a[:, j] * gjj
            new = np.clip(np.rint((rhs[j] / s - other) / gjj), lo, hi)
            delta = new - a[:, j]
            if delta.any():
                grad_part += np.outer(delta, g[j])
                a[:, j] = new
        # least-squares scale: s = a.rhs / a G a (per channel or pooled over the layer)
        num = (a * rhs.T).sum(axis=1)
        den = (grad_part * a).sum(axis=1)
        if per_channel:
            ok = (den > 0) & (num > 0)
            s = np.where(ok, num / np.where(den > 0, den, 1), s)
        elif den.sum() > 0 and num.sum() > 0:
            s = np.full(o, num.sum() / den.sum())
    return a.astype(np.int8), s


def best_threshold(v: np.ndarray, z: np.ndarray, prefer: int) -> int:
    """Integer t maximizing #{v >= t and z} + #{v < t and not z}; ties -> nearest ``prefer``."""
    vals, inv = np.unique(v, return_inverse=True)
    pos = np.bincount(inv, z.astype(np.int64), vals.size)
    neg = np.bincount(inv, (~z).astype(np.int64), vals.size)
    # candidate t = vals[i] (v >= t covers vals[i:]) and t = vals[-1] + 1 (nothing)
    cand = np.append(vals, vals[-1] + 1)
    above_pos = np.append(np.cumsum(pos[::-1])[::-1], 0)
    below_neg = np.concatenate(([0], np.cumsum(neg)))
    score = above_pos + below_neg
    best = np.flatnonzero(score == score.max())
    # Every integer in (cand[i-1], cand[i]] scores like cand[i] (and every t <=
    # cand[0] like cand[0]): pick, among the best intervals, the point nearest
    # ``prefer``.
    lows = np.concatenate(([min(prefer, int(cand[0]))], cand[:-1] + 1))[best]
    nearest = np.clip(prefer, lows, cand[best])
    return int(nearest[np.argmin(np.abs(nearest - prefer))])


def retune_threshold(th: Threshold, acc: np.ndarray, teacher_out: np.ndarray) -> Threshold:
    """Re-choose the thresholds of ``th`` on accumulators ``acc`` to agree with the
    original activations ``teacher_out`` (same layout, channels on axis 1)."""
    c = th.thresholds.shape[0]
    v = acc.astype(np.int64) * th.sign.astype(np.int64).reshape((1, -1) + (1,) * (acc.ndim - 2))
    vv = np.moveaxis(v, 1, 0).reshape(c, -1)
    level = (np.moveaxis(teacher_out, 1, 0).reshape(c, -1).astype(np.int64) - th.out_bias) \
        // th.out_scale
    t = th.thresholds.astype(np.int64).copy()
    for ch in range(c):
        for k in range(t.shape[1]):
            t[ch, k] = best_threshold(vv[ch], level[ch] >= k + 1, int(t[ch, k]))
    return Threshold(np.sort(t, axis=1), th.sign, th.out_scale, th.out_bias)


def distill(bn: BasisNetwork, q: np.ndarray, cfg: TuneConfig | None = None) -> BasisNetwork:
    """Stage 1: one layer-wise pass on integer training inputs ``q``."""
    cfg = cfg or TuneConfig()
    infos: list[LayerInfo] = check_basis_network(bn)
    net = bn.original
    trace = forward_int(net, q, trace=True)
    assert not isinstance(trace, np.ndarray)
    teacher = trace.outputs
    layers: list[object] = list(bn.layers)
    h = q.astype(np.int64)
    with one_blas_thread():
        for i, info in enumerate(infos):
            layer = layers[i]
            if isinstance(layer, BasisLinear):
                assert info.in_values is not None
                x, shape = layer_reads(layer, h, bn.basis, info.in_values.max_abs)
                t = to_positions(teacher[i]).astype(np.float64)
                c0 = (layer.coefs.reshape(layer.out_features, -1).astype(np.float64)
                      * layer.scale[:, None])
                per_channel = any(isinstance(ly, Threshold) for ly in net.layers[i + 1:])
                a, s = solve_layer(x, t, c0, per_channel, bn.coef_bits, cfg)
                layer = BasisLinear(layer.source, a.reshape(layer.coefs.shape), layer.in_order,
                                    s.astype(np.float64))
                layers[i] = layer
                acc = np.rint(x @ a.T.astype(np.float64)).astype(np.int64)
                if len(shape) == 3:
                    acc = acc.reshape(*shape, -1).transpose(0, 3, 1, 2)
                h = np.ascontiguousarray(acc)
            elif isinstance(layer, MaxPool2d):
                h = maxpool(h, layer)
            elif isinstance(layer, Flatten):
                h = h.reshape(h.shape[0], -1)
            else:
                assert isinstance(layer, Threshold)
                layer = retune_threshold(layer, h, teacher[i])
                layers[i] = layer
                h = threshold_counts(h, layer)
    out = BasisNetwork(net, bn.basis, bn.coef_bits, tuple(layers))  # type: ignore[arg-type]
    check_basis_network(out)
    # The tuned network must still be exact on its own terms.
    assert isinstance(forward_basis(out, q[:1]), np.ndarray)
    return out
