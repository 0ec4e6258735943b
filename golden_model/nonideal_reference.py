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

from .crossbar import AdcTable, DeviceMap
from .errors import MismatchError
from .ir import Conv2d, Dense, Flatten, LayerInfo, MaxPool2d, Network, Threshold, analyze
from .kernels import maxpool_nchw
from .machine import MachineParams
from .physics import read_columns
from .reference import apply_threshold
from .schedule import SIGNED_PLANE, PhaseStart, ReadStep, Schedule, TilePlacement

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


@dataclass
class _Chip:
    """The crossbar state the reference tracks while it walks the schedule."""

    params: MachineParams
    devmap: DeviceMap
    # (phase, xbar) -> (cell currents, LRS state)
    contents: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]
    row_reads: np.ndarray  # [X, rows] reads since written
    read_no: int = 0


def _contents(mode: Mode, sched: Schedule, mats: dict[int, np.ndarray], p: MachineParams,
              devmap: DeviceMap) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """(cell currents, LRS state) of every crossbar of every residency."""
    bits: dict[tuple[int, int], np.ndarray] = {}
    for t in sched.tiles:
        w = mats[t.layer][t.o0:t.o0 + t.o_len, t.f0:t.f0 + t.f_len].T
        tb = tile_bits(mode, w)
        img = bits.setdefault((t.phase, t.xbar), np.zeros((p.rows, p.cols), bool))
        h, wd = tb.shape
        if t.row0 + h > p.rows or t.col0 + wd > p.cols:
            raise MismatchError(f"tile of layer {t.layer} at ({t.row0}, {t.col0}) runs off "
                                f"crossbar {t.xbar}", where="schedule")
        if (img[t.row0:t.row0 + h, t.col0:t.col0 + wd] & tb).any() or _overlaps(sched, t):
            raise MismatchError(f"tiles overlap on crossbar {t.xbar} (phase {t.phase})",
                                where="schedule")
        img[t.row0:t.row0 + h, t.col0:t.col0 + wd] |= tb
    return {k: (devmap.cell_currents(k[1], v), devmap.lrs_state(k[1], v))
            for k, v in bits.items()}


def _overlaps(sched: Schedule, t: TilePlacement) -> bool:
    """Whether another tile of the same residency and crossbar covers any of t's cells."""
    mode = MODES[sched.mapping]
    h, w = t.f_len * mode.rows_per_input, t.o_len * mode.cols_per_output
    for u in sched.tiles:
        if u is t or u.phase != t.phase or u.xbar != t.xbar:
            continue
        uh, uw = u.f_len * mode.rows_per_input, u.o_len * mode.cols_per_output
        if t.row0 < u.row0 + uh and u.row0 < t.row0 + h and t.col0 < u.col0 + uw \
                and u.col0 < t.col0 + w:
            return True
    return False


def infer(net: Network, params: MachineParams, devmap: DeviceMap, tables: list[AdcTable],
          sched: Schedule, q: np.ndarray, run_offset: int = 0) -> np.ndarray:
    """Logits (int64 [B, outputs], IR order) of integer inputs ``q`` on the chip.

    ``run_offset`` is the run index of q[0] (read noise is keyed by run index).
    Raises MismatchError when the schedule is inconsistent with the network and
    the mapping (a missing or extra read, overlapping tiles, interleaved layers).
    """
    mode = MODES[sched.mapping]
    infos = analyze(net)
    p = params
    b = q.shape[0]
    runs = run_offset + np.arange(b, dtype=np.int64)
    # Weight matrices [O, F] with F in data-memory order, and each dense layer's
    # input permutation (HWC order of the tensor it flattens).
    mats: dict[int, np.ndarray] = {}
    perms: dict[int, np.ndarray] = {}
    shape3: tuple[int, ...] = tuple(net.input.shape)
    for i, (layer, info) in enumerate(zip(net.layers, infos, strict=True)):
        if isinstance(layer, Dense):
            perms[i] = _hwc_perm(shape3)
            mats[i] = layer.weight[:, perms[i]].astype(np.int64)
        elif isinstance(layer, Conv2d):
            w = layer.weight
            mats[i] = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1).astype(np.int64)
        if not isinstance(layer, Flatten | Threshold):
            shape3 = info.out_shape
    chip = _Chip(p, devmap, _contents(mode, sched, mats, p, devmap),
                 np.full((p.num_xbars, p.rows), p.physics.disturb_age, np.int64))
    segments = _by_layer(sched)
    linear = [i for i, layer in enumerate(net.layers) if isinstance(layer, Dense | Conv2d)]
    if not set(segments) <= set(linear):
        raise MismatchError(f"reads of non-linear layer(s) {sorted(set(segments) - set(linear))}",
                            where="schedule")
    h: np.ndarray = q.astype(np.int64)
    for i, (layer, info) in enumerate(zip(net.layers, infos, strict=True)):
        if isinstance(layer, Dense | Conv2d):
            h = _linear(i, layer, info, h, mats[i], perms.get(i), tables[linear.index(i)], mode,
                        sched, segments.get(i, []), chip, runs)
        elif isinstance(layer, MaxPool2d):
            h = maxpool_nchw(h, layer.kernel, layer.stride)
        elif isinstance(layer, Flatten):
            h = h.reshape(b, -1)
        else:
            assert isinstance(layer, Threshold)
            h = apply_threshold(layer, h).astype(np.int64)
    return h.reshape(b, -1).astype(np.int64)


def _by_layer(sched: Schedule) -> dict[int, list[ReadStep | PhaseStart]]:
    """The events of each layer (phase writes go with the reads after them), checking
    that layers are read one after the other, in order."""
    segs: dict[int, list[ReadStep | PhaseStart]] = {}
    pending: list[ReadStep | PhaseStart] = []
    order: list[int] = []
    for ev in sched.events:
        if isinstance(ev, PhaseStart):
            pending.append(ev)
            continue
        layer = sched.tiles[ev.tile].layer
        if not order or order[-1] != layer:
            if layer in segs or (order and layer < order[-1]):
                raise MismatchError(f"the reads of layer {layer} are not contiguous and in "
                                    "layer order", where="schedule")
            order.append(layer)
            segs[layer] = []
        segs[layer].extend(pending)
        pending = []
        segs[layer].append(ev)
    if pending:
        raise MismatchError("phase writes after the last read", where="schedule")
    return segs


def _linear(i: int, layer: Dense | Conv2d, info: LayerInfo, x: np.ndarray, wm: np.ndarray,
            perm: np.ndarray | None, table: AdcTable, mode: Mode, sched: Schedule,
            events: list[ReadStep | PhaseStart], chip: _Chip, runs: np.ndarray) -> np.ndarray:
    """The layer's pre-activations [B, O(, OH, OW)] from its events, in order."""
    p = chip.params
    b = x.shape[0]
    in_vals = info.in_values
    assert in_vals is not None
    bitplane = in_vals.kind == "unsigned"
    values = set(in_vals.values)
    if isinstance(layer, Conv2d):
        if any(layer.pads):
            values.add(layer.pad_value)
        xs = _patches(x, layer)  # [B, P, F]
        out_hw: tuple[int, ...] = tuple(info.out_shape[1:])
    else:
        assert perm is not None
        xs = x.reshape(b, -1)[:, perm][:, None, :]
        out_hw = ()
    cats = {0, 1} if bitplane else {int(np.sign(v)) for v in values}
    variant = "bipolar" if not bitplane and values <= {-1, 1} else "general"
    rec = mode.bipolar if variant == "bipolar" else mode.general
    planes = list(range(in_vals.bits)) if bitplane else [SIGNED_PLANE]
    live = [r for r, rd in enumerate(rec.reads) if (rd.row_a | rd.row_b) & cats]
    o_total = wm.shape[0]
    n_pos = xs.shape[1]
    y = np.zeros((b, o_total, n_pos), np.int64)
    tiles = {n for n, t in enumerate(sched.tiles) if t.layer == i}
    want = {(t, ps, r, pl) for t in tiles for ps in range(n_pos) for pl in planes for r in live}
    # Results of each (tile, position, plane): codes and ndrv of every read.
    got: dict[tuple[int, int, int], dict[int, tuple[list[np.ndarray], np.ndarray]]] = {}
    for ev in events:
        if isinstance(ev, PhaseStart):
            for t in sched.tiles:
                if t.phase == ev.phase:
                    rows = t.f_len * mode.rows_per_input
                    chip.row_reads[t.xbar, t.row0:t.row0 + rows] = 0
            continue
        key = (ev.tile, ev.position, ev.read, ev.plane)
        if key not in want:
            raise MismatchError(f"layer {i}: unexpected or repeated read {key} (tile, "
                                "position, read, plane)", where="schedule")
        want.discard(key)
        t = sched.tiles[ev.tile]
        rd = rec.reads[ev.read]
        v = xs[:, ev.position, t.f0:t.f0 + t.f_len]  # [B, f]
        if ev.plane != SIGNED_PLANE:
            v = (v >> ev.plane) & 1
        else:
            v = np.sign(v)
        parts = [(0, rd.row_a), (1, rd.row_b)] if mode.rows_per_input == 2 else [(0, rd.row_a)]
        rows_l, drive_l = [], []
        for ra, vals in parts:
            if not vals:
                continue
            rows_l.append(t.row0 + mode.rows_per_input * np.arange(t.f_len) + ra)
            drive_l.append(np.isin(v, list(vals)))
        rows = np.concatenate(rows_l)
        drive = np.concatenate(drive_l, axis=1)
        cur, lrs = chip.contents[(t.phase, t.xbar)]
        width = t.o_len * mode.cols_per_output
        col, nd = read_columns(p.physics, cur[rows], lrs[rows], rows, drive, t.col0, width,
                               runs, chip.read_no, chip.row_reads[t.xbar, rows], p.rows)
        chip.row_reads[t.xbar, rows] += 1
        chip.read_no += 1
        if mode.sym:
            codes = [table.convert(col[:, 0::2] - col[:, 1::2])]
        else:
            x0 = col - p.hrs_units * nd[:, None]
            codes = [table.convert(x0[:, c * t.o_len:(c + 1) * t.o_len])
                     for c in range(mode.cols_per_output)]
        got.setdefault((ev.tile, ev.position, ev.plane), {})[ev.read] = (codes, nd)
    if want:
        raise MismatchError(f"layer {i}: {len(want)} read(s) of the mapping missing from the "
                            f"schedule, e.g. {min(want)} (tile, position, read, plane)",
                            where="schedule")
    zero_codes = [np.zeros((b, 1), np.int64)] * 2
    for (tile, ps, plane), res in got.items():
        t = sched.tiles[tile]
        codes = [res[r][0] if r in res else zero_codes for r in range(len(rec.reads))]
        nds = [res[r][1][:, None] if r in res else np.zeros((b, 1), np.int64)
               for r in range(len(rec.reads))]
        part = rec.combine(codes, nds)
        y[:, t.o0:t.o0 + t.o_len, ps] += part << (0 if plane == SIGNED_PLANE else plane)
    if rec.sum_w:
        scale = (2 ** in_vals.bits - 1) if bitplane else 1
        y += (rec.sum_w * scale * wm.sum(axis=1))[None, :, None]
    return y.reshape(b, o_total, *out_hw) if out_hw else y[:, :, 0]
