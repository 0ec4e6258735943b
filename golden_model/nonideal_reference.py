"""Independent non-ideal reference: every layer of a network on a non-ideal chip,
computed layer by layer in numpy, without the instruction stream.

Takes the IR, the chip's parameters, device map and ADC tables, and the
compiler's ``Schedule`` (where each tile sits, the order of the READs). From
those alone it derives, with its own code, everything the compiler and the
golden machine decide separately: each layer's weight matrix in data-memory
order, the cell bits of every tile (the mappings' encodings written here from
the CIM-Explorer identities, REFERENCE.md section 2, not taken from
``cimgen.compiler.mappings``), the crossbar contents of each residency, the
rows each read drives (im2col with padding, bit-planes, masks), the ADC table
of each layer (the n-th linear layer uses table n), and the integer recipe that
turns codes into a dot product. The physics of one read (read noise keyed by
(seed, run, READ counter, row, column), IR drop, read disturb) is the shared
``golden_model.physics``, fed with the rows, drives and stress counts
derived here.

So the golden machine agreeing with this reference on a non-ideal chip shows
that the compiler placed, wired and scheduled every tile, table and read
as the mapping requires and that the machine executed it; it does not check
``golden_model.physics`` itself (tests/test_physics.py does, against
hand-derived identities).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .basis import BasisLinear, BasisNetwork
from .crossbar import AdcTable, DeviceMap
from .errors import MismatchError
from .ir import (
    Add,
    Concat,
    Conv2d,
    Dense,
    Flatten,
    LayerInfo,
    MaxPool2d,
    Network,
    Tap,
    Threshold,
    analyze,
)
from .kernels import maxpool_nchw
from .machine import MachineParams
from .physics import read_columns
from .reference import apply_threshold
from .schedule import SIGNED_PLANE, ReadStep, Schedule, TilePlacement

# ---------------------------------------------------------------- the mappings
#
# A logical weight w in {-1, 0, +1} is a group of rows_per_input x cols_per_output
# cells; ``cells(w)`` gives their bits [row part][column part]. A read is the set
# of input values (signed inputs) or bit values (bit-planes) driving each row part.
# ``combine(codes, ndrv)`` turns the reads' results into the tile's share of
# y = sum(w * i): codes[r][b] is read r's ADC code of column part b (SYM reads
# have one part, the pair's difference), ndrv[r] its driven rows; the
# column-weight-sum term is ``sum_w`` times sum(w) over the whole layer.

Codes = list[list[np.ndarray]]
Ndrv = list[np.ndarray]


@dataclass(frozen=True)
class Read:
    row_a: frozenset[int]
    row_b: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Recipe:
    reads: tuple[Read, ...]
    combine: Callable[[Codes, Ndrv], np.ndarray]
    sum_w: int = 0


@dataclass(frozen=True)
class Mode:
    rows_per_input: int
    cols_per_output: int
    sym: bool
    cells: Callable[[np.ndarray], list[list[np.ndarray]]]
    bipolar: Recipe
    general: Recipe


def _r(*a: int, b: tuple[int, ...] = ()) -> Read:
    return Read(frozenset(a), frozenset(b))


POS, NEG, ZERO = 1, -1, 0
# Differential pair: the positive column holds w = +1, the negative one w = -1.
_PAIR = lambda w: [[w == 1, w == -1]]  # noqa: E731
# Two rows (driven for i = +1 / i = -1) by two columns: a 2x2 group whose
# difference is w * i.
_QUAD = lambda w: [[w == 1, w == -1], [w == -1, w == 1]]  # noqa: E731
# Signed-input reads of the pair mappings: D(i=+1) - D(i=-1).
_PAIR_GENERAL = Recipe((_r(POS), _r(NEG)), lambda c, n: c[0][0] - c[1][0])
# 2x2 differential rows: D itself.
_DIFF_ROWS = Recipe((_r(POS, b=(NEG,)),), lambda c, n: c[0][0])
# One column, g = (w = s): y = s * (2 (P+ - P-) - Sum_i).
_ONE_COL = lambda s: Recipe(  # noqa: E731
    (_r(POS), _r(NEG)), lambda c, n: s * (2 * c[0][0] - n[0] - 2 * c[1][0] + n[1]))

MODES: dict[str, Mode] = {
    # y = 2 D - Sum_w (D read with the +1 inputs)
    "BNN_I": Mode(1, 2, True, _PAIR, Recipe((_r(POS),), lambda c, n: 2 * c[0][0], -1),
                  _PAIR_GENERAL),
    # y = 2 (P_neg - P_pos) + Sum_w (read with the -1 inputs)
    "BNN_II": Mode(1, 2, True, _PAIR, Recipe((_r(NEG),), lambda c, n: -2 * c[0][0], 1),
                   _PAIR_GENERAL),
    "BNN_III": Mode(1, 1, False, lambda w: [[w == 1]], _ONE_COL(1), _ONE_COL(1)),
    "BNN_IV": Mode(1, 1, False, lambda w: [[w == -1]], _ONE_COL(-1), _ONE_COL(-1)),
    # XOR rows: row a holds w = +1 (driven by i = +1), row b w = -1 (by i = -1):
    # P counts matches, y = 2 P - N.
    "BNN_V": Mode(2, 1, False, lambda w: [[w == 1], [w == -1]],
                  Recipe((_r(POS, b=(NEG,)),), lambda c, n: 2 * c[0][0] - n[0]),
                  Recipe((_r(POS, b=(NEG,)),), lambda c, n: 2 * c[0][0] - n[0])),
    "BNN_VI": Mode(2, 2, True, _QUAD, _DIFF_ROWS, _DIFF_ROWS),
    "TNN_I": Mode(2, 2, True, _QUAD, _DIFF_ROWS, _DIFF_ROWS),
    # i = b0 - 2 b1 with b0 = (i != 0), b1 = (i = -1)
    "TNN_II": Mode(1, 2, True, _PAIR,
                   Recipe((_r(POS, NEG), _r(NEG)), lambda c, n: c[0][0] - 2 * c[1][0]),
                   Recipe((_r(POS, NEG), _r(NEG)), lambda c, n: c[0][0] - 2 * c[1][0])),
    # u = i + 1 = c0 + 2 c1: c0 = (i = 0), c1 = (i = +1); y = D0 + 2 D1 - Sum_w
    "TNN_III": Mode(1, 2, True, _PAIR,
                    Recipe((_r(ZERO), _r(POS)), lambda c, n: c[0][0] + 2 * c[1][0], -1),
                    Recipe((_r(ZERO), _r(POS)), lambda c, n: c[0][0] + 2 * c[1][0], -1)),
    # w = L - 2 M (two's complement): L = (w != 0), M = (w = -1)
    "TNN_IV": Mode(1, 2, False, lambda w: [[w != 0, w == -1]],
                   Recipe((_r(POS), _r(NEG)),
                          lambda c, n: c[0][0] - 2 * c[0][1] - c[1][0] + 2 * c[1][1]),
                   Recipe((_r(POS), _r(NEG)),
                          lambda c, n: c[0][0] - 2 * c[0][1] - c[1][0] + 2 * c[1][1])),
    # w + 1 = L + 2 M: L = (w = 0), M = (w = +1); y = (L+ + 2 M+ - n+) - (L- + 2 M- - n-)
    "TNN_V": Mode(1, 2, False, lambda w: [[w == 0, w == 1]],
                  Recipe((_r(POS), _r(NEG)),
                         lambda c, n: c[0][0] + 2 * c[0][1] - n[0] - c[1][0] - 2 * c[1][1] + n[1]),
                  Recipe((_r(POS), _r(NEG)),
                         lambda c, n: c[0][0] + 2 * c[0][1] - n[0] - c[1][0] - 2 * c[1][1] + n[1])),
}


def tile_bits(mode: Mode, w: np.ndarray) -> np.ndarray:
    """Cell bits [f * rows_per_input, o * cols_per_output] of a logical tile w [F, O]:
    row part a/b of input f at rows 2f/2f+1; SYM column pairs interleaved (positive at
    2o), POS column parts in blocks of O columns."""
    f, o = w.shape
    rpi, cpo = mode.rows_per_input, mode.cols_per_output
    parts = mode.cells(w)
    out = np.zeros((f * rpi, o * cpo), bool)
    for ra in range(rpi):
        for cb in range(cpo):
            if mode.sym or cpo == 1:
                out[ra::rpi, cb::cpo] = parts[ra][cb]
            else:
                out[ra::rpi, cb * o:(cb + 1) * o] = parts[ra][cb]
    return out


# ---------------------------------------------------------------- the layers


def _hwc_perm(shape: tuple[int, ...]) -> np.ndarray:
    """IR (C-major) flat index of the k-th element in HWC memory order."""
    if len(shape) != 3:
        return np.arange(int(np.prod(shape)))
    c, h, w = shape
    return (np.arange(c)[None, None, :] * h * w + np.arange(h)[:, None, None] * w
            + np.arange(w)[None, :, None]).reshape(-1)


def memory_orders(net: Network, infos: list[LayerInfo]) -> dict[int, np.ndarray]:
    """IR flat index of every stored word of each layer's output (-1: the input):
    images channel-fastest (HWC), a dense output in output order, a Flatten, Tap or
    threshold in its input's order, a 1-D Concat its inputs' orders joined."""
    orders: dict[int, np.ndarray] = {-1: _hwc_perm(tuple(net.input.shape))}
    for i, (layer, info) in enumerate(zip(net.layers, infos, strict=True)):
        src = orders[info.sources[0]] if info.sources else orders[-1]
        if isinstance(layer, Dense):
            orders[i] = np.arange(int(np.prod(info.out_shape)))
        elif isinstance(layer, Flatten | Threshold | Tap):
            orders[i] = src
        elif isinstance(layer, Concat) and len(info.out_shape) == 1:
            parts, off = [], 0
            for j in layer.inputs:
                parts.append(orders[j] + off)
                off += orders[j].size
            orders[i] = np.concatenate(parts)
        elif isinstance(layer, Add):
            orders[i] = src
        else:
            orders[i] = _hwc_perm(tuple(info.out_shape))
    return orders


def _patches(x: np.ndarray, layer: Conv2d) -> np.ndarray:
    """[B, positions, KH*KW*C] inputs of every output position, (ky, kx, c) order."""
    b, c, h, w = x.shape
    kh, kw = layer.weight.shape[2:]
    t, left, bot, r = layer.pads
    xp = np.full((b, h + t + bot, w + left + r, c), layer.pad_value, np.int64)
    xp[:, t:t + h, left:left + w] = x.transpose(0, 2, 3, 1)
    sy, sx = layer.stride
    oh = (h + t + bot - kh) // sy + 1
    ow = (w + left + r - kw) // sx + 1
    out = np.empty((b, oh * ow, kh * kw * c), np.int64)
    for oy in range(oh):
        for ox in range(ow):
            win = xp[:, oy * sy:oy * sy + kh, ox * sx:ox * sx + kw, :]
            out[:, oy * ow + ox] = win.reshape(b, -1)
    return out


class _Chip:
    """Crossbar contents body by body, READ counters and read-disturb stress.

    Every run starts from the setup state: each residency's tiles written over
    a blank array in residency order, then the pinned tiles (phase -1). Before
    body b a streamed chip writes residency ``bodies[b].residency``'s tiles; the
    rows whose cells change are rewritten and their read counts restart at 0."""

    def __init__(self, p: MachineParams, devmap: DeviceMap, sched: Schedule, mode: Mode,
                 mats: dict[int, np.ndarray]) -> None:
        self.p, self.devmap, self.sched, self.mode = p, devmap, sched, mode
        bits = [tile_bits(mode, mats[t.layer][t.o0:t.o0 + t.o_len, t.f0:t.f0 + t.f_len].T)
                for t in sched.tiles]
        shape = (p.num_xbars, p.rows, p.cols)
        phases = sorted({t.phase for t in sched.tiles})
        for ph in phases:
            cover = np.zeros(shape, np.int64)
            for t, tb in zip(sched.tiles, bits, strict=True):
                if t.phase not in (ph, -1):
                    continue
                h, w = tb.shape
                if t.xbar >= p.num_xbars or t.row0 + h > p.rows or t.col0 + w > p.cols:
                    raise MismatchError(f"tile of layer {t.layer} at ({t.row0}, {t.col0}) runs "
                                        f"off crossbar {t.xbar}", where="schedule")
                cover[t.xbar, t.row0:t.row0 + h, t.col0:t.col0 + w] += 1
            if cover.max(initial=0) > 1:
                raise MismatchError(f"tiles overlap (residency {ph})", where="schedule")

        def write(state: np.ndarray, phase: int) -> np.ndarray:
            out = state.copy()
            for t, tb in zip(sched.tiles, bits, strict=True):
                if t.phase == phase:
                    h, w = tb.shape
                    out[t.xbar, t.row0:t.row0 + h, t.col0:t.col0 + w] = tb
            return out

        state = np.zeros(shape, np.uint8)
        for ph in phases:
            if ph >= 0:
                state = write(state, ph)
        state = write(state, -1)
        self.states: list[np.ndarray] = []
        self.rewritten: list[np.ndarray] = []  # bool [X, rows] per body
        for body in sched.bodies:
            nxt = write(state, body.residency) if sched.streams else state
            self.rewritten.append((nxt != state).any(axis=2))
            self.states.append(nxt)
            state = nxt
        self.base: list[int] = []  # READ counter of body b's first read (slot 0)
        c = 0
        for body in sched.bodies:
            self.base.append(c)
            c += sched.batch * len(body.reads)
        self._cells: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.stress: dict[tuple[int, int], np.ndarray] = {}

    def cells(self, b: int, x: int) -> tuple[np.ndarray, np.ndarray]:
        """(cell currents, LRS state) of crossbar x during body b."""
        key = (b, x)
        if key not in self._cells:
            st = self.states[b][x]
            self._cells[key] = (self.devmap.cell_currents(x, st), self.devmap.lrs_state(x, st))
        return self._cells[key]

    def walk_stress(self, addressed: dict[tuple[int, int], tuple[int, np.ndarray]]) -> None:
        """Each read's addressed-row stress per slot ([batch, k]), in program order:
        every slot of a body, every read of it (the machine counts all slots,
        padding ones included)."""
        p, sched = self.p, self.sched
        stress = np.full((p.num_xbars, p.rows), p.physics.disturb_age, np.int64)
        for b, body in enumerate(sched.bodies):
            stress[self.rewritten[b]] = 0
            recs = []
            for k in range(len(body.reads)):
                x, rows = addressed[(b, k)]
                rec = self.stress[(b, k)] = np.empty((sched.batch, rows.size), np.int64)
                recs.append((x, rows, rec))
            for s in range(sched.batch):
                for x, rows, rec in recs:
                    rec[s] = stress[x, rows]
                    stress[x, rows] += 1


def infer(net: Network, params: MachineParams, devmap: DeviceMap, tables: list[AdcTable],
          sched: Schedule, q: np.ndarray, run_offset: int = 0,
          basis: BasisNetwork | None = None) -> np.ndarray:
    """Logits (int64 [N, outputs], IR order) of integer inputs ``q`` on the chip.

    ``run_offset`` is the program-run index of q[0] (read noise is keyed by run
    index; input n runs in run ``run_offset + n // batch``, slot ``n % batch``).
    ``basis``: the basis form a basis-mode chip computes (its layers replace the
    linear layers and thresholds of ``net``). Raises MismatchError when the
    schedule is inconsistent with the network and the mapping (a missing or
    extra read, overlapping tiles, a tile off its crossbar).
    """
    mode = MODES[sched.mapping]
    infos = analyze(net)
    p = params
    n = q.shape[0]
    idx = np.arange(n, dtype=np.int64)
    slots = idx % sched.batch
    runs = run_offset + idx // sched.batch
    orders = memory_orders(net, infos)
    layers = basis.layers if basis is not None else net.layers
    mats: dict[int, np.ndarray] = {}
    for i, (layer, info) in enumerate(zip(net.layers, infos, strict=True)):
        if isinstance(layer, Dense):
            mats[i] = layer.weight[:, orders[info.sources[0]]].astype(np.int64)
        elif isinstance(layer, Conv2d):
            w = layer.weight
            mats[i] = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1).astype(np.int64)
    if basis is not None:
        mats[-1] = basis.basis.vectors.astype(np.int64)
    for t in sched.tiles:
        if t.layer not in mats:
            raise MismatchError(f"a tile of layer {t.layer}, which is not linear",
                                where="schedule")
    chip = _Chip(p, devmap, sched, mode, mats)
    linear = [i for i, layer in enumerate(net.layers) if isinstance(layer, Dense | Conv2d)]
    # Events of each linear layer: (body, index in the body, step).
    events: dict[int, list[tuple[int, int, ReadStep]]] = {i: [] for i in linear}
    addressed: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
    for b, body in enumerate(sched.bodies):
        for k, ev in enumerate(body.reads):
            if ev.layer not in events:
                raise MismatchError(f"a read of layer {ev.layer}, which is not linear",
                                    where="schedule")
            events[ev.layer].append((b, k, ev))
            t = sched.tiles[ev.tile]
            n_in = _segment_rows(basis, ev, t)
            rec = _reading(infos[ev.layer], net.layers[ev.layer], mode)[0]
            rows = np.concatenate([r for r, _ in _parts(mode, rec, t, ev, n_in)])
            addressed[(b, k)] = (t.xbar, rows)
    if p.physics.disturb:
        chip.walk_stress(addressed)
    ctx = _Ctx(p, mode, sched, chip, runs, slots)
    live: dict[int, np.ndarray] = {-1: q.astype(np.int64)}
    h = live[-1]
    for i, (layer, info) in enumerate(zip(layers, infos, strict=True)):
        x = live[info.sources[0]] if info.sources else live[-1]
        if isinstance(layer, BasisLinear):
            assert basis is not None
            h = _basis_linear(i, layer, info, x, basis, tables[linear.index(i)], ctx,
                              events[i])
        elif isinstance(layer, Dense | Conv2d):
            src = orders[info.sources[0]]
            h = _linear(i, layer, info, x, mats[i], src, tables[linear.index(i)], ctx,
                        events[i])
        elif isinstance(layer, MaxPool2d):
            h = maxpool_nchw(x, layer.kernel, layer.stride)
        elif isinstance(layer, Flatten):
            h = x.reshape(n, -1)
        elif isinstance(layer, Threshold):
            h = apply_threshold(layer, x).astype(np.int64)
        elif isinstance(layer, Tap):
            h = x
        elif isinstance(layer, Add):
            h = sum(int(f) * live[j] for j, f in zip(layer.inputs, layer.factors, strict=True))
        elif isinstance(layer, Concat):
            h = np.concatenate([live[j] for j in layer.inputs], axis=1)
        else:  # pragma: no cover - every IR layer kind is handled above
            raise MismatchError(f"layer {i}: unknown kind {type(layer).__name__}",
                                where="nonideal_reference")
        live[i] = np.asarray(h, np.int64)
    return live[len(layers) - 1].reshape(n, -1).astype(np.int64)


@dataclass
class _Ctx:
    p: MachineParams
    mode: Mode
    sched: Schedule
    chip: _Chip
    runs: np.ndarray
    slots: np.ndarray


def _segment_rows(basis: BasisNetwork | None, ev: ReadStep, t: TilePlacement) -> int:
    """IN entries a read loads: the tile's inputs, or a basis segment's rows."""
    if t.layer >= 0 or basis is None:
        return t.f_len
    blin = basis.layers[ev.layer]
    assert isinstance(blin, BasisLinear)
    return min(basis.seg_len, blin.rows - ev.segment * basis.seg_len)


def _parts(mode: Mode, rec: Recipe, t: TilePlacement, ev: ReadStep, n_in: int
           ) -> list[tuple[np.ndarray, frozenset[int]]]:
    """(addressed rows, input values that drive them) of each row part of a read: the
    rows of the n_in loaded inputs (a pair read's second row only if some value
    drives it)."""
    if not 0 <= ev.read < len(rec.reads):
        raise MismatchError(f"layer {ev.layer}: read {ev.read} is not in the "
                            f"{mode.rows_per_input}-row recipe", where="schedule")
    rd = rec.reads[ev.read]
    parts = [(0, rd.row_a), (1, rd.row_b)] if mode.rows_per_input == 2 else [(0, rd.row_a)]
    return [(t.row0 + mode.rows_per_input * np.arange(n_in) + ra, vals)
            for ra, vals in parts if vals]


def _read(ctx: _Ctx, rec: Recipe, b: int, k: int, ev: ReadStep, v: np.ndarray,
          table: AdcTable, n_in: int) -> tuple[list[np.ndarray], np.ndarray]:
    """ADC codes of every column part and NDRV [N] of one read for every input;
    ``v`` [N, n_in] holds the drive values (signs or plane bits)."""
    p, mode, sched, chip = ctx.p, ctx.mode, ctx.sched, ctx.chip
    t = sched.tiles[ev.tile]
    parts = _parts(mode, rec, t, ev, n_in)
    rows = np.concatenate([r for r, _ in parts])
    drive = np.concatenate([np.isin(v, list(vals)) for _, vals in parts], axis=1)
    cur, lrs = chip.cells(b, t.xbar)
    width = t.o_len * mode.cols_per_output
    counters = chip.base[b] + ctx.slots * len(sched.bodies[b].reads) + k
    if p.physics.disturb:
        col = np.empty((v.shape[0], width), np.int64)
        nd = np.empty(v.shape[0], np.int64)
        stress = chip.stress[(b, k)]
        for s in np.unique(ctx.slots):
            m = ctx.slots == s
            col[m], nd[m] = read_columns(p.physics, cur[rows], lrs[rows], rows, drive[m], t.col0,
                                         width, ctx.runs[m], counters[m], stress[s], p.rows)
    else:
        col, nd = read_columns(p.physics, cur[rows], lrs[rows], rows, drive, t.col0, width,
                               ctx.runs, counters, np.zeros(rows.size, np.int64), p.rows)
    if mode.sym:
        return [table.convert(col[:, 0::2] - col[:, 1::2])], nd
    x0 = col - p.hrs_units * nd[:, None]
    return [table.convert(x0[:, c * t.o_len:(c + 1) * t.o_len])
            for c in range(mode.cols_per_output)], nd


def _layer_inputs(layer: Dense | Conv2d, info: LayerInfo, x: np.ndarray,
                  order: np.ndarray | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """[N, positions, F] inputs in data-memory order and the output's spatial shape."""
    if isinstance(layer, Conv2d):
        return _patches(x, layer), tuple(info.out_shape[1:])
    flat = x.reshape(x.shape[0], -1)
    return (flat[:, order] if order is not None else flat)[:, None, :], ()


def _reading(info: LayerInfo, layer: Dense | Conv2d, mode: Mode
             ) -> tuple[Recipe, list[int], list[int], int, int]:
    """The layer's recipe, live reads, bit-planes, sign plane (-1: none), Sum_w scale."""
    in_vals = info.in_values
    assert in_vals is not None
    bitplane = in_vals.kind in ("unsigned", "signed")
    values = set(in_vals.values)
    if isinstance(layer, Conv2d) and any(layer.pads):
        values.add(layer.pad_value)
    cats = {0, 1} if bitplane else {int(np.sign(v)) for v in values}
    rec = mode.bipolar if not bitplane and values <= {-1, 1} else mode.general
    planes = list(range(in_vals.bits)) if bitplane else [SIGNED_PLANE]
    live = [r for r, rd in enumerate(rec.reads) if (rd.row_a | rd.row_b) & cats]
    signed = in_vals.kind == "signed"
    sign_plane = in_vals.bits - 1 if signed else -1
    # Sum of the plane weights (the sign plane of a signed input weighs -2^(b-1)).
    scale = -1 if signed else (2 ** in_vals.bits - 1 if bitplane else 1)
    return rec, live, planes, sign_plane, scale


def _plane_values(v: np.ndarray, plane: int) -> np.ndarray:
    return np.sign(v) if plane == SIGNED_PLANE else (v >> plane) & 1


def _plane_weight(plane: int, sign_plane: int) -> int:
    if plane == SIGNED_PLANE:
        return 1
    return -(1 << plane) if plane == sign_plane else 1 << plane


def _linear(i: int, layer: Dense | Conv2d, info: LayerInfo, x: np.ndarray, wm: np.ndarray,
            order: np.ndarray, table: AdcTable, ctx: _Ctx,
            events: list[tuple[int, int, ReadStep]]) -> np.ndarray:
    """The layer's pre-activations [N, O(, OH, OW)] from its reads."""
    mode, sched = ctx.mode, ctx.sched
    n = x.shape[0]
    xs, out_hw = _layer_inputs(layer, info, x, order)
    rec, live, planes, sign_plane, scale = _reading(info, layer, mode)
    o_total = wm.shape[0]
    n_pos = xs.shape[1]
    y = np.zeros((n, o_total, n_pos), np.int64)
    tiles = [k for k, t in enumerate(sched.tiles) if t.layer == i]
    want = {(t, ps, r, pl) for t in tiles for ps in range(n_pos) for pl in planes for r in live}
    got: dict[tuple[int, int, int], dict[int, tuple[list[np.ndarray], np.ndarray]]] = {}
    for b, k, ev in events:
        key = (ev.tile, ev.position, ev.read, ev.plane)
        if key not in want:
            raise MismatchError(f"layer {i}: unexpected or repeated read {key} (tile, "
                                "position, read, plane)", where="schedule")
        want.discard(key)
        t = sched.tiles[ev.tile]
        v = _plane_values(xs[:, ev.position, t.f0:t.f0 + t.f_len], ev.plane)
        got.setdefault((ev.tile, ev.position, ev.plane), {})[ev.read] = _read(
            ctx, rec, b, k, ev, v, table, t.f_len)
    if want:
        raise MismatchError(f"layer {i}: {len(want)} read(s) of the mapping missing from the "
                            f"schedule, e.g. {min(want)} (tile, position, read, plane)",
                            where="schedule")
    for (tile, ps, plane), res in got.items():
        t = sched.tiles[tile]
        part = _combine(rec, res, n)
        y[:, t.o0:t.o0 + t.o_len, ps] += part * _plane_weight(plane, sign_plane)
    if rec.sum_w:
        y += (rec.sum_w * scale * wm.sum(axis=1))[None, :, None]
    return y.reshape(n, o_total, *out_hw) if out_hw else y[:, :, 0]


def _combine(rec: Recipe, res: dict[int, tuple[list[np.ndarray], np.ndarray]], n: int
             ) -> np.ndarray:
    """The recipe's dot product from the reads it has (reads no input drives are 0)."""
    zero_codes = [np.zeros((n, 1), np.int64)] * 2
    codes = [res[r][0] if r in res else zero_codes for r in range(len(rec.reads))]
    nds = [res[r][1][:, None] if r in res else np.zeros((n, 1), np.int64)
           for r in range(len(rec.reads))]
    return rec.combine(codes, nds)


def _basis_linear(i: int, blin: BasisLinear, info: LayerInfo, x: np.ndarray,
                  bn: BasisNetwork, table: AdcTable, ctx: _Ctx,
                  events: list[tuple[int, int, ReadStep]]) -> np.ndarray:
    """A linear layer in basis mode: every input segment read against the basis tiles
    (products P[s, j] with the segment's Sum_w term), out[o] = sum coef[o, s, j] P[s, j]."""
    mode, sched = ctx.mode, ctx.sched
    layer = blin.source
    n = x.shape[0]
    xs, out_hw = _layer_inputs(layer, info, x, np.asarray(blin.in_order, np.int64))
    rec, live, planes, sign_plane, scale = _reading(info, layer, mode)
    n_pos = xs.shape[1]
    r_len = bn.seg_len
    n_seg = blin.segments
    vec = bn.basis.vectors.astype(np.int64)  # [N, R]
    prods = np.zeros((n, n_pos, n_seg, vec.shape[0]), np.int64)
    tiles = [k for k, t in enumerate(sched.tiles) if t.layer == -1]
    want = {(t, ps, r, pl, s) for t in tiles for ps in range(n_pos) for pl in planes
            for r in live for s in range(n_seg)}
    got: dict[tuple[int, int, int, int], dict[int, tuple[list[np.ndarray], np.ndarray]]] = {}
    for b, k, ev in events:
        key = (ev.tile, ev.position, ev.read, ev.plane, ev.segment)
        if key not in want:
            raise MismatchError(f"layer {i}: unexpected or repeated basis read {key} (tile, "
                                "position, read, plane, segment)", where="schedule")
        want.discard(key)
        f0 = ev.segment * r_len
        f_s = min(r_len, blin.rows - f0)
        v = _plane_values(xs[:, ev.position, f0:f0 + f_s], ev.plane)
        got.setdefault((ev.tile, ev.position, ev.plane, ev.segment), {})[ev.read] = _read(
            ctx, rec, b, k, ev, v, table, f_s)
    if want:
        raise MismatchError(f"layer {i}: {len(want)} basis read(s) missing from the "
                            f"schedule, e.g. {min(want)} (tile, position, read, plane, "
                            "segment)", where="schedule")
    for (tile, ps, plane, s), res in got.items():
        t = sched.tiles[tile]
        part = _combine(rec, res, n)
        prods[:, ps, s, t.o0:t.o0 + t.o_len] += part * _plane_weight(plane, sign_plane)
    if rec.sum_w:
        for s in range(n_seg):
            f_s = min(r_len, blin.rows - s * r_len)
            prods[:, :, s, :] += rec.sum_w * scale * vec[:, :f_s].sum(axis=1)
    coefs = blin.coefs.astype(np.int64)  # [O, S, N]
    y = np.einsum("npsj,osj->nop", prods, coefs)
    o_total = coefs.shape[0]
    return y.reshape(n, o_total, *out_hw) if out_hw else y[:, :, 0]
