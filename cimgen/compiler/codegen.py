"""Integer IR + crossbar config -> instruction stream and chip images.

Lowering, in order:

1. Every linear layer becomes a weight matrix [O, F] whose F axis is in
   *data-memory order*: activations live in DMEM as HWC (channel fastest), so a
   conv's im2col row order is (ky, kx, c) and a dense layer after Flatten has
   its columns permuted from the IR's CHW order to HWC.
2. The matrix is cut into logical tiles of (rows // rows_per_input) inputs by
   (cols // cols_per_output) outputs, encoded to cell bits by the mapping and
   placed on ``num_xbars`` crossbars (``schedule``): all at setup when they
   fit, otherwise pinned layers plus residencies of streamed tiles.
3. DMEM holds constants (threshold tables, Sum_w corrections, pad vectors) at
   absolute addresses and one *slot* per input of the batch: input, two
   ping-pong activation buffers and the output, ``stride`` words apart. The
   inference program is, per residency: the PROGs of the rows that change
   (differential: the compiler tracks every crossbar row), then ``LOOP batch``
   over a body that addresses the slot relative to IB.
4. A body, per linear layer part in that residency, per output position and
   column tile: ACLR; the partial sum from earlier residencies (ACC from the
   destination); per resident row tile: INCLR, LDIN of the input segments
   (padding reads a constant pad vector), the mapping's READ/ACC recipe (once
   per bit-plane for unsigned multi-bit inputs); then, when the column tile is
   complete, the Sum_w correction and ACT (threshold) or STA (raw
   accumulators), else STA of the partial sum.
5. Max-pool is VCOPY + VMAX over DMEM vectors; a threshold after a pool
   loads the pooled accumulators with ACC and applies ACT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from golden_model.basis import BasisLinear, BasisNetwork, check_basis_network
from golden_model.crossbar import AdcTable, DeviceParams, sample_device_map
from golden_model.errors import BadInputError
from golden_model.ir import (
    BRANCH_KINDS,
    Conv2d,
    Dense,
    LayerInfo,
    MaxPool2d,
    Network,
    Threshold,
    analyze,
    layer_name,
)
from golden_model.isa import BIT_SIGNED, Instr, Sense, Src
from golden_model.machine import ChipImage, Machine, MachineParams
from golden_model.schedule import SIGNED_PLANE, Body, ReadStep, TilePlacement
from golden_model.schedule import Schedule as ReadSchedule

from ..config import XbarConfig
from .adc import calibrated_adcs, is_calibrated, layer_adc
from .cost import Report, static_report
from .dataflow import Dataflow, Step
from .dataflow import build as build_dataflow
from .emit import Emitter
from .host import HostStage
from .layout import DmemAllocator, Tensor
from .mappings import MAPPINGS, Mapping, mask_values
from .schedule import Schedule, fits, plan
from .tiling import Tile

MAX_AUTO_BATCH = 256


@dataclass
class Compiled:
    """A compiled network: the chip image plus what the host needs to drive it.

    ``input`` and ``output`` are slot 0's tensors; slot s is ``stride * s``
    words further. One program run processes ``batch`` inputs.
    """

    cfg: XbarConfig
    net: Network | None  # None when loaded from a compile directory (see ``host``)
    image: ChipImage
    setup_entry: int
    infer_entry: int
    input: Tensor
    output: Tensor
    listing: list[tuple[Instr, str]]
    report: Report
    adc_tables: list[AdcTable] = field(default_factory=list)
    batch: int = 1
    stride: int = 0
    tiles: list[Tile] = field(default_factory=list)
    host: HostStage | None = None  # input stage and output ops (set by the compiler)
    # Placement and READ order for independent executors (golden_model.schedule);
    # None for a compile directory loaded from disk.
    schedule: ReadSchedule | None = None
    basis: BasisNetwork | None = None  # the basis form the program computes (basis mode)

    # ------------------------------------------------------------- host
    def input_words(self, q: np.ndarray) -> np.ndarray:
        """Quantized integer input [B, *shape] -> DMEM words [B, n] in memory order."""
        flat = q.reshape(q.shape[0], -1)
        return flat[:, self.input.order].astype(np.int32)

    def runs(self, n: int) -> int:
        """Program runs for ``n`` inputs (the last batch is padded)."""
        return max(1, -(-n // self.batch))

    def run_inputs(self, q: np.ndarray) -> np.ndarray:
        """Inputs as DMEM words per run and slot: [runs, batch, words] (padding: 0)."""
        flat = q.reshape(q.shape[0], -1)
        order = self.input.order
        if flat.shape[1] != len(order) or (order != np.arange(len(order))).any():
            flat = flat[:, order]
        n, w, b = flat.shape[0], len(order), self.batch
        runs = self.runs(n)
        # Each run's words padded by 16: DMEM is word-major, so loading is a transpose,
        # and rows of a power of two bytes alias in the cache (7x slower).
        buf = np.empty((runs, b * w + 16), np.int32)
        out = buf[:, :b * w].reshape(runs, b, w)
        full, rem = divmod(n, b)
        out[:full] = flat[:full * b].reshape(full, b, w)
        if full < runs:
            out[full, :rem] = flat[full * b:]
            out[full, rem:] = 0
        return out

    def input_ranges(self) -> list[int]:
        """DMEM address of each slot's input."""
        return [self.input.base + s * self.stride for s in range(self.batch)]

    def output_ranges(self) -> list[tuple[int, int]]:
        """(address, words) of each slot's output."""
        return [(self.output.base + s * self.stride, self.output.size)
                for s in range(self.batch)]

    def load_inputs(self, mach: Machine, q: np.ndarray) -> None:
        """Write ``q`` into a machine whose lockstep runs are ``runs(len(q))``."""
        mach.load_slots(self.input.base, self.stride, self.run_inputs(q))

    def logits_of_words(self, words: np.ndarray) -> np.ndarray:
        """Output words in memory order [n, size] -> logits in IR order [n, size]."""
        out = np.empty(words.shape, np.int64)
        out[:, self.output.order] = words
        return out

    def output_logits(self, dmem: np.ndarray, n: int | None = None) -> np.ndarray:
        """Logits of every slot of every run ([runs, dmem_words] -> [n, outputs])."""
        size, base, step = self.output.size, self.output.base, self.stride
        if self.batch > 1 and step >= size and base + (self.batch - 1) * step + size \
                <= dmem.shape[1]:
            # The slots' words as one strided view [runs, slots, size] (no overlap).
            rs, ws = dmem.strides
            mem = np.lib.stride_tricks.as_strided(
                dmem[:, base:], shape=(dmem.shape[0], self.batch, size),
                strides=(rs, step * ws, ws), writeable=False).reshape(-1, size)
        else:
            slots = [dmem[:, a:a + m].astype(np.int64) for a, m in self.output_ranges()]
            mem = np.stack(slots, axis=1).reshape(-1, size)
        return self.logits_of_words(mem[:n] if n is not None else mem)


def machine_params(cfg: XbarConfig) -> MachineParams:
    return MachineParams(rows=cfg.rows, cols=cfg.cols, num_xbars=cfg.num_xbars,
                         dmem_words=cfg.dmem_words, wmem_words=cfg.wmem_words,
                         adc_tables=cfg.adc_tables, vec_width=cfg.vec_width, t_read=cfg.t_read,
                         t_adc=cfg.t_adc, t_write=cfg.prog_cycles, adcs_per_xbar=cfg.adcs,
                         hrs_units=cfg.hrs_units, coef_bits=cfg.coef_bits,
                         physics=cfg.read_physics())


def device_params(cfg: XbarConfig) -> DeviceParams:
    return DeviceParams(rows=cfg.rows, cols=cfg.cols, num_xbars=cfg.num_xbars, hrs_ua=cfg.hrs_ua,
                        lrs_ua=cfg.lrs_ua, lsb_ua=cfg.current_lsb_ua,
                        sigma_hrs_ua=cfg.sigma_hrs_ua, sigma_lrs_ua=cfg.sigma_lrs_ua,
                        variability=cfg.variability, stuck_lrs_rate=cfg.stuck_lrs_rate,
                        stuck_hrs_rate=cfg.stuck_hrs_rate, seed=cfg.seed)


def plane_scale(bitplanes: int) -> int:
    """Sum of the bit-plane weights: what a per-read term (Sum_w) adds up to over the
    planes (1 without planes; 2^b - 1 unsigned; -1 signed, whose top plane is -2^(b-1))."""
    if bitplanes > 0:
        return 2**bitplanes - 1
    return -1 if bitplanes < 0 else 1


def _input_categories(values: tuple[int, ...], bitplane: bool) -> set[int]:
    if bitplane:
        return {0, 1}
    return {int(np.sign(v)) for v in values}


@dataclass
class _Slots:
    """DMEM slots: the first slot's base, the words per slot, and where in a slot the
    basis products (basis mode) go."""

    base: int
    stride: int
    scratch: int = 0


class Compiler:
    def __init__(self, net: Network, cfg: XbarConfig, basis: BasisNetwork | None = None
                 ) -> None:
        # Basis mode (BasisN): the basis-form network's shared basis is the only thing
        # on the crossbars; every linear layer reads its input segments against it and
        # combines the products with its coefficients (CMAC).
        self.bn = basis
        if basis is not None:
            check_basis_network(basis)
            net = basis.original
        self.net = net
        self.cfg = cfg
        self.m: Mapping = MAPPINGS[cfg.mapping]
        self.infos: list[LayerInfo] = analyze(net)
        self.emit = Emitter()
        self.dmem = DmemAllocator(cfg.dmem_words)
        self.tiles: dict[int, list[Tile]] = {}
        self.matrices: dict[int, np.ndarray] = {}
        self.adc_of: dict[int, int] = {}
        self.corr: dict[int, int] = {}
        self._pads: dict[tuple[int, int], int] = {}
        self._blocks: dict[tuple[int, frozenset[int], int, str, int], list[tuple[Instr, str]]] = {}
        self.rel = 0  # 1 when the body addresses the slot relative to IB (batch > 1)
        self.linear_ids = [i for i, layer in enumerate(net.layers)
                           if isinstance(layer, Dense | Conv2d)]
        # Thresholds as the program applies them (rescaled ones in basis mode).
        self.layer_list = basis.layers if basis is not None else net.layers
        self.bcorr: dict[tuple[int, int], int] = {}
        self.coef_base: dict[int, int] = {}
        self.scratch_base = 0
        # Schedule export: (recipe read, plane) of each READ of a cached block, and the
        # READs of the body being emitted, in program order.
        self._block_reads: dict[tuple[int, frozenset[int], int, str, int],
                                list[tuple[int, int]]] = {}
        self._tile_index: dict[int, int] = {}
        self.events: list[ReadStep] = []

    # ------------------------------------------------------------ tiling
    def tile_shape(self) -> tuple[int, int]:
        return self.cfg.rows // self.m.rows_per_input, self.cfg.cols // self.m.cols_per_output

    def build_tiles(self, order_in: dict[int, np.ndarray]) -> None:
        rl, cl = self.tile_shape()
        if rl < 1 or cl < 1:
            cfg = self.cfg
            raise BadInputError(
                f"rows/cols: a {cfg.rows}x{cfg.cols} array cannot hold one {self.m.name} cell "
                f"group (it needs at least {self.m.rows_per_input} rows and "
                f"{self.m.cols_per_output} columns)", where="config")
        if self.bn is not None:
            self.basis_tiles(rl)
            return
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

    def positions(self, i: int) -> int:
        layer = self.net.layers[i]
        if isinstance(layer, Dense):
            return 1
        _, oh, ow = self.infos[i].out_shape
        return oh * ow

    # ------------------------------------------------------------ emission
    def emit_recipe(self, t: Tile, segments: list[tuple[int, int, int, int]], cats: set[int],
                    bitplanes: int, kind: str, adc: int, what: str, pos: int = 0) -> None:
        e = self.emit
        e("INCLR", f"{what} tile r{t.rt}c{t.ct}")
        for dst, src, n, rel in segments:
            e("LDIN", dst=dst, src=src, lanes=n, rsrc=rel)
        # The READ/ACC block of a tile is the same at every output position.
        self.emit_block(t, cats, bitplanes, kind, adc, t.layer, pos, 0)

    def emit_block(self, t: Tile, cats: set[int], bitplanes: int, kind: str, adc: int,
                   layer: int, pos: int, segment: int) -> None:
        """The READ/ACC block of tile ``t`` (cached: it is the same at every output
        position), recording its READs for the schedule export."""
        key = (id(t), frozenset(cats), bitplanes, kind, adc)
        block = self._blocks.get(key)
        if block is None:
            reads: list[tuple[int, int]] = []
            block = self._blocks[key] = self.recipe_block(t, cats, bitplanes, kind, adc, reads)
            self._block_reads[key] = reads
        self.emit.extend(block)
        ti = self._tile_index[id(t)]
        self.events.extend(ReadStep(ti, pos, r, b, layer, segment)
                           for r, b in self._block_reads[key])

    def recipe_block(self, t: Tile, cats: set[int], bitplanes: int, kind: str, adc: int,
                     reads: list[tuple[int, int]] | None = None) -> list[tuple[Instr, str]]:
        mk = self.emit.make
        m = self.m
        rec = m.recipe(kind)
        sym = m.sense == "SYM"
        conv = t.o_len * m.col_blocks
        planes = range(abs(bitplanes)) if bitplanes else [BIT_SIGNED]
        sign_plane = -bitplanes - 1 if bitplanes < 0 else -1
        block: list[tuple[Instr, str]] = []
        for b in planes:
            sh = 0 if b == BIT_SIGNED else b
            neg = -1 if b == sign_plane else 1  # the sign plane weighs -2^(b-1)
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
                        ins = mk("ACC", src=int(Src.CODE), mul=neg * term.coef, sh=sh,
                                 addr=term.block * t.o_len, lanes=t.o_len)
                    else:
                        ins = mk("ACC", src=int(Src.NDRV), mul=neg * term.coef, sh=sh,
                                 lanes=t.o_len)
                    block.append((ins, ""))
        return block

    def basis_tiles(self, rl: int) -> None:
        """The shared basis as the tiles of one virtual layer (index -1): basis vector
        j is its output j, the vector's R entries its rows."""
        assert self.bn is not None
        b = self.bn.basis
        where = "basis"
        if b.length > rl:
            raise BadInputError(
                f"basis vectors of {b.length} rows exceed the {rl} logical rows of a "
                f"{self.cfg.rows}x{self.cfg.cols} {self.m.name} tile (fit the basis with R = "
                f"{rl})", where=where)
        wm = b.vectors.astype(np.int64)
        bad = sorted({int(v) for v in np.unique(wm)} - set(self.m.cells))
        if bad:
            raise BadInputError(f"mapping {self.m.name} cannot store basis value(s) {bad} "
                                f"(a {b.kind} basis needs a mapping that stores them)",
                                where=where)
        if self.cfg.cols // self.cfg.coef_bits < 1:
            raise BadInputError(f"a {self.cfg.cols}-column weight-memory row holds no "
                                f"{self.cfg.coef_bits}-bit coefficient", where="coef_bits")
        if self.bn.coef_bits > self.cfg.coef_bits:
            raise BadInputError(f"the basis form has {self.bn.coef_bits}-bit coefficients, "
                                f"the chip's CMAC takes {self.cfg.coef_bits}", where="coef_bits")
        self.matrices[-1] = wm
        cl = self.tile_shape()[1]
        tiles = []
        for ct, o0 in enumerate(range(0, b.count, cl)):
            blk = wm[o0:o0 + cl].T  # [R, O_t]
            tiles.append(Tile(-1, 0, ct, 0, blk.shape[0], o0, blk.shape[1], self.m.encode(blk)))
        self.tiles[-1] = tiles

    def basis_correction(self, i: int, seg_rows: int) -> int | None:
        """Sum_w term of the basis read of a segment of ``seg_rows`` rows: per basis
        vector, the recipe's correction over the rows the segment drives."""
        _, kind, bitplanes = self.layer_context(i)
        rec = self.m.recipe(kind)
        if not rec.sumw:
            return None
        key = (i, seg_rows)
        if key not in self.bcorr:
            scale = plane_scale(bitplanes)
            corr = rec.sumw * scale * self.matrices[-1][:, :seg_rows].sum(axis=1)
            self.bcorr[key] = self.dmem.const(corr)
        return self.bcorr[key]

    def coef_rows(self, i: int) -> tuple[int, list[tuple[int, int]]]:
        """WMEM rows of layer i's coefficients, one per (segment, basis chunk, output):
        row = base + (s * K + k) * O + o; and the basis chunks (j0, n) one CMAC takes."""
        assert self.bn is not None
        layer = self.bn.layers[i]
        assert isinstance(layer, BasisLinear)
        cb = self.cfg.coef_bits
        nmax = self.cfg.cols // cb
        n_basis = self.bn.basis.count
        chunks = [(j0, min(nmax, n_basis - j0)) for j0 in range(0, n_basis, nmax)]
        if i not in self.coef_base:
            c = layer.coefs.astype(np.int64)  # [O, S, N]
            o, s_n, _ = c.shape
            weights = 1 << np.arange(cb)
            imgs = []
            for s in range(s_n):
                for j0, n in chunks:
                    fields = c[:, s, j0:j0 + n] & ((1 << cb) - 1)  # two's complement
                    bits = ((fields[:, :, None] & weights) != 0).reshape(o, n * cb)
                    img = np.zeros((o, self.cfg.cols), np.uint8)
                    img[:, :n * cb] = bits
                    imgs.append(img)
            self.coef_base[i] = self.rows.block(np.concatenate(imgs))
        return self.coef_base[i], chunks

    def basis_linear(self, st: Step) -> None:
        """A linear layer in basis mode: per output position, each input segment is
        read against every basis tile (the products go to the slot's scratch), then
        every output chunk combines them with CMAC and applies ACT or STA."""
        assert self.bn is not None
        i = st.index
        layer = self.net.layers[i]
        blin = self.bn.layers[i]
        assert isinstance(blin, BasisLinear)
        info = self.infos[i]
        cats, kind, bitplanes = self.layer_context(i)
        adc = self.adc_of[i]
        act = st.act
        k = act.thresholds.shape[1] if act is not None else 0
        r_len = self.bn.seg_len
        n_basis = self.bn.basis.count
        base, chunks = self.coef_rows(i)
        rel = self.rel
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
        scratch = self.scratch_base
        for pos_i, (oy, ox) in enumerate(positions):
            for s in range(blin.segments):
                f0 = s * r_len
                seg = Tile(i, s, 0, f0, min(r_len, blin.rows - f0), 0, 0, np.zeros((0, 0)))
                if isinstance(layer, Dense):
                    segs = [(0, st.src.base + f0, seg.f_len, rel)]
                else:
                    segs = self.conv_segments(seg, st.src.base, oy, ox, layer, c_in, h_in, w_in,
                                              kh, kw, pad_addr)
                corr = self.basis_correction(i, seg.f_len)
                self.emit("INCLR", f"{name} pos ({oy},{ox}) segment {s}")
                for dst, src, n, r in segs:
                    self.emit("LDIN", dst=dst, src=src, lanes=n, rsrc=r)
                for bt in self.tiles[-1]:
                    self.emit("ACLR", f"basis {bt.o0}..{bt.o0 + bt.o_len - 1}")
                    self.emit_block(bt, cats, bitplanes, kind, adc, i, pos_i, s)
                    if corr is not None:
                        self.emit("ACC", "Sum_w correction", src=int(Src.DMEM), mul=1, sh=0,
                                  addr=corr + bt.o0, lanes=bt.o_len)
                    self.emit("STA", "basis products", dst=scratch + s * n_basis + bt.o0,
                              lanes=bt.o_len, rel=rel)
            for o0, o_len in self.chunks(oc):
                out = st.dst.base + pos_i * oc + o0
                self.emit("ACLR", f"{name} pos ({oy},{ox}) outputs {o0}..{o0 + o_len - 1}")
                for s in range(blin.segments):
                    for kk, (j0, n) in enumerate(chunks):
                        self.emit("CMAC", src=scratch + s * n_basis + j0,
                                  coef=base + (s * len(chunks) + kk) * oc + o0, n=n,
                                  lanes=o_len, rsrc=rel)
                if act is not None:
                    self.emit("ACT", k=k, oscale=act.out_scale, obias=act.out_bias,
                              tbl=st.thr_addr + o0 * (k + 1), dst=out, lanes=o_len, rdst=rel)
                else:
                    self.emit("STA", dst=out, lanes=o_len, rel=rel)

    def layer_context(self, i: int) -> tuple[set[int], str, int]:
        """Input categories that can drive a READ, recipe kind, bit-planes.

        Multi-bit inputs are read one bit-plane at a time: ``bitplanes`` > 0 for an
        unsigned input, < 0 (minus the width) for a signed one, whose top plane is
        the two's complement sign and weighs -2^(b-1); 0 for +-1 / ternary inputs."""
        layer = self.net.layers[i]
        in_vals = self.infos[i].in_values
        assert in_vals is not None
        bitplane = in_vals.kind in ("unsigned", "signed")
        values = set(in_vals.values)
        if isinstance(layer, Conv2d) and any(layer.pads):
            values.add(layer.pad_value)
        cats = _input_categories(tuple(values), bitplane)
        kind = "bipolar" if not bitplane and values <= {-1, 1} else "general"
        if not bitplane:
            return cats, kind, 0
        return cats, kind, -in_vals.bits if in_vals.kind == "signed" else in_vals.bits

    def correction(self, i: int) -> int | None:
        """DMEM address of the layer's Sum_w correction per output (None: no term)."""
        _, kind, bitplanes = self.layer_context(i)
        rec = self.m.recipe(kind)
        if not rec.sumw:
            return None
        if i not in self.corr:
            scale = plane_scale(bitplanes)
            corr = rec.sumw * scale * self.matrices[i].sum(axis=1).astype(np.int64)
            self.corr[i] = self.dmem.const(corr)
        return self.corr[i]

    def linear(self, st: Step, residency: int | None) -> None:
        """Emit a linear layer's work in one residency (None: all of it).

        A column tile whose row tiles span residencies keeps its partial sum in
        the destination words between them.
        """
        i = st.index
        layer = self.net.layers[i]
        info = self.infos[i]
        cats, kind, bitplanes = self.layer_context(i)
        adc = self.adc_of[i]
        corr_addr = self.correction(i)
        act = st.act
        k = act.thresholds.shape[1] if act is not None else 0
        phases: dict[int, list[int]] = {}
        by_ct: dict[int, list[Tile]] = {}
        for t in self.tiles[i]:
            by_ct.setdefault(t.ct, []).append(t)
            phases.setdefault(t.ct, []).append(t.phase)
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
        rel = self.rel
        work = []
        for ct in sorted(by_ct):
            if residency is None:
                here = by_ct[ct]
                first = last = True
            else:
                here = [t for t in by_ct[ct] if t.phase == residency]
                if not here:
                    continue
                first = min(phases[ct]) == residency
                last = max(phases[ct]) == residency
            work.append((here, first, last))
        for pos_i, (oy, ox) in enumerate(positions):
            for here, first, last in work:
                o0, o_len = here[0].o0, here[0].o_len
                out = st.dst.base + pos_i * oc + o0
                self.emit("ACLR", f"{name} pos ({oy},{ox}) outputs {o0}..{o0 + o_len - 1}")
                if not first:
                    self.emit("ACC", "partial sum", src=int(Src.DMEM), mul=1, sh=0, addr=out,
                              lanes=o_len, rel=rel)
                for t in here:
                    if isinstance(layer, Dense):
                        segs = [(0, st.src.base + t.f0, t.f_len, rel)]
                    else:
                        segs = self.conv_segments(t, st.src.base, oy, ox, layer, c_in, h_in,
                                                  w_in, kh, kw, pad_addr)
                    self.emit_recipe(t, segs, cats, bitplanes, kind, adc, name, pos_i)
                if not last:
                    self.emit("STA", "partial sum", dst=out, lanes=o_len, rel=rel)
                    continue
                if corr_addr is not None:
                    self.emit("ACC", "Sum_w correction", src=int(Src.DMEM), mul=1, sh=0,
                              addr=corr_addr + o0, lanes=o_len)
                if act is not None:
                    self.emit("ACT", k=k, oscale=act.out_scale, obias=act.out_bias,
                              tbl=st.thr_addr + o0 * (k + 1), dst=out, lanes=o_len, rdst=rel)
                else:
                    self.emit("STA", dst=out, lanes=o_len, rel=rel)

    def conv_segments(self, t: Tile, base: int, oy: int, ox: int, layer: Conv2d, c: int,
                      h: int, w: int, kh: int, kw: int, pad_addr: int
                      ) -> list[tuple[int, int, int, int]]:
        """LDIN segments (IN offset, DMEM address, words, relative) of one patch."""
        segs: list[tuple[int, int, int, int]] = []
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
                    src, rel = base + (iy * w + ix) * c + (a - s0), self.rel
                else:
                    src, rel = pad_addr + (a - s0), 0
                dst = a - lo
                if segs and segs[-1][0] + segs[-1][2] == dst and \
                        segs[-1][1] + segs[-1][2] == src and segs[-1][3] == rel:
                    segs[-1] = (segs[-1][0], segs[-1][1], segs[-1][2] + b - a, rel)
                else:
                    segs.append((dst, src, b - a, rel))
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

    def maxpool(self, st: Step) -> None:
        layer = self.net.layers[st.index]
        assert isinstance(layer, MaxPool2d)
        src = st.src
        c, _, w = src.shape
        _, ph, pw = st.dst.shape
        r = self.rel
        for py in range(ph):
            for px in range(pw):
                out = st.dst.base + (py * pw + px) * c
                first = True
                for ky in range(layer.kernel[0]):
                    for kx in range(layer.kernel[1]):
                        iy, ix = py * layer.stride[0] + ky, px * layer.stride[1] + kx
                        s = src.base + (iy * w + ix) * c
                        for c0, n in self.chunks(c):
                            self.emit("VCOPY" if first else "VMAX",
                                      f"pool ({py},{px})" if first and c0 == 0 else "",
                                      dst=out + c0, src=s + c0, lanes=n, rdst=r, rsrc=r)
                        first = False

    def standalone_threshold(self, st: Step) -> None:
        act = st.act
        assert act is not None
        src = st.src
        c = src.shape[0]
        k = act.thresholds.shape[1]
        r = self.rel
        for p in range(src.size // c):
            for c0, n in self.chunks(c):
                self.emit("ACLR", f"threshold position {p}" if c0 == 0 else "")
                self.emit("ACC", src=int(Src.DMEM), mul=1, sh=0, addr=src.base + p * c + c0,
                          lanes=n, rel=r)
                self.emit("ACT", k=k, oscale=act.out_scale, obias=act.out_bias,
                          tbl=st.thr_addr + c0 * (k + 1), dst=st.dst.base + p * c + c0, lanes=n,
                          rdst=r)

    # ------------------------------------------------------------- layout
    def residual_add(self, st: Step) -> None:
        """out = sum_k factor_k * in_k, element by element (the operands share one
        memory order), then the fused threshold (ACT) or the raw sum (STA)."""
        act = st.act
        k = act.thresholds.shape[1] if act is not None else 0
        shape = st.dst.shape
        c = shape[0]
        positions = st.dst.size // c
        r = self.rel
        muls = [self.scaled(f, layer_name(st.index, self.net.layers[st.index]))
                for f in st.factors]
        for p in range(positions):
            for c0, n in self.chunks(c):
                self.emit("ACLR", f"add position {p}" if c0 == 0 else "")
                for t, (mul, sh) in zip(st.srcs, muls, strict=True):
                    self.emit("ACC", src=int(Src.DMEM), mul=mul, sh=sh,
                              addr=t.base + p * c + c0, lanes=n, rel=r)
                if act is not None:
                    self.emit("ACT", k=k, oscale=act.out_scale, obias=act.out_bias,
                              tbl=st.thr_addr + c0 * (k + 1), dst=st.dst.base + p * c + c0,
                              lanes=n, rdst=r)
                else:
                    self.emit("STA", dst=st.dst.base + p * c + c0, lanes=n, rel=r)

    @staticmethod
    def scaled(factor: int, where: str) -> tuple[int, int]:
        """(mul, sh) with mul << sh == factor and mul a signed byte (ACC's fields)."""
        sh = 0
        while factor and (factor >> sh) % 2 == 0 and not -128 <= factor >> sh <= 127:
            sh += 1
        mul = factor >> sh
        if not -128 <= mul <= 127 or sh > 15 or mul << sh != factor:
            raise BadInputError(f"residual operand scale {factor} is not a signed byte times "
                                "a power of two (ACC mul << sh)", where=where)
        return mul, sh

    def concat(self, st: Step) -> None:
        """Channel concat of HWC images (per position, each input's channels at its
        offset) or of vectors (one after the other)."""
        r = self.rel
        shape = st.dst.shape
        if len(shape) == 1:
            off = 0
            for t in st.srcs:
                for c0, n in self.chunks(t.size):
                    self.emit("VCOPY", "concat" if off + c0 == 0 else "",
                              dst=st.dst.base + off + c0, src=t.base + c0, lanes=n, rdst=r,
                              rsrc=r)
                off += t.size
            return
        c_out = shape[0]
        positions = st.dst.size // c_out
        for p in range(positions):
            off = 0
            for t in st.srcs:
                c = t.shape[0]
                for c0, n in self.chunks(c):
                    self.emit("VCOPY", f"concat position {p}" if off + c0 == 0 else "",
                              dst=st.dst.base + p * c_out + off + c0, src=t.base + p * c + c0,
                              lanes=n, rdst=r, rsrc=r)
                off += c

    def dataflow(self, reuse: bool) -> Dataflow:
        return build_dataflow(self.net, self.infos, self.layer_list, reuse)

    def scratch_words(self) -> int:
        if self.bn is None:
            return 0
        return self.bn.basis.count * max((ly.segments for ly in self.bn.linear.values()),
                                         default=0)

    def choose_batch(self, slots: _Slots, fits: bool) -> int:
        cfg = self.cfg
        room = cfg.dmem_words - slots.base
        most = room // slots.stride if room > 0 else 0
        if most < 1:
            raise BadInputError(
                f"data memory exhausted: the constants ({slots.base} words) and one input's "
                f"slot ({slots.stride} words) need {slots.base + slots.stride} words, "
                f"dmem_words = {cfg.dmem_words}", where="dmem_words")
        if cfg.batch:
            if cfg.batch > most:
                raise BadInputError(
                    f"batch = {cfg.batch} needs {slots.base + cfg.batch * slots.stride} DMEM "
                    f"words ({slots.stride} per input + {slots.base} of constants), "
                    f"dmem_words = {cfg.dmem_words}: the largest batch that fits is {most}",
                    where="batch")
            return cfg.batch
        if fits:
            return 1
        b = 1
        while b * 2 <= min(most, MAX_AUTO_BATCH):
            b *= 2
        return b

    # ------------------------------------------------------------- driver
    def compile(self, adc_tables: list[AdcTable] | None = None) -> Compiled:
        net, cfg = self.net, self.cfg
        # Memory orders (which IR index each DMEM word of each tensor holds) and the
        # steps; a branchy network whose weights stream keeps every tensor apart.
        df = self.dataflow(reuse=True)
        self.build_tiles(df.order_in)
        all_tiles = [t for ts in self.tiles.values() for t in ts]
        self._tile_index = {id(t): n for n, t in enumerate(all_tiles)}
        streams = not fits(self.tiles, cfg.num_xbars, cfg.rows, cfg.cols)
        if streams and any(isinstance(ly, BRANCH_KINDS) for ly in net.layers):
            df = self.dataflow(reuse=False)
        linear_ids = self.linear_ids
        if len(linear_ids) > cfg.adc_tables:
            raise BadInputError(f"{len(linear_ids)} linear layers need {len(linear_ids)} ADC "
                                f"tables, adc_tables = {cfg.adc_tables}", where="adc_tables")
        for n, i in enumerate(linear_ids):
            self.adc_of[i] = n
        if adc_tables is None:
            # Each layer's full scale: the rows its largest tile drives (one per input).
            adc_tables = [layer_adc(cfg, max(t.f_len for t in self.tiles[-1 if self.bn else i]))
                          for i in linear_ids]

        # Constants (absolute addresses) first, then the slots.
        self.thr_addr = {i: self.threshold_table(layer)
                         for i, layer in enumerate(self.layer_list)
                         if isinstance(layer, Threshold)}
        for i in linear_ids:
            layer = net.layers[i]
            if self.bn is None:
                self.correction(i)
            else:
                rows_f, r_len = self.bn.linear[i].rows, self.bn.seg_len
                for f0 in range(0, rows_f, r_len):
                    self.basis_correction(i, min(r_len, rows_f - f0))
            if isinstance(layer, Conv2d):
                self.pad_vector(layer.pad_value, int(layer.weight.shape[1]))
        slots = _Slots(self.dmem.top, df.slot_words + self.scratch_words(), df.slot_words)
        if self.bn is not None and streams:
            n_t = len(self.tiles[-1])
            raise BadInputError(
                f"the basis of {self.bn.basis.count} vectors needs {n_t} tile(s) of "
                f"{self.tile_shape()[1]} basis columns; {cfg.num_xbars} crossbar(s) of "
                f"{cfg.rows}x{cfg.cols} cannot hold them at once (basis mode never "
                f"reprograms)", where="basis_count")
        batch = self.choose_batch(slots, not streams)
        self.rel = int(batch > 1)
        self.scratch_base = slots.base + slots.scratch
        sched = plan(self.tiles, {i: self.positions(i) if i >= 0 else 1 for i in self.tiles},
                     cfg.num_xbars,
                     cfg.rows, cfg.cols, batch, cfg.prog_cycles, cfg.vec_width)
        steps = df.steps
        for st in steps:  # slot offsets -> slot 0's addresses
            st.dst = Tensor(slots.base + st.dst.base, st.dst.shape, st.dst.order)
            st.srcs = tuple(Tensor(slots.base + t.base, t.shape, t.order) for t in st.srcs)
            if st.act is not None:
                st.thr_addr = self.thr_addr[st.act_index if st.act_index >= 0 else st.index]
        n_res = max(1, sched.residencies)
        self.assign_residencies(steps)

        # Crossbar rows: setup writes the pinned tiles and the state the streaming
        # crossbars have at the end of a run; each residency then rewrites only
        # the rows (and, by differential write, only the cells) that change.
        rows = self.rows = _RowImages(cfg.num_xbars, cfg.rows, cfg.cols)
        res_rows = [self.row_updates(sched, r) for r in range(n_res)] if sched.streams else []
        state = rows.blank()
        for upd in res_rows:  # one pass from blank cells: the steady end-of-run state
            state = rows.apply(state, upd)[0]
        setup_target = rows.apply(state, self.row_updates(sched, None))[0]
        e = self.emit
        # The cells of a chip hold whatever was written before (they are non-volatile):
        # setup writes every row a tile uses, whatever it may hold.
        used = sorted({(x, r) for upd in [*res_rows, self.row_updates(sched, None)]
                       for x, r, _, _ in upd})
        setup_list = [(x, r, setup_target[x, r]) for x, r in used]
        for x, r, img in setup_list:
            e("PROG", "setup" if (x, r) == setup_list[0][:2] else "", xbar=x, row=r,
              wsrc=rows.word(img))
        e("HALT", "end of setup")
        infer_entry = len(e.code)

        cur = setup_target
        writes = np.zeros((cfg.num_xbars, cfg.rows, cfg.cols), np.int64)
        cells_per_run = 0
        bodies: list[Body] = []
        for r in range(n_res):
            if sched.streams:
                nxt, _ = rows.apply(cur, res_rows[r])
                plist = rows.diff(cur, nxt)
                for n, (x, row, img) in enumerate(plist):
                    e("PROG", f"residency {r}" if n == 0 else "", xbar=x, row=row,
                      wsrc=rows.word(img))
                    changed = img != cur[x, row]
                    writes[x, row] += changed
                    cells_per_run += int(changed.sum())
                cur = nxt
            body_start = len(e.code)
            self.events = []
            for st in steps:
                self.emit_step(st, r if sched.streams else None, n_res)
            bodies.append(Body(r if sched.streams else -1, tuple(self.events)))
            body = len(e.code) - body_start
            if batch > 1 and body:
                e.code.insert(body_start, (e.make("LOOP", count=batch, len=body,
                                                  stride=slots.stride),
                                           f"residency {r}: {batch} inputs"))
        e("HALT", "end of inference")
        if not np.array_equal(cur, setup_target):  # pragma: no cover - by construction
            raise AssertionError("a run does not end in the state it starts from")
        if len(e.code) > cfg.prog_words:
            raise BadInputError(f"program memory exhausted: {len(e.code)} instructions needed, "
                                f"prog_words = {cfg.prog_words}", where="prog_words")
        wmem = rows.wmem()
        if wmem.shape[0] > cfg.wmem_words:
            raise BadInputError(f"weight memory exhausted: {wmem.shape[0]} row images needed, "
                                f"wmem_words = {cfg.wmem_words}", where="wmem_words")
        top = slots.base + batch * slots.stride
        if top > cfg.dmem_words:  # pragma: no cover - choose_batch checked it
            raise BadInputError(f"data memory exhausted: {top} words needed, dmem_words = "
                                f"{cfg.dmem_words}", where="dmem_words")

        in_t = Tensor(slots.base + df.input.base, df.input.shape, df.input.order)
        out_t = Tensor(slots.base + df.output.base, df.output.shape, df.output.order)
        p = machine_params(cfg)
        thr = np.stack([t.padded(2 * cfg.rows)[0] for t in adc_tables])
        rec = np.stack([t.padded(2 * cfg.rows)[1] for t in adc_tables])
        dev = sample_device_map(device_params(cfg))
        image = ChipImage(p, e.words(), wmem, self.dmem.image(), thr, rec, dev)
        report = static_report(
            cfg, image, [ins for ins, _ in e.code], infer_entry, batch=batch,
            residencies=sched.residencies, xbars_used=sched.xbars_used, tiles=all_tiles,
            cells_per_run=cells_per_run, max_cell_writes=int(writes.max(initial=0)),
            setup_cells=sum(int(np.count_nonzero(img != 0)) for _, _, img in setup_list),
            dmem_used=top, adc_tables=len(adc_tables))
        read_sched = ReadSchedule(
            cfg.mapping, tuple(TilePlacement(t.layer, t.f0, t.f_len, t.o0, t.o_len, t.phase,
                                             t.xbar, t.row0, t.col0) for t in all_tiles),
            tuple(bodies), batch, sched.streams)
        return Compiled(cfg, net, image, 0, infer_entry, in_t, out_t, e.code, report,
                        adc_tables, batch, slots.stride, all_tiles,
                        HostStage(net.input, tuple(out_t.shape), net.output_ops), read_sched,
                        self.bn)

    def assign_residencies(self, steps: list[Step]) -> None:
        """The residency in which each step runs: a pinned layer, pool, threshold,
        add or concat in the one in which all its inputs are complete; a streamed
        layer in every residency that holds some of its tiles."""
        done: list[int] = []  # the residency in which each step completes
        for st in steps:
            ready = max((done[k] for k in st.sources if k >= 0), default=0)
            if st.kind == "linear" and self.bn is None:
                phases = [t.phase for t in self.tiles[st.index]]
                if max(phases) >= 0:  # streamed
                    st.residency = -1
                    done.append(max(ready, max(phases)))
                    continue
            st.residency = ready if self.bn is None else 0
            done.append(st.residency)

    def emit_step(self, st: Step, residency: int | None, n_res: int) -> None:
        if st.kind == "linear" and self.bn is not None:
            self.basis_linear(st)
        elif st.kind == "linear":
            if residency is None:
                self.linear(st, None)
            elif st.residency < 0:
                self.linear(st, residency)
            elif st.residency == residency:
                self.linear(st, None)
        elif residency is None or st.residency == residency:
            if st.kind == "pool":
                self.maxpool(st)
            elif st.kind == "add":
                self.residual_add(st)
            elif st.kind == "concat":
                self.concat(st)
            else:
                self.standalone_threshold(st)

    def row_updates(self, sched: Schedule, residency: int | None
                    ) -> list[tuple[int, int, int, np.ndarray]]:
        """(xbar, row, col0, bits) of the tiles of a residency (None: the pinned ones)."""
        want = -1 if residency is None else residency
        out = []
        for tiles in self.tiles.values():
            for t in tiles:
                if t.phase == want:
                    for k in range(t.bits.shape[0]):
                        out.append((t.xbar, t.row0 + k, t.col0, t.bits[k]))
        return out


class _RowImages:
    """Crossbar row contents as the program leaves them, and the WMEM row images.

    Cells outside the tiles of an update keep what they hold, so a PROG changes
    only the cells of the new tiles (and a row whose cells already hold the new
    bits is not programmed at all).
    """

    def __init__(self, n: int, rows: int, cols: int) -> None:
        self.shape = (n, rows, cols)
        self._rows: list[np.ndarray] = []
        self._index: dict[bytes, int] = {}

    def blank(self) -> np.ndarray:
        return np.zeros(self.shape, np.uint8)

    @staticmethod
    def apply(state: np.ndarray, updates: list[tuple[int, int, int, np.ndarray]]
              ) -> tuple[np.ndarray, int]:
        out = state.copy()
        for x, r, c0, bits in updates:
            out[x, r, c0:c0 + bits.size] = bits
        return out, 0

    @staticmethod
    def diff(old: np.ndarray, new: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
        """Rows that differ, in (xbar, row) order, with their new images."""
        ch = (old != new).any(axis=2)
        return [(int(x), int(r), new[x, r]) for x, r in zip(*np.nonzero(ch), strict=True)]

    def word(self, img: np.ndarray) -> int:
        """WMEM word holding ``img`` (identical rows share one word)."""
        key = img.tobytes()
        w = self._index.get(key)
        if w is None:
            w = self._index[key] = len(self._rows)
            self._rows.append(img.copy())
        return w

    def block(self, imgs: np.ndarray) -> int:
        """Append consecutive rows (CMAC coefficient rows are addressed as a block);
        returns the first one's word."""
        base = len(self._rows)
        self._rows.extend(np.asarray(imgs, np.uint8))
        return base

    def wmem(self) -> np.ndarray:
        if not self._rows:
            return np.zeros((0, self.shape[2]), np.uint8)
        return np.stack(self._rows)


def compile_network(net: Network | BasisNetwork, cfg: XbarConfig,
                    calib: np.ndarray | None = None) -> Compiled:
    """Compile; with a calibrated adc_range, ``calib`` is a quantized calibration batch.

    A ``BasisNetwork`` (or a plain network with ``basis_count > 0``, fitted here
    with the config's seed) compiles in basis mode."""
    basis: BasisNetwork | None = None
    if isinstance(net, BasisNetwork):
        basis, net = net, net.original
    elif cfg.basis_count:
        basis = fit_basis(net, cfg)
    first = Compiler(net, cfg, basis).compile()
    if not is_calibrated(cfg):
        return first
    if calib is None:
        raise BadInputError(f"adc_range = {cfg.adc_range} needs a calibration batch "
                            "(--calib X.npy)", where="config")
    return Compiler(net, cfg, basis).compile(calibrated_adcs(first, calib))


def fit_basis(net: Network, cfg: XbarConfig) -> BasisNetwork:
    """A basis form of ``net`` for the chip: ``basis_count`` vectors of the mapping's
    tile rows, ``coef_bits`` coefficients, binary for binary-only mappings and for
    networks with binary weights, else ternary (weight-space fit, seeded)."""
    from ..basis.fit import FitConfig, fit_weights, weight_kind

    m = MAPPINGS[cfg.mapping]
    rows = cfg.rows // m.rows_per_input
    kind = "binary" if weight_kind(net) == "binary" or 0 not in m.cells else "ternary"
    fc = FitConfig(basis_count=cfg.basis_count, coef_bits=cfg.coef_bits, seg_len=rows,
                   kind=kind, seed=cfg.seed, max_basis=None).validate()
    return fit_weights(net, fc).bn
