"""Integer IR + crossbar config -> instruction stream and chip images.

Lowering, in order:

1. Every linear layer becomes a weight matrix [O, F] whose F axis is in
   *data-memory order*: activations live in DMEM as HWC (channel fastest), so a
   conv's im2col row order is (ky, kx, c) and a dense layer after Flatten has
   its columns permuted from the IR's CHW order to HWC.
2. The matrix is cut into logical tiles of (rows // rows_per_input) inputs by
   (cols // cols_per_output) outputs, encoded to cell bits by the mapping and
   shelf-packed onto ``num_xbars`` crossbars. When all tiles fit, they are
   programmed once by a setup program; otherwise layers are grouped into
   phases and the inference program reprograms the crossbars between phases
   (the write cycles count in cycles per inference).
3. Per output position and column tile: ACLR; per row tile: INCLR, LDIN of
   the input segments (padding reads a constant pad vector), the mapping's
   READ/ACC recipe (once per bit-plane for unsigned multi-bit inputs); then
   the Sum_w correction and ACT (threshold) or STA (raw accumulators).
4. Max-pool is VCOPY + VMAX over DMEM vectors; a threshold after a pool
   loads the pooled accumulators with ACC and applies ACT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from golden_model import isa
from golden_model.crossbar import AdcTable, DeviceParams, sample_device_map
from golden_model.errors import BadInputError
from golden_model.ir import (
    Conv2d,
    Dense,
    Flatten,
    LayerInfo,
    MaxPool2d,
    Network,
    Threshold,
    analyze,
    layer_name,
)
from golden_model.isa import BIT_SIGNED, Instr, Sense, Src
from golden_model.machine import ChipImage, MachineParams
from golden_model.schedule import SIGNED_PLANE, PhaseStart, ReadStep, Schedule, TilePlacement

from ..config import XbarConfig
from .adc import calibrated_adcs, is_calibrated, layer_adc
from .emit import Emitter
from .layout import DmemAllocator, Tensor, hwc_order
from .mappings import MAPPINGS, Mapping, mask_values
from .tiling import Packer, Shelf, Tile


@dataclass
class Report:
    mapping: str
    phases: int
    xbars_used: int
    utilization: float
    tiles: int
    instructions: int
    setup_instructions: int
    cycles_per_inference: int
    setup_cycles: int
    cell_writes_setup: int
    cell_writes_per_inference: int
    reads_per_inference: int
    dmem_words_used: int
    wmem_words_used: int
    adc_tables_used: int

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class Compiled:
    """A compiled network: the chip image plus what the host needs to drive it."""

    cfg: XbarConfig
    net: Network
    image: ChipImage
    setup_entry: int
    infer_entry: int
    input: Tensor
    output: Tensor
    listing: list[tuple[Instr, str]]
    report: Report
    adc_tables: list[AdcTable] = field(default_factory=list)
    # Placement and READ order for independent executors (golden_model.schedule);
    # None for a compile directory loaded from disk.
    schedule: Schedule | None = None

    # ------------------------------------------------------------- host
    def input_words(self, q: np.ndarray) -> np.ndarray:
        """Quantized integer input [B, *shape] -> DMEM words [B, n] in memory order."""
        flat = q.reshape(q.shape[0], -1)
        return flat[:, self.input.order].astype(np.int32)

    def output_logits(self, dmem: np.ndarray) -> np.ndarray:
        mem = dmem[:, self.output.base:self.output.base + self.output.size].astype(np.int64)
        out = np.empty_like(mem)
        out[:, self.output.order] = mem
        return out


def machine_params(cfg: XbarConfig) -> MachineParams:
    return MachineParams(rows=cfg.rows, cols=cfg.cols, num_xbars=cfg.num_xbars,
                         dmem_words=cfg.dmem_words, wmem_words=cfg.wmem_words,
                         adc_tables=cfg.adc_tables, vec_width=cfg.vec_width, t_read=cfg.t_read,
                         t_adc=cfg.t_adc, t_write=cfg.t_write, adcs_per_xbar=cfg.adcs,
                         hrs_units=cfg.hrs_units, physics=cfg.read_physics())


def device_params(cfg: XbarConfig) -> DeviceParams:
    return DeviceParams(rows=cfg.rows, cols=cfg.cols, num_xbars=cfg.num_xbars, hrs_ua=cfg.hrs_ua,
                        lrs_ua=cfg.lrs_ua, lsb_ua=cfg.current_lsb_ua,
                        sigma_hrs_ua=cfg.sigma_hrs_ua, sigma_lrs_ua=cfg.sigma_lrs_ua,
                        variability=cfg.variability, stuck_lrs_rate=cfg.stuck_lrs_rate,
                        stuck_hrs_rate=cfg.stuck_hrs_rate, seed=cfg.seed)



def _input_categories(values: tuple[int, ...], bitplane: bool) -> set[int]:
    if bitplane:
        return {0, 1}
    return {int(np.sign(v)) for v in values}


class Compiler:
    def __init__(self, net: Network, cfg: XbarConfig) -> None:
        self.net = net
        self.cfg = cfg
        self.m: Mapping = MAPPINGS[cfg.mapping]
        self.infos: list[LayerInfo] = analyze(net)
        self.emit = Emitter()
        self.dmem = DmemAllocator(cfg.dmem_words)
        self.tiles: dict[int, list[Tile]] = {}
        self.matrices: dict[int, np.ndarray] = {}
        self.adc_of: dict[int, int] = {}
        self._blocks: dict[tuple[int, frozenset[int], int, str, int], list[tuple[Instr, str]]] = {}
        # Schedule export: (recipe read, plane) of each READ of a cached block, and the
        # inference program's READ/phase events in program order.
        self._block_reads: dict[tuple[int, frozenset[int], int, str, int],
                                list[tuple[int, int]]] = {}
        self._tile_index: dict[int, int] = {}
        self.events: list[ReadStep | PhaseStart] = []

    # ------------------------------------------------------------ tiling
    def tile_shape(self) -> tuple[int, int]:
        return self.cfg.rows // self.m.rows_per_input, self.cfg.cols // self.m.cols_per_output

    def build_tiles(self, order_in: dict[int, np.ndarray]) -> None:
        rl, cl = self.tile_shape()
        if rl < 1 or cl < 1:
            raise BadInputError(f"a {self.cfg.rows}x{self.cfg.cols} array cannot hold one "
                                f"{self.m.name} cell group", where="config")
        for i, layer in enumerate(self.net.layers):
            if not isinstance(layer, Dense | Conv2d):
                continue
            where = layer_name(i, layer)
            w = layer.weight
            if isinstance(layer, Dense):
                wm = w[:, order_in[i]]
            else:
                wm = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)  # (ky, kx, c)
            bad = sorted({int(v) for v in np.unique(wm)} - set(self.m.cells))
            if bad:
                raise BadInputError(f"mapping {self.m.name} cannot store weight value(s) {bad} "
                                    "(it needs binary weights)", where=where)
            self.matrices[i] = wm
            o, f = wm.shape
            tiles = []
            for ct, o0 in enumerate(range(0, o, cl)):
                for rt, f0 in enumerate(range(0, f, rl)):
                    blk = wm[o0:o0 + cl, f0:f0 + rl].T  # [F_t, O_t]
                    tiles.append(Tile(i, rt, ct, f0, blk.shape[0], o0, blk.shape[1],
                                      self.m.encode(blk)))
            self.tiles[i] = tiles

    def place(self) -> int:
        """Assign tiles to (phase, xbar, row0, col0); returns the number of phases."""
        cfg = self.cfg
        phase = 0
        packer = Packer(cfg.num_xbars, cfg.rows, cfg.cols)
        self.xbars_used = 0
        for i, tiles in self.tiles.items():
            trial = Packer(cfg.num_xbars, cfg.rows, cfg.cols)
            trial.shelves = [[Shelf(s.y0, s.height, s.used) for s in sh] for sh in
                             packer.shelves]
            trial.top = list(packer.top)
            spots = [trial.place(*t.bits.shape) for t in tiles]
            if any(s is None for s in spots):
                if any(packer.top):
                    phase += 1
                packer = Packer(cfg.num_xbars, cfg.rows, cfg.cols)
                spots = [packer.place(*t.bits.shape) for t in tiles]
                if any(s is None for s in spots):
                    raise BadInputError(
                        f"needs {len(tiles)} tiles of up to {tiles[0].bits.shape} cells, more "
                        f"than {cfg.num_xbars} crossbars of {cfg.rows}x{cfg.cols} hold at once",
                        where=layer_name(i, self.net.layers[i]))
            else:
                packer = trial
            for t, s in zip(tiles, spots, strict=True):
                assert s is not None
                t.phase, (t.xbar, t.row0, t.col0) = phase, s
            self.xbars_used = max(self.xbars_used, packer.used_xbars)
        return phase + 1

    def weight_image(self, phases: int) -> tuple[np.ndarray, list[list[tuple[int, int, int]]]]:
        """WMEM rows and, per phase, the (xbar, row, wmem word) PROG list."""
        rows: list[np.ndarray] = []
        progs: list[list[tuple[int, int, int]]] = []
        for ph in range(phases):
            img: dict[tuple[int, int], np.ndarray] = {}
            for tiles in self.tiles.values():
                for t in tiles:
                    if t.phase != ph:
                        continue
                    h, w = t.bits.shape
                    for r in range(h):
                        row = img.setdefault((t.xbar, t.row0 + r),
                                             np.zeros(self.cfg.cols, np.uint8))
                        row[t.col0:t.col0 + w] |= t.bits[r]
            plist = []
            for (x, r), bits in sorted(img.items()):
                plist.append((x, r, len(rows)))
                rows.append(bits)
            progs.append(plist)
        wmem = np.stack(rows) if rows else np.zeros((0, self.cfg.cols), np.uint8)
        if wmem.shape[0] > self.cfg.wmem_words:
            raise BadInputError(f"weight memory exhausted: {wmem.shape[0]} rows needed, "
                                f"wmem_words = {self.cfg.wmem_words}", where="compile")
        return wmem, progs

    # ------------------------------------------------------------ emission
    def emit_recipe(self, t: Tile, segments: list[tuple[int, int, int]], cats: set[int],
                    bitplanes: int, kind: str, adc: int, what: str, pos: int = 0) -> None:
        e = self.emit
        e("INCLR", f"{what} tile r{t.rt}c{t.ct}")
        for dst, src, n in segments:
            e("LDIN", dst=dst, src=src, lanes=n)
        # The READ/ACC block of a tile is the same at every output position.
        key = (id(t), frozenset(cats), bitplanes, kind, adc)
        block = self._blocks.get(key)
        if block is None:
            reads: list[tuple[int, int]] = []
            block = self._blocks[key] = self.recipe_block(t, cats, bitplanes, kind, adc, reads)
            self._block_reads[key] = reads
        e.extend(block)
        ti = self._tile_index[id(t)]
        self.events.extend(ReadStep(ti, pos, r, b) for r, b in self._block_reads[key])

    def recipe_block(self, t: Tile, cats: set[int], bitplanes: int, kind: str, adc: int,
                     reads: list[tuple[int, int]] | None = None) -> list[tuple[Instr, str]]:
        mk = self.emit.make
        m = self.m
        rec = m.recipe(kind)
        sym = m.sense == "SYM"
        conv = t.o_len * m.col_blocks
        planes = range(bitplanes) if bitplanes else [BIT_SIGNED]
        block: list[tuple[Instr, str]] = []
        for b in planes:
            sh = 0 if b == BIT_SIGNED else b
            for r, rs in enumerate(rec.reads):
                vals = mask_values(rs.mask_a) | (mask_values(rs.mask_b)
                                                 if m.rows_per_input == 2 else set())
                if not vals & cats:
                    continue  # no input can drive this read: its terms are all zero
                block.append((mk("READ", xbar=t.xbar, row_off=t.row0, col=t.col0,
                                 mask_a=rs.mask_a,
                                 mask_b=rs.mask_b if m.rows_per_input == 2 else 0,
                                 pair=int(m.rows_per_input == 2),
                                 sense=int(Sense.SYM if sym else Sense.POS), adc=adc, bit=b,
                                 lanes=conv),
                              f"{m.name} read {r}" + (f" bit {b}" if b != BIT_SIGNED else "")))
                if reads is not None:
                    reads.append((r, SIGNED_PLANE if b == BIT_SIGNED else b))
                for term in rec.terms_of(r):
                    if term.kind == "code":
                        ins = mk("ACC", src=int(Src.CODE), mul=term.coef, sh=sh,
                                 addr=term.block * t.o_len, lanes=t.o_len)
                    else:
                        ins = mk("ACC", src=int(Src.NDRV), mul=term.coef, sh=sh,
                                 lanes=t.o_len)
                    block.append((ins, ""))
        return block

    def linear(self, i: int, src: Tensor, dst_base: int, act: Threshold | None,
               thr_addr: int) -> None:
        """Emit one linear layer (with its directly following threshold, if any)."""
        layer = self.net.layers[i]
        info = self.infos[i]
        tiles = self.tiles[i]
        wm = self.matrices[i]
        in_vals = info.in_values
        assert in_vals is not None
        bitplane = in_vals.kind == "unsigned"
        values = set(in_vals.values)
        if isinstance(layer, Conv2d) and any(layer.pads):
            values.add(layer.pad_value)
        cats = _input_categories(tuple(values), bitplane)
        kind = "bipolar" if not bitplane and values <= {-1, 1} else "general"
        bitplanes = in_vals.bits if bitplane else 0
        rec = self.m.recipe(kind)
        adc = self.adc_of[i]
        # Sum_w correction per output (over all row tiles and bit-planes).
        corr = None
        if rec.sumw:
            scale = (2**bitplanes - 1) if bitplanes else 1
            corr = rec.sumw * scale * wm.sum(axis=1).astype(np.int64)
            corr_addr = self.dmem.const(corr)
        k = act.thresholds.shape[1] if act is not None else 0
        by_ct: dict[int, list[Tile]] = {}
        for t in tiles:
            by_ct.setdefault(t.ct, []).append(t)
        if isinstance(layer, Dense):
            positions: list[tuple[int, int]] = [(0, 0)]
            oc = layer.out_features
        else:
            _, oh, ow = info.out_shape
            positions = [(y, x) for y in range(oh) for x in range(ow)]
            oc = int(layer.weight.shape[0])
            c_in, h_in, w_in = info.in_shape
            kh, kw = int(layer.weight.shape[2]), int(layer.weight.shape[3])
            pad_addr = self.pad_vector(layer.pad_value, c_in)
        name = layer_name(i, layer)
        for pos_i, (oy, ox) in enumerate(positions):
            for ct in sorted(by_ct):
                ct_tiles = by_ct[ct]
                o0, o_len = ct_tiles[0].o0, ct_tiles[0].o_len
                self.emit("ACLR", f"{name} pos ({oy},{ox}) outputs {o0}..{o0 + o_len - 1}")
                for t in ct_tiles:
                    if isinstance(layer, Dense):
                        segs = [(0, src.base + t.f0, t.f_len)]
                    else:
                        segs = self.conv_segments(t, src.base, oy, ox, layer, c_in, h_in, w_in,
                                                  kh, kw, pad_addr)
                    self.emit_recipe(t, segs, cats, bitplanes, kind, adc, name, pos_i)
                if corr is not None:
                    self.emit("ACC", "Sum_w correction", src=int(Src.DMEM), mul=1, sh=0,
                              addr=corr_addr + o0, lanes=o_len)
                out = dst_base + pos_i * oc + o0
                if act is not None:
                    self.emit("ACT", k=k, oscale=act.out_scale, obias=act.out_bias,
                              tbl=thr_addr + o0 * (k + 1), dst=out, lanes=o_len)
                else:
                    self.emit("STA", dst=out, lanes=o_len)

    def conv_segments(self, t: Tile, base: int, oy: int, ox: int, layer: Conv2d, c: int,
                      h: int, w: int, kh: int, kw: int, pad_addr: int
                      ) -> list[tuple[int, int, int]]:
        segs: list[tuple[int, int, int]] = []
        lo, hi = t.f0, t.f0 + t.f_len
        for ky in range(kh):
            iy = oy * layer.stride[0] - layer.pads[0] + ky
            for kx in range(kw):
                s0 = (ky * kw + kx) * c
                a, b = max(lo, s0), min(hi, s0 + c)
                if a >= b:
                    continue
                ix = ox * layer.stride[1] - layer.pads[1] + kx
                if 0 <= iy < h and 0 <= ix < w:
                    src = base + (iy * w + ix) * c + (a - s0)
                else:
                    src = pad_addr + (a - s0)
                dst = a - lo
                if segs and segs[-1][0] + segs[-1][2] == dst and \
                        segs[-1][1] + segs[-1][2] == src:
                    segs[-1] = (segs[-1][0], segs[-1][1], segs[-1][2] + b - a)
                else:
                    segs.append((dst, src, b - a))
        return segs

    def pad_vector(self, value: int, n: int) -> int:
        key = (value, n)
        if key not in self._pads:
            self._pads[key] = self.dmem.const(np.full(n, value, np.int64))
        return self._pads[key]

    def threshold_table(self, act: Threshold) -> int:
        tbl = np.concatenate([act.sign.astype(np.int64)[:, None], act.thresholds], axis=1)
        if act.thresholds.shape[1] > 3:
            raise BadInputError("at most 3 thresholds per channel", where="compile")
        return self.dmem.const(tbl)

    def chunks(self, n: int) -> list[tuple[int, int]]:
        step = self.cfg.cols
        return [(s, min(step, n - s)) for s in range(0, n, step)]

    def maxpool(self, src: Tensor, dst_base: int, layer: MaxPool2d, out_shape: tuple[int, ...]
                ) -> None:
        c, _, w = src.shape
        _, ph, pw = out_shape
        for py in range(ph):
            for px in range(pw):
                out = dst_base + (py * pw + px) * c
                first = True
                for ky in range(layer.kernel[0]):
                    for kx in range(layer.kernel[1]):
                        iy, ix = py * layer.stride[0] + ky, px * layer.stride[1] + kx
                        s = src.base + (iy * w + ix) * c
                        for c0, n in self.chunks(c):
                            self.emit("VCOPY" if first else "VMAX",
                                      f"pool ({py},{px})" if first and c0 == 0 else "",
                                      dst=out + c0, src=s + c0, lanes=n)
                        first = False

    def standalone_threshold(self, src: Tensor, dst_base: int, act: Threshold, tbl: int
                             ) -> None:
        c = src.shape[0]
        k = act.thresholds.shape[1]
        positions = src.size // c
        for p in range(positions):
            for c0, n in self.chunks(c):
                self.emit("ACLR", f"threshold position {p}" if c0 == 0 else "")
                self.emit("ACC", src=int(Src.DMEM), mul=1, sh=0, addr=src.base + p * c + c0,
                          lanes=n)
                self.emit("ACT", k=k, oscale=act.out_scale, obias=act.out_bias,
                          tbl=tbl + c0 * (k + 1), dst=dst_base + p * c + c0, lanes=n)

    # ------------------------------------------------------------- driver
    def compile(self, adc_tables: list[AdcTable] | None = None) -> Compiled:
        net, cfg = self.net, self.cfg
        self._pads: dict[tuple[int, int], int] = {}
        # Memory orders: which IR index each DMEM word of each tensor holds.
        shape = tuple(net.input.shape)
        order = hwc_order(shape)
        order_in: dict[int, np.ndarray] = {}
        for i, (layer, info) in enumerate(zip(net.layers, self.infos, strict=True)):
            if isinstance(layer, Dense):
                order_in[i] = order
            if isinstance(layer, Flatten):
                pass  # memory unchanged: the order carries over
            elif isinstance(layer, Threshold):
                pass
            else:
                order = hwc_order(info.out_shape)
        self.build_tiles(order_in)
        phases = self.place()
        placed = [t for tiles in self.tiles.values() for t in tiles]
        self._tile_index = {id(t): n for n, t in enumerate(placed)}
        wmem, progs = self.weight_image(phases)
        linear_ids = [i for i in self.tiles]
        if len(linear_ids) > cfg.adc_tables:
            raise BadInputError(f"{len(linear_ids)} linear layers need {len(linear_ids)} ADC "
                                f"tables, adc_tables = {cfg.adc_tables}", where="compile")
        for n, i in enumerate(linear_ids):
            self.adc_of[i] = n
        if adc_tables is None:
            # Each layer's full scale: the rows its largest tile drives (one per input).
            adc_tables = [layer_adc(cfg, max(t.f_len for t in self.tiles[i]))
                          for i in linear_ids]

        # Threshold tables and constants first, then activation buffers.
        e = self.emit
        setup_progs = progs[0] if phases == 1 else []
        for x, r, wsrc in setup_progs:
            e("PROG", "setup" if wsrc == 0 else "", xbar=x, row=r, wsrc=wsrc)
        e("HALT", "end of setup")
        infer_entry = len(e.code)

        in_t = Tensor(0, shape, hwc_order(shape))
        sizes = [int(np.prod(info.out_shape)) for info in self.infos]
        thr_addrs: dict[int, int] = {}
        for i, layer in enumerate(net.layers):
            if isinstance(layer, Threshold):
                thr_addrs[i] = self.threshold_table(layer)
        in_t.base = self.dmem.reserve(in_t.size)
        buf_words = max(sizes)
        bufs = [self.dmem.reserve(buf_words), self.dmem.reserve(buf_words)]
        out_words = sizes[-1]
        out_base = self.dmem.reserve(out_words)
        if self.dmem.top > cfg.dmem_words:
            raise BadInputError(f"data memory exhausted: {self.dmem.top} words needed, "
                                f"dmem_words = {cfg.dmem_words}", where="compile")

        cur = in_t
        which = 0
        phase_done = -1 if phases > 1 else 0
        i = 0
        layers = net.layers
        last = len(layers) - 1
        while i < len(layers):
            layer, info = layers[i], self.infos[i]
            if isinstance(layer, Flatten):
                cur = Tensor(cur.base, info.out_shape, cur.order)
                i += 1
                continue
            if isinstance(layer, Dense | Conv2d):
                ph = self.tiles[i][0].phase
                if ph != phase_done:
                    self.events.append(PhaseStart(ph))
                    for x, r, wsrc in progs[ph]:
                        e("PROG", f"phase {ph}" if (x, r) == progs[ph][0][:2] else "", xbar=x,
                          row=r, wsrc=wsrc)
                    phase_done = ph
                act = layers[i + 1] if i + 1 < len(layers) and isinstance(
                    layers[i + 1], Threshold) else None
                end = i + 1 if act is not None else i
                dst = out_base if end == last else bufs[which]
                self.linear(i, cur, dst, act, thr_addrs.get(i + 1, 0))
                out_info = self.infos[end]
                i = end + 1
            elif isinstance(layer, MaxPool2d):
                dst = out_base if i == last else bufs[which]
                self.maxpool(cur, dst, layer, info.out_shape)
                out_info = info
                i += 1
            else:
                assert isinstance(layer, Threshold)
                dst = out_base if i == last else bufs[which]
                self.standalone_threshold(cur, dst, layer, thr_addrs[i])
                out_info = info
                i += 1
            cur = Tensor(dst, out_info.out_shape, hwc_order(out_info.out_shape))
            which ^= 1
        e("HALT", "end of inference")
        if len(e.code) > cfg.prog_words:
            raise BadInputError(f"program memory exhausted: {len(e.code)} instructions, "
                                f"prog_words = {cfg.prog_words}", where="compile")
        # The output's memory order: logits come straight from STA in IR order
        # for a dense last layer; a conv/pool output is HWC.
        out_t = Tensor(out_base, self.infos[-1].out_shape, cur.order)

        p = machine_params(cfg)
        thr = np.stack([t.padded(2 * cfg.rows)[0] for t in adc_tables])
        rec = np.stack([t.padded(2 * cfg.rows)[1] for t in adc_tables])
        dev = sample_device_map(device_params(cfg))
        image = ChipImage(p, e.words(), wmem,
                          self.dmem.image(), thr, rec, dev)
        report = self.report(image, infer_entry, phases, len(progs[0]) if phases == 1 else 0,
                             progs, adc_tables)
        sched = Schedule(
            cfg.mapping, tuple(TilePlacement(t.layer, t.f0, t.f_len, t.o0, t.o_len, t.phase,
                                             t.xbar, t.row0, t.col0) for t in placed),
            tuple(self.events), (0,) if phases == 1 else ())
        return Compiled(cfg, net, image, 0, infer_entry, in_t, out_t, e.code, report,
                        adc_tables, sched)

    def report(self, image: ChipImage, entry: int, phases: int, setup_rows: int,
               progs: list[list[tuple[int, int, int]]], tables: list[AdcTable]) -> Report:
        cfg = self.cfg
        p = image.params
        code = [ins for ins, _ in self.emit.code]  # == decode(program), tests/test_isa.py
        infer, setup = code[entry:], code[:entry]
        costs: dict[int, int] = {}
        for ins in code:
            if id(ins) not in costs:
                costs[id(ins)] = isa.cost(ins, p)
        cyc = sum(costs[id(ins)] for ins in infer)
        scyc = sum(costs[id(ins)] for ins in setup)
        cells = sum(t.bits.size for tiles in self.tiles.values() for t in tiles)
        xbars = max(1, self.xbars_used)
        per_inf_rows = sum(len(pl) for pl in progs) if phases > 1 else 0
        return Report(
            mapping=cfg.mapping, phases=phases, xbars_used=self.xbars_used,
            utilization=round(cells / (xbars * cfg.rows * cfg.cols), 6),
            tiles=sum(len(t) for t in self.tiles.values()),
            instructions=len(infer), setup_instructions=len(setup), cycles_per_inference=cyc,
            setup_cycles=scyc, cell_writes_setup=setup_rows * cfg.cols,
            cell_writes_per_inference=per_inf_rows * cfg.cols,
            reads_per_inference=sum(1 for ins in infer if ins.op == "READ"),
            dmem_words_used=self.dmem.top, wmem_words_used=int(image.wmem.shape[0]),
            adc_tables_used=len(tables))


def compile_network(net: Network, cfg: XbarConfig,
                    calib: np.ndarray | None = None) -> Compiled:
    """Compile; with a calibrated adc_range, ``calib`` is a quantized calibration batch."""
    first = Compiler(net, cfg).compile()
    if not is_calibrated(cfg):
        return first
    if calib is None:
        raise BadInputError(f"adc_range = {cfg.adc_range} needs a calibration batch "
                            "(--calib X.npy)", where="config")
    return Compiler(net, cfg).compile(calibrated_adcs(first, calib))

