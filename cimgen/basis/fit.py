"""Fitting a shared basis and quantized coefficients to a BNN/TNN (weight space).

The problem: the weight segments w_m (one output channel over one tile's
rows, in DMEM order; length L_m <= R) of *all* linear layers are to be
written as w_m ~ s_g(m) * sum_j a[m, j] * b_j[:L_m] with one shared basis
B = (b_1..b_N) in {-1, +1}^R or {-1, 0, +1}^R, integer a in the
``coef_bits`` two's complement range and a positive scale s per group (per
output channel for a layer whose accumulators feed a threshold, which the
rescaled threshold absorbs; one per layer for the logits, whose ranking a
per-channel scale would change). Minimized: sum_m ||w_m - s a_m B||^2.

Method (each step decreases the objective of its phase, or keeps it):

1. Initialization: the first basis vectors are N distinct weight segments
   themselves (longest first, ties broken by the seed), the rest random signs
   from the seed. A BNN's segments are already valid basis vectors, so every
   segment in the basis is represented exactly by a single coefficient: this
   start is never worse than "no sharing", unlike random or SVD-sign starts.
2. Alternating least squares with real coefficients: coefficients by ridge
   least squares per distinct segment length (exact normal equations), then
   the basis by exact coordinate descent, one basis vector j at a time and
   all R rows at once: with the other vectors fixed, row r of b_j minimizes
   P_r b^2 - 2 Q_r b over the allowed values (Q_r = sum_m c_mj e_mr,
   P_r = sum_m c_mj^2 over the segments that reach row r), i.e. b = sign(Q_r)
   for a binary basis and b = sign(Q_r) if 2|Q_r| > P_r else 0 for a ternary
   one. This is "sign/ternary projection" done exactly per coordinate rather
   than by rounding a real least-squares basis, so it never increases the
   error.
3. Quantization: per group the scale maps the largest real coefficient to the
   top of the range, coefficients are rounded, then the phase alternates
   integer coordinate descent on the coefficients (each a_mj set to the
   rounded, clipped minimizer with the others fixed), the least-squares scale
   per group, and the basis coordinate descent of step 2 with the effective
   coefficients s * a. The fit keeps the best iterate.

Everything runs in float64 numpy on one BLAS thread (``threadpoolctl``), with
fixed loop orders and a ``default_rng(seed)``: the same inputs and seed give
bit-identical results.

Data-driven fine-tuning (``cimgen.basis.finetune``) starts from this fit.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from golden_model.basis import (
    BASIS_KINDS,
    BASIS_VALUES,
    Basis,
    BasisLinear,
    BasisNetwork,
    check_basis_network,
    check_coef_bits,
    coef_range,
    dmem_matrix,
    num_segments,
    row_orders,
    segment_matrix,
)
from golden_model.errors import BadInputError
from golden_model.ir import (
    Conv2d,
    Dense,
    LayerInfo,
    Network,
    Threshold,
    analyze,
    layer_name,
)


@dataclass(frozen=True)
class FitConfig:
    basis_count: int
    coef_bits: int
    seg_len: int  # R: logical rows of one crossbar tile
    kind: str = "binary"  # basis values: binary {-1, +1} or ternary {-1, 0, +1}
    seed: int = 0
    max_basis: int | None = None  # basis columns one tile offers (None: no limit)
    als_iters: int = 25
    quant_iters: int = 12
    ridge: float = 1e-6

    def validate(self) -> FitConfig:
        check_coef_bits(self.coef_bits, where="--coef-bits")
        if self.kind not in BASIS_KINDS:
            raise BadInputError(f"'{self.kind}' is not one of {', '.join(BASIS_KINDS)}",
                                where="--basis-kind")
        if self.seg_len < 1:
            raise BadInputError(f"segment length {self.seg_len} must be >= 1 (logical rows "
                                "of a tile)", where="--rows")
        if self.basis_count < 1:
            raise BadInputError(f"{self.basis_count}: need at least one basis vector",
                                where="--basis")
        if self.max_basis is not None and self.basis_count > self.max_basis:
            raise BadInputError(f"{self.basis_count} basis vectors, but a tile offers only "
                                f"{self.max_basis} columns (one per basis vector)",
                                where="--basis")
        if not 0 <= self.seed < 2**63:
            raise BadInputError(f"{self.seed}: must be a non-negative 63-bit integer",
                                where="--seed")
        if self.als_iters < 0 or self.quant_iters < 0:
            raise BadInputError("iteration counts must be >= 0", where="fit")
        return self


@dataclass
class LayerError:
    index: int
    kind: str  # Dense / Conv2d
    outputs: int
    rows: int
    segments: int
    rel_error: float  # ||W - s W_eff||_F / ||W||_F
    sign_agreement: float  # fraction of nonzero weights w with sign(W_eff) == w

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class FitResult:
    bn: BasisNetwork
    errors: list[LayerError]
    objective: list[float] = field(default_factory=list)  # per iteration (weight space)


def one_blas_thread() -> AbstractContextManager[object]:
    """Fitting on one BLAS thread: summation order, hence every float, fixed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a core dependency
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def check_weights(net: Network) -> list[LayerInfo]:
    """The model must be a BNN/TNN (the importer and ``analyze`` guarantee it; this
    names the layer when a caller builds a network by hand)."""
    infos = analyze(net)
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Dense | Conv2d):
            bad = sorted({int(v) for v in np.unique(layer.weight)} - {-1, 0, 1})
            if bad:
                raise BadInputError(f"weights {bad[:5]} are not binary or ternary",
                                    where=layer_name(i, layer))
    return infos


def weight_kind(net: Network) -> str:
    """"binary" when every weight is +-1, else "ternary"."""
    for layer in net.layers:
        if isinstance(layer, Dense | Conv2d) and (layer.weight == 0).any():
            return "ternary"
    return "binary"


# ----------------------------------------------------------------- segments
@dataclass
class Segments:
    """All weight segments of all linear layers, stacked: row m = one segment."""

    w: np.ndarray  # float64 [M, R], zero beyond the segment's length
    mask: np.ndarray  # float64 [M, R], 1 on the segment's rows
    lengths: np.ndarray  # int64 [M]
    group: np.ndarray  # int64 [M] scale group
    layers: list[tuple[int, int, int, int, int]]  # (layer index, offset, O, S, F)
    groups: int

    def layer_slice(self, k: int) -> slice:
        _, off, o, s, _ = self.layers[k]
        return slice(off, off + o * s)


def linear_feeds_threshold(net: Network, i: int) -> Threshold | None:
    for layer in net.layers[i + 1:]:
        if isinstance(layer, Threshold):
            return layer
        if isinstance(layer, Dense | Conv2d):
            return None
    return None


def build_segments(net: Network, seg_len: int) -> Segments:
    orders = row_orders(net)
    r = seg_len
    ws, lens, groups, layers = [], [], [], []
    off, gid = 0, 0
    for i, order in orders.items():
        wm = dmem_matrix(net.layers[i], order).astype(np.float64)  # type: ignore[arg-type]
        o, f = wm.shape
        s = num_segments(f, r)
        pad = np.zeros((o, s * r))
        pad[:, :f] = wm
        ws.append(pad.reshape(o * s, r))
        lens.append(np.tile(np.minimum(r, f - r * np.arange(s)), o))
        if linear_feeds_threshold(net, i) is not None:
            g = gid + np.repeat(np.arange(o), s)
            gid += o
        else:
            g = np.full(o * s, gid)
            gid += 1
        groups.append(g)
        layers.append((i, off, o, s, f))
        off += o * s
    lengths = np.concatenate(lens).astype(np.int64)
    mask = (np.arange(r)[None, :] < lengths[:, None]).astype(np.float64)
    return Segments(np.concatenate(ws), mask, lengths, np.concatenate(groups).astype(np.int64),
                    layers, gid)


# ----------------------------------------------------------------- steps
def init_basis(seg: Segments, n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """N distinct segments (longest first, seed-shuffled within a length), then random."""
    r = seg.w.shape[1]
    b = rng.choice(np.array(BASIS_VALUES["binary"]), size=(n, r)).astype(np.float64)
    order = np.lexsort((rng.permutation(len(seg.lengths)), -seg.lengths))
    order = order[(seg.w[order] != 0).any(axis=1)]
    # Distinct segments up to sign only (w and -w need one column between them).
    w = seg.w[order]
    lead = np.take_along_axis(w, np.argmax(w != 0, axis=1)[:, None], axis=1)
    canon = w * np.where(lead < 0, -1.0, 1.0)
    _, first = np.unique(canon, axis=0, return_index=True)
    picked = order[np.sort(first)][:n]
    for j, m in enumerate(picked):
        L = int(seg.lengths[m])
        b[j, :L] = seg.w[m, :L]
        if kind == "binary":
            b[j, :L][b[j, :L] == 0] = 1.0
    return b


def solve_coefs(seg: Segments, b: np.ndarray, ridge: float) -> np.ndarray:
    """Real least-squares coefficients [M, N], one normal-equation solve per length."""
    m, n = seg.w.shape[0], b.shape[0]
    c = np.zeros((m, n))
    for L in np.unique(seg.lengths):
        idx = np.flatnonzero(seg.lengths == L)
        bl = b[:, :L]
        g = bl @ bl.T
        g[np.diag_indices(n)] += ridge * max(1.0, float(np.trace(g)) / n)
        c[idx] = np.linalg.solve(g, bl @ seg.w[idx, :L].T).T
    return c


def residual(seg: Segments, c: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (seg.w - c @ b) * seg.mask


def update_basis(seg: Segments, c: np.ndarray, b: np.ndarray, e: np.ndarray, kind: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Exact coordinate descent over the basis, vector by vector; returns (b, residual).

    With e the residual including b_j's current contribution, the residual
    without it is e + c_j b_j (on the mask), so Q_r = c_j . e_r + P_r b_jr: one
    pass over e per vector, and e changes only in the rows whose value changed.
    """
    b = b.copy()
    e = e.copy()
    for j in range(b.shape[0]):
        cj = c[:, j]
        if not cj.any():
            continue
        p = (cj * cj) @ seg.mask
        q = cj @ e + p * b[j]
        if kind == "binary":
            new = np.where(q > 0, 1.0, np.where(q < 0, -1.0, b[j]))
        else:
            new = np.where(2 * np.abs(q) > p, np.sign(q), 0.0)
            new[p == 0] = b[j][p == 0]  # rows no segment reaches keep their value
        rows = np.flatnonzero(new != b[j])
        if rows.size:
            e[:, rows] -= np.outer(cj, new[rows] - b[j][rows]) * seg.mask[:, rows]
            b[j] = new
    return b, e


def update_int_coefs(seg: Segments, a: np.ndarray, s_m: np.ndarray, b: np.ndarray,
                     e: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer coordinate descent on the coefficients (scale fixed); e changes only in
    the segments whose coefficient changed."""
    a = a.copy()
    e = e.copy()
    # norm2[m, j] = ||b_j[:L_m]||^2
    norm2 = seg.mask @ (b * b).T
    for j in range(b.shape[0]):
        proj = e @ b[j]
        den = s_m * norm2[:, j]
        ok = den > 0
        step = np.zeros_like(proj)
        step[ok] = proj[ok] / den[ok]
        new = np.where(ok, np.clip(np.rint(a[:, j] + step), lo, hi), 0.0)
        idx = np.flatnonzero(new != a[:, j])
        if idx.size:
            e[idx] -= np.outer(s_m[idx] * (new[idx] - a[idx, j]), b[j]) * seg.mask[idx]
            a[idx, j] = new[idx]
    return a, e


def fit_scales(seg: Segments, a: np.ndarray, b: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Least-squares scale per group for fixed integer coefficients and basis."""
    v = (a @ b) * seg.mask
    num = np.bincount(seg.group, (seg.w * v).sum(axis=1), seg.groups)
    den = np.bincount(seg.group, (v * v).sum(axis=1), seg.groups)
    s = old.copy()
    ok = (den > 0) & (num > 0)
    s[ok] = num[ok] / den[ok]
    return s


def initial_scales(seg: Segments, c: np.ndarray, hi: int) -> np.ndarray:
    peak = np.zeros(seg.groups)
    np.maximum.at(peak, seg.group, np.abs(c).max(axis=1))
    return np.where(peak > 0, peak / hi, 1.0)


def objective(e: np.ndarray) -> float:
    return float((e * e).sum())


# ----------------------------------------------------------------- the fit
def fit_weights(net: Network, cfg: FitConfig) -> FitResult:
    """Weight-space fit of basis, coefficients and scales; thresholds rescaled."""
    cfg.validate()
    infos = check_weights(net)
    with one_blas_thread():
        seg = build_segments(net, cfg.seg_len)
        rng = np.random.default_rng(cfg.seed)
        b = init_basis(seg, cfg.basis_count, cfg.kind, rng)
        hist: list[float] = []
        c = solve_coefs(seg, b, cfg.ridge)
        e = residual(seg, c, b)
        for _ in range(cfg.als_iters):
            b, e = update_basis(seg, c, b, e, cfg.kind)
            c = solve_coefs(seg, b, cfg.ridge)
            e = residual(seg, c, b)
            hist.append(objective(e))
        lo, hi = coef_range(cfg.coef_bits)
        s = initial_scales(seg, c, hi)
        a = np.clip(np.rint(c / s[seg.group, None]), lo, hi)
        e = residual(seg, a * s[seg.group, None], b)
        best = (objective(e), a.copy(), s.copy(), b.copy())
        for _ in range(cfg.quant_iters):
            a, e = update_int_coefs(seg, a, s[seg.group], b, e, lo, hi)
            s = fit_scales(seg, a, b, s)
            e = residual(seg, a * s[seg.group, None], b)
            b, e = update_basis(seg, a * s[seg.group, None], b, e, cfg.kind)
            obj = objective(e)
            hist.append(obj)
            if obj < best[0]:
                best = (obj, a.copy(), s.copy(), b.copy())
        _, a, s, b = best
    basis = Basis(b.astype(np.int8), cfg.kind)
    bn = assemble(net, infos, seg, basis, a, s, cfg.coef_bits)
    return FitResult(bn, layer_errors(net, bn), hist)


def assemble(net: Network, infos: list[LayerInfo], seg: Segments, basis: Basis,
             a: np.ndarray, s: np.ndarray, coef_bits: int) -> BasisNetwork:
    """Stacked integer coefficients and group scales -> a validated ``BasisNetwork``."""
    orders = row_orders(net, infos)
    layers: list[object] = list(net.layers)
    scale_of: dict[int, np.ndarray] = {}
    for k, (i, _, o, sn, _) in enumerate(seg.layers):
        sl = seg.layer_slice(k)
        coefs = a[sl].reshape(o, sn, basis.count).astype(np.int8)
        scale = s[seg.group[sl].reshape(o, sn)[:, 0]].astype(np.float64)
        layers[i] = BasisLinear(net.layers[i], coefs, orders[i], scale)  # type: ignore[arg-type]
        scale_of[i] = scale
    last_scale: np.ndarray | None = None
    last_shape: tuple[int, ...] = ()
    for i, (layer, info) in enumerate(zip(net.layers, infos, strict=True)):
        if i in scale_of:
            last_scale, last_shape = scale_of[i], info.out_shape
        elif isinstance(layer, Threshold):
            assert last_scale is not None
            layers[i] = rescale_threshold(layer, channel_scale(last_scale, last_shape,
                                                               info.in_shape),
                                          acc_bound(layers, infos, i, basis))
    bn = BasisNetwork(net, basis, coef_bits, tuple(layers))  # type: ignore[arg-type]
    check_basis_network(bn)
    return bn


def channel_scale(scale: np.ndarray, acc_shape: tuple[int, ...], th_shape: tuple[int, ...]
                  ) -> np.ndarray:
    """A linear layer's per-output scale, per channel of the threshold that uses it
    (repeated per position when a Flatten sits between a conv and the threshold)."""
    if th_shape[0] == scale.size:
        return scale
    per = int(np.prod(acc_shape[1:]))
    return np.repeat(scale, per)


def acc_bound(layers: list[object], infos: list[LayerInfo], th_index: int, basis: Basis) -> int:
    """|acc| bound of the basis-form accumulators a threshold sees."""
    for j in range(th_index - 1, -1, -1):
        ly = layers[j]
        if isinstance(ly, BasisLinear):
            info = infos[j]
            assert info.in_values is not None
            v = np.abs(segment_matrix(ly.coefs, basis.vectors, ly.rows)).sum(axis=1)
            return int(v.max(initial=0)) * info.in_values.max_abs
    raise AssertionError("a threshold follows a linear layer")  # pragma: no cover


def rescale_threshold(th: Threshold, scale: np.ndarray, bound: int) -> Threshold:
    """sign*acc >= t  <=>  sign*acc' >= ceil(t / scale) for acc = scale * acc', scale > 0.

    Thresholds beyond the accumulator range are clamped to -bound (always
    reached) and bound + 1 (never), which keeps them small integers.
    """
    t = np.ceil(th.thresholds.astype(np.float64) / scale[:, None])
    t = np.clip(t, -bound, bound + 1).astype(np.int64)
    return Threshold(t, th.sign, th.out_scale, th.out_bias)


def layer_errors(net: Network, bn: BasisNetwork) -> list[LayerError]:
    """Per linear layer: relative Frobenius error of the best positive scaling of
    W_eff (per output channel for a layer feeding a threshold, one for the logits,
    as in the fit; data-driven tuning changes the recorded scales' meaning, so the
    error is scale-free), and the fraction of nonzero weights whose sign W_eff keeps."""
    out = []
    for i, ly in bn.linear.items():
        w = dmem_matrix(net.layers[i], ly.in_order).astype(np.float64)  # type: ignore[arg-type]
        weff = segment_matrix(ly.coefs, bn.basis.vectors, ly.rows).astype(np.float64)
        num, den2 = (w * weff).sum(axis=1), (weff * weff).sum(axis=1)
        if linear_feeds_threshold(net, i) is None:
            num, den2 = np.full_like(num, num.sum()), np.full_like(den2, den2.sum())
        s = np.where((den2 > 0) & (num > 0), num / np.where(den2 > 0, den2, 1.0), 0.0)
        den = float(np.linalg.norm(w))
        nz = w != 0
        agree = float((np.sign(weff[nz]) == w[nz]).mean()) if nz.any() else 1.0
        err = float(np.linalg.norm(w - weff * s[:, None])) / den if den else 0.0
        out.append(LayerError(i, type(net.layers[i]).__name__, int(w.shape[0]),
                              int(w.shape[1]), ly.segments, err, agree))
    return out
