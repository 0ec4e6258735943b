"""Vectors: chips, sessions, their golden expectations and coverage.

A *vector* is one host session on one chip (``cimgen.hw.rtl_sim.Session``): load
the memory images (program, weights, data, ADC tables), then one or more runs
(host input writes, start at an entry pc, expected registers and output words).
Vectors of one chip (one DUT parameter set and one device map) form a *group*
that runs in one simulation, in order: crossbar cells are non-volatile, so
each vector starts with the cells the previous one left (the golden machine
carries them over the same way). Each vector's data memory image covers
every word its programs can read, so stale words never matter.

Expected values come from the golden machine (``golden_model.machine``), never
from the RTL.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from golden_model import isa
from golden_model.crossbar import DeviceMap
from golden_model.errors import BadInputError
from golden_model.isa import BIT_SIGNED, Err, Sense, Src
from golden_model.machine import ChipImage, Machine, MachineParams

from ..hw.rtl_sim import RtlParams, Session
from .replay_tb import REGS

_NAME_OK = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")


def devmap_digest(dev: DeviceMap) -> str:
    h = hashlib.sha256()
    for a in (dev.stuck, dev.hrs, dev.lrs):
        arr = np.ascontiguousarray(a)
        h.update(str(arr.shape).encode() + str(arr.dtype).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


@dataclass
class Chip:
    """One DUT instance: the machine parameters, the RTL parameters, the device map."""

    params: MachineParams
    rtl: RtlParams
    devmap: DeviceMap
    label: str  # what it is, for people: "bnn_mlp default config", "random 12x10x3"
    config: dict[str, Any] | None = None  # the crossbar config it came from, if any

    @property
    def key(self) -> tuple[RtlParams, str]:
        return (self.rtl, devmap_digest(self.devmap))


@dataclass
class Vector:
    name: str
    kind: str  # "model", "error", "directed" or "random"
    chip: Chip
    session: Session
    description: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME_OK.match(self.name):
            raise BadInputError(f"vector name {self.name!r}: 1..64 of [A-Za-z0-9_.+-]",
                                where="vectors")


@dataclass
class Expected:
    """The golden machine's outcome of one run."""

    cycles: int
    instructions: int
    error: Err
    fault_pc: int
    pc: int
    reads: int
    progs: int
    data: list[np.ndarray]  # int64 per read range

    def registers(self) -> dict[str, int]:
        """Status registers after the run, as the host reads them (32-bit words)."""
        err = self.error != Err.NONE
        regs = {"STATUS": 0b010 | (0b100 if err else 0), "ERROR": int(self.error),
                "FAULT_PC": (self.fault_pc & 0xFFFFFFFF) if err else 0xFFFFFFFF,
                "PC": self.pc & 0xFFFFFFFF, "CYCLES_LO": self.cycles & 0xFFFFFFFF,
                "CYCLES_HI": (self.cycles >> 32) & 0xFFFFFFFF,
                "INSTRET": self.instructions & 0xFFFFFFFF, "READS": self.reads & 0xFFFFFFFF,
                "PROGS": self.progs & 0xFFFFFFFF, "IRQ_STATUS": 1}
        assert tuple(regs) == REGS
        return regs


# ------------------------------------------------------------------- coverage

READ_MODES = tuple(f"pair={p} sense={s.name}" for p in (0, 1) for s in Sense)
MASKS = tuple([f"pair=0 mask_a={m}" for m in range(8)] + [f"pair=1 mask_a={m}" for m in range(8)]
              + [f"pair=1 mask_b={m}" for m in range(8)])
BITS = tuple([f"bit={b}" for b in range(8)] + [f"bit={BIT_SIGNED} (signed)"])
ACC_SRCS = tuple(f"src={s.name}" for s in Src)
ACT_KS = tuple(f"k={k}" for k in (1, 2, 3))


class Coverage:
    """What the golden runs of a vector set exercised (executed instructions only)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, int]] = {
            "opcodes": dict.fromkeys((op.name for op in isa.OPS), 0),
            "read_modes": dict.fromkeys(READ_MODES, 0),
            "row_drive_masks": dict.fromkeys(MASKS, 0),
            "read_bits": dict.fromkeys(BITS, 0),
            "acc_sources": dict.fromkeys(ACC_SRCS, 0),
            "act_thresholds": dict.fromkeys(ACT_KS, 0),
            "errors": dict.fromkeys((e.name for e in Err), 0),
            "adc_levels": {"lowest level": 0, "highest level": 0},
        }
        self.conversions = 0
        self.code_min: int | None = None
        self.code_max: int | None = None
        self.level_min: int | None = None
        self.level_max: int | None = None
        self.runs = 0
        self.instructions = 0

    def probe(self, image: ChipImage) -> Any:
        def hook(table: int, x: np.ndarray) -> None:
            thr = np.asarray(image.adc_thr[table], np.int64)
            rec = np.asarray(image.adc_recon[table], np.int64)
            idx = np.searchsorted(thr, np.asarray(x, np.int64), side="right")
            if not idx.size:
                return
            codes = rec[idx]
            self.conversions += int(idx.size)
            lo, hi = int(idx.min()), int(idx.max())
            self.level_min = lo if self.level_min is None else min(self.level_min, lo)
            self.level_max = hi if self.level_max is None else max(self.level_max, hi)
            cmin, cmax = int(codes.min()), int(codes.max())
            self.code_min = cmin if self.code_min is None else min(self.code_min, cmin)
            self.code_max = cmax if self.code_max is None else max(self.code_max, cmax)
            # The table's saturating levels: below every threshold, above every real one.
            n_real = int(np.searchsorted(thr, 2**31 - 1, side="left"))
            self.items["adc_levels"]["lowest level"] += int((idx == 0).sum())
            self.items["adc_levels"]["highest level"] += int((idx >= n_real).sum())

        return hook

    def run(self, image: ChipImage, entry: int, res: Any) -> None:
        self.runs += 1
        self.items["errors"][Err(res.error).name] += 1
        end = res.fault_pc if res.error != Err.NONE else res.pc + 1
        for pc in range(max(0, entry), min(end, len(image.program))):
            ins = isa.decode(image.program[pc])
            if ins is None:
                continue
            self.instructions += 1
            self.items["opcodes"][ins.op] += 1
            if ins.op == "READ":
                pair, sense = ins["pair"], ins["sense"]
                self.items["read_modes"][f"pair={pair} sense={Sense(sense).name}"] += 1
                self.items["row_drive_masks"][f"pair={pair} mask_a={ins['mask_a']}"] += 1
                if pair:
                    self.items["row_drive_masks"][f"pair=1 mask_b={ins['mask_b']}"] += 1
                bit = ins["bit"]
                self.items["read_bits"][f"bit={bit}" + (" (signed)" if bit == BIT_SIGNED
                                                        else "")] += 1
            elif ins.op == "ACC":
                self.items["acc_sources"][f"src={Src(ins['src']).name}"] += 1
            elif ins.op == "ACT":
                self.items["act_thresholds"][f"k={ins['k']}"] += 1

    def gaps(self) -> list[str]:
        return [f"{group}: {name}" for group, items in self.items.items()
                for name, n in items.items() if n == 0]

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "instructions_executed": self.instructions,
                "items": self.items,
                "adc": {"conversions": self.conversions, "code_min": self.code_min,
                        "code_max": self.code_max, "level_index_min": self.level_min,
                        "level_index_max": self.level_max},
                "gaps": self.gaps()}

    def markdown(self) -> str:
        d = self.to_dict()
        lines = ["# Coverage of the vector set (golden machine runs)", "",
                 f"{d['runs']} runs, {d['instructions_executed']} instructions executed, "
                 f"{d['adc']['conversions']} ADC conversions.", ""]
        a = d["adc"]
        lines += [f"ADC codes hit: min {a['code_min']}, max {a['code_max']} (table level "
                  f"index {a['level_index_min']}..{a['level_index_max']}).", ""]
        for group, items in self.items.items():
            hit = sum(1 for n in items.values() if n)
            lines += [f"## {group}: {hit}/{len(items)}", "", "| item | count |", "|---|---|"]
            lines += [f"| {name} | {n} |" for name, n in items.items()]
            lines.append("")
        gaps = d["gaps"]
        lines += ["## Gaps", ""]
        lines += [f"- {g}" for g in gaps] if gaps else ["none"]
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- golden


def golden_group(vectors: Sequence[Vector], coverage: Coverage | None = None
                 ) -> list[list[Expected]]:
    """The golden machine on one chip's vectors, in order, cells carried over."""
    out: list[list[Expected]] = []
    bits = None
    for v in vectors:
        img = v.session.image
        m = Machine(img, 1)
        if bits is not None:
            m.xbar_bits[:] = bits
        if coverage is not None:
            m.probe = coverage.probe(img)
        runs = []
        for r in v.session.runs:
            for addr, words in r.writes:
                m.load_inputs(addr, np.asarray(words, np.int32)[None, :])
            res = m.run(r.entry)
            if coverage is not None:
                coverage.run(img, r.entry, res)
            runs.append(Expected(res.cycles, res.instructions, Err(res.error), res.fault_pc,
                                 res.pc, res.reads, res.cells_written // img.params.cols,
                                 [m.dmem[0, a:a + n].astype(np.int64) for a, n in r.reads]))
        bits = m.xbar_bits.copy()
        out.append(runs)
    return out


def group_vectors(vectors: Sequence[Vector]) -> list[tuple[Chip, list[Vector]]]:
    """Vectors by chip, groups in order of first appearance, vectors in given order."""
    groups: dict[tuple[RtlParams, str], tuple[Chip, list[Vector]]] = {}
    for v in vectors:
        groups.setdefault(v.chip.key, (v.chip, []))[1].append(v)
    return list(groups.values())


def image_arrays(s: Session) -> dict[str, np.ndarray]:
    """The session's memory images as loaded (DMEM zero-extended to dmem_zero_to)."""
    img = s.image
    for name, arr in (("ADC threshold", img.adc_thr), ("ADC level", img.adc_recon)):
        a = np.asarray(arr, np.int64)
        if a.size and (a.max() > 2**31 - 1 or a.min() < -(2**31)):
            raise BadInputError(f"an {name} does not fit 32 bits", where="vectors")
    dmem = np.asarray(img.dmem_init, np.int64)
    if s.dmem_zero_to > dmem.size:
        dmem = np.concatenate([dmem, np.zeros(s.dmem_zero_to - dmem.size, np.int64)])
    return {"program": np.asarray(img.program, np.uint64),
            "wmem": np.asarray(img.wmem, np.uint8),
            "dmem": dmem,
            "adc_thr": np.asarray(img.adc_thr, np.int64).reshape(len(img.adc_thr), -1),
            "adc_rec": np.asarray(img.adc_recon, np.int64).reshape(len(img.adc_recon), -1)}

