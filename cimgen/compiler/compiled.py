"""What a compiled network is: the chip image plus what the host needs to drive it.

Kept apart from the code generator so that running a compile directory
(``cimgen run``, ``replay``) imports only this, not the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from golden_model.crossbar import AdcTable, DeviceParams
from golden_model.machine import ChipImage, Machine, MachineParams

from ..config import XbarConfig
from .cost import Report
from .host import HostStage
from .layout import Tensor
from .tiling import Tile

if TYPE_CHECKING:
    from golden_model.basis import BasisNetwork
    from golden_model.ir import Network
    from golden_model.isa import Instr
    from golden_model.schedule import Schedule as ReadSchedule


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
